//! `GET /channels`: every channel with its subscribers, retained events and
//! last id.

use http::header::CONTENT_TYPE;
use http::HeaderValue;

use crate::app::State;
use crate::body::{Body, Response};

pub fn list(state: &State) -> Response {
    let rows = state.hub.channels();
    let json = serde_json::to_vec(&rows).expect("channel rows always serialize");
    let mut response = http::Response::new(Body::Full(json.into()));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
