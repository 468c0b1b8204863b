//! SPEC §2: replay with `Last-Event-ID` / `lastEventId`, and the gap notice.

use std::time::Duration;

use crate::helpers::{spawn_app, spawn_app_with};

#[tokio::test]
async fn replay_after_reconnect_has_no_gap_or_duplicate() {
    let app = spawn_app().await;
    let mut sse = app.subscribe("/events/news", None).await;
    app.publish("news", "1").await;
    let seen = sse.next().await;
    drop(sse);
    app.publish("news", "2").await;
    app.publish("news", "3").await;
    let mut sse = app.subscribe("/events/news", Some(&seen.id)).await;
    app.publish("news", "4").await;
    assert_eq!(sse.data(3).await, ["2", "3", "4"]);
    assert!(sse.try_next(Duration::from_millis(200)).await.is_none());
}

#[tokio::test]
async fn last_event_id_query_parameter_replays_for_a_first_connection() {
    let app = spawn_app().await;
    let first = app.publish_id("news", "1").await;
    app.publish("news", "2").await;
    let mut sse = app
        .subscribe(&format!("/events/news?lastEventId={first}"), None)
        .await;
    assert_eq!(sse.next().await.data, "2");
}

#[tokio::test]
async fn header_wins_over_query_parameter() {
    let app = spawn_app().await;
    let first = app.publish_id("news", "1").await;
    let second = app.publish_id("news", "2").await;
    app.publish("news", "3").await;
    let mut sse = app
        .subscribe(&format!("/events/news?lastEventId={first}"), Some(&second))
        .await;
    assert_eq!(sse.next().await.data, "3");
}

#[tokio::test]
async fn empty_last_event_id_means_no_id() {
    let app = spawn_app().await;
    app.publish("news", "old").await;
    let mut sse = app.subscribe("/events/news?lastEventId=", Some("")).await;
    app.publish("news", "new").await;
    let event = sse.next().await;
    assert_eq!(event.data, "new", "no replay and no gap for an empty id");
}

#[tokio::test]
async fn subscriber_without_an_id_gets_only_live_events() {
    let app = spawn_app().await;
    app.publish("news", "before").await;
    let mut sse = app.subscribe("/events/news", None).await;
    app.publish("news", "after").await;
    assert_eq!(sse.next().await.data, "after");
}

#[tokio::test]
async fn published_event_is_in_history_when_the_answer_is_sent() {
    let app = spawn_app().await;
    let zero = app.publish_id("news", "0").await;
    app.publish("news", "1").await;
    let mut sse = app.subscribe("/events/news", Some(&zero)).await;
    assert_eq!(sse.next().await.data, "1");
}

#[tokio::test]
async fn gap_notice_when_the_presented_id_is_older_than_history() {
    let app = spawn_app_with(|c| c.history = 2).await;
    let first = app.publish_id("news", "1").await;
    for data in ["2", "3", "4"] {
        app.publish("news", data).await;
    }
    let mut sse = app.subscribe("/events/news", Some(&first)).await;
    let gap = sse.next().await;
    assert_eq!(gap.event, "herald.gap");
    assert_eq!(gap.id, "", "a gap notice carries no id");
    let data: serde_json::Value = serde_json::from_str(&gap.data).unwrap();
    assert_eq!(data["channel"], "news");
    assert_eq!(sse.data(2).await, ["3", "4"], "then every retained event");
}

#[tokio::test]
async fn no_gap_when_the_presented_id_is_the_newest_dropped_one() {
    let app = spawn_app_with(|c| c.history = 2).await;
    app.publish("news", "1").await;
    let second = app.publish_id("news", "2").await;
    app.publish("news", "3").await;
    app.publish("news", "4").await; // drops 1 and 2
    let mut sse = app.subscribe("/events/news", Some(&second)).await;
    assert_eq!(sse.data(2).await, ["3", "4"]);
}

#[tokio::test]
async fn gap_notice_for_a_malformed_id() {
    let app = spawn_app().await;
    app.publish("news", "1").await;
    for bad in ["abc", "007", "-5", "1:0"] {
        let mut sse = app.subscribe("/events/news", Some(bad)).await;
        let gap = sse.next().await;
        assert_eq!(gap.event, "herald.gap", "{bad}");
        assert_eq!(
            sse.next().await.data,
            "1",
            "{bad}: then the retained events"
        );
    }
}

#[tokio::test]
async fn gap_notice_for_an_id_greater_than_any_issued() {
    let app = spawn_app().await;
    let id: u64 = app.publish_id("news", "1").await.parse().unwrap();
    let mut sse = app
        .subscribe("/events/news", Some(&(id + 1_000_000).to_string()))
        .await;
    assert_eq!(sse.next().await.event, "herald.gap");
    assert_eq!(sse.next().await.data, "1");
}

#[tokio::test]
async fn gap_notice_for_an_id_from_before_a_restart() {
    let app = spawn_app().await;
    let old = app.publish_id("news", "lost").await;
    app.stop().await;
    let app = spawn_app().await;
    app.publish("other", "x").await;
    let mut sse = app.subscribe("/events/news", Some(&old)).await;
    let gap = sse.next().await;
    assert_eq!(
        gap.event, "herald.gap",
        "history of the earlier run is gone"
    );
}

#[tokio::test]
async fn multi_channel_gap_is_per_channel_then_replay_in_id_order() {
    let app = spawn_app_with(|c| c.history = 2).await;
    let start = app.publish_id("a", "a1").await;
    app.publish("b", "b1").await;
    app.publish("a", "a2").await;
    app.publish("a", "a3").await; // drops a1: a has a gap after `start`? no: a1 == start
    app.publish("a", "a4").await; // drops a2: now a gap for `start`
    app.publish("b", "b2").await;
    let mut sse = app
        .subscribe("/events?channel=a&channel=b", Some(&start))
        .await;
    let gap = sse.next().await;
    assert_eq!(gap.event, "herald.gap");
    let data: serde_json::Value = serde_json::from_str(&gap.data).unwrap();
    assert_eq!(data["channel"], "a");
    assert_eq!(sse.data(4).await, ["b1", "a3", "a4", "b2"]);
}

#[tokio::test]
async fn history_bytes_limit_drops_old_events_but_keeps_the_newest() {
    let app = spawn_app_with(|c| c.history_bytes = 10).await;
    let first = app.publish_id("news", "12345").await;
    app.publish("news", "67890").await;
    app.publish("news", "this one is larger than ten bytes")
        .await;
    let channels = app.channels().await;
    assert_eq!(channels[0]["retained"], 1);
    let mut sse = app.subscribe("/events/news", Some(&first)).await;
    assert_eq!(sse.next().await.event, "herald.gap");
    assert_eq!(sse.next().await.data, "this one is larger than ten bytes");
}

/// Publishers publish continuously while subscribers keep reconnecting with
/// the last id they saw; every subscriber's sequence must be exactly the
/// published one: no gap, no duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuous_publish_with_reconnecting_subscribers_has_no_gap_or_duplicate() {
    const EVENTS: usize = 400;
    let app = spawn_app().await;
    let start = app.publish_id("live", "start").await;

    let publisher = {
        let client = app.client.clone();
        let url = app.url("/publish/live");
        tokio::spawn(async move {
            let mut ids = Vec::with_capacity(EVENTS);
            for i in 0..EVENTS {
                let r: serde_json::Value = client
                    .post(&url)
                    .body(i.to_string())
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                ids.push(r["id"].as_str().unwrap().to_owned());
                if i % 16 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            ids
        })
    };

    let mut subscribers = Vec::new();
    for s in 0..6 {
        let base = app.base.clone();
        let client = app.client.clone();
        let start = start.clone();
        subscribers.push(tokio::spawn(async move {
            let mut seen: Vec<String> = Vec::new();
            let mut data: Vec<String> = Vec::new();
            let mut last = start;
            let mut round = 0;
            while data.len() < EVENTS {
                round += 1;
                let response = client
                    .get(format!("{base}/events/live"))
                    .header("Last-Event-ID", &last)
                    .send()
                    .await
                    .unwrap();
                let mut sse = crate::helpers::Sse::from_response(response);
                // Read a few events, then drop the connection and resume.
                let take = 7 + (s * 5 + round) % 23;
                for _ in 0..take {
                    let Some(event) = sse.try_next(Duration::from_secs(10)).await else {
                        break;
                    };
                    assert_ne!(event.event, "herald.gap", "history is large enough: no gap");
                    last = event.id.clone();
                    seen.push(event.id);
                    data.push(event.data);
                    if data.len() == EVENTS {
                        break;
                    }
                }
            }
            (seen, data)
        }));
    }

    let published = publisher.await.unwrap();
    let expected_data: Vec<String> = (0..EVENTS).map(|i| i.to_string()).collect();
    for s in subscribers {
        let (ids, data) = s.await.unwrap();
        assert_eq!(data, expected_data);
        assert_eq!(ids, published);
    }
}
