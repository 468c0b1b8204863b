//! Access control (SPEC §6): who may publish, who may read which channel,
//! and until when.
//!
//! - [`Auth`]: the server's keys and rules, built once from the flags. Its
//!   one job at request time is [`Auth::access`]: request in, [`Access`]
//!   out (or a 401). Routes call it before they touch the hub; the hub
//!   never sees a token.
//! - [`access`]: [`Access`] and its checks (`check_subscribe`,
//!   `check_publish`, `check_admin`), `sub`, `info`, `expires_at`.
//! - [`claims`]: the token's claims and the `herald` grants.
//! - [`keys`]: verification keys (secrets, PEM files, a JWK Set) and the
//!   verify function; signatures are checked by `jsonwebtoken`.
//! - [`remote`]: `--jwks-url`, the JWK Set fetched from a provider and
//!   refreshed by [`refresh_jwks_url`].
//! - [`token`]: where the token comes from (header, `token` query, cookie).
//! - [`mint`]: `herald token`, which signs tokens for tests and scripts.
//!
//! Nothing here logs a token, a query string or a cookie.

pub mod access;
pub mod claims;
pub mod keys;
pub mod mint;
pub mod remote;
pub mod token;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use http::request::Parts;
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;

pub use access::{Access, Denied, Policy};
use keys::{Checks, Key, Refusal};
use remote::Remote;
use token::Presented;

use crate::config::Config;
use crate::revocation::Revocations;

/// The configured keys and rules.
pub struct Auth {
    policy: Policy,
    /// `--publish-token`, each compared in constant time.
    publish_tokens: Vec<Box<[u8]>>,
    /// `--jwt-secret` and `--jwt-public-key` keys, then those of
    /// `--jwks-file`, then those of `--jwks-url`. Swapped whole when a JWK
    /// Set is reloaded; readers clone the `Arc` and drop the lock at once.
    keys: RwLock<Arc<[Key]>>,
    /// The keys that do not come from a JWK Set, kept for reloads.
    fixed: Vec<Key>,
    /// The sets in use, each kept to rebuild `keys` when the other changes.
    sets: Mutex<Sets>,
    jwks_file: Option<PathBuf>,
    /// `--jwks-url`.
    remote: Option<Remote>,
    checks: Checks,
    /// `--auth-cookie`.
    cookie: Option<String>,
    /// Revoked tokens (SPEC §11), shared with the hub that adds to them.
    revocations: Arc<Revocations>,
}

impl Auth {
    /// Builds the keys from the flags, reading the key files. Refuses
    /// configurations that cannot work: `--anonymous false` or
    /// `--auth-cookie` with no key, a cookie with a `*` CORS origin.
    pub fn from_config(config: &Config) -> Result<Auth, String> {
        let publish_tokens: Vec<Box<[u8]>> = config
            .publish_token
            .iter()
            .map(|t| t.expose().trim())
            .filter(|t| !t.is_empty())
            .map(|t| t.as_bytes().into())
            .collect();
        let mut fixed = Vec::new();
        for secret in config.jwt_secret.iter().map(|s| s.expose().trim()) {
            if !secret.is_empty() {
                fixed.push(Key::secret(secret.as_bytes())?);
            }
        }
        for path in &config.jwt_public_key {
            fixed.push(Key::pem(path).map_err(|e| format!("--jwt-public-key {e}"))?);
        }
        let mut sets = Sets::default();
        if let Some(path) = &config.jwks_file {
            sets.file = keys::jwks(path).map_err(|e| format!("--jwks-file {e}"))?;
        }
        let remote = match &config.jwks_url {
            Some(url) => {
                let (remote, keys) =
                    Remote::start(url, config.jwks_ca.as_deref(), config.jwks_refresh)?;
                tracing::info!(
                    url = remote.url().as_str(),
                    keys = keys.len(),
                    next = ?remote.interval(),
                    "fetched --jwks-url"
                );
                sets.url = keys;
                Some(remote)
            }
            None => None,
        };
        let all = sets.join(&fixed);
        let enabled = !publish_tokens.is_empty() || !all.is_empty();
        if !enabled && !config.anonymous {
            return Err(
                "--anonymous false needs a key: --publish-token, --jwt-secret, \
                        --jwt-public-key, --jwks-file or --jwks-url"
                    .into(),
            );
        }
        if let Some(cookie) = &config.auth_cookie {
            if !enabled {
                return Err(
                    "--auth-cookie needs a key: --jwt-secret, --jwt-public-key, \
                            --jwks-file or --jwks-url"
                        .into(),
                );
            }
            if cookie.is_empty() || !cookie.bytes().all(|b| b.is_ascii_graphic() && b != b'=') {
                return Err("--auth-cookie: not a cookie name".into());
            }
            if config.cors_origin.iter().any(|o| o.trim() == "*") {
                return Err(
                    "--auth-cookie needs an explicit --cors-origin list: browsers \
                            refuse credentials with a `*` origin"
                        .into(),
                );
            }
        }
        Ok(Auth {
            policy: Policy {
                enabled,
                anonymous: config.anonymous,
            },
            publish_tokens,
            keys: RwLock::new(all),
            fixed,
            sets: Mutex::new(sets),
            jwks_file: config.jwks_file.clone(),
            remote,
            checks: Checks {
                audience: config.jwt_audience.clone(),
                issuer: config.jwt_issuer.clone(),
            },
            cookie: config.auth_cookie.clone(),
            revocations: Arc::default(),
        })
    }

    /// Checks tokens against `revocations` (the hub's, which the log fills).
    pub fn with_revocations(mut self, revocations: Arc<Revocations>) -> Auth {
        self.revocations = revocations;
        self
    }

    /// Whether any key is configured.
    pub fn enabled(&self) -> bool {
        self.policy.enabled
    }

    /// Who this request is. Fails (401) only when a token was presented and
    /// refused; a request with no token is [`Access`] for nobody, which the
    /// checks then judge. With no key configured tokens are not read.
    ///
    /// Awaits only when a token names a `kid` that `--jwks-url`'s set does
    /// not hold, for the one refresh that asks for (see [`remote`]).
    pub async fn access(&self, req: &Parts) -> Result<Access, Denied> {
        if !self.policy.enabled {
            return Ok(Access::anonymous(self.policy));
        }
        let token = match token::find(req, self.cookie.as_deref()) {
            Presented::None => return Ok(Access::anonymous(self.policy)),
            Presented::Malformed => {
                tracing::debug!("token refused: Authorization is not `Bearer <token>`");
                return Err(Denied::Unauthorized { invalid: true });
            }
            Presented::Token(token) => token,
        };
        if self.is_publish_token(&token) {
            return Ok(Access::publish_token(self.policy));
        }
        match self.verify(&token).await {
            Ok(claims)
                if self.revocations.is_revoked(
                    claims.sub.as_deref(),
                    claims.jti.as_deref(),
                    claims.iat,
                ) =>
            {
                tracing::debug!("token refused: revoked");
                Err(Denied::Unauthorized { invalid: true })
            }
            Ok(claims) => Ok(Access::jwt(claims, self.policy)),
            Err(why) => {
                tracing::debug!(?why, "token refused");
                Err(Denied::Unauthorized { invalid: true })
            }
        }
    }

    /// Checks a JWT with the keys in use. A `kid` they do not hold, with
    /// `--jwks-url`, asks for a refresh (at most one per 30 s) and, once it
    /// finished, checks again with the keys it brought.
    async fn verify(&self, token: &str) -> Result<claims::Claims, Refusal> {
        let first = keys::verify(token, &self.keys(), &self.checks);
        match (&self.remote, first) {
            (Some(remote), Err(Refusal::UnknownKid)) => {
                if remote.refresh_for_unknown_kid().await {
                    keys::verify(token, &self.keys(), &self.checks)
                } else {
                    Err(Refusal::UnknownKid)
                }
            }
            (_, result) => result,
        }
    }

    /// The keys in use (the lock is held only to clone the `Arc`).
    fn keys(&self) -> Arc<[Key]> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces one of the sets and swaps in the joined keys.
    fn replace_set(&self, change: impl FnOnce(&mut Sets)) {
        let mut sets = self.sets.lock().unwrap_or_else(|e| e.into_inner());
        change(&mut sets);
        let all = sets.join(&self.fixed);
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = all;
    }

    /// Compares with every publish token, in constant time for tokens of
    /// the same length (only the length can leak).
    fn is_publish_token(&self, token: &str) -> bool {
        let mut found = subtle::Choice::from(0);
        for known in &self.publish_tokens {
            found |= known.ct_eq(token.as_bytes());
        }
        found.into()
    }

    /// Reads `--jwks-file` again. On failure the keys in use stay.
    pub fn reload_jwks(&self) -> Result<usize, String> {
        let Some(path) = &self.jwks_file else {
            return Ok(0);
        };
        let loaded = keys::jwks(path)?;
        let count = loaded.len();
        self.replace_set(|sets| sets.file = loaded);
        Ok(count)
    }
}

/// The keys of the JWK Sets in use.
#[derive(Default)]
struct Sets {
    /// `--jwks-file`.
    file: Vec<Key>,
    /// `--jwks-url`, as last fetched.
    url: Vec<Key>,
}

impl Sets {
    /// `fixed`, then the file's keys, then the URL's.
    fn join(&self, fixed: &[Key]) -> Arc<[Key]> {
        fixed
            .iter()
            .chain(&self.file)
            .chain(&self.url)
            .cloned()
            .collect()
    }
}

/// Refreshes `--jwks-url`'s set until shutdown: on its timer (`max-age` or
/// `--jwks-refresh`) and when a request met an unknown `kid`. A failed
/// refresh keeps the keys in use, says why in the log and counts in
/// `failures` (`herald_jwks_refresh_failures_total`).
pub async fn refresh_jwks_url(
    auth: Arc<Auth>,
    failures: prometheus::IntCounter,
    shutdown: CancellationToken,
) {
    let Some(remote) = &auth.remote else {
        return;
    };
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = remote.kicked_or(remote.interval()) => {}
        }
        let url = remote.url().as_str();
        let fetched = tokio::select! {
            () = shutdown.cancelled() => return,
            fetched = remote.fetch() => fetched,
        };
        match fetched {
            Ok(fetched) => {
                let keys = fetched.keys.len();
                remote.succeeded(fetched.max_age);
                auth.replace_set(|sets| sets.url = fetched.keys);
                tracing::debug!(url, keys, next = ?remote.interval(), "refreshed --jwks-url");
            }
            Err(why) => {
                remote.failed();
                failures.inc();
                tracing::warn!(
                    url,
                    error = %why,
                    "--jwks-url not refreshed; keeping the keys in use"
                );
            }
        }
        remote.finished();
    }
}

/// Reloads the JWK Set on every SIGHUP until shutdown (only when
/// `--jwks-file` is set).
pub async fn reload_on_sighup(auth: Arc<Auth>, shutdown: CancellationToken) {
    if auth.jwks_file.is_none() {
        return;
    }
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(hup) => hup,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP: --jwks-file will not reload");
                return;
            }
        };
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                got = hup.recv() => if got.is_none() { return },
            }
            match auth.reload_jwks() {
                Ok(keys) => tracing::info!(keys, "reloaded --jwks-file"),
                Err(e) => {
                    tracing::warn!(error = %e, "--jwks-file not reloaded; keeping the keys in use")
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = shutdown;
}
