//! `--data-dir` (SPEC §8): history survives restarts, retention on disk
//! follows retention in memory, group commit keeps one id order everywhere,
//! a full disk is a 503 and then recovers, and herald refuses to start on a
//! directory it cannot read safely.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::future::join_all;

use crate::helpers::{eventually, herald_bin, spawn_app_with, Binary, Sse, TestApp, WAIT};

/// A directory under the system's temp dir, removed (after unmounting
/// anything the test mounted on it) when dropped.
pub struct TempDir {
    pub path: PathBuf,
    mounted: bool,
}

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "herald-test-{}-{}-{name}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir {
            path,
            mounted: false,
        }
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    pub fn arg(&self) -> &str {
        self.path.to_str().unwrap()
    }

    /// Mounts a tmpfs of `size` (mount options syntax, e.g. `512k`) with
    /// `options` on this directory; false if this system does not let us.
    fn mount_tmpfs(&mut self, size: &str, options: &str) -> bool {
        let opts = format!("size={size}{options}");
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &opts, "tmpfs", self.arg()])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        self.mounted |= ok;
        ok
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if self.mounted {
            let _ = std::process::Command::new("umount")
                .arg(&self.path)
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The log files (segments and snapshots) in `dir`, sorted by name.
pub fn log_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log" || x == "snap"))
        .collect();
    files.sort();
    files
}

pub fn dir_bytes(dir: &Path) -> u64 {
    log_files(dir)
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum()
}

/// What a subscriber resuming from id 0 gets on `channel`: whether it got a
/// `herald.gap` first, and the replayed `(id, data)`, read up to the
/// channel's newest event per `GET /channels`.
pub async fn replay(
    client: &reqwest::Client,
    base: &str,
    channel: &str,
) -> (bool, Vec<(u64, String)>) {
    let channels: serde_json::Value = client
        .get(format!("{base}/channels"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let Some(last) = channels
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["channel"] == channel)
        .and_then(|c| c["last_event_id"].as_str())
        .map(|id| id.parse::<u64>().unwrap())
    else {
        return (false, Vec::new());
    };
    let response = client
        .get(format!("{base}/events/{channel}"))
        .header("Last-Event-ID", "0")
        .send()
        .await
        .unwrap();
    let mut sse = Sse::from_response(response);
    let mut gap = false;
    let mut events = Vec::new();
    loop {
        let event = sse.next().await;
        if event.event == "herald.gap" {
            gap = true;
            continue;
        }
        let id: u64 = event.id.parse().unwrap();
        events.push((id, event.data));
        if id >= last {
            return (gap, events);
        }
    }
}

async fn start(dir: &TempDir, extra: impl FnOnce(&mut herald::Config)) -> TestApp {
    let path = dir.path.clone();
    spawn_app_with(move |c| {
        c.data_dir = Some(path);
        extra(c);
    })
    .await
}

async fn publish_id(app: &TestApp, channel: &str, data: &str) -> u64 {
    app.publish(channel, data).await["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

fn ids(events: &[(u64, String)]) -> Vec<u64> {
    events.iter().map(|(id, _)| *id).collect()
}

#[tokio::test]
async fn history_survives_a_restart_and_resumes_with_no_gap() {
    let dir = TempDir::new("restart");
    let app = start(&dir, |_| {}).await;
    let mut sent = Vec::new();
    for i in 0..5 {
        sent.push(publish_id(&app, "news", &format!("n{i}")).await);
        publish_id(&app, "other", &format!("o{i}")).await;
    }
    app.stop().await;

    let app = start(&dir, |_| {}).await;
    let response = app
        .client
        .get(app.url("/events/news"))
        .header("Last-Event-ID", sent[1].to_string())
        .send()
        .await
        .unwrap();
    let mut sse = Sse::from_response(response);
    let mut got = Vec::new();
    for _ in 0..3 {
        let e = sse.next().await;
        got.push((e.event, e.id, e.data));
    }
    assert_eq!(
        got,
        (2..5)
            .map(|i| ("message".to_owned(), sent[i].to_string(), format!("n{i}")))
            .collect::<Vec<_>>(),
        "the events after the resume id, and no gap notice"
    );
    let empty: serde_json::Value = app
        .client
        .post(app.url("/publish"))
        .body("[]")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(empty, serde_json::json!([]), "an empty batch answers []");
    let next = publish_id(&app, "news", "after").await;
    assert!(next > sent[4], "ids keep increasing across the restart");
    assert_eq!(sse.next().await.data, "after");
    app.stop().await;
}

#[tokio::test]
async fn concurrent_publishes_share_fsyncs_and_keep_one_id_order() {
    let dir = TempDir::new("group");
    let app = start(&dir, |_| {}).await;
    let response = app
        .client
        .get(app.url("/events?channel=g0&channel=g1&channel=g2&channel=g3"))
        .send()
        .await
        .unwrap();
    let mut sse = Sse::from_response(response);
    const PUBLISHERS: usize = 16;
    const EACH: usize = 40;
    let answers = join_all((0..PUBLISHERS).map(|p| {
        let client = app.client.clone();
        let url = app.url(&format!("/publish/g{}", p % 4));
        async move {
            let mut ids = Vec::new();
            for i in 0..EACH {
                let answer: serde_json::Value = client
                    .post(&url)
                    .body(format!("p{p}-{i}"))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                ids.push(answer["id"].as_str().unwrap().parse::<u64>().unwrap());
            }
            ids
        }
    }))
    .await;
    let mut answered: Vec<u64> = answers.into_iter().flatten().collect();
    answered.sort_unstable();
    let mut streamed = Vec::new();
    for _ in 0..PUBLISHERS * EACH {
        streamed.push(sse.next().await.id.parse::<u64>().unwrap());
    }
    assert!(
        streamed.windows(2).all(|w| w[0] < w[1]),
        "the stream is in id order"
    );
    assert_eq!(
        streamed, answered,
        "the stream has exactly the answered ids"
    );
    let fsyncs = app.state.metrics.log_fsyncs.get();
    assert!(
        fsyncs >= 1 && fsyncs < (PUBLISHERS * EACH) as u64,
        "{fsyncs} fsyncs for {} publishes: concurrent publishes share them",
        PUBLISHERS * EACH
    );
    app.stop().await;

    let app = start(&dir, |_| {}).await;
    let mut on_disk = Vec::new();
    for channel in ["g0", "g1", "g2", "g3"] {
        let (_, events) = replay(&app.client, &app.base, channel).await;
        assert!(ids(&events).windows(2).all(|w| w[0] < w[1]));
        on_disk.extend(ids(&events));
    }
    on_disk.sort_unstable();
    assert_eq!(on_disk, answered, "every answered id survives the restart");
    app.stop().await;
}

#[tokio::test]
async fn history_limits_and_age_apply_after_a_restart() {
    let dir = TempDir::new("limits");
    let app = start(&dir, |c| c.history = 3).await;
    let sent: Vec<u64> = {
        let mut v = Vec::new();
        for i in 0..10 {
            v.push(publish_id(&app, "h", &i.to_string()).await);
        }
        v
    };
    app.stop().await;

    let app = start(&dir, |c| c.history = 3).await;
    let (gap, events) = replay(&app.client, &app.base, "h").await;
    assert!(
        gap,
        "events 0..7 were dropped: a resume from before is a gap"
    );
    assert_eq!(ids(&events), sent[7..]);
    app.stop().await;

    // Restarted with an age limit the same events are too old.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let app = start(&dir, |c| {
        c.history = 3;
        c.history_age = Some(Duration::from_millis(200));
    })
    .await;
    assert_eq!(app.channels().await[0]["retained"], 0);
    app.stop().await;
}

#[tokio::test]
async fn a_channel_dropped_by_the_ttl_leaves_the_disk_too() {
    let dir = TempDir::new("ttl");
    let app = start(&dir, |c| c.channel_ttl = Duration::from_millis(200)).await;
    let _keeper = app
        .client
        .get(app.url("/events/kept"))
        .send()
        .await
        .unwrap();
    publish_id(&app, "gone", "x").await;
    publish_id(&app, "kept", "y").await;
    let mut gone = false;
    for _ in 0..100 {
        let channels = app.channels().await;
        if !channels
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["channel"] == "gone")
        {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "the reaper drops the idle channel");
    app.stop().await;

    let app = start(&dir, |_| {}).await;
    let channels = app.channels().await;
    let names: Vec<&str> = channels
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["channel"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["kept"]);
    app.stop().await;
}

#[tokio::test]
async fn compaction_keeps_the_directory_near_the_retained_bytes() {
    let dir = TempDir::new("compact");
    let segment = 16 << 10;
    let configure = move |c: &mut herald::Config| {
        c.history = 5;
        c.segment_bytes = segment;
    };
    let app = start(&dir, configure).await;
    let data = "x".repeat(100);
    for i in 0..1500 {
        app.publish(&format!("c{}", i % 4), &data).await;
    }
    let state = app.state.clone();
    eventually("a compaction ran", || {
        state.metrics.log_compactions.get() >= 1
    })
    .await;
    let mut retained = 0;
    let mut before = Vec::new();
    for c in 0..4 {
        let (_, events) = replay(&app.client, &app.base, &format!("c{c}")).await;
        // A record: 22 bytes of header, the channel name, the frame.
        retained += events
            .iter()
            .map(|(id, d)| 22 + 2 + "id: \ndata: \n\n".len() + id.to_string().len() + d.len())
            .sum::<usize>() as u64;
        before.push(ids(&events));
    }
    let bound = 2 * retained + segment as u64 + 8192;
    let path = dir.path.clone();
    eventually(
        "the directory is within twice the retained bytes plus a segment",
        || dir_bytes(&path) <= bound,
    )
    .await;
    app.stop().await;

    let app = start(&dir, configure).await;
    for (c, expected) in before.iter().enumerate() {
        let (_, events) = replay(&app.client, &app.base, &format!("c{c}")).await;
        assert_eq!(
            &ids(&events),
            expected,
            "the same retained set after a restart"
        );
    }
    app.stop().await;
}

/// Runs the binary to its exit (it must exit within the wait) and returns
/// whether it succeeded and its stderr.
async fn run_to_exit(args: &[&str]) -> (bool, String) {
    let output = tokio::time::timeout(
        WAIT,
        tokio::process::Command::new(herald_bin())
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("herald exits within the wait")
    .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

async fn refuses(data_dir: &Path, extra: &[&str], says: &str) {
    let mut args = vec!["--data-dir", data_dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    let (ok, stderr) = run_to_exit(&args).await;
    assert!(!ok, "herald must not start on {data_dir:?}");
    assert!(
        stderr.contains(says),
        "the refusal says `{says}`; stderr was:\n{stderr}"
    );
}

#[tokio::test]
async fn refuses_a_data_dir_that_is_a_file() {
    let dir = TempDir::new("file");
    let file = dir.join("not-a-dir");
    std::fs::write(&file, "hello").unwrap();
    refuses(&file, &[], "not a directory").await;
    assert_eq!(std::fs::read(&file).unwrap(), b"hello", "left untouched");
}

#[tokio::test]
async fn refuses_a_data_dir_it_cannot_write() {
    let mut dir = TempDir::new("readonly");
    // Root ignores permission bits, so a read-only mount is the real thing;
    // without the right to mount, permission bits do it for other users.
    if !dir.mount_tmpfs("64k", ",ro") {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir.path, std::fs::Permissions::from_mode(0o555)).unwrap();
        if std::fs::write(dir.join("probe"), "x").is_ok() {
            eprintln!("skipped: cannot make a read-only directory here (root without mount)");
            return;
        }
    }
    refuses(&dir.path, &[], "cannot create or write").await;
}

#[tokio::test]
async fn refuses_a_data_dir_another_herald_is_using() {
    let dir = TempDir::new("in-use");
    let first = Binary::start(&["--data-dir", dir.arg()]).await;
    first.publish("c", "kept").await;
    refuses(&dir.path, &[], "in use by another herald").await;
    first.serves_others("c").await;
    first.kill9().await;
    // kill -9 releases the lock with the process.
    let second = Binary::start(&["--data-dir", dir.arg()]).await;
    assert_eq!(second.channels().await[0]["retained"], 2);
    second.kill9().await;
}

#[tokio::test]
async fn refuses_files_from_a_newer_format() {
    let dir = TempDir::new("newer");
    let mut header = b"HERALDLG".to_vec();
    header.extend_from_slice(&3u32.to_le_bytes());
    std::fs::write(dir.join("00000000000000000001.log"), &header).unwrap();
    refuses(&dir.path, &[], "written by a newer herald").await;
}

#[tokio::test]
async fn refuses_a_bad_checksum_before_the_newest_segment() {
    let dir = TempDir::new("corrupt");
    let app = start(&dir, |c| c.segment_bytes = 1024).await;
    for i in 0..40 {
        app.publish("c", &format!("event number {i}")).await;
    }
    app.stop().await;
    let files = log_files(&dir.path);
    assert!(files.len() >= 3, "several segments: {files:?}");
    let mut bytes = std::fs::read(&files[0]).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(&files[0], &bytes).unwrap();
    refuses(&dir.path, &[], "bad checksum").await;
    assert_eq!(std::fs::read(&files[0]).unwrap(), bytes, "left as it was");
}

#[tokio::test]
async fn refuses_a_bad_checksum_deep_inside_the_newest_segment() {
    // Small request limits make one write's worth of torn tail small
    // (about 1.2 MiB), so the damage is followed by more intact data than
    // any crash can leave.
    let dir = TempDir::new("corrupt-newest");
    let limits = ["--max-batch-bytes", "16KiB", "--max-event-bytes", "4KiB"];
    let app = start(&dir, |c| {
        c.max_batch_bytes = 16 << 10;
        c.max_event_bytes = 4 << 10;
    })
    .await;
    app.publish("c", "the first event").await;
    let data = "y".repeat(4000);
    for _ in 0..360 {
        app.publish("c", &data).await;
    }
    app.stop().await;
    let files = log_files(&dir.path);
    assert_eq!(files.len(), 1, "one segment: {files:?}");
    let mut bytes = std::fs::read(&files[0]).unwrap();
    bytes[12 + 30] ^= 0x55; // inside the first record
    std::fs::write(&files[0], &bytes).unwrap();
    refuses(&dir.path, &limits, "bad checksum").await;
    assert_eq!(std::fs::read(&files[0]).unwrap(), bytes, "left as it was");
}

/// Publishes 2 KiB events until one is refused; returns the acknowledged
/// ids and the refusal.
async fn publish_until_refused(bin: &Binary) -> (Vec<u64>, reqwest::Response) {
    let data = "d".repeat(2048);
    let mut acked = Vec::new();
    for _ in 0..2000 {
        let response = bin
            .client
            .post(bin.url("/publish/full"))
            .body(data.clone())
            .send()
            .await
            .unwrap();
        if response.status() != 200 {
            return (acked, response);
        }
        let answer: serde_json::Value = response.json().await.unwrap();
        acked.push(answer["id"].as_str().unwrap().parse().unwrap());
    }
    panic!("the disk never filled");
}

#[tokio::test]
async fn a_full_disk_gets_503_then_publishes_resume_when_space_returns() {
    // The fault is real: a 1 MiB tmpfs that fills up (ENOSPC) if this
    // system lets the test mount one, else a file size limit on the child
    // that the kernel enforces (`prlimit --fsize`, EFBIG).
    let mut dir = TempDir::new("full");
    let tmpfs = dir.mount_tmpfs("1m", "");
    let data_dir = dir.join("data");
    let filler = dir.join("filler");
    let data_arg = data_dir.to_str().unwrap().to_owned();
    let bin = Binary::start(&["--data-dir", &data_arg]).await;
    let pid = bin.pid().to_string();
    if tmpfs {
        std::fs::write(&filler, vec![0u8; 900 << 10]).unwrap();
    } else {
        let segment = &log_files(&data_dir)[0];
        let limit = std::fs::metadata(segment).unwrap().len() + (100 << 10);
        let ok = std::process::Command::new("prlimit")
            .args(["--pid", &pid, &format!("--fsize={limit}")])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "neither a tmpfs mount nor prlimit is available");
    }
    eprintln!(
        "full disk made with {}",
        if tmpfs { "a tmpfs" } else { "prlimit --fsize" }
    );

    let (mut acked, refused) = publish_until_refused(&bin).await;
    assert!(!acked.is_empty());
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "backend_unavailable");
    assert!(
        bin.metric("herald_requests_rejected_total{reason=\"backend_unavailable\"}")
            .await
            >= 1.0
    );

    // Space returns: publishing works again without a restart.
    if tmpfs {
        std::fs::remove_file(&filler).unwrap();
    } else {
        let ok = std::process::Command::new("prlimit")
            .args(["--pid", &pid, "--fsize=unlimited"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok);
    }
    let again = bin.publish("full", "space is back").await;
    acked.push(again.parse().unwrap());
    bin.kill9().await;

    // Nothing half written: exactly the acknowledged events come back.
    let bin = Binary::start(&["--data-dir", &data_arg]).await;
    let (gap, events) = replay(&bin.client, &format!("http://{}", bin.addr), "full").await;
    assert!(!gap);
    assert_eq!(ids(&events), acked);
    assert_eq!(bin.metric("herald_log_write_errors_total").await, 0.0);
    assert!(bin.metric("herald_recovery_seconds").await >= 0.0);
    bin.kill9().await;
}
