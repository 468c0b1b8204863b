//! Thousands of connects and disconnects of one member, as fast as one
//! client can make them (about a second): the other members hear at most
//! one join and one leave, and the server's memory comes back.
//!
//! Runs the real binary as a child so its RSS is its own.

use std::time::Duration;

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::{member, PUBLISH_TOKEN, ROOM, SECRET};
use crate::helpers::{Binary, WAIT};

const CYCLES: usize = 2_000;
/// Allocator caches and arena growth, not leaks.
const RSS_SLACK_KIB: u64 = 8 * 1024;

/// Opens a stream as `token`, waits for its snapshot, and closes it.
async fn connect_and_drop(bin: &Binary, token: &str) {
    let mut socket = TcpStream::connect(bin.addr).await.unwrap();
    let request = format!("GET /events/{ROOM}?token={token} HTTP/1.1\r\nHost: test\r\n\r\n");
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("event: herald.presence") {
        let n = socket.read(&mut buf).await.unwrap();
        assert!(
            n > 0,
            "stream closed early: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_reconnects_of_one_member_make_one_join_and_one_leave_and_memory_returns() {
    let bin = Binary::start_with_env(
        &["--presence-grace", "3s"],
        &[
            ("HERALD_JWT_SECRET", SECRET),
            ("HERALD_PUBLISH_TOKEN", PUBLISH_TOKEN),
            ("MALLOC_ARENA_MAX", "1"),
        ],
    )
    .await;
    let token = member("42", "Ada");
    // Warm up (the baseline includes what every server holds), then wait
    // for that member to leave.
    for _ in 0..10 {
        connect_and_drop(&bin, &token).await;
    }
    let watcher = bin
        .client
        .get(bin.url(&format!("/events/{ROOM}")))
        .bearer_auth(PUBLISH_TOKEN)
        .send()
        .await
        .unwrap();
    let mut watcher = watcher.bytes_stream().eventsource();
    let snapshot = watcher.next().await.unwrap().unwrap();
    assert_eq!(snapshot.event, "herald.presence");
    let mut events = Vec::new();
    if snapshot.data.contains("\"count\":1") {
        events.push(watcher.next().await.unwrap().unwrap().event);
        assert_eq!(events, ["herald.leave"], "the warm-up member leaves");
        events.clear();
    }
    bin.wait_for_metric("herald_streams_open", 1.0).await;
    let baseline = bin.rss_kib();

    let started = Instant::now();
    for _ in 0..CYCLES {
        connect_and_drop(&bin, &token).await;
    }
    eprintln!(
        "{CYCLES} connects and disconnects in {:?}",
        started.elapsed()
    );

    // Everything the watcher hears until the leave, then nothing more.
    let deadline = Instant::now() + WAIT;
    while events.last().map(String::as_str) != Some("herald.leave") {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = tokio::time::timeout(left, watcher.next())
            .await
            .expect("the member leaves within the wait")
            .unwrap()
            .unwrap();
        events.push(event.event);
    }
    assert_eq!(events, ["herald.join", "herald.leave"]);
    let quiet = tokio::time::timeout(Duration::from_secs(2), watcher.next()).await;
    assert!(quiet.is_err(), "nothing after the leave: {quiet:?}");

    bin.wait_for_metric("herald_streams_open", 1.0).await;
    bin.assert_memory_returned("after the churn", baseline, RSS_SLACK_KIB)
        .await;
}
