//! Browser end-to-end tests: `web/index.html` and `web/chat.html` in real headless
//! chromium. Each test starts herald in-process, runs one scenario of
//! `tests/browser/e2e.mjs` (playwright-core driving `/usr/bin/chromium`), and answers
//! the steps the script asks for on its stdout: a publish from outside the browser,
//! or a restart of the server on the same port. Screenshots go to
//! `target/screenshots/`.
//!
//! Needs chromium, node and `npm ci --prefix tests/browser`. When one is missing the
//! tests print one line saying so and pass; with `CI=true` they fail instead.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Once, OnceLock};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

use crate::helpers::{spawn_app, spawn_app_at, spawn_app_with, TestApp};
use crate::tls_client::spawn_tls_app_with;

mod auth;
mod herald_js;

/// Upper bound for one scenario, browser start included; e2e.mjs has its own,
/// shorter watchdog, so this only fires if node itself hangs.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(240);

/// EventSource waits the server's `retry:` before reconnecting; short for the restart test.
const SHORT_RETRY: Duration = Duration::from_millis(200);

pub(crate) fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

pub(crate) fn screenshot_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots")
}

pub(crate) fn chromium_path() -> PathBuf {
    std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// What is missing for the browser tests, if anything; checked once per run.
fn missing_tools() -> Option<&'static str> {
    static MISSING: OnceLock<Option<String>> = OnceLock::new();
    MISSING
        .get_or_init(|| {
            let chromium = chromium_path();
            if !chromium.is_file() {
                return Some(format!(
                    "no browser at {} (apt-get install chromium)",
                    chromium.display()
                ));
            }
            let node = std::process::Command::new("node")
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            if !matches!(node, Ok(s) if s.success()) {
                return Some("no `node` on PATH (apt-get install nodejs npm)".to_string());
            }
            let playwright = browser_dir().join("node_modules/playwright-core/package.json");
            if !playwright.is_file() {
                return Some(
                    "playwright-core is not installed (npm ci --prefix tests/browser)".to_string(),
                );
            }
            None
        })
        .as_deref()
}

/// True when the browser tests can run. Otherwise prints the reason once and returns
/// false, or panics under `CI=true`, where a missing browser is a failure.
pub(crate) fn browser_available() -> bool {
    let Some(why) = missing_tools() else {
        return true;
    };
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("browser tests cannot run and CI=true: {why}");
    }
    static SAID: Once = Once::new();
    SAID.call_once(|| {
        // Straight to stderr, past the test harness's capture, so it is seen.
        let _ = writeln!(std::io::stderr(), "browser tests skipped: {why}");
    });
    false
}

/// One chromium at a time: the machine has two cores, and parallel browsers make
/// every wait in the scenarios slower and flakier.
pub(crate) async fn one_browser_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: OnceLock<tokio::sync::Mutex<()>> = OnceLock::new();
    LOCK.get_or_init(|| tokio::sync::Mutex::new(()))
        .lock()
        .await
}

/// The server a scenario runs against, and what its steps may do to it.
struct Driver {
    app: Option<TestApp>,
    /// Config applied at start and again at every restart.
    configure: fn(&mut herald::Config),
}

impl Driver {
    fn app(&self) -> &TestApp {
        self.app
            .as_ref()
            .expect("the server is running between steps")
    }

    async fn step(&mut self, step: &Value) -> Value {
        match step["name"].as_str() {
            Some("publish") => {
                let channel = step["channel"]
                    .as_str()
                    .expect("publish step has a channel");
                let data = step["data"].as_str().expect("publish step has data");
                self.app().publish(channel, data).await
            }
            Some("restart") => {
                let app = self.app.take().expect("the server is running");
                let addr = app.addr;
                app.stop().await;
                self.app = Some(spawn_app_at(addr, self.configure).await);
                json!({})
            }
            Some("mint") => auth::mint(step),
            other => json!({ "error": format!("unknown step {other:?}") }),
        }
    }
}

/// Runs `node tests/browser/e2e.mjs <base> <scenario> <params>` against the driver's
/// server, answering its steps, and returns the script's result; panics on failure.
async fn run_scenario(driver: &mut Driver, scenario: &str, params: Value) -> Value {
    let base = driver.app().base.clone();
    run_scenario_at(driver, &base, scenario, params).await
}

/// [`run_scenario`] with the page on `base` (an `https://` origin).
async fn run_scenario_at(driver: &mut Driver, base: &str, scenario: &str, params: Value) -> Value {
    let mut child = Command::new("node")
        .arg(browser_dir().join("e2e.mjs"))
        .arg(base)
        .arg(scenario)
        .arg(params.to_string())
        .current_dir(browser_dir())
        .env("CHROMIUM", chromium_path())
        .env("SCREENSHOT_DIR", screenshot_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node starts");
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout is piped")).lines();
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let stderr_text = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });

    let talk = async {
        let mut result = None;
        while let Some(line) = stdout.next_line().await.expect("read node's stdout") {
            if let Some(step) = line.strip_prefix("@@step ") {
                let step: Value = serde_json::from_str(step).expect("a step is JSON");
                let answer = driver.step(&step).await;
                stdin
                    .write_all(format!("{answer}\n").as_bytes())
                    .await
                    .expect("answer node's step");
                stdin.flush().await.expect("flush node's stdin");
            } else if let Some(outcome) = line.strip_prefix("@@result ") {
                result = Some(serde_json::from_str::<Value>(outcome).expect("the result is JSON"));
            } else {
                println!("{line}");
            }
        }
        let status = child.wait().await.expect("wait for node");
        (result, status)
    };
    let (result, status) = match tokio::time::timeout(SCENARIO_TIMEOUT, talk).await {
        Ok(done) => done,
        Err(_) => panic!("browser scenario {scenario} still running after {SCENARIO_TIMEOUT:?}"),
    };
    let stderr_text = stderr_text.await.unwrap_or_default();
    match result {
        Some(result) if result["ok"] == true && status.success() => result,
        Some(result) => panic!(
            "browser scenario {scenario} failed: {}\n(screenshot: {}/fail-{scenario}.png)\nnode stderr:\n{stderr_text}",
            result["error"].as_str().unwrap_or(&result.to_string()),
            screenshot_dir().display(),
        ),
        None => panic!("browser scenario {scenario} gave no result ({status})\nnode stderr:\n{stderr_text}"),
    }
}

async fn stop(driver: Driver) {
    if let Some(app) = driver.app {
        app.stop().await;
    }
}

fn id_of(answer: &Value) -> String {
    answer["id"]
        .as_str()
        .expect("publish answers an id")
        .to_string()
}

#[tokio::test]
async fn demo_page_shows_published_events_with_line_breaks_and_types() {
    if !browser_available() {
        return;
    }
    let _one = one_browser_at_a_time().await;
    // Arrange
    let mut driver = Driver {
        app: Some(spawn_app().await),
        configure: |_| {},
    };

    // Act: one event from this test over HTTP, the rest from node and the page's form
    let result = run_scenario(&mut driver, "index-live", json!({ "channel": "news" })).await;

    // Assert: the scenario checks every event on the page; the screenshot is there
    assert!(screenshot_dir().join("index.png").is_file(), "{result}");
    stop(driver).await;
}

#[tokio::test]
async fn demo_page_shows_a_gap_notice_when_history_no_longer_reaches_back() {
    if !browser_available() {
        return;
    }
    let _one = one_browser_at_a_time().await;
    // Arrange: a history of 2, five events, so the first three are gone
    let app = spawn_app_with(|c: &mut herald::Config| c.history = 2).await;
    let mut ids = Vec::new();
    for n in 1..=5 {
        ids.push(id_of(&app.publish("gappy", &format!("event {n}")).await));
    }
    let mut driver = Driver {
        app: Some(app),
        configure: |c| c.history = 2,
    };

    // Act: open the page resuming after the first event
    let params = json!({ "channel": "gappy", "lastEventId": ids[0], "retained": ids[3..] });
    run_scenario(&mut driver, "index-gap", params).await;

    // Assert: done in the scenario (gap notice first, then events 4 and 5)
    stop(driver).await;
}

#[tokio::test]
async fn demo_page_opened_with_last_event_id_shows_exactly_the_missed_events_then_live_ones() {
    if !browser_available() {
        return;
    }
    let _one = one_browser_at_a_time().await;
    // Arrange: four events; the page saw the first
    let app = spawn_app().await;
    let mut published = Vec::new();
    for n in 1..=4 {
        let data = format!("missed {n}");
        let id = id_of(&app.publish("resume", &data).await);
        published.push(json!({ "id": id, "data": data }));
    }
    let mut driver = Driver {
        app: Some(app),
        configure: |_| {},
    };

    // Act
    let params = json!({
        "channel": "resume",
        "lastEventId": published[0]["id"],
        "missed": published[1..],
    });
    run_scenario(&mut driver, "index-resume", params).await;

    // Assert: done in the scenario (events 2-4, then one live, nothing else)
    stop(driver).await;
}

#[tokio::test]
async fn demo_page_reconnects_by_itself_after_a_server_restart_and_shows_the_gap() {
    if !browser_available() {
        return;
    }
    let _one = one_browser_at_a_time().await;
    // Arrange
    let configure: fn(&mut herald::Config) = |c| c.retry = SHORT_RETRY;
    let mut driver = Driver {
        app: Some(spawn_app_with(configure).await),
        configure,
    };

    // Act: the scenario asks for the restart once the page has seen an event
    let result = run_scenario(
        &mut driver,
        "index-restart",
        json!({ "channel": "restart" }),
    )
    .await;

    // Assert: done in the scenario (reconnecting, gap notice, a new event, ids grew)
    assert!(result["states"].is_array(), "{result}");
    stop(driver).await;
}

#[tokio::test]
async fn two_chat_windows_as_two_users_see_each_other_come_online_and_leave() {
    chat_presence("sse", "chat-presence.png").await;
}

#[tokio::test]
async fn two_chat_windows_on_websockets_see_each_other_come_online_and_leave() {
    chat_presence("ws", "chat-presence-ws.png").await;
}

/// The chat-presence scenario with the pages on `transport`.
async fn chat_presence(transport: &str, screenshot: &str) {
    if !browser_available() {
        return;
    }
    let _one = one_browser_at_a_time().await;
    // Arrange: access control on, a presence grace longer than a page reload
    // and shorter than the scenario's waits, a token per user
    let configure: fn(&mut herald::Config) = |c| {
        crate::presence::with_auth(c);
        c.presence_grace = Duration::from_secs(3);
    };
    let mut driver = Driver {
        app: Some(spawn_app_with(configure).await),
        configure,
    };
    let token = |sub: &str, name: &str| {
        crate::presence::jwt(json!({"sub": sub, "herald": {
            "subscribe": ["presence-*"], "publish": ["presence-*"], "info": {"name": name}}}))
    };

    // Act
    let params = json!({ "room": "presence-lobby", "transport": transport,
        "alice": token("1", "Alice"), "bob": token("2", "Bob") });
    run_scenario(&mut driver, "chat-presence", params).await;

    // Assert: done in the scenario (online lists, join and leave lines); the screenshot
    assert!(screenshot_dir().join(screenshot).is_file());
    stop(driver).await;
}

#[tokio::test]
async fn two_chat_pages_talk_both_ways_with_join_leave_notices_and_safe_text() {
    if !browser_available() {
        return;
    }
    let _one = one_browser_at_a_time().await;
    // Arrange
    let mut driver = Driver {
        app: Some(spawn_app().await),
        configure: |_| {},
    };

    // Act: alice and bob talk; alice closes her tab and comes back; the server
    // restarts (default retry, so the pages catch up from the new server's history)
    run_scenario(&mut driver, "chat", json!({ "room": "lobby" })).await;

    // Assert: done in the scenario (no duplicates anywhere); the screenshot is there
    assert!(screenshot_dir().join("chat.png").is_file());
    stop(driver).await;
}

#[tokio::test]
async fn twelve_event_sources_on_one_https_page_all_receive_where_http11_stops_at_six() {
    if !browser_available() {
        return;
    }
    let _one = one_browser_at_a_time().await;
    // Arrange: the same server twice, once with a certificate made here
    let (tls_app, _pair) = spawn_tls_app_with(|_| {}).await;
    let https = format!("https://127.0.0.1:{}", tls_app.addr.port());
    let mut over_tls = Driver {
        app: Some(tls_app),
        configure: |_| {},
    };
    let mut plain = Driver {
        app: Some(spawn_app().await),
        configure: |_| {},
    };

    // Act: one page opens 12 EventSources on 12 channels; each channel gets an event
    let h2 = run_scenario_at(
        &mut over_tls,
        &https,
        "many-streams",
        json!({ "streams": 12 }),
    )
    .await;
    let h1 = run_scenario(
        &mut plain,
        "many-streams",
        json!({ "streams": 12, "expectOpen": 6, "settleMs": 1000 }),
    )
    .await;

    // Assert: over HTTPS the browser speaks HTTP/2 and all twelve receive; over
    // plain HTTP/1.1 it holds six connections per origin and the other six
    // EventSources never open: the reason TLS and HTTP/2 exist in herald.
    assert_eq!(h2["protocol"], "h2", "{h2}");
    assert_eq!(
        (h2["opened"].as_u64(), h2["received"].as_u64()),
        (Some(12), Some(12)),
        "{h2}"
    );
    assert_eq!(h1["protocol"], "http/1.1", "{h1}");
    assert_eq!(
        (h1["opened"].as_u64(), h1["received"].as_u64()),
        (Some(6), Some(6)),
        "{h1}"
    );
    stop(over_tls).await;
    stop(plain).await;
}

#[tokio::test]
async fn two_chat_pages_talk_over_websockets_and_catch_up_after_a_restart() {
    if !browser_available() {
        return;
    }
    let _one = one_browser_at_a_time().await;
    // Arrange
    let mut driver = Driver {
        app: Some(spawn_app().await),
        configure: |_| {},
    };

    // Act: the chat scenario with the pages in WebSocket mode (publishing
    // over their sockets, reconnecting by themselves after the restart)
    run_scenario(
        &mut driver,
        "chat",
        json!({ "room": "lobby", "transport": "ws" }),
    )
    .await;

    // Assert: done in the scenario
    assert!(screenshot_dir().join("chat-ws.png").is_file());
    stop(driver).await;
}

#[tokio::test]
async fn a_page_websocket_receives_events_and_publishes_over_the_socket() {
    if !browser_available() {
        return;
    }
    let _one = one_browser_at_a_time().await;
    let mut driver = Driver {
        app: Some(spawn_app().await),
        configure: |_| {},
    };
    let result = run_scenario(&mut driver, "websocket", json!({ "channel": "page" })).await;
    assert_eq!(result["messages"], 4, "{result}");
    stop(driver).await;
}
