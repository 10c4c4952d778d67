use super::*;

use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering::Relaxed};

use crate::contact::clock::Clock;

/// A unique, empty folder under the system temp dir, removed on drop.
pub(crate) struct TempDir(pub PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "nextbest-log-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Relaxed)
        ));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Counts what the writer says it wrote.
#[derive(Clone, Default)]
struct Counting(Arc<AtomicU64>);

impl Sink for Counting {
    fn written(&mut self, records: &[u8]) {
        let (_, bad) = scan(records, |_| {
            self.0.fetch_add(1, Relaxed);
        });
        assert!(bad.is_none());
    }
    fn failed(&mut self, _: &[u128]) {}
}

fn record(n: u64) -> Vec<u8> {
    let mut buf = Vec::new();
    assert!(push_record(&mut buf, |b| {
        b.extend_from_slice(&n.to_le_bytes());
        b.extend_from_slice(b"payload");
    }));
    buf
}

fn config(dir: &Path, fsync: FsyncPolicy, segment_bytes: u64) -> WriterConfig {
    WriterConfig {
        dir: dir.to_owned(),
        fsync,
        segment_bytes,
        retention_ms: Arc::new(AtomicI64::new(i64::MAX / 4)),
        inject: Inject::default(),
    }
}

/// Writes `n` records (one batch each) and closes the writer.
async fn write(dir: &Path, fsync: FsyncPolicy, segment_bytes: u64, from: u64, n: u64) -> u64 {
    let (_, segments) = replay(dir, |_| Some(0)).unwrap();
    let sink = Counting::default();
    let w = LogWriter::start(
        config(dir, fsync, segment_bytes),
        segments,
        Clock::system(),
        Box::new(sink.clone()),
    )
    .unwrap();
    // One batch at a time, so small segments roll over between them.
    for i in from..from + n {
        let r = w.reserve().await.unwrap();
        let ack = w.send(r, record(i), 0, Vec::new()).ok().unwrap();
        ack.await.unwrap().unwrap();
    }
    w.close();
    sink.0.load(Relaxed)
}

fn replayed(dir: &Path) -> (ReplayReport, Vec<u64>) {
    let mut seen = Vec::new();
    let (report, _) = replay(dir, |p| {
        seen.push(u64::from_le_bytes(p[..8].try_into().unwrap()));
        Some(1)
    })
    .unwrap();
    (report, seen)
}

#[test]
fn framing_detects_every_kind_of_tear() {
    let mut buf = record(1);
    buf.extend(record(2));
    let one = record(1).len();
    let mut n = 0;
    assert_eq!(scan(&buf, |_| n += 1), (buf.len(), None));
    assert_eq!(n, 2);
    // Cut anywhere inside the second record: the first survives.
    for cut in one + 1..buf.len() {
        let (good, bad) = scan(&buf[..cut], |_| {});
        assert_eq!(good, one, "cut at {cut}");
        assert_eq!(bad, Some(Bad::Truncated));
    }
    // A flipped payload byte.
    let mut flipped = buf.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    assert_eq!(scan(&flipped, |_| {}), (one, Some(Bad::Checksum)));
    // A zero-filled tail (a file extended but never written) is no record.
    let mut zeros = buf.clone();
    zeros.extend_from_slice(&[0; 64]);
    assert_eq!(scan(&zeros, |_| {}), (buf.len(), Some(Bad::Length)));
    // A length beyond the maximum.
    let mut huge = buf.clone();
    huge.extend_from_slice(&(MAX_RECORD as u32 + 1).to_le_bytes());
    huge.extend_from_slice(&[0; 12]);
    assert_eq!(scan(&huge, |_| {}), (buf.len(), Some(Bad::Length)));
    // Empty and oversize payloads are never written.
    let mut out = Vec::new();
    assert!(!push_record(&mut out, |_| {}));
    assert!(!push_record(&mut out, |b| b
        .extend(std::iter::repeat_n(7, MAX_RECORD + 1))));
    assert!(out.is_empty());
}

#[tokio::test]
async fn written_records_replay_in_order_across_segments() {
    let dir = TempDir::new("order");
    assert_eq!(write(&dir.0, FsyncPolicy::Always, 200, 0, 50).await, 50);
    let (report, seen) = replayed(&dir.0);
    assert_eq!(seen, (0..50).collect::<Vec<_>>());
    assert!(
        report.segments > 3,
        "200-byte segments roll over: {report:?}"
    );
    assert_eq!(report.torn_records_dropped, 0);
    // A restart appends to a new segment; both runs replay.
    let interval = FsyncPolicy::Interval(Duration::from_millis(5));
    assert_eq!(write(&dir.0, interval, 1 << 20, 50, 10).await, 10);
    assert_eq!(replayed(&dir.0).1, (0..60).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_torn_tail_is_cut_and_earlier_records_kept() {
    let dir = TempDir::new("torn");
    write(&dir.0, FsyncPolicy::Always, 1 << 20, 0, 20).await;
    let (_, path) = list_segments(&dir.0).unwrap().pop().unwrap();
    let full = fs::metadata(&path).unwrap().len();
    // Crash mid-write: half of a 21st record reached the file.
    let half = record(20);
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(&half[..half.len() / 2]).unwrap();
    drop(f);
    let (report, seen) = replayed(&dir.0);
    assert_eq!(seen, (0..20).collect::<Vec<_>>());
    assert_eq!(report.torn_records_dropped, 1);
    assert_eq!(report.torn_bytes_dropped, (half.len() / 2) as u64);
    assert_eq!(
        fs::metadata(&path).unwrap().len(),
        full,
        "cut back to the last good record"
    );
    // The next replay is clean, and writing goes on after it.
    assert_eq!(replayed(&dir.0).0.torn_records_dropped, 0);
    write(&dir.0, FsyncPolicy::Always, 1 << 20, 20, 5).await;
    assert_eq!(replayed(&dir.0).1, (0..25).collect::<Vec<_>>());
}

/// Three segments of ten records (0..30); flips one byte of record `rec` (0-based within
/// segment `seg`) at `byte` bytes into it, replays, and returns what came back.
async fn flipped(seg: usize, rec: usize, byte: usize) -> (ReplayReport, Vec<u64>, TempDir) {
    let dir = TempDir::new("flip");
    for s in 0..3 {
        write(&dir.0, FsyncPolicy::Always, 1 << 20, s * 10, 10).await;
    }
    let (_, path) = &list_segments(&dir.0).unwrap()[seg];
    let mut bytes = fs::read(path).unwrap();
    bytes[MAGIC.len() + rec * record(0).len() + byte] ^= 0x5a;
    fs::write(path, &bytes).unwrap();
    let (report, seen) = replayed(&dir.0);
    (report, seen, dir)
}

#[tokio::test]
async fn a_flipped_byte_costs_only_the_record_it_touches() {
    let len = record(0).len();
    // Older and newest segments; first, middle and a late record; length, checksum and
    // payload bytes.
    for seg in 0..3 {
        for rec in [0, 4, 8] {
            for byte in [0, 3, 5, RECORD_HEADER, len - 1] {
                let (report, seen, dir) = flipped(seg, rec, byte).await;
                let lost = (seg * 10 + rec) as u64;
                let expect: Vec<u64> = (0..30).filter(|&n| n != lost).collect();
                assert_eq!(seen, expect, "segment {seg}, record {rec}, byte {byte}");
                assert_eq!(report.corrupt_segments, 1, "{report:?}");
                assert_eq!(report.torn_records_dropped, 0);
                let name = list_segments(&dir.0).unwrap()[seg].1.clone();
                let name = name.file_name().unwrap();
                assert!(
                    dir.0.join("damaged").join(name).exists(),
                    "a copy is kept for inspection"
                );
            }
        }
    }
}

#[tokio::test]
async fn only_what_follows_the_last_good_record_of_the_log_is_cut() {
    // The newest segment's last record damaged: that is what a torn write looks like.
    let (report, seen, dir) = flipped(2, 9, RECORD_HEADER + 2).await;
    assert_eq!(seen, (0..29).collect::<Vec<_>>());
    assert_eq!(report.torn_records_dropped, 1);
    assert_eq!(report.corrupt_segments, 0);
    let (_, newest) = list_segments(&dir.0).unwrap().pop().unwrap();
    let expected = (MAGIC.len() + 9 * record(0).len()) as u64;
    assert_eq!(fs::metadata(newest).unwrap().len(), expected);
    // The same damage in an older segment is kept in place, whole.
    let (report, seen, dir) = flipped(1, 9, RECORD_HEADER + 2).await;
    assert_eq!(seen, (0..30).filter(|&n| n != 19).collect::<Vec<_>>());
    assert_eq!(
        (report.corrupt_segments, report.torn_records_dropped),
        (1, 0)
    );
    let (_, older) = &list_segments(&dir.0).unwrap()[1];
    assert_eq!(
        fs::metadata(older).unwrap().len(),
        (MAGIC.len() + 10 * record(0).len()) as u64
    );
}

#[tokio::test]
async fn a_damaged_segment_survives_retention_at_start() {
    // Its first record damaged: the rest still tells its age, and it is not deleted for
    // having none.
    let (_, _, dir) = flipped(0, 0, 2).await;
    let (_, segments) = replay(&dir.0, |_| Some(1_000_000_000)).unwrap();
    let (clock, _) = Clock::manual(1_000_000_100);
    let w = LogWriter::start(
        WriterConfig {
            retention_ms: Arc::new(AtomicI64::new(1_000)),
            ..config(&dir.0, FsyncPolicy::Always, 1 << 20)
        },
        segments,
        clock,
        Box::new(Counting::default()),
    )
    .unwrap();
    w.close();
    assert_eq!(w.stats.segments_deleted.load(Relaxed), 0);
    assert_eq!(replayed(&dir.0).1.len(), 29);
}

#[test]
fn a_segment_torn_before_its_header_is_dropped() {
    let dir = TempDir::new("header");
    fs::write(segment_path(&dir.0, 1), &MAGIC[..3]).unwrap();
    let (report, segments) = replay(&dir.0, |_| Some(0)).unwrap();
    assert!(segments.is_empty());
    assert_eq!(report.torn_bytes_dropped, 3);
    assert!(list_segments(&dir.0).unwrap().is_empty());
    fs::write(dir.0.join("events-00000000000000000002.log"), b"not a log").unwrap();
    assert_eq!(replay(&dir.0, |_| Some(0)).unwrap().0.corrupt_segments, 1);
}

#[tokio::test]
async fn retention_deletes_segments_older_than_the_horizon() {
    let dir = TempDir::new("retention");
    let (clock, _) = Clock::manual(1_000_000_000);
    let retention = Arc::new(AtomicI64::new(1000));
    let sink = Counting::default();
    let start = |segments| {
        LogWriter::start(
            WriterConfig {
                retention_ms: retention.clone(),
                ..config(&dir.0, FsyncPolicy::Always, 20)
            },
            segments,
            clock.clone(),
            Box::new(sink.clone()),
        )
        .unwrap()
    };
    let w = start(Vec::new());
    // Old events, then new ones; small segments roll over between batches.
    for (i, ts) in [
        (0u64, 1_000u64),
        (1, 1_000),
        (2, 999_999_500),
        (3, 999_999_600),
    ] {
        let r = w.reserve().await.unwrap();
        w.send(r, record(i), ts as i64, Vec::new())
            .ok()
            .unwrap()
            .await
            .unwrap()
            .unwrap();
    }
    w.close();
    assert_eq!(
        w.stats.segments_deleted.load(Relaxed),
        2,
        "the two old ones"
    );
    let (_, seen) = replayed(&dir.0);
    assert_eq!(seen, vec![2, 3]);
}

/// Sends one record with event time `ts` and waits for its fate.
async fn send_one(w: &LogWriter, n: u64, ts: i64) -> Result<(), LogError> {
    let r = w.reserve().await.unwrap();
    w.send(r, record(n), ts, Vec::new())
        .ok()
        .unwrap()
        .await
        .unwrap()
}

const DAY: i64 = 86_400_000;

#[tokio::test]
async fn a_clock_jump_at_start_deletes_nothing() {
    let dir = TempDir::new("jump-start");
    let t0 = 1_800_000_000_000;
    let retention = Arc::new(AtomicI64::new(30 * DAY));
    let start = |clock: Clock| {
        // Every record here was written at t0.
        let (_, segments) = replay(&dir.0, |_| Some(t0)).unwrap();
        LogWriter::start(
            WriterConfig {
                retention_ms: retention.clone(),
                ..config(&dir.0, FsyncPolicy::Always, 20)
            },
            segments,
            clock,
            Box::new(Counting::default()),
        )
        .unwrap()
    };
    let w = start(Clock::manual(t0).0);
    for n in 0..4 {
        send_one(&w, n, t0).await.unwrap();
    }
    w.close();
    // The machine comes back 400 days later by its clock: the log's newest event says the
    // clock is in doubt, so nothing goes.
    let w = start(Clock::manual(t0 + 400 * DAY).0);
    w.close();
    assert_eq!(w.stats.segments_deleted.load(Relaxed), 0);
    assert_eq!(replayed(&dir.0).1, vec![0, 1, 2, 3]);
}

#[tokio::test]
async fn a_wall_clock_jump_while_running_pauses_retention() {
    let dir = TempDir::new("jump-live");
    let t0 = 1_800_000_000_000;
    let (clock, hand) = Clock::manual(t0);
    let w = LogWriter::start(
        WriterConfig {
            retention_ms: Arc::new(AtomicI64::new(30 * DAY)),
            ..config(&dir.0, FsyncPolicy::Always, 20)
        },
        Vec::new(),
        clock,
        Box::new(Counting::default()),
    )
    .unwrap();
    send_one(&w, 0, t0).await.unwrap();
    send_one(&w, 1, t0).await.unwrap();
    hand.advance(std::time::Duration::from_millis(400 * DAY as u64));
    // Events stamped by the jumped clock roll segments, which would make retention run.
    for n in 2..5 {
        send_one(&w, n, t0 + 400 * DAY).await.unwrap();
    }
    w.close();
    assert_eq!(w.stats.segments_deleted.load(Relaxed), 0);
    assert_eq!(replayed(&dir.0).1, vec![0, 1, 2, 3, 4]);
}

#[tokio::test]
async fn failed_roll_overs_and_writes_recover_once_space_returns() {
    let dir = TempDir::new("enospc");
    let cfg = config(&dir.0, FsyncPolicy::Always, 20);
    let inject = cfg.inject.clone();
    // A full disk at start: the writer still starts.
    inject.fail_creates.store(1, Relaxed);
    let w = LogWriter::start(
        cfg,
        Vec::new(),
        Clock::system(),
        Box::new(Counting::default()),
    )
    .unwrap();
    assert!(
        list_segments(&dir.0).unwrap().is_empty(),
        "no half-made segment"
    );
    send_one(&w, 0, 1).await.unwrap();
    // Two roll-overs fail (every group rolls at this segment size), then space returns.
    inject.fail_creates.store(2, Relaxed);
    assert!(send_one(&w, 1, 1).await.is_err());
    assert!(send_one(&w, 2, 1).await.is_err());
    send_one(&w, 3, 1).await.unwrap();
    // A write that stops half-way: cut back, and the next group goes on.
    inject.fail_writes.store(1, Relaxed);
    assert!(send_one(&w, 4, 1).await.is_err());
    send_one(&w, 5, 1).await.unwrap();
    w.close();
    assert_eq!(w.stats.errors.load(Relaxed), 4);
    let (report, seen) = replayed(&dir.0);
    assert_eq!(seen, vec![0, 3, 5]);
    assert_eq!(
        (report.corrupt_segments, report.torn_records_dropped),
        (0, 0)
    );
}

/// A data folder deleted under a running server (`rm -rf`, a folder replaced): the events
/// written into the unlinked segment would be gone at the next start, so that batch is refused
/// and so is every later one, even once a folder of that name is back (its lock went with the
/// old one: another process may hold the new one).
#[tokio::test]
async fn a_segment_removed_under_the_writer_refuses_every_batch_from_then() {
    let dir = TempDir::new("removed");
    let w = LogWriter::start(
        config(&dir.0, FsyncPolicy::Always, 1 << 20),
        Vec::new(),
        Clock::system(),
        Box::new(Counting::default()),
    )
    .unwrap();
    send_one(&w, 0, 1).await.unwrap();
    std::fs::remove_dir_all(&dir.0).unwrap();
    let e = send_one(&w, 1, 1).await.unwrap_err().to_string();
    assert!(
        e.contains("was removed under this server (its data folder deleted or replaced)"),
        "{e}"
    );
    std::fs::create_dir_all(&dir.0).unwrap();
    let e = send_one(&w, 2, 1).await.unwrap_err().to_string();
    assert!(e.contains("was removed under this server"), "{e}");
    w.close();
    assert!(list_segments(&dir.0).unwrap().is_empty(), "{e}");
}
