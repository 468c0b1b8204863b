//! Where the bytes a client sent stand between WebSocket frames: on the
//! boundary of a whole message, or inside an unfinished one (a frame cut
//! short, or a fragmented message whose final frame has not come).
//!
//! tungstenite does not say, and the session needs to know to give an
//! unfinished message `--body-timeout` to finish: whole control frames may
//! sit between the fragments of a message (RFC 6455 §5.4), and a whole
//! message may arrive in the same read as the start of the next, so neither
//! "a message came" nor "bytes came" answers it. Only frame headers are
//! read here; tungstenite still parses and checks everything. [`Metered`]
//! is the session's socket: it feeds every byte read to a [`Framing`], and
//! keeps an idle socket's read buffer small.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::transport::rewind::{self, Rewind};

/// The frame boundaries of one direction of a WebSocket.
#[derive(Debug, Default)]
pub struct Framing {
    /// The current frame's header bytes so far (a header is 2 to 14).
    head: [u8; 14],
    head_len: usize,
    /// Payload bytes of the current frame still to come.
    payload_left: u64,
    /// A data frame without FIN came, and the final frame of its message
    /// has not.
    open_message: bool,
}

impl Framing {
    /// Follows `bytes`, the next bytes read from the client.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while let Some((&first, rest)) = bytes.split_first() {
            if self.payload_left > 0 {
                let n = self.payload_left.min(bytes.len() as u64);
                self.payload_left -= n;
                // n <= bytes.len(), so it fits in usize
                bytes = &bytes[n as usize..];
                continue;
            }
            self.head[self.head_len] = first;
            self.head_len += 1;
            bytes = rest;
            self.end_of_header();
        }
    }

    /// Whether what came so far leaves a message unfinished.
    pub fn unfinished(&self) -> bool {
        self.head_len > 0 || self.payload_left > 0 || self.open_message
    }

    /// Once the header is whole: notes the frame and waits for its payload.
    fn end_of_header(&mut self) {
        if self.head_len < 2 {
            return;
        }
        let head = &self.head;
        let extended = match head[1] & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let mask = if head[1] & 0x80 != 0 { 4 } else { 0 };
        if self.head_len < 2 + extended + mask {
            return;
        }
        let len = match extended {
            2 => u64::from(u16::from_be_bytes([head[2], head[3]])),
            8 => u64::from_be_bytes(head[2..10].try_into().expect("eight bytes")),
            _ => u64::from(head[1] & 0x7f),
        };
        let opcode = head[0] & 0x0f;
        let fin = head[0] & 0x80 != 0;
        // Data frames (text, binary, continuation) have opcodes below 8;
        // control frames never fragment and leave the message as it was.
        if opcode < 8 {
            self.open_message = !fin;
        }
        self.payload_left = len;
        self.head_len = 0;
    }
}

/// Bytes read from the socket at a time, into a buffer on the stack.
const READ_AHEAD: usize = 8 * 1024;

/// The upgraded connection, following the frames read: bytes that leave a
/// message unfinished start the `--body-timeout` clock.
///
/// tungstenite reads a few bytes at a time into its own small buffer (see
/// `session::config`), so an idle socket keeps little (issue 23). On a
/// cleartext connection, taken back from hyper as the bare TCP socket,
/// each of those small reads is served from what one read of the socket
/// brought: whatever tungstenite has no room for is kept in `unread`, an
/// allocation made only then and freed once given out. Over TLS the
/// session reads through hyper's upgraded socket, whose TLS layer buffers
/// already.
pub struct Metered {
    io: Io,
    /// Read from the socket and not yet given to tungstenite.
    unread: Bytes,
    pub framing: Framing,
}

enum Io {
    Tcp(TcpStream),
    Other(TokioIo<Upgraded>),
}

impl Metered {
    pub fn new(upgraded: Upgraded) -> Metered {
        let (io, unread) = match upgraded.downcast::<TokioIo<Rewind<TcpStream>>>() {
            Ok(parts) => {
                let (tcp, pre) = parts.io.into_inner().into_parts();
                // What hyper read past the upgrade request comes first, then
                // what it had not read yet of the bytes it was handed. A
                // copy: hyper's `read_buf` is a view of its whole read
                // buffer (8 KiB), which it would keep alive even empty.
                let unread = [&parts.read_buf[..], &pre[..]].concat();
                let unread = if unread.is_empty() {
                    Bytes::new()
                } else {
                    Bytes::from(unread)
                };
                (Io::Tcp(tcp), unread)
            }
            Err(upgraded) => (Io::Other(TokioIo::new(upgraded)), Bytes::new()),
        };
        Metered {
            io,
            unread,
            framing: Framing::default(),
        }
    }

    fn poll_read_io(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if rewind::give(&mut self.unread, buf) {
            return Poll::Ready(Ok(()));
        }
        let tcp = match &mut self.io {
            Io::Other(io) => return Pin::new(io).poll_read(cx, buf),
            Io::Tcp(tcp) => tcp,
        };
        loop {
            ready!(tcp.poll_read_ready(cx))?;
            let mut chunk = [0u8; READ_AHEAD];
            match tcp.try_read(&mut chunk) {
                Ok(n) => {
                    let given = n.min(buf.remaining());
                    buf.put_slice(&chunk[..given]);
                    if given < n {
                        self.unread = Bytes::copy_from_slice(&chunk[given..n]);
                    }
                    return Poll::Ready(Ok(()));
                }
                // Readiness was stale: wait for the next.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncRead for Metered {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let polled = this.poll_read_io(cx, buf);
        this.framing.feed(&buf.filled()[before..]);
        polled
    }
}

impl AsyncWrite for Metered {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.io {
            Io::Tcp(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Io::Other(io) => Pin::new(io).poll_write(cx, buf),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.io {
            Io::Tcp(tcp) => Pin::new(tcp).poll_flush(cx),
            Io::Other(io) => Pin::new(io).poll_flush(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.io {
            Io::Tcp(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Io::Other(io) => Pin::new(io).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame (the mask key is all zeros).
    fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![first];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n <= 0xffff => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(payload);
        out
    }

    const TEXT_FIN: u8 = 0x81;
    const TEXT_MORE: u8 = 0x01;
    const CONTINUE_FIN: u8 = 0x80;
    const PING: u8 = 0x89;

    #[test]
    fn whole_messages_of_every_length_leave_nothing_unfinished() {
        let mut f = Framing::default();
        for len in [0, 1, 125, 126, 300, 70_000] {
            f.feed(&frame(TEXT_FIN, &vec![b'x'; len]));
            assert!(!f.unfinished(), "{len}");
        }
    }

    #[test]
    fn a_frame_cut_anywhere_is_unfinished_until_its_last_byte() {
        let bytes = frame(TEXT_FIN, &[b'x'; 300]);
        for cut in 1..bytes.len() {
            let mut f = Framing::default();
            f.feed(&bytes[..cut]);
            assert!(f.unfinished(), "cut at {cut}");
            f.feed(&bytes[cut..]);
            assert!(!f.unfinished(), "cut at {cut}");
        }
    }

    #[test]
    fn a_fragmented_message_stays_unfinished_through_pings_until_its_final_frame() {
        let mut f = Framing::default();
        f.feed(&frame(TEXT_MORE, b"{\"a\":"));
        assert!(f.unfinished());
        f.feed(&frame(PING, b""));
        assert!(f.unfinished(), "a ping between fragments finishes nothing");
        f.feed(&frame(CONTINUE_FIN, b"1}"));
        assert!(!f.unfinished());
    }

    #[test]
    fn a_whole_message_then_the_start_of_another_in_one_read_is_unfinished() {
        let mut f = Framing::default();
        let mut bytes = frame(TEXT_FIN, b"{}");
        bytes.extend(frame(TEXT_MORE, b"{"));
        f.feed(&bytes);
        assert!(f.unfinished());
    }
}
