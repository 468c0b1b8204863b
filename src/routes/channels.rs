//! `GET /channels`: every channel with its subscribers, retained events and
//! last id. It lists private names, so with a key configured it needs the
//! publish token.

use http::header::CONTENT_TYPE;
use http::request::Parts;
use http::HeaderValue;

use crate::app::State;
use crate::body::{Body, Response};
use crate::error::ApiError;

pub fn list(state: &State, req: &Parts) -> Result<Response, ApiError> {
    state.auth.access(req)?.check_admin()?;
    let rows = state.hub.channels();
    let json = serde_json::to_vec(&rows).expect("channel rows always serialize");
    let mut response = http::Response::new(Body::Full(json.into()));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}
