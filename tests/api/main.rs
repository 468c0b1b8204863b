//! One integration-test binary for the HTTP API (one link step for all).

mod browser;
mod chaos;
mod endpoints;
mod helpers;
mod hostile;
mod memory;
mod presence;
mod publish;
mod replay;
mod shutdown;
mod subscribe;
mod wire;
