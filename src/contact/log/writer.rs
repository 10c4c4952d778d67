//! The writer thread: group commit, segment roll-over, retention, and recovery from failed
//! writes.
//!
//! A failed write, sync or roll-over fails the batches of that group (their events were not made
//! durable, so their handlers answer 503 and the clients retry) and leaves the writer able to go
//! on: the next group starts a new segment, retrying until the cause (a full disk, say) is gone.
//! Each episode is logged once when it starts and once when it ends, and every failure counts in
//! the error counter. The writer starts even when no segment can be made (a full disk at start),
//! so decisions are served while it retries.
//!
//! Retention never runs while the clock looks wrong: when the wall clock has moved against the
//! monotonic clock since the writer started (a VM restored, NTP stepping the time), or when every
//! event in the log is older than the retention (a clock jumped forward, or a long stop: the
//! log's own times cannot tell which), it logs why and waits; new events confirm the time.

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::MetadataExt as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use super::{
    create_segment, io_err, segment_path, sync_dir, FsyncPolicy, LogError, Segment, MAGIC,
};
use crate::contact::clock::Clock;

/// Most bytes the writer gathers into one group.
const MAX_GROUP_BYTES: usize = 4 << 20;
/// Most batches queued for the writer before handlers wait (bounds memory under overload).
const MAX_QUEUED_BATCHES: usize = 4096;
/// How far the wall clock may drift from the monotonic one before retention stops trusting it.
const MAX_CLOCK_DRIFT_MS: i64 = 60_000;

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
    /// Framed records (see `push_record`).
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

/// Failures to inject into the writer's file operations, for fault tests: each counter is the
/// number of upcoming operations of its kind that fail as a full disk does (`ENOSPC`). All zero
/// in production, where checking them costs one relaxed load per group.
#[derive(Debug, Clone, Default)]
pub struct Inject {
    /// Segment creations (roll-overs) to fail.
    pub fail_creates: Arc<AtomicU64>,
    /// Group writes to fail, each after writing half of its bytes (a partial write).
    pub fail_writes: Arc<AtomicU64>,
}

impl Inject {
    /// Takes one planned failure of a kind, if any is left.
    fn take(counter: &AtomicU64) -> bool {
        counter
            .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1))
            .is_ok()
    }

    fn no_space() -> std::io::Error {
        std::io::Error::from_raw_os_error(28) // ENOSPC
    }
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
    /// Failures to inject (fault tests only).
    pub inject: Inject,
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
        let stats = Arc::new(LogStats::default());
        let mut w = Writer::open(config.clone(), segments, clock, stats.clone());
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
    /// The segment being appended to; `None` until one could be made.
    file: Option<File>,
    len: u64,
    /// The current file must not be appended to any more (a write or sync failed).
    broken: bool,
    dirty: bool,
    last_sync: Instant,
    /// A failure episode is under way (logged once when it starts and once when it ends).
    failing: bool,
    /// The segment written was unlinked under the writer (its data folder deleted): nothing
    /// written from then on would be read again, so nothing more is taken.
    removed: Option<PathBuf>,
    /// Wall clock minus monotonic time at start: a change means the wall clock jumped.
    wall_offset_ms: i64,
    started: Instant,
    /// Retention is waiting for the clock (logged once).
    retention_waiting: bool,
}

impl Writer {
    fn open(
        config: WriterConfig,
        segments: Vec<Segment>,
        clock: Clock,
        stats: Arc<LogStats>,
    ) -> Self {
        let started = Instant::now();
        let mut w = Writer {
            wall_offset_ms: clock.now_ms(),
            config,
            clock,
            stats,
            segments,
            file: None,
            len: 0,
            broken: true,
            dirty: false,
            last_sync: started,
            failing: false,
            removed: None,
            started,
            retention_waiting: false,
        };
        // A failure here (a full disk at start) is retried by the first group.
        let _ = w.rotate();
        w
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
        let result = self.try_write_group(group, buf);
        match (&result, self.failing) {
            (Err(e), false) => {
                self.failing = true;
                tracing::error!(error = %e, "event log writes are failing; events get 503 until they succeed again");
            }
            (Ok(()), true) => {
                self.failing = false;
                tracing::info!("event log writes succeed again");
            }
            _ => {}
        }
        result
    }

    fn try_write_group(&mut self, group: &[Batch], buf: &mut Vec<u8>) -> Result<(), LogError> {
        if let Some(path) = &self.removed {
            return Err(LogError::Removed { path: path.clone() });
        }
        if self.broken || self.file.is_none() || self.len >= self.config.segment_bytes {
            self.rotate()?;
        }
        let path = self.current_path();
        let Some(file) = self.file.as_mut() else {
            return Err(LogError::Closed);
        };
        buf.clear();
        let mut newest = i64::MIN;
        for b in group {
            buf.extend_from_slice(&b.records);
            newest = newest.max(b.newest_ms);
        }
        let written = if Inject::take(&self.config.inject.fail_writes) {
            file.write_all(&buf[..buf.len() / 2])
                .and(Err(Inject::no_space()))
        } else {
            file.write_all(buf)
        };
        if let Err(e) = written {
            self.stats.errors.fetch_add(1, Relaxed);
            // Cut a partial write back, so the next group does not follow a torn record; the
            // next group starts a new segment either way.
            let _ = file.set_len(self.len);
            self.broken = true;
            return Err(io_err(&path)(e));
        }
        // A segment no name leads to any more (`rm -rf` of the data folder, a folder replaced)
        // would take these events and lose them at the next start; one `fstat` a group says so.
        if file.metadata().is_ok_and(|m| m.nlink() == 0) {
            self.stats.errors.fetch_add(1, Relaxed);
            self.removed = Some(path.clone());
            return Err(LogError::Removed { path });
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
                if let Err(e) = file.sync_data() {
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
        let Some(file) = &self.file else { return };
        match file.sync_data() {
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

    /// Starts the next segment. On failure nothing is left behind (a half-made file would
    /// block its name for good), the error counts, and the next group tries again.
    fn rotate(&mut self) -> Result<(), LogError> {
        if !self.broken {
            self.sync();
        }
        let seq = self.segments.last().map_or(1, |s| s.seq + 1);
        let path = segment_path(&self.config.dir, seq);
        let created = if Inject::take(&self.config.inject.fail_creates) {
            // As a full disk does: the file is made, its header cannot be written.
            fs::File::create(&path)
                .map_err(io_err(&path))
                .and(Err(io_err(&path)(Inject::no_space())))
        } else {
            create_segment(&self.config.dir, seq)
        };
        let file = match created {
            Ok(f) => f,
            Err(e) => {
                self.stats.errors.fetch_add(1, Relaxed);
                let _ = fs::remove_file(&path);
                self.file = None;
                self.broken = true;
                return Err(e);
            }
        };
        self.file = Some(file);
        self.segments.push(Segment {
            seq,
            path,
            newest_ms: i64::MIN,
            damaged: false,
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

    /// Why retention must wait, if it must: the clock cannot be trusted to say what is old.
    fn clock_doubt(&self, cutoff: i64) -> Option<&'static str> {
        let now = self.clock.now_ms();
        let drift = now - self.started.elapsed().as_millis() as i64 - self.wall_offset_ms;
        if drift.abs() > MAX_CLOCK_DRIFT_MS {
            return Some("the wall clock jumped since start");
        }
        let newest = self.segments.iter().map(|s| s.newest_ms).max()?;
        (newest != i64::MIN && newest < cutoff).then_some(
            "every event in the log is older than the retention (a clock jump or a long stop)",
        )
    }

    /// Deletes closed segments whose newest event is older than the retention, unless the
    /// clock is in doubt (see the module doc).
    fn retain(&mut self) {
        let cutoff = self
            .clock
            .now_ms()
            .saturating_sub(self.config.retention_ms.load(Relaxed));
        match self.clock_doubt(cutoff) {
            Some(why) => {
                if !self.retention_waiting {
                    self.retention_waiting = true;
                    tracing::warn!(reason = why, "event log retention waits: nothing is deleted until the clock and the log agree");
                }
                return;
            }
            None if self.retention_waiting => {
                self.retention_waiting = false;
                tracing::info!("event log retention resumes");
            }
            None => {}
        }
        let active = self.segments.len().saturating_sub(1);
        let mut kept = Vec::with_capacity(self.segments.len());
        for (i, s) in self.segments.drain(..).enumerate() {
            let unknown_age = s.damaged && s.newest_ms == i64::MIN;
            if i < active && s.newest_ms < cutoff && !unknown_age {
                match fs::remove_file(&s.path) {
                    Ok(()) => {
                        self.stats.segments_deleted.fetch_add(1, Relaxed);
                        if s.newest_ms == i64::MIN {
                            // The segment a run opened and never wrote to (each start opens one).
                            tracing::debug!(path = %s.path.display(), "empty event log segment deleted");
                        } else {
                            tracing::info!(path = %s.path.display(), "event log segment past retention deleted");
                        }
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
