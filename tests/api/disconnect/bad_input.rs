//! Bad `POST /disconnect` requests: each is refused with a clear JSON error
//! and changes nothing (the stream it would have named stays open, nothing
//! is revoked, nothing is counted as disconnected).

use serde_json::Value;

use super::{jwt, open};
use crate::auth::{spawn_auth, PUBLISH_TOKEN};
use crate::helpers::Sse;

#[tokio::test]
async fn bad_disconnects_are_refused_and_change_nothing() {
    // Arrange: a stream every bad request would end if it went through.
    let app = spawn_auth().await;
    let t42 = jwt("42", Some(5), Some("t-42"));
    let mut stream = Sse::from_response(open(&app.client, &app.base, "/events/news", &t42).await);
    let too_large = format!(r#"{{"sub":"42","jti":"{}"}}"#, "x".repeat(5000));
    let long_sub = format!(r#"{{"sub":"{}"}}"#, "x".repeat(129));
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("empty object", "{}".into(), 400, "bad_disconnect"),
        (
            "unknown key",
            r#"{"sub":"42","user":"42"}"#.into(),
            400,
            "bad_disconnect",
        ),
        (
            "sub of the wrong type",
            r#"{"sub":42}"#.into(),
            400,
            "bad_disconnect",
        ),
        (
            "channel of the wrong type",
            r#"{"channel":["news"]}"#.into(),
            400,
            "bad_disconnect",
        ),
        (
            "revoke of the wrong type",
            r#"{"sub":"42","revoke":3600}"#.into(),
            400,
            "bad_disconnect",
        ),
        (
            "bad channel name",
            r#"{"channel":"news/x"}"#.into(),
            400,
            "bad_channel",
        ),
        (
            "a null beside a valid channel",
            r#"{"channel":"news","sub":null}"#.into(),
            400,
            "bad_disconnect",
        ),
        ("empty sub", r#"{"sub":""}"#.into(), 400, "bad_disconnect"),
        ("sub too long", long_sub, 400, "bad_disconnect"),
        (
            "revoke with channel alone",
            r#"{"channel":"news","revoke":"1m"}"#.into(),
            400,
            "bad_disconnect",
        ),
        (
            "revoke above --max-revoke",
            r#"{"sub":"42","revoke":"25h"}"#.into(),
            400,
            "bad_disconnect",
        ),
        (
            "revoke not a duration",
            r#"{"sub":"42","revoke":"soon"}"#.into(),
            400,
            "bad_disconnect",
        ),
        (
            "jti with sub",
            r#"{"jti":"t-42","sub":"42"}"#.into(),
            400,
            "bad_disconnect",
        ),
        ("not JSON", "sub=42".into(), 400, "bad_disconnect"),
        ("not an object", r#"["42"]"#.into(), 400, "bad_disconnect"),
        ("no body", String::new(), 400, "bad_disconnect"),
        ("body too large", too_large, 413, "body_too_large"),
    ];

    // Act and assert: every case refused, with the project's error body.
    for (what, body, status, code) in &cases {
        let response = app
            .client
            .post(app.url("/disconnect"))
            .bearer_auth(PUBLISH_TOKEN)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), *status, "{what}");
        assert_eq!(
            response.headers()["content-type"],
            "application/json",
            "{what}"
        );
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"], *code, "{what}: {error}");
        assert!(!error["message"].as_str().unwrap().is_empty(), "{what}");
    }
    // A JWT, even one that may publish everywhere, is not the publish token.
    let response = app
        .client
        .post(app.url("/disconnect"))
        .bearer_auth(jwt("admin", Some(5), None))
        .body(r#"{"sub":"42"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let error: Value = response.json().await.unwrap();
    assert_eq!(
        (error["error"].as_str(), error["channels"].clone()),
        (Some("forbidden"), serde_json::json!([]))
    );
    let response = app
        .client
        .post(app.url("/disconnect"))
        .body(r#"{"sub":"42"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401, "no token");
    assert!(response.headers().contains_key("www-authenticate"));
    let response = app.client.get(app.url("/disconnect")).send().await.unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "POST, OPTIONS");

    // Nothing changed: the stream is open, the token works, nothing counted.
    let publish = app
        .client
        .post(app.url("/publish/news"))
        .bearer_auth(PUBLISH_TOKEN);
    assert_eq!(
        publish.body("still open").send().await.unwrap().status(),
        200
    );
    assert_eq!(stream.next().await.data, "still open");
    assert_eq!(
        open(&app.client, &app.base, "/events/news", &t42)
            .await
            .status(),
        200
    );
    assert_eq!(app.metric("herald_revocations_active").await, 0.0);
    for reason in ["disconnected", "revoked"] {
        let series = format!("herald_disconnects_total{{reason=\"{reason}\"}}");
        assert_eq!(app.metric(&series).await, 0.0);
    }
    let refused = app
        .metric("herald_requests_rejected_total{reason=\"bad_request\"}")
        .await;
    assert_eq!(refused, 16.0);
}
