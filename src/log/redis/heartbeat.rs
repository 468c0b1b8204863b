//! Each node's heartbeat (`beat.lua`): its subscriber counts, written
//! every beat, which keep the channels it serves alive in Redis and make
//! the service-wide counts of `GET /channels` ([`RedisLog::channels`]).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::link::Arg;
use super::values::{array, int, text};
use super::RedisLog;
use crate::domain::{ChannelName, EventId};
use crate::hub::ChannelInfo;
use crate::log::PublishError;

impl RedisLog {
    /// `GET /channels` for the whole service. Other nodes' subscribers are
    /// as of their last heartbeat (at most [`RedisLog::beat_interval`] old);
    /// this node's are current.
    pub async fn channels(&self) -> Result<Vec<ChannelInfo>, PublishError> {
        if !self.is_up() {
            return Err(self.unavailable());
        }
        let keys = [self.keys.key("channels"), self.keys.key("nodes")];
        let args = [Arg::Str(&self.keys.base), Arg::Str(&self.node)];
        let reply = self
            .link
            .eval(&self.scripts.channels, &keys, &args)
            .await
            .map_err(|e| {
                self.failed("channels", e);
                self.unavailable()
            })?;
        let Some(flat) = array(&reply) else {
            self.unexpected("channels");
            return Err(self.unavailable());
        };
        let mut rows = Vec::with_capacity(flat.len() / 4);
        for row in flat.chunks_exact(4) {
            let Some(channel) = text(&row[0]).and_then(|s| ChannelName::parse(s).ok()) else {
                continue;
            };
            let others = int(&row[3]).unwrap_or(0).max(0) as usize;
            rows.push(ChannelInfo {
                subscribers: others + self.hub.subscribers(&channel),
                retained: int(&row[1]).unwrap_or(0).max(0) as usize,
                last_event_id: text(&row[2]).and_then(|s| s.parse().ok()).map(EventId::new),
                channel,
            });
        }
        rows.sort_unstable_by(|a, b| a.channel.cmp(&b.channel));
        Ok(rows)
    }

    /// How long a node that stops beating is taken for alive: then it drops
    /// out of the counts, and its presence connections are counted out.
    pub fn node_ttl(&self) -> Duration {
        (3 * self.beat_interval()).max(Duration::from_secs(3))
    }

    /// How often a node writes its heartbeat: the lag of other nodes'
    /// subscriber counts.
    pub fn beat_interval(&self) -> Duration {
        (self.channel_ttl / 4).clamp(Duration::from_millis(50), Duration::from_secs(1))
    }

    /// Writes this node's heartbeat and subscriber counts, and keeps the
    /// channels it serves alive in Redis (every `--channel-ttl`/4).
    pub(super) async fn heartbeat(self: Arc<Self>, shutdown: CancellationToken) {
        let beat = self.beat_interval();
        let refresh_every = (self.channel_ttl / 4).max(beat);
        let node_ttl = self.node_ttl();
        let mut last_counts: Option<Vec<(ChannelName, usize)>> = None;
        let mut last_refresh: Option<Instant> = None;
        loop {
            tokio::select! {
                // `close` leaves the node set, at the end of shutdown.
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(beat) => {}
            }
            if !self.is_up() {
                last_counts = None;
                continue;
            }
            let mut counts = self.hub.subscriber_counts();
            counts.sort_unstable();
            let changed = last_counts.as_ref() != Some(&counts);
            let refresh = last_refresh.is_none_or(|at| at.elapsed() >= refresh_every);
            let keys = [
                self.keys.key("nodes"),
                self.keys.key(&format!("n:{}", self.node)),
                self.keys.key("channels"),
            ];
            let mut args = vec![
                Arg::Str(&self.keys.base),
                Arg::Str(&self.node),
                Arg::Int(node_ttl.as_millis() as u64),
                Arg::Int(self.key_lifetime_ms()),
                Arg::Int(u64::from(changed)),
                Arg::Int(u64::from(refresh)),
                Arg::Int(u64::from(self.log_len)),
            ];
            for (channel, n) in &counts {
                args.push(Arg::Str(channel.as_str()));
                args.push(Arg::Int(*n as u64));
            }
            match self.link.eval(&self.scripts.beat, &keys, &args).await {
                Ok(reply) => {
                    if int(&reply) == Some(1) {
                        // Another node took this one for dead and counted
                        // its members out: end the streams, so they come
                        // back and count in again.
                        let streams = self.hub.reset();
                        self.metrics.redis_resyncs.inc();
                        tracing::warn!(
                            streams,
                            "this node missed its heartbeats and was taken for dead: ended its streams"
                        );
                    }
                    last_counts = Some(counts);
                    if refresh {
                        last_refresh = Some(Instant::now());
                    }
                }
                Err(e) => tracing::debug!(error = %e, "Redis heartbeat failed"),
            }
        }
    }
}
