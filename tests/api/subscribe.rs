//! SPEC §2: opening a stream, its headers, first bytes, framing, heartbeats
//! and multi-channel streams.

use std::time::Duration;

use crate::helpers::{get, spawn_app, spawn_app_with, Raw};

#[tokio::test]
async fn subscribe_answers_an_event_stream_with_no_cache_and_no_proxy_buffering() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/events/news"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let h = response.headers();
    assert_eq!(h["content-type"], "text/event-stream");
    assert_eq!(h["cache-control"], "no-cache");
    assert_eq!(h["x-accel-buffering"], "no");
    assert!(h.get("content-encoding").is_none());
}

#[tokio::test]
async fn head_answers_the_same_headers_with_no_body_and_creates_no_channel() {
    let app = spawn_app().await;
    let response = app
        .client
        .head(app.url("/events/news"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert_eq!(response.headers()["cache-control"], "no-cache");
    assert!(response.bytes().await.unwrap().is_empty());
    let channels = app.channels().await;
    assert_eq!(channels, serde_json::json!([]));
}

#[tokio::test]
async fn first_bytes_are_retry_and_a_comment_before_any_event() {
    let app = spawn_app_with(|c| c.retry = Duration::from_millis(1500)).await;
    let mut raw = Raw::send(app.addr, &get("/events/news", "")).await;
    let text = raw.read_until("\n\n").await;
    // The body is chunked: the first chunk's size line, then its bytes.
    let body = text.split_once("\r\n\r\n").unwrap().1;
    let first_chunk = body.split_once("\r\n").unwrap().1;
    assert!(
        first_chunk.starts_with("retry: 1500\n: "),
        "body starts: {body:?}"
    );
}

#[tokio::test]
async fn events_are_framed_with_id_event_and_one_data_line_per_line() {
    let app = spawn_app().await;
    let mut raw = Raw::send(app.addr, &get("/events/news", "")).await;
    raw.read_until("\n\n").await;
    let id = app
        .publish_to("/publish/news?event=update", "a\r\nb\rc\nd")
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let text = raw.read_until("data: d\n\n").await;
    assert!(
        text.contains(&format!(
            "id: {id}\nevent: update\ndata: a\ndata: b\ndata: c\ndata: d\n\n"
        )),
        "{text}"
    );
}

#[tokio::test]
async fn message_type_has_no_event_line_and_parser_sees_message() {
    let app = spawn_app().await;
    let mut sse = app.subscribe("/events/news", None).await;
    app.publish("news", "hello").await;
    app.publish_to("/publish/news?event=message", "again").await;
    let first = sse.next().await;
    assert_eq!(
        (first.event.as_str(), first.data.as_str()),
        ("message", "hello")
    );
    assert_eq!(sse.next().await.event, "message");
}

#[tokio::test]
async fn multi_line_data_reaches_the_parser_joined_by_lf() {
    let app = spawn_app().await;
    let mut sse = app.subscribe("/events/news", None).await;
    app.publish("news", "one\r\ntwo\rthree\n\nfive\n").await;
    assert_eq!(sse.next().await.data, "one\ntwo\nthree\n\nfive\n");
}

#[tokio::test]
async fn heartbeat_comment_is_written_when_the_stream_is_idle() {
    let app = spawn_app_with(|c| c.heartbeat = Duration::from_millis(200)).await;
    let mut raw = Raw::send(app.addr, &get("/events/news", "")).await;
    raw.read_until("\n\n").await;
    let text = raw.read_until(": heartbeat\n").await;
    assert!(text.matches(": heartbeat").count() >= 1);
}

#[tokio::test]
async fn heartbeat_event_is_an_event_without_id_byte_for_byte() {
    let app = spawn_app_with(|c| {
        c.heartbeat = Duration::from_millis(200);
        c.heartbeat_event = true;
    })
    .await;
    let mut raw = Raw::send(app.addr, &get("/events/news", "")).await;
    raw.read_until("\n\n").await;
    let id = app.publish("news", "hello").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    raw.read_until(&format!("id: {id}\ndata: hello\n\n")).await;
    let text = raw.read_until("herald.heartbeat\ndata: {}\n\n\r\n").await;
    // HTTP/1.1 chunked: after the event, the next chunk is exactly the
    // heartbeat frame.
    let frame = "event: herald.heartbeat\ndata: {}\n\n";
    let expected = format!("data: hello\n\n\r\n{:X}\r\n{frame}\r\n", frame.len());
    assert!(text.contains(&expected), "{text:?}");
    assert!(!raw.text().contains(": heartbeat"), "no comment heartbeat");

    // An EventSource parser sees it as an event that leaves the last id.
    let mut sse = app.subscribe("/events/news", None).await;
    let event = sse.next().await;
    assert_eq!(
        (event.event.as_str(), event.data.as_str()),
        ("herald.heartbeat", "{}")
    );
    let id = app.publish("news", "two").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let two = sse.next().await;
    assert_eq!((two.data.as_str(), two.id.as_str()), ("two", id.as_str()));
    let heartbeat = sse.next().await;
    assert_eq!(heartbeat.event, "herald.heartbeat");
    assert_eq!(heartbeat.id, id, "no id: the last event id stays");
}

#[tokio::test]
async fn multi_channel_stream_delivers_each_event_once_in_increasing_id_order() {
    let app = spawn_app().await;
    let mut sse = app
        .subscribe("/events?channel=a&channel=b&channel=a", None)
        .await;
    let mut published = Vec::new();
    for i in 0..30 {
        let channel = ["a", "b", "c"][i % 3];
        let answer = app.publish(channel, &format!("{channel}{i}")).await;
        if channel != "c" {
            published.push(answer["id"].as_str().unwrap().to_owned());
        }
    }
    let mut received = Vec::new();
    for _ in 0..published.len() {
        received.push(sse.next().await.id);
    }
    assert_eq!(received, published);
    assert!(
        sse.try_next(Duration::from_millis(200)).await.is_none(),
        "nothing from c, nothing twice"
    );
}

#[tokio::test]
async fn multi_channel_stream_from_concurrent_publishers_has_strictly_increasing_ids() {
    let app = spawn_app().await;
    let mut sse = app
        .subscribe("/events?channel=a&channel=b&channel=c", None)
        .await;
    let mut publishers = Vec::new();
    for channel in ["a", "b", "c"] {
        let client = app.client.clone();
        let url = app.url(&format!("/publish/{channel}"));
        publishers.push(tokio::spawn(async move {
            for i in 0..50 {
                let r = client.post(&url).body(format!("{i}")).send().await.unwrap();
                assert_eq!(r.status(), 200);
            }
        }));
    }
    for p in publishers {
        p.await.unwrap();
    }
    let mut last = 0u64;
    for _ in 0..150 {
        let id: u64 = sse.next().await.id.parse().unwrap();
        assert!(id > last, "{id} after {last}");
        last = id;
    }
}

#[tokio::test]
async fn ids_are_plain_decimals_and_unique_across_channels() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(app.publish_id(["x", "y"][i % 2], "v").await);
    }
    for id in &ids {
        assert!(
            id.len() <= 20 && !id.starts_with('0') && id.bytes().all(|b| b.is_ascii_digit()),
            "{id}"
        );
    }
    let numbers: Vec<u64> = ids.iter().map(|id| id.parse().unwrap()).collect();
    assert!(numbers.windows(2).all(|w| w[0] < w[1]));
}

#[tokio::test]
async fn ids_after_a_restart_are_greater_than_every_id_before_it() {
    let app = spawn_app().await;
    let before: u64 = app.publish_id("news", "old").await.parse().unwrap();
    app.stop().await;
    let app = spawn_app().await;
    let after: u64 = app.publish_id("news", "new").await.parse().unwrap();
    assert!(after > before, "{after} <= {before}");
}

#[tokio::test]
async fn a_stream_with_more_than_32_channels_is_refused() {
    let app = spawn_app().await;
    let query: Vec<String> = (0..33).map(|i| format!("channel=c{i}")).collect();
    let response = app
        .client
        .get(app.url(&format!("/events?{}", query.join("&"))))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let ok: Vec<String> = (0..32).map(|i| format!("channel=c{i}")).collect();
    let response = app
        .client
        .get(app.url(&format!("/events?{}", ok.join("&"))))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_stream_with_no_channel_is_refused() {
    let app = spawn_app().await;
    for path in ["/events", "/events?lastEventId=1", "/events?channel="] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 400, "{path}");
    }
}
