//! WebSocket on the event URLs (SPEC §10): the opening handshake, the
//! message format ([`message`]) and the session ([`session`]), the second
//! writer over the subscription core; `framing` follows the client's frame
//! boundaries so an unfinished message is timed however it is disguised.

mod framing;
pub mod message;
pub mod session;

use http::header::{
    CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION, UPGRADE,
};
use http::{HeaderMap, HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use crate::error::ApiError;

/// Whether a request asks for a WebSocket (`Upgrade: websocket`).
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    has_token(headers, &UPGRADE, "websocket")
}

fn has_token(headers: &HeaderMap, name: &http::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Checks the rest of the opening handshake (RFC 6455 §4.2.1) and returns
/// the 101 answer. The channels and the token are the route's business.
/// Generic over the body type (the server's is `body::Body`, empty here),
/// so the transport does not name the response type above it.
pub fn accept<B: Default>(headers: &HeaderMap) -> Result<http::Response<B>, ApiError> {
    if !has_token(headers, &CONNECTION, "upgrade") {
        return Err(ApiError::BadUpgrade("`Connection: Upgrade` is missing"));
    }
    if headers
        .get(SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        return Err(ApiError::BadUpgrade(
            "only WebSocket version 13 is spoken (Sec-WebSocket-Version: 13)",
        ));
    }
    let Some(key) = headers.get(SEC_WEBSOCKET_KEY) else {
        return Err(ApiError::BadUpgrade("`Sec-WebSocket-Key` is missing"));
    };
    let accept = derive_accept_key(key.as_bytes());
    let mut response = http::Response::new(B::default());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(
        SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&accept).expect("base64 is a valid header value"),
    );
    Ok(response)
}
