//! The tower service: CORS in front of one `match` on method and path.
//!
//! [`app`] builds the whole request pipeline once per server, so tests can
//! call it with `tower::ServiceExt::oneshot` and no socket; [`ConnService`]
//! is what hyper holds per connection: a pointer to it and a [`Conn`].

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::header::{ACCESS_CONTROL_ALLOW_METHODS, ALLOW, CONNECTION};
use http::{HeaderName, HeaderValue, Method, Request, StatusCode};
use hyper::upgrade::OnUpgrade;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::body::{Body, Response};
use crate::config::Config;
use crate::error::ApiError;
use crate::metrics::RejectReason;
use crate::routes::{self, BoxError};
use crate::state::State;
use crate::transport::ws;

/// What the accept loop knows about one connection. [`ConnService`] puts it
/// in the request's extensions when it is not the default.
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
    /// `/disconnect` (SPEC §11).
    Disconnect,
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
            "/disconnect" => Route::Disconnect,
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
            Route::Publish(_) | Route::Disconnect => "POST, OPTIONS",
            _ => "GET, HEAD, OPTIONS",
        }
    }

    fn allows(&self, method: &Method) -> bool {
        match self {
            Route::Publish(_) | Route::Disconnect => method == Method::POST,
            _ => method == Method::GET || method == Method::HEAD,
        }
    }
}

/// The service for the whole server: CORS, then [`handle`]. Built once; a
/// request's [`Conn`] travels in its extensions (absent means the default).
pub fn app<B>(
    state: Arc<State>,
) -> impl Service<
    Request<B>,
    Response = Response,
    Error = Infallible,
    Future = impl Future<Output = Result<Response, Infallible>> + Send,
> + Clone
       + Send
       + Sync
       + 'static
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
            async move {
                let conn = req.extensions().get::<Conn>().copied().unwrap_or_default();
                Ok::<_, Infallible>(handle(&state, conn, req).await)
            }
        }))
}

/// What hyper holds for one connection: the server's [`app`] behind a
/// pointer, and the connection's [`Conn`]. Its future is boxed, so hyper's
/// per-connection slot for it is a pointer rather than the whole pipeline's
/// state, and the box is freed as soon as the response head is ready.
pub struct ConnService<A> {
    /// The server's one middleware stack.
    app: Arc<A>,
    /// This connection, as the accept loop saw it.
    conn: Conn,
}

impl<A> ConnService<A> {
    pub fn new(app: Arc<A>, conn: Conn) -> ConnService<A> {
        ConnService { app, conn }
    }
}

impl<A> Clone for ConnService<A> {
    fn clone(&self) -> Self {
        ConnService {
            app: self.app.clone(),
            conn: self.conn,
        }
    }
}

type BoxedResponse = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl<A, B> hyper::service::Service<Request<B>> for ConnService<A>
where
    A: Service<Request<B>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    A::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxedResponse;

    fn call(&self, mut req: Request<B>) -> BoxedResponse {
        if self.conn.over_limit {
            req.extensions_mut().insert(self.conn);
        }
        Box::pin(A::clone(&self.app).oneshot(req))
    }
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
            routes::publish::IDEMPOTENCY_KEY,
        ])
        .expose_headers([
            http::header::RETRY_AFTER,
            routes::publish::IDEMPOTENT_REPLAYED,
        ])
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
            routes::events::websocket(state, &parts, channel, on_upgrade).await
        }
        Route::Subscribe(channel) => routes::events::subscribe(state, &parts, channel, head).await,
        Route::Publish(channel) => {
            let started = std::time::Instant::now();
            let result = match channel {
                Some(channel) => routes::publish::one(state, &parts, body, channel).await,
                None => routes::publish::batch(state, &parts, body).await,
            };
            let backend = state.log.backend();
            state.metrics.publish_answered(backend, started.elapsed());
            result
        }
        Route::Disconnect => routes::disconnect::disconnect(state, &parts, body).await,
        Route::Healthz => Ok(routes::health::healthz(state)),
        Route::Metrics => Ok(routes::health::metrics(state)),
        Route::Channels => routes::channels::list(state, &parts).await,
        Route::Presence(channel) => routes::presence::roster(state, &parts, channel).await,
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
    /// The `reason` label this refusal is counted under: the status says it
    /// for every refusal but the 503s, which name their cause.
    pub(crate) fn reject_reason(&self) -> RejectReason {
        match self {
            ApiError::ChannelLimit { .. } => RejectReason::ChannelLimit,
            ApiError::ConnectionLimit { .. } => RejectReason::ConnectionLimit,
            ApiError::ShuttingDown { .. } => RejectReason::ShuttingDown,
            ApiError::BackendUnavailable { .. } => RejectReason::BackendUnavailable,
            ApiError::IdempotencyKeyReused => RejectReason::IdempotencyKeyReused,
            ApiError::IdempotencyInProgress => RejectReason::IdempotencyInProgress,
            ApiError::IdempotencyKeysFull { .. } => RejectReason::IdempotencyKeysFull,
            _ => match self.status() {
                StatusCode::NOT_FOUND => RejectReason::NotFound,
                StatusCode::METHOD_NOT_ALLOWED => RejectReason::MethodNotAllowed,
                StatusCode::PAYLOAD_TOO_LARGE => RejectReason::BodyTooLarge,
                StatusCode::REQUEST_TIMEOUT => RejectReason::BodyTimeout,
                StatusCode::UNAUTHORIZED => RejectReason::Unauthorized,
                StatusCode::FORBIDDEN => RejectReason::Forbidden,
                _ => RejectReason::BadRequest,
            },
        }
    }
}
