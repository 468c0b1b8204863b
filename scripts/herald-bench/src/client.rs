//! The two kinds of connection the tool opens, over raw tokio sockets.
//!
//! A subscriber sends one `GET /events/<ch>` (an event stream, or a
//! WebSocket upgrade whose messages [`crate::ws`] reads back as SSE text) and
//! then only reads: every read lands in one fixed buffer, is de-chunked in
//! place and parsed by [`sse::Parser`]; per event it does a few compares, one
//! bitmap test and one histogram increment. A publisher is one keep-alive HTTP/1.1 connection that
//! POSTs and reads the answer head and body, reusing its two buffers.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use memchr::memmem;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{oneshot, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::timeout;

use crate::sse::{self, Data, EventType};
use crate::transport::{self, Body, Io, Kind};
use crate::{hist, now_ns, ws};

/// Bearer tokens for a herald with access control, from the environment
/// (`HERALD_BENCH_PUBLISH_TOKEN`, `HERALD_BENCH_SUBSCRIBE_TOKEN`).
struct Tokens {
    publish: Option<String>,
    subscribe: Option<String>,
}

fn tokens() -> &'static Tokens {
    static TOKENS: std::sync::OnceLock<Tokens> = std::sync::OnceLock::new();
    TOKENS.get_or_init(|| {
        let var = |name| std::env::var(name).ok().filter(|t: &String| !t.is_empty());
        Tokens { publish: var("HERALD_BENCH_PUBLISH_TOKEN"), subscribe: var("HERALD_BENCH_SUBSCRIBE_TOKEN") }
    })
}

/// `HERALD_BENCH_IDEMPOTENCY_KEYS=1`: every publish carries its own
/// `Idempotency-Key`, a UUID-shaped 36 characters (SPEC §12), unique across
/// this process (its pid) and its publishes (a counter), so none is a
/// retry: what the keys cost a publish that succeeds. Written straight into
/// the request, the pid read once: the tool's own cost of a key is what a
/// client's would be (a formatted id), not a `getpid` system call.
fn write_idempotency_key(req: &mut Vec<u8>) {
    use std::io::Write;
    use std::sync::atomic::{AtomicU64, Ordering};
    static PID: std::sync::OnceLock<Option<u32>> = std::sync::OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let pid = *PID.get_or_init(|| {
        let on = std::env::var("HERALD_BENCH_IDEMPOTENCY_KEYS").is_ok_and(|v| v == "1");
        on.then(std::process::id)
    });
    if let Some(pid) = pid {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let _ = write!(
            req,
            "Idempotency-Key: {pid:08x}-{:04x}-4000-8000-{:012x}\r\n",
            (n >> 48) as u16,
            n & 0xffff_ffff_ffff
        );
    }
}

/// Read buffer per subscriber. 16 KiB holds ~100 events, enough to drain a
/// server that batches many events into one write with one read.
const SUB_BUF: usize = 16 * 1024;
/// Publisher ids fit in this many slots (ordering is checked per publisher).
pub const MAX_PUBS: usize = 16;
/// A stream the server ends is reopened with Last-Event-ID at most this often.
const MAX_RECONNECTS: u32 = 50;

/// What one subscriber expects.
#[derive(Clone, Debug)]
pub struct SubSpec {
    pub channel: Arc<str>,
    pub last_event_id: Option<Vec<u8>>,
    /// Distinct bench events to receive before this subscriber is done.
    pub expect: u32,
    /// Bench events carry `k` in `0..nk`.
    pub nk: u32,
    /// `k < prefill` counts as already received (a duplicate if seen again).
    pub prefill: u32,
    pub record_latency: bool,
}

/// Counters shared by all subscribers of a phase, polled by the controller.
#[derive(Default)]
pub struct Progress {
    /// Got a 200 head.
    pub open: AtomicUsize,
    /// Failed to connect, got a non-200, or the stream ended early.
    pub failed: AtomicUsize,
    /// Saw a warm-up event (so the server has them registered).
    pub ready: AtomicUsize,
    /// Received every expected event.
    pub done: AtomicUsize,
}

#[derive(Debug, Default, Clone)]
pub struct SubResult {
    pub error: Option<String>,
    pub received: u64,
    pub unique: u64,
    pub dups: u64,
    pub ooo: u64,
    pub gaps: u64,
    pub other: u64,
    pub expect: u32,
    pub t_done: u64,
    pub last_id: Vec<u8>,
    /// Times the server ended the stream (each followed by a reconnect with Last-Event-ID).
    pub ended_by_server: u32,
}

/// A running subscriber: abort `task` to stop it; its counters arrive on `result`.
pub struct SubHandle {
    pub task: JoinHandle<()>,
    pub result: oneshot::Receiver<SubResult>,
}

/// Starts one subscriber. It reads until aborted (or the server ends the
/// stream). Stopping by abort rather than by selecting on a stop signal keeps
/// the read loop free of any per-read synchronisation; the counters are handed
/// over by `Drop`, which runs however the task ends.
pub fn spawn_subscriber(
    addr: SocketAddr,
    spec: SubSpec,
    progress: Arc<Progress>,
    connect_limit: Arc<Semaphore>,
) -> SubHandle {
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(async move {
        let mut sub = Sub {
            res: SubResult { expect: spec.expect, ..Default::default() },
            parser: sse::Parser::default(),
            progress,
            tx: Some(tx),
            warm: false,
        };
        sub.run(addr, spec, connect_limit).await;
    });
    SubHandle { task, result: rx }
}

struct Sub {
    res: SubResult,
    parser: sse::Parser,
    progress: Arc<Progress>,
    tx: Option<oneshot::Sender<SubResult>>,
    warm: bool,
}

impl Drop for Sub {
    fn drop(&mut self) {
        let res = &mut self.res;
        res.last_id = self.parser.last_id().to_vec();
        if !self.warm && res.received == 0 && res.error.is_none() && res.ended_by_server > 0 {
            res.error = Some(format!(
                "stream ended before any event (rejected? retry fields: {}, comments: {})",
                self.parser.retries, self.parser.comments
            ));
        }
        if res.error.is_some() {
            self.progress.failed.fetch_add(1, Relaxed);
        }
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(std::mem::take(res));
        }
    }
}

impl Sub {
    async fn run(&mut self, addr: SocketAddr, spec: SubSpec, connect_limit: Arc<Semaphore>) {
        let words = (spec.nk as usize).div_ceil(64);
        let mut seen = vec![0u64; words];
        for k in 0..spec.prefill.min(spec.nk) {
            seen[k as usize / 64] |= 1 << (k % 64);
        }
        let mut last_k = [spec.prefill as i64 - 1; MAX_PUBS];
        let mut done = spec.expect == 0;
        let mut last_event_id = spec.last_event_id.clone();
        let mut buf = vec![0u8; SUB_BUF];
        for attempt in 0..=MAX_RECONNECTS {
            let permit = connect_limit.acquire().await;
            let opened =
                timeout(Duration::from_secs(20), open_stream(addr, &spec.channel, last_event_id.as_deref(), &mut buf))
                    .await;
            drop(permit);
            let (mut stream, len) = match opened {
                Ok(Ok(x)) => x,
                Ok(Err(e)) => return self.res.error = Some(e),
                Err(_) => return self.res.error = Some("timed out opening the stream".into()),
            };
            if attempt == 0 {
                self.progress.open.fetch_add(1, Relaxed);
            }
            let received_before = self.res.received + self.warm as u64;
            self.parser.new_stream();
            let Sub { res, parser, progress, warm, .. } = self;
            let mut dechunk = sse::Dechunker::default();
            let chunked = stream.chunked();
            // Bytes of the body that came with the head are processed like a read.
            let (mut len, mut pending) = (0, len);
            loop {
                if pending == 0 {
                    let n = match stream.read(&mut buf[len..]).await {
                        Ok(n) => n,
                        Err(e) => {
                            res.error = Some(e);
                            return;
                        }
                    };
                    if n == 0 {
                        break;
                    }
                    pending = n;
                }
                let now = now_ns();
                let end = if chunked { dechunk.decode(&mut buf, len, len + pending) } else { len + pending };
                pending = 0;
                let used = parser.feed(&buf[..end], |ev| {
                    if ev.etype == EventType::Gap {
                        res.gaps += 1;
                        return;
                    }
                    match ev.data {
                        Data::Warm => {
                            if !*warm {
                                *warm = true;
                                progress.ready.fetch_add(1, Relaxed);
                            }
                        }
                        Data::Bench { p, k, t } => {
                            res.received += 1;
                            if k >= spec.nk || p as usize >= MAX_PUBS {
                                res.other += 1;
                                return;
                            }
                            let (w, bit) = (k as usize / 64, 1u64 << (k % 64));
                            if seen[w] & bit != 0 {
                                res.dups += 1;
                                return;
                            }
                            seen[w] |= bit;
                            res.unique += 1;
                            let last = &mut last_k[p as usize];
                            if (k as i64) < *last {
                                res.ooo += 1;
                            } else {
                                *last = k as i64;
                            }
                            if spec.record_latency {
                                hist::record(now.saturating_sub(t));
                            }
                            if !done && res.unique >= spec.expect as u64 {
                                done = true;
                                res.t_done = now;
                                progress.done.fetch_add(1, Relaxed);
                            }
                        }
                        Data::Other | Data::None => res.other += 1,
                    }
                });
                buf.copy_within(used..end, 0);
                len = end - used;
                if len == buf.len() {
                    res.error = Some("line longer than the read buffer".into());
                    return;
                }
                if dechunk.finished {
                    break;
                }
            }
            // The server ended the stream. Like EventSource, come back with
            // Last-Event-ID, unless it ended before sending anything (a refusal).
            res.ended_by_server += 1;
            if res.received + *warm as u64 == received_before {
                return;
            }
            if !parser.last_id().is_empty() {
                last_event_id = Some(parser.last_id().to_vec());
            }
        }
        self.res.error = Some(format!("server ended the stream {} times", self.res.ended_by_server));
    }
}

/// Connects (or takes a stream on a shared HTTP/2 connection), sends the
/// GET, reads the head. Returns the body and how many body bytes came with
/// the head (moved to the start of `buf`).
async fn open_stream(
    addr: SocketAddr,
    channel: &str,
    last_event_id: Option<&[u8]>,
    buf: &mut [u8],
) -> Result<(Body, usize), String> {
    let dialer = transport::dialer();
    if dialer.kind.h2() {
        let mut send = dialer.h2_stream(addr).await?;
        let mut req = http::Request::get(format!("https://localhost/events/{channel}"));
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        if let Some(token) = &tokens().subscribe {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let req = req.body(()).map_err(|e| e.to_string())?;
        send = send.ready().await.map_err(|e| format!("h2 ready: {e}"))?;
        let (response, _) = send.send_request(req, true).map_err(|e| format!("h2 request: {e}"))?;
        let response = response.await.map_err(|e| format!("h2 response: {e}"))?;
        if response.status() != 200 {
            return Err(format!("status {}", response.status()));
        }
        return Ok((Body::H2 { recv: response.into_body(), left: bytes::Bytes::new() }, 0));
    }
    let mut stream = dialer.connect_h1(addr).await?;
    let mut req = Vec::with_capacity(256);
    let token = tokens().subscribe.as_deref();
    if dialer.kind == Kind::Ws {
        ws::request(&mut req, &addr.to_string(), channel, last_event_id, token);
    } else {
        let _ = write!(
            req,
            "GET /events/{channel} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n"
        );
        if let Some(id) = last_event_id {
            req.extend_from_slice(b"Last-Event-ID: ");
            req.extend_from_slice(id);
            req.extend_from_slice(b"\r\n");
        }
        if let Some(token) = token {
            let _ = write!(req, "Authorization: Bearer {token}\r\n");
        }
        req.extend_from_slice(b"\r\n");
    }
    stream.write_all(&req).await.map_err(|e| format!("write: {e}"))?;
    let mut len = 0;
    loop {
        let n = stream.read(&mut buf[len..]).await.map_err(|e| format!("read head: {e}"))?;
        if n == 0 {
            return Err("closed before the response head".into());
        }
        len += n;
        match sse::parse_head(&buf[..len]) {
            None if len == buf.len() => return Err("response head too large".into()),
            None => continue,
            Some(Err(e)) => return Err(e),
            Some(Ok(head)) if dialer.kind == Kind::Ws => {
                if head.status != 101 {
                    return Err(format!("status {} (no upgrade)", head.status));
                }
                return Ok((Body::Ws(ws::Reader::new(stream, &buf[head.len..len])), 0));
            }
            Some(Ok(head)) => {
                if head.status != 200 {
                    return Err(format!("status {}", head.status));
                }
                buf.copy_within(head.len..len, 0);
                return Ok((Body::H1 { io: stream, chunked: head.chunked }, len - head.len));
            }
        }
    }
}

/// One keep-alive publishing connection.
pub struct Publisher {
    addr: SocketAddr,
    stream: Box<dyn Io>,
    req: Vec<u8>,
    rbuf: Vec<u8>,
    rlen: usize,
    body: Vec<u8>,
}

impl Publisher {
    pub async fn connect(addr: SocketAddr) -> Result<Publisher, String> {
        let stream = timeout(Duration::from_secs(10), transport::dialer().connect_h1(addr))
            .await
            .map_err(|_| "publisher connect timed out".to_string())?
            .map_err(|e| format!("publisher {e}"))?;
        Ok(Publisher {
            addr,
            stream,
            req: Vec::with_capacity(512),
            rbuf: vec![0; 8192],
            rlen: 0,
            body: Vec::with_capacity(128),
        })
    }

    /// POSTs a bench payload; returns the HTTP status.
    pub async fn publish_bench(&mut self, channel: &str, p: u32, k: u32, len: usize) -> Result<u16, String> {
        let mut body = std::mem::take(&mut self.body);
        body.clear();
        sse::payload(&mut body, p, k, now_ns(), len);
        let r = self.publish(channel, &body).await;
        self.body = body;
        r
    }

    /// POSTs `body` to `/publish/<channel>` and reads the whole answer.
    pub async fn publish(&mut self, channel: &str, body: &[u8]) -> Result<u16, String> {
        self.req.clear();
        let _ = write!(
            self.req,
            "POST /publish/{channel} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        if let Some(token) = &tokens().publish {
            let _ = write!(self.req, "Authorization: Bearer {token}\r\n");
        }
        write_idempotency_key(&mut self.req);
        self.req.extend_from_slice(b"\r\n");
        self.req.extend_from_slice(body);
        let io = async {
            self.stream.write_all(&self.req).await.map_err(|e| format!("publish write: {e}"))?;
            self.read_response().await
        };
        timeout(Duration::from_secs(30), io).await.map_err(|_| "publish timed out".to_string())?
    }

    async fn read_response(&mut self) -> Result<u16, String> {
        let head = loop {
            if let Some(h) = sse::parse_head(&self.rbuf[..self.rlen]) {
                break h?;
            }
            self.fill().await?;
        };
        let mut content_length = None;
        let mut close = false;
        for line in self.rbuf[..head.len].split(|&b| b == b'\n') {
            if let Some(v) = sse::header_value(line, b"content-length") {
                content_length = std::str::from_utf8(v).ok().and_then(|s| s.parse::<usize>().ok());
            }
            if let Some(v) = sse::header_value(line, b"connection") {
                close |= sse::contains_ignore_case(v, b"close");
            }
        }
        let body_end = if let Some(cl) = content_length {
            while self.rlen < head.len + cl {
                self.fill().await?;
            }
            head.len + cl
        } else if head.chunked {
            loop {
                if let Some(i) = memmem::find(&self.rbuf[head.len..self.rlen], b"0\r\n\r\n") {
                    let at = head.len + i;
                    // the terminator is a chunk-size line: at the body start or after a CRLF
                    if i == 0 || self.rbuf[at - 1] == b'\n' {
                        break at + 5;
                    }
                }
                self.fill().await?;
            }
        } else if head.status == 204 || head.status == 304 {
            head.len
        } else {
            return Err("publish answer without length".into());
        };
        self.rbuf.copy_within(body_end..self.rlen, 0);
        self.rlen -= body_end;
        if close {
            let fresh = Publisher::connect(self.addr).await?;
            self.stream = fresh.stream;
            self.rlen = 0;
        }
        Ok(head.status)
    }

    async fn fill(&mut self) -> Result<(), String> {
        if self.rlen == self.rbuf.len() {
            self.rbuf.resize(self.rbuf.len() * 2, 0);
        }
        let n = self.stream.read(&mut self.rbuf[self.rlen..]).await.map_err(|e| format!("publish read: {e}"))?;
        if n == 0 {
            return Err("publisher connection closed".into());
        }
        self.rlen += n;
        Ok(())
    }
}
