//! `GET /events/{channel}` and `GET /events?channel=a&channel=b`: open an
//! event stream, resuming from `Last-Event-ID` or `lastEventId`; with
//! `Upgrade: websocket`, a WebSocket on the same channels.
//!
//! Access is decided before the hub is touched, the same for `HEAD` as for
//! `GET`, so a page can ask with `HEAD` why its EventSource closed. A stream
//! opened with a JWT ends at the token's `exp` with `herald.expired`.

use std::sync::Arc;

use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::request::Parts;
use http::{HeaderName, HeaderValue};
use hyper::upgrade::OnUpgrade;

use crate::body::{Body, Response};
use crate::domain::{ChannelName, Resume, MAX_CHANNELS_PER_STREAM};
use crate::error::ApiError;
use crate::hub::presence::Member;
use crate::hub::{SubscribeError, Subscription};
use crate::metrics::RejectReason;
use crate::routes::presence;
use crate::sse;
use crate::state::State;
use crate::transport::sse::{self as stream, EventStream, StreamContext};
use crate::transport::ws::{self, session::OpenConnection};

static LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");
static X_ACCEL_BUFFERING: HeaderName = HeaderName::from_static("x-accel-buffering");

/// Opens a stream, or answers HEAD with the same headers and no body (and no
/// side effect: no channel is created).
pub async fn subscribe(
    state: &State,
    req: &Parts,
    path_channel: Option<&str>,
    head: bool,
) -> Result<Response, ApiError> {
    let (channels, query_resume) = parse_query(req.uri.query().unwrap_or(""), path_channel)?;
    let access = state.auth.access(req).await?;
    access.check_subscribe(&channels)?;
    let member = presence::member(&access, &channels)?;
    let private = access.is_authenticated();
    let resume = resume(req, query_resume);

    if head {
        if !state.log.is_up() {
            return Ok(retry_later(state, RejectReason::BackendUnavailable));
        }
        if !state.hub.would_accept(&channels) {
            return Ok(retry_later(state, RejectReason::ChannelLimit));
        }
        return Ok(event_stream_response(Body::Empty, private));
    }

    let subscription = match open(state, &channels, resume, member).await {
        Ok(subscription) => subscription,
        Err(reason) => {
            state.metrics.rejected(reason);
            return Ok(retry_later(state, reason));
        }
    };
    let names: Vec<&str> = channels.iter().map(ChannelName::as_str).collect();
    let preamble = sse::preamble(state.config.retry, &format!("herald: {}", names.join(" ")));
    let ctx = StreamContext::new(state, &access);
    let stream = EventStream::new(preamble, subscription, ctx);
    Ok(event_stream_response(
        Body::Events(Box::new(stream)),
        private,
    ))
}

/// `Upgrade: websocket` on the same URLs: the same channels and resume
/// rules, then a WebSocket session instead of an event stream.
pub async fn websocket(
    state: &Arc<State>,
    req: &Parts,
    path_channel: Option<&str>,
    on_upgrade: Option<OnUpgrade>,
) -> Result<Response, ApiError> {
    let (channels, query_resume) = parse_query(req.uri.query().unwrap_or(""), path_channel)?;
    // A browser sends cookies on a WebSocket upgrade from any site: with
    // cookie auth, only the allowed origins may open one (SPEC §10).
    if state.config.auth_cookie.is_some() && !origin_allowed(state, req) {
        return Err(ApiError::OriginNotAllowed);
    }
    let access = state.auth.access(req).await?;
    access.check_subscribe(&channels)?;
    let member = presence::member(&access, &channels)?;
    let resume = resume(req, query_resume);
    let response = ws::accept(&req.headers)?;
    let Some(on_upgrade) = on_upgrade else {
        return Err(ApiError::BadUpgrade("this connection cannot be upgraded"));
    };
    // A socket has no `retry:` to give: a 503 (counted once, with the
    // error, by the router).
    let subscription = open(state, &channels, resume, member)
        .await
        .map_err(|reason| {
            let retry_after = state.config.retry;
            match reason {
                RejectReason::ChannelLimit => ApiError::ChannelLimit { retry_after },
                RejectReason::ShuttingDown => ApiError::ShuttingDown { retry_after },
                _ => ApiError::BackendUnavailable {
                    retry_after,
                    cause: "the shared log cannot be reached".to_owned(),
                },
            }
        })?;
    let connection = OpenConnection::new(&state.metrics);
    state.sessions.spawn(ws::session::run(
        state.clone(),
        on_upgrade,
        subscription,
        connection,
        access,
    ));
    Ok(response)
}

/// Opens the subscription of a stream or socket: the log's preparation
/// (with --redis: Redis is up and this node holds the channels' history),
/// then the hub's backlog and live receivers, counting `member` in on
/// presence channels. `Err`: why it cannot be served now.
async fn open(
    state: &State,
    channels: &[ChannelName],
    resume: Resume,
    member: Option<Member>,
) -> Result<Subscription, RejectReason> {
    state
        .log
        .prepare_subscribe(channels, resume, member.as_ref())
        .await?;
    let subscribed = match member {
        Some(member) => state.hub.subscribe_member(channels, resume, member),
        None => state.hub.subscribe(channels, resume),
    };
    subscribed.map_err(|e| match e {
        SubscribeError::ChannelLimit(_) => RejectReason::ChannelLimit,
        SubscribeError::Closed => RejectReason::ShuttingDown,
    })
}

/// Whether the request's `Origin` is one `--cors-origin` lists (a request
/// without one does not come from a browser page).
fn origin_allowed(state: &State, req: &Parts) -> bool {
    match req.headers.get(http::header::ORIGIN) {
        None => true,
        Some(origin) => state
            .config
            .cors_origin
            .iter()
            .any(|allowed| allowed.trim().as_bytes() == origin.as_bytes()),
    }
}

/// Where a subscriber resumes: the header wins over the query; an empty
/// value means no id, so an empty header leaves the query's id in force.
fn resume(req: &Parts, query_resume: Resume) -> Resume {
    match req.headers.get(&LAST_EVENT_ID).map(|v| v.to_str()) {
        Some(Ok("")) | None => query_resume,
        Some(Ok(raw)) => Resume::parse(raw),
        Some(Err(_)) => Resume::Unknown,
    }
}

/// The channels to subscribe to (the path's, or the query's `channel`
/// parameters) and the `lastEventId` query parameter.
pub fn parse_query(
    query: &str,
    path_channel: Option<&str>,
) -> Result<(Vec<ChannelName>, Resume), ApiError> {
    let mut channels = Vec::new();
    if let Some(raw) = path_channel {
        channels.push(ChannelName::from_path(raw).map_err(ApiError::BadChannel)?);
    }
    let mut resume = Resume::Live;
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match &*key {
            "lastEventId" => resume = Resume::parse(&value),
            "channel" if path_channel.is_none() => {
                let name = ChannelName::parse(&value).map_err(ApiError::BadChannel)?;
                // A channel named twice counts once.
                if !channels.contains(&name) {
                    channels.push(name);
                }
                if channels.len() > MAX_CHANNELS_PER_STREAM {
                    return Err(ApiError::BadChannelList);
                }
            }
            _ => {}
        }
    }
    if channels.is_empty() {
        return Err(ApiError::BadChannelList);
    }
    Ok((channels, resume))
}

/// The answer to a subscribe that cannot be served now: 200 (EventSource
/// gives up for good on any other status), a `retry:` back-off and a comment
/// saying why, and the stream ends.
pub fn retry_later(state: &State, reason: RejectReason) -> Response {
    let why = match reason {
        RejectReason::ConnectionLimit => "server busy: too many connections, retry later",
        RejectReason::ChannelLimit => "server busy: too many channels, retry later",
        RejectReason::ShuttingDown => "server shutting down, retry later",
        RejectReason::BackendUnavailable => "event store unavailable, retry later",
        _ => "retry later",
    };
    event_stream_response(
        Body::Full(stream::retry_later(state.config.retry, why)),
        false,
    )
}

/// `private`: the stream was opened with a token, so no shared cache may
/// keep it.
fn event_stream_response(body: Body, private: bool) -> Response {
    let mut response = http::Response::new(body);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    let cache = match private {
        true => "private, no-cache",
        false => "no-cache",
    };
    headers.insert(CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(X_ACCEL_BUFFERING.clone(), HeaderValue::from_static("no"));
    response
}
