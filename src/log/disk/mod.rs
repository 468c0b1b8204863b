//! The disk log (`--data-dir`): every channel's history survives restarts
//! and crashes, and an acknowledged publish is never lost (SPEC §8).
//!
//! - `record`: the record format (length, CRC-32, kind, id, channel, the
//!   encoded SSE frame; or a revocation, SPEC §11) and the file header with
//!   its format version.
//! - `files`: the directory's files (segments, snapshots) and their names.
//! - `writer`: the writer thread, group commit, rolling segments.
//! - `compact`: snapshots that replace old segments, so the directory stays
//!   within about twice the retained bytes plus one segment.
//! - `recover`: startup checks, replay, torn-tail cutting, refusals.
//!
//! Retention on disk follows retention in memory by construction: recovery
//! pushes the records through the same [`crate::history::History`] rules
//! (`--history`, `--history-bytes`, `--history-age`), a channel dropped by
//! `--channel-ttl` is recorded as forgotten, and compaction writes out only
//! what the hub retains.

mod compact;
mod files;
mod record;
mod recover;
mod writer;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::config::{Config, Fsync};
use crate::domain::{ChannelName, EventId};
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::revocation::Disconnect;

use super::{PublishError, PublishItem, Published};
use crate::idempotency::{KeyedRequest, Keys, Mode};
pub use recover::OpenError;
use writer::{Message, Writer};

/// Requests that may wait for the writer; past it, publishers wait to
/// enqueue (back-pressure instead of unbounded memory).
const QUEUE: usize = 8192;

pub struct DiskLog {
    /// Idempotency keys: written with their events, restored at startup.
    pub idempotency_keys: Arc<Keys>,
    queue: mpsc::Sender<Message>,
    retry_after: Duration,
    /// The writer thread, joined by [`DiskLog::close`].
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl DiskLog {
    /// Recovers `--data-dir` into `hub` (before the server serves anything)
    /// and starts the writer thread.
    pub fn open(
        config: &Config,
        hub: Arc<Hub>,
        metrics: Arc<Metrics>,
    ) -> Result<DiskLog, OpenError> {
        let dir: PathBuf = config
            .data_dir
            .clone()
            .expect("DiskLog::open is called with --data-dir");
        let started = Instant::now();
        let lock = recover::check_dir(&dir)?;
        let keys = Keys::new(
            config.idempotency_window,
            config.idempotency_max_keys as usize,
            Mode::Disk,
        );
        let found = {
            let mut applier = hub.applier();
            let window = recover::torn_window(config.max_batch_bytes.max(config.max_event_bytes));
            let found = recover::recover(
                &dir,
                &mut applier,
                hub.revocations(),
                &keys,
                config.history_age,
                window,
            )?;
            applier.raise_last(EventId::new(found.last));
            found
        };
        let segment_bytes = config.segment_bytes as u64;
        let mut closed = found.listing.segments;
        // A segment of an older format is closed, not appended to: an older
        // herald must never meet a record kind it does not know in a file
        // whose header it accepts.
        let reusable = closed.last().is_some_and(|newest| {
            newest.len < segment_bytes && record::version(&newest.path) == Some(record::VERSION)
        });
        let active = if reusable { closed.pop() } else { None };
        let not_writable = |source| OpenError::NotWritable {
            path: dir.clone(),
            source,
        };
        let (file, file_id, file_len) = match active {
            Some(segment) => {
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&segment.path)
                    .map_err(not_writable)?;
                (file, segment.id, segment.len)
            }
            None => {
                let id = hub
                    .last_id()
                    .get()
                    .max(closed.last().map_or(0, |s| s.id + 1));
                let file = files::create_segment(&dir, id).map_err(not_writable)?;
                (file, id, record::HEADER_LEN as u64)
            }
        };
        let snapshot = found.listing.snapshots.last().cloned();
        let on_disk: u64 = closed.iter().chain(&snapshot).map(|f| f.len).sum::<u64>() + file_len;
        metrics.log_bytes.set(on_disk as i64);
        let elapsed = started.elapsed();
        metrics.recovery_seconds.set(elapsed.as_secs_f64());
        tracing::info!(
            data_dir = %dir.display(),
            events = found.events,
            idempotency_keys = keys.len(),
            channels = hub.channel_count(),
            bytes = on_disk,
            torn_tail_cut_bytes = found.cut,
            recovery_ms = elapsed.as_millis() as u64,
            "recovered the event log"
        );

        let (queue, receiver) = mpsc::channel(QUEUE);
        let writer = Writer {
            dir,
            last_issued: hub.last_id(),
            hub,
            keys: keys.clone(),
            metrics,
            fsync: config.fsync == Fsync::Batch,
            segment_bytes,
            retry_after: config.retry,
            file,
            file_id,
            file_len,
            allocated: file_len,
            torn: false,
            closed,
            snapshot,
            compaction: None,
        };
        let writer = std::thread::Builder::new()
            .name("herald-log-writer".into())
            .spawn(move || {
                writer.run(receiver);
                // The directory is free for another server once the writer
                // has stopped.
                drop(lock);
            })
            .map_err(|source| OpenError::NotWritable {
                path: PathBuf::from("(writer thread)"),
                source,
            })?;
        Ok(DiskLog {
            idempotency_keys: keys,
            queue,
            retry_after: config.retry,
            writer: Mutex::new(Some(writer)),
        })
    }

    pub async fn publish(&self, items: Vec<PublishItem>) -> Result<Vec<Published>, PublishError> {
        self.send(items, None).await
    }

    /// Publishes and writes the key in the same group as the events; the
    /// writer keeps it in [`DiskLog::keys`] before answering.
    pub async fn publish_keyed(
        &self,
        items: Vec<PublishItem>,
        request: KeyedRequest,
    ) -> Result<Vec<Published>, PublishError> {
        self.send(items, Some(request)).await
    }

    async fn send(
        &self,
        items: Vec<PublishItem>,
        key: Option<KeyedRequest>,
    ) -> Result<Vec<Published>, PublishError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Message::Publish { items, key, reply })
            .await
            .map_err(|_| self.stopped())?;
        answer.await.map_err(|_| self.stopped())?
    }

    /// Writes `order`'s revocation (if any), then applies it: see
    /// [`crate::log::Log::disconnect`].
    pub async fn disconnect(&self, order: Disconnect) -> Result<usize, PublishError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Message::Disconnect { order, reply })
            .await
            .map_err(|_| self.stopped())?;
        answer.await.map_err(|_| self.stopped())?
    }

    pub async fn forget(&self, channels: Vec<ChannelName>, through: EventId) {
        let _ = self.queue.send(Message::Forget { channels, through }).await;
    }

    /// Lets the writer commit and answer what is queued, then waits until
    /// it has stopped (and any compaction has finished): after this the
    /// directory is quiet and another server may open it.
    pub async fn close(&self) {
        let _ = self.queue.send(Message::Stop).await;
        let writer = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(writer) = writer {
            let _ = tokio::task::spawn_blocking(move || writer.join()).await;
        }
    }

    fn stopped(&self) -> PublishError {
        PublishError::Unavailable {
            retry_after: self.retry_after,
            cause: "the log writer has stopped".into(),
        }
    }
}
