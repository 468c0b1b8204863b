//! Startup: check the data directory, rebuild the hub from the newest
//! snapshot and the segments after it, cut a torn tail, or refuse to start.
//!
//! Every record's checksum is checked. Only the end of the newest segment
//! may be torn (a crash or power loss during its last, unsynced write): a
//! bad record there, with at most one write's worth of bytes after it (see
//! [`torn_window`]), is cut
//! with a log line. A bad record anywhere else (an older segment, a
//! snapshot, or deep inside the newest segment) is damage that cutting
//! would turn into silent loss, so herald refuses to start and says where.

use std::fs::{self, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::domain::EventId;
use crate::history::Event;
use crate::hub::Applier;
use crate::idempotency::{KeyRecord, Keys};
use crate::revocation::Revocations;

use super::files::{self, Listing, LogFile};
use super::record::{self, Kind, Read};

/// How much of the newest segment's end one write can leave torn: the writer
/// stops adding requests to a group once its records reach `GROUP_BYTES`,
/// so a write is at most that plus one request, whose records take at most
/// 8 times its body (a data of nothing but line breaks becomes `data: `
/// lines 7 times its size), plus slack.
pub fn torn_window(max_request_bytes: usize) -> usize {
    super::writer::GROUP_BYTES + 8 * max_request_bytes + (64 << 10)
}

/// Why herald will not start on a data directory.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("--data-dir {0}: not a directory")]
    NotADirectory(PathBuf),
    #[error("--data-dir {path}: cannot create or write to it: {source}")]
    NotWritable { path: PathBuf, source: io::Error },
    #[error("--data-dir {0}: in use by another herald process (two processes would corrupt each other's log)")]
    InUse(PathBuf),
    #[error("--data-dir {path}: cannot read it: {source}")]
    Unreadable { path: PathBuf, source: io::Error },
    #[error("{path}: {what}; herald will not start on a directory it cannot read safely (move the file away to start without it, losing its events)")]
    Damaged { path: PathBuf, what: String },
}

/// What recovery found.
#[derive(Debug, Default)]
pub struct Recovered {
    /// The log files left after recovery, newest segment last.
    pub listing: Listing,
    /// The newest id on disk (0 if none).
    pub last: u64,
    /// Event records read (snapshot and segments).
    pub events: usize,
    /// Bytes cut from the newest segment's torn tail.
    pub cut: u64,
}

/// Checks `dir` (creating it if missing) and that this process can write
/// to it, and takes its lock: the returned file holds an exclusive `flock`
/// on `DIR/LOCK` for as long as it is open (the kernel releases it when the
/// process dies, `kill -9` included).
pub fn check_dir(dir: &Path) -> Result<fs::File, OpenError> {
    match fs::metadata(dir) {
        Ok(meta) if !meta.is_dir() => return Err(OpenError::NotADirectory(dir.to_owned())),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(dir).map_err(|source| OpenError::NotWritable {
                path: dir.to_owned(),
                source,
            })?;
        }
        Err(source) => {
            return Err(OpenError::Unreadable {
                path: dir.to_owned(),
                source,
            })
        }
    }
    let probe = dir.join(".herald-write-check");
    let written = fs::write(&probe, b"ok").and_then(|()| fs::remove_file(&probe));
    written.map_err(|source| OpenError::NotWritable {
        path: dir.to_owned(),
        source,
    })?;
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("LOCK"))
        .map_err(|source| OpenError::NotWritable {
            path: dir.to_owned(),
            source,
        })?;
    match rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(lock),
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => Err(OpenError::InUse(dir.to_owned())),
        Err(e) => Err(OpenError::NotWritable {
            path: dir.to_owned(),
            source: e.into(),
        }),
    }
}

/// Rebuilds the hub from `dir` through `hub` (locked, before the server
/// accepts anything), and the revocations still in force into
/// `revocations`. Events older than `max_age` are not restored.
pub fn recover(
    dir: &Path,
    hub: &mut Applier<'_>,
    revocations: &Revocations,
    keys: &Keys,
    max_age: Option<Duration>,
    torn_window: usize,
) -> Result<Recovered, OpenError> {
    let unreadable = |source| OpenError::Unreadable {
        path: dir.to_owned(),
        source,
    };
    let mut listing = files::list(dir).map_err(unreadable)?;
    for tmp in listing.temporary.drain(..) {
        fs::remove_file(&tmp).map_err(unreadable)?;
    }
    let mut found = Recovered::default();

    // The newest snapshot (older ones are left over from a compaction that
    // did not finish deleting; they are superseded).
    let mut through = 0;
    if let Some(snapshot) = listing.snapshots.last().cloned() {
        through = read_snapshot(&snapshot, hub, revocations, keys, &mut found)?;
        found.last = through;
    }

    // Segments: every record above the snapshot, in order.
    let newest = listing.segments.len().checked_sub(1);
    for (index, segment) in listing.segments.iter_mut().enumerate() {
        let is_newest = Some(index) == newest;
        let window = if is_newest { torn_window } else { 0 };
        read_segment(segment, window, through, hub, revocations, keys, &mut found)?;
    }

    // Files the snapshot made obsolete: every segment whose successor
    // starts at or below it, and older snapshots.
    let obsolete: Vec<usize> = (0..listing.segments.len().saturating_sub(1))
        .filter(|&i| listing.segments[i + 1].id <= through)
        .collect();
    for &i in obsolete.iter().rev() {
        let file = listing.segments.remove(i);
        fs::remove_file(&file.path).map_err(unreadable)?;
    }
    while listing.snapshots.len() > 1 {
        let file = listing.snapshots.remove(0);
        fs::remove_file(&file.path).map_err(unreadable)?;
    }
    files::sync_dir(dir).map_err(unreadable)?;

    if let Some(age) = max_age {
        let now = crate::hub::unix_micros();
        hub.expire(EventId::new(now.saturating_sub(age.as_micros() as u64)));
    }
    found.listing = listing;
    Ok(found)
}

/// A revocation record: restored if still in force (an expired one is
/// dropped here, and left out of the next snapshot).
fn restore_revocation(until_ms: EventId, payload: &[u8], revocations: &Revocations) {
    match record::decode_revoke(until_ms, payload) {
        Some(order) => revocations.insert(&order),
        None => tracing::warn!("skipped a revocation record this herald cannot read"),
    }
}

/// Keeps a key read from disk, unless it has expired.
fn restore_key(keys: &Keys, payload: &[u8], path: &Path, at: usize) -> Result<(), OpenError> {
    match KeyRecord::decode(payload) {
        Some(record) => {
            keys.restore(record);
            Ok(())
        }
        None => Err(damaged(
            path,
            format!("an idempotency key record at byte {at} does not decode"),
        )),
    }
}

fn damaged(path: &Path, what: impl Into<String>) -> OpenError {
    OpenError::Damaged {
        path: path.to_owned(),
        what: what.into(),
    }
}

fn read_file(file: &LogFile) -> Result<Vec<u8>, OpenError> {
    fs::read(&file.path).map_err(|source| OpenError::Unreadable {
        path: file.path.clone(),
        source,
    })
}

/// Restores a snapshot: every record must be valid and it must end with
/// its end record. Returns the newest id it covers.
fn read_snapshot(
    file: &LogFile,
    hub: &mut Applier<'_>,
    revocations: &Revocations,
    keys: &Keys,
    found: &mut Recovered,
) -> Result<u64, OpenError> {
    let bytes = read_file(file)?;
    match record::check_header(&bytes) {
        Ok(true) => {}
        Ok(false) => return Err(damaged(&file.path, "the snapshot is empty")),
        Err(e) => return Err(damaged(&file.path, e.to_string())),
    }
    let mut at = record::HEADER_LEN;
    let mut channel = None;
    loop {
        let (rec, next) = match record::read(&bytes, at) {
            Read::Record(rec, next) => (rec, next),
            Read::End => return Err(damaged(&file.path, "the snapshot has no end record")),
            Read::Bad(why) => {
                return Err(damaged(
                    &file.path,
                    format!("{why} at byte {at} of a snapshot"),
                ))
            }
        };
        match (rec.kind, rec.channel) {
            (Kind::Channel, Some(name)) => {
                hub.restore_channel(&name, rec.id);
                channel = Some(name);
            }
            (Kind::Event, Some(name)) if channel.as_ref() == Some(&name) => {
                let event = Event {
                    id: rec.id,
                    frame: record::frame(rec.payload),
                    data_len: rec.data_len,
                    ws: Default::default(),
                };
                hub.restore_event(&name, event, rec.id);
                found.events += 1;
            }
            (Kind::Revoke, None) => restore_revocation(rec.id, rec.payload, revocations),
            (Kind::Key, None) => restore_key(keys, rec.payload, &file.path, at)?,
            (Kind::End, _) if next == bytes.len() => return Ok(rec.id.get()),
            _ => {
                return Err(damaged(
                    &file.path,
                    format!("unexpected record at byte {at} of a snapshot"),
                ))
            }
        }
        at = next;
    }
}

/// Replays one segment's records above `through`. In the newest segment
/// (`torn_window` > 0) a torn tail is cut (the file is truncated to its
/// valid prefix).
fn read_segment(
    file: &mut LogFile,
    torn_window: usize,
    through: u64,
    hub: &mut Applier<'_>,
    revocations: &Revocations,
    keys: &Keys,
    found: &mut Recovered,
) -> Result<(), OpenError> {
    let is_newest = torn_window > 0;
    let bytes = read_file(file)?;
    let mut at = match record::check_header(&bytes) {
        Ok(true) => record::HEADER_LEN,
        // Created but its header never reached the disk.
        Ok(false) if is_newest => 0,
        Ok(false) => return Err(damaged(&file.path, "the segment has no header")),
        Err(e) => return Err(damaged(&file.path, e.to_string())),
    };
    // Where the valid records end, if the file goes on past them, and how
    // many of the bytes after are not zeros (a torn write, not the zeros the
    // writer reserves ahead).
    let mut cut_at = None;
    let mut torn_bytes = 0;
    while at < bytes.len() && at > 0 {
        let (rec, next) = match record::read(&bytes, at) {
            Read::Record(rec, next) => (rec, next),
            Read::End => break,
            Read::Bad(why) => {
                let data_end = bytes[at..]
                    .iter()
                    .rposition(|&b| b != 0)
                    .map_or(at, |last| at + last + 1);
                if data_end - at <= torn_window {
                    cut_at = Some(at);
                    torn_bytes = data_end - at;
                    break;
                }
                let place = if is_newest {
                    "with more intact data after it than one write leaves torn"
                } else {
                    "in a segment that was complete and synced"
                };
                return Err(damaged(&file.path, format!("{why} at byte {at}, {place}")));
            }
        };
        match (rec.kind, rec.channel) {
            (Kind::Event, Some(name)) => {
                if rec.id.get() <= through {
                    // Covered by the snapshot.
                } else if rec.id.get() <= found.last {
                    return Err(damaged(
                        &file.path,
                        format!("event {} at byte {at} is out of order", rec.id),
                    ));
                } else {
                    let event = Event {
                        id: rec.id,
                        frame: record::frame(rec.payload),
                        data_len: rec.data_len,
                        ws: Default::default(),
                    };
                    hub.restore_event(&name, event, EventId::new(found.last));
                    found.last = rec.id.get();
                    found.events += 1;
                }
            }
            (Kind::Forget, Some(name)) => hub.forget(&name, rec.id),
            (Kind::Revoke, None) => restore_revocation(rec.id, rec.payload, revocations),
            // Older than the snapshot: the snapshot holds it if it is kept.
            (Kind::Key, None) if rec.id.get() <= through => {}
            (Kind::Key, None) => restore_key(keys, rec.payload, &file.path, at)?,
            _ => {
                return Err(damaged(
                    &file.path,
                    format!("unexpected record at byte {at} of a segment"),
                ))
            }
        }
        at = next;
    }
    if at == 0 {
        cut_at = Some(0);
        torn_bytes = bytes.len();
    }
    if let Some(cut) = cut_at {
        let cut_bytes = torn_bytes as u64;
        let repaired = if cut == 0 {
            fs::write(&file.path, record::header())
                .and_then(|()| OpenOptions::new().write(true).open(&file.path)?.sync_data())
        } else {
            OpenOptions::new()
                .write(true)
                .open(&file.path)
                .and_then(|f| f.set_len(cut as u64).and_then(|()| f.sync_data()))
        };
        repaired.map_err(|source| OpenError::NotWritable {
            path: file.path.clone(),
            source,
        })?;
        file.len = (cut.max(record::HEADER_LEN)) as u64;
        if cut_bytes > 0 {
            found.cut += cut_bytes;
            tracing::warn!(
                file = %file.path.display(),
                cut_bytes,
                kept_bytes = cut,
                "cut a torn tail from the newest segment (a write the crash interrupted; it was never acknowledged under --fsync batch)"
            );
        }
    }
    Ok(())
}
