//! Before a stream opens on this node: the channels it reads are held
//! here, their history loaded from Redis first (`load.lua`), and the log
//! applied up to the stream's `Last-Event-ID`, so the hub serves the
//! subscribe exactly as a single node would ([`RedisLog::prepare_subscribe`]).

use std::time::Duration;

use tokio::time::Instant;

use super::link::Arg;
use super::values::{array, bulk, int, stream_id, text};
use super::{LogError, RedisLog};
use crate::domain::{ChannelName, EventId, Resume};
use crate::history::Event;
use crate::hub::presence::Member;
use crate::hub::Snapshot;
use crate::metrics::RejectReason;
use crate::sse::PendingEvent;

impl RedisLog {
    /// Makes sure this node holds `channels` (loading their history from
    /// Redis) and has applied the log up to `resume`'s id, so the hub can
    /// serve the subscribe exactly as a single node would; a `member`'s
    /// stream on presence channels is counted in service-wide.
    pub async fn prepare_subscribe(
        &self,
        channels: &[ChannelName],
        resume: Resume,
        member: Option<&Member>,
    ) -> Result<(), RejectReason> {
        self.hold_channels(channels, resume).await?;
        match member {
            Some(member) => self.open_member(channels, member).await,
            None => Ok(()),
        }
    }

    async fn hold_channels(
        &self,
        channels: &[ChannelName],
        resume: Resume,
    ) -> Result<(), RejectReason> {
        if !self.is_up() {
            return Err(RejectReason::BackendUnavailable);
        }
        let hub = &*self.hub;
        if let Resume::After(id) = resume {
            // Published through another node, and this node's reader has not
            // got there yet: wait for it, unless no such id was ever issued.
            if id > hub.applied() && id <= self.issued().await.map_err(LogError::reason)? {
                hub.wait_applied(id, self.timeout).await;
            }
        }
        let deadline = Instant::now() + self.timeout;
        while Instant::now() < deadline {
            let plan = hub.begin_load(channels);
            if !plan.load.is_empty() {
                match self.snapshot(&plan.load).await {
                    Ok(snapshots) => hub.finish_load(snapshots),
                    Err(e) => {
                        hub.cancel_load(&plan.load);
                        return Err(e.reason());
                    }
                }
            } else if plan.wait {
                hub.wait_loaded(Duration::from_millis(50)).await;
            } else {
                return Ok(());
            }
        }
        // Still loading elsewhere: the hub creates what is missing with
        // nothing to replay, which errs on the side of a gap notice.
        Ok(())
    }

    /// The newest id Redis has issued.
    async fn issued(&self) -> Result<EventId, LogError> {
        let reply = self
            .link
            .query(redis::cmd("GET").arg(self.keys.key("seq")))
            .await
            .map_err(|e| self.failed("GET", e))?;
        Ok(EventId::new(
            text(&reply).and_then(|s| s.parse().ok()).unwrap_or(0),
        ))
    }

    async fn snapshot(&self, names: &[ChannelName]) -> Result<Vec<Snapshot>, LogError> {
        let mut keys = vec![
            self.keys.key("seq"),
            self.keys.key("channels"),
            self.keys.key("floor"),
        ];
        for name in names {
            keys.push(self.keys.stream(name));
            keys.push(self.keys.meta(name));
        }
        let mut args = vec![
            Arg::Int(self.key_lifetime_ms()),
            Arg::Int(self.max_channels as u64),
        ];
        args.extend(names.iter().map(|n| Arg::Str(n.as_str())));
        let reply = self
            .link
            .eval(&self.scripts.load, &keys, &args)
            .await
            .map_err(|e| self.failed("load", e))?;
        if int(&reply) == Some(0) {
            return Err(LogError::ChannelLimit);
        }
        let parts = array(&reply).ok_or_else(|| self.unexpected("load"))?;
        if parts.len() != 2 * names.len() {
            return Err(self.unexpected("load"));
        }
        names
            .iter()
            .zip(parts.chunks(2))
            .map(|(name, part)| {
                let mark = text(&part[0])
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| self.unexpected("load"))?;
                let entries = array(&part[1]).ok_or_else(|| self.unexpected("load"))?;
                let events = entries
                    .iter()
                    .map(|entry| decode_stream_entry(entry).ok_or_else(|| self.unexpected("load")))
                    .collect::<Result<Vec<Event>, LogError>>()?;
                Ok(Snapshot {
                    channel: name.clone(),
                    mark: EventId::new(mark),
                    events,
                })
            })
            .collect()
    }
}

/// An entry of a channel stream: `[ "<id>-0", ["b", fields, "n", len] ]`.
fn decode_stream_entry(entry: &redis::Value) -> Option<Event> {
    let entry = array(entry)?;
    let id = stream_id(entry.first()?)?;
    let fields = array(entry.get(1)?)?;
    let (mut body, mut len) = (None, None);
    for pair in fields.chunks_exact(2) {
        match bulk(&pair[0])? {
            b"b" => body = bulk(&pair[1]),
            b"n" => len = text(&pair[1]).and_then(|s| s.parse().ok()),
            _ => {}
        }
    }
    Some(Event {
        id,
        frame: PendingEvent::from_fields(body?).finish(id),
        data_len: len?,
        ws: Default::default(),
    })
}
