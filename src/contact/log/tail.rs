//! Reading the log from outside its writer, as the segments are on disk: the fleet's shipper
//! tails it from a remembered [`Position`], and a campaign reads it whole. Both use this API
//! and never the format itself.
//!
//! A reader never writes and never cuts: a record still being written by a running server (a
//! torn tail) is simply not read yet, and damage is stepped over as replay does ([`scan_all`]).
//! These are blocking file reads: async callers run them on a blocking thread.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{list_segments, scan_all, LogError, MAGIC, RECORD_HEADER};

/// A place in the log: a segment and a byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// The segment's sequence number.
    pub seq: u64,
    /// Bytes into the segment.
    pub offset: u64,
}

impl Position {
    /// Before the first record of the oldest segment.
    pub fn start() -> Self {
        Position {
            seq: 0,
            offset: MAGIC.len() as u64,
        }
    }

    /// The text a reader keeps its place in (`seq:offset`).
    pub fn to_text(self) -> String {
        format!("{}:{}", self.seq, self.offset)
    }

    /// Reads [`Position::to_text`] back.
    pub fn parse(text: &str) -> Option<Self> {
        let (seq, offset) = text.trim().split_once(':')?;
        Some(Position {
            seq: seq.parse().ok()?,
            offset: offset.parse().ok()?,
        })
    }
}

/// What a call to [`read_from`] got to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Where the next read starts: after the last record handed out, or the next segment's
    /// start once this one has nothing more and a newer one exists.
    pub next: Position,
    /// Log bytes from `next` to the end of the newest segment: what is not read yet.
    pub backlog_bytes: u64,
}

/// Hands out the records after `from`, in order, each with the position it starts at, until
/// `take` says stop or `max_bytes` of one segment were read. Records of only one segment are
/// read per call. A reader that comes back keeps a [`Tail`] instead.
pub fn read_from(
    dir: &Path,
    from: Position,
    max_bytes: u64,
    take: impl FnMut(&[u8], Position) -> bool,
) -> Result<Progress, LogError> {
    Tail::new(dir).read_from(from, max_bytes, take)
}

/// A reader that comes back for what was appended since: it keeps the segment list and the
/// segment it reads open between calls, and lists the folder again only when its segment has
/// nothing more (the writer may have moved on to a new one) or is gone. A read of what the
/// last group commit appended is then one `pread` and one `fstat`, not a directory listing,
/// an `open` and a `stat` per segment.
///
/// A segment deleted by retention while open stays readable through the open file, as the
/// file system keeps an unlinked file for its open handles.
pub struct Tail {
    dir: PathBuf,
    segments: Vec<(u64, PathBuf)>,
    open: Option<(u64, File)>,
    buf: Vec<u8>,
    listed_at: Instant,
}

/// Longest a [`Tail`] goes without listing the folder while it finds nothing new.
const RELIST_EVERY: Duration = Duration::from_secs(1);

impl Tail {
    /// A reader of the log in `dir`; nothing is read until [`Tail::read_from`].
    pub fn new(dir: &Path) -> Self {
        Tail {
            dir: dir.to_owned(),
            segments: Vec::new(),
            open: None,
            buf: Vec::new(),
            listed_at: Instant::now(),
        }
    }

    /// What [`read_from`] does, from the kept listing and open segment.
    pub fn read_from(
        &mut self,
        from: Position,
        max_bytes: u64,
        mut take: impl FnMut(&[u8], Position) -> bool,
    ) -> Result<Progress, LogError> {
        let mut listed = false;
        loop {
            let i = match self.segments.iter().position(|(seq, _)| *seq >= from.seq) {
                Some(i) => i,
                None if listed => {
                    return Ok(Progress {
                        next: from,
                        backlog_bytes: 0,
                    })
                }
                None => {
                    self.relist()?;
                    listed = true;
                    continue;
                }
            };
            let seq = self.segments[i].0;
            let offset = if seq == from.seq {
                from.offset
            } else {
                MAGIC.len() as u64
            };
            let len = match self.read_segment(i, offset, max_bytes) {
                Ok(len) => len,
                // Gone since it was listed (retention): list again, once.
                Err(e) if !listed && e.kind() == std::io::ErrorKind::NotFound => {
                    self.relist()?;
                    listed = true;
                    continue;
                }
                Err(e) => return Err(super::io_err(&self.segments[i].1)(e)),
            };
            let bytes = &self.buf;
            let mut end = offset;
            let mut stopped = false;
            scan_all(bytes, |payload| {
                if stopped {
                    return;
                }
                let at = payload.as_ptr() as usize - bytes.as_ptr() as usize;
                let start = Position {
                    seq,
                    offset: offset + (at - RECORD_HEADER) as u64,
                };
                if take(payload, start) {
                    end = offset + (at + payload.len()) as u64;
                } else {
                    stopped = true;
                }
            });
            if end == offset
                && !stopped
                && i + 1 == self.segments.len()
                && !listed
                && self.may_have_moved_on(seq)
            {
                // Nothing (more) here, and the writer may have started a newer segment.
                self.relist()?;
                listed = true;
                continue;
            }
            let next = if end == offset && !stopped && i + 1 < self.segments.len() {
                // Nothing (more) readable here and a newer segment follows: go on to it.
                Position {
                    seq: self.segments[i + 1].0,
                    offset: MAGIC.len() as u64,
                }
            } else {
                Position { seq, offset: end }
            };
            let after = self.segments[i + 1..]
                .iter()
                .filter_map(|(_, p)| std::fs::metadata(p).ok())
                .map(|m| m.len().saturating_sub(MAGIC.len() as u64))
                .sum::<u64>();
            let backlog_bytes = if next.seq == seq {
                len.saturating_sub(next.offset) + after
            } else {
                after
            };
            return Ok(Progress {
                next,
                backlog_bytes,
            });
        }
    }

    /// Reads up to `max_bytes` of segment `i` from `offset` into the buffer; returns the
    /// segment's length.
    fn read_segment(&mut self, i: usize, offset: u64, max_bytes: u64) -> std::io::Result<u64> {
        use std::os::unix::fs::FileExt;
        let (seq, path) = &self.segments[i];
        if self.open.as_ref().is_none_or(|(s, _)| s != seq) {
            self.open = None;
            self.open = Some((*seq, File::open(path)?));
        }
        let Some((_, file)) = &self.open else {
            unreachable!("opened above");
        };
        let len = file.metadata()?.len();
        let want = len.saturating_sub(offset).min(max_bytes) as usize;
        self.buf.clear();
        self.buf.resize(want, 0);
        let mut got = 0;
        while got < want {
            match file.read_at(&mut self.buf[got..], offset + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.buf.truncate(got);
        Ok(len)
    }

    /// Whether a segment after `seq` may exist: the writer names the next one `seq + 1`, so
    /// one `stat` tells, and a full listing at least every [`RELIST_EVERY`] covers any other
    /// numbering.
    fn may_have_moved_on(&self, seq: u64) -> bool {
        self.listed_at.elapsed() >= RELIST_EVERY || super::segment_path(&self.dir, seq + 1).exists()
    }

    fn relist(&mut self) -> Result<(), LogError> {
        self.segments = list_segments(&self.dir)?;
        self.listed_at = Instant::now();
        if let Some((seq, _)) = &self.open {
            if !self.segments.iter().any(|(s, _)| s == seq) {
                self.open = None;
            }
        }
        Ok(())
    }
}

/// Record bytes after `from` to the end of the newest segment: what a reader at `from` has not
/// read yet. Only the segments' sizes are looked at; nothing is read.
pub fn unread_bytes(dir: &Path, from: Position) -> Result<u64, LogError> {
    Ok(unread_in(&list_segments(dir)?, from))
}

/// Bytes the log's segments take on disk, headers included.
pub fn disk_bytes(dir: &Path) -> Result<u64, LogError> {
    Ok(list_segments(dir)?
        .iter()
        .filter_map(|(_, p)| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum())
}

fn unread_in(segments: &[(u64, std::path::PathBuf)], from: Position) -> u64 {
    segments
        .iter()
        .filter(|(seq, _)| *seq >= from.seq)
        .filter_map(|(seq, p)| {
            let len = std::fs::metadata(p).ok()?.len();
            let start = if *seq == from.seq {
                from.offset
            } else {
                MAGIC.len() as u64
            };
            Some(len.saturating_sub(start))
        })
        .sum()
}

/// Hands out every record of every segment in order; returns how many segments were read.
/// An unreadable segment is skipped with a warning, as is one without the log's header.
pub fn read_all(dir: &Path, mut f: impl FnMut(&[u8])) -> Result<usize, LogError> {
    let mut read = 0;
    for (_, path) in list_segments(dir)? {
        let Ok(bytes) = std::fs::read(&path) else {
            tracing::warn!(path = %path.display(), "event log segment unreadable; skipped");
            continue;
        };
        let Some(body) = bytes.strip_prefix(MAGIC.as_slice()) else {
            continue;
        };
        read += 1;
        scan_all(body, &mut f);
    }
    Ok(read)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contact::log::push_record;
    use std::io::Write;

    fn segment(dir: &Path, seq: u64, payloads: &[&[u8]]) {
        let mut buf = MAGIC.to_vec();
        for p in payloads {
            assert!(push_record(&mut buf, |b| b.extend_from_slice(p)));
        }
        let mut f = File::create(dir.join(format!("events-{seq:020}.log"))).unwrap();
        f.write_all(&buf).unwrap();
    }

    fn collect(dir: &Path, from: Position, max: usize) -> (Vec<Vec<u8>>, Progress) {
        let mut got = Vec::new();
        let p = read_from(dir, from, 1 << 20, |payload, _| {
            if got.len() == max {
                return false;
            }
            got.push(payload.to_vec());
            true
        })
        .unwrap();
        (got, p)
    }

    #[test]
    fn a_tail_reads_each_record_once_across_segments() {
        let dir = std::env::temp_dir().join(format!("nextbest-tail-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        segment(&dir, 1, &[b"a", b"bb", b"ccc"]);
        segment(&dir, 2, &[b"dddd"]);

        let (got, p) = collect(&dir, Position::start(), 2);
        assert_eq!(got, [b"a".to_vec(), b"bb".to_vec()]);
        assert_eq!(p.next.seq, 1);
        // Left: "ccc" (8 + 3) in the first segment, the second one's record (8 + 4).
        assert_eq!(p.backlog_bytes, 11 + 12);
        assert_eq!(unread_bytes(&dir, p.next).unwrap(), 11 + 12);
        assert_eq!(
            unread_bytes(&dir, Position::start()).unwrap(),
            9 + 10 + 11 + 12
        );
        assert_eq!(disk_bytes(&dir).unwrap(), 8 + 30 + 8 + 12);

        let (got, p) = collect(&dir, p.next, 10);
        assert_eq!(got, [b"ccc".to_vec()]);
        let (got, p) = collect(&dir, p.next, 10);
        assert!(got.is_empty(), "the first segment is done: move on");
        assert_eq!(p.next, Position { seq: 2, offset: 8 });
        let (got, p) = collect(&dir, p.next, 10);
        assert_eq!(got, [b"dddd".to_vec()]);
        assert_eq!(p.backlog_bytes, 0);
        assert_eq!(Position::parse(&p.next.to_text()), Some(p.next));

        let mut all = Vec::new();
        assert_eq!(read_all(&dir, |r| all.push(r.to_vec())).unwrap(), 2);
        assert_eq!(all.len(), 4);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_kept_tail_sees_appends_new_segments_and_survives_retention() {
        let dir = std::env::temp_dir().join(format!("nextbest-tail-kept-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        segment(&dir, 1, &[b"a"]);
        let mut tail = Tail::new(&dir);
        let read = |tail: &mut Tail, from: Position| {
            let mut got = Vec::new();
            let p = tail
                .read_from(from, 1 << 20, |payload, _| {
                    got.push(payload.to_vec());
                    true
                })
                .unwrap();
            (got, p.next)
        };
        let (got, at) = read(&mut tail, Position::start());
        assert_eq!(got, [b"a".to_vec()]);

        // Appended to the open segment: read through the kept file.
        let mut buf = Vec::new();
        assert!(push_record(&mut buf, |b| b.extend_from_slice(b"bb")));
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.join(format!("events-{:020}.log", 1)))
            .unwrap()
            .write_all(&buf)
            .unwrap();
        let (got, at) = read(&mut tail, at);
        assert_eq!(got, [b"bb".to_vec()]);

        // The writer moves on to segment 2, and retention deletes segment 1 underneath.
        segment(&dir, 2, &[b"ccc"]);
        std::fs::remove_file(dir.join(format!("events-{:020}.log", 1))).unwrap();
        let (got, at) = read(&mut tail, at);
        assert_eq!(got, [b"ccc".to_vec()], "on to the next segment at once");
        assert_eq!(
            at,
            Position {
                seq: 2,
                offset: 8 + 8 + 3
            }
        );

        // A reader sent back to the start (Redis lost its streams) finds what is left.
        let (got, _) = read(&mut tail, Position::start());
        assert_eq!(got, [b"ccc".to_vec()]);
        let (got, end) = read(&mut tail, at);
        assert!(got.is_empty());
        assert_eq!(end, at);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
