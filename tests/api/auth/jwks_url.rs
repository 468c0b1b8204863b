//! `--jwks-url` (SPEC §12) against a JWKS provider served by the test on
//! loopback: a small real HTTP server (HTTPS with a CA made in the test, for
//! `--jwks-ca`) that counts the fetches it answers and answers what the test
//! tells it to: keys, a 500, garbage, `Cache-Control: max-age`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::json;

use super::{answer, claims, key_pair, sign_with, Kind};
use crate::helpers::{eventually, spawn_app_with, Binary, TestApp, WAIT};

/// What the provider answers next.
#[derive(Clone)]
struct Answer {
    status: u16,
    body: String,
    cache_control: Option<String>,
}

/// A JWKS provider on 127.0.0.1, on a thread and runtime of its own (a
/// server's startup fetch blocks the thread that builds it). Stops when
/// dropped.
struct Provider {
    addr: SocketAddr,
    https: bool,
    answer: Arc<Mutex<Answer>>,
    fetches: Arc<AtomicUsize>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Provider {
    fn http(keys: &[Jwk]) -> Provider {
        Provider::start(keys, None)
    }

    /// An HTTPS provider whose certificate (for 127.0.0.1) is issued by a CA
    /// made here; the CA's PEM is written to `ca`.
    fn https(keys: &[Jwk], ca: &std::path::Path) -> Provider {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "herald test JWKS CA");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &issuer)
            .unwrap();
        std::fs::write(ca, ca_cert.pem()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .unwrap();
        Provider::start(keys, Some(Arc::new(config)))
    }

    fn start(keys: &[Jwk], tls: Option<Arc<rustls::ServerConfig>>) -> Provider {
        let answer = Arc::new(Mutex::new(Answer {
            status: 200,
            body: set(keys),
            cache_control: None,
        }));
        let fetches = Arc::new(AtomicUsize::new(0));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let https = tls.is_some();
        let (shared, count) = (answer.clone(), fetches.clone());
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(serve(listener, tls, shared, count, stopped));
        });
        Provider {
            addr,
            https,
            answer,
            fetches,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}/.well-known/jwks.json", self.addr)
    }

    /// Requests answered so far.
    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    fn answer(&self, status: u16, body: &str, cache_control: Option<&str>) {
        *self.answer.lock().unwrap() = Answer {
            status,
            body: body.to_owned(),
            cache_control: cache_control.map(str::to_owned),
        };
    }

    fn serve_keys(&self, keys: &[Jwk]) {
        self.answer(200, &set(keys), None);
    }

    /// Stops listening: the URL becomes unreachable.
    fn shut_down(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        self.shut_down();
    }
}

async fn serve(
    listener: std::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    answer: Arc<Mutex<Answer>>,
    fetches: Arc<AtomicUsize>,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let stream = tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => accepted.unwrap().0,
        };
        let (answer, fetches) = (answer.clone(), fetches.clone());
        let service = service_fn(move |_req: http::Request<hyper::body::Incoming>| {
            fetches.fetch_add(1, Ordering::SeqCst);
            let now = answer.lock().unwrap().clone();
            let mut response = http::Response::new(Full::new(Bytes::from(now.body)));
            *response.status_mut() = http::StatusCode::from_u16(now.status).unwrap();
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            if let Some(value) = now.cache_control {
                response.headers_mut().insert(
                    http::header::CACHE_CONTROL,
                    http::HeaderValue::from_str(&value).unwrap(),
                );
            }
            async move { Ok::<_, std::convert::Infallible>(response) }
        });
        let acceptor = acceptor.clone();
        connections.spawn(async move {
            let http = hyper::server::conn::http1::Builder::new();
            match acceptor {
                None => {
                    let _ = http.serve_connection(TokioIo::new(stream), service).await;
                }
                Some(acceptor) => {
                    // A client that does not trust the CA gives up here.
                    if let Ok(stream) = acceptor.accept(stream).await {
                        let _ = http.serve_connection(TokioIo::new(stream), service).await;
                    }
                }
            }
        });
    }
}

fn set(keys: &[Jwk]) -> String {
    serde_json::to_string(&JwkSet {
        keys: keys.to_vec(),
    })
    .unwrap()
}

fn jwk(kind: Kind, alg: Algorithm, kid: &str) -> Jwk {
    let mut jwk = Jwk::from_encoding_key(&key_pair(kind).encoding(kind), alg).unwrap();
    jwk.common.key_id = Some(kid.to_owned());
    jwk
}

fn rsa_jwk(kid: &str) -> Jwk {
    jwk(Kind::Rsa, Algorithm::RS256, kid)
}

/// A token for `private-k`, signed by the RSA key (or the P-256 one) with
/// this `kid`.
fn rsa_token(kid: &str) -> String {
    let key = key_pair(Kind::Rsa).encoding(Kind::Rsa);
    sign_with(Algorithm::RS256, &key, &grant(), Some(kid))
}

fn ec_token(kid: &str) -> String {
    let key: EncodingKey = key_pair(Kind::P256).encoding(Kind::P256);
    sign_with(Algorithm::ES256, &key, &grant(), Some(kid))
}

fn grant() -> serde_json::Value {
    claims(600, json!({"subscribe": ["private-k"]}))
}

/// The status of opening a private stream with `token`.
async fn status_with(client: &reqwest::Client, base: &str, token: &str) -> u16 {
    let request = client
        .get(format!("{base}/events/private-k"))
        .bearer_auth(token);
    answer(request).await.0
}

async fn app_status(app: &TestApp, token: &str) -> u16 {
    status_with(&app.client, &app.base, token).await
}

async fn spawn_with_url(url: &str, refresh: Option<Duration>) -> TestApp {
    let url = url.to_owned();
    spawn_app_with(move |c| {
        c.jwks_url = Some(url);
        if let Some(refresh) = refresh {
            c.jwks_refresh = refresh;
        }
    })
    .await
}

fn temp_path(name: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    std::env::temp_dir().join(format!(
        "herald-jwks-url-{}-{}-{name}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

#[tokio::test]
async fn the_set_is_fetched_once_at_startup_over_https_trusting_jwks_ca() {
    let ca = temp_path("ca.pem");
    let provider = Provider::https(&[rsa_jwk("sig-1")], &ca);
    let (url, ca_flag) = (provider.url(), ca.clone());
    let app = spawn_app_with(move |c| {
        c.jwks_url = Some(url);
        c.jwks_ca = Some(ca_flag);
    })
    .await;
    assert_eq!(provider.fetches(), 1, "fetched before serving");
    assert_eq!(app_status(&app, &rsa_token("sig-1")).await, 200);
    assert_eq!(
        app.client
            .get(app.url("/events/private-k"))
            .send()
            .await
            .unwrap()
            .status(),
        401,
        "a private channel needs a token: the URL's keys turned access control on"
    );
    assert_eq!(provider.fetches(), 1, "a known kid fetches nothing");
    let _ = std::fs::remove_file(&ca);
}

#[tokio::test]
async fn a_key_rotated_in_works_at_once_and_the_next_unknown_kid_waits_30s() {
    let provider = Provider::http(&[rsa_jwk("rsa-1")]);
    let app = spawn_with_url(&provider.url(), None).await;
    assert_eq!(app_status(&app, &rsa_token("rsa-1")).await, 200);

    // The provider rotates a new key in: its first token is accepted, by
    // the one fetch its unknown kid asked for.
    provider.serve_keys(&[rsa_jwk("rsa-1"), jwk(Kind::P256, Algorithm::ES256, "ec-2")]);
    assert_eq!(app_status(&app, &ec_token("ec-2")).await, 200);
    assert_eq!(provider.fetches(), 2);
    assert_eq!(app_status(&app, &rsa_token("rsa-1")).await, 200);

    // Another key within 30 s: refused at once, nothing fetched (the timer,
    // five minutes by default, will bring it).
    provider.serve_keys(&[rsa_jwk("rsa-1"), rsa_jwk("rsa-3")]);
    assert_eq!(app_status(&app, &rsa_token("rsa-3")).await, 401);
    assert_eq!(provider.fetches(), 2);
    assert_eq!(
        app_status(&app, &ec_token("ec-2")).await,
        200,
        "keys stay until a fetch replaces them"
    );
}

#[tokio::test]
async fn a_flood_of_random_kids_makes_one_fetch() {
    let provider = Provider::http(&[rsa_jwk("rsa-1")]);
    let app = spawn_with_url(&provider.url(), None).await;
    // One signed token relabelled: the kid is looked up before any
    // signature is checked.
    let signed = rsa_token("rsa-1");
    let (_, rest) = signed.split_once('.').unwrap();
    let started = std::time::Instant::now();
    let mut requests = tokio::task::JoinSet::new();
    for i in 0..200 {
        let kid = format!("forged-{i}-{}", fastrand::u64(..));
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": kid}).to_string();
        let forged = format!("{}.{rest}", URL_SAFE_NO_PAD.encode(header));
        let (client, base) = (app.client.clone(), app.base.clone());
        requests.spawn(async move { status_with(&client, &base, &forged).await });
    }
    while let Some(status) = requests.join_next().await {
        assert_eq!(status.unwrap(), 401);
    }
    // The startup fetch, then one per 30 s begun (one, unless this box is
    // very slow).
    let allowed = 2 + (started.elapsed().as_secs() / 30) as usize;
    assert!(
        provider.fetches() <= allowed,
        "{} fetches for 200 forged kids in {:?}",
        provider.fetches(),
        started.elapsed()
    );
    assert!(provider.fetches() >= 2, "the flood asked for a fetch");
    assert_eq!(app_status(&app, &rsa_token("rsa-1")).await, 200);
    assert_eq!(
        app.metric("herald_requests_rejected_total{reason=\"unauthorized\"}")
            .await,
        200.0
    );
}

#[tokio::test]
async fn the_set_is_refreshed_on_its_timer_and_a_max_age_takes_precedence() {
    // No Cache-Control: every --jwks-refresh (1 s here).
    let every_second = Provider::http(&[rsa_jwk("rsa-1")]);
    let app = spawn_with_url(&every_second.url(), Some(Duration::from_secs(1))).await;
    eventually("two timed refreshes", || every_second.fetches() >= 3).await;

    // A refresh brings a new key in without any token asking for it.
    every_second.serve_keys(&[rsa_jwk("rsa-2")]);
    let seen = every_second.fetches();
    eventually("one more refresh", || every_second.fetches() > seen).await;
    assert_eq!(app_status(&app, &rsa_token("rsa-2")).await, 200);
    assert_eq!(
        every_second.fetches(),
        seen + 1,
        "rsa-2 came by the timer, not by an unknown-kid fetch"
    );

    // max-age=60 wins over --jwks-refresh 1s; max-age=5 (under a minute)
    // is ignored.
    let cached = Provider::http(&[rsa_jwk("rsa-1")]);
    cached.answer(200, &set(&[rsa_jwk("rsa-1")]), Some("public, max-age=60"));
    let too_short = Provider::http(&[rsa_jwk("rsa-1")]);
    too_short.answer(200, &set(&[rsa_jwk("rsa-1")]), Some("max-age=5"));
    let _cached_app = spawn_with_url(&cached.url(), Some(Duration::from_secs(1))).await;
    let _short_app = spawn_with_url(&too_short.url(), Some(Duration::from_secs(1))).await;
    eventually("refreshes every second despite max-age=5", || {
        too_short.fetches() >= 3
    })
    .await;
    assert_eq!(cached.fetches(), 1, "max-age=60: no refresh yet");
}

#[tokio::test]
async fn a_failed_refresh_keeps_the_keys_says_why_and_is_counted() {
    let mut provider = Provider::http(&[rsa_jwk("rsa-1")]);
    let bin = Binary::start(&["--jwks-url", &provider.url(), "--jwks-refresh", "1s"]).await;
    let token = rsa_token("rsa-1");
    let base = format!("http://{}", bin.addr);
    assert_eq!(status_with(&bin.client, &base, &token).await, 200);
    let failures = "herald_jwks_refresh_failures_total";
    assert_eq!(bin.metric(failures).await, 0.0);

    let encryption_only = json!({"keys": [{"kty": "oct", "k": "c2VjcmV0", "use": "enc"}]});
    let cases = [
        ("answered 500", 500, "oops".to_owned()),
        ("not a JWK Set", 200, "<html>".to_owned()),
        ("no usable key", 200, encryption_only.to_string()),
        ("not a JWK Set", 200, "{}".to_owned()),
    ];
    for (n, (says, status, body)) in cases.iter().enumerate() {
        provider.answer(*status, body, None);
        let seen = bin.metric(failures).await;
        let deadline = tokio::time::Instant::now() + WAIT;
        while bin.metric(failures).await == seen {
            assert!(
                tokio::time::Instant::now() < deadline,
                "case {n}: not counted"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(bin.logged(says), "case {n}: the log says {says:?}");
        assert_eq!(
            status_with(&bin.client, &base, &token).await,
            200,
            "case {n}: the keys in use stay"
        );
    }

    // Unreachable: the same, and an unknown kid's fetch fails the same way.
    provider.shut_down();
    let seen = bin.metric(failures).await;
    assert_eq!(
        status_with(&bin.client, &base, &rsa_token("new")).await,
        401
    );
    let deadline = tokio::time::Instant::now() + WAIT;
    while bin.metric(failures).await == seen {
        assert!(
            tokio::time::Instant::now() < deadline,
            "unreachable: not counted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(bin.logged("cannot fetch"));
    assert_eq!(status_with(&bin.client, &base, &token).await, 200);
    assert!(bin.logged(&provider.url()), "the log names the URL");
    let logs = bin.logs.lock().unwrap().join("\n");
    assert!(!logs.contains(&token[..40]), "no token in the log");
    assert!(!logs.contains("eyJ"), "no token in the log");
}

#[test]
fn a_set_that_cannot_be_used_at_startup_is_an_error_naming_the_url() {
    let run = |url: &str, extra: &[&str]| {
        let out = std::process::Command::new(crate::helpers::herald_bin())
            .args(["--listen", "127.0.0.1:0", "--jwks-url", url])
            .args(extra)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{url} {extra:?} started");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let check = |stderr: &str, url: &str, says: &str| {
        assert!(stderr.contains(url), "names {url}: {stderr}");
        assert!(stderr.contains(says), "says {says:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    };

    // Unreachable: a port nothing listens on.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/jwks", listener.local_addr().unwrap())
    };
    check(&run(&closed, &[]), &closed, "cannot fetch");

    let provider = Provider::http(&[]);
    let url = provider.url();
    provider.answer(500, "{\"keys\":[]}", None);
    check(&run(&url, &[]), &url, "answered 500");
    provider.answer(200, "<html>sign in</html>", None);
    check(&run(&url, &[]), &url, "not a JWK Set");
    provider.answer(200, "{\"keys\":[]}", None);
    check(&run(&url, &[]), &url, "no usable key");
    let enc = json!({"keys": [{"kty": "oct", "k": "c2VjcmV0", "use": "enc"}]});
    provider.answer(200, &enc.to_string(), None);
    check(&run(&url, &[]), &url, "no usable key");
    assert_eq!(provider.fetches(), 4, "one fetch per start");

    // Plain HTTP beyond loopback is refused before any fetch.
    let remote = "http://jwks.example.com/.well-known/jwks.json";
    check(&run(remote, &[]), remote, "loopback");
    check(
        &run("ftp://127.0.0.1/jwks", &[]),
        "ftp://127.0.0.1/jwks",
        "https://",
    );

    // HTTPS to a CA herald does not trust, then a --jwks-ca that is not a
    // certificate.
    let ca = temp_path("ca.pem");
    let https = Provider::https(&[rsa_jwk("sig-1")], &ca);
    check(&run(&https.url(), &[]), &https.url(), "certificate");
    let not_pem = temp_path("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let stderr = run(&https.url(), &["--jwks-ca", not_pem.to_str().unwrap()]);
    assert!(stderr.contains("--jwks-ca"), "{stderr}");
    assert_eq!(
        https.fetches(),
        0,
        "the handshake failed, no request was made"
    );
    let _ = std::fs::remove_file(&ca);
    let _ = std::fs::remove_file(&not_pem);
}

#[tokio::test]
async fn a_jwks_file_reload_and_a_url_refresh_each_keep_the_others_keys() {
    let file = temp_path("file.json");
    std::fs::write(&file, set(&[jwk(Kind::P256, Algorithm::ES256, "file-1")])).unwrap();
    let provider = Provider::http(&[rsa_jwk("url-1")]);
    let (url, path) = (provider.url(), file.clone());
    let app = spawn_app_with(move |c| {
        c.jwks_url = Some(url);
        c.jwks_file = Some(path);
    })
    .await;
    assert_eq!(app_status(&app, &ec_token("file-1")).await, 200);
    assert_eq!(app_status(&app, &rsa_token("url-1")).await, 200);

    std::fs::write(&file, set(&[jwk(Kind::P256, Algorithm::ES256, "file-2")])).unwrap();
    assert_eq!(app.state.auth.reload_jwks(), Ok(1));
    assert_eq!(app_status(&app, &ec_token("file-2")).await, 200);
    assert_eq!(
        app_status(&app, &rsa_token("url-1")).await,
        200,
        "the URL's keys stay"
    );

    // An unknown kid refreshes the URL's set; the file's key stays.
    provider.serve_keys(&[rsa_jwk("url-2")]);
    assert_eq!(app_status(&app, &rsa_token("url-2")).await, 200);
    assert_eq!(
        app_status(&app, &rsa_token("url-1")).await,
        401,
        "rotated out"
    );
    assert_eq!(
        app_status(&app, &ec_token("file-2")).await,
        200,
        "the file's keys stay"
    );
    let _ = std::fs::remove_file(&file);
}
