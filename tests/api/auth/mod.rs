//! SPEC §6 access control against the real server: keys of every kind
//! generated in the test (with the `openssl` CLI), tokens signed here with
//! `jsonwebtoken`, requests made with real clients.

mod bad_input;
mod binary;
mod expiry;
mod jwks_url;
mod key_kinds;
mod rules;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use herald::config::Secret;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, TestApp, WAIT};

pub const SECRET: &str = "test-jwt-secret-0123456789abcdef";
pub const PUBLISH_TOKEN: &str = "test-publish-token-0123456789";

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Claims for user 42 valid for `ttl` seconds with this `herald` claim.
pub fn claims(ttl: u64, herald: Value) -> Value {
    json!({"sub": "42", "exp": now() + ttl, "herald": herald})
}

pub fn sign_with(alg: Algorithm, key: &EncodingKey, claims: &Value, kid: Option<&str>) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

/// An HS256 token signed with [`SECRET`].
pub fn hs(claims: &Value) -> String {
    let key = EncodingKey::from_secret(SECRET.as_bytes()).unwrap();
    sign_with(Algorithm::HS256, &key, claims, None)
}

/// A token granting `subscribe` and `publish`, valid for ten minutes.
pub fn token(subscribe: &[&str], publish: &[&str]) -> String {
    hs(&claims(
        600,
        json!({"subscribe": subscribe, "publish": publish}),
    ))
}

/// A server with a publish token and an HS secret.
pub async fn spawn_auth() -> TestApp {
    spawn_auth_with(|_| {}).await
}

pub async fn spawn_auth_with(configure: impl FnOnce(&mut herald::Config)) -> TestApp {
    spawn_app_with(|c| {
        c.publish_token = vec![Secret::new(PUBLISH_TOKEN)];
        c.jwt_secret = vec![Secret::new(SECRET)];
        configure(c);
    })
    .await
}

/// The key kinds of `--jwt-public-key`.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Rsa,
    P256,
    P384,
    Ed25519,
}

/// A private key (PKCS#8 PEM) and its public half, generated once per test
/// run by `openssl` (under `target/tmp/auth-keys`).
pub struct KeyPair {
    pub private: PathBuf,
    pub public: PathBuf,
}

impl KeyPair {
    pub fn encoding(&self, kind: Kind) -> EncodingKey {
        let pem = std::fs::read(&self.private).unwrap();
        match kind {
            Kind::Rsa => EncodingKey::from_rsa_pem(&pem).unwrap(),
            Kind::P256 | Kind::P384 => EncodingKey::from_ec_pem(&pem).unwrap(),
            Kind::Ed25519 => EncodingKey::from_ed_pem(&pem).unwrap(),
        }
    }
}

pub fn key_pair(kind: Kind) -> &'static KeyPair {
    static KEYS: OnceLock<Vec<KeyPair>> = OnceLock::new();
    let keys = KEYS.get_or_init(|| {
        // Under the target directory, one folder rewritten by every run, so
        // repeated runs leave nothing behind in /tmp.
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("auth-keys");
        std::fs::create_dir_all(&dir).unwrap();
        [
            (
                "rsa",
                &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"][..],
            ),
            (
                "p256",
                &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
            ),
            (
                "p384",
                &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
            ),
            ("ed25519", &["-algorithm", "ed25519"]),
        ]
        .iter()
        .map(|(name, args)| generate(&dir, name, args))
        .collect()
    });
    &keys[kind as usize]
}

fn generate(dir: &Path, name: &str, args: &[&str]) -> KeyPair {
    let private = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub.pem"));
    let out = private.to_str().unwrap();
    openssl(&[&["genpkey"][..], args, &["-out", out]].concat());
    openssl(&[
        "pkey",
        "-in",
        out,
        "-pubout",
        "-out",
        public.to_str().unwrap(),
    ]);
    KeyPair { private, public }
}

fn openssl(args: &[&str]) {
    let status = std::process::Command::new("openssl")
        .args(args)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("the openssl CLI is installed (.ci/run installs it)");
    assert!(status.success(), "openssl {args:?}");
}

/// Sends `request` and returns the status, the `WWW-Authenticate` header and
/// the JSON body (Null when the body is not JSON or is an event stream).
///
/// An event stream never ends, so its body is not read: the response is
/// dropped, which closes the stream.
pub async fn answer(request: reqwest::RequestBuilder) -> (u16, Option<String>, Value) {
    let response = tokio::time::timeout(WAIT, request.send())
        .await
        .expect("an answer within the wait")
        .unwrap();
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    let stream = response
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if stream {
        return (status, challenge, Value::Null);
    }
    let body = tokio::time::timeout(WAIT, response.text())
        .await
        .expect("the whole body within the wait")
        .unwrap();
    (
        status,
        challenge,
        serde_json::from_str(&body).unwrap_or(Value::Null),
    )
}

/// `herald_requests_rejected_total{reason}`.
pub async fn rejected(app: &TestApp, reason: &str) -> f64 {
    app.metric(&format!(
        "herald_requests_rejected_total{{reason=\"{reason}\"}}"
    ))
    .await
}
