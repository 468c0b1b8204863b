//! The log reader: one dedicated connection per node that follows the log
//! stream with `XREAD BLOCK`, in order, and applies it to the hub.
//!
//! Continuity is checked entry by entry: each entry carries `p`, the id
//! issued just before it, so `p` must equal the last id applied here. When
//! it does not, this node missed entries (Redis lost its data, or the node
//! fell further behind than `--redis-log-len`) and starts over with
//! [`Hub::reset`]. Likewise when the epoch key changed across a reconnect.
//! A reconnect that finds the chain intact simply resumes: nothing is lost.
//!
//! Each `XREAD` blocks at most a fraction of `--redis-timeout`, so an
//! answer is due regularly: a connection that stays silent longer (a stalled
//! socket, a proxy that stopped forwarding) is declared down and replaced.
//!
//! One file (about 380 lines of code, then its tests): connect, read, check
//! the chain and decode each record kind are one sequence, read top down.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::Value;
use tokio_util::sync::CancellationToken;

use super::values::{array, bulk, stream_id, text};
use super::{link, RedisLog};
use crate::domain::{ChannelName, EventId};
use crate::history::Event;
use crate::hub::presence::Member;
use crate::hub::{Change, Hub};
use crate::sse::PendingEvent;

/// Entries taken per `XREAD`.
const BATCH: usize = 1000;

pub async fn run(log: Arc<RedisLog>, shutdown: CancellationToken) {
    let hub = log.hub.clone();
    let block = (log.timeout / 5).clamp(Duration::from_millis(20), Duration::from_secs(1));
    let config = link::config(log.timeout / 2, block + log.timeout / 2);
    let mut reader = Reader {
        log,
        hub,
        at: None,
        epoch: None,
        checked_policy: false,
        load_presence: true,
        generation: 0,
    };
    let mut backoff = Duration::from_millis(50);
    while !shutdown.is_cancelled() {
        let connected = tokio::select! {
            () = shutdown.cancelled() => return,
            c = reader.connect(&config) => c,
        };
        let mut conn = match connected {
            Ok(conn) => conn,
            Err(e) => {
                reader.log.down(&e);
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        backoff = Duration::from_millis(50);
        reader.log.ok();
        let generation = reader.generation;
        loop {
            let read = tokio::select! {
                () = shutdown.cancelled() => return,
                r = reader.read(&mut conn, block) => r,
            };
            match read {
                Ok(()) => reader.log.ok(),
                Err(e) => {
                    reader.log.down(&e);
                    break;
                }
            }
            if reader.log.target.generation() != generation {
                break; // the Sentinels name another primary
            }
        }
    }
}

struct Reader {
    log: Arc<RedisLog>,
    hub: Arc<Hub>,
    /// The last log entry applied; `None` before the first connection.
    at: Option<EventId>,
    /// The epoch seen at the last connection.
    epoch: Option<String>,
    checked_policy: bool,
    /// The presence rooms must be (re)loaded from Redis: at the start, and
    /// after starting over (records may have been missed).
    load_presence: bool,
    /// The target generation of the connection (see [`super::target`]).
    generation: u64,
}

impl Reader {
    /// Connects, checks the epoch and where to resume.
    async fn connect(
        &mut self,
        config: &redis::AsyncConnectionConfig,
    ) -> redis::RedisResult<MultiplexedConnection> {
        self.generation = self.log.target.generation();
        let mut conn = self.log.target.connect(config).await?;
        let name = format!("herald-reader-{}", self.log.node);
        link::checked(
            conn.req_packed_command(redis::cmd("CLIENT").arg("SETNAME").arg(&name))
                .await,
        )?;
        let log = self.log.clone();
        // Before start.lua: a new primary that lacks what this node saw.
        log.link
            .guard()
            .check(&mut conn, self.at.map_or(0, EventId::get))
            .await?;
        let keys = &log.keys;
        let reply = link::checked(
            conn.req_packed_command(
                redis::cmd("EVAL")
                    .arg(include_str!("start.lua"))
                    .arg(3)
                    .arg(keys.key("seq"))
                    .arg(keys.key("epoch"))
                    .arg(keys.key("floor"))
                    .arg(format!("{:016x}", fastrand::u64(..)))
                    .arg(self.at.map_or(0, EventId::get)),
            )
            .await,
        )?;
        let (Some(seq), Some(epoch)) = (
            array(&reply)
                .and_then(|r| r.first())
                .and_then(text)
                .and_then(|s| s.parse().ok())
                .map(EventId::new),
            array(&reply).and_then(|r| r.get(1)).and_then(text),
        ) else {
            return Err(redis::RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "start script",
            )));
        };
        if array(&reply).and_then(|r| r.get(2)) == Some(&Value::Int(1)) {
            tracing::warn!(
                "Redis rolled back (restarted from an older snapshot or AOF): events this node \
                 applied are gone from it; a subscriber resuming from before them gets a herald.gap"
            );
        }
        if self.epoch.as_deref().is_some_and(|known| known != epoch) {
            self.start_over("Redis lost its data (new epoch)");
            self.at = Some(seq);
            self.hub.start_at(seq);
        }
        self.epoch = Some(epoch.to_owned());
        if self.at.is_none() {
            self.at = Some(seq);
            self.hub.start_at(seq);
        }
        if self.load_presence {
            super::presence::load(&self.log, &mut conn).await?;
            self.load_presence = false;
        }
        // After taking the place in the log: a revocation made since is in
        // the log after that place too.
        super::revoke::load(&self.log, &mut conn).await?;
        if !self.checked_policy {
            self.checked_policy = true;
            check_eviction_policy(&mut conn).await;
            let log = &self.log;
            let limits = format!(
                "--history {} --history-bytes {} --channel-ttl {:?} --max-channels {}",
                log.history.events, log.history.bytes, log.channel_ttl, log.max_channels
            );
            check_limits(&mut conn, &keys.key("limits"), &limits).await;
        }
        Ok(conn)
    }

    /// One `XREAD`: waits up to `block` for entries after the last one
    /// applied, and applies them.
    async fn read(
        &mut self,
        conn: &mut MultiplexedConnection,
        block: Duration,
    ) -> redis::RedisResult<()> {
        let at = self.at.expect("set by connect");
        let reply = link::checked(
            conn.req_packed_command(
                redis::cmd("XREAD")
                    .arg("COUNT")
                    .arg(BATCH)
                    .arg("BLOCK")
                    .arg(block.as_millis() as u64)
                    .arg("STREAMS")
                    .arg(self.log.keys.key("log"))
                    .arg(format!("{at}-0")),
            )
            .await,
        )?;
        let Some(entries) = entries(&reply) else {
            return Ok(());
        };
        if !self.replicated(conn, block).await? {
            return Ok(()); // read them again, until replicas confirm
        }
        let mut batch = Vec::with_capacity(entries.len());
        let mut at = at;
        for entry in entries {
            let Some((id, prev, item)) = decode(entry) else {
                // Not written by herald: nothing can be proven past it.
                self.hub.apply(std::mem::take(&mut batch));
                self.start_over("unreadable log entry");
                continue;
            };
            if let Item::Gap = item {
                // failover.lua: the primary lost entries some node saw,
                // after ids were issued past them; whatever this node's
                // streams saw, they may have missed some or seen some.
                self.hub.apply(std::mem::take(&mut batch));
                self.start_over("Redis failed over and lost events (a gap record)");
                at = id;
                continue;
            }
            if prev != at {
                self.hub.apply(std::mem::take(&mut batch));
                if prev < at {
                    // The log went on from an id before ours: Redis rolled
                    // back past what this node applied. Those ids are gone;
                    // whoever resumes from before them must hear so.
                    raise_floor(conn, &self.log.keys.key("floor"), at).await?;
                    self.start_over("Redis rolled back (restarted from an older snapshot or AOF)");
                } else {
                    self.start_over("entries missing from the log");
                }
            }
            at = id;
            match item {
                Item::Event(Some(channel), event) => batch.push((channel, event)),
                Item::Event(None, _) => {}
                Item::Presence(change) => {
                    // In log order with the events around it.
                    self.hub.apply(std::mem::take(&mut batch));
                    if let Some(change) = change {
                        self.hub.apply_presence(id, change);
                    }
                }
                Item::Disconnect(order) => {
                    self.hub.apply(std::mem::take(&mut batch));
                    match order {
                        // The node that took the request applied it then.
                        Some((origin, _)) if origin == self.log.node => {}
                        Some((_, order)) => {
                            self.hub.apply_disconnect(&order);
                        }
                        None => tracing::warn!("skipped a disconnect record this node cannot read"),
                    }
                }
                Item::Gap => {}
            }
        }
        self.hub.apply(batch);
        if entries.last().is_some_and(|e| {
            decode(e).is_none_or(|(_, _, item)| {
                matches!(
                    item,
                    Item::Event(None, _) | Item::Presence(None) | Item::Disconnect(_) | Item::Gap
                )
            })
        }) {
            // The batch ended on an entry the hub did not see.
            self.hub.start_at(at);
        }
        self.at = Some(at);
        self.log
            .seen
            .fetch_max(at.get(), std::sync::atomic::Ordering::AcqRel);
        if self.load_presence {
            super::presence::load(&self.log, conn).await?;
            self.load_presence = false;
        }
        Ok(())
    }

    /// With `--redis-replicas N`: whether N replicas hold what was just
    /// read, so that no stream is given an event a failover can take back
    /// (the WAIT covers a write made after the read, hence the entries).
    async fn replicated(
        &self,
        conn: &mut MultiplexedConnection,
        block: Duration,
    ) -> redis::RedisResult<bool> {
        let replicas = self.log.replicas;
        if replicas == 0 {
            return Ok(true);
        }
        let key = self.log.keys.key(&format!("w:{}", self.log.node));
        link::checked(
            conn.req_packed_command(redis::cmd("SET").arg(key).arg(1).arg("PX").arg(60_000))
                .await,
        )?;
        let confirmed = link::checked(
            conn.req_packed_command(
                redis::cmd("WAIT")
                    .arg(replicas)
                    .arg((block.as_millis() as u64).max(1)),
            )
            .await,
        )?;
        let ok = super::values::int(&confirmed).unwrap_or(0) >= i64::from(replicas);
        if !ok {
            tracing::debug!("log entries not confirmed by enough replicas yet: holding them back");
        }
        Ok(ok)
    }

    fn start_over(&mut self, why: &str) {
        self.load_presence = true;
        let streams = self.hub.reset();
        self.log.metrics.redis_resyncs.inc();
        tracing::warn!(
            streams,
            "{why}: this node may have missed events; ended its streams so clients resume from Redis"
        );
    }
}

/// The limits travel with each publish, so nodes that disagree on them
/// apply different ones to the same channel: say so when this node's differ
/// from those of the node that started before it.
async fn check_limits(conn: &mut MultiplexedConnection, key: &str, limits: &str) {
    let reply = conn
        .req_packed_command(redis::cmd("SET").arg(key).arg(limits).arg("GET"))
        .await;
    if let Some(previous) = reply.as_ref().ok().and_then(text) {
        if previous != limits {
            tracing::warn!(
                this_node = limits,
                previous_node = previous,
                "nodes of this service run with different history or channel limits; give them all the same"
            );
        }
    }
}

/// Raises the floor (see `start.lua`) to `to`.
async fn raise_floor(
    conn: &mut MultiplexedConnection,
    key: &str,
    to: EventId,
) -> redis::RedisResult<()> {
    const RAISE: &str = "if tonumber(redis.call('GET', KEYS[1]) or 0) < tonumber(ARGV[1]) then \
                         redis.call('SET', KEYS[1], ARGV[1]) end";
    link::checked(
        conn.req_packed_command(redis::cmd("EVAL").arg(RAISE).arg(1).arg(key).arg(to.get()))
            .await,
    )
    .map(drop)
}

/// The entries of an `XREAD` answer on one stream, `None` when it timed out.
fn entries(reply: &Value) -> Option<&[Value]> {
    let streams = array(reply)?;
    let stream = array(streams.first()?)?;
    array(stream.get(1)?)
}

/// What a log entry carries.
enum Item {
    /// An event, of its channel (`None` if not a valid name: the entry
    /// still counts for continuity).
    Event(Option<ChannelName>, Event),
    /// A presence record (`None` if unreadable; it counts all the same).
    Presence(Option<Change>),
    /// A disconnect (SPEC §11) and the node it came from (`None` if
    /// unreadable; it counts all the same).
    Disconnect(Option<(String, crate::revocation::Disconnect)>),
    /// A gap record (`failover.lua`): events before it were lost.
    Gap,
}

/// A log entry, with its id and the id issued before it: an event
/// `[ "<id>-0", ["c", channel, "p", prev, "b", fields, "n", len] ]`, or a
/// presence record `["k", kind, "p", prev, "c", channel, "s", sub, ...]`
/// (`presence.lua`).
fn decode(entry: &Value) -> Option<(EventId, EventId, Item)> {
    let entry = array(entry)?;
    let id = stream_id(entry.first()?)?;
    let fields = array(entry.get(1)?)?;
    let (mut channel, mut prev, mut body, mut len) = (None, None, None, None);
    let (mut kind, mut sub, mut info, mut join) = (None, None, None, false);
    for pair in fields.chunks_exact(2) {
        match bulk(&pair[0])? {
            b"c" => channel = text(&pair[1]),
            b"p" => prev = text(&pair[1]).and_then(|s| s.parse().ok()),
            b"b" => body = bulk(&pair[1]),
            b"n" => len = text(&pair[1]).and_then(|s| s.parse().ok()),
            b"k" => kind = bulk(&pair[1]),
            b"s" => sub = text(&pair[1]),
            b"i" => info = text(&pair[1]),
            b"j" => join = bulk(&pair[1]) == Some(b"1"),
            _ => {}
        }
    }
    let prev = EventId::new(prev?);
    if kind == Some(b"d") {
        return Some((id, prev, Item::Disconnect(super::revoke::decode(fields))));
    }
    let channel = channel.and_then(|c| ChannelName::parse(c).ok());
    if kind == Some(b"g") {
        return Some((id, prev, Item::Gap));
    }
    if let Some(kind) = kind {
        let change = (|| {
            let (channel, sub) = (channel?, sub?.to_owned());
            Some(match kind {
                b"o" => Change::Opened {
                    member: Member::new(&sub, Some(info?)),
                    channel,
                    count: len?,
                    join,
                },
                b"x" => Change::Closed {
                    channel,
                    sub,
                    count: len?,
                },
                b"l" => Change::Left { channel, sub },
                _ => return None,
            })
        })();
        return Some((id, prev, Item::Presence(change)));
    }
    let event = Event {
        id,
        frame: PendingEvent::from_fields(body?).finish(id),
        data_len: len?,
        ws: Default::default(),
    };
    Some((id, prev, Item::Event(channel, event)))
}

/// SPEC §9: herald relies on Redis never evicting its keys; say so at
/// startup when the server would.
async fn check_eviction_policy(conn: &mut MultiplexedConnection) {
    let reply = conn
        .req_packed_command(redis::cmd("CONFIG").arg("GET").arg("maxmemory-policy"))
        .await;
    match reply.as_ref().ok().and_then(array).and_then(|r| r.get(1)).and_then(text) {
        Some("noeviction") => {}
        Some(policy) => tracing::warn!(
            policy,
            "Redis maxmemory-policy is not noeviction: when Redis fills up it may evict herald's \
             history or id counter, and subscribers could miss events without a gap notice; \
             set `maxmemory-policy noeviction`"
        ),
        None => tracing::warn!(
            "could not read Redis maxmemory-policy (CONFIG GET refused?): make sure it is noeviction"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, fields: &[&str]) -> Value {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        Value::Array(vec![
            bulk(id),
            Value::Array(fields.iter().map(|f| bulk(f)).collect()),
        ])
    }

    #[test]
    fn presence_records_decode_in_the_id_chain() {
        let ch = ChannelName::parse("presence-a").unwrap();
        let open = entry(
            "11-0",
            &[
                "k",
                "o",
                "c",
                "presence-a",
                "s",
                "1",
                "i",
                "{\"n\":1}",
                "n",
                "2",
                "j",
                "1",
                "p",
                "10",
            ],
        );
        let Some((id, prev, Item::Presence(Some(change)))) = decode(&open) else {
            panic!("a presence record");
        };
        assert_eq!((id, prev), (EventId::new(11), EventId::new(10)));
        assert_eq!(
            change,
            Change::Opened {
                channel: ch.clone(),
                member: Member::new("1", Some("{\"n\":1}")),
                count: 2,
                join: true,
            }
        );
        let close = entry(
            "12-0",
            &["k", "x", "p", "11", "c", "presence-a", "s", "1", "n", "0"],
        );
        assert!(matches!(
            decode(&close),
            Some((_, _, Item::Presence(Some(Change::Closed { count: 0, .. }))))
        ));
        // Unreadable, it still counts for continuity.
        let odd = entry("13-0", &["k", "?", "p", "12", "c", "presence-a", "s", "1"]);
        assert!(matches!(
            decode(&odd),
            Some((_, prev, Item::Presence(None))) if prev == EventId::new(12)
        ));
        let event = entry(
            "14-0",
            &["c", "news", "p", "13", "b", "data: x\n", "n", "1"],
        );
        assert!(matches!(
            decode(&event),
            Some((_, _, Item::Event(Some(_), _)))
        ));
    }
}
