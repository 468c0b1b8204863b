//! `POST /publish/{channel}` (the body is the data) and `POST /publish` (a
//! JSON batch, published all or nothing).
//!
//! Everything is validated and encoded before [`publish`] hands the items to
//! the log, so a refused request changes nothing. Every way of publishing
//! (this route, and later others) goes through [`publish`].

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::request::Parts;
use http::HeaderValue;
use serde_json::Value;

use crate::app::State;
use crate::body::{Body, Response};
use crate::domain::{ChannelName, EventType};
use crate::error::ApiError;
use crate::log::{PublishError, PublishItem, Published};
use crate::routes::{query_param, read_body, BoxError};
use crate::sse::PendingEvent;

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
    let access = state.auth.access(parts)?;
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
    let access = state.auth.access(parts)?;
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

/// One element of a batch: `{"channel": "...", "data": <any JSON>,
/// "event": "<type>"?}`. Unknown fields are refused, so a typo does not
/// silently publish the wrong thing.
pub(crate) fn batch_item(value: &Value, max_event_bytes: usize) -> Result<PublishItem, ApiError> {
    let Value::Object(fields) = value else {
        return Err(ApiError::BadJson("each event is a JSON object".into()));
    };
    if let Some(unknown) = fields
        .keys()
        .find(|k| !matches!(k.as_str(), "channel" | "data" | "event"))
    {
        return Err(ApiError::BadJson(format!(
            "unknown field `{unknown}`: expected channel, data and optional event"
        )));
    }
    let channel = match fields.get("channel") {
        Some(Value::String(name)) => ChannelName::parse(name).map_err(ApiError::BadChannel)?,
        _ => {
            return Err(ApiError::BadJson(
                "`channel` is required and is a string".into(),
            ))
        }
    };
    let event = match fields.get("event") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) => Some(EventType::parse(t).map_err(ApiError::BadEventType)?),
        Some(_) => return Err(ApiError::BadJson("`event` is a string".into())),
    };
    let compact;
    let data = match fields.get("data") {
        Some(Value::String(s)) => s.as_str(),
        Some(other) => {
            compact = other.to_string();
            compact.as_str()
        }
        None => return Err(ApiError::BadJson("`data` is required".into())),
    };
    item(channel, event.as_ref(), data, max_event_bytes)
}

/// Checks the data and encodes it.
fn item(
    channel: ChannelName,
    event: Option<&EventType>,
    data: &str,
    limit: usize,
) -> Result<PublishItem, ApiError> {
    if data.is_empty() {
        return Err(ApiError::EmptyData);
    }
    if data.len() > limit {
        return Err(ApiError::EventTooLarge { limit });
    }
    Ok(PublishItem {
        channel,
        event: PendingEvent::encode(event, data),
        data_len: data.len(),
    })
}

/// Publishes validated items as one batch through the log and returns the
/// answers in request order: the one publish path every route and
/// transport calls (after its own checks, such as auth).
pub async fn publish(state: &State, items: Vec<PublishItem>) -> Result<Vec<Published>, ApiError> {
    match state.log.publish(items).await {
        Ok(published) => {
            state
                .metrics
                .events_published
                .inc_by(published.len() as u64);
            Ok(published)
        }
        Err(PublishError::ChannelLimit) => Err(ApiError::ChannelLimit {
            retry_after: state.config.retry,
        }),
        Err(PublishError::Unavailable { retry_after, cause }) => {
            tracing::warn!(%cause, "publish refused: the event store is unavailable");
            Err(ApiError::BackendUnavailable { retry_after, cause })
        }
    }
}

fn json_response<T: serde::Serialize>(value: &T) -> Response {
    let json = serde_json::to_vec(value).expect("publish answers always serialize");
    let mut response = http::Response::new(Body::Full(json.into()));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
