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
use hyper::upgrade::OnUpgrade;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::{Service, ServiceBuilder};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::body::{Body, Response};
use crate::config::Config;
use crate::error::ApiError;
use crate::hub::Hub;
use crate::metrics::{Metrics, RejectReason};
use crate::routes::{self, BoxError};
use crate::transport::ws;

/// Everything a request may need, shared by all connections.
pub struct State {
    pub config: Config,
    pub hub: Arc<Hub>,
    pub metrics: Arc<Metrics>,
    /// Cancelled when the server starts shutting down: streams end, new
    /// requests are refused.
    pub shutdown: CancellationToken,
    /// The WebSocket sessions: they outlive their HTTP connection, so
    /// shutdown waits for them here.
    pub sessions: TaskTracker,
}

impl State {
    pub fn new(config: Config) -> Arc<State> {
        let metrics = Arc::new(Metrics::new());
        Arc::new(State {
            hub: Arc::new(Hub::new(config.hub(), metrics.clone())),
            metrics,
            config,
            shutdown: CancellationToken::new(),
            sessions: TaskTracker::new(),
        })
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
    let origin = if config.cors_origin.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            config
                .cors_origin
                .iter()
                .filter_map(|o| HeaderValue::from_str(o.trim()).ok()),
        )
    };
    CorsLayer::new()
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
pub async fn handle<B>(state: &Arc<State>, conn: Conn, req: Request<B>) -> Response
where
    B: http_body::Body<Data = bytes::Bytes>,
    B::Error: Into<BoxError>,
{
    let (mut parts, body) = req.into_parts();
    // hyper's handle on this connection's upgrade, for a WebSocket.
    let on_upgrade = parts.extensions.remove::<OnUpgrade>();
    let Some(route) = Route::parse(parts.uri.path()) else {
        return ApiError::NotFound.into_response();
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
        return ApiError::MethodNotAllowed {
            allow: route.allow(),
        }
        .into_response();
    }

    if let Some(reason) = refusal(state, conn) {
        state.metrics.rejected(reason);
        let mut response = match route {
            // A WebSocket client is not an EventSource: a plain 503.
            Route::Subscribe(_) if ws::is_upgrade(&parts.headers) => {
                refused(reason, state.config.retry).into_response()
            }
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
        Route::Subscribe(channel) if !head && ws::is_upgrade(&parts.headers) => {
            routes::events::websocket(state, &parts, channel, on_upgrade)
        }
        Route::Subscribe(channel) => routes::events::subscribe(state, &parts, channel, head),
        Route::Publish(Some(channel)) => routes::publish::one(state, &parts, body, channel).await,
        Route::Publish(None) => routes::publish::batch(state, &parts, body).await,
        Route::Healthz => Ok(routes::health::healthz()),
        Route::Metrics => Ok(routes::health::metrics(state)),
        Route::Channels => Ok(routes::channels::list(state)),
        Route::Static(file) => Ok(routes::assets::serve(file, head)),
    };
    result.unwrap_or_else(|e| {
        if let Some(reason) = e.reject_reason() {
            state.metrics.rejected(reason);
        }
        e.into_response()
    })
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
    /// The metrics label for errors that are refusals rather than bad input.
    fn reject_reason(&self) -> Option<RejectReason> {
        match self {
            ApiError::ChannelLimit { .. } => Some(RejectReason::ChannelLimit),
            ApiError::EventTooLarge { .. } | ApiError::BodyTooLarge { .. } => {
                Some(RejectReason::BodyTooLarge)
            }
            ApiError::BodyTimeout(_) => Some(RejectReason::BodyTimeout),
            _ => None,
        }
    }
}
