//! The log: where a published event gets its id and becomes durable or
//! shared, before the hub fans it out.
//!
//! One path for every event, whatever the backend:
//!
//! ```text
//! POST /publish (routes::publish) ─ validate, encode once ─▶ Log::publish
//!   ─ issue ids, persist or share ─▶ Hub::applier().apply (history + live,
//!   in id order, under the hub lock) ─▶ streams ─▶ sockets
//! ```
//!
//! Implementations: [`memory`] (the default: ids issued under the hub lock,
//! nothing kept), `disk/` (`--data-dir`), `redis/` (`--redis`). The hub, the
//! replay rules and the streams do not know which one runs.
//!
//! # The contract every implementation keeps
//!
//! 1. **Ids strictly increase** across the whole server, and after a
//!    restart stay above every id issued before (see [`next_id`]).
//! 2. **Events reach the hub strictly in id order**, through
//!    [`crate::hub::Hub::applier`]. The hub refuses nothing silently: an
//!    event out of order is an [`OutOfOrder`](crate::hub::OutOfOrder)
//!    error, a bug in the log, and is not applied. A log that many nodes
//!    share (Redis) feeds each node through [`crate::hub::Hub::apply`]
//!    instead, in the same order, which skips the channels that node does
//!    not hold.
//! 3. **The answer is sent only after the hub has applied the event**, so a
//!    subscriber that connects after the answer with an older id receives
//!    it (SPEC §3); with `--data-dir`, only after it is durable too, and no
//!    subscriber sees it before that (SPEC §8).
//! 4. **A batch is all or nothing**: every item is published, in request
//!    order with increasing ids, or none is and the error says why.
//! 5. **The `--max-channels` check comes before any id is issued**: a
//!    refused batch consumes no id and changes nothing.
//! 6. **Errors are typed** ([`PublishError`]): the channel limit, or the
//!    backend unavailable with how long to wait before retrying. The route
//!    turns them into 503 with `Retry-After`.

pub mod disk;
pub mod memory;
pub mod redis;

use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::domain::{ChannelName, EventId, Resume};
use crate::hub::presence::Member;
use crate::hub::{unix_micros, ChannelInfo, Hub};
use crate::idempotency;
use crate::metrics::{Backend, RejectReason};
use crate::revocation::Disconnect;
use crate::sse::PendingEvent;

/// One event to publish, validated and encoded but not yet numbered.
#[derive(Debug)]
pub struct PublishItem {
    pub channel: ChannelName,
    pub event: PendingEvent,
    /// Length of the event's data, counted against `--history-bytes`.
    pub data_len: usize,
}

/// The answer to one published event.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Published {
    #[serde(serialize_with = "as_string")]
    pub id: EventId,
    pub channel: ChannelName,
    /// Live subscribers (on this server) the event was handed to.
    pub subscribers: usize,
}

/// Why a publish was refused. Nothing of the batch was published.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// The batch would create a channel past `--max-channels`.
    #[error("the server holds its maximum number of channels")]
    ChannelLimit,
    /// The backend cannot take events now (disk full, Redis down); retrying
    /// after `retry_after` may succeed.
    #[error("the event store is unavailable: {cause}")]
    Unavailable {
        retry_after: Duration,
        /// For the log line; never carries input or secrets.
        cause: String,
    },
}

/// What a publish with an idempotency key came to.
#[derive(Debug)]
pub enum Keyed {
    /// Published now, and the key kept with this answer.
    Published(Vec<Published>),
    /// The key was kept already for the same request (with `--redis`, by
    /// any node): nothing was published; this is the first answer.
    Replayed(Vec<Published>),
    /// The key was kept already for another request: nothing published.
    Reused,
}

/// The log this server runs with.
pub enum Log {
    Memory(memory::MemoryLog),
    Disk(disk::DiskLog),
    /// `--redis`: many nodes, one service.
    Redis(Arc<redis::RedisLog>),
}

impl Log {
    /// The in-memory log over `hub` (no `--data-dir`, no `--redis`).
    pub fn memory(hub: Arc<Hub>, config: &Config) -> Log {
        Log::Memory(memory::MemoryLog::new(hub, config))
    }

    /// The idempotency keys this node holds (SPEC §12).
    pub fn keys(&self) -> &Arc<idempotency::Keys> {
        match self {
            Log::Memory(log) => &log.idempotency_keys,
            Log::Disk(log) => &log.idempotency_keys,
            Log::Redis(log) => &log.idempotency_keys,
        }
    }

    /// Publishes `items` as [`Log::publish`] does, and keeps `request`'s
    /// key with the answer, in the same step as the events: the disk log
    /// writes it in the same group, Redis in the same script (which, if
    /// another node kept the key first, answers [`Keyed::Replayed`] or
    /// [`Keyed::Reused`] instead of publishing).
    pub async fn publish_keyed(
        &self,
        items: Vec<PublishItem>,
        request: idempotency::KeyedRequest,
    ) -> Result<Keyed, PublishError> {
        match self {
            Log::Memory(log) => log.publish_keyed(items, request).map(Keyed::Published),
            Log::Disk(log) => log
                .publish_keyed(items, request)
                .await
                .map(Keyed::Published),
            Log::Redis(log) => log.publish_keyed(items, request).await,
        }
    }

    /// Publishes `items` as one batch and answers each, in request order,
    /// once the hub has them (see the contract above).
    pub async fn publish(&self, items: Vec<PublishItem>) -> Result<Vec<Published>, PublishError> {
        match self {
            Log::Memory(log) => log.publish(items),
            Log::Disk(log) => log.publish(items).await,
            Log::Redis(log) => log.publish(items).await,
        }
    }

    /// Records a disconnect (SPEC §11) and applies it to the hub, which
    /// adds its revocation and ends the matching streams; returns how many
    /// streams of this node it ended. A revocation is kept like an event:
    /// written to `--data-dir` before it is applied, or shared through
    /// Redis with every node (each ends its own streams within the second,
    /// and nodes started later load it). Refused (nothing recorded, nothing
    /// ended) when the backend cannot take it.
    pub async fn disconnect(&self, order: Disconnect) -> Result<usize, PublishError> {
        match self {
            Log::Memory(log) => Ok(log.disconnect(&order)),
            Log::Disk(log) => log.disconnect(order).await,
            Log::Redis(log) => log.disconnect(order).await,
        }
    }

    /// The reaper dropped `channels` (for `--channel-ttl`) when `through`
    /// was the newest id: a log that keeps history drops them too. (Redis
    /// expires them by itself, unless another node still serves them.)
    pub async fn forget(&self, channels: Vec<ChannelName>, through: EventId) {
        match self {
            Log::Memory(_) | Log::Redis(_) => {
                let _ = (channels, through);
            }
            Log::Disk(log) => log.forget(channels, through).await,
        }
    }

    /// Stops taking publishes at shutdown, after those already queued have
    /// been committed and answered.
    pub async fn close(&self) {
        match self {
            Log::Memory(_) => {}
            Log::Disk(log) => log.close().await,
            Log::Redis(log) => log.close().await,
        }
    }

    /// Gets the hub ready to serve a subscribe to `channels` from `resume`
    /// (with `--redis`: load their history, catch up with the log, count a
    /// `member` in service-wide), or says why the subscribe must be told to
    /// come back later.
    pub async fn prepare_subscribe(
        &self,
        channels: &[ChannelName],
        resume: Resume,
        member: Option<&Member>,
    ) -> Result<(), RejectReason> {
        match self {
            Log::Memory(_) | Log::Disk(_) => Ok(()),
            Log::Redis(log) => log.prepare_subscribe(channels, resume, member).await,
        }
    }

    /// Which backend this is, for the metrics.
    pub fn backend(&self) -> Backend {
        match self {
            Log::Memory(_) => Backend::Memory,
            Log::Disk(_) => Backend::Disk,
            Log::Redis(_) => Backend::Redis,
        }
    }

    /// Whether this node can serve now: always, unless it cannot reach the
    /// shared log.
    pub fn is_up(&self) -> bool {
        match self {
            Log::Memory(_) | Log::Disk(_) => true,
            Log::Redis(log) => log.is_up(),
        }
    }

    /// `GET /channels`: every channel of the service, sorted by name.
    pub async fn channels(&self, hub: &Hub) -> Result<Vec<ChannelInfo>, PublishError> {
        match self {
            Log::Memory(_) | Log::Disk(_) => Ok(hub.channels()),
            Log::Redis(log) => log.channels().await,
        }
    }
}

/// The id to issue after `last`: the current Unix time in microseconds, or
/// `last + 1` if that is larger. Unique and strictly increasing; after a
/// restart above every id issued before, since a log starts from the largest
/// of its clock and every id it recovered (an in-memory restart relies on the
/// clock alone: its ids would only run ahead of the clock under more than a
/// million publishes per second, or if the clock was set back).
pub fn next_id(last: EventId) -> EventId {
    EventId::new((last.get() + 1).max(unix_micros()))
}

fn as_string<S: serde::Serializer>(id: &EventId, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(id)
}
