//! Several herald nodes on one real Redis (SPEC §9), with real faults: a
//! node killed with SIGKILL, Redis killed and restarted with and without
//! AOF, a stalled connection, `CLIENT KILL`. Every test checks the promise
//! users rely on: each stream sees ids strictly increase, and every
//! acknowledged event is delivered or announced by a `herald.gap`.
//!
//! The long randomized version is `scripts/cluster-chaos.sh`.

mod chaos;
mod disconnect;
mod failover;
mod presence;
pub(crate) mod support;

use std::time::Duration;

use support::{
    assert_no_silent_loss, health, node, publish_retrying, publishers, wait_health, Follower, Item,
    Proxy, Redis,
};

use crate::helpers::{eventually, WAIT};

/// Publishes one event to each channel and returns the last id: a stream
/// that resumes from it is owed everything after it on all of them (a
/// channel created later would rightly announce a gap for its earlier life).
async fn warm_up(client: &reqwest::Client, nodes: &[String], channels: &[&str]) -> u64 {
    let mut last = 0;
    for channel in channels {
        last = publish_retrying(client, nodes, 0, channel, "start").await;
    }
    last
}

fn urls(nodes: &[&crate::helpers::Binary]) -> Vec<String> {
    nodes.iter().map(|n| n.url("")).collect()
}

#[tokio::test]
async fn three_nodes_deliver_every_event_everywhere_in_one_id_order() {
    let Some(redis) = Redis::start(&[]).await else {
        return;
    };
    let a = node(&redis.url(), &["--history", "50"]).await;
    let b = node(&redis.url(), &["--history", "50"]).await;
    let c = node(&redis.url(), &["--history", "50"]).await;
    let all = urls(&[&a, &b, &c]);
    let client = reqwest::Client::new();
    let start = warm_up(&client, &all, &["a", "b"]).await;

    // One multi-channel stream per node, each pinned to its node.
    let followers: Vec<Follower> = all
        .iter()
        .map(|u| Follower::start(vec![u.clone()], "/events?channel=a&channel=b", Some(start)))
        .collect();
    // Publishers on all three nodes, to the same two channels at once; in
    // the middle Redis drops every client connection (readers included).
    let running = publishers(
        all.clone(),
        &[0, 1, 2],
        &["a", "b"],
        30,
        Duration::from_millis(5),
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    redis.cmd(&["CLIENT", "KILL", "TYPE", "normal"]).await;
    let acked = running.await.unwrap();
    let newest = acked.last().unwrap().0;

    let mut sequences = Vec::new();
    for f in &followers {
        f.wait_for(newest, WAIT).await;
        let items = f.items();
        assert_no_silent_loss(&items, &acked, true);
        assert_eq!(
            f.streams.load(std::sync::atomic::Ordering::Relaxed),
            1,
            "no stream ended"
        );
        sequences.push(items);
    }
    assert!(
        sequences.windows(2).all(|w| w[0] == w[1]),
        "every node delivers the same events with the same ids"
    );

    // /channels is service-wide: each node counts the three streams.
    for n in [&a, &b, &c] {
        let url = n.url("/channels");
        let counted = || async {
            let rows: serde_json::Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
            rows.as_array()
                .unwrap()
                .iter()
                .find(|r| r["channel"] == "a")
                .map(|r| r["subscribers"].as_u64().unwrap())
        };
        let deadline = tokio::time::Instant::now() + WAIT;
        while counted().await != Some(3) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "/channels never counted 3"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    drop(followers);

    // A subscriber resumes on another node from the middle: exactly the
    // rest, and the history limit (50) is enforced in Redis with its gap.
    let middle = acked[acked.len() / 2].0;
    let resumed = Follower::start(vec![c.url("")], "/events?channel=a&channel=b", Some(middle));
    resumed.wait_for(newest, WAIT).await;
    let expected: Vec<_> = acked
        .iter()
        .filter(|(id, _)| *id > middle)
        .cloned()
        .collect();
    let items = resumed.items();
    assert_no_silent_loss(&items, &expected, true);
    assert_eq!(items.len(), expected.len());

    let mut trimmed = Vec::new();
    for i in 0..60 {
        trimmed.push(a.publish("t", &i.to_string()).await.parse::<u64>().unwrap());
    }
    let old = Follower::start(vec![b.url("")], "/events/t", Some(trimmed[0]));
    old.wait_for(trimmed[59], WAIT).await;
    let items = old.items();
    assert!(matches!(&items[0], Item::Gap { channel } if channel == "t"));
    assert_eq!(items.len(), 1 + 50, "the gap, then the 50 retained events");
    assert_eq!(
        items[1],
        Item::Event {
            id: trimmed[10],
            data: "10".into()
        }
    );
}

#[tokio::test]
async fn a_node_killed_with_sigkill_loses_nothing() {
    let Some(redis) = Redis::start(&[]).await else {
        return;
    };
    let mut a = node(&redis.url(), &[]).await;
    let b = node(&redis.url(), &[]).await;
    let c = node(&redis.url(), &[]).await;
    let all = urls(&[&a, &b, &c]);
    let client = reqwest::Client::new();
    let start = warm_up(&client, &all[1..], &["k1", "k2"]).await;

    // Subscribers start on node A; when it dies they move on like
    // EventSource does, with Last-Event-ID.
    let followers: Vec<Follower> = (0..3)
        .map(|_| Follower::start(all.clone(), "/events?channel=k1&channel=k2", Some(start)))
        .collect();
    let running = publishers(
        all[1..].to_vec(),
        &[0, 1],
        &["k1", "k2"],
        60,
        Duration::from_millis(5),
    );
    tokio::time::sleep(Duration::from_millis(150)).await;
    a.kill().await;
    let acked = running.await.unwrap();
    let newest = acked.last().unwrap().0;
    for f in &followers {
        f.wait_for(newest, WAIT).await;
        assert_no_silent_loss(&f.items(), &acked, true);
        assert!(
            f.streams.load(std::sync::atomic::Ordering::Relaxed) >= 2,
            "moved to another node"
        );
    }
}

async fn redis_restart(aof: bool) {
    let extra: &[&str] = if aof {
        &["--appendonly", "yes", "--appendfsync", "always"]
    } else {
        &[]
    };
    let Some(mut redis) = Redis::start(extra).await else {
        return;
    };
    let a = node(&redis.url(), &[]).await;
    let b = node(&redis.url(), &[]).await;
    let all = urls(&[&a, &b]);
    let client = reqwest::Client::new();
    let start = warm_up(&client, &all, &["r1", "r2"]).await;
    let followers: Vec<Follower> = [0, 1]
        .iter()
        .map(|&i| {
            let mut order = all.clone();
            order.rotate_left(i);
            Follower::start(order, "/events?channel=r1&channel=r2", Some(start))
        })
        .collect();
    let running = publishers(
        all.clone(),
        &[0, 1],
        &["r1", "r2"],
        40,
        Duration::from_millis(20),
    );
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Redis away for 3 s: the nodes say so, and refuse what they cannot do.
    redis.kill();
    wait_health(&a, 503).await;
    wait_health(&b, 503).await;
    let refused = client
        .post(a.url("/publish/r1"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "backend_unavailable");
    let retry = client.get(b.url("/events/r1")).send().await.unwrap();
    assert_eq!(retry.status(), 200);
    assert!(retry.text().await.unwrap().starts_with("retry: "));
    tokio::time::sleep(Duration::from_secs(3)).await;
    redis.restart().await;

    let acked = running.await.unwrap();
    let newest = acked.last().unwrap().0;
    for f in &followers {
        f.wait_for(newest, 2 * WAIT).await;
        assert_no_silent_loss(&f.items(), &acked, aof);
    }
    assert_eq!(health(&a).await, Some(200));
    if !aof {
        // Redis came back empty: every node noticed and said so.
        for n in [&a, &b] {
            eventually("the node resynced", || n.logged("lost its data")).await;
        }
    }
}

#[tokio::test]
async fn redis_restarted_without_persistence_is_never_a_silent_loss() {
    redis_restart(false).await;
}

#[tokio::test]
async fn redis_restarted_with_aof_loses_nothing() {
    redis_restart(true).await;
}

#[tokio::test]
async fn redis_rolled_back_to_an_older_snapshot_announces_what_it_lost() {
    let Some(mut redis) = Redis::start(&[]).await else {
        return;
    };
    let a = node(&redis.url(), &[]).await;
    let b = node(&redis.url(), &[]).await;
    let client = reqwest::Client::new();
    let start = warm_up(&client, &urls(&[&a, &b]), &["v"]).await;
    let live = Follower::start(vec![a.url("")], "/events/v", Some(start));
    let mut acked = Vec::new();
    for i in 0..10 {
        if i == 5 {
            redis.cmd(&["SAVE"]).await;
        }
        let id: u64 = b.publish("v", &i.to_string()).await.parse().unwrap();
        acked.push((id, "v".to_owned()));
    }
    live.wait_for(acked[9].0, WAIT).await;

    // Back to the snapshot: the last five acknowledged events are gone.
    redis.restart().await;
    let after = publish_retrying(&client, &urls(&[&a, &b]), 0, "v", "after").await;
    assert!(after > acked[9].0, "no id is issued twice");
    acked.push((after, "v".to_owned()));
    live.wait_for(after, WAIT).await;
    // The live stream saw events the service no longer has: it is told too
    // (SPEC §14), after them, and nothing is lost or repeated.
    let items = live.items();
    assert_no_silent_loss(&items, &acked, false);
    let last_lost = items
        .iter()
        .position(|i| matches!(i, Item::Event { id, .. } if *id == acked[9].0))
        .unwrap();
    assert!(
        items[last_lost..].contains(&Item::Gap {
            channel: "v".into()
        }),
        "{items:?}"
    );
    eventually("a node logs the rollback", || {
        a.logged("rolled back") || b.logged("rolled back")
    })
    .await;

    // Whoever saw less than that is told: from before the lost events, and
    // from among them.
    for from in [acked[4].0, acked[6].0] {
        let f = Follower::start(vec![b.url("")], "/events/v", Some(from));
        f.wait_for(after, WAIT).await;
        let items = f.items();
        assert!(matches!(&items[0], Item::Gap { .. }), "{items:?}");
        let from_here: Vec<_> = acked.iter().filter(|(id, _)| *id > from).cloned().collect();
        assert_no_silent_loss(&items, &from_here, false);
    }
}

/// The rollback seen from the log instead: the node that applied the lost
/// events comes back only after others published again.
#[tokio::test]
async fn a_rollback_found_in_the_log_raises_the_floor_too() {
    let Some(mut redis) = Redis::start(&[]).await else {
        return;
    };
    let proxy = Proxy::start(redis.port).await;
    let a = node(&proxy.url(), &["--redis-timeout", "1s"]).await;
    let mut ids = Vec::new();
    for i in 0..10 {
        if i == 5 {
            redis.cmd(&["SAVE"]).await;
        }
        ids.push(a.publish("w", &i.to_string()).await.parse::<u64>().unwrap());
    }
    proxy.stall(true);
    wait_health(&a, 503).await;
    redis.restart().await; // back to the snapshot: ids[5..] are gone
    let c = node(&redis.url(), &[]).await; // knows nothing of them
    let after: u64 = c.publish("w", "after").await.parse().unwrap();
    proxy.stall(false);
    eventually("node A finds the rollback in the log", || {
        a.logged("rolled back")
    })
    .await;

    // Ids were issued past the lost ones before node A came back: A's
    // gap record (SPEC §14) raised the floor above `after`, so a stream
    // resuming from among the lost ids is told, and gets what follows.
    assert!(after > ids[9], "no id is issued twice");
    let later: u64 = c.publish("w", "later").await.parse().unwrap();
    let f = Follower::start(vec![c.url("")], "/events/w", Some(ids[6]));
    f.wait_for(later, WAIT).await;
    assert!(matches!(&f.items()[0], Item::Gap { .. }), "{:?}", f.items());
}

#[tokio::test]
async fn a_stalled_redis_connection_is_noticed_within_the_timeout() {
    let Some(redis) = Redis::start(&[]).await else {
        return;
    };
    let proxy = Proxy::start(redis.port).await;
    let a = node(
        &proxy.url(),
        &["--redis-timeout", "1s", "--redis-log-len", "100"],
    )
    .await;
    let b = node(&redis.url(), &[]).await;
    let client = reqwest::Client::new();
    let start = publish_retrying(&client, &[b.url("")], 0, "s", "start").await;
    let follower = Follower::start(urls(&[&a, &b]), "/events/s", Some(start));
    tokio::time::sleep(Duration::from_millis(200)).await;

    proxy.stall(true);
    let stalled_at = tokio::time::Instant::now();
    wait_health(&a, 503).await;
    let noticed = stalled_at.elapsed();
    assert!(
        noticed <= Duration::from_millis(2500),
        "noticed after {noticed:?} (timeout 1s)"
    );
    let refused = client
        .post(a.url("/publish/s"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 503);

    // Meanwhile the service goes on; more events than the log keeps.
    let mut acked = Vec::new();
    for i in 0..250 {
        let id = publish_retrying(&client, &[b.url("")], 0, "s", &format!("e{i}")).await;
        acked.push((id, "s".to_owned()));
    }
    let newest = acked.last().unwrap().0;
    follower.wait_for(newest, WAIT).await;
    assert_no_silent_loss(&follower.items(), &acked, true);
    assert!(
        follower.streams.load(std::sync::atomic::Ordering::Relaxed) >= 2,
        "moved off A"
    );

    // Back: A catches up with Redis and serves the whole history again.
    proxy.stall(false);
    wait_health(&a, 200).await;
    let fresh = Follower::start(vec![a.url("")], "/events/s", Some(start));
    fresh.wait_for(newest, WAIT).await;
    assert_no_silent_loss(&fresh.items(), &acked, true);
}

#[tokio::test]
async fn channels_live_in_redis_with_their_ttl_and_eviction_is_warned_about() {
    let Some(redis) = Redis::start(&["--maxmemory-policy", "allkeys-lru"]).await else {
        return;
    };
    let a = node(&redis.url(), &["--channel-ttl", "1s"]).await;
    let b = node(&redis.url(), &["--channel-ttl", "1s"]).await;
    eventually("the startup warning", || a.logged("maxmemory-policy")).await;

    let gone = a.publish("gone", "1").await;
    a.publish("kept", "1").await;
    let _keeper = Follower::start(vec![b.url("")], "/events/kept", None);
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let rows = a.channels().await;
    let names: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["channel"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["kept"],
        "an idle channel expired in Redis, a subscribed one did not"
    );
    assert_eq!(
        redis.cmd(&["EXISTS", "herald{h}:s:gone"]).await,
        redis::Value::Int(0)
    );
    // Recreated, it cannot replay its earlier life: a gap, not silence.
    let back = Follower::start(vec![b.url("")], "/events/gone", Some(gone.parse().unwrap()));
    let id = a.publish("gone", "2").await;
    back.wait_for(id.parse().unwrap(), WAIT).await;
    assert!(
        matches!(&back.items()[0], Item::Gap { .. }),
        "{:?}",
        back.items()
    );
}

#[tokio::test]
async fn the_channel_limit_counts_the_whole_service() {
    let Some(redis) = Redis::start(&[]).await else {
        return;
    };
    let a = node(&redis.url(), &["--max-channels", "2"]).await;
    let b = node(&redis.url(), &["--max-channels", "2"]).await;
    a.publish("one", "1").await;
    b.publish("two", "2").await;
    let refused = a
        .client
        .post(a.url("/publish/three"))
        .body("3")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 503);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "channel_limit");
    let retry = b.client.get(b.url("/events/four")).send().await.unwrap();
    assert_eq!(retry.status(), 200);
    assert!(retry.text().await.unwrap().contains("too many channels"));
    b.publish("one", "still fine").await;

    // A node started with other limits is told it disagrees.
    assert!(!b.logged("different history or channel limits"));
    let odd = node(&redis.url(), &["--max-channels", "2", "--history", "7"]).await;
    eventually("the warning", || {
        odd.logged("different history or channel limits")
    })
    .await;
}

/// With Redis away, a WebSocket's publish message and a new upgrade are
/// refused as `backend_unavailable`, each counted once under that reason
/// (SPEC §4: an operator reads the cause from `/metrics`), and the open
/// socket keeps being served.
#[tokio::test]
async fn with_redis_away_websocket_refusals_are_counted_once_as_backend_unavailable() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::{Error, Message};
    let Some(mut redis) = Redis::start(&[]).await else {
        return;
    };
    // Open sockets outlive the outage in this test.
    let a = node(&redis.url(), &["--redis-timeout", "60s"]).await;
    let url = a.url("/events/w").replacen("http://", "ws://", 1);
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    redis.kill();
    wait_health(&a, 503).await;
    let counted = |reason: &str| format!("herald_requests_rejected_total{{reason=\"{reason}\"}}");
    let before = a.metric(&counted("backend_unavailable")).await;

    let publish = r#"{"type":"publish","channel":"w","data":"x"}"#;
    ws.send(Message::text(publish)).await.unwrap();
    let answer = crate::websocket::next_json(&mut ws).await;
    assert_eq!(answer["type"], "error", "{answer}");
    assert_eq!(answer["error"], "backend_unavailable", "{answer}");
    assert_eq!(
        a.metric(&counted("backend_unavailable")).await,
        before + 1.0
    );

    match tokio_tungstenite::connect_async(&url).await {
        Err(Error::Http(response)) => {
            assert_eq!(response.status(), 503);
            assert!(response.headers().contains_key("retry-after"));
        }
        other => panic!("expected a 503, got {other:?}"),
    }
    assert_eq!(
        a.metric(&counted("backend_unavailable")).await,
        before + 2.0
    );
    assert_eq!(a.metric(&counted("channel_limit")).await, 0.0);

    // The socket is still served: its next message is answered too.
    ws.send(Message::text(publish)).await.unwrap();
    let answer = crate::websocket::next_json(&mut ws).await;
    assert_eq!(answer["error"], "backend_unavailable", "{answer}");
}

/// The publish script trims each channel in Redis exactly as one node's
/// ring buffer does (`--history` events, `--history-bytes` of data, the
/// newest always kept), and records the same mark: every resume point gets
/// the same answer from a node on Redis as from a single node.
#[tokio::test]
async fn redis_trims_history_exactly_like_a_single_node() {
    let Some(redis) = Redis::start(&[]).await else {
        return;
    };
    let limits = ["--history", "5", "--history-bytes", "40"];
    let clustered = node(&redis.url(), &limits).await;
    let single = crate::helpers::Binary::start(&limits).await;
    let sizes = [1, 30, 2, 9, 17, 40, 3, 3, 3, 3, 25, 1, 60, 2, 2, 12];
    let (mut on_redis, mut on_one) = (Vec::new(), Vec::new());
    for (i, n) in sizes.iter().enumerate() {
        let data = format!("{i}{}", "x".repeat(*n));
        on_redis.push(clustered.publish("h", &data).await.parse::<u64>().unwrap());
        on_one.push(single.publish("h", &data).await.parse::<u64>().unwrap());
    }
    let answer = |f: &Follower| -> Vec<String> {
        f.items()
            .iter()
            .map(|i| match i {
                Item::Gap { .. } => "gap".to_owned(),
                Item::Event { data, .. } => data.clone(),
            })
            .collect()
    };
    for k in 0..sizes.len() - 1 {
        let a = Follower::start(vec![clustered.url("")], "/events/h", Some(on_redis[k]));
        let b = Follower::start(vec![single.url("")], "/events/h", Some(on_one[k]));
        a.wait_for(*on_redis.last().unwrap(), WAIT).await;
        b.wait_for(*on_one.last().unwrap(), WAIT).await;
        assert_eq!(answer(&a), answer(&b), "resuming after event {k}");
    }
}

#[tokio::test]
async fn redis_with_data_dir_is_refused_at_startup() {
    let dir = std::env::temp_dir().join(format!("herald-redis-datadir-{}", std::process::id()));
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--redis",
            "redis://127.0.0.1:1/0",
            "--data-dir",
        ])
        .arg(&dir)
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--redis and --data-dir"), "{stderr}");
    assert!(!dir.exists(), "nothing was written");
}
