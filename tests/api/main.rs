//! One integration-test binary for the HTTP API (one link step for all).

mod auth;
mod browser;
mod chaos;
mod cluster;
mod crash;
mod durable;
mod endpoints;
mod h1_streams;
mod helpers;
mod hostile;
mod http2;
mod layers;
mod memory;
mod presence;
mod publish;
mod replay;
mod shutdown;
mod subscribe;
mod tls;
mod tls_client;
mod websocket;
mod websocket_bad_input;
mod wire;
