//! The response body type every route returns: a whole body, or an event
//! stream. An enum rather than a boxed trait object, so a response costs no
//! allocation beyond its own content.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};

use crate::transport::sse::EventStream;

pub type Response = http::Response<Body>;

#[derive(Default)]
pub enum Body {
    /// A complete body (taken when written), or none.
    #[default]
    Empty,
    Full(Bytes),
    Events(Box<EventStream>),
}

impl From<Bytes> for Body {
    fn from(bytes: Bytes) -> Body {
        Body::Full(bytes)
    }
}

impl From<String> for Body {
    fn from(s: String) -> Body {
        Body::Full(Bytes::from(s))
    }
}

impl From<&'static str> for Body {
    fn from(s: &'static str) -> Body {
        Body::Full(Bytes::from_static(s.as_bytes()))
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        match this {
            Body::Empty => Poll::Ready(None),
            Body::Full(_) => match std::mem::take(this) {
                Body::Full(bytes) => Poll::Ready(Some(Ok(Frame::data(bytes)))),
                _ => unreachable!("matched Full above"),
            },
            Body::Events(stream) => Pin::new(stream.as_mut()).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Empty => true,
            Body::Full(_) => false,
            Body::Events(stream) => stream.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Empty => SizeHint::with_exact(0),
            Body::Full(bytes) => SizeHint::with_exact(bytes.len() as u64),
            Body::Events(_) => SizeHint::default(),
        }
    }
}
