//! HTTPS: the certificate pair, read from PEM files, and its reload.
//!
//! [`Tls`] holds the current rustls `ServerConfig` (ALPN `h2` then
//! `http/1.1`, so browsers multiplex every EventSource of an origin over one
//! HTTP/2 connection). Each handshake takes the config current at that
//! moment; [`Tls::reload`] swaps in a new one built from the files, so
//! connections already open keep the session they negotiated and only new
//! handshakes see the new certificate. A pair that fails to load on reload
//! is refused with a log line and the old one stays.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

use crate::config::Config;

/// ALPN protocol ids, in the server's order of preference.
pub const ALPN_H2: &[u8] = b"h2";
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// The certificate files and the config built from them.
pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    /// The config new handshakes use. A std lock: read once per handshake
    /// (an `Arc` clone), written only on reload, never held across `.await`.
    current: RwLock<Arc<ServerConfig>>,
    /// When the leaf certificate of the current pair expires (Unix
    /// seconds), for `herald_tls_certificate_expiry_timestamp_seconds`.
    expiry: AtomicI64,
}

impl Tls {
    /// Reads `--tls-cert` and `--tls-key`, if both are set. An error names
    /// the file and says what is wrong with it.
    pub fn from_config(config: &Config) -> io::Result<Option<Tls>> {
        if config.h2c && config.tls_cert.is_some() {
            return Err(invalid(
                "--h2c is for a cleartext port; with --tls-cert, HTTP/2 is chosen by ALPN"
                    .to_owned(),
            ));
        }
        match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Tls::load(cert, key).map(Some),
            (None, None) => Ok(None),
            _ => Err(invalid(
                "--tls-cert and --tls-key go together: set both or neither".to_owned(),
            )),
        }
    }

    pub fn load(cert: &Path, key: &Path) -> io::Result<Tls> {
        let (config, expiry) = server_config(cert, key)?;
        Ok(Tls {
            cert: cert.to_owned(),
            key: key.to_owned(),
            current: RwLock::new(Arc::new(config)),
            expiry: AtomicI64::new(expiry),
        })
    }

    /// When the certificate new handshakes get expires, in Unix seconds.
    pub fn expiry(&self) -> i64 {
        self.expiry.load(Ordering::Relaxed)
    }

    /// An acceptor for one handshake, with the pair current now.
    pub fn acceptor(&self) -> TlsAcceptor {
        let config = self
            .current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        TlsAcceptor::from(config)
    }

    /// Rereads both files. On success new handshakes use the new pair; on
    /// failure the old pair stays and the error says why.
    pub fn reload(&self) -> io::Result<()> {
        let (config, expiry) = server_config(&self.cert, &self.key)?;
        let config = Arc::new(config);
        self.expiry.store(expiry, Ordering::Relaxed);
        *self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = config;
        Ok(())
    }
}

/// Builds the rustls config: ring, TLS 1.2 and 1.3, no client certificates,
/// ALPN h2 and http/1.1, and a key checked against the certificate; with
/// when the leaf certificate expires (Unix seconds).
fn server_config(cert: &Path, key: &Path) -> io::Result<(ServerConfig, i64)> {
    let chain = read_certs(cert)?;
    let expiry = not_after(&chain[0]).map_err(|why| {
        invalid(format!(
            "--tls-cert {}: the first certificate is not valid X.509: {why}",
            cert.display()
        ))
    })?;
    let private_key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        let why = pem_error(e)
            + &hint(
                key,
                "CERTIFICATE",
                "a certificate: is it the --tls-cert file?",
            );
        invalid(format!("--tls-key {}: {why}", key.display()))
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(format!("TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, private_key)
        .map_err(|e| {
            invalid(format!(
                "--tls-cert {} and --tls-key {} do not make a pair: {e}",
                cert.display(),
                key.display()
            ))
        })?;
    config.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP11.to_vec()];
    Ok((config, expiry))
}

/// The `notAfter` of a certificate, in Unix seconds.
pub fn not_after(cert: &CertificateDer<'_>) -> Result<i64, String> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, parsed) = X509Certificate::from_der(cert.as_ref()).map_err(|e| e.to_string())?;
    Ok(parsed.validity().not_after.timestamp())
}

fn read_certs(path: &Path) -> io::Result<Vec<CertificateDer<'static>>> {
    let fail = |e: rustls::pki_types::pem::Error| {
        let why = pem_error(e)
            + &hint(
                path,
                "PRIVATE KEY",
                "a private key: is it the --tls-key file?",
            );
        invalid(format!("--tls-cert {}: {why}", path.display()))
    };
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(fail)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(fail)?;
    if chain.is_empty() {
        return Err(fail(rustls::pki_types::pem::Error::NoItemsFound));
    }
    Ok(chain)
}

fn pem_error(e: rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    match e {
        Error::Io(e) => e.to_string(),
        Error::NoItemsFound => "no PEM section of the expected kind in this file".to_owned(),
        other => format!("not valid PEM ({other:?})"),
    }
}

/// What a PEM file that lacks the section wanted holds instead, when that
/// explains the mistake: an encrypted key (herald reads no passphrase), or
/// the other file of the pair (`other` is its PEM label).
fn hint(path: &Path, other: &str, holds: &str) -> String {
    let Ok(text) = std::fs::read_to_string(path) else {
        return String::new();
    };
    if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
        " (it holds an encrypted private key, and herald reads no passphrase: \
         decrypt it with `openssl pkey -in KEY -out PLAIN`)"
            .to_owned()
    } else if text.contains(&format!("-----BEGIN {other}-----"))
        || text.contains(&format!(" {other}-----"))
    {
        format!(" (it holds {holds})")
    } else {
        String::new()
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

/// Reloads `tls` on every SIGHUP (see [`crate::reload`]) until `state`
/// shuts down.
pub async fn reload_on_signal(tls: Arc<Tls>, state: Arc<crate::state::State>) {
    let mut reloads = state.reload.subscribe();
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => return,
            changed = reloads.changed() => if changed.is_err() { return },
        }
        match tls.reload() {
            Ok(()) => {
                state.metrics.tls_certificate_expires(tls.expiry());
                tracing::info!(
                    cert = %tls.cert.display(),
                    "TLS certificate reloaded; open connections keep theirs"
                )
            }
            Err(e) => tracing::error!(error = %e, "TLS reload refused; the old certificate stays"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path) -> (PathBuf, PathBuf) {
        let generated = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, generated.cert.pem()).unwrap();
        std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
        (cert, key)
    }

    fn current(tls: &Tls) -> Arc<ServerConfig> {
        tls.current.read().unwrap().clone()
    }

    #[test]
    fn h2c_or_a_lone_file_with_tls_is_a_startup_error() {
        let mut config = Config {
            tls_cert: Some("cert.pem".into()),
            ..Config::default()
        };
        let error = Tls::from_config(&config).err().unwrap().to_string();
        assert!(error.contains("go together"), "{error}");
        config.tls_key = Some("key.pem".into());
        config.h2c = true;
        let error = Tls::from_config(&config).err().unwrap().to_string();
        assert!(error.contains("--h2c"), "{error}");
    }

    #[test]
    fn a_bad_pair_on_reload_is_refused_and_the_old_config_stays() {
        let dir = std::env::temp_dir().join(format!("herald-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key) = write_pair(&dir);
        let tls = Tls::load(&cert, &key).unwrap();
        let before = current(&tls);
        assert_eq!(
            before.alpn_protocols,
            [b"h2".to_vec(), b"http/1.1".to_vec()]
        );

        std::fs::write(&key, "garbage").unwrap();
        let error = tls.reload().unwrap_err().to_string();
        assert!(
            error.contains("--tls-key") && error.contains("key.pem"),
            "{error}"
        );
        assert!(Arc::ptr_eq(&before, &current(&tls)), "the old config stays");

        write_pair(&dir);
        tls.reload().unwrap();
        assert!(
            !Arc::ptr_eq(&before, &current(&tls)),
            "a good pair is taken"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
