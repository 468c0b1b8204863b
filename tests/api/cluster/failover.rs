//! High availability on Redis (SPEC §14), on real processes: Debian's
//! redis-server as primary and replica, three redis-sentinel processes
//! (short down-after-milliseconds), herald nodes as child processes given
//! only the Sentinels. Faults are made for real: the primary killed with
//! SIGKILL under publish load, the replica stopped with SIGSTOP, a
//! Sentinel killed, no Sentinel at all.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use super::support::{
    assert_no_silent_loss, free_port, node, publishers, publishers_until, Acked, Follower, Item,
    Redis, Report,
};
use super::{urls, warm_up};
use crate::helpers::{eventually_async, herald_bin, WAIT};

/// How long Sentinel waits before it takes the primary for down. Short, but
/// not so short that a loaded CI box makes it fail over on its own.
const DOWN_AFTER_MS: u64 = 2000;

/// The service name the Sentinels monitor.
const MASTER: &str = "mymaster";

/// A redis-sentinel child process, killed when dropped.
struct Sentinel {
    child: Option<std::process::Child>,
    port: u16,
}

impl Sentinel {
    fn start(dir: &std::path::Path, primary: u16) -> Sentinel {
        for _ in 0..5 {
            let port = free_port();
            // Sentinel rewrites its configuration file: one per Sentinel.
            let conf = dir.join(format!("sentinel-{port}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                     sentinel monitor {MASTER} 127.0.0.1 {primary} 2\n\
                     sentinel down-after-milliseconds {MASTER} {DOWN_AFTER_MS}\n\
                     sentinel failover-timeout {MASTER} 4000\n",
                    dir = dir.display()
                ),
            )
            .unwrap();
            let mut child = std::process::Command::new("redis-sentinel")
                .arg(&conf)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("redis-sentinel starts");
            std::thread::sleep(Duration::from_millis(200));
            if matches!(child.try_wait(), Ok(None)) {
                return Sentinel {
                    child: Some(child),
                    port,
                };
            }
        }
        panic!("redis-sentinel did not start");
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One primary, one replica (or two), three Sentinels.
struct Ha {
    primary: Redis,
    replica: Redis,
    /// A second replica: with `--redis-replicas 1`, the new primary needs
    /// one to confirm publishes once the old one is dead.
    second: Option<Redis>,
    sentinels: Vec<Sentinel>,
    dir: PathBuf,
}

impl Drop for Ha {
    fn drop(&mut self) {
        // A stopped replica would outlive the test otherwise.
        let _ = std::process::Command::new("kill")
            .args(["-CONT", &self.replica.pid().to_string()])
            .status();
        for s in &mut self.sentinels {
            s.kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One command to a Redis or Sentinel port; `None` when it does not answer.
async fn cmd(port: u16, args: &[&str]) -> Option<redis::Value> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).ok()?;
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(Duration::from_secs(2)));
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .ok()?;
    let mut c = redis::cmd(args[0]);
    for arg in &args[1..] {
        c.arg(*arg);
    }
    c.query_async(&mut conn).await.ok()
}

fn text(v: &redis::Value) -> String {
    match v {
        redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        redis::Value::SimpleString(s) => s.clone(),
        redis::Value::VerbatimString { text, .. } => text.clone(),
        other => format!("{other:?}"),
    }
}

impl Ha {
    /// `None` when redis-server or redis-sentinel is not installed and this
    /// is not CI (then the test is skipped).
    async fn start() -> Option<Ha> {
        Ha::start_with(1).await
    }

    async fn start_with(replicas: usize) -> Option<Ha> {
        let installed = std::process::Command::new("redis-sentinel")
            .arg("--version")
            .output()
            .is_ok();
        if !installed {
            assert!(
                std::env::var_os("CI").is_none(),
                "redis-sentinel is not installed (.ci/run installs it)"
            );
            eprintln!("skipped: redis-sentinel is not installed");
            return None;
        }
        let primary = Redis::start(&[]).await?;
        let port = primary.port.to_string();
        let replica = Redis::start(&["--replicaof", "127.0.0.1", &port]).await?;
        let second = match replicas {
            1 => None,
            _ => Some(Redis::start(&["--replicaof", "127.0.0.1", &port]).await?),
        };
        let dir = std::env::temp_dir().join(format!(
            "herald-sentinel-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let sentinels = (0..3)
            .map(|_| Sentinel::start(&dir, primary.port))
            .collect();
        let ha = Ha {
            primary,
            replica,
            second,
            sentinels,
            dir,
        };
        // The replica in sync, and every Sentinel knows it and the others
        // (Sentinels learn replicas from INFO, every 10 s at first).
        let deadline = tokio::time::Instant::now() + 6 * WAIT;
        loop {
            let mut ready = true;
            for r in std::iter::once(&ha.replica).chain(&ha.second) {
                ready &= cmd(r.port, &["INFO", "replication"])
                    .await
                    .is_some_and(|v| text(&v).contains("master_link_status:up"));
            }
            for s in &ha.sentinels {
                let known = cmd(s.port, &["SENTINEL", "replicas", MASTER]).await;
                let known = matches!(&known, Some(redis::Value::Array(r)) if r.len() == replicas);
                let quorum = cmd(s.port, &["SENTINEL", "ckquorum", MASTER])
                    .await
                    .is_some_and(|v| text(&v).starts_with("OK 3"));
                ready &= known && quorum;
            }
            if ready {
                return Some(ha);
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the Sentinels never got ready"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        format!("redis+sentinel://{}/{MASTER}/0", hosts.join(","))
    }

    /// The primary's port as the Sentinels that answer name it.
    async fn named_primary(&self) -> Option<u16> {
        for s in &self.sentinels {
            if s.child.is_none() {
                continue;
            }
            if let Some(redis::Value::Array(addr)) =
                cmd(s.port, &["SENTINEL", "get-master-addr-by-name", MASTER]).await
            {
                return text(addr.get(1)?).parse().ok();
            }
        }
        None
    }

    /// Waits until the Sentinels name a primary other than `old`.
    async fn wait_failover(&self, old: u16) -> u16 {
        let deadline = tokio::time::Instant::now() + 6 * WAIT;
        loop {
            if let Some(port) = self.named_primary().await {
                if port != old {
                    return port;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "Sentinel never promoted the replica"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The server on `port`.
    fn server(&mut self, port: u16) -> &mut Redis {
        std::iter::once(&mut self.primary)
            .chain(std::iter::once(&mut self.replica))
            .chain(self.second.as_mut())
            .find(|r| r.port == port)
            .expect("one of ours")
    }

    /// Waits until the primary the Sentinels name has every other server
    /// as a replica in sync.
    async fn wait_replicas_synced(&self) {
        let want = 1 + usize::from(self.second.is_some());
        let deadline = tokio::time::Instant::now() + 6 * WAIT;
        loop {
            if let Some(primary) = self.named_primary().await {
                let info = cmd(primary, &["INFO", "replication"]).await;
                let online = info.map_or(0, |v| text(&v).matches("state=online").count());
                if online >= want {
                    return;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the replicas never got in sync"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn signal(&self, which: &str, pid: u32) {
        let status = std::process::Command::new("kill")
            .args([which, &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

/// Publishes once through `base`, with an optional idempotency key: status,
/// `Retry-After`, `Idempotent-Replayed`, body.
async fn publish_once(
    client: &reqwest::Client,
    base: &str,
    channel: &str,
    data: &str,
    key: Option<&str>,
) -> (u16, Option<String>, bool, String) {
    let mut request = client
        .post(format!("{base}/publish/{channel}"))
        .body(data.to_owned())
        .timeout(3 * WAIT);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request.send().await.expect("the node answers");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let retry_after = header("retry-after");
    let replayed = header("idempotent-replayed").as_deref() == Some("true");
    let status = response.status().as_u16();
    (
        status,
        retry_after,
        replayed,
        response.text().await.unwrap(),
    )
}

/// Publishes through exactly `base` until it answers 200 (each node must
/// come back by itself, without a restart): the id.
async fn publish_on(client: &reqwest::Client, base: &str, channel: &str, data: &str) -> u64 {
    let deadline = tokio::time::Instant::now() + 3 * WAIT;
    loop {
        let (status, _, _, body) = publish_once(client, base, channel, data, None).await;
        if status == 200 {
            let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
            return answer["id"].as_str().unwrap().parse().unwrap();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{base} never published again after the failover"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The primary killed with SIGKILL while two nodes publish and four streams
/// (two per node, multi-channel) follow; returns the acknowledged events
/// and what each stream received.
async fn kill_the_primary_under_load(replicas: &str) -> Option<(Vec<Acked>, Vec<Vec<Item>>)> {
    // With --redis-replicas 1 the new primary needs a replica of its own.
    let mut ha = Ha::start_with(if replicas == "0" { 1 } else { 2 }).await?;
    let url = ha.url();
    let extra = ["--redis-replicas", replicas, "--redis-timeout", "5s"];
    let a = node(&url, &extra).await;
    let b = node(&url, &extra).await;
    let all = urls(&[&a, &b]);
    let client = reqwest::Client::new();
    let start = warm_up(&client, &all, &["a", "b"]).await;
    let path = "/events?channel=a&channel=b";
    let followers: Vec<Follower> = [0, 1, 0, 1]
        .iter()
        .map(|&first| {
            let mut nodes = all.clone();
            nodes.rotate_left(first);
            Follower::start(nodes, path, Some(start))
        })
        .collect();
    let running = publishers(
        all.clone(),
        &[0, 1],
        &["a", "b"],
        80,
        Duration::from_millis(25),
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    let old = ha.primary.port;
    ha.primary.kill();
    let new = ha.wait_failover(old).await;
    let replicas_ports: Vec<u16> = std::iter::once(&ha.replica)
        .chain(&ha.second)
        .map(|r| r.port)
        .collect();
    assert!(replicas_ports.contains(&new), "a replica was promoted");
    let mut acked = running.await.unwrap();
    // Both nodes publish again by themselves.
    for (i, base) in all.iter().enumerate() {
        let channel = ["a", "b"][i];
        let id = publish_on(&client, base, channel, "after").await;
        acked.push((id, channel.to_owned()));
    }
    acked.sort_unstable();
    let mut ids: Vec<u64> = acked.iter().map(|(id, _)| *id).collect();
    ids.dedup();
    assert_eq!(ids.len(), acked.len(), "an id was acknowledged twice");
    let last = acked.last().unwrap().0;
    for f in &followers {
        f.wait_for(last, 3 * WAIT).await;
    }
    Some((acked, followers.iter().map(Follower::items).collect()))
}

/// SPEC §14 with `--redis-replicas 1`: a failover loses no acknowledged
/// event, and as nothing unconfirmed is delivered either, every stream that
/// stays gets each event exactly once, in id order, with no gap at all.
#[tokio::test]
async fn a_killed_primary_with_one_replica_confirming_loses_nothing() {
    let Some((acked, streams)) = kill_the_primary_under_load("1").await else {
        return;
    };
    for items in &streams {
        assert_no_silent_loss(items, &acked, true);
        let report = Report::of(items, &acked);
        assert_eq!(report.duplicated, 0, "{items:?}");
    }
}

/// The same with `--redis-replicas 0`: asynchronous replication may lose
/// the last events, but never silently, and no id is issued twice.
#[tokio::test]
async fn a_killed_primary_without_confirmation_loses_nothing_silently() {
    let Some((acked, streams)) = kill_the_primary_under_load("0").await else {
        return;
    };
    for items in &streams {
        let report = Report::of(items, &acked);
        assert_eq!(report.lost, 0, "lost without a herald.gap: {items:?}");
        assert_one_event_per_id(items);
    }
}

/// No id ever names two different events, and ids increase except where a
/// `herald.gap` restarts the replay of a channel (SPEC §2).
fn assert_one_event_per_id(items: &[Item]) {
    let mut by_id: HashMap<u64, &str> = HashMap::new();
    let mut previous = 0;
    let mut after_gap = false;
    for item in items {
        match item {
            Item::Gap { .. } => after_gap = true,
            Item::Event { id, data } => {
                if let Some(other) = by_id.insert(*id, data) {
                    assert_eq!(other, data, "two events under id {id}");
                }
                assert!(
                    *id > previous || after_gap,
                    "id {id} after {previous} with no gap between: {items:?}"
                );
                if *id > previous {
                    after_gap = false;
                }
                previous = previous.max(*id);
            }
        }
    }
}

/// The replica stopped: nothing can be confirmed, so a publish is answered
/// 503 with `Retry-After` within `--redis-timeout`, nothing hangs, and once
/// the replica is back a retry with the same `Idempotency-Key` gets the
/// first publish's answer rather than a second copy.
#[tokio::test]
async fn a_stopped_replica_makes_publishes_503_in_time_and_a_keyed_retry_publishes_once() {
    let Some(ha) = Ha::start().await else {
        return;
    };
    let a = node(
        &ha.url(),
        &["--redis-replicas", "1", "--redis-timeout", "2s"],
    )
    .await;
    let client = reqwest::Client::new();
    let base = a.url("");
    let start = publish_on(&client, &base, "s", "before").await;
    let follower = Follower::start(vec![base.clone()], "/events/s", Some(start));

    ha.signal("-STOP", ha.replica.pid());
    let began = tokio::time::Instant::now();
    let (status, retry_after, _, body) =
        publish_once(&client, &base, "s", "while-stopped", Some("k1")).await;
    let took = began.elapsed();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("backend_unavailable"), "{body}");
    assert!(retry_after.is_some(), "a Retry-After");
    // Bounded by --redis-timeout (2 s), with room for a loaded machine.
    assert!(took < 4 * Duration::from_secs(2), "took {took:?}");
    // Other requests are answered meanwhile.
    assert_eq!(
        client
            .get(a.url("/channels"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    ha.signal("-CONT", ha.replica.pid());
    let deadline = tokio::time::Instant::now() + 3 * WAIT;
    let id = loop {
        let (status, _, replayed, body) =
            publish_once(&client, &base, "s", "while-stopped", Some("k1")).await;
        if status == 200 {
            assert!(replayed, "the first publish's answer: {body}");
            let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
            break answer["id"].as_str().unwrap().parse::<u64>().unwrap();
        }
        assert!(tokio::time::Instant::now() < deadline, "never confirmed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let after = publish_on(&client, &base, "s", "after").await;
    follower.wait_for(after, 3 * WAIT).await;
    let items = follower.items();
    let copies = items
        .iter()
        .filter(|i| matches!(i, Item::Event { data, .. } if data == "while-stopped"))
        .count();
    assert_eq!(copies, 1, "{items:?}");
    assert!(items.contains(&Item::Event {
        id,
        data: "while-stopped".into()
    }));
}

/// A Sentinel killed changes nothing: nodes publish, a new node starts
/// (asking the next Sentinel), streams flow.
#[tokio::test]
async fn a_killed_sentinel_changes_nothing() {
    let Some(mut ha) = Ha::start().await else {
        return;
    };
    let url = ha.url();
    let a = node(&url, &[]).await;
    let client = reqwest::Client::new();
    let start = publish_on(&client, &a.url(""), "k", "before").await;
    ha.sentinels[0].kill();
    let b = node(&url, &[]).await;
    let follower = Follower::start(vec![b.url("")], "/events/k", Some(start));
    let one = publish_on(&client, &a.url(""), "k", "one").await;
    let two = publish_on(&client, &b.url(""), "k", "two").await;
    follower.wait_for(two, WAIT).await;
    let acked = vec![(one, "k".to_owned()), (two, "k".to_owned())];
    assert_no_silent_loss(&follower.items(), &acked, true);
}

/// A switch made on purpose (`SENTINEL FAILOVER`): the old primary is
/// healthy and would take writes until it is demoted, so nodes must follow
/// the Sentinels, not their own errors. Both nodes publish through the new
/// primary, the old one (a replica now) is never written to, and streams
/// lose nothing silently.
#[tokio::test]
async fn a_failover_on_purpose_is_followed() {
    let Some(ha) = Ha::start().await else {
        return;
    };
    let url = ha.url();
    let a = node(&url, &[]).await;
    let b = node(&url, &[]).await;
    let all = urls(&[&a, &b]);
    let client = reqwest::Client::new();
    let start = warm_up(&client, &all, &["f"]).await;
    let follower = Follower::start(all.clone(), "/events/f", Some(start));
    let mut acked = Vec::new();
    for (i, base) in all.iter().enumerate() {
        acked.push((
            publish_on(&client, base, "f", &format!("before{i}")).await,
            "f".into(),
        ));
    }
    let old = ha.primary.port;
    let switched = cmd(ha.sentinels[2].port, &["SENTINEL", "FAILOVER", MASTER]).await;
    assert!(switched.is_some(), "Sentinel starts the failover");
    assert_eq!(ha.wait_failover(old).await, ha.replica.port);
    // Until Sentinel has demoted it, the old primary could take writes.
    let deadline = tokio::time::Instant::now() + 6 * WAIT;
    loop {
        let role = cmd(old, &["ROLE"]).await;
        if matches!(&role, Some(redis::Value::Array(r)) if r.first().map(text).as_deref() == Some("slave"))
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never demoted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut last = 0;
    for (i, base) in all.iter().enumerate() {
        last = publish_on(&client, base, "f", &format!("after{i}")).await;
        acked.push((last, "f".into()));
    }
    // The last id was issued by the new primary.
    let seq = |port| async move {
        cmd(port, &["GET", "herald{h}:seq"])
            .await
            .map(|v| text(&v).parse::<u64>().unwrap_or(0))
    };
    assert_eq!(seq(ha.replica.port).await, Some(last));
    follower.wait_for(last, 3 * WAIT).await;
    assert_no_silent_loss(&follower.items(), &acked, false);
    assert_one_event_per_id(&follower.items());
}

/// No Sentinel answering, or none knowing the service: a clear startup
/// error, not a node that serves 503s forever.
#[tokio::test]
async fn unreachable_sentinels_are_a_clear_startup_error() {
    let (p1, p2) = (free_port(), free_port());
    let url = format!("redis+sentinel://127.0.0.1:{p1},127.0.0.1:{p2}/mymaster/0");
    let stderr = startup_error(&url).await;
    assert!(
        stderr.contains("no Sentinel named a primary for 'mymaster'"),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("127.0.0.1:{p1}")), "{stderr}");

    let Some(ha) = Ha::start().await else {
        return;
    };
    let url = format!(
        "redis+sentinel://127.0.0.1:{}/other/0",
        ha.sentinels[1].port
    );
    let stderr = startup_error(&url).await;
    assert!(stderr.contains("does not know 'other'"), "{stderr}");
}

/// Runs the binary on `url`: it must exit with an error; its stderr.
async fn startup_error(url: &str) -> String {
    let child = tokio::process::Command::new(herald_bin())
        .args(["--listen", "127.0.0.1:0", "--redis", url])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let out = tokio::time::timeout(3 * WAIT, child.wait_with_output())
        .await
        .expect("the binary exits")
        .unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The loss made certain: the replica is stopped while events are
/// acknowledged (`--redis-replicas 0`), then the primary is killed and the
/// replica, which never got them, is promoted. Every stream that saw them
/// and every stream resuming from before them gets a `herald.gap` for the
/// channel; ids issued afterwards are above theirs.
#[tokio::test]
async fn events_the_new_primary_lacks_are_announced_by_a_gap() {
    let Some(mut ha) = Ha::start().await else {
        return;
    };
    let url = ha.url();
    let a = node(&url, &[]).await;
    let b = node(&url, &[]).await;
    let all = urls(&[&a, &b]);
    let client = reqwest::Client::new();
    let start = warm_up(&client, &all, &["x"]).await;
    let followers: Vec<Follower> = [0, 1]
        .iter()
        .map(|&first| {
            let mut nodes = all.clone();
            nodes.rotate_left(first);
            Follower::start(nodes, "/events/x", Some(start))
        })
        .collect();
    let kept = publish_on(&client, &all[0], "x", "kept").await;
    // Give the replica time to hold `kept`, then stop it.
    eventually_async("the replica holds `kept`", || async {
        cmd(ha.replica.port, &["GET", "herald{h}:seq"])
            .await
            .is_some_and(|v| text(&v).parse::<u64>().is_ok_and(|seq| seq >= kept))
    })
    .await;
    // Stopped, and cut off (what the kernel already holds for a stopped
    // process would reach it after all).
    ha.signal("-STOP", ha.replica.pid());
    cmd(ha.primary.port, &["CLIENT", "KILL", "TYPE", "replica"])
        .await
        .expect("the primary drops its replica");
    let mut lost = Vec::new();
    for i in 0..4 {
        lost.push(publish_on(&client, &all[i % 2], "x", &format!("lost{i}")).await);
    }
    for f in &followers {
        f.wait_for(lost[3], WAIT).await;
    }
    let old = ha.primary.port;
    ha.primary.kill();
    ha.signal("-CONT", ha.replica.pid());
    ha.wait_failover(old).await;
    let after_a = publish_on(&client, &all[0], "x", "after").await;
    let after_b = publish_on(&client, &all[1], "x", "after").await;
    assert!(after_a.min(after_b) > lost[3], "no id is issued twice");
    for f in &followers {
        f.wait_for(after_a.max(after_b), 3 * WAIT).await;
        let items = f.items();
        assert_one_event_per_id(&items);
        let last_lost = items
            .iter()
            .position(|i| matches!(i, Item::Event { id, .. } if *id == lost[3]))
            .unwrap();
        assert!(
            items[last_lost..].contains(&Item::Gap {
                channel: "x".into()
            }),
            "a stream that saw the lost events is told: {items:?}"
        );
    }
    // Resuming from before the lost events, or from among them: told too.
    for from in [kept, lost[1]] {
        let f = Follower::start(vec![all[1].clone()], "/events/x", Some(from));
        f.wait_for(after_a.max(after_b), WAIT).await;
        let items = f.items();
        assert!(matches!(&items[0], Item::Gap { .. }), "{items:?}");
        assert!(
            !items
                .iter()
                .any(|i| matches!(i, Item::Event { data, .. } if data.starts_with("lost"))),
            "{items:?}"
        );
    }
}

/// The long run behind `HERALD_CLUSTER_CHAOS_MODE=failover
/// scripts/cluster-chaos.sh` (ignored in `cargo test`): a primary and two
/// replicas under three Sentinels, two nodes, publishers on both and
/// followers moving between them; every few seconds the primary is killed
/// with SIGKILL, and once a replica is promoted the killed server is
/// started again (empty: Sentinel turns it into a replica). Reports lost
/// acknowledged, duplicated and out-of-order events (all must be 0; with
/// `--redis-replicas 1` no gap either), gaps announced, and the time from
/// each kill to the first publish answered 200.
///
/// `HERALD_CLUSTER_CHAOS_SECS` (default 60), `HERALD_CLUSTER_CHAOS_SEED`,
/// `HERALD_CLUSTER_CHAOS_REPLICAS` (`--redis-replicas`, default 1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: run HERALD_CLUSTER_CHAOS_MODE=failover scripts/cluster-chaos.sh"]
async fn failover_chaos() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use super::support::{publish_shared, shared};

    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    let secs = env("HERALD_CLUSTER_CHAOS_SECS").unwrap_or(60);
    let seed = env("HERALD_CLUSTER_CHAOS_SEED").unwrap_or_else(|| fastrand::u64(..));
    let replicas = env("HERALD_CLUSTER_CHAOS_REPLICAS")
        .unwrap_or(1)
        .to_string();
    eprintln!("failover chaos: {secs}s, seed {seed}, --redis-replicas {replicas}");
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut ha = Ha::start_with(2)
        .await
        .expect("redis-server and redis-sentinel");
    let url = ha.url();
    let args = ["--redis-replicas", &replicas, "--history", "10000"];
    let a = node(&url, &args).await;
    let b = node(&url, &args).await;
    let all = urls(&[&a, &b]);
    let list = shared(all.clone());
    let client = reqwest::Client::new();
    const CHANNELS: [&str; 3] = ["c1", "c2", "c3"];
    let mut start = 0;
    for channel in CHANNELS {
        start = publish_shared(&client, &list, 0, channel, "start").await;
    }
    let followers: Vec<Follower> = (0..4)
        .map(|i| {
            let mut nodes = all.clone();
            nodes.rotate_left(i % 2);
            Follower::start(
                nodes,
                "/events?channel=c1&channel=c2&channel=c3",
                Some(start),
            )
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let publishers = publishers_until(&list, 2, &CHANNELS, &stop);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    let mut recoveries = Vec::new();
    let mut probes: Vec<Acked> = Vec::new();
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(rng.u64(2000..4000))).await;
        // Every server in sync first, or Sentinel has no good replica.
        ha.wait_replicas_synced().await;
        let Some(primary) = ha.named_primary().await else {
            continue;
        };
        let killed = ha.server(primary);
        killed.kill();
        let began = tokio::time::Instant::now();
        let (mut status, mut body) = (0, String::new());
        while status != 200 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            (status, _, _, body) = publish_once(&client, &all[0], "c1", "probe", None).await;
        }
        recoveries.push(began.elapsed());
        let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
        probes.push((answer["id"].as_str().unwrap().parse().unwrap(), "c1".into()));
        ha.server(primary).restart().await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut acked = probes;
    for p in publishers {
        acked.extend(p.await.unwrap());
    }
    acked.sort_unstable();
    let newest = acked.last().unwrap().0;
    recoveries.sort_unstable();
    eprintln!(
        "faults: {} primary kills; {} events acknowledged; kill to first publish answered: min {:?}, median {:?}, max {:?}",
        recoveries.len(),
        acked.len(),
        recoveries.first(),
        recoveries.get(recoveries.len() / 2),
        recoveries.last()
    );
    let total = Report::of_followers(&followers, &acked, newest).await;
    assert_eq!(
        (total.lost, total.duplicated, total.out_of_order),
        (0, 0, 0)
    );
    if replicas != "0" {
        assert_eq!(
            (total.announced, total.gaps),
            (0, 0),
            "with --redis-replicas 1 nothing is lost"
        );
    }
}
