//! Service-wide presence (SPEC §7 with §9): membership lives in Redis, and
//! every change is a record of the log every node reads (`presence.lua`
//! says how the keys and records look; `crate::hub::Change` is a record as
//! the hub applies it).
//!
//! - A member stream counts in before it subscribes ([`RedisLog::open_member`],
//!   `open.lua`), and waits until its own record has been applied here: its
//!   snapshot then lists it, and the join went out before its receiver
//!   existed, so it is not told of itself.
//! - It counts out when it ends: the hub queues [`SharedOp::Close`], which
//!   [`run`] sends (`close.lua`), in order, retrying while Redis is away.
//! - Each node's presence timer asks Redis to remove a member whose count
//!   has been 0 for the grace ([`SharedOp::Leave`], `leave.lua`): the first
//!   ask removes it and appends the leave record, the others find nothing.
//! - A node that dies stops beating; the first heartbeat of another node to
//!   see its beat expire counts its connections out (`beat.lua`), so its
//!   members leave a grace later, once.
//! - A node that starts, or starts over, loads every room with the log
//!   position it stands at (`members.lua`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::link::{self, Arg, Lua};
use super::values::{array, int, text};
use super::RedisLog;
use crate::domain::{ChannelName, EventId};
use crate::hub::presence::{is_presence_channel, Member};
use crate::hub::SharedOp;
use crate::metrics::RejectReason;

pub struct PresenceScripts {
    open: Lua,
    close: Lua,
    leave: Lua,
}

impl PresenceScripts {
    pub fn new() -> PresenceScripts {
        PresenceScripts {
            open: Lua::new(concat!(
                include_str!("presence.lua"),
                include_str!("open.lua")
            )),
            close: Lua::new(concat!(
                include_str!("presence.lua"),
                include_str!("close.lua")
            )),
            leave: Lua::new(concat!(
                include_str!("presence.lua"),
                include_str!("leave.lua")
            )),
        }
    }
}

/// `members.lua`: run on the log reader's own connection, so nothing the
/// reader applies can come between.
pub const MEMBERS: &str = include_str!("members.lua");

/// A node shutting down: counts its presence connections out and leaves
/// the node set.
pub const GONE: &str = concat!(
    include_str!("presence.lua"),
    "presence_gone(ARGV[1], ARGV[2], ARGV[3]) \
     redis.call('ZREM', ARGV[1] .. 'nodes', ARGV[3]) return 1"
);

/// `beat.lua` with what it needs of `presence.lua`.
pub const BEAT: &str = concat!(include_str!("presence.lua"), include_str!("beat.lua"));

impl RedisLog {
    /// Counts in a stream of `member` on the presence channels among
    /// `channels`, and waits (at most `--redis-timeout`) until this node
    /// has applied the records.
    pub(super) async fn open_member(
        &self,
        channels: &[ChannelName],
        member: &Member,
    ) -> Result<(), RejectReason> {
        let presence: Vec<&ChannelName> =
            channels.iter().filter(|c| is_presence_channel(c)).collect();
        let node_ttl = self.node_ttl().as_millis() as u64;
        let mut last = None;
        for (i, channel) in presence.iter().enumerate() {
            let args = [
                Arg::Str(&self.keys.base),
                Arg::Int(u64::from(self.log_len)),
                Arg::Str(&self.node),
                Arg::Int(node_ttl),
                Arg::Str(channel.as_str()),
                Arg::Str(member.sub()),
                Arg::Str(member.info_json()),
            ];
            let id = match self
                .link
                .eval(&self.scripts.presence.open, &[], &args)
                .await
            {
                Ok(reply) => text(&reply).and_then(|s| s.parse().ok()),
                Err(e) => {
                    self.failed("presence open", e);
                    None
                }
            };
            let Some(id) = id else {
                // Refused (this node was declared gone and has not reset
                // yet) or failed: count out what was counted in.
                let ops = presence[..i].iter().map(|c| SharedOp::Close {
                    channel: (*c).clone(),
                    sub: Arc::from(member.sub()),
                });
                for op in ops {
                    let _ = self.presence_ops.send(op);
                }
                return Err(RejectReason::BackendUnavailable);
            };
            last = Some(EventId::new(id));
        }
        if let Some(id) = last {
            self.hub.wait_applied(id, self.timeout).await;
        }
        Ok(())
    }

    async fn run_op(&self, op: &SharedOp) -> redis::RedisResult<()> {
        let log_len = u64::from(self.log_len);
        let (script, args) = match op {
            SharedOp::Close { channel, sub } => (
                &self.scripts.presence.close,
                vec![
                    Arg::Str(&self.keys.base),
                    Arg::Int(log_len),
                    Arg::Str(&self.node),
                    Arg::Str(channel.as_str()),
                    Arg::Str(sub),
                ],
            ),
            SharedOp::Leave { channel, sub } => (
                &self.scripts.presence.leave,
                vec![
                    Arg::Str(&self.keys.base),
                    Arg::Int(log_len),
                    Arg::Str(channel.as_str()),
                    Arg::Str(sub),
                ],
            ),
        };
        self.link.eval(script, &[], &args).await.map(drop)
    }
}

/// Sends the hub's presence changes to Redis in order, each retried until
/// Redis takes it (a change is never dropped: a member would never leave),
/// until shutdown.
pub async fn run(
    log: Arc<RedisLog>,
    mut ops: mpsc::UnboundedReceiver<SharedOp>,
    shutdown: CancellationToken,
) {
    loop {
        let op = tokio::select! {
            () = shutdown.cancelled() => return,
            op = ops.recv() => match op {
                Some(op) => op,
                None => return,
            },
        };
        let mut backoff = Duration::from_millis(50);
        while let Err(e) = log.run_op(&op).await {
            tracing::debug!(error = %e, "Redis presence change failed; retrying");
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }
}

/// Reads every room from Redis on `conn` and hands them to the hub with
/// the log position they stand at.
pub async fn load(log: &RedisLog, conn: &mut MultiplexedConnection) -> redis::RedisResult<()> {
    let reply = link::checked(
        conn.req_packed_command(redis::cmd("EVAL").arg(MEMBERS).arg(0).arg(&log.keys.base))
            .await,
    )?;
    let parts = array(&reply).unwrap_or_default();
    let through = parts
        .first()
        .and_then(text)
        .and_then(|s| s.parse().ok())
        .map_or(EventId::new(0), EventId::new);
    let mut rooms = Vec::new();
    for room in parts.get(1..).unwrap_or_default().chunks_exact(3) {
        let Some(channel) = text(&room[0]).and_then(|c| ChannelName::parse(c).ok()) else {
            continue;
        };
        let counts: HashMap<&str, usize> = array(&room[2])
            .unwrap_or_default()
            .chunks_exact(2)
            .filter_map(|pair| {
                let n = text(&pair[1])
                    .and_then(|n| n.parse().ok())
                    .or(int(&pair[1]))?;
                Some((text(&pair[0])?, n.max(0) as usize))
            })
            .collect();
        let members = array(&room[1])
            .unwrap_or_default()
            .chunks_exact(2)
            .filter_map(|pair| {
                let (sub, info) = (text(&pair[0])?, text(&pair[1])?);
                let count = counts.get(sub).copied().unwrap_or(0);
                Some((Member::new(sub, Some(info)), count))
            })
            .collect();
        rooms.push((channel, members));
    }
    log.hub.load_presence(through, rooms);
    Ok(())
}
