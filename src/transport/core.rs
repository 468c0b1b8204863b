//! The subscription core: what one subscriber is owed, in order, whatever
//! the transport.
//!
//! [`Subscriber`] yields typed [`Item`]s: the backlog (gap notices, then
//! replayed events), then live events merged across channels in id order,
//! a catch-up from history after falling behind, and a heartbeat when
//! nothing was written for `--heartbeat`. The SSE body and the WebSocket
//! session only encode and write what it yields. It is polled, not a task:
//! the SSE body is polled by hyper directly, so an event stream costs no
//! task and no channel between a task and its connection.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::Stream;

use crate::domain::{ChannelName, EventId};
use crate::history::{Event, Notice};
use crate::hub::streams::Ticket;
use crate::hub::{Backlog, Hub, Membership, Source, Subscription};
use crate::metrics::Metrics;
use crate::revocation::{Holder, Reason};

/// What a subscriber needs besides its subscription.
pub struct StreamContext {
    pub hub: Arc<Hub>,
    pub metrics: Arc<Metrics>,
    pub heartbeat: Duration,
    /// `--heartbeat-event`: an SSE heartbeat is an event, not a comment (a
    /// WebSocket's stays a ping).
    pub heartbeat_event: bool,
    /// When the stream's token expires, if it was opened with one.
    pub expiry: Option<Expiry>,
    /// Who holds the stream (its JWT's `sub`, `jti`, `iat`), for
    /// disconnects; taken when the subscriber registers.
    pub holder: Option<Holder>,
}

impl StreamContext {
    /// The context of a stream (or WebSocket) opened by a request with
    /// `access`: it ends at the token's expiry, if it has one.
    pub fn new(state: &crate::state::State, access: &crate::auth::Access) -> StreamContext {
        StreamContext {
            hub: state.hub.clone(),
            metrics: state.metrics.clone(),
            heartbeat: state.config.heartbeat,
            heartbeat_event: state.config.heartbeat_event,
            expiry: access
                .expires_at()
                .zip(access.deadline())
                .map(|(exp, at)| Expiry { exp, at }),
            holder: access.holder(),
        }
    }
}

/// A token's expiry: at `at` the subscriber yields [`Item::Expired`] and
/// ends.
#[derive(Debug, Clone, Copy)]
pub struct Expiry {
    /// The token's `exp` (Unix seconds), told to the client.
    pub exp: u64,
    /// `exp` on this process's clock, no later than `exp`.
    pub at: Instant,
}

/// One thing a subscriber is owed next.
#[derive(Debug)]
pub enum Item {
    /// An event, live or replayed, of the `channel`-th channel subscribed
    /// to (see [`Subscriber::channel`]); or a presence notice shared by the
    /// channel's streams (`herald.join`, `herald.leave`: see
    /// [`Event::is_notice`]), encoded once like an event but without an id.
    Event { event: Event, channel: usize },
    /// A `herald.*` notice for this subscriber alone: a gap, before the
    /// events that follow it, or a `herald.presence` snapshot.
    Notice(Notice),
    /// Nothing was written for `--heartbeat`: write something that keeps
    /// proxies (and, on a WebSocket, the peer check) going.
    Heartbeat,
    /// The token reached its `exp`: the last item; the transport says so
    /// (`herald.expired`, no id) and ends.
    Expired { exp: u64 },
    /// A disconnect named this stream (SPEC §11): the last item; the
    /// transport says so (`herald.disconnected`, no id) and ends.
    Disconnected { reason: Reason },
}

/// Items a burst may yield between two polls of the expiry timer.
const EXPIRY_EVERY: u32 = 32;

pub struct Subscriber {
    /// Gap notices and replayed events, yielded before any live event.
    backlog: VecDeque<Backlog>,
    channels: Vec<Channel>,
    ctx: StreamContext,
    /// Fires when nothing was written for `heartbeat`; re-armed lazily from
    /// `last_write` so a busy stream does not touch the timer per event.
    heartbeat: Pin<Box<Sleep>>,
    /// Fires at the token's expiry (`ctx.expiry`). Polled before anything
    /// else on the first poll of each wake-up, every [`EXPIRY_EVERY`] items
    /// of a burst, and before going idle (which registers the waker), so a
    /// busy stream ends on time too without paying a timer poll per event
    /// (a waker registration each: about 5 % of fan-out CPU when it did).
    /// One timer per stream, beside the heartbeat: no sweep over streams.
    expiry: Option<Pin<Box<Sleep>>>,
    /// Items yielded since the expiry timer was last polled.
    since_expiry_check: u32,
    /// When the stream last went idle after writing: the clock is read once
    /// per wake-up that wrote something, not once per frame.
    last_write: Instant,
    /// Something was yielded since `last_write` was taken.
    wrote: bool,
    /// Live events yielded since the shared counter was last updated;
    /// batching keeps the hot path off a contended atomic.
    delivered: u64,
    /// The hub closed its channels (shutdown): nothing more will come.
    done: bool,
    /// Its member's connection on presence channels, counted out when the
    /// subscriber is dropped (the stream or socket ended).
    _membership: Option<Membership>,
    /// Its entry among the hub's open streams: a disconnect marks it and
    /// wakes the stream. Checked whenever the expiry timer is.
    ticket: Arc<Ticket>,
}

/// One subscribed channel of a stream.
struct Channel {
    name: ChannelName,
    receiver: BroadcastStream<Event>,
    /// Events taken from the receiver (or from history after a lag) and not
    /// yielded yet, in id order. The merge looks at the head of each.
    ready: VecDeque<Ready>,
    /// The id up to which this stream has every event of the channel it is
    /// owed: where a catch-up after lag starts.
    last_id: EventId,
}

enum Ready {
    Live(Event),
    /// From history, after this subscriber fell behind.
    Replayed(Event),
    /// A `herald.gap` notice, yielded just before the events after the hole.
    Gap(Notice),
    /// A fresh `herald.presence` snapshot after a lag: the joins and leaves
    /// missed are not retained.
    Presence(Notice),
}

impl Ready {
    /// Merge order: a gap notice goes before anything else of its channel,
    /// and sorts first overall so it is never held back behind another
    /// channel's events.
    fn order(&self) -> Option<EventId> {
        match self {
            Ready::Live(e) | Ready::Replayed(e) => Some(e.id),
            Ready::Gap(_) | Ready::Presence(_) => None,
        }
    }
}

impl Subscriber {
    pub fn new(sub: Subscription, mut ctx: StreamContext) -> Subscriber {
        let names = sub.sources.iter().map(|s| s.channel.clone()).collect();
        let ticket = ctx.hub.register(ctx.holder.take(), names);
        let channels = sub
            .sources
            .into_iter()
            .map(
                |Source {
                     channel,
                     receiver,
                     last_id,
                 }| Channel {
                    name: channel,
                    receiver: BroadcastStream::new(receiver),
                    // Room for one: an idle stream rarely holds more, and
                    // the default first growth (4 slots) would keep 224
                    // bytes per stream for good. Bursts still grow it.
                    ready: VecDeque::with_capacity(1),
                    last_id,
                },
            )
            .collect();
        ctx.metrics.streams_open.inc();
        let now = Instant::now();
        Subscriber {
            _membership: sub.membership,
            backlog: sub.backlog.into(),
            channels,
            heartbeat: Box::pin(tokio::time::sleep_until(now + ctx.heartbeat)),
            expiry: ctx.expiry.map(|e| Box::pin(tokio::time::sleep_until(e.at))),
            since_expiry_check: 0,
            last_write: now,
            wrote: false,
            delivered: 0,
            done: false,
            ctx,
            ticket,
        }
    }

    /// The name of the `i`-th channel subscribed to.
    pub fn channel(&self, i: usize) -> &ChannelName {
        &self.channels[i].name
    }

    /// The next item, or `None` once the hub closed the channels. `Pending`
    /// means the writer should flush what it has: the heartbeat clock counts
    /// from there.
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        // `wrote` is false on the first poll after going idle.
        if !self.wrote || self.since_expiry_check >= EXPIRY_EVERY {
            if let Some(expired) = self.poll_expiry(cx) {
                return expired;
            }
        }
        self.since_expiry_check += 1;
        if let Some(item) = self.backlog.pop_front() {
            if self.backlog.is_empty() {
                // Replay is over: give its buffer back (once per stream).
                self.backlog = VecDeque::new();
            }
            self.wrote = true;
            return Poll::Ready(Some(match item {
                Backlog::Presence(snapshot) => Item::Notice(snapshot),
                Backlog::Gap(notice) => {
                    self.ctx.metrics.gaps.inc();
                    Item::Notice(notice)
                }
                Backlog::Replayed { channel, event } => {
                    self.ctx.metrics.events_replayed.inc();
                    Item::Event { event, channel }
                }
            }));
        }
        match self.poll_live(cx) {
            Poll::Ready(Some(item)) => {
                self.wrote = true;
                return Poll::Ready(Some(item));
            }
            Poll::Ready(None) => {
                self.done = true;
                return Poll::Ready(None);
            }
            Poll::Pending => self.flush_delivered(),
        }
        if self.wrote {
            // The writer sends what it was given as soon as this is
            // pending, so "now" is when those frames go out.
            self.last_write = Instant::now();
            self.wrote = false;
        }
        // Idle. The timer is only re-armed when it fires: if something was
        // written since it was set, it is pushed to `heartbeat` after that
        // write; otherwise the heartbeat is due now. So a busy stream costs
        // the timer nothing per event.
        while self.heartbeat.as_mut().poll(cx).is_ready() {
            let due = self.last_write + self.ctx.heartbeat;
            if due <= Instant::now() {
                self.last_write = Instant::now();
                self.heartbeat
                    .as_mut()
                    .reset(self.last_write + self.ctx.heartbeat);
                return Poll::Ready(Some(Item::Heartbeat));
            }
            self.heartbeat.as_mut().reset(due);
        }
        if let Some(expired) = self.poll_expiry(cx) {
            return expired;
        }
        // Going idle: a disconnect must wake this stream.
        if let Some(reason) = self.ticket.poll_ended(cx.waker()) {
            return self.disconnected(reason);
        }
        Poll::Pending
    }

    fn disconnected(&mut self, reason: Reason) -> Poll<Option<Item>> {
        self.done = true;
        self.ctx.metrics.disconnected(reason);
        Poll::Ready(Some(Item::Disconnected { reason }))
    }

    /// Checks whether a disconnect named this stream, then polls the expiry
    /// timer: `Some` (the last item) once either ends the stream.
    fn poll_expiry(&mut self, cx: &mut Context<'_>) -> Option<Poll<Option<Item>>> {
        self.since_expiry_check = 0;
        if let Some(reason) = self.ticket.ended() {
            return Some(self.disconnected(reason));
        }
        let (timer, expiry) = (self.expiry.as_mut()?, self.ctx.expiry?);
        if timer.as_mut().poll(cx).is_pending() {
            return None;
        }
        self.done = true;
        Some(Poll::Ready(Some(Item::Expired { exp: expiry.exp })))
    }

    pub fn metrics(&self) -> &Metrics {
        &self.ctx.metrics
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The next live item, merged across channels in id order.
    ///
    /// Correctness of the merge rests on the hub's single lock: events are
    /// sent in id order, so an event smaller than a head we hold was sent
    /// before that head, and is in its receiver's queue by the time the head
    /// is taken. One pass over the receivers is not enough: a receiver found
    /// empty early in the pass may be sent a smaller event before a later
    /// receiver of the same pass yields a larger one (the chaos test caught
    /// this as ids going backwards on a multi-channel stream, which a client
    /// that reconnects with the larger id turns into a silent loss). So the
    /// empty queues are polled again until a whole pass takes nothing: every
    /// head was then taken before that last pass, and every empty queue was
    /// polled after. Each extra pass fills a queue that was empty, so at most
    /// there is one pass more than there are channels.
    fn poll_live(&mut self, cx: &mut Context<'_>) -> Poll<Option<Item>> {
        loop {
            let mut took = false;
            for i in 0..self.channels.len() {
                if self.channels[i].ready.is_empty() {
                    if !self.fill(i, cx) {
                        return Poll::Ready(None);
                    }
                    took |= !self.channels[i].ready.is_empty();
                }
            }
            if !took {
                break;
            }
        }
        let Some(next) = self
            .channels
            .iter()
            .enumerate()
            .filter_map(|(i, ch)| ch.ready.front().map(|r| (r.order(), i)))
            .min()
            .map(|(_, i)| i)
        else {
            return Poll::Pending;
        };
        let channel = &mut self.channels[next];
        let item = match channel.ready.pop_front().expect("picked a non-empty queue") {
            Ready::Live(event) => {
                // A presence notice's id is its place in the id order:
                // everything of the channel up to it came before it.
                channel.last_id = event.id;
                self.delivered += u64::from(!event.is_notice());
                Item::Event {
                    event,
                    channel: next,
                }
            }
            Ready::Replayed(event) => {
                channel.last_id = event.id;
                self.ctx.metrics.events_replayed.inc();
                Item::Event {
                    event,
                    channel: next,
                }
            }
            Ready::Gap(notice) => {
                self.ctx.metrics.gaps.inc();
                Item::Notice(notice)
            }
            Ready::Presence(snapshot) => Item::Notice(snapshot),
        };
        Poll::Ready(Some(item))
    }

    /// Takes what the receiver of channel `i` has ready, if anything. After a
    /// lag, swaps in a new receiver and queues the catch-up from history.
    /// Returns false when the stream must end.
    fn fill(&mut self, i: usize, cx: &mut Context<'_>) -> bool {
        let channel = &mut self.channels[i];
        loop {
            match Pin::new(&mut channel.receiver).poll_next(cx) {
                Poll::Ready(Some(Ok(event))) => {
                    channel.ready.push_back(Ready::Live(event));
                    return true;
                }
                Poll::Pending => return true,
                // The hub closed the channel: shutdown.
                Poll::Ready(None) => return false,
                Poll::Ready(Some(Err(BroadcastStreamRecvError::Lagged(_)))) => {
                    self.ctx.metrics.slow_subscribers_cut.inc();
                    let Some(catch_up) = self.ctx.hub.catch_up(&channel.name, channel.last_id)
                    else {
                        return false;
                    };
                    channel.receiver = BroadcastStream::new(catch_up.receiver);
                    channel.ready.clear();
                    channel.ready.extend(catch_up.presence.map(Ready::Presence));
                    channel.ready.extend(catch_up.gap.map(Ready::Gap));
                    channel
                        .ready
                        .extend(catch_up.events.into_iter().map(Ready::Replayed));
                    if !channel.ready.is_empty() {
                        return true;
                    }
                    // Nothing retained after our last id: poll the new
                    // receiver so it registers our waker.
                }
            }
        }
    }

    fn flush_delivered(&mut self) {
        if self.delivered > 0 {
            self.ctx.metrics.events_delivered.inc_by(self.delivered);
            self.delivered = 0;
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.ctx.hub.unregister(&self.ticket);
        self.flush_delivered();
        self.ctx.metrics.streams_open.dec();
    }
}
