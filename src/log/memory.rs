//! The in-memory log (the default): ids are issued and events applied in
//! one take of the hub's lock, so the order of ids is the order of
//! application with no queue in between. Nothing survives a restart.

use std::sync::Arc;

use crate::config::Config;
use crate::history::Event;
use crate::hub::Hub;
use crate::revocation::Disconnect;

use super::{next_id, PublishError, PublishItem, Published};
use crate::idempotency::{KeyedRequest, Keys, Mode, Row};

pub struct MemoryLog {
    hub: Arc<Hub>,
    /// Idempotency keys, kept for `--idempotency-window` (lost on restart,
    /// as the events are).
    pub idempotency_keys: Arc<Keys>,
}

impl MemoryLog {
    pub fn new(hub: Arc<Hub>, config: &Config) -> MemoryLog {
        MemoryLog {
            hub,
            idempotency_keys: Keys::new(
                config.idempotency_window,
                config.idempotency_max_keys as usize,
                Mode::Memory,
            ),
        }
    }

    pub fn publish(&self, items: Vec<PublishItem>) -> Result<Vec<Published>, PublishError> {
        publish(&self.hub, items)
    }

    /// Nothing to keep: applied at once.
    pub fn disconnect(&self, order: &Disconnect) -> usize {
        self.hub.apply_disconnect(order)
    }

    /// Publishes and keeps the key with the answer.
    pub fn publish_keyed(
        &self,
        items: Vec<PublishItem>,
        request: KeyedRequest,
    ) -> Result<Vec<Published>, PublishError> {
        let published = publish(&self.hub, items)?;
        self.idempotency_keys
            .complete(request, published.iter().map(row));
        Ok(published)
    }
}

/// An answer's event as a key keeps it.
fn row(published: &Published) -> Row {
    Row {
        id: published.id,
        subscribers: u32::try_from(published.subscribers).unwrap_or(u32::MAX),
    }
}

/// Checks the channel limit for the whole batch, then numbers and applies
/// each item, all under one take of the hub's lock.
pub fn publish(hub: &Hub, items: Vec<PublishItem>) -> Result<Vec<Published>, PublishError> {
    let mut hub = hub.applier();
    if !hub.has_room_for(items.iter().map(|item| &item.channel)) {
        return Err(PublishError::ChannelLimit);
    }
    let mut answers = Vec::with_capacity(items.len());
    for item in items {
        let id = next_id(hub.last_id());
        let event = Event {
            id,
            frame: item.event.finish(id),
            data_len: item.data_len,
            ws: Default::default(),
        };
        let subscribers = hub
            .apply(&item.channel, event)
            .expect("an id issued from the applier's own last id is above it");
        answers.push(Published {
            id,
            channel: item.channel,
            subscribers,
        });
    }
    Ok(answers)
}
