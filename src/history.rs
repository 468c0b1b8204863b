//! One channel's ring buffer of recent events, and the rule that decides
//! whether a subscriber resuming from an id missed anything.
//!
//! Pure and synchronous: the hub calls it under its lock, and the unit tests
//! below cover the replay and gap rules of SPEC §2 without any I/O.

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::domain::{ChannelName, EventId};

/// A published event as it travels: its id, its frame on the wire (shared,
/// encoded once) and the size of its data for the `--history-bytes` budget.
#[derive(Clone, Debug)]
pub struct Event {
    pub id: EventId,
    /// The complete SSE frame, `id:` line to blank line.
    pub frame: Bytes,
    /// Length of the published data, counted against `--history-bytes`.
    pub data_len: usize,
    /// The WebSocket text message, encoded from `frame` by the first
    /// WebSocket subscriber that writes the event and shared by all the
    /// others: an event no WebSocket carries is never encoded twice.
    pub ws: Arc<OnceLock<Utf8Bytes>>,
}

impl Event {
    pub fn new(id: EventId, frame: Bytes, data_len: usize) -> Event {
        Event {
            id,
            frame,
            data_len,
            ws: Arc::default(),
        }
    }

    /// A frame that is not a published event but travels on the channel's
    /// live queue with them: a presence notice (`herald.join`, ...), with
    /// no `id:` line and never kept in history. `position` is the newest id
    /// applied when it was sent, its place in the id order: every event of
    /// the channel up to it was queued before it. Encoded once, like an
    /// event: the SSE frame here, the WebSocket message by the first socket
    /// that writes it.
    pub fn notice(position: EventId, frame: Bytes) -> Event {
        Event::new(position, frame, 0)
    }

    /// Whether this is a [notice](Event::notice). Published data is never
    /// empty (SPEC §3), so a zero `data_len` marks a notice.
    pub fn is_notice(&self) -> bool {
        self.data_len == 0
    }
}

/// A `herald.*` notice for one subscriber: no id (so it never moves a
/// client's last event id), a type, and JSON data naming at least the
/// channel. Each transport encodes it its own way; notices are rare, so
/// they are encoded per subscriber.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    pub channel: ChannelName,
    /// `herald.gap`, ...
    pub event: &'static str,
    /// Compact JSON: never holds a raw line break.
    pub data: String,
}

/// Why a `herald.gap` notice is sent; its text appears in the notice's JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GapReason {
    /// The presented id is older than what the channel still retains.
    History,
    /// The presented `Last-Event-ID` is not an id this server could have issued.
    UnknownId,
    /// The subscriber fell behind the live buffer and events it missed were
    /// no longer retained.
    SlowSubscriber,
}

impl GapReason {
    fn as_str(self) -> &'static str {
        match self {
            GapReason::History => "history",
            GapReason::UnknownId => "unknown_id",
            GapReason::SlowSubscriber => "slow_subscriber",
        }
    }
}

impl Notice {
    /// A `herald.gap` notice: JSON data naming the channel, the reason, and
    /// the last id the subscriber is known to have (if any).
    pub fn gap(channel: &ChannelName, reason: GapReason, after: Option<EventId>) -> Notice {
        let data = serde_json::json!({
            "channel": channel.as_str(),
            "reason": reason.as_str(),
            "last_event_id": after.map(|id| id.to_string()),
        });
        Notice {
            channel: channel.clone(),
            event: "herald.gap",
            data: data.to_string(),
        }
    }
}

/// How much a channel keeps: the fewer of `events` and `bytes` of data, and
/// with `age` nothing older (ids are Unix microseconds, so an event's id is
/// its time). The newest event is kept whatever its size, until it is older
/// than `age`.
#[derive(Clone, Copy, Debug)]
pub struct HistoryLimits {
    pub events: usize,
    pub bytes: usize,
    pub age: Option<Duration>,
}

impl HistoryLimits {
    /// Events with an id below this are too old at `now_micros`.
    pub fn age_cutoff(&self, now_micros: u64) -> Option<EventId> {
        let age = self.age?.as_micros().min(u64::MAX as u128) as u64;
        Some(EventId::new(now_micros.saturating_sub(age)))
    }
}

#[derive(Debug)]
pub struct History {
    /// Retained events, oldest first; ids strictly increase.
    events: VecDeque<Event>,
    /// Sum of `data_len` over `events`.
    data_bytes: usize,
    /// The newest id this channel can no longer replay: the id of the newest
    /// event it dropped, or, if it dropped none, the newest id the server had
    /// issued before the channel was created. A subscriber that presents an
    /// id below the mark may have missed something.
    mark: EventId,
    limits: HistoryLimits,
}

impl History {
    /// An empty history; `mark` is the newest id issued so far on the server.
    pub fn new(limits: HistoryLimits, mark: EventId) -> History {
        History {
            events: VecDeque::new(),
            data_bytes: 0,
            mark,
            limits,
        }
    }

    /// Appends the newest event, dropping the oldest ones past the limits.
    pub fn push(&mut self, event: Event) {
        debug_assert!(self.last_id().is_none_or(|last| last < event.id));
        let cutoff = self.limits.age_cutoff(event.id.get());
        self.data_bytes += event.data_len;
        self.events.push_back(event);
        while self.events.len() > self.limits.events.max(1)
            || (self.data_bytes > self.limits.bytes && self.events.len() > 1)
        {
            self.drop_oldest();
        }
        if let Some(cutoff) = cutoff {
            self.expire(cutoff);
        }
    }

    /// Drops the events with an id below `cutoff` (`--history-age`).
    pub fn expire(&mut self, cutoff: EventId) {
        while self.events.front().is_some_and(|e| e.id < cutoff) {
            self.drop_oldest();
        }
    }

    fn drop_oldest(&mut self) {
        if let Some(dropped) = self.events.pop_front() {
            self.data_bytes -= dropped.data_len;
            self.mark = dropped.id;
        }
    }

    /// The newest id this channel can no longer replay.
    pub fn mark(&self) -> EventId {
        self.mark
    }

    /// Sum of the data lengths of the retained events.
    pub fn data_bytes(&self) -> usize {
        self.data_bytes
    }

    /// Drops the events up to `through` and marks them as no longer
    /// replayable; returns whether nothing is left.
    pub fn forget_through(&mut self, through: EventId) -> bool {
        while self.events.front().is_some_and(|e| e.id <= through) {
            let dropped = self
                .events
                .pop_front()
                .expect("the loop only runs while an event is held");
            self.data_bytes -= dropped.data_len;
        }
        self.mark = self.mark.max(through);
        self.events.is_empty()
    }

    /// The events after `after`, and whether that list is provably complete
    /// (nothing after `after` was ever dropped).
    pub fn since(&self, after: EventId) -> (bool, impl Iterator<Item = &Event>) {
        let start = self.events.partition_point(|e| e.id <= after);
        (after >= self.mark, self.events.range(start..))
    }

    /// Whether `id` is at or before what this history already accounts for
    /// (retained, or dropped under the mark): an event with that id must not
    /// be appended again.
    pub fn holds_up_to(&self, id: EventId) -> bool {
        id <= self.mark || self.last_id().is_some_and(|last| id <= last)
    }

    /// Every retained event, oldest first.
    pub fn all(&self) -> impl Iterator<Item = &Event> {
        self.events.iter()
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    pub fn last_id(&self) -> Option<EventId> {
        self.events.back().map(|e| e.id)
    }

    /// Releases spare capacity after a burst, so an idle channel's memory
    /// follows what it holds.
    pub fn shrink(&mut self) {
        self.events.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: u64, data_len: usize) -> Event {
        Event::new(
            EventId::new(id),
            Bytes::from(format!("id: {id}\n\n")),
            data_len,
        )
    }

    fn history(events: usize, bytes: usize, mark: u64) -> History {
        History::new(
            HistoryLimits {
                events,
                bytes,
                age: None,
            },
            EventId::new(mark),
        )
    }

    fn ids<'a>(it: impl Iterator<Item = &'a Event>) -> Vec<u64> {
        it.map(|e| e.id.get()).collect()
    }

    #[test]
    fn keeps_the_last_n_events() {
        let mut h = history(3, 1 << 20, 0);
        for id in 1..=5 {
            h.push(event(id, 1));
        }
        assert_eq!(ids(h.all()), [3, 4, 5]);
    }

    #[test]
    fn keeps_at_most_the_byte_budget_but_always_the_newest() {
        let mut h = history(100, 10, 0);
        h.push(event(1, 4));
        h.push(event(2, 4));
        h.push(event(3, 4));
        assert_eq!(ids(h.all()), [2, 3]);
        h.push(event(4, 50));
        assert_eq!(
            ids(h.all()),
            [4],
            "the newest event stays even when too big"
        );
    }

    #[test]
    fn since_returns_later_events_and_complete_when_nothing_was_dropped() {
        let mut h = history(10, 1 << 20, 0);
        for id in [10, 20, 30] {
            h.push(event(id, 1));
        }
        let (complete, events) = h.since(EventId::new(15));
        assert!(complete);
        assert_eq!(ids(events), [20, 30]);
        let (complete, events) = h.since(EventId::new(30));
        assert!(complete);
        assert_eq!(ids(events), Vec::<u64>::new());
    }

    #[test]
    fn an_id_below_the_newest_dropped_event_is_a_gap() {
        let mut h = history(2, 1 << 20, 0);
        for id in [10, 20, 30] {
            h.push(event(id, 1));
        }
        // 10 was dropped: whoever last saw 5 missed it, whoever saw 10 did not.
        assert!(!h.since(EventId::new(5)).0);
        assert!(h.since(EventId::new(10)).0);
        assert_eq!(ids(h.since(EventId::new(10)).1), [20, 30]);
    }

    #[test]
    fn events_older_than_the_age_limit_are_dropped_and_marked() {
        let mut h = History::new(
            HistoryLimits {
                events: 100,
                bytes: 1 << 20,
                age: Some(Duration::from_micros(100)),
            },
            EventId::new(0),
        );
        for id in [1_000, 1_050, 1_120] {
            h.push(event(id, 1));
        }
        assert_eq!(ids(h.all()), [1_050, 1_120], "1000 is over 100 µs older");
        h.expire(EventId::new(2_000));
        assert!(h.is_empty(), "everything expires, the newest too");
        assert!(!h.since(EventId::new(1_050)).0, "expired events are a gap");
        assert!(h.since(EventId::new(1_120)).0);
    }

    #[test]
    fn a_new_channel_marks_the_ids_issued_before_it() {
        let h = history(10, 1 << 20, 100);
        assert!(
            !h.since(EventId::new(99)).0,
            "may have missed an earlier life"
        );
        assert!(h.since(EventId::new(100)).0);
    }
}
