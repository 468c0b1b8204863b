//! Cleartext HTTP/1.1 event streams served outside hyper (issue 23): a
//! connection's first request, when it is a plain `GET` on an event URL, is
//! read and answered by herald's own writer; everything else by hyper, as
//! before. These tests hold the two to the same bytes and the same handling
//! of bad input; each compares against hyper where hyper still serves the
//! same request (a stream behind another request on a kept-alive
//! connection).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::helpers::{get, spawn_app, spawn_app_with, Binary, Raw, TestApp, WAIT};

/// A request herald leaves to hyper (not a `GET`): whatever follows it on
/// its connection is hyper's too.
const HYPERS: &str = "OPTIONS /events/x HTTP/1.1\r\nHost: test\r\n\r\n";

/// A response's bytes with its `date` value blanked (it is the only part
/// that differs from one second to the next).
fn without_date(text: &str) -> String {
    text.lines()
        .map(|line| {
            if line.starts_with("date: ") {
                "date: <date>"
            } else {
                line
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The stream's bytes from its status line up to and including `needle`.
fn stream_part(text: &str, needle: &str) -> String {
    let start = text.rfind("HTTP/1.1 ").expect("a status line");
    let end = text.find(needle).expect("the needle") + needle.len();
    without_date(&text[start..end])
}

async fn streams_open(app: &TestApp) -> f64 {
    app.metric("herald_streams_open").await
}

async fn wait_streams(app: &TestApp, n: f64) {
    let deadline = Instant::now() + WAIT;
    while streams_open(app).await != n {
        assert!(Instant::now() < deadline, "streams never came to {n}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_stream_is_the_same_bytes_as_hypers_and_a_head_may_come_a_byte_at_a_time() {
    let app = spawn_app().await;
    let request = get("/events/same?channel=same", "");
    // Ours: the connection's first request, sent a byte at a time.
    let mut ours = TcpStream::connect(app.addr).await.unwrap();
    for b in request.as_bytes() {
        ours.write_all(&[*b]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut ours = Raw {
        stream: ours,
        received: Vec::new(),
    };
    // hyper's: the same request behind an OPTIONS (hyper's from there on).
    let mut hypers = Raw::send(app.addr, &format!("{HYPERS}{request}")).await;
    ours.read_until("\n\n\r\n").await;
    hypers.read_until("\n\n\r\n").await;
    wait_streams(&app, 2.0).await;
    app.publish("same", "hello").await;
    let ours = ours.read_until("data: hello\n\n\r\n").await;
    let hypers = hypers.read_until("data: hello\n\n\r\n").await;
    assert!(hypers.contains("\r\n\r\nHTTP/1.1 200 OK\r\n"), "{hypers}");
    assert!(ours.starts_with("HTTP/1.1 200 OK\r\n"), "{ours}");
    assert!(ours.contains("transfer-encoding: chunked\r\n"), "{ours}");
    assert_eq!(
        stream_part(&ours, "data: hello\n\n\r\n"),
        stream_part(&hypers, "data: hello\n\n\r\n")
    );
}

#[tokio::test]
async fn an_error_answer_is_the_same_bytes_as_hypers_and_the_connection_is_kept() {
    let app = spawn_app().await;
    let bad = get("/events/bad%20name", "");
    let mut ours = Raw::send(
        app.addr,
        &format!("{bad}GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"),
    )
    .await;
    let mut hypers = Raw::send(app.addr, &format!("{HYPERS}{bad}")).await;
    let ours = ours.read_until("\r\n\r\nok").await;
    let hypers = hypers.read_until("\"}").await;
    let ours_error = &ours[..ours.rfind("HTTP/1.1 200").unwrap()];
    let hypers_error = &hypers[hypers.rfind("HTTP/1.1 400").expect("a 400")..];
    assert_eq!(without_date(ours_error), without_date(hypers_error));
    assert!(
        ours_error.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{ours}"
    );
}

#[tokio::test]
async fn kept_alive_gets_then_a_stream_are_the_same_bytes_as_hypers() {
    let app = spawn_app().await;
    let requests = format!(
        "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\nGET /nothing-here HTTP/1.1\r\nHost: t\r\n\r\n{}",
        get("/events/kept", "")
    );
    let mut ours = Raw::send(app.addr, &requests).await;
    let mut hypers = Raw::send(app.addr, &format!("{HYPERS}{requests}")).await;
    ours.read_until("\n\n\r\n").await;
    hypers.read_until("\n\n\r\n").await;
    wait_streams(&app, 2.0).await;
    app.publish("kept", "k").await;
    let ours = ours.read_until("data: k\n\n\r\n").await;
    let hypers = hypers.read_until("data: k\n\n\r\n").await;
    let hypers = &hypers[hypers.find("HTTP/1.1 200").expect("hyper's health answer")..];
    assert_eq!(without_date(&ours), without_date(hypers));
    assert_eq!(ours.matches("HTTP/1.1 ").count(), 3, "{ours}");
}

#[tokio::test]
async fn pipelined_requests_ahead_of_a_stream_are_answered_in_order() {
    let app = spawn_app().await;
    let mut raw = Raw::send(
        app.addr,
        &format!(
            "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\nOPTIONS /events/p HTTP/1.1\r\nHost: t\r\n\r\n{}",
            get("/events/p", "")
        ),
    )
    .await;
    raw.read_until("\n\n\r\n").await;
    wait_streams(&app, 1.0).await;
    app.publish("p", "after").await;
    let text = raw.read_until("data: after").await;
    let statuses: Vec<&str> = text.matches("HTTP/1.1 ").collect();
    assert_eq!(statuses.len(), 3, "{text}");
    let order: Vec<usize> = ["HTTP/1.1 200", "HTTP/1.1 204", "text/event-stream"]
        .iter()
        .map(|s| text.find(s).unwrap_or_else(|| panic!("{s} in {text}")))
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");
}

#[tokio::test]
async fn bytes_sent_after_the_stream_started_do_not_stop_it_and_are_read_after_it() {
    let app = spawn_app().await;
    let mut raw = Raw::send(app.addr, &get("/events/chatty", "")).await;
    raw.read_until("\n\n\r\n").await;
    // A request pipelined behind the stream, then more than the server
    // keeps of it: the stream goes on.
    raw.stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    raw.stream.write_all(&vec![b'x'; 64 * 1024]).await.unwrap();
    app.publish("chatty", "one").await;
    raw.read_until("data: one").await;
    app.publish("chatty", "two").await;
    raw.read_until("data: two").await;
    assert_eq!(streams_open(&app).await, 1.0);
}

#[tokio::test]
async fn a_half_closed_socket_ends_its_stream_as_hyper_does() {
    let app = spawn_app().await;
    // Ours, then hyper's (a stream behind a health check).
    for prefix in ["", HYPERS] {
        let mut raw = Raw::send(app.addr, &format!("{prefix}{}", get("/events/half", ""))).await;
        raw.read_until("\n\n\r\n").await;
        wait_streams(&app, 1.0).await;
        raw.stream.shutdown().await.unwrap();
        let text = raw.read_to_end().await;
        assert!(text.contains(": herald"), "{text}");
        wait_streams(&app, 0.0).await;
    }
}

#[tokio::test]
async fn a_client_hanging_up_ends_its_stream() {
    let app = spawn_app().await;
    let mut raw = Raw::send(app.addr, &get("/events/gone", "")).await;
    raw.read_until("\n\n\r\n").await;
    wait_streams(&app, 1.0).await;
    drop(raw);
    wait_streams(&app, 0.0).await;
}

#[tokio::test]
async fn a_trickled_stream_head_is_cut_by_the_header_timeout_unanswered() {
    let app = spawn_app_with(|c| c.header_timeout = Duration::from_millis(300)).await;
    let mut raw = Raw::send(app.addr, "GET /events/loris HTTP/1.1\r\nHost: t\r\n").await;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        if raw.stream.write_all(b"X").await.is_err() {
            break;
        }
    }
    let text = raw.read_to_end().await;
    assert_eq!(text, "", "nothing is answered, as hyper answers nothing");
    assert_eq!(streams_open(&app).await, 0.0);
}

#[tokio::test]
async fn heads_past_the_limit_are_hypers_431_counted_and_below_it_served() {
    let app = spawn_app().await;
    let before = app
        .metric("herald_requests_rejected_total{reason=\"bad_request\"}")
        .await;
    // Past herald's own head limit, within hyper's: hyper serves it.
    let big = format!("X-Big: {}\r\n", "a".repeat(32 * 1024));
    let mut raw = Raw::send(app.addr, &get("/events/big", &big)).await;
    raw.read_until("\n\n\r\n").await;
    drop(raw);
    // Past hyper's (about 400 KiB): 431, counted, closed.
    let huge = format!("X-Big: {}\r\n", "a".repeat(500 * 1024));
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let _ = stream.write_all(get("/events/big", &huge).as_bytes()).await;
    let mut text = Vec::new();
    let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut text)).await;
    let text = String::from_utf8_lossy(&text);
    assert!(
        text.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
        "{text:.200}"
    );
    let deadline = Instant::now() + WAIT;
    while app
        .metric("herald_requests_rejected_total{reason=\"bad_request\"}")
        .await
        != before + 1.0
    {
        assert!(Instant::now() < deadline, "the 431 is counted once");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// 100,000 streams opened and closed, 50 at a time: every one is answered,
/// every stream and connection is gone afterwards, and the server's memory
/// after the last 50,000 is where it was after the first 50,000.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_short_lived_streams_leave_nothing_behind() {
    const STREAMS: usize = 100_000;
    const AT_ONCE: usize = 50;
    let bin =
        Binary::start_with_env(&["--max-connections", "1000"], &[("MALLOC_ARENA_MAX", "1")]).await;
    bin.serves_others("warm-up").await;
    let addr = bin.addr;
    let mut rss = Vec::new();
    for half in 0..2 {
        let mut tasks = Vec::new();
        for worker in 0..AT_ONCE {
            tasks.push(tokio::spawn(async move {
                for i in 0..STREAMS / 2 / AT_ONCE {
                    let request = get(&format!("/events/short-{}", (worker + i) % 100), "");
                    let mut stream = TcpStream::connect(addr).await.unwrap();
                    stream.write_all(request.as_bytes()).await.unwrap();
                    let mut got = Vec::new();
                    let mut buf = [0u8; 512];
                    while !got.ends_with(b"\n\n\r\n") {
                        let n = tokio::time::timeout(WAIT, stream.read(&mut buf))
                            .await
                            .expect("answered in time")
                            .unwrap();
                        assert!(n > 0, "closed before the stream started");
                        got.extend_from_slice(&buf[..n]);
                    }
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        bin.wait_for_metric("herald_streams_open", 0.0).await;
        rss.push(bin.rss_kib());
        eprintln!(
            "after {} streams: rss {} KiB",
            (half + 1) * STREAMS / 2,
            rss[half]
        );
    }
    // A leak of a stream's state (over 1 KiB each) would add 50+ MiB.
    assert!(
        rss[1] <= rss[0] + 8 * 1024,
        "memory grew from {} to {} KiB over 50,000 more streams",
        rss[0],
        rss[1]
    );
}
