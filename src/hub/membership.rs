//! The hub's side of presence: streams that are members, the leave timer's
//! entry point, the roster, and the one place presence notices are sent.
//!
//! Who is a member and what to announce is decided by [`super::presence`];
//! this file only runs it under the hub's lock and puts what it returns on
//! the channel's live queue, so a notice reaches exactly the streams that
//! hold a receiver at that moment, in order with the channel's events.

use std::sync::Arc;

use tokio::time::Instant;

use super::presence::{change_json, is_presence_channel, Announcement, Member, Presence};
use super::{Channel, Hub, Inner, SharedOp, SubscribeError, Subscription};
use crate::domain::{ChannelName, EventId, Resume};
use crate::history::{Event, Notice};
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
        let opened = self.open(channels, resume, Some(&member));
        let presence: Vec<ChannelName> = channels
            .iter()
            .filter(|c| is_presence_channel(c))
            .cloned()
            .collect();
        let mut subscription = match opened {
            Ok(subscription) => subscription,
            Err(e) => {
                // Shared presence counted the connection in before this
                // (`log::redis`): count it out again.
                self.disconnect_shared(&presence, member.sub());
                return Err(e);
            }
        };
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
        if self.disconnect_shared(channels, sub) {
            return;
        }
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
            last,
            ..
        } = &mut *inner;
        if let Some(ops) = self.shared.get() {
            // Redis decides, once for the service; the leave comes back as
            // a record of the log.
            for (channel, sub) in presence.due(now) {
                let _ = ops.send(SharedOp::Leave { channel, sub });
            }
            return presence.next_leave();
        }
        for announcement in presence.expire(now) {
            if let Some(channel) = channels.get(announcement.channel()) {
                announce(channel, presence, *last, &announcement);
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
    let notice = match announcement {
        Announcement::Join(name, member) => Notice {
            channel: name.clone(),
            event: "herald.join",
            data: change_json(name, member),
        },
        Announcement::Leave(name, member) => Notice {
            channel: name.clone(),
            event: "herald.leave",
            data: change_json(name, member),
        },
        Announcement::Snapshot(name) => snapshot(presence, name),
    };
    // Encoded once for every stream of the channel; no receiver is not an
    // error: nobody is listening.
    let _ = sender.send(Event::notice(position, sse::notice(&notice)));
}

/// The `herald.presence` notice of `channel` now.
pub(super) fn snapshot(presence: &Presence, channel: &ChannelName) -> Notice {
    Notice {
        channel: channel.clone(),
        event: "herald.presence",
        data: presence.snapshot_json(channel),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::history::HistoryLimits;
    use crate::hub::presence::PresenceConfig;
    use crate::hub::{Backlog, HubConfig};

    fn hub(stream_buffer: usize) -> Arc<Hub> {
        Arc::new(Hub::new(HubConfig {
            history: HistoryLimits {
                events: 10,
                bytes: 1 << 20,
                age: None,
            },
            max_channels: 10,
            stream_buffer,
            channel_ttl: Duration::from_secs(60),
            presence: PresenceConfig::default(),
        }))
    }

    fn room() -> Vec<ChannelName> {
        vec![ChannelName::parse("presence-a").unwrap()]
    }

    fn text(bytes: &bytes::Bytes) -> String {
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    fn snapshot_of(sub: &Subscription) -> String {
        match &sub.backlog[0] {
            Backlog::Presence(notice) => notice.data.clone(),
            _ => panic!("the backlog starts with the snapshot"),
        }
    }

    #[test]
    fn a_member_is_told_of_others_but_never_of_its_own_join() {
        let hub = hub(16);
        let mut ada = hub
            .subscribe_member(&room(), Resume::Live, Member::new("1", None))
            .unwrap();
        let bo = hub
            .subscribe_member(&room(), Resume::Live, Member::new("2", None))
            .unwrap();
        let join = ada.sources[0].receiver.try_recv().unwrap();
        assert!(join.is_notice());
        assert!(text(&join.frame)
            .starts_with("event: herald.join\ndata: {\"channel\":\"presence-a\",\"sub\":\"2\""));
        assert!(
            snapshot_of(&bo).contains("\"count\":2"),
            "{}",
            snapshot_of(&bo)
        );
        let mut bo = bo;
        assert!(
            bo.sources[0].receiver.try_recv().is_err(),
            "no join for itself"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn dropping_the_last_stream_leaves_after_the_grace_from_the_timer() {
        let hub = hub(16);
        let mut watcher = hub.subscribe(&room(), Resume::Live).unwrap();
        let ada = hub
            .subscribe_member(&room(), Resume::Live, Member::new("1", None))
            .unwrap();
        assert!(
            text(&watcher.sources[0].receiver.try_recv().unwrap().frame).contains("herald.join")
        );
        drop(ada);
        let due = hub
            .expire_presence(Instant::now())
            .expect("a leave is pending");
        assert_eq!(due, Instant::now() + Duration::from_secs(10));
        assert!(watcher.sources[0].receiver.try_recv().is_err());
        assert_eq!(hub.expire_presence(due), None);
        let leave = watcher.sources[0].receiver.try_recv().unwrap();
        assert!(text(&leave.frame).starts_with("event: herald.leave\n"));
        assert_eq!(hub.presence_size(), (0, 0));
    }

    #[test]
    fn a_slow_subscriber_is_caught_up_with_a_fresh_snapshot() {
        let hub = hub(2);
        let watcher = hub.subscribe(&room(), Resume::Live).unwrap();
        let members: Vec<Subscription> = (0..5)
            .map(|i| {
                hub.subscribe_member(&room(), Resume::Live, Member::new(&i.to_string(), None))
                    .unwrap()
            })
            .collect();
        let after = watcher.sources[0].last_id;
        let catch_up = hub.catch_up(&room()[0], after).unwrap();
        let snapshot = catch_up.presence.expect("a presence channel").data;
        assert!(snapshot.contains("\"count\":5"), "{snapshot}");
        assert!(catch_up.gap.is_none() && catch_up.events.is_empty());
        drop(members);
    }
}
