//! `POST /publish/{channel}` (the body is the data) and `POST /publish` (a
//! JSON batch, published all or nothing).
//!
//! Everything is validated and encoded before [`publish`] hands the items to
//! the log, so a refused request changes nothing. Every way of publishing
//! (this route, and later others) goes through [`publish`], or
//! [`publish_keyed`] for a request with an idempotency key (SPEC §12): the
//! key is taken in the log's table before the body is read (a second
//! request with it meanwhile is a 409), and compared or kept once the
//! request has passed every check.

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::request::Parts;
use http::{HeaderName, HeaderValue};
use serde_json::Value;

use crate::app::State;
use crate::auth::Access;
use crate::body::{Body, Response};
use crate::domain::{ChannelName, EventType};
use crate::error::ApiError;
use crate::log::idempotency::{self, Begin, Fingerprint, IdempotencyKey};
use crate::log::{Keyed, PublishError, PublishItem, Published};
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
    let channel = ChannelName::parse(channel).map_err(ApiError::BadChannel)?;
    let access = state.auth.access(parts)?;
    access.check_publish(std::slice::from_ref(&channel))?;
    let event = query_param(&parts.uri, "event")
        .map(|t| EventType::parse(&t))
        .transpose()
        .map_err(ApiError::BadEventType)?;
    let key = begin_header_key(state, parts, &access)?;
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
    let answer = publish_keyed(state, vec![item], key, || http_fingerprint(parts, &body)).await?;
    Ok(answer.respond(|published| json_response(&published[0])))
}

pub async fn batch<B>(state: &State, parts: &Parts, body: B) -> Result<Response, ApiError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let access = state.auth.access(parts)?;
    access.check_publish(&[])?;
    let key = begin_header_key(state, parts, &access)?;
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
    let answer = publish_keyed(state, items, key, || http_fingerprint(parts, &body)).await?;
    Ok(answer.respond(|published| json_response(&published)))
}

/// `Idempotency-Key` (SPEC §12).
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// Marks an answer given again for a repeated request.
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// The request's `Idempotency-Key`, checked, and taken in the log's table
/// (`None` without one, or with keys off).
fn begin_header_key(
    state: &State,
    parts: &Parts,
    access: &Access,
) -> Result<Option<Begin>, ApiError> {
    let mut values = parts.headers.get_all(IDEMPOTENCY_KEY).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ApiError::BadIdempotencyKey(
            "send one Idempotency-Key header, not several".into(),
        ));
    }
    let key = IdempotencyKey::parse(value.as_bytes())
        .map_err(|e| ApiError::BadIdempotencyKey(e.to_string()))?;
    begin_key(state, &key, access)
}

/// Takes `key` of whoever `access` names in the log's table: a new key
/// (the request's until it publishes or fails) or the answer kept for it;
/// a key in flight is a 409, a full table a 503. `None` when keys are off
/// (`--idempotency-window 0`).
pub fn begin_key(
    state: &State,
    key: &IdempotencyKey,
    access: &Access,
) -> Result<Option<Begin>, ApiError> {
    let keys = state.log.keys();
    if !keys.enabled() {
        return Ok(None);
    }
    match keys.begin(key.scoped(&principal(access))) {
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
fn principal(access: &Access) -> [&str; 2] {
    match (access.sub(), access.expires_at()) {
        (Some(sub), _) => ["sub:", sub],
        (None, Some(_)) => ["jwt", ""],
        (None, None) => ["*", ""],
    }
}

/// What makes two HTTP publishes the same request: path, query and body
/// bytes (the method is always POST).
fn http_fingerprint(parts: &Parts, body: &[u8]) -> Fingerprint {
    let query = parts.uri.query().unwrap_or("");
    idempotency::fingerprint(&[b"http", parts.uri.path().as_bytes(), query.as_bytes(), body])
}

/// A publish's answer, and whether it is the kept answer of an earlier
/// request with the same key.
#[derive(Debug)]
pub struct Answer {
    pub published: Vec<Published>,
    pub replayed: bool,
}

impl Answer {
    fn respond(&self, render: impl FnOnce(&[Published]) -> Response) -> Response {
        let mut response = render(&self.published);
        if self.replayed {
            response
                .headers_mut()
                .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
        }
        response
    }
}

/// Publishes `items` under the key `begun` by [`begin_key`] (or none):
/// the kept answer again for the same request (`fingerprint`, computed only
/// then), a 422 for another, otherwise a publish that keeps the key in the
/// same step of the log. A request that publishes nothing frees its key.
pub async fn publish_keyed(
    state: &State,
    items: Vec<PublishItem>,
    begun: Option<Begin>,
    fingerprint: impl FnOnce() -> Fingerprint,
) -> Result<Answer, ApiError> {
    let ticket = match begun {
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
    let keyed = state.log.publish_keyed(items, &request).await;
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

fn json_response<T: serde::Serialize>(value: &T) -> Response {
    let json = serde_json::to_vec(value).expect("publish answers always serialize");
    let mut response = http::Response::new(Body::Full(json.into()));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
