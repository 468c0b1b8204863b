//! The WebSocket side of a subscriber: the opening handshake, and turning
//! server frames back into SSE text for [`crate::sse::Parser`], so one
//! parser and one tally serve both transports.
//!
//! Server frames are unmasked (RFC 6455 §5.1); herald sends each event as
//! one unfragmented text frame `{"id":"…","channel":"…","event":"…","data":"…"}`.
//! Pings are left unanswered: a run is much shorter than two heartbeats.

use std::io::Write;
use std::net::SocketAddr;

use memchr::memmem;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;


/// Connects and upgrades `/events/<channel>` (resuming after `last_event_id`);
/// returns the socket and how many frame bytes came with the 101 head (moved
/// to the start of `buf`).
pub async fn open(
    addr: SocketAddr,
    channel: &str,
    last_event_id: Option<&[u8]>,
    buf: &mut [u8],
) -> Result<(TcpStream, usize), String> {
    let mut stream = TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
    let mut req = Vec::with_capacity(256);
    let _ = write!(req, "GET /events/{channel}");
    if let Some(id) = last_event_id {
        req.extend_from_slice(b"?lastEventId=");
        req.extend_from_slice(id);
    }
    let _ = write!(
        req,
        " HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    stream.write_all(&req).await.map_err(|e| format!("write: {e}"))?;
    let mut len = 0;
    loop {
        let n = stream.read(&mut buf[len..]).await.map_err(|e| format!("read head: {e}"))?;
        if n == 0 {
            return Err("closed before the response head".into());
        }
        len += n;
        let Some(end) = memmem::find(&buf[..len], b"\r\n\r\n") else {
            if len == buf.len() {
                return Err("response head too large".into());
            }
            continue;
        };
        if !buf.starts_with(b"HTTP/1.1 101") {
            let line = buf[..len].split(|&b| b == b'\r').next().unwrap_or_default();
            return Err(format!("no upgrade: {}", String::from_utf8_lossy(line)));
        }
        let head = end + 4;
        buf.copy_within(head..len, 0);
        return Ok((stream, len - head));
    }
}

/// What a complete frame at the start of a buffer is.
pub enum Frame {
    /// A text message: its payload's range in the buffer.
    Text(std::ops::Range<usize>),
    Close,
    /// Ping, pong, binary or a continuation: skipped.
    Other,
}

/// The first complete frame of `buf` and its length, or `None` if more bytes
/// are needed.
pub fn frame(buf: &[u8]) -> Option<(Frame, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let opcode = buf[0] & 0x0f;
    let masked = buf[1] & 0x80 != 0;
    let (len, mut at): (usize, usize) = match buf[1] & 0x7f {
        126 => (u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?) as usize, 4),
        127 => (u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?) as usize, 10),
        n => (n as usize, 2),
    };
    if masked {
        at += 4;
    }
    let end = at.checked_add(len)?;
    if buf.len() < end {
        return None;
    }
    let kind = match opcode {
        1 => Frame::Text(at..end),
        8 => Frame::Close,
        _ => Frame::Other,
    };
    Some((kind, end))
}

/// Writes the SSE event a herald WebSocket message stands for into `out`:
/// its `id`, `event` and the `data` string up to its first escape (enough for
/// the benchmark payload, and for recognising a `herald.gap`).
pub fn to_sse(message: &[u8], out: &mut Vec<u8>) {
    if let Some(id) = string_field(message, b"\"id\":\"") {
        out.extend_from_slice(b"id: ");
        out.extend_from_slice(id);
        out.push(b'\n');
    }
    if let Some(event) = string_field(message, b"\"event\":\"") {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(event);
        out.push(b'\n');
    }
    out.extend_from_slice(b"data: ");
    match string_field(message, b"\"data\":\"") {
        Some(data) if !data.is_empty() => out.extend_from_slice(data),
        _ => out.push(b'?'),
    }
    out.extend_from_slice(b"\n\n");
}

fn string_field<'a>(message: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let start = memmem::find(message, key)? + key.len();
    let rest = &message[start..];
    let end = rest.iter().position(|&b| b == b'"' || b == b'\\').unwrap_or(rest.len());
    Some(&rest[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse;

/// The tool's own check that a herald message becomes the SSE event it is.
fn self_test() -> bool {
    let mut out = Vec::new();
    to_sse(br#"{"id":"7","channel":"c","data":"p=1 k=2 t=3 xx"}"#, &mut out);
    let mut parser = sse::Parser::default();
    let mut ok = false;
    parser.feed(&out, |ev| ok = ev.data == sse::Data::Bench { p: 1, k: 2, t: 3 });
    ok && parser.last_id() == b"7"
}


    #[test]
    fn a_message_becomes_its_sse_event() {
        assert!(self_test());
        let mut out = Vec::new();
        to_sse(br#"{"channel":"c","event":"herald.gap","data":"{\"channel\":\"c\"}"}"#, &mut out);
        assert_eq!(out, b"event: herald.gap\ndata: {\n\n");
    }

    #[test]
    fn frames_of_every_length_form() {
        let mut buf = vec![0x81, 3, b'a', b'b', b'c'];
        assert!(matches!(frame(&buf), Some((Frame::Text(r), 5)) if r == (2..5)));
        buf.truncate(4);
        assert!(frame(&buf).is_none());
        let mut long = vec![0x81, 126, 1, 0];
        long.extend(std::iter::repeat(b'x').take(256));
        assert!(matches!(frame(&long), Some((Frame::Text(r), 260)) if r == (4..260)));
        assert!(matches!(frame(&[0x88, 0]), Some((Frame::Close, 2))));
        assert!(matches!(frame(&[0x89, 0]), Some((Frame::Other, 2))));
    }
}
