//! The data directory's files: names, listing, creating and syncing.
//!
//! ```text
//! DIR/00000001764547200000000.log   a segment: records with ids above the
//!                                   number in its name, in id order
//! DIR/00000001764547300000000.snap  a snapshot: every channel's retained
//!                                   events and mark up to that id
//! DIR/*.tmp                         a snapshot being written (deleted at
//!                                   start: it never completed)
//! DIR/LOCK                          held (flock) by the running herald
//! ```
//!
//! Other files are left alone. A segment is named when it is created, by
//! the newest id written before it, so names sort in log order.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::record;

/// A file of the log, by the id in its name.
#[derive(Debug, Clone)]
pub struct LogFile {
    pub id: u64,
    pub path: PathBuf,
    pub len: u64,
}

/// The data directory's log files, each list sorted by id.
#[derive(Debug, Default)]
pub struct Listing {
    pub segments: Vec<LogFile>,
    pub snapshots: Vec<LogFile>,
    pub temporary: Vec<PathBuf>,
}

pub fn segment_path(dir: &Path, after: u64) -> PathBuf {
    dir.join(format!("{after:020}.log"))
}

pub fn snapshot_path(dir: &Path, through: u64) -> PathBuf {
    dir.join(format!("{through:020}.snap"))
}

pub fn temporary_path(dir: &Path, through: u64) -> PathBuf {
    dir.join(format!("{through:020}.snap.tmp"))
}

pub fn list(dir: &Path) -> io::Result<Listing> {
    let mut listing = Listing::default();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(".snap.tmp") {
            listing.temporary.push(entry.path());
            continue;
        }
        let (stem, is_segment) = if let Some(stem) = name.strip_suffix(".log") {
            (stem, true)
        } else if let Some(stem) = name.strip_suffix(".snap") {
            (stem, false)
        } else {
            continue;
        };
        let Ok(id) = stem.parse::<u64>() else {
            continue;
        };
        let file = LogFile {
            id,
            path: entry.path(),
            len: entry.metadata()?.len(),
        };
        if is_segment {
            listing.segments.push(file);
        } else {
            listing.snapshots.push(file);
        }
    }
    listing.segments.sort_by_key(|f| f.id);
    listing.snapshots.sort_by_key(|f| f.id);
    Ok(listing)
}

/// Makes a file's creation, rename or deletion in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates a new segment (header written and synced, directory synced) and
/// returns it opened for writing (the writer writes at its own offsets).
pub fn create_segment(dir: &Path, after: u64) -> io::Result<File> {
    let path = segment_path(dir, after);
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)?;
    file.write_all(&record::header())?;
    file.sync_data()?;
    sync_dir(dir)?;
    OpenOptions::new().write(true).open(&path)
}
