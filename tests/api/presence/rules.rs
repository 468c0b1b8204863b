//! The rules of SPEC §7 on the real server, real clock: snapshot, joins,
//! members per `sub`, watchers, the roster endpoint, the member limit and
//! refusals.

use std::time::Duration;

use serde_json::{json, Value};

use super::{app, jwt, member, notice, stream, subs, PUBLISH_TOKEN, ROOM};
use crate::helpers::{get, spawn_app, Raw, Sse, TestApp};

/// Publishes `data` to `channel` with the publish token; returns its id.
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
    let answer: Value = response.json().await.unwrap();
    answer["id"].as_str().unwrap().to_owned()
}

/// Publishes a marker and checks it is the next thing `sse` sees: nothing
/// (no join, no leave) came before it.
async fn nothing_announced_before_a_marker(app: &TestApp, sse: &mut Sse, marker: &str) {
    publish(app, ROOM, marker).await;
    let next = sse.next().await;
    assert_eq!(
        (next.event.as_str(), next.data.as_str()),
        ("message", marker),
        "expected nothing before the marker"
    );
}

/// `GET /channels/{channel}/presence` with an optional bearer token.
async fn roster(app: &TestApp, channel: &str, token: Option<&str>) -> (u16, Value) {
    let mut request = app
        .client
        .get(app.url(&format!("/channels/{channel}/presence")));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn a_stream_gets_a_snapshot_listing_itself_then_joins_of_others_but_never_its_own() {
    let app = app(|_| {}).await;
    let mut ada = stream(&app, ROOM, &member("42", "Ada")).await;
    assert_eq!(
        notice(&mut ada).await,
        (
            "herald.presence".to_owned(),
            json!({"channel": ROOM, "count": 1, "members": [{"sub": "42", "info": {"name": "Ada"}}]})
        )
    );

    let mut bo = stream(&app, ROOM, &member("7", "Bo")).await;
    assert_eq!(
        notice(&mut ada).await,
        (
            "herald.join".to_owned(),
            json!({"channel": ROOM, "sub": "7", "info": {"name": "Bo"}})
        )
    );
    let (kind, snapshot) = notice(&mut bo).await;
    assert_eq!(kind, "herald.presence");
    assert_eq!(
        (snapshot["count"].clone(), subs(&snapshot)),
        (json!(2), vec!["42", "7"])
    );
    nothing_announced_before_a_marker(&app, &mut bo, "after bo joined").await;
}

#[tokio::test]
async fn a_member_is_a_sub_so_a_second_tab_announces_nothing_but_a_new_info_does() {
    let app = app(|_| {}).await;
    let mut ada = stream(&app, ROOM, &member("42", "Ada")).await;
    notice(&mut ada).await;
    let _bo = stream(&app, ROOM, &member("7", "Bo")).await;
    assert_eq!(notice(&mut ada).await.0, "herald.join");

    let _bo_second_tab = stream(&app, ROOM, &member("7", "Bo")).await;
    nothing_announced_before_a_marker(&app, &mut ada, "after the second tab").await;

    let _bo_renamed = stream(&app, ROOM, &member("7", "Bo B.")).await;
    let (kind, join) = notice(&mut ada).await;
    assert_eq!(
        (kind.as_str(), &join["info"]),
        ("herald.join", &json!({"name": "Bo B."}))
    );

    let (status, list) = roster(&app, ROOM, Some(PUBLISH_TOKEN)).await;
    assert_eq!(status, 200);
    assert_eq!(app.metric("herald_presence_members").await, 2.0);
    assert_eq!(
        list,
        json!({"channel": ROOM, "count": 2, "members": [
            {"sub": "42", "info": {"name": "Ada"}, "connections": 1},
            {"sub": "7", "info": {"name": "Bo B."}, "connections": 3}]})
    );
}

/// A member token whose claims are exactly `claims` (a JSON text with an
/// `{exp}` placeholder), spacing included.
fn jwt_text(claims: &str) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let claims =
        serde_json::value::RawValue::from_string(claims.replace("{exp}", &exp.to_string()))
            .unwrap();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(super::SECRET.as_bytes()).unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn an_info_that_differs_only_in_spacing_is_the_same_info_and_is_sent_compact() {
    let app = app(|_| {}).await;
    let mut ada = stream(&app, ROOM, &member("42", "Ada")).await;
    notice(&mut ada).await;
    let spaced = jwt_text(
        r#"{"sub":"5","exp":{exp},"herald":{"subscribe":["presence-*"],
            "info": { "name" : "C y", "tags" : [1, 2] }}}"#,
    );
    let _cy = stream(&app, ROOM, &spaced).await;
    let join = ada.next().await;
    assert_eq!(
        (join.event.as_str(), join.data.as_str()),
        (
            "herald.join",
            r#"{"channel":"presence-room","sub":"5","info":{"name":"C y","tags":[1,2]}}"#
        )
    );
    let compact = jwt_text(
        r#"{"sub":"5","exp":{exp},"herald":{"subscribe":["presence-*"],"info":{"name":"C y","tags":[1,2]}}}"#,
    );
    let _cy_second_tab = stream(&app, ROOM, &compact).await;
    nothing_announced_before_a_marker(&app, &mut ada, "same info, other spacing").await;
}

#[tokio::test]
async fn presence_events_carry_no_id_and_are_never_replayed() {
    let app = app(|_| {}).await;
    let before = publish(&app, ROOM, "before").await;
    let mut ada = stream(&app, ROOM, &member("42", "Ada")).await;
    notice(&mut ada).await;
    let _bo = stream(&app, ROOM, &member("7", "Bo")).await;
    assert_eq!(notice(&mut ada).await.0, "herald.join");
    let after = publish(&app, ROOM, "after").await;
    let event = ada.next().await;
    assert_eq!(
        (event.id.as_str(), event.data.as_str()),
        (after.as_str(), "after")
    );

    // A reconnect from before both events gets a fresh snapshot and the
    // event, not Bo's join.
    let mut again = app
        .subscribe(
            &format!("/events/{ROOM}?token={}", member("42", "Ada")),
            Some(&before),
        )
        .await;
    let (kind, snapshot) = notice(&mut again).await;
    assert_eq!(
        (kind.as_str(), snapshot["count"].as_u64()),
        ("herald.presence", Some(2))
    );
    let replayed = again.next().await;
    assert_eq!(
        (replayed.id.as_str(), replayed.data.as_str()),
        (after.as_str(), "after")
    );
    nothing_announced_before_a_marker(&app, &mut again, "live").await;
}

#[tokio::test]
async fn on_the_wire_presence_frames_have_no_id_line() {
    let app = app(|_| {}).await;
    let mut ada = Raw::send(
        app.addr,
        &get(&format!("/events/{ROOM}?token={}", member("42", "Ada")), ""),
    )
    .await;
    ada.read_until("event: herald.presence\n").await;
    let _bo = stream(&app, ROOM, &member("7", "Bo")).await;
    let join = r#"{"channel":"presence-room","sub":"7","info":{"name":"Bo"}}"#;
    let text = ada.read_until(join).await;
    let frame = format!("\r\nevent: herald.join\ndata: {join}\n\n\r\n");
    assert!(text.contains(&frame), "{text}");
    let snapshot =
        r#"{"channel":"presence-room","count":1,"members":[{"sub":"42","info":{"name":"Ada"}}]}"#;
    let frame = format!("\r\nevent: herald.presence\ndata: {snapshot}\n\n\r\n");
    assert!(text.contains(&frame), "{text}");
    assert!(!text.contains("id:"), "{text}");
}

#[tokio::test]
async fn the_publish_token_watches_without_being_a_member() {
    let app = app(|_| {}).await;
    let mut watcher = stream(&app, ROOM, PUBLISH_TOKEN).await;
    assert_eq!(
        notice(&mut watcher).await.1,
        json!({"channel": ROOM, "count": 0, "members": []})
    );
    let mut ada = stream(&app, ROOM, &member("42", "Ada")).await;
    assert_eq!(
        subs(&notice(&mut ada).await.1),
        ["42"],
        "the watcher is not listed"
    );
    assert_eq!(notice(&mut watcher).await.1["sub"], "42");
    assert_eq!(
        subs(&roster(&app, ROOM, Some(PUBLISH_TOKEN)).await.1),
        ["42"]
    );
}

#[tokio::test]
async fn a_stream_on_several_channels_gets_one_snapshot_per_presence_channel() {
    let app = app(|_| {}).await;
    let token = jwt(json!({"sub": "42", "herald": {"subscribe": ["presence-*"]}}));
    let mut ada = app
        .subscribe(
            &format!("/events?channel=news&channel=presence-a&channel=presence-b&token={token}"),
            None,
        )
        .await;
    let first = notice(&mut ada).await.1;
    let second = notice(&mut ada).await.1;
    assert_eq!(
        (&first["channel"], &second["channel"]),
        (&json!("presence-a"), &json!("presence-b"))
    );
    assert_eq!(first["members"], json!([{"sub": "42", "info": null}]));
    publish(&app, "news", "news carries no presence").await;
    assert_eq!(ada.next().await.data, "news carries no presence");
}

#[tokio::test]
async fn the_roster_needs_a_grant_on_the_channel_or_the_publish_token() {
    let app = app(|_| {}).await;
    let mut ada = stream(&app, ROOM, &member("42", "Ada")).await;
    notice(&mut ada).await;
    let (status, list) = roster(&app, ROOM, Some(&member("7", "Bo"))).await;
    assert_eq!((status, subs(&list)), (200, vec!["42"]));
    assert_eq!(list["members"][0]["connections"], 1);

    assert_eq!(roster(&app, ROOM, None).await.0, 401);
    let elsewhere = jwt(json!({"sub": "7", "herald": {"subscribe": ["presence-other"]}}));
    let (status, body) = roster(&app, ROOM, Some(&elsewhere)).await;
    assert_eq!(
        (status, &body["error"], &body["channels"]),
        (403, &json!("forbidden"), &json!([ROOM]))
    );
    let (status, body) = roster(&app, "news", Some(PUBLISH_TOKEN)).await;
    assert_eq!(
        (status, &body["error"]),
        (400, &json!("not_a_presence_channel"))
    );
    assert_eq!(
        roster(&app, "presence-%20x", Some(PUBLISH_TOKEN)).await.0,
        400
    );
    assert_eq!(
        app.metric(r#"herald_requests_rejected_total{reason="bad_request"}"#)
            .await,
        2.0
    );
}

#[tokio::test]
async fn the_roster_is_private_to_its_reader_and_head_answers_what_get_would() {
    let app = app(|_| {}).await;
    let mut ada = stream(&app, ROOM, &member("42", "Ada")).await;
    notice(&mut ada).await;
    let url = app.url(&format!("/channels/{ROOM}/presence"));
    let get = app.client.get(&url).bearer_auth(PUBLISH_TOKEN);
    let get = get.send().await.unwrap();
    let head = app.client.head(&url).bearer_auth(PUBLISH_TOKEN);
    let head = head.send().await.unwrap();

    // A token's view of who is online: no shared cache may keep it.
    let header = |r: &reqwest::Response, name: &str| r.headers().get(name).cloned();
    assert_eq!(
        header(&get, "cache-control").unwrap(),
        "private, no-cache",
        "{get:?}"
    );
    for name in ["content-type", "content-length", "cache-control"] {
        assert_eq!(header(&head, name), header(&get, name), "{name}");
    }
    assert_eq!(head.status(), get.status());
    let length: usize = header(&get, "content-length")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(get.bytes().await.unwrap().len(), length);
    assert!(head.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn above_the_member_limit_joins_stop_and_lists_are_truncated() {
    let app = app(|c| c.presence_max_members = 2).await;
    let mut ada = stream(&app, ROOM, &member("a", "Ada")).await;
    notice(&mut ada).await;
    let _bo = stream(&app, ROOM, &member("b", "Bo")).await;
    assert_eq!(notice(&mut ada).await.1["sub"], "b");
    let mut cy = stream(&app, ROOM, &member("c", "Cy")).await;
    nothing_announced_before_a_marker(&app, &mut ada, "third of two").await;

    let snapshot = notice(&mut cy).await.1;
    assert_eq!(
        (&snapshot["count"], subs(&snapshot), &snapshot["truncated"]),
        (&json!(3), vec!["a", "b"], &json!(true))
    );
    let list = roster(&app, ROOM, Some(PUBLISH_TOKEN)).await.1;
    assert_eq!(
        (&list["count"], subs(&list).len(), &list["truncated"]),
        (&json!(3), 2, &json!(true))
    );
}

#[tokio::test]
async fn bad_tokens_on_a_presence_channel_are_refused_counted_and_change_nothing() {
    let app = app(|_| {}).await;
    let url = |token: &str| {
        app.url(&format!(
            "/events?channel=news&channel={ROOM}&token={token}"
        ))
    };
    let status = |response: reqwest::Response| async move {
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        (status, body)
    };

    let (code, body) = status(
        app.client
            .get(app.url(&format!("/events/{ROOM}")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((code, &body["error"]), (401, &json!("unauthorized")));

    let no_sub = jwt(json!({"herald": {"subscribe": ["presence-*"]}}));
    let (code, body) = status(app.client.get(url(&no_sub)).send().await.unwrap()).await;
    assert_eq!(
        (code, &body["error"], &body["channels"]),
        (403, &json!("forbidden"), &json!([ROOM]))
    );
    assert!(body["message"].as_str().unwrap().contains("sub"), "{body}");
    let head = app.client.head(url(&no_sub)).send().await.unwrap();
    assert_eq!(head.status(), 403, "HEAD answers what GET would");

    let long_sub = jwt(json!({"sub": "x".repeat(129), "herald": {"subscribe": ["presence-*"]}}));
    let big_info = jwt(
        json!({"sub": "42", "herald": {"subscribe": ["presence-*"], "info": {"bio": "x".repeat(1100)}}}),
    );
    for token in [&long_sub, &big_info] {
        let (code, body) = status(app.client.get(url(token)).send().await.unwrap()).await;
        assert_eq!((code, &body["error"]), (401, &json!("unauthorized")));
    }

    assert_eq!(
        app.metric(r#"herald_requests_rejected_total{reason="unauthorized"}"#)
            .await,
        3.0
    );
    assert_eq!(
        app.metric(r#"herald_requests_rejected_total{reason="forbidden"}"#)
            .await,
        2.0
    );
    assert_eq!(roster(&app, ROOM, Some(PUBLISH_TOKEN)).await.1["count"], 0);
    assert_eq!(app.state.hub.presence_size(), (0, 0));
}

#[tokio::test]
async fn without_access_control_presence_channels_fail_closed() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url(&format!("/events/{ROOM}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "auth_not_configured");
    let roster = app
        .client
        .get(app.url(&format!("/channels/{ROOM}/presence")))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    assert_eq!(roster.status(), 403);
}

#[test]
fn herald_token_refuses_a_long_sub_and_an_info_that_is_not_json_or_too_large() {
    let mint = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
            .arg("token")
            .args(args)
            .env("HERALD_JWT_SECRET", super::SECRET)
            .output()
            .expect("the binary runs")
    };
    let ok = mint(&[
        "--sub",
        "42",
        "--subscribe",
        "presence-*",
        "--info",
        r#"{"name":"Ada"}"#,
    ]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let long_sub = "x".repeat(129);
    let big_info = format!(r#"{{"bio":"{}"}}"#, "x".repeat(1100));
    for (args, says) in [
        (vec!["--sub", long_sub.as_str()], "--sub"),
        (
            vec!["--sub", "42", "--info", "{not json"],
            "--info is not JSON",
        ),
        (vec!["--sub", "42", "--info", big_info.as_str()], "1 KiB"),
    ] {
        let refused = mint(&args);
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(
            !refused.status.success() && stderr.contains(says),
            "{args:?}: {stderr}"
        );
        assert!(refused.stdout.is_empty(), "no token printed");
    }
}
