//! One channel's ring buffer of recent events, and the rule that decides
//! whether a subscriber resuming from an id missed anything.
//!
//! Pure and synchronous: the hub calls it under its lock, and the unit tests
//! below cover the replay and gap rules of SPEC §2 without any I/O.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::domain::EventId;

/// A published event as it travels: its id, its frame on the wire (shared,
/// encoded once) and the size of its data for the `--history-bytes` budget.
#[derive(Clone, Debug)]
pub struct Event {
    pub id: EventId,
    /// The complete SSE frame, `id:` line to blank line.
    pub frame: Bytes,
    /// Length of the published data, counted against `--history-bytes`.
    pub data_len: usize,
}

impl Event {
    /// A frame that is not a published event but travels on the channel's
    /// live queue with them: a presence notice (`herald.join`, ...), with
    /// no `id:` line and never kept in history. `position` is the newest id
    /// issued when it was sent, its place in the id order: every event of
    /// the channel up to it was queued before it.
    pub fn notice(position: EventId, frame: Bytes) -> Event {
        Event {
            id: position,
            frame,
            data_len: 0,
        }
    }

    /// Whether this is a [notice](Event::notice). Published data is never
    /// empty (SPEC §3), so a zero `data_len` marks a notice.
    pub fn is_notice(&self) -> bool {
        self.data_len == 0
    }
}

/// How much a channel keeps: the fewer of `events` and `bytes` of data. The
/// newest event is always kept, whatever its size.
#[derive(Clone, Copy, Debug)]
pub struct HistoryLimits {
    pub events: usize,
    pub bytes: usize,
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
        self.data_bytes += event.data_len;
        self.events.push_back(event);
        while self.events.len() > self.limits.events.max(1)
            || (self.data_bytes > self.limits.bytes && self.events.len() > 1)
        {
            let dropped = self
                .events
                .pop_front()
                .expect("the loop only runs while more than one event is held");
            self.data_bytes -= dropped.data_len;
            self.mark = dropped.id;
        }
    }

    /// The events after `after`, and whether that list is provably complete
    /// (nothing after `after` was ever dropped).
    pub fn since(&self, after: EventId) -> (bool, impl Iterator<Item = &Event>) {
        let start = self.events.partition_point(|e| e.id <= after);
        (after >= self.mark, self.events.range(start..))
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
        Event {
            id: EventId::new(id),
            frame: Bytes::from(format!("id: {id}\n\n")),
            data_len,
        }
    }

    fn history(events: usize, bytes: usize, mark: u64) -> History {
        History::new(HistoryLimits { events, bytes }, EventId::new(mark))
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
    fn a_new_channel_marks_the_ids_issued_before_it() {
        let h = history(10, 1 << 20, 100);
        assert!(
            !h.since(EventId::new(99)).0,
            "may have missed an earlier life"
        );
        assert!(h.since(EventId::new(100)).0);
    }
}
