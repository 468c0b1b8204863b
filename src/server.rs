//! The accept loop: connection limits, the hyper connection builder with its
//! header timeout, the channel reaper, and graceful shutdown.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, info, warn};

use crate::app::{self, Conn, State};
use crate::config::Config;
use crate::metrics::Metrics;

/// Serves on `listener` until `shutdown` resolves, then stops accepting, ends
/// every event stream, lets in-flight requests finish, and returns within
/// `--shutdown-grace`.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let state =
        State::try_new(config).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    serve(listener, state, shutdown).await
}

/// [`run`] with a state built by the caller (tests look inside it).
pub async fn serve(
    listener: TcpListener,
    state: Arc<State>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let config = &state.config;
    // HTTP/1.1 only for now; HTTP/2 is one call away on this builder.
    let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_timeout);
    let max_connections = config.max_connections as i64;

    tokio::spawn(reap_channels(state.clone()));
    tokio::spawn(announce_leaves(state.clone()));
    tokio::spawn(crate::auth::reload_on_sighup(
        state.auth.clone(),
        state.shutdown.clone(),
    ));

    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before
                    // it was accepted: never a reason to stop serving. The
                    // pause keeps an fd shortage from spinning the loop.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        prepare(&stream, config.dead_peer_timeout);
        let guard = ConnectionGuard::open(&state.metrics);
        let conn = Conn {
            over_limit: guard.open_now > max_connections,
        };
        let service = TowerToHyperService::new(app::app(state.clone(), conn));
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                debug!(error = %e, "connection ended with an error");
            }
            drop(guard);
        });
    }

    info!("shutting down: ending streams, finishing requests");
    state.shutdown.cancel();
    state.hub.close();
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => info!("all connections closed"),
        () = tokio::time::sleep(config.shutdown_grace) => {
            warn!("shutdown grace period over; closing the remaining connections");
        }
    }
    Ok(())
}

/// Sets up a freshly accepted socket: the one place for socket options.
fn prepare(stream: &TcpStream, dead_peer_timeout: Duration) {
    // Events must leave at once, not wait for Nagle's algorithm.
    let _ = stream.set_nodelay(true);
    if !dead_peer_timeout.is_zero() {
        if let Err(e) = detect_dead_peer(stream, dead_peer_timeout) {
            debug!(error = %e, "cannot set dead-peer detection on a socket");
        }
    }
}

/// Makes the kernel close a connection whose peer vanished (power loss,
/// network gone) instead of keeping it for hours, so its streams end and
/// its presence leaves. Two settings, because a stream is either busy or
/// idle:
///
/// - `TCP_USER_TIMEOUT`: data written (an event, a heartbeat) and not
///   acknowledged for `timeout` closes the connection. A stream writes at
///   least a heartbeat every `--heartbeat`, so a vanished subscriber is
///   found within `--heartbeat` plus `timeout`.
/// - keepalive probes on a connection with nothing in flight, the first
///   after `timeout / 3` of silence and then every `timeout / 3`; with the
///   user timeout set, the kernel gives up once nothing was heard for
///   `timeout`.
fn detect_dead_peer(stream: &TcpStream, timeout: Duration) -> io::Result<()> {
    let socket = socket2::SockRef::from(stream);
    // Keepalive counts whole seconds, at least one.
    let probe = (timeout / 3).max(Duration::from_secs(1));
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(probe)
        .with_interval(probe);
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let keepalive = keepalive.with_retries(3);
    socket.set_tcp_keepalive(&keepalive)?;
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "fuchsia"))]
    socket.set_tcp_user_timeout(Some(timeout))?;
    Ok(())
}

/// Counts an open connection in `herald_connections_open` for as long as it
/// lives.
struct ConnectionGuard {
    metrics: Arc<Metrics>,
    /// Open connections including this one, when it was accepted.
    open_now: i64,
}

impl ConnectionGuard {
    fn open(metrics: &Arc<Metrics>) -> ConnectionGuard {
        metrics.connections_open.inc();
        ConnectionGuard {
            metrics: metrics.clone(),
            open_now: metrics.connections_open.get(),
        }
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.metrics.connections_open.dec();
    }
}

/// Drops idle channels every so often, until shutdown.
async fn reap_channels(state: Arc<State>) {
    let interval = state.hub.reap_interval();
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        let left = state.hub.reap(tokio::time::Instant::now());
        state.metrics.channels.set(left as i64);
    }
}

/// The presence timer: one task for the whole server, sleeping until the
/// earliest pending leave, announcing the leaves that are due, until
/// shutdown.
async fn announce_leaves(state: Arc<State>) {
    loop {
        let next = state.hub.expire_presence(tokio::time::Instant::now());
        let due = async {
            match next {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = state.shutdown.cancelled() => return,
            () = state.hub.leave_scheduled() => {}
            () = due => {}
        }
    }
}
