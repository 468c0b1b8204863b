//! With `--data-dir` revocations are records of the log: they survive a
//! restart, and one that ran out meanwhile is dropped.

use std::time::Duration;

use super::{disconnect, jwt, open};
use crate::auth::{spawn_auth_with, PUBLISH_TOKEN};
use crate::durable::TempDir;

#[tokio::test]
async fn revocations_survive_a_restart_and_expired_ones_are_dropped() {
    // Arrange
    let dir = TempDir::new("revocations");
    let path = dir.path.clone();
    let app = spawn_auth_with(|c| c.data_dir = Some(path.clone())).await;
    let banned = jwt("42", Some(5), None);
    let leaked = jwt("7", Some(5), Some("leaked"));
    let brief = jwt("9", Some(5), None);
    let calls = [
        r#"{"sub":"42","revoke":"1h"}"#,
        r#"{"jti":"leaked","revoke":"1h"}"#,
        r#"{"sub":"9","revoke":"3s"}"#,
        r#"{"sub":"11"}"#,
    ];
    for body in calls {
        assert_eq!(
            disconnect(&app.client, &app.base, body).await.0,
            200,
            "{body}"
        );
    }
    // Every call has been answered: the 3 s revocation ends before this
    // plus 3 s, however slowly a busy machine took the calls.
    let called = tokio::time::Instant::now();
    assert_eq!(app.metric("herald_revocations_active").await, 3.0);

    // Act: stop, let the short one run out, start again on the directory.
    app.stop().await;
    tokio::time::sleep_until(called + Duration::from_millis(3500)).await;
    let app = spawn_auth_with(|c| c.data_dir = Some(path.clone())).await;

    // Assert
    assert_eq!(
        open(&app.client, &app.base, "/events/news", &banned)
            .await
            .status(),
        401
    );
    assert_eq!(
        open(&app.client, &app.base, "/events/news", &leaked)
            .await
            .status(),
        401
    );
    assert_eq!(
        open(&app.client, &app.base, "/events/news", &brief)
            .await
            .status(),
        200
    );
    let other_of_7 = jwt("7", Some(5), Some("other"));
    assert_eq!(
        open(&app.client, &app.base, "/events/news", &other_of_7)
            .await
            .status(),
        200
    );
    assert_eq!(app.metric("herald_revocations_active").await, 2.0);
    app.stop().await;
}

#[tokio::test]
async fn a_revocation_outlives_the_compaction_of_the_segment_that_held_it() {
    // Arrange: a revocation in the first segment, then enough events, in
    // small segments with little retained, that compaction replaces it.
    let dir = TempDir::new("revocations-compacted");
    let path = dir.path.clone();
    let configure = |c: &mut herald::Config| {
        c.data_dir = Some(path.clone());
        c.history = 5;
        c.segment_bytes = 16 << 10;
    };
    let app = spawn_auth_with(configure).await;
    let banned = jwt("42", Some(5), None);
    let (status, _) = disconnect(&app.client, &app.base, r#"{"sub":"42","revoke":"1h"}"#).await;
    assert_eq!(status, 200);
    let data = "x".repeat(100);
    let batch: Vec<serde_json::Value> = (0..100)
        .map(|i| serde_json::json!({"channel": format!("c{}", i % 4), "data": data}))
        .collect();
    let batch = serde_json::to_string(&batch).unwrap();
    for _ in 0..30 {
        if app.state.metrics.log_compactions.get() >= 1 {
            break;
        }
        let request = app
            .client
            .post(app.url("/publish"))
            .bearer_auth(PUBLISH_TOKEN);
        assert_eq!(
            request.body(batch.clone()).send().await.unwrap().status(),
            200
        );
    }
    assert!(
        app.state.metrics.log_compactions.get() >= 1,
        "a compaction ran"
    );

    // Act
    app.stop().await;
    let app = spawn_auth_with(configure).await;

    // Assert
    assert_eq!(
        open(&app.client, &app.base, "/events/news", &banned)
            .await
            .status(),
        401
    );
    assert_eq!(app.metric("herald_revocations_active").await, 1.0);
    app.stop().await;
}
