//! `--jwks-url`: a JWK Set fetched from an identity provider (SPEC §12),
//! at startup, then on a timer and when a token names a `kid` the set does
//! not hold.
//!
//! Only the startup fetch and [`Remote::fetch`] touch the network, and
//! never in a request: a request that meets an unknown `kid` asks the
//! refresher task for a fetch ([`Remote::refresh_for_unknown_kid`]) and waits
//! for that one fetch, with no lock held; the keys themselves are swapped in
//! whole by [`super::Auth`], so verifying stays a read of an `Arc`.
//!
//! - At most one fetch per [`UNKNOWN_KID_COOLDOWN`] is asked for by unknown
//!   `kid`s (the startup fetch does not count): forged `kid`s cannot flood
//!   the provider. A request that comes while such a fetch is under way waits
//!   for it (at most [`FETCH_TIMEOUT`] and a second); one that comes during
//!   the cooldown is refused at once, never queued.
//! - The timer refreshes every `--jwks-refresh`, or every `max-age` of the
//!   last answer when it says one between a minute and a day.
//! - A failed refresh keeps the keys in use (the caller counts and logs it).
//!
//! The HTTP client is reqwest over herald's rustls (ring), HTTP/1.1, trusting
//! the Mozilla roots of `webpki-roots` plus `--jwks-ca`; no cookies, at most
//! five redirects and each to a URL the same rule allows.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{ACCEPT, CACHE_CONTROL};
use reqwest::Url;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use super::keys::{self, Key};

/// The fewest seconds between two fetches asked for by unknown `kid`s.
pub const UNKNOWN_KID_COOLDOWN: Duration = Duration::from_secs(30);

/// The longest one fetch may take, connecting included.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest JWK Set accepted. A provider's set is a few KiB.
pub const MAX_SET_BYTES: usize = 1 << 20;

/// A `Cache-Control: max-age` is honoured between these bounds (SPEC §12).
const MAX_AGE_RANGE: std::ops::RangeInclusive<u64> = 60..=86_400;

/// After a failed refresh, the next try comes after at most this long.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(60);

/// A fetched and parsed set.
pub struct Fetched {
    pub keys: Vec<Key>,
    /// The answer's `max-age`, when it is one herald honours.
    pub max_age: Option<Duration>,
}

/// The provider of `--jwks-url`, and the state shared by the refresher task
/// and the requests that ask it for a fetch.
pub struct Remote {
    url: Url,
    client: reqwest::Client,
    /// `--jwks-refresh`.
    refresh: Duration,
    /// When the next timed refresh is due after the last fetch: `max-age` or
    /// `--jwks-refresh`. Set by the startup fetch, then by the refresher.
    interval: Mutex<Duration>,
    limiter: Mutex<Limiter>,
    /// Wakes the refresher for an unknown `kid`.
    kick: Notify,
    /// Counts finished fetches; a waiting request watches it.
    done: watch::Sender<u64>,
}

#[derive(Default)]
struct Limiter {
    /// When an unknown `kid` last asked for a fetch.
    last: Option<Instant>,
    /// Such a fetch was asked for and has not finished.
    pending: bool,
}

impl Remote {
    /// Checks the URL, builds the client, and fetches the set once. Any
    /// failure is a startup error naming the URL and the cause.
    pub fn start(
        url: &str,
        ca: Option<&Path>,
        refresh: Duration,
    ) -> Result<(Remote, Vec<Key>), String> {
        let url = allowed_url(url).map_err(|e| format!("--jwks-url {url}: {e}"))?;
        let tls = tls_config(ca)?;
        // The startup fetch runs on a runtime of its own (startup is not async
        // and may run inside the server's runtime); its client, and any
        // connection it opened, go with that runtime.
        let first = client(&url, tls.clone())?;
        let to = &url;
        let fetched = std::thread::scope(|s| {
            s.spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("cannot start a runtime: {e}"))?;
                runtime.block_on(fetch(&first, to))
            })
            .join()
            .unwrap_or_else(|_| Err("the startup fetch panicked".to_owned()))
        })
        .map_err(|e| format!("--jwks-url {url}: {e}"))?;
        let remote = Remote {
            client: client(&url, tls)?,
            url,
            refresh,
            interval: Mutex::new(fetched.max_age.unwrap_or(refresh)),
            limiter: Mutex::new(Limiter::default()),
            kick: Notify::new(),
            done: watch::Sender::new(0),
        };
        Ok((remote, fetched.keys))
    }

    pub fn url(&self) -> &Url {
        &self.url
    }

    /// Fetches the set now.
    pub async fn fetch(&self) -> Result<Fetched, String> {
        fetch(&self.client, &self.url).await
    }

    /// Until the next timed refresh.
    pub fn interval(&self) -> Duration {
        *self.interval.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A refresh succeeded: the next is due after its `max-age`, or
    /// `--jwks-refresh`.
    pub fn succeeded(&self, max_age: Option<Duration>) {
        self.set_interval(max_age.unwrap_or(self.refresh));
    }

    /// A refresh failed: the next try comes after `--jwks-refresh` or a
    /// minute, whichever is shorter.
    pub fn failed(&self) {
        self.set_interval(self.refresh.min(RETRY_AFTER_FAILURE));
    }

    fn set_interval(&self, next: Duration) {
        *self.interval.lock().unwrap_or_else(|e| e.into_inner()) = next;
    }

    /// Waits until the refresher is asked for a fetch, or `timer` passes.
    pub async fn kicked_or(&self, timer: Duration) {
        tokio::select! {
            () = self.kick.notified() => {}
            () = tokio::time::sleep(timer) => {}
        }
    }

    /// Tells the requests waiting on a fetch that it finished (whatever
    /// its result: the keys, if any, are already in place).
    pub fn finished(&self) {
        self.limiter
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pending = false;
        self.done.send_modify(|n| *n += 1);
    }

    /// A token named a `kid` the set does not hold: asks for a fetch unless
    /// one was asked for in the last [`UNKNOWN_KID_COOLDOWN`], and waits for
    /// the one asked for (by this request or an earlier one). True when a
    /// fetch finished meanwhile, so the token is worth checking again; false
    /// at once during the cooldown.
    pub async fn refresh_for_unknown_kid(&self) -> bool {
        // Watched before `pending` is read: a fetch that finishes after that
        // read bumps the count after this receiver saw it.
        let mut done = self.done.subscribe();
        {
            let mut limiter = self.limiter.lock().unwrap_or_else(|e| e.into_inner());
            if !limiter.pending {
                let now = Instant::now();
                if limiter
                    .last
                    .is_some_and(|last| now < last + UNKNOWN_KID_COOLDOWN)
                {
                    return false;
                }
                limiter.last = Some(now);
                limiter.pending = true;
                self.kick.notify_one();
            }
        }
        let wait = FETCH_TIMEOUT + Duration::from_secs(1);
        matches!(tokio::time::timeout(wait, done.changed()).await, Ok(Ok(())))
    }
}

/// `https://`, or `http://` to a loopback address only (the set decides who
/// may sign tokens: it must not be readable or changeable on the way).
fn allowed_url(raw: &str) -> Result<Url, String> {
    let url = Url::parse(raw).map_err(|e| format!("not a URL: {e}"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err("credentials in the URL would be logged; serve the set without them".into());
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        "http" => Err(
            "http:// is only allowed to a loopback address (127.0.0.1, ::1, localhost); \
             use https://"
                .into(),
        ),
        other => Err(format!(
            "`{other}:` is not https:// (or http:// to loopback)"
        )),
    }
}

fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let ip = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || ip
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The TLS settings of the fetch: ring, TLS 1.2 and 1.3, the Mozilla roots
/// and `--jwks-ca`.
fn tls_config(ca: Option<&Path>) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = ca {
        let fail = |why: String| format!("--jwks-ca {}: {why}", path.display());
        let mut added = 0;
        for cert in CertificateDer::pem_file_iter(path).map_err(|e| fail(e.to_string()))? {
            let cert = cert.map_err(|e| fail(e.to_string()))?;
            roots
                .add(cert)
                .map_err(|e| fail(format!("not a usable CA certificate: {e}")))?;
            added += 1;
        }
        if added == 0 {
            return Err(fail("no PEM certificate in the file".into()));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("--jwks-url: TLS settings: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

fn client(url: &Url, tls: rustls::ClientConfig) -> Result<reqwest::Client, String> {
    let redirects = reqwest::redirect::Policy::custom(|attempt| {
        if attempt.previous().len() >= 5 {
            attempt.error("more than 5 redirects")
        } else if let Err(why) = allowed_url(attempt.url().as_str()) {
            let to = attempt.url().to_string();
            attempt.error(format!("redirected to {to}: {why}"))
        } else {
            attempt.follow()
        }
    });
    let mut builder = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .user_agent(concat!("herald/", env!("CARGO_PKG_VERSION")))
        .timeout(FETCH_TIMEOUT)
        .connect_timeout(FETCH_TIMEOUT)
        // A fetch every few minutes: no connection is kept between them.
        .pool_max_idle_per_host(0)
        .redirect(redirects);
    // HTTPS_PROXY and the like apply, as with curl, except to loopback.
    if is_loopback(url) {
        builder = builder.no_proxy();
    }
    builder
        .build()
        .map_err(|e| format!("--jwks-url: cannot build the HTTP client: {}", chain(&e)))
}

/// One GET of the set: 200, at most [`MAX_SET_BYTES`], a JWK Set with a
/// usable key; else why not.
async fn fetch(client: &reqwest::Client, url: &Url) -> Result<Fetched, String> {
    let mut response = client
        .get(url.clone())
        .header(ACCEPT, "application/jwk-set+json, application/json")
        .send()
        .await
        .map_err(|e| format!("cannot fetch: {}", chain(&e.without_url())))?;
    let status = response.status();
    if status != reqwest::StatusCode::OK {
        return Err(format!("answered {status}, not 200"));
    }
    let max_age = response
        .headers()
        .get_all(CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(max_age);
    let mut body = Vec::new();
    loop {
        let chunk = response
            .chunk()
            .await
            .map_err(|e| format!("cannot read the answer: {}", chain(&e.without_url())))?;
        let Some(chunk) = chunk else { break };
        if body.len() + chunk.len() > MAX_SET_BYTES {
            return Err(format!("the answer is larger than {MAX_SET_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    let keys = keys::parse_set(&body)?;
    Ok(Fetched { keys, max_age })
}

/// The `max-age` of a `Cache-Control` value, when it is between a minute and
/// a day; others are ignored (`--jwks-refresh` applies).
fn max_age(value: &str) -> Option<Duration> {
    value.split(',').find_map(|directive| {
        let (name, seconds) = directive.trim().split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("max-age") {
            return None;
        }
        let seconds: u64 = seconds.trim().trim_matches('"').parse().ok()?;
        MAX_AGE_RANGE
            .contains(&seconds)
            .then(|| Duration::from_secs(seconds))
    })
}

/// An error and its causes, `: `-separated (reqwest's own message is terse:
/// the cause, such as "connection refused" or an untrusted certificate, is
/// in its sources).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    impl Remote {
        /// A provider never fetched from (for the limiter's test).
        fn unstarted() -> Remote {
            let url = allowed_url("http://127.0.0.1:9/jwks").unwrap();
            Remote {
                client: client(&url, tls_config(None).unwrap()).unwrap(),
                url,
                refresh: Duration::from_secs(300),
                interval: Mutex::new(Duration::from_secs(300)),
                limiter: Mutex::new(Limiter::default()),
                kick: Notify::new(),
                done: watch::Sender::new(0),
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn unknown_kids_ask_for_one_fetch_per_30_seconds_and_share_it() {
        let remote = Arc::new(Remote::unstarted());
        // What `refresh_jwks_url` does when kicked, minus the network: the
        // fetch takes a second, then the waiters are told.
        let kicks = Arc::new(AtomicUsize::new(0));
        let (r, k) = (remote.clone(), kicks.clone());
        tokio::spawn(async move {
            loop {
                r.kick.notified().await;
                k.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(1)).await;
                r.finished();
            }
        });
        // Ten requests at once: one fetch, all of them wait for it.
        let waits: Vec<_> = (0..10)
            .map(|_| {
                let remote = remote.clone();
                tokio::spawn(async move { remote.refresh_for_unknown_kid().await })
            })
            .collect();
        for wait in waits {
            assert!(wait.await.unwrap(), "each waited for the fetch");
        }
        assert_eq!(kicks.load(Ordering::SeqCst), 1);
        // Within 30 s of that ask: refused at once.
        let started = Instant::now();
        assert!(!remote.refresh_for_unknown_kid().await);
        assert_eq!(started.elapsed(), Duration::ZERO);
        tokio::time::advance(Duration::from_secs(28)).await;
        assert!(!remote.refresh_for_unknown_kid().await);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(remote.refresh_for_unknown_kid().await);
        assert_eq!(kicks.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn https_anywhere_and_http_to_loopback_only() {
        assert!(allowed_url("https://idp.example.com/.well-known/jwks.json").is_ok());
        assert!(allowed_url("http://127.0.0.1:8080/jwks").is_ok());
        assert!(allowed_url("http://127.8.9.1/jwks").is_ok());
        assert!(allowed_url("http://[::1]:9000/jwks").is_ok());
        assert!(allowed_url("http://localhost/jwks").is_ok());
        let plain = allowed_url("http://idp.example.com/jwks").unwrap_err();
        assert!(plain.contains("loopback"), "{plain}");
        assert!(allowed_url("http://10.0.0.1/jwks").is_err());
        assert!(allowed_url("http://localhost.example.com/jwks").is_err());
        assert!(allowed_url("ftp://idp.example.com/jwks").is_err());
        assert!(allowed_url("file:///etc/jwks.json").is_err());
        assert!(allowed_url("idp.example.com/jwks").is_err());
        assert!(allowed_url("https://user:pass@idp.example.com/jwks").is_err());
    }

    #[test]
    fn max_age_between_a_minute_and_a_day_is_honoured() {
        assert_eq!(max_age("max-age=300"), Some(Duration::from_secs(300)));
        assert_eq!(
            max_age("public, max-age=60, must-revalidate"),
            Some(Duration::from_secs(60))
        );
        assert_eq!(max_age("Max-Age=86400"), Some(Duration::from_secs(86_400)));
        assert_eq!(max_age("max-age=59"), None);
        assert_eq!(max_age("max-age=86401"), None);
        assert_eq!(max_age("no-store"), None);
        assert_eq!(max_age("max-age=soon"), None);
        assert_eq!(max_age("s-maxage=300"), None);
    }
}
