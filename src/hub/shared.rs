//! Presence shared by the nodes of a service (`--redis`, SPEC §7 and §9):
//! the hub's side.
//!
//! Redis owns membership (`log/redis/presence.rs`). A member stream's
//! connection is counted in by a script before the stream subscribes, and
//! counted out, when the stream ends, through [`SharedOp::Close`]; each
//! script appends a record to the log every node reads, and
//! [`Hub::apply_presence`] applies the records in log order to the rooms
//! ([`super::presence`], in its mirror role), announcing joins and leaves
//! to this node's streams exactly as a single node would. A member whose
//! service-wide count stayed 0 for the grace is removed by Redis once
//! ([`SharedOp::Leave`], asked by every node's timer, idempotent), and the
//! leave record tells everyone.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::membership::announce;
use super::presence::Member;
use super::{Hub, Inner};
use crate::domain::{ChannelName, EventId};

/// What this node asks of the shared presence from code that cannot wait
/// (a stream's drop, the timer); `log::redis` runs them in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SharedOp {
    /// A stream of `sub` on `channel` ended here.
    Close { channel: ChannelName, sub: Arc<str> },
    /// `sub` has had no connection on `channel` for the grace: remove it
    /// if that is still so.
    Leave { channel: ChannelName, sub: Arc<str> },
}

/// A presence record of the shared log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A connection of `member` opened; `count` is the member's
    /// connections in the service now; `join` when Redis found it new or
    /// with a different `info`.
    Opened {
        channel: ChannelName,
        member: Member,
        count: usize,
        join: bool,
    },
    /// A connection of `sub` closed (or its node died); `count` is left.
    Closed {
        channel: ChannelName,
        sub: String,
        count: usize,
    },
    /// `sub` left `channel` after its grace.
    Left { channel: ChannelName, sub: String },
}

impl Hub {
    /// Makes presence service-wide: changes go to `ops` from now on. Set
    /// once, before the node serves.
    pub fn share_presence(&self, ops: mpsc::UnboundedSender<SharedOp>) {
        let _ = self.shared.set(ops);
    }

    /// With shared presence: queues the count-out of a stream of `sub` on
    /// `channels` and returns true; otherwise false.
    pub(super) fn disconnect_shared(&self, channels: &[ChannelName], sub: &str) -> bool {
        let Some(ops) = self.shared.get() else {
            return false;
        };
        let sub: Arc<str> = Arc::from(sub);
        for channel in channels {
            let _ = ops.send(SharedOp::Close {
                channel: channel.clone(),
                sub: sub.clone(),
            });
        }
        true
    }

    /// Applies the presence record `id` of the log, in log order with the
    /// events ([`Hub::apply`]).
    pub fn apply_presence(&self, id: EventId, change: Change) {
        let now = Instant::now();
        let mut inner = self.lock();
        inner.last = inner.last.max(id);
        let mut earliest = false;
        if id > inner.presence_through {
            let Inner {
                channels, presence, ..
            } = &mut *inner;
            let announcement = match change {
                Change::Opened {
                    channel,
                    member,
                    count,
                    join,
                } => presence.opened(&channel, &member, count, join),
                Change::Closed {
                    channel,
                    sub,
                    count,
                } => {
                    if let Some(at) = presence.closed(&channel, &sub, count, now) {
                        earliest = presence.next_leave() == Some(at);
                    }
                    None
                }
                Change::Left { channel, sub } => presence.left(&channel, &sub),
            };
            if let Some(announcement) = announcement {
                if let Some(channel) = channels.get(announcement.channel()) {
                    announce(channel, presence, id, &announcement);
                }
            }
        }
        drop(inner);
        self.applied.send_replace(id);
        if earliest {
            self.leave_scheduled.notify_one();
        }
    }

    /// Replaces the rooms with Redis's, read at log position `through`:
    /// records up to it are skipped when the log delivers them.
    pub fn load_presence(&self, through: EventId, rooms: Vec<(ChannelName, Vec<(Member, usize)>)>) {
        let mut inner = self.lock();
        inner.presence.replace(rooms, Instant::now());
        inner.presence_through = through;
        drop(inner);
        self.leave_scheduled.notify_one();
    }
}
