//! The hub: channels, ids, publish and subscribe.
//!
//! Each channel has a tokio broadcast channel for live events and a
//! [`History`] ring buffer for replay. Everything that orders events sits
//! behind one `std::sync::Mutex`:
//!
//! - publish: take the next id, append to history, send to live receivers;
//! - subscribe: read the backlog, create the receiver;
//!
//! so a subscriber's replay ends exactly where its live receiver begins: no
//! gap, no duplicate. The lock is one for the whole hub rather than one per
//! channel because a stream may subscribe to several channels and must see
//! their events in id order: with a single lock, an event with a smaller id
//! is always in its receiver's queue before any event with a larger id is
//! sent anywhere, which is what lets [`crate::transport`] merge receivers in id
//! order. It is a std mutex, never held across an `.await`: every critical
//! section is a few pointer moves and a broadcast send (which never waits on
//! receivers), and the expensive work, encoding the frame, happens before
//! the lock is taken.
//!
//! The hub never numbers events itself: a [`crate::log`] issues the ids
//! (and makes the events durable or shared) and hands them over through the
//! one entry point, [`Hub::applier`] (see `apply.rs`), in id order.
//!
//! With a shared log (Redis, [`crate::log`]) ids are issued elsewhere and
//! the hub *follows* the log: see [`follow`] for how events with given ids
//! are applied in log order, and how a channel's history is loaded from the
//! log before its first local subscriber is served.
//!
//! Presence ([`presence`], [`membership`]) lives under the same lock, so a
//! stream's snapshot and its receiver are taken together and joins and
//! leaves are queued in order with the events.
//!
//! This file holds the hub, its channels and the subscribe side; events
//! enter through `apply.rs`; listings, counts, reaping, the compaction
//! snapshot and shutdown are its upkeep (`upkeep.rs`).
//!
//! Beside the channels, under locks of their own: the open streams by who
//! holds them ([`streams`]) and the revocations in force, for disconnect
//! and revoke (SPEC §11, [`Hub::apply_disconnect`]).

mod follow;
mod membership;
pub mod presence;
mod shared;
pub mod streams;
pub use follow::{LoadPlan, Snapshot};
pub use shared::{Change, SharedOp};

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{broadcast, mpsc, watch, Notify};
use tokio::time::Instant;

mod apply;
mod upkeep;

pub use apply::{Applier, OutOfOrder};
pub use upkeep::{ChannelInfo, Reaped};

use crate::domain::{ChannelName, EventId, Resume};
use crate::history::{Event, GapReason, History, HistoryLimits, Notice};
use crate::revocation::{Disconnect, Holder, Revocations};

pub use membership::Membership;
use presence::{is_presence_channel, Member, Presence, PresenceConfig};

/// What the hub needs to know from the configuration.
#[derive(Clone, Copy, Debug)]
pub struct HubConfig {
    pub history: HistoryLimits,
    pub max_channels: usize,
    /// Capacity of each channel's broadcast queue: how far a subscriber may
    /// fall behind live events before it is caught up from history.
    pub stream_buffer: usize,
    pub channel_ttl: Duration,
    pub presence: PresenceConfig,
}

/// The past-`--max-channels` refusal: the request would create a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the server holds its maximum number of channels")]
pub struct ChannelLimit;

/// Why a stream cannot be opened now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    #[error(transparent)]
    ChannelLimit(#[from] ChannelLimit),
    /// The hub was closed for shutdown.
    #[error("the server is shutting down")]
    Closed,
}

/// A new stream's starting state, taken atomically with respect to publishes.
pub struct Subscription {
    /// Presence snapshots, gap notices, then replayed events in id order:
    /// written before any live event.
    pub backlog: Vec<Backlog>,
    /// One live receiver per channel.
    pub sources: Vec<Source>,
    /// The stream's member on its presence channels, if it is one: held for
    /// as long as the stream lives, its drop counts the connection out.
    pub membership: Option<Membership>,
}

/// An item of a stream's backlog, and what it counts as in the metrics.
pub enum Backlog {
    /// A `herald.presence` snapshot.
    Presence(Notice),
    Gap(Notice),
    /// A retained event of the `channel`-th channel subscribed to.
    Replayed {
        channel: usize,
        event: Event,
    },
}

/// One channel of a stream: its live receiver, and the id up to which the
/// stream has everything of this channel it is owed (used to catch up after
/// falling behind).
pub struct Source {
    pub channel: ChannelName,
    pub receiver: broadcast::Receiver<Event>,
    pub last_id: EventId,
}

/// What a subscriber that fell behind gets: a fresh receiver, a gap notice if
/// events it missed are no longer retained, and the retained events it has
/// not seen.
pub struct CatchUp {
    pub receiver: broadcast::Receiver<Event>,
    /// A fresh `herald.presence` snapshot on a presence channel: joins and
    /// leaves the subscriber missed are not retained.
    pub presence: Option<Notice>,
    pub gap: Option<Notice>,
    pub events: Vec<Event>,
}

pub struct Hub {
    inner: Mutex<Inner>,
    config: HubConfig,
    /// Following a shared log: the id of the last log entry applied, for
    /// subscribers that present an id this node has not reached yet.
    applied: watch::Sender<EventId>,
    /// Woken whenever a channel load finishes (or is given up), for other
    /// subscribers waiting on the same channel.
    loaded: Notify,
    /// Wakes the presence timer when a leave is scheduled earlier than any
    /// it is waiting for.
    leave_scheduled: Notify,
    /// With `--redis`: where presence changes go (see `shared.rs`); unset,
    /// presence is this node's own.
    shared: OnceLock<mpsc::UnboundedSender<SharedOp>>,
    /// Every open stream, for disconnects.
    streams: streams::Streams,
    /// The revocations in force: the log adds them, auth reads them.
    revocations: Arc<Revocations>,
}

struct Inner {
    channels: HashMap<ChannelName, Channel>,
    /// The newest id applied (or, before any, a floor no earlier id can
    /// pass): new channels take it as their mark, and a resume id above it
    /// is unknown.
    last: EventId,
    /// Who is in each presence channel (under the same lock as the channels,
    /// so a snapshot and a live receiver are taken together).
    presence: Presence,
    /// Shared presence: the log position the rooms were loaded at; records
    /// up to it are already in them.
    presence_through: EventId,
    /// Set by [`Hub::close`]: no new live receivers.
    closed: bool,
    /// Following a shared log: channels whose history is being loaded, and
    /// the log's events for them that arrived meanwhile.
    loading: HashMap<ChannelName, Vec<Event>>,
}

impl Inner {
    /// Whether creating those of `names` that do not exist yet (a name may
    /// repeat) keeps the hub within `--max-channels`.
    fn has_room_for<'a>(
        &self,
        names: impl Iterator<Item = &'a ChannelName>,
        config: &HubConfig,
    ) -> bool {
        let mut new: Vec<&ChannelName> = names
            .filter(|name| !self.channels.contains_key(*name))
            .collect();
        new.sort_unstable();
        new.dedup();
        self.channels.len() + new.len() <= config.max_channels
    }
}

struct Channel {
    history: History,
    /// Created with the first subscriber, dropped by the reaper once none is
    /// left: a channel that is only published to needs no live queue.
    sender: Option<broadcast::Sender<Event>>,
    /// Last publish, or last time the reaper saw a subscriber; the TTL runs
    /// from here.
    active_at: Instant,
}

impl Channel {
    fn subscribers(&self) -> usize {
        self.sender.as_ref().map_or(0, |s| s.receiver_count())
    }

    fn subscribe(&mut self, capacity: usize) -> broadcast::Receiver<Event> {
        match &self.sender {
            Some(sender) => sender.subscribe(),
            None => {
                let (sender, receiver) = broadcast::channel(capacity);
                self.sender = Some(sender);
                receiver
            }
        }
    }
}

/// The current Unix time in microseconds: the floor of every id issued
/// now (see [`crate::log`]).
pub fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

impl Hub {
    pub fn new(config: HubConfig) -> Hub {
        let start = EventId::new(unix_micros());
        Hub {
            applied: watch::Sender::new(start),
            inner: Mutex::new(Inner {
                channels: HashMap::new(),
                // Ids of an earlier run are below the clock at start (see
                // `crate::log`), so a channel created now marks them as
                // possibly missed.
                last: start,
                presence: Presence::new(config.presence),
                presence_through: EventId::new(0),
                closed: false,
                loading: HashMap::new(),
            }),
            config,
            loaded: Notify::new(),
            leave_scheduled: Notify::new(),
            shared: OnceLock::new(),
            streams: streams::Streams::default(),
            revocations: Arc::default(),
        }
    }

    /// The revocations in force (shared with [`crate::auth::Auth`]).
    pub fn revocations(&self) -> &Arc<Revocations> {
        &self.revocations
    }

    /// Registers an open stream of `holder` on `channels`, so a disconnect
    /// can end it; the stream unregisters it when dropped.
    pub fn register(
        &self,
        holder: Option<Holder>,
        channels: Box<[ChannelName]>,
    ) -> Arc<streams::Ticket> {
        self.streams.register(holder, channels, &self.revocations)
    }

    pub fn unregister(&self, ticket: &streams::Ticket) {
        self.streams.unregister(ticket);
    }

    /// Applies a disconnect the log has recorded: adds its revocation (first,
    /// so a stream registered meanwhile is caught by its own check), then
    /// ends every open stream it names. Returns how many it ended.
    pub fn apply_disconnect(&self, order: &Disconnect) -> usize {
        self.revocations.insert(order);
        self.streams.disconnect(order)
    }

    /// Locks the hub. A panic while holding the lock cannot leave the maps
    /// half-updated in a way later calls would trip on, so poisoning is
    /// ignored rather than spread to every later request.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Opens a stream on `channels` (distinct names) resuming from `resume`:
    /// its backlog per SPEC §2 (gap notices, then replay in id order) and its
    /// live receivers, taken together under the lock. On a presence channel
    /// the stream watches without being a member (see
    /// [`Hub::subscribe_member`]).
    pub fn subscribe(
        &self,
        channels: &[ChannelName],
        resume: Resume,
    ) -> Result<Subscription, SubscribeError> {
        self.open(channels, resume, None)
    }

    /// [`Hub::subscribe`], and on its presence channels the stream counts
    /// as a connection of `member`: joins are announced to the others
    /// before this stream's receiver exists (it gets no join for itself),
    /// and its snapshot, taken after, lists it.
    fn open(
        &self,
        channels: &[ChannelName],
        resume: Resume,
        member: Option<&Member>,
    ) -> Result<Subscription, SubscribeError> {
        let mut inner = self.lock();
        if inner.closed {
            return Err(SubscribeError::Closed);
        }
        if !inner.has_room_for(channels.iter(), &self.config) {
            return Err(ChannelLimit.into());
        }

        let last_issued = inner.last;
        // An id past the newest ever issued comes from another server or an
        // earlier run; nothing can be proven about it.
        let resume = match resume {
            Resume::After(id) if id > last_issued => Resume::Unknown,
            other => other,
        };
        let now = Instant::now();
        let cutoff = self.config.history.age_cutoff(unix_micros());
        let mut snapshots = Vec::new();
        let mut gaps = Vec::new();
        let mut replay: Vec<(usize, &Event)> = Vec::new();
        let mut sources = Vec::with_capacity(channels.len());
        for name in channels {
            let Inner {
                channels: map,
                last,
                presence,
                ..
            } = &mut *inner;
            let channel = channel_entry(map, name, &self.config, *last, now);
            if let Some(cutoff) = cutoff {
                channel.history.expire(cutoff);
            }
            if is_presence_channel(name) {
                // Shared presence: the member was counted in by its record,
                // applied before this (see `shared.rs`).
                let local = member.filter(|_| self.shared.get().is_none());
                if let Some(join) = local.and_then(|m| presence.connect(name, m)) {
                    membership::announce(channel, presence, *last, &join);
                }
                snapshots.push(Backlog::Presence(membership::snapshot(presence, name)));
            }
            let receiver = channel.subscribe(self.config.stream_buffer);
            sources.push(Source {
                channel: name.clone(),
                receiver,
                // Everything of this channel up to the newest id issued is
                // either in this backlog or was not asked for.
                last_id: last_issued,
            });
        }
        for (index, name) in channels.iter().enumerate() {
            let history = &inner.channels[name].history;
            let tagged = |e| (index, e);
            match resume {
                Resume::Live => {}
                Resume::After(after) => {
                    let (complete, events) = history.since(after);
                    if complete {
                        replay.extend(events.map(tagged));
                    } else {
                        gaps.push(Notice::gap(name, GapReason::History, Some(after)));
                        replay.extend(history.all().map(tagged));
                    }
                }
                Resume::Unknown => {
                    gaps.push(Notice::gap(name, GapReason::UnknownId, None));
                    replay.extend(history.all().map(tagged));
                }
            }
        }
        replay.sort_unstable_by_key(|(_, e)| e.id);
        let backlog = snapshots
            .into_iter()
            .chain(gaps.into_iter().map(Backlog::Gap))
            .chain(replay.into_iter().map(|(channel, e)| Backlog::Replayed {
                channel,
                event: e.clone(),
            }))
            .collect();
        Ok(Subscription {
            backlog,
            sources,
            membership: None,
        })
    }

    /// For a subscriber whose receiver on `channel` overflowed: a new
    /// receiver and the retained events after `after`, taken together under
    /// the lock so the hand-over is exact. `None` if the channel is gone or
    /// the hub is closed: the stream must end.
    pub fn catch_up(&self, channel: &ChannelName, after: EventId) -> Option<CatchUp> {
        let mut inner = self.lock();
        if inner.closed {
            return None;
        }
        let Inner {
            channels, presence, ..
        } = &mut *inner;
        let ch = channels.get_mut(channel)?;
        if let Some(cutoff) = self.config.history.age_cutoff(unix_micros()) {
            ch.history.expire(cutoff);
        }
        let receiver = ch.subscribe(self.config.stream_buffer);
        let presence =
            is_presence_channel(channel).then(|| membership::snapshot(presence, channel));
        let (complete, events) = ch.history.since(after);
        let gap = (!complete).then(|| Notice::gap(channel, GapReason::SlowSubscriber, Some(after)));
        Some(CatchUp {
            receiver,
            presence,
            gap,
            events: events.cloned().collect(),
        })
    }

    /// Whether a stream may be opened on `channels` now without passing
    /// `--max-channels` (used to answer HEAD like GET would, without side
    /// effects).
    pub fn would_accept(&self, channels: &[ChannelName]) -> bool {
        self.lock().has_room_for(channels.iter(), &self.config)
    }
}

/// The channel named `name`, created (with `mark` as the newest id issued
/// before it) if it does not exist.
fn channel_entry<'a>(
    channels: &'a mut HashMap<ChannelName, Channel>,
    name: &ChannelName,
    config: &HubConfig,
    mark: EventId,
    now: Instant,
) -> &'a mut Channel {
    channels.entry(name.clone()).or_insert_with(|| Channel {
        history: History::new(config.history, mark),
        sender: None,
        active_at: now,
    })
}

#[cfg(test)]
mod tests;
