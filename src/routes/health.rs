//! `GET /healthz` and `GET /metrics`.

use http::header::CONTENT_TYPE;
use http::HeaderValue;

use crate::body::{Body, Response};
use crate::state::State;

/// 200 `ok`; with `--redis`, 503 while Redis is unreachable, so a load
/// balancer routes new clients to another node.
pub fn healthz(state: &State) -> Response {
    let up = state.log.is_up();
    let mut response = http::Response::new(Body::from(if up { "ok" } else { "redis unreachable" }));
    if !up {
        *response.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
    }
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

pub fn metrics(state: &State) -> Response {
    state.metrics.channels.set(state.hub.channel_count() as i64);
    let (members, _leaving) = state.hub.presence_size();
    state.metrics.presence_members.set(members as i64);
    let revocations = state.hub.revocations().active();
    state.metrics.revocations_active.set(revocations as i64);
    state
        .metrics
        .backend_state(state.log.backend(), state.log.is_up());
    let (content_type, text) = state.metrics.render();
    let mut response = http::Response::new(Body::Full(text.into()));
    if let Ok(value) = HeaderValue::from_str(&content_type) {
        response.headers_mut().insert(CONTENT_TYPE, value);
    }
    response
}
