//! The one publish path, below every way of publishing: an item checked
//! and encoded once (`batch_item`, `item`: the JSON object `POST
//! /publish` takes in a batch and a WebSocket publish message carries), then
//! handed to the log ([`publish`]), whose refusals become [`ApiError`]s.
//! `routes::publish` (HTTP) and `transport::ws` (publish messages) call it
//! after their own checks, such as auth; with an idempotency key (SPEC §12)
//! they take the key first ([`begin_key`]) and publish with
//! [`publish_keyed`].

use serde_json::Value;

use crate::auth::Access;
use crate::domain::{ChannelName, EventType};
use crate::error::ApiError;
use crate::idempotency::{Begin, Fingerprint, IdempotencyKey};
use crate::log::{Keyed, PublishError, PublishItem, Published};
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
        Err(e) => Err(publish_error(state, e)),
    }
}

fn publish_error(state: &State, e: PublishError) -> ApiError {
    match e {
        PublishError::ChannelLimit => ApiError::ChannelLimit {
            retry_after: state.config.retry,
        },
        PublishError::Unavailable { retry_after, cause } => {
            tracing::warn!(%cause, "publish refused: the event store is unavailable");
            ApiError::BackendUnavailable { retry_after, cause }
        }
    }
}

/// Takes `key` of whoever `access` names in the log's table: a new key
/// (the request's until it publishes or fails) or the answer kept for it;
/// a key in flight is a 409, a full table a 503. `None` when keys are off
/// (`--idempotency-window 0`).
pub fn begin_key<'s>(
    state: &'s State,
    key: &IdempotencyKey<'_>,
    access: &Access,
) -> Result<Option<Begin<'s>>, ApiError> {
    begin_key_of(state, key, &principal(access))
}

/// [`begin_key`] for the principal that [`principal`] spelled.
pub fn begin_key_of<'s>(
    state: &'s State,
    key: &IdempotencyKey<'_>,
    principal: &[&str],
) -> Result<Option<Begin<'s>>, ApiError> {
    let keys = state.log.keys();
    if !keys.enabled() {
        return Ok(None);
    }
    match keys.begin(key, principal) {
        Begin::InProgress => Err(ApiError::IdempotencyInProgress),
        Begin::Full => Err(ApiError::IdempotencyKeysFull {
            retry_after: state.config.retry,
        }),
        begun => Ok(Some(begun)),
    }
}

/// Whose key space a request's key lives in: the JWT's user, or the
/// publish token (and everyone when no auth is configured). A JWT without
/// `sub` has a space of its own, shared by every such token.
pub fn principal(access: &Access) -> [&str; 2] {
    match (access.sub(), access.expires_at()) {
        (Some(sub), _) => ["sub:", sub],
        (None, Some(_)) => ["jwt", ""],
        (None, None) => ["*", ""],
    }
}

/// A publish's answer, and whether it is the kept answer of an earlier
/// request with the same key.
#[derive(Debug)]
pub struct Answer {
    pub published: Vec<Published>,
    pub replayed: bool,
}

/// Publishes `items` under the key `begun` by [`begin_key`] (or none):
/// the kept answer again for the same request (`fingerprint`, computed only
/// then), a 422 for another, otherwise a publish that keeps the key in the
/// same step of the log. A request that publishes nothing frees its key.
pub async fn publish_keyed(
    state: &State,
    items: Vec<PublishItem>,
    begun: Option<Begin<'_>>,
    fingerprint: impl FnOnce() -> Fingerprint,
) -> Result<Answer, ApiError> {
    let mut ticket = match begun {
        None => {
            return Ok(Answer {
                published: publish(state, items).await?,
                replayed: false,
            })
        }
        Some(Begin::Done {
            fingerprint: kept,
            rows,
        }) => {
            if kept != fingerprint() || rows.len() != items.len() {
                return Err(ApiError::IdempotencyKeyReused);
            }
            state.metrics.idempotent_replays.inc();
            let published = items
                .into_iter()
                .zip(rows)
                .map(|(item, row)| Published {
                    id: row.id,
                    channel: item.channel,
                    subscribers: row.subscribers as usize,
                })
                .collect();
            return Ok(Answer {
                published,
                replayed: true,
            });
        }
        Some(Begin::New(ticket)) => ticket,
        Some(Begin::InProgress | Begin::Full) => unreachable!("begin_key answers these"),
    };
    let request = ticket.request(fingerprint());
    let keyed = state.log.publish_keyed(items, request).await;
    // Kept by the log (or not, if nothing was published): either way the
    // key is no longer in flight.
    match keyed.map_err(|e| publish_error(state, e))? {
        Keyed::Published(published) => {
            ticket.kept();
            state
                .metrics
                .events_published
                .inc_by(published.len() as u64);
            Ok(Answer {
                published,
                replayed: false,
            })
        }
        Keyed::Replayed(published) => {
            state.metrics.idempotent_replays.inc();
            Ok(Answer {
                published,
                replayed: true,
            })
        }
        Keyed::Reused => Err(ApiError::IdempotencyKeyReused),
    }
}
