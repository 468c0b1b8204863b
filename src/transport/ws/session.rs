//! One WebSocket: the second writer over the subscription core, and the
//! reader of what the client sends.
//!
//! A session is one task that polls, in turn: the socket for client
//! messages (publishes, pongs, pings, close), the core for what the
//! subscriber is owed (written as text messages, heartbeats as pings), and
//! its timers. Writing waits for the socket: while a client does not read,
//! the core is not polled, so its live queues fall behind and it is caught
//! up from history later, exactly as an event stream is (SPEC §2). Reading
//! waits for the writer when answers pile up, so a client that floods and
//! never reads holds a bounded amount of memory.
//!
//! It stays one file: reading and writing are two halves of one poll loop
//! (`Session::poll_step`) over the same fields, and each half decides
//! when the other runs; cut in two, a reader would go back and forth.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::{Sink, SinkExt, Stream, StreamExt};
use hyper::upgrade::OnUpgrade;
use tokio::time::{Instant, Sleep};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use crate::auth::Access;
use crate::error::ApiError;
use crate::hub::Subscription;
use crate::metrics::{Metrics, RejectReason, WsRejectReason};
use crate::publish::{begin_key_of, principal, publish_keyed};
use crate::state::State;
use crate::transport::core::{Item, StreamContext, Subscriber};
use crate::transport::ws::framing::Metered;
use crate::transport::ws::message::{self, Refused};

/// Answers (published, error) waiting to be written; past this the
/// session stops reading until the client reads.
const MAX_REPLIES: usize = 32;
/// Messages written per wake-up before yielding to other tasks.
const BATCH: usize = 128;
/// Pings a client may send per second; more is a flood.
const MAX_PINGS_PER_SECOND: u32 = 32;
/// How long the closing handshake may take.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// tungstenite's read buffer, and the most it asks of the socket at a
/// time: small, since an idle socket keeps it (tungstenite's default is
/// 128 KiB). The socket is read in larger gulps beneath it
/// (`framing::Metered`); a frame's payload gets room for its whole length.
const READ_BUFFER: usize = 128;
/// What tungstenite gathers before writing to the socket; the session
/// flushes whenever the core has nothing more ready anyway. Small, because
/// tungstenite's write buffer keeps the capacity it grew to for the life of
/// the socket: a burst of small events leaves about this much behind.
const WRITE_BUFFER: usize = 4 * 1024;

/// The tungstenite limits for a server whose events hold at most
/// `max_event_bytes` of data: a publish message may escape its data (a
/// quote or a line break takes two bytes in JSON), so twice that plus room
/// for the rest of the message.
pub fn config(max_event_bytes: usize) -> WebSocketConfig {
    let max_message = max_event_bytes.saturating_mul(2).saturating_add(4096);
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message))
}

/// Counts an upgraded socket in `herald_connections_open` (and so against
/// `--max-connections`): hyper's connection ends with the upgrade. Taken
/// before the 101 goes out, so the count never dips in between.
pub struct OpenConnection(Arc<Metrics>);

impl OpenConnection {
    pub fn new(metrics: &Arc<Metrics>) -> OpenConnection {
        metrics.connections_open.inc();
        OpenConnection(metrics.clone())
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.connections_open.dec();
    }
}

/// Waits for the upgrade, then runs the session until it ends.
///
/// An idle socket is mostly this task, so it is kept small (issue 23):
/// what the session needs waits in one box, the session lives in another,
/// and the steps that run once (starting tungstenite, the closing
/// handshake) are boxed only while they run. Written out as a block
/// rather than an `async fn`, whose arguments would stay in the task, in
/// full, for its whole life.
pub fn run(
    state: Arc<State>,
    on_upgrade: OnUpgrade,
    sub: Subscription,
    connection: OpenConnection,
    access: Access,
) -> impl Future<Output = ()> + Send + 'static {
    let waiting = Box::new((state, sub, connection, access));
    async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let config = config(waiting.0.config.max_event_bytes);
        let ws = Box::pin(WebSocketStream::from_raw_socket(
            Metered::new(upgraded),
            Role::Server,
            Some(config),
        ))
        .await;
        // Unpacked only now, so that no await above holds them in the task.
        let (state, sub, connection, access) = *waiting;
        let mut session = Box::new(Session::new(state, ws, sub, access, connection));
        let end = poll_fn(|cx| session.poll_step(cx)).await;
        Box::pin(session.finish(end)).await;
    }
}

type Socket = WebSocketStream<Metered>;

/// A publish going through the log, resolving to its answer.
type Publishing = Pin<Box<dyn Future<Output = Utf8Bytes> + Send>>;

struct Session {
    ws: Socket,
    core: Subscriber,
    state: Arc<State>,
    /// Answers to client messages, written before anything else.
    replies: VecDeque<Message>,
    /// The publish in flight: its answer is the next reply, and no other
    /// client message is read until it is in.
    publishing: Option<Publishing>,
    /// Something was written since the last flush.
    unflushed: bool,
    /// Pings sent since the last pong.
    unanswered: u8,
    /// Pings received in the current one-second window, and its start.
    pings: (Instant, u32),
    /// Set while the bytes read leave a message unfinished: it must be
    /// complete by then (`--body-timeout`).
    incomplete: Option<Pin<Box<Sleep>>>,
    /// Set while the socket does not take what is written: a peer that
    /// reads nothing for two heartbeats cannot have answered two pings.
    stalled: Option<Pin<Box<Sleep>>>,
    /// What the upgrade request's token allows: the socket's publishes are
    /// checked against it.
    access: Access,
    /// `herald.expired` or `herald.disconnected` was sent: the socket
    /// closes (1008, with this reason) once it is written.
    ended: Option<&'static str>,
    /// The socket's place in `herald_connections_open`.
    _connection: OpenConnection,
}

/// How a session ends.
#[derive(Debug)]
enum End {
    /// Send this close frame, wait briefly for the answer, and end.
    Close(CloseCode, &'static str),
    /// The peer closed or the connection failed: only flush what
    /// tungstenite queued (its answer to the peer's close).
    Gone,
    /// The peer stopped reading: nothing can be sent.
    Drop,
}

impl Session {
    fn new(
        state: Arc<State>,
        ws: Socket,
        sub: Subscription,
        access: Access,
        connection: OpenConnection,
    ) -> Session {
        let ctx = StreamContext::new(&state, &access);
        state.metrics.streams_ws.inc();
        Session {
            ws,
            core: Subscriber::new(sub, ctx),
            replies: VecDeque::new(),
            publishing: None,
            unflushed: false,
            unanswered: 0,
            pings: (Instant::now(), 0),
            incomplete: None,
            stalled: None,
            access,
            ended: None,
            state,
            _connection: connection,
        }
    }

    fn poll_step(&mut self, cx: &mut Context<'_>) -> Poll<End> {
        if let Some(end) = self.poll_read(cx) {
            return Poll::Ready(end);
        }
        let reading_paused = self.replies.len() >= MAX_REPLIES;
        if let Some(end) = self.poll_write(cx) {
            return Poll::Ready(end);
        }
        if reading_paused && self.replies.len() < MAX_REPLIES {
            // The socket was not polled for reading, so nothing would wake
            // this session for the client's next message: come back now.
            cx.waker().wake_by_ref();
        }
        if poll_timer(&mut self.incomplete, cx) {
            return Poll::Ready(self.refuse(
                WsRejectReason::Incomplete,
                CloseCode::Policy,
                "message not finished in time",
            ));
        }
        if poll_timer(&mut self.stalled, cx) {
            self.state.metrics.ws_rejected(WsRejectReason::NotReading);
            return Poll::Ready(End::Drop);
        }
        Poll::Pending
    }

    /// Reads client messages until none is ready, or until answers pile up.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Option<End> {
        while self.replies.len() < MAX_REPLIES {
            // One publish at a time, so answers keep the messages' order.
            if let Some(publishing) = self.publishing.as_mut() {
                let Poll::Ready(answer) = publishing.as_mut().poll(cx) else {
                    return None;
                };
                self.publishing = None;
                self.reply(answer);
                continue;
            }
            match Pin::new(&mut self.ws).poll_next(cx) {
                Poll::Pending => {
                    // Judged by the frames read, not by what tungstenite
                    // yielded: a ping between fragments, or a whole
                    // message read with the start of the next, finishes
                    // nothing.
                    if !self.ws.get_ref().framing.unfinished() {
                        self.incomplete = None;
                    } else if self.incomplete.is_none() {
                        let timeout = self.state.config.body_timeout;
                        self.incomplete = Some(Box::pin(tokio::time::sleep(timeout)));
                    }
                    return None;
                }
                Poll::Ready(None) => return Some(End::Gone),
                Poll::Ready(Some(Err(e))) => return Some(self.read_error(e)),
                Poll::Ready(Some(Ok(message))) => {
                    if let Some(end) = self.on_message(message) {
                        return Some(end);
                    }
                }
            }
        }
        // Reading waits for the client to take its answers: the rest of a
        // message may be waiting in the socket, so the clock is not its.
        self.incomplete = None;
        None
    }

    fn on_message(&mut self, message: Message) -> Option<End> {
        match message {
            Message::Text(text) => self.on_text(&text),
            Message::Binary(_) => {
                self.state.metrics.ws_rejected(WsRejectReason::Binary);
                self.reply(message::error_text(
                    "binary_message",
                    "messages are JSON text: {\"type\":\"publish\",\"channel\":\"…\",\"data\":…}",
                ));
            }
            Message::Pong(_) => self.unanswered = 0,
            Message::Ping(_) => {
                // tungstenite answers it; only the rate is ours to watch.
                let now = Instant::now();
                if now.duration_since(self.pings.0) >= Duration::from_secs(1) {
                    self.pings = (now, 0);
                }
                self.pings.1 += 1;
                if self.pings.1 > MAX_PINGS_PER_SECOND {
                    return Some(self.refuse(
                        WsRejectReason::PingFlood,
                        CloseCode::Policy,
                        "too many pings",
                    ));
                }
            }
            // The peer closes; tungstenite queued the answer.
            Message::Close(_) => return Some(End::Gone),
            Message::Frame(_) => {}
        }
        None
    }

    /// A client text message: a publish, answered either way.
    fn on_text(&mut self, text: &str) {
        let max = self.state.config.max_event_bytes;
        match message::parse_publish(text, max) {
            Ok((item, key)) => {
                // The upgrade's token (header, query or cookie) authorizes
                // the socket's publishes (SPEC §10), with the same grants as
                // `POST /publish`.
                if let Err(denied) = self
                    .access
                    .check_publish(std::slice::from_ref(&item.channel))
                {
                    let e = ApiError::from(denied);
                    self.state.metrics.rejected(match e {
                        ApiError::Unauthorized { .. } => RejectReason::Unauthorized,
                        _ => RejectReason::Forbidden,
                    });
                    self.reply(message::error(&e));
                    return;
                }
                // The same key space and rules as `POST /publish`, the key
                // taken in the table when the publish starts (one at a time).
                let keyed = key.map(|k| (k, principal(&self.access).map(str::to_owned)));
                let state = self.state.clone();
                self.publishing = Some(Box::pin(async move {
                    let begun = match &keyed {
                        None => None,
                        Some((key, [a, b])) => match begin_key_of(&state, key, &[a, b]) {
                            Ok(begun) => begun,
                            Err(e) => {
                                state.metrics.rejected(e.reject_reason());
                                return message::error(&e);
                            }
                        },
                    };
                    let fingerprint = message::fingerprint(&item);
                    match publish_keyed(&state, vec![item], begun, || fingerprint).await {
                        Ok(answer) => message::published(&answer.published[0], answer.replayed),
                        Err(e) => {
                            // The channel limit, or the log cannot take
                            // events now (disk full, Redis down).
                            state.metrics.rejected(e.reject_reason());
                            message::error(&e)
                        }
                    }
                }));
            }
            Err((why, e)) => {
                self.state.metrics.ws_rejected(match why {
                    Refused::NotJson => WsRejectReason::NotJson,
                    Refused::BadMessage => WsRejectReason::BadMessage,
                    Refused::BadPublish => WsRejectReason::BadPublish,
                });
                self.reply(message::error(&e));
            }
        }
    }

    fn reply(&mut self, text: Utf8Bytes) {
        self.replies.push_back(Message::Text(text));
    }

    fn read_error(&mut self, e: WsError) -> End {
        match e {
            WsError::Capacity(_) => self.refuse(
                WsRejectReason::TooLarge,
                CloseCode::Size,
                "message too large",
            ),
            WsError::Utf8(_) => self.refuse(
                WsRejectReason::Protocol,
                CloseCode::Invalid,
                "text message is not UTF-8",
            ),
            WsError::Protocol(_) => self.refuse(
                WsRejectReason::Protocol,
                CloseCode::Protocol,
                "WebSocket protocol error",
            ),
            _ => End::Gone,
        }
    }

    fn refuse(&self, reason: WsRejectReason, code: CloseCode, why: &'static str) -> End {
        self.state.metrics.ws_rejected(reason);
        End::Close(code, why)
    }

    /// Writes answers, then what the core has ready, then flushes.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Option<End> {
        let mut written = 0;
        loop {
            match Pin::new(&mut self.ws).poll_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(_)) => return Some(End::Gone),
                Poll::Pending => {
                    self.stall();
                    return None;
                }
            }
            let message = match self.replies.pop_front() {
                Some(reply) => reply,
                None => match self.core.poll_next(cx) {
                    Poll::Ready(Some(item)) => match self.encode(item) {
                        Ok(message) => message,
                        Err(end) => return Some(end),
                    },
                    Poll::Ready(None) if self.ended.is_some() => {
                        let why = self.ended.unwrap_or_default();
                        return Some(End::Close(CloseCode::Policy, why));
                    }
                    Poll::Ready(None) => {
                        return Some(End::Close(CloseCode::Away, "server shutting down"))
                    }
                    Poll::Pending => break,
                },
            };
            if Pin::new(&mut self.ws).start_send(message).is_err() {
                return Some(End::Gone);
            }
            self.unflushed = true;
            written += 1;
            if written == BATCH {
                cx.waker().wake_by_ref();
                break;
            }
        }
        if self.unflushed {
            match Pin::new(&mut self.ws).poll_flush(cx) {
                Poll::Ready(Ok(())) => {
                    self.unflushed = false;
                    self.stalled = None;
                }
                Poll::Ready(Err(_)) => return Some(End::Gone),
                Poll::Pending => self.stall(),
            }
        }
        None
    }

    fn stall(&mut self) {
        if self.stalled.is_none() {
            let limit = self.state.config.heartbeat * 2;
            self.stalled = Some(Box::pin(tokio::time::sleep(limit)));
        }
    }

    fn encode(&mut self, item: Item) -> Result<Message, End> {
        Ok(match item {
            Item::Event { event, channel } => {
                Message::Text(message::event(&event, self.core.channel(channel)))
            }
            Item::Notice(notice) => Message::Text(message::notice(&notice)),
            Item::Heartbeat => {
                if self.unanswered >= 2 {
                    return Err(self.refuse(
                        WsRejectReason::PingTimeout,
                        CloseCode::Policy,
                        "no answer to two pings",
                    ));
                }
                self.unanswered += 1;
                Message::Ping(Default::default())
            }
            Item::Expired { exp } => {
                self.ended = Some("token expired");
                Message::Text(message::expired(exp, self.core.channel(0)))
            }
            Item::Disconnected { reason } => {
                self.ended = Some(reason.label());
                Message::Text(message::disconnected(reason.label(), self.core.channel(0)))
            }
        })
    }

    async fn finish(&mut self, end: End) {
        match end {
            End::Close(code, reason) => {
                let frame = CloseFrame {
                    code,
                    reason: reason.into(),
                };
                let _ = tokio::time::timeout(CLOSE_WAIT, async {
                    if self.ws.send(Message::Close(Some(frame))).await.is_ok() {
                        // The peer's answer ends the closing handshake.
                        while let Some(Ok(_)) = self.ws.next().await {}
                    }
                })
                .await;
            }
            End::Gone => {
                let _ = tokio::time::timeout(CLOSE_WAIT, self.ws.flush()).await;
            }
            End::Drop => {}
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.state.metrics.streams_ws.dec();
    }
}

/// Polls an armed timer; true once it fired (and disarms it).
fn poll_timer(timer: &mut Option<Pin<Box<Sleep>>>, cx: &mut Context<'_>) -> bool {
    let fired = timer
        .as_mut()
        .is_some_and(|sleep| sleep.as_mut().poll(cx).is_ready());
    if fired {
        *timer = None;
    }
    fired
}
