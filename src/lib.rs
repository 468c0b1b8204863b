//! herald: a Server-Sent Events (and WebSocket) push server.
//!
//! Publishers `POST` events to named channels; subscribers hold an
//! `text/event-stream` open and receive them; a subscriber that comes back
//! with `Last-Event-ID` gets what it missed, or a `herald.gap` notice saying
//! it cannot. `../shared/SPEC.md` (mirrored in README.md) is the contract.
//!
//! # Layout
//!
//! Read top to bottom; each layer uses only the ones below it.
//!
//! - [`server`]: the accept loop, connection limit, graceful shutdown;
//!   `server::connection` serves one connection (TLS with ALPN or cleartext,
//!   hyper's HTTP/1.1 or HTTP/2), `server::tls` holds the certificate pair,
//!   `server::acme` gets and renews one from an ACME CA, `server::reload`
//!   is where SIGHUP lands.
//! - [`app`]: the tower service, CORS, and the one `match` on method and
//!   path; refusals while shutting down or over the connection limit.
//! - [`routes`]: one file per endpoint family: `events`, `publish`,
//!   `channels`, `health`, `assets` (the embedded `web/` pages).
//! - [`log`]: where a published event gets its id and becomes durable or
//!   shared, then is handed to the hub in id order; the contract every
//!   backend keeps. `log::memory` (the default), `log::disk` (`--data-dir`:
//!   segments, group commit, recovery, compaction), `log::redis` (`--redis`:
//!   many nodes, one service, presence included: `log/redis/presence.rs`).
//! - [`hub`]: channels, live fan-out and subscribe, under one lock; events
//!   enter it only through [`hub::Hub::applier`], or, on a node following
//!   Redis's log, [`hub::Hub::apply`] (`hub/follow.rs`). And presence
//!   (`hub::presence`: who is in each `presence-*` channel, which joins and
//!   leaves to announce; `hub::membership`: a stream's membership and the one
//!   place presence notices are sent).
//! - [`history`]: one channel's ring buffer and the replay/gap rule; pure.
//! - [`transport`]: the subscription core (backlog, live events merged in
//!   id order, heartbeats, catching up after lag, shutdown) and its two thin
//!   writers: the SSE response body and the WebSocket session.
//! - [`sse`]: the wire format, and nothing else.
//!
//! Beside them: [`config`] (flags), [`domain`] (parsed input types),
//! [`error`] (the HTTP error type), [`metrics`], [`body`] (the response body
//! enum).

pub mod app;
pub mod auth;
pub mod body;
pub mod config;
pub mod domain;
pub mod error;
pub mod history;
pub mod hub;
pub mod log;
pub mod metrics;
pub mod routes;
pub mod server;
pub mod sse;
pub mod transport;

pub use app::State;
pub use config::{Config, Fsync, LogFormat};
pub use server::{run, serve};
