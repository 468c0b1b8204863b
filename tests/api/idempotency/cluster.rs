//! Idempotency keys on a Redis service: service-wide, and recorded by the
//! script that publishes, so a publish whose answer was lost is answered
//! by any node, not published twice.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::post;
use crate::cluster::support::{node, Redis};
use crate::helpers::{Binary, Sse, WAIT};

/// A loopback proxy in front of Redis that forwards every request but,
/// while stalled, holds Redis's replies back: Redis does the work, the
/// client never hears of it.
struct ReplyStaller {
    port: u16,
    stalled: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl ReplyStaller {
    async fn start(upstream: u16) -> ReplyStaller {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let stalled = Arc::new(AtomicBool::new(false));
        let flag = stalled.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                    continue;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut cr, &mut sw).await;
                });
                let flag = flag.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        let n = match sr.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        // Bounded: the test unstalls within its wait.
                        for _ in 0..(2 * WAIT.as_millis() / 10) {
                            if !flag.load(Ordering::SeqCst) {
                                break;
                            }
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        if cw.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        ReplyStaller {
            port,
            stalled,
            task,
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn stall(&self, on: bool) {
        self.stalled.store(on, Ordering::SeqCst);
    }
}

impl Drop for ReplyStaller {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn subscribe(node: &Binary, channel: &str) -> Sse {
    let response = node
        .client
        .get(node.url(&format!("/events/{channel}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    Sse::from_response(response)
}

/// The ids `sse` receives before the unkeyed `marker` published on `node`.
async fn ids_before_marker(node: &Binary, sse: &mut Sse, channel: &str) -> Vec<String> {
    node.publish(channel, "marker").await;
    let mut ids = Vec::new();
    loop {
        let event = sse.next().await;
        if event.data == "marker" {
            return ids;
        }
        ids.push(event.id);
    }
}

#[tokio::test]
async fn a_key_is_service_wide_on_redis() {
    let Some(redis) = Redis::start(&[]).await else {
        return;
    };
    let a = node(&redis.url(), &[]).await;
    let b = node(&redis.url(), &[]).await;
    let mut sse = subscribe(&b, "news").await;

    let first = post(
        &a.client,
        &a.url("/publish/news"),
        Some("k-1"),
        None,
        "hello",
    )
    .await;
    let again = post(
        &b.client,
        &b.url("/publish/news"),
        Some("k-1"),
        None,
        "hello",
    )
    .await;
    let other = post(&b.client, &b.url("/publish/news"), Some("k-1"), None, "bye").await;
    let batch = r#"[{"channel":"news","data":"1"},{"channel":"news","data":"2"}]"#;
    let batch_a = post(&a.client, &a.url("/publish"), Some("k-2"), None, batch).await;
    let batch_b = post(&b.client, &b.url("/publish"), Some("k-2"), None, batch).await;

    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.replayed, None);
    assert_eq!(
        (again.status, again.replayed.as_deref()),
        (200, Some("true"))
    );
    assert_eq!(again.body, first.body, "the first answer, byte for byte");
    assert_eq!(
        (other.status, other.error().as_str()),
        (422, "idempotency_key_reused")
    );
    assert_eq!(
        (batch_b.replayed.as_deref(), &batch_b.body),
        (Some("true"), &batch_a.body)
    );
    let mut expected = vec![first.json()["id"].as_str().unwrap().to_owned()];
    for p in batch_a.json().as_array().unwrap() {
        expected.push(p["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids_before_marker(&a, &mut sse, "news").await, expected);
    assert_eq!(b.metric("herald_idempotent_replays_total").await, 2.0);
}

#[tokio::test]
async fn a_publish_whose_answer_was_lost_is_answered_not_repeated_on_another_node() {
    let Some(redis) = Redis::start(&[]).await else {
        return;
    };
    let proxy = ReplyStaller::start(redis.port).await;
    // Node A reaches Redis through the proxy and waits 1 s for an answer.
    let a = node(&proxy.url(), &["--redis-timeout", "1s"]).await;
    let b = node(&redis.url(), &[]).await;
    // A has loaded the publish script (a first EVALSHA would only get
    // NOSCRIPT back before the stall).
    a.publish("orders", "warm-up").await;
    let mut sse = subscribe(&b, "orders").await;

    proxy.stall(true);
    let lost = post(
        &a.client,
        &a.url("/publish/orders"),
        Some("order-77"),
        None,
        "paid",
    )
    .await;
    assert_eq!(
        lost.status, 503,
        "A never heard back from Redis: {}",
        lost.body
    );
    assert_eq!(lost.error(), "backend_unavailable");
    // Yet Redis took it: B's subscriber has it.
    let delivered = tokio::time::timeout(WAIT, sse.next())
        .await
        .expect("delivered");
    assert_eq!(delivered.data, "paid");
    proxy.stall(false);

    // The client retries with its key on the other node.
    let retried = post(
        &b.client,
        &b.url("/publish/orders"),
        Some("order-77"),
        None,
        "paid",
    )
    .await;
    assert_eq!(retried.status, 200, "{}", retried.body);
    assert_eq!(retried.replayed.as_deref(), Some("true"));
    assert_eq!(
        retried.json()["id"].as_str().unwrap(),
        delivered.id,
        "the first id"
    );
    // One event delivered: nothing came between it and a later marker.
    assert!(ids_before_marker(&b, &mut sse, "orders").await.is_empty());
    // And A, once Redis answers it again, gives the same answer.
    let mut from_a = post(
        &a.client,
        &a.url("/publish/orders"),
        Some("order-77"),
        None,
        "paid",
    )
    .await;
    for _ in 0..(WAIT.as_millis() / 50) {
        if from_a.status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        from_a = post(
            &a.client,
            &a.url("/publish/orders"),
            Some("order-77"),
            None,
            "paid",
        )
        .await;
    }
    assert_eq!((from_a.status, from_a.body), (200, retried.body));
}

#[tokio::test]
async fn a_retry_is_answered_even_once_its_channel_expired_and_the_service_is_full() {
    let Some(redis) = Redis::start(&[]).await else {
        return;
    };
    let a = node(
        &redis.url(),
        &["--channel-ttl", "1s", "--max-channels", "1"],
    )
    .await;
    let first = post(&a.client, &a.url("/publish/gone"), Some("k-9"), None, "x").await;
    assert_eq!(first.status, 200, "{}", first.body);
    // "gone" expires in Redis; "other" takes the only channel there is.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    a.publish("other", "1").await;

    let again = post(&a.client, &a.url("/publish/gone"), Some("k-9"), None, "x").await;
    assert_eq!(
        (again.status, again.replayed.as_deref()),
        (200, Some("true")),
        "{}",
        again.body
    );
    assert_eq!(again.body, first.body, "the first answer");
    let reused = post(&a.client, &a.url("/publish/gone"), Some("k-9"), None, "y").await;
    assert_eq!(
        (reused.status, reused.error().as_str()),
        (422, "idempotency_key_reused")
    );
    // A new key on a new channel is refused, and Redis keeps no key for it.
    let refused = post(&a.client, &a.url("/publish/new"), Some("k-10"), None, "z").await;
    assert_eq!(
        (refused.status, refused.error().as_str()),
        (503, "channel_limit")
    );
    assert_eq!(
        redis.cmd(&["EXISTS", "herald{h}:i:k-9 *"]).await,
        redis::Value::Int(1)
    );
    assert_eq!(
        redis.cmd(&["EXISTS", "herald{h}:i:k-10 *"]).await,
        redis::Value::Int(0)
    );
}
