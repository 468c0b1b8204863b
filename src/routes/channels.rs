//! `GET /channels`: every channel with its subscribers, retained events and
//! last id. It lists private names, so with a key configured it needs the
//! publish token.

use http::header::CONTENT_TYPE;
use http::request::Parts;
use http::HeaderValue;

use crate::body::{Body, Response};
use crate::error::ApiError;
use crate::log::PublishError;
use crate::state::State;

/// With `--redis`, every channel of the service (see
/// [`crate::log::redis::RedisLog::channels`] for how current the counts are).
pub async fn list(state: &State, req: &Parts) -> Result<Response, ApiError> {
    state.auth.access(req).await?.check_admin()?;
    let rows = state.log.channels(&state.hub).await.map_err(|e| match e {
        PublishError::Unavailable { retry_after, cause } => {
            ApiError::BackendUnavailable { retry_after, cause }
        }
        PublishError::ChannelLimit => ApiError::ChannelLimit {
            retry_after: state.config.retry,
        },
    })?;
    let json = serde_json::to_vec(&rows).expect("channel rows always serialize");
    let mut response = http::Response::new(Body::Full(json.into()));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}
