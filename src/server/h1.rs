//! Cleartext HTTP/1.1 without hyper's fixed buffers (issue 23).
//!
//! hyper keeps two 8 KiB buffers (its read buffer and the response head's)
//! for the whole life of an HTTP/1.1 connection, most of an idle event
//! stream's memory. So a cleartext HTTP/1.1 connection's request heads are
//! read here, with httparse (the parser hyper uses), into a buffer freed as
//! soon as each head is parsed. A plain `GET` (HTTP/1.1, a path, no body,
//! no upgrade, no `Expect`) goes through the same app service as every
//! request, and its answer is written here: the head byte for byte as hyper
//! writes it, then the whole body, or, for an event stream, each frame as a
//! chunk, gathered per write into a buffer freed after the write. While a
//! stream is open the socket is only watched for readability, with no
//! buffer, to notice the client hanging up. Then the next head, as hyper
//! keeps a connection alive.
//!
//! Anything else goes to hyper with the bytes already read
//! ([`Rewind`](crate::transport::rewind::Rewind)),
//! and the connection stays hyper's: another method (a publish, a
//! preflight, `HEAD`), a WebSocket upgrade, HTTP/1.0, a head httparse
//! refuses or that grows past [`HEAD_LIMIT`]. hyper then answers it exactly
//! as before (its status, its timeout, its metric).

use std::convert::Infallible;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http::header::{CONNECTION, CONTENT_LENGTH, DATE, EXPECT, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri, Version};
use http_body::Body as _;
use http_body_util::Empty;
use hyper::service::Service;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::body::{Body, Response};

/// The longest request head read here; a longer one goes on to
/// hyper, whose own limit (about 400 KiB) answers 431 past it.
pub const HEAD_LIMIT: usize = 16 * 1024;
/// Header lines a head may have: hyper's limit too (past it, hyper's 431).
const MAX_HEADERS: usize = 100;
/// Bytes read at a time while the head is incomplete.
const READ_CHUNK: usize = 1024;
/// Bytes a client may send while its stream is open (a request pipelined
/// behind it), kept for hyper once the stream ends; past this the socket is
/// no longer read until then, as hyper stops at a full read buffer.
const UNREAD_LIMIT: usize = 8 * 1024;
/// Event bytes gathered into one write.
const BATCH_BYTES: usize = 64 * 1024;

/// What the bytes read so far amount to.
pub enum Parsed {
    /// An unfinished head that may still be served here: read more.
    Partial,
    /// A request to serve here.
    Ours(Box<Head>),
    /// Anything else: hyper's.
    Hyper,
}

/// A request head served here.
pub struct Head {
    pub request: Request<Empty<Bytes>>,
    /// The client asked for `Connection: close`.
    pub close: bool,
    /// The head's length: what follows it was pipelined.
    pub len: usize,
}

/// Whether a request-target is one served here: origin-form (a path), as
/// every URL herald serves is.
fn is_served_path(path: &str) -> bool {
    path.starts_with('/')
}

/// Reads a request head as hyper would, keeping only a plain HTTP/1.1
/// `GET` (see the module documentation).
pub fn parse(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            let ours = req.method.is_none_or(|m| m == "GET") && req.path.is_none_or(is_served_path);
            return if ours && buf.len() < HEAD_LIMIT {
                Parsed::Partial
            } else {
                Parsed::Hyper
            };
        }
        Err(_) => return Parsed::Hyper,
    };
    if len > HEAD_LIMIT || req.method != Some("GET") || req.version != Some(1) {
        return Parsed::Hyper;
    }
    let Some(uri) = req
        .path
        .filter(|p| is_served_path(p))
        .and_then(|p| Uri::try_from(p).ok())
    else {
        return Parsed::Hyper;
    };
    let mut map = HeaderMap::with_capacity(req.headers.len());
    let mut close = false;
    for header in req.headers.iter() {
        let Ok(name) = HeaderName::from_bytes(header.name.as_bytes()) else {
            return Parsed::Hyper;
        };
        if [CONTENT_LENGTH, TRANSFER_ENCODING, UPGRADE, EXPECT].contains(&name) {
            return Parsed::Hyper;
        }
        let Ok(value) = HeaderValue::from_bytes(header.value) else {
            return Parsed::Hyper;
        };
        if name == CONNECTION && has_token(&value, "close") {
            close = true;
        }
        map.append(name, value);
    }
    let mut request = Request::new(Empty::new());
    *request.method_mut() = Method::GET;
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_11;
    *request.headers_mut() = map;
    Parsed::Ours(Box::new(Head {
        request,
        close,
        len,
    }))
}

fn has_token(value: &HeaderValue, token: &str) -> bool {
    value
        .to_str()
        .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

/// How [`serve`] left the connection.
pub enum Served {
    /// Closed (answered and done, timed out, or the client left).
    Closed,
    /// hyper's from here on, the bytes already read first.
    Hyper(TcpStream, Vec<u8>),
}

/// Reads request heads (each within `header_timeout`, as hyper's own
/// timer) and serves each here while [`parse`] keeps it; the first one it
/// does not keep goes to hyper with the connection.
pub async fn serve<S>(
    mut stream: TcpStream,
    service: &S,
    header_timeout: Duration,
    shutdown: &CancellationToken,
) -> Served
where
    S: Service<Request<Empty<Bytes>>, Response = Response, Error = Infallible>,
{
    // Bytes read and not yet answered: a head being read, or what a client
    // pipelined behind the previous request.
    let mut buf: Vec<u8> = Vec::new();
    loop {
        // hyper's header timer, restarted for each head as hyper does.
        let deadline = Instant::now() + header_timeout;
        let head = loop {
            if !buf.is_empty() {
                match parse(&buf) {
                    Parsed::Partial => {}
                    Parsed::Hyper => return Served::Hyper(stream, buf),
                    Parsed::Ours(head) => break head,
                }
            }
            buf.reserve(READ_CHUNK.max(buf.len()));
            let read = tokio::select! {
                biased;
                // hyper closes a connection with nothing in flight at once.
                () = shutdown.cancelled(), if buf.is_empty() => return Served::Closed,
                read = tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)) => read,
            };
            match read {
                // hyper's header timeout: closed, nothing answered.
                Err(_) => return Served::Closed,
                // Gone before a whole head: hyper answers nothing either.
                Ok(Err(_)) | Ok(Ok(0)) => return Served::Closed,
                Ok(Ok(_)) => {}
            }
        };
        let Head {
            request,
            close,
            len,
        } = *head;
        // What came after the head, pipelined; the head's buffer goes now.
        let mut unread = buf.split_off(len);
        drop(buf);
        unread.shrink_to_fit();
        if !answer(&mut stream, service, request, &mut unread).await
            || close
            || shutdown.is_cancelled()
        {
            let _ = stream.shutdown().await;
            return Served::Closed;
        }
        buf = unread;
    }
}

/// Answers one request read here: its head, then its whole body or its
/// event stream. `false` when the connection must close after it (the
/// answer says `connection: close`, or the client left).
async fn answer<S>(
    stream: &mut TcpStream,
    service: &S,
    request: Request<Empty<Bytes>>,
    unread: &mut Vec<u8>,
) -> bool
where
    S: Service<Request<Empty<Bytes>>, Response = Response, Error = Infallible>,
{
    let Ok(response) = service.call(request).await;
    let (parts, body) = response.into_parts();
    let close = parts
        .headers
        .get_all(CONNECTION)
        .iter()
        .any(|v| has_token(v, "close"));
    let mut out = Vec::new();
    let chunked = encode_head(&parts.status, &parts.headers, &body, &mut out);
    let with_body = body_allowed(&parts.status);
    drop(parts);
    let finished = if chunked {
        if stream.write_all(&out).await.is_err() {
            return false;
        }
        drop(out);
        events(stream, body, unread).await
    } else {
        if let Body::Full(bytes) = &body {
            if with_body {
                out.extend_from_slice(bytes);
            }
        }
        stream.write_all(&out).await.is_ok()
    };
    finished && !close
}

/// Whether a response with this status has a body (not 1xx, 204 or 304).
fn body_allowed(status: &StatusCode) -> bool {
    !status.is_informational()
        && *status != StatusCode::NO_CONTENT
        && *status != StatusCode::NOT_MODIFIED
}

/// Writes a response head to a `GET` exactly as hyper 1.x does for
/// HTTP/1.1 (`proto/h1/role.rs`, `Server::encode`): the status line, the
/// headers in order with lowercase names, then the body's length (or
/// `transfer-encoding: chunked` for a body of unknown length), then
/// `date`. Returns whether the body is chunked.
pub fn encode_head(
    status: &StatusCode,
    headers: &HeaderMap,
    body: &Body,
    dst: &mut Vec<u8>,
) -> bool {
    if *status == StatusCode::OK {
        dst.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    } else {
        dst.extend_from_slice(b"HTTP/1.1 ");
        dst.extend_from_slice(status.as_str().as_bytes());
        dst.push(b' ');
        dst.extend_from_slice(status.canonical_reason().unwrap_or("<none>").as_bytes());
        dst.extend_from_slice(b"\r\n");
    }
    let mut wrote_len = false;
    let mut wrote_date = false;
    let mut previous: Option<&HeaderName> = None;
    for (name, value) in headers {
        let repeat = previous == Some(name);
        previous = Some(name);
        if *name == CONNECTION {
            // hyper joins a repeated `connection` into one line.
            if repeat {
                dst.truncate(dst.len() - 2);
                dst.extend_from_slice(b", ");
                dst.extend_from_slice(value.as_bytes());
                dst.extend_from_slice(b"\r\n");
                continue;
            }
        } else if *name == CONTENT_LENGTH || *name == TRANSFER_ENCODING {
            wrote_len = true;
        } else if *name == DATE {
            wrote_date = true;
        }
        dst.extend_from_slice(name.as_str().as_bytes());
        dst.extend_from_slice(b": ");
        dst.extend_from_slice(value.as_bytes());
        dst.extend_from_slice(b"\r\n");
    }
    // A `GET`'s answer may carry a length unless it is 1xx, 204 or 304.
    let mut chunked = false;
    if !wrote_len && body_allowed(status) {
        match body {
            Body::Events(_) => {
                dst.extend_from_slice(b"transfer-encoding: chunked\r\n");
                chunked = true;
            }
            Body::Empty | Body::Full(_) => {
                let len = match body {
                    Body::Full(bytes) => bytes.len(),
                    _ => 0,
                };
                dst.extend_from_slice(b"content-length: ");
                dst.extend_from_slice(itoa::Buffer::new().format(len).as_bytes());
                dst.extend_from_slice(b"\r\n");
            }
        }
    }
    if !wrote_date {
        dst.extend_from_slice(b"date: ");
        dst.extend_from_slice(httpdate::fmt_http_date(std::time::SystemTime::now()).as_bytes());
        dst.extend_from_slice(b"\r\n\r\n");
    } else {
        dst.extend_from_slice(b"\r\n");
    }
    chunked
}

/// Appends one chunk of a chunked body, as hyper frames it.
fn chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    use std::io::Write;
    let _ = write!(out, "{:X}\r\n", data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Writes an event stream's frames as chunks until it ends (then the last
/// chunk) or the client leaves. Returns whether it ended cleanly.
async fn events(stream: &mut TcpStream, mut body: Body, unread: &mut Vec<u8>) -> bool {
    loop {
        let mut out = Vec::new();
        let gathered = {
            let body = &mut body;
            let out = &mut out;
            let ready = poll_fn(|cx| gather(body, out, cx));
            let socket: &TcpStream = stream;
            tokio::select! {
                ended = ready => ended,
                () = hang_up(socket, unread) => return false,
            }
        };
        if gathered {
            out.extend_from_slice(b"0\r\n\r\n");
        }
        if stream.write_all(&out).await.is_err() {
            return false;
        }
        if gathered {
            return true;
        }
    }
}

/// Takes every frame ready now (up to [`BATCH_BYTES`]) into `out`; pending
/// until there is one. Ready with `true` when the stream has ended.
fn gather(body: &mut Body, out: &mut Vec<u8>, cx: &mut Context<'_>) -> Poll<bool> {
    loop {
        match Pin::new(&mut *body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    chunk(out, data.chunk());
                }
                if out.len() >= BATCH_BYTES {
                    return Poll::Ready(false);
                }
            }
            Poll::Ready(None) => return Poll::Ready(true),
            Poll::Pending if out.is_empty() => return Poll::Pending,
            Poll::Pending => return Poll::Ready(false),
        }
    }
}

/// Resolves when the client hangs up or half-closes (hyper, without
/// half-close support, ends the response then too). Bytes it sends
/// meanwhile are kept in `unread`, up to [`UNREAD_LIMIT`]; the socket is
/// then no longer read (and this never resolves).
async fn hang_up(stream: &TcpStream, unread: &mut Vec<u8>) {
    loop {
        if unread.len() >= UNREAD_LIMIT {
            return std::future::pending().await;
        }
        if stream.readable().await.is_err() {
            return;
        }
        let mut scratch = [0u8; 512];
        let room = (UNREAD_LIMIT - unread.len()).min(scratch.len());
        match stream.try_read(&mut scratch[..room]) {
            Ok(0) => return,
            Ok(n) => unread.extend_from_slice(&scratch[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_event_get_is_ours_and_its_pipelined_bytes_are_kept() {
        let raw = b"GET /events/a?x=1 HTTP/1.1\r\nHost: h\r\nLast-Event-ID: 7\r\n\r\nGET /healthz";
        let Parsed::Ours(head) = parse(raw) else {
            panic!("not ours")
        };
        assert_eq!(head.request.uri().path(), "/events/a");
        assert_eq!(head.request.uri().query(), Some("x=1"));
        assert_eq!(head.request.headers()["last-event-id"], "7");
        assert!(!head.close);
        assert_eq!(&raw[head.len..], b"GET /healthz");
    }

    #[test]
    fn everything_else_is_hypers() {
        for raw in [
            &b"POST /events/a HTTP/1.1\r\n\r\n"[..],
            b"GET http://h/events/a HTTP/1.1\r\n\r\n",
            b"HEAD /events/a HTTP/1.1\r\n\r\n",
            b"GET /events/a HTTP/1.0\r\n\r\n",
            b"GET /events/a HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
            b"GET /events/a HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            b"GET /events/a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET /events/a HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
            b"GET /events/a HTTP/1.1\r\nHo\0st: x\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"\x16\x03\x01",
        ] {
            assert!(
                matches!(parse(raw), Parsed::Hyper),
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn a_head_split_anywhere_is_partial_until_it_ends() {
        let raw = b"GET /events/a HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
        for cut in 0..raw.len() {
            assert!(matches!(parse(&raw[..cut]), Parsed::Partial), "cut {cut}");
        }
        let Parsed::Ours(head) = parse(raw) else {
            panic!("not ours")
        };
        assert!(head.close);
    }

    #[test]
    fn a_head_past_the_limit_is_hypers() {
        let mut raw = b"GET /events/a HTTP/1.1\r\nX-Big: ".to_vec();
        raw.resize(HEAD_LIMIT + 1, b'a');
        assert!(matches!(parse(&raw), Parsed::Hyper));
    }
}
