//! Serving one accepted TCP connection: TLS with ALPN, or cleartext with the
//! optional h2c sniff, then hyper's HTTP/1.1 or HTTP/2 connection builder,
//! called directly. A cleartext HTTP/1.1 connection is read by
//! [`super::h1`] first: plain `GET`s (event streams) it serves itself,
//! outside hyper's buffers; the first other request reaches hyper with the
//! bytes read, and the connection stays hyper's.
//!
//! Why not hyper-util's `auto` builder: to tell h1 from h2 it reads the first
//! bytes itself and replays them, and hyper's HTTP/1.1 read buffer then grows
//! from 8 to 16 KiB on every connection (`../shared/research/
//! durability-transports.md` B.2). Over TLS the protocol comes from ALPN; on
//! an `--h2c` port the first bytes are `peek`ed, so hyper still reads the
//! whole request head in one go and HTTP/1.1 keeps its memory.
//!
//! Each connection's hyper state is boxed: the spawned task then holds a
//! pointer per branch instead of being as large as the largest branch (a TLS
//! HTTP/2 connection), so a plain HTTP/1.1 connection pays only for itself.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::acme::{Acme, ALPN_ACME};
use super::h1::{self, Served};
use super::tls::{Tls, ALPN_H2};
use crate::body::Response;
use crate::config::Config;
use crate::metrics::{ConnectionRefusal, Metrics, RejectReason};
use crate::transport::rewind::Rewind;

/// The HTTP/2 connection preface a client with prior knowledge sends first.
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Where the TLS configuration comes from.
pub enum Certificates {
    /// `--tls-cert` and `--tls-key`.
    Files(Arc<Tls>),
    /// `--acme-domain`.
    Acme(Arc<Acme>),
}

impl Certificates {
    fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        match self {
            Certificates::Files(tls) => tls.acceptor(),
            Certificates::Acme(acme) => acme.acceptor(),
        }
    }
}

/// How to serve a connection: the two hyper builders, configured once per
/// server, and what decides between them.
pub struct Protocols {
    /// HTTP/1.1: header timeout, upgrades on.
    h1: http1::Builder,
    /// HTTP/2: streams per connection, send buffer per stream.
    h2: http2::Builder<TokioExecutor>,
    /// Set with `--tls-cert` or `--acme-domain`: every connection is TLS.
    tls: Option<Certificates>,
    /// `--h2c`: cleartext connections may be HTTP/2 with prior knowledge.
    h2c: bool,
    /// Longest a TLS handshake or the first bytes of an h2c sniff may take
    /// (`--header-timeout`).
    handshake_timeout: Duration,
}

impl Protocols {
    pub fn new(config: &Config, tls: Option<Certificates>) -> Protocols {
        let mut h1 = http1::Builder::new();
        h1.timer(TokioTimer::new())
            .header_read_timeout(config.header_timeout);
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        // A stream whose reader is slow holds at most 64 KiB of sent-but-
        // unacknowledged events here (hyper's default is 400 KiB); past
        // that, herald's own catch-up from history takes over, as on
        // HTTP/1.1. Each stream has its own window, so a slow one never
        // holds up the others on its connection.
        h2.timer(TokioTimer::new())
            .max_concurrent_streams(config.max_streams_per_connection)
            .max_send_buf_size(64 * 1024);
        Protocols {
            h1,
            h2,
            tls,
            h2c: config.h2c,
            handshake_timeout: config.header_timeout,
        }
    }

    /// Serves `stream` until it closes, or until `shutdown` asks it to
    /// finish (in-flight requests complete; event streams end themselves).
    /// `streams` is the same app for the requests [`h1`] serves on a
    /// cleartext HTTP/1.1 connection (plain `GET`s, outside hyper's
    /// buffers).
    pub async fn serve<S, E>(
        &self,
        stream: TcpStream,
        service: S,
        streams: E,
        metrics: &Metrics,
        shutdown: &CancellationToken,
    ) where
        S: Service<Request<Incoming>, Response = Response, Error = Infallible>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
        E: Service<Request<Empty<Bytes>>, Response = Response, Error = Infallible>,
    {
        let result = match &self.tls {
            // Boxed: a TLS session is large, and inline it would size every
            // connection's task, cleartext ones included.
            Some(tls) => match Box::pin(self.serve_tls(tls, stream, service, shutdown)).await {
                Ok(result) => result,
                Err(refusal) => return metrics.connection_refused(refusal),
            },
            None => {
                let h2 = if self.h2c {
                    match starts_with_h2_preface(&stream, self.handshake_timeout).await {
                        Ok(h2) => h2,
                        Err(Sniff::Closed) => return,
                        Err(Sniff::TimedOut) => {
                            metrics.connection_refused(ConnectionRefusal::HandshakeTimeout);
                            return;
                        }
                    }
                } else {
                    false
                };
                if h2 {
                    self.serve_http(
                        TokioIo::new(Rewind::new(stream, Vec::new())),
                        h2,
                        service,
                        shutdown,
                    )
                    .await
                } else {
                    match h1::serve(stream, &streams, self.handshake_timeout, shutdown).await {
                        Served::Closed => return,
                        Served::Hyper(stream, read) => {
                            self.serve_http(
                                TokioIo::new(Rewind::new(stream, read)),
                                false,
                                service,
                                shutdown,
                            )
                            .await
                        }
                    }
                }
            }
        };
        match result {
            Ok(()) => {}
            Err(Ended::Silent) => {
                debug!("HTTP/2 connection opened no stream in time");
                metrics.connection_refused(ConnectionRefusal::HandshakeTimeout);
            }
            Err(Ended::Http(e)) => {
                if is_http2_abuse(&e) {
                    metrics.connection_refused(ConnectionRefusal::Http2Protocol);
                }
                // hyper answered a request it could not parse itself (400,
                // or 414/431 for a URI or head past its buffer) and closed
                // the connection: a refused request like any other.
                if e.is_parse() {
                    metrics.rejected(RejectReason::BadRequest);
                }
                debug!(error = %e, "connection ended with an error");
            }
        }
    }

    /// The TLS handshake (within `--header-timeout`), then the protocol
    /// ALPN chose. `Err` when the handshake failed.
    async fn serve_tls<S>(
        &self,
        tls: &Certificates,
        stream: TcpStream,
        service: S,
        shutdown: &CancellationToken,
    ) -> Result<Result<(), Ended>, ConnectionRefusal>
    where
        S: Service<Request<Incoming>, Response = Response, Error = Infallible>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
    {
        let accept = tls.acceptor().accept(stream);
        let stream = match tokio::time::timeout(self.handshake_timeout, accept).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                debug!(error = %e, "TLS handshake failed");
                if let Certificates::Acme(acme) = tls {
                    acme.handshake_failed();
                }
                return Err(ConnectionRefusal::TlsHandshake);
            }
            Err(_) => {
                debug!("TLS handshake timed out");
                return Err(ConnectionRefusal::HandshakeTimeout);
            }
        };
        let alpn = stream.get_ref().1.alpn_protocol();
        if alpn == Some(ALPN_ACME) {
            // The CA validating a TLS-ALPN-01 challenge: the handshake, with
            // the challenge certificate, was all it came for (RFC 8737 §3).
            debug!("TLS-ALPN-01 validation handshake answered");
            return Ok(Ok(()));
        }
        let h2 = alpn == Some(ALPN_H2);
        Ok(self
            .serve_http(TokioIo::new(stream), h2, service, shutdown)
            .await)
    }

    async fn serve_http<I, S>(
        &self,
        io: I,
        h2: bool,
        service: S,
        shutdown: &CancellationToken,
    ) -> Result<(), Ended>
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
        S: Service<Request<Incoming>, Response = Response, Error = Infallible>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
    {
        if h2 {
            // Boxed: its state (a timer among it) then costs an HTTP/1.1
            // connection's task nothing.
            Box::pin(self.serve_h2(io, service, shutdown)).await
        } else {
            // Upgrades stay on: the WebSocket transport (SPEC §10) takes the
            // socket over from an HTTP/1.1 request with `hyper::upgrade`.
            let connection = Box::pin(self.h1.serve_connection(io, service).with_upgrades());
            drive(connection, shutdown, |c| c.graceful_shutdown())
                .await
                .map_err(Ended::Http)
        }
    }

    /// HTTP/2 has no header timeout: a client that connects and never opens
    /// a stream is cut after `--header-timeout`, as an HTTP/1.1 client that
    /// sends no request is.
    async fn serve_h2<I, S>(
        &self,
        io: I,
        service: S,
        shutdown: &CancellationToken,
    ) -> Result<(), Ended>
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
        S: Service<Request<Incoming>, Response = Response, Error = Infallible>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
    {
        let first = Arc::new(AtomicBool::new(false));
        let service = FirstRequest {
            inner: service,
            seen: first.clone(),
        };
        let connection = Box::pin(self.h2.serve_connection(io, service));
        let serving = drive(connection, shutdown, |c| c.graceful_shutdown());
        tokio::pin!(serving);
        tokio::select! {
            result = &mut serving => return result.map_err(Ended::Http),
            () = tokio::time::sleep(self.handshake_timeout) => {}
        }
        if !first.load(Ordering::Relaxed) {
            return Err(Ended::Silent);
        }
        serving.await.map_err(Ended::Http)
    }
}

/// How a connection ended, when not cleanly.
enum Ended {
    Http(hyper::Error),
    /// An HTTP/2 client that opened no stream within `--header-timeout`.
    Silent,
}

/// The connection's service, noting that a request came (see
/// [`Protocols::serve_http`]).
#[derive(Clone)]
struct FirstRequest<S> {
    inner: S,
    /// Set by the first request; read once `--header-timeout` has passed.
    seen: Arc<AtomicBool>,
}

impl<S, R> Service<R> for FirstRequest<S>
where
    S: Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn call(&self, req: R) -> S::Future {
        self.seen.store(true, Ordering::Relaxed);
        self.inner.call(req)
    }
}

/// Runs a hyper connection; once `shutdown` fires, asks it to finish
/// gracefully and waits for that.
async fn drive<C>(
    mut connection: Pin<Box<C>>,
    shutdown: &CancellationToken,
    graceful: fn(Pin<&mut C>),
) -> hyper::Result<()>
where
    C: Future<Output = hyper::Result<()>>,
{
    tokio::select! {
        result = connection.as_mut() => return result,
        () = shutdown.cancelled() => {}
    }
    graceful(connection.as_mut());
    connection.await
}

enum Sniff {
    Closed,
    TimedOut,
}

/// Whether the client opens with the HTTP/2 preface, decided by peeking,
/// so nothing is consumed. Most requests are told apart by their first
/// byte; a client that sends a partial preface and stalls is given up on
/// after `timeout`.
async fn starts_with_h2_preface(stream: &TcpStream, timeout: Duration) -> Result<bool, Sniff> {
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; H2_PREFACE.len()];
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await {
            Err(_) => return Err(Sniff::TimedOut),
            Ok(Err(_)) | Ok(Ok(0)) => return Err(Sniff::Closed),
            Ok(Ok(n)) => n,
        };
        if buf[..n] != H2_PREFACE[..n] {
            return Ok(false);
        }
        if n == H2_PREFACE.len() {
            return Ok(true);
        }
        // A prefix of the preface: `peek` would return the same bytes at
        // once, so wait a little for the rest instead of spinning.
        if Instant::now() + Duration::from_millis(5) >= deadline {
            return Err(Sniff::TimedOut);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// An HTTP/2 connection that herald closed with a GOAWAY for a protocol
/// error or abuse (h2 enforces the stream limit and the reset-flood limits
/// and reports them this way), as opposed to a client that went away.
fn is_http2_abuse(e: &hyper::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(error) = source {
        if let Some(h2) = error.downcast_ref::<h2::Error>() {
            return h2.is_go_away() && h2.is_library();
        }
        source = error.source();
    }
    false
}
