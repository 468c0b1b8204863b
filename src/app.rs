//! The tower service: CORS in front of one `match` on method and path.
//!
//! [`app`] builds the whole request pipeline for one connection, so tests can
//! call it with `tower::ServiceExt::oneshot` and no socket.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::header::{ACCESS_CONTROL_ALLOW_METHODS, ALLOW, CONNECTION};
use http::{HeaderName, HeaderValue, Method, Request, StatusCode};
use tokio_util::sync::CancellationToken;
use tower::{Service, ServiceBuilder};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::auth::Auth;
use crate::body::{Body, Response};
use crate::config::Config;
use crate::error::ApiError;
use crate::hub::Hub;
use crate::metrics::{Metrics, RejectReason};
use crate::routes::{self, BoxError};

/// Everything a request may need, shared by all connections.
pub struct State {
    pub config: Config,
    /// Keys and rules of access control; routes ask it for an `Access`.
    pub auth: Arc<Auth>,
    pub hub: Arc<Hub>,
    pub metrics: Arc<Metrics>,
    /// Cancelled when the server starts shutting down: streams end, new
    /// requests are refused.
    pub shutdown: CancellationToken,
}

impl State {
    /// The state for `config`; panics on a configuration [`State::try_new`]
    /// refuses (tests build valid ones).
    pub fn new(config: Config) -> Arc<State> {
        State::try_new(config).unwrap_or_else(|e| panic!("bad configuration: {e}"))
    }

    /// The state for `config`, or why it cannot serve (an unreadable key
    /// file, a cookie with a `*` CORS origin, ...).
    pub fn try_new(config: Config) -> Result<Arc<State>, String> {
        let metrics = Arc::new(Metrics::new());
        Ok(Arc::new(State {
            auth: Arc::new(Auth::from_config(&config)?),
            hub: Arc::new(Hub::new(config.hub(), metrics.clone())),
            metrics,
            config,
            shutdown: CancellationToken::new(),
        }))
    }
}

/// What the accept loop knows about one connection.
#[derive(Clone, Copy, Debug, Default)]
pub struct Conn {
    /// Accepted past `--max-connections`: each request gets the "retry
    /// later" answer and the connection is closed.
    pub over_limit: bool,
}

/// The endpoint a path names, before the method is checked.
enum Route<'a> {
    /// `/events/{channel}` (with the raw channel) or `/events` (query form).
    Subscribe(Option<&'a str>),
    /// `/publish/{channel}` or `/publish` (batch).
    Publish(Option<&'a str>),
    Healthz,
    Metrics,
    Channels,
    /// `/channels/{channel}/presence`, with the raw channel.
    Presence(&'a str),
    Static(&'static include_dir::File<'static>),
}

impl Route<'_> {
    fn parse(path: &str) -> Option<Route<'_>> {
        Some(match path {
            "/events" => Route::Subscribe(None),
            "/publish" => Route::Publish(None),
            "/healthz" => Route::Healthz,
            "/metrics" => Route::Metrics,
            "/channels" => Route::Channels,
            _ => {
                if let Some(channel) = path.strip_prefix("/events/") {
                    Route::Subscribe(Some(channel))
                } else if let Some(channel) = path.strip_prefix("/publish/") {
                    Route::Publish(Some(channel))
                } else if let Some(channel) = path
                    .strip_prefix("/channels/")
                    .and_then(|rest| rest.strip_suffix("/presence"))
                {
                    Route::Presence(channel)
                } else {
                    Route::Static(routes::assets::find(path)?)
                }
            }
        })
    }

    fn allow(&self) -> &'static str {
        match self {
            Route::Publish(_) => "POST, OPTIONS",
            _ => "GET, HEAD, OPTIONS",
        }
    }

    fn allows(&self, method: &Method) -> bool {
        match self {
            Route::Publish(_) => method == Method::POST,
            _ => method == Method::GET || method == Method::HEAD,
        }
    }
}

/// The service for one connection: CORS, then [`handle`].
pub fn app<B>(
    state: Arc<State>,
    conn: Conn,
) -> impl Service<
    Request<B>,
    Response = Response,
    Error = Infallible,
    Future = impl Future<Output = Result<Response, Infallible>> + Send,
> + Clone
       + Send
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let cors = cors(&state.config);
    ServiceBuilder::new()
        .map_response(preflight_is_204)
        .layer(cors)
        .service(tower::service_fn(move |req: Request<B>| {
            let state = state.clone();
            async move { Ok::<_, Infallible>(handle(&state, conn, req).await) }
        }))
}

fn cors(config: &Config) -> CorsLayer {
    let any = config.cors_origin.iter().any(|o| o == "*");
    let origin = if any {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            config
                .cors_origin
                .iter()
                .filter_map(|o| HeaderValue::from_str(o.trim()).ok()),
        )
    };
    // Cookie auth needs the browser to send credentials, which it only does
    // for an explicit origin (a `*` origin with cookies is refused at
    // startup, in `Auth::from_config`; tower-http would panic).
    let credentials = config.auth_cookie.is_some() && !any;
    CorsLayer::new()
        .allow_credentials(credentials)
        .allow_origin(origin)
        .allow_methods([Method::GET, Method::HEAD, Method::POST, Method::OPTIONS])
        .allow_headers([
            HeaderName::from_static("last-event-id"),
            http::header::CONTENT_TYPE,
            http::header::AUTHORIZATION,
        ])
        .expose_headers([http::header::RETRY_AFTER])
        .max_age(Duration::from_secs(3600))
}

/// tower-http answers a preflight with 200; SPEC §4 promises 204. Only a
/// preflight answer carries `Access-Control-Allow-Methods`, which is how it
/// is recognised here.
fn preflight_is_204(mut response: Response) -> Response {
    if response.status() == StatusCode::OK
        && response
            .headers()
            .contains_key(ACCESS_CONTROL_ALLOW_METHODS)
    {
        *response.status_mut() = StatusCode::NO_CONTENT;
    }
    response
}

/// Routes one request. Never fails: every error is already a response.
pub async fn handle<B>(state: &State, conn: Conn, req: Request<B>) -> Response
where
    B: http_body::Body<Data = bytes::Bytes>,
    B::Error: Into<BoxError>,
{
    let (parts, body) = req.into_parts();
    let Some(route) = Route::parse(parts.uri.path()) else {
        return rejected(state, ApiError::NotFound);
    };
    if parts.method == Method::OPTIONS {
        let mut response = http::Response::new(Body::Empty);
        *response.status_mut() = StatusCode::NO_CONTENT;
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static(route.allow()));
        return response;
    }
    if !route.allows(&parts.method) {
        let allow = route.allow();
        return rejected(state, ApiError::MethodNotAllowed { allow });
    }

    if let Some(reason) = refusal(state, conn) {
        state.metrics.rejected(reason);
        let mut response = match route {
            Route::Subscribe(_) => routes::events::retry_later(state, reason),
            _ => refused(reason, state.config.retry).into_response(),
        };
        if conn.over_limit {
            response
                .headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
        return response;
    }

    let head = parts.method == Method::HEAD;
    let result = match route {
        Route::Subscribe(channel) => routes::events::subscribe(state, &parts, channel, head),
        Route::Publish(Some(channel)) => routes::publish::one(state, &parts, body, channel).await,
        Route::Publish(None) => routes::publish::batch(state, &parts, body).await,
        Route::Healthz => Ok(routes::health::healthz()),
        Route::Metrics => Ok(routes::health::metrics(state)),
        Route::Channels => routes::channels::list(state, &parts),
        Route::Presence(channel) => routes::presence::roster(state, &parts, channel, head),
        Route::Static(file) => Ok(routes::assets::serve(file, head)),
    };
    result.unwrap_or_else(|e| rejected(state, e))
}

/// Counts a refusal and answers it.
fn rejected(state: &State, e: ApiError) -> Response {
    state.metrics.rejected(e.reject_reason());
    e.into_response()
}

/// Why this request cannot be served right now, if it cannot.
fn refusal(state: &State, conn: Conn) -> Option<RejectReason> {
    if state.shutdown.is_cancelled() {
        Some(RejectReason::ShuttingDown)
    } else if conn.over_limit {
        Some(RejectReason::ConnectionLimit)
    } else {
        None
    }
}

fn refused(reason: RejectReason, retry_after: Duration) -> ApiError {
    match reason {
        RejectReason::ShuttingDown => ApiError::ShuttingDown { retry_after },
        RejectReason::ChannelLimit => ApiError::ChannelLimit { retry_after },
        _ => ApiError::ConnectionLimit { retry_after },
    }
}

impl ApiError {
    /// The `reason` label this refusal is counted under.
    fn reject_reason(&self) -> RejectReason {
        match self {
            ApiError::BadChannel(_)
            | ApiError::BadEventType(_)
            | ApiError::BadChannelList
            | ApiError::EmptyData
            | ApiError::NotUtf8
            | ApiError::BadJson(_)
            | ApiError::BadBatchItem { .. }
            | ApiError::BodyRead(_)
            | ApiError::NotPresenceChannel => RejectReason::BadRequest,
            ApiError::NotFound => RejectReason::NotFound,
            ApiError::MethodNotAllowed { .. } => RejectReason::MethodNotAllowed,
            ApiError::ChannelLimit { .. } => RejectReason::ChannelLimit,
            ApiError::ConnectionLimit { .. } => RejectReason::ConnectionLimit,
            ApiError::ShuttingDown { .. } => RejectReason::ShuttingDown,
            ApiError::EventTooLarge { .. } | ApiError::BodyTooLarge { .. } => {
                RejectReason::BodyTooLarge
            }
            ApiError::BodyTimeout(_) => RejectReason::BodyTimeout,
            ApiError::Unauthorized { .. } => RejectReason::Unauthorized,
            ApiError::Forbidden { .. }
            | ApiError::NoMember { .. }
            | ApiError::AuthNotConfigured { .. } => RejectReason::Forbidden,
        }
    }
}
