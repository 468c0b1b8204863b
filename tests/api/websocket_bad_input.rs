//! WebSocket bad input beyond `websocket.rs`'s one-of-each (issue 13's
//! checklist): unfinished messages however they are disguised, fragments
//! that add up past the limit, text that is not UTF-8, each closed with its
//! code, counted, and with a bystander socket still served; JSON of every
//! wrong shape, answered and counted; and streams counted by transport.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{eventually_async, spawn_app, spawn_app_with, TestApp, WAIT};
use crate::websocket::{close_code, connect, next_json, ping_flood, Ws};

/// A text fragment that says more is coming.
fn unfinished(text: &str) -> Message {
    Message::Frame(Frame::message(
        text.as_bytes().to_vec(),
        OpCode::Data(Data::Text),
        false,
    ))
}

/// The bystander still gets what is published.
async fn still_served(app: &TestApp, bystander: &mut Ws) {
    app.publish("a", "still here").await;
    assert_eq!(next_json(bystander).await["data"], "still here");
}

async fn ws_rejected(app: &TestApp, reason: &str) -> f64 {
    app.metric(&format!("herald_ws_rejected_total{{reason=\"{reason}\"}}"))
        .await
}

#[tokio::test]
async fn an_unfinished_message_behind_a_complete_one_is_closed_in_time() {
    let app = spawn_app_with(|c| c.body_timeout = Duration::from_millis(300)).await;
    let mut bystander = connect(&app, "/events/a").await;
    let mut ws = connect(&app, "/events/a").await;
    // Both in one write: the server reads the fragment with the message.
    let publish = json!({"type": "publish", "channel": "b", "data": "whole"});
    ws.feed(Message::text(publish.to_string())).await.unwrap();
    ws.feed(unfinished("{\"type\":")).await.unwrap();
    ws.flush().await.unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "published");
    assert_eq!(close_code(&mut ws).await, CloseCode::Policy);
    assert_eq!(ws_rejected(&app, "incomplete").await, 1.0);
    still_served(&app, &mut bystander).await;
}

#[tokio::test]
async fn pings_do_not_keep_an_unfinished_message_alive() {
    let app = spawn_app_with(|c| c.body_timeout = Duration::from_millis(300)).await;
    let mut bystander = connect(&app, "/events/a").await;
    let mut ws = connect(&app, "/events/a").await;
    ws.send(unfinished("{\"type\":")).await.unwrap();
    // A ping every 100 ms (well under the flood limit), each one a whole
    // control frame, while the message stays unfinished.
    let code = tokio::time::timeout(WAIT, async {
        loop {
            tokio::select! {
                message = ws.next() => match message {
                    Some(Ok(Message::Close(Some(frame)))) => break frame.code,
                    Some(Ok(_)) => {}
                    other => panic!("expected a close frame, got {other:?}"),
                },
                () = tokio::time::sleep(Duration::from_millis(100)) => {
                    let _ = ws.send(Message::Ping(Default::default())).await;
                }
            }
        }
    })
    .await
    .expect("closed within the wait");
    assert_eq!(code, CloseCode::Policy);
    assert_eq!(ws_rejected(&app, "incomplete").await, 1.0);
    still_served(&app, &mut bystander).await;
}

#[tokio::test]
async fn fragments_that_add_up_past_the_limit_close_with_1009() {
    let app = spawn_app_with(|c| c.max_event_bytes = 1000).await;
    let mut bystander = connect(&app, "/events/a").await;
    let mut ws = connect(&app, "/events/a").await;
    // Each fragment is small; together they pass the message limit
    // (twice --max-event-bytes plus 4 KiB), so the server cannot be made to
    // hold more than that.
    let piece = "x".repeat(1000);
    let _ = ws.feed(unfinished(&piece)).await;
    for _ in 0..20 {
        let more = Frame::message(
            piece.as_bytes().to_vec(),
            OpCode::Data(Data::Continue),
            false,
        );
        if ws.feed(Message::Frame(more)).await.is_err() {
            break;
        }
    }
    let _ = ws.flush().await;
    assert_eq!(close_code(&mut ws).await, CloseCode::Size);
    assert_eq!(ws_rejected(&app, "too_large").await, 1.0);
    still_served(&app, &mut bystander).await;
    assert_eq!(
        app.channels().await.as_array().unwrap().len(),
        1,
        "nothing was published"
    );
}

#[tokio::test]
async fn text_that_is_not_utf8_closes_with_1007() {
    let app = spawn_app().await;
    let mut bystander = connect(&app, "/events/a").await;
    let mut ws = connect(&app, "/events/a").await;
    let bad = Frame::message(vec![b'{', 0xff, 0xfe, b'}'], OpCode::Data(Data::Text), true);
    ws.send(Message::Frame(bad)).await.unwrap();
    assert_eq!(close_code(&mut ws).await, CloseCode::Invalid);
    assert_eq!(ws_rejected(&app, "protocol").await, 1.0);
    still_served(&app, &mut bystander).await;
}

#[tokio::test]
async fn a_ping_flood_leaves_other_sockets_served() {
    let app = spawn_app().await;
    let mut bystander = connect(&app, "/events/a").await;
    let mut ws = connect(&app, "/events/a").await;
    ping_flood(&mut ws).await;
    assert_eq!(close_code(&mut ws).await, CloseCode::Policy);
    still_served(&app, &mut bystander).await;
}

#[tokio::test]
async fn streams_are_counted_by_transport() {
    let app = spawn_app().await;
    let sse_open = "herald_transport_streams_open{transport=\"sse\"}";
    let ws_open = "herald_transport_streams_open{transport=\"ws\"}";
    let mut sse = app.subscribe("/events/a", None).await;
    let ws = connect(&app, "/events/a").await;
    let mut other = connect(&app, "/events/a").await;
    assert_eq!(
        (app.metric(sse_open).await, app.metric(ws_open).await),
        (1.0, 2.0)
    );
    assert_eq!(app.metric("herald_streams_open").await, 3.0);
    drop(ws);
    eventually_async("the closed socket is no longer counted", || async {
        app.metric(ws_open).await == 1.0
    })
    .await;
    assert_eq!(app.metric(sse_open).await, 1.0);
    // The two that stay are still served.
    app.publish("a", "both").await;
    assert_eq!(sse.data(1).await, ["both"]);
    assert_eq!(next_json(&mut other).await["data"], "both");
}

#[tokio::test]
async fn json_of_every_wrong_shape_is_answered_and_counted_and_the_socket_stays() {
    let app = spawn_app().await;
    let mut ws = connect(&app, "/events/a").await;
    let bad_messages = [
        r#"[1]"#,
        r#""publish""#,
        r#"null"#,
        r#"{"channel":"a","data":"x"}"#,
        r#"{"type":7}"#,
    ];
    let bad_publishes = [
        r#"{"type":"publish"}"#,
        r#"{"type":"publish","channel":"a"}"#,
        r#"{"type":"publish","data":"x"}"#,
    ];
    for text in bad_messages.iter().chain(&bad_publishes) {
        ws.send(Message::text(*text)).await.unwrap();
        let answer = next_json(&mut ws).await;
        assert_eq!(answer["type"], "error", "{text}: {answer}");
        assert!(
            answer["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{answer}"
        );
    }
    assert_eq!(
        ws_rejected(&app, "bad_message").await,
        bad_messages.len() as f64
    );
    assert_eq!(
        ws_rejected(&app, "bad_publish").await,
        bad_publishes.len() as f64
    );
    assert_eq!(
        app.channels().await.as_array().unwrap().len(),
        1,
        "nothing was published"
    );
    still_served(&app, &mut ws).await;
}
