//! Configuration: one typed struct, parsed from flags and `HERALD_*`
//! environment variables, passed whole to [`crate::run`].
//!
//! The defaults live only in the `#[arg]` attributes below, so `--help` and
//! [`Config::default`] cannot disagree; the flag table in
//! `docs/operations.md` is checked against `--help` by hand.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Parser, Subcommand, ValueEnum};

use crate::history::HistoryLimits;
use crate::hub::presence::PresenceConfig;
use crate::hub::HubConfig;

pub mod file;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "herald",
    version,
    about = "A self-hosted Server-Sent Events push server.",
    long_about = "A self-hosted Server-Sent Events push server.\n\n\
        Subscribe: curl -N http://127.0.0.1:8080/events/news\n\
        Publish:   curl -d hello http://127.0.0.1:8080/publish/news\n\n\
        Every flag can also be set by the environment variable shown; a flag \
        on the command line wins over its variable. Give secrets (--publish-token, \
        --jwt-secret) as environment variables: `ps` shows command lines to every user.",
    args_conflicts_with_subcommands = true
)]
pub struct Config {
    /// `herald token` signs a JWT instead of serving.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Read settings from this TOML file, one key per flag (`heartbeat = "15s"`);
    /// the command line and the environment win over it. See docs/config.md.
    #[arg(long, env = "HERALD_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Address to listen on.
    #[arg(long, env = "HERALD_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Reconnection delay sent to clients in the `retry:` field.
    #[arg(long, env = "HERALD_RETRY", default_value = "3s", value_parser = duration)]
    pub retry: Duration,

    /// Write a comment on a stream when nothing else was written for this long.
    #[arg(long, env = "HERALD_HEARTBEAT", default_value = "15s", value_parser = positive_duration)]
    pub heartbeat: Duration,

    /// Send each heartbeat as an event (`event: herald.heartbeat`, `data: {}`, no id)
    /// instead of a comment, for clients whose watchdog only sees events.
    #[arg(long, env = "HERALD_HEARTBEAT_EVENT", action = clap::ArgAction::SetTrue, value_parser = clap::builder::BoolishValueParser::new())]
    pub heartbeat_event: bool,

    /// Events each channel retains for replay.
    #[arg(long, env = "HERALD_HISTORY", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub history: u32,

    /// Event data each channel retains for replay (bytes, or with KiB/MiB/GiB);
    /// the newest event is always retained.
    #[arg(long, env = "HERALD_HISTORY_BYTES", default_value = "1MiB", value_parser = byte_size)]
    pub history_bytes: usize,

    /// Drop events older than this from every channel's history (default: no age limit).
    #[arg(long, env = "HERALD_HISTORY_AGE", value_parser = positive_duration)]
    pub history_age: Option<Duration>,

    /// Keep every channel's history in this directory so it survives restarts and crashes
    /// (default: in memory only).
    #[arg(long, env = "HERALD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// With --data-dir: `batch` answers a publish once it is on disk (fdatasync, shared by
    /// concurrent publishes); `off` answers after the write (survives a crash of herald, not a
    /// power loss).
    #[arg(long, env = "HERALD_FSYNC", default_value = "batch")]
    pub fsync: Fsync,

    /// With --data-dir: size at which the log starts a new segment file (bytes, or with KiB/MiB/GiB).
    #[arg(long, env = "HERALD_SEGMENT_BYTES", default_value = "64MiB", value_parser = byte_size)]
    pub segment_bytes: usize,

    /// Drop a channel and its history after this long with no subscriber and no publish.
    #[arg(long, env = "HERALD_CHANNEL_TTL", default_value = "1h", value_parser = positive_duration)]
    pub channel_ttl: Duration,

    /// Most channels held at once; past it, new channels are refused.
    #[arg(long, env = "HERALD_MAX_CHANNELS", default_value_t = 10000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_channels: u32,

    /// Most open TCP connections; past it, subscribes get a retry-later stream and other requests 503.
    #[arg(long, env = "HERALD_MAX_CONNECTIONS", default_value_t = 10000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// Most concurrent streams (requests, event streams included) on one HTTP/2 connection.
    #[arg(long, env = "HERALD_MAX_STREAMS_PER_CONNECTION", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_streams_per_connection: u32,

    /// Largest event data accepted by a publish (bytes, or with KiB/MiB).
    #[arg(long, env = "HERALD_MAX_EVENT_BYTES", default_value = "65536", value_parser = byte_size)]
    pub max_event_bytes: usize,

    /// Largest body accepted by a batch publish (bytes, or with KiB/MiB).
    #[arg(long, env = "HERALD_MAX_BATCH_BYTES", default_value = "1MiB", value_parser = byte_size)]
    pub max_batch_bytes: usize,

    /// How long a publish's Idempotency-Key is kept with its answer: a retry
    /// with the same key and request within it gets the first answer and
    /// publishes nothing (0 turns keys off).
    #[arg(long, env = "HERALD_IDEMPOTENCY_WINDOW", default_value = "10m", value_parser = duration)]
    pub idempotency_window: Duration,

    /// Most idempotency keys this node keeps in memory (about 270 bytes
    /// each); past it a publish with a new key gets 503 until keys expire.
    /// With --redis the keys live in Redis and this bounds only those in
    /// flight.
    #[arg(long, env = "HERALD_IDEMPOTENCY_MAX_KEYS", default_value_t = 1_000_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub idempotency_max_keys: u32,

    /// Live events a subscriber may fall behind before it is caught up from history.
    #[arg(long, env = "HERALD_STREAM_BUFFER", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub stream_buffer: u32,

    /// Disconnect a client that has not sent all its request headers by then.
    #[arg(long, env = "HERALD_HEADER_TIMEOUT", default_value = "10s", value_parser = positive_duration)]
    pub header_timeout: Duration,

    /// Answer 408 to a client that has not sent its whole request body by then.
    #[arg(long, env = "HERALD_BODY_TIMEOUT", default_value = "30s", value_parser = positive_duration)]
    pub body_timeout: Duration,

    /// On a presence channel, announce a member's leave after it has had no
    /// open stream for this long (a page reload or reconnect announces nothing).
    #[arg(long, env = "HERALD_PRESENCE_GRACE", default_value = "10s", value_parser = duration)]
    pub presence_grace: Duration,

    /// Above this many members a presence channel stops announcing joins and
    /// leaves, and its snapshot lists only this many.
    #[arg(long, env = "HERALD_PRESENCE_MAX_MEMBERS", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub presence_max_members: u32,

    /// Close a connection whose peer has not acknowledged anything for this
    /// long (TCP keepalive and TCP_USER_TIMEOUT on accepted sockets): a client
    /// that vanished without closing leaves within about `--heartbeat` plus
    /// this. `0s` keeps the system defaults (hours).
    #[arg(long, env = "HERALD_DEAD_PEER_TIMEOUT", default_value = "60s", value_parser = duration)]
    pub dead_peer_timeout: Duration,

    /// On SIGINT/SIGTERM, wait at most this long for open requests before exiting.
    #[arg(long, env = "HERALD_SHUTDOWN_GRACE", default_value = "5s", value_parser = duration)]
    pub shutdown_grace: Duration,

    /// Serve HTTPS with this certificate chain (PEM); needs --tls-key. SIGHUP rereads both files.
    #[arg(
        long,
        env = "HERALD_TLS_CERT",
        requires = "tls_key",
        value_name = "FILE"
    )]
    pub tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(
        long,
        env = "HERALD_TLS_KEY",
        requires = "tls_cert",
        value_name = "FILE"
    )]
    pub tls_key: Option<PathBuf>,

    /// Obtain and renew the HTTPS certificate for this name from an ACME CA (TLS-ALPN-01 on the
    /// listener itself: one port, e.g. --listen 0.0.0.0:443, is all it needs). Repeatable: one
    /// certificate names them all. Needs --acme-cache; not with --tls-cert.
    #[arg(
        long,
        env = "HERALD_ACME_DOMAIN",
        value_delimiter = ',',
        value_name = "NAME",
        conflicts_with = "tls_cert",
        requires = "acme_cache"
    )]
    pub acme_domain: Vec<String>,

    /// Where the ACME account key and certificates are kept (created with mode 0700), so a restart
    /// serves the cached certificate at once and orders nothing.
    #[arg(
        long,
        env = "HERALD_ACME_CACHE",
        value_name = "DIR",
        requires = "acme_domain"
    )]
    pub acme_cache: Option<PathBuf>,

    /// Contact address given to the ACME CA (expiry notices), optional.
    #[arg(
        long,
        env = "HERALD_ACME_EMAIL",
        value_name = "ADDRESS",
        requires = "acme_domain"
    )]
    pub acme_email: Option<String>,

    /// The ACME directory to order from [default: Let's Encrypt production].
    #[arg(
        long,
        env = "HERALD_ACME_DIRECTORY",
        value_name = "URL",
        requires = "acme_domain",
        conflicts_with = "acme_staging"
    )]
    pub acme_directory: Option<String>,

    /// Order from Let's Encrypt's staging directory (untrusted certificates, generous limits: for a first try).
    #[arg(long, env = "HERALD_ACME_STAGING", action = clap::ArgAction::SetTrue, value_parser = clap::builder::BoolishValueParser::new(), requires = "acme_domain")]
    pub acme_staging: bool,

    /// Also trust this PEM root for the ACME directory's own HTTPS (a private CA, a test server).
    #[arg(
        long,
        env = "HERALD_ACME_CA",
        value_name = "FILE",
        requires = "acme_domain"
    )]
    pub acme_ca: Option<PathBuf>,

    /// Also accept cleartext HTTP/2 with prior knowledge (h2c), for a proxy that speaks it upstream
    /// (not with --tls-cert: over TLS, HTTP/2 is chosen by ALPN).
    #[arg(long, env = "HERALD_H2C", action = clap::ArgAction::SetTrue, value_parser = clap::builder::BoolishValueParser::new())]
    pub h2c: bool,

    /// Origins allowed by CORS, comma-separated; `*` allows any.
    #[arg(
        long,
        env = "HERALD_CORS_ORIGIN",
        default_value = "*",
        value_delimiter = ','
    )]
    pub cors_origin: Vec<String>,

    /// Redis server that makes several herald nodes one service
    /// (`redis://host:port/db`, or through Sentinel:
    /// `redis+sentinel://host:26379,host:26379/mastername/db`); without it
    /// herald is a single node.
    #[arg(long, env = "HERALD_REDIS", value_name = "URL", hide_env_values = true)]
    pub redis: Option<String>,

    /// With --redis: how long Redis may be unreachable before open streams
    /// end (so clients resume on another node); also the wait for one answer.
    #[arg(long, env = "HERALD_REDIS_TIMEOUT", default_value = "5s", value_parser = positive_duration)]
    pub redis_timeout: Duration,

    /// With --redis: replicas that must confirm a publish (Redis `WAIT`)
    /// before it is answered; not confirmed within --redis-timeout, the
    /// answer is 503 (the event may still appear). 0: answered once the
    /// primary has it.
    #[arg(long, env = "HERALD_REDIS_REPLICAS", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=16))]
    pub redis_replicas: u32,

    /// With --redis: events the shared log keeps for nodes that fall behind
    /// (about; Redis trims whole blocks); a node further behind starts over.
    #[arg(long, env = "HERALD_REDIS_LOG_LEN", default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(100..))]
    pub redis_log_len: u32,

    /// With --redis: prefix of every key herald writes, so one Redis can hold
    /// several services.
    #[arg(long, env = "HERALD_REDIS_PREFIX", default_value = "herald", value_parser = key_prefix)]
    pub redis_prefix: String,

    /// Secret for publishing (and reading every channel), comma-separated so an
    /// old and a new one can overlap; `Authorization: Bearer <token>`. Best set
    /// as HERALD_PUBLISH_TOKEN.
    #[arg(
        long,
        env = "HERALD_PUBLISH_TOKEN",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub publish_token: Vec<Secret>,

    /// HMAC secret(s) for HS256/384/512 JWTs, comma-separated for rotation.
    /// Best set as HERALD_JWT_SECRET.
    #[arg(
        long,
        env = "HERALD_JWT_SECRET",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub jwt_secret: Vec<Secret>,

    /// PEM public key file for RS/PS (RSA), ES256/ES384 (EC) or EdDSA JWTs;
    /// repeatable (comma-separated in the variable).
    #[arg(long, env = "HERALD_JWT_PUBLIC_KEY", value_delimiter = ',')]
    pub jwt_public_key: Vec<PathBuf>,

    /// JWK Set file of verification keys, selected by `kid`; reloaded on SIGHUP.
    #[arg(long, env = "HERALD_JWKS_FILE")]
    pub jwks_file: Option<PathBuf>,

    /// JWK Set URL of an identity provider (https://, or http:// to a loopback
    /// address), fetched at startup and refreshed; a failed refresh keeps the keys.
    #[arg(long, env = "HERALD_JWKS_URL", value_name = "URL")]
    pub jwks_url: Option<String>,

    /// PEM CA certificate(s) to trust for --jwks-url, besides the usual (Mozilla) roots.
    #[arg(
        long,
        env = "HERALD_JWKS_CA",
        requires = "jwks_url",
        value_name = "FILE"
    )]
    pub jwks_ca: Option<PathBuf>,

    /// How often --jwks-url is fetched again (a `Cache-Control: max-age` between 1m
    /// and 1d takes precedence); a token with an unknown `kid` also refreshes it,
    /// at most once per 30s.
    #[arg(long, env = "HERALD_JWKS_REFRESH", default_value = "5m", value_parser = positive_duration)]
    pub jwks_refresh: Duration,

    /// Required `aud` of every JWT.
    #[arg(long, env = "HERALD_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// Required `iss` of every JWT.
    #[arg(long, env = "HERALD_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// With a key configured, whether channels not named private-* or presence-*
    /// can be read without a token; false makes every channel need a grant.
    #[arg(long, env = "HERALD_ANONYMOUS", default_value_t = true, action = ArgAction::Set)]
    pub anonymous: bool,

    /// Also read a stream's token from this cookie (needs an explicit --cors-origin).
    #[arg(long, env = "HERALD_AUTH_COOKIE")]
    pub auth_cookie: Option<String>,

    /// Longest `revoke` a `POST /disconnect` may ask for: tokens of that
    /// user (or that token) are refused for at most this long.
    #[arg(long, env = "HERALD_MAX_REVOKE", default_value = "24h", value_parser = positive_duration)]
    pub max_revoke: Duration,

    /// Log format.
    #[arg(long, env = "HERALD_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,

    /// Log filter, in tracing's env-filter syntax (e.g. `info`, `herald=debug`).
    #[arg(long, env = "HERALD_LOG", default_value = "info")]
    pub log: String,
}

/// When a durable publish is answered (`--fsync`).
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    /// After `fdatasync`: survives power loss.
    Batch,
    /// After `write`: survives a crash of herald, not of the machine.
    Off,
}

// Made once per run, so the size of a variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// Print a signed JWT (for tests and scripts), from the same key settings
    /// as the server.
    Token(TokenArgs),
    /// Print the effective configuration (flags, environment, --config file,
    /// defaults) as TOML that --config takes, secrets redacted; exit non-zero
    /// on any error. Takes every flag of the server.
    Config,
}

// The flags of `herald token`, beside the server's so every flag is defined
// here; `auth::mint` signs with them.
#[derive(clap::Args, Debug, Clone)]
pub struct TokenArgs {
    /// The user (`sub`), 1 to 128 characters.
    #[arg(long)]
    pub sub: Option<String>,

    /// A channel or `prefix*` this token may read; repeatable.
    #[arg(long)]
    pub subscribe: Vec<String>,

    /// A channel or `prefix*` this token may publish to; repeatable.
    #[arg(long)]
    pub publish: Vec<String>,

    /// JSON shown to other members of a presence channel (at most 1 KiB).
    #[arg(long)]
    pub info: Option<String>,

    /// How long the token is valid.
    #[arg(long, default_value = "15m", value_parser = positive_duration)]
    pub ttl: Duration,

    /// HMAC secret to sign with (HS256); the first of a comma-separated list.
    /// Best set as HERALD_JWT_SECRET.
    #[arg(
        long,
        env = "HERALD_JWT_SECRET",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub jwt_secret: Vec<Secret>,

    /// PEM private key to sign with instead (RSA, EC or Ed25519, PKCS#8).
    #[arg(long, env = "HERALD_JWT_PRIVATE_KEY")]
    pub private_key: Option<PathBuf>,

    /// Algorithm, when the key allows several: HS384, RS512, PS256, ES384, …
    #[arg(long)]
    pub alg: Option<String>,

    /// `kid` header, to pick a key of a --jwks-file.
    #[arg(long)]
    pub kid: Option<String>,

    /// `aud` claim.
    #[arg(long, env = "HERALD_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// `iss` claim.
    #[arg(long, env = "HERALD_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// `jti` claim: the token's own id, so `POST /disconnect` can revoke
    /// this one token (`{"jti":"…","revoke":"1h"}`).
    #[arg(long)]
    pub jti: Option<String>,
}

/// A secret from a flag or variable. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(secret: impl Into<String>) -> Secret {
        Secret(secret.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Secret, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl Default for Config {
    /// The documented defaults (environment variables still apply, as they
    /// would for the binary).
    fn default() -> Self {
        Config::parse_from(["herald"])
    }
}

impl Config {
    pub fn hub(&self) -> HubConfig {
        HubConfig {
            history: HistoryLimits {
                events: self.history as usize,
                bytes: self.history_bytes,
                age: self.history_age,
            },
            max_channels: self.max_channels as usize,
            stream_buffer: self.stream_buffer as usize,
            channel_ttl: self.channel_ttl,
            presence: PresenceConfig {
                grace: self.presence_grace,
                max_members: self.presence_max_members as usize,
            },
        }
    }
}

fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("{e}: write a number with its unit, like 15s or 500ms"))
}

pub(crate) fn positive_duration(s: &str) -> Result<Duration, String> {
    match duration(s)? {
        d if d.is_zero() => Err("must be more than zero".to_owned()),
        d => Ok(d),
    }
}

/// A Redis key prefix: letters, digits and `_ - . :`, so it needs no quoting
/// anywhere.
fn key_prefix(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b));
    if ok {
        Ok(s.to_owned())
    } else {
        Err("1 to 64 letters, digits, `_`, `-`, `.` or `:`".to_owned())
    }
}

/// A byte count: `65536`, `64KiB`, `1MiB`, `1 GiB`.
fn byte_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let multiplier: usize = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        other => {
            return Err(format!(
                "unknown unit `{other}`: write a byte count, or a number with KiB, MiB or GiB"
            ))
        }
    };
    let number: usize = number
        .parse()
        .map_err(|_| "write a byte count, or a number with KiB, MiB or GiB".to_owned())?;
    match number.checked_mul(multiplier) {
        Some(0) => Err("must be more than zero".to_owned()),
        Some(n) => Ok(n),
        None => Err("too large".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes_take_plain_counts_and_binary_units() {
        assert_eq!(byte_size("65536"), Ok(65536));
        assert_eq!(byte_size("64KiB"), Ok(65536));
        assert_eq!(byte_size("1MiB"), Ok(1 << 20));
        assert_eq!(byte_size("2 GiB"), Ok(2 << 30));
        assert!(byte_size("1MB").is_err());
        assert!(byte_size("0").is_err());
        assert!(byte_size("KiB").is_err());
    }

    #[test]
    fn defaults_match_the_spec() {
        let c = Config::parse_from(["herald"]);
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.retry, Duration::from_secs(3));
        assert_eq!(c.heartbeat, Duration::from_secs(15));
        assert_eq!(c.history, 1000);
        assert_eq!(c.history_bytes, 1 << 20);
        assert_eq!(c.channel_ttl, Duration::from_secs(3600));
        assert_eq!(c.max_event_bytes, 65536);
        assert_eq!(c.header_timeout, Duration::from_secs(10));
        assert_eq!(c.body_timeout, Duration::from_secs(30));
        assert_eq!(c.shutdown_grace, Duration::from_secs(5));
        assert_eq!(c.cors_origin, ["*"]);
        assert_eq!(c.max_streams_per_connection, 100);
        assert!(c.tls_cert.is_none() && !c.h2c);
        assert_eq!(c.redis, None);
        assert_eq!(c.redis_timeout, Duration::from_secs(5));
        assert_eq!(c.redis_replicas, 0);
        assert_eq!(c.history_age, None);
        assert_eq!(c.data_dir, None);
        assert_eq!(c.fsync, Fsync::Batch);
        assert_eq!(c.presence_grace, Duration::from_secs(10));
        assert_eq!(c.presence_max_members, 100);
        assert_eq!(c.dead_peer_timeout, Duration::from_secs(60));
        assert_eq!(c.jwks_url, None);
        assert_eq!(c.jwks_refresh, Duration::from_secs(300));
        assert!(!c.heartbeat_event);
        assert_eq!(c.max_revoke, Duration::from_secs(24 * 3600));
        assert_eq!(c.idempotency_window, Duration::from_secs(600));
        assert_eq!(c.idempotency_max_keys, 1_000_000);
    }

    #[test]
    fn flags_parse_durations_with_units() {
        let c = Config::parse_from(["herald", "--heartbeat", "500ms", "--channel-ttl", "2m"]);
        assert_eq!(c.heartbeat, Duration::from_millis(500));
        assert_eq!(c.channel_ttl, Duration::from_secs(120));
    }

    #[test]
    fn tls_needs_both_files() {
        assert!(Config::try_parse_from(["herald", "--tls-cert", "c.pem"]).is_err());
        assert!(Config::try_parse_from(["herald", "--tls-key", "k.pem"]).is_err());
        let both = ["herald", "--tls-cert", "c.pem", "--tls-key", "k.pem"];
        assert!(Config::try_parse_from(both).is_ok());
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Config::command().debug_assert();
    }
}
