//! Presence (SPEC §7): who is in each `presence-*` channel, and which joins
//! and leaves to announce.
//!
//! This is the one owner of membership. Pure and synchronous, like
//! [`crate::history`]: the hub keeps one [`Presence`] under its lock, feeds
//! it connects and disconnects, and sends what it returns on the channel's
//! live queue, so a new stream's snapshot and its live receiver are taken
//! together. Every announcement is decided here and nowhere else, which is
//! the seam a shared backend (Redis, SPEC §9) replaces.
//!
//! - A member is a `sub`, not a connection: a channel maps each `sub` to
//!   its connection count and the `info` of its newest token.
//! - `herald.join` when a member's count goes from 0 to 1, or a connection
//!   brings a different `info`. Nothing when a member that is waiting to
//!   leave comes back with the same `info`.
//! - At 0 connections the member is kept for `--presence-grace`; then it
//!   is removed and `herald.leave` announced. The pending leaves sit in one
//!   ordered map that the hub's single timer task drains
//!   ([`Presence::expire`]): no task or timer per member.
//! - Above `--presence-max-members` a channel announces no joins or leaves;
//!   when it falls back to the limit, it announces a fresh snapshot instead,
//!   so pages that stopped hearing changes resynchronise.
//!
//! Memory: a member that left, and a channel with no member, are removed;
//! a pending leave is removed when its member comes back, so the map of
//! pending leaves never holds more than the members at 0 connections.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::domain::ChannelName;

mod shared;

/// Channels with this prefix carry presence.
pub const PRESENCE_PREFIX: &str = "presence-";

/// Whether `channel` carries presence.
pub fn is_presence_channel(channel: &ChannelName) -> bool {
    channel.as_str().starts_with(PRESENCE_PREFIX)
}

#[derive(Clone, Copy, Debug)]
pub struct PresenceConfig {
    /// How long a member stays at 0 connections before its leave is
    /// announced (`--presence-grace`).
    pub grace: Duration,
    /// Above this many members a channel stops announcing joins and leaves
    /// and lists only this many (`--presence-max-members`).
    pub max_members: usize,
}

impl Default for PresenceConfig {
    /// The flags' defaults: a 10 s grace, 100 members.
    fn default() -> PresenceConfig {
        PresenceConfig {
            grace: std::time::Duration::from_secs(10),
            max_members: 100,
        }
    }
}

/// A member as the others see it: the `sub` of its token and the token's
/// `info`, kept as compact JSON text (`null` when the token has none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    sub: Arc<str>,
    info: Arc<str>,
}

impl Member {
    /// `sub` and `info` (JSON text) come from a verified token, whose
    /// parsing checked their limits (SPEC §6).
    pub fn new(sub: &str, info: Option<&str>) -> Member {
        Member {
            sub: Arc::from(sub),
            info: Arc::from(info.map_or_else(|| "null".to_owned(), compact_json)),
        }
    }

    pub fn sub(&self) -> &str {
        &self.sub
    }

    /// The `info` as compact JSON text.
    pub fn info_json(&self) -> &str {
        &self.info
    }
}

/// What a channel's streams must be told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Announcement {
    /// `herald.join`.
    Join(ChannelName, Member),
    /// `herald.leave`, with the member's last `info`.
    Leave(ChannelName, Member),
    /// A fresh `herald.presence`: the channel came back to
    /// `--presence-max-members` after announcing nothing above it.
    Snapshot(ChannelName),
}

impl Announcement {
    pub fn channel(&self) -> &ChannelName {
        match self {
            Announcement::Join(c, _) | Announcement::Leave(c, _) | Announcement::Snapshot(c) => c,
        }
    }
}

/// The JSON data of a `herald.join` or `herald.leave`:
/// `{"channel","sub","info"}`.
pub fn change_json(channel: &ChannelName, member: &Member) -> String {
    let mut out = String::with_capacity(48 + member.sub.len() + member.info.len());
    out.push_str("{\"channel\":");
    push_json_str(&mut out, channel.as_str());
    out.push_str(",\"sub\":");
    push_json_str(&mut out, &member.sub);
    out.push_str(",\"info\":");
    out.push_str(&member.info);
    out.push('}');
    out
}

pub struct Presence {
    config: PresenceConfig,
    rooms: HashMap<ChannelName, Room>,
    /// Pending leaves, earliest first. The key is unique (a sequence number
    /// breaks ties) and is also kept in the member's entry, so a member that
    /// comes back removes its own leave.
    leaves: BTreeMap<LeaveKey, (ChannelName, Arc<str>)>,
    next_seq: u64,
}

type LeaveKey = (Instant, u64);

/// One channel's members, ordered by `sub` so lists and truncation are
/// stable.
#[derive(Default)]
struct Room {
    members: BTreeMap<Arc<str>, Entry>,
}

struct Entry {
    info: Arc<str>,
    /// Open streams of this `sub` on this channel.
    connections: usize,
    /// Set while `connections` is 0: when the leave is due.
    leave: Option<LeaveKey>,
}

impl Presence {
    pub fn new(config: PresenceConfig) -> Presence {
        Presence {
            config,
            rooms: HashMap::new(),
            leaves: BTreeMap::new(),
            next_seq: 0,
        }
    }

    /// A stream of `member` opened on `channel`. Returns the join to
    /// announce, if any; the caller sends it before the new stream's own
    /// receiver exists, so the stream gets no join for itself.
    pub fn connect(&mut self, channel: &ChannelName, member: &Member) -> Option<Announcement> {
        let max = self.config.max_members;
        let room = self.rooms.entry(channel.clone()).or_default();
        let changed = match room.members.get_mut(&member.sub) {
            None => {
                room.members.insert(
                    member.sub.clone(),
                    Entry {
                        info: member.info.clone(),
                        connections: 1,
                        leave: None,
                    },
                );
                true
            }
            Some(entry) => {
                entry.connections += 1;
                if let Some(key) = entry.leave.take() {
                    self.leaves.remove(&key);
                }
                let changed = entry.info != member.info;
                entry.info = member.info.clone();
                changed
            }
        };
        (changed && room.members.len() <= max)
            .then(|| Announcement::Join(channel.clone(), member.clone()))
    }

    /// A stream of `sub` on `channel` ended. At 0 connections the member's
    /// leave is scheduled `--presence-grace` from `now`; returns when it is
    /// due if it was scheduled (the timer may need waking).
    pub fn disconnect(
        &mut self,
        channel: &ChannelName,
        sub: &str,
        now: Instant,
    ) -> Option<Instant> {
        let left = self.rooms.get(channel)?.members.get(sub)?.connections;
        self.set_connections(channel, sub, left.saturating_sub(1), now)
    }

    /// Sets the connections of `sub` on `channel` to `count`. At 0 its leave
    /// is scheduled `--presence-grace` from `now`, unless it already is;
    /// returns when it is due if it was scheduled now.
    fn set_connections(
        &mut self,
        channel: &ChannelName,
        sub: &str,
        count: usize,
        now: Instant,
    ) -> Option<Instant> {
        let entry = self.rooms.get_mut(channel)?.members.get_mut(sub)?;
        entry.connections = count;
        if count > 0 || entry.leave.is_some() {
            return None;
        }
        let key = (now + self.config.grace, self.next_seq);
        self.next_seq += 1;
        entry.leave = Some(key);
        self.leaves.insert(key, (channel.clone(), Arc::from(sub)));
        Some(key.0)
    }

    /// Removes the members whose grace ended by `now`, and returns what to
    /// announce for them.
    pub fn expire(&mut self, now: Instant) -> Vec<Announcement> {
        let due = self.due(now);
        due.into_iter()
            .filter_map(|(channel, sub)| self.remove(&channel, &sub))
            .collect()
    }

    /// The members whose grace ended by `now`, taken off the leave schedule
    /// (they stay members until removed). With `--redis` they are what to
    /// ask Redis to remove: they stay here until the leave record comes back.
    pub fn due(&mut self, now: Instant) -> Vec<(ChannelName, Arc<str>)> {
        let mut out = Vec::new();
        while let Some(entry) = self.leaves.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let (channel, sub) = entry.remove();
            if let Some(entry) = self
                .rooms
                .get_mut(&channel)
                .and_then(|r| r.members.get_mut(&sub))
            {
                entry.leave = None;
            }
            out.push((channel, sub));
        }
        out
    }

    /// Removes `sub` from `channel` (and its pending leave): the leave to
    /// announce, or, when the channel falls back to the member limit, a
    /// fresh snapshot.
    fn remove(&mut self, channel: &ChannelName, sub: &str) -> Option<Announcement> {
        let room = self.rooms.get_mut(channel)?;
        let before = room.members.len();
        let (sub, gone) = room.members.remove_entry(sub)?;
        if let Some(key) = gone.leave {
            self.leaves.remove(&key);
        }
        if room.members.is_empty() {
            self.rooms.remove(channel);
            if self.rooms.capacity() > 4 * self.rooms.len() + 64 {
                self.rooms.shrink_to_fit();
            }
        }
        let max = self.config.max_members;
        if before <= max {
            Some(Announcement::Leave(
                channel.clone(),
                Member {
                    sub,
                    info: gone.info,
                },
            ))
        } else if before == max + 1 {
            Some(Announcement::Snapshot(channel.clone()))
        } else {
            None
        }
    }

    /// When the earliest pending leave is due.
    pub fn next_leave(&self) -> Option<Instant> {
        self.leaves.first_key_value().map(|((at, _), _)| *at)
    }

    /// The `herald.presence` data of `channel`:
    /// `{"channel","count","members":[{"sub","info"}]}`, the first
    /// `--presence-max-members` members by `sub`, and `"truncated":true`
    /// when there are more.
    pub fn snapshot_json(&self, channel: &ChannelName) -> String {
        self.list_json(channel, false)
    }

    /// The answer of `GET /channels/{channel}/presence`: the snapshot with
    /// each member's open `connections` (0 while its leave is pending).
    pub fn roster_json(&self, channel: &ChannelName) -> String {
        self.list_json(channel, true)
    }

    fn list_json(&self, channel: &ChannelName, connections: bool) -> String {
        let room = self.rooms.get(channel);
        let count = room.map_or(0, |r| r.members.len());
        let shown = count.min(self.config.max_members);
        let mut out = String::with_capacity(64 + 48 * shown);
        out.push_str("{\"channel\":");
        push_json_str(&mut out, channel.as_str());
        let _ = write!(out, ",\"count\":{count},\"members\":[");
        for (i, (sub, entry)) in room
            .into_iter()
            .flat_map(|r| r.members.iter())
            .take(shown)
            .enumerate()
        {
            if i > 0 {
                out.push(',');
            }
            out.push_str("{\"sub\":");
            push_json_str(&mut out, sub);
            out.push_str(",\"info\":");
            out.push_str(&entry.info);
            if connections {
                let _ = write!(out, ",\"connections\":{}", entry.connections);
            }
            out.push('}');
        }
        out.push(']');
        if count > shown {
            out.push_str(",\"truncated\":true");
        }
        out.push('}');
        out
    }

    /// Members held across all channels, leaving ones included.
    pub fn members(&self) -> usize {
        self.rooms.values().map(|r| r.members.len()).sum()
    }

    /// Leaves waiting for their grace to end.
    pub fn pending_leaves(&self) -> usize {
        self.leaves.len()
    }
}

/// `json` (valid JSON) without the whitespace between its tokens: the
/// `info` as the token had it (key order, numbers), on one line as a
/// notice's `data:` needs, and the same text for two tokens whose `info`
/// differs only in spacing, so that is not announced as a change. A line
/// break is dropped even inside a string, where valid JSON never has one
/// (it is escaped there), so no text can break a notice's line.
fn compact_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in json.chars() {
        if matches!(c, '\n' | '\r') {
            continue;
        } else if in_string {
            in_string = escaped || c != '"';
            escaped = !escaped && c == '\\';
        } else if matches!(c, ' ' | '\t') {
            continue;
        } else {
            in_string = c == '"';
        }
        out.push(c);
    }
    out
}

/// Appends `s` as a JSON string.
fn push_json_str(out: &mut String, s: &str) {
    // serde_json escapes exactly what JSON requires, line breaks included.
    out.push_str(&serde_json::Value::from(s).to_string());
}

#[cfg(test)]
mod tests;
