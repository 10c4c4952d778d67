//! The serving state: one immutable [`Snapshot`] (models + features) behind `arc-swap`.
//!
//! Readers call [`Registry::load`] once per request and keep that snapshot to the end, so a
//! request never sees half of a model. Every writer (folder watcher, admin upload, SIGHUP,
//! feature reload, rollback) builds the whole new snapshot first (parse, validate, compile
//! against the feature layout, warm up) and then publishes it with one store; the old one is
//! freed when its last reader drops it. Writers serialise on a mutex readers never touch, and
//! must call in from a blocking thread, never a runtime worker: a load takes milliseconds to
//! seconds.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;

use crate::engine::{self, NoContacts, Request, Unbounded};
use crate::features::{FeatureError, FeatureStore};
use crate::model::{self, Fault, Limits, LoadedModel, ModelError};

/// Which model answered a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// The active model.
    Champion,
    /// The model under test on a share of customers.
    Challenger,
}

impl Variant {
    /// The wire name, as the answer's `variant` carries it.
    pub fn as_str(self) -> &'static str {
        match self {
            Variant::Champion => "champion",
            Variant::Challenger => "challenger",
        }
    }
}

/// A challenger model and the customers it serves.
#[derive(Debug)]
pub struct Challenger {
    /// The challenger, compiled against the same snapshot as the champion.
    pub model: Arc<LoadedModel>,
    /// Share of customers, 0..=1.
    pub share: f64,
    /// Experiment salt.
    pub salt: String,
}

/// A champion and its optional challenger, compiled against one feature layout.
#[derive(Debug)]
pub struct ModelSet {
    /// The model most customers get.
    pub champion: Arc<LoadedModel>,
    /// The model a stable share of customers gets.
    pub challenger: Option<Challenger>,
    columns: Arc<[Box<str>]>,
}

impl ModelSet {
    /// The model (and its variant name) for a customer; anonymous visitors get the champion.
    #[inline]
    pub fn pick(&self, customer_id: Option<&str>) -> (&LoadedModel, Variant) {
        match (&self.challenger, customer_id) {
            (Some(c), Some(id)) if assignment(&c.salt, id) < c.share => {
                (&c.model, Variant::Challenger)
            }
            _ => (&self.champion, Variant::Champion),
        }
    }
}

/// A customer's stable position in `[0, 1)` for an experiment: the same on every channel,
/// request and replica (a fixed hash, no per-process seed). A customer is in the challenger
/// when this is below the share, so raising the share only adds customers at the margin.
pub fn assignment(salt: &str, customer_id: &str) -> f64 {
    // FNV-1a over salt, a separator and the id, then the SplitMix64 finaliser to spread the
    // low-entropy differences of sequential ids over all bits.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in salt.bytes().chain([0xff]).chain(customer_id.bytes()) {
        h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// What every request reads: the active models and feature snapshot, swapped together.
#[derive(Default)]
pub struct Snapshot {
    /// The active champion (and challenger), compiled against `features`.
    pub models: Option<Arc<ModelSet>>,
    /// The active feature snapshot.
    pub features: Option<Arc<FeatureStore>>,
}

impl Snapshot {
    /// Ready to personalise: a model and a feature snapshot are loaded.
    pub fn is_ready(&self) -> bool {
        self.models.is_some() && self.features.is_some()
    }
}

/// One entry of the model history shown by the admin API.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModelRecord {
    /// Model name.
    pub name: String,
    /// Model version.
    pub version: String,
    /// Checksum of the document.
    pub checksum: String,
    /// When it was activated (RFC 3339).
    pub loaded_at: String,
    /// Where it came from.
    pub source: String,
    /// The challenger it declares: `{name, version, share, salt}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub challenger: Option<serde_json::Value>,
}

impl ModelRecord {
    fn of(set: &ModelSet, at: SystemTime) -> Self {
        let m = &set.champion;
        ModelRecord {
            name: m.compiled.name.to_string(),
            version: m.compiled.version.to_string(),
            checksum: m.checksum.clone(),
            loaded_at: humantime::format_rfc3339_millis(at).to_string(),
            source: m.source.clone(),
            challenger: set.challenger.as_ref().map(|c| {
                serde_json::json!({
                    "name": &*c.model.compiled.name,
                    "version": &*c.model.compiled.version,
                    "checksum": c.model.checksum,
                    "share": c.share,
                    "salt": c.salt,
                })
            }),
        }
    }
}

/// Why a load or rollback was refused; the serving snapshot is unchanged in every case.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The model was refused.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The feature snapshot could not be read.
    #[error(transparent)]
    Features(#[from] FeatureError),
    /// A new snapshot lacks features the active model needs.
    #[error("the feature snapshot lacks features the active model needs")]
    FeaturesIncompatible(#[source] ModelError),
    /// Nothing to roll back to.
    #[error("no previous model version to roll back to")]
    NoPrevious,
    /// A model arrived before any feature snapshot.
    #[error("no feature snapshot is loaded: load features before a model")]
    NoFeatures,
    /// No path is configured for this kind of reload.
    #[error("no {0} path is configured")]
    NoPath(&'static str),
}

impl RegistryError {
    /// The faults to report, with paths where known.
    pub fn faults(&self) -> Vec<Fault> {
        match self {
            RegistryError::Model(e) | RegistryError::FeaturesIncompatible(e) => e.faults(),
            other => vec![Fault {
                path: String::new(),
                message: other.to_string(),
            }],
        }
    }
}

/// Load counters, exported as `nextbest_model_loads_total` and `nextbest_feature_loads_total`.
#[derive(Default)]
pub struct LoadCounters {
    model_accepted: AtomicU64,
    model_rejected: AtomicU64,
    features_accepted: AtomicU64,
    features_rejected: AtomicU64,
}

impl LoadCounters {
    /// Prometheus text for the counters.
    pub fn render(&self) -> String {
        format!(
            "# HELP nextbest_model_loads_total Model loads, by result.\n\
             # TYPE nextbest_model_loads_total counter\n\
             nextbest_model_loads_total{{result=\"accepted\"}} {}\n\
             nextbest_model_loads_total{{result=\"rejected\"}} {}\n\
             # HELP nextbest_feature_loads_total Feature snapshot loads, by result.\n\
             # TYPE nextbest_feature_loads_total counter\n\
             nextbest_feature_loads_total{{result=\"accepted\"}} {}\n\
             nextbest_feature_loads_total{{result=\"rejected\"}} {}\n",
            self.model_accepted.load(Relaxed),
            self.model_rejected.load(Relaxed),
            self.features_accepted.load(Relaxed),
            self.features_rejected.load(Relaxed),
        )
    }

    /// Rejected model loads so far.
    pub fn models_rejected(&self) -> u64 {
        self.model_rejected.load(Relaxed)
    }
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
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            models_path: None,
            features_path: None,
            history_len: 5,
            limits: Limits::default(),
        }
    }
}

struct Entry {
    set: Arc<ModelSet>,
    record: ModelRecord,
}

struct Writer {
    /// Newest first; `[0]` is active.
    history: Vec<Entry>,
    features_path: Option<PathBuf>,
    /// Checksum of the last model.json the folder reload refused.
    last_refused: Option<String>,
}

/// Owns the current snapshot, the model history and every way of changing them.
pub struct Registry {
    current: ArcSwap<Snapshot>,
    writer: Mutex<Writer>,
    config: RegistryConfig,
    /// Load outcomes, for metrics.
    pub loads: LoadCounters,
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
            }),
            config,
            loads: LoadCounters::default(),
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

    /// Loads the feature snapshot and the model from their configured paths and publishes
    /// both in one store (start-up and SIGHUP).
    pub fn reload_from_disk(&self) -> Result<ModelRecord, RegistryError> {
        let features_path = self.writer().features_path.clone();
        let features_path = features_path.ok_or(RegistryError::NoPath("features"))?;
        let started = Instant::now();
        let store = Arc::new(self.counted_features(FeatureStore::load(&features_path))?);
        log_features(&FeatureInfo::of(&store, started));
        let models_path = self
            .config
            .models_path
            .clone()
            .ok_or(RegistryError::NoPath("models"))?;
        let mut w = self.writer();
        let set = self.counted_model(build_from_path(&models_path, &store, &self.config.limits))?;
        warm(&set, &store);
        w.features_path = Some(features_path);
        Ok(self.publish(&mut w, set, store))
    }

    /// Rebuilds the active model from its own document, re-reading the files it names (a
    /// scorer or challenger file changed in the folder). What is active stays active.
    pub fn rebuild_active(&self) -> Result<ModelRecord, RegistryError> {
        let mut w = self.writer();
        let current = self.current.load_full();
        let (Some(active), Some(store)) = (&current.models, &current.features) else {
            return Err(RegistryError::NoFeatures);
        };
        let set = self.counted_model(rebuild(active, store, &self.config.limits))?;
        warm(&set, store);
        Ok(self.publish(&mut w, set, store.clone()))
    }

    /// Reloads the model from the models folder; unless `force`, a document identical to the
    /// active one is left alone (the watcher also sees unrelated files change). `Ok(None)` when
    /// nothing changed.
    pub fn reload_models(&self, force: bool) -> Result<Option<ModelRecord>, RegistryError> {
        let path = self
            .config
            .models_path
            .clone()
            .ok_or(RegistryError::NoPath("models"))?;
        let file = model::model_file(&path);
        let bytes = std::fs::read(&file).map_err(|source| {
            self.loads.model_rejected.fetch_add(1, Relaxed);
            ModelError::Io {
                path: file.clone(),
                source,
            }
        })?;
        let checksum = format!("crc32:{:08x}", crc32fast::hash(&bytes));
        if !force {
            let refused = self.writer().last_refused.clone();
            let active = self.active_checksum();
            if [active, refused].iter().flatten().any(|c| *c == checksum) {
                return Ok(None);
            }
        }
        let base = file.parent().map(Path::to_owned);
        let result = self.install_document(bytes, base, file.display().to_string());
        if result.is_err() {
            // The watcher may see more events for the same write: refuse a document once.
            self.writer().last_refused = Some(checksum);
        }
        result.map(Some)
    }

    /// Validates, compiles, warms and activates a model document (admin upload, watcher).
    pub fn install_document(
        &self,
        document: Vec<u8>,
        base_dir: Option<PathBuf>,
        source: String,
    ) -> Result<ModelRecord, RegistryError> {
        let mut w = self.writer();
        let Some(store) = self.current.load().features.clone() else {
            self.loads.model_rejected.fetch_add(1, Relaxed);
            return Err(RegistryError::NoFeatures);
        };
        let set = self.counted_model(build_set(
            document,
            base_dir,
            source,
            &store,
            &self.config.limits,
        ))?;
        warm(&set, &store);
        Ok(self.publish(&mut w, set, store))
    }

    /// Installs an already-built feature store and model (start-up, tests).
    pub fn install(
        &self,
        store: Arc<FeatureStore>,
        model: LoadedModel,
    ) -> Result<ModelRecord, RegistryError> {
        let mut w = self.writer();
        let set = self.counted_model(with_challenger(model, &store, &self.config.limits))?;
        warm(&set, &store);
        Ok(self.publish(&mut w, set, store))
    }

    /// Loads a feature snapshot and swaps it in, recompiling the active models against its
    /// columns; refused (and nothing changes) when it lacks a feature they need.
    pub fn reload_features(&self, path: Option<PathBuf>) -> Result<FeatureInfo, RegistryError> {
        let path = match path.or_else(|| self.writer().features_path.clone()) {
            Some(p) => p,
            None => return Err(RegistryError::NoPath("features")),
        };
        let started = Instant::now();
        let store = Arc::new(self.counted_features(FeatureStore::load(&path))?);
        log_features(&FeatureInfo::of(&store, started));
        let mut w = self.writer();
        let current = self.current.load_full();
        let models = match &current.models {
            Some(active) => {
                let set = rebuild(active, &store, &self.config.limits).map_err(|e| {
                    self.loads.features_rejected.fetch_add(1, Relaxed);
                    RegistryError::FeaturesIncompatible(e)
                })?;
                warm(&set, &store);
                if let Some(e) = w.history.first_mut() {
                    e.set = set.clone();
                }
                Some(set)
            }
            None => None,
        };
        w.features_path = Some(path);
        let info = FeatureInfo::of(&store, started);
        self.current.store(Arc::new(Snapshot {
            models,
            features: Some(store),
        }));
        Ok(info)
    }

    /// Goes back to the previous model version, kept compiled (recompiled only when the
    /// feature layout changed since).
    pub fn rollback(&self) -> Result<ModelRecord, RegistryError> {
        let mut w = self.writer();
        if w.history.len() < 2 {
            return Err(RegistryError::NoPrevious);
        }
        let current = self.current.load_full();
        let Some(store) = current.features.clone() else {
            return Err(RegistryError::NoFeatures);
        };
        let prev = &w.history[1];
        let set = if *prev.set.columns == *store.columns() {
            prev.set.clone()
        } else {
            let set = rebuild(&prev.set, &store, &self.config.limits)?;
            warm(&set, &store);
            set
        };
        w.history.remove(0);
        let record = ModelRecord::of(&set, SystemTime::now());
        w.history[0] = Entry {
            set: set.clone(),
            record: record.clone(),
        };
        self.current.store(Arc::new(Snapshot {
            models: Some(set),
            features: Some(store),
        }));
        Ok(record)
    }

    /// The model history, newest (active) first.
    pub fn history(&self) -> Vec<ModelRecord> {
        self.writer()
            .history
            .iter()
            .map(|e| e.record.clone())
            .collect()
    }

    fn active_checksum(&self) -> Option<String> {
        self.current
            .load()
            .models
            .as_ref()
            .map(|m| m.champion.checksum.clone())
    }

    fn publish(&self, w: &mut Writer, set: Arc<ModelSet>, store: Arc<FeatureStore>) -> ModelRecord {
        let record = ModelRecord::of(&set, SystemTime::now());
        w.history.insert(
            0,
            Entry {
                set: set.clone(),
                record: record.clone(),
            },
        );
        w.history.truncate(self.config.history_len.max(2));
        self.current.store(Arc::new(Snapshot {
            models: Some(set),
            features: Some(store),
        }));
        record
    }

    fn counted_model<T>(&self, r: Result<T, ModelError>) -> Result<T, RegistryError> {
        match r {
            Ok(v) => {
                self.loads.model_accepted.fetch_add(1, Relaxed);
                Ok(v)
            }
            Err(e) => {
                self.loads.model_rejected.fetch_add(1, Relaxed);
                Err(e.into())
            }
        }
    }

    fn counted_features<T>(&self, r: Result<T, FeatureError>) -> Result<T, RegistryError> {
        match r {
            Ok(v) => {
                self.loads.features_accepted.fetch_add(1, Relaxed);
                Ok(v)
            }
            Err(e) => {
                self.loads.features_rejected.fetch_add(1, Relaxed);
                Err(e.into())
            }
        }
    }
}

/// What a feature reload reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FeatureInfo {
    /// Where it came from.
    pub source: String,
    /// Customers held.
    pub customers: usize,
    /// Feature columns.
    pub features: usize,
    /// Heap bytes held.
    pub bytes: usize,
    /// Load and swap time.
    pub load_ms: u64,
}

impl FeatureInfo {
    fn of(store: &FeatureStore, started: Instant) -> Self {
        FeatureInfo {
            source: store.source().to_owned(),
            customers: store.len(),
            features: store.columns().len(),
            bytes: store.bytes_held(),
            load_ms: started.elapsed().as_millis() as u64,
        }
    }
}

fn log_features(info: &FeatureInfo) {
    tracing::info!(
        source = %info.source,
        customers = info.customers,
        features = info.features,
        bytes = info.bytes,
        load_ms = info.load_ms,
        "feature snapshot loaded"
    );
}

fn columns_of(store: &FeatureStore) -> Arc<[Box<str>]> {
    store.columns().to_vec().into()
}

fn build_from_path(
    path: &Path,
    store: &FeatureStore,
    limits: &Limits,
) -> Result<Arc<ModelSet>, ModelError> {
    let model = model::load(path, store, limits)?;
    with_challenger(model, store, limits)
}

fn build_set(
    document: Vec<u8>,
    base_dir: Option<PathBuf>,
    source: String,
    store: &FeatureStore,
    limits: &Limits,
) -> Result<Arc<ModelSet>, ModelError> {
    let model = model::from_bytes(document, base_dir, source, store, limits)?;
    with_challenger(model, store, limits)
}

/// Loads the challenger a model declares, compiled against the same snapshot.
fn with_challenger(
    model: LoadedModel,
    store: &FeatureStore,
    limits: &Limits,
) -> Result<Arc<ModelSet>, ModelError> {
    let challenger = match &model.challenger {
        None => None,
        Some(spec) => {
            let c = model::load(&spec.path, store, limits)
                .map_err(|e| prefix_faults(e, "challenger"))?;
            if c.challenger.is_some() {
                return Err(ModelError::Invalid(vec![Fault {
                    path: "challenger.path".into(),
                    message: "a challenger cannot declare a challenger of its own".into(),
                }]));
            }
            Some(Challenger {
                model: Arc::new(c),
                share: spec.share,
                salt: spec.salt.clone(),
            })
        }
    };
    Ok(Arc::new(ModelSet {
        champion: Arc::new(model),
        challenger,
        columns: columns_of(store),
    }))
}

/// Recompiles a model set from its documents against another snapshot's columns.
fn rebuild(
    set: &ModelSet,
    store: &FeatureStore,
    limits: &Limits,
) -> Result<Arc<ModelSet>, ModelError> {
    let m = &set.champion;
    build_set(
        m.document.clone(),
        m.base_dir.clone(),
        m.source.clone(),
        store,
        limits,
    )
}

fn prefix_faults(e: ModelError, prefix: &str) -> ModelError {
    ModelError::Invalid(
        e.faults()
            .into_iter()
            .map(|f| Fault {
                path: if f.path.is_empty() {
                    prefix.to_owned()
                } else {
                    format!("{prefix}:{}", f.path)
                },
                message: f.message,
            })
            .collect(),
    )
}

/// Runs a few decisions on every placement so a new model's pages and branches are touched
/// before the first real request meets them.
fn warm(set: &ModelSet, store: &FeatureStore) {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let models = std::iter::once(&set.champion).chain(set.challenger.as_ref().map(|c| &c.model));
    for m in models {
        for ch in m.compiled.channels.iter() {
            for slot in ch.slots.iter() {
                for row in 0..store.len().min(8) {
                    let req = Request {
                        customer_id: store.id_at(row),
                        channel: &ch.name,
                        placement: &slot.placement,
                        ..Default::default()
                    };
                    let d =
                        engine::decide(&m.compiled, store, &req, &NoContacts, &Unbounded, now_ms);
                    std::hint::black_box(d.ranked.len());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignment_is_stable_uniform_and_monotonic_in_share() {
        let ids: Vec<String> = (0..20_000).map(|i| format!("C{i:07}")).collect();
        let a: Vec<f64> = ids.iter().map(|id| assignment("exp1", id)).collect();
        // Stable: same input, same output.
        assert_eq!(a[123], assignment("exp1", "C0000123"));
        // Uniform enough: a 10% share gets close to 10% of customers.
        let in10 = a.iter().filter(|&&x| x < 0.10).count() as f64 / a.len() as f64;
        assert!((in10 - 0.10).abs() < 0.01, "{in10}");
        // Raising the share only adds customers: everyone in at 10% is in at 20%.
        assert!(a.iter().filter(|&&x| x < 0.10).all(|&x| x < 0.20));
        // A new salt reshuffles.
        let moved = ids
            .iter()
            .zip(&a)
            .filter(|(id, &x)| (x < 0.5) != (assignment("exp2", id) < 0.5))
            .count();
        assert!(moved > 5_000, "{moved}");
    }
}
