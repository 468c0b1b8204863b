//! WebSocket on the event URLs (SPEC §10), through a real WebSocket client
//! (`tokio-tungstenite`): the message format, replay and gaps, publishing
//! over the socket, pings, shutdown, and every kind of bad input.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::helpers::{spawn_app, spawn_app_with, TestApp, WAIT};

pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub(crate) async fn connect(app: &TestApp, path: &str) -> Ws {
    let url = format!("ws://{}{}", app.addr, path);
    let (ws, response) = tokio_tungstenite::connect_async(url)
        .await
        .expect("the WebSocket handshake succeeds");
    assert_eq!(response.status(), 101);
    ws
}

/// The next message that is not a ping or pong.
async fn next(ws: &mut Ws) -> Message {
    loop {
        let message = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a message within the wait")
            .expect("the socket is open")
            .expect("a valid message");
        if !matches!(message, Message::Ping(_) | Message::Pong(_)) {
            return message;
        }
    }
}

pub(crate) async fn next_json(ws: &mut Ws) -> Value {
    match next(ws).await {
        Message::Text(text) => serde_json::from_str(&text).expect("messages are JSON"),
        other => panic!("expected a text message, got {other:?}"),
    }
}

async fn send_json(ws: &mut Ws, value: Value) {
    ws.send(Message::text(value.to_string())).await.unwrap();
}

/// Sends 200 pings without reading, far past the pings allowed a second.
pub(crate) async fn ping_flood(ws: &mut Ws) {
    for _ in 0..200 {
        if ws.feed(Message::Ping(Default::default())).await.is_err() {
            break;
        }
    }
    let _ = ws.flush().await;
}

/// The close code the server ends with (skipping anything before it).
pub(crate) async fn close_code(ws: &mut Ws) -> CloseCode {
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("closed within the wait")
        {
            Some(Ok(Message::Close(Some(frame)))) => return frame.code,
            Some(Ok(Message::Close(None))) | None | Some(Err(_)) => panic!("closed without a code"),
            Some(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn events_are_json_text_messages_in_id_order_across_channels() {
    let app = spawn_app().await;
    let mut ws = connect(&app, "/events?channel=a&channel=b").await;
    let first = app.publish_id("a", "one").await;
    let second = app.publish_to("/publish/b?event=chat", "two\nlines").await;
    assert_eq!(
        next_json(&mut ws).await,
        json!({"id": first, "channel": "a", "data": "one"}),
        "`event` is omitted for `message`"
    );
    assert_eq!(
        next_json(&mut ws).await,
        json!({"id": second["id"], "channel": "b", "event": "chat", "data": "two\nlines"})
    );
    assert_eq!(
        app.metric("herald_transport_streams_open{transport=\"ws\"}")
            .await,
        1.0
    );
    assert_eq!(app.metric("herald_streams_open").await, 1.0);
}

#[tokio::test]
async fn a_reconnect_with_last_event_id_replays_what_was_missed_then_goes_live() {
    let app = spawn_app().await;
    let seen = app.publish_id("a", "1").await;
    app.publish("a", "2").await;
    app.publish("a", "3").await;
    let mut ws = connect(&app, &format!("/events/a?lastEventId={seen}")).await;
    assert_eq!(next_json(&mut ws).await["data"], "2");
    assert_eq!(next_json(&mut ws).await["data"], "3");
    app.publish("a", "4").await;
    assert_eq!(next_json(&mut ws).await["data"], "4");
}

#[tokio::test]
async fn an_id_no_longer_retained_gets_a_gap_notice_first() {
    let app = spawn_app_with(|c| c.history = 2).await;
    let seen = app.publish_id("a", "1").await;
    for data in ["2", "3", "4"] {
        app.publish("a", data).await;
    }
    let mut ws = connect(&app, &format!("/events/a?lastEventId={seen}")).await;
    let gap = next_json(&mut ws).await;
    assert_eq!(gap["event"], "herald.gap");
    assert_eq!(gap["channel"], "a");
    assert!(gap.get("id").is_none(), "notices have no id: {gap}");
    let data: Value = serde_json::from_str(gap["data"].as_str().unwrap()).unwrap();
    assert_eq!(data["channel"], "a");
    assert_eq!(next_json(&mut ws).await["data"], "3");
    assert_eq!(next_json(&mut ws).await["data"], "4");
}

/// 100 events in one batch reach a socket's live queue at once: past
/// `--stream-buffer` it falls behind and is caught up (SPEC §2).
async fn lagging_socket(history: u32) -> (TestApp, Vec<Value>) {
    let app = spawn_app_with(|c| {
        c.stream_buffer = 4;
        c.history = history;
    })
    .await;
    let mut ws = connect(&app, "/events/a").await;
    let batch: Vec<Value> = (0..100)
        .map(|i| json!({"channel": "a", "data": i.to_string()}))
        .collect();
    app.publish_to("/publish", &Value::from(batch).to_string())
        .await;
    let mut got = Vec::new();
    while got.last().and_then(|m: &Value| m["data"].as_str()) != Some("99") {
        got.push(next_json(&mut ws).await);
    }
    (app, got)
}

#[tokio::test]
async fn a_lagging_socket_is_caught_up_from_history_without_loss() {
    let (app, got) = lagging_socket(1000).await;
    let data: Vec<&str> = got.iter().map(|m| m["data"].as_str().unwrap()).collect();
    assert_eq!(data, (0..100).map(|i| i.to_string()).collect::<Vec<_>>());
    assert!(app.metric("herald_slow_subscribers_cut_total").await >= 1.0);
}

#[tokio::test]
async fn a_lagging_socket_is_told_of_a_gap_when_history_lost_events() {
    let (_app, got) = lagging_socket(10).await;
    let gap = got
        .iter()
        .position(|m| m["event"] == "herald.gap")
        .expect("a gap notice");
    assert!(got[gap].get("id").is_none());
    let after: Vec<&str> = got[gap + 1..]
        .iter()
        .map(|m| m["data"].as_str().unwrap())
        .collect();
    assert_eq!(after, (90..100).map(|i| i.to_string()).collect::<Vec<_>>());
    let ids: Vec<u64> = got
        .iter()
        .filter_map(|m| m["id"].as_str().map(|id| id.parse().unwrap()))
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids only increase");
}

#[tokio::test]
async fn a_publish_over_the_socket_reaches_event_stream_subscribers() {
    let app = spawn_app().await;
    let mut sse = app.subscribe("/events/room", None).await;
    let mut ws = connect(&app, "/events/room").await;
    send_json(
        &mut ws,
        json!({"type": "publish", "channel": "room", "event": "chat", "data": {"text": "hi"}}),
    )
    .await;
    let answer = next_json(&mut ws).await;
    assert_eq!(answer["type"], "published");
    assert_eq!(answer["channel"], "room");
    assert_eq!(answer["subscribers"], 2);
    let event = sse.next().await;
    assert_eq!(event.id, answer["id"].as_str().unwrap());
    assert_eq!(event.event, "chat");
    assert_eq!(event.data, r#"{"text":"hi"}"#);
    // The publisher's own socket gets the event too, like any subscriber.
    let echo = next_json(&mut ws).await;
    assert_eq!(echo["id"], answer["id"]);
    assert_eq!(echo["data"], r#"{"text":"hi"}"#);
}

#[tokio::test]
async fn a_socket_publishes_with_its_tokens_grants_and_a_refusal_leaves_it_open() {
    let app = crate::auth::spawn_auth().await;
    let mut news = app.subscribe("/events/news", None).await;
    let grants = crate::auth::token(&["chat"], &["chat"]);
    let mut ws = connect(&app, &format!("/events/chat?token={grants}")).await;

    // Not covered: answered as `POST /publish` answers, nothing published.
    send_json(
        &mut ws,
        json!({"type": "publish", "channel": "news", "data": "not mine"}),
    )
    .await;
    let answer = next_json(&mut ws).await;
    assert_eq!(
        (&answer["type"], &answer["error"], &answer["channels"]),
        (&json!("error"), &json!("forbidden"), &json!(["news"])),
        "{answer}"
    );
    assert_eq!(crate::auth::rejected(&app, "forbidden").await, 1.0);

    // The socket stays open and publishes where the token allows.
    send_json(
        &mut ws,
        json!({"type": "publish", "channel": "chat", "data": "mine"}),
    )
    .await;
    assert_eq!(next_json(&mut ws).await["type"], "published");
    assert_eq!(next_json(&mut ws).await["data"], "mine");
    let marker = app
        .client
        .post(app.url("/publish/news"))
        .bearer_auth(crate::auth::PUBLISH_TOKEN)
        .body("marker")
        .send()
        .await
        .unwrap();
    assert_eq!(marker.status(), 200);
    assert_eq!(
        news.next().await.data,
        "marker",
        "nothing else reached news"
    );

    // A socket with no token may read an open channel but not publish.
    let mut anonymous = connect(&app, "/events/news").await;
    send_json(
        &mut anonymous,
        json!({"type": "publish", "channel": "news", "data": "x"}),
    )
    .await;
    assert_eq!(next_json(&mut anonymous).await["error"], "unauthorized");
    assert_eq!(crate::auth::rejected(&app, "unauthorized").await, 1.0);
}

#[tokio::test]
async fn bad_messages_are_answered_with_errors_and_the_socket_stays_open() {
    let app = spawn_app_with(|c| c.max_event_bytes = 16).await;
    let mut ws = connect(&app, "/events/a").await;
    let cases: [(Message, &str); 7] = [
        (Message::binary(vec![1, 2, 3]), "binary_message"),
        (Message::text("not json"), "bad_json"),
        (Message::text(r#"{"type":"subscribe"}"#), "bad_json"),
        (
            Message::text(r#"{"type":"publish","channel":"a"}"#),
            "bad_json",
        ),
        (
            Message::text(r#"{"type":"publish","channel":"a b","data":"x"}"#),
            "bad_channel",
        ),
        (
            Message::text(r#"{"type":"publish","channel":"a","data":""}"#),
            "empty_data",
        ),
        (
            Message::text(r#"{"type":"publish","channel":"a","data":"more than sixteen bytes"}"#),
            "event_too_large",
        ),
    ];
    for (message, code) in cases {
        ws.send(message).await.unwrap();
        let answer = next_json(&mut ws).await;
        assert_eq!(answer["type"], "error");
        assert_eq!(answer["error"], code, "{answer}");
        let message = answer["message"].as_str().unwrap_or_default();
        assert!(!message.is_empty(), "{answer}");
        // A socket message is neither a request body nor a batch.
        assert!(
            !message.contains("request body") && !message.contains("batch"),
            "{answer}"
        );
    }
    assert_eq!(
        app.channels().await.as_array().unwrap().len(),
        1,
        "nothing was published"
    );
    send_json(
        &mut ws,
        json!({"type": "publish", "channel": "a", "data": "ok"}),
    )
    .await;
    assert_eq!(next_json(&mut ws).await["type"], "published");
    for (reason, count) in [
        ("binary", 1.0),
        ("not_json", 1.0),
        ("bad_message", 1.0),
        ("bad_publish", 4.0),
    ] {
        let series = format!("herald_ws_rejected_total{{reason=\"{reason}\"}}");
        assert_eq!(app.metric(&series).await, count, "{series}");
    }
}

#[tokio::test]
async fn a_burst_of_publishes_gets_every_answer_in_order() {
    let app = spawn_app().await;
    let mut ws = connect(&app, "/events/a").await;
    for i in 0..100 {
        ws.feed(Message::text(
            json!({"type": "publish", "channel": "elsewhere", "data": i.to_string()}).to_string(),
        ))
        .await
        .unwrap();
    }
    ws.flush().await.unwrap();
    let mut last = 0u64;
    for _ in 0..100 {
        let answer = next_json(&mut ws).await;
        assert_eq!(answer["type"], "published", "{answer}");
        let id: u64 = answer["id"].as_str().unwrap().parse().unwrap();
        assert!(id > last, "answers in the order of the messages");
        last = id;
    }
    let mut sse = app.subscribe("/events/elsewhere?lastEventId=0", None).await;
    let _gap = sse.next().await;
    assert_eq!(
        sse.data(100).await,
        (0..100).map(|i| i.to_string()).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn an_oversized_message_closes_the_socket_with_1009_and_others_are_unaffected() {
    let app = spawn_app_with(|c| c.max_event_bytes = 1000).await;
    let mut other = connect(&app, "/events/a").await;
    let mut ws = connect(&app, "/events/a").await;
    let _ = ws.send(Message::text("x".repeat(10_000))).await;
    assert_eq!(close_code(&mut ws).await, CloseCode::Size);
    app.publish("a", "still here").await;
    assert_eq!(next_json(&mut other).await["data"], "still here");
    assert_eq!(
        app.metric("herald_ws_rejected_total{reason=\"too_large\"}")
            .await,
        1.0
    );
}

#[tokio::test]
async fn a_fragmented_message_that_never_finishes_is_closed() {
    let app = spawn_app_with(|c| c.body_timeout = Duration::from_millis(300)).await;
    let mut ws = connect(&app, "/events/a").await;
    let fragment = Frame::message(&b"{\"type\":"[..], OpCode::Data(Data::Text), false);
    ws.send(Message::Frame(fragment)).await.unwrap();
    assert_eq!(close_code(&mut ws).await, CloseCode::Policy);
    assert_eq!(
        app.metric("herald_ws_rejected_total{reason=\"incomplete\"}")
            .await,
        1.0
    );
}

#[tokio::test]
async fn a_ping_flood_is_closed() {
    let app = spawn_app().await;
    let mut ws = connect(&app, "/events/a").await;
    ping_flood(&mut ws).await;
    assert_eq!(close_code(&mut ws).await, CloseCode::Policy);
    assert_eq!(
        app.metric("herald_ws_rejected_total{reason=\"ping_flood\"}")
            .await,
        1.0
    );
}

#[tokio::test]
async fn pings_go_out_at_the_heartbeat_and_two_unanswered_close_the_socket() {
    let app = spawn_app_with(|c| c.heartbeat = Duration::from_millis(200)).await;
    let mut answering = connect(&app, "/events/a").await;
    let mut silent = connect(&app, "/events/a").await;
    // Reading makes tungstenite answer pings: the answering client reads
    // all along, the silent one nothing until the server gave up on it.
    let (texts, mut received) = tokio::sync::mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        let mut pings = 0;
        while let Some(Ok(message)) = answering.next().await {
            match message {
                Message::Ping(_) => pings += 1,
                Message::Text(text) => {
                    let _ = texts.send((pings, text.to_string()));
                }
                _ => {}
            }
        }
    });
    crate::helpers::eventually_async("the silent socket is given up", || async {
        app.metric("herald_ws_rejected_total{reason=\"ping_timeout\"}")
            .await
            == 1.0
    })
    .await;
    let mut pings = 0;
    let code = loop {
        match tokio::time::timeout(WAIT, silent.next()).await.unwrap() {
            Some(Ok(Message::Ping(_))) => pings += 1,
            Some(Ok(Message::Close(Some(frame)))) => break frame.code,
            other => panic!("expected pings then a close, got {other:?}"),
        }
    };
    assert_eq!((pings, code), (2, CloseCode::Policy));
    // The answering client is still served, and was pinged too.
    app.publish("a", "alive").await;
    let (pinged, text) = tokio::time::timeout(WAIT, received.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(text.contains("alive"));
    assert!(pinged >= 2, "pinged {pinged} times");
    reader.abort();
}

#[tokio::test]
async fn with_heartbeat_event_a_socket_still_gets_pings_and_no_heartbeat_message() {
    let app = spawn_app_with(|c| {
        c.heartbeat = Duration::from_millis(200);
        c.heartbeat_event = true;
    })
    .await;
    let mut ws = connect(&app, "/events/a").await;
    let mut pings = 0;
    while pings < 3 {
        match tokio::time::timeout(WAIT, ws.next()).await.unwrap() {
            Some(Ok(Message::Ping(_))) => pings += 1,
            Some(Ok(Message::Text(text))) => {
                assert!(!text.contains("heartbeat"), "a heartbeat message: {text}")
            }
            other => panic!("expected pings, got {other:?}"),
        }
    }
    app.publish("a", "after").await;
    assert_eq!(next_json(&mut ws).await["data"], "after");
}

#[tokio::test]
async fn a_client_that_never_reads_is_dropped_and_others_get_everything() {
    let app = spawn_app_with(|c| {
        c.heartbeat = Duration::from_millis(300);
        c.stream_buffer = 8;
    })
    .await;
    let mut reader = connect(&app, "/events/a").await;
    let _stuck = connect(&app, "/events/a").await;
    let data = "x".repeat(60_000);
    let mut ids = Vec::new();
    for _ in 0..300 {
        ids.push(app.publish_id("a", &data).await);
        // Every event or a gap notice, never a silent loss.
        let got = next_json(&mut reader).await;
        assert_eq!(got["id"].as_str(), ids.last().map(String::as_str));
    }
    crate::helpers::eventually_async("the stuck socket is dropped", || async {
        app.metric("herald_transport_streams_open{transport=\"ws\"}")
            .await
            == 1.0
    })
    .await;
    assert_eq!(
        app.metric("herald_ws_rejected_total{reason=\"not_reading\"}")
            .await,
        1.0
    );
}

#[tokio::test]
async fn shutdown_closes_sockets_with_a_going_away_frame() {
    let app = spawn_app().await;
    let mut ws = connect(&app, "/events/a").await;
    let stopping = tokio::spawn(app.stop());
    assert_eq!(close_code(&mut ws).await, CloseCode::Away);
    tokio::time::timeout(WAIT, stopping).await.unwrap().unwrap();
}

#[tokio::test]
async fn a_socket_opened_with_a_jwt_gets_herald_expired_then_a_close_at_exp() {
    let app = crate::auth::spawn_auth().await;
    let claims = crate::auth::claims(2, json!({"subscribe": ["private-feed"]}));
    let path = format!("/events/private-feed?token={}", crate::auth::hs(&claims));
    let mut ws = connect(&app, &path).await;
    let expired = next_json(&mut ws).await;
    assert_eq!(expired["event"], "herald.expired");
    assert!(expired.get("id").is_none(), "{expired}");
    // The shape of every message (SPEC §10): only the id is left out.
    assert_eq!(expired["channel"], "private-feed", "{expired}");
    let data: Value = serde_json::from_str(expired["data"].as_str().unwrap()).unwrap();
    assert_eq!(data["reason"], "token_expired");
    assert_eq!(data["exp"], claims["exp"]);
    assert_eq!(close_code(&mut ws).await, CloseCode::Policy);
}

#[tokio::test]
async fn a_bad_upgrade_or_channel_is_refused_before_the_handshake() {
    let app = spawn_app().await;
    let refused = |path: &str| {
        let url = format!("ws://{}{}", app.addr, path);
        async move {
            match tokio_tungstenite::connect_async(url).await {
                Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status(),
                other => panic!("expected an HTTP refusal, got {other:?}"),
            }
        }
    };
    assert_eq!(refused("/events/a%20b").await, 400);
    assert_eq!(refused("/events").await, 400);
    let response = app
        .client
        .get(app.url("/events/a"))
        .header("Upgrade", "websocket")
        .header("Connection", "Upgrade")
        .header("Sec-WebSocket-Version", "8")
        .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    // RFC 6455 §4.4: the answer names the version the server speaks.
    assert_eq!(response.headers()["sec-websocket-version"], "13");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "bad_upgrade");
}

#[tokio::test]
async fn a_socket_counts_as_a_connection_and_past_the_limit_the_upgrade_is_503() {
    let app = spawn_app_with(|c| c.max_connections = 2).await;
    let mut first = connect(&app, "/events/a").await;
    let mut second = connect(&app, "/events/a").await;
    let url = format!("ws://{}/events/a", app.addr);
    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503);
            assert!(response.headers().contains_key("retry-after"));
        }
        other => panic!("expected a 503, got {other:?}"),
    }
    // Once a socket closes, its connection is free again.
    first.close(None).await.unwrap();
    while first.next().await.is_some() {}
    crate::helpers::eventually_async("a connection is free again", || async {
        let publish = app.client.post(app.url("/publish/a")).body("freed").send();
        matches!(publish.await, Ok(response) if response.status() == 200)
    })
    .await;
    assert_eq!(next_json(&mut second).await["data"], "freed");
    drop(second);
    crate::helpers::eventually_async("the refusal is counted", || async {
        let text = async {
            let response = app.client.get(app.url("/metrics")).send().await.ok()?;
            response.error_for_status().ok()?.text().await.ok()
        };
        let counted = "herald_requests_rejected_total{reason=\"connection_limit\"} 1";
        text.await.is_some_and(|t| t.contains(counted))
    })
    .await;
}

#[tokio::test]
async fn with_cookie_auth_an_upgrade_from_an_origin_not_listed_is_refused_with_403() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let app = crate::auth::spawn_auth_with(|c| {
        c.auth_cookie = Some("herald_token".into());
        c.cors_origin = vec!["http://app.test".into()];
    })
    .await;
    let cookie = format!(
        "herald_token={}",
        crate::auth::token(&["private-a"], &["private-a"])
    );
    let upgrade = |origin: &'static str| {
        let mut request = format!("ws://{}/events/private-a", app.addr)
            .into_client_request()
            .unwrap();
        request
            .headers_mut()
            .insert("cookie", cookie.parse().unwrap());
        request
            .headers_mut()
            .insert("origin", origin.parse().unwrap());
        tokio_tungstenite::connect_async(request)
    };

    // A page of another site: the browser sent the cookie all the same.
    let response = match upgrade("http://evil.test").await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response,
        other => panic!("expected a 403, got {other:?}"),
    };
    assert_eq!(response.status(), 403);
    let body: Value = serde_json::from_slice(response.body().as_deref().unwrap()).unwrap();
    assert_eq!(body["error"], "forbidden");
    // It says what is wrong: the origin, not a token.
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("--cors-origin"), "{body}");
    assert!(!message.contains("token"), "{body}");
    assert_eq!(crate::auth::rejected(&app, "forbidden").await, 1.0);

    // The listed origin opens it, and the cookie's token publishes on it.
    let (mut ws, _) = upgrade("http://app.test").await.expect("the listed origin");
    send_json(
        &mut ws,
        json!({"type": "publish", "channel": "private-a", "data": "hi"}),
    )
    .await;
    assert_eq!(next_json(&mut ws).await["type"], "published");
    assert_eq!(next_json(&mut ws).await["data"], "hi");
}

/// A client may send its first messages right behind the upgrade request,
/// before the 101 comes: whatever the server read with the request (hyper's
/// buffer, and herald's own HTTP/1.1 reader before it) is the start of the
/// socket. A message larger than the session's small read buffer too.
#[tokio::test]
async fn messages_sent_right_behind_the_upgrade_request_are_read() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_tungstenite::tungstenite::protocol::Role;

    let app = spawn_app().await;
    let big = "x".repeat(20_000);
    let mut bytes = format!(
        "GET /events/a HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        app.addr
    )
    .into_bytes();
    for data in ["small", big.as_str()] {
        let text = json!({"type": "publish", "channel": "a", "data": data}).to_string();
        let mut frame = Frame::message(text, OpCode::Data(Data::Text), true);
        frame.header_mut().mask = Some([1, 2, 3, 4]);
        frame.format(&mut bytes).unwrap();
    }
    let mut tcp = TcpStream::connect(app.addr).await.unwrap();
    tcp.write_all(&bytes).await.unwrap();
    // The 101 head, read a byte at a time so nothing after it is taken.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let byte = tokio::time::timeout(WAIT, tcp.read_u8())
            .await
            .unwrap()
            .unwrap();
        head.push(byte);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101 "),
        "{}",
        String::from_utf8_lossy(&head)
    );
    let mut ws =
        WebSocketStream::from_raw_socket(MaybeTlsStream::Plain(tcp), Role::Client, None).await;
    let mut answers = 0;
    let mut events = Vec::new();
    while answers < 2 || events.len() < 2 {
        let message = next_json(&mut ws).await;
        if message["type"] == "published" {
            answers += 1;
        } else {
            events.push(message["data"].as_str().unwrap().len());
        }
    }
    assert_eq!(events, [5, 20_000], "both messages published, in order");
}
