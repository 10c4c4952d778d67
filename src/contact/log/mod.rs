//! The durable event log: append-only segment files in the data folder, written by one thread
//! with group commit, replayed on start.
//!
//! # Format
//! A segment is `events-<seq, 20 digits>.log`: the 8-byte magic `NBEVLOG1`, then records
//! `[payload length: u32 LE][CRC-32 of the payload: u32 LE][payload]`. The payload is opaque here
//! (see `event.rs`); it is never empty, so a zero-filled tail never passes for a record.
//!
//! # Durability
//! Handlers hand the writer whole batches. The writer takes everything queued (a group), writes
//! it with one `write`, and under [`FsyncPolicy::Always`] calls `fdatasync` once for the group
//! before it acknowledges any batch of it: an acknowledged event is on disk, and concurrent
//! batches share the cost of one sync. [`FsyncPolicy::Interval`] acknowledges after the `write`
//! (the data is in the OS page cache, safe from a crash of the process) and syncs at most one
//! interval later: an OS crash or power loss loses the events acknowledged in that interval.
//!
//! # Recovery
//! Replay reads segments in order and checks every record's length and checksum. After a bad
//! record it looks for the next offset where a whole record with a right checksum starts and
//! goes on from there ([`scan_all`]), so one damaged byte costs the records it touches, not the
//! rest of the segment. Only bytes after the last good record of the newest segment are a write
//! torn by a crash, and only those are cut off. Damage anywhere else is reported (log, metric,
//! `/admin/stats`) and the segment is copied into `damaged/` for inspection; the segment itself
//! stays in place, never cut. The writer always starts a new segment, so it never appends after
//! a tear.
//!
//! # Retention
//! A segment is deleted once the newest event in it is older than the retention (the longest
//! policy window, at least the de-duplication window), checked when a segment rolls over and at
//! start; never while the clock looks wrong (see `writer`). One process per data folder: the
//! contact side holds the folder's lock (see `super::lock`).

mod replay;
mod tail;
mod writer;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use replay::{replay, ReplayReport};
pub use tail::{disk_bytes, read_all, read_from, unread_bytes, Position, Progress, Tail};
pub use writer::{Batch, Inject, LogStats, LogWriter, Reservation, Sink, WriterConfig};

/// The first bytes of every segment.
pub const MAGIC: &[u8; 8] = b"NBEVLOG1";
/// Bytes before each payload: length and checksum.
pub const RECORD_HEADER: usize = 8;
/// Largest payload accepted; longer lengths are torn or corrupt headers.
pub const MAX_RECORD: usize = 64 * 1024;

/// When an acknowledged event reaches the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// `fdatasync` per group before acknowledging: survives power loss.
    Always,
    /// Acknowledge after `write`, `fdatasync` at most this long after: survives a process crash,
    /// not an OS crash or power loss.
    Interval(Duration),
}

impl FsyncPolicy {
    /// The name the CLI and stats use.
    pub fn as_str(self) -> &'static str {
        match self {
            FsyncPolicy::Always => "always",
            FsyncPolicy::Interval(_) => "interval",
        }
    }
}

/// Why the log could not be read or written.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LogError {
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The cause (shared: one failed write fails every batch of its group).
        #[source]
        source: Arc<io::Error>,
    },
    /// The writer thread has stopped (the server is shutting down).
    #[error("the event log writer has stopped")]
    Closed,
    /// The segment being written was removed under the server.
    #[error(
        "the event log {} was removed under this server (its data folder deleted or replaced): \
         events are refused until the server is restarted on a data folder of its own", .path.display()
    )]
    Removed {
        /// The segment.
        path: PathBuf,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> LogError + '_ {
    move |e| LogError::Io {
        path: path.to_owned(),
        source: Arc::new(e),
    }
}

/// Appends one framed record whose payload `fill` writes; false (nothing appended) when the
/// payload is empty or longer than [`MAX_RECORD`].
pub fn push_record(buf: &mut Vec<u8>, fill: impl FnOnce(&mut Vec<u8>)) -> bool {
    let start = buf.len();
    buf.extend_from_slice(&[0; RECORD_HEADER]);
    fill(buf);
    let len = buf.len() - start - RECORD_HEADER;
    if len == 0 || len > MAX_RECORD {
        buf.truncate(start);
        return false;
    }
    let crc = crc32fast::hash(&buf[start + RECORD_HEADER..]);
    buf[start..start + 4].copy_from_slice(&(len as u32).to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    true
}

/// Why a scan stopped before the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bad {
    /// The bytes end inside a record header or payload.
    Truncated,
    /// A length of zero or over the maximum.
    Length,
    /// The checksum does not match.
    Checksum,
}

/// The record at `at`: its payload, or why there is none.
#[inline]
fn record_at(bytes: &[u8], at: usize) -> Result<&[u8], Bad> {
    let Some(head) = bytes.get(at..at + RECORD_HEADER) else {
        return Err(Bad::Truncated);
    };
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    if len == 0 || len > MAX_RECORD {
        return Err(Bad::Length);
    }
    let start = at + RECORD_HEADER;
    let Some(payload) = bytes.get(start..start + len) else {
        return Err(Bad::Truncated);
    };
    if crc32fast::hash(payload) != crc {
        return Err(Bad::Checksum);
    }
    Ok(payload)
}

/// Walks the records of `bytes` (no segment magic), calling `f` with each payload; returns the
/// offset after the last good record, and why it stopped early, if it did.
pub fn scan(bytes: &[u8], mut f: impl FnMut(&[u8])) -> (usize, Option<Bad>) {
    let mut at = 0;
    while at < bytes.len() {
        match record_at(bytes, at) {
            Ok(payload) => {
                f(payload);
                at += RECORD_HEADER + payload.len();
            }
            Err(bad) => return (at, Some(bad)),
        }
    }
    (at, None)
}

/// A stretch of bytes between good records that holds no good record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Damage {
    /// Offset of the first bad byte (in the bytes scanned).
    pub offset: usize,
    /// Bytes skipped.
    pub len: usize,
    /// What the first bad record looked like.
    #[serde(skip)]
    pub why: Bad,
}

/// What [`scan_all`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scanned {
    /// Offset just after the last good record.
    pub end: usize,
    /// Damaged stretches followed by good records.
    pub damage: Vec<Damage>,
    /// Bytes after the last good record that hold no good record (a torn tail, if this is the
    /// end of the log), and what the first of them looked like.
    pub tail: Option<(usize, Bad)>,
}

/// Walks every good record of `bytes`, also past damage: after a bad record it resumes at the
/// next offset where a whole record with a right checksum starts. A false resync needs a
/// length in range and a matching CRC-32 by chance, about one in 2^48 offsets.
pub fn scan_all(bytes: &[u8], mut f: impl FnMut(&[u8])) -> Scanned {
    let mut out = Scanned::default();
    let mut at = 0;
    while at < bytes.len() {
        let (good, bad) = scan(&bytes[at..], &mut f);
        at += good;
        out.end = at;
        let Some(why) = bad else { break };
        match (at + 1..bytes.len()).find(|&p| record_at(bytes, p).is_ok()) {
            Some(next) => {
                out.damage.push(Damage {
                    offset: at,
                    len: next - at,
                    why,
                });
                at = next;
            }
            None => {
                out.tail = Some((at, why));
                break;
            }
        }
    }
    out
}

/// One segment on disk.
#[derive(Debug, Clone)]
pub struct Segment {
    /// Its sequence number (the file name).
    pub seq: u64,
    /// Its path.
    pub path: PathBuf,
    /// Newest event time in it (Unix ms), `i64::MIN` when empty.
    pub newest_ms: i64,
    /// Replay found damage in it: with no good record, its age is unknown, so retention keeps it.
    pub damaged: bool,
}

/// The path of segment `seq`.
fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("events-{seq:020}.log"))
}

/// The segments in `dir`, oldest first.
pub fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, LogError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name();
        let Some(seq) = name
            .to_str()
            .and_then(|n| n.strip_prefix("events-"))
            .and_then(|n| n.strip_suffix(".log"))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        out.push((seq, entry.path()));
    }
    out.sort_unstable_by_key(|(seq, _)| *seq);
    Ok(out)
}

/// Creates segment `seq` with its header, durable (name included) before it is used.
fn create_segment(dir: &Path, seq: u64) -> Result<File, LogError> {
    let path = segment_path(dir, seq);
    let mut f = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(&path)
        .map_err(io_err(&path))?;
    f.write_all(MAGIC).map_err(io_err(&path))?;
    f.sync_all().map_err(io_err(&path))?;
    // The new name must be durable too, or a synced record could vanish with its file.
    sync_dir(dir);
    Ok(f)
}

/// Makes a folder's entries durable (best effort: not every file system supports it).
fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests;
