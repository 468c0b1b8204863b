//! The endpoints, one file per family, and the helpers they share for
//! reading request bodies and query strings.

pub mod assets;
pub mod channels;
pub mod disconnect;
pub mod events;
pub mod health;
pub mod presence;
pub mod publish;

use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_LENGTH;
use http::HeaderMap;
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::error::ApiError;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Reads a whole request body of at most `limit` bytes within `timeout`.
///
/// A `Content-Length` over the limit is refused before reading anything; a
/// chunked body is counted as it streams and refused as soon as it passes.
/// `too_large` builds the 413 for the caller's limit.
pub async fn read_body<B>(
    headers: &HeaderMap,
    body: B,
    limit: usize,
    timeout: Duration,
    too_large: fn(usize) -> ApiError,
) -> Result<Bytes, ApiError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let announced = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|len| len > limit as u64) {
        return Err(too_large(limit));
    }
    match tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await {
        Err(_) => Err(ApiError::BodyTimeout(timeout)),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<LengthLimitError>() => Err(too_large(limit)),
        Ok(Err(e)) => Err(ApiError::BodyRead(e.to_string())),
    }
}

/// The last value of query parameter `name`, decoded, if given.
pub fn query_param(uri: &http::Uri, name: &str) -> Option<String> {
    form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .filter(|(k, _)| k == name)
        .last()
        .map(|(_, v)| v.into_owned())
}
