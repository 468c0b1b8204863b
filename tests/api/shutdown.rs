//! SPEC §5: SIGINT/SIGTERM end every stream cleanly and the server exits 0
//! within `--shutdown-grace`, even with streams open.

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::helpers::{eventually, get, spawn_app, spawn_app_with, Raw, WAIT};

#[tokio::test]
async fn shutdown_ends_open_streams_and_returns() {
    let app = spawn_app_with(|c| c.shutdown_grace = Duration::from_secs(30)).await;
    let mut sse = app.subscribe("/events/news", None).await;
    app.publish("news", "before").await;
    assert_eq!(sse.next().await.data, "before");
    let started = Instant::now();
    app.stop().await;
    assert!(sse.ends_within(WAIT).await, "the stream ends on shutdown");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "an open stream did not hold shutdown for the grace period"
    );
}

#[tokio::test]
async fn port_is_free_after_shutdown() {
    let app = spawn_app().await;
    let addr = app.addr;
    let _raw = Raw::send(addr, &get("/events/x", "")).await;
    app.stop().await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "nothing listens any more"
    );
}

/// Starts the real binary on an ephemeral port; returns it and its address.
async fn start_binary(args: &[&str]) -> (tokio::process::Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the herald binary starts");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = tokio::time::timeout(WAIT, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some((_, rest)) = line.split_once("listening on http://") {
                // Text or JSON logs: the address is what follows, up to the
                // first character that cannot be part of it.
                let end = rest
                    .find(|c: char| !(c.is_ascii_hexdigit() || ".:[]".contains(c)))
                    .unwrap_or(rest.len());
                return rest[..end].to_owned();
            }
        }
        panic!("the binary exited before listening");
    })
    .await
    .expect("the binary logs its address");
    // Keep draining logs so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, addr)
}

#[tokio::test]
async fn sigterm_with_an_open_stream_exits_0_within_the_grace_period() {
    let (mut child, addr) = start_binary(&["--shutdown-grace", "3s", "--log-format", "json"]).await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let base = format!("http://{addr}");
    let response = client
        .get(format!("{base}/events/news"))
        .send()
        .await
        .unwrap();
    let mut sse = crate::helpers::Sse::from_response(response);
    let published = client
        .post(format!("{base}/publish/news"))
        .body("hi")
        .send()
        .await
        .unwrap();
    assert_eq!(published.status(), 200);
    assert_eq!(sse.next().await.data, "hi");

    let pid = child.id().expect("running").to_string();
    let sent = Instant::now();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = tokio::time::timeout(Duration::from_secs(3) + WAIT, child.wait())
        .await
        .expect("the process exits")
        .unwrap();
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
    assert!(
        sent.elapsed() < Duration::from_secs(3) + Duration::from_secs(2),
        "exited within the grace period"
    );
    assert!(sse.ends_within(WAIT).await, "the stream was ended");
}

#[tokio::test]
async fn binary_help_lists_every_flag_with_its_env_var_and_default() {
    let output = Command::new(env!("CARGO_BIN_EXE_herald"))
        .arg("--help")
        .output()
        .await
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for (flag, default) in [
        ("--listen", "127.0.0.1:8080"),
        ("--retry", "3s"),
        ("--heartbeat", "15s"),
        ("--history", "1000"),
        ("--history-bytes", "1MiB"),
        ("--channel-ttl", "1h"),
        ("--max-channels", "10000"),
        ("--max-connections", "10000"),
        ("--max-event-bytes", "65536"),
        ("--header-timeout", "10s"),
        ("--body-timeout", "30s"),
        ("--shutdown-grace", "5s"),
        ("--cors-origin", "*"),
        ("--log-format", "text"),
    ] {
        let env = format!(
            "HERALD_{}",
            flag.trim_start_matches("--")
                .replace('-', "_")
                .to_uppercase()
        );
        let line_start = help
            .find(&format!("{flag} <"))
            .unwrap_or_else(|| panic!("{flag} in --help"));
        let section = &help[line_start..];
        let section = &section[..section[2..].find("\n  -").map_or(section.len(), |i| i + 2)];
        assert!(
            section.contains(&format!("env: {env}")),
            "{flag}: {section}"
        );
        assert!(
            section.contains(&format!("default: {default}")),
            "{flag}: {section}"
        );
    }
}

#[tokio::test]
async fn env_var_sets_a_flag_and_the_command_line_wins() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["--listen", "127.0.0.1:0", "--max-event-bytes", "4"])
        .env("HERALD_MAX_EVENT_BYTES", "1000")
        .env("HERALD_RETRY", "1234ms")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Some((_, a)) = line.split_once("listening on http://") {
            break a.trim().to_owned();
        }
    };
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let r = client
        .post(format!("http://{addr}/publish/x"))
        .body("12345")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413, "the flag (4) beats the variable (1000)");
    let mut raw = Raw::send(addr.parse().unwrap(), &get("/events/x", "")).await;
    assert!(
        raw.read_until("\n\n").await.contains("retry: 1234\n"),
        "the variable applies"
    );
    let _ = child.kill().await;
}

#[tokio::test]
async fn subscribe_while_shutting_down_gets_the_retry_answer() {
    let app = spawn_app().await;
    app.state.shutdown.cancel();
    let response = app
        .client
        .get(app.url("/events/news"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = response.text().await.unwrap();
    assert!(
        body.starts_with("retry: ") && body.contains("shutting down"),
        "{body}"
    );
    let publish = app
        .client
        .post(app.url("/publish/news"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(publish.status(), 503);
    assert!(publish.headers().contains_key("retry-after"));
}

#[tokio::test]
async fn publish_in_flight_when_shutdown_starts_is_finished() {
    let app = spawn_app().await;
    let mut raw = Raw::send(
        app.addr,
        "POST /publish/news HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhe",
    )
    .await;
    // Let the server start reading the body before shutdown begins.
    eventually("the connection is counted", || {
        app.state.metrics.connections_open.get() >= 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let state = app.state.clone();
    let stopping = tokio::spawn(app.stop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    use tokio::io::AsyncWriteExt;
    raw.stream.write_all(b"llo").await.unwrap();
    let text = raw.read_until("}").await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    stopping.await.unwrap();
    assert_eq!(state.metrics.events_published.get(), 1);
}
