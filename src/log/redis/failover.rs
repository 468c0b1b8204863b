//! The check each new connection makes before anything is written through
//! it (`failover.lua`): whether this Redis lost entries this node has seen,
//! which is what a failover to a replica that lagged (or a restart from an
//! older snapshot) looks like from here.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::RedisResult;

use super::values::{checked, int};

pub const SCRIPT: &str = include_str!("failover.lua");

/// What a connection needs for the check.
pub struct Guard {
    /// seq, log and floor.
    pub keys: [String; 3],
    pub log_len: u32,
    /// The newest id this node has seen in Redis: issued to one of its
    /// publishes, or applied from the log.
    pub seen: Arc<AtomicU64>,
}

impl Guard {
    /// Runs the check on `conn`, with `at` as a floor for what was seen.
    pub async fn check(&self, conn: &mut MultiplexedConnection, at: u64) -> RedisResult<()> {
        let seen = self.seen.load(Ordering::Acquire).max(at);
        let reply = checked(
            conn.req_packed_command(
                redis::cmd("EVAL")
                    .arg(SCRIPT)
                    .arg(3)
                    .arg(&self.keys)
                    .arg(seen)
                    .arg(self.log_len),
            )
            .await,
        )?;
        if int(&reply) == Some(1) {
            tracing::warn!(
                seen,
                "Redis rolled back or failed over to a replica that lacks events this node saw: \
                 announced the loss to every node (streams end; a subscriber resuming from before \
                 it gets a herald.gap; new ids are above every id seen)"
            );
        }
        Ok(())
    }
}
