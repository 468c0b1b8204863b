//! WebSocket bad input beyond `websocket.rs`'s one-of-each (issue 13's
//! checklist): unfinished messages however they are disguised, each closed
//! with its code, counted, and with a bystander socket still served.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{spawn_app_with, TestApp, WAIT};
use crate::websocket::{close_code, connect, next_json, Ws};

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
