//! Who needs what (SPEC §6): fail-closed names without keys, the publish
//! token, grants, token sources and their precedence, 401/403 bodies and
//! headers, HEAD equal to GET, all-or-nothing streams and batches.

use herald::config::Secret;
use serde_json::json;

use super::{answer, rejected, spawn_auth, spawn_auth_with, token, PUBLISH_TOKEN};
use crate::helpers::{spawn_app, spawn_app_with, Sse};

#[tokio::test]
async fn without_keys_private_and_presence_channels_fail_closed() {
    let app = spawn_app().await;
    for path in [
        "/events/private-a",
        "/events?channel=news&channel=presence-b",
    ] {
        for method in [reqwest::Method::GET, reqwest::Method::HEAD] {
            let (status, _, body) = answer(app.client.request(method.clone(), app.url(path))).await;
            assert_eq!(status, 403, "{method} {path}");
            if method == reqwest::Method::GET {
                assert_eq!(body["error"], "auth_not_configured");
                assert!(body["channels"].as_array().unwrap().len() == 1, "{body}");
            }
        }
    }
    let (status, _, body) = answer(app.client.post(app.url("/publish/private-a")).body("x")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("auth_not_configured"))
    );
    let batch = json!([{"channel": "news", "data": 1}, {"channel": "private-a", "data": 2}]);
    let (status, _, body) = answer(app.client.post(app.url("/publish")).json(&batch)).await;
    assert_eq!(
        (status, body["channels"].clone()),
        (403, json!(["private-a"]))
    );
    assert_eq!(rejected(&app, "forbidden").await, 6.0);
    assert_eq!(app.channels().await, json!([]), "nothing was created");
    // Everything else is v1: open.
    let mut news = app.subscribe("/events/news", None).await;
    app.publish("news", "hello").await;
    assert_eq!(news.next().await.data, "hello");
}

#[tokio::test]
async fn publishing_needs_the_publish_token_or_a_covering_grant() {
    let app = spawn_auth_with(|c| {
        c.publish_token = vec![Secret::new("old-token"), Secret::new(PUBLISH_TOKEN)];
    })
    .await;
    let post = || app.client.post(app.url("/publish/chat")).body("hi");
    let (status, challenge, body) = answer(post()).await;
    assert_eq!((status, challenge.as_deref()), (401, Some("Bearer")));
    assert_eq!(body["error"], "unauthorized");
    let (status, challenge, _) = answer(post().bearer_auth("wrong-token")).await;
    assert_eq!(
        (status, challenge.as_deref()),
        (401, Some("Bearer error=\"invalid_token\""))
    );
    for rotated in ["old-token", PUBLISH_TOKEN] {
        assert_eq!(
            answer(post().bearer_auth(rotated)).await.0,
            200,
            "{rotated}"
        );
    }
    assert_eq!(
        answer(post().bearer_auth(token(&[], &["chat"]))).await.0,
        200
    );
    let (status, challenge, body) = answer(post().bearer_auth(token(&["chat"], &["news"]))).await;
    assert_eq!((status, body["error"].as_str()), (403, Some("forbidden")));
    assert_eq!(
        challenge.as_deref(),
        Some("Bearer error=\"insufficient_scope\"")
    );
    assert_eq!(body["channels"], json!(["chat"]));
    // Publishing never reads a query or cookie token.
    let query = app
        .client
        .post(app.url(&format!("/publish/chat?token={PUBLISH_TOKEN}")));
    assert_eq!(answer(query.body("x")).await.0, 401);
    assert_eq!(rejected(&app, "unauthorized").await, 3.0);
    assert_eq!(rejected(&app, "forbidden").await, 1.0);
    assert_eq!(app.metric("herald_events_published_total").await, 3.0);
}

#[tokio::test]
async fn a_batch_with_one_channel_not_covered_is_refused_whole() {
    let app = spawn_auth().await;
    let mut watch = app
        .subscribe(
            &format!("/events?channel=chat-1&token={PUBLISH_TOKEN}"),
            None,
        )
        .await;
    let batch = json!([{"channel": "chat-1", "data": "a"}, {"channel": "news", "data": "b"}]);
    let request = app.client.post(app.url("/publish")).json(&batch);
    let (status, _, body) = answer(request.bearer_auth(token(&[], &["chat-*"]))).await;
    assert_eq!((status, body["channels"].clone()), (403, json!(["news"])));
    let ok = json!([{"channel": "chat-1", "data": "c"}]);
    let request = app.client.post(app.url("/publish")).json(&ok);
    assert_eq!(
        answer(request.bearer_auth(token(&[], &["chat-*"]))).await.0,
        200
    );
    assert_eq!(watch.next().await.data, "c", "nothing of the refused batch");
}

#[tokio::test]
async fn private_streams_need_a_grant_for_every_private_channel() {
    let app = spawn_auth().await;
    let url = app.url("/events?channel=news&channel=private-user-42&channel=presence-room");
    let (status, challenge, body) = answer(app.client.get(&url)).await;
    assert_eq!((status, challenge.as_deref()), (401, Some("Bearer")));
    assert_eq!(body["error"], "unauthorized");
    let partial = token(&["private-user-42*"], &[]);
    let (status, _, body) = answer(app.client.get(&url).bearer_auth(&partial)).await;
    assert_eq!(status, 403);
    assert_eq!(
        body["channels"],
        json!(["presence-room"]),
        "the uncovered ones"
    );
    assert_eq!(
        app.state.hub.channel_count(),
        0,
        "a refused stream subscribes to nothing"
    );
    let full = token(&["private-user-42*", "presence-room"], &[]);
    let response = app
        .client
        .get(&url)
        .bearer_auth(&full)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "private, no-cache");
    let mut sse = Sse::from_response(response);
    // A presence channel's stream starts with its snapshot (SPEC §7).
    assert_eq!(sse.next().await.event, "herald.presence");
    let request = app.client.post(app.url("/publish/private-user-42"));
    answer(request.bearer_auth(PUBLISH_TOKEN).body("secret")).await;
    assert_eq!(sse.next().await.data, "secret");
    // Open channels stay open, and are not marked private.
    let open = app
        .client
        .get(app.url("/events/news"))
        .send()
        .await
        .unwrap();
    assert_eq!(open.headers()["cache-control"], "no-cache");
}

#[tokio::test]
async fn the_token_comes_from_header_then_query_then_cookie() {
    let app = spawn_auth_with(|c| {
        c.auth_cookie = Some("herald_token".into());
        c.cors_origin = vec!["http://app.test".into()];
    })
    .await;
    let good = token(&["private-a"], &[]);
    let other = token(&["private-b"], &[]);
    let url = |query: &str| app.url(&format!("/events/private-a{query}"));
    let cookie = |t: &str| format!("theme=dark; herald_token={t}");
    let status = |r: reqwest::RequestBuilder| async { answer(r).await.0 };
    assert_eq!(
        status(app.client.get(url("")).header("cookie", cookie(&good))).await,
        200
    );
    assert_eq!(
        status(app.client.get(url(&format!("?token={good}")))).await,
        200
    );
    // The query beats the cookie, the header beats both.
    let query_other = url(&format!("?token={other}"));
    let r = app.client.get(&query_other).header("cookie", cookie(&good));
    assert_eq!(status(r).await, 403);
    let r = app
        .client
        .get(url(&format!("?token={good}")))
        .bearer_auth(&other);
    assert_eq!(status(r).await, 403);
    let r = app.client.get(&query_other).bearer_auth(&good);
    assert_eq!(status(r).await, 200);
    // Cookie auth from another origin: credentials allowed for that origin.
    let r = app.client.get(url("")).header("origin", "http://app.test");
    let response = r.header("cookie", cookie(&good)).send().await.unwrap();
    assert_eq!(
        response.headers()["access-control-allow-credentials"],
        "true"
    );
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "http://app.test"
    );
}

#[tokio::test]
async fn a_cookie_with_a_wildcard_cors_origin_is_a_startup_error() {
    let mut config = herald::Config {
        jwt_secret: vec![Secret::new("s")],
        auth_cookie: Some("herald_token".into()),
        ..Default::default()
    };
    let error = herald::state::State::try_new(config.clone()).err().unwrap();
    assert!(error.contains("--cors-origin"), "{error}");
    config.cors_origin = vec!["https://app.example".into()];
    assert!(herald::state::State::try_new(config).is_ok());
    let no_key = herald::Config {
        anonymous: false,
        ..Default::default()
    };
    assert!(herald::state::State::try_new(no_key).is_err());
}

#[tokio::test]
async fn head_answers_what_get_would() {
    let app = spawn_auth().await;
    let cases = [
        ("/events/private-a", None, 401),
        ("/events/private-a", Some(token(&["news"], &[])), 403),
        ("/events/private-a", Some("garbage".to_owned()), 401),
        ("/events/private-a", Some(token(&["private-*"], &[])), 200),
        ("/events/news", None, 200),
    ];
    for (path, bearer, want) in cases {
        for method in [reqwest::Method::HEAD, reqwest::Method::GET] {
            let mut request = app.client.request(method.clone(), app.url(path));
            if let Some(t) = &bearer {
                request = request.bearer_auth(t);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), want, "{method} {path} {bearer:?}");
        }
    }
}

#[tokio::test]
async fn anonymous_false_makes_every_channel_need_a_grant() {
    let app = spawn_auth_with(|c| c.anonymous = false).await;
    assert_eq!(answer(app.client.get(app.url("/events/news"))).await.0, 401);
    let r = app
        .client
        .get(app.url("/events/news"))
        .bearer_auth(token(&["sport"], &[]));
    assert_eq!(answer(r).await.0, 403);
    let r = app
        .client
        .get(app.url("/events/news"))
        .bearer_auth(token(&["news"], &[]));
    assert_eq!(answer(r).await.0, 200);
}

#[tokio::test]
async fn channel_list_needs_the_publish_token_and_the_rest_stays_open() {
    let app = spawn_auth().await;
    assert_eq!(answer(app.client.get(app.url("/channels"))).await.0, 401);
    let r = app
        .client
        .get(app.url("/channels"))
        .bearer_auth(token(&["*"], &["*"]));
    assert_eq!(answer(r).await.0, 403);
    let r = app
        .client
        .get(app.url("/channels"))
        .bearer_auth(PUBLISH_TOKEN);
    assert_eq!(answer(r).await.0, 200);
    for open in ["/healthz", "/metrics", "/", "/chat.html"] {
        assert_eq!(answer(app.client.get(app.url(open))).await.0, 200, "{open}");
    }
}

#[tokio::test]
async fn the_publish_token_reads_every_channel() {
    let app = spawn_auth().await;
    let url = app.url("/events?channel=private-x&channel=presence-y");
    let r = app
        .client
        .get(url)
        .bearer_auth(PUBLISH_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "private, no-cache");
}

#[tokio::test]
async fn every_refusal_is_counted_under_its_reason() {
    let app = spawn_app_with(|_| {}).await;
    let c = &app.client;
    answer(c.get(app.url("/events/bad%20name"))).await;
    answer(c.post(app.url("/publish/x")).body("")).await;
    answer(c.post(app.url("/publish")).body("not json")).await;
    answer(c.get(app.url("/nope"))).await;
    answer(c.delete(app.url("/publish/x"))).await;
    answer(c.post(app.url("/events/x"))).await;
    assert_eq!(rejected(&app, "bad_request").await, 3.0);
    assert_eq!(rejected(&app, "not_found").await, 1.0);
    assert_eq!(rejected(&app, "method_not_allowed").await, 2.0);
}
