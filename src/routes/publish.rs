//! `POST /publish/{channel}` (the body is the data) and `POST /publish` (a
//! JSON batch, published all or nothing).
//!
//! Everything is validated and encoded before [`publish`] hands the items to
//! the log, so a refused request changes nothing. Every way of publishing
//! (this route, a WebSocket's publish messages) goes through [`publish`]
//! (`src/publish.rs`).

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::request::Parts;
use http::HeaderValue;
use serde_json::Value;

use crate::body::{Body, Response};
use crate::domain::{ChannelName, EventType};
use crate::error::ApiError;
use crate::log::PublishItem;
use crate::publish::{batch_item, item, publish};
use crate::routes::{query_param, read_body, BoxError};
use crate::state::State;

pub async fn one<B>(
    state: &State,
    parts: &Parts,
    body: B,
    channel: &str,
) -> Result<Response, ApiError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let channel = ChannelName::from_path(channel).map_err(ApiError::BadChannel)?;
    let access = state.auth.access(parts).await?;
    access.check_publish(std::slice::from_ref(&channel))?;
    let event = query_param(&parts.uri, "event")
        .map(|t| EventType::parse(&t))
        .transpose()
        .map_err(ApiError::BadEventType)?;
    let limit = state.config.max_event_bytes;
    let body = read_body(
        &parts.headers,
        body,
        limit,
        state.config.body_timeout,
        |limit| ApiError::EventTooLarge { limit },
    )
    .await?;
    let data = std::str::from_utf8(&body).map_err(|_| ApiError::NotUtf8)?;
    let item = item(channel, event.as_ref(), data, limit)?;
    let published = publish(state, vec![item]).await?;
    Ok(json_response(&published[0]))
}

pub async fn batch<B>(state: &State, parts: &Parts, body: B) -> Result<Response, ApiError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let access = state.auth.access(parts).await?;
    access.check_publish(&[])?;
    let body = read_body(
        &parts.headers,
        body,
        state.config.max_batch_bytes,
        state.config.body_timeout,
        |limit| ApiError::BodyTooLarge { limit },
    )
    .await?;
    let items = parse_batch(&body, state.config.max_event_bytes)?;
    let channels: Vec<ChannelName> = items.iter().map(|i| i.channel.clone()).collect();
    access.check_publish(&channels)?;
    let published = publish(state, items).await?;
    Ok(json_response(&published))
}

/// Parses and checks a whole batch; the first bad item refuses it all, with
/// its index.
pub fn parse_batch(body: &[u8], max_event_bytes: usize) -> Result<Vec<PublishItem>, ApiError> {
    let items: Vec<Value> = match serde_json::from_slice(body) {
        Ok(Value::Array(items)) => items,
        Ok(_) => return Err(ApiError::BadJson("expected a JSON array of events".into())),
        Err(e) => return Err(ApiError::BadJson(e.to_string())),
    };
    items
        .iter()
        .enumerate()
        .map(|(index, value)| {
            batch_item(value, max_event_bytes).map_err(|source| ApiError::BadBatchItem {
                index,
                source: Box::new(source),
            })
        })
        .collect()
}

fn json_response<T: serde::Serialize>(value: &T) -> Response {
    let json = serde_json::to_vec(value).expect("publish answers always serialize");
    let mut response = http::Response::new(Body::Full(json.into()));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
