//! A socket that gives back bytes already read from it before reading on:
//! how `server::h1` hands a connection to hyper after reading its first
//! request head itself, and how a WebSocket session takes the socket back
//! from hyper after the upgrade (`ws::framing`), with what hyper had read.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A socket that yields `pre` before reading on: hands a connection to
/// hyper with the bytes already read from it.
pub struct Rewind<T> {
    pre: Bytes,
    inner: T,
}

impl<T> Rewind<T> {
    pub fn new(inner: T, pre: Vec<u8>) -> Rewind<T> {
        Rewind {
            pre: Bytes::from(pre),
            inner,
        }
    }

    /// The socket, and the bytes read from it that it has not given yet.
    pub fn into_parts(self) -> (T, Bytes) {
        (self.inner, self.pre)
    }
}

/// Moves what fits of `pre` into `buf`; false when `pre` is empty. The
/// allocation behind `pre` is freed as soon as it is all given, not with
/// the socket.
pub fn give(pre: &mut Bytes, buf: &mut ReadBuf<'_>) -> bool {
    if pre.is_empty() {
        return false;
    }
    let n = pre.len().min(buf.remaining());
    buf.put_slice(&pre[..n]);
    pre.advance(n);
    if pre.is_empty() {
        *pre = Bytes::new();
    }
    true
}

impl<T: AsyncRead + Unpin> AsyncRead for Rewind<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if give(&mut this.pre, buf) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Rewind<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
