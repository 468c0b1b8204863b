//! Presence across nodes (SPEC §7 with §9): real herald binaries on one
//! real Redis. Membership, snapshots, joins and leaves are the service's,
//! a member is one member whichever nodes it is connected to, and the
//! members of a node killed with SIGKILL leave once, within the grace plus
//! the node timeout.

use std::time::Duration;

use serde_json::Value;

use super::support::{node, Redis};
use crate::helpers::{eventually_async, Binary, Sse};
use crate::presence::{member, notice, subs, PUBLISH_TOKEN, ROOM, SECRET};

const GRACE: Duration = Duration::from_millis(500);

/// A node with access control, a short grace, and (with `--channel-ttl 2s`)
/// a heartbeat every 500 ms, so the node timeout is its floor of 3 s.
async fn presence_node(redis: &Redis) -> Binary {
    node(
        &redis.url(),
        &[
            "--jwt-secret",
            SECRET,
            "--publish-token",
            PUBLISH_TOKEN,
            "--presence-grace",
            "500ms",
            "--channel-ttl",
            "2s",
        ],
    )
    .await
}

async fn stream(node: &Binary, token: &str) -> Sse {
    let response = node
        .client
        .get(node.url(&format!("/events/{ROOM}?token={token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    Sse::from_response(response)
}

async fn roster(node: &Binary) -> Value {
    node.client
        .get(node.url(&format!("/channels/{ROOM}/presence")))
        .bearer_auth(PUBLISH_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Publishes a marker through `node` and checks it is the next thing `sse`
/// sees: no join or leave came before it.
async fn nothing_before_a_marker(node: &Binary, sse: &mut Sse, marker: &str) {
    let response = node
        .client
        .post(node.url(&format!("/publish/{ROOM}")))
        .bearer_auth(PUBLISH_TOKEN)
        .body(marker.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let next = sse.next().await;
    assert_eq!(
        (next.event.as_str(), next.data.as_str()),
        ("message", marker)
    );
}

#[tokio::test]
async fn members_joins_leaves_and_the_roster_are_the_services() {
    let Some(redis) = Redis::start(&[]).await else {
        return;
    };
    let a = presence_node(&redis).await;
    let b = presence_node(&redis).await;
    let mut watcher = stream(&b, PUBLISH_TOKEN).await;
    assert_eq!(notice(&mut watcher).await.0, "herald.presence");

    // A member on A: B's watcher is told
    let mut ada = stream(&a, &member("1", "Ada")).await;
    let (_, snapshot) = notice(&mut ada).await;
    assert_eq!(subs(&snapshot), vec!["1"]);
    let (kind, join) = notice(&mut watcher).await;
    assert_eq!(
        (kind.as_str(), join["sub"].as_str()),
        ("herald.join", Some("1"))
    );

    // A member on B: its snapshot lists A's member; A's member is told
    let mut bo = stream(&b, &member("2", "Bo")).await;
    let (_, snapshot) = notice(&mut bo).await;
    assert_eq!(
        (snapshot["count"].as_u64(), subs(&snapshot)),
        (Some(2), vec!["1", "2"])
    );
    assert_eq!(snapshot["members"][0]["info"]["name"], "Ada");
    let (kind, join) = notice(&mut ada).await;
    assert_eq!(
        (kind.as_str(), join["sub"].as_str()),
        ("herald.join", Some("2"))
    );
    assert_eq!(notice(&mut watcher).await.1["sub"], "2");
    nothing_before_a_marker(&a, &mut bo, "no join for itself").await;
    assert_eq!(watcher.next().await.data, "no join for itself");

    // Both nodes give the same roster
    let on_a = roster(&a).await;
    assert_eq!(on_a, roster(&b).await);
    assert_eq!(
        (
            on_a["count"].as_u64(),
            on_a["members"][1]["connections"].as_u64()
        ),
        (Some(2), Some(1))
    );

    // A's member goes: after the grace, B's streams are told
    drop(ada);
    for sse in [&mut watcher, &mut bo] {
        let (kind, leave) = notice(sse).await;
        assert_eq!(
            (
                kind.as_str(),
                leave["sub"].as_str(),
                leave["info"]["name"].as_str()
            ),
            ("herald.leave", Some("1"), Some("Ada"))
        );
    }
    assert_eq!(subs(&roster(&b).await), vec!["2"]);
    // A applies the same leave record as it reads the log, which may be a
    // moment after B's streams were told.
    eventually_async("A's roster loses the member", || async {
        subs(&roster(&a).await) == ["2"]
    })
    .await;
}

#[tokio::test]
async fn a_member_on_two_nodes_is_one_member_until_both_are_gone_and_a_new_node_knows_it() {
    let Some(redis) = Redis::start(&[]).await else {
        return;
    };
    let a = presence_node(&redis).await;
    let b = presence_node(&redis).await;
    let mut watcher = stream(&a, PUBLISH_TOKEN).await;
    assert_eq!(notice(&mut watcher).await.0, "herald.presence");

    let token = member("1", "Ada");
    let on_a = stream(&a, &token).await;
    let on_b = stream(&b, &token).await;
    assert_eq!(notice(&mut watcher).await.0, "herald.join");
    nothing_before_a_marker(&a, &mut watcher, "one join").await;
    let listed = roster(&b).await;
    assert_eq!(
        (
            listed["count"].as_u64(),
            listed["members"][0]["connections"].as_u64()
        ),
        (Some(1), Some(2))
    );
    // A node started now loads the members from Redis
    let c = presence_node(&redis).await;
    assert_eq!(roster(&c).await, listed);

    // Its stream on A ends; longer than the grace passes: still a member
    drop(on_a);
    tokio::time::sleep(3 * GRACE).await;
    nothing_before_a_marker(&a, &mut watcher, "still here").await;
    assert_eq!(roster(&a).await["members"][0]["connections"], 1);

    // Its stream on B ends too: one leave
    drop(on_b);
    assert_eq!(notice(&mut watcher).await.0, "herald.leave");
    nothing_before_a_marker(&a, &mut watcher, "one leave").await;
}

#[tokio::test]
async fn the_members_of_a_killed_node_leave_once_within_the_grace_plus_the_node_timeout() {
    let Some(redis) = Redis::start(&[]).await else {
        return;
    };
    let a = presence_node(&redis).await;
    let b = presence_node(&redis).await;
    let c = presence_node(&redis).await;
    let mut watchers = [
        stream(&b, PUBLISH_TOKEN).await,
        stream(&c, PUBLISH_TOKEN).await,
    ];
    let _ada = stream(&a, &member("1", "Ada")).await;
    let _bo = stream(&a, &member("2", "Bo")).await;
    for watcher in &mut watchers {
        assert_eq!(notice(watcher).await.0, "herald.presence");
        assert_eq!(notice(watcher).await.0, "herald.join");
        assert_eq!(notice(watcher).await.0, "herald.join");
    }

    // SIGKILL: A's sockets are closed by the kernel, but A counts nothing
    // out; the others must notice A is gone.
    let killed = tokio::time::Instant::now();
    a.kill9().await;

    // Each watcher gets each leave once
    let node_timeout = Duration::from_secs(3);
    for (watcher, via) in watchers.iter_mut().zip([&b, &c]) {
        let mut left = Vec::new();
        for _ in 0..2 {
            let (kind, leave) = notice(watcher).await;
            assert_eq!(kind, "herald.leave");
            left.push(leave["sub"].as_str().unwrap().to_owned());
        }
        left.sort();
        assert_eq!(left, ["1", "2"]);
        nothing_before_a_marker(via, watcher, "each leave once").await;
    }
    let took = killed.elapsed();
    eprintln!("members of the killed node left {took:?} after the kill");
    // The bound: the node timeout, then a survivor's next heartbeat (every
    // 500 ms), then the grace; slack for a loaded machine.
    assert!(
        took < node_timeout + Duration::from_millis(500) + GRACE + Duration::from_secs(3),
        "left {took:?} after the kill"
    );
    assert_eq!(roster(&b).await["count"], 0);
}

#[tokio::test]
async fn a_node_shut_down_counts_its_members_out_at_once() {
    let Some(redis) = Redis::start(&[]).await else {
        return;
    };
    let a = presence_node(&redis).await;
    let b = presence_node(&redis).await;
    let mut watcher = stream(&b, PUBLISH_TOKEN).await;
    assert_eq!(notice(&mut watcher).await.0, "herald.presence");
    let _ada = stream(&a, &member("1", "Ada")).await;
    assert_eq!(notice(&mut watcher).await.0, "herald.join");

    // SIGTERM: A ends its streams and counts its members out on the way
    let sent = tokio::time::Instant::now();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &a.pid().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());

    // The leave comes one grace later, not after the node timeout (3 s)
    let (kind, leave) = notice(&mut watcher).await;
    assert_eq!(
        (kind.as_str(), leave["sub"].as_str()),
        ("herald.leave", Some("1"))
    );
    let took = sent.elapsed();
    assert!(took < Duration::from_secs(3), "left {took:?} after SIGTERM");
    nothing_before_a_marker(&b, &mut watcher, "one leave").await;
}

#[tokio::test]
async fn a_websocket_member_on_one_node_is_seen_from_another() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;

    let Some(redis) = Redis::start(&[]).await else {
        return;
    };
    let a = presence_node(&redis).await;
    let b = presence_node(&redis).await;
    let mut watcher = stream(&b, PUBLISH_TOKEN).await;
    assert_eq!(notice(&mut watcher).await.0, "herald.presence");

    // A WebSocket member on A: its snapshot first, and B's watcher is told
    let url = format!("ws://{}/events/{ROOM}?token={}", a.addr, member("1", "Ada"));
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let first = loop {
        match socket.next().await.unwrap().unwrap() {
            Message::Text(text) => break serde_json::from_str::<Value>(&text).unwrap(),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(first["event"], "herald.presence");
    let snapshot: Value = serde_json::from_str(first["data"].as_str().unwrap()).unwrap();
    assert_eq!(subs(&snapshot), vec!["1"]);
    let (kind, join) = notice(&mut watcher).await;
    assert_eq!(
        (kind.as_str(), join["sub"].as_str()),
        ("herald.join", Some("1"))
    );

    // It closes: B's watcher is told it left
    drop(socket);
    assert_eq!(notice(&mut watcher).await.0, "herald.leave");
}
