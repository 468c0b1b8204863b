//! herald: a Server-Sent Events push server.
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
//! - [`server`]: the accept loop, connection limit, hyper builder and
//!   timeouts, graceful shutdown.
//! - [`app`]: the tower service, CORS, and the one `match` on method and
//!   path; refusals while shutting down or over the connection limit.
//! - [`routes`]: one file per endpoint family: `events`, `publish`,
//!   `channels`, `health`, `assets` (the embedded `web/` pages).
//! - [`hub`]: channels, ids, publish and subscribe, under one lock; and
//!   presence (`hub::presence`: who is in each `presence-*` channel, which
//!   joins and leaves to announce; `hub::membership`: a stream's membership
//!   and the one place presence notices are sent).
//! - [`history`]: one channel's ring buffer and the replay/gap rule; pure.
//! - [`stream`]: one subscriber's response body: backlog, live events merged
//!   in id order, heartbeats, catching up after lag, shutdown.
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
pub mod metrics;
pub mod routes;
pub mod server;
pub mod sse;
pub mod stream;

pub use config::{Config, LogFormat};
pub use server::{run, serve};
