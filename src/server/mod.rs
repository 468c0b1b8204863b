//! The server: the accept loop and its connection limit, the channel
//! reaper, SIGHUP reloads, and graceful shutdown.
//!
//! - [`connection`]: one accepted connection, TLS or cleartext, served by
//!   hyper's HTTP/1.1 or HTTP/2 builder.
//! - [`h1`]: a cleartext HTTP/1.1 connection's plain `GET`s, read and
//!   answered (event streams included) outside hyper's buffers.
//! - [`tls`]: the certificate pair from PEM files, and its reload.
//! - [`acme`]: the certificate from an ACME CA, and its renewal.

pub mod acme;
pub mod connection;
pub mod h1;
pub mod tls;

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::body::Incoming;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::app::{self, Conn, ConnService};
use crate::config::Config;
use crate::log::Log;
use crate::metrics::Metrics;
use crate::state::State;
use connection::{Certificates, Protocols};
use tls::Tls;

/// Serves on `listener` until `shutdown` resolves, then stops accepting, ends
/// every event stream, lets in-flight requests finish, and returns within
/// `--shutdown-grace`. SIGHUP rereads the files herald was started with
/// (see [`crate::reload`]).
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let state = State::open(config).map_err(io::Error::other)?;
    run_state(listener, state, shutdown).await
}

/// [`serve`] with SIGHUP forwarded to `state.reload` while it runs.
pub async fn run_state(
    listener: TcpListener,
    state: Arc<State>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    #[cfg(unix)]
    tokio::spawn(forward_sighup(state.clone(), state.shutdown.clone()));
    let served = serve(listener, state.clone(), shutdown).await;
    // Ends the SIGHUP forwarder too when serving never started.
    state.shutdown.cancel();
    served
}

/// Calls [`crate::reload::Reload::trigger`] on every SIGHUP until `stop`
/// is cancelled (the binary starts it through [`run_state`]).
#[cfg(unix)]
pub async fn forward_sighup(state: Arc<State>, stop: tokio_util::sync::CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(signal) => signal,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGHUP; reloads are off");
            return;
        }
    };
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            got = hangups.recv() => {
                if got.is_none() {
                    return;
                }
                tracing::info!("SIGHUP: reloading");
                state.reload.trigger();
            }
        }
    }
}

/// [`run`] with a state built by the caller (tests look inside it, and
/// reload through `state.reload`). Fails before serving when the TLS files
/// cannot be used.
pub async fn serve(
    listener: TcpListener,
    state: Arc<State>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let config = &state.config;
    if let Log::Redis(redis) = &state.log {
        // redis+sentinel://: a Sentinel must answer before anything is served.
        redis.check().await.map_err(io::Error::other)?;
    }
    let tls = Tls::from_config(config)?.map(Arc::new);
    let acme = acme::Acme::from_config(config, &state.metrics)?;
    if let Some(tls) = &tls {
        state.metrics.tls_certificate_expires(tls.expiry());
        tokio::spawn(tls::reload_on_signal(tls.clone(), state.clone()));
    }
    let certificates = match (tls, acme) {
        (Some(tls), _) => Some(Certificates::Files(tls)),
        (None, Some((acme, driver))) => {
            let acme = Arc::new(acme);
            acme::start(driver, acme.clone(), state.shutdown.clone()).await;
            Some(Certificates::Acme(acme))
        }
        (None, None) => None,
    };
    let scheme = if certificates.is_some() {
        "https"
    } else {
        "http"
    };
    info!(
        "herald listening on {scheme}://{}{}",
        listener.local_addr()?,
        if config.h2c { " (h2c on)" } else { "" }
    );
    let protocols = Arc::new(Protocols::new(config, certificates));
    // The middleware stack, built once for the whole server.
    let app = Arc::new(app::app::<Incoming>(state.clone()));
    // The same stack for requests `h1` reads itself (no body).
    let streams = Arc::new(app::app::<Empty<Bytes>>(state.clone()));
    let max_connections = config.max_connections as i64;

    tokio::spawn(reap_channels(state.clone()));
    tokio::spawn(announce_leaves(state.clone()));
    // `--jwks-file` rereads on SIGHUP with its own signal listener (tokio
    // hands every SIGHUP to each listener), beside `reload` for TLS.
    tokio::spawn(crate::auth::reload_on_sighup(
        state.auth.clone(),
        state.shutdown.clone(),
    ));
    tokio::spawn(crate::auth::refresh_jwks_url(
        state.auth.clone(),
        state.metrics.jwks_refresh_failures.clone(),
        state.shutdown.clone(),
    ));
    if let Log::Redis(redis) = &state.log {
        redis.start(state.shutdown.clone());
    }

    let connections = TaskTracker::new();
    // Asks every open connection to finish once the accept loop has stopped
    // (apart from `state.shutdown`, which a test may cancel on its own to
    // see requests refused while connections still come in).
    let close_connections = CancellationToken::new();
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
        let service = ConnService::new(app.clone(), conn);
        let stream_service = ConnService::new(streams.clone(), conn);
        let protocols = protocols.clone();
        let metrics = state.metrics.clone();
        let close = close_connections.clone();
        connections.spawn(async move {
            protocols
                .serve(stream, service, stream_service, &metrics, &close)
                .await;
            drop(guard);
        });
    }

    info!("shutting down: ending streams, finishing requests");
    state.shutdown.cancel();
    state.hub.close();
    drop(listener);
    let deadline = tokio::time::Instant::now() + config.shutdown_grace;
    connections.close();
    close_connections.cancel();
    state.sessions.close();
    let all_closed = async {
        connections.wait().await;
        // WebSockets close themselves with a close frame once the hub is
        // closed; they left their connection's task when they were upgraded.
        state.sessions.wait().await;
    };
    tokio::select! {
        () = all_closed => info!("all connections closed"),
        () = tokio::time::sleep_until(deadline) => {
            warn!("shutdown grace period over; closing the remaining connections");
        }
    }
    // Requests in flight have had their answers (publishes included, since
    // a publish is answered only once the log has committed it): let the
    // log finish and stop, with what is left of the grace period (at least
    // a second).
    let log_deadline = deadline.max(tokio::time::Instant::now() + Duration::from_secs(1));
    if tokio::time::timeout_at(log_deadline, state.log.close())
        .await
        .is_err()
    {
        warn!("the log did not stop within the shutdown grace period");
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

/// Counts an open TCP connection in `herald_connections_open` for as long as
/// it lives (an HTTP/2 connection counts once, whatever its streams).
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
        let reaped = state.hub.reap(tokio::time::Instant::now());
        state.metrics.channels.set(reaped.left as i64);
        if !reaped.dropped.is_empty() {
            state.log.forget(reaped.dropped, reaped.through).await;
        }
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
