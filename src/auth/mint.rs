//! `herald token`: prints a signed JWT, so curl users and test scripts never
//! hand-write JSON or base64.
//!
//! ```text
//! HERALD_JWT_SECRET=… herald token --sub 42 --subscribe 'private-user-42*' \
//!     --publish chat --info '{"name":"Ada"}' --ttl 15m
//! ```
//!
//! It signs with the first `--jwt-secret` (HS256), or with
//! `--private-key FILE` (the PEM private half of a `--jwt-public-key`:
//! RS256, ES256 or ES384 by the key's curve, EdDSA); `--alg` picks another
//! algorithm the key allows. Its flags ([`TokenArgs`]) are defined in
//! `config` with the server's.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use super::claims::{Grants, MAX_INFO_BYTES, MAX_SUB_CHARS};
use crate::config::TokenArgs;

/// The signed token.
pub fn mint(args: &TokenArgs) -> Result<String, String> {
    let key = signing_key(args)?;
    // Whether the key can sign with `alg`, found by signing: an EC key's
    // curve decides between ES256 and ES384, and a public key signs nothing.
    let signs = |alg: &Algorithm| {
        key.family().algorithms().contains(alg)
            && jsonwebtoken::crypto::sign(b"herald", &key, *alg).is_ok()
    };
    let alg = match &args.alg {
        Some(name) => match name.parse::<Algorithm>() {
            Ok(alg) if signs(&alg) => alg,
            Ok(alg) => return Err(format!("--alg {alg:?} does not match the key")),
            Err(_) => return Err(format!("--alg {name}: unknown algorithm")),
        },
        None => *key
            .family()
            .algorithms()
            .iter()
            .find(|alg| signs(alg))
            .ok_or("the key cannot sign: is it a private key?")?,
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|_| "the clock is before 1970")?;
    let exp = now.saturating_add(args.ttl).as_secs();
    // `iat`: a revocation of the user refuses tokens issued at or before
    // its second, so a token minted after it must say when it was.
    let mut claims = json!({ "exp": exp, "iat": now.as_secs() });
    if let Some(jti) = &args.jti {
        if !(1..=crate::revocation::MAX_JTI_CHARS).contains(&jti.chars().count()) {
            return Err("--jti has 1 to 256 characters".into());
        }
        claims["jti"] = jti.as_str().into();
    }
    if let Some(sub) = &args.sub {
        if !(1..=MAX_SUB_CHARS).contains(&sub.chars().count()) {
            return Err("--sub has 1 to 128 characters".into());
        }
        claims["sub"] = sub.as_str().into();
    }
    if let Some(aud) = &args.jwt_audience {
        claims["aud"] = aud.as_str().into();
    }
    if let Some(iss) = &args.jwt_issuer {
        claims["iss"] = iss.as_str().into();
    }
    let mut herald = json!({});
    for (name, grants) in [("subscribe", &args.subscribe), ("publish", &args.publish)] {
        Grants::parse(grants.iter().map(String::as_str)).map_err(|e| format!("--{name} {e}"))?;
        if !grants.is_empty() {
            herald[name] = json!(grants);
        }
    }
    if let Some(info) = &args.info {
        let value: Value =
            serde_json::from_str(info).map_err(|e| format!("--info is not JSON: {e}"))?;
        if info.len() > MAX_INFO_BYTES {
            return Err("--info is larger than 1 KiB".into());
        }
        herald["info"] = value;
    }
    claims["herald"] = herald;
    let mut header = Header::new(alg);
    header.kid = args.kid.clone();
    jsonwebtoken::encode(&header, &claims, &key).map_err(|e| format!("cannot sign: {e}"))
}

/// Why `pem` cannot sign, with the `openssl` line that fixes the common
/// cases: `openssl ecparam -genkey` writes an EC key in SEC1 form, which
/// `jsonwebtoken` (through ring) does not read.
fn not_a_signing_key(path: &std::path::Path, pem: &[u8]) -> String {
    let text = String::from_utf8_lossy(pem);
    let shown = path.display();
    let has = |label: &str| text.contains(&format!("-----BEGIN {label}-----"));
    if has("EC PRIVATE KEY") {
        format!(
            "{shown}: an EC key in SEC1 form (BEGIN EC PRIVATE KEY); herald token signs with \
             PKCS#8: convert it with `openssl pkcs8 -topk8 -nocrypt -in {shown} -out KEY`"
        )
    } else if has("ENCRYPTED PRIVATE KEY") || text.contains("Proc-Type: 4,ENCRYPTED") {
        format!(
            "{shown}: an encrypted private key, and herald reads no passphrase: decrypt it \
             with `openssl pkey -in {shown} -out KEY`"
        )
    } else if text.contains("PUBLIC KEY-----") {
        format!("{shown}: a public key; --private-key needs the private half")
    } else {
        format!("{shown}: not a PEM private key (RSA in PKCS#1 or PKCS#8; EC or Ed25519 in PKCS#8)")
    }
}

/// The key to sign with; its family's first algorithm it can sign with is
/// the default (HS256, RS256, ES256 or ES384 by curve, EdDSA).
fn signing_key(args: &TokenArgs) -> Result<EncodingKey, String> {
    if let Some(path) = &args.private_key {
        let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if let Ok(key) = EncodingKey::from_rsa_pem(&pem) {
            return Ok(key);
        }
        if let Ok(key) = EncodingKey::from_ec_pem(&pem) {
            return Ok(key);
        }
        if let Ok(key) = EncodingKey::from_ed_pem(&pem) {
            return Ok(key);
        }
        return Err(not_a_signing_key(path, &pem));
    }
    match args
        .jwt_secret
        .iter()
        .find(|s| !s.expose().trim().is_empty())
    {
        Some(secret) => EncodingKey::from_secret(secret.expose().trim().as_bytes())
            .map_err(|e| format!("--jwt-secret: {e}")),
        None => Err("no key to sign with: set HERALD_JWT_SECRET or --private-key".into()),
    }
}
