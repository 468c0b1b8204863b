//! The hub's upkeep, beside publish and subscribe: the channel listing and
//! counts (`GET /channels`, metrics, the Redis heartbeat), reaping idle
//! channels and aged events, the snapshot a disk compaction writes, and
//! closing every stream at shutdown. Each takes the hub's lock once.

use std::time::Duration;

use tokio::time::Instant;

use super::{unix_micros, Channel, Hub};
use crate::domain::{ChannelName, EventId};
use crate::history::Event;

/// What [`Hub::reap`] did.
#[derive(Debug)]
pub struct Reaped {
    /// Channels left.
    pub left: usize,
    /// Channels dropped for `--channel-ttl`.
    pub dropped: Vec<ChannelName>,
    /// The newest id applied when they were dropped: every event they held
    /// is at or below it.
    pub through: EventId,
}

/// A row of `GET /channels`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ChannelInfo {
    pub channel: ChannelName,
    pub subscribers: usize,
    pub retained: usize,
    #[serde(serialize_with = "opt_as_string")]
    pub last_event_id: Option<EventId>,
}

impl Hub {
    /// Every channel, sorted by name.
    pub fn channels(&self) -> Vec<ChannelInfo> {
        let inner = self.lock();
        let mut rows: Vec<ChannelInfo> = inner
            .channels
            .iter()
            .map(|(name, ch)| ChannelInfo {
                channel: name.clone(),
                subscribers: ch.subscribers(),
                retained: ch.history.len(),
                last_event_id: ch.history.last_id(),
            })
            .collect();
        drop(inner);
        rows.sort_unstable_by(|a, b| a.channel.cmp(&b.channel));
        rows
    }

    /// Ends every stream: drops every live queue, so each receiver sees the
    /// channel closed and its stream ends after what it already has. Called
    /// once at shutdown; costs the streams nothing while the server runs
    /// (no per-stream shutdown watch to poll).
    pub fn close(&self) {
        let mut inner = self.lock();
        inner.closed = true;
        for channel in inner.channels.values_mut() {
            channel.sender = None;
        }
    }

    /// Live subscribers of `channel` on this server.
    pub fn subscribers(&self, channel: &ChannelName) -> usize {
        self.lock()
            .channels
            .get(channel)
            .map_or(0, Channel::subscribers)
    }

    /// Every channel with live subscribers here, and how many.
    pub fn subscriber_counts(&self) -> Vec<(ChannelName, usize)> {
        self.lock()
            .channels
            .iter()
            .map(|(name, ch)| (name.clone(), ch.subscribers()))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    pub fn channel_count(&self) -> usize {
        self.lock().channels.len()
    }

    /// Drops channels with no subscriber and no publish for `--channel-ttl`,
    /// with their history, and live queues nobody listens to; drops events
    /// past `--history-age`.
    pub fn reap(&self, now: Instant) -> Reaped {
        let ttl = self.config.channel_ttl;
        let cutoff = self.config.history.age_cutoff(unix_micros());
        let mut dropped = Vec::new();
        let mut inner = self.lock();
        inner.channels.retain(|name, ch| {
            if let Some(cutoff) = cutoff {
                ch.history.expire(cutoff);
            }
            if ch.subscribers() > 0 {
                ch.active_at = now;
                return true;
            }
            ch.sender = None;
            let keep = now.saturating_duration_since(ch.active_at) < ttl;
            if !keep {
                dropped.push(name.clone());
            }
            keep
        });
        let left = inner.channels.len();
        if inner.channels.capacity() > 4 * left + 64 {
            inner.channels.shrink_to_fit();
        }
        Reaped {
            left,
            dropped,
            through: inner.last,
        }
    }

    /// Every channel that retains events: its name, mark and events, oldest
    /// first (cheap clones of the shared frames), taken at one instant.
    pub fn snapshot(&self) -> Vec<(ChannelName, EventId, Vec<Event>)> {
        let inner = self.lock();
        inner
            .channels
            .iter()
            .filter(|(_, ch)| !ch.history.is_empty())
            .map(|(name, ch)| {
                let events = ch.history.all().cloned().collect();
                (name.clone(), ch.history.mark(), events)
            })
            .collect()
    }

    /// About how many bytes the retained events take in a log: their data
    /// plus `overhead` per event.
    pub fn retained_bytes(&self, overhead: usize) -> u64 {
        let inner = self.lock();
        inner
            .channels
            .iter()
            .map(|(name, ch)| {
                let per_event = overhead + name.as_str().len();
                (ch.history.data_bytes() + ch.history.len() * per_event) as u64
            })
            .sum()
    }

    /// How often [`Hub::reap`] should run: often enough that a channel
    /// outlives its TTL by little.
    pub fn reap_interval(&self) -> Duration {
        (self.config.channel_ttl / 4).clamp(Duration::from_millis(20), Duration::from_secs(30))
    }
}

fn opt_as_string<S: serde::Serializer>(id: &Option<EventId>, s: S) -> Result<S::Ok, S::Error> {
    match id {
        Some(id) => s.collect_str(id),
        None => s.serialize_none(),
    }
}

impl serde::Serialize for ChannelName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}
