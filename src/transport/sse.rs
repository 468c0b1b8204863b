//! The event stream body: the SSE writer over the subscription core.
//!
//! [`EventStream`] is an [`http_body::Body`] polled directly by hyper: no
//! task per subscriber, no channel between a task and the connection. Every
//! event frame it yields is a clone of bytes encoded once at publish.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::hub::Subscription;
use crate::sse;
use crate::transport::core::{Item, Subscriber};

pub use crate::transport::core::StreamContext;

pub struct EventStream {
    /// The `retry:` field and opening comment, written first.
    preamble: Option<Bytes>,
    /// `--heartbeat-event`.
    heartbeat_event: bool,
    core: Subscriber,
}

impl EventStream {
    pub fn new(preamble: Bytes, sub: Subscription, ctx: StreamContext) -> EventStream {
        ctx.metrics.streams_sse.inc();
        EventStream {
            preamble: Some(preamble),
            heartbeat_event: ctx.heartbeat_event,
            core: Subscriber::new(sub, ctx),
        }
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
        if let Some(preamble) = this.preamble.take() {
            return Poll::Ready(Some(Ok(Frame::data(preamble))));
        }
        let heartbeat_event = this.heartbeat_event;
        this.core.poll_next(cx).map(|item| {
            item.map(|item| {
                Ok(Frame::data(match item {
                    Item::Event { event, .. } => event.frame,
                    Item::Notice(notice) => sse::notice(&notice),
                    Item::Heartbeat => sse::heartbeat(heartbeat_event),
                    Item::Expired { exp } => sse::expired(exp),
                    Item::Disconnected { reason } => sse::disconnected(reason.label()),
                }))
            })
        })
    }

    fn is_end_stream(&self) -> bool {
        self.core.is_done()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        self.core.metrics().streams_sse.dec();
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
    use crate::domain::{ChannelName, EventId, EventType, Resume};
    use crate::history::HistoryLimits;
    use crate::hub::Hub;
    use crate::hub::HubConfig;
    use crate::log::{memory, PublishItem};
    use crate::metrics::Metrics;
    use crate::sse::PendingEvent;
    use crate::transport::core::Expiry;
    use http_body_util::BodyExt;
    use std::sync::Arc;
    use tokio::time::Instant;

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
                age: None,
            },
            max_channels: 100,
            stream_buffer,
            channel_ttl: Duration::from_secs(3600),
            presence: crate::hub::presence::PresenceConfig::default(),
        };
        Fixture {
            hub: Arc::new(Hub::new(config)),
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
                heartbeat_event: false,
                expiry,
                holder: None,
            };
            EventStream::new(Bytes::from_static(b"retry: 1\n\n"), sub, ctx)
        }

        fn publish(&self, channel: &str, data: &str) -> EventId {
            let item = PublishItem {
                channel: ChannelName::parse(channel).unwrap(),
                event: PendingEvent::encode(None::<&EventType>, data),
                data_len: data.len(),
            };
            memory::publish(&self.hub, vec![item]).unwrap()[0].id
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

    fn channel_order(channel: &str) -> crate::revocation::Disconnect {
        crate::revocation::Disconnect {
            sub: None,
            channel: ChannelName::parse(channel).ok(),
            jti: None,
            revoke: None,
        }
    }

    #[tokio::test]
    async fn an_idle_stream_is_woken_and_ended_by_a_disconnect() {
        let f = fixture(10, 16);
        let mut stream = f.stream(&["a", "b"], Resume::Live);
        next(&mut stream).await;
        // Idle, waiting in a task: only the disconnect's wake can end it.
        let reader = tokio::spawn(async move {
            let last = next(&mut stream).await;
            (last, stream.frame().await.is_none(), stream)
        });
        tokio::task::yield_now().await;
        assert_eq!(f.hub.apply_disconnect(&channel_order("b")), 1);
        let (last, ended, stream) = tokio::time::timeout(Duration::from_secs(10), reader)
            .await
            .expect("woken")
            .unwrap();
        assert_eq!(
            last,
            "event: herald.disconnected\ndata: {\"reason\":\"disconnected\"}\n\n"
        );
        assert!(ended, "the stream ends after it");
        drop(stream);
        assert_eq!(
            f.hub.apply_disconnect(&channel_order("b")),
            0,
            "unregistered"
        );
    }

    #[tokio::test]
    async fn a_busy_stream_still_ends_soon_after_a_disconnect() {
        let f = fixture(1000, 1000);
        let mut stream = f.stream(&["a"], Resume::Live);
        next(&mut stream).await;
        for i in 0..100 {
            f.publish("a", &i.to_string());
        }
        next(&mut stream).await;
        f.hub.apply_disconnect(&channel_order("a"));
        let mut frames = 0;
        while !next(&mut stream)
            .await
            .starts_with("event: herald.disconnected\n")
        {
            frames += 1;
        }
        assert!(frames <= 32, "ended after {frames} more events, not 99");
        assert!(stream.frame().await.is_none());
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
