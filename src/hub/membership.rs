//! The hub's side of presence: streams that are members, the leave timer's
//! entry point, the roster, and the one place presence notices are sent.
//!
//! Who is a member and what to announce is decided by [`super::presence`];
//! this file only runs it under the hub's lock and puts what it returns on
//! the channel's live queue, so a notice reaches exactly the streams that
//! hold a receiver at that moment, in order with the channel's events.

use std::sync::Arc;

use bytes::Bytes;
use tokio::time::Instant;

use super::presence::{change_json, is_presence_channel, Announcement, Member, Presence};
use super::{Channel, Hub, Inner, SubscribeError, Subscription};
use crate::domain::{ChannelName, EventId, Resume};
use crate::history::Event;
use crate::sse;

/// A stream's membership of its presence channels. Dropping it (the stream
/// ended) counts the connection out; at 0 connections the member's leave
/// is announced after `--presence-grace`.
pub struct Membership {
    hub: Arc<Hub>,
    member: Member,
    /// The stream's presence channels.
    channels: Vec<ChannelName>,
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.hub.disconnect(&self.channels, self.member.sub());
    }
}

impl Hub {
    /// [`Hub::subscribe`] for a stream of `member`: on the presence channels
    /// among `channels` it is a member, joined (announced to the others
    /// before this stream's receiver exists, so it gets no join for itself)
    /// and listed in its own snapshot.
    pub fn subscribe_member(
        self: &Arc<Self>,
        channels: &[ChannelName],
        resume: Resume,
        member: Member,
    ) -> Result<Subscription, SubscribeError> {
        let mut subscription = self.open(channels, resume, Some(&member))?;
        let presence: Vec<ChannelName> = channels
            .iter()
            .filter(|c| is_presence_channel(c))
            .cloned()
            .collect();
        if !presence.is_empty() {
            subscription.membership = Some(Membership {
                hub: self.clone(),
                member,
                channels: presence,
            });
        }
        Ok(subscription)
    }

    fn disconnect(&self, channels: &[ChannelName], sub: &str) {
        let now = Instant::now();
        let mut inner = self.lock();
        let mut earliest = false;
        for channel in channels {
            if let Some(at) = inner.presence.disconnect(channel, sub, now) {
                earliest |= inner.presence.next_leave() == Some(at);
            }
        }
        drop(inner);
        if earliest {
            // Stores a permit if the timer is not waiting yet: never lost.
            self.leave_scheduled.notify_one();
        }
    }

    /// Announces the leaves due by `now`; returns when the next one is due.
    /// Driven by the server's single presence timer task.
    pub fn expire_presence(&self, now: Instant) -> Option<Instant> {
        let mut inner = self.lock();
        let Inner {
            channels,
            presence,
            clock,
            ..
        } = &mut *inner;
        for announcement in presence.expire(now) {
            if let Some(channel) = channels.get(announcement.channel()) {
                announce(channel, presence, clock.last(), &announcement);
            }
        }
        presence.next_leave()
    }

    /// Resolves when a leave was scheduled earlier than any the timer knew
    /// of (or at once, if one was since it last looked).
    pub async fn leave_scheduled(&self) {
        self.leave_scheduled.notified().await;
    }

    /// `GET /channels/{channel}/presence`: the members with their open
    /// connections, as JSON.
    pub fn presence_roster(&self, channel: &ChannelName) -> String {
        self.lock().presence.roster_json(channel)
    }

    /// Members held across all presence channels, and leaves pending.
    pub fn presence_size(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.presence.members(), inner.presence.pending_leaves())
    }
}

/// Sends `announcement` to the streams of `channel` (none if it has no live
/// queue). `position` is the newest id issued: the notice's place in the id
/// order of a stream's merge.
pub(super) fn announce(
    channel: &Channel,
    presence: &Presence,
    position: EventId,
    announcement: &Announcement,
) {
    let Some(sender) = &channel.sender else {
        return;
    };
    let frame = match announcement {
        Announcement::Join(name, member) => sse::notice("herald.join", &change_json(name, member)),
        Announcement::Leave(name, member) => {
            sse::notice("herald.leave", &change_json(name, member))
        }
        Announcement::Snapshot(name) => snapshot(presence, name),
    };
    // No receiver is not an error: nobody is listening.
    let _ = sender.send(Event::notice(position, frame));
}

/// The `herald.presence` frame of `channel` now.
pub(super) fn snapshot(presence: &Presence, channel: &ChannelName) -> Bytes {
    sse::notice("herald.presence", &presence.snapshot_json(channel))
}
