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
//! Replay reads segments in order and checks every record's length and checksum. A bad record
//! in the newest segment is a write torn by a crash: the file is cut back to the last good record
//! and everything before it is kept. A bad record in an older segment (which was synced before
//! the next one began) is corruption: the rest of that segment is skipped, loudly, and left on
//! disk for inspection. The writer always starts a new segment, so it never appends after a tear.
//!
//! # Retention
//! A segment is deleted once the newest event in it is older than the retention (the longest
//! policy window, at least the de-duplication window), checked when a segment rolls over and at
//! start. One process per data folder: nothing here guards against two.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use super::clock::Clock;

/// The first bytes of every segment.
pub const MAGIC: &[u8; 8] = b"NBEVLOG1";
/// Bytes before each payload: length and checksum.
pub const RECORD_HEADER: usize = 8;
/// Largest payload accepted; longer lengths are torn or corrupt headers.
pub const MAX_RECORD: usize = 64 * 1024;
/// Most bytes the writer gathers into one group.
const MAX_GROUP_BYTES: usize = 4 << 20;
/// Most batches queued for the writer before handlers wait (bounds memory under overload).
const MAX_QUEUED_BATCHES: usize = 4096;

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

/// Walks the records of `bytes` (no segment magic), calling `f` with each payload; returns the
/// offset after the last good record, and why it stopped early, if it did.
pub fn scan(bytes: &[u8], mut f: impl FnMut(&[u8])) -> (usize, Option<Bad>) {
    let mut at = 0;
    while at < bytes.len() {
        let Some(head) = bytes.get(at..at + RECORD_HEADER) else {
            return (at, Some(Bad::Truncated));
        };
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if len == 0 || len > MAX_RECORD {
            return (at, Some(Bad::Length));
        }
        let start = at + RECORD_HEADER;
        let Some(payload) = bytes.get(start..start + len) else {
            return (at, Some(Bad::Truncated));
        };
        if crc32fast::hash(payload) != crc {
            return (at, Some(Bad::Checksum));
        }
        f(payload);
        at = start + len;
    }
    (at, None)
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
}

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
    /// Older segments whose rest was skipped because a record failed its checksum.
    pub corrupt_segments: u64,
    /// Records whose payload did not decode (checksum right: written by another format).
    pub undecodable_records: u64,
    /// Time replay took, in milliseconds.
    pub took_ms: u64,
}

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
            tracing::error!(path = %path.display(), "not an event log segment; skipped");
            report.corrupt_segments += 1;
            continue;
        }
        let mut newest_ms = i64::MIN;
        let body = &bytes[MAGIC.len()..];
        let (good, bad) = scan(body, |payload| {
            report.records += 1;
            report.bytes += (payload.len() + RECORD_HEADER) as u64;
            match apply(payload) {
                Some(ts) => newest_ms = newest_ms.max(ts),
                None => report.undecodable_records += 1,
            }
        });
        if let Some(bad) = bad {
            let at = (MAGIC.len() + good) as u64;
            if newest {
                tracing::warn!(path = %path.display(), offset = at, why = ?bad,
                    "dropping a torn record at the end of the log");
                report.torn_records_dropped += 1;
                report.torn_bytes_dropped += bytes.len() as u64 - at;
                let f = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(io_err(path))?;
                f.set_len(at).map_err(io_err(path))?;
                f.sync_all().map_err(io_err(path))?;
            } else {
                tracing::error!(path = %path.display(), offset = at, why = ?bad,
                    "corrupt record in an older segment; the rest of it is skipped");
                report.corrupt_segments += 1;
            }
        }
        segments.push(Segment {
            seq: *seq,
            path: path.clone(),
            newest_ms,
        });
    }
    report.took_ms = started.elapsed().as_millis() as u64;
    Ok((report, segments))
}

/// Counters of the writer, for stats and metrics.
#[derive(Debug, Default)]
pub struct LogStats {
    /// Groups written.
    pub groups: AtomicU64,
    /// `fdatasync` calls.
    pub fsyncs: AtomicU64,
    /// Batches written.
    pub batches: AtomicU64,
    /// Bytes written.
    pub bytes: AtomicU64,
    /// Failed writes or syncs.
    pub errors: AtomicU64,
    /// Segments on disk.
    pub segments: AtomicU64,
    /// Segments deleted by retention.
    pub segments_deleted: AtomicU64,
}

/// What the writer does with a batch once its fate is known, on the writer thread.
pub trait Sink: Send + 'static {
    /// The batch is written (and synced, under [`FsyncPolicy::Always`]).
    fn written(&mut self, records: &[u8]);
    /// The batch could not be written; `claims` are the event ids it had claimed.
    fn failed(&mut self, claims: &[u128]);
}

/// A batch of framed records on its way to disk.
pub struct Batch {
    /// Framed records (see [`push_record`]).
    pub records: Vec<u8>,
    /// Newest event time among them, for retention.
    pub newest_ms: i64,
    /// Event ids the batch claimed, released if it cannot be written.
    pub claims: Vec<u128>,
    ack: Option<oneshot::Sender<Result<(), LogError>>>,
    _permit: Option<OwnedSemaphorePermit>,
}

enum Msg {
    Batch(Batch),
    Close,
}

/// Where the writer writes and how.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// The data folder.
    pub dir: PathBuf,
    /// When acknowledged events reach the disk.
    pub fsync: FsyncPolicy,
    /// A segment rolls over once it is this large.
    pub segment_bytes: u64,
    /// Segments whose newest event is older than this are deleted (ms, shared with the state).
    pub retention_ms: Arc<AtomicI64>,
}

/// The handle handlers append through; the writer thread behind it owns the files.
pub struct LogWriter {
    tx: mpsc::Sender<Msg>,
    permits: Arc<Semaphore>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Writer counters.
    pub stats: Arc<LogStats>,
    fsync: FsyncPolicy,
}

impl LogWriter {
    /// Starts the writer on a new segment after `segments` (those found by replay).
    pub fn start(
        config: WriterConfig,
        segments: Vec<Segment>,
        clock: Clock,
        sink: Box<dyn Sink>,
    ) -> Result<Self, LogError> {
        let next = segments.last().map_or(1, |s| s.seq + 1);
        let stats = Arc::new(LogStats::default());
        let mut w = Writer::open(config.clone(), next, segments, clock, stats.clone())?;
        w.retain();
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("nextbest-event-log".into())
            .spawn(move || w.run(rx, sink))
            .map_err(io_err(&config.dir))?;
        Ok(LogWriter {
            tx,
            permits: Arc::new(Semaphore::new(MAX_QUEUED_BATCHES)),
            thread: Mutex::new(Some(thread)),
            stats,
            fsync: config.fsync,
        })
    }

    /// The fsync policy in force.
    pub fn fsync(&self) -> FsyncPolicy {
        self.fsync
    }

    /// Waits for room in the writer's queue (cancel-safe: nothing is claimed yet).
    pub async fn reserve(&self) -> Result<Reservation, LogError> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| LogError::Closed)?;
        Ok(Reservation(permit))
    }

    /// Hands a batch to the writer; the receiver resolves once it is durable (or failed). The
    /// hand-over is synchronous, so a cancelled request cannot leave claims without a write.
    pub fn send(
        &self,
        r: Reservation,
        records: Vec<u8>,
        newest_ms: i64,
        claims: Vec<u128>,
    ) -> Result<oneshot::Receiver<Result<(), LogError>>, Vec<u128>> {
        let (ack, done) = oneshot::channel();
        let batch = Batch {
            records,
            newest_ms,
            claims,
            ack: Some(ack),
            _permit: Some(r.0),
        };
        match self.tx.send(Msg::Batch(batch)) {
            Ok(()) => Ok(done),
            Err(mpsc::SendError(Msg::Batch(b))) => Err(b.claims),
            Err(_) => Err(Vec::new()),
        }
    }

    /// Writes what is queued, syncs and stops the writer, waiting for it (blocks the thread).
    pub fn close(&self) {
        let _ = self.tx.send(Msg::Close);
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

/// Room for one batch in the writer's queue.
pub struct Reservation(OwnedSemaphorePermit);

struct Writer {
    config: WriterConfig,
    clock: Clock,
    stats: Arc<LogStats>,
    segments: Vec<Segment>,
    file: File,
    len: u64,
    /// The current file must not be appended to any more (a write or sync failed).
    broken: bool,
    dirty: bool,
    last_sync: Instant,
}

impl Writer {
    fn open(
        config: WriterConfig,
        seq: u64,
        mut segments: Vec<Segment>,
        clock: Clock,
        stats: Arc<LogStats>,
    ) -> Result<Self, LogError> {
        let file = create_segment(&config.dir, seq)?;
        segments.push(Segment {
            seq,
            path: segment_path(&config.dir, seq),
            newest_ms: i64::MIN,
        });
        stats.segments.store(segments.len() as u64, Relaxed);
        Ok(Writer {
            config,
            clock,
            stats,
            segments,
            file,
            len: MAGIC.len() as u64,
            broken: false,
            dirty: false,
            last_sync: Instant::now(),
        })
    }

    fn run(mut self, rx: mpsc::Receiver<Msg>, mut sink: Box<dyn Sink>) {
        let mut group: Vec<Batch> = Vec::new();
        let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
        loop {
            let first = match self.config.fsync {
                FsyncPolicy::Interval(every) if self.dirty => {
                    let left = every.saturating_sub(self.last_sync.elapsed());
                    match rx.recv_timeout(left) {
                        Ok(m) => m,
                        Err(RecvTimeoutError::Timeout) => {
                            self.sync();
                            continue;
                        }
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
                _ => match rx.recv() {
                    Ok(m) => m,
                    Err(_) => break,
                },
            };
            let mut closing = false;
            match first {
                Msg::Batch(b) => group.push(b),
                Msg::Close => closing = true,
            }
            let mut bytes: usize = group.iter().map(|b| b.records.len()).sum();
            while !closing && bytes < MAX_GROUP_BYTES {
                match rx.try_recv() {
                    Ok(Msg::Batch(b)) => {
                        bytes += b.records.len();
                        group.push(b);
                    }
                    Ok(Msg::Close) => closing = true,
                    Err(_) => break,
                }
            }
            if !group.is_empty() {
                let result = self.write_group(&group, &mut buf);
                for mut b in group.drain(..) {
                    match &result {
                        Ok(()) => sink.written(&b.records),
                        Err(_) => sink.failed(&b.claims),
                    }
                    if let Some(ack) = b.ack.take() {
                        let _ = ack.send(result.clone());
                    }
                }
            }
            if closing {
                self.sync();
                return;
            }
        }
        self.sync();
    }

    fn write_group(&mut self, group: &[Batch], buf: &mut Vec<u8>) -> Result<(), LogError> {
        if self.broken || self.len >= self.config.segment_bytes {
            self.rotate()?;
        }
        buf.clear();
        let mut newest = i64::MIN;
        for b in group {
            buf.extend_from_slice(&b.records);
            newest = newest.max(b.newest_ms);
        }
        let path = self.current_path();
        if let Err(e) = self.file.write_all(buf) {
            self.stats.errors.fetch_add(1, Relaxed);
            // Cut a partial write back, so the next group does not follow a torn record.
            if self.file.set_len(self.len).is_err() {
                self.broken = true;
            }
            return Err(io_err(&path)(e));
        }
        self.len += buf.len() as u64;
        if let Some(s) = self.segments.last_mut() {
            s.newest_ms = s.newest_ms.max(newest);
        }
        self.stats.groups.fetch_add(1, Relaxed);
        self.stats.batches.fetch_add(group.len() as u64, Relaxed);
        self.stats.bytes.fetch_add(buf.len() as u64, Relaxed);
        self.dirty = true;
        match self.config.fsync {
            FsyncPolicy::Always => {
                if let Err(e) = self.file.sync_data() {
                    // After a failed sync the page cache cannot be trusted: start afresh.
                    self.stats.errors.fetch_add(1, Relaxed);
                    self.broken = true;
                    return Err(io_err(&path)(e));
                }
                self.stats.fsyncs.fetch_add(1, Relaxed);
                self.dirty = false;
                self.last_sync = Instant::now();
            }
            FsyncPolicy::Interval(every) => {
                if self.last_sync.elapsed() >= every {
                    self.sync();
                }
            }
        }
        Ok(())
    }

    fn current_path(&self) -> PathBuf {
        self.segments
            .last()
            .map_or_else(|| self.config.dir.clone(), |s| s.path.clone())
    }

    fn sync(&mut self) {
        if !self.dirty {
            return;
        }
        match self.file.sync_data() {
            Ok(()) => {
                self.stats.fsyncs.fetch_add(1, Relaxed);
                self.dirty = false;
            }
            Err(e) => {
                self.stats.errors.fetch_add(1, Relaxed);
                self.broken = true;
                tracing::error!(error = %e, "event log sync failed; starting a new segment");
            }
        }
        self.last_sync = Instant::now();
    }

    fn rotate(&mut self) -> Result<(), LogError> {
        if !self.broken {
            self.sync();
        }
        let seq = self.segments.last().map_or(1, |s| s.seq + 1);
        self.file = create_segment(&self.config.dir, seq)?;
        self.segments.push(Segment {
            seq,
            path: segment_path(&self.config.dir, seq),
            newest_ms: i64::MIN,
        });
        self.len = MAGIC.len() as u64;
        self.broken = false;
        self.dirty = false;
        self.retain();
        self.stats
            .segments
            .store(self.segments.len() as u64, Relaxed);
        Ok(())
    }

    /// Deletes closed segments whose newest event is older than the retention.
    fn retain(&mut self) {
        let cutoff = self
            .clock
            .now_ms()
            .saturating_sub(self.config.retention_ms.load(Relaxed));
        let active = self.segments.len().saturating_sub(1);
        let mut kept = Vec::with_capacity(self.segments.len());
        for (i, s) in self.segments.drain(..).enumerate() {
            if i < active && s.newest_ms < cutoff {
                match fs::remove_file(&s.path) {
                    Ok(()) => {
                        self.stats.segments_deleted.fetch_add(1, Relaxed);
                        tracing::info!(path = %s.path.display(), "event log segment past retention deleted");
                        continue;
                    }
                    Err(e) => tracing::warn!(path = %s.path.display(), error = %e,
                        "could not delete an event log segment past retention"),
                }
            }
            kept.push(s);
        }
        self.segments = kept;
        self.stats
            .segments
            .store(self.segments.len() as u64, Relaxed);
        sync_dir(&self.config.dir);
    }
}

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

fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests;
