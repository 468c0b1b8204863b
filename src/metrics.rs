//! The Prometheus metrics of SPEC §4, in one place.
//!
//! One [`Metrics`] per server (not process-wide statics, so several servers in
//! one test process keep their own counts). Every series, including each
//! `reason` of `herald_requests_rejected_total`, is registered when the server
//! starts, so a scrape sees all of them from the first request on.

use std::time::Duration;

use crate::revocation::Reason;
use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

/// The `backend` label of `herald_publish_duration_seconds`: which log took
/// the publish (SPEC §15).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Memory,
    Disk,
    Redis,
}

impl Backend {
    pub const ALL: [Backend; 3] = [Backend::Memory, Backend::Disk, Backend::Redis];

    pub fn label(self) -> &'static str {
        match self {
            Backend::Memory => "memory",
            Backend::Disk => "disk",
            Backend::Redis => "redis",
        }
    }
}

/// Buckets of `herald_publish_duration_seconds`: from a memory publish
/// (tens of microseconds) through a disk fsync (milliseconds) and a Redis
/// round trip, up to a body trickled until `--body-timeout`.
const PUBLISH_BUCKETS: [f64; 16] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 10.0,
];

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
    /// The log (disk, Redis) could not take a publish.
    BackendUnavailable,
    /// 401: no token where one is needed, or a refused one.
    Unauthorized,
    /// 403: a token that does not cover the channels, or `private-*` with
    /// no key configured.
    Forbidden,
    /// 422: an idempotency key used for another request.
    IdempotencyKeyReused,
    /// 409: an idempotency key still being published.
    IdempotencyInProgress,
    /// 503: `--idempotency-max-keys` reached.
    IdempotencyKeysFull,
}

impl RejectReason {
    pub const ALL: [RejectReason; 14] = [
        RejectReason::BadRequest,
        RejectReason::NotFound,
        RejectReason::MethodNotAllowed,
        RejectReason::ConnectionLimit,
        RejectReason::ChannelLimit,
        RejectReason::ShuttingDown,
        RejectReason::BodyTooLarge,
        RejectReason::BodyTimeout,
        RejectReason::BackendUnavailable,
        RejectReason::Unauthorized,
        RejectReason::Forbidden,
        RejectReason::IdempotencyKeyReused,
        RejectReason::IdempotencyInProgress,
        RejectReason::IdempotencyKeysFull,
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
            RejectReason::BackendUnavailable => "backend_unavailable",
            RejectReason::IdempotencyKeyReused => "idempotency_key_reused",
            RejectReason::IdempotencyInProgress => "idempotency_in_progress",
            RejectReason::IdempotencyKeysFull => "idempotency_keys_full",
        }
    }
}

/// Why a connection was closed before any request on it could be answered
/// (there is no request to count under `herald_requests_rejected_total`);
/// the `reason` label of `herald_connections_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionRefusal {
    /// Not a TLS client hello (garbage, plain HTTP to the TLS port), or a
    /// handshake that failed.
    TlsHandshake,
    /// A TLS handshake, the first bytes on an `--h2c` port, or an HTTP/2
    /// connection's first stream, not done within `--header-timeout`.
    HandshakeTimeout,
    /// An HTTP/2 connection closed by herald for breaking the protocol or
    /// abusing it (a flood of resets, streams past the limit again and again).
    Http2Protocol,
}

impl ConnectionRefusal {
    pub const ALL: [ConnectionRefusal; 3] = [
        ConnectionRefusal::TlsHandshake,
        ConnectionRefusal::HandshakeTimeout,
        ConnectionRefusal::Http2Protocol,
    ];

    pub fn label(self) -> &'static str {
        match self {
            ConnectionRefusal::TlsHandshake => "tls_handshake",
            ConnectionRefusal::HandshakeTimeout => "handshake_timeout",
            ConnectionRefusal::Http2Protocol => "http2_protocol",
        }
    }
}

/// Why the server refused a WebSocket message or closed a socket; the
/// `reason` label of `herald_ws_rejected_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsRejectReason {
    /// A binary message (answered with an error).
    Binary,
    /// Text that is not JSON (answered with an error).
    NotJson,
    /// JSON of the wrong shape (answered with an error).
    BadMessage,
    /// A publish `POST /publish` would refuse too (answered with an error).
    BadPublish,
    /// A message past the size limit (closed, 1009).
    TooLarge,
    /// A message that never finished (closed, 1008).
    Incomplete,
    /// Too many pings (closed, 1008).
    PingFlood,
    /// Two pings unanswered (closed, 1008).
    PingTimeout,
    /// Did not read what it was sent for two heartbeats (dropped).
    NotReading,
    /// Broke the WebSocket protocol (closed, 1002).
    Protocol,
}

impl WsRejectReason {
    pub const ALL: [WsRejectReason; 10] = [
        WsRejectReason::Binary,
        WsRejectReason::NotJson,
        WsRejectReason::BadMessage,
        WsRejectReason::BadPublish,
        WsRejectReason::TooLarge,
        WsRejectReason::Incomplete,
        WsRejectReason::PingFlood,
        WsRejectReason::PingTimeout,
        WsRejectReason::NotReading,
        WsRejectReason::Protocol,
    ];

    pub fn label(self) -> &'static str {
        match self {
            WsRejectReason::Binary => "binary",
            WsRejectReason::NotJson => "not_json",
            WsRejectReason::BadMessage => "bad_message",
            WsRejectReason::BadPublish => "bad_publish",
            WsRejectReason::TooLarge => "too_large",
            WsRejectReason::Incomplete => "incomplete",
            WsRejectReason::PingFlood => "ping_flood",
            WsRejectReason::PingTimeout => "ping_timeout",
            WsRejectReason::NotReading => "not_reading",
            WsRejectReason::Protocol => "protocol",
        }
    }
}

pub struct Metrics {
    registry: Registry,
    /// Open TCP connections, rejected ones included while they are answered.
    pub connections_open: IntGauge,
    /// Open streams, all transports together.
    pub streams_open: IntGauge,
    /// Open streams by transport (`sse`, `ws`).
    pub streams_sse: IntGauge,
    pub streams_ws: IntGauge,
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
    connections_refused: IntCounterVec,
    /// With `--redis`: 1 while Redis answers this node.
    pub redis_connected: IntGauge,
    /// With `--redis`: times this node lost track of the shared log and
    /// ended its streams so clients resume from Redis.
    pub redis_resyncs: IntCounter,
    /// `fdatasync` calls of the disk log (one per group commit).
    pub log_fsyncs: IntCounter,
    /// Group writes of the disk log.
    pub log_writes: IntCounter,
    /// Writes or syncs of the disk log that failed (a full disk).
    pub log_write_errors: IntCounter,
    /// Snapshots written by the disk log's compaction.
    pub log_compactions: IntCounter,
    /// Bytes in the data directory's log files.
    pub log_bytes: IntGauge,
    /// How long startup recovery of the data directory took.
    pub recovery_seconds: Gauge,
    ws_rejected: IntCounterVec,
    /// With `--jwks-url`: refreshes that failed (the keys in use were kept).
    pub jwks_refresh_failures: IntCounter,
    /// Streams ended by a disconnect (SPEC §11), by reason.
    disconnects: IntCounterVec,
    /// Revocations in force; set from the hub at scrape time.
    pub revocations_active: IntGauge,
    /// HTTP publishes from request to answer, by backend; every answer
    /// counts, refusals included.
    publish_duration: HistogramVec,
    /// When the served certificate expires (Unix seconds): registered only
    /// once a certificate is loaded, so a plain-HTTP node has no series
    /// that an expiry alert would read as "expired in 1970".
    tls_certificate_expiry: IntGauge,
    /// 1 while the backend this node runs takes publishes (memory and disk
    /// always; Redis while it answers), under its `backend` label only.
    backend_up: IntGaugeVec,
    /// Publishes answered with the kept answer of an earlier request with
    /// the same idempotency key (nothing published).
    pub idempotent_replays: IntCounter,
}

impl Metrics {
    pub fn new() -> Metrics {
        let gauge = |name: &str, help: &str| {
            IntGauge::new(name, help).expect("metric names are valid constants")
        };
        let counter = |name: &str, help: &str| {
            IntCounter::new(name, help).expect("metric names are valid constants")
        };
        let transport = IntGaugeVec::new(
            Opts::new(
                "herald_transport_streams_open",
                "Open streams by transport.",
            ),
            &["transport"],
        )
        .expect("metric names are valid constants");
        let metrics = Metrics {
            registry: Registry::new(),
            connections_open: gauge("herald_connections_open", "Open TCP connections."),
            streams_open: gauge(
                "herald_streams_open",
                "Open streams (event streams and WebSockets).",
            ),
            streams_sse: transport.with_label_values(&["sse"]),
            streams_ws: transport.with_label_values(&["ws"]),
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
            connections_refused: IntCounterVec::new(
                Opts::new(
                    "herald_connections_refused_total",
                    "Connections closed before a request: bad or slow TLS handshakes, HTTP/2 abuse.",
                ),
                &["reason"],
            )
            .expect("metric names are valid constants"),
            ws_rejected: IntCounterVec::new(
                Opts::new(
                    "herald_ws_rejected_total",
                    "WebSocket messages refused (answered with an error) and sockets closed for cause.",
                ),
                &["reason"],
            )
            .expect("metric names are valid constants"),
            redis_connected: gauge(
                "herald_redis_connected",
                "1 while Redis answers this node (with --redis).",
            ),
            redis_resyncs: counter(
                "herald_redis_resyncs_total",
                "Times this node lost track of the Redis log and ended its streams.",
            ),
            log_fsyncs: counter(
                "herald_log_fsyncs_total",
                "fdatasync calls of the disk log (one per group of publishes).",
            ),
            log_writes: counter("herald_log_writes_total", "Group writes of the disk log."),
            log_write_errors: counter(
                "herald_log_write_errors_total",
                "Disk log writes or syncs that failed (publishes refused with 503).",
            ),
            log_compactions: counter(
                "herald_log_compactions_total",
                "Snapshots written by the disk log's compaction.",
            ),
            log_bytes: gauge(
                "herald_log_bytes",
                "Bytes in the data directory's log files.",
            ),
            recovery_seconds: Gauge::new(
                "herald_recovery_seconds",
                "How long startup recovery of --data-dir took.",
            )
            .expect("metric names are valid constants"),
            jwks_refresh_failures: counter(
                "herald_jwks_refresh_failures_total",
                "Refreshes of --jwks-url that failed (the keys in use were kept).",
            ),
            disconnects: IntCounterVec::new(
                Opts::new(
                    "herald_disconnects_total",
                    "Streams ended by POST /disconnect, by reason (disconnected, revoked).",
                ),
                &["reason"],
            )
            .expect("metric names are valid constants"),
            revocations_active: gauge(
                "herald_revocations_active",
                "Token revocations in force (POST /disconnect with revoke).",
            ),
            publish_duration: HistogramVec::new(
                HistogramOpts::new(
                    "herald_publish_duration_seconds",
                    "HTTP publishes from request to answer (refusals included), by backend.",
                )
                .buckets(PUBLISH_BUCKETS.to_vec()),
                &["backend"],
            )
            .expect("metric names are valid constants"),
            tls_certificate_expiry: gauge(
                "herald_tls_certificate_expiry_timestamp_seconds",
                "When the served TLS certificate expires, in Unix seconds (--tls-cert or --acme-domain).",
            ),
            backend_up: IntGaugeVec::new(
                Opts::new(
                    "herald_backend_up",
                    "1 while this node's backend (label) takes publishes, else 0.",
                ),
                &["backend"],
            )
            .expect("metric names are valid constants"),
            idempotent_replays: counter(
                "herald_idempotent_replays_total",
                "Publishes answered again from their Idempotency-Key (nothing published).",
            ),
        };
        let collectors: [Box<dyn prometheus::core::Collector>; 25] = [
            Box::new(metrics.publish_duration.clone()),
            Box::new(metrics.backend_up.clone()),
            Box::new(transport),
            Box::new(metrics.ws_rejected.clone()),
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
            Box::new(metrics.connections_refused.clone()),
            Box::new(metrics.redis_connected.clone()),
            Box::new(metrics.redis_resyncs.clone()),
            Box::new(metrics.log_fsyncs.clone()),
            Box::new(metrics.log_writes.clone()),
            Box::new(metrics.log_write_errors.clone()),
            Box::new(metrics.log_compactions.clone()),
            Box::new(metrics.log_bytes.clone()),
            Box::new(metrics.recovery_seconds.clone()),
            Box::new(metrics.disconnects.clone()),
            Box::new(metrics.revocations_active.clone()),
        ];
        metrics
            .registry
            .register(Box::new(metrics.idempotent_replays.clone()))
            .expect("each metric is registered once");
        for collector in collectors {
            metrics
                .registry
                .register(collector)
                .expect("each metric is registered once");
        }
        metrics
            .registry
            .register(Box::new(metrics.jwks_refresh_failures.clone()))
            .expect("each metric is registered once");
        for reason in RejectReason::ALL {
            metrics.rejected.with_label_values(&[reason.label()]);
        }
        for reason in ConnectionRefusal::ALL {
            metrics
                .connections_refused
                .with_label_values(&[reason.label()]);
        }
        for reason in WsRejectReason::ALL {
            metrics.ws_rejected.with_label_values(&[reason.label()]);
        }
        for reason in Reason::ALL {
            metrics.disconnects.with_label_values(&[reason.label()]);
        }
        for backend in Backend::ALL {
            metrics
                .publish_duration
                .with_label_values(&[backend.label()]);
        }
        // process_open_fds, process_max_fds, process_resident_memory_bytes,
        // process_cpu_seconds_total, process_start_time_seconds: what the
        // file-descriptor alert and the memory panel read (Linux only).
        #[cfg(target_os = "linux")]
        metrics
            .registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("the process collector is registered once");
        metrics
    }

    /// Counts one HTTP publish answered after `took`.
    pub fn publish_answered(&self, backend: Backend, took: Duration) {
        self.publish_duration
            .with_label_values(&[backend.label()])
            .observe(took.as_secs_f64());
    }

    /// Sets the state of the backend this node runs (at scrape time, so
    /// the one series is there from the first scrape on).
    pub fn backend_state(&self, backend: Backend, up: bool) {
        self.backend_up
            .with_label_values(&[backend.label()])
            .set(i64::from(up));
    }

    /// Sets when the served certificate expires (Unix seconds), registering
    /// the series the first time.
    pub fn tls_certificate_expires(&self, unix_seconds: i64) {
        if self.tls_certificate_expiry.get() == 0 {
            // Only fails if already registered, which is what we want.
            let _ = self
                .registry
                .register(Box::new(self.tls_certificate_expiry.clone()));
        }
        self.tls_certificate_expiry.set(unix_seconds);
    }

    /// A stream ended for a disconnect.
    pub fn disconnected(&self, reason: Reason) {
        self.disconnects.with_label_values(&[reason.label()]).inc();
    }

    /// How many connections were refused for `reason` so far.
    pub fn connections_refused(&self, reason: ConnectionRefusal) -> u64 {
        self.connections_refused
            .with_label_values(&[reason.label()])
            .get()
    }

    pub fn connection_refused(&self, reason: ConnectionRefusal) {
        self.connections_refused
            .with_label_values(&[reason.label()])
            .inc();
    }

    pub fn rejected(&self, reason: RejectReason) {
        self.rejected.with_label_values(&[reason.label()]).inc();
    }

    pub fn ws_rejected(&self, reason: WsRejectReason) {
        self.ws_rejected.with_label_values(&[reason.label()]).inc();
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
