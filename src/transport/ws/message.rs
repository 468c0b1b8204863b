//! The WebSocket message format (SPEC §10), and nothing else: events and
//! notices going out, publish messages coming in, and their answers.
//!
//! Out: `{"id":"…","channel":"…","event":"…","data":"…"}` per event (`event`
//! omitted for `message`, `id` omitted on `herald.*` notices); `data` is the
//! string an EventSource would hand the page for the same event, so a client
//! can switch transports without changing anything else.
//!
//! In: `{"type":"publish","channel":"…","event":"…","data":…}`, checked like
//! one item of `POST /publish`, answered `{"type":"published",…}` or
//! `{"type":"error","error":"…","message":"…"}`. It may carry
//! `"idempotency_key":"…"` (SPEC §12); the answer given again for a repeated
//! message has `"replayed":true`.

use serde::Serialize;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::domain::ChannelName;
use crate::error::ApiError;
use crate::history::{Event, Notice};
use crate::idempotency::{self, Fingerprint, IdempotencyKey};
use crate::log::{PublishItem, Published};
use crate::publish::batch_item;
use crate::sse;

#[derive(Serialize)]
struct Out<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    channel: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<&'a str>,
    data: &'a str,
}

/// The text message of `event` of `channel`: encoded by the first
/// WebSocket that writes it, then a clone of the same bytes for every other.
/// A presence notice on the live queue (`herald.join`, `herald.leave`) has
/// no `id`, like every `herald.*` notice.
pub fn event(event: &Event, channel: &ChannelName) -> Utf8Bytes {
    event
        .ws
        .get_or_init(|| {
            let (ty, data) = sse::frame_fields(&event.frame);
            let id = (!event.is_notice()).then(|| event.id.to_string());
            encode(&Out {
                id: id.as_deref(),
                channel: channel.as_str(),
                event: ty,
                data: &data,
            })
        })
        .clone()
}

/// A `herald.*` notice: no `id`; `data` is the notice's JSON as a string,
/// the same text an EventSource client gets.
pub fn notice(notice: &Notice) -> Utf8Bytes {
    encode(&Out {
        id: None,
        channel: notice.channel.as_str(),
        event: Some(notice.event),
        data: &notice.data,
    })
}

/// The last message of a socket whose token reached its `exp`: no `id`;
/// `data` is the same JSON text an event stream carries. It ends the whole
/// socket, but keeps the shape of every message: `channel` is the socket's
/// first channel (the path's, or the first `channel=` of the query).
pub fn expired(exp: u64, channel: &ChannelName) -> Utf8Bytes {
    let data = format!("{{\"reason\":\"token_expired\",\"exp\":{exp}}}");
    encode(&Out {
        id: None,
        channel: channel.as_str(),
        event: Some("herald.expired"),
        data: &data,
    })
}

/// The last message of a socket a disconnect ended (SPEC §11): no `id`,
/// `data` as on an event stream; `channel` as for [`expired`].
pub fn disconnected(reason: &str, channel: &ChannelName) -> Utf8Bytes {
    let data = format!("{{\"reason\":\"{reason}\"}}");
    encode(&Out {
        id: None,
        channel: channel.as_str(),
        event: Some("herald.disconnected"),
        data: &data,
    })
}

/// The answer to a publish message: `POST /publish`'s JSON with a `type`,
/// and `"replayed":true` when it is the kept answer of an earlier message
/// with the same idempotency key.
pub fn published(published: &Published, replayed: bool) -> Utf8Bytes {
    #[derive(Serialize)]
    struct Answer<'a> {
        r#type: &'static str,
        #[serde(flatten)]
        published: &'a Published,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        replayed: bool,
    }
    encode(&Answer {
        r#type: "published",
        published,
        replayed,
    })
}

/// What makes two publish messages the same request: the channel, the
/// event type and the data as published (so the order of the fields, the
/// spacing and the escaping of the JSON do not matter, and a non-string
/// `data` counts by its compact JSON). Never the same as an HTTP publish's.
pub fn fingerprint(item: &PublishItem) -> Fingerprint {
    idempotency::fingerprint(&[b"ws", item.channel.as_str().as_bytes(), item.event.fields()])
}

/// An error answer: what `POST /publish` would answer, as a message
/// (`channels` included for a publish the token does not cover).
pub fn error(error: &ApiError) -> Utf8Bytes {
    let mut body = serde_json::Map::new();
    body.insert("type".into(), "error".into());
    body.extend(error.body());
    // `POST /publish`'s words for it are about a request body.
    if let ApiError::EmptyData = error {
        body.insert(
            "message".into(),
            "`data` is empty: an event needs data (EventSource never dispatches an empty one)"
                .into(),
        );
    }
    encode(&body)
}

pub fn error_text(code: &str, message: &str) -> Utf8Bytes {
    encode(&serde_json::json!({
        "type": "error",
        "error": code,
        "message": message,
    }))
}

fn encode<T: Serialize>(value: &T) -> Utf8Bytes {
    serde_json::to_string(value)
        .expect("these messages always serialize")
        .into()
}

/// Why a client message was refused without publishing anything; the
/// `reason` label of `herald_ws_rejected_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Text that is not JSON.
    NotJson,
    /// JSON, but not `{"type":"publish",…}`.
    BadMessage,
    /// A publish message that `POST /publish` would refuse too.
    BadPublish,
}

/// Parses a client text message into an event ready for the log, and its
/// idempotency key if it has one.
pub fn parse_publish(
    text: &str,
    max_event_bytes: usize,
) -> Result<(PublishItem, Option<IdempotencyKey<'static>>), (Refused, ApiError)> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        (
            Refused::NotJson,
            ApiError::BadMessage(format!("a message is one JSON object: {e}")),
        )
    })?;
    let Value::Object(mut fields) = value else {
        return Err(bad_message("a message is one JSON object"));
    };
    match fields.remove("type") {
        Some(Value::String(t)) if t == "publish" => {}
        Some(Value::String(t)) => {
            return Err(bad_message(&format!(
                "unknown message type `{t}`: the only type a client sends is `publish`"
            )))
        }
        _ => return Err(bad_message("`type` is required: {\"type\":\"publish\",…}")),
    }
    let key = match fields.remove("idempotency_key") {
        None => None,
        Some(Value::String(key)) => Some(
            IdempotencyKey::parse(key.as_bytes())
                .map(IdempotencyKey::into_owned)
                .map_err(|e| {
                    (
                        Refused::BadPublish,
                        ApiError::BadIdempotencyKey(
                            e.to_string().replace("Idempotency-Key", "idempotency_key"),
                        ),
                    )
                })?,
        ),
        Some(_) => {
            return Err((
                Refused::BadPublish,
                ApiError::BadIdempotencyKey(
                    "`idempotency_key` is a string of 1 to 255 visible ASCII characters".into(),
                ),
            ))
        }
    };
    let item = batch_item(&Value::Object(fields), max_event_bytes).map_err(|e| {
        // `POST /publish`'s checks, without its words about a batch body.
        let e = match e {
            ApiError::BadJson(why) => ApiError::BadMessage(format!("a publish message: {why}")),
            e => e,
        };
        (Refused::BadPublish, e)
    })?;
    Ok((item, key))
}

fn bad_message(why: &str) -> (Refused, ApiError) {
    (
        Refused::BadMessage,
        ApiError::BadMessage(format!(
            "{why}; expected {{\"type\":\"publish\",\"channel\":\"…\",\"event\":\"…\",\"data\":…}}"
        )),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{EventId, EventType};
    use crate::history::GapReason;
    use crate::sse::PendingEvent;

    fn ev(ty: Option<&str>, data: &str, id: u64) -> Event {
        let ty = ty.map(|t| EventType::parse(t).unwrap());
        let frame = PendingEvent::encode(ty.as_ref(), data).finish(EventId::new(id));
        Event::new(EventId::new(id), frame, data.len())
    }

    fn ch(name: &str) -> ChannelName {
        ChannelName::parse(name).unwrap()
    }

    #[test]
    fn an_event_is_one_json_object_and_message_type_is_omitted() {
        assert_eq!(
            event(&ev(None, "hi \"you\"\n", 7), &ch("room")).as_str(),
            r#"{"id":"7","channel":"room","data":"hi \"you\"\n"}"#
        );
        assert_eq!(
            event(&ev(Some("chat"), "x", 8), &ch("room")).as_str(),
            r#"{"id":"8","channel":"room","event":"chat","data":"x"}"#
        );
    }

    #[test]
    fn an_event_is_encoded_once_and_shared() {
        let e = ev(None, "x", 1);
        let copy = e.clone();
        let a = event(&e, &ch("a"));
        let b = event(&copy, &ch("a"));
        assert_eq!(
            a.as_ptr(),
            b.as_ptr(),
            "the same bytes, not a second encoding"
        );
    }

    #[test]
    fn a_notice_has_no_id_and_its_data_is_the_json_text() {
        let n = Notice::gap(&ch("a"), GapReason::History, Some(EventId::new(5)));
        assert_eq!(
            notice(&n).as_str(),
            r#"{"channel":"a","event":"herald.gap","data":"{\"channel\":\"a\",\"last_event_id\":\"5\",\"reason\":\"history\"}"}"#
        );
    }

    #[test]
    fn expiry_has_the_shape_of_every_message_without_an_id() {
        assert_eq!(
            expired(1767225600, &ch("room")).as_str(),
            r#"{"channel":"room","event":"herald.expired","data":"{\"reason\":\"token_expired\",\"exp\":1767225600}"}"#
        );
    }

    #[test]
    fn publish_messages_are_checked_like_a_batch_item() {
        let (item, key) = parse_publish(
            r#"{"type":"publish","channel":"a","event":"chat","data":{"x":1}}"#,
            100,
        )
        .unwrap();
        assert_eq!(key, None);
        assert_eq!(item.channel.as_str(), "a");
        assert_eq!(item.data_len, r#"{"x":1}"#.len());
        let refused = |text: &str| parse_publish(text, 5).unwrap_err();
        assert_eq!(refused("nope").0, Refused::NotJson);
        assert_eq!(refused("[1]").0, Refused::BadMessage);
        assert_eq!(
            refused(r#"{"channel":"a","data":"x"}"#).0,
            Refused::BadMessage
        );
        assert_eq!(
            refused(r#"{"type":"sub","channel":"a"}"#).0,
            Refused::BadMessage
        );
        let (why, e) = refused(r#"{"type":"publish","channel":"a b","data":"x"}"#);
        assert_eq!((why, e.code()), (Refused::BadPublish, "bad_channel"));
        let (_, e) = refused(r#"{"type":"publish","channel":"a","data":"toolong"}"#);
        assert_eq!(e.code(), "event_too_large");
        let (_, e) = refused(r#"{"type":"publish","channel":"a","data":"x","extra":1}"#);
        assert_eq!(e.code(), "bad_json");
        for bad in [r#""""#, "1", r#""a b""#, r#""\u0001""#, r#""é""#] {
            let text =
                format!(r#"{{"type":"publish","channel":"a","data":"x","idempotency_key":{bad}}}"#);
            let (why, e) = refused(&text);
            assert_eq!(
                (why, e.code()),
                (Refused::BadPublish, "bad_idempotency_key"),
                "{bad}"
            );
        }
    }

    #[test]
    fn equal_publish_messages_have_one_fingerprint_whatever_their_json_spelling() {
        let fp = |text: &str| fingerprint(&parse_publish(text, 100).unwrap().0);
        let a = fp(r#"{"type":"publish","channel":"a","data":{"x":1},"idempotency_key":"k"}"#);
        let b =
            fp(r#"{ "idempotency_key":"k", "data":{ "x" : 1 }, "channel":"a", "type":"publish" }"#);
        assert_eq!(a, b);
        assert_ne!(a, fp(r#"{"type":"publish","channel":"a","data":{"x":2}}"#));
        assert_ne!(a, fp(r#"{"type":"publish","channel":"b","data":{"x":1}}"#));
        assert_ne!(
            a,
            fp(r#"{"type":"publish","channel":"a","event":"e","data":{"x":1}}"#)
        );
    }
}
