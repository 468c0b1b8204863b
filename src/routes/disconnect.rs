//! `POST /disconnect` (SPEC §11): end the streams of a user, a channel, a
//! user on a channel, or one token, on every node, and optionally revoke
//! the tokens for a while. Needs the publish token: a JWT, whatever its
//! grants, is 403 like on `GET /channels`.
//!
//! ```json
//! {"sub":"42"}  {"channel":"news"}  {"sub":"42","channel":"news"}
//! {"jti":"b1f7…"}  {"sub":"42","revoke":"30m"}  {"jti":"b1f7…","revoke":"1h"}
//! ```
//!
//! The body is checked whole before anything happens: a refused request
//! ends nothing and revokes nothing.

use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::request::Parts;
use http::HeaderValue;
use serde::Deserialize;

use crate::auth::claims::MAX_SUB_CHARS;
use crate::auth::Denied;
use crate::body::{Body, Response};
use crate::domain::ChannelName;
use crate::error::ApiError;
use crate::log::PublishError;
use crate::revocation::{now_ms, Disconnect, Revoke, MAX_JTI_CHARS};
use crate::routes::{read_body, BoxError};
use crate::state::State;

/// Largest body: the fields are bounded (`sub` 128 characters, a channel
/// 128, `jti` 256, a duration), so a longer body is not a disconnect.
pub const MAX_BODY_BYTES: usize = 4096;

/// The body as sent. Unknown keys and values of the wrong type are refused
/// by serde, with what was wrong.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    sub: Option<String>,
    channel: Option<String>,
    jti: Option<String>,
    revoke: Option<String>,
}

pub async fn disconnect<B>(state: &State, parts: &Parts, body: B) -> Result<Response, ApiError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let access = state.auth.access(parts).await?;
    if !access.is_publish_token() {
        return Err(match access.is_authenticated() {
            true => Denied::Forbidden(Vec::new()),
            false => Denied::Unauthorized { invalid: false },
        }
        .into());
    }
    let body = read_body(
        &parts.headers,
        body,
        MAX_BODY_BYTES,
        state.config.body_timeout,
        |limit| ApiError::BodyTooLarge { limit },
    )
    .await?;
    let order = parse(&body, state.config.max_revoke, now_ms())?;
    let disconnected = state.log.disconnect(order).await.map_err(|e| match e {
        PublishError::Unavailable { retry_after, cause } => {
            ApiError::BackendUnavailable { retry_after, cause }
        }
        PublishError::ChannelLimit => ApiError::ChannelLimit {
            retry_after: state.config.retry,
        },
    })?;
    let json = serde_json::json!({ "disconnected": disconnected }).to_string();
    let mut response = http::Response::new(Body::from(json));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}

/// Parses and checks a body; `now_ms` is the call's time (Unix ms).
pub fn parse(body: &[u8], max_revoke: Duration, now_ms: u64) -> Result<Disconnect, ApiError> {
    let bad = |m: String| ApiError::BadDisconnect(m);
    let request: Request = serde_json::from_slice(body).map_err(|e| {
        bad(format!(
            "the body is not a disconnect ({e}): send a JSON object such as {{\"sub\":\"42\"}}, \
             with sub, channel, jti and revoke"
        ))
    })?;
    // `Option` reads a JSON null as absent; a null is a value of the wrong
    // type here (every field is a string), so it is refused like one.
    if let Ok(serde_json::Value::Object(fields)) = serde_json::from_slice(body) {
        if let Some((key, _)) = fields.iter().find(|(_, v)| v.is_null()) {
            return Err(bad(format!("`{key}` is a string, not null")));
        }
    }
    if request.sub.is_none() && request.channel.is_none() && request.jti.is_none() {
        return Err(bad(
            "say whom to disconnect: sub, channel, both, or jti".to_owned()
        ));
    }
    if request.jti.is_some() && (request.sub.is_some() || request.channel.is_some()) {
        return Err(bad(
            "jti names one token: give it alone (with revoke if wanted)".to_owned(),
        ));
    }
    let sub = match request.sub {
        Some(sub) if (1..=MAX_SUB_CHARS).contains(&sub.chars().count()) => Some(sub.into()),
        Some(_) => return Err(bad("`sub` has 1 to 128 characters".to_owned())),
        None => None,
    };
    let jti = match request.jti {
        Some(jti) if (1..=MAX_JTI_CHARS).contains(&jti.chars().count()) => Some(jti.into()),
        Some(_) => return Err(bad("`jti` has 1 to 256 characters".to_owned())),
        None => None,
    };
    let channel = request
        .channel
        .map(|c| ChannelName::parse(&c))
        .transpose()
        .map_err(ApiError::BadChannel)?;
    let revoke = match request.revoke {
        None => None,
        Some(_) if sub.is_none() && jti.is_none() => {
            return Err(bad(
                "revoke needs sub or jti: a channel alone names no token".to_owned(),
            ))
        }
        Some(raw) => {
            let d = humantime::parse_duration(&raw)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    bad(format!(
                        "`revoke` is a duration with its unit, such as \"30m\" or \"24h\", \
                         not {raw:?}"
                    ))
                })?;
            if d > max_revoke {
                return Err(bad(format!(
                    "`revoke` is at most {} (--max-revoke)",
                    humantime::format_duration(max_revoke)
                )));
            }
            Some(Revoke {
                at: now_ms / 1000,
                until_ms: now_ms.saturating_add(d.as_millis() as u64),
            })
        }
    };
    Ok(Disconnect {
        sub,
        channel,
        jti,
        revoke,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86400);

    fn ok(body: &str) -> Disconnect {
        parse(body.as_bytes(), DAY, 1_700_000_000_500).unwrap()
    }

    fn refused(body: &str) -> String {
        let e = parse(body.as_bytes(), DAY, 0).unwrap_err();
        assert_eq!(e.status(), 400, "{body}");
        e.to_string()
    }

    #[test]
    fn each_form_parses() {
        assert_eq!(ok(r#"{"sub":"42"}"#).sub.as_deref(), Some("42"));
        let both = ok(r#"{"sub":"42","channel":"news"}"#);
        assert_eq!(both.channel.unwrap().as_str(), "news");
        let revoked = ok(r#"{"jti":"t-1","revoke":"30m"}"#);
        assert_eq!(
            revoked.revoke,
            Some(Revoke {
                at: 1_700_000_000,
                until_ms: 1_700_000_000_500 + 1_800_000
            })
        );
        assert!(ok(r#"{"sub":"42","revoke":"24h"}"#).revoke.is_some());
    }

    #[test]
    fn bad_bodies_are_refused_with_what_is_wrong() {
        assert!(refused("{}").contains("whom"));
        assert!(refused(r#"{"sub":"42","user":"x"}"#).contains("unknown field"));
        assert!(refused(r#"{"sub":42}"#).contains("invalid type"));
        assert!(refused(r#"{"sub":"42","revoke":30}"#).contains("invalid type"));
        assert!(refused(r#"["sub"]"#).contains("not a disconnect"));
        assert!(refused("sub=42").contains("not a disconnect"));
        assert!(refused("").contains("not a disconnect"));
        assert!(refused(r#"{"sub":""}"#).contains("sub"));
        assert!(refused(&format!(r#"{{"sub":"{}"}}"#, "x".repeat(129))).contains("sub"));
        assert!(refused(r#"{"channel":"a b"}"#).contains("channel name"));
        assert!(refused(r#"{"channel":"news","revoke":"1m"}"#).contains("revoke needs"));
        assert!(refused(r#"{"sub":"42","revoke":"25h"}"#).contains("--max-revoke"));
        assert!(refused(r#"{"sub":"42","revoke":"soon"}"#).contains("duration"));
        assert!(refused(r#"{"sub":"42","revoke":"0s"}"#).contains("duration"));
        assert!(refused(r#"{"jti":"t","sub":"42"}"#).contains("alone"));
    }
}
