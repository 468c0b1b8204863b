//! Shared test plumbing: start a real server on 127.0.0.1:0, publish, read
//! event streams through an SSE parser we did not write
//! (`eventsource-stream`), or raw bytes straight off a TCP socket.
//!
//! Set `TEST_LOG=1` to see the server's logs.

use std::net::SocketAddr;
use std::sync::{Arc, Once};
use std::time::Duration;

use eventsource_stream::{Event, EventStreamError, Eventsource};
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use herald::state::State;
use herald::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long any single wait in a test may take before it fails.
pub const WAIT: Duration = Duration::from_secs(10);

pub struct TestApp {
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    pub client: reqwest::Client,
    /// The running server's state, to look inside (metrics, hub).
    pub state: Arc<State>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

fn init_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            tracing_subscriber::fmt()
                .with_env_filter("herald=debug")
                .with_test_writer()
                .init();
        }
    });
}

/// The configuration tests start from: the documented defaults.
pub fn test_config() -> Config {
    Config::default()
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(configure: impl FnOnce(&mut Config)) -> TestApp {
    spawn_app_at("127.0.0.1:0".parse().unwrap(), configure).await
}

/// Starts a server on `addr` (a fixed port, to restart on the same one).
pub async fn spawn_app_at(addr: SocketAddr, configure: impl FnOnce(&mut Config)) -> TestApp {
    init_logs();
    let mut config = test_config();
    configure(&mut config);
    durable_if_asked(&mut config);
    let listener = bind_retrying(addr).await;
    let addr = listener.local_addr().unwrap();
    let state = State::open(config).expect("the test's --data-dir opens");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(herald::serve(listener, state.clone(), async {
        let _ = stopped.await;
    }));
    TestApp {
        addr,
        base: format!("http://{addr}"),
        client: reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("a plain HTTP client builds"),
        state,
        stop: Some(stop),
        task: Some(task),
    }
}

/// `HERALD_TEST_DURABLE=1` runs every in-process server of the suite with a
/// fresh `--data-dir` (under the system's temp dir), so the whole API suite
/// checks that the disk log keeps every promise the in-memory one does.
fn durable_if_asked(config: &mut Config) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    if config.data_dir.is_none() && std::env::var_os("HERALD_TEST_DURABLE").is_some() {
        let dir = std::env::temp_dir().join(format!(
            "herald-durable-suite-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        config.data_dir = Some(dir);
    }
}

/// A port just released by a stopped server may linger briefly.
async fn bind_retrying(addr: SocketAddr) -> TcpListener {
    let mut tries = 0;
    loop {
        match TcpListener::bind(addr).await {
            Ok(listener) => return listener,
            Err(e) if tries < 50 && addr.port() != 0 => {
                tries += 1;
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("cannot bind {addr}: {e}"),
        }
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// `GET /channels` as JSON.
    pub async fn channels(&self) -> serde_json::Value {
        get_channels(&self.client, &self.url("/channels")).await
    }

    /// Publishes `data` to `channel` and returns the 200 JSON answer.
    pub async fn publish(&self, channel: &str, data: &str) -> serde_json::Value {
        self.publish_to(&format!("/publish/{channel}"), data).await
    }

    /// POSTs `data` to `path` and returns the 200 JSON answer.
    pub async fn publish_to(&self, path: &str, data: &str) -> serde_json::Value {
        let response = self
            .client
            .post(self.url(path))
            .body(data.to_owned())
            .send()
            .await
            .expect("publish request");
        let status = response.status();
        let body = response.text().await.unwrap();
        assert_eq!(status, 200, "publish to {path} answered {status}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Publishes and returns the event's id.
    pub async fn publish_id(&self, channel: &str, data: &str) -> String {
        self.publish(channel, data).await["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Opens an event stream on `path` with optional `Last-Event-ID`.
    pub async fn subscribe(&self, path: &str, last_event_id: Option<&str>) -> Sse {
        let mut request = self.client.get(self.url(path));
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request.send().await.expect("subscribe request");
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"],
            "text/event-stream",
            "subscribe must answer an event stream"
        );
        Sse::from_response(response)
    }

    /// Gauge or counter value from `/metrics`, parsed from the text format.
    pub async fn metric(&self, series: &str) -> f64 {
        metric(&self.client, &self.url("/metrics"), series).await
    }

    /// Stops the server gracefully and waits until it has returned.
    pub async fn stop(mut self) {
        self.stop_in_place().await;
    }

    async fn stop_in_place(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(WAIT, task)
                .await
                .expect("server stops within the wait")
                .expect("server task did not panic")
                .expect("server returned Ok");
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// An event stream read through `eventsource-stream`, an SSE parser we did
/// not write. Comments (heartbeats) are not events and never show here.
pub struct Sse {
    events: BoxStream<'static, Result<Event, EventStreamError<reqwest::Error>>>,
}

impl Sse {
    pub fn from_response(response: reqwest::Response) -> Sse {
        Sse {
            events: response.bytes_stream().eventsource().boxed(),
        }
    }

    /// The next event; panics if none comes within [`WAIT`] or the stream ends.
    pub async fn next(&mut self) -> Event {
        self.try_next(WAIT)
            .await
            .expect("an event within the wait, before the stream ended")
    }

    /// The next event within `wait`, or `None` on timeout or end of stream.
    pub async fn try_next(&mut self, wait: Duration) -> Option<Event> {
        match tokio::time::timeout(wait, self.events.next()).await {
            Ok(Some(Ok(event))) => Some(event),
            Ok(Some(Err(e))) => panic!("stream error: {e}"),
            Ok(None) | Err(_) => None,
        }
    }

    /// The next `n` events' data.
    pub async fn data(&mut self, n: usize) -> Vec<String> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.next().await.data);
        }
        out
    }

    /// Whether the server ended the stream within `wait` (events before the
    /// end are skipped).
    pub async fn ends_within(&mut self, wait: Duration) -> bool {
        tokio::time::timeout(wait, async {
            while let Some(item) = self.events.next().await {
                if item.is_err() {
                    break;
                }
            }
        })
        .await
        .is_ok()
    }
}

/// A raw HTTP/1.1 exchange over TCP, for tests about exact bytes: sends
/// `request` as is and reads what comes back.
pub struct Raw {
    pub stream: TcpStream,
    pub received: Vec<u8>,
}

impl Raw {
    pub async fn send(addr: SocketAddr, request: &str) -> Raw {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        Raw {
            stream,
            received: Vec::new(),
        }
    }

    /// Reads until `needle` has been received (panics after [`WAIT`]).
    pub async fn read_until(&mut self, needle: &str) -> String {
        let found = tokio::time::timeout(WAIT, async {
            let mut buf = [0u8; 4096];
            while !self.text().contains(needle) {
                let n = self.stream.read(&mut buf).await.unwrap();
                if n == 0 {
                    return false;
                }
                self.received.extend_from_slice(&buf[..n]);
            }
            true
        })
        .await;
        assert!(
            matches!(found, Ok(true)),
            "did not receive {needle:?}; got:\n{}",
            self.text()
        );
        self.text()
    }

    /// Reads until the server closes the connection (panics after [`WAIT`]).
    pub async fn read_to_end(&mut self) -> String {
        tokio::time::timeout(WAIT, self.stream.read_to_end(&mut self.received))
            .await
            .expect("server closes within the wait")
            .unwrap();
        self.text()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.received).into_owned()
    }
}

/// `GET path` with SSE-ish headers as a raw request string.
pub fn get(path: &str, extra_headers: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\nAccept: text/event-stream\r\n{extra_headers}\r\n")
}

/// The real `herald` binary started as a child process on an ephemeral
/// port, for tests that measure the server's own memory and file
/// descriptors (an in-process server shares them with the test). Killed
/// (by its pid, through `kill_on_drop`) when dropped.
pub struct Binary {
    child: tokio::process::Child,
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    /// Everything the server logged (stderr), line by line.
    pub logs: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Binary {
    pub async fn start(args: &[&str]) -> Binary {
        Binary::start_with_env(args, &[]).await
    }

    /// [`Binary::start`] with extra environment variables for the child.
    pub async fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Binary {
        Binary::start_logging(args, env, "warn,herald=info").await
    }

    /// [`Binary::start_with_env`] with the `--log` filter `log`.
    pub async fn start_logging(args: &[&str], env: &[(&str, &str)], log: &str) -> Binary {
        use tokio::io::AsyncBufReadExt;
        let mut child = tokio::process::Command::new(herald_bin())
            .args(["--listen", "127.0.0.1:0", "--log", log])
            .args(args)
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the herald binary starts");
        let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let logs = Arc::new(std::sync::Mutex::new(Vec::new()));
        let addr = tokio::time::timeout(WAIT, async {
            while let Some(line) = lines.next_line().await.unwrap() {
                logs.lock().unwrap().push(line.clone());
                if let Some((_, rest)) = line
                    .split_once("listening on http://")
                    .or_else(|| line.split_once("listening on https://"))
                {
                    let end = rest
                        .find(|c: char| !(c.is_ascii_digit() || ".:".contains(c)))
                        .unwrap_or(rest.len());
                    return rest[..end].parse::<SocketAddr>().unwrap();
                }
            }
            panic!("the binary exited before listening");
        })
        .await
        .expect("the binary logs its address");
        // Keep draining logs so the child never blocks on a full pipe.
        let sink = logs.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                sink.lock().unwrap().push(line);
            }
        });
        Binary {
            child,
            addr,
            logs,
            client: reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("a plain HTTP client builds"),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// `GET /channels` as JSON.
    pub async fn channels(&self) -> serde_json::Value {
        get_channels(&self.client, &self.url("/channels")).await
    }

    /// Sends SIGHUP to the child, by its pid.
    pub async fn hangup(&self) {
        let status = tokio::process::Command::new("kill")
            .args(["-HUP", &self.pid().to_string()])
            .status()
            .await
            .unwrap();
        assert!(status.success());
    }

    /// Kills the server with SIGKILL (no shutdown, no goodbye).
    pub async fn kill(&mut self) {
        self.child.start_kill().expect("the binary is running");
        let _ = self.child.wait().await;
    }

    /// Whether some log line contains `needle`.
    pub fn logged(&self, needle: &str) -> bool {
        self.logs.lock().unwrap().iter().any(|l| l.contains(needle))
    }

    /// Kills the server with SIGKILL (no shutdown of any kind) and waits
    /// until it is gone.
    pub async fn kill9(mut self) {
        self.child.start_kill().expect("the binary can be killed");
        let _ = tokio::time::timeout(WAIT, self.child.wait()).await;
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("the binary is running")
    }

    /// Resident memory of the server process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/<pid>/status")
    }

    /// Open file descriptors of the server process.
    pub fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .unwrap()
            .count()
    }

    /// Gauge or counter value from `/metrics`.
    pub async fn metric(&self, series: &str) -> f64 {
        metric(&self.client, &self.url("/metrics"), series).await
    }

    /// Waits until `series` reads `value` (panics after [`WAIT`]).
    pub async fn wait_for_metric(&self, series: &str, value: f64) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let now = self.metric(series).await;
            if now == value {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{series} is {now}, expected {value}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Publishes and returns the event's id (panics unless 200).
    pub async fn publish(&self, channel: &str, data: &str) -> String {
        let response = tokio::time::timeout(
            WAIT,
            self.client
                .post(self.url(&format!("/publish/{channel}")))
                .body(data.to_owned())
                .send(),
        )
        .await
        .expect("publish answers within the wait")
        .expect("publish request");
        assert_eq!(response.status(), 200, "publish to {channel}");
        let answer: serde_json::Value = response.json().await.unwrap();
        answer["id"].as_str().unwrap().to_owned()
    }

    /// Proves the server serves an ordinary client end to end: a subscriber
    /// opens, a publish reaches it, `/healthz` answers.
    pub async fn serves_others(&self, channel: &str) {
        let response = self
            .client
            .get(self.url(&format!("/events/{channel}")))
            .send();
        let response = tokio::time::timeout(WAIT, response)
            .await
            .expect("subscribe answers within the wait")
            .unwrap();
        assert_eq!(response.status(), 200);
        let mut events = response.bytes_stream().eventsource();
        let data = format!("still serving {channel}");
        self.publish(channel, &data).await;
        let event = tokio::time::timeout(WAIT, events.next())
            .await
            .expect("the event arrives within the wait")
            .expect("the stream stays open")
            .expect("a well-formed event");
        assert_eq!(event.data, data);
        let health = self.client.get(self.url("/healthz")).send().await.unwrap();
        assert_eq!(health.status(), 200);
    }
}

/// The herald binary the binary tests run: `HERALD_TEST_BIN` if set (e.g.
/// `target/release/herald` from `scripts/crash.sh`), else the one cargo
/// built for these tests.
pub fn herald_bin() -> std::path::PathBuf {
    std::env::var_os("HERALD_TEST_BIN")
        .map(Into::into)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_herald").into())
}

/// Waits until `condition` holds, checking every 20 ms (panics after [`WAIT`]).
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Binary {
    /// Waits until the server's RSS is within `slack_kib` of `baseline_kib`
    /// (panics with `what` after [`WAIT`]).
    pub async fn assert_memory_returned(&self, what: &str, baseline_kib: u64, slack_kib: u64) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let rss = self.rss_kib();
            if rss <= baseline_kib + slack_kib {
                eprintln!("{what}: rss {baseline_kib} -> {rss} KiB");
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: server RSS {rss} KiB, baseline {baseline_kib} KiB + {slack_kib} KiB"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

async fn get_channels(client: &reqwest::Client, url: &str) -> serde_json::Value {
    let response = client.get(url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// The value of `series` in the Prometheus text at `url` (`/metrics`).
async fn metric(client: &reqwest::Client, url: &str, series: &str) -> f64 {
    let text = tokio::time::timeout(WAIT, async {
        client.get(url).send().await.unwrap().text().await.unwrap()
    })
    .await
    .expect("/metrics answers within the wait");
    text.lines()
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no series {series} in /metrics:\n{text}"))
}

/// [`eventually`] for a condition that has to wait on something (a metric).
pub async fn eventually_async<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
