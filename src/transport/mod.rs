//! How events leave the server: the subscription core shared by every
//! transport, and the writers that put it on the wire.
//!
//! - [`sse`]: the event stream body (`text/event-stream`).

pub mod sse;
