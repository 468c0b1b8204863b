//! `POST /publish/{channel}` (the body is the data) and `POST /publish` (a
//! JSON batch, published all or nothing).
//!
//! Everything is validated and encoded before [`publish`] hands the items to
//! the log, so a refused request changes nothing. Every way of publishing
//! (this route, a WebSocket's publish messages) goes through `publish`
//! (`src/publish.rs`), or `publish_keyed` for a request with an
//! idempotency key (SPEC §12): the key is taken in the log's table before
//! the body is read (a second request with it meanwhile is a 409), and
//! compared or kept once the request has passed every check.

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::request::Parts;
use http::{HeaderName, HeaderValue};
use serde_json::Value;

use crate::auth::Access;
use crate::body::{Body, Response};
use crate::domain::{ChannelName, EventType};
use crate::error::ApiError;
use crate::idempotency::{self, Begin, Fingerprint, IdempotencyKey};
use crate::log::{PublishItem, Published};
use crate::publish::{batch_item, begin_key, item, publish_keyed, Answer};
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
    Ok(respond(&answer, |published| json_response(&published[0])))
}

pub async fn batch<B>(state: &State, parts: &Parts, body: B) -> Result<Response, ApiError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let access = state.auth.access(parts).await?;
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
    Ok(respond(&answer, |published| json_response(&published)))
}

/// `Idempotency-Key` (SPEC §12).
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// Marks an answer given again for a repeated request.
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// The request's `Idempotency-Key`, checked, and taken in the log's table
/// (`None` without one, or with keys off).
fn begin_header_key<'s>(
    state: &'s State,
    parts: &Parts,
    access: &Access,
) -> Result<Option<Begin<'s>>, ApiError> {
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

/// What makes two HTTP publishes the same request: path, query and body
/// bytes (the method is always POST).
fn http_fingerprint(parts: &Parts, body: &[u8]) -> Fingerprint {
    let query = parts.uri.query().unwrap_or("");
    idempotency::fingerprint(&[b"http", parts.uri.path().as_bytes(), query.as_bytes(), body])
}

/// The answer's response, marked when it is the kept answer of an earlier
/// request with the same key.
fn respond(answer: &Answer, render: impl FnOnce(&[Published]) -> Response) -> Response {
    let mut response = render(&answer.published);
    if answer.replayed {
        response
            .headers_mut()
            .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    }
    response
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
