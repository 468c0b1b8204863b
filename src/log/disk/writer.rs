//! The writer thread: group commit.
//!
//! One OS thread (never a tokio worker: it blocks in `write` and
//! `fdatasync`) owns the active segment. It takes every request queued
//! (up to [`GROUP_REQUESTS`] requests or [`GROUP_BYTES`] of data), numbers
//! them in queue order, writes their records with one `write`, syncs once
//! (`--fsync batch`), and only then applies the events to the hub in id
//! order and answers the publishers. So concurrent publishes share one
//! `fdatasync`, no subscriber sees an event before it is durable, and the
//! order on disk, on every stream and in the answers is the same.
//!
//! The active segment is extended with zeros ahead of the records (up to
//! [`PREALLOCATE`] at a time, never past `--segment-bytes`), so most syncs
//! flush data blocks only: a write that grows the file makes `fdatasync`
//! commit the filesystem's journal too, which on ext4 waits for every other
//! process's metadata changes. Recovery reads a zero tail as the end of the
//! log; the tail is trimmed when a segment is closed.
//!
//! A failed write or sync (a full disk) answers the whole group
//! `Unavailable`, cuts the segment back to its last good length, applies
//! nothing, and the next group tries again: the server recovers by itself
//! when space returns.
//!
//! One file: the thread's loop, a group's write and sync, preallocation,
//! rolling and compaction all act on the one [`Writer`]'s segment, in the
//! order above.

use std::collections::HashSet;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::domain::{ChannelName, EventId};
use crate::history::Event;
use crate::hub::Hub;
use crate::idempotency::{KeyRecord, KeyedRequest, Keys, Row, Slot};
use crate::log::{next_id, PublishError, PublishItem, Published};
use crate::metrics::Metrics;
use crate::revocation::Disconnect;

use super::compact::{self, Compaction};
use super::files;
use super::record::{self, Kind};

/// Most requests committed together.
pub const GROUP_REQUESTS: usize = 4096;
/// Record bytes committed together, past which the writer stops taking
/// requests for the current group (one request may exceed it alone).
pub const GROUP_BYTES: usize = 1 << 20;
/// How far ahead of the records the active segment is zero-filled.
pub const PREALLOCATE: u64 = 4 << 20;
/// Bytes a record adds to an event's data and channel name, about: used to
/// estimate the retained set's size on disk.
pub const RECORD_OVERHEAD: usize = 64;

pub type Reply = oneshot::Sender<Result<Vec<Published>, PublishError>>;

/// The answer to a disconnect: the streams it ended here.
pub type DisconnectReply = oneshot::Sender<Result<usize, PublishError>>;

/// What the writer is asked to do.
pub enum Message {
    Publish {
        items: Vec<PublishItem>,
        /// Its idempotency key, written after its events.
        key: Option<KeyedRequest>,
        reply: Reply,
    },
    /// The reaper dropped these channels when `through` was the newest id.
    Forget {
        channels: Vec<ChannelName>,
        through: EventId,
    },
    /// A disconnect (SPEC §11): its revocation, if any, is written (and
    /// synced) before it is applied to the hub and answered.
    Disconnect {
        order: Disconnect,
        reply: DisconnectReply,
    },
    /// Finish what is queued before this, then stop.
    Stop,
}

impl Message {
    fn data_bytes(&self) -> usize {
        match self {
            Message::Publish { items, .. } => items
                .iter()
                .map(|i| i.event.len_bound() + i.channel.as_str().len() + 32)
                .sum(),
            _ => 64,
        }
    }
}

/// The writer's state; lives on its thread.
pub struct Writer {
    pub dir: PathBuf,
    pub hub: Arc<Hub>,
    /// Where a written key is kept once its group is durable.
    pub keys: Arc<Keys>,
    pub metrics: Arc<Metrics>,
    /// `--fsync batch`: sync before answering.
    pub fsync: bool,
    pub segment_bytes: u64,
    /// `Retry-After` for a publish refused because the disk failed.
    pub retry_after: Duration,
    /// The active segment, opened for appending.
    pub file: File,
    /// The id in the active segment's name.
    pub file_id: u64,
    /// The active segment's length up to its last good write.
    pub file_len: u64,
    /// The active segment's length on disk: `file_len` plus the zeros
    /// written ahead.
    pub allocated: u64,
    /// A failed write left bytes past `file_len` that could not be cut yet.
    pub torn: bool,
    /// Closed segments, oldest first, with the newest snapshot: what the
    /// next compaction replaces.
    pub closed: Vec<files::LogFile>,
    pub snapshot: Option<files::LogFile>,
    /// The newest id issued (applied or lost with a failed write).
    pub last_issued: EventId,
    /// A snapshot being written on its own thread.
    pub compaction: Option<Compaction>,
}

/// One admitted publish: its events, numbered, and whom to answer.
struct Admitted {
    events: Vec<(ChannelName, Event)>,
    /// The key written with the events; its answer is the one recorded
    /// (subscribers counted when the ids were issued), so a replay after a
    /// restart is the same bytes. With its slot in [`Writer::keys`].
    key: Option<(Slot, KeyRecord)>,
    reply: Reply,
}

impl Writer {
    /// Runs until [`Message::Stop`] or until every sender is gone.
    pub fn run(mut self, mut queue: mpsc::Receiver<Message>) {
        let mut buf = Vec::with_capacity(GROUP_BYTES + (64 << 10));
        let mut group = Vec::new();
        let mut stop = false;
        while !stop {
            let Some(first) = queue.blocking_recv() else {
                break;
            };
            let mut bytes = first.data_bytes();
            group.push(first);
            while group.len() < GROUP_REQUESTS && bytes < GROUP_BYTES {
                match queue.try_recv() {
                    Ok(message) => {
                        bytes += message.data_bytes();
                        group.push(message);
                    }
                    Err(_) => break,
                }
            }
            if let Some(at) = group.iter().position(|m| matches!(m, Message::Stop)) {
                group.truncate(at);
                stop = true;
            }
            self.commit(&mut group, &mut buf);
            self.roll_if_full();
        }
        if let Err(e) = self.trim() {
            tracing::warn!(error = %e, "cannot trim the active segment at shutdown");
        }
        if let Some(compaction) = self.compaction.take() {
            let _ = compaction.finish();
        }
        tracing::debug!("log writer stopped");
    }

    fn commit(&mut self, group: &mut Vec<Message>, buf: &mut Vec<u8>) {
        buf.clear();
        let disconnects: Vec<(Disconnect, DisconnectReply)> = group
            .extract_if(.., |m| matches!(m, Message::Disconnect { .. }))
            .filter_map(|m| match m {
                Message::Disconnect { order, reply } => Some((order, reply)),
                _ => None,
            })
            .collect();
        for (order, _) in &disconnects {
            record::encode_revoke(buf, order);
        }
        let (admitted, forgets) = self.admit(group);
        let mut admitted: Vec<Admitted> = admitted
            .into_iter()
            .map(|(items, key, reply)| self.number(items, key, reply, buf))
            .collect();
        for (channels, through) in forgets {
            for channel in &channels {
                record::encode(buf, Kind::Forget, through, 0, Some(channel), &[]);
            }
        }
        // (An empty batch has nothing to write but still gets its answer.)
        if let Err(e) = if buf.is_empty() {
            Ok(())
        } else {
            self.append(buf)
        } {
            self.metrics.log_write_errors.inc();
            tracing::warn!(error = %e, "the log cannot write; publishes get 503 until it can");
            let refused = || PublishError::Unavailable {
                retry_after: self.retry_after,
                cause: format!("the data directory cannot be written: {e}"),
            };
            for request in admitted {
                let _ = request.reply.send(Err(refused()));
            }
            for (_, reply) in disconnects {
                let _ = reply.send(Err(refused()));
            }
            return;
        }
        for (order, reply) in disconnects {
            let _ = reply.send(Ok(self.hub.apply_disconnect(&order)));
        }

        // Durable: hand the events to the hub in id order, then answer.
        let mut answers = Vec::with_capacity(admitted.len());
        {
            let mut hub = self.hub.applier();
            for request in &mut admitted {
                let mut published = Vec::with_capacity(request.events.len());
                for (channel, event) in request.events.drain(..) {
                    let id = event.id;
                    let subscribers = hub
                        .apply(&channel, event)
                        .expect("the writer is the only applier and issues ids above the newest");
                    published.push(Published {
                        id,
                        channel,
                        subscribers,
                    });
                }
                if let Some((_, key)) = &request.key {
                    for (answer, row) in published.iter_mut().zip(&key.rows) {
                        answer.subscribers = row.subscribers as usize;
                    }
                }
                answers.push(published);
            }
        }
        for (request, published) in admitted.into_iter().zip(answers) {
            if let Some((slot, key)) = request.key {
                let request = KeyedRequest {
                    slot,
                    scope: Some(key.scope),
                    fingerprint: key.fingerprint,
                };
                self.keys.complete(request, key.rows);
            }
            let _ = request.reply.send(Ok(published));
        }
    }

    /// Splits the group into publishes that keep the hub within
    /// `--max-channels` (the others are answered now, before any id is
    /// issued) and forgets.
    #[allow(clippy::type_complexity)]
    fn admit(
        &self,
        group: &mut Vec<Message>,
    ) -> (
        Vec<(Vec<PublishItem>, Option<KeyedRequest>, Reply)>,
        Vec<(Vec<ChannelName>, EventId)>,
    ) {
        let mut admitted = Vec::with_capacity(group.len());
        let mut forgets = Vec::new();
        let hub = self.hub.applier();
        let mut created: HashSet<ChannelName> = HashSet::new();
        for message in group.drain(..) {
            match message {
                Message::Publish { items, key, reply } => {
                    let mut new: Vec<&ChannelName> = items
                        .iter()
                        .map(|i| &i.channel)
                        .filter(|c| !hub.has_channel(c) && !created.contains(*c))
                        .collect();
                    new.sort_unstable();
                    new.dedup();
                    if hub.channel_count() + created.len() + new.len() > hub.max_channels() {
                        let _ = reply.send(Err(PublishError::ChannelLimit));
                        continue;
                    }
                    created.extend(new.into_iter().cloned());
                    admitted.push((items, key, reply));
                }
                Message::Forget { channels, through } => forgets.push((channels, through)),
                Message::Disconnect { .. } | Message::Stop => {}
            }
        }
        (admitted, forgets)
    }

    /// Issues the ids of one request and encodes its records into `buf`.
    fn number(
        &mut self,
        items: Vec<PublishItem>,
        key: Option<KeyedRequest>,
        reply: Reply,
        buf: &mut Vec<u8>,
    ) -> Admitted {
        let events: Vec<(ChannelName, Event)> = items
            .into_iter()
            .map(|item| {
                let id = next_id(self.last_issued);
                self.last_issued = id;
                let frame = item.event.finish(id);
                record::encode(
                    buf,
                    Kind::Event,
                    id,
                    item.data_len,
                    Some(&item.channel),
                    &frame,
                );
                let event = Event {
                    id,
                    frame,
                    data_len: item.data_len,
                    ws: Default::default(),
                };
                (item.channel, event)
            })
            .collect();
        let key = key.map(|key| {
            let record = KeyRecord {
                scope: key
                    .scope
                    .expect("the disk log's table names the keys it hands out"),
                fingerprint: key.fingerprint,
                rows: events
                    .iter()
                    .map(|(channel, event)| Row {
                        id: event.id,
                        subscribers: u32::try_from(self.hub.subscribers(channel))
                            .unwrap_or(u32::MAX),
                    })
                    .collect(),
                expires_ms: self.keys.expires_ms(),
            };
            let mut payload = Vec::with_capacity(64);
            record.encode(&mut payload);
            record::encode(buf, Kind::Key, self.last_issued, 0, None, &payload);
            (key.slot, record)
        });
        Admitted { events, key, reply }
    }

    /// Writes `buf` at the end of the active segment and syncs it; on
    /// failure cuts the segment back to its last good length.
    fn append(&mut self, buf: &[u8]) -> io::Result<()> {
        if self.torn {
            // An earlier failed write could not be cut off: cut it now, or
            // write nothing after it.
            self.file.set_len(self.file_len)?;
            self.allocated = self.file_len;
            self.torn = false;
        }
        let end = self.file_len + buf.len() as u64;
        if end > self.allocated {
            self.preallocate(end);
        }
        let written = self.file.write_all_at(buf, self.file_len).and_then(|()| {
            if self.fsync {
                self.metrics.log_fsyncs.inc();
                self.file.sync_data()
            } else {
                Ok(())
            }
        });
        match written {
            Ok(()) => {
                self.file_len = end;
                self.allocated = self.allocated.max(end);
                self.metrics.log_writes.inc();
                self.metrics.log_bytes.add(buf.len() as i64);
                Ok(())
            }
            Err(e) => {
                // Nothing half written stays: the segment ends at its last
                // good record.
                match self.file.set_len(self.file_len) {
                    Ok(()) => self.allocated = self.file_len,
                    Err(cut) => {
                        tracing::error!(error = %cut, "cannot cut a failed write from the log yet");
                        self.torn = true;
                    }
                }
                Err(e)
            }
        }
    }

    /// Zero-fills the active segment ahead of `end`, if there is room; if
    /// not, the records simply grow the file.
    fn preallocate(&mut self, end: u64) {
        let target = end.max((self.file_len + PREALLOCATE).min(self.segment_bytes));
        if target <= end {
            return;
        }
        let zeros = vec![0u8; 64 << 10];
        let mut at = self.allocated;
        while at < target {
            let n = (target - at).min(zeros.len() as u64) as usize;
            if self.file.write_all_at(&zeros[..n], at).is_err() {
                // No room to reserve (a full disk): give it back.
                let _ = self.file.set_len(self.allocated);
                return;
            }
            at += n as u64;
        }
        self.allocated = target;
    }

    /// Cuts the zeros written ahead off the active segment (when it is
    /// closed, and at shutdown), so closed segments end at their last
    /// record.
    fn trim(&mut self) -> io::Result<()> {
        if self.allocated > self.file_len {
            self.file.set_len(self.file_len)?;
            self.allocated = self.file_len;
        }
        self.file.sync_data()
    }

    /// Starts a new segment once the active one is full, and compacts when
    /// the closed files hold more than twice what is retained.
    fn roll_if_full(&mut self) {
        if self.file_len < self.segment_bytes || self.torn {
            return;
        }
        // The closing segment is trimmed and synced even under `--fsync
        // off`: only the newest segment may ever have a torn tail.
        if let Err(e) = self.trim() {
            tracing::warn!(error = %e, "cannot sync a full segment; will try again");
            return;
        }
        let id = self.hub.last_id().get().max(self.file_id + 1);
        let file = match files::create_segment(&self.dir, id) {
            Ok(file) => file,
            Err(e) => {
                tracing::warn!(error = %e, "cannot start a new segment; the current one grows");
                return;
            }
        };
        let old = std::mem::replace(&mut self.file, file);
        drop(old);
        self.closed.push(files::LogFile {
            id: self.file_id,
            path: files::segment_path(&self.dir, self.file_id),
            len: self.file_len,
        });
        self.file_id = id;
        self.file_len = record::HEADER_LEN as u64;
        self.allocated = self.file_len;
        self.metrics.log_bytes.add(record::HEADER_LEN as i64);
        self.compact_if_due();
    }

    fn compact_if_due(&mut self) {
        if let Some(compaction) = self.compaction.take() {
            if !compaction.is_finished() {
                self.compaction = Some(compaction);
                return;
            }
            self.finish_compaction(compaction);
        }
        let closed: u64 = self
            .closed
            .iter()
            .chain(&self.snapshot)
            .map(|f| f.len)
            .sum();
        let retained = self.hub.retained_bytes(RECORD_OVERHEAD);
        if closed <= 2 * retained {
            return;
        }
        // Between groups the hub holds exactly what the closed segments
        // say (this thread is the only one applying), up to `through`.
        let through = self.hub.last_id();
        let channels = self.hub.snapshot();
        // Revocations are applied by this thread too, after their record:
        // every one the replaced files hold is in force here, or expired.
        let revocations = self.hub.revocations().orders();
        let keys = self.keys.export();
        let replaced: Vec<files::LogFile> =
            self.closed.drain(..).chain(self.snapshot.take()).collect();
        self.compaction = Some(compact::start(
            self.dir.clone(),
            through,
            channels,
            revocations,
            keys,
            replaced,
        ));
    }

    fn finish_compaction(&mut self, compaction: Compaction) {
        match compaction.finish() {
            Ok((snapshot, removed)) => {
                self.metrics.log_compactions.inc();
                self.metrics
                    .log_bytes
                    .add(snapshot.len as i64 - removed as i64);
                self.snapshot = Some(snapshot);
            }
            Err((e, replaced)) => {
                tracing::warn!(error = %e, "compaction failed; the log keeps its files and tries again later");
                // Put the files back, oldest first, keeping the newest
                // snapshot apart.
                let (snapshots, mut segments): (Vec<_>, Vec<_>) = replaced
                    .into_iter()
                    .partition(|f| f.path.extension().is_some_and(|x| x == "snap"));
                segments.append(&mut self.closed);
                self.closed = segments;
                self.snapshot = snapshots.into_iter().next();
            }
        }
    }
}
