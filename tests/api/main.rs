//! One integration-test binary for the HTTP API (one link step for all).

mod auth;
mod browser;
mod chaos;
mod endpoints;
mod helpers;
mod hostile;
mod memory;
mod publish;
mod replay;
mod shutdown;
mod subscribe;
mod wire;
