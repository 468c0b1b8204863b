//! Crashes against the real binary: kill -9 while 16 publishers publish as
//! fast as they can, restart, and check that every acknowledged event comes
//! back once, in order, within the retention rules; and torn tails cut at
//! every byte offset of the last records.
//!
//! `HERALD_CRASH_ROUNDS` sets the number of kill rounds (default 20; the
//! `--history 30`, `--fsync off` test runs a fifth of them);
//! `scripts/crash.sh` runs many more against the release binary.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::durable::{log_files, replay, TempDir};
use crate::helpers::{spawn_app_with, Binary};

const PUBLISHERS: usize = 16;
const CHANNELS: usize = 4;

/// Acknowledged ids per channel, in the order the answers came.
type Acked = Arc<Mutex<BTreeMap<String, Vec<u64>>>>;

/// Publishes from `PUBLISHERS` tasks until the server dies, recording every
/// acknowledged id.
async fn publish_until_killed(bin: Binary, acked: &Acked, round: usize) {
    let mut tasks = Vec::new();
    for p in 0..PUBLISHERS {
        let client = bin.client.clone();
        let channel = format!("k{}", p % CHANNELS);
        let url = bin.url(&format!("/publish/{channel}"));
        let acked = acked.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0.. {
                let sent = client
                    .post(&url)
                    .body(format!("r{round}-p{p}-{i}"))
                    .send()
                    .await;
                let Ok(response) = sent else { return };
                if response.status() != 200 {
                    return;
                }
                let Ok(answer) = response.json::<serde_json::Value>().await else {
                    return;
                };
                let id = answer["id"].as_str().unwrap().parse().unwrap();
                acked
                    .lock()
                    .unwrap()
                    .entry(channel.clone())
                    .or_default()
                    .push(id);
            }
        }));
    }
    // Kill at a random point of the publishing.
    tokio::time::sleep(Duration::from_millis(fastrand_ms(60, 300))).await;
    bin.kill9().await;
    for task in tasks {
        let _ = task.await;
    }
}

fn fastrand_ms(low: u64, high: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    low + nanos % (high - low)
}

/// Checks a restarted server against everything acknowledged so far.
async fn check_after_restart(bin: &Binary, acked: &Acked, history: usize) {
    let base = format!("http://{}", bin.addr);
    let acked = acked.lock().unwrap().clone();
    for (channel, mut sent) in acked {
        sent.sort_unstable();
        let (_, events) = replay(&bin.client, &base, &channel).await;
        let got: Vec<u64> = events.iter().map(|(id, _)| *id).collect();
        assert!(
            got.windows(2).all(|w| w[0] < w[1]),
            "{channel}: replayed in id order, once each"
        );
        assert!(
            got.len() <= history,
            "{channel}: at most --history retained"
        );
        let newest_acked = *sent.last().unwrap();
        assert!(
            got.last().is_some_and(|&last| last >= newest_acked),
            "{channel}: the newest acknowledged event {newest_acked} survives"
        );
        // Every acknowledged event not older than the oldest retained one
        // is there; older ones may only be missing because the channel
        // holds a full --history (events published but whose answer the
        // kill cut off may be there too: they were durable).
        let oldest = got[0];
        let missing: Vec<u64> = sent
            .iter()
            .copied()
            .filter(|id| *id >= oldest && got.binary_search(id).is_err())
            .collect();
        assert!(
            missing.is_empty(),
            "{channel}: acknowledged but lost: {missing:?}"
        );
        if got.len() < history {
            assert!(
                sent[0] >= oldest,
                "{channel}: below --history, everything acknowledged is retained"
            );
        }
    }
}

async fn crash_rounds(rounds: usize, history: usize, fsync: &str) {
    let dir = TempDir::new("crash");
    let history_arg = history.to_string();
    let args = [
        "--data-dir",
        dir.arg(),
        "--history",
        &history_arg,
        "--fsync",
        fsync,
    ];
    let acked: Acked = Arc::default();
    for round in 0..rounds {
        let bin = Binary::start(&args).await;
        if round > 0 {
            check_after_restart(&bin, &acked, history).await;
        }
        publish_until_killed(bin, &acked, round).await;
    }
    let bin = Binary::start(&args).await;
    check_after_restart(&bin, &acked, history).await;
    let total: usize = acked.lock().unwrap().values().map(Vec::len).sum();
    eprintln!("{rounds} kill -9 rounds, {total} acknowledged events, all accounted for");
    assert!(total > 0);
    // Ids stay above everything recovered.
    let newest = acked
        .lock()
        .unwrap()
        .values()
        .flat_map(|v| v.iter().copied())
        .max()
        .unwrap();
    let next: u64 = bin.publish("k0", "after").await.parse().unwrap();
    assert!(next > newest);
    bin.kill9().await;
}

fn rounds() -> usize {
    std::env::var("HERALD_CRASH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(20)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_never_loses_an_acknowledged_event() {
    crash_rounds(rounds(), 1_000_000, "batch").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_keeps_the_retention_rules_even_with_fsync_off() {
    // --fsync off answers after write(): a kill -9 (not a power loss) still
    // loses nothing acknowledged.
    crash_rounds(rounds().div_ceil(5), 30, "off").await;
}

/// Offsets where each record of a segment ends (the format of
/// `src/log/disk/record.rs`: a 12-byte file header, then records that
/// start with their length after an 8-byte length and checksum).
fn record_ends(bytes: &[u8]) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut at = 12;
    while at + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        at += 8 + len;
        ends.push(at);
    }
    assert_eq!(at, bytes.len());
    ends
}

#[tokio::test]
async fn a_torn_tail_is_cut_at_every_byte_offset_of_the_last_records() {
    // Arrange: a log of 8 events, written by a real server.
    let dir = TempDir::new("torn");
    let path = dir.path.clone();
    let app = spawn_app_with(move |c| c.data_dir = Some(path)).await;
    for i in 0..8 {
        app.publish("t", &format!("event {i} {}", "x".repeat(i * 7)))
            .await;
    }
    app.stop().await;
    let segment = log_files(&dir.path).pop().unwrap();
    let name = segment.file_name().unwrap().to_owned();
    let whole = std::fs::read(&segment).unwrap();
    let ends = record_ends(&whole);
    assert_eq!(ends.len(), 8);

    // Act and assert: cut after every byte of the last three records, and
    // also leave garbage after the last one.
    let first_cut = ends[4] + 1;
    let mut cases: Vec<Vec<u8>> = (first_cut..whole.len())
        .map(|cut| whole[..cut].to_vec())
        .collect();
    let mut garbage = whole.clone();
    garbage.extend_from_slice(&[0xAB; 40]);
    cases.push(garbage);
    let mut zeros = whole.clone();
    zeros.extend_from_slice(&[0; 4096]);
    cases.push(zeros);
    for torn in cases {
        let case = TempDir::new("torn-case");
        std::fs::write(case.join(name.to_str().unwrap()), &torn).unwrap();
        let config = herald::Config {
            data_dir: Some(case.path.clone()),
            ..Default::default()
        };
        let state = herald::State::open(config).expect("a torn tail is not a refusal");
        let whole_records = ends.iter().filter(|&&end| end <= torn.len()).count();
        let channels = state.hub.channels();
        assert_eq!(
            channels[0].retained,
            whole_records,
            "cut at {} of {}: the longest valid prefix",
            torn.len(),
            whole.len()
        );
        state.log.close().await;
        let kept = std::fs::metadata(case.join(name.to_str().unwrap()))
            .unwrap()
            .len() as usize;
        assert_eq!(kept, ends[whole_records - 1], "the file is cut to it");
    }
}
