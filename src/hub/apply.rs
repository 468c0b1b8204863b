//! The one way events enter the hub: numbered by a log, applied in id order.
//!
//! Whatever issues ids (the in-memory log, the disk log's writer thread, a
//! Redis log reader), it takes an [`Applier`], the hub locked for applying,
//! and hands it events in strictly increasing id order. Applying appends the
//! event to its channel's history and sends it to the channel's live
//! receivers, under the hub's lock, so subscribe sees either all of it or
//! none of it (see the module doc of [`crate::hub`]).
//!
//! Recovery uses the same guard to rebuild the hub from a log before the
//! server accepts anything: [`Applier::restore_channel`] (a channel with the
//! mark it had), [`Applier::restore_event`] for each event,
//! [`Applier::forget`] for a channel the reaper dropped, and
//! [`Applier::raise_last`] for ids issued by an earlier run.

use std::sync::MutexGuard;

use tokio::time::Instant;

use crate::domain::{ChannelName, EventId};
use crate::history::{Event, History};

use super::{channel_entry, Hub, Inner};

/// An event whose id is not above the newest applied one: the log broke its
/// contract. Nothing of it was applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("event {id} is not after the newest applied event {last}")]
pub struct OutOfOrder {
    pub id: EventId,
    pub last: EventId,
}

/// The hub, locked for applying numbered events. Hold it briefly: every
/// subscribe and publish waits for it. Never hold it across an `.await`.
pub struct Applier<'a> {
    hub: &'a Hub,
    inner: MutexGuard<'a, Inner>,
    now: Instant,
}

impl Hub {
    /// Locks the hub for applying events (one lock take for a whole batch).
    pub fn applier(&self) -> Applier<'_> {
        Applier {
            hub: self,
            inner: self.lock(),
            now: Instant::now(),
        }
    }

    /// The newest id applied, or the floor set at start.
    pub fn last_id(&self) -> EventId {
        self.lock().last
    }
}

impl Applier<'_> {
    /// The newest id applied, or the floor set at start: the next event
    /// applied must be above it.
    pub fn last_id(&self) -> EventId {
        self.inner.last
    }

    /// Whether creating those of `names` that do not exist yet (a name may
    /// repeat) keeps the hub within `--max-channels`.
    pub fn has_room_for<'n>(&self, names: impl Iterator<Item = &'n ChannelName>) -> bool {
        self.inner.has_room_for(names, &self.hub.config)
    }

    /// Appends `event` to `channel`'s history (creating the channel, with
    /// the newest applied id as its mark, if it does not exist) and sends it
    /// to the channel's live receivers. Returns how many receivers it was
    /// handed to. Never refuses for `--max-channels`: the log checks that
    /// before it issues ids.
    pub fn apply(&mut self, channel: &ChannelName, event: Event) -> Result<usize, OutOfOrder> {
        let Inner { channels, last, .. } = &mut *self.inner;
        if event.id <= *last {
            return Err(OutOfOrder {
                id: event.id,
                last: *last,
            });
        }
        let entry = channel_entry(channels, channel, &self.hub.config, *last, self.now);
        *last = event.id;
        entry.active_at = self.now;
        let subscribers = match &entry.sender {
            Some(sender) => {
                entry.history.push(event.clone());
                sender.send(event).unwrap_or(0)
            }
            None => {
                entry.history.push(event);
                0
            }
        };
        Ok(subscribers)
    }

    /// Recovery: (re)creates `channel` empty with `mark` as the newest id it
    /// can no longer replay, replacing what it held. Its events follow
    /// through [`Applier::apply`].
    pub fn restore_channel(&mut self, channel: &ChannelName, mark: EventId) {
        let history = History::new(self.hub.config.history, mark);
        let entry = channel_entry(
            &mut self.inner.channels,
            channel,
            &self.hub.config,
            mark,
            self.now,
        );
        entry.history = history;
    }

    /// Recovery: appends `event` to `channel`'s history without sending it
    /// live or moving the newest id (events of a snapshot come channel by
    /// channel, not in global id order). A channel that does not exist is
    /// created with `mark_if_new`. Each channel's events must come in id
    /// order.
    pub fn restore_event(&mut self, channel: &ChannelName, event: Event, mark_if_new: EventId) {
        let entry = channel_entry(
            &mut self.inner.channels,
            channel,
            &self.hub.config,
            mark_if_new,
            self.now,
        );
        entry.history.push(event);
    }

    /// Drops the events with an id below `cutoff` from every channel
    /// (`--history-age`, after recovery).
    pub fn expire(&mut self, cutoff: EventId) {
        for channel in self.inner.channels.values_mut() {
            channel.history.expire(cutoff);
        }
    }

    /// How many channels the hub holds.
    pub fn channel_count(&self) -> usize {
        self.inner.channels.len()
    }

    /// Whether the hub holds `channel`.
    pub fn has_channel(&self, channel: &ChannelName) -> bool {
        self.inner.channels.contains_key(channel)
    }

    /// `--max-channels`.
    pub fn max_channels(&self) -> usize {
        self.hub.config.max_channels
    }

    /// Recovery: the reaper dropped `channel` when `through` was the newest
    /// id. Its events up to `through` go; if later ones were applied (the
    /// channel was created again), it keeps them with `through` as mark.
    pub fn forget(&mut self, channel: &ChannelName, through: EventId) {
        let Some(entry) = self.inner.channels.get_mut(channel) else {
            return;
        };
        if entry.history.forget_through(through) {
            self.inner.channels.remove(channel);
        }
    }

    /// Recovery: ids up to `id` were issued by an earlier run; later events
    /// must be above it, and a resume id up to it is not "from the future".
    pub fn raise_last(&mut self, id: EventId) {
        self.inner.last = self.inner.last.max(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::tests::{event, hub, name};

    /// The ids (and `gap`s) a stream of `channel` resuming after `after`
    /// gets first.
    fn replayed_ids(hub: &Hub, channel: &str, after: u64) -> Vec<String> {
        crate::hub::tests::replayed_ids(hub, channel, after)
            .into_iter()
            .map(|line| line.trim_start_matches("id: ").to_owned())
            .collect()
    }

    #[test]
    fn an_event_not_above_the_newest_is_refused_and_not_applied() {
        let hub = hub(10, 10);
        let last = hub.last_id().get();
        let mut applier = hub.applier();
        applier.apply(&name("a"), event(last + 10)).unwrap();
        let refused = applier.apply(&name("a"), event(last + 5)).unwrap_err();
        assert_eq!(refused.last, EventId::new(last + 10));
        drop(applier);
        assert_eq!(hub.channels()[0].retained, 1);
    }

    #[test]
    fn recovery_restores_marks_events_and_forgotten_channels() {
        let hub = hub(10, 10);
        let mut applier = hub.applier();
        applier.restore_channel(&name("a"), EventId::new(5));
        for id in [6, 7, 8] {
            applier.restore_event(&name("a"), event(id), EventId::new(0));
        }
        applier.restore_event(&name("b"), event(3), EventId::new(2));
        applier.forget(&name("b"), EventId::new(4));
        applier.forget(&name("a"), EventId::new(6));
        drop(applier);
        assert_eq!(hub.channel_count(), 1, "b was forgotten whole");
        // a lost 6 to the forget: resuming from 5 is a gap, from 6 is not.
        assert_eq!(replayed_ids(&hub, "a", 5), ["gap", "7", "8"]);
        assert_eq!(replayed_ids(&hub, "a", 6), ["7", "8"]);
    }
}
