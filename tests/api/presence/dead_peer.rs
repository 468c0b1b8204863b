//! Dead peers leave (SPEC §7): a member whose packets stop arriving, with
//! no FIN or RST (power loss, network gone), is found by the kernel through
//! `TCP_USER_TIMEOUT` (`--dead-peer-timeout`), its stream ends, and its
//! leave follows after the grace.
//!
//! The member connects through a loopback proxy that, on command, stops
//! forwarding without closing either socket. From userspace the proxy's
//! kernel still acknowledges what fits in its receive buffer, so the buffer
//! is made small and a few events fill it: herald's data then sits
//! unacknowledged behind a closed window, which `TCP_USER_TIMEOUT` bounds
//! as it bounds retransmissions to a peer that vanished. Real clock: the
//! kernel's timers are what is measured.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{app, member, notice, stream, PUBLISH_TOKEN, ROOM};
use crate::helpers::{Sse, TestApp};

const HEARTBEAT: Duration = Duration::from_millis(250);
const DEAD_PEER_TIMEOUT: Duration = Duration::from_secs(1);
const GRACE: Duration = Duration::from_millis(500);

/// Forwards TCP connections to `upstream` until [`StallingProxy::stall`],
/// then holds them open and forwards nothing more.
struct StallingProxy {
    addr: SocketAddr,
    stalled: Arc<AtomicBool>,
    accept: JoinHandle<()>,
}

impl StallingProxy {
    async fn start(upstream: SocketAddr) -> StallingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stalled = Arc::new(AtomicBool::new(false));
        let flag = stalled.clone();
        let accept = tokio::spawn(async move {
            let mut pumps = Vec::new();
            while let Ok((client, _)) = listener.accept().await {
                let server = TcpSocket::new_v4().unwrap();
                // A small window, so a few events fill it once stalled.
                server.set_recv_buffer_size(4096).unwrap();
                let server = server.connect(upstream).await.unwrap();
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                pumps.push(tokio::spawn(pump(client_read, server_write, flag.clone())));
                pumps.push(tokio::spawn(pump(server_read, client_write, flag.clone())));
            }
            // Dropped (aborted) with the test: the pumps go with it.
            drop(pumps);
        });
        StallingProxy {
            addr,
            stalled,
            accept,
        }
    }

    fn stall(&self) {
        self.stalled.store(true, Ordering::SeqCst);
    }
}

impl Drop for StallingProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Copies `from` to `to` until stalled; then holds both sockets open,
/// reading and writing nothing, until aborted.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    stalled: Arc<AtomicBool>,
) {
    let mut buf = [0u8; 1024];
    loop {
        if stalled.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        let Ok(n @ 1..) = from.read(&mut buf).await else {
            return;
        };
        if stalled.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// Bo joins through the proxy, the proxy stalls, events fill its window;
/// returns when Ada saw Bo leave, measured from the stall, if within `wait`.
async fn time_to_leave(app: &TestApp, wait: Duration) -> Option<Duration> {
    let proxy = StallingProxy::start(app.addr).await;
    let mut ada = stream(app, ROOM, &member("42", "Ada")).await;
    notice(&mut ada).await;
    let bo = app
        .client
        .get(format!(
            "http://{}/events/{ROOM}?token={}",
            proxy.addr,
            member("7", "Bo")
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(bo.status(), 200);
    assert_eq!(notice(&mut ada).await.1["sub"], "7");

    proxy.stall();
    let stalled = Instant::now();
    for _ in 0..4 {
        let response = app
            .client
            .post(app.url(&format!("/publish/{ROOM}")))
            .bearer_auth(PUBLISH_TOKEN)
            .body("x".repeat(16 * 1024))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let left = leave_of(&mut ada, "7", wait)
        .await
        .then(|| stalled.elapsed());
    drop(bo);
    left
}

/// Reads `sse` until the leave of `sub`; false if none within `wait`.
async fn leave_of(sse: &mut Sse, sub: &str, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    while let Some(event) = sse
        .try_next(deadline.saturating_duration_since(Instant::now()))
        .await
    {
        if event.event == "herald.leave" && event.data.contains(&format!("\"sub\":\"{sub}\"")) {
            return true;
        }
    }
    false
}

#[tokio::test]
async fn a_member_whose_packets_vanish_leaves_within_heartbeat_plus_timeout_plus_grace() {
    let app = app(|c| {
        c.heartbeat = HEARTBEAT;
        c.dead_peer_timeout = DEAD_PEER_TIMEOUT;
        c.presence_grace = GRACE;
    })
    .await;
    let bound = HEARTBEAT + DEAD_PEER_TIMEOUT + GRACE;
    // The kernel checks the timeout on its own timer ticks: a little slack.
    let took = time_to_leave(&app, bound + Duration::from_secs(2))
        .await
        .expect("the stalled member leaves");
    eprintln!("a stalled member left {took:?} after its packets stopped (bound {bound:?})");
    assert!(
        took >= DEAD_PEER_TIMEOUT,
        "{took:?}: the kernel waited the timeout"
    );
}

#[tokio::test]
async fn without_a_dead_peer_timeout_the_stalled_member_stays() {
    let app = app(|c| {
        c.heartbeat = HEARTBEAT;
        c.dead_peer_timeout = Duration::ZERO;
        c.presence_grace = GRACE;
    })
    .await;
    let bound = HEARTBEAT + DEAD_PEER_TIMEOUT + GRACE;
    assert_eq!(
        time_to_leave(&app, bound + Duration::from_secs(1)).await,
        None,
        "the option is what finds the dead peer"
    );
}
