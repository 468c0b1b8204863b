//! The in-memory log (the default): ids are issued and events applied in
//! one take of the hub's lock, so the order of ids is the order of
//! application with no queue in between. Nothing survives a restart.

use std::sync::Arc;

use crate::revocation::Disconnect;
use crate::history::Event;
use crate::hub::Hub;

use super::{next_id, PublishError, PublishItem, Published};

pub struct MemoryLog {
    hub: Arc<Hub>,
}

impl MemoryLog {
    pub fn new(hub: Arc<Hub>) -> MemoryLog {
        MemoryLog { hub }
    }

    pub fn publish(&self, items: Vec<PublishItem>) -> Result<Vec<Published>, PublishError> {
        publish(&self.hub, items)
    }

    /// Nothing to keep: applied at once.
    pub fn disconnect(&self, order: &Disconnect) -> usize {
        self.hub.apply_disconnect(order)
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
