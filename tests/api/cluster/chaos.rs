//! The long randomized multi-node run behind `scripts/cluster-chaos.sh`
//! (ignored in `cargo test`; the fault tests of this module are its short
//! version). Three nodes, Redis with AOF (`appendfsync always`), publishers
//! on every node, followers moving between nodes; every 1.5–3 s one fault:
//! a node killed with SIGKILL and replaced, Redis killed and restarted after
//! 1–3 s, or every Redis client connection killed. Reports, per stream and
//! in total, events lost without a gap, duplicated and out of order (all
//! must be 0) and events announced by a gap.
//!
//! `HERALD_CLUSTER_CHAOS_SECS` (default 60), `HERALD_CLUSTER_CHAOS_SEED`,
//! `HERALD_CLUSTER_CHAOS_AOF=0` to run Redis without persistence (losses
//! must then all be announced).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::support::{node, publish_shared, publishers_until, shared, Follower, Redis, Report};

const CHANNELS: [&str; 3] = ["c1", "c2", "c3"];

fn env(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: run scripts/cluster-chaos.sh"]
async fn chaos() {
    let secs = env("HERALD_CLUSTER_CHAOS_SECS").unwrap_or(60);
    let seed = env("HERALD_CLUSTER_CHAOS_SEED").unwrap_or_else(|| fastrand::u64(..));
    let aof = env("HERALD_CLUSTER_CHAOS_AOF") != Some(0);
    eprintln!("cluster chaos: {secs}s, seed {seed}, aof {aof}");
    let mut rng = fastrand::Rng::with_seed(seed);
    let extra: &[&str] = if aof {
        &["--appendonly", "yes", "--appendfsync", "always"]
    } else {
        &[]
    };
    let mut redis = Redis::start(extra).await.expect("redis-server");
    let args = ["--redis-timeout", "2s", "--history", "10000"];
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(node(&redis.url(), &args).await);
    }
    let list = shared(nodes.iter().map(|n| n.url("")).collect());
    let client = reqwest::Client::new();
    let mut start = 0;
    for channel in CHANNELS {
        start = publish_shared(&client, &list, 0, channel, "start").await;
    }

    let followers: Vec<Follower> = (0..6)
        .map(|_| {
            Follower::start_shared(
                list.clone(),
                "/events?channel=c1&channel=c2&channel=c3",
                Some(start),
            )
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let publishers = publishers_until(&list, 3, &CHANNELS, &stop);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    let (mut node_kills, mut redis_kills, mut client_kills) = (0, 0, 0);
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(rng.u64(1500..3000))).await;
        match rng.u8(0..3) {
            0 => {
                let i = rng.usize(0..nodes.len());
                nodes[i].kill().await;
                nodes[i] = node(&redis.url(), &args).await;
                list.lock().unwrap()[i] = nodes[i].url("");
                node_kills += 1;
            }
            1 => {
                redis.kill();
                tokio::time::sleep(Duration::from_millis(rng.u64(1000..3000))).await;
                redis.restart().await;
                redis_kills += 1;
            }
            _ => {
                redis.cmd(&["CLIENT", "KILL", "TYPE", "normal"]).await;
                client_kills += 1;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut acked = Vec::new();
    for p in publishers {
        acked.extend(p.await.unwrap());
    }
    acked.sort_unstable();
    let newest = acked.last().unwrap().0;
    eprintln!(
        "faults: {node_kills} node kills, {redis_kills} Redis kills, {client_kills} CLIENT KILLs; {} events acknowledged",
        acked.len()
    );

    let total = Report::of_followers(&followers, &acked, newest).await;
    assert_eq!(
        (total.lost, total.duplicated, total.out_of_order),
        (0, 0, 0)
    );
    if aof {
        assert_eq!(
            (total.announced, total.gaps),
            (0, 0),
            "with AOF always nothing is missing"
        );
    }
}
