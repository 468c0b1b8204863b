//! The server's state: everything a request may need, built once from the
//! flags and shared by every connection, route and transport ([`State`]),
//! and why it cannot be built ([`StartError`]).

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Auth;
use crate::config::Config;
use crate::hub::Hub;
use crate::log::disk::{DiskLog, OpenError};
use crate::log::{self, Log};
use crate::metrics::Metrics;
use crate::reload::Reload;

/// Everything a request may need, shared by all connections.
pub struct State {
    pub config: Config,
    /// Keys and rules of access control; routes ask it for an `Access`.
    pub auth: Arc<Auth>,
    pub hub: Arc<Hub>,
    /// Where publishes go: issues ids, persists, then applies to `hub`.
    pub log: Log,
    pub metrics: Arc<Metrics>,
    /// Cancelled when the server starts shutting down: streams end, new
    /// requests are refused.
    pub shutdown: CancellationToken,
    /// SIGHUP: "reread your files" (see [`crate::reload`]).
    pub reload: Reload,
    /// The WebSocket sessions: they outlive their HTTP connection, so
    /// shutdown waits for them here.
    pub sessions: TaskTracker,
}

impl State {
    /// The state of a server without `--data-dir` (see [`State::open`]):
    /// in memory, or a node on `--redis`. Panics on a bad `--redis` URL
    /// (tests).
    pub fn new(config: Config) -> Arc<State> {
        State::try_new(config).unwrap_or_else(|e| panic!("bad configuration: {e}"))
    }

    /// The state for `config`, or why it cannot serve (an unreadable key
    /// file, a cookie with a `*` CORS origin, a bad `--data-dir`, ...).
    pub fn try_new(config: Config) -> Result<Arc<State>, String> {
        State::open(config).map_err(|e| e.to_string())
    }

    fn without_disk(config: Config) -> Result<Arc<State>, String> {
        let metrics = Arc::new(Metrics::new());
        let hub = Arc::new(Hub::new(config.hub()));
        let auth = Auth::from_config(&config)?.with_revocations(hub.revocations().clone());
        let auth = Arc::new(auth);
        let log = match &config.redis {
            None => Log::memory(hub.clone(), &config),
            Some(url) => Log::Redis(Arc::new(log::redis::RedisLog::new(
                &config,
                url,
                hub.clone(),
                metrics.clone(),
            )?)),
        };
        Ok(Arc::new(State {
            auth,
            log,
            hub,
            metrics,
            config,
            shutdown: CancellationToken::new(),
            reload: Reload::new(),
            sessions: TaskTracker::new(),
        }))
    }

    /// The state for `config`: with `--data-dir`, recovers the directory
    /// into the hub first (or refuses to start on it, saying why).
    /// `--redis` with `--data-dir` is refused (SPEC §9).
    pub fn open(config: Config) -> Result<Arc<State>, StartError> {
        if config.data_dir.is_none() {
            return State::without_disk(config).map_err(StartError::Redis);
        }
        if config.redis.is_some() {
            return Err(StartError::RedisWithDataDir);
        }
        let metrics = Arc::new(Metrics::new());
        let hub = Arc::new(Hub::new(config.hub()));
        let auth = Auth::from_config(&config).map_err(StartError::Config)?;
        let auth = Arc::new(auth.with_revocations(hub.revocations().clone()));
        let log = DiskLog::open(&config, hub.clone(), metrics.clone())?;
        Ok(Arc::new(State {
            auth,
            log: Log::Disk(log),
            hub,
            metrics,
            config,
            shutdown: CancellationToken::new(),
            reload: Reload::new(),
            sessions: TaskTracker::new(),
        }))
    }
}

/// Why the server cannot start with this configuration.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Disk(#[from] OpenError),
    #[error("{0}")]
    Redis(String),
    /// A bad access-control setting (an unreadable key file, ...).
    #[error("{0}")]
    Config(String),
    #[error(
        "--redis and --data-dir cannot be used together: with Redis, history lives in Redis \
         and durability is Redis's persistence (AOF); drop --data-dir"
    )]
    RedisWithDataDir,
}
