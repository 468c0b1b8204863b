//! Automatic HTTPS (SPEC §13): the certificate comes from an ACME CA
//! (RFC 8555) and is renewed in the background.
//!
//! The ACME protocol, the TLS-ALPN-01 challenge certificate (RFC 8737) and
//! the renewal timer are the `rustls-acme` crate's; herald adds the flags,
//! the cache directory, the logs and the expiry metric:
//!
//! - One rustls `ServerConfig` serves everything. Its certificate resolver
//!   is rustls-acme's: for a ClientHello that offers only `acme-tls/1` (the
//!   CA validating a challenge) it answers with the challenge certificate,
//!   for any other the current certificate, and before the first one is
//!   issued nothing, so the handshake fails (no placeholder). Its ALPN list
//!   is `h2`, `http/1.1`, `acme-tls/1`: browsers never offer the last, and a
//!   connection that negotiated it is closed once the handshake is done
//!   (see [`super::connection`]).
//! - A renewal swaps the certificate inside the resolver: new handshakes get
//!   the new one, open connections keep the session they negotiated, so no
//!   stream is dropped.
//! - [`start`] polls rustls-acme's state (it spawns no task of its own):
//!   it loads the cache, orders when there is no certificate, sleeps until
//!   two thirds of the lifetime has passed, renews, and retries a failed
//!   order after 1, 2, 4… s (at most 2^16 s).
//! - The cache (`--acme-cache`, mode 0700, files 0600, written to a temporary
//!   file and renamed) is checked before serving: a file that cannot be read
//!   or parsed is a startup error, never a silent new order against the CA's
//!   rate limits.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use rustls_acme::acme::ACME_TLS_ALPN_NAME;
use rustls_acme::{AccountCache, AcmeConfig, AcmeState, CertCache, EventError, EventOk};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::tls::{ALPN_H2, ALPN_HTTP11};
use crate::config::Config;
use crate::metrics::Metrics;

/// Let's Encrypt's production directory, the default of `--acme-directory`.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt's staging directory (`--acme-staging`).
pub const LETS_ENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// The ALPN id of a TLS-ALPN-01 validation connection.
pub const ALPN_ACME: &[u8] = ACME_TLS_ALPN_NAME;

/// The longest wait between two tries of a failed order (rustls-acme's).
const MAX_BACKOFF_EXPONENT: u32 = 16;

/// How often, at most, a refused handshake before the first certificate
/// is logged.
const REFUSAL_LOG_EVERY: i64 = 10;

/// The longest serving waits for the cached certificate to be deployed.
const CACHE_LOAD: Duration = Duration::from_secs(2);

/// The rustls-acme state machine with herald's cache.
pub type Driver = AcmeState<io::Error, io::Error>;

/// The TLS side of ACME: the config every handshake uses.
pub struct Acme {
    config: Arc<ServerConfig>,
    domains: Vec<String>,
    /// A certificate was in the cache at startup.
    cached: bool,
    /// Set once a certificate (cached or new) is served.
    serving: AtomicBool,
    /// When a refused handshake was last logged (Unix seconds).
    refusal_logged: AtomicI64,
}

impl Acme {
    /// Checks the `--acme-*` flags and the cache directory; `None` without
    /// `--acme-domain`. The driver must be run (see [`start`]) for a
    /// certificate to be ordered and renewed.
    pub fn from_config(
        config: &Config,
        metrics: &Arc<Metrics>,
    ) -> io::Result<Option<(Acme, Driver)>> {
        if config.acme_domain.is_empty() {
            return Ok(None);
        }
        if config.tls_cert.is_some() || config.tls_key.is_some() {
            return Err(invalid(
                "--acme-domain and --tls-cert do not go together: either herald obtains its \
                 certificate from the ACME CA, or it serves the files"
                    .to_owned(),
            ));
        }
        if config.h2c {
            return Err(invalid(
                "--h2c is for a cleartext port; with --acme-domain, HTTP/2 is chosen by ALPN"
                    .to_owned(),
            ));
        }
        let Some(cache_dir) = &config.acme_cache else {
            return Err(invalid(
                "--acme-domain needs --acme-cache DIR (where the account key and the \
                 certificates are kept, so a restart orders nothing)"
                    .to_owned(),
            ));
        };
        let mut domains: Vec<String> = Vec::with_capacity(config.acme_domain.len());
        for name in &config.acme_domain {
            // A name given twice is ordered once.
            let name = domain_name(name)?;
            if !domains.contains(&name) {
                domains.push(name);
            }
        }
        let directory = match (&config.acme_directory, config.acme_staging) {
            (Some(_), true) => {
                return Err(invalid(
                    "--acme-staging picks Let's Encrypt's staging directory: \
                     not with --acme-directory"
                        .to_owned(),
                ))
            }
            (Some(url), false) => directory_url(url)?,
            (None, true) => LETS_ENCRYPT_STAGING.to_owned(),
            (None, false) => LETS_ENCRYPT.to_owned(),
        };
        let contact = match &config.acme_email {
            Some(email) => vec![format!("mailto:{}", email_address(email)?)],
            None => Vec::new(),
        };
        let client = client_config(config.acme_ca.as_deref())?;

        let cache = Cache::open(cache_dir, metrics.clone())?;
        let cached = cache.check(&domains, &contact, &directory)?;
        match &cached {
            Some(expiry) => {
                metrics.tls_certificate_expires(*expiry);
                info!(
                    domains = %domains.join(","),
                    expires = %rfc3339(*expiry),
                    "ACME: serving the certificate from --acme-cache"
                );
            }
            None => warn!(
                domains = %domains.join(","),
                %directory,
                "ACME: no certificate in --acme-cache yet; ordering one. \
                 TLS handshakes fail until the CA has issued it"
            ),
        }

        let mut acme =
            AcmeConfig::new_with_client_config(&domains, Arc::new(client)).directory(&directory);
        for contact in &contact {
            acme = acme.contact_push(contact);
        }
        let driver = acme.cache(cache).state();

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut server = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid(format!("TLS: {e}")))?
            .with_no_client_auth()
            .with_cert_resolver(driver.resolver());
        server.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP11.to_vec(), ALPN_ACME.to_vec()];
        let acme = Acme {
            config: Arc::new(server),
            domains,
            cached: cached.is_some(),
            serving: AtomicBool::new(false),
            refusal_logged: AtomicI64::new(0),
        };
        Ok(Some((acme, driver)))
    }

    /// An acceptor for one handshake.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.config.clone())
    }

    /// Notes a failed handshake: before the first certificate, says why
    /// (at most every [`REFUSAL_LOG_EVERY`] seconds).
    pub fn handshake_failed(&self) {
        if self.serving.load(Ordering::Relaxed) {
            return;
        }
        let now = unix_now();
        let last = self.refusal_logged.load(Ordering::Relaxed);
        if now - last >= REFUSAL_LOG_EVERY
            && self
                .refusal_logged
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            warn!(
                domains = %self.domains.join(","),
                "TLS handshake refused: no certificate yet, the ACME order has not completed"
            );
        }
    }
}

/// Starts the ACME state machine: with a cached certificate, returns once
/// it is served (so the first handshake already gets it), then runs the
/// rest in a task of its own until `shutdown`: ordering, renewing,
/// retrying, logging each step.
pub async fn start(driver: Driver, acme: Arc<Acme>, shutdown: CancellationToken) {
    let mut driver = Box::pin(driver);
    let mut failures: u32 = 0;
    if acme.cached {
        // The cache was read and checked a moment ago, so the first event
        // is the cached certificate deployed at once. (Had the file
        // vanished since, it would be an order's first step: serving does
        // not wait for that.)
        if let Ok(Some(event)) = tokio::time::timeout(CACHE_LOAD, driver.next()).await {
            on_event(&acme, &mut failures, event);
        }
    }
    tokio::spawn(async move {
        loop {
            let event = tokio::select! {
                () = shutdown.cancelled() => return,
                event = driver.next() => match event {
                    Some(event) => event,
                    None => return,
                },
            };
            on_event(&acme, &mut failures, event);
        }
    });
}

/// Logs one step of the state machine. `failures` counts failed orders in
/// a row, to say when the next try comes (rustls-acme waits 2^n s after
/// the n-th, n from 0 and at most 16).
fn on_event(acme: &Acme, failures: &mut u32, event: rustls_acme::Event<io::Error, io::Error>) {
    match event {
        Ok(EventOk::DeployedCachedCert) => {
            acme.serving.store(true, Ordering::Relaxed);
        }
        Ok(EventOk::DeployedNewCert) => {
            *failures = 0;
            let renewal = if acme.serving.swap(true, Ordering::Relaxed) {
                "renewed"
            } else {
                "issued"
            };
            info!(
                domains = %acme.domains.join(","),
                "ACME: certificate {renewal}; new handshakes get it, open connections keep theirs"
            );
        }
        Ok(EventOk::CertCacheStore) => debug!("ACME: certificate saved in --acme-cache"),
        Ok(EventOk::AccountCacheStore) => info!("ACME: account key saved in --acme-cache"),
        Err(EventError::Order(e)) => {
            let retry = Duration::from_secs(1 << (*failures).min(MAX_BACKOFF_EXPONENT));
            *failures += 1;
            let what = if acme.serving.load(Ordering::Relaxed) {
                "ACME renewal failed; the current certificate is still served"
            } else {
                "ACME order failed; TLS handshakes fail until a certificate is issued"
            };
            warn!(
                error = %e,
                failures = *failures,
                retry_in = %humantime::format_duration(retry),
                "{what}"
            );
        }
        Err(e) => error!(error = %e, "ACME: {e}"),
    }
}

/// `--acme-cache`: one file for the account key (per contact and
/// directory), one for the certificate and its key (per domain list and
/// directory), so changing either starts afresh instead of reusing a
/// mismatched file.
struct Cache {
    dir: PathBuf,
    metrics: Arc<Metrics>,
}

impl Cache {
    /// Creates the directory (mode 0700) if needed and checks it can be
    /// read and written.
    fn open(dir: &Path, metrics: Arc<Metrics>) -> io::Result<Cache> {
        let fail = |what: &str, e: io::Error| {
            io::Error::new(
                e.kind(),
                format!("--acme-cache {}: {what}: {e}", dir.display()),
            )
        };
        if !dir.exists() {
            let mut builder = fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            builder
                .create(dir)
                .map_err(|e| fail("cannot create it", e))?;
        }
        fs::read_dir(dir).map_err(|e| fail("cannot read it", e))?;
        #[cfg(unix)]
        if let Ok(meta) = fs::metadata(dir) {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                warn!(
                    dir = %dir.display(),
                    mode = %format!("{mode:o}"),
                    "--acme-cache is open to other users; herald writes its keys 0600, \
                     but `chmod 700` the directory to keep even their names private"
                );
            }
        }
        let probe = dir.join(".herald-write-check");
        write_private(&probe, b"").map_err(|e| fail("cannot write in it", e))?;
        let _ = fs::remove_file(&probe);
        Ok(Cache {
            dir: dir.to_owned(),
            metrics,
        })
    }

    fn cert_path(&self, domains: &[String], directory: &str) -> PathBuf {
        self.dir
            .join(format!("certificate-{}.pem", digest(domains, directory)))
    }

    fn account_path(&self, contact: &[String], directory: &str) -> PathBuf {
        self.dir
            .join(format!("account-{}.key", digest(contact, directory)))
    }

    /// Checks the files this configuration would use; the certificate's
    /// expiry (Unix seconds) if one is cached.
    fn check(
        &self,
        domains: &[String],
        contact: &[String],
        directory: &str,
    ) -> io::Result<Option<i64>> {
        let account = self.account_path(contact, directory);
        if let Some(key) = read_if_present(&account)? {
            account_key(&key).map_err(|why| corrupt(&account, &why))?;
        }
        let cert = self.cert_path(domains, directory);
        match read_if_present(&cert)? {
            Some(pem) => {
                let expiry = certificate_expiry(&pem).map_err(|why| corrupt(&cert, &why))?;
                Ok(Some(expiry))
            }
            None => Ok(None),
        }
    }
}

#[async_trait::async_trait]
impl CertCache for Cache {
    type EC = io::Error;

    async fn load_cert(
        &self,
        domains: &[String],
        directory_url: &str,
    ) -> io::Result<Option<Vec<u8>>> {
        read_if_present(&self.cert_path(domains, directory_url))
    }

    async fn store_cert(
        &self,
        domains: &[String],
        directory_url: &str,
        cert: &[u8],
    ) -> io::Result<()> {
        match certificate_expiry(cert) {
            Ok(expiry) => {
                self.metrics.tls_certificate_expires(expiry);
                info!(expires = %rfc3339(expiry), "ACME: the served certificate expires then");
            }
            Err(why) => warn!(why, "ACME: cannot read the new certificate's expiry"),
        }
        write_private(&self.cert_path(domains, directory_url), cert)
    }
}

#[async_trait::async_trait]
impl AccountCache for Cache {
    type EA = io::Error;

    async fn load_account(
        &self,
        contact: &[String],
        directory_url: &str,
    ) -> io::Result<Option<Vec<u8>>> {
        read_if_present(&self.account_path(contact, directory_url))
    }

    async fn store_account(
        &self,
        contact: &[String],
        directory_url: &str,
        account: &[u8],
    ) -> io::Result<()> {
        write_private(&self.account_path(contact, directory_url), account)
    }
}

/// A file's bytes, `None` if there is no such file; any other failure
/// (permissions, a directory in its place) is an error naming it.
fn read_if_present(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("--acme-cache: cannot read {}: {e}", path.display()),
        )),
    }
}

/// Writes `bytes` to `path` readable by the owner only, all or nothing: a
/// temporary file, synced, then renamed over it.
fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let temporary = path.with_extension("tmp");
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&temporary, path)?;
    if let Some(dir) = path.parent() {
        // The rename itself survives a crash once the directory is synced.
        if let Ok(dir) = fs::File::open(dir) {
            let _ = dir.sync_all();
        }
    }
    Ok(())
}

fn corrupt(path: &Path, why: &str) -> io::Error {
    invalid(format!(
        "--acme-cache: {} is corrupt ({why}). herald does not order a new certificate by itself \
         (the CA limits how many it issues); move the file away to order one",
        path.display()
    ))
}

/// The account key as rustls-acme stores it: PKCS#8, ECDSA P-256.
fn account_key(der: &[u8]) -> Result<(), String> {
    let rng = ring::rand::SystemRandom::new();
    ring::signature::EcdsaKeyPair::from_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        der,
        &rng,
    )
    .map(|_| ())
    .map_err(|e| format!("not a PKCS#8 ECDSA P-256 key: {e}"))
}

/// A cached certificate as rustls-acme stores it (its private key, then the
/// chain, PEM): checks both and returns the leaf's expiry (Unix seconds).
fn certificate_expiry(pem: &[u8]) -> Result<i64, String> {
    let key = PrivateKeyDer::from_pem_slice(pem).map_err(|e| format!("no private key: {e:?}"))?;
    rustls::crypto::ring::sign::any_ecdsa_type(&key)
        .map_err(|e| format!("the private key is not usable: {e}"))?;
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not valid PEM: {e:?}"))?;
    let leaf = chain.first().ok_or("no certificate")?;
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| format!("the certificate does not parse: {e}"))?;
    Ok(parsed.validity().not_after.timestamp())
}

/// A file name part for a list of names and a directory URL.
fn digest(names: &[String], directory: &str) -> String {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    for name in names {
        context.update(name.as_bytes());
        context.update(b"\0");
    }
    context.update(directory.as_bytes());
    context
        .finish()
        .as_ref()
        .iter()
        .take(12)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A name a CA can validate with TLS-ALPN-01: a DNS name of at least two
/// labels of letters, digits and inner hyphens (lowercased). No wildcard
/// (that needs DNS-01) and no IP address.
fn domain_name(name: &str) -> io::Result<String> {
    let bad = |why: &str| invalid(format!("--acme-domain {name:?}: {why}"));
    let name = name.to_ascii_lowercase();
    if name.starts_with("*.") {
        return Err(bad(
            "a wildcard needs the DNS-01 challenge; herald answers TLS-ALPN-01, so name each host",
        ));
    }
    if name.parse::<std::net::IpAddr>().is_ok() {
        return Err(bad("an IP address; a DNS name is needed"));
    }
    if name.is_empty() || name.len() > 253 {
        return Err(bad("a DNS name is 1 to 253 characters"));
    }
    let labels: Vec<&str> = name.split('.').collect();
    if labels.len() < 2 {
        return Err(bad(
            "a CA issues only for a name with a dot, such as push.example.com",
        ));
    }
    for label in labels {
        let valid = (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !valid {
            return Err(bad(
                "not a DNS name (labels of 1 to 63 letters, digits and inner hyphens, \
                 separated by dots; an internationalized name goes in its xn-- form)",
            ));
        }
    }
    Ok(name)
}

fn directory_url(url: &str) -> io::Result<String> {
    let valid = url
        .strip_prefix("https://")
        .is_some_and(|rest| !rest.is_empty() && !rest.contains(char::is_whitespace));
    if valid {
        Ok(url.to_owned())
    } else {
        Err(invalid(format!(
            "--acme-directory {url:?}: an ACME directory is an https:// URL"
        )))
    }
}

fn email_address(email: &str) -> io::Result<&str> {
    let valid = email
        .split_once('@')
        .is_some_and(|(user, host)| !user.is_empty() && host.contains('.') && !host.contains('@'))
        && !email.contains(|c: char| c.is_whitespace() || c == ',' || c.is_control());
    if valid {
        Ok(email)
    } else {
        Err(invalid(format!(
            "--acme-email {email:?}: not an e-mail address"
        )))
    }
}

/// The client side of the talk to the CA: the usual web roots, and
/// `--acme-ca` if given.
fn client_config(extra_root: Option<&Path>) -> io::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = extra_root {
        let fail = |why: String| invalid(format!("--acme-ca {}: {why}", path.display()));
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| fail(format!("{e:?}")))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| fail(format!("not valid PEM ({e:?})")))?;
        if certs.is_empty() {
            return Err(fail("no CERTIFICATE in this file".to_owned()));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| fail(format!("not a usable root: {e}")))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn rfc3339(unix_seconds: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_secs(unix_seconds.max(0) as u64);
    humantime::format_rfc3339_seconds(at).to_string()
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_names_are_checked() {
        assert_eq!(domain_name("Push.Example.com").unwrap(), "push.example.com");
        assert_eq!(domain_name("a-b.example").unwrap(), "a-b.example");
        for bad in [
            "",
            "localhost",
            "*.example.com",
            "127.0.0.1",
            "-a.example.com",
            "a-.example.com",
            "a..example.com",
            "a_b.example.com",
            "exa mple.com",
            "example.com.",
            "https://example.com",
        ] {
            let error = domain_name(bad).unwrap_err().to_string();
            assert!(error.contains("--acme-domain"), "{bad}: {error}");
        }
        let long = format!("{}.com", "a".repeat(64));
        assert!(domain_name(&long).is_err());
    }

    #[test]
    fn directory_and_email_are_checked() {
        assert!(directory_url("https://127.0.0.1:14000/dir").is_ok());
        assert!(directory_url("http://example.com/dir").is_err());
        assert!(directory_url("example.com").is_err());
        assert!(email_address("ops@example.com").is_ok());
        for bad in [
            "ops",
            "ops@",
            "@example.com",
            "a,b@example.com",
            "a b@example.com",
        ] {
            assert!(email_address(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_corrupt_certificate_or_account_key_is_refused() {
        assert!(certificate_expiry(b"garbage").is_err());
        assert!(account_key(b"garbage").is_err());
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["a.example".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let pem = format!("{}\n{}", key.serialize_pem(), cert.pem());
        assert!(certificate_expiry(pem.as_bytes()).unwrap() > unix_now());
        assert!(account_key(&key.serialize_der()).is_ok());
        // A chain without its key, or a key without a chain.
        assert!(certificate_expiry(cert.pem().as_bytes()).is_err());
        assert!(certificate_expiry(key.serialize_pem().as_bytes()).is_err());
    }
}
