//! Presence as a mirror of the service's (`--redis`, SPEC §9): the same
//! rooms, but counts and decisions come from the shared log instead of this
//! node's streams.
//!
//! Redis owns membership (`log/redis/presence.rs`): every stream that opens
//! or closes on a presence channel anywhere in the service changes its
//! counts in one script, which appends a record to the log every node reads
//! in order. Each node applies the records here, so all nodes hold the same
//! rooms and announce the same joins and leaves, each to its own streams.
//! Leaves are decided in Redis too: a member whose service-wide count has
//! been 0 for the grace is removed by one script call, which appends the
//! leave record once, whichever node's timer asked first.

use tokio::time::Instant;

use super::{Announcement, Entry, Member, Presence};
use crate::domain::ChannelName;

impl Presence {
    /// A record: a connection of `member` opened somewhere; `count` is the
    /// member's connections in the whole service now, `join` whether Redis
    /// found it new or with a different `info`. Returns the join to
    /// announce.
    pub fn opened(
        &mut self,
        channel: &ChannelName,
        member: &Member,
        count: usize,
        join: bool,
    ) -> Option<Announcement> {
        let room = self.rooms.entry(channel.clone()).or_default();
        let entry = room
            .members
            .entry(member.sub.clone())
            .or_insert_with(|| Entry {
                info: member.info.clone(),
                connections: 0,
                leave: None,
            });
        entry.connections = count;
        entry.info = member.info.clone();
        if let Some(key) = entry.leave.take() {
            self.leaves.remove(&key);
        }
        (join && room.members.len() <= self.config.max_members)
            .then(|| Announcement::Join(channel.clone(), member.clone()))
    }

    /// A record: a connection of `sub` closed somewhere (or its node died);
    /// `count` is what the service has left. At 0 a leave check is
    /// scheduled `--presence-grace` from `now`; returns when, if it was.
    pub fn closed(
        &mut self,
        channel: &ChannelName,
        sub: &str,
        count: usize,
        now: Instant,
    ) -> Option<Instant> {
        self.set_connections(channel, sub, count, now)
    }

    /// A record: Redis removed `sub` from `channel` after its grace.
    pub fn left(&mut self, channel: &ChannelName, sub: &str) -> Option<Announcement> {
        self.remove(channel, sub)
    }

    /// Replaces every room with what Redis holds (a node starting, or
    /// starting over): members with their service-wide counts; those at 0
    /// get a leave check one grace from `now`.
    pub fn replace(&mut self, rooms: Vec<(ChannelName, Vec<(Member, usize)>)>, now: Instant) {
        self.rooms.clear();
        self.leaves.clear();
        for (channel, members) in rooms {
            for (member, count) in members {
                self.opened(&channel, &member, count, false);
                if count == 0 {
                    self.closed(&channel, member.sub(), 0, now);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::super::PresenceConfig;
    use super::*;

    fn room() -> ChannelName {
        ChannelName::parse("presence-a").unwrap()
    }

    #[test]
    fn records_drive_joins_and_a_leave_waits_for_its_record() {
        let mut p = Presence::new(PresenceConfig {
            grace: Duration::from_secs(10),
            max_members: 100,
        });
        let t0 = Instant::now();
        let ada = Member::new("1", None);
        assert!(p.opened(&room(), &ada, 1, true).is_some());
        assert!(p.opened(&room(), &ada, 2, false).is_none(), "a second tab");
        assert_eq!(p.closed(&room(), "1", 1, t0), None);
        let due = p.closed(&room(), "1", 0, t0).expect("a leave check");
        assert!(p.due(due - Duration::from_millis(1)).is_empty());
        assert_eq!(p.due(due), vec![(room(), Arc::from("1"))]);
        assert_eq!(p.members(), 1, "still listed until the leave record");
        assert!(matches!(
            p.left(&room(), "1"),
            Some(Announcement::Leave(..))
        ));
        assert_eq!((p.members(), p.pending_leaves()), (0, 0));
    }

    #[test]
    fn a_member_back_before_its_check_cancels_it() {
        let mut p = Presence::new(PresenceConfig::default());
        let t0 = Instant::now();
        let ada = Member::new("1", None);
        p.opened(&room(), &ada, 1, true);
        let due = p.closed(&room(), "1", 0, t0).unwrap();
        assert!(p.opened(&room(), &ada, 1, false).is_none());
        assert!(p.due(due).is_empty());
    }
}
