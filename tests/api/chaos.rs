//! Chaos: SPEC §2's promise (every event, or a `herald.gap` saying not) under
//! faults. Publishers publish thousands of events concurrently to a few
//! channels while dozens of subscribers, some on several channels at once,
//! drop their connections at random points (right after connecting, between
//! events, in the middle of an event) and come back with `Last-Event-ID`,
//! and some read slowly through a small socket buffer so the server's live
//! queue overflows and the catch-up-from-history path runs.
//!
//! At the end every subscriber's log is checked per channel against what the
//! publishers were told (ids from the 200 answers):
//! - with history large enough: exactly the published sequence, no gap;
//! - with a small history: a subsequence in order with no duplicate, and every
//!   hole announced by a `herald.gap` for that channel received after the
//!   event before the hole and before the event after it. No gap notice
//!   without a hole either.
//!
//! Subscribers read raw TCP through the small SSE parser below (written from
//! the WHATWG parsing algorithm, not from herald's encoder), or through
//! reqwest and `eventsource-stream`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::helpers::{spawn_app_with, TestApp};

const CHANNELS: usize = 4;
const PUBLISHERS: usize = 4;
/// Publish requests per publisher; a fifth of them are batches of 2–4
/// events, so about 2,800 events in all.
const REQUESTS_PER_PUBLISHER: usize = 500;
const SUBSCRIBERS: usize = 32;
/// The whole test, publishing and draining, must finish within this.
const DEADLINE: Duration = Duration::from_secs(75);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_enough_history_every_subscriber_gets_every_event_exactly_once_in_order() {
    let report = run_chaos(100_000).await;
    assert_eq!(
        report.gaps, 0,
        "history held everything: no gap may be reported"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_small_history_every_loss_is_announced_by_a_gap_at_its_place() {
    let report = run_chaos(16).await;
    assert!(
        report.gaps > 0 && report.holes > 0,
        "a 16-event history under this load must lose events for someone \
         (gaps {}, holes {}); otherwise this run proves nothing",
        report.gaps,
        report.holes
    );
}

fn channel_name(i: usize) -> String {
    format!("chaos-{i}")
}

/// What one run saw, for the per-run assertions.
struct Report {
    gaps: usize,
    holes: usize,
}

async fn run_chaos(history: u32) -> Report {
    let app = Arc::new(
        spawn_app_with(|c| {
            c.history = history;
            c.history_bytes = 1 << 30;
            // Tiny live queue: slow readers overflow it and are caught up
            // from history (or told of a gap).
            c.stream_buffer = 8;
            c.retry = Duration::from_millis(100);
        })
        .await,
    );
    let started = Instant::now();

    // Arrange: one event per channel before anything else, so every
    // subscriber can start from a known id and "everything after it" is
    // well defined.
    let mut start_id = 0;
    for c in 0..CHANNELS {
        let id = app.publish_id(&channel_name(c), "start").await;
        start_id = id.parse().unwrap();
    }

    let finals: Arc<OnceLock<Vec<u64>>> = Arc::new(OnceLock::new());
    let publishing = Arc::new(AtomicBool::new(true));
    let mut subscribers = Vec::new();
    for s in 0..SUBSCRIBERS {
        let channels = subscriber_channels(s);
        let kind = match s % 4 {
            0 => Kind::Slow,
            1 => Kind::EventSource,
            _ => Kind::Raw,
        };
        let sub = Subscriber {
            app: app.clone(),
            channels,
            kind,
            last_id: start_id.to_string(),
            log: Vec::new(),
            latest: [None; CHANNELS],
            finals: finals.clone(),
            publishing: publishing.clone(),
            rng: fastrand::Rng::with_seed(s as u64 * 7919 + history as u64),
            connections: 0,
        };
        subscribers.push(tokio::spawn(sub.run(started + DEADLINE)));
    }

    // Act: publishers, concurrently with the subscribers' churn.
    let mut publishers = Vec::new();
    for p in 0..PUBLISHERS {
        publishers.push(tokio::spawn(publish_many(app.clone(), p)));
    }
    let mut published: Vec<Vec<(u64, String)>> = vec![Vec::new(); CHANNELS];
    for p in publishers {
        for (c, id, data) in p.await.expect("publisher panicked") {
            published[c].push((id, data));
        }
    }
    for list in &mut published {
        list.sort_unstable_by_key(|(id, _)| *id);
    }
    let last: Vec<u64> = published.iter().map(|l| l.last().unwrap().0).collect();
    finals.set(last).unwrap();
    publishing.store(false, Ordering::SeqCst);

    let mut logs = Vec::new();
    for (s, handle) in subscribers.into_iter().enumerate() {
        let sub = handle
            .await
            .unwrap_or_else(|e| panic!("subscriber {s} panicked: {e}"));
        logs.push(sub);
    }

    // Assert, per subscriber and per channel.
    let by_id: HashMap<u64, (usize, &str)> = published
        .iter()
        .enumerate()
        .flat_map(|(c, l)| l.iter().map(move |(id, d)| (*id, (c, d.as_str()))))
        .collect();
    let mut report = Report { gaps: 0, holes: 0 };
    let mut connections = 0;
    for (s, sub) in logs.iter().enumerate() {
        connections += sub.connections;
        let (gaps, holes) = check_log(s, sub, &published, &by_id, start_id);
        report.gaps += gaps;
        report.holes += holes;
    }
    let cut = app.metric("herald_slow_subscribers_cut_total").await;
    let events: usize = published.iter().map(Vec::len).sum();
    eprintln!(
        "chaos (history {history}): {events} events, {connections} connections, \
         {} gap notices, {} holes, {cut} slow-subscriber catch-ups, {:?}",
        report.gaps,
        report.holes,
        started.elapsed()
    );
    assert!(
        cut > 0.0,
        "no subscriber ever overflowed its live queue: the catch-up path was not exercised"
    );
    assert!(connections > 2 * SUBSCRIBERS, "subscribers reconnected");
    drop(logs);
    wait_for_streams_to_close(&app).await;
    report
}

/// A mix: mostly one channel, some two or three (multi-channel streams).
fn subscriber_channels(s: usize) -> Vec<usize> {
    match s % 3 {
        0 => vec![s % CHANNELS],
        1 => vec![s % CHANNELS, (s + 1) % CHANNELS],
        _ => vec![0, 2, 3]
            .into_iter()
            .map(|c| (c + s) % CHANNELS)
            .collect(),
    }
}

/// Publishes `REQUESTS_PER_PUBLISHER` requests (single events and batches)
/// and returns (channel, id, data) of every event the server acknowledged.
async fn publish_many(app: Arc<TestApp>, p: usize) -> Vec<(usize, u64, String)> {
    let mut rng = fastrand::Rng::with_seed(1000 + p as u64);
    let mut out = Vec::new();
    for k in 0..REQUESTS_PER_PUBLISHER {
        if rng.u8(..5) == 0 {
            let items: Vec<(usize, String)> = (0..rng.usize(2..=4))
                .map(|j| {
                    let c = rng.usize(..CHANNELS);
                    (c, event_data(&mut rng, c, &format!("p{p}-{k}.{j}")))
                })
                .collect();
            let body: Vec<serde_json::Value> = items
                .iter()
                .map(|(c, d)| serde_json::json!({"channel": channel_name(*c), "data": d}))
                .collect();
            let answer = app
                .publish_to("/publish", &serde_json::to_string(&body).unwrap())
                .await;
            for ((c, d), a) in items.into_iter().zip(answer.as_array().unwrap()) {
                out.push((c, a["id"].as_str().unwrap().parse().unwrap(), d));
            }
        } else {
            let c = rng.usize(..CHANNELS);
            let data = event_data(&mut rng, c, &format!("p{p}-{k}"));
            let id = app.publish_id(&channel_name(c), &data).await;
            out.push((c, id.parse().unwrap(), data));
        }
        if rng.u8(..4) == 0 {
            tokio::time::sleep(Duration::from_millis(rng.u64(0..3))).await;
        }
    }
    out
}

/// `"<channel>|<tag>|<padding>"`: the channel comes first so a reader can
/// tell where an event belongs. Some events span several lines, some are
/// large (so a slow reader's socket fills and dropping mid-event is likely).
fn event_data(rng: &mut fastrand::Rng, c: usize, tag: &str) -> String {
    let pad = match rng.u8(..10) {
        0 | 9 => "y".repeat(rng.usize(2000..12000)),
        1 => "two\nlines\n\nand an empty one".to_owned(),
        _ => "x".repeat(rng.usize(0..200)),
    };
    format!("{c}|{tag}|{pad}")
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    /// Raw TCP, our parser, drops at random byte offsets.
    Raw,
    /// Raw TCP with a small receive buffer, reading a few bytes at a time
    /// with pauses while publishing goes on.
    Slow,
    /// reqwest + eventsource-stream, drops after a random number of events.
    EventSource,
}

#[derive(Clone, Debug)]
pub enum Item {
    Event { id: u64, data: String },
    Gap { channel: usize },
}

struct Subscriber {
    app: Arc<TestApp>,
    channels: Vec<usize>,
    kind: Kind,
    /// The id to present on reconnecting: the last complete event's.
    last_id: String,
    /// Everything received, across all connections.
    log: Vec<Item>,
    /// Newest id received per channel, to know when we are done.
    latest: [Option<u64>; CHANNELS],
    finals: Arc<OnceLock<Vec<u64>>>,
    publishing: Arc<AtomicBool>,
    rng: fastrand::Rng,
    connections: usize,
}

impl Subscriber {
    fn path(&self) -> String {
        if self.channels.len() == 1 {
            format!("/events/{}", channel_name(self.channels[0]))
        } else {
            let q: Vec<String> = self
                .channels
                .iter()
                .map(|c| format!("channel={}", channel_name(*c)))
                .collect();
            format!("/events?{}", q.join("&"))
        }
    }

    fn done(&self) -> bool {
        let Some(finals) = self.finals.get() else {
            return false;
        };
        self.channels
            .iter()
            .all(|&c| self.latest[c].is_some_and(|id| id >= finals[c]))
    }

    fn record(&mut self, item: Item) {
        match &item {
            Item::Event { id, data } => {
                let c: usize = data
                    .split('|')
                    .next()
                    .and_then(|c| c.parse().ok())
                    .unwrap_or_else(|| panic!("event {id} with foreign data {data:?}"));
                assert!(
                    self.channels.contains(&c),
                    "event {id} of a channel not subscribed"
                );
                self.latest[c] = Some(*id);
                self.last_id = id.to_string();
            }
            Item::Gap { .. } => {}
        }
        self.log.push(item);
    }

    async fn run(mut self, deadline: Instant) -> Subscriber {
        while !self.done() {
            assert!(
                Instant::now() < deadline,
                "subscriber on {:?} not done by the deadline: latest {:?}, finals {:?}",
                self.channels,
                self.latest,
                self.finals.get()
            );
            self.connections += 1;
            match self.kind {
                Kind::EventSource => self.eventsource_connection(deadline).await,
                Kind::Raw | Kind::Slow => self.raw_connection(deadline).await,
            }
            if self.rng.bool() {
                tokio::time::sleep(Duration::from_millis(self.rng.u64(0..20))).await;
            }
        }
        self
    }

    /// One connection through our own parser; ends at a random moment.
    async fn raw_connection(&mut self, deadline: Instant) {
        let slow = self.kind == Kind::Slow && self.publishing.load(Ordering::SeqCst);
        let mut stream = if slow {
            slow_connect(self.app.addr)
        } else {
            TcpStream::connect(self.app.addr).await.unwrap()
        };
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: chaos\r\nAccept: text/event-stream\r\nLast-Event-ID: {}\r\n\r\n",
            self.path(),
            self.last_id
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        // Where this connection is dropped: right away, after some bytes
        // (often mid-event), or after a while.
        let byte_budget = match self.rng.u8(..if slow { 9 } else { 6 }) {
            0 => 0,
            1 => self.rng.usize(0..300),
            2 => self.rng.usize(0..5_000),
            3 => self.rng.usize(0..50_000),
            _ => usize::MAX,
        };
        // A slow reader stays long enough for its socket to fill and its
        // live queue to overflow.
        let hold = if slow {
            self.rng.u64(2000..8000)
        } else {
            self.rng.u64(50..1500)
        };
        let time_budget = Instant::now() + Duration::from_millis(hold);
        let mut body = ChunkedBody::default();
        let mut parser = SseParser::default();
        let mut taken = 0usize;
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let now = Instant::now();
            if taken > byte_budget || now > time_budget || now > deadline || self.done() {
                return;
            }
            let want = if slow {
                self.rng.usize(1..64)
            } else {
                buf.len()
            };
            let read = tokio::time::timeout(time_budget - now, stream.read(&mut buf[..want])).await;
            let n = match read {
                Ok(Ok(0)) | Err(_) => return,
                Ok(Ok(n)) => n,
                Ok(Err(e)) => panic!("read failed: {e}"),
            };
            // A random byte budget may cut the read short: drop mid-buffer.
            let n = n.min(byte_budget.saturating_sub(taken).max(1));
            taken += n;
            for item in body
                .feed(&buf[..n])
                .into_iter()
                .flat_map(|b| parser.feed(&b))
            {
                self.record(item);
            }
            if slow {
                tokio::time::sleep(Duration::from_millis(self.rng.u64(1..8))).await;
            }
        }
    }

    /// One connection through reqwest and eventsource-stream; dropped after
    /// a random number of events.
    async fn eventsource_connection(&mut self, deadline: Instant) {
        let response = self
            .app
            .client
            .get(self.app.url(&self.path()))
            .header("Last-Event-ID", &self.last_id)
            .send()
            .await
            .expect("subscribe");
        assert_eq!(response.status(), 200);
        let mut events = response.bytes_stream().eventsource();
        let budget = self.rng.usize(0..200);
        for _ in 0..budget {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(Some(next)) =
                tokio::time::timeout(left.min(Duration::from_secs(2)), events.next()).await
            else {
                return;
            };
            let event = next.expect("a well-formed event stream");
            let item = if event.event == "herald.gap" {
                Item::Gap {
                    channel: gap_channel(&event.data),
                }
            } else {
                Item::Event {
                    id: event.id.parse().expect("numeric id"),
                    data: event.data,
                }
            };
            self.record(item);
            if self.done() {
                return;
            }
        }
    }
}

fn gap_channel(json: &str) -> usize {
    let v: serde_json::Value = serde_json::from_str(json).expect("gap data is JSON");
    let name = v["channel"].as_str().expect("gap names its channel");
    name.strip_prefix("chaos-").unwrap().parse().unwrap()
}

/// Checks one subscriber's log against the published sequences; returns the
/// gap notices and holes it saw.
fn check_log(
    s: usize,
    sub: &Subscriber,
    published: &[Vec<(u64, String)>],
    by_id: &HashMap<u64, (usize, &str)>,
    start_id: u64,
) -> (usize, usize) {
    let who = format!("subscriber {s} ({:?} on {:?})", sub.kind, sub.channels);
    // Ids strictly increase over the whole log, across reconnects and
    // channels: in order, nothing twice.
    let mut previous = start_id;
    let mut gaps = 0;
    let mut holes = 0;
    // Per channel: position in the published sequence, and whether a gap
    // notice arrived since the channel's last event.
    let mut position: HashMap<usize, usize> = HashMap::new();
    let mut announced: HashMap<usize, bool> = HashMap::new();
    let expected = |c: usize| -> &[(u64, String)] {
        let list = &published[c];
        &list[list.partition_point(|(id, _)| *id <= start_id)..]
    };
    for item in &sub.log {
        match item {
            Item::Gap { channel } => {
                assert!(
                    sub.channels.contains(channel),
                    "{who}: gap for a foreign channel"
                );
                gaps += 1;
                announced.insert(*channel, true);
            }
            Item::Event { id, data } => {
                assert!(
                    *id > previous,
                    "{who}: id {id} after {previous}: out of order or twice"
                );
                previous = *id;
                let Some(&(c, published_data)) = by_id.get(id) else {
                    panic!("{who}: received id {id} that no publisher was given");
                };
                assert_eq!(data, published_data, "{who}: data of event {id}");
                let list = expected(c);
                let at = list.partition_point(|(i, _)| i < id);
                let from = position.get(&c).copied().unwrap_or(0);
                let was_announced = announced.insert(c, false).unwrap_or(false);
                if at > from {
                    holes += 1;
                    assert!(
                        was_announced,
                        "{who}: channel {c}: {} events before id {id} (first {}) were \
                         lost without a herald.gap",
                        at - from,
                        list[from].0
                    );
                } else {
                    assert!(
                        !was_announced,
                        "{who}: channel {c}: herald.gap before id {id}, but nothing was missing"
                    );
                }
                position.insert(c, at + 1);
            }
        }
    }
    for &c in &sub.channels {
        assert_eq!(
            position.get(&c).copied().unwrap_or(0),
            expected(c).len(),
            "{who}: channel {c} did not end with the last published event"
        );
    }
    (gaps, holes)
}

async fn wait_for_streams_to_close(app: &TestApp) {
    let until = Instant::now() + crate::helpers::WAIT;
    loop {
        let open = app.metric("herald_streams_open").await;
        if open == 0.0 {
            return;
        }
        assert!(
            Instant::now() < until,
            "{open} streams still open after every client left"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A connection whose socket buffers stay small, so that a slow reader
/// really holds the server back: on loopback the segment size is 64 KiB and
/// the kernel sizes the server's send buffer from it (megabytes), which a
/// slow reader would take minutes to fill. A 1 KiB segment and a 2 KiB
/// receive buffer bring that down to a few dozen KiB.
pub fn slow_connect(addr: std::net::SocketAddr) -> TcpStream {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
    socket.set_tcp_mss(1024).unwrap();
    socket.set_recv_buffer_size(2048).unwrap();
    // Loopback: the connect completes at once.
    socket.connect(&addr.into()).unwrap();
    socket.set_nonblocking(true).unwrap();
    TcpStream::from_std(socket.into()).unwrap()
}

/// Undoes HTTP/1.1 chunked transfer coding, as bytes arrive.
#[derive(Default)]
pub struct ChunkedBody {
    head_done: bool,
    chunked: bool,
    raw: Vec<u8>,
}

impl ChunkedBody {
    /// Feeds received bytes; returns body bytes now complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Option<Vec<u8>> {
        self.raw.extend_from_slice(bytes);
        if !self.head_done {
            let end = self.raw.windows(4).position(|w| w == b"\r\n\r\n")?;
            let head = String::from_utf8_lossy(&self.raw[..end]).to_ascii_lowercase();
            assert!(
                head.starts_with("http/1.1 200"),
                "subscribe answered {head}"
            );
            self.chunked = head.contains("transfer-encoding: chunked");
            self.raw.drain(..end + 4);
            self.head_done = true;
        }
        if !self.chunked {
            return Some(std::mem::take(&mut self.raw));
        }
        let mut out = Vec::new();
        while let Some(line_end) = self.raw.windows(2).position(|w| w == b"\r\n") {
            let size_text = String::from_utf8_lossy(&self.raw[..line_end]);
            let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
                .unwrap_or_else(|_| panic!("bad chunk size {size_text:?}"));
            if self.raw.len() < line_end + 2 + size + 2 {
                break;
            }
            out.extend_from_slice(&self.raw[line_end + 2..line_end + 2 + size]);
            self.raw.drain(..line_end + 2 + size + 2);
        }
        Some(out)
    }
}

/// The event-stream parser of the WHATWG HTML standard (§9.2.6), reduced to
/// what these tests need: lines end at CRLF, LF or CR; a blank line
/// dispatches; `data` lines accumulate with LF; `id` sets the last event id;
/// comments and `retry` are skipped; an event with no data is not dispatched.
#[derive(Default)]
pub struct SseParser {
    pending: Vec<u8>,
    data: String,
    has_data: bool,
    event: String,
    last_id: String,
}

impl SseParser {
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Item> {
        self.pending.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(i) = self.pending.iter().position(|&b| b == b'\r' || b == b'\n') {
            // A CR at the very end may be the first half of a CRLF.
            if self.pending[i] == b'\r' && i + 1 == self.pending.len() {
                break;
            }
            let skip = if self.pending[i] == b'\r' && self.pending[i + 1] == b'\n' {
                2
            } else {
                1
            };
            let line: Vec<u8> = self.pending.drain(..i + skip).take(i).collect();
            let line = String::from_utf8(line).expect("the stream is UTF-8");
            if let Some(item) = self.line(&line) {
                out.push(item);
            }
        }
        out
    }

    fn line(&mut self, line: &str) -> Option<Item> {
        if line.is_empty() {
            let event = std::mem::take(&mut self.event);
            if !std::mem::take(&mut self.has_data) {
                return None;
            }
            let mut data = std::mem::take(&mut self.data);
            data.pop(); // the LF after the last data line
            return Some(if event == "herald.gap" {
                Item::Gap {
                    channel: gap_channel(&data),
                }
            } else {
                assert!(event.is_empty(), "unexpected event type {event:?}");
                Item::Event {
                    id: self.last_id.parse().expect("numeric id"),
                    data,
                }
            });
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
                self.has_data = true;
            }
            "event" => self.event = value.to_owned(),
            "id" if !value.contains('\0') => self.last_id = value.to_owned(),
            _ => {}
        }
        None
    }
}

#[test]
fn parser_follows_the_whatwg_line_rules() {
    let mut p = SseParser::default();
    let mut items = p.feed(b"retry: 5\n: hi\n\nid: 7\r\ndata: a\rdata:  b\r");
    assert!(items.is_empty());
    items.extend(p.feed(b"\n\n"));
    match &items[..] {
        [Item::Event { id: 7, data }] => assert_eq!(data, "a\n b"),
        other => panic!("{other:?}"),
    }
}

/// The merge of a multi-channel stream under concurrent batch publishes
/// (each batch spans every channel, so events of different channels land
/// between any two polls): ids never go backwards. Before the merge polled
/// until a whole pass took nothing, a publish landing between the polls of
/// two receivers made a larger id go out before a smaller one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_channel_stream_never_delivers_ids_out_of_order() {
    const N: usize = 8;
    const BATCHES: usize = 1000;
    const BATCH_PUBLISHERS: usize = 3;
    let app = Arc::new(crate::helpers::spawn_app().await);
    let query: Vec<String> = (0..N).map(|c| format!("channel=order-{c}")).collect();
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    stream
        .write_all(
            format!(
                "GET /events?{} HTTP/1.1\r\nHost: t\r\n\r\n",
                query.join("&")
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    // Wait for the stream to be open before publishing.
    let mut body = ChunkedBody::default();
    let mut parser = SseParser::default();
    let mut buf = vec![0u8; 64 * 1024];
    while body.feed(&[]).is_none() {
        let n = tokio::time::timeout(crate::helpers::WAIT, stream.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0);
        body.feed(&buf[..n]);
    }

    let publishers: Vec<_> = (0..BATCH_PUBLISHERS)
        .map(|p| {
            let app = app.clone();
            tokio::spawn(async move {
                for b in 0..BATCHES {
                    let items: Vec<serde_json::Value> = (0..N)
                        .map(|c| serde_json::json!({"channel": format!("order-{c}"), "data": format!("{c}|p{p}-{b}|")}))
                        .collect();
                    app.publish_to("/publish", &serde_json::to_string(&items).unwrap())
                        .await;
                }
            })
        })
        .collect();

    let mut last = 0u64;
    let mut received = 0;
    while received < BATCH_PUBLISHERS * BATCHES * N {
        let n = tokio::time::timeout(crate::helpers::WAIT, stream.read(&mut buf))
            .await
            .expect("events keep coming")
            .unwrap();
        assert!(n > 0, "stream ended");
        for item in body
            .feed(&buf[..n])
            .into_iter()
            .flat_map(|b| parser.feed(&b))
        {
            let Item::Event { id, .. } = item else {
                panic!("no gap expected here");
            };
            assert!(id > last, "id {id} after {last}: out of order");
            last = id;
            received += 1;
        }
    }
    for p in publishers {
        p.await.unwrap();
    }
}
