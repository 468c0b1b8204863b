//! Idempotent publish (SPEC §12): a publish with `Idempotency-Key` is
//! answered once; its retries get the first answer and publish nothing,
//! over HTTP and WebSocket, across a `--data-dir` restart, and on any node
//! of a Redis service (`cluster.rs`, with the lost-answer story end to end).

mod cluster;

use std::time::Duration;

use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;

use crate::auth::{claims, hs, rejected, spawn_auth_with, PUBLISH_TOKEN};
use crate::durable::TempDir;
use crate::helpers::{spawn_app, spawn_app_with, Binary, Raw, Sse, TestApp, WAIT};
use crate::websocket::{connect, next_json};

/// What a publish answered: status, `Idempotent-Replayed`, `Retry-After`,
/// body bytes.
#[derive(Debug)]
pub struct Answered {
    pub status: u16,
    pub replayed: Option<String>,
    pub retry_after: Option<String>,
    pub body: String,
}

impl Answered {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("a JSON answer")
    }
    pub fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or_default().to_owned()
    }
}

/// POSTs `body` to `url` with `key` (if any) and `token` (if any).
pub async fn post(
    client: &reqwest::Client,
    url: &str,
    key: Option<&str>,
    token: Option<&str>,
    body: &str,
) -> Answered {
    let mut request = client.post(url).body(body.to_owned());
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = tokio::time::timeout(WAIT, request.send())
        .await
        .expect("an answer within the wait")
        .expect("the request is answered");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let (replayed, retry_after) = (header("idempotent-replayed"), header("retry-after"));
    Answered {
        status: response.status().as_u16(),
        replayed,
        retry_after,
        body: response.text().await.unwrap(),
    }
}

async fn keyed(app: &TestApp, path: &str, key: &str, body: &str) -> Answered {
    post(&app.client, &app.url(path), Some(key), None, body).await
}

/// The next event's data, and that nothing else came before `marker`: a
/// publish without a key sent after, so "no second copy" is checked without
/// waiting on a timer.
async fn only_event_before_marker(app: &TestApp, sse: &mut Sse, channel: &str) -> Vec<String> {
    app.publish(channel, "marker").await;
    let mut seen = Vec::new();
    loop {
        let event = sse.next().await;
        if event.data == "marker" {
            return seen;
        }
        seen.push(event.id);
    }
}

#[tokio::test]
async fn a_retry_with_its_key_gets_the_first_answer_and_publishes_nothing() {
    let app = spawn_app().await;
    let mut sse = app.subscribe("/events/news", None).await;

    let first = keyed(&app, "/publish/news?event=alert", "order-1", "hello").await;
    let again = keyed(&app, "/publish/news?event=alert", "order-1", "hello").await;

    assert_eq!(first.status, 200);
    assert_eq!(first.replayed, None, "the first answer is not a replay");
    assert_eq!(again.status, 200);
    assert_eq!(again.replayed.as_deref(), Some("true"));
    assert_eq!(again.body, first.body, "the same body, byte for byte");
    let id = first.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(only_event_before_marker(&app, &mut sse, "news").await, [id]);
    assert_eq!(app.metric("herald_idempotent_replays_total").await, 1.0);
    assert_eq!(app.metric("herald_events_published_total").await, 2.0);
}

#[tokio::test]
async fn a_batch_with_its_key_is_answered_once_with_every_id() {
    let app = spawn_app().await;
    let mut sse = app.subscribe("/events?channel=a&channel=b", None).await;
    let batch = r#"[{"channel":"a","data":"1"},{"channel":"b","data":{"n":2}}]"#;

    let first = keyed(&app, "/publish", "batch-1", batch).await;
    let again = keyed(&app, "/publish", "batch-1", batch).await;

    assert_eq!((first.status, again.status), (200, 200));
    assert_eq!(again.replayed.as_deref(), Some("true"));
    assert_eq!(again.body, first.body);
    let ids: Vec<String> = first
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 2);
    assert_eq!(only_event_before_marker(&app, &mut sse, "a").await, ids);
}

#[tokio::test]
async fn the_same_key_with_another_request_is_422_and_publishes_nothing() {
    let app = spawn_app().await;
    let first = keyed(&app, "/publish/news", "k", "hello").await;
    assert_eq!(first.status, 200);

    // Another body, another query, another path, the batch endpoint.
    for (path, body) in [
        ("/publish/news", "hello!"),
        ("/publish/news?event=other", "hello"),
        ("/publish/sport", "hello"),
        ("/publish", r#"[{"channel":"news","data":"hello"}]"#),
    ] {
        let answer = keyed(&app, path, "k", body).await;
        assert_eq!(answer.status, 422, "{path} {body}: {}", answer.body);
        assert_eq!(answer.error(), "idempotency_key_reused");
        assert!(answer.json()["message"]
            .as_str()
            .unwrap()
            .contains("new key"));
    }
    assert_eq!(app.metric("herald_events_published_total").await, 1.0);
    assert_eq!(rejected(&app, "idempotency_key_reused").await, 4.0);
    // The key still answers its own request.
    let again = keyed(&app, "/publish/news", "k", "hello").await;
    assert_eq!((again.status, again.body), (200, first.body));
}

#[tokio::test]
async fn a_key_still_in_flight_is_409_with_retry_after_then_answered() {
    let app = spawn_app().await;
    // The first request's body is still arriving (chunked, held open).
    let mut slow = Raw::send(
        app.addr,
        "POST /publish/news HTTP/1.1\r\nHost: t\r\nIdempotency-Key: slow\r\n\
         Transfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n",
    )
    .await;
    let mut busy = keyed(&app, "/publish/news", "slow", "hello").await;
    for _ in 0..100 {
        if busy.status == 409 {
            break;
        }
        // The first request may not have been read yet.
        tokio::time::sleep(Duration::from_millis(20)).await;
        busy = keyed(&app, "/publish/news", "slow", "hello").await;
    }
    assert_eq!(busy.status, 409, "{}", busy.body);
    assert_eq!(busy.error(), "idempotency_in_progress");
    assert_eq!(busy.retry_after.as_deref(), Some("1"));
    assert!(rejected(&app, "idempotency_in_progress").await >= 1.0);

    slow.stream
        .write_all(b"2\r\nlo\r\n0\r\n\r\n")
        .await
        .unwrap();
    let first = slow.read_until("}").await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    let retried = keyed(&app, "/publish/news", "slow", "hello").await;
    assert_eq!(retried.status, 200);
    assert_eq!(retried.replayed.as_deref(), Some("true"));
    assert!(first.ends_with(&retried.body), "{first} / {}", retried.body);
    assert_eq!(app.metric("herald_events_published_total").await, 1.0);
}

#[tokio::test]
async fn bad_keys_are_400_and_change_nothing() {
    let app = spawn_app().await;
    let long = "k".repeat(256);
    // hyper refuses a header with a control character (other than a tab)
    // itself, with an empty 400, before herald sees the request.
    let cases: Vec<(&str, String, bool)> = vec![
        ("empty", "Idempotency-Key: \r\n".into(), true),
        (
            "256 characters",
            format!("Idempotency-Key: {long}\r\n"),
            true,
        ),
        (
            "a control character",
            "Idempotency-Key: a\x01b\r\n".into(),
            false,
        ),
        ("DEL", "Idempotency-Key: a\x7fb\r\n".into(), false),
        ("a tab inside", "Idempotency-Key: a\tb\r\n".into(), true),
        ("a space inside", "Idempotency-Key: a b\r\n".into(), true),
        ("non-ASCII", "Idempotency-Key: caf\u{e9}\r\n".into(), true),
        (
            "two keys",
            "Idempotency-Key: a\r\nIdempotency-Key: b\r\n".into(),
            true,
        ),
    ];
    for (what, header, ours) in &cases {
        for path in ["/publish/news", "/publish"] {
            let body = if path == "/publish" {
                r#"[{"channel":"news","data":"x"}]"#
            } else {
                "x"
            };
            let mut raw = Raw::send(
                app.addr,
                &format!(
                    "POST {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{header}\
                     Content-Length: {}\r\n\r\n{body}",
                    body.len()
                ),
            )
            .await;
            let answer = raw.read_to_end().await;
            assert!(
                answer.starts_with("HTTP/1.1 400"),
                "{what} on {path}: {answer}"
            );
            if !ours {
                continue;
            }
            assert!(
                answer.contains(r#""error":"bad_idempotency_key""#),
                "{what}: {answer}"
            );
            assert!(
                answer.contains("visible ASCII") || answer.contains("one Idempotency-Key"),
                "{what}: {answer}"
            );
        }
    }
    assert_eq!(app.metric("herald_events_published_total").await, 0.0);
    assert_eq!(app.channels().await, json!([]));
    // The longest key allowed, and a quoted one (taken literally).
    let longest = "k".repeat(255);
    assert_eq!(
        keyed(&app, "/publish/news", &longest, "x").await.status,
        200
    );
    assert_eq!(
        keyed(&app, "/publish/news", "\"sf-string\"", "x")
            .await
            .status,
        200
    );
    assert_eq!(
        keyed(&app, "/publish/news", "sf-string", "y").await.status,
        200,
        "another key than the quoted one"
    );
}

#[tokio::test]
async fn a_request_that_published_nothing_keeps_no_key() {
    let app = spawn_auth_with(|c| {
        c.max_channels = 1;
        c.max_event_bytes = 8;
    })
    .await;
    let url = |p: &str| app.url(p);
    let jwt = hs(&claims(600, json!({"publish": ["mine"]})));
    let token = Some(PUBLISH_TOKEN);
    let refusals = [
        (url("/publish/news"), None, "x", 401),
        (url("/publish/news"), Some(jwt.as_str()), "x", 403),
        (url("/publish/news"), token, "", 400),
        (url("/publish/news"), token, "far too long", 413),
    ];
    for (at, token, body, status) in refusals {
        let answer = post(&app.client, &at, Some("k"), token, body).await;
        assert_eq!(answer.status, status, "{}", answer.body);
    }
    // 503 before the log took anything: the channel limit.
    assert_eq!(
        post(&app.client, &url("/publish/first"), None, token, "x")
            .await
            .status,
        200
    );
    let full = post(&app.client, &url("/publish/news"), Some("k"), token, "x").await;
    assert_eq!((full.status, full.error().as_str()), (503, "channel_limit"));

    // The corrected retry publishes, with the same key.
    let fixed = post(&app.client, &url("/publish/first"), Some("k"), token, "ok").await;
    assert_eq!(fixed.status, 200, "{}", fixed.body);
    assert_eq!(fixed.replayed, None);
    assert_eq!(app.metric("herald_events_published_total").await, 2.0);
}

#[tokio::test]
async fn keys_are_per_user_so_one_cannot_replay_or_block_another() {
    let app = spawn_auth_with(|_| {}).await;
    let user = |sub: &str| {
        hs(&json!({"sub": sub, "exp": crate::auth::now() + 600, "herald": {"publish": ["*"]}}))
    };
    let (ada, bob) = (user("ada"), user("bob"));
    let url = app.url("/publish/news");
    let a = post(&app.client, &url, Some("k"), Some(&ada), "x").await;
    let b = post(&app.client, &url, Some("k"), Some(&bob), "x").await;
    let t = post(&app.client, &url, Some("k"), Some(PUBLISH_TOKEN), "other").await;
    assert_eq!((a.status, b.status, t.status), (200, 200, 200));
    assert_eq!((&a.replayed, &b.replayed), (&None, &None));
    assert_ne!(a.json()["id"], b.json()["id"]);
    // Ada's own retry, with a fresh token for the same user, is a replay.
    let again = post(&app.client, &url, Some("k"), Some(&user("ada")), "x").await;
    assert_eq!(
        (again.replayed.as_deref(), again.body),
        (Some("true"), a.body)
    );
}

#[tokio::test]
async fn keys_expire_after_the_window_and_zero_turns_them_off() {
    let app = spawn_app_with(|c| c.idempotency_window = Duration::from_millis(300)).await;
    let first = keyed(&app, "/publish/news", "k", "x").await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let later = keyed(&app, "/publish/news", "k", "x").await;
    assert_eq!(
        later.replayed, None,
        "a key past its window is a new request"
    );
    assert_ne!(later.json()["id"], first.json()["id"]);

    let off = spawn_app_with(|c| c.idempotency_window = Duration::ZERO).await;
    let a = keyed(&off, "/publish/news", "k", "x").await;
    let b = keyed(&off, "/publish/news", "k", "x").await;
    assert_eq!((&a.replayed, &b.replayed), (&None, &None));
    assert_ne!(a.json()["id"], b.json()["id"]);
}

#[tokio::test]
async fn past_max_keys_a_new_key_is_503_and_kept_keys_still_answer() {
    let app = spawn_app_with(|c| c.idempotency_max_keys = 2).await;
    let a = keyed(&app, "/publish/news", "a", "x").await;
    keyed(&app, "/publish/news", "b", "x").await;
    let c = keyed(&app, "/publish/news", "c", "x").await;
    assert_eq!(
        (c.status, c.error().as_str()),
        (503, "idempotency_keys_full")
    );
    assert!(c.retry_after.is_some());
    assert_eq!(rejected(&app, "idempotency_keys_full").await, 1.0);
    assert_eq!(keyed(&app, "/publish/news", "a", "x").await.body, a.body);
    // A publish without a key is not refused.
    app.publish("news", "no key").await;
    assert_eq!(app.metric("herald_events_published_total").await, 3.0);
}

async fn ws_send(ws: &mut crate::websocket::Ws, text: &str) -> Value {
    ws.send(Message::text(text.to_owned())).await.unwrap();
    loop {
        let message = next_json(ws).await;
        if message.get("type").is_some() {
            return message;
        }
    }
}

#[tokio::test]
async fn a_websocket_publish_with_its_key_is_answered_once_in_the_same_key_space() {
    let app = spawn_app().await;
    let mut sse = app.subscribe("/events/chat", None).await;
    let mut ws = connect(&app, "/events/other").await;

    let first = ws_send(
        &mut ws,
        r#"{"type":"publish","channel":"chat","data":{"t":"hi"},"idempotency_key":"m-1"}"#,
    )
    .await;
    // The same message spelled differently is the same request.
    let again = ws_send(&mut ws, r#"{ "idempotency_key": "m-1", "data": { "t" : "hi" }, "channel": "chat", "type": "publish" }"#).await;
    assert_eq!(first["type"], "published");
    assert_eq!(first.get("replayed"), None);
    assert_eq!(again["replayed"], true);
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["subscribers"], first["subscribers"]);

    let other = ws_send(
        &mut ws,
        r#"{"type":"publish","channel":"chat","data":"bye","idempotency_key":"m-1"}"#,
    )
    .await;
    assert_eq!(
        (other["type"].as_str(), other["error"].as_str()),
        (Some("error"), Some("idempotency_key_reused"))
    );
    // Over HTTP the same key is the same key, but never the same request.
    let http = keyed(&app, "/publish/chat", "m-1", r#"{"t":"hi"}"#).await;
    assert_eq!(http.status, 422);

    for bad in [
        r#""""#,
        &format!("\"{}\"", "k".repeat(256)),
        r#""a\u0001b""#,
        r#""café""#,
        "7",
    ] {
        let text =
            format!(r#"{{"type":"publish","channel":"chat","data":"x","idempotency_key":{bad}}}"#);
        let answer = ws_send(&mut ws, &text).await;
        assert_eq!(answer["error"], "bad_idempotency_key", "{bad}");
    }
    // The socket is still open and publishes.
    let fine = ws_send(
        &mut ws,
        r#"{"type":"publish","channel":"chat","data":"ok","idempotency_key":"m-2"}"#,
    )
    .await;
    assert_eq!(fine["type"], "published");
    let ids = only_event_before_marker(&app, &mut sse, "chat").await;
    assert_eq!(
        ids,
        [first["id"].as_str().unwrap(), fine["id"].as_str().unwrap()]
    );
    assert_eq!(app.metric("herald_idempotent_replays_total").await, 1.0);
}

#[tokio::test]
async fn keys_survive_a_kill_9_restart_with_data_dir_and_expired_ones_are_dropped() {
    let dir = TempDir::new("idempotency");
    let start = |window: &'static str| {
        let dir = dir.arg().to_owned();
        async move {
            Binary::start(&[
                "--data-dir",
                &dir,
                "--idempotency-window",
                window,
                "--segment-bytes",
                "4096",
                "--history",
                "5",
            ])
            .await
        }
    };
    let node = start("10m").await;
    let url = |n: &Binary| n.url("/publish/news");
    let first = post(&node.client, &url(&node), Some("kept"), None, "hello").await;
    assert_eq!(first.status, 200);
    // Enough events after them to roll segments and compact: the keys move
    // into the snapshot.
    for i in 0..200 {
        node.publish("filler", &format!("{i:0>40}")).await;
    }
    assert!(node.metric("herald_log_compactions_total").await >= 1.0);
    node.kill9().await;

    let node = start("10m").await;
    let again = post(&node.client, &url(&node), Some("kept"), None, "hello").await;
    assert_eq!(again.status, 200);
    assert_eq!(again.replayed.as_deref(), Some("true"));
    assert_eq!(again.body, first.body);
    let reused = post(&node.client, &url(&node), Some("kept"), None, "other").await;
    assert_eq!(reused.status, 422);
    node.kill9().await;

    // A key whose window has passed across the restart is gone.
    let node = start("300ms").await;
    let after = post(
        &node.client,
        &node.url("/publish/news"),
        Some("late"),
        None,
        "x",
    )
    .await;
    assert_eq!(after.status, 200);
    node.kill9().await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let node = start("300ms").await;
    let fresh = post(
        &node.client,
        &node.url("/publish/news"),
        Some("late"),
        None,
        "x",
    )
    .await;
    assert_eq!(fresh.replayed, None, "expired while the server was down");
    assert_ne!(fresh.json()["id"], after.json()["id"]);
}

#[tokio::test]
async fn a_segment_of_the_older_format_is_closed_not_appended_to() {
    // An empty segment as a herald of format 1 leaves it.
    let dir = TempDir::new("idempotency-v1");
    let old = dir.join(&format!("{:020}.log", 1));
    let mut header = b"HERALDLG".to_vec();
    header.extend_from_slice(&1u32.to_le_bytes());
    std::fs::write(&old, &header).unwrap();

    let node = Binary::start(&["--data-dir", dir.arg()]).await;
    let answer = post(
        &node.client,
        &node.url("/publish/news"),
        Some("k"),
        None,
        "x",
    )
    .await;
    assert_eq!(answer.status, 200);
    node.kill9().await;

    assert_eq!(
        std::fs::read(&old).unwrap(),
        header,
        "an older herald can still read it"
    );
    let newer: Vec<_> = crate::durable::log_files(&dir.path)
        .into_iter()
        .filter(|p| *p != old)
        .collect();
    assert_eq!(newer.len(), 1, "the key went to a new segment");
    assert_eq!(std::fs::read(&newer[0]).unwrap()[8..12], 2u32.to_le_bytes());
}
