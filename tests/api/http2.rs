//! SPEC §10, HTTP/2: `--h2c` beside HTTP/1.1 on the cleartext port, the
//! stream limit per connection, flow control that never lets one slow
//! stream stall the others, and clients that abuse the protocol.
//!
//! The abusive clients write HTTP/2 frames by hand (a well-behaved client
//! library will not break the rules for us).

use herald::metrics::ConnectionRefusal;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{eventually, spawn_app, spawn_app_with, Binary, WAIT};
use crate::tls_client::Client;

#[tokio::test]
async fn h2c_prior_knowledge_and_http11_share_the_cleartext_port() {
    let app = spawn_app_with(|c| c.h2c = true).await;
    let mut h2 = Client::h2c(app.addr).await;
    let mut events = h2.subscribe("/events/news", &[]).await;
    let mut h1 = Client::h1(app.addr).await;
    let mut h1_events = h1.subscribe("/events/news", &[]).await;

    h2.publish("news", "over h2c").await;
    assert_eq!(events.next().await.data, "over h2c");
    assert_eq!(h1_events.next().await.data, "over h2c");
    app.publish("news", "over http/1.1").await;
    assert_eq!(events.next().await.data, "over http/1.1");
}

#[tokio::test]
async fn without_h2c_the_cleartext_port_speaks_only_http11() {
    let app = spawn_app().await;
    let tcp = TcpStream::connect(app.addr).await.unwrap();
    let handshake = http2::Builder::new(TokioExecutor::new())
        .handshake::<_, http_body_util::Full<bytes::Bytes>>(TokioIo::new(tcp))
        .await;
    let refused = match handshake {
        Err(_) => true,
        Ok((mut send, connection)) => {
            tokio::spawn(connection);
            let request = http::Request::get("http://localhost/healthz")
                .body(Default::default())
                .unwrap();
            send.send_request(request).await.is_err()
        }
    };
    assert!(refused, "prior knowledge is refused without --h2c");
    app.publish("news", "http/1.1 still works").await;
}

#[tokio::test]
async fn a_slow_stream_never_stalls_the_others_on_its_connection() {
    let app = spawn_app_with(|c| c.h2c = true).await;
    // Like a browser: a large connection window, 64 KiB per stream.
    let tcp = TcpStream::connect(app.addr).await.unwrap();
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder
        .initial_connection_window_size(16 << 20)
        .initial_stream_window_size(65_535);
    let mut h2 = Client::h2_over(TokioIo::new(tcp), builder).await;
    let mut slow = h2.subscribe("/events/slow", &[]).await;
    let mut fast = h2.subscribe("/events/fast", &[]).await;

    // Four times what the slow stream's window lets through, never read.
    let kib = "x".repeat(1024);
    let mut last = String::new();
    for _ in 0..256 {
        last = app.publish("slow", &kib).await["id"]
            .as_str()
            .unwrap()
            .to_owned();
    }
    for i in 0..20 {
        let data = format!("fast {i}");
        app.publish("fast", &data).await;
        assert_eq!(fast.next().await.data, data, "the fast stream keeps going");
    }

    // The slow reader loses nothing: it catches up once it reads.
    let mut seen = 0;
    loop {
        let event = slow.next().await;
        if event.event == "message" {
            seen += 1;
        }
        if event.id == last {
            break;
        }
    }
    assert!(seen > 0);
}

#[tokio::test]
async fn shutdown_ends_h2_streams_and_the_server_stops() {
    let app = spawn_app_with(|c| c.h2c = true).await;
    let mut h2 = Client::h2c(app.addr).await;
    let mut events = h2.subscribe("/events/news", &[]).await;
    let mut other = h2.subscribe("/events/other", &[]).await;

    tokio::time::timeout(WAIT, app.stop())
        .await
        .expect("open HTTP/2 streams do not hold up shutdown");
    assert!(events.ends().await, "the stream is ended by the server");
    assert!(other.ends().await);
}

#[tokio::test]
async fn max_connections_counts_an_h2_connection_once_whatever_its_streams() {
    let app = spawn_app_with(|c| {
        c.h2c = true;
        c.max_connections = 1;
    })
    .await;
    let mut h2 = Client::h2c(app.addr).await;
    let mut streams = Vec::new();
    for channel in ["a", "b", "c"] {
        streams.push(h2.subscribe(&format!("/events/{channel}"), &[]).await);
    }
    h2.publish("a", "within the limit").await;
    assert_eq!(streams[0].next().await.data, "within the limit");

    let mut second = Client::h2c(app.addr).await;
    let refused = second.send("POST", "/publish/a", &[], "x").await.unwrap();
    assert_eq!(
        refused.status(),
        503,
        "a second connection is over the limit"
    );
    assert_eq!(app.state.metrics.connections_open.get(), 2);
}

/// The reason HTTP/2 matters for memory: an idle stream that shares its
/// connection with 99 others costs a small part of an HTTP/1.1 connection
/// (about 2 KiB against 12 KiB in a release build; `scripts/bench.sh`
/// measures both). Measured on the real binary, a debug build here.
#[tokio::test]
async fn an_idle_http2_stream_sharing_its_connection_costs_under_4_kib() {
    const CONNECTIONS: usize = 10;
    const PER_CONNECTION: usize = 100;
    let bin = Binary::start(&["--h2c"]).await;
    let mut warm = Client::h2c(bin.addr).await;
    let mut warm_stream = warm.subscribe("/events/idle", &[]).await;
    bin.publish("idle", "warm-up").await;
    warm_stream.next().await;
    let before = bin.rss_kib();

    let mut clients = Vec::new();
    let mut streams = Vec::new();
    for _ in 0..CONNECTIONS {
        let mut client = Client::h2c(bin.addr).await;
        for _ in 0..PER_CONNECTION {
            streams.push(client.subscribe("/events/idle", &[]).await);
        }
        clients.push(client);
    }
    bin.publish("idle", "everyone").await;
    for stream in &mut streams {
        assert_eq!(stream.next().await.data, "everyone");
    }
    let after = bin.rss_kib();

    let per_stream = (after.saturating_sub(before) * 1024) as f64 / streams.len() as f64;
    eprintln!("idle HTTP/2 stream, {PER_CONNECTION} per connection: {per_stream:.0} bytes");
    assert!(
        per_stream < 4096.0,
        "{per_stream:.0} bytes per idle HTTP/2 stream (rss {before} -> {after} KiB)"
    );
}

/// A minimal HTTP/2 client that writes frames by hand.
struct RawH2 {
    tcp: TcpStream,
    buffered: Vec<u8>,
}

/// A frame read from the server: type, flags, stream id, payload.
struct Frame {
    kind: u8,
    stream: u32,
    payload: Vec<u8>,
}

const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const GOAWAY: u8 = 7;
const DATA: u8 = 0;

impl RawH2 {
    async fn connect(addr: std::net::SocketAddr) -> RawH2 {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
        tcp.write_all(&frame(4, 0, 0, &[])).await.unwrap(); // empty SETTINGS
        RawH2 {
            tcp,
            buffered: Vec::new(),
        }
    }

    /// `GET path` on `stream` (HPACK literals without indexing).
    fn get(stream: u32, path: &str) -> Vec<u8> {
        let mut block = vec![0x82, 0x86]; // :method GET, :scheme http
        block.push(0x04); // :path, literal
        block.push(path.len() as u8);
        block.extend_from_slice(path.as_bytes());
        block.push(0x01); // :authority, literal
        block.push(9);
        block.extend_from_slice(b"localhost");
        frame(HEADERS, 0x5, stream, &block) // END_STREAM | END_HEADERS
    }

    async fn send(&mut self, bytes: &[u8]) {
        // The server may already have closed the connection.
        let _ = self.tcp.write_all(bytes).await;
    }

    /// The next frame, or `None` once the server closed the connection.
    async fn next(&mut self) -> Option<Frame> {
        loop {
            if self.buffered.len() >= 9 {
                let len =
                    u32::from_be_bytes([0, self.buffered[0], self.buffered[1], self.buffered[2]])
                        as usize;
                if self.buffered.len() >= 9 + len {
                    let head: Vec<u8> = self.buffered.drain(..9).collect();
                    let payload = self.buffered.drain(..len).collect();
                    return Some(Frame {
                        kind: head[3],
                        stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]])
                            & 0x7fff_ffff,
                        payload,
                    });
                }
            }
            let mut buf = [0u8; 16384];
            let n = tokio::time::timeout(WAIT, self.tcp.read(&mut buf))
                .await
                .expect("the server answers in time")
                .unwrap_or(0);
            if n == 0 {
                return None;
            }
            self.buffered.extend_from_slice(&buf[..n]);
        }
    }
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u32).to_be_bytes();
    let mut out = vec![len[1], len[2], len[3], kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

#[tokio::test]
async fn streams_past_the_limit_are_refused_and_the_others_served() {
    let app = spawn_app_with(|c| {
        c.h2c = true;
        c.max_streams_per_connection = 4;
    })
    .await;
    let mut raw = RawH2::connect(app.addr).await;
    let streams: Vec<u32> = (0..6).map(|i| 1 + 2 * i).collect();
    let mut request = Vec::new();
    for &stream in &streams {
        request.extend(RawH2::get(stream, "/events/x"));
    }
    raw.send(&request).await;

    let (mut opened, mut refused) = (Vec::new(), Vec::new());
    while opened.len() + refused.len() < streams.len() {
        let frame = raw.next().await.expect("the connection stays open");
        match frame.kind {
            HEADERS => opened.push(frame.stream),
            // REFUSED_STREAM: the client may retry it later.
            RST_STREAM => {
                assert_eq!(frame.payload, 7u32.to_be_bytes());
                refused.push(frame.stream);
            }
            _ => {}
        }
    }
    assert_eq!(opened.len(), 4, "opened {opened:?}, refused {refused:?}");
    assert_eq!(refused.len(), 2);

    app.publish("x", "for the four").await;
    let mut delivered = Vec::new();
    while delivered.len() < 4 {
        let frame = raw.next().await.expect("the connection stays open");
        if frame.kind == DATA && String::from_utf8_lossy(&frame.payload).contains("for the four") {
            delivered.push(frame.stream);
        }
    }
    delivered.sort_unstable();
    opened.sort_unstable();
    assert_eq!(delivered, opened);
}

#[tokio::test]
async fn a_reset_flood_closes_the_connection_is_counted_and_others_served() {
    let app = spawn_app_with(|c| c.h2c = true).await;
    let mut others = Client::h2c(app.addr).await;
    let mut events = others.subscribe("/events/news", &[]).await;

    // Rapid reset (CVE-2023-44487): open a stream and cancel it at once,
    // thousands of times.
    let mut raw = RawH2::connect(app.addr).await;
    let mut flood = Vec::new();
    for i in 0..2000u32 {
        let stream = 1 + 2 * i;
        flood.extend(RawH2::get(stream, "/healthz"));
        flood.extend(frame(RST_STREAM, 0, stream, &8u32.to_be_bytes())); // CANCEL
    }
    raw.send(&flood).await;
    let mut goaway = false;
    while let Some(frame) = raw.next().await {
        if frame.kind == GOAWAY {
            goaway = true;
        }
    }
    assert!(
        goaway,
        "the flooding connection is told to go away and closed"
    );
    let metrics = app.state.metrics.clone();
    eventually("the closed connection is counted", || {
        metrics.connections_refused(ConnectionRefusal::Http2Protocol) == 1
    })
    .await;

    app.publish("news", "still served").await;
    assert_eq!(events.next().await.data, "still served");
}

#[tokio::test]
async fn an_h2_connection_that_opens_no_stream_is_cut_by_the_header_timeout() {
    let app = spawn_app_with(|c| {
        c.h2c = true;
        c.header_timeout = std::time::Duration::from_secs(1);
    })
    .await;
    let mut silent = RawH2::connect(app.addr).await;
    while silent.next().await.is_some() {}
    let metrics = app.state.metrics.clone();
    eventually("the silent connection is counted", || {
        metrics.connections_refused(ConnectionRefusal::HandshakeTimeout) == 1
    })
    .await;

    // A connection that opens streams in time stays, past the timeout.
    let mut h2 = Client::h2c(app.addr).await;
    let mut events = h2.subscribe("/events/news", &[]).await;
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    app.publish("news", "still open").await;
    assert_eq!(events.next().await.data, "still open");
}
