//! One subscriber's response body: preamble, backlog, live events merged
//! across channels in id order, heartbeats, catching up after lag, ending
//! at the token's expiry, and ending on shutdown.
//!
//! [`EventStream`] is an [`http_body::Body`] polled directly by hyper: no
//! task per subscriber, no channel between a task and the connection. Every
//! frame it yields is a clone of bytes encoded once at publish.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::Stream;

use crate::domain::{ChannelName, EventId};
use crate::history::Event;
use crate::hub::{Backlog, Hub, Membership, Source, Subscription};
use crate::metrics::Metrics;
use crate::sse;

/// What a stream needs besides its subscription.
pub struct StreamContext {
    pub hub: Arc<Hub>,
    pub metrics: Arc<Metrics>,
    pub heartbeat: Duration,
    /// When the stream's token expires, if it was opened with one.
    pub expiry: Option<Expiry>,
}

/// A token's expiry: at `at` the stream writes `herald.expired` and ends.
#[derive(Debug, Clone, Copy)]
pub struct Expiry {
    /// The token's `exp` (Unix seconds), told to the client.
    pub exp: u64,
    /// `exp` on this process's clock, no later than `exp`.
    pub at: Instant,
}

pub struct EventStream {
    /// The `retry:` field and opening comment, written first.
    preamble: Option<Bytes>,
    /// Gap notices and replayed events, written before any live event.
    backlog: VecDeque<Backlog>,
    channels: Vec<Channel>,
    ctx: StreamContext,
    /// Fires when nothing was written for `heartbeat`; re-armed lazily from
    /// `last_write` so a busy stream does not touch the timer per event.
    heartbeat: Pin<Box<Sleep>>,
    /// Fires at the token's expiry (`ctx.expiry`); checked on every poll,
    /// before anything else is written, so a busy stream ends on time too.
    /// One timer per stream, beside the heartbeat: no sweep over streams.
    expiry: Option<Pin<Box<Sleep>>>,
    /// When the stream last went idle after writing: the clock is read once
    /// per wake-up that wrote something, not once per frame.
    last_write: Instant,
    /// Something was written since `last_write` was taken.
    wrote: bool,
    /// Live events written since the shared counter was last updated;
    /// batching keeps the hot path off a contended atomic.
    delivered: u64,
    /// The stream ended: the hub closed its channels (shutdown), so graceful
    /// shutdown is never held up by an open stream.
    done: bool,
    /// Its member's connection on presence channels, counted out when the
    /// stream is dropped.
    _membership: Option<Membership>,
}

/// One subscribed channel of a stream.
struct Channel {
    name: ChannelName,
    receiver: BroadcastStream<Event>,
    /// Events taken from the receiver (or from history after a lag) and not
    /// written yet, in id order. The merge looks at the head of each.
    ready: VecDeque<Ready>,
    /// The id up to which this stream has every event of the channel it is
    /// owed: where a catch-up after lag starts.
    last_id: EventId,
}

enum Ready {
    Live(Event),
    /// From history, after this subscriber fell behind.
    Replayed(Event),
    /// A `herald.gap` notice, written just before the events after the hole.
    Gap(Bytes),
    /// A fresh `herald.presence` snapshot after a lag: the joins and leaves
    /// missed are not retained.
    Presence(Bytes),
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

impl EventStream {
    pub fn new(preamble: Bytes, sub: Subscription, ctx: StreamContext) -> EventStream {
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
                    ready: VecDeque::new(),
                    last_id,
                },
            )
            .collect();
        ctx.metrics.streams_open.inc();
        let now = Instant::now();
        let membership = sub.membership;
        EventStream {
            preamble: Some(preamble),
            backlog: sub.backlog.into(),
            channels,
            heartbeat: Box::pin(tokio::time::sleep_until(now + ctx.heartbeat)),
            expiry: ctx.expiry.map(|e| Box::pin(tokio::time::sleep_until(e.at))),
            last_write: now,
            wrote: false,
            delivered: 0,
            done: false,
            _membership: membership,
            ctx,
        }
    }

    /// The next frame of live traffic, merged across channels in id order.
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
    fn poll_live(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
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
        let frame = match channel.ready.pop_front().expect("picked a non-empty queue") {
            Ready::Live(event) => {
                // A presence notice's id is its place in the id order:
                // everything of the channel up to it came before it.
                channel.last_id = event.id;
                self.delivered += u64::from(!event.is_notice());
                event.frame
            }
            Ready::Replayed(event) => {
                channel.last_id = event.id;
                self.ctx.metrics.events_replayed.inc();
                event.frame
            }
            Ready::Gap(notice) => {
                self.ctx.metrics.gaps.inc();
                notice
            }
            Ready::Presence(snapshot) => snapshot,
        };
        Poll::Ready(Some(frame))
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

    fn wrote(&mut self, frame: Bytes) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.wrote = true;
        Poll::Ready(Some(Ok(Frame::data(frame))))
    }
}

impl Body for EventStream {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        if let Some(preamble) = this.preamble.take() {
            return this.wrote(preamble);
        }
        if let (Some(timer), Some(expiry)) = (this.expiry.as_mut(), this.ctx.expiry) {
            if timer.as_mut().poll(cx).is_ready() {
                this.done = true;
                return Poll::Ready(Some(Ok(Frame::data(sse::expired(expiry.exp)))));
            }
        }
        if let Some(item) = this.backlog.pop_front() {
            let frame = match item {
                Backlog::Presence(b) => b,
                Backlog::Gap(b) => {
                    this.ctx.metrics.gaps.inc();
                    b
                }
                Backlog::Replayed(b) => {
                    this.ctx.metrics.events_replayed.inc();
                    b
                }
            };
            return this.wrote(frame);
        }
        match this.poll_live(cx) {
            Poll::Ready(Some(frame)) => return this.wrote(frame),
            Poll::Ready(None) => {
                this.done = true;
                return Poll::Ready(None);
            }
            Poll::Pending => this.flush_delivered(),
        }
        if this.wrote {
            // hyper writes what it was given as soon as the body is pending,
            // so "now" is when those frames go out.
            this.last_write = Instant::now();
            this.wrote = false;
        }
        // Idle. The timer is only re-armed when it fires: if something was
        // written since it was set, it is pushed to `heartbeat` after that
        // write; otherwise the heartbeat is due now. So a busy stream costs
        // the timer nothing per event.
        while this.heartbeat.as_mut().poll(cx).is_ready() {
            let due = this.last_write + this.ctx.heartbeat;
            if due <= Instant::now() {
                this.last_write = Instant::now();
                this.heartbeat
                    .as_mut()
                    .reset(this.last_write + this.ctx.heartbeat);
                return Poll::Ready(Some(Ok(Frame::data(sse::HEARTBEAT))));
            }
            this.heartbeat.as_mut().reset(due);
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        self.flush_delivered();
        self.ctx.metrics.streams_open.dec();
    }
}

/// A one-frame body for the "come back later" answer to a subscribe that
/// cannot be served: a `retry:` with a random back-off between one and three
/// times `--retry`, so a crowd of rejected browsers does not return at once.
pub fn retry_later(retry: Duration, reason: &str) -> Bytes {
    let factor = 1.0 + 2.0 * fastrand::f64();
    sse::retry_later(retry.mul_f64(factor), reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{EventType, Resume};
    use crate::history::HistoryLimits;
    use crate::hub::{HubConfig, PublishItem};
    use crate::sse::PendingEvent;
    use http_body_util::BodyExt;

    struct Fixture {
        hub: Arc<Hub>,
        metrics: Arc<Metrics>,
    }

    fn fixture(history: usize, stream_buffer: usize) -> Fixture {
        let metrics = Arc::new(Metrics::new());
        let config = HubConfig {
            history: HistoryLimits {
                events: history,
                bytes: 1 << 20,
            },
            max_channels: 100,
            stream_buffer,
            channel_ttl: Duration::from_secs(3600),
            presence: crate::hub::presence::PresenceConfig {
                grace: Duration::from_secs(10),
                max_members: 100,
            },
        };
        Fixture {
            hub: Arc::new(Hub::new(config, metrics.clone())),
            metrics,
        }
    }

    impl Fixture {
        fn stream(&self, channels: &[&str], resume: Resume) -> EventStream {
            self.stream_until(channels, resume, None)
        }

        fn stream_until(
            &self,
            channels: &[&str],
            resume: Resume,
            expiry: Option<Expiry>,
        ) -> EventStream {
            let names: Vec<ChannelName> = channels
                .iter()
                .map(|c| ChannelName::parse(c).unwrap())
                .collect();
            let sub = self.hub.subscribe(&names, resume).unwrap();
            let ctx = StreamContext {
                hub: self.hub.clone(),
                metrics: self.metrics.clone(),
                heartbeat: Duration::from_secs(15),
                expiry,
            };
            EventStream::new(Bytes::from_static(b"retry: 1\n\n"), sub, ctx)
        }

        fn publish(&self, channel: &str, data: &str) -> EventId {
            let item = PublishItem {
                channel: ChannelName::parse(channel).unwrap(),
                event: PendingEvent::encode(None::<&EventType>, data),
                data_len: data.len(),
            };
            self.hub.publish(vec![item]).unwrap()[0].id
        }
    }

    async fn next(stream: &mut EventStream) -> String {
        let frame = stream.frame().await.expect("a frame").unwrap();
        String::from_utf8(frame.into_data().unwrap().to_vec()).unwrap()
    }

    /// Polls once without waiting: the frame if one is ready now.
    fn ready_now(stream: &mut EventStream) -> Option<String> {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        match Pin::new(stream).poll_frame(&mut cx) {
            Poll::Ready(Some(Ok(frame))) => {
                Some(String::from_utf8(frame.into_data().unwrap().to_vec()).unwrap())
            }
            _ => None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn heartbeat_is_written_after_the_idle_period() {
        let f = fixture(10, 16);
        let mut stream = f.stream(&["a"], Resume::Live);
        assert_eq!(next(&mut stream).await, "retry: 1\n\n");
        let start = Instant::now();
        assert_eq!(next(&mut stream).await, ": heartbeat\n\n");
        assert_eq!(start.elapsed(), Duration::from_secs(15));
    }

    #[tokio::test(start_paused = true)]
    async fn heartbeat_is_pushed_back_by_real_events() {
        let f = fixture(10, 16);
        let mut stream = f.stream(&["a"], Resume::Live);
        next(&mut stream).await;
        let start = Instant::now();
        tokio::time::sleep(Duration::from_secs(10)).await;
        f.publish("a", "x");
        assert!(next(&mut stream).await.ends_with("data: x\n\n"));
        assert_eq!(next(&mut stream).await, ": heartbeat\n\n");
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(25),
            "15 s after the event, not after the previous heartbeat"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn stream_ends_when_the_hub_closes() {
        let f = fixture(10, 16);
        let mut stream = f.stream(&["a", "b"], Resume::Live);
        next(&mut stream).await;
        f.hub.close();
        assert!(stream.frame().await.is_none());
        assert!(stream.is_end_stream());
    }

    #[tokio::test(start_paused = true)]
    async fn stream_ends_with_herald_expired_at_the_token_expiry() {
        let f = fixture(10, 16);
        let start = Instant::now();
        let expiry = Expiry {
            exp: 1_767_225_600,
            at: start + Duration::from_secs(40),
        };
        let mut stream = f.stream_until(&["a"], Resume::Live, Some(expiry));
        next(&mut stream).await;
        assert_eq!(next(&mut stream).await, ": heartbeat\n\n");
        assert_eq!(next(&mut stream).await, ": heartbeat\n\n");
        assert_eq!(
            next(&mut stream).await,
            "event: herald.expired\ndata: {\"reason\":\"token_expired\",\"exp\":1767225600}\n\n"
        );
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(40),
            "at expiry, not later"
        );
        assert!(stream.frame().await.is_none(), "the stream ends after it");
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_stream_still_ends_at_expiry() {
        let f = fixture(1000, 1000);
        let start = Instant::now();
        let expiry = Expiry {
            exp: 7,
            at: start + Duration::from_secs(1),
        };
        let mut stream = f.stream_until(&["a"], Resume::Live, Some(expiry));
        next(&mut stream).await;
        for i in 0..100 {
            f.publish("a", &i.to_string());
        }
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(next(&mut stream)
            .await
            .starts_with("event: herald.expired\n"));
        assert!(stream.frame().await.is_none());
    }

    #[tokio::test]
    async fn lagging_subscriber_is_caught_up_from_history_without_loss() {
        let f = fixture(100, 4);
        let mut stream = f.stream(&["a"], Resume::Live);
        next(&mut stream).await;
        let ids: Vec<EventId> = (0..20).map(|i| f.publish("a", &i.to_string())).collect();
        for (i, id) in ids.iter().enumerate() {
            let frame = next(&mut stream).await;
            assert_eq!(frame, format!("id: {id}\ndata: {i}\n\n"));
        }
        assert_eq!(f.metrics.slow_subscribers_cut.get(), 1);
        assert_eq!(f.metrics.gaps.get(), 0);
        assert!(ready_now(&mut stream).is_none(), "nothing twice");
    }

    #[tokio::test]
    async fn lagging_subscriber_gets_a_gap_when_history_lost_events_too() {
        let f = fixture(5, 4);
        let mut stream = f.stream(&["a"], Resume::Live);
        next(&mut stream).await;
        let ids: Vec<EventId> = (0..20).map(|i| f.publish("a", &i.to_string())).collect();
        let gap = next(&mut stream).await;
        assert!(gap.starts_with("event: herald.gap\n"), "{gap}");
        assert!(gap.contains("slow_subscriber"));
        for (i, id) in ids.iter().enumerate().skip(15) {
            assert_eq!(next(&mut stream).await, format!("id: {id}\ndata: {i}\n\n"));
        }
        assert!(ready_now(&mut stream).is_none());
    }

    #[tokio::test]
    async fn multi_channel_lag_keeps_id_order_across_channels() {
        let f = fixture(100, 2);
        let mut stream = f.stream(&["a", "b"], Resume::Live);
        next(&mut stream).await;
        let ids: Vec<EventId> = (0..30)
            .map(|i| f.publish(["a", "b", "a"][i % 3], &i.to_string()))
            .collect();
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(next(&mut stream).await, format!("id: {id}\ndata: {i}\n\n"));
        }
    }
}
