//! The hub's publish, subscribe, replay and reaping rules; the helpers
//! below serve the unit tests of the hub's other files too.

use super::*;
use crate::log::{memory, PublishError, PublishItem};
use crate::sse::PendingEvent;

pub(super) fn hub(history: usize, max_channels: usize) -> Hub {
    Hub::new(HubConfig {
        history: HistoryLimits {
            events: history,
            bytes: 1 << 20,
            age: None,
        },
        max_channels,
        stream_buffer: 16,
        channel_ttl: Duration::from_secs(60),
        presence: PresenceConfig::default(),
    })
}

pub(super) fn name(s: &str) -> ChannelName {
    ChannelName::parse(s).unwrap()
}

fn publish(hub: &Hub, channel: &str, data: &str) -> EventId {
    memory::publish(
        hub,
        vec![PublishItem {
            channel: name(channel),
            event: PendingEvent::encode(None, data),
            data_len: data.len(),
        }],
    )
    .unwrap()[0]
        .id
}

/// An event of id `id` on its own (data `x`), for the applier.
pub(super) fn event(id: u64) -> Event {
    Event {
        id: EventId::new(id),
        frame: bytes::Bytes::from(format!("id: {id}\ndata: x\n\n")),
        data_len: 1,
        ws: Default::default(),
    }
}

/// The first line of each backlog item of a stream of `channel` resuming
/// after `after`: `id: N` for an event, `gap`, `presence`.
pub(super) fn replayed_ids(hub: &Hub, channel: &str, after: u64) -> Vec<String> {
    let sub = hub
        .subscribe(&[name(channel)], Resume::After(EventId::new(after)))
        .unwrap();
    replayed(&sub)
        .iter()
        .map(|f| f.lines().next().unwrap().to_owned())
        .collect()
}

pub(super) fn replayed(sub: &Subscription) -> Vec<String> {
    sub.backlog
        .iter()
        .map(|b| match b {
            Backlog::Presence(_) => "presence".to_owned(),
            Backlog::Gap(_) => "gap".to_owned(),
            Backlog::Replayed { event, .. } => String::from_utf8(event.frame.to_vec()).unwrap(),
        })
        .collect()
}

#[test]
fn ids_strictly_increase_across_channels() {
    let hub = hub(10, 10);
    let ids: Vec<EventId> = (0..100)
        .map(|i| publish(&hub, ["a", "b", "c"][i % 3], "x"))
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn resume_replays_only_later_events_of_the_subscribed_channels_in_id_order() {
    let hub = hub(10, 10);
    let first = publish(&hub, "a", "1");
    publish(&hub, "b", "2");
    publish(&hub, "c", "skip");
    publish(&hub, "a", "3");
    let sub = hub
        .subscribe(&[name("b"), name("a")], Resume::After(first))
        .unwrap();
    let frames = replayed(&sub);
    assert_eq!(frames.len(), 2);
    assert!(frames[0].ends_with("data: 2\n\n") && frames[1].ends_with("data: 3\n\n"));
}

#[test]
fn live_receiver_starts_right_after_the_backlog() {
    let hub = hub(10, 10);
    let first = publish(&hub, "a", "1");
    let mut sub = hub.subscribe(&[name("a")], Resume::After(first)).unwrap();
    let next = publish(&hub, "a", "2");
    let live = sub.sources[0].receiver.try_recv().unwrap();
    assert_eq!(live.id, next);
    assert!(sub.backlog.is_empty());
}

#[test]
fn resuming_below_the_dropped_events_gets_a_gap_then_everything_retained() {
    let hub = hub(2, 10);
    let first = publish(&hub, "a", "1");
    publish(&hub, "a", "2");
    publish(&hub, "a", "3");
    publish(&hub, "a", "4");
    let sub = hub.subscribe(&[name("a")], Resume::After(first)).unwrap();
    let frames = replayed(&sub);
    assert_eq!(frames[0], "gap");
    assert_eq!(frames.len(), 3);
}

#[test]
fn an_id_from_the_future_is_a_gap() {
    let hub = hub(10, 10);
    publish(&hub, "a", "1");
    let sub = hub
        .subscribe(&[name("a")], Resume::After(EventId::new(u64::MAX)))
        .unwrap();
    assert_eq!(replayed(&sub)[0], "gap");
}

#[test]
fn publish_past_max_channels_is_refused_whole() {
    let hub = hub(10, 2);
    publish(&hub, "a", "1");
    let items = ["a", "b", "c"]
        .iter()
        .map(|c| PublishItem {
            channel: name(c),
            event: PendingEvent::encode(None, "x"),
            data_len: 1,
        })
        .collect();
    assert!(matches!(
        memory::publish(&hub, items),
        Err(PublishError::ChannelLimit)
    ));
    assert_eq!(hub.channel_count(), 1);
    assert_eq!(hub.channels()[0].retained, 1, "nothing of the batch landed");
}

#[test]
fn reaper_drops_idle_channels_but_keeps_subscribed_ones() {
    let hub = hub(10, 10);
    publish(&hub, "idle", "1");
    let _sub = hub.subscribe(&[name("busy")], Resume::Live).unwrap();
    let later = Instant::now() + Duration::from_secs(61);
    let reaped = hub.reap(later);
    assert_eq!(reaped.left, 1);
    assert_eq!(reaped.dropped, [name("idle")]);
    assert_eq!(hub.channels()[0].channel.as_str(), "busy");
}
