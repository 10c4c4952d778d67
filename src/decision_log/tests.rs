//! The decision log's writer: a full queue, files rolled by size.

use super::*;

#[test]
fn a_full_queue_drops_the_sample_and_counts_it_without_waiting() {
    // A queue of one that nobody drains: the writer is stalled.
    let (tx, rx) = mpsc::sync_channel(1);
    let dir = std::env::temp_dir().join(format!("nb-decision-queue-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = DecisionLog {
        threshold: 1 << SAMPLE_BITS,
        queue: tx,
        writer: Mutex::new(None),
        stats: Arc::default(),
        _lock: FolderLock::acquire(&dir, Folder::DecisionLog, None).unwrap(),
    };
    let snapshot = Arc::new(Snapshot::default());
    let fallback = crate::engine::Fallback::builtin_empty();
    let d = Decision {
        fallback: None,
        fallback_content: &fallback,
        channel: None,
        ranked: Vec::new(),
        explain: Vec::new(),
        explored: false,
        anonymous: false,
    };
    let req = Request {
        customer_id: Some("C1"),
        channel: "web",
        placement: "home_hero",
        ..Default::default()
    };
    let contacts = crate::contact::Contacts::in_memory(
        &Default::default(),
        crate::contact::Clock::manual(1).0,
    );
    let mut ctx = contacts.for_decision(
        &Default::default(),
        (Some("C1"), None),
        0,
        Variant::Champion,
        Default::default(),
    );
    ctx.decision_id = ulid::Ulid(7);
    for _ in 0..3 {
        log.offer(&snapshot, &ctx, &req, None, &d);
    }
    assert_eq!(log.dropped(), 2, "one queued, two dropped");
    let queued = rx.try_recv().unwrap();
    assert_eq!(queued.request.customer_id, "C1");
    // Deadline answers depend on the machine, not the inputs: never logged.
    let late = Decision {
        fallback: Some(FallbackReason::Deadline),
        fallback_content: &fallback,
        channel: None,
        ranked: Vec::new(),
        explain: Vec::new(),
        explored: false,
        anonymous: false,
    };
    log.offer(&snapshot, &ctx, &req, None, &late);
    assert!(rx.try_recv().is_err());
    // Sampling: ids whose random bits lie past the threshold are not logged.
    let none = DecisionLog {
        threshold: 0,
        ..log
    };
    none.offer(&snapshot, &ctx, &req, None, &d);
    assert!(rx.try_recv().is_err());
    assert_eq!(none.dropped(), 2);
}

#[test]
fn files_roll_by_size_and_the_oldest_go_first() {
    let dir = std::env::temp_dir().join(format!("nb-decision-log-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = DecisionLogConfig {
        dir: dir.clone(),
        sample: 1.0,
        file_bytes: 4096,
        max_files: 3,
    };
    std::fs::create_dir_all(&dir).unwrap();
    let mut files = Files::open(&config).unwrap();
    let columns: Vec<String> = (0..40).map(|i| format!("column_{i}")).collect();
    for id in 0..100 {
        let record = Record::Columns {
            id,
            columns: columns.clone(),
            strings: Default::default(),
        };
        files.line(&record).unwrap();
        files.roll_if_full().unwrap();
    }
    files.out.flush().unwrap();
    let kept = log_files(&dir).unwrap();
    assert_eq!(kept.len(), 3, "{kept:?}");
    let newest = kept.last().unwrap().0;
    assert!(newest >= 10, "rolled over many times: {newest}");
    assert_eq!(
        kept.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        [newest - 2, newest - 1, newest],
        "the newest kept, the oldest deleted"
    );
    for (_, p) in &kept[..2] {
        let size = std::fs::metadata(p).unwrap().len();
        assert!((4096..4096 + 1024).contains(&size), "{size}");
    }
    // A restart continues after the newest file.
    drop(files);
    let again = Files::open(&config).unwrap();
    assert_eq!(again.seq, newest + 1);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two servers given one `--decision-log` folder would number their files alike, split each
/// other's lines and prune each other's files: the second is refused, naming the first, and
/// the first's files are left as they were. The folder may be the data folder itself.
#[test]
fn a_second_writer_of_one_folder_is_refused_naming_the_first() {
    let dir = std::env::temp_dir().join(format!("nb-decision-two-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = DecisionLogConfig {
        dir: dir.clone(),
        sample: 1.0,
        file_bytes: 1 << 20,
        max_files: 1,
    };
    // The data folder's lock, taken by the same server, does not stand in the way.
    std::fs::create_dir_all(&dir).unwrap();
    let _data = FolderLock::acquire(&dir, Folder::Data, None).unwrap();
    let first = DecisionLog::start(config.clone()).unwrap();
    let files = log_files(&dir).unwrap();
    assert_eq!(files.len(), 1, "{files:?}");
    let e = DecisionLog::start(config.clone())
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.starts_with(&format!(
            "the decision log folder {} is in use by another nextbest (pid {}",
            dir.display(),
            std::process::id()
        )) && e.ends_with("give each server a folder of its own (`--decision-log`)"),
        "{e}"
    );
    assert_eq!(
        log_files(&dir).unwrap(),
        files,
        "the refused writer touched the files"
    );
    first.close();
    drop(first);
    DecisionLog::start(config).unwrap().close();
    let _ = std::fs::remove_dir_all(&dir);
}

/// On a full disk (`/dev/full`) every sample is counted once, as written or as failed, never
/// per failed flush (a full store counted 660 failures for 401 decisions, logging a line per
/// flush): a failed flush keeps its bytes, and what is still buffered when the writer stops
/// is counted as failed.
#[test]
fn a_full_disk_counts_each_sample_once() {
    let models = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let registry = crate::registry::Registry::new(crate::registry::RegistryConfig {
        models_path: Some(models.clone()),
        features_path: Some(models.join("features.csv")),
        history_len: 1,
        ..Default::default()
    });
    registry.reload_from_disk().unwrap();
    let snapshot = arc_swap::Guard::into_inner(registry.load());
    let req = Request {
        customer_id: Some("C0000001"),
        channel: "web",
        placement: "home_hero",
        ..Default::default()
    };
    let pending = |i: u128| Pending {
        snapshot: snapshot.clone(),
        learnt: Arc::default(),
        history: None,
        variant: Variant::Champion,
        now_ms: 1,
        decision_id: ulid::Ulid(i),
        request: LoggedRequest::of(&req, None),
        fallback: None,
        ranked: Vec::new(),
    };
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full, which every Linux has");
    let mut files = Files {
        dir: std::env::temp_dir(),
        file_bytes: 1 << 30,
        max_files: 1,
        seq: 0,
        out: std::io::BufWriter::new(full),
        bytes: 0,
        models: Default::default(),
        columns: Default::default(),
        last_store: None,
    };
    let (tx, rx) = mpsc::sync_channel(QUEUE);
    let n = 600;
    for i in 0..n {
        tx.send(pending(i)).unwrap();
    }
    tx.send(Pending::stop()).unwrap();
    let stats = Stats::default();
    write_loop(rx, &mut files, &stats, "run", 1.0);
    let skips = stats.skips();
    assert_eq!(skips.written, 0, "{skips:?}");
    assert_eq!(skips.write_failed, n as u64, "{skips:?}");
}
