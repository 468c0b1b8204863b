//! Real components for the multi-node tests (SPEC §9): Debian's
//! `redis-server` on a free loopback port in its own directory, herald nodes
//! (the real binary, as child processes), a loopback TCP proxy that can
//! stall a connection, a client that follows a stream across nodes the way
//! EventSource does, and the check that nothing was silently lost.
//!
//! Without `redis-server` on the PATH the tests are skipped with a note,
//! except under CI (`CI` set), where they fail: `.ci/run` installs it.

use std::net::TcpListener as StdListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::helpers::{Binary, WAIT};

/// A `redis-server` child process, killed when dropped; its directory is
/// removed with it.
pub struct Redis {
    child: Option<std::process::Child>,
    pub port: u16,
    dir: PathBuf,
    args: Vec<String>,
}

impl Redis {
    /// Starts redis-server with `extra` arguments (e.g. AOF settings).
    /// `None` when it is not installed and this is not CI: skip the test.
    pub async fn start(extra: &[&str]) -> Option<Redis> {
        let installed = std::process::Command::new("redis-server")
            .arg("--version")
            .output()
            .is_ok();
        if !installed {
            assert!(
                std::env::var_os("CI").is_none(),
                "redis-server is not installed (.ci/run installs it)"
            );
            eprintln!("skipped: redis-server is not installed");
            return None;
        }
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "herald-redis-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        for _ in 0..5 {
            let port = free_port();
            let mut args: Vec<String> = [
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                dir.to_str().unwrap(),
                "--daemonize",
                "no",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            args.extend(extra.iter().map(|s| s.to_string()));
            let mut redis = Redis {
                child: None,
                port,
                dir: dir.clone(),
                args,
            };
            if redis.spawn().await {
                return Some(redis);
            }
        }
        panic!("redis-server did not start");
    }

    /// Starts the process and waits until it answers PING.
    async fn spawn(&mut self) -> bool {
        let child = std::process::Command::new("redis-server")
            .args(&self.args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + WAIT;
        while tokio::time::Instant::now() < deadline {
            if self.pings().await {
                return true;
            }
            if let Some(Ok(Some(_))) = self.child.as_mut().map(|c| c.try_wait()) {
                return false; // exited: the port was taken meanwhile
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    async fn pings(&self) -> bool {
        let Ok(mut conn) = TcpStream::connect(("127.0.0.1", self.port)).await else {
            return false;
        };
        let mut buf = [0u8; 16];
        conn.write_all(b"PING\r\n").await.is_ok()
            && matches!(tokio::time::timeout(Duration::from_secs(1), conn.read(&mut buf)).await,
                Ok(Ok(n)) if buf[..n].starts_with(b"+PONG"))
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// The process id (to stop it with SIGSTOP, say).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("redis-server is running").id()
    }

    /// SIGKILL: no shutdown, no final save.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and directory (so an AOF is read).
    pub async fn restart(&mut self) {
        self.kill();
        assert!(self.spawn().await, "redis-server restarts");
    }

    /// Runs one command.
    pub async fn cmd(&self, args: &[&str]) -> redis::Value {
        let client = redis::Client::open(self.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let mut cmd = redis::cmd(args[0]);
        for arg in &args[1..] {
            cmd.arg(*arg);
        }
        cmd.query_async(&mut conn).await.unwrap()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A herald node on `redis_url`, started and answering `/healthz`.
pub async fn node(redis_url: &str, extra: &[&str]) -> Binary {
    let mut args = vec!["--redis", redis_url];
    args.extend_from_slice(extra);
    let node = Binary::start(&args).await;
    wait_health(&node, 200).await;
    node
}

/// Waits until `/healthz` answers `status` (panics after [`WAIT`]).
pub async fn wait_health(node: &Binary, status: u16) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if health(node).await == Some(status) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/healthz never answered {status}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn health(node: &Binary) -> Option<u16> {
    let response = node.client.get(node.url("/healthz")).send().await.ok()?;
    Some(response.status().as_u16())
}

/// A loopback TCP proxy in front of Redis that can stop forwarding (the
/// sockets stay open, bytes stay where they are): a stalled connection.
pub struct Proxy {
    pub port: u16,
    stalled: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl Proxy {
    pub async fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let stalled = Arc::new(AtomicBool::new(false));
        let flag = stalled.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                    continue;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pump(cr, sw, flag.clone()));
                tokio::spawn(pump(sr, cw, flag.clone()));
            }
        });
        Proxy {
            port,
            stalled,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn stall(&self, on: bool) {
        self.stalled.store(on, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    stalled: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        while stalled.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while stalled.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// What a following client received, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    Event { id: u64, data: String },
    Gap { channel: String },
}

/// A client that follows `path` across reconnects like EventSource: when
/// its stream ends or a node does not answer, it reconnects to the next
/// node of the list with `Last-Event-ID`.
pub struct Follower {
    items: Arc<Mutex<Vec<Item>>>,
    /// Streams opened (1 when it never had to reconnect).
    pub streams: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

/// Node base URLs, shared so a test can replace a node that it restarted.
pub type Nodes = Arc<Mutex<Vec<String>>>;

pub fn shared(nodes: Vec<String>) -> Nodes {
    Arc::new(Mutex::new(nodes))
}

fn pick(nodes: &Nodes, attempt: usize) -> String {
    let nodes = nodes.lock().unwrap();
    nodes[attempt % nodes.len()].clone()
}

impl Follower {
    pub fn start(nodes: Vec<String>, path: &str, last_id: Option<u64>) -> Follower {
        Follower::start_shared(shared(nodes), path, last_id)
    }

    pub fn start_shared(nodes: Nodes, path: &str, last_id: Option<u64>) -> Follower {
        let items = Arc::new(Mutex::new(Vec::new()));
        let streams = Arc::new(AtomicUsize::new(0));
        let (sink, opened, path) = (items.clone(), streams.clone(), path.to_owned());
        let task = tokio::spawn(async move {
            let client = reqwest::Client::builder().no_proxy().build().unwrap();
            let mut last = last_id;
            for attempt in 0.. {
                let base = pick(&nodes, attempt);
                let mut request = client.get(format!("{base}{path}"));
                if let Some(id) = last {
                    request = request.header("Last-Event-ID", id.to_string());
                }
                if let Ok(response) = request.send().await {
                    if response.status() == 200 {
                        opened.fetch_add(1, Ordering::Relaxed);
                        let mut events = response.bytes_stream().eventsource();
                        while let Some(Ok(event)) = events.next().await {
                            let item = if event.event == "herald.gap" {
                                let data: serde_json::Value =
                                    serde_json::from_str(&event.data).unwrap();
                                Item::Gap {
                                    channel: data["channel"].as_str().unwrap().to_owned(),
                                }
                            } else {
                                let id = event.id.parse().unwrap();
                                last = Some(id);
                                Item::Event {
                                    id,
                                    data: event.data,
                                }
                            };
                            sink.lock().unwrap().push(item);
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        Follower {
            items,
            streams,
            task,
        }
    }

    pub fn items(&self) -> Vec<Item> {
        self.items.lock().unwrap().clone()
    }

    /// Waits until an event with id `id` or later arrived (panics after
    /// `wait`).
    pub async fn wait_for(&self, id: u64, wait: Duration) {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let reached = self
                .items()
                .iter()
                .any(|i| matches!(i, Item::Event { id: got, .. } if *got >= id));
            if reached {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the follower never reached id {id}; got {} items",
                self.items().len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An acknowledged publish: its id and channel.
pub type Acked = (u64, String);

/// Publishes `data` to `channel` through `nodes`, trying the next node on
/// any failure (a 503 while Redis is away, a killed node), until one
/// answers 200. Returns the id.
pub async fn publish_retrying(
    client: &reqwest::Client,
    nodes: &[String],
    start: usize,
    channel: &str,
    data: &str,
) -> u64 {
    publish_shared(client, &shared(nodes.to_vec()), start, channel, data).await
}

/// [`publish_retrying`] over a list the test may change meanwhile.
pub async fn publish_shared(
    client: &reqwest::Client,
    nodes: &Nodes,
    start: usize,
    channel: &str,
    data: &str,
) -> u64 {
    let deadline = tokio::time::Instant::now() + 3 * WAIT;
    for attempt in start.. {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no node took the publish to {channel}"
        );
        let base = pick(nodes, attempt);
        let sent = client
            .post(format!("{base}/publish/{channel}"))
            .body(data.to_owned())
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        if let Ok(response) = sent {
            if response.status() == 200 {
                let answer: serde_json::Value = response.json().await.unwrap();
                return answer["id"].as_str().unwrap().parse().unwrap();
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    unreachable!()
}

/// Spawns one publisher per entry of `starts`: each publishes `count`
/// events, alternating over `channels`, through `nodes` beginning with its
/// start index, `pause` apart. Returns every acknowledged publish.
pub fn publishers(
    nodes: Vec<String>,
    starts: &[usize],
    channels: &'static [&'static str],
    count: usize,
    pause: Duration,
) -> JoinHandle<Vec<Acked>> {
    publishers_shared(shared(nodes), starts, channels, count, pause)
}

/// `count` publishers on `nodes` (publisher `p` starts at node `p`), each
/// cycling through `channels` every 5 ms until `stop` is set; each task
/// answers what it got acknowledged. For the chaos runs, which stop on a
/// deadline rather than after a count.
pub fn publishers_until(
    nodes: &Nodes,
    count: usize,
    channels: &'static [&'static str],
    stop: &Arc<AtomicBool>,
) -> Vec<JoinHandle<Vec<Acked>>> {
    (0..count)
        .map(|p| {
            let (nodes, stop) = (nodes.clone(), stop.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut acked: Vec<Acked> = Vec::new();
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let channel = channels[(i + p) % channels.len()];
                    let id =
                        publish_shared(&client, &nodes, p + i, channel, &format!("p{p}-{i}")).await;
                    acked.push((id, channel.to_owned()));
                    i += 1;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                acked
            })
        })
        .collect()
}

/// [`publishers`] over a list the test may change meanwhile.
pub fn publishers_shared(
    nodes: Nodes,
    starts: &[usize],
    channels: &'static [&'static str],
    count: usize,
    pause: Duration,
) -> JoinHandle<Vec<Acked>> {
    let tasks: Vec<JoinHandle<Vec<Acked>>> = starts
        .iter()
        .map(|&start| {
            let nodes = nodes.clone();
            tokio::spawn(async move {
                let client = reqwest::Client::builder().no_proxy().build().unwrap();
                let mut acked = Vec::with_capacity(count);
                for i in 0..count {
                    let channel = channels[i % channels.len()];
                    let data = format!("p{start}-{i}");
                    let id = publish_shared(&client, &nodes, start, channel, &data).await;
                    acked.push((id, channel.to_owned()));
                    tokio::time::sleep(pause).await;
                }
                acked
            })
        })
        .collect();
    tokio::spawn(async move {
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await.unwrap());
        }
        all.sort_unstable();
        all
    })
}

/// The promise of SPEC §2 and §9 for one stream: ids strictly increase (so
/// nothing twice, nothing out of order), and every acknowledged event was
/// either received or announced: a `herald.gap` for its channel sits where
/// it would have been. With `strict`, nothing may be missing and no gap
/// may be sent at all.
pub fn assert_no_silent_loss(items: &[Item], acked: &[Acked], strict: bool) {
    let report = Report::of(items, acked);
    assert_eq!(
        report.out_of_order, 0,
        "ids must strictly increase: {items:?}"
    );
    if strict {
        assert!(
            !items.iter().any(|i| matches!(i, Item::Gap { .. })),
            "no gap expected: {items:?}"
        );
        assert_eq!(report.announced, 0, "nothing may be missing");
    }
    assert_eq!(
        report.lost, 0,
        "acknowledged events lost without a herald.gap"
    );
}

/// What one stream got, against what was acknowledged.
#[derive(Debug, Default, Clone, Copy)]
pub struct Report {
    pub received: usize,
    /// An id received again (counted in `out_of_order` too).
    pub duplicated: usize,
    /// An id not above the one before it.
    pub out_of_order: usize,
    /// Acknowledged, never received, with no gap notice in its place.
    pub lost: usize,
    /// Acknowledged, never received, announced by a gap notice.
    pub announced: usize,
    /// `herald.gap` notices received.
    pub gaps: usize,
}

impl Report {
    /// Waits until every follower has `newest`, prints each one's report
    /// and their sum, and returns the sum: how the chaos runs judge a run.
    pub async fn of_followers(followers: &[Follower], acked: &[Acked], newest: u64) -> Report {
        let mut total = Report::default();
        for (n, f) in followers.iter().enumerate() {
            f.wait_for(newest, Duration::from_secs(60)).await;
            let r = Report::of(&f.items(), acked);
            eprintln!(
                "stream {n}: received {}, lost {}, duplicated {}, out of order {}, announced by gap {}, gap notices {}, streams opened {}",
                r.received, r.lost, r.duplicated, r.out_of_order, r.announced, r.gaps,
                f.streams.load(Ordering::Relaxed)
            );
            total.received += r.received;
            total.lost += r.lost;
            total.duplicated += r.duplicated;
            total.out_of_order += r.out_of_order;
            total.announced += r.announced;
            total.gaps += r.gaps;
        }
        eprintln!(
            "TOTAL: lost {}, duplicated {}, out of order {}, announced by gap {}, gap notices {}, received {}",
            total.lost, total.duplicated, total.out_of_order, total.announced, total.gaps, total.received
        );
        total
    }

    pub fn of(items: &[Item], acked: &[Acked]) -> Report {
        let mut report = Report::default();
        let mut seen = std::collections::HashSet::new();
        let mut previous = 0;
        for item in items {
            if matches!(item, Item::Gap { .. }) {
                report.gaps += 1;
            }
            if let Item::Event { id, .. } = item {
                report.received += 1;
                if !seen.insert(*id) {
                    report.duplicated += 1;
                }
                if *id <= previous {
                    report.out_of_order += 1;
                }
                previous = previous.max(*id);
            }
        }
        let events = ordered_events(items);
        for (id, channel) in acked {
            if seen.contains(id) {
                continue;
            }
            let at = events.partition_point(|(_, got)| got < id);
            // Between the last event before it and the first after it, a
            // gap notice for its channel must have been received.
            let from = at.checked_sub(1).map_or(0, |i| events[i].0);
            let to = events.get(at).map_or(items.len(), |(pos, _)| *pos);
            let announced = items[from..to]
                .iter()
                .any(|i| matches!(i, Item::Gap { channel: c } if c == channel));
            if announced {
                report.announced += 1;
            } else {
                report.lost += 1;
            }
        }
        report
    }
}

/// (position, id) of each event received, for a stream whose ids increase.
fn ordered_events(items: &[Item]) -> Vec<(usize, u64)> {
    items
        .iter()
        .enumerate()
        .filter_map(|(pos, item)| match item {
            Item::Event { id, .. } => Some((pos, *id)),
            Item::Gap { .. } => None,
        })
        .collect()
}
