//! Hostile clients: each test runs the real binary as a child process (so its
//! memory and file descriptors are its own), attacks it one way, and checks
//! that an ordinary client is still served end to end while and after it
//! happens, and that memory and open connections come back near where they
//! were before.
//!
//! Memory is VmRSS of the server process, measured after a warm-up; "back
//! near baseline" allows [`RSS_SLACK_KIB`] over it. The never-reading
//! subscriber test states and checks a bound while its flood is under way,
//! and checks reuse rather than return afterwards (see there why).

use std::time::Duration;

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::helpers::{Binary, WAIT};

/// How far above its warmed-up baseline the server's RSS may stay once an
/// attack is over: allocator caches and arena growth, not leaks.
const RSS_SLACK_KIB: u64 = 8 * 1024;

/// Starts the binary and warms it up (one subscribe/publish round trip, one
/// metrics scrape), so the baseline includes memory every server has.
async fn start(args: &[&str]) -> Binary {
    let bin = Binary::start(args).await;
    bin.serves_others("warm-up").await;
    bin.metric("herald_streams_open").await;
    bin
}

/// Baseline RSS and fds, measured once the warm-up's connections closed.
async fn baseline(bin: &Binary) -> (u64, usize) {
    bin.wait_for_metric("herald_streams_open", 0.0).await;
    wait_for_connections_at_most(bin, 2).await;
    (bin.rss_kib(), bin.fds())
}

/// Waits until at most `n` connections are open: the test client's pooled
/// keep-alive connections, nothing of an attack.
async fn wait_for_connections_at_most(bin: &Binary, n: usize) {
    let deadline = Instant::now() + WAIT;
    loop {
        let open = bin.metric("herald_connections_open").await;
        if open <= n as f64 {
            return;
        }
        assert!(Instant::now() < deadline, "{open} connections still open");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until no attack connection or stream is left and the fds are back,
/// then checks memory came back within [`RSS_SLACK_KIB`] of the baseline.
async fn back_to_baseline(bin: &Binary, what: &str, baseline_kib: u64, baseline_fds: usize) {
    back_within(bin, what, baseline_kib, baseline_fds, RSS_SLACK_KIB).await;
}

/// [`back_to_baseline`] with another allowance for memory.
async fn back_within(
    bin: &Binary,
    what: &str,
    baseline_kib: u64,
    baseline_fds: usize,
    slack_kib: u64,
) {
    bin.wait_for_metric("herald_streams_open", 0.0).await;
    wait_for_connections_at_most(bin, 2).await;
    let deadline = Instant::now() + WAIT;
    while bin.fds() > baseline_fds + 1 {
        assert!(
            Instant::now() < deadline,
            "{what}: {} fds open, baseline {baseline_fds}",
            bin.fds()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bin.assert_memory_returned(what, baseline_kib, slack_kib)
        .await;
}

async fn connect(bin: &Binary) -> TcpStream {
    TcpStream::connect(bin.addr).await.unwrap()
}

/// Reads whatever the server sends until it closes the connection or
/// `wait` passes; returns it and whether the server closed.
async fn read_for(stream: &mut TcpStream, wait: Duration) -> (String, bool) {
    let mut out = Vec::new();
    let closed = tokio::time::timeout(wait, async {
        let mut buf = [0u8; 8192];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .is_ok();
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_loris_headers_are_cut_off_and_others_are_served() {
    let bin = start(&["--header-timeout", "2s"]).await;
    let (rss, fds) = baseline(&bin).await;

    // Twenty clients trickling a request's headers one byte a second.
    let request =
        b"GET /healthz HTTP/1.1\r\nHost: loris\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let mut lorises = Vec::new();
    for _ in 0..20 {
        let mut stream = connect(&bin).await;
        lorises.push(tokio::spawn(async move {
            // At most 20 bytes (20 s); the server must cut us off long before.
            for &b in &request[..20] {
                if stream.write_all(&[b]).await.is_err() {
                    return true;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            let (text, closed) = read_for(&mut stream, WAIT).await;
            assert!(
                !text.contains(" 200 "),
                "a trickled request was answered: {text}"
            );
            closed
        }));
    }

    bin.serves_others("during-loris").await;
    for loris in lorises {
        assert!(
            loris.await.unwrap(),
            "the server closes a connection that trickles its headers"
        );
    }
    bin.serves_others("after-loris").await;
    back_to_baseline(&bin, "slow loris", rss, fds).await;
}

/// SPEC §2: a subscriber that cannot keep up never slows anyone else and its
/// backlog stays bounded. The bound: what a channel may hold is its history
/// (`--history-bytes`, 1 MiB here) plus its live queue (`--stream-buffer`
/// events, 256 here, of at most `--max-event-bytes`, 64 KiB here: 16 MiB),
/// and a connection holds a few frames in hyper's write buffer. So while
/// 100 MiB are published to a channel whose subscriber never reads, the
/// server's RSS stays within [`FLOOD_BOUND_KIB`] of its baseline (history +
/// queue + request bodies in flight + allocator slack), not growing with
/// the 100 MiB; a reading subscriber on another channel keeps getting its
/// events throughout.
///
/// Afterwards glibc keeps the freed frames cached in its heap (plain RSS
/// stays near the peak; `malloc_trim(0)` from a debugger brings it back to
/// within a few MiB of the baseline), so "memory returns" is checked as
/// reuse: a second identical flood leaves no more than twice
/// [`RSS_SLACK_KIB`] over what the first one did, which a leak of any part
/// of the 100 MiB could not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_never_reads_costs_bounded_memory_while_100_mib_are_published() {
    let bin = start(&[
        "--channel-ttl",
        "2s",
        "--stream-buffer",
        "256",
        "--history-bytes",
        "1MiB",
    ])
    .await;
    let (rss, fds) = baseline(&bin).await;

    let peak1 = flood_a_stuck_subscriber(&bin).await;
    let after1 = bin.rss_kib();
    let peak2 = flood_a_stuck_subscriber(&bin).await;
    let after2 = bin.rss_kib();
    eprintln!(
        "never-reading subscriber: 2 x 100 MiB published; rss baseline {rss} KiB, \
         peaks {peak1} / {peak2} KiB, after {after1} / {after2} KiB"
    );
    for peak in [peak1, peak2] {
        assert!(
            peak <= rss + FLOOD_BOUND_KIB,
            "server RSS peaked at {peak} KiB, over baseline {rss} KiB + {FLOOD_BOUND_KIB} KiB, \
             while a subscriber did not read"
        );
    }
    assert!(
        peak2 <= peak1 + 2 * RSS_SLACK_KIB && after2 <= after1 + 2 * RSS_SLACK_KIB,
        "the second flood did not reuse the first one's memory: peaks {peak1} -> {peak2} KiB, \
         after {after1} -> {after2} KiB"
    );
    bin.serves_others("after-flood").await;
    bin.wait_for_metric("herald_streams_open", 0.0).await;
    wait_for_connections_at_most(&bin, 2).await;
    assert!(
        bin.fds() <= fds + 1,
        "fds {} after, {fds} before",
        bin.fds()
    );
}

/// How far over its baseline the server's RSS may go while 100 MiB are
/// published to a subscriber that never reads (see the test above).
const FLOOD_BOUND_KIB: u64 = 40 * 1024;

/// Publishes 100 MiB to a channel whose one subscriber never reads, checking
/// a reading subscriber elsewhere is served; then lets both go and waits for
/// every channel to be dropped. Returns the peak RSS seen.
async fn flood_a_stuck_subscriber(bin: &Binary) -> u64 {
    let mut stuck = connect(bin).await;
    stuck
        .write_all(b"GET /events/flood HTTP/1.1\r\nHost: stuck\r\n\r\n")
        .await
        .unwrap();
    bin.wait_for_metric("herald_streams_open", 1.0).await;
    let response = bin
        .client
        .get(bin.url("/events/other"))
        .send()
        .await
        .unwrap();
    let mut other = response.bytes_stream().eventsource();

    let data = "z".repeat(64 * 1024);
    let items: Vec<serde_json::Value> = (0..15)
        .map(|_| serde_json::json!({"channel": "flood", "data": data}))
        .collect();
    let batch = serde_json::to_string(&items).unwrap();
    let mut published = 0usize;
    let mut peak = bin.rss_kib();
    let mut round = 0;
    let mut slowest = Duration::ZERO;
    while published < 100 << 20 {
        round += 1;
        let answer = bin
            .client
            .post(bin.url("/publish"))
            .body(batch.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        published += 15 * data.len();
        peak = peak.max(bin.rss_kib());
        if round % 10 == 0 {
            let ping = format!("ping {round}");
            let sent = Instant::now();
            bin.publish("other", &ping).await;
            let event = tokio::time::timeout(WAIT, other.next())
                .await
                .expect("the reading subscriber is served during the flood")
                .unwrap()
                .unwrap();
            assert_eq!(event.data, ping);
            slowest = slowest.max(sent.elapsed());
        }
    }
    // Reported, not asserted: timings on a shared machine are not a test.
    eprintln!("never-reading subscriber: slowest ping to the reading subscriber {slowest:?}");
    drop(stuck);
    drop(other);
    bin.wait_for_metric("herald_streams_open", 0.0).await;
    // --channel-ttl 2s: the flood's channel and its history go.
    let deadline = Instant::now() + WAIT;
    while bin.metric("herald_channels").await > 0.0 {
        assert!(
            Instant::now() < deadline,
            "channels not dropped after the TTL"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    peak
}

/// Past `--max-connections`, subscribes get the 200-and-retry answer and
/// end, everything else a 503 with Retry-After, and once the flood is gone
/// the server serves as before. 50 held streams and 1,000 flooding
/// connections: far below the 20,000 open files either process may have.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_flood_past_the_limit_gets_retry_answers_and_the_server_recovers() {
    const LIMIT: usize = 50;
    let bin = start(&["--max-connections", "50", "--retry", "1s"]).await;
    let (rss, fds) = baseline(&bin).await;
    // The test client's pooled connection, opened during the warm-up, is
    // within the limit: the scrapes below go through it.
    let pooled = bin.metric("herald_connections_open").await as usize;

    // Fill the server up to its limit with open streams.
    let mut held = Vec::new();
    for i in 0..LIMIT - pooled {
        let mut s = connect(&bin).await;
        s.write_all(format!("GET /events/held-{i} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes())
            .await
            .unwrap();
        held.push(s);
    }
    bin.wait_for_metric("herald_streams_open", (LIMIT - pooled) as f64)
        .await;

    let mut flood = Vec::new();
    for i in 0..1000 {
        let addr = bin.addr;
        flood.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            let request = if i % 2 == 0 {
                format!("GET /events/flood-{i} HTTP/1.1\r\nHost: f\r\n\r\n")
            } else {
                format!("POST /publish/flood-{i} HTTP/1.1\r\nHost: f\r\nContent-Length: 1\r\n\r\nx")
            };
            s.write_all(request.as_bytes()).await.unwrap();
            let (text, closed) = read_for(&mut s, WAIT).await;
            (i, text, closed)
        }));
    }
    for task in flood {
        let (i, text, closed) = task.await.unwrap();
        assert!(closed, "flood connection {i} was not closed: {text}");
        let lower = text.to_ascii_lowercase();
        if i % 2 == 0 {
            assert!(
                text.starts_with("HTTP/1.1 200") && lower.contains("text/event-stream"),
                "subscribe past the limit: 200 event stream, got {text}"
            );
            assert!(
                text.contains("retry: ") && text.contains("\n: "),
                "retry and comment: {text}"
            );
            assert!(!text.contains("id: "), "no event past the limit: {text}");
        } else {
            assert!(
                text.starts_with("HTTP/1.1 503"),
                "publish past the limit: 503, got {text}"
            );
            assert!(lower.contains("retry-after: "), "{text}");
        }
    }
    drop(held);
    bin.wait_for_metric("herald_streams_open", 0.0).await;
    assert!(
        bin.metric("herald_requests_rejected_total{reason=\"connection_limit\"}")
            .await
            >= 1000.0,
        "every flooding request was counted as refused"
    );
    bin.serves_others("after-flood").await;
    // Nothing of the flood was published.
    let channels: serde_json::Value = bin.channels().await;
    assert!(
        !channels.to_string().contains("flood-"),
        "a refused publish created a channel: {channels}"
    );
    // A thousand connections' buffers: more for the allocator to keep.
    back_within(&bin, "connection flood", rss, fds, 2 * RSS_SLACK_KIB).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_garbage_is_refused_without_harming_anyone() {
    let bin = start(&["--header-timeout", "2s"]).await;
    let (rss, fds) = baseline(&bin).await;

    let mut rng = fastrand::Rng::with_seed(5);
    let random: Vec<u8> = (0..64 * 1024).map(|_| rng.u8(..)).collect();
    let attacks: Vec<Vec<u8>> = vec![
        random.clone(),
        b"\r\n\r\n\r\n\r\n".repeat(1000),
        b"GET / HTTP/1.1\r\n".repeat(5000),
        b"BREW /coffee HTCPCP/1.0\r\n\r\n".to_vec(),
        b"GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n".to_vec(),
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n".to_vec(),
        b"POST /publish/g HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxy".to_vec(),
        b"POST /publish/g HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nxx\r\n".to_vec(),
        b"GET /healthz HTTP/1.1\r\nHo\0st: x\r\n\r\n".to_vec(),
        // Two good requests, then garbage on the same connection.
        [
            &b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            &random[..4096],
        ]
        .concat(),
    ];
    let mut refusals = 0;
    for (i, attack) in attacks.iter().enumerate() {
        let mut s = connect(&bin).await;
        // The server may close before reading it all; that is fine.
        let _ = s.write_all(attack).await;
        let (text, closed) = read_for(&mut s, WAIT).await;
        assert!(closed, "garbage connection {i} left open: {text:.200}");
        refusals += ["HTTP/1.1 4", "HTTP/1.1 5"]
            .iter()
            .map(|status| text.matches(status).count())
            .sum::<usize>();
        if i == attacks.len() - 1 {
            assert_eq!(text.matches("HTTP/1.1 200").count(), 2, "{text:.500}");
        } else {
            assert!(
                !text.contains(" 200 "),
                "garbage {i} answered 200: {text:.300}"
            );
        }
    }
    // Every refusal is counted (SPEC §4), hyper's own 400s for what it
    // cannot parse included; the count follows each connection's end.
    assert!(refusals >= attacks.len() - 1, "{refusals} refusals");
    let deadline = Instant::now() + WAIT;
    while rejected_total(&bin).await != refusals as f64 {
        assert!(
            Instant::now() < deadline,
            "{} refusals counted, {refusals} answered",
            rejected_total(&bin).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let channels: serde_json::Value = bin.channels().await;
    assert!(
        !channels.to_string().contains("\"g\""),
        "garbage published: {channels}"
    );
    bin.serves_others("after-garbage").await;
    back_to_baseline(&bin, "pipelined garbage", rss, fds).await;
}

/// `herald_requests_rejected_total` summed over its reasons.
async fn rejected_total(bin: &Binary) -> f64 {
    let text = bin
        .client
        .get(bin.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with("herald_requests_rejected_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_and_last_event_id_are_refused_or_answered_with_a_gap() {
    let bin = start(&["--header-timeout", "2s"]).await;
    let (rss, fds) = baseline(&bin).await;
    bin.publish("big", "one").await;

    // A large header within hyper's buffer (about 400 KiB) is served;
    // headers past it are refused and the connection closed.
    let mut s = connect(&bin).await;
    let head = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let (text, closed) = read_for(&mut s, WAIT).await;
    assert!(
        closed && (text.starts_with("HTTP/1.1 200") || text.starts_with("HTTP/1.1 431")),
        "{text:.200}"
    );
    for size in [1 << 20, 4 << 20] {
        let mut s = connect(&bin).await;
        let head = format!(
            "GET /events/big HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
            "a".repeat(size)
        );
        let _ = s.write_all(head.as_bytes()).await;
        let (text, closed) = read_for(&mut s, WAIT).await;
        assert!(
            closed && !text.contains(" 200 "),
            "{size}-byte header: {text:.200}"
        );
    }
    // Thousands of small headers.
    let mut s = connect(&bin).await;
    let many: String = (0..5000).map(|i| format!("X-{i}: v\r\n")).collect();
    let _ = s
        .write_all(format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{many}\r\n").as_bytes())
        .await;
    let (text, closed) = read_for(&mut s, WAIT).await;
    assert!(
        closed && !text.contains(" 200 "),
        "5000 headers: {text:.200}"
    );

    // A Last-Event-ID that fits the buffers but is no id of ours: 200 and a
    // herald.gap, then what the channel retains (SPEC §2: malformed is a gap).
    for id in ["9".repeat(8000), "1".repeat(21), "x".repeat(8000)] {
        let mut s = connect(&bin).await;
        s.write_all(
            format!("GET /events/big HTTP/1.1\r\nHost: x\r\nLast-Event-ID: {id}\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
        let mut text = String::new();
        let deadline = Instant::now() + WAIT;
        while !text.contains("data: one") {
            assert!(
                Instant::now() < deadline,
                "no replay after an oversized id: {text:.300}"
            );
            let (more, closed) = read_for(&mut s, Duration::from_millis(200)).await;
            text.push_str(&more);
            assert!(
                !closed || text.contains("data: one"),
                "stream closed: {text:.300}"
            );
        }
        assert!(text.starts_with("HTTP/1.1 200"), "{text:.200}");
        assert!(
            text.contains("event: herald.gap"),
            "a gap for a malformed id: {text:.300}"
        );
    }
    bin.serves_others("after-oversized").await;
    back_to_baseline(&bin, "oversized headers", rss, fds).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_and_percent_escapes_in_path_and_query_are_400s() {
    let bin = start(&["--header-timeout", "2s"]).await;
    let (rss, fds) = baseline(&bin).await;

    let cases: &[(&[u8], &str)] = &[
        (b"GET /events/%FF HTTP/1.1", "400"),
        (b"GET /events/%C3%A9 HTTP/1.1", "400"),
        (b"GET /events/a%2Fb HTTP/1.1", "400"),
        (b"GET /events/a%00b HTTP/1.1", "400"),
        (b"GET /events/%ZZ HTTP/1.1", "400"),
        (b"GET /events/%2e%2e HTTP/1.1", "400"),
        (b"GET /events?channel=%FF HTTP/1.1", "400"),
        (b"GET /events?channel=%E2%82%AC HTTP/1.1", "400"),
        (b"GET /events?channel=a%26channel%3Db HTTP/1.1", "400"),
        (b"GET /events?channel= HTTP/1.1", "400"),
        (b"GET /events?%FF=%FF HTTP/1.1", "400"),
        (b"POST /publish/%FF HTTP/1.1\r\nContent-Length: 1", "400"),
        (
            b"POST /publish/ok?event=%FF HTTP/1.1\r\nContent-Length: 1",
            "400",
        ),
        (
            b"POST /publish/ok?event=herald%2Egap HTTP/1.1\r\nContent-Length: 1",
            "400",
        ),
        (b"GET /%2e%2e/Cargo.toml HTTP/1.1", "404"),
        (b"GET /..%2F..%2FCargo.toml HTTP/1.1", "404"),
        (b"GET /%FF%FE HTTP/1.1", "404"),
    ];
    for (line, status) in cases {
        let mut s = connect(&bin).await;
        let request = [*line, &b"\r\nHost: x\r\nConnection: close\r\n\r\nx"[..]].concat();
        s.write_all(&request).await.unwrap();
        let (text, _) = read_for(&mut s, WAIT).await;
        let shown = String::from_utf8_lossy(line);
        assert!(
            text.starts_with(&format!("HTTP/1.1 {status}")),
            "{shown}: expected {status}, got {text:.300}"
        );
    }
    // Raw bytes that are not UTF-8 (or not even allowed in a URI): never a
    // 200, never a crash.
    for line in [
        &b"GET /events/\xff\xfe HTTP/1.1"[..],
        b"GET /events?channel=\xc3 HTTP/1.1",
        b"GET /\x00 HTTP/1.1",
    ] {
        let mut s = connect(&bin).await;
        s.write_all(&[line, &b"\r\nHost: x\r\n\r\n"[..]].concat())
            .await
            .unwrap();
        let (text, _) = read_for(&mut s, WAIT).await;
        assert!(
            !text.contains(" 200 "),
            "{:?}: {text:.200}",
            String::from_utf8_lossy(line)
        );
    }
    // A malformed lastEventId is a gap, not an error (SPEC §2).
    let mut s = connect(&bin).await;
    s.write_all(b"GET /events/ok?lastEventId=%FF HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    let deadline = Instant::now() + WAIT;
    while !text.contains("herald.gap") {
        assert!(
            Instant::now() < deadline,
            "no gap for lastEventId=%FF: {text:.300}"
        );
        text.push_str(&read_for(&mut s, Duration::from_millis(200)).await.0);
    }
    assert!(text.starts_with("HTTP/1.1 200"));
    drop(s);

    let channels: serde_json::Value = bin.channels().await;
    assert_eq!(
        channels.as_array().unwrap().len(),
        2,
        "only warm-up and ok: {channels}"
    );
    bin.serves_others("after-escapes").await;
    back_to_baseline(&bin, "escapes", rss, fds).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stops_half_way_publishes_nothing() {
    let bin = start(&["--body-timeout", "1s", "--header-timeout", "2s"]).await;
    let (rss, fds) = baseline(&bin).await;

    // Content-Length announced, half sent, then the client hangs up.
    let mut s = connect(&bin).await;
    s.write_all(b"POST /publish/half HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nfifty bytes of a hundred.........................")
        .await
        .unwrap();
    drop(s);
    // Half sent, then the client waits: 408 after --body-timeout.
    let mut s = connect(&bin).await;
    s.write_all(b"POST /publish/half HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nfifty")
        .await
        .unwrap();
    let (text, _) = read_for(&mut s, WAIT).await;
    assert!(text.starts_with("HTTP/1.1 408"), "{text:.300}");
    // Chunked, with the last chunk never sent, then hang up; and the same
    // with the client half-closing its side.
    for half_close in [false, true] {
        let mut s = connect(&bin).await;
        s.write_all(b"POST /publish/half HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
            .await
            .unwrap();
        if half_close {
            s.shutdown().await.unwrap();
            let (text, _) = read_for(&mut s, WAIT).await;
            assert!(!text.contains(" 200 "), "{text:.300}");
        }
        drop(s);
    }
    // A control publish after them all lands; nothing before it did.
    bin.publish("half", "whole").await;
    let channels: serde_json::Value = bin.channels().await;
    let half = channels
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["channel"] == "half")
        .expect("the control publish created the channel");
    assert_eq!(
        half["retained"], 1,
        "only the whole publish is retained: {channels}"
    );
    bin.serves_others("after-half-bodies").await;
    back_to_baseline(&bin, "half bodies", rss, fds).await;
}

/// A publisher that disconnects at a random point of its request: the event
/// is published whole or not at all. Every retained event's data must be one
/// of the payloads sent, complete; the ones whose request was complete and
/// answered must all be there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_that_disconnects_mid_request_publishes_whole_or_nothing() {
    let bin = start(&["--history", "1000", "--history-bytes", "64MiB"]).await;
    let (rss, fds) = baseline(&bin).await;

    let mut rng = fastrand::Rng::with_seed(11);
    let mut answered = Vec::new();
    let mut payloads = std::collections::HashSet::new();
    for attempt in 0..200 {
        let payload = format!("attempt-{attempt}-{}-end", "p".repeat(rng.usize(1..20_000)));
        payloads.insert(payload.clone());
        let request = format!(
            "POST /publish/whole HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{payload}",
            payload.len()
        );
        let bytes = request.as_bytes();
        let mut s = connect(&bin).await;
        match rng.u8(..4) {
            // Cut anywhere: in the headers, in the body, or after it all.
            0 | 1 => {
                let cut = rng.usize(0..=bytes.len());
                s.write_all(&bytes[..cut]).await.unwrap();
                drop(s);
            }
            // Everything sent, hung up before the answer.
            2 => {
                s.write_all(bytes).await.unwrap();
                drop(s);
            }
            // Everything sent and the answer read.
            _ => {
                s.write_all(bytes).await.unwrap();
                let mut text = String::new();
                while !text.contains('}') {
                    let (more, closed) = read_for(&mut s, Duration::from_millis(500)).await;
                    text.push_str(&more);
                    assert!(!closed || text.contains('}'), "{text}");
                }
                assert!(text.starts_with("HTTP/1.1 200"), "{text:.300}");
                answered.push(payload);
            }
        }
    }
    // Replay the whole channel through an SSE parser we did not write.
    let response = bin
        .client
        .get(bin.url("/events/whole?lastEventId=0"))
        .send()
        .await
        .unwrap();
    let mut events = response.bytes_stream().eventsource();
    let retained = bin.channels().await;
    let count = retained
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["channel"] == "whole")
        .unwrap()["retained"]
        .as_u64()
        .unwrap();
    let mut seen = Vec::new();
    while seen.len() < count as usize {
        let event = tokio::time::timeout(WAIT, events.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if event.event == "herald.gap" {
            continue;
        }
        assert!(
            payloads.contains(&event.data),
            "a partial or foreign event: {:.80}",
            event.data
        );
        seen.push(event.data);
    }
    for payload in &answered {
        assert!(
            seen.contains(payload),
            "an answered publish is missing: {payload:.40}"
        );
    }
    eprintln!(
        "disconnecting publishers: 200 attempts, {} answered, {} published",
        answered.len(),
        seen.len()
    );
    drop(events);
    bin.serves_others("after-disconnects").await;
    back_to_baseline(&bin, "disconnecting publishers", rss, fds).await;
}
