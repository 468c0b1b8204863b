//! The one error type at the HTTP boundary. Each case knows its status and
//! its JSON body `{"error": "<code>", "message": "<what to do>"}`, and
//! [`ApiError::into_response`] is the only place that turns one into a
//! response, so the service itself never fails.

use std::time::Duration;

use http::header::{ALLOW, CONTENT_TYPE, RETRY_AFTER, SEC_WEBSOCKET_VERSION, WWW_AUTHENTICATE};
use http::{HeaderValue, StatusCode};

use crate::auth::Denied;
use crate::domain::{ChannelName, InvalidInput};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadChannel(InvalidInput),
    #[error("{0}")]
    BadEventType(InvalidInput),
    #[error("subscribe to between 1 and 32 channels: /events?channel=a&channel=b")]
    BadChannelList,
    #[error("the event data is empty: send the data as the request body, e.g. curl -d 'hello'")]
    EmptyData,
    #[error("the event data is not valid UTF-8: SSE carries text only")]
    NotUtf8,
    #[error("the request body is not valid JSON for a batch: {0}")]
    BadJson(String),
    /// A WebSocket message that is not a publish message: `bad_json` too,
    /// but it is neither a request body nor a batch.
    #[error("{0}")]
    BadMessage(String),
    /// A `POST /disconnect` body that is not one (SPEC §11).
    #[error("{0}")]
    BadDisconnect(String),
    /// A bad item of a batch: the whole batch is refused.
    #[error("item {index}: {source}")]
    BadBatchItem { index: usize, source: Box<ApiError> },
    #[error("the event data is larger than {limit} bytes (--max-event-bytes)")]
    EventTooLarge { limit: usize },
    #[error("the request body is larger than {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("the request body did not arrive within {0:?} (--body-timeout)")]
    BodyTimeout(Duration),
    #[error("the request body could not be read: {0}")]
    BodyRead(String),
    #[error("not a valid WebSocket upgrade: {0}")]
    BadUpgrade(&'static str),
    #[error("no such endpoint: see GET /events/<channel>, POST /publish/<channel>")]
    NotFound,
    #[error("method not allowed here; allowed: {allow}")]
    MethodNotAllowed { allow: &'static str },
    #[error("the server holds its maximum number of channels (--max-channels); retry later")]
    ChannelLimit { retry_after: Duration },
    #[error(
        "the server has its maximum number of connections open (--max-connections); retry later"
    )]
    ConnectionLimit { retry_after: Duration },
    #[error("the server is shutting down; retry later")]
    ShuttingDown { retry_after: Duration },
    /// The log cannot take events now (disk full, Redis down); nothing of
    /// the request was published.
    #[error("the event store is unavailable ({cause}); nothing was published, retry later")]
    BackendUnavailable {
        retry_after: Duration,
        cause: String,
    },
    /// No token where one is needed, or a refused one. The message never
    /// says which check failed.
    #[error("{}", if *.invalid {
        "the token was refused: get a fresh one"
    } else {
        "this needs a token: Authorization: Bearer <token> (or ?token= on a stream)"
    })]
    Unauthorized { invalid: bool },
    /// A valid token that does not cover these channels.
    #[error("{}", if .channels.is_empty() {
        "this needs the publish token"
    } else {
        "the token does not grant these channels"
    })]
    Forbidden { channels: Vec<ChannelName> },
    /// A WebSocket upgrade from a page whose `Origin` is not allowed by
    /// `--cors-origin`, while cookie auth is on (SPEC §10).
    #[error("this page's origin may not open a WebSocket here: with cookie auth, only the origins listed in --cors-origin can")]
    OriginNotAllowed,
    /// A presence channel with a token that names no member.
    #[error("presence channels need a token with a `sub` claim: the member the others see")]
    NoMember { channels: Vec<ChannelName> },
    #[error("presence is kept only for channels named presence-*")]
    NotPresenceChannel,
    /// A malformed `Idempotency-Key` (or WebSocket `idempotency_key`).
    #[error("{0}")]
    BadIdempotencyKey(String),
    /// The key was used for another request (SPEC §12).
    #[error("this Idempotency-Key was used for a different request (path, query or body) within --idempotency-window: use a new key for a new request")]
    IdempotencyKeyReused,
    /// An earlier request with the key is still being published.
    #[error("a request with this Idempotency-Key is still being published: retry in a second to get its answer")]
    IdempotencyInProgress,
    /// The node holds `--idempotency-max-keys` keys.
    #[error("the server holds its maximum number of idempotency keys (--idempotency-max-keys); nothing was published, retry later")]
    IdempotencyKeysFull { retry_after: Duration },
    #[error(
        "channels named private-* and presence-* need access control, and none is configured \
         (--jwt-secret, --jwt-public-key, --jwks-file, --publish-token)"
    )]
    AuthNotConfigured { channels: Vec<ChannelName> },
}

impl From<Denied> for ApiError {
    fn from(denied: Denied) -> ApiError {
        match denied {
            Denied::Unauthorized { invalid } => ApiError::Unauthorized { invalid },
            Denied::Forbidden(channels) => ApiError::Forbidden { channels },
            Denied::NotConfigured(channels) => ApiError::AuthNotConfigured { channels },
        }
    }
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadChannel(_)
            | ApiError::BadEventType(_)
            | ApiError::BadChannelList
            | ApiError::EmptyData
            | ApiError::NotUtf8
            | ApiError::BadJson(_)
            | ApiError::BadMessage(_)
            | ApiError::BadDisconnect(_)
            | ApiError::BadBatchItem { .. }
            | ApiError::BodyRead(_)
            | ApiError::BadUpgrade(_)
            | ApiError::NotPresenceChannel
            | ApiError::BadIdempotencyKey(_) => StatusCode::BAD_REQUEST,
            ApiError::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::IdempotencyInProgress => StatusCode::CONFLICT,
            ApiError::EventTooLarge { .. } | ApiError::BodyTooLarge { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ApiError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::ChannelLimit { .. }
            | ApiError::ConnectionLimit { .. }
            | ApiError::ShuttingDown { .. }
            | ApiError::BackendUnavailable { .. }
            | ApiError::IdempotencyKeysFull { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. }
            | ApiError::OriginNotAllowed
            | ApiError::NoMember { .. }
            | ApiError::AuthNotConfigured { .. } => StatusCode::FORBIDDEN,
        }
    }

    /// The machine-readable `error` code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadChannel(_) => "bad_channel",
            ApiError::BadEventType(_) => "bad_event_type",
            ApiError::BadChannelList => "bad_channel_list",
            ApiError::EmptyData => "empty_data",
            ApiError::NotUtf8 => "invalid_utf8",
            ApiError::BadJson(_) | ApiError::BadMessage(_) => "bad_json",
            ApiError::BadDisconnect(_) => "bad_disconnect",
            ApiError::BadBatchItem { source, .. } => source.code(),
            ApiError::EventTooLarge { .. } => "event_too_large",
            ApiError::BodyTooLarge { .. } => "body_too_large",
            ApiError::BodyTimeout(_) => "body_timeout",
            ApiError::BodyRead(_) => "body_read",
            ApiError::BadUpgrade(_) => "bad_upgrade",
            ApiError::NotFound => "not_found",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::ChannelLimit { .. } => "channel_limit",
            ApiError::ConnectionLimit { .. } => "connection_limit",
            ApiError::ShuttingDown { .. } => "shutting_down",
            ApiError::BackendUnavailable { .. } => "backend_unavailable",
            ApiError::Unauthorized { .. } => "unauthorized",
            ApiError::Forbidden { .. } | ApiError::OriginNotAllowed | ApiError::NoMember { .. } => {
                "forbidden"
            }
            ApiError::NotPresenceChannel => "not_a_presence_channel",
            ApiError::AuthNotConfigured { .. } => "auth_not_configured",
            ApiError::BadIdempotencyKey(_) => "bad_idempotency_key",
            ApiError::IdempotencyKeyReused => "idempotency_key_reused",
            ApiError::IdempotencyInProgress => "idempotency_in_progress",
            ApiError::IdempotencyKeysFull { .. } => "idempotency_keys_full",
        }
    }

    /// The JSON error (SPEC §4): `error`, `message`, and `index` or
    /// `channels` where they say which item or channel is the cause. An
    /// HTTP answer's body, and a WebSocket error message with `type` added.
    pub fn body(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut body = serde_json::Map::new();
        body.insert("error".into(), self.code().into());
        body.insert("message".into(), self.to_string().into());
        match self {
            ApiError::BadBatchItem { index, .. } => {
                body.insert("index".into(), (*index).into());
            }
            ApiError::Forbidden { channels }
            | ApiError::NoMember { channels }
            | ApiError::AuthNotConfigured { channels } => {
                let names = channels.iter().map(|c| c.as_str()).collect();
                body.insert("channels".into(), names);
            }
            // The shape of every 403 `forbidden`; no channel is the cause.
            ApiError::OriginNotAllowed => {
                body.insert("channels".into(), serde_json::json!([]));
            }
            _ => {}
        }
        body
    }

    /// The HTTP answer. Generic over the body type (the server's is
    /// `body::Body`), so this layer does not name the one above it.
    pub fn into_response<B: From<String>>(self) -> http::Response<B> {
        let body = serde_json::Value::Object(self.body());
        let mut response = http::Response::new(B::from(body.to_string()));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        match self {
            ApiError::MethodNotAllowed { allow } => {
                headers.insert(ALLOW, HeaderValue::from_static(allow));
            }
            ApiError::ChannelLimit { retry_after }
            | ApiError::ConnectionLimit { retry_after }
            | ApiError::ShuttingDown { retry_after }
            | ApiError::BackendUnavailable { retry_after, .. }
            | ApiError::IdempotencyKeysFull { retry_after } => {
                let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
                headers.insert(RETRY_AFTER, HeaderValue::from(secs));
            }
            ApiError::IdempotencyInProgress => {
                headers.insert(RETRY_AFTER, HeaderValue::from(1));
            }
            // RFC 6750 §3.
            ApiError::Unauthorized { invalid } => {
                let challenge = match invalid {
                    true => r#"Bearer error="invalid_token""#,
                    false => "Bearer",
                };
                headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
            }
            // RFC 6455 §4.4: the versions spoken, so a client can retry.
            ApiError::BadUpgrade(_) => {
                headers.insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
            }
            ApiError::Forbidden { .. } => {
                headers.insert(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Bearer error="insufficient_scope""#),
                );
            }
            _ => {}
        }
        response
    }
}
