//! SPEC §3: single and batch publish, and every bad input they refuse.

use crate::helpers::{spawn_app, spawn_app_with, Raw};

async fn post(
    app: &crate::helpers::TestApp,
    path: &str,
    body: impl Into<reqwest::Body>,
) -> (u16, serde_json::Value) {
    let response = app
        .client
        .post(app.url(path))
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    assert_eq!(response.headers()["content-type"], "application/json");
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn publish_answers_id_channel_and_subscribers_reached() {
    let app = spawn_app().await;
    let _one = app.subscribe("/events/news", None).await;
    let _two = app.subscribe("/events/news", None).await;
    let answer = app.publish("news", "hello").await;
    assert_eq!(answer["channel"], "news");
    assert_eq!(answer["subscribers"], 2);
    assert!(answer["id"].as_str().unwrap().parse::<u64>().is_ok());
}

#[tokio::test]
async fn publish_takes_the_body_whatever_the_content_type() {
    let app = spawn_app().await;
    let mut sse = app.subscribe("/events/news", None).await;
    let response = app
        .client
        .post(app.url("/publish/news"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("a=1&b=2")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(sse.next().await.data, "a=1&b=2");
}

#[tokio::test]
async fn publish_with_event_type_sets_the_event_field() {
    let app = spawn_app().await;
    let mut sse = app.subscribe("/events/news", None).await;
    app.publish_to("/publish/news?event=price.update", "42")
        .await;
    let event = sse.next().await;
    assert_eq!(
        (event.event.as_str(), event.data.as_str()),
        ("price.update", "42")
    );
}

#[tokio::test]
async fn publish_with_empty_body_is_400() {
    let app = spawn_app().await;
    let (status, body) = post(&app, "/publish/news", "").await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "empty_data");
    assert!(body["message"].as_str().unwrap().len() > 10);
}

#[tokio::test]
async fn publish_with_invalid_utf8_is_400() {
    let app = spawn_app().await;
    let (status, body) = post(&app, "/publish/news", vec![0x66, 0xff, 0xfe]).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_utf8");
}

#[tokio::test]
async fn publish_with_bad_event_type_is_400() {
    let app = spawn_app().await;
    for bad in ["herald.gap", "a%20b", "x~y", &"t".repeat(65), ""] {
        let (status, body) = post(&app, &format!("/publish/news?event={bad}"), "x").await;
        assert_eq!(status, 400, "{bad}");
        assert_eq!(body["error"], "bad_event_type");
    }
}

#[tokio::test]
async fn publish_with_bad_channel_name_is_400() {
    let app = spawn_app().await;
    for bad in ["a%20b", "a%2Fb", "%C3%A9", &"c".repeat(129), "a/b"] {
        let (status, body) = post(&app, &format!("/publish/{bad}"), "x").await;
        assert_eq!(status, 400, "{bad}");
        assert_eq!(body["error"], "bad_channel");
    }
    let (status, _) = post(&app, "/publish/", "x").await;
    assert_eq!(status, 400, "empty channel name");
}

#[tokio::test]
async fn publish_larger_than_max_event_bytes_is_413() {
    let app = spawn_app_with(|c| c.max_event_bytes = 16).await;
    let (status, body) = post(&app, "/publish/news", "x".repeat(17)).await;
    assert_eq!(status, 413);
    assert_eq!(body["error"], "event_too_large");
    let (status, _) = post(&app, "/publish/news", "x".repeat(16)).await;
    assert_eq!(status, 200, "exactly the limit is fine");
}

#[tokio::test]
async fn chunked_body_found_too_large_while_streaming_is_413() {
    let app = spawn_app_with(|c| c.max_event_bytes = 16).await;
    let mut raw = Raw::send(
        app.addr,
        "POST /publish/news HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
         a\r\n0123456789\r\na\r\n0123456789\r\n0\r\n\r\n",
    )
    .await;
    let text = raw.read_until("}").await;
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    let channels = app.channels().await;
    assert_eq!(channels, serde_json::json!([]), "nothing was published");
}

#[tokio::test]
async fn batch_publishes_every_item_in_order_and_answers_in_request_order() {
    let app = spawn_app().await;
    let mut sse = app.subscribe("/events?channel=a&channel=b", None).await;
    let (status, body) = post(
        &app,
        "/publish",
        r#"[{"channel":"a","data":"one"},{"channel":"b","data":{"n":2, "x": [1, 2]},"event":"obj"},{"channel":"a","data":3}]"#,
    )
    .await;
    assert_eq!(status, 200);
    let answers = body.as_array().unwrap();
    assert_eq!(answers.len(), 3);
    assert_eq!(answers[0]["channel"], "a");
    assert_eq!(answers[1]["channel"], "b");
    assert_eq!(answers[1]["subscribers"], 1);
    let first = sse.next().await;
    let second = sse.next().await;
    let third = sse.next().await;
    assert_eq!(first.data, "one");
    assert_eq!(first.id, answers[0]["id"].as_str().unwrap());
    assert_eq!(
        (second.event.as_str(), second.data.as_str()),
        ("obj", r#"{"n":2,"x":[1,2]}"#)
    );
    assert_eq!(third.data, "3");
}

#[tokio::test]
async fn batch_with_one_bad_item_publishes_nothing_and_names_its_index() {
    let app = spawn_app().await;
    let cases = [
        (
            r#"[{"channel":"a","data":"ok"},{"channel":"b c","data":"x"}]"#,
            1,
            "bad_channel",
        ),
        (
            r#"[{"channel":"a","data":"ok"},{"channel":"a","data":""}]"#,
            1,
            "empty_data",
        ),
        (
            r#"[{"channel":"a","data":"x","event":"herald.x"}]"#,
            0,
            "bad_event_type",
        ),
        (
            r#"[{"channel":"a","data":"x"},{"channel":"a"}]"#,
            1,
            "bad_json",
        ),
        (
            r#"[{"channel":"a","data":"x"},{"channel":"a","data":"x","evnt":"t"}]"#,
            1,
            "bad_json",
        ),
        (
            r#"[{"channel":"a","data":"x"},"just a string"]"#,
            1,
            "bad_json",
        ),
    ];
    for (body, index, code) in cases {
        let (status, answer) = post(&app, "/publish", body).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(answer["index"], index, "{body}");
        assert_eq!(answer["error"], code, "{body}");
    }
    let channels = app.channels().await;
    assert_eq!(
        channels,
        serde_json::json!([]),
        "no item of a refused batch was published"
    );
}

#[tokio::test]
async fn batch_that_is_not_a_json_array_is_400() {
    let app = spawn_app().await;
    for body in ["", "{", r#"{"channel":"a","data":"x"}"#, "[1,"] {
        let (status, answer) = post(&app, "/publish", body).await;
        assert_eq!(status, 400, "{body:?}");
        assert_eq!(answer["error"], "bad_json");
    }
}

#[tokio::test]
async fn batch_item_larger_than_max_event_bytes_is_400_with_its_index() {
    let app = spawn_app_with(|c| c.max_event_bytes = 8).await;
    let (status, answer) = post(
        &app,
        "/publish",
        r#"[{"channel":"a","data":"12345678"},{"channel":"a","data":"123456789"}]"#,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(answer["index"], 1);
    assert_eq!(answer["error"], "event_too_large");
}

#[tokio::test]
async fn batch_body_larger_than_max_batch_bytes_is_413() {
    let app = spawn_app_with(|c| c.max_batch_bytes = 64).await;
    let items: Vec<String> = (0..10)
        .map(|i| format!(r#"{{"channel":"a","data":"{i}"}}"#))
        .collect();
    let (status, answer) = post(&app, "/publish", format!("[{}]", items.join(","))).await;
    assert_eq!(status, 413);
    assert_eq!(answer["error"], "body_too_large");
}

#[tokio::test]
async fn empty_batch_publishes_nothing_and_answers_an_empty_array() {
    let app = spawn_app().await;
    let (status, answer) = post(&app, "/publish", "[]").await;
    assert_eq!((status, answer), (200, serde_json::json!([])));
}

#[tokio::test]
async fn publish_to_a_new_channel_past_max_channels_is_503_with_retry_after() {
    let app = spawn_app_with(|c| c.max_channels = 2).await;
    app.publish("a", "1").await;
    app.publish("b", "1").await;
    let response = app
        .client
        .post(app.url("/publish/c"))
        .body("1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "channel_limit");
    app.publish("a", "existing channels still work").await;
}

#[tokio::test]
async fn batch_that_would_pass_max_channels_is_503_and_publishes_nothing() {
    let app = spawn_app_with(|c| c.max_channels = 2).await;
    app.publish("a", "1").await;
    let (status, answer) = post(
        &app,
        "/publish",
        r#"[{"channel":"a","data":"2"},{"channel":"b","data":"x"},{"channel":"c","data":"y"}]"#,
    )
    .await;
    assert_eq!(status, 503);
    assert_eq!(answer["error"], "channel_limit");
    let channels = app.channels().await;
    assert_eq!(channels.as_array().unwrap().len(), 1);
    assert_eq!(channels[0]["retained"], 1);
}

/// A URL encoder may write `@` (or any character) percent-encoded: the path
/// names the same channel either way (found by schemathesis, SPEC §15).
#[tokio::test]
async fn a_percent_encoded_channel_in_the_path_is_the_same_channel() {
    let app = spawn_app().await;
    let mut events = app.subscribe("/events/user%40example", None).await;
    app.publish_to("/publish/user@example", "plain").await;
    app.publish_to("/publish/user%40example", "encoded").await;
    assert_eq!(events.data(2).await, ["plain", "encoded"]);
    let channels = app.channels().await;
    assert_eq!(channels[0]["channel"], "user@example", "{channels}");

    let slash = app
        .client
        .post(app.url("/publish/a%2Fb"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(slash.status(), 400, "an encoded / is still no channel name");
}
