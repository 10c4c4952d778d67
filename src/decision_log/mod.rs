//! The decision log: a sample of decisions with what it takes to make each again exactly, for
//! `nextbest replay` ([`replay`]) to judge a candidate model on real traffic before it serves.
//!
//! The decision path only decides whether to sample (a comparison on the decision id's random
//! bits), copies the request, clones two `Arc`s (the snapshot and the customer's history) and
//! hands that to a bounded queue without waiting: when the queue is full the sample is dropped
//! and counted, and the decision is never delayed. A writer thread of its own turns each
//! sample into a JSON line (the request, the time, the model's content key and variant, the
//! answer, the customer's feature values and the offers the contact policies held back at
//! that moment), writes it to size-rotated files `decisions-<seq>.jsonl` and deletes the
//! oldest beyond the configured count. Each file is self-contained: it repeats the model
//! documents and column lists its decisions refer to. Off unless `--decision-log` is given.
//!
//! Nothing is lost silently: every decision offered to the log is counted as written, not
//! sampled, stopped by its deadline, dropped on a full queue, offered after the writer stopped,
//! or failed to write ([`Skips`]). The counts are in `/admin/stats` and the metrics, and the
//! writer records them in the log after every batch (a `drops` line, cumulative for the
//! process), so `replay --estimate` can tell random losses (sampling) from others. The writer
//! also records, for each logged decision, whether its placement explored and the probability
//! with which it showed each offer it returned: it makes the decision again with `explain`, off
//! the decision path, from the very inputs it logs.

pub mod estimate;
pub mod format;
pub mod replay;
mod report;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::contact::decide::DecideContacts;
use crate::contact::state::History;
use crate::contact::view::CustomerView;
use crate::engine::posterior::Posteriors;
use crate::engine::scorer::Scorer;
use crate::engine::{ContactView, CtxValue, Decision, FallbackReason, Ranked, Request};
use crate::experiment::Variant;
use crate::folder_lock::{Folder, FolderLock};
use crate::metrics::prom::{Collect, Exposition, Kind};
use crate::registry::Snapshot;
use format::{LoggedAnswer, LoggedOffer, LoggedRequest, Record};

/// Samples waiting for the writer at most; past it a sample is dropped.
pub const QUEUE: usize = 4096;

/// Settings of the decision log.
#[derive(Debug, Clone)]
pub struct DecisionLogConfig {
    /// The folder of the log files (created if missing).
    pub dir: PathBuf,
    /// Share of decisions logged, 0 to 1.
    pub sample: f64,
    /// A file rolls over past this size.
    pub file_bytes: u64,
    /// Files kept; the oldest go first.
    pub max_files: usize,
}

/// A sampled decision on its way to the writer.
struct Pending {
    snapshot: Arc<Snapshot>,
    /// What adaptive offers had learnt when it was decided.
    learnt: Arc<Posteriors>,
    history: Option<Arc<History>>,
    variant: Variant,
    now_ms: i64,
    decision_id: ulid::Ulid,
    request: LoggedRequest,
    fallback: Option<FallbackReason>,
    ranked: Vec<Ranked>,
}

/// The decision log: the sampler the decision path calls and the writer thread behind it.
pub struct DecisionLog {
    threshold: u64,
    queue: SyncSender<Pending>,
    writer: Mutex<Option<JoinHandle<()>>>,
    stats: Arc<Stats>,
    /// The folder's, while this process writes it.
    _lock: FolderLock,
}

impl Stats {
    fn skips(&self) -> Skips {
        Skips {
            written: self.written.load(Relaxed),
            not_sampled: self.not_sampled.load(Relaxed),
            deadline: self.deadline.load(Relaxed),
            queue_full: self.dropped.load(Relaxed),
            writer_stopped: self.closed.load(Relaxed),
            write_failed: self.errors.load(Relaxed),
        }
    }
}

#[derive(Default)]
struct Stats {
    written: AtomicU64,
    dropped: AtomicU64,
    errors: AtomicU64,
    not_sampled: AtomicU64,
    deadline: AtomicU64,
    closed: AtomicU64,
}

/// Decisions offered to the log, by what became of them (cumulative for this process).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Skips {
    /// Written to a file.
    pub written: u64,
    /// Not sampled (their id's random bits were past the sampling threshold): random.
    pub not_sampled: u64,
    /// Stopped by their deadline (their answer depends on the machine, not the inputs).
    pub deadline: u64,
    /// Dropped because the writer's queue was full: not random (bursts of load).
    pub queue_full: u64,
    /// Offered after the writer stopped.
    pub writer_stopped: u64,
    /// Sampled but not written (a file error).
    pub write_failed: u64,
}

impl Skips {
    /// Sampled decisions lost for reasons that are not random.
    pub fn not_random(&self) -> u64 {
        self.queue_full + self.writer_stopped + self.write_failed
    }
}

/// Random bits of a decision id compared with the sampling threshold (the others say where and
/// for whom it was made, see [`crate::contact::attribution`]).
const SAMPLE_BITS: u32 = crate::contact::attribution::RANDOM_BITS;

impl DecisionLog {
    /// Opens the folder and starts the writer.
    pub fn start(config: DecisionLogConfig) -> std::io::Result<Arc<Self>> {
        std::fs::create_dir_all(&config.dir)?;
        // Before a file is opened or pruned: another server's files are not this one's.
        let lock = FolderLock::acquire(&config.dir, Folder::DecisionLog, None)
            .map_err(std::io::Error::other)?;
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let stats = Arc::new(Stats::default());
        let mut files = Files::open(&config)?;
        let st = stats.clone();
        let sample = config.sample.clamp(0.0, 1.0);
        // A run: the counts of one process, cumulative, told apart from earlier processes'.
        let run = ulid::Ulid::new().to_string();
        let writer = std::thread::Builder::new()
            .name("decision-log".into())
            .spawn(move || write_loop(rx, &mut files, &st, &run, sample))?;
        Ok(Arc::new(DecisionLog {
            threshold: (sample * (1u64 << SAMPLE_BITS) as f64) as u64,
            queue: tx,
            writer: Mutex::new(Some(writer)),
            stats,
            _lock: lock,
        }))
    }

    /// Offers a decision for the log: sampled by its id, queued without waiting (dropped and
    /// counted when the queue is full). Decisions stopped by their deadline are not logged: what
    /// they answered depends on the machine's speed, not on their inputs.
    #[inline]
    pub fn offer(
        &self,
        snapshot: &Arc<Snapshot>,
        contacts: &DecideContacts<'_>,
        req: &Request<'_>,
        visitor: Option<&str>,
        d: &Decision<'_>,
    ) {
        let decision_id = contacts.decision_id;
        let bits = (decision_id.0 as u64) & ((1u64 << SAMPLE_BITS) - 1);
        if bits >= self.threshold {
            self.stats.not_sampled.fetch_add(1, Relaxed);
            return;
        }
        if d.fallback == Some(FallbackReason::Deadline) {
            self.stats.deadline.fetch_add(1, Relaxed);
            return;
        }
        let pending = Pending {
            learnt: contacts.posteriors().clone(),
            snapshot: snapshot.clone(),
            history: contacts.history().cloned(),
            variant: contacts.variant,
            now_ms: contacts.now_ms,
            decision_id,
            request: LoggedRequest::of(req, visitor),
            fallback: d.fallback,
            ranked: d.ranked.clone(),
        };
        match self.queue.try_send(pending) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.stats.dropped.fetch_add(1, Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => {
                self.stats.closed.fetch_add(1, Relaxed);
            }
        }
    }

    /// What became of the decisions offered so far, by reason.
    pub fn skips(&self) -> Skips {
        self.stats.skips()
    }

    /// Samples written so far.
    pub fn written(&self) -> u64 {
        self.stats.written.load(Relaxed)
    }

    /// Samples dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.stats.dropped.load(Relaxed)
    }

    /// Writes what is queued and stops the writer (blocks). Later samples are dropped.
    pub fn close(&self) {
        let handle = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = handle {
            // The writer ends when it finds the stop marker after everything queued before it.
            let _ = self.queue.send(Pending::stop());
            let _ = h.join();
        }
    }
}

impl Pending {
    /// The marker that stops the writer.
    fn stop() -> Pending {
        Pending {
            snapshot: Arc::new(Snapshot::default()),
            learnt: Arc::default(),
            history: None,
            variant: Variant::Champion,
            now_ms: i64::MIN,
            decision_id: ulid::Ulid(0),
            request: LoggedRequest::default(),
            fallback: None,
            ranked: Vec::new(),
        }
    }

    fn is_stop(&self) -> bool {
        self.now_ms == i64::MIN
    }
}

impl Collect for DecisionLog {
    fn collect(&self, out: &mut Exposition) {
        out.family(
            "nextbest_decision_log_samples_total",
            Kind::Counter,
            "Decisions sampled for the decision log, by outcome (dropped: the queue was full).",
        )
        .sample(&[("outcome", "written")], self.written())
        .sample(&[("outcome", "dropped")], self.dropped())
        .sample(&[("outcome", "failed")], self.stats.errors.load(Relaxed));
        let s = self.skips();
        out.family(
            "nextbest_decision_log_decisions_total",
            Kind::Counter,
            "Decisions offered to the decision log, by what became of them (only not_sampled is random).",
        )
        .sample(&[("outcome", "written")], s.written)
        .sample(&[("outcome", "not_sampled")], s.not_sampled)
        .sample(&[("outcome", "deadline")], s.deadline)
        .sample(&[("outcome", "queue_full")], s.queue_full)
        .sample(&[("outcome", "writer_stopped")], s.writer_stopped)
        .sample(&[("outcome", "write_failed")], s.write_failed);
    }
}

impl LoggedRequest {
    /// The owned copy of a request, and the visitor it named.
    pub fn of(req: &Request<'_>, visitor: Option<&str>) -> Self {
        LoggedRequest {
            customer_id: req.customer_id.unwrap_or("").to_owned(),
            visitor_id: visitor.map(str::to_owned),
            channel: req.channel.to_owned(),
            placement: req.placement.to_owned(),
            limit: req.limit,
            context: req
                .context
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        CtxValue::Str(s) => serde_json::Value::from(&**s),
                        CtxValue::Num(n) => serde_json::Value::from(*n),
                    };
                    (k.to_string(), v)
                })
                .collect(),
        }
    }
}

/// The open file and the files kept.
struct Files {
    dir: PathBuf,
    file_bytes: u64,
    max_files: usize,
    seq: u64,
    out: std::io::BufWriter<std::fs::File>,
    bytes: u64,
    /// Model keys and column lists already written into the current file.
    models: hashbrown::HashSet<u32>,
    columns: hashbrown::HashSet<u32>,
    /// The snapshot the last column id was computed for, and that id.
    last_store: Option<(std::sync::Weak<crate::features::FeatureStore>, u32)>,
}

fn file_name(seq: u64) -> String {
    format!("decisions-{seq:020}.jsonl")
}

/// The log files in a folder, oldest first.
pub fn log_files(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let seq = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("decisions-"))
            .and_then(|n| n.strip_suffix(".jsonl"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(seq) = seq {
            files.push((seq, path));
        }
    }
    files.sort();
    Ok(files)
}

impl Files {
    fn open(config: &DecisionLogConfig) -> std::io::Result<Self> {
        let seq = log_files(&config.dir)?.last().map_or(0, |(s, _)| s + 1);
        let f = Files {
            dir: config.dir.clone(),
            file_bytes: config.file_bytes.max(4096),
            max_files: config.max_files.max(1),
            seq,
            out: std::io::BufWriter::new(create(&config.dir, seq)?),
            bytes: 0,
            models: Default::default(),
            columns: Default::default(),
            last_store: None,
        };
        f.prune()?;
        Ok(f)
    }

    fn line(&mut self, record: &Record<'_>) -> std::io::Result<()> {
        let mut buf = serde_json::to_vec(record).map_err(std::io::Error::other)?;
        buf.push(b'\n');
        self.out.write_all(&buf)?;
        self.bytes += buf.len() as u64;
        Ok(())
    }

    fn roll_if_full(&mut self) -> std::io::Result<()> {
        if self.bytes < self.file_bytes {
            return Ok(());
        }
        self.out.flush()?;
        self.seq += 1;
        self.out = std::io::BufWriter::new(create(&self.dir, self.seq)?);
        self.bytes = 0;
        self.models.clear();
        self.columns.clear();
        self.prune()
    }

    /// Deletes the oldest files beyond the count kept.
    fn prune(&self) -> std::io::Result<()> {
        let files = log_files(&self.dir)?;
        let excess = files.len().saturating_sub(self.max_files);
        for (_, path) in files.into_iter().take(excess) {
            std::fs::remove_file(path)?;
        }
        Ok(())
    }

    fn write(&mut self, p: &Pending) -> std::io::Result<()> {
        let (Some(set), Some(features)) = (&p.snapshot.models, &p.snapshot.features) else {
            return Ok(());
        };
        let (model, variant) = match (p.variant, &set.challenger) {
            (Variant::Challenger, Some(c)) => (&*c.model, Variant::Challenger),
            _ => (&*set.champion, Variant::Champion),
        };
        let key = set.key(variant);
        if self.models.insert(key) {
            self.line(&Record::model(key, model))?;
        }
        // The id hashes every dictionary: computed once per snapshot, not per decision.
        let columns = match &self.last_store {
            Some((store, id)) if std::ptr::eq(store.as_ptr(), Arc::as_ptr(features)) => *id,
            _ => {
                let id = format::columns_id(features);
                self.last_store = Some((Arc::downgrade(features), id));
                id
            }
        };
        if self.columns.insert(columns) {
            self.line(&Record::Columns {
                id: columns,
                columns: features.columns().iter().map(|c| c.to_string()).collect(),
                strings: format::strings_of(features),
            })?;
        }
        let compiled = &model.compiled;
        let view = CustomerView::new(p.history.as_deref(), &compiled.policies, p.now_ms);
        let held = compiled
            .offers
            .iter()
            .enumerate()
            .filter(|(i, o)| view.holds_back(*i, o).is_some())
            .map(|(_, o)| o.id.to_string())
            .collect();
        let tag = crate::contact::attribution::model_tag(key);
        let adaptive = compiled
            .offers
            .iter()
            .filter_map(|o| match &o.scorer {
                Scorer::Adaptive(a) => {
                    let (t, s) = p
                        .learnt
                        .tally(o.id_hash, a.reset.then_some(tag))
                        .map_or((0, 0), |t| a.counts(t));
                    Some((o.id.to_string(), t, s))
                }
                _ => None,
            })
            .collect();
        let row = features.row(&p.request.customer_id);
        // A decision that showed offers without a row decided an anonymous visitor: every
        // snapshot value missing, as the engine read it.
        let seen_row = match (row, p.ranked.is_empty()) {
            (Some(r), _) => Some(r),
            (None, false) => Some(features.missing_row().values()),
            (None, true) => None,
        };
        let context = p.request.context();
        let slots = crate::engine::context_slots(compiled, &context);
        let contextual = compiled
            .offers
            .iter()
            .filter_map(|o| match (&o.scorer, seen_row) {
                (Scorer::Adaptive(a), Some(row)) => {
                    let seen = (row, &slots[..compiled.context_keys.len()]);
                    let (m, _, _) = a.moments(o.id_hash, seen, &p.learnt, tag)?;
                    Some((o.id.to_string(), [m.mean.to_bits(), m.variance.to_bits()]))
                }
                _ => None,
            })
            .collect();
        let (explored, shown) = shown_of(compiled, features, p, &view, tag);
        let answer = LoggedAnswer {
            fallback: p.fallback.map(|r| r.as_str().to_owned()),
            offers: p
                .ranked
                .iter()
                .map(|r| LoggedOffer::of(compiled, r))
                .collect(),
        };
        self.line(&Record::Decision(Box::new(format::DecisionRecord {
            decision_id: p.decision_id.to_string(),
            at_ms: p.now_ms,
            key,
            variant: variant.as_str().to_owned(),
            columns,
            request: p.request.clone(),
            features: row.map(|r| r.iter().map(|v| v.to_bits()).collect()),
            held,
            adaptive,
            contextual,
            answer,
            explored,
            shown,
        })))?;
        self.roll_if_full()
    }
}

/// Whether a logged decision explored, and the probability with which it showed each offer of
/// its answer (in answer order): the decision made again with `explain` from the inputs logged
/// beside it, off the decision path.
fn shown_of(
    model: &crate::engine::CompiledModel,
    features: &crate::features::FeatureStore,
    p: &Pending,
    view: &CustomerView<'_>,
    tag: u16,
) -> (bool, Vec<f64>) {
    if p.fallback.is_some() {
        return (false, Vec::new());
    }
    let context = p.request.context();
    let req = Request {
        customer_id: Some(&p.request.customer_id)
            .filter(|c| !c.is_empty())
            .map(|c| c.as_str()),
        channel: &p.request.channel,
        placement: &p.request.placement,
        limit: p.request.limit,
        context: &context,
        explain: true,
        learnt: Some(crate::engine::posterior::Learnt {
            posteriors: &p.learnt,
            seed: crate::engine::posterior::seed_of(p.decision_id.0),
            tag,
        }),
    };
    let d = crate::engine::decide(
        model,
        features,
        &req,
        view,
        &crate::engine::Unbounded,
        p.now_ms,
    );
    let shown = p
        .ranked
        .iter()
        .map(|r| match d.explain.get(r.offer as usize) {
            Some(crate::engine::Verdict::Scored { shown, .. }) => *shown,
            _ => f64::NAN,
        })
        .collect();
    (d.explored, shown)
}

fn create(dir: &Path, seq: u64) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(file_name(seq)))
}

fn write_loop(rx: Receiver<Pending>, files: &mut Files, stats: &Stats, run: &str, sample: f64) {
    let mut batch = Vec::with_capacity(256);
    let mut last = Skips::default();
    // Samples buffered since the last flush that went through: counted written once flushed.
    // A failed flush keeps its bytes for the next one, so it loses no sample by itself; what
    // is still buffered when the writer stops on a failing disk is counted as failed.
    let mut unflushed = 0u64;
    let mut trouble = Trouble::default();
    let mut drops = |files: &mut Files, stats: &Stats, trouble: &mut Trouble| {
        let skips = stats.skips();
        if skips != last {
            last = skips;
            let record = Record::Drops {
                run: run.into(),
                sample,
                skips,
            };
            if let Err(e) = files.line(&record) {
                trouble.failed(&e);
            }
        }
    };
    loop {
        let Ok(first) = rx.recv() else { break };
        // What else is waiting goes out with it, then one flush: the files are current
        // within a moment without a write call per sample under load.
        batch.push(first);
        while batch.len() < 256 {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let mut stop = false;
        for p in batch.drain(..) {
            if p.is_stop() {
                stop = true;
                break;
            }
            match files.write(&p) {
                Ok(()) => unflushed += 1,
                Err(e) => {
                    stats.errors.fetch_add(1, Relaxed);
                    trouble.failed(&e);
                }
            }
        }
        drops(files, stats, &mut trouble);
        match files.out.flush() {
            Ok(()) => {
                stats
                    .written
                    .fetch_add(std::mem::take(&mut unflushed), Relaxed);
                trouble.cleared();
            }
            Err(e) => trouble.failed(&e),
        }
        if stop {
            break;
        }
    }
    drops(files, stats, &mut trouble);
    match files.out.flush() {
        Ok(()) => {
            stats.written.fetch_add(unflushed, Relaxed);
        }
        Err(e) => {
            stats.errors.fetch_add(unflushed, Relaxed);
            tracing::warn!(error = %e, samples = unflushed, "decision log: the last samples could not be written as the writer stopped");
        }
    }
}

/// A run of failing writes: said once when it starts, with the first error, and once when a
/// flush goes through again (a full disk would otherwise log a line per batch).
#[derive(Default)]
struct Trouble {
    failing: bool,
}

impl Trouble {
    fn failed(&mut self, e: &std::io::Error) {
        if !self.failing {
            self.failing = true;
            tracing::warn!(error = %e, "decision log writes are failing; samples that cannot be written are counted as write_failed until it works again");
        }
    }

    fn cleared(&mut self) {
        if self.failing {
            self.failing = false;
            tracing::info!("decision log writes succeed again");
        }
    }
}

#[cfg(test)]
mod tests;
