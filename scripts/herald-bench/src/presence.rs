//! `herald-bench presence`: what presence costs (issue 9). A channel with
//! `--members` streams, each its own user (its own JWT `sub`), churning at
//! `--churn` per second: every tick closes the oldest member's stream and
//! opens one for a new user. On a `presence-*` channel that is one join
//! and, after the server's `--presence-grace`, one leave per tick, sent to
//! every member; on any other channel it is only the connections. Measured
//! over `--seconds` once the initial joins have settled: the server's CPU
//! and what each member receives (presence events and bytes, per second).
//!
//! Tokens are HS256 JWTs minted here with the server's `--jwt-secret`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use memchr::memmem;
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::sys::Server;

pub struct Args {
    pub addr: SocketAddr,
    pub pid: i32,
    pub secret: String,
    pub channel: String,
    pub members: usize,
    pub churn_per_s: u32,
    pub seconds: u64,
    /// Wait this long after the members are connected (longer than the
    /// server's grace) before measuring.
    pub settle: Duration,
}

#[derive(Default)]
struct Counts {
    joins: AtomicU64,
    leaves: AtomicU64,
    snapshots: AtomicU64,
    bytes: AtomicU64,
    failed: AtomicU64,
    opened: AtomicU64,
}

impl Counts {
    fn take(&self) -> [u64; 4] {
        [&self.joins, &self.leaves, &self.snapshots, &self.bytes].map(|c| c.swap(0, Relaxed))
    }
}

/// An HS256 JWT for user `sub`, valid for an hour, reading every channel.
fn token(secret: &str, sub: &str) -> String {
    let exp = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0) + 3600;
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = json!({"sub": sub, "exp": exp, "herald": {"subscribe": ["*"], "info": {"name": sub}}});
    let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signing_input = format!("{header}.{claims}");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(signing_input.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{signature}")
}

/// One member's stream: counts the presence events and bytes it receives
/// until aborted (which closes the socket).
fn member(addr: SocketAddr, channel: Arc<str>, token: String, counts: Arc<Counts>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let Ok(mut socket) = TcpStream::connect(addr).await else {
            counts.failed.fetch_add(1, Relaxed);
            return;
        };
        let request =
            format!("GET /events/{channel}?token={token} HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n");
        if socket.write_all(request.as_bytes()).await.is_err() {
            counts.failed.fetch_add(1, Relaxed);
            return;
        }
        counts.opened.fetch_add(1, Relaxed);
        let needles = [
            (memmem::Finder::new(b"event: herald.join\n"), &counts.joins),
            (memmem::Finder::new(b"event: herald.leave\n"), &counts.leaves),
            (memmem::Finder::new(b"event: herald.presence\n"), &counts.snapshots),
        ];
        const TAIL: usize = 24;
        let mut buf = vec![0u8; TAIL + 16 * 1024];
        let mut tail = 0;
        loop {
            let n = match socket.read(&mut buf[tail..]).await {
                Ok(0) | Err(_) => {
                    counts.failed.fetch_add(1, Relaxed);
                    return;
                }
                Ok(n) => n,
            };
            counts.bytes.fetch_add(n as u64, Relaxed);
            let end = tail + n;
            for (finder, counter) in &needles {
                // Only matches that end past the carried tail are new.
                let found = finder.find_iter(&buf[..end]).filter(|&at| at + finder.needle().len() > tail).count();
                counter.fetch_add(found as u64, Relaxed);
            }
            let keep = end.min(TAIL);
            buf.copy_within(end - keep..end, 0);
            tail = keep;
        }
    })
}

pub async fn run(args: Args) -> Result<Value, String> {
    let server = Server::discover(args.pid);
    let channel: Arc<str> = args.channel.as_str().into();
    let counts = Arc::new(Counts::default());
    let mut next_user = 0u64;
    let open = |next_user: &mut u64| {
        let sub = format!("m{}", *next_user);
        *next_user += 1;
        member(args.addr, channel.clone(), token(&args.secret, &sub), counts.clone())
    };
    let mut members = std::collections::VecDeque::with_capacity(args.members + 1);
    for i in 0..args.members {
        members.push_back(open(&mut next_user));
        if i % 64 == 63 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while counts.opened.load(Relaxed) < args.members as u64 {
        if Instant::now() > deadline {
            return Err(format!("only {} of {} members connected", counts.opened.load(Relaxed), args.members));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(args.settle).await;
    counts.take();
    let failed_before = counts.failed.load(Relaxed);

    let cpu0 = server.cpu_s();
    let t0 = Instant::now();
    let period = Duration::from_secs_f64(1.0 / f64::from(args.churn_per_s.max(1)));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut churned = 0u64;
    while t0.elapsed() < Duration::from_secs(args.seconds) {
        tick.tick().await;
        if let Some(oldest) = members.pop_front() {
            oldest.abort();
        }
        members.push_back(open(&mut next_user));
        churned += 1;
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu = server.cpu_s() - cpu0;
    let [joins, leaves, snapshots, bytes] = counts.take();
    for m in members {
        m.abort();
    }
    let member_s = args.members as f64 * wall;
    Ok(json!({
        "channel": args.channel,
        "members": args.members,
        "churn_per_s": churned as f64 / wall,
        "seconds": wall,
        "server_cpu_s": cpu,
        "server_cpu_pct": 100.0 * cpu / wall,
        "joins_per_member_s": joins as f64 / member_s,
        "leaves_per_member_s": leaves as f64 / member_s,
        "snapshots": snapshots,
        "bytes_per_member_s": bytes as f64 / member_s,
        "streams_failed_before_measuring": failed_before,
    }))
}
