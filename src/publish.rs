//! The one publish path, below every way of publishing: an item checked
//! and encoded once (`batch_item`, `item`: the JSON object `POST
//! /publish` takes in a batch and a WebSocket publish message carries), then
//! handed to the log ([`publish`]), whose refusals become [`ApiError`]s.
//! `routes::publish` (HTTP) and `transport::ws` (publish messages) call it
//! after their own checks, such as auth.

use serde_json::Value;

use crate::domain::{ChannelName, EventType};
use crate::error::ApiError;
use crate::log::{PublishError, PublishItem, Published};
use crate::sse::PendingEvent;
use crate::state::State;

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
pub(crate) fn item(
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
