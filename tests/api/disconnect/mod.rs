//! `POST /disconnect` (SPEC §11) on one server: streams and WebSockets of a
//! user, a channel, a user on a channel or one token end with
//! `herald.disconnected`; with `revoke` the tokens are refused everywhere
//! until the duration passes, while a token minted a second later works.

mod bad_input;
mod durable;

use std::time::Duration;

use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::auth::{hs, now, spawn_auth, spawn_auth_with, PUBLISH_TOKEN};
use crate::helpers::{Sse, TestApp, WAIT};
use crate::websocket::{close_code, next_json, Ws};

/// How long a stream may take to end after the disconnect was answered:
/// SPEC says within one second; the rest is slack for a busy test machine.
pub const ENDS_WITHIN: Duration = Duration::from_secs(3);

pub const DISCONNECTED: &str =
    "event: herald.disconnected\ndata: {\"reason\":\"disconnected\"}\n\n";
pub const REVOKED: &str = "event: herald.disconnected\ndata: {\"reason\":\"revoked\"}\n\n";

/// A token of `sub` granting every channel, valid ten minutes, with `iat`
/// `iat_ago` seconds in the past (`None`: no `iat` claim) and this `jti`.
pub fn jwt(sub: &str, iat_ago: Option<u64>, jti: Option<&str>) -> String {
    let mut claims = json!({
        "sub": sub,
        "exp": now() + 600,
        "herald": {"subscribe": ["*"], "publish": ["*"]},
    });
    if let Some(ago) = iat_ago {
        claims["iat"] = json!(now() - ago);
    }
    if let Some(jti) = jti {
        claims["jti"] = json!(jti);
    }
    hs(&claims)
}

/// `POST /disconnect` with `body` and the publish token: status and JSON.
pub async fn disconnect(client: &reqwest::Client, base: &str, body: &str) -> (u16, Value) {
    let response = client
        .post(format!("{base}/disconnect"))
        .bearer_auth(PUBLISH_TOKEN)
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// An open event stream of `path` with `token` (in the query), and the
/// status it was answered with.
pub async fn open(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    token: &str,
) -> reqwest::Response {
    let sep = if path.contains('?') { '&' } else { '?' };
    client
        .get(format!("{base}{path}{sep}token={token}"))
        .send()
        .await
        .unwrap()
}

/// The rest of a stream's body, which must end within [`ENDS_WITHIN`].
pub async fn ends(response: reqwest::Response) -> String {
    tokio::time::timeout(ENDS_WITHIN, response.text())
        .await
        .expect("the stream ends within the second (plus slack)")
        .unwrap()
}

pub async fn ws(addr: std::net::SocketAddr, path: &str, token: &str) -> Ws {
    let url = format!("ws://{addr}{path}?token={token}");
    let (ws, response) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert_eq!(response.status(), 101);
    ws
}

/// The status a WebSocket upgrade with `token` is answered with.
pub async fn ws_status(addr: std::net::SocketAddr, path: &str, token: &str) -> u16 {
    let url = format!("ws://{addr}{path}?token={token}");
    match tokio_tungstenite::connect_async(url).await {
        Ok((_, response)) => response.status().as_u16(),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("upgrade failed without an answer: {e}"),
    }
}

/// A socket ended by a disconnect: the notice, with no id, then close 1008.
pub async fn ws_ends(ws: &mut Ws, reason: &str) {
    let notice = tokio::time::timeout(ENDS_WITHIN, next_json(ws))
        .await
        .expect("the notice within the second (plus slack)");
    assert_eq!(notice["event"], "herald.disconnected", "{notice}");
    assert_eq!(notice["data"], format!("{{\"reason\":\"{reason}\"}}"));
    assert!(notice.get("id").is_none(), "{notice}");
    assert_eq!(close_code(ws).await, CloseCode::Policy);
}

async fn publish(app: &TestApp, channel: &str, data: &str) -> String {
    let response = app
        .client
        .post(app.url(&format!("/publish/{channel}")))
        .bearer_auth(PUBLISH_TOKEN)
        .body(data.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Waits until the wall clock is in a second after `second`.
pub async fn next_second_after(second: u64) {
    while now() <= second {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_disconnect_by_sub_ends_that_users_streams_whole_and_lets_them_back_in() {
    // Arrange: user 42 on two streams (one multi-channel) and a socket;
    // user 7 and an anonymous reader beside them.
    let app = spawn_auth().await;
    let t42 = jwt("42", Some(5), None);
    let one = open(&app.client, &app.base, "/events/news", &t42).await;
    let multi = open(
        &app.client,
        &app.base,
        "/events?channel=a&channel=news",
        &t42,
    )
    .await;
    let mut socket = ws(app.addr, "/events/news", &t42).await;
    let other = open(
        &app.client,
        &app.base,
        "/events/news",
        &jwt("7", Some(5), None),
    )
    .await;
    let mut other = Sse::from_response(other);
    let mut anonymous = app.subscribe("/events/news", None).await;

    // Act
    let (status, answer) = disconnect(&app.client, &app.base, r#"{"sub":"42"}"#).await;

    // Assert
    assert_eq!((status, answer), (200, json!({"disconnected": 3})));
    for body in [ends(one).await, ends(multi).await] {
        assert!(body.ends_with(DISCONNECTED), "{body:?}");
    }
    ws_ends(&mut socket, "disconnected").await;
    publish(&app, "news", "after").await;
    assert_eq!(other.next().await.data, "after");
    assert_eq!(anonymous.next().await.data, "after");
    assert_eq!(
        app.metric("herald_disconnects_total{reason=\"disconnected\"}")
            .await,
        3.0
    );
    assert_eq!(app.metric("herald_revocations_active").await, 0.0);
    // No revoke: the same token comes straight back.
    let again = open(&app.client, &app.base, "/events/news", &t42).await;
    assert_eq!(again.status(), 200);
    let mut again = Sse::from_response(again);
    publish(&app, "news", "back").await;
    assert_eq!(again.next().await.data, "back");
}

#[tokio::test]
async fn a_disconnect_by_channel_or_by_sub_on_a_channel_ends_only_those_streams() {
    let app = spawn_auth().await;
    let t42 = jwt("42", Some(5), None);
    let news42 = open(&app.client, &app.base, "/events/news", &t42).await;
    let mut sport42 = Sse::from_response(open(&app.client, &app.base, "/events/sport", &t42).await);
    let news7 = open(
        &app.client,
        &app.base,
        "/events/news",
        &jwt("7", Some(5), None),
    )
    .await;
    let both = open(
        &app.client,
        &app.base,
        "/events?channel=news&channel=x",
        &t42,
    )
    .await;
    let anonymous = app
        .client
        .get(app.url("/events/news"))
        .send()
        .await
        .unwrap();

    let (status, answer) =
        disconnect(&app.client, &app.base, r#"{"sub":"42","channel":"news"}"#).await;
    assert_eq!((status, answer), (200, json!({"disconnected": 2})));
    assert!(ends(news42).await.ends_with(DISCONNECTED));
    assert!(ends(both).await.ends_with(DISCONNECTED));

    let (status, answer) = disconnect(&app.client, &app.base, r#"{"channel":"news"}"#).await;
    assert_eq!((status, answer), (200, json!({"disconnected": 2})));
    assert!(ends(news7).await.ends_with(DISCONNECTED));
    assert!(ends(anonymous).await.ends_with(DISCONNECTED));
    publish(&app, "sport", "still here").await;
    assert_eq!(sport42.next().await.data, "still here");

    // With revoke, the channel narrows nothing: the user's token is refused
    // from now on, so its stream on another channel ends too, as revoked.
    let (status, answer) = disconnect(
        &app.client,
        &app.base,
        r#"{"sub":"42","channel":"news","revoke":"1m"}"#,
    )
    .await;
    assert_eq!((status, answer), (200, json!({"disconnected": 1})));
    let last = sport42.next().await;
    assert_eq!(
        (last.event.as_str(), last.data.as_str()),
        ("herald.disconnected", r#"{"reason":"revoked"}"#)
    );
    assert!(sport42.ends_within(ENDS_WITHIN).await);
}

#[tokio::test]
async fn a_revoked_user_is_refused_everywhere_until_a_token_minted_later() {
    // Arrange: user 42 with a token that has an `iat` and one that has none.
    let app = spawn_auth().await;
    let with_iat = jwt("42", Some(5), None);
    let without_iat = jwt("42", None, None);
    let stream = open(&app.client, &app.base, "/events/news", &with_iat).await;
    let mut socket = ws(app.addr, "/events/presence-room", &without_iat).await;
    assert_eq!(next_json(&mut socket).await["event"], "herald.presence");
    let mut other = Sse::from_response(
        open(
            &app.client,
            &app.base,
            "/events/news",
            &jwt("7", None, None),
        )
        .await,
    );

    // Act
    let (status, answer) =
        disconnect(&app.client, &app.base, r#"{"sub":"42","revoke":"1h"}"#).await;
    let called = now();

    // Assert: both ended as revoked; every request with either token is 401.
    assert_eq!((status, answer), (200, json!({"disconnected": 2})));
    let body = ends(stream).await;
    assert!(body.ends_with(REVOKED), "{body:?}");
    assert!(!body.contains("id:"), "{body:?}");
    ws_ends(&mut socket, "revoked").await;
    for token in [&with_iat, &without_iat] {
        assert_eq!(
            open(&app.client, &app.base, "/events/news", token)
                .await
                .status(),
            401
        );
        assert_eq!(ws_status(app.addr, "/events/news", token).await, 401);
        let publish = app.client.post(app.url("/publish/news")).bearer_auth(token);
        assert_eq!(publish.body("x").send().await.unwrap().status(), 401);
        let batch = app.client.post(app.url("/publish")).bearer_auth(token);
        let batch = batch
            .body(r#"[{"channel":"news","data":"x"}]"#)
            .send()
            .await;
        assert_eq!(batch.unwrap().status(), 401);
        let roster = app.client.get(app.url("/channels/presence-room/presence"));
        assert_eq!(
            roster.bearer_auth(token).send().await.unwrap().status(),
            401
        );
    }
    assert_eq!(app.metric("herald_revocations_active").await, 1.0);
    assert_eq!(
        app.metric("herald_disconnects_total{reason=\"revoked\"}")
            .await,
        2.0
    );
    // Others, and the publish token, are not touched.
    publish(&app, "news", "for 7").await;
    assert_eq!(other.next().await.data, "for 7");

    // A token minted a second or more after the call works.
    next_second_after(called).await;
    let fresh = jwt("42", Some(0), None);
    let response = open(&app.client, &app.base, "/events/news", &fresh).await;
    assert_eq!(response.status(), 200);
    let mut fresh_stream = Sse::from_response(response);
    publish(&app, "news", "welcome back").await;
    assert_eq!(fresh_stream.next().await.data, "welcome back");
    let mut socket = ws(app.addr, "/events/news", &fresh).await;
    publish(&app, "news", "on the socket").await;
    assert_eq!(next_json(&mut socket).await["data"], "on the socket");
}

#[tokio::test]
async fn a_revoked_jti_refuses_that_token_only_and_a_short_revoke_runs_out() {
    let app = spawn_auth().await;
    let leaked = jwt("42", Some(5), Some("leaked-1"));
    let kept = jwt("42", Some(5), Some("kept-2"));
    let mut socket = ws(app.addr, "/events/news", &leaked).await;
    let mut kept_stream =
        Sse::from_response(open(&app.client, &app.base, "/events/news", &kept).await);

    let (status, answer) = disconnect(
        &app.client,
        &app.base,
        r#"{"jti":"leaked-1","revoke":"4s"}"#,
    )
    .await;
    let called = tokio::time::Instant::now();

    assert_eq!((status, answer), (200, json!({"disconnected": 1})));
    ws_ends(&mut socket, "revoked").await;
    assert_eq!(
        open(&app.client, &app.base, "/events/news", &leaked)
            .await
            .status(),
        401
    );
    publish(&app, "news", "kept").await;
    assert_eq!(kept_stream.next().await.data, "kept");
    // After the duration the token is accepted again.
    tokio::time::sleep_until(called + Duration::from_millis(4100)).await;
    assert_eq!(
        open(&app.client, &app.base, "/events/news", &leaked)
            .await
            .status(),
        200
    );
    assert_eq!(app.metric("herald_revocations_active").await, 0.0);
}

#[tokio::test]
async fn the_publish_token_is_never_revoked_and_max_revoke_is_a_flag() {
    let app = spawn_auth_with(|c| c.max_revoke = Duration::from_secs(60)).await;
    let (status, answer) =
        disconnect(&app.client, &app.base, r#"{"sub":"42","revoke":"61s"}"#).await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer["message"].as_str().unwrap().contains("--max-revoke"));
    let (status, _) = disconnect(&app.client, &app.base, r#"{"sub":"42","revoke":"60s"}"#).await;
    assert_eq!(status, 200);
    // The publish token holder streams, publishes and disconnects on.
    let watcher = open(&app.client, &app.base, "/events/news", PUBLISH_TOKEN).await;
    assert_eq!(watcher.status(), 200);
    publish(&app, "news", "x").await;
    let again = tokio::time::timeout(WAIT, disconnect(&app.client, &app.base, r#"{"sub":"42"}"#));
    assert_eq!(again.await.unwrap().0, 200);
}

/// `herald token --sub 42 [--jti …]` signed with the test secret.
fn herald_token(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["token", "--subscribe", "*"])
        .args(args)
        .env("HERALD_JWT_SECRET", crate::auth::SECRET)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The docs' ban and leaked-token recipes, with `herald token`'s tokens
/// (which carry `iat`, and `jti` when asked) against the real binary.
#[tokio::test]
async fn the_ban_and_leaked_token_recipes_work_with_herald_token() {
    let bin = crate::helpers::Binary::start_with_env(
        &[],
        &[
            ("HERALD_JWT_SECRET", crate::auth::SECRET),
            ("HERALD_PUBLISH_TOKEN", PUBLISH_TOKEN),
        ],
    )
    .await;
    let base = bin.url("");
    let before = herald_token(&["--sub", "42"]);
    let leaked = herald_token(&["--sub", "7", "--jti", "tok-7a"]);
    let other_of_7 = herald_token(&["--sub", "7", "--jti", "tok-7b"]);

    let (status, _) = disconnect(&bin.client, &base, r#"{"sub":"42","revoke":"24h"}"#).await;
    assert_eq!(status, 200);
    let called = now();
    let (status, _) = disconnect(&bin.client, &base, r#"{"jti":"tok-7a","revoke":"1h"}"#).await;
    assert_eq!(status, 200);

    assert_eq!(
        open(&bin.client, &base, "/events/news", &before)
            .await
            .status(),
        401
    );
    assert_eq!(
        open(&bin.client, &base, "/events/news", &leaked)
            .await
            .status(),
        401
    );
    assert_eq!(
        open(&bin.client, &base, "/events/news", &other_of_7)
            .await
            .status(),
        200
    );
    next_second_after(called).await;
    let after = herald_token(&["--sub", "42"]);
    assert_eq!(
        open(&bin.client, &base, "/events/news", &after)
            .await
            .status(),
        200
    );
}
