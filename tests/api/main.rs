//! One integration-test binary for the HTTP API (one link step for all).

mod browser;
mod helpers;
