//! `GET /healthz` and `GET /metrics`.

use http::header::CONTENT_TYPE;
use http::HeaderValue;

use crate::app::State;
use crate::body::{Body, Response};

pub fn healthz() -> Response {
    let mut response = http::Response::new(Body::from("ok"));
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
    let (content_type, text) = state.metrics.render();
    let mut response = http::Response::new(Body::Full(text.into()));
    if let Ok(value) = HeaderValue::from_str(&content_type) {
        response.headers_mut().insert(CONTENT_TYPE, value);
    }
    response
}
