//! The WebSocket transport (`--transport ws`): the upgrade request, and a
//! reader that turns herald's WebSocket messages back into SSE text, so one
//! subscriber loop, one [`crate::sse::Parser`] and one tally serve event
//! streams and WebSockets alike.
//!
//! Server frames are unmasked (RFC 6455 §5.1); herald sends each event as one
//! unfragmented text frame `{"id":"…","channel":"…","event":"…","data":"…"}`.
//! Pings are answered (masked pongs), so a run longer than two heartbeats is
//! not closed for silence.

use std::io::Write;

use memchr::memmem;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::transport::Io;

/// The frames a reader holds start this small and grow to this much at most
/// (one message: herald's events are at most `--max-event-bytes`, 64 KiB by
/// default, plus their JSON).
const RAW_START: usize = 4 * 1024;
const RAW_MAX: usize = 1 << 20;

/// Writes the upgrade request for `/events/<channel>` into `req` (resuming
/// after `last_event_id`, with `token` as a bearer token).
pub fn request(req: &mut Vec<u8>, host: &str, channel: &str, last_event_id: Option<&[u8]>, token: Option<&str>) {
    let _ = write!(req, "GET /events/{channel}");
    if let Some(id) = last_event_id {
        req.extend_from_slice(b"?lastEventId=");
        req.extend_from_slice(id);
    }
    let _ = write!(
        req,
        " HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    );
    if let Some(token) = token {
        let _ = write!(req, "Authorization: Bearer {token}\r\n");
    }
    req.extend_from_slice(b"\r\n");
}

/// An upgraded socket, read as SSE text.
pub struct Reader {
    io: Box<dyn Io>,
    /// Frame bytes read and not yet converted: `raw[..raw_len]`.
    raw: Vec<u8>,
    raw_len: usize,
    /// SSE text converted and not yet handed out: `out[out_pos..]`.
    out: Vec<u8>,
    out_pos: usize,
    /// A close frame came: the end of the body once `out` is handed out.
    closed: bool,
}

impl Reader {
    /// `head_rest`: frame bytes that came with the 101 head.
    pub fn new(io: Box<dyn Io>, head_rest: &[u8]) -> Reader {
        let mut raw = vec![0; RAW_START.max(head_rest.len())];
        raw[..head_rest.len()].copy_from_slice(head_rest);
        Reader { io, raw, raw_len: head_rest.len(), out: Vec::new(), out_pos: 0, closed: false }
    }

    /// Reads SSE text into `buf`; 0 once the server closed the socket.
    pub async fn read(&mut self, buf: &mut [u8]) -> Result<usize, String> {
        loop {
            if self.out_pos < self.out.len() {
                let n = (self.out.len() - self.out_pos).min(buf.len());
                buf[..n].copy_from_slice(&self.out[self.out_pos..self.out_pos + n]);
                self.out_pos += n;
                return Ok(n);
            }
            self.out.clear();
            self.out_pos = 0;
            let mut pos = 0;
            let mut pongs = Vec::new();
            while let Some((frame, len)) = frame(&self.raw[pos..self.raw_len]) {
                let at = |r: std::ops::Range<usize>| pos + r.start..pos + r.end;
                match frame {
                    Frame::Text(payload) => to_sse(&self.raw[at(payload)], &mut self.out),
                    Frame::Ping(payload) => pong(&self.raw[at(payload)], &mut pongs),
                    Frame::Close => self.closed = true,
                    Frame::Other => {}
                }
                pos += len;
                if self.closed {
                    break;
                }
            }
            self.raw.copy_within(pos..self.raw_len, 0);
            self.raw_len -= pos;
            if !pongs.is_empty() {
                self.io.write_all(&pongs).await.map_err(|e| format!("pong: {e}"))?;
            }
            if !self.out.is_empty() {
                continue;
            }
            if self.closed {
                return Ok(0);
            }
            if self.raw_len == self.raw.len() {
                if self.raw.len() >= RAW_MAX {
                    return Err("WebSocket message larger than 1 MiB".into());
                }
                self.raw.resize(self.raw.len() * 2, 0);
            }
            let n = self.io.read(&mut self.raw[self.raw_len..]).await.map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Ok(0);
            }
            self.raw_len += n;
        }
    }
}

/// A masked pong echoing `payload` (at most 125 bytes, as every control
/// frame), appended to `out`. The zero mask key leaves the payload as is.
fn pong(payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&[0x8a, 0x80 | payload.len() as u8, 0, 0, 0, 0]);
    out.extend_from_slice(payload);
}

/// What a complete frame at the start of a buffer is.
#[derive(Debug)]
pub enum Frame {
    /// A text message: its payload's range in the buffer.
    Text(std::ops::Range<usize>),
    Ping(std::ops::Range<usize>),
    Close,
    /// Pong, binary or a continuation: skipped.
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
        127 => (usize::try_from(u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?)).ok()?, 10),
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
        9 => Frame::Ping(at..end),
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

    #[test]
    fn a_message_becomes_its_sse_event() {
        let mut out = Vec::new();
        to_sse(br#"{"id":"7","channel":"c","data":"p=1 k=2 t=3 xx"}"#, &mut out);
        let mut parser = sse::Parser::default();
        let mut data = None;
        parser.feed(&out, |ev| data = Some(ev.data));
        assert_eq!(data, Some(sse::Data::Bench { p: 1, k: 2, t: 3 }));
        assert_eq!(parser.last_id(), b"7");
        out.clear();
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
        long.extend(std::iter::repeat_n(b'x', 256));
        assert!(matches!(frame(&long), Some((Frame::Text(r), 260)) if r == (4..260)));
        assert!(matches!(frame(&[0x88, 0]), Some((Frame::Close, 2))));
        assert!(matches!(frame(&[0x89, 1, b'p']), Some((Frame::Ping(r), 3)) if r == (2..3)));
        assert!(matches!(frame(&[0x8a, 0]), Some((Frame::Other, 2))));
    }

    #[test]
    fn a_pong_is_masked_and_echoes_the_ping() {
        let mut out = Vec::new();
        pong(b"hi", &mut out);
        assert_eq!(out, [0x8a, 0x82, 0, 0, 0, 0, b'h', b'i']);
    }
}
