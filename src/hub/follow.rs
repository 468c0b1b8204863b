//! Following a shared log: the hub as a node of a service whose ids are
//! issued by Redis ([`crate::log::redis`]).
//!
//! This is the second way events enter the hub, beside [`Hub::applier`]:
//! a node follows the *whole* service's log but holds only the channels
//! its subscribers use, so an event of a channel not held here is skipped
//! (it stays in Redis) instead of creating the channel.
//!
//! Every node reads the same log in the same order and hands it here with
//! [`Hub::apply`]: the hub appends each event to the history of the channel
//! (if this node holds it) and sends it to the live receivers, under the
//! same lock and in the same order as a local publish would, so the replay
//! and merge rules of the rest of the hub hold unchanged.
//!
//! A node holds a channel only once something here subscribed to it: its
//! history is first *loaded* from the log's copy ([`Hub::begin_load`], then
//! a snapshot read from Redis, then [`Hub::finish_load`]). Events the log
//! delivers while the snapshot is on its way are kept aside and merged, so
//! the loaded history is exactly the log's, up to the last entry applied.
//!
//! [`Hub::reset`] forgets every channel and ends every stream: the node
//! lost track of the log (Redis restarted empty, or the node fell further
//! behind than the log keeps, or Redis was unreachable for longer than
//! `--redis-timeout`). Clients reconnect with `Last-Event-ID` and are served
//! from a fresh load, which tells them exactly what they missed.

use tokio::time::Instant;

use super::{Channel, Hub};
use crate::domain::{ChannelName, EventId};
use crate::history::{Event, History};

/// A channel's history as the shared log holds it: the mark and the
/// retained events, oldest first.
pub struct Snapshot {
    pub channel: ChannelName,
    pub mark: EventId,
    pub events: Vec<Event>,
}

/// What a subscriber must do before its channels are all held here.
#[derive(Debug, Default)]
pub struct LoadPlan {
    /// Channels this caller must load (they are now marked as loading).
    pub load: Vec<ChannelName>,
    /// Some channel is being loaded by another subscriber: wait for it.
    pub wait: bool,
}

impl Hub {
    /// Applies log entries, in log order. Events of channels this node does
    /// not hold are skipped (a later load reads them from the log), and so
    /// is an event a load already brought in.
    pub fn apply(&self, entries: Vec<(ChannelName, Event)>) {
        let Some(last) = entries.last().map(|(_, e)| e.id) else {
            return;
        };
        let now = Instant::now();
        let mut inner = self.lock();
        for (name, event) in entries {
            inner.last = inner.last.max(event.id);
            if let Some(channel) = inner.channels.get_mut(&name) {
                if channel.history.holds_up_to(event.id) {
                    continue;
                }
                channel.history.push(event.clone());
                channel.active_at = now;
                if let Some(sender) = &channel.sender {
                    let _ = sender.send(event);
                }
            } else if let Some(pending) = inner.loading.get_mut(&name) {
                pending.push(event);
            }
        }
        drop(inner);
        self.applied.send_replace(last);
    }

    /// The id of the last log entry applied (or the log's top when the
    /// reader started).
    pub fn applied(&self) -> EventId {
        *self.applied.borrow()
    }

    /// Sets where the log stands for this node: the newest id issued
    /// before the entries it will apply next (called by the reader when it
    /// starts, before any subscriber is served). This replaces the node's
    /// own clock, which may disagree with Redis's.
    pub fn start_at(&self, id: EventId) {
        self.lock().last = id;
        self.applied.send_replace(id);
    }

    /// Waits until the log entry `id` has been applied here, for at most
    /// `wait`. Returns whether it has.
    pub async fn wait_applied(&self, id: EventId, wait: std::time::Duration) -> bool {
        let mut rx = self.applied.subscribe();
        tokio::time::timeout(wait, rx.wait_for(|applied| *applied >= id))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Marks the channels of `names` that this node neither holds nor is
    /// loading as loading, and says which the caller must load.
    pub fn begin_load(&self, names: &[ChannelName]) -> LoadPlan {
        let mut inner = self.lock();
        let mut plan = LoadPlan::default();
        for name in names {
            if inner.channels.contains_key(name) {
                continue;
            }
            if inner.loading.contains_key(name) {
                plan.wait = true;
                continue;
            }
            inner.loading.insert(name.clone(), Vec::new());
            plan.load.push(name.clone());
        }
        plan
    }

    /// Waits (at most `wait`) for another subscriber's load to finish.
    pub async fn wait_loaded(&self, wait: std::time::Duration) {
        let _ = tokio::time::timeout(wait, self.loaded.notified()).await;
    }

    /// Installs loaded histories. Only what the log has delivered here so far
    /// is installed (snapshot events up to [`Hub::applied`], merged with
    /// those that arrived during the load); later ones come through
    /// [`Hub::apply`] in log order, so a stream on several channels still
    /// sees ids increase.
    pub fn finish_load(&self, snapshots: Vec<Snapshot>) {
        let now = Instant::now();
        let mut inner = self.lock();
        let applied = inner.last;
        for snapshot in snapshots {
            // Gone from `loading`: a reset happened meanwhile, the snapshot
            // may predate it, drop it.
            let Some(arrived) = inner.loading.remove(&snapshot.channel) else {
                continue;
            };
            // Created meanwhile by a subscribe that gave up waiting (with
            // nothing to replay): it has live receivers, keep it.
            if inner.channels.contains_key(&snapshot.channel) {
                continue;
            }
            let mut events: Vec<Event> = snapshot
                .events
                .into_iter()
                .filter(|e| e.id <= applied)
                .chain(arrived)
                .collect();
            events.sort_unstable_by_key(|e| e.id);
            events.dedup_by_key(|e| e.id);
            // Events after `applied` are still on their way through the log;
            // whatever the log dropped up to the mark that is newer than
            // `applied` will arrive too, so the mark here is at most that.
            let mark = snapshot.mark.min(applied);
            let mut history = History::new(self.config.history, mark);
            for event in events {
                if !history.holds_up_to(event.id) {
                    history.push(event);
                }
            }
            inner.channels.insert(
                snapshot.channel,
                Channel {
                    history,
                    sender: None,
                    active_at: now,
                },
            );
        }
        drop(inner);
        self.loaded.notify_waiters();
    }

    /// Gives up loading `names` (Redis did not answer).
    pub fn cancel_load(&self, names: &[ChannelName]) {
        let mut inner = self.lock();
        for name in names {
            inner.loading.remove(name);
        }
        drop(inner);
        self.loaded.notify_waiters();
    }

    /// Forgets every channel and ends every open stream (see the module
    /// doc). Returns how many streams were open.
    pub fn reset(&self) -> usize {
        let mut inner = self.lock();
        let streams = inner.channels.values().map(Channel::subscribers).sum();
        inner.channels.clear();
        inner.loading.clear();
        drop(inner);
        self.loaded.notify_waiters();
        streams
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Resume;
    use crate::hub::tests::{event, hub, name, replayed_ids};

    #[test]
    fn events_of_channels_not_held_are_skipped_but_move_the_clock() {
        let hub = hub(3, 10);
        hub.apply(vec![(name("a"), event(10))]);
        assert_eq!(hub.applied(), EventId::new(10));
        assert_eq!(hub.channel_count(), 0);
    }

    #[test]
    fn a_load_merges_the_snapshot_with_what_arrived_meanwhile() {
        let hub = hub(3, 10);
        hub.start_at(EventId::new(10));
        let plan = hub.begin_load(&[name("a")]);
        assert_eq!(plan.load, [name("a")]);
        // The log delivers 12 while the snapshot (taken at 12) is read.
        hub.apply(vec![(name("a"), event(12))]);
        hub.finish_load(vec![Snapshot {
            channel: name("a"),
            mark: EventId::new(5),
            events: vec![event(8), event(12)],
        }]);
        // 14 arrives after the load: appended once.
        hub.apply(vec![(name("a"), event(14))]);
        assert_eq!(
            replayed_ids(&hub, "a", 5),
            ["id: 8", "id: 12", "id: 14"],
            "no gap, no duplicate"
        );
    }

    #[test]
    fn snapshot_events_the_log_has_not_delivered_yet_wait_for_the_log() {
        let hub = hub(3, 10);
        hub.start_at(EventId::new(10));
        hub.begin_load(&[name("a")]);
        // The snapshot already holds 20, which the log has not applied yet.
        hub.finish_load(vec![Snapshot {
            channel: name("a"),
            mark: EventId::new(5),
            events: vec![event(8), event(20)],
        }]);
        assert_eq!(replayed_ids(&hub, "a", 5), ["id: 8"]);
        hub.apply(vec![(name("b"), event(15)), (name("a"), event(20))]);
        assert_eq!(replayed_ids(&hub, "a", 8), ["id: 20"]);
    }

    #[test]
    fn reset_forgets_channels_and_ends_streams() {
        let hub = hub(3, 10);
        hub.begin_load(&[name("a")]);
        hub.finish_load(vec![Snapshot {
            channel: name("a"),
            mark: EventId::new(0),
            events: vec![],
        }]);
        let mut sub = hub.subscribe(&[name("a")], Resume::Live).unwrap();
        assert_eq!(hub.reset(), 1);
        assert!(matches!(
            sub.sources[0].receiver.try_recv(),
            Err(tokio::sync::broadcast::error::TryRecvError::Closed)
        ));
        assert_eq!(hub.channel_count(), 0);
    }
}
