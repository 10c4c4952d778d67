//! Feedback from the channels: events, their durable log, the contact state that contact
//! policies read, and the funnel.
//!
//! The path of an accepted batch: the handler validates each event ([`event`]) →
//! [`Contacts::ingest`] claims event ids (a repeat is counted once) and encodes the records (an
//! impression quoting a decision this replica made with the request values it recorded, see
//! [`requests`]) → the log writer ([`log`]) writes and syncs them with the other batches of its
//! group → on the writer thread, the very bytes written are decoded and applied → the handler
//! answers 202. Applying what was written, on the thread that wrote it, makes the live state and
//! a replay after a restart the same function of the log, and a client that hangs up
//! mid-request cannot leave an event written but not applied.
//!
//! Every event, live, replayed at start or from another replica, takes effect in one place,
//! [`apply::Applier`]: the contact state ([`state`]), then each [`Subscriber`] (the visitor
//! links of [`links`], the funnel, what adaptive offers learn). Readers outside the writer use the log's own reading API
//! ([`log::read_from`], [`log::read_all`]), never its format.
//!
//! A decision asks this side once, through [`decide::DecideContacts`]: its time, id, the
//! customer's history and the learnt snapshot; no lock a writer holds. This module owns the
//! data folder; it must not decide (that is the engine's), parse HTTP, or read the model
//! registry (callers bind models through [`Binding`]).

pub mod adaptive;
pub mod apply;
pub mod attribution;
pub mod clock;
mod contextual;
pub mod decide;
pub mod dedupe;
pub mod event;
mod evictions;
pub mod funnel;
pub mod health;
pub mod links;
pub mod log;
mod replay;
mod report;
pub mod requests;
pub mod state;
pub mod subject;
pub mod view;

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::sync::{Arc, Weak};

pub use apply::{Applier, Origin, Subscriber};
pub use clock::{Clock, ManualClock};
pub use event::{Event, EventKind};
pub use log::FsyncPolicy;
pub use state::StateConfig;

use crate::engine::CompiledModel;
use crate::features::FeatureStore;
use dedupe::Claim;
use event::RecordError;
use funnel::Funnel;
use log::{LogError, LogWriter, ReplayReport, Sink, WriterConfig};
use state::{event_key, ContactState, History};

use crate::experiment::Variant;

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
    /// Failures to inject into the log writer (fault tests only).
    pub inject: log::Inject,
    /// What this process is, as the data folder's lock names it to a second process refused
    /// there (a server's public listener, which a campaign commit can go through instead).
    pub holder: Option<String>,
}

impl Default for ContactConfig {
    fn default() -> Self {
        ContactConfig {
            data_dir: None,
            fsync: FsyncPolicy::Always,
            segment_bytes: 64 << 20,
            state: StateConfig::default(),
            horizon_ms: 0,
            inject: log::Inject::default(),
            holder: None,
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
    /// Another process holds the data folder.
    #[error(transparent)]
    Lock(#[from] crate::folder_lock::LockError),
}

/// What happened to a batch handed to [`Contacts::ingest`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ingested {
    /// Events new to nextbest, now durable and applied.
    pub accepted: usize,
    /// Events whose id was seen before: acknowledged, not counted again.
    pub duplicates: usize,
    /// Of those, the ones (by position in the batch given) whose id was first sent for another
    /// event: a client reusing ids, whose event was not recorded.
    pub reused: Vec<usize>,
}

/// Applies what the writer wrote, on the writer thread, and wakes whoever tails the log.
struct Written {
    applier: Arc<Applier>,
    clock: Clock,
    notify: Arc<tokio::sync::Notify>,
}

impl Sink for Written {
    fn written(&mut self, records: &[u8]) {
        let now = self.clock.steady_ms();
        if let Err(e) = self.applier.apply_records(records, Origin::Local, now) {
            tracing::error!(error = %e, "a logged event could not be applied");
        }
        self.notify.notify_one();
    }

    fn failed(&mut self, claims: &[u128]) {
        for k in claims {
            self.applier.state().unclaim(*k);
        }
    }
}

/// The contact side of nextbest: the state every event is applied to (through one
/// [`Applier`]), and, when a data folder is set, the log that makes events durable first.
pub struct Contacts {
    applier: Arc<Applier>,
    funnel: Arc<Funnel>,
    links: Arc<links::Links>,
    adaptive: Arc<adaptive::Counts>,
    /// Recent decisions' request values, until their impressions carry them to the learner.
    requests: requests::RequestMemory,
    clock: Clock,
    stats: report::IngestStats,
    /// Woken after each batch is written, for whoever tails the log (the fleet's shipper).
    written: Arc<tokio::sync::Notify>,
    log: Option<LogWriter>,
    replay: Option<ReplayReport>,
    retention_ms: Arc<AtomicI64>,
    data_dir: Option<PathBuf>,
    memory_budget: u64,
    /// Held while the log is open: one process per data folder.
    _lock: Option<crate::folder_lock::FolderLock>,
}

impl Contacts {
    /// Contact state without a log: events live until the process ends (tests, tools).
    pub fn in_memory(config: &ContactConfig, clock: Clock) -> Self {
        let state = Arc::new(ContactState::new(&config.state, config.horizon_ms));
        let funnel = Arc::new(Funnel::new(funnel::outcome_capacity(
            config.state.memory_bytes,
        )));
        let adaptive = Arc::new(adaptive::Counts::new(adaptive::pending_capacity(
            config.state.memory_bytes,
        )));
        // Links get a sixteenth of the histories' budget: a few short strings per login.
        let links = Arc::new(links::Links::new(config.state.memory_bytes / 16));
        let subscribers: Vec<Arc<dyn Subscriber>> =
            vec![links.clone(), funnel.clone(), adaptive.clone()];
        Contacts {
            applier: Arc::new(Applier::new(state, subscribers)),
            funnel,
            links,
            adaptive,
            requests: requests::RequestMemory::new(requests::capacity(config.state.memory_bytes)),
            clock,
            stats: report::IngestStats::default(),
            written: Arc::new(tokio::sync::Notify::new()),
            log: None,
            replay: None,
            retention_ms: Arc::new(AtomicI64::new(0)),
            data_dir: None,
            memory_budget: config.state.memory_bytes,
            _lock: None,
        }
    }

    /// Opens the data folder: restores the saved funnel, replays the log into the state, then
    /// starts the writer on a new segment. Without a data folder, the same as
    /// [`Contacts::in_memory`].
    pub fn open(config: &ContactConfig, clock: Clock) -> Result<Self, ContactError> {
        Contacts::open_with(config, clock, |_| {})
    }

    /// [`Contacts::open`], with `prepare` run on the new contact side before the log is
    /// replayed (to bind the active models through [`Contacts::binding`], so replayed outcomes
    /// count).
    pub fn open_with(
        config: &ContactConfig,
        clock: Clock,
        prepare: impl FnOnce(&Contacts),
    ) -> Result<Self, ContactError> {
        let mut c = Contacts::in_memory(config, clock.clone());
        let Some(dir) = &config.data_dir else {
            prepare(&c);
            return Ok(c);
        };
        std::fs::create_dir_all(dir).map_err(|source| ContactError::DataDir {
            path: dir.clone(),
            source,
        })?;
        // Before anything is read or written: a second process must not touch the log.
        c._lock = Some(crate::folder_lock::FolderLock::acquire(
            dir,
            crate::folder_lock::Folder::Data,
            config.holder.as_deref(),
        )?);
        // Saved tables go in before any model binds its own.
        funnel::store::load_or_set_aside(dir, &c.funnel);
        prepare(&c);
        let state = c.applier.state();
        let retention = state.retention_ms();
        let (report, segments) =
            replay::replay_into(dir, &c.applier, config.state.memory_bytes, clock.now_ms())?;
        tracing::info!(
            path = %dir.display(),
            segments = report.segments,
            events = report.records,
            customers = state.customers(),
            torn_dropped = report.torn_records_dropped,
            damaged_segments = report.corrupt_segments,
            duration_ms = report.took_ms,
            "event log replayed"
        );
        c.retention_ms.store(retention, Relaxed);
        c.log = Some(LogWriter::start(
            WriterConfig {
                dir: dir.clone(),
                fsync: config.fsync,
                segment_bytes: config.segment_bytes.max(4096),
                retention_ms: c.retention_ms.clone(),
                inject: config.inject.clone(),
            },
            segments,
            clock.clone(),
            Box::new(Written {
                applier: c.applier.clone(),
                clock,
                notify: c.written.clone(),
            }),
        )?);
        c.replay = Some(report);
        c.data_dir = Some(dir.clone());
        Ok(c)
    }

    /// Now, by the clock the contact side uses.
    #[inline]
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// The clock the contact side uses (tests move it; in production it is the system's).
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// What a decision needs of the contact side, looked up once (see [`decide::DecideContacts`]).
    #[inline]
    pub fn for_decision(
        &self,
        ids: &attribution::DecisionIds,
        who: (Option<&str>, Option<&str>),
        model_key: u32,
        variant: Variant,
        origin: attribution::Origin,
    ) -> decide::DecideContacts<'_> {
        decide::DecideContacts::new(self, ids, who, model_key, variant, origin)
    }

    /// The history a decision for a customer and/or a visitor reads: the customer's, with the
    /// request's visitor's and the visitors linked to the customer folded in; for a visitor
    /// alone, theirs with the customer they logged in as. Each event is filed under one subject,
    /// so nothing counts twice. Folding copies a history; a request whose subject has no link
    /// and names one id, the usual case, reads its `Arc` as is.
    pub fn history_for(
        &self,
        customer_id: Option<&str>,
        visitor_id: Option<&str>,
        now_ms: i64,
    ) -> Option<Arc<History>> {
        use subject::Subject;
        let state = self.applier.state();
        let who = Subject::of(customer_id, visitor_id);
        let mut found = state.history_of(who);
        let mut fold = |other: Option<Arc<History>>| {
            found = match (found.take(), other) {
                (Some(a), Some(b)) => {
                    let mut h = (*a).clone();
                    h.merge(&b, state.horizon_ms(), now_ms);
                    Some(Arc::new(h))
                }
                (a, b) => a.or(b),
            }
        };
        let visitor = visitor_id.filter(|v| !v.is_empty());
        match who {
            Subject::Customer(c) => {
                if let Some(v) = visitor {
                    fold(state.history_of(Subject::Visitor(v)));
                }
                for (_, v) in self.links.visitors_of(c).iter().flat_map(|l| l.iter()) {
                    if Some(&**v) != visitor {
                        fold(state.history_of(Subject::Visitor(v)));
                    }
                }
            }
            Subject::Visitor(v) => {
                if let Some(c) = self.links.customer_of(v) {
                    fold(state.history_of(Subject::Customer(&c)));
                }
            }
            Subject::Nobody => {}
        }
        found
    }

    /// Which visitors logged in as which customers.
    pub fn links(&self) -> &links::Links {
        &self.links
    }

    /// A customer's history for a decision (see [`view::CustomerView`]).
    #[inline]
    pub fn history(&self, customer_id: &str) -> Option<Arc<History>> {
        self.applier.state().history(customer_id)
    }

    /// The funnel counters.
    #[inline]
    pub fn funnel(&self) -> &Funnel {
        &self.funnel
    }

    /// Adds a subscriber to every event applied from now on, whatever its source.
    pub fn subscribe(&self, s: Arc<dyn Subscriber>) {
        self.applier.subscribe(s);
    }

    /// What adaptive offers have learnt.
    #[inline]
    pub fn adaptive(&self) -> &adaptive::Counts {
        &self.adaptive
    }

    /// The contact state.
    pub fn state(&self) -> &ContactState {
        self.applier.state()
    }

    /// What replay found at start (`None` without a data folder).
    pub fn replay_report(&self) -> Option<&ReplayReport> {
        self.replay.as_ref()
    }

    /// Keeps history (and log segments) for a new longest policy window, e.g. after a model
    /// with longer windows was activated.
    pub fn set_horizon_ms(&self, ms: i64) {
        self.binding().set_horizon_ms(ms);
    }

    /// A handle that readies this contact side for published models, held weakly (a registry
    /// hook must not keep the contact side alive).
    pub fn binding(&self) -> Binding {
        Binding {
            state: Arc::downgrade(self.applier.state()),
            funnel: Arc::downgrade(&self.funnel),
            adaptive: Arc::downgrade(&self.adaptive),
            retention_ms: Arc::downgrade(&self.retention_ms),
        }
    }

    /// The data folder holding the log, if there is one.
    pub fn data_dir(&self) -> Option<&std::path::Path> {
        self.data_dir.as_deref()
    }

    /// Resolves after the next batch is written to the log (or at once if one was written
    /// since the last call): what a reader tailing the log waits on.
    pub async fn log_written(&self) {
        self.written.notified().await;
    }

    /// Applies an event another replica accepted (its log record's payload), once per `id`.
    /// The funnel leaves it to the replica that accepted it (see [`Origin::Fleet`]). False when
    /// the id was applied before.
    pub fn apply_remote(&self, payload: &[u8], id: &str) -> Result<bool, RecordError> {
        self.applier.apply_once(payload, id, self.clock.steady_ms())
    }

    /// Counts events a handler refused (for stats).
    pub fn count_rejected(&self, n: usize) {
        self.stats.rejected.fetch_add(n as u64, Relaxed);
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
        let state = self.applier.state();
        let now = self.now_ms();
        let mut out = Ingested::default();
        let mut claims = Vec::new();
        let mut records = Vec::with_capacity(events.len() * 128);
        let mut newest = i64::MIN;
        for (i, e) in events.iter().enumerate() {
            if let Some(id) = e.event_id {
                let key = event_key(id);
                let claim = state.claim(key, e.digest(), now);
                if claim != Claim::New {
                    out.duplicates += 1;
                    if claim == Claim::Reused {
                        out.reused.push(i);
                    }
                    continue;
                }
                claims.push(key);
            }
            // An impression quoting a decision this replica remembers records the request
            // values that decision saw, for what contextual offers learn.
            let recalled = match (e.kind, e.decision_id, e.request) {
                (EventKind::Impression, Some(id), None) => self.requests.recall(id),
                _ => None,
            };
            let mut e = *e;
            if let Some(r) = &recalled {
                e.request = r.levels();
            }
            // An outcome naming no decision keeps the variant it counts for now.
            if e.decision_id.is_none() && funnel::Stage::of(e.kind).is_some() {
                e.attributed = self.funnel.attribute(e.customer_id);
            }
            if !log::push_record(&mut records, |buf| e.encode_accepted(now, buf)) {
                for k in &claims {
                    state.unclaim(*k);
                }
                return Err(ContactError::TooLarge);
            }
            // A segment is kept by its newest time: its events' arrival counts, so the ids of
            // events stamped long before they arrived are kept as long as ids are remembered.
            newest = newest.max(e.ts_ms).max(now);
            out.accepted += 1;
        }
        self.stats
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
            _ => self.applier.apply_records(&records, Origin::Local, now)?,
        }
        self.stats.accepted.fetch_add(out.accepted as u64, Relaxed);
        Ok(out)
    }

    /// The request values of recent decisions (see [`requests`]).
    #[inline]
    pub fn requests(&self) -> &requests::RequestMemory {
        &self.requests
    }

    /// Writes what is queued, syncs, and stops the writer (blocks the calling thread). Events
    /// sent afterwards fail with [`LogError::Closed`].
    pub fn close(&self) {
        if let Some(log) = &self.log {
            log.close();
        }
    }
}

/// Readies a contact side for models about to be published: history is kept as long as their
/// policies look back (never shortened, so a rollback finds what it needs), their funnel
/// tables exist before their first decision, and their contextual adaptive offers learn from the
/// snapshot they serve with. Holds the contact side weakly.
#[derive(Clone)]
pub struct Binding {
    state: Weak<ContactState>,
    funnel: Weak<Funnel>,
    adaptive: Weak<adaptive::Counts>,
    retention_ms: Weak<AtomicI64>,
}

impl Binding {
    /// Gets ready for one model (by content key); false once the contact side is gone.
    pub fn bind_model(&self, model: &CompiledModel, key: u32) -> bool {
        let (Some(state), Some(funnel)) = (self.state.upgrade(), self.funnel.upgrade()) else {
            return false;
        };
        if model.policies.horizon_ms > state.horizon_ms() {
            self.set_horizon_ms(model.policies.horizon_ms);
        }
        funnel.bind(model, key);
        true
    }

    /// Readies what contextual adaptive offers learn for the models published together (with
    /// their content keys) and the feature snapshot they were compiled against.
    pub fn bind_learning(&self, models: &[(&CompiledModel, u32)], store: &Arc<FeatureStore>) {
        if let Some(a) = self.adaptive.upgrade() {
            a.bind(models, store.clone());
        }
    }

    /// Readies what a shadow candidate's contextual adaptive offers learn (`None`: none), with
    /// the content key its decisions read under.
    pub fn bind_shadow_learning(&self, model: Option<(&CompiledModel, u32)>) {
        if let Some(a) = self.adaptive.upgrade() {
            a.bind_shadow(model);
        }
    }

    /// Names the active champion and challenger, for events that name no decision.
    pub fn activate(
        &self,
        champion: u32,
        challenger: Option<(u32, crate::experiment::Challenger)>,
    ) {
        if let Some(f) = self.funnel.upgrade() {
            f.activate(champion, challenger);
        }
    }

    fn set_horizon_ms(&self, ms: i64) {
        let Some(state) = self.state.upgrade() else {
            return;
        };
        state.set_horizon_ms(ms);
        if let Some(r) = self.retention_ms.upgrade() {
            r.store(state.retention_ms(), Relaxed);
        }
    }
}

impl Drop for Contacts {
    fn drop(&mut self) {
        self.close();
    }
}
