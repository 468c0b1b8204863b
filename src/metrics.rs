//! The Prometheus metrics of SPEC §4, in one place.
//!
//! One [`Metrics`] per server (not process-wide statics, so several servers in
//! one test process keep their own counts). Every series, including each
//! `reason` of `herald_requests_rejected_total`, is registered when the server
//! starts, so a scrape sees all of them from the first request on.

use prometheus::{Encoder, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

/// Why a request was refused: the `reason` label of
/// `herald_requests_rejected_total`. Every refused request is counted once,
/// under one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// Any 400.
    BadRequest,
    NotFound,
    MethodNotAllowed,
    ConnectionLimit,
    ChannelLimit,
    ShuttingDown,
    BodyTooLarge,
    BodyTimeout,
    /// 401: no token where one is needed, or a refused one.
    Unauthorized,
    /// 403: a token that does not cover the channels, or `private-*` with
    /// no key configured.
    Forbidden,
}

impl RejectReason {
    pub const ALL: [RejectReason; 10] = [
        RejectReason::BadRequest,
        RejectReason::NotFound,
        RejectReason::MethodNotAllowed,
        RejectReason::ConnectionLimit,
        RejectReason::ChannelLimit,
        RejectReason::ShuttingDown,
        RejectReason::BodyTooLarge,
        RejectReason::BodyTimeout,
        RejectReason::Unauthorized,
        RejectReason::Forbidden,
    ];

    pub fn label(self) -> &'static str {
        match self {
            RejectReason::BadRequest => "bad_request",
            RejectReason::NotFound => "not_found",
            RejectReason::MethodNotAllowed => "method_not_allowed",
            RejectReason::Unauthorized => "unauthorized",
            RejectReason::Forbidden => "forbidden",
            RejectReason::ConnectionLimit => "connection_limit",
            RejectReason::ChannelLimit => "channel_limit",
            RejectReason::ShuttingDown => "shutting_down",
            RejectReason::BodyTooLarge => "body_too_large",
            RejectReason::BodyTimeout => "body_timeout",
        }
    }
}

pub struct Metrics {
    registry: Registry,
    /// Open TCP connections, rejected ones included while they are answered.
    pub connections_open: IntGauge,
    /// Open event streams.
    pub streams_open: IntGauge,
    /// Channels the hub holds; set from the hub at scrape time.
    pub channels: IntGauge,
    /// Members of presence channels (those in their grace included), summed
    /// over channels; set from the hub at scrape time.
    pub presence_members: IntGauge,
    pub events_published: IntCounter,
    /// Live events handed to subscribers' connections.
    pub events_delivered: IntCounter,
    /// Events sent from history: on resume, and when a slow subscriber is
    /// caught up.
    pub events_replayed: IntCounter,
    /// `herald.gap` notices sent.
    pub gaps: IntCounter,
    /// Times a subscriber fell further behind than its live buffer and had to
    /// be caught up from history.
    pub slow_subscribers_cut: IntCounter,
    rejected: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Metrics {
        let gauge = |name: &str, help: &str| {
            IntGauge::new(name, help).expect("metric names are valid constants")
        };
        let counter = |name: &str, help: &str| {
            IntCounter::new(name, help).expect("metric names are valid constants")
        };
        let metrics = Metrics {
            registry: Registry::new(),
            connections_open: gauge("herald_connections_open", "Open TCP connections."),
            streams_open: gauge("herald_streams_open", "Open event streams."),
            channels: gauge("herald_channels", "Channels held in memory."),
            presence_members: gauge(
                "herald_presence_members",
                "Members of presence channels, summed over channels.",
            ),
            events_published: counter("herald_events_published_total", "Events published."),
            events_delivered: counter(
                "herald_events_delivered_total",
                "Live events written to subscribers.",
            ),
            events_replayed: counter(
                "herald_events_replayed_total",
                "Events written to subscribers from history.",
            ),
            gaps: counter("herald_gaps_total", "herald.gap notices sent."),
            slow_subscribers_cut: counter(
                "herald_slow_subscribers_cut_total",
                "Subscribers that fell behind their live buffer and were caught up from history.",
            ),
            rejected: IntCounterVec::new(
                Opts::new(
                    "herald_requests_rejected_total",
                    "Requests refused, by reason.",
                ),
                &["reason"],
            )
            .expect("metric names are valid constants"),
        };
        let collectors: [Box<dyn prometheus::core::Collector>; 10] = [
            Box::new(metrics.connections_open.clone()),
            Box::new(metrics.streams_open.clone()),
            Box::new(metrics.channels.clone()),
            Box::new(metrics.presence_members.clone()),
            Box::new(metrics.events_published.clone()),
            Box::new(metrics.events_delivered.clone()),
            Box::new(metrics.events_replayed.clone()),
            Box::new(metrics.gaps.clone()),
            Box::new(metrics.slow_subscribers_cut.clone()),
            Box::new(metrics.rejected.clone()),
        ];
        for collector in collectors {
            metrics
                .registry
                .register(collector)
                .expect("each metric is registered once");
        }
        for reason in RejectReason::ALL {
            metrics.rejected.with_label_values(&[reason.label()]);
        }
        metrics
    }

    pub fn rejected(&self, reason: RejectReason) {
        self.rejected.with_label_values(&[reason.label()]).inc();
    }

    /// The text exposition format (version 0.0.4) and its content type.
    pub fn render(&self) -> (String, Vec<u8>) {
        let encoder = TextEncoder::new();
        let mut out = Vec::with_capacity(2048);
        encoder
            .encode(&self.registry.gather(), &mut out)
            .expect("writing to a Vec cannot fail");
        (encoder.format_type().to_owned(), out)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
