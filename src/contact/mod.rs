//! Feedback from the channels: events, their durable log, the contact state that contact
//! policies read, and the funnel.
//!
//! The path of an accepted batch: the handler validates each event ([`event`]) → [`Contacts::ingest`]
//! claims event ids (a repeat is counted once) and encodes the records → the log writer
//! ([`log`]) writes and syncs them with the other batches of its group → on the writer thread,
//! the very bytes written are decoded and applied to the contact state ([`state`]) and the funnel
//! ([`funnel`]) → the handler answers 202. Applying what was written, on the thread that wrote
//! it, makes the live state and a replay after a restart the same function of the log, and a
//! client that hangs up mid-request cannot leave an event written but not applied.
//!
//! Decisions read the state through [`view::CustomerView`]: one `Arc` clone per decision, no
//! lock a writer holds. This module owns the data folder; it must not decide (that is the
//! engine's), parse HTTP, or read the model registry (callers pass what it needs).

pub mod attribution;
pub mod clock;
pub mod dedupe;
pub mod event;
pub mod funnel;
pub mod log;
pub mod state;
pub mod view;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

pub use clock::{Clock, ManualClock};
pub use event::{Event, EventKind};
pub use log::FsyncPolicy;
pub use state::StateConfig;

use crate::engine::policy::stable_hash;
use event::RecordError;
use funnel::Funnel;
use log::{LogError, LogWriter, ReplayReport, Sink, WriterConfig};
use state::{event_key, ContactState, History, Replayed};

/// Settings of the contact side.
#[derive(Debug, Clone)]
pub struct ContactConfig {
    /// The data folder for the event log; `None` keeps events in memory only (tests).
    pub data_dir: Option<PathBuf>,
    /// When an acknowledged event reaches the disk.
    pub fsync: FsyncPolicy,
    /// A log segment rolls over at this size.
    pub segment_bytes: u64,
    /// Memory and de-duplication bounds of the state.
    pub state: StateConfig,
    /// How long history matters: the longest window of the model's policies.
    pub horizon_ms: i64,
}

impl Default for ContactConfig {
    fn default() -> Self {
        ContactConfig {
            data_dir: None,
            fsync: FsyncPolicy::Always,
            segment_bytes: 64 << 20,
            state: StateConfig::default(),
            horizon_ms: 0,
        }
    }
}

/// Why events could not be taken in or the log not opened.
#[derive(Debug, thiserror::Error)]
pub enum ContactError {
    /// The event log failed.
    #[error("event log: {0}")]
    Log(#[from] LogError),
    /// The data folder could not be made.
    #[error("data folder {path}: {source}")]
    DataDir {
        /// The folder.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// An event encoded larger than a log record may be (validation should make this impossible).
    #[error("an event does not fit in a log record")]
    TooLarge,
    /// A record written by this process did not decode.
    #[error("a record written by this process did not decode: {0}")]
    Record(#[from] RecordError),
}

/// What happened to a batch handed to [`Contacts::ingest`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ingested {
    /// Events new to nextbest, now durable and applied.
    pub accepted: usize,
    /// Events whose id was seen before: acknowledged, not counted again.
    pub duplicates: usize,
}

/// What both the handlers and the writer thread use.
struct Shared {
    state: ContactState,
    funnel: Funnel,
    clock: Clock,
    accepted: AtomicU64,
    duplicates: AtomicU64,
    rejected: AtomicU64,
}

impl Shared {
    /// Applies written records to the state and the funnel.
    fn apply(&self, records: &[u8]) -> Result<(), RecordError> {
        let now = self.clock.now_ms();
        let mut result = Ok(());
        let (_, bad) = log::scan(records, |payload| match Event::decode(payload) {
            Ok(e) => {
                self.state.apply(&e, e.category.map_or(0, stable_hash), now);
                self.funnel.event(&e);
            }
            Err(err) => result = Err(err),
        });
        if bad.is_some() {
            // The writer frames every record itself; a bad frame here is a bug, not a crash.
            tracing::error!("a batch handed to the event log had a bad frame");
        }
        result
    }
}

/// Applies what the writer wrote, on the writer thread.
struct Applier(Arc<Shared>);

impl Sink for Applier {
    fn written(&mut self, records: &[u8]) {
        if let Err(e) = self.0.apply(records) {
            tracing::error!(error = %e, "a logged event could not be applied");
        }
    }

    fn failed(&mut self, claims: &[u128]) {
        for k in claims {
            self.0.state.unclaim(*k);
        }
    }
}

/// The contact side of nextbest: state, funnel, and (when a data folder is set) the log.
pub struct Contacts {
    shared: Arc<Shared>,
    log: Option<LogWriter>,
    replay: Option<ReplayReport>,
    retention_ms: Arc<AtomicI64>,
    data_dir: Option<PathBuf>,
    memory_budget: u64,
}

impl Contacts {
    /// Contact state without a log: events live until the process ends (tests, tools).
    pub fn in_memory(config: &ContactConfig, clock: Clock) -> Self {
        Contacts {
            shared: Arc::new(Shared {
                state: ContactState::new(&config.state, config.horizon_ms),
                funnel: Funnel::default(),
                clock,
                accepted: AtomicU64::new(0),
                duplicates: AtomicU64::new(0),
                rejected: AtomicU64::new(0),
            }),
            log: None,
            replay: None,
            retention_ms: Arc::new(AtomicI64::new(0)),
            data_dir: None,
            memory_budget: config.state.memory_bytes,
        }
    }

    /// Opens the data folder: replays the log into the state, then starts the writer on a new
    /// segment. Without a data folder, the same as [`Contacts::in_memory`].
    pub fn open(config: &ContactConfig, clock: Clock) -> Result<Self, ContactError> {
        let mut c = Contacts::in_memory(config, clock.clone());
        let Some(dir) = &config.data_dir else {
            return Ok(c);
        };
        std::fs::create_dir_all(dir).map_err(|source| ContactError::DataDir {
            path: dir.clone(),
            source,
        })?;
        let state = &c.shared.state;
        let (horizon, dedupe_ttl) = (state.horizon_ms(), state.dedupe_ttl_ms());
        let now = clock.now_ms();
        let mut replayed = Replayed::default();
        let (report, segments) = log::replay(dir, |payload| {
            let e = Event::decode(payload).ok()?;
            replayed.apply(&e, horizon, now);
            if let Some(id) = e.event_id {
                if e.ts_ms >= now.saturating_sub(dedupe_ttl) {
                    state.claim(event_key(id), now);
                }
            }
            Some(e.ts_ms)
        })?;
        let customers = replayed.customers();
        state.load(replayed);
        tracing::info!(
            dir = %dir.display(),
            segments = report.segments,
            events = report.records,
            customers,
            torn_dropped = report.torn_records_dropped,
            corrupt_segments = report.corrupt_segments,
            replay_ms = report.took_ms,
            "event log replayed"
        );
        c.retention_ms.store(horizon.max(dedupe_ttl), Relaxed);
        c.log = Some(LogWriter::start(
            WriterConfig {
                dir: dir.clone(),
                fsync: config.fsync,
                segment_bytes: config.segment_bytes.max(4096),
                retention_ms: c.retention_ms.clone(),
            },
            segments,
            clock,
            Box::new(Applier(c.shared.clone())),
        )?);
        c.replay = Some(report);
        c.data_dir = Some(dir.clone());
        Ok(c)
    }

    /// Now, by the clock handlers use.
    #[inline]
    pub fn now_ms(&self) -> i64 {
        self.shared.clock.now_ms()
    }

    /// The clock handlers use.
    pub fn clock(&self) -> &Clock {
        &self.shared.clock
    }

    /// A customer's history for a decision (see [`view::CustomerView`]).
    #[inline]
    pub fn history(&self, customer_id: &str) -> Option<Arc<History>> {
        self.shared.state.history(customer_id)
    }

    /// The funnel counters.
    #[inline]
    pub fn funnel(&self) -> &Funnel {
        &self.shared.funnel
    }

    /// The contact state.
    pub fn state(&self) -> &ContactState {
        &self.shared.state
    }

    /// What replay found at start (`None` without a data folder).
    pub fn replay_report(&self) -> Option<&ReplayReport> {
        self.replay.as_ref()
    }

    /// Keeps history (and log segments) for a new longest policy window, e.g. after a model
    /// with longer windows was activated.
    pub fn set_horizon_ms(&self, ms: i64) {
        let state = &self.shared.state;
        state.set_horizon_ms(ms);
        self.retention_ms
            .store(state.horizon_ms().max(state.dedupe_ttl_ms()), Relaxed);
    }

    /// Counts events a handler refused (for stats).
    pub fn count_rejected(&self, n: usize) {
        self.shared.rejected.fetch_add(n as u64, Relaxed);
    }

    /// Takes in valid events: drops repeats, makes the rest durable (per the fsync policy),
    /// applies them, and only then returns.
    pub async fn ingest(&self, events: &[Event<'_>]) -> Result<Ingested, ContactError> {
        let reservation = match &self.log {
            Some(log) => Some(log.reserve().await?),
            None => None,
        };
        // From here to the hand-over nothing awaits, so a cancelled request cannot strand a
        // claimed event id without its write.
        let state = &self.shared.state;
        let now = self.now_ms();
        let mut out = Ingested::default();
        let mut claims = Vec::new();
        let mut records = Vec::with_capacity(events.len() * 128);
        let mut newest = i64::MIN;
        for e in events {
            if let Some(id) = e.event_id {
                let key = event_key(id);
                if !state.claim(key, now) {
                    out.duplicates += 1;
                    continue;
                }
                claims.push(key);
            }
            if !log::push_record(&mut records, |buf| e.encode(buf)) {
                for k in &claims {
                    state.unclaim(*k);
                }
                return Err(ContactError::TooLarge);
            }
            newest = newest.max(e.ts_ms);
            out.accepted += 1;
        }
        self.shared
            .duplicates
            .fetch_add(out.duplicates as u64, Relaxed);
        if out.accepted == 0 {
            return Ok(out);
        }
        match (&self.log, reservation) {
            (Some(log), Some(r)) => {
                let done = log.send(r, records, newest, claims).map_err(|claims| {
                    for k in &claims {
                        state.unclaim(*k);
                    }
                    LogError::Closed
                })?;
                match done.await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return Err(e.into()),
                    Err(_) => return Err(LogError::Closed.into()),
                }
            }
            _ => self.shared.apply(&records)?,
        }
        self.shared.accepted.fetch_add(out.accepted as u64, Relaxed);
        Ok(out)
    }

    /// Writes what is queued, syncs, and stops the writer (blocks the calling thread). Events
    /// sent afterwards fail with [`LogError::Closed`].
    pub fn close(&self) {
        if let Some(log) = &self.log {
            log.close();
        }
    }

    /// Event, state and log figures for `/admin/stats`.
    pub fn stats_json(&self) -> serde_json::Value {
        let s = &self.shared;
        let log = self.log.as_ref().map(|l| {
            let st = &l.stats;
            serde_json::json!({
                "dir": self.data_dir.as_ref().map(|d| d.display().to_string()),
                "fsync": l.fsync().as_str(),
                "segments": st.segments.load(Relaxed),
                "segments_deleted": st.segments_deleted.load(Relaxed),
                "groups": st.groups.load(Relaxed),
                "batches": st.batches.load(Relaxed),
                "fsyncs": st.fsyncs.load(Relaxed),
                "bytes_written": st.bytes.load(Relaxed),
                "errors": st.errors.load(Relaxed),
                "replay": self.replay,
            })
        });
        serde_json::json!({
            "events": {
                "accepted": s.accepted.load(Relaxed),
                "duplicates": s.duplicates.load(Relaxed),
                "rejected": s.rejected.load(Relaxed),
            },
            "contact_state": {
                "customers": s.state.customers(),
                "bytes": s.state.weighted_bytes(),
                "memory_budget_bytes": self.memory_budget,
                "event_ids_remembered": s.state.seen_ids(),
                "horizon_days": s.state.horizon_ms() as f64 / 86_400_000.0,
            },
            "log": log,
        })
    }

    /// The Prometheus text for events, the log, the state and the funnel.
    pub fn render(&self, out: &mut String) {
        let s = &self.shared;
        out.push_str("# HELP nextbest_events_total Events posted to /v1/events, by outcome.\n");
        out.push_str("# TYPE nextbest_events_total counter\n");
        for (outcome, n) in [
            ("accepted", &s.accepted),
            ("duplicate", &s.duplicates),
            ("rejected", &s.rejected),
        ] {
            let _ = writeln!(
                out,
                "nextbest_events_total{{outcome=\"{outcome}\"}} {}",
                n.load(Relaxed)
            );
        }
        out.push_str(
            "# HELP nextbest_contact_customers Customers with contact history in memory.\n",
        );
        out.push_str("# TYPE nextbest_contact_customers gauge\n");
        let _ = writeln!(out, "nextbest_contact_customers {}", s.state.customers());
        out.push_str("# HELP nextbest_contact_bytes Bytes of contact history, as weighed against the budget.\n");
        out.push_str("# TYPE nextbest_contact_bytes gauge\n");
        let _ = writeln!(out, "nextbest_contact_bytes {}", s.state.weighted_bytes());
        if let Some(l) = &self.log {
            let st = &l.stats;
            for (name, help, v) in [
                (
                    "nextbest_event_log_groups_total",
                    "Group commits written.",
                    &st.groups,
                ),
                (
                    "nextbest_event_log_fsyncs_total",
                    "fdatasync calls on the event log.",
                    &st.fsyncs,
                ),
                (
                    "nextbest_event_log_bytes_total",
                    "Bytes appended to the event log.",
                    &st.bytes,
                ),
                (
                    "nextbest_event_log_errors_total",
                    "Failed event log writes or syncs.",
                    &st.errors,
                ),
            ] {
                let _ = writeln!(
                    out,
                    "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                    v.load(Relaxed)
                );
            }
            let _ = writeln!(
                out,
                "# HELP nextbest_event_log_segments Event log segments on disk.\n# TYPE nextbest_event_log_segments gauge\nnextbest_event_log_segments {}",
                st.segments.load(Relaxed)
            );
        }
        s.funnel.render(out);
    }
}

impl Drop for Contacts {
    fn drop(&mut self) {
        self.close();
    }
}
