//! How events leave the server: the subscription core shared by every
//! transport, and the writers that put it on the wire.
//!
//! - [`core`]: what one subscriber is owed, in order: backlog, live events
//!   merged across channels in id order, catch-up after lag, heartbeats.
//! - [`sse`]: the event stream body (`text/event-stream`), a thin writer
//!   over the core.
//! - [`ws`]: the WebSocket session on the same URLs, the second thin writer
//!   over the core, which also reads the client's publishes.
//! - [`rewind`]: a socket that gives back bytes already read from it, for
//!   the hand-overs between herald's HTTP/1.1 reader, hyper and a
//!   WebSocket.

pub mod core;
pub mod rewind;
pub mod sse;
pub mod ws;
