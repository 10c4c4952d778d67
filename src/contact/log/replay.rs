//! Reading the log back at start: every good record of every segment, in order, past damage;
//! a torn tail cut from the newest segment; damaged segments reported and copied aside.

use std::fs::{self, OpenOptions};
use std::path::Path;
use std::time::Instant;

use super::{io_err, list_segments, scan_all, LogError, Segment, MAGIC, RECORD_HEADER};

/// Where damaged segments are copied for inspection, inside the data folder.
pub const DAMAGED_DIR: &str = "damaged";

/// What replay found.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ReplayReport {
    /// Segments read.
    pub segments: usize,
    /// Records replayed.
    pub records: u64,
    /// Bytes of records replayed.
    pub bytes: u64,
    /// Torn records dropped from the end of the newest segment (0 or 1).
    pub torn_records_dropped: u64,
    /// Bytes cut from the end of the newest segment.
    pub torn_bytes_dropped: u64,
    /// Segments with damage (bad records between good ones, a bad end of an older segment, or
    /// a bad header); each is kept in place and copied into `damaged/`.
    pub corrupt_segments: u64,
    /// Bytes of damage skipped (the good records around them were replayed).
    pub damaged_bytes: u64,
    /// The damaged segments' file names.
    pub damaged: Vec<String>,
    /// Records whose payload did not decode (checksum right: written by another format).
    pub undecodable_records: u64,
    /// Time replay took, in milliseconds.
    pub took_ms: u64,
}

/// Replays every segment of `dir` in order; `apply` gets each payload and returns the event
/// time it holds (`None` when it does not decode). Cuts a torn tail off the newest segment.
pub fn replay(
    dir: &Path,
    mut apply: impl FnMut(&[u8]) -> Option<i64>,
) -> Result<(ReplayReport, Vec<Segment>), LogError> {
    let started = Instant::now();
    let files = list_segments(dir)?;
    let mut report = ReplayReport::default();
    let mut segments = Vec::with_capacity(files.len());
    for (i, (seq, path)) in files.iter().enumerate() {
        let newest = i + 1 == files.len();
        let bytes = fs::read(path).map_err(io_err(path))?;
        report.segments += 1;
        if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
            if newest && bytes.len() < MAGIC.len() && MAGIC.starts_with(&bytes) {
                // Created, then the crash came before its header was complete.
                tracing::warn!(path = %path.display(), "dropping a segment torn before its header");
                report.torn_bytes_dropped += bytes.len() as u64;
                fs::remove_file(path).map_err(io_err(path))?;
                continue;
            }
            tracing::error!(path = %path.display(), "not an event log segment; kept and skipped");
            set_aside(dir, path, &mut report, bytes.len() as u64);
            segments.push(Segment {
                seq: *seq,
                path: path.clone(),
                newest_ms: i64::MIN,
                damaged: true,
            });
            continue;
        }
        let mut newest_ms = i64::MIN;
        let body = &bytes[MAGIC.len()..];
        let scanned = scan_all(body, |payload| {
            report.records += 1;
            report.bytes += (payload.len() + RECORD_HEADER) as u64;
            match apply(payload) {
                Some(ts) => newest_ms = newest_ms.max(ts),
                None => report.undecodable_records += 1,
            }
        });
        let mut damaged: u64 = scanned.damage.iter().map(|d| d.len as u64).sum();
        match scanned.tail {
            Some((at, why)) if newest => {
                // Only what follows the last good record of the log is a torn write.
                let at = (MAGIC.len() + at) as u64;
                tracing::warn!(path = %path.display(), offset = at, why = ?why,
                    "dropping a torn record at the end of the log");
                report.torn_records_dropped += 1;
                report.torn_bytes_dropped += bytes.len() as u64 - at;
                let f = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(io_err(path))?;
                f.set_len(at).map_err(io_err(path))?;
                f.sync_all().map_err(io_err(path))?;
            }
            Some((at, _)) => damaged += (body.len() - at) as u64,
            None => {}
        }
        if damaged > 0 {
            tracing::error!(path = %path.display(), damaged_bytes = damaged,
                stretches = scanned.damage.len() + usize::from(!newest && scanned.tail.is_some()),
                "damaged event log segment: every good record in it was replayed; the segment is kept and copied into damaged/");
            set_aside(dir, path, &mut report, damaged);
        }
        segments.push(Segment {
            seq: *seq,
            path: path.clone(),
            newest_ms,
            damaged: damaged > 0,
        });
    }
    report.took_ms = started.elapsed().as_millis() as u64;
    Ok((report, segments))
}

/// Counts a damaged segment and copies it into `damaged/` (once; a copy that fails is logged,
/// never fatal: the segment itself stays where it is).
fn set_aside(dir: &Path, path: &Path, report: &mut ReplayReport, damaged_bytes: u64) {
    report.corrupt_segments += 1;
    report.damaged_bytes += damaged_bytes;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    report.damaged.push(name.clone());
    let aside = dir.join(DAMAGED_DIR);
    let copy = aside.join(&name);
    if copy.exists() {
        return;
    }
    if let Err(e) = fs::create_dir_all(&aside).and_then(|()| fs::copy(path, &copy)) {
        tracing::warn!(path = %copy.display(), error = %e, "could not copy a damaged segment aside");
    }
}
