//! Presence over WebSocket (SPEC §7, §10): a socket on a presence channel is
//! a member exactly like an event stream, and gets the same notices as JSON
//! messages without an `id`, whose `data` is what an EventSource would see.

use std::time::Duration;

use serde_json::{json, Value};

use super::{app, member, notice, stream, subs, PUBLISH_TOKEN, ROOM};
use crate::helpers::{Sse, TestApp};
use crate::websocket::{connect, next_json, Ws};

/// Opens a WebSocket on `/events/{channel}` with `token` in the query, as a
/// page would (a browser sets no header on a WebSocket).
async fn socket(app: &TestApp, channel: &str, token: &str) -> Ws {
    connect(app, &format!("/events/{channel}?token={token}")).await
}

/// A presence message's type and its `data` parsed: it must have no `id`
/// and name the channel.
async fn ws_notice(ws: &mut Ws) -> (String, Value) {
    let message = next_json(ws).await;
    assert_eq!(message.get("id"), None, "no id on {message}");
    assert_eq!(message["channel"], ROOM, "{message}");
    let data = message["data"].as_str().expect("data is a string");
    (
        message["event"].as_str().unwrap().to_owned(),
        serde_json::from_str(data).unwrap(),
    )
}

async fn publish(app: &TestApp, data: &str) {
    let response = app
        .client
        .post(app.url(&format!("/publish/{ROOM}")))
        .bearer_auth(PUBLISH_TOKEN)
        .body(data.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

/// Publishes a marker and checks it is the next thing the event stream
/// sees: no join or leave came before it.
async fn sse_sees_nothing_before(app: &TestApp, sse: &mut Sse, marker: &str) {
    publish(app, marker).await;
    let next = sse.next().await;
    assert_eq!(
        (next.event.as_str(), next.data.as_str()),
        ("message", marker)
    );
}

/// The same for a socket: the marker, with its id, comes next.
async fn ws_sees_nothing_before(app: &TestApp, ws: &mut Ws, marker: &str) {
    publish(app, marker).await;
    let next = next_json(ws).await;
    assert_eq!(next["data"], marker, "expected nothing before the marker");
    assert!(next["id"].is_string(), "an event keeps its id: {next}");
}

async fn roster(app: &TestApp) -> Value {
    app.client
        .get(app.url(&format!("/channels/{ROOM}/presence")))
        .bearer_auth(PUBLISH_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_socket_member_gets_its_snapshot_first_and_an_event_stream_sees_it_come_and_go() {
    // Arrange: an event stream member already in the room
    let app = app(|c| c.presence_grace = Duration::from_millis(300)).await;
    let mut ada = stream(&app, ROOM, &member("1", "Ada")).await;
    assert_eq!(notice(&mut ada).await.0, "herald.presence");

    // Act: a WebSocket member comes in
    let mut bo = socket(&app, ROOM, &member("2", "Bo")).await;

    // Assert: its snapshot first, listing both; the stream is told of the join
    let (kind, snapshot) = ws_notice(&mut bo).await;
    assert_eq!(kind, "herald.presence");
    assert_eq!(
        (snapshot["count"].clone(), subs(&snapshot)),
        (json!(2), vec!["1", "2"])
    );
    assert_eq!(
        notice(&mut ada).await,
        (
            "herald.join".to_owned(),
            json!({"channel": ROOM, "sub": "2", "info": {"name": "Bo"}})
        )
    );
    ws_sees_nothing_before(&app, &mut bo, "no join for itself").await;
    assert_eq!(ada.next().await.data, "no join for itself");
    assert_eq!(roster(&app).await["count"], 2);

    // Act: the socket closes
    drop(bo);

    // Assert: after the grace the stream is told it left
    assert_eq!(
        notice(&mut ada).await,
        (
            "herald.leave".to_owned(),
            json!({"channel": ROOM, "sub": "2", "info": {"name": "Bo"}})
        )
    );
    assert_eq!(subs(&roster(&app).await), vec!["1"]);
}

#[tokio::test]
async fn a_socket_watcher_gets_joins_and_leaves_of_event_stream_members_as_an_eventsource_would() {
    // Arrange: a socket member watching
    let app = app(|c| c.presence_grace = Duration::from_millis(300)).await;
    let mut ada = socket(&app, ROOM, &member("1", "Ada")).await;
    assert_eq!(ws_notice(&mut ada).await.0, "herald.presence");

    // Act: an event stream member comes, then goes
    let mut bo = stream(&app, ROOM, &member("2", "Bo")).await;
    let (kind, snapshot) = notice(&mut bo).await;
    assert_eq!(
        (kind.as_str(), subs(&snapshot)),
        ("herald.presence", vec!["1", "2"])
    );
    let join = next_json(&mut ada).await;
    drop(bo);
    let leave = next_json(&mut ada).await;

    // Assert: the same shape as other messages, no id, and `data` the text
    // an EventSource gets
    let change = r#"{"channel":"presence-room","sub":"2","info":{"name":"Bo"}}"#;
    assert_eq!(
        join,
        json!({"channel": ROOM, "event": "herald.join", "data": change})
    );
    assert_eq!(
        leave,
        json!({"channel": ROOM, "event": "herald.leave", "data": change})
    );
}

#[tokio::test]
async fn a_member_on_a_socket_and_an_event_stream_is_one_member_until_both_are_gone() {
    // Arrange: a watcher, then one user on both transports
    let app = app(|c| c.presence_grace = Duration::from_millis(300)).await;
    let mut watcher = app
        .subscribe(&format!("/events/{ROOM}?token={PUBLISH_TOKEN}"), None)
        .await;
    assert_eq!(notice(&mut watcher).await.0, "herald.presence");
    let token = member("1", "Ada");
    let mut on_socket = socket(&app, ROOM, &token).await;
    let on_stream = stream(&app, ROOM, &token).await;

    // Assert: one join, one member with two connections
    assert_eq!(notice(&mut watcher).await.0, "herald.join");
    sse_sees_nothing_before(&app, &mut watcher, "one join").await;
    let listed = roster(&app).await;
    assert_eq!(
        (
            listed["count"].clone(),
            listed["members"][0]["connections"].clone()
        ),
        (json!(1), json!(2))
    );
    let (_, snapshot) = ws_notice(&mut on_socket).await;
    assert_eq!(subs(&snapshot), vec!["1"]);

    // Act: the event stream ends, then longer than the grace passes
    drop(on_stream);
    tokio::time::sleep(Duration::from_millis(600)).await;

    // Assert: no leave while the socket holds the member
    sse_sees_nothing_before(&app, &mut watcher, "still here").await;

    // Act: the socket closes too
    drop(on_socket);

    // Assert: now it leaves, once
    assert_eq!(notice(&mut watcher).await.0, "herald.leave");
    sse_sees_nothing_before(&app, &mut watcher, "one leave").await;
}
