//! herald: a Server-Sent Events (and WebSocket) push server.
//!
//! Publishers `POST` events to named channels; subscribers hold an
//! `text/event-stream` open and receive them; a subscriber that comes back
//! with `Last-Event-ID` gets what it missed, or a `herald.gap` notice saying
//! it cannot. `../shared/SPEC.md` is the contract; `docs/` holds the user
//! documentation and the decisions taken where the SPEC is silent.
//!
//! # Layout
//!
//! The layers, from the top. Each names only the layers below it: never
//! one above it, never one beside it on the same line. Inside a layer there
//! is no import circle either, between files or between folders, with one
//! allowance: a file may name its ancestor modules (`super::Hub` in
//! `hub/apply.rs`), whose `mod.rs` declares it. `tests/api/layers/` checks
//! all of this over the source, and that this list names every module of
//! the crate, once.
//!
//! - [`server`]: the accept loop, connection limit, graceful shutdown,
//!   SIGHUP forwarded to [`reload`]; `server::connection` serves one
//!   connection (TLS with ALPN or cleartext, hyper's HTTP/1.1 or HTTP/2),
//!   `server::h1` reads a cleartext HTTP/1.1 connection's plain `GET`s
//!   itself and writes their answers (event streams) outside hyper,
//!   `server::tls` holds the certificate pair, `server::acme` gets and
//!   renews one from an ACME CA.
//! - [`app`]: the tower service, CORS, and the one `match` on method and
//!   path; refusals while shutting down or over the connection limit.
//! - [`routes`]: one file per endpoint family: `events`, `publish`,
//!   `channels`, `presence`, `health`, `assets` (the embedded `web/` pages),
//!   `disconnect` (end streams, revoke tokens).
//! - [`body`]: the response body enum: a whole body, or an event stream.
//! - [`transport`]: the subscription core (backlog, live events merged in
//!   id order, heartbeats, catching up after lag, shutdown) and its two thin
//!   writers: the SSE response body and the WebSocket session.
//! - [`publish`]: the one publish path under every route and transport: an
//!   item checked and encoded once, handed to the log.
//! - [`state`]: [`State`], everything a request may need, built once from
//!   the flags.
//! - [`error`]: the HTTP error type; each case knows its status and JSON.
//! - [`log`]: where a published event gets its id and becomes durable or
//!   shared, then is handed to the hub in id order; the contract every
//!   backend keeps. `log::memory` (the default), `log::disk` (`--data-dir`:
//!   segments, group commit, recovery, compaction), `log::redis` (`--redis`:
//!   many nodes, one service, presence included: `log/redis/presence.rs`).
//! - [`auth`]: access control: keys, claims, grants, where the token comes
//!   from, the typed `Access` a route gets; `auth::mint` is `herald token`.
//! - [`config`]: every flag (clap, with its env variable), `herald token`'s
//!   included, and the settings each part below takes from them.
//! - [`hub`]: channels, live fan-out and subscribe, under one lock; events
//!   enter it only through [`hub::Hub::applier`], or, on a node following
//!   Redis's log, [`hub::Hub::apply`] (`hub/follow.rs`). And presence
//!   (`hub::presence`: who is in each `presence-*` channel, which joins and
//!   leaves to announce; `hub::membership`: a stream's membership and the one
//!   place presence notices are sent).
//! - [`sse`]: the wire format, and nothing else.
//! - [`history`]: one channel's ring buffer and the replay/gap rule; pure.
//! - [`metrics`]: the Prometheus counters and gauges.
//! - [`reload`]: the SIGHUP fan-out ("reread your files").
//! - [`idempotency`]: the rules of an `Idempotency-Key`, the table of
//!   kept answers every log holds, and a key's bytes on disk.
//! - [`revocation`]: `POST /disconnect`'s order and the revocations in
//!   force: what auth checks every JWT against, what the hub ends streams
//!   by, what the log records.
//! - [`domain`]: the parsed input types (channel names, event ids, ...).

pub mod app;
pub mod auth;
pub mod body;
pub mod config;
pub mod domain;
pub mod error;
pub mod history;
pub mod hub;
pub mod idempotency;
pub mod log;
pub mod metrics;
pub mod publish;
pub mod reload;
pub mod revocation;
pub mod routes;
pub mod server;
pub mod sse;
pub mod state;
pub mod transport;

pub use config::{Config, Fsync, LogFormat};
pub use server::{run, serve};
pub use state::State;
