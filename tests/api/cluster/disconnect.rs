//! Disconnect and revoke across nodes (SPEC §11 with §9): real herald
//! binaries on one real Redis. A disconnect taken by one node ends the
//! matching streams and sockets of every node within the second; a
//! revocation is enforced by every node, a node started after it included.

use std::time::Duration;

use tokio::time::Instant;

use super::support::{node, Redis};
use crate::auth::{now, PUBLISH_TOKEN, SECRET};
use crate::disconnect::{
    disconnect, ends, jwt, next_second_after, open, ws, ws_ends, ws_status, DISCONNECTED,
    ENDS_WITHIN, REVOKED,
};
use crate::helpers::{Binary, Sse};

async fn auth_node(redis: &Redis) -> Binary {
    node(
        &redis.url(),
        &["--jwt-secret", SECRET, "--publish-token", PUBLISH_TOKEN],
    )
    .await
}

async fn publish(node: &Binary, channel: &str, data: &str) {
    let response = node
        .client
        .post(node.url(&format!("/publish/{channel}")))
        .bearer_auth(PUBLISH_TOKEN)
        .body(data.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_disconnect_on_one_node_ends_streams_on_the_other_and_a_revocation_holds_everywhere() {
    let Some(redis) = Redis::start(&[]).await else {
        return;
    };
    // Arrange: user 42 on node B, over SSE and WebSocket; user 7 beside it.
    let a = auth_node(&redis).await;
    let b = auth_node(&redis).await;
    let (base_a, base_b) = (a.url(""), b.url(""));
    let t42 = jwt("42", Some(5), None);
    let stream = open(&b.client, &base_b, "/events/news", &t42).await;
    let mut socket = ws(b.addr, "/events/news", &t42).await;
    let mut other = Sse::from_response(
        open(&b.client, &base_b, "/events/news", &jwt("7", Some(5), None)).await,
    );

    // Act 1: a plain disconnect through node A.
    let (status, answer) = disconnect(&a.client, &base_a, r#"{"sub":"42"}"#).await;
    let asked = Instant::now();

    // Assert 1: A ended none of its own; B ended both within the second.
    assert_eq!((status, answer["disconnected"].as_u64()), (200, Some(0)));
    let body = ends(stream).await;
    ws_ends(&mut socket, "disconnected").await;
    let took = asked.elapsed();
    eprintln!("node B ended its streams {took:?} after node A answered");
    assert!(took < ENDS_WITHIN, "{took:?}");
    assert!(body.ends_with(DISCONNECTED), "{body:?}");
    // No revoke: the same token comes back at once, on either node.
    let back = open(&b.client, &base_b, "/events/news", &t42).await;
    assert_eq!(back.status(), 200);

    // Act 2: revoke user 42 through node A.
    let (status, _) = disconnect(&a.client, &base_a, r#"{"sub":"42","revoke":"1h"}"#).await;
    let called = now();
    assert_eq!(status, 200);

    // Assert 2: B ends the stream as revoked and refuses the token; so does
    // A, and so does a node started afterwards.
    assert!(ends(back).await.ends_with(REVOKED));
    for node in [&a, &b] {
        let base = node.url("");
        assert_eq!(
            open(&node.client, &base, "/events/news", &t42)
                .await
                .status(),
            401
        );
        assert_eq!(ws_status(node.addr, "/events/news", &t42).await, 401);
        let publish = node
            .client
            .post(node.url("/publish/news"))
            .bearer_auth(&t42);
        assert_eq!(publish.body("x").send().await.unwrap().status(), 401);
    }
    let c = auth_node(&redis).await;
    let base_c = c.url("");
    assert_eq!(
        open(&c.client, &base_c, "/events/news", &t42)
            .await
            .status(),
        401
    );
    assert_eq!(c.metric("herald_revocations_active").await, 1.0);
    // User 7 was not touched; a token of 42 minted a second later works on C.
    publish(&a, "news", "for 7").await;
    assert_eq!(other.next().await.data, "for 7");
    next_second_after(called).await;
    let fresh = jwt("42", Some(0), None);
    let response = open(&c.client, &base_c, "/events/news", &fresh).await;
    assert_eq!(response.status(), 200);
    let mut fresh_stream = Sse::from_response(response);
    publish(&b, "news", "welcome back").await;
    assert_eq!(fresh_stream.next().await.data, "welcome back");
    assert_eq!(
        b.metric("herald_disconnects_total{reason=\"revoked\"}")
            .await,
        1.0
    );
}

#[tokio::test]
async fn a_revocation_by_jti_reaches_a_node_that_starts_later_and_runs_out_there() {
    let Some(redis) = Redis::start(&[]).await else {
        return;
    };
    let a = auth_node(&redis).await;
    let leaked = jwt("42", Some(5), Some("leaked"));
    let (status, _) = disconnect(&a.client, &a.url(""), r#"{"jti":"leaked","revoke":"8s"}"#).await;
    let called = Instant::now();
    assert_eq!(status, 200);
    let b = auth_node(&redis).await;
    assert_eq!(
        open(&b.client, &b.url(""), "/events/news", &leaked)
            .await
            .status(),
        401
    );
    let kept = jwt("42", Some(5), Some("kept"));
    assert_eq!(
        open(&b.client, &b.url(""), "/events/news", &kept)
            .await
            .status(),
        200
    );
    tokio::time::sleep_until(called + Duration::from_millis(8100)).await;
    assert_eq!(
        open(&b.client, &b.url(""), "/events/news", &leaked)
            .await
            .status(),
        200
    );
    assert_eq!(b.metric("herald_revocations_active").await, 0.0);
}

#[tokio::test]
async fn without_redis_a_disconnect_is_refused_with_503_and_revokes_nothing() {
    let Some(mut redis) = Redis::start(&[]).await else {
        return;
    };
    let a = node(
        &redis.url(),
        &[
            "--jwt-secret",
            SECRET,
            "--publish-token",
            PUBLISH_TOKEN,
            "--redis-timeout",
            "1s",
        ],
    )
    .await;
    redis.kill();
    super::support::wait_health(&a, 503).await;

    let response = a
        .client
        .post(a.url("/disconnect"))
        .bearer_auth(PUBLISH_TOKEN)
        .body(r#"{"sub":"42","revoke":"1h"}"#)
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let error: serde_json::Value = response.json().await.unwrap();
    assert_eq!(error["error"], "backend_unavailable");
    assert_eq!(a.metric("herald_revocations_active").await, 0.0);
    redis.restart().await;
    super::support::wait_health(&a, 200).await;
    let t42 = jwt("42", Some(5), None);
    assert_eq!(
        open(&a.client, &a.url(""), "/events/news", &t42)
            .await
            .status(),
        200
    );
}
