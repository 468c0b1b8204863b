//! Bounded memory (SPEC §1): however many channel names are used, idle
//! channels are dropped after `--channel-ttl` with their history, so the
//! channel count comes back to zero and the memory they held is reused
//! rather than kept (see the test for why reuse and not plain RSS).
//!
//! Runs the real binary as a child so its RSS is its own.

use std::time::Duration;

use tokio::time::Instant;

use crate::helpers::{Binary, WAIT};

const CHANNELS: usize = 100_000;
const PER_BATCH: usize = 5_000;
/// What 100k channels with one small event each may cost while they exist:
/// under 1 KiB each (name, map entry, history ring, the event's frame).
const PEAK_BOUND_KIB: u64 = 100 * 1024;
/// How much more memory four further rounds of 100k channels may leave
/// behind than the first four did: 16 MiB. A leak of what a channel holds
/// (its map entry alone is over 100 bytes) adds about 10 MiB a round, 40 MiB
/// over four. glibc's fragmentation moves a round by up to 12 MiB in a debug
/// build, and where it settles comes late on a busy machine: once rounds one
/// to four stayed near 54 MiB and five and six rose to the 80 MiB plateau
/// other runs reach in round one (2026-12-06, eight test processes on two
/// cores). So four rounds settle the allocator, and the last of four more
/// is checked against the highest of them.
const REUSE_SLACK_KIB: u64 = 16 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_idle_channels_are_dropped_and_their_memory_reused() {
    // Arrange: a server that holds many channels and forgets them fast.
    // glibc with a fixed policy: by default its mmap threshold follows the
    // largest block freed, so after the first round the hash map's big
    // tables come from the heap instead of mmap, and its per-thread arenas
    // make the second round land wherever the scheduler puts it. Either
    // makes the second round's RSS say more about glibc than about herald.
    let bin = Binary::start_with_env(
        &["--max-channels", "200000", "--channel-ttl", "1s"],
        &[
            ("MALLOC_ARENA_MAX", "1"),
            ("MALLOC_MMAP_THRESHOLD_", "131072"),
            ("MALLOC_TRIM_THRESHOLD_", "131072"),
        ],
    )
    .await;
    bin.serves_others("warm-up").await;
    wait_for(&bin, "herald_channels", 0.0, 2 * WAIT).await;
    let baseline = bin.rss_kib();

    // Act: 100k names, dropped after the TTL; then 100k other names, seven
    // times. The first four rounds settle the allocator; the last four show
    // whether anything is left behind each round.
    let mut rounds = Vec::new();
    for tag in ["a", "b", "c", "d", "e", "f", "g", "h"] {
        let peak = hundred_thousand_channels(&bin, tag).await;
        rounds.push((peak, bin.rss_kib()));
    }
    eprintln!(
        "100k channels, eight rounds: rss baseline {baseline} KiB, \
         (peak, after the TTL) {rounds:?} KiB"
    );

    // Assert: the channels cost a bounded amount each while they exist...
    let (peak1, _) = rounds[0];
    assert!(
        peak1 <= baseline + PEAK_BOUND_KIB,
        "100k one-event channels took {peak1} KiB, over baseline {baseline} KiB + {PEAK_BOUND_KIB} KiB"
    );
    // ...and what they held is given back. Not to the system: glibc keeps
    // the freed memory cached in its heaps, so plain RSS stays well above
    // the baseline when the server goes idle (measured: baseline ~11 MiB,
    // 25-40 MiB after the first 100k; `malloc_trim(0)` from a debugger
    // brings it to ~13 MiB, so it is free, not held). Given back to the
    // allocator, then: later rounds reuse the earlier rounds' memory.
    let settled = |pick: fn(&(u64, u64)) -> u64| rounds[..4].iter().map(pick).max().unwrap();
    let (peak_settled, after_settled) = (settled(|r| r.0), settled(|r| r.1));
    let (peak_last, after_last) = rounds[rounds.len() - 1];
    assert!(
        after_last <= after_settled + REUSE_SLACK_KIB
            && peak_last <= peak_settled + REUSE_SLACK_KIB,
        "later rounds of 100k channels did not reuse the first rounds' memory: baseline \
         {baseline} KiB, (peak, after the TTL) per round {rounds:?} KiB"
    );
    bin.serves_others("after").await;
}

/// Publishes one event to each of 100k new channels (`mem-<tag>-NNNNNN`),
/// waits until the reaper dropped them all, and returns the peak RSS seen.
async fn hundred_thousand_channels(bin: &Binary, tag: &str) -> u64 {
    let mut peak = bin.rss_kib();
    for batch in 0..CHANNELS / PER_BATCH {
        let items: Vec<serde_json::Value> = (0..PER_BATCH)
            .map(|i| {
                serde_json::json!({
                    "channel": format!("mem-{tag}-{:06}", batch * PER_BATCH + i),
                    "data": "x",
                })
            })
            .collect();
        let response = bin
            .client
            .post(bin.url("/publish"))
            .body(serde_json::to_string(&items).unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
        peak = peak.max(bin.rss_kib());
    }
    // Idle past the TTL: every channel is dropped with its history.
    wait_for(bin, "herald_channels", 0.0, 3 * WAIT).await;
    peak
}

async fn wait_for(bin: &Binary, series: &str, value: f64, wait: Duration) {
    let deadline = Instant::now() + wait;
    loop {
        let now = bin.metric(series).await;
        if now == value {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{series} is {now}, expected {value}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
