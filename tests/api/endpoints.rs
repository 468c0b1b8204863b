//! SPEC §4: health, metrics, channels, CORS, static pages, errors, limits.

use std::time::Duration;

use crate::helpers::{eventually, get, spawn_app, spawn_app_with, Raw};

#[tokio::test]
async fn healthz_is_ok() {
    let app = spawn_app().await;
    let response = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "ok");
}

#[tokio::test]
async fn metrics_expose_every_documented_series_in_prometheus_text() {
    let app = spawn_app().await;
    let response = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = response.text().await.unwrap();
    for (name, kind) in [
        ("herald_connections_open", "gauge"),
        ("herald_streams_open", "gauge"),
        ("herald_channels", "gauge"),
        ("herald_presence_members", "gauge"),
        ("herald_events_published_total", "counter"),
        ("herald_events_delivered_total", "counter"),
        ("herald_events_replayed_total", "counter"),
        ("herald_gaps_total", "counter"),
        ("herald_slow_subscribers_cut_total", "counter"),
        ("herald_requests_rejected_total", "counter"),
    ] {
        assert!(
            text.contains(&format!("# TYPE {name} {kind}\n")),
            "{name} {kind}:\n{text}"
        );
    }
    assert!(text.contains("herald_requests_rejected_total{reason=\"connection_limit\"} 0"));
}

#[tokio::test]
async fn metrics_count_published_delivered_replayed_and_gaps() {
    let app = spawn_app_with(|c| c.history = 1).await;
    let mut live = app.subscribe("/events/m", None).await;
    let first = app.publish_id("m", "1").await;
    app.publish("m", "2").await;
    app.publish("m", "3").await;
    live.data(3).await;
    let mut resumed = app.subscribe("/events/m", Some(&first)).await;
    assert_eq!(resumed.next().await.event, "herald.gap");
    assert_eq!(resumed.next().await.data, "3");
    assert_eq!(app.metric("herald_events_published_total").await, 3.0);
    assert_eq!(app.metric("herald_events_replayed_total").await, 1.0);
    assert_eq!(app.metric("herald_gaps_total").await, 1.0);
    assert_eq!(app.metric("herald_streams_open").await, 2.0);
    assert_eq!(app.metric("herald_channels").await, 1.0);
    drop(live);
    // Delivered counts are flushed when a stream goes idle or closes.
    eventually("three deliveries are counted", || {
        app.state.metrics.events_delivered.get() == 3
    })
    .await;
    assert_eq!(app.metric("herald_events_delivered_total").await, 3.0);
}

#[tokio::test]
async fn channels_lists_subscribers_retained_and_last_id() {
    let app = spawn_app().await;
    let _sse = app.subscribe("/events/b", None).await;
    app.publish("a", "1").await;
    let last = app.publish_id("a", "2").await;
    let channels = app.channels().await;
    assert_eq!(
        channels,
        serde_json::json!([
            {"channel": "a", "subscribers": 0, "retained": 2, "last_event_id": last},
            {"channel": "b", "subscribers": 1, "retained": 0, "last_event_id": null},
        ])
    );
}

#[tokio::test]
async fn every_response_carries_the_cors_origin() {
    let app = spawn_app().await;
    for path in ["/healthz", "/channels", "/nope", "/events/x"] {
        let response = app
            .client
            .get(app.url(path))
            .header("origin", "http://example.test")
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.headers()["access-control-allow-origin"],
            "*",
            "{path}"
        );
    }
}

#[tokio::test]
async fn preflight_is_204_and_allows_last_event_id() {
    let app = spawn_app().await;
    let response = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/events/news"))
        .header("origin", "http://example.test")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "last-event-id")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let allowed = response.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(allowed.contains("last-event-id"), "{allowed}");
}

#[tokio::test]
async fn cors_origin_flag_limits_the_allowed_origins() {
    let app = spawn_app_with(|c| c.cors_origin = vec!["http://good.test".into()]).await;
    let good = app
        .client
        .get(app.url("/healthz"))
        .header("origin", "http://good.test")
        .send()
        .await
        .unwrap();
    assert_eq!(
        good.headers()["access-control-allow-origin"],
        "http://good.test"
    );
    let bad = app
        .client
        .get(app.url("/healthz"))
        .header("origin", "http://bad.test")
        .send()
        .await
        .unwrap();
    assert!(bad.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn root_serves_the_demo_page_built_into_the_binary() {
    let app = spawn_app().await;
    let response = app.client.get(app.url("/")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let page = response.text().await.unwrap();
    assert!(
        page.contains("EventSource") || page.contains("<script"),
        "a page that subscribes"
    );
    let index = app.client.get(app.url("/index.html")).send().await.unwrap();
    assert_eq!(index.status(), 200);
}

#[tokio::test]
async fn no_path_reaches_outside_web() {
    let app = spawn_app().await;
    for path in [
        "/../Cargo.toml",
        "/%2e%2e/Cargo.toml",
        "/..%2fCargo.toml",
        "/src/main.rs",
        "/web/index.html",
    ] {
        let mut raw = Raw::send(
            app.addr,
            &format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
        )
        .await;
        let text = raw.read_to_end().await;
        assert!(
            text.starts_with("HTTP/1.1 404") || text.starts_with("HTTP/1.1 400"),
            "{path}: {text}"
        );
        assert!(
            !text.contains("[package]") && !text.contains("fn main"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn unknown_path_is_404_json() {
    let app = spawn_app().await;
    let response = app.client.get(app.url("/nope")).send().await.unwrap();
    assert_eq!(response.status(), 404);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "not_found");
    assert!(body["message"].is_string());
}

#[tokio::test]
async fn wrong_method_is_405_with_allow() {
    let app = spawn_app().await;
    let cases = [
        (reqwest::Method::GET, "/publish/news", "POST"),
        (reqwest::Method::PUT, "/publish", "POST"),
        (reqwest::Method::POST, "/events/news", "GET"),
        (reqwest::Method::DELETE, "/healthz", "GET"),
        (reqwest::Method::POST, "/", "GET"),
    ];
    for (method, path, allowed) in cases {
        let response = app
            .client
            .request(method.clone(), app.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405, "{method} {path}");
        assert!(response.headers()["allow"]
            .to_str()
            .unwrap()
            .contains(allowed));
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"], "method_not_allowed");
    }
}

#[tokio::test]
async fn subscribe_with_bad_channel_name_is_400() {
    let app = spawn_app().await;
    for path in [
        "/events/a%20b",
        "/events/a/b",
        "/events/",
        "/events/%C3%A9",
        "/events?channel=a&channel=b%2Fc",
    ] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 400, "{path}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"], "bad_channel", "{path}");
    }
    let long = format!("/events/{}", "c".repeat(129));
    assert_eq!(
        app.client
            .get(app.url(&long))
            .send()
            .await
            .unwrap()
            .status(),
        400
    );
}

#[tokio::test]
async fn event_streams_are_never_compressed() {
    let app = spawn_app().await;
    let mut raw = Raw::send(
        app.addr,
        &get("/events/news", "Accept-Encoding: gzip, br\r\n"),
    )
    .await;
    let text = raw.read_until("\n\n").await;
    assert!(!text.to_lowercase().contains("content-encoding"), "{text}");
}

#[tokio::test]
async fn subscribe_past_max_channels_gets_200_retry_and_the_stream_ends() {
    let app = spawn_app_with(|c| c.max_channels = 1).await;
    app.publish("a", "1").await;
    let mut raw = Raw::send(app.addr, &get("/events/b", "Connection: close\r\n")).await;
    let text = raw.read_to_end().await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("content-type: text/event-stream"));
    let body = text.split_once("\r\n\r\n").unwrap().1;
    let retry: u64 = body
        .lines()
        .find_map(|l| l.strip_prefix("retry: "))
        .expect("a retry field")
        .parse()
        .unwrap();
    assert!(
        (3000..=9000).contains(&retry),
        "between one and three times --retry: {retry}"
    );
    assert!(
        body.contains("\n: ") || body.contains(": server busy"),
        "a comment saying why: {body}"
    );
    assert_eq!(
        app.metric("herald_requests_rejected_total{reason=\"channel_limit\"}")
            .await,
        1.0
    );
}

#[tokio::test]
async fn connections_past_max_connections_get_retry_streams_and_503s() {
    let app = spawn_app_with(|c| c.max_connections = 2).await;
    let _a = Raw::send(app.addr, &get("/events/a", "")).await;
    let _b = Raw::send(app.addr, &get("/events/b", "")).await;
    eventually("both connections are counted", || {
        app.state.metrics.connections_open.get() >= 2
    })
    .await;
    let mut sub = Raw::send(app.addr, &get("/events/c", "")).await;
    let text = sub.read_to_end().await;
    assert!(
        text.starts_with("HTTP/1.1 200") && text.contains("retry: "),
        "{text}"
    );
    let mut publish = Raw::send(
        app.addr,
        "POST /publish/c HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nx",
    )
    .await;
    let text = publish.read_to_end().await;
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.to_lowercase().contains("retry-after: "), "{text}");
    assert!(text.contains("connection_limit"));
}

#[tokio::test]
async fn client_that_does_not_finish_its_headers_in_time_is_disconnected() {
    let app = spawn_app_with(|c| c.header_timeout = Duration::from_millis(300)).await;
    let mut raw = Raw::send(app.addr, "GET /healthz HTTP/1.1\r\nHost: t\r\n").await;
    // Trickle a byte now and then: the deadline is for all headers, not per byte.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        use tokio::io::AsyncWriteExt;
        if raw.stream.write_all(b"X").await.is_err() {
            break;
        }
    }
    let text = raw.read_to_end().await;
    assert!(!text.contains(" 200 "), "{text}");
}

#[tokio::test]
async fn body_that_does_not_arrive_in_time_is_408_and_nothing_is_published() {
    let app = spawn_app_with(|c| c.body_timeout = Duration::from_millis(300)).await;
    let mut raw = Raw::send(
        app.addr,
        "POST /publish/slow HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nhal",
    )
    .await;
    let text = raw.read_until("}").await;
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("body_timeout"));
    assert_eq!(app.state.hub.channel_count(), 0);
}

#[tokio::test]
async fn idle_channel_is_dropped_after_its_ttl() {
    let app = spawn_app_with(|c| c.channel_ttl = Duration::from_millis(200)).await;
    app.publish("short-lived", "x").await;
    let _kept = app.subscribe("/events/kept", None).await;
    eventually("the idle channel is dropped", || {
        app.state.hub.channel_count() == 1
    })
    .await;
    let channels = app.channels().await;
    assert_eq!(channels[0]["channel"], "kept", "a subscribed channel stays");
}
