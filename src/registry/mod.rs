//! The serving state: one immutable [`Snapshot`] (models + features) behind `arc-swap`, and
//! the one path every change to it takes.
//!
//! Readers call [`Registry::load`] once per request and keep that snapshot to the end, so a
//! request never sees half of a model. Every source of change (folder watcher, admin upload,
//! SIGHUP and start-up, feature reload, rollback, tests) hands a [`Change`] to one private
//! commit path that holds the writer lock from start to end and there builds the whole new
//! snapshot (parse, validate, compile against the feature layout, warm up), counts the
//! outcome once, logs it once, tells the publish hooks, records history, and publishes it
//! with one store. The old snapshot is freed when its last reader drops it. Readers never
//! touch the writer lock.
//!
//! The models folder is the one source of truth: an admin upload or rollback is written to its
//! `model.json` (atomically: a temporary file renamed over it, then synced) before it is
//! published, so SIGHUP and a restart keep it, and the watcher sees nothing new. A folder that
//! cannot be written (a mounted ConfigMap) refuses admin changes with
//! [`RegistryError::ReadOnly`], which says where the model is changed instead. Every model
//! activated is recorded in the [`audit`] trail with the source of its change. Callers must be
//! on a blocking thread, never a runtime worker: a change takes milliseconds to seconds.

pub mod audit;
mod change;
mod error;
mod folder;
pub mod journal;
mod record;
mod set;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use arc_swap::ArcSwap;

pub use change::Change;
pub use error::RegistryError;
pub use record::{
    ChallengerRecord, FeatureInfo, FeatureVersion, LoadCounters, ModelRecord, Part, Serving,
};
pub use set::{load_challenger, ModelSet, Snapshot};

use crate::features::{FeatureStore, NullWords, SnapshotStore};
use crate::model::{self, Fault, Limits, LoadedModel, ModelError};
use set::Source;

/// What a committed change did.
#[derive(Debug, Clone)]
pub enum Committed {
    /// A model set was activated.
    Model(ModelRecord),
    /// A feature snapshot was swapped in.
    Features(FeatureInfo),
    /// Nothing needed to change.
    Unchanged,
}

/// Where the registry reloads from, and how much history it keeps.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// The models folder (or file) reloaded by the watcher and SIGHUP.
    pub models_path: Option<PathBuf>,
    /// The feature snapshot reloaded by SIGHUP (and the default for a feature reload).
    pub features_path: Option<PathBuf>,
    /// Model versions kept compiled for rollback.
    pub history_len: usize,
    /// Model size limits.
    pub limits: Limits,
    /// Where `.nbf` snapshots are copied to and mapped from (`None`: loaded into memory).
    pub snapshot_store: Option<SnapshotStore>,
    /// The words a CSV snapshot writes for a missing value (`--features-null`).
    pub null_words: NullWords,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            models_path: None,
            features_path: None,
            history_len: 5,
            limits: Limits::default(),
            snapshot_store: None,
            null_words: NullWords::default(),
        }
    }
}

struct Entry {
    set: Arc<ModelSet>,
    record: ModelRecord,
}

/// Called with every model set about to be published, before any request can see it.
type Hook = Box<dyn Fn(&ModelSet, &Arc<FeatureStore>) + Send + Sync>;

struct Writer {
    /// Newest first; `[0]` is active.
    history: Vec<Entry>,
    features_path: Option<PathBuf>,
    /// Checksum of the last model.json the folder reload refused.
    last_refused: Option<String>,
    hooks: Vec<Hook>,
}

/// How a built change enters the model history.
enum History {
    /// A newly activated set goes on top.
    Push,
    /// The active set, recompiled against new columns, replaces itself.
    Recompiled,
    /// The active entry goes; the previous one, perhaps recompiled, becomes active.
    Back,
}

/// A change built and ready to publish.
struct Plan {
    models: Option<Arc<ModelSet>>,
    store: Arc<FeatureStore>,
    history: History,
    /// A new feature snapshot was loaded (counted as a feature load).
    new_features: Option<FeatureInfo>,
    /// The new feature snapshot's version (with `new_features`).
    feature_version: Option<FeatureVersion>,
    /// A model was loaded (counted as a model load).
    new_model: bool,
}

/// Owns the current snapshot, the model history and every way of changing them.
pub struct Registry {
    current: ArcSwap<Snapshot>,
    writer: Mutex<Writer>,
    config: RegistryConfig,
    /// Feature reloads requested so far: a reload that finds a newer request waiting gives
    /// way to it, so the last request wins and loads never pile up.
    feature_requests: AtomicU64,
    /// Load outcomes, for metrics.
    pub loads: LoadCounters,
    /// Every model activated, with who changed it.
    pub audit: audit::Audit,
    /// The last loads accepted and refused, for the status page.
    pub journal: journal::LoadJournal,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new(RegistryConfig::default())
    }
}

impl Registry {
    /// An empty registry: until something loads, every decision gets `no_model` fallback.
    pub fn new(config: RegistryConfig) -> Self {
        Registry {
            current: ArcSwap::from_pointee(Snapshot::default()),
            writer: Mutex::new(Writer {
                history: Vec::new(),
                features_path: config.features_path.clone(),
                last_refused: None,
                hooks: Vec::new(),
            }),
            config,
            feature_requests: AtomicU64::new(0),
            loads: LoadCounters::default(),
            audit: audit::Audit::default(),
            journal: Default::default(),
        }
    }

    /// The snapshot a request works on, from start to end.
    #[inline]
    pub fn load(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.current.load()
    }

    /// Settings.
    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    fn writer(&self) -> MutexGuard<'_, Writer> {
        // A panic while holding the lock left no half-built state behind (snapshots are
        // published whole), so a poisoned lock is safe to keep using.
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers state derived from published models (contact horizons, funnel tables, what
    /// contextual offers learn): `f` sees the active set now, if any, and every set published
    /// from now on, before requests do, with the feature snapshot it was compiled against.
    pub fn on_publish(&self, f: impl Fn(&ModelSet, &Arc<FeatureStore>) + Send + Sync + 'static) {
        let mut w = self.writer();
        if let Snapshot {
            models: Some(set),
            features: Some(store),
            ..
        } = &**self.current.load()
        {
            f(set, store);
        }
        w.hooks.push(Box::new(f));
    }

    /// Applies a change: builds, counts, logs, publishes. The serving snapshot is unchanged
    /// when it is refused.
    pub fn commit(&self, change: Change) -> Result<Committed, RegistryError> {
        self.commit_locked(&mut self.writer(), change)
    }

    fn commit_locked(&self, w: &mut Writer, change: Change) -> Result<Committed, RegistryError> {
        let started = Instant::now();
        let source = change.source(&self.config);
        let from_disk = matches!(change, Change::FromDisk);
        let features_change = matches!(change, Change::Features { .. });
        let mut plan = match self.plan(w, change) {
            Ok(Some(plan)) => plan,
            Ok(None) => return Ok(Committed::Unchanged),
            Err(e) => {
                if !matches!(e, RegistryError::Superseded) {
                    // A start or folder load that failed on its snapshot names the snapshot
                    // it read (the one serving's path, which a reload may have changed).
                    let source = match (e.part(), &w.features_path) {
                        (Part::Features, Some(p)) if !features_change => change::features_source(p),
                        _ => source,
                    };
                    // A read-only models folder refuses the admin change, not the model, and a
                    // read-only store a reload of a file not in it: no load failed (the refusal
                    // alerts must not page for it). A start or SIGHUP whose store turned
                    // read-only did fail, and counts.
                    let misdirected = matches!(e, RegistryError::ReadOnly { .. })
                        || (features_change && e.read_only());
                    if !misdirected {
                        self.loads.count(e.part(), false);
                    }
                    log_refusal(&e, &source, self.load().models.is_some());
                    self.journal.refused(&source, &e);
                }
                return Err(e);
            }
        };
        if let Some(info) = &plan.new_features {
            for w in &info.warnings {
                tracing::warn!(source = %info.source, path = %w.path, "{}", w.message);
            }
        }
        // A new snapshot says what the serving models make of it.
        if let (Some(set), Some(info)) = (&plan.models, &mut plan.new_features) {
            info.warnings.extend(set.warnings());
        }
        if let (Some(info), Some(before)) = (&mut plan.new_features, &self.load().features) {
            let lost = crate::features::ids_lost(before, &plan.store).map(|message| Fault {
                path: "customer_id".into(),
                message,
            });
            for w in shrunk(before.len(), info.customers).into_iter().chain(lost) {
                tracing::warn!(source = %info.source, customers = info.customers, before = before.len(), "{}", w.message);
                info.warnings.push(w);
            }
        }
        if let Some(set) = &plan.models {
            set::warm(set, &plan.store);
            for hook in &w.hooks {
                hook(set, &plan.store);
            }
        }
        if plan.new_model {
            self.loads.count(Part::Model, true);
        }
        if plan.new_features.is_some() {
            self.loads.count(Part::Features, true);
        }
        let record = plan
            .models
            .as_ref()
            .map(|set| self.record_history(w, set, plan.history, &source));
        let feature_version = match plan.feature_version {
            Some(v) => Some(Arc::new(v)),
            None => current_version(&self.current.load()),
        };
        let replaced = self.current.swap(Arc::new(Snapshot {
            models: plan.models,
            features: Some(plan.store.clone()),
            feature_version,
        }));
        if let (Some(store), Some(_)) = (&self.config.snapshot_store, &plan.new_features) {
            // The new file serves and the replaced one stays for a rollback; requests still
            // holding an older map keep its pages until they let go.
            let old = replaced.features.as_ref().and_then(|f| f.mapped_file());
            let keep: Vec<&Path> = [plan.store.mapped_file(), old]
                .into_iter()
                .flatten()
                .collect();
            store.retain(&keep);
        }
        let duration_ms = started.elapsed().as_millis() as u64;
        if let Some(info) = &plan.new_features {
            tracing::info!(
                source = %info.source,
                customers = info.customers,
                features = info.features,
                bytes = info.bytes,
                mapped_bytes = plan.store.mapped_bytes(),
                duration_ms,
                "feature snapshot swapped in"
            );
        }
        let model = record.as_ref().filter(|_| plan.new_model);
        // A reload from disk that changed the snapshot alone is the snapshot's load.
        let source = match (model, &w.features_path) {
            (None, Some(p)) if from_disk => change::features_source(p),
            _ => source,
        };
        self.journal
            .accepted(&source, model, plan.new_features.as_ref());
        match (record, plan.new_features) {
            (Some(r), _) if plan.new_model => {
                tracing::info!(model = %r.name, version = %r.version, source = %r.source, duration_ms, "model activated");
                Ok(Committed::Model(r))
            }
            // A reload from disk answers with the model serving, new or the same.
            (Some(r), Some(_)) if from_disk => Ok(Committed::Model(r)),
            (_, Some(info)) => Ok(Committed::Features(info)),
            (Some(r), None) => Ok(Committed::Model(r)),
            (None, None) => Ok(Committed::Unchanged),
        }
    }

    /// Builds what a change asks for, under the writer lock; `None` when nothing changes.
    fn plan(&self, w: &mut Writer, change: Change) -> Result<Option<Plan>, RegistryError> {
        let current = self.current.load_full();
        let active = current.models.clone();
        let limits = &self.config.limits;
        let model_plan = |set: ModelSet, store: Arc<FeatureStore>| Plan {
            models: Some(Arc::new(set)),
            store,
            history: History::Push,
            new_features: None,
            feature_version: None,
            new_model: true,
        };
        let version = |path: &Path, store: &FeatureStore| {
            Some(FeatureVersion::of(
                path,
                store,
                crate::contact::Clock::system().now(),
            ))
        };
        let open = |path: &Path| {
            let (store, nulls) = (self.config.snapshot_store.as_ref(), &self.config.null_words);
            record::read_snapshot(path, store, nulls)
        };
        Ok(Some(match change {
            Change::FromDisk => {
                let features_path = w
                    .features_path
                    .clone()
                    .ok_or(RegistryError::NoPath("features"))?;
                let models_path = self.models_path()?;
                let started = Instant::now();
                let (store, feature_version) = open(&features_path)?;
                let store = Arc::new(store);
                let serving = current.features.as_deref();
                let set = set::build_from_disk(&models_path, &store, serving, limits)?;
                w.features_path = Some(features_path);
                // The same models again (a SIGHUP for the snapshot): no new version, so a
                // rollback still goes back to the one before.
                let unchanged = active.as_deref().is_some_and(|a| same_models(a, &set));
                Plan {
                    new_features: Some(FeatureInfo::of(&store, started)),
                    feature_version,
                    history: if unchanged {
                        History::Recompiled
                    } else {
                        History::Push
                    },
                    new_model: !unchanged,
                    ..model_plan(set, store)
                }
            }
            Change::Folder { force } => {
                let file = model::model_file(&self.models_path()?);
                let document = crate::files::read_regular(&file, limits.max_bytes as u64).map_err(
                    |source| ModelError::Io {
                        path: file.clone(),
                        source,
                    },
                )?;
                // The document alone decides here; its scorer files are the rebuild's.
                let checksum = format!("crc32:{:08x}", crc32fast::hash(&document));
                let same = active
                    .as_ref()
                    .is_some_and(|s| s.champion.document == document);
                if !force && (same || w.last_refused.as_ref() == Some(&checksum)) {
                    return Ok(None);
                }
                let store = current.features.clone().ok_or(RegistryError::NoFeatures)?;
                let src = Source {
                    document,
                    base_dir: Some(model::folder_of(&file)),
                    source: file.display().to_string(),
                    scorers: Vec::new(),
                };
                match set::build(src, &store, limits) {
                    Ok(set) => model_plan(set, store),
                    Err(e) => {
                        // The watcher may see more events for the same write: refuse it once.
                        w.last_refused = Some(checksum);
                        return Err(e.into());
                    }
                }
            }
            Change::Document {
                document,
                base_dir,
                source,
            } => {
                let store = current.features.clone().ok_or(RegistryError::NoFeatures)?;
                let src = Source {
                    document,
                    base_dir,
                    source,
                    scorers: Vec::new(),
                };
                let set = set::build(src, &store, limits)?;
                self.persist(&set)?;
                model_plan(set, store)
            }
            Change::RebuildActive => {
                let (Some(active), Some(store)) = (active, current.features.clone()) else {
                    return Err(RegistryError::NoFeatures);
                };
                let set = set::build(Source::with_folder_files(&active), &store, limits)?;
                // Files touched but not changed: no new version.
                if same_models(&set, &active) {
                    return Ok(None);
                }
                model_plan(set, store)
            }
            Change::Features { path } => {
                let path = path
                    .or_else(|| w.features_path.clone())
                    .ok_or(RegistryError::NoPath("features"))?;
                let started = Instant::now();
                let (store, feature_version) = open(&path)?;
                let store = Arc::new(store);
                let models = match &active {
                    Some(active) => Some(Arc::new(
                        set::rebuild_for_snapshot(Source::of(active), &store, limits).map_err(
                            |e| {
                                RegistryError::FeaturesIncompatible(
                                    e,
                                    record::column_faults(&store),
                                )
                            },
                        )?,
                    )),
                    None => None,
                };
                w.features_path = Some(path);
                Plan {
                    models,
                    new_features: Some(FeatureInfo::of(&store, started)),
                    feature_version,
                    store,
                    history: History::Recompiled,
                    new_model: false,
                }
            }
            Change::Rollback => {
                let prev = w.history.get(1).ok_or(RegistryError::NoPrevious)?;
                let store = current.features.clone().ok_or(RegistryError::NoFeatures)?;
                let set = if prev.set.fits(&store) {
                    prev.set.clone()
                } else {
                    Arc::new(set::build(Source::of(&prev.set), &store, limits)?)
                };
                self.persist(&set)?;
                Plan {
                    models: Some(set),
                    store,
                    history: History::Back,
                    new_features: None,
                    feature_version: None,
                    new_model: true,
                }
            }
            Change::Install { store, model } => {
                let feature_version = version(Path::new(store.source()), &store);
                Plan {
                    feature_version,
                    ..model_plan(
                        set::with_challenger(*model, &store, &*store, limits)?,
                        store,
                    )
                }
            }
        }))
    }

    fn record_history(
        &self,
        w: &mut Writer,
        set: &Arc<ModelSet>,
        how: History,
        source: &str,
    ) -> ModelRecord {
        let record = ModelRecord::of(set, crate::contact::Clock::system().now(), source);
        if !matches!(how, History::Recompiled) {
            self.audit.record(&record);
        }
        let entry = Entry {
            set: set.clone(),
            record: record.clone(),
        };
        match how {
            History::Push => {
                w.history.insert(0, entry);
                w.history.truncate(self.config.history_len.max(2));
            }
            History::Recompiled => match w.history.first_mut() {
                Some(e) => e.set = set.clone(),
                None => w.history.push(entry),
            },
            History::Back => {
                w.history.remove(0);
                w.history[0] = entry;
            }
        }
        w.history[0].record.clone()
    }

    /// What serves now: the models' names, versions and checksums, and the snapshot's version.
    pub fn serving(&self) -> Serving {
        let snap = self.current.load();
        let models = snap.models.as_ref();
        Serving {
            model: models.map(|s| s.champion.compiled.name.to_string()),
            version: models.map(|s| s.champion.compiled.version.to_string()),
            checksum: models.map(|s| match &s.challenger {
                Some(c) => format!("{}+{}", s.champion.checksum, c.model.checksum),
                None => s.champion.checksum.clone(),
            }),
            snapshot: snap.feature_version.as_deref().cloned(),
        }
    }

    /// Loads the feature snapshot and the model from their configured paths and publishes
    /// both in one store (start-up and SIGHUP).
    pub fn reload_from_disk(&self) -> Result<ModelRecord, RegistryError> {
        self.commit(Change::FromDisk).map(expect_model)
    }

    /// Rebuilds the active model from its own document, re-reading the files it names (a
    /// scorer or challenger file changed in the folder). What is active stays active.
    pub fn rebuild_active(&self) -> Result<ModelRecord, RegistryError> {
        self.commit(Change::RebuildActive).map(expect_model)
    }

    /// Reloads the model from the models folder; unless `force`, a document identical to the
    /// active one is left alone. `Ok(None)` when nothing changed.
    pub fn reload_models(&self, force: bool) -> Result<Option<ModelRecord>, RegistryError> {
        Ok(match self.commit(Change::Folder { force })? {
            Committed::Model(r) => Some(r),
            _ => None,
        })
    }

    /// Validates, compiles, warms and activates a model document (admin upload).
    pub fn install_document(
        &self,
        document: Vec<u8>,
        base_dir: Option<PathBuf>,
        source: String,
    ) -> Result<ModelRecord, RegistryError> {
        self.commit(Change::Document {
            document,
            base_dir,
            source,
        })
        .map(expect_model)
    }

    /// Installs an already-built feature store and model (start-up, tests).
    pub fn install(
        &self,
        store: Arc<FeatureStore>,
        model: LoadedModel,
    ) -> Result<ModelRecord, RegistryError> {
        self.commit(Change::Install {
            store,
            model: Box::new(model),
        })
        .map(expect_model)
    }

    /// Loads a feature snapshot and swaps it in, recompiling the active models against its
    /// columns; refused (and nothing changes) when it lacks a feature they need. When another
    /// reload was requested while this one waited, this one gives way to it
    /// ([`RegistryError::Superseded`]). While no model serves, the models folder is loaded
    /// next: a model published before any snapshot was refused for want of one.
    pub fn reload_features(&self, path: Option<PathBuf>) -> Result<FeatureInfo, RegistryError> {
        let ticket = self.feature_requests.fetch_add(1, Relaxed) + 1;
        let mut w = self.writer();
        if self.feature_requests.load(Relaxed) != ticket {
            return Err(RegistryError::Superseded);
        }
        let waiting = self.load().models.is_none() && self.config.models_path.is_some();
        match self.commit_locked(&mut w, Change::Features { path })? {
            Committed::Features(info) => {
                if waiting {
                    // Logged and counted like any load; the snapshot stays either way.
                    let _ = self.commit_locked(&mut w, Change::Folder { force: false });
                }
                Ok(info)
            }
            _ => Err(RegistryError::Superseded),
        }
    }

    /// Feature reloads requested since start (for stats; superseded ones included).
    pub fn feature_reloads_requested(&self) -> u64 {
        self.feature_requests.load(Relaxed)
    }

    /// Goes back to the previous model version, kept compiled (recompiled only when the
    /// feature layout changed since).
    pub fn rollback(&self) -> Result<ModelRecord, RegistryError> {
        self.commit(Change::Rollback).map(expect_model)
    }

    /// The model audit trail, newest (active) first: every model activated and who changed
    /// it, rollbacks included (see [`audit`]).
    pub fn history(&self) -> Vec<ModelRecord> {
        self.audit.entries()
    }
}

/// The feature version of a snapshot, carried over when a change loads no new features.
fn current_version(snap: &Snapshot) -> Option<Arc<FeatureVersion>> {
    snap.feature_version.clone()
}

/// Whether two sets hold the same champion and challenger, by the checksums of their
/// documents and scorer files.
fn same_models(a: &ModelSet, b: &ModelSet) -> bool {
    fn checksums(s: &ModelSet) -> (&str, Option<&str>) {
        let challenger = s.challenger.as_ref().map(|c| c.model.checksum.as_str());
        (&s.champion.checksum, challenger)
    }
    checksums(a) == checksums(b)
}

fn expect_model(c: Committed) -> ModelRecord {
    match c {
        Committed::Model(r) => r,
        // Only the folder source may leave the model unchanged, and it has its own wrapper.
        other => unreachable!("a model change committed as {other:?}"),
    }
}

/// A snapshot much smaller than the one it replaces serves, and says so ([`crate::features::shrunk`]).
fn shrunk(before: usize, now: usize) -> Option<Fault> {
    Some(Fault {
        path: "customers".into(),
        message: crate::features::shrunk(before, now)?,
    })
}

/// Logs every fault of a refused change, once, where the refusal is decided; `serving` says
/// whether a model serves (at start, none does yet).
fn log_refusal(e: &RegistryError, source: &str, serving: bool) {
    let outcome = if serving {
        "load refused; the model and snapshot serving are unchanged"
    } else {
        "load refused; no model serves yet (decisions get fallback content until a load succeeds)"
    };
    for Fault { path, message } in e.faults() {
        // A fault without a place in the model (a snapshot's) is placed by its source.
        if path.is_empty() {
            tracing::warn!(source, fault = %message, "{outcome}");
        } else {
            tracing::warn!(source, path = %path, fault = %message, "{outcome}");
        }
    }
}
