//! Compaction: the retained events (and the revocations in force) written
//! out as one snapshot, after which the segments and snapshot it replaces
//! are deleted.
//!
//! Runs on its own thread so publishes keep flowing: the writer has already
//! started a new segment, and the snapshot covers exactly the ids up to
//! `through` (the hub's state between two groups of the writer). The
//! snapshot is written to a `.tmp` file, synced, renamed, and the directory
//! synced before anything is deleted: a crash at any point leaves either the
//! old files or the new snapshot, and recovery reads either.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::PathBuf;
use std::thread::JoinHandle;

use crate::domain::{ChannelName, EventId};
use crate::history::Event;
use crate::revocation::Disconnect;

use crate::idempotency::KeyRecord;

use super::files::{self, LogFile};
use super::record::{self, Kind};

/// A snapshot being written.
pub struct Compaction {
    handle: JoinHandle<io::Result<(LogFile, u64)>>,
    /// The files it replaces, given back if it fails.
    replaced: Vec<LogFile>,
}

impl Compaction {
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }

    /// Waits for it: the new snapshot and the bytes deleted, or the error
    /// and the files it did not replace.
    pub fn finish(self) -> Result<(LogFile, u64), (io::Error, Vec<LogFile>)> {
        match self.handle.join() {
            Ok(Ok(done)) => Ok(done),
            Ok(Err(e)) => Err((e, self.replaced)),
            Err(_) => Err((
                io::Error::other("the compaction thread panicked"),
                self.replaced,
            )),
        }
    }
}

/// Starts writing `channels` as the snapshot through `through`; `replaced`
/// are deleted once it is durable.
pub fn start(
    dir: PathBuf,
    through: EventId,
    channels: Vec<(ChannelName, EventId, Vec<Event>)>,
    revocations: Vec<Disconnect>,
    keys: Vec<KeyRecord>,
    replaced: Vec<LogFile>,
) -> Compaction {
    let doomed = replaced.clone();
    let handle = std::thread::Builder::new()
        .name("herald-compact".into())
        .spawn(move || write(&dir, through, &channels, &revocations, &keys, &doomed))
        .expect("the system can start a thread");
    Compaction { handle, replaced }
}

/// Writes a snapshot file: the header, the revocations in force, each
/// channel's record (its mark) followed by its events, the idempotency keys
/// kept, and the end record.
pub fn write_snapshot_file(
    path: &std::path::Path,
    through: EventId,
    channels: &[(ChannelName, EventId, Vec<Event>)],
    revocations: &[Disconnect],
    keys: &[KeyRecord],
) -> io::Result<u64> {
    let mut file = File::create(path)?;
    let mut buf = Vec::with_capacity(1 << 20);
    buf.extend_from_slice(&record::header());
    for order in revocations {
        record::encode_revoke(&mut buf, order);
    }
    for (name, mark, events) in channels {
        record::encode(&mut buf, Kind::Channel, *mark, 0, Some(name), &[]);
        for event in events {
            record::encode(
                &mut buf,
                Kind::Event,
                event.id,
                event.data_len,
                Some(name),
                &event.frame,
            );
            if buf.len() >= 1 << 20 {
                file.write_all(&buf)?;
                buf.clear();
            }
        }
    }
    let mut payload = Vec::new();
    for key in keys {
        payload.clear();
        key.encode(&mut payload);
        record::encode(&mut buf, Kind::Key, through, 0, None, &payload);
        if buf.len() >= 1 << 20 {
            file.write_all(&buf)?;
            buf.clear();
        }
    }
    record::encode(&mut buf, Kind::End, through, 0, None, &[]);
    file.write_all(&buf)?;
    file.sync_data()?;
    Ok(file.metadata()?.len())
}

fn write(
    dir: &std::path::Path,
    through: EventId,
    channels: &[(ChannelName, EventId, Vec<Event>)],
    revocations: &[Disconnect],
    keys: &[KeyRecord],
    replaced: &[LogFile],
) -> io::Result<(LogFile, u64)> {
    let tmp = files::temporary_path(dir, through.get());
    let len = match write_snapshot_file(&tmp, through, channels, revocations, keys) {
        Ok(len) => len,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    };
    let path = files::snapshot_path(dir, through.get());
    fs::rename(&tmp, &path)?;
    files::sync_dir(dir)?;
    let mut removed = 0;
    for file in replaced.iter().filter(|f| f.path != path) {
        match fs::remove_file(&file.path) {
            Ok(()) => removed += file.len,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    files::sync_dir(dir)?;
    tracing::info!(
        snapshot = %path.display(),
        bytes = len,
        removed_bytes = removed,
        "compacted the log"
    );
    Ok((
        LogFile {
            id: through.get(),
            path,
            len,
        },
        removed,
    ))
}
