//! `--redis`: many herald nodes as one service (SPEC §9).
//!
//! Redis holds what must be shared: the id counter, each channel's history
//! (a stream per channel, trimmed exactly to `--history`/`--history-bytes`,
//! with its mark in a small hash) and one *log* stream of every event, in id
//! order. A publish is one Lua script (`publish.lua`): it issues the ids,
//! appends to the channel streams and to the log, atomically, so the log's
//! order is the id order.
//!
//! Every node reads the whole log on its own connection ([`reader`]) and
//! applies it to its hub ([`crate::hub::Hub::apply`]), which fans events out
//! to local streams exactly as a single node does. Each log entry names the
//! id issued before it, so a node knows for certain whether it saw every
//! entry; when it did not (Redis restarted empty, or the node fell behind
//! further than the log keeps) it starts over ([`crate::hub::Hub::reset`]):
//! its streams end and clients resume with `Last-Event-ID` from Redis's
//! copy, which replays or announces the gap. A node holds a channel's
//! history only while something here subscribes to it, loaded from Redis
//! first (`load.lua`).
//!
//! While Redis is unreachable: publishes get 503 `backend_unavailable`, new
//! subscribes the 200-and-retry answer, `/healthz` 503, and after
//! `--redis-timeout` the open streams end so clients move to a node that can
//! serve them. Each node also writes a heartbeat (`beat.lua`) with its
//! subscriber counts, for the service-wide counts of `/channels` and the
//! publish answer. Disconnects and revocations are records of the same log
//! ([`revoke`]).
//!
//! The files: this one holds [`RedisLog`], its health, and the publish;
//! `reader.rs` applies the log to the hub; `load.rs` holds a channel here
//! before a stream opens; `heartbeat.rs` writes the node's counts and
//! answers `/channels`; `presence.rs` is service-wide presence; `link.rs`
//! the connection and its scripts; `values.rs` reads Redis's replies.

mod failover;
mod heartbeat;
mod link;
mod load;
mod presence;
mod reader;
mod revoke;
mod target;
mod values;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::domain::{ChannelName, EventId};
use crate::history::HistoryLimits;
use crate::hub::{Hub, SharedOp};
use crate::idempotency::{self, KeyedRequest, Keys as IdempotencyKeys, Mode};
use crate::log::{Keyed, PublishError, PublishItem, Published};
use crate::metrics::{Metrics, RejectReason};
use link::{Arg, Link, Lua};
use target::Target;
use values::{array, bulk, int, text};

/// Why Redis could not serve a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LogError {
    Unavailable,
    ChannelLimit,
    /// Published, but fewer than `--redis-replicas` replicas confirmed it
    /// within `--redis-timeout`.
    NotReplicated,
}

/// What the publish script answered.
enum Outcome {
    Published(Vec<Published>),
    /// An idempotency key kept for the same request: its first answer.
    Replayed(Vec<Published>),
    /// An idempotency key kept for another request.
    Reused,
}

impl LogError {
    fn reason(self) -> RejectReason {
        match self {
            LogError::Unavailable | LogError::NotReplicated => RejectReason::BackendUnavailable,
            LogError::ChannelLimit => RejectReason::ChannelLimit,
        }
    }
}

/// The key names, all under one hash tag (`{h}`) so every script touches a
/// single slot.
struct Keys {
    /// `<prefix>{h}:`, also passed to scripts that build per-channel and
    /// per-node names themselves.
    base: String,
}

impl Keys {
    fn new(prefix: &str) -> Keys {
        Keys {
            base: format!("{prefix}{{h}}:"),
        }
    }
    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.base)
    }
    fn stream(&self, channel: &ChannelName) -> String {
        format!("{}s:{channel}", self.base)
    }
    fn meta(&self, channel: &ChannelName) -> String {
        format!("{}m:{channel}", self.base)
    }
    /// An idempotency key (scoped by its principal), kept by the publish
    /// script for `--idempotency-window`.
    fn idempotency(&self, scope: &str) -> String {
        format!("{}i:{scope}", self.base)
    }
}

struct Scripts {
    publish: Lua,
    load: Lua,
    beat: Lua,
    channels: Lua,
    presence: presence::PresenceScripts,
    /// `revoke.lua`: a disconnect and its revocation (SPEC §11).
    revoke: Lua,
}

/// Whether the node can reach Redis, as the log reader sees it: the reader
/// hears from Redis at least every block period, so silence means trouble.
struct Health {
    up: AtomicBool,
    /// The reader's last answer from Redis.
    last_ok: Mutex<Instant>,
    /// The streams were ended for this outage already.
    streams_ended: AtomicBool,
}

pub struct RedisLog {
    hub: Arc<Hub>,
    /// The idempotency keys this node is publishing now; Redis keeps the
    /// answers, service-wide.
    pub idempotency_keys: Arc<IdempotencyKeys>,
    /// The Redis server, or the Sentinels that name the primary.
    target: Arc<Target>,
    /// Commands of requests (publish, load, /channels) and the heartbeat.
    link: Link,
    /// The newest id this node has seen in Redis (issued to its publishes
    /// or applied from the log): a new primary must hold it ([`failover`]).
    seen: Arc<AtomicU64>,
    /// `--redis-replicas`: replicas that must confirm a publish.
    replicas: u32,
    /// With `--redis-replicas`: publishes and their `WAIT`s, on their own
    /// connection (a `WAIT` holds up every command behind it on its
    /// connection, and loads or heartbeats must not queue behind it).
    wait_link: Option<Link>,
    keys: Keys,
    /// This node's name in the node set: random per process.
    node: String,
    timeout: Duration,
    log_len: u32,
    history: HistoryLimits,
    channel_ttl: Duration,
    max_channels: usize,
    health: Health,
    scripts: Scripts,
    metrics: Arc<Metrics>,
    /// Presence changes of this node's streams, sent by [`presence::run`].
    presence_ops: mpsc::UnboundedSender<SharedOp>,
    presence_queue: Mutex<Option<mpsc::UnboundedReceiver<SharedOp>>>,
}

impl RedisLog {
    /// Checks the URL; connects nothing yet ([`RedisLog::start`] does).
    pub fn new(
        config: &Config,
        url: &str,
        hub: Arc<Hub>,
        metrics: Arc<Metrics>,
    ) -> Result<RedisLog, String> {
        if url.starts_with("rediss://") {
            return Err(
                "--redis: TLS to Redis (rediss://) is not supported; use redis:// on a \
                 private network or through a local TLS tunnel"
                    .to_owned(),
            );
        }
        // The URL may carry a password: never repeat it in a message.
        let target = Arc::new(Target::parse(url, config.redis_timeout)?);
        let keys = Keys::new(&config.redis_prefix);
        let seen = Arc::new(AtomicU64::new(0));
        let (presence_ops, presence_queue) = mpsc::unbounded_channel();
        hub.share_presence(presence_ops.clone());
        let guard = || failover::Guard {
            keys: ["seq", "log", "floor"].map(|k| keys.key(k)),
            log_len: config.redis_log_len,
            seen: seen.clone(),
        };
        let wait_link = (config.redis_replicas > 0)
            .then(|| Link::new(target.clone(), guard(), config.redis_timeout));
        Ok(RedisLog {
            hub,
            idempotency_keys: IdempotencyKeys::new(
                config.idempotency_window,
                config.idempotency_max_keys as usize,
                Mode::Redis,
            ),
            link: Link::new(target.clone(), guard(), config.redis_timeout),
            wait_link,
            target,
            seen,
            replicas: config.redis_replicas,
            keys,
            node: format!("{:016x}", fastrand::u64(..)),
            timeout: config.redis_timeout,
            log_len: config.redis_log_len,
            history: config.hub().history,
            channel_ttl: config.channel_ttl,
            max_channels: config.max_channels as usize,
            health: Health {
                up: AtomicBool::new(false),
                last_ok: Mutex::new(Instant::now()),
                streams_ended: AtomicBool::new(false),
            },
            scripts: Scripts {
                publish: Lua::new(include_str!("publish.lua")),
                load: Lua::new(include_str!("load.lua")),
                beat: Lua::new(presence::BEAT),
                channels: Lua::new(include_str!("channels.lua")),
                presence: presence::PresenceScripts::new(),
                revoke: revoke::script(),
            },
            metrics,
            presence_ops,
            presence_queue: Mutex::new(Some(presence_queue)),
        })
    }

    /// Starts the log reader, the heartbeat and the outage watchdog; they
    /// stop at `shutdown`.
    pub fn start(self: &Arc<Self>, shutdown: CancellationToken) {
        tokio::spawn(reader::run(self.clone(), shutdown.clone()));
        let target = self.target.clone();
        let every = (self.timeout / 5).clamp(Duration::from_millis(100), Duration::from_secs(1));
        let watching = shutdown.clone();
        tokio::spawn(async move { target.watch(every, watching).await });
        tokio::spawn(self.clone().heartbeat(shutdown.clone()));
        let queue = self
            .presence_queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(queue) = queue {
            tokio::spawn(presence::run(self.clone(), queue, shutdown.clone()));
        }
        tokio::spawn(self.clone().watchdog(shutdown));
    }

    /// At the end of shutdown (streams ended): leaves the node set and
    /// counts this node's presence connections out at once, rather than
    /// after the node timeout.
    pub async fn close(&self) {
        let gone = Lua::new(presence::GONE);
        let args = [
            Arg::Str(&self.keys.base),
            Arg::Int(u64::from(self.log_len)),
            Arg::Str(&self.node),
        ];
        let left = tokio::time::timeout(Duration::from_secs(1), self.link.eval(&gone, &[], &args));
        if let Ok(Err(e)) = left.await {
            tracing::warn!(error = %e, "could not leave the node set in Redis");
        }
    }

    /// At startup, before serving: with `redis+sentinel://`, a Sentinel
    /// must answer and know the service (a clear error otherwise).
    pub async fn check(&self) -> Result<(), String> {
        self.target.check().await
    }

    /// Whether Redis answers this node now.
    pub fn is_up(&self) -> bool {
        self.health.up.load(Ordering::Acquire)
    }

    fn ok(&self) {
        *self
            .health
            .last_ok
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Instant::now();
        if !self.health.up.swap(true, Ordering::AcqRel) {
            self.health.streams_ended.store(false, Ordering::Release);
            self.metrics.redis_connected.set(1);
            tracing::info!("Redis reachable");
        }
    }

    fn down(&self, why: &dyn std::fmt::Display) {
        if self.health.up.swap(false, Ordering::AcqRel) {
            self.metrics.redis_connected.set(0);
            tracing::warn!(error = %why, "Redis unreachable: refusing publishes and new subscribes");
        }
    }

    fn down_for(&self) -> Duration {
        self.health
            .last_ok
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .elapsed()
    }

    /// A command failed: the request is refused; a connection-level failure
    /// is logged (the reader decides whether the node is down).
    fn failed(&self, what: &str, e: redis::RedisError) -> LogError {
        tracing::warn!(error = %e, "Redis {what} failed");
        LogError::Unavailable
    }

    /// Ends every open stream once Redis has been unreachable for
    /// `--redis-timeout`, so their clients resume on a node that can serve
    /// them.
    async fn watchdog(self: Arc<Self>, shutdown: CancellationToken) {
        let tick = (self.timeout / 10).clamp(Duration::from_millis(20), Duration::from_millis(500));
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(tick) => {}
            }
            if !self.is_up()
                && self.down_for() >= self.timeout
                && !self.health.streams_ended.swap(true, Ordering::AcqRel)
            {
                let streams = self.hub.reset();
                self.metrics.redis_resyncs.inc();
                tracing::warn!(
                    streams,
                    "Redis unreachable for --redis-timeout: ended the open streams"
                );
            }
        }
    }

    /// Publishes `items` in one script call, all or nothing, and answers
    /// once this node's hub has applied them from the log (the log contract,
    /// [`crate::log`]).
    pub async fn publish(&self, items: Vec<PublishItem>) -> Result<Vec<Published>, PublishError> {
        match self.publish_keyed_or_not(items, None).await? {
            Keyed::Published(answers) => Ok(answers),
            _ => unreachable!("only a publish with a key is replayed or reused"),
        }
    }

    /// Publishes with an idempotency key, recorded by the same script that
    /// issues the ids: a key another node (or an earlier call whose answer
    /// was lost) already recorded is answered from Redis, not published.
    pub async fn publish_keyed(
        &self,
        items: Vec<PublishItem>,
        request: KeyedRequest,
    ) -> Result<Keyed, PublishError> {
        self.publish_keyed_or_not(items, Some(&request)).await
    }

    async fn publish_keyed_or_not(
        &self,
        items: Vec<PublishItem>,
        key: Option<&KeyedRequest>,
    ) -> Result<Keyed, PublishError> {
        let outcome = self
            .publish_in_redis(items, key)
            .await
            .map_err(|e| match e {
                LogError::ChannelLimit => PublishError::ChannelLimit,
                LogError::Unavailable => self.unavailable(),
                LogError::NotReplicated => PublishError::Unavailable {
                    retry_after: self.timeout.max(Duration::from_secs(1)),
                    cause: format!(
                        "not confirmed by {} Redis replica(s) within --redis-timeout",
                        self.replicas
                    ),
                },
            })?;
        let (Outcome::Published(answers) | Outcome::Replayed(answers)) = &outcome else {
            return Ok(Keyed::Reused);
        };
        if let Some(last) = answers.last() {
            // The reader applies it within a round trip; if it does not, the
            // event is published all the same (it is in Redis and reaches
            // every node's subscribers), so the answer stays 200.
            self.hub.wait_applied(last.id, self.timeout).await;
        }
        Ok(match outcome {
            Outcome::Published(answers) => Keyed::Published(answers),
            Outcome::Replayed(answers) => Keyed::Replayed(answers),
            Outcome::Reused => Keyed::Reused,
        })
    }

    fn unavailable(&self) -> PublishError {
        PublishError::Unavailable {
            retry_after: self.timeout.max(Duration::from_secs(1)),
            cause: "Redis is unreachable".to_owned(),
        }
    }

    async fn publish_in_redis(
        &self,
        items: Vec<PublishItem>,
        key: Option<&KeyedRequest>,
    ) -> Result<Outcome, LogError> {
        if !self.is_up() {
            return Err(LogError::Unavailable);
        }
        let mut keys = Vec::with_capacity(5 + 2 * items.len());
        keys.extend(["seq", "log", "channels", "nodes"].map(|k| self.keys.key(k)));
        for item in &items {
            keys.push(self.keys.stream(&item.channel));
            keys.push(self.keys.meta(&item.channel));
        }
        if let Some(key) = key {
            let scope = key
                .scope
                .as_deref()
                .expect("a node's table on Redis names the keys it hands out");
            keys.push(self.keys.idempotency(scope));
        }
        let fingerprint = key.map(|k| idempotency::hex(&k.fingerprint));
        let ttl = self.key_lifetime_ms();
        let mut args = vec![
            Arg::Str(&self.keys.base),
            Arg::Str(&self.node),
            Arg::Int(self.history.events as u64),
            Arg::Int(self.history.bytes as u64),
            Arg::Int(ttl),
            Arg::Int(u64::from(self.log_len)),
            Arg::Int(self.max_channels as u64),
        ];
        for item in &items {
            args.push(Arg::Str(item.channel.as_str()));
            args.push(Arg::Bytes(item.event.fields()));
            args.push(Arg::Int(item.data_len as u64));
        }
        if let Some(fingerprint) = &fingerprint {
            args.push(Arg::Str(fingerprint));
            args.push(Arg::Int(self.idempotency_keys.window().as_millis() as u64));
            for item in &items {
                args.push(Arg::Int(self.hub.subscribers(&item.channel) as u64));
            }
        }
        let started = Instant::now();
        let wait = (self.replicas > 0).then(|| {
            // WAIT blocks this connection: bounded well within the answer
            // timeout (WAIT 0 would wait forever).
            let ms = (self.timeout.as_millis() as u64 * 3 / 4).max(1);
            let mut wait = redis::cmd("WAIT");
            wait.arg(self.replicas).arg(ms);
            wait
        });
        let (reply, confirmed) = self
            .wait_link
            .as_ref()
            .unwrap_or(&self.link)
            .eval_wait(&self.scripts.publish, &keys, &args, wait.as_ref())
            .await
            .map_err(|e| self.failed("publish", e))?;
        match int(&reply) {
            Some(0) => return Err(LogError::ChannelLimit),
            Some(-1) if key.is_some() => return Ok(Outcome::Reused),
            _ => {}
        }
        // Published (or a kept answer replayed: the script touched its key,
        // so the WAIT covers the first publish too).
        if let Some(confirmed) = confirmed {
            let replicas = int(&confirmed).unwrap_or(0);
            if replicas < i64::from(self.replicas) {
                tracing::warn!(
                    replicas,
                    wanted = self.replicas,
                    waited_ms = started.elapsed().as_millis() as u64,
                    "a publish was not confirmed by enough Redis replicas: answered 503"
                );
                return Err(LogError::NotReplicated);
            }
        }
        let rows = array(&reply).ok_or_else(|| self.unexpected("publish"))?;
        if rows.first().and_then(bulk) == Some(b"r") {
            let kept = rows.get(1).and_then(text).unwrap_or_default();
            return replayed(items, kept)
                .map(Outcome::Replayed)
                .ok_or_else(|| self.unexpected("publish (a kept idempotency key)"));
        }
        let mut answers = Vec::with_capacity(items.len());
        for (item, row) in items.into_iter().zip(rows) {
            let row = array(row).ok_or_else(|| self.unexpected("publish"))?;
            let (Some(id), Some(others)) = (
                row.first().and_then(text).and_then(|s| s.parse().ok()),
                row.get(1).and_then(int),
            ) else {
                return Err(self.unexpected("publish"));
            };
            // With a key the script counted this node too (as it was just
            // before the call), and recorded that answer.
            let subscribers = match key {
                Some(_) => others.max(0) as usize,
                None => others.max(0) as usize + self.hub.subscribers(&item.channel),
            };
            self.seen.fetch_max(id, Ordering::AcqRel);
            answers.push(Published {
                id: EventId::new(id),
                channel: item.channel,
                subscribers,
            });
        }
        Ok(Outcome::Published(answers))
    }

    /// How long a channel's keys live in Redis after their last renewal:
    /// 1.25 × `--channel-ttl`, renewed at most every `--channel-ttl`/4 (see
    /// `publish.lua`), so a channel lives at least `--channel-ttl` after its
    /// last publish or subscriber.
    fn key_lifetime_ms(&self) -> u64 {
        (self.channel_ttl.as_millis() as u64).saturating_mul(5) / 4
    }

    fn unexpected(&self, what: &str) -> LogError {
        tracing::error!("Redis {what}: unexpected answer from the script");
        LogError::Unavailable
    }
}

/// The first answer kept under an idempotency key (`"<fingerprint>
/// <id>:<subscribers> ..."`), for the same request's `items`.
fn replayed(items: Vec<PublishItem>, kept: &str) -> Option<Vec<Published>> {
    let rows: Vec<&str> = kept.split(' ').skip(1).collect();
    if rows.len() != items.len() {
        return None;
    }
    items
        .into_iter()
        .zip(rows)
        .map(|(item, row)| {
            let (id, subscribers) = row.split_once(':')?;
            Some(Published {
                id: EventId::new(id.parse().ok()?),
                channel: item.channel,
                subscribers: subscribers.parse().ok()?,
            })
        })
        .collect()
}
