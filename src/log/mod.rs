//! The log: where a published event gets its id and becomes shared, before
//! the hub fans it out (STYLE.md "Growing herald").
//!
//! - [`Log::Memory`]: a single node; the hub issues ids itself.
//! - [`Log::Redis`] (`--redis`): Redis issues ids and holds history; every
//!   node follows Redis's log into its hub ([`redis`]).
//!
//! The routes talk to the log, never to a backend directly; the hub, the
//! replay and gap rules and the streams do not know which log runs.

pub mod redis;

use std::sync::Arc;

use crate::domain::{ChannelName, Resume};
use crate::hub::{ChannelInfo, ChannelLimit, Hub, PublishItem, Published};

pub use self::redis::LogError;

pub enum Log {
    Memory,
    Redis(Arc<redis::RedisLog>),
}

impl Log {
    /// Publishes every item or none.
    pub async fn publish(
        &self,
        hub: &Hub,
        items: Vec<PublishItem>,
    ) -> Result<Vec<Published>, LogError> {
        match self {
            Log::Memory => hub
                .publish(items)
                .map_err(|ChannelLimit| LogError::ChannelLimit),
            Log::Redis(redis) => redis.publish(hub, items).await,
        }
    }

    /// Gets the hub ready to serve a subscribe to `channels` from `resume`.
    pub async fn prepare_subscribe(
        &self,
        hub: &Hub,
        channels: &[ChannelName],
        resume: Resume,
    ) -> Result<(), LogError> {
        match self {
            Log::Memory => Ok(()),
            Log::Redis(redis) => redis.prepare_subscribe(hub, channels, resume).await,
        }
    }

    /// Whether the node can serve: always, unless the shared log is
    /// unreachable.
    pub fn is_up(&self) -> bool {
        match self {
            Log::Memory => true,
            Log::Redis(redis) => redis.is_up(),
        }
    }

    /// Every channel of the service, sorted by name.
    pub async fn channels(&self, hub: &Hub) -> Result<Vec<ChannelInfo>, LogError> {
        match self {
            Log::Memory => Ok(hub.channels()),
            Log::Redis(redis) => redis.channels(hub).await,
        }
    }
}
