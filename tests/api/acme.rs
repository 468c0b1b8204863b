//! SPEC §13, automatic HTTPS, against Debian's `pebble` (the ACME test CA)
//! on loopback: its TLS-ALPN-01 validation port (`tlsPort`) is herald's
//! listener, `pebble-challtestsrv` answers its DNS (every name is
//! 127.0.0.1), `PEBBLE_VA_NOSLEEP=1`, and clients trust only the root
//! fetched from Pebble's management endpoint (`/roots/0`). Pebble's own
//! HTTPS certificate is made in the test and given to herald as
//! `--acme-ca`.
//!
//! Needs `pebble` (`apt-get install pebble`). Without it the tests print one
//! line saying so and pass; with `CI=true` they fail instead.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::CertificateDer;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::helpers::{spawn_app_at, Binary, TestApp, WAIT};
use crate::tls_client::{tls_connect_as, Client, Pair};

/// The name herald orders a certificate for (challtestsrv resolves it).
const DOMAIN: &str = "herald.test";

/// How long a first certificate (or a renewal) may take on a busy machine:
/// an order takes about 3 s on an idle one.
const ISSUANCE: Duration = Duration::from_secs(60);

/// Whether Debian's pebble is installed; prints why not once, or panics
/// under `CI=true`.
pub fn pebble_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        let found = Path::new("/usr/bin/pebble").is_file()
            && Path::new("/usr/bin/pebble-challtestsrv").is_file();
        if !found {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true: the ACME tests need Debian's pebble (apt-get install pebble)"
            );
            eprintln!("ACME tests skipped: no pebble (apt-get install pebble)");
        }
        found
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(what: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "herald-acme-{what}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Pebble and its DNS server, started and stopped by the test.
pub struct Pebble {
    /// Pebble's own HTTPS certificate: herald's `--acme-ca`.
    pub https: Pair,
    dir: TempDir,
    listen: SocketAddr,
    management: SocketAddr,
    dns: SocketAddr,
    dns_management: SocketAddr,
    /// Pebble then challtestsrv, while running.
    children: Vec<Child>,
}

impl Pebble {
    /// Picks the ports; nothing runs until [`Pebble::start`].
    pub fn new() -> Pebble {
        let at = |port| SocketAddr::from(([127, 0, 0, 1], port));
        Pebble {
            https: Pair::new(),
            dir: TempDir::new("pebble"),
            listen: at(free_port()),
            management: at(free_port()),
            dns: at(free_port()),
            dns_management: at(free_port()),
            children: Vec::new(),
        }
    }

    /// The ACME directory URL.
    pub fn directory(&self) -> String {
        format!("https://{}/dir", self.listen)
    }

    fn log(&self) -> PathBuf {
        self.dir.0.join("pebble.log")
    }

    /// Starts challtestsrv (DNS only) and Pebble, validating TLS-ALPN-01 on
    /// 127.0.0.1:`tls_port` and issuing certificates valid for
    /// `validity`; returns once its directory answers.
    pub async fn start(&mut self, tls_port: u16, validity: Duration) {
        let config = serde_json::json!({"pebble": {
            "listenAddress": self.listen.to_string(),
            "managementListenAddress": self.management.to_string(),
            "certificate": self.https.cert,
            "privateKey": self.https.key,
            "httpPort": free_port(),
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
            "certificateValidityPeriod": validity.as_secs(),
        }});
        let config_path = self.dir.0.join("pebble.json");
        std::fs::write(&config_path, config.to_string()).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())
            .unwrap();
        let dns = Command::new("pebble-challtestsrv")
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .args(["-dns01", &self.dns.to_string()])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-management", &self.dns_management.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pebble-challtestsrv starts");
        self.children.push(dns);
        let pebble = Command::new("pebble")
            .arg("-config")
            .arg(&config_path)
            .args(["-dnsserver", &self.dns.to_string()])
            .env("PEBBLE_VA_NOSLEEP", "1")
            // No bad-nonce refusals (5% by default): rustls-acme does not
            // retry one within an order, and a test would wait out its
            // backoff for nothing.
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("pebble starts");
        self.children.insert(0, pebble);
        let deadline = tokio::time::Instant::now() + WAIT;
        while TcpStream::connect(self.listen).await.is_err()
            || TcpStream::connect(self.management).await.is_err()
        {
            assert!(tokio::time::Instant::now() < deadline, "pebble listens");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills Pebble and its DNS server (by their PIDs) and waits for them.
    pub fn stop(&mut self) {
        for mut child in self.children.drain(..) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The root Pebble made at this start (`/roots/0` on its management
    /// port).
    pub async fn root(&self) -> CertificateDer<'static> {
        let mut client = Client::h1_tls(self.management, &self.https.der).await;
        let response = client.send("GET", "/roots/0", &[], "").await.unwrap();
        assert_eq!(response.status(), 200);
        let pem = response.into_body().collect().await.unwrap().to_bytes();
        use rustls::pki_types::pem::PemObject;
        CertificateDer::from_pem_slice(&pem).expect("/roots/0 is a PEM certificate")
    }

    /// Orders Pebble has taken so far (its log says "Added order" for each).
    pub fn orders(&self) -> usize {
        std::fs::read_to_string(self.log())
            .unwrap_or_default()
            .matches("Added order")
            .count()
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sets the `--acme-*` flags for `pebble`, caching in `cache`.
fn use_pebble(c: &mut herald::Config, pebble: &Pebble, cache: &Path) {
    c.acme_domain = vec![DOMAIN.to_owned()];
    c.acme_cache = Some(cache.to_owned());
    c.acme_directory = Some(pebble.directory());
    c.acme_ca = Some(pebble.https.cert.clone());
}

/// A TLS connection to `addr` for [`DOMAIN`], trusting only `root`.
pub async fn connect(
    addr: SocketAddr,
    root: &CertificateDer<'static>,
    alpn: &[&[u8]],
) -> std::io::Result<TlsStream<TcpStream>> {
    tls_connect_as(DOMAIN, addr, root, alpn).await
}

/// The chain a handshake for [`DOMAIN`] gets, if it succeeds.
async fn served_chain(
    addr: SocketAddr,
    root: &CertificateDer<'static>,
) -> Option<Vec<CertificateDer<'static>>> {
    let tls = tokio::time::timeout(WAIT, connect(addr, root, &[b"h2"]))
        .await
        .ok()?
        .ok()?;
    let chain = tls.get_ref().1.peer_certificates()?;
    Some(chain.iter().map(|c| c.clone().into_owned()).collect())
}

/// Waits until `addr` serves a certificate verified by `root` other than
/// `not`, and returns its leaf.
async fn wait_for_leaf(
    addr: SocketAddr,
    root: &CertificateDer<'static>,
    not: Option<&CertificateDer<'static>>,
    what: &str,
) -> CertificateDer<'static> {
    let deadline = tokio::time::Instant::now() + ISSUANCE;
    loop {
        if let Some(chain) = served_chain(addr, root).await {
            if Some(&chain[0]) != not {
                return chain[0].clone();
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// HTTP/2 over TLS to herald as [`DOMAIN`].
async fn h2(addr: SocketAddr, root: &CertificateDer<'static>) -> Client {
    let tls = connect(addr, root, &[b"h2", b"http/1.1"]).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    Client::h2_over(TokioIo::new(tls), http2::Builder::new(TokioExecutor::new())).await
}

/// `herald_tls_certificate_expiry_timestamp_seconds`, if the series is there.
fn expiry_metric(app: &TestApp) -> Option<i64> {
    let (_, body) = app.state.metrics.render();
    String::from_utf8(body).unwrap().lines().find_map(|line| {
        line.strip_prefix("herald_tls_certificate_expiry_timestamp_seconds ")
            .map(|v| v.trim().parse::<f64>().unwrap() as i64)
    })
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn leaf_expiry(leaf: &CertificateDer<'_>) -> i64 {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf).unwrap();
    cert.validity().not_after.timestamp()
}

/// A 90-day certificate: nothing renews while a test runs.
const LONG: Duration = Duration::from_secs(90 * 24 * 3600);

#[tokio::test]
async fn issues_a_certificate_and_serves_h2_and_event_streams_on_it() {
    if !pebble_available() {
        return;
    }
    let port = free_port();
    let mut pebble = Pebble::new();
    pebble.start(port, LONG).await;
    let root = pebble.root().await;
    let parent = TempDir::new("cache");
    // herald creates it.
    let cache = parent.0.join("acme");
    let app = spawn_app_at(SocketAddr::from(([127, 0, 0, 1], port)), |c| {
        use_pebble(c, &pebble, &cache)
    })
    .await;

    let leaf = wait_for_leaf(app.addr, &root, None, "a certificate is issued").await;
    // The chain the CA issued: leaf and intermediate, verified up to the
    // root alone.
    let chain = served_chain(app.addr, &root).await.unwrap();
    assert_eq!(chain.len(), 2, "leaf and intermediate are served");
    assert_eq!(chain[0], leaf);
    assert_eq!(pebble.orders(), 1);

    // ALPN still offers both protocols.
    let tls = connect(app.addr, &root, &[b"http/1.1"]).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));

    // An event stream over HTTP/2 on the issued certificate.
    let mut client = h2(app.addr, &root).await;
    let mut events = client.subscribe("/events/news", &[]).await;
    let mut publisher = h2(app.addr, &root).await;
    for data in ["one", "two"] {
        publisher.publish("news", data).await;
    }
    assert_eq!(events.next().await.data, "one");
    assert_eq!(events.next().await.data, "two");

    // The expiry metric is the leaf's.
    assert_eq!(expiry_metric(&app), Some(leaf_expiry(&leaf)));
    assert!(leaf_expiry(&leaf) > unix_now() + 80 * 24 * 3600);

    // The cache: the directory 0700, its files 0600.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&cache), 0o700, "the cache directory");
        let files: Vec<_> = std::fs::read_dir(&cache)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(
            files.len(),
            2,
            "an account key and a certificate: {files:?}"
        );
        for file in files {
            assert_eq!(mode(&file), 0o600, "{}", file.display());
        }
    }
}

#[tokio::test]
async fn a_restart_serves_the_cached_certificate_at_once_orders_nothing_even_with_the_ca_down() {
    if !pebble_available() {
        return;
    }
    let port = free_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut pebble = Pebble::new();
    pebble.start(port, LONG).await;
    let root = pebble.root().await;
    let cache = TempDir::new("cache");
    let app = spawn_app_at(addr, |c| use_pebble(c, &pebble, &cache.0)).await;
    let leaf = wait_for_leaf(addr, &root, None, "a certificate is issued").await;
    app.stop().await;
    assert_eq!(pebble.orders(), 1);

    // Restarted with the CA up: the first handshake gets the cached
    // certificate, and no order is placed.
    let app = spawn_app_at(addr, |c| use_pebble(c, &pebble, &cache.0)).await;
    let chain = served_chain(addr, &root).await.expect("served at once");
    assert_eq!(chain[0], leaf);
    assert_eq!(expiry_metric(&app), Some(leaf_expiry(&leaf)));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(pebble.orders(), 1, "a restart orders nothing");
    app.stop().await;

    // Restarted with the CA down: still served, HTTP/2 and all.
    pebble.stop();
    let app = spawn_app_at(addr, |c| use_pebble(c, &pebble, &cache.0)).await;
    let chain = served_chain(addr, &root)
        .await
        .expect("served with the CA down");
    assert_eq!(chain[0], leaf);
    let mut client = h2(addr, &root).await;
    let response = client.send("GET", "/healthz", &[], "").await.unwrap();
    assert_eq!(response.status(), 200);
    app.stop().await;

    // A corrupt certificate or account key is a startup error naming the
    // file, not a new order.
    let files: Vec<PathBuf> = std::fs::read_dir(&cache.0)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    for prefix in ["certificate-", "account-"] {
        let file = files
            .iter()
            .find(|f| f.file_name().unwrap().to_str().unwrap().starts_with(prefix))
            .unwrap();
        let good = std::fs::read(file).unwrap();
        std::fs::write(file, b"-----BEGIN PRIVATE KEY-----\ngarbage\n").unwrap();
        let error = startup_error(|c| use_pebble(c, &pebble, &cache.0)).await;
        assert!(
            error.contains("corrupt") && error.contains(&file.display().to_string()),
            "{error}"
        );
        // A directory where the file should be: it cannot be read.
        std::fs::remove_file(file).unwrap();
        std::fs::create_dir(file).unwrap();
        let error = startup_error(|c| use_pebble(c, &pebble, &cache.0)).await;
        assert!(
            error.contains("cannot read") && error.contains(&file.display().to_string()),
            "{error}"
        );
        std::fs::remove_dir(file).unwrap();
        std::fs::write(file, good).unwrap();
    }
}

/// Starts herald with `configure` and returns the error it fails with.
async fn startup_error(configure: impl FnOnce(&mut herald::Config)) -> String {
    let mut config = crate::helpers::test_config();
    configure(&mut config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let result = tokio::time::timeout(WAIT, herald::run(listener, config, std::future::pending()))
        .await
        .expect("startup fails at once");
    result.expect_err("a startup error").to_string()
}

#[tokio::test]
async fn renewal_keeps_open_streams_and_loses_no_event() {
    if !pebble_available() {
        return;
    }
    let port = free_port();
    let mut pebble = Pebble::new();
    // Renewed at two thirds of its life: about 14 s after issuance.
    pebble.start(port, Duration::from_secs(21)).await;
    let root = pebble.root().await;
    let cache = TempDir::new("cache");
    let app = spawn_app_at(SocketAddr::from(([127, 0, 0, 1], port)), |c| {
        use_pebble(c, &pebble, &cache.0)
    })
    .await;
    let first = wait_for_leaf(app.addr, &root, None, "a certificate is issued").await;

    // A stream on a connection made with the first certificate.
    let tls = connect(app.addr, &root, &[b"h2"]).await.unwrap();
    assert_eq!(tls.get_ref().1.peer_certificates().unwrap()[0], first);
    let mut subscriber =
        Client::h2_over(TokioIo::new(tls), http2::Builder::new(TokioExecutor::new())).await;
    let mut events = subscriber.subscribe("/events/news", &[]).await;

    // Publish steadily, on the first certificate's connection, until a new
    // handshake gets another certificate.
    let mut publisher = h2(app.addr, &root).await;
    let mut sent = Vec::new();
    let deadline = tokio::time::Instant::now() + ISSUANCE;
    let second = loop {
        let data = format!("e{}", sent.len());
        publisher.publish("news", &data).await;
        sent.push(data);
        let leaf = served_chain(app.addr, &root).await.expect("still served")[0].clone();
        if leaf != first {
            break leaf;
        }
        assert!(tokio::time::Instant::now() < deadline, "never renewed");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(leaf_expiry(&second) > leaf_expiry(&first));
    assert!(pebble.orders() >= 2, "the renewal is an order");
    // And a few more on a connection with the new certificate.
    let mut renewed = h2(app.addr, &root).await;
    for _ in 0..3 {
        let data = format!("e{}", sent.len());
        renewed.publish("news", &data).await;
        sent.push(data);
    }

    // Every event, in order, on the stream opened before the renewal.
    for expected in &sent {
        assert_eq!(&events.next().await.data, expected);
    }
    assert!(
        expiry_metric(&app).unwrap() >= leaf_expiry(&second),
        "the metric follows the renewal"
    );
}

#[tokio::test]
async fn with_the_ca_down_and_no_certificate_handshakes_fail_it_logs_retries_and_recovers() {
    if !pebble_available() {
        return;
    }
    let mut pebble = Pebble::new();
    let cache = TempDir::new("cache");
    let cache_dir = cache.0.join("sub");
    let server = Binary::start(&[
        "--acme-domain",
        DOMAIN,
        "--acme-cache",
        cache_dir.to_str().unwrap(),
        "--acme-directory",
        &pebble.directory(),
        "--acme-ca",
        pebble.https.cert.to_str().unwrap(),
    ])
    .await;
    assert!(server.logged("no certificate in --acme-cache yet"));
    // The cache directory was created, owner only.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&cache_dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    // Orders fail and are retried after 1 s, 2 s…
    let deadline = tokio::time::Instant::now() + ISSUANCE;
    while !server.logged("failures=2") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a failed order is retried"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(server.logged("ACME order failed; TLS handshakes fail until a certificate is issued"));

    // No placeholder: a handshake fails, and the log says why.
    let any_root = Pair::new().der.clone();
    let refused = tokio::time::timeout(WAIT, connect(server.addr, &any_root, &[b"h2"]))
        .await
        .expect("the handshake ends in time");
    let error = refused.expect_err("no certificate yet").to_string();
    assert!(
        !error.contains("UnknownIssuer"),
        "no certificate at all: {error}"
    );
    let deadline = tokio::time::Instant::now() + WAIT;
    while !server.logged("TLS handshake refused: no certificate yet") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the refusal is logged"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The CA comes up: the next try gets a certificate.
    pebble.start(server.addr.port(), LONG).await;
    let root = pebble.root().await;
    wait_for_leaf(server.addr, &root, None, "a certificate once the CA is up").await;
    assert!(server.logged("ACME: certificate issued"));
    let mut client = h2(server.addr, &root).await;
    let response = client.send("GET", "/healthz", &[], "").await.unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn bad_acme_flags_are_startup_errors_that_change_nothing() {
    let dir = TempDir::new("flags");
    let cache = dir.0.join("cache");
    let pair = Pair::new();
    // The binary: clap's checks and herald's, with a non-zero exit.
    let cache_arg = cache.to_str().unwrap();
    let cases: [(&[&str], &str); 6] = [
        (
            &[
                "--acme-domain",
                DOMAIN,
                "--acme-cache",
                cache_arg,
                "--tls-cert",
                pair.cert.to_str().unwrap(),
                "--tls-key",
                pair.key.to_str().unwrap(),
            ],
            "--tls-cert",
        ),
        (&["--acme-domain", DOMAIN], "--acme-cache"),
        (
            &[
                "--acme-domain",
                "bad_name.example",
                "--acme-cache",
                cache_arg,
            ],
            "--acme-domain \"bad_name.example\": not a DNS name",
        ),
        (
            &["--acme-domain", "*.example.com", "--acme-cache", cache_arg],
            "wildcard",
        ),
        (
            &[
                "--acme-domain",
                DOMAIN,
                "--acme-cache",
                cache_arg,
                "--acme-directory",
                "http://127.0.0.1:1/dir",
            ],
            "https:// URL",
        ),
        (
            &[
                "--acme-domain",
                DOMAIN,
                "--acme-cache",
                cache_arg,
                "--acme-ca",
                pair.key.to_str().unwrap(),
            ],
            "--acme-ca",
        ),
    ];
    for (args, says) in cases {
        let output = tokio::process::Command::new(crate::helpers::herald_bin())
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(!cache.exists(), "{args:?} created the cache");
    }

    // The same checks for a configuration built in code.
    let error = startup_error(|c| {
        c.acme_domain = vec![DOMAIN.to_owned()];
        c.acme_cache = Some(cache.clone());
        c.tls_cert = Some(pair.cert.clone());
        c.tls_key = Some(pair.key.clone());
    })
    .await;
    assert!(error.contains("--acme-domain and --tls-cert"), "{error}");
    let error = startup_error(|c| c.acme_domain = vec![DOMAIN.to_owned()]).await;
    assert!(error.contains("--acme-cache"), "{error}");
    // A file where the cache directory should be.
    let error = startup_error(|c| {
        c.acme_domain = vec![DOMAIN.to_owned()];
        c.acme_cache = Some(pair.cert.clone());
    })
    .await;
    assert!(error.contains("--acme-cache"), "{error}");
    assert!(!cache.exists());
}

/// Whether `certutil` (Debian's libnss3-tools) is there to make chromium
/// trust a root; prints why not once, or panics under `CI=true`.
fn certutil_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        let found = Command::new("certutil")
            .arg("-H")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !found {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true: the ACME browser test needs certutil (apt-get install libnss3-tools)"
            );
            eprintln!("ACME browser test skipped: no certutil (apt-get install libnss3-tools)");
        }
        found
    })
}

/// A home directory whose NSS database (where chromium on Linux looks for
/// roots a user added) trusts `root` for websites.
fn home_trusting(root: &CertificateDer<'_>) -> TempDir {
    let home = TempDir::new("home");
    let nssdb = home.0.join(".pki/nssdb");
    std::fs::create_dir_all(&nssdb).unwrap();
    let root_file = home.0.join("root.der");
    std::fs::write(&root_file, root.as_ref()).unwrap();
    let db = format!("sql:{}", nssdb.display());
    let run = |args: &[&str]| {
        let output = Command::new("certutil").args(args).output().unwrap();
        assert!(
            output.status.success(),
            "certutil {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    run(&["-N", "--empty-password", "-d", &db]);
    run(&[
        "-A",
        "-d",
        &db,
        "-n",
        "pebble-root",
        "-t",
        "C,,",
        "-i",
        root_file.to_str().unwrap(),
    ]);
    home
}

#[tokio::test]
async fn chromium_trusting_the_ca_root_gets_events_over_h2_on_the_issued_certificate() {
    use crate::browser::{
        browser_available, browser_dir, chromium_path, one_browser_at_a_time, screenshot_dir,
    };
    if !pebble_available() || !browser_available() || !certutil_available() {
        return;
    }
    let _one = one_browser_at_a_time().await;
    let port = free_port();
    let mut pebble = Pebble::new();
    pebble.start(port, LONG).await;
    let root = pebble.root().await;
    let cache = TempDir::new("cache");
    let app = spawn_app_at(SocketAddr::from(([127, 0, 0, 1], port)), |c| {
        use_pebble(c, &pebble, &cache.0)
    })
    .await;
    wait_for_leaf(app.addr, &root, None, "a certificate is issued").await;

    // Chromium trusts Pebble's root (certificate errors are not ignored)
    // and resolves the name to loopback.
    let home = home_trusting(&root);
    let params = serde_json::json!({
        "trusted": true,
        "chromiumArgs": [format!("--host-resolver-rules=MAP {DOMAIN} 127.0.0.1")],
    });
    let run = tokio::process::Command::new("node")
        .arg(browser_dir().join("e2e.mjs"))
        .arg(format!("https://{DOMAIN}:{port}"))
        .arg("acme-h2")
        .arg(params.to_string())
        .current_dir(browser_dir())
        .env("HOME", &home.0)
        .env("CHROMIUM", chromium_path())
        .env("SCREENSHOT_DIR", screenshot_dir())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(240), run)
        .await
        .expect("the browser scenario ends")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let result: serde_json::Value = stdout
        .lines()
        .find_map(|l| l.strip_prefix("@@result "))
        .map(|r| serde_json::from_str(r).unwrap())
        .unwrap_or_else(|| {
            panic!(
                "no result from the scenario:\n{stdout}\n{}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
    assert_eq!(result["ok"], true, "{result}");
    assert_eq!(result["protocols"]["page"], "h2", "{result}");
    assert_eq!(result["protocols"]["publish"], "h2", "{result}");
    assert_eq!(
        result["opened"], 8,
        "more streams than HTTP/1.1 allows: {result}"
    );
}

#[tokio::test]
async fn a_failed_renewal_keeps_serving_the_current_certificate_and_says_so() {
    if !pebble_available() {
        return;
    }
    let mut pebble = Pebble::new();
    let cache = TempDir::new("cache");
    let server = Binary::start(&[
        "--acme-domain",
        DOMAIN,
        "--acme-cache",
        cache.0.to_str().unwrap(),
        "--acme-directory",
        &pebble.directory(),
        "--acme-ca",
        pebble.https.cert.to_str().unwrap(),
    ])
    .await;
    // Renewal due 20 s after issuance, 10 s before expiry.
    pebble
        .start(server.addr.port(), Duration::from_secs(30))
        .await;
    let root = pebble.root().await;
    let leaf = wait_for_leaf(server.addr, &root, None, "a certificate is issued").await;

    // The CA goes away before the renewal is due.
    pebble.stop();
    let deadline = tokio::time::Instant::now() + ISSUANCE;
    while !server.logged("ACME renewal failed; the current certificate is still served") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the failed renewal is logged"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let chain = served_chain(server.addr, &root)
        .await
        .expect("the current certificate is still served");
    assert_eq!(chain[0], leaf);
}

#[tokio::test]
async fn several_names_get_one_certificate_valid_for_each() {
    if !pebble_available() {
        return;
    }
    let port = free_port();
    let mut pebble = Pebble::new();
    pebble.start(port, LONG).await;
    let root = pebble.root().await;
    let cache = TempDir::new("cache");
    let names = [DOMAIN, "push.herald.test", "PUSH.herald.test"];
    let app = spawn_app_at(SocketAddr::from(([127, 0, 0, 1], port)), |c| {
        use_pebble(c, &pebble, &cache.0);
        c.acme_domain = names.iter().map(|n| n.to_string()).collect();
    })
    .await;
    let leaf = wait_for_leaf(app.addr, &root, None, "a certificate is issued").await;
    // Each name verifies against the one certificate (the third is the
    // second in other case: ordered once).
    for name in &names[..2] {
        let tls = tls_connect_as(name, app.addr, &root, &[b"h2"])
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            tls.get_ref().1.peer_certificates().unwrap()[0],
            leaf,
            "{name}"
        );
    }
    assert_eq!(pebble.orders(), 1);
}
