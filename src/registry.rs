//! The serving state: one immutable [`Snapshot`] (model + features) behind `arc-swap`.
//!
//! Readers call [`Registry::load`] once per request and keep that snapshot to the end, so a
//! request never sees half of a model. Writers build a whole new snapshot off the request path
//! and publish it with one store; the old one is freed when its last reader drops it. Writers
//! serialise on a mutex that readers never touch.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;

use crate::features::FeatureStore;
use crate::model::LoadedModel;

/// What every request reads: the active model and feature snapshot, swapped together.
#[derive(Default)]
pub struct Snapshot {
    /// The active (champion) model, compiled against `features`.
    pub model: Option<Arc<LoadedModel>>,
    /// The active feature snapshot.
    pub features: Option<Arc<FeatureStore>>,
}

impl Snapshot {
    /// Ready to personalise: a model and a feature snapshot are loaded.
    pub fn is_ready(&self) -> bool {
        self.model.is_some() && self.features.is_some()
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
}

impl ModelRecord {
    fn of(m: &LoadedModel, at: SystemTime) -> Self {
        ModelRecord {
            name: m.compiled.name.to_string(),
            version: m.compiled.version.to_string(),
            checksum: m.checksum.clone(),
            loaded_at: humantime::format_rfc3339_seconds(at).to_string(),
            source: m.source.clone(),
        }
    }
}

/// Owns the current snapshot and the model history.
pub struct Registry {
    current: ArcSwap<Snapshot>,
    history: Mutex<Vec<ModelRecord>>,
    history_len: usize,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new(5)
    }
}

impl Registry {
    /// An empty registry (nothing loaded: every decision gets `no_model` fallback).
    pub fn new(history_len: usize) -> Self {
        Registry {
            current: ArcSwap::from_pointee(Snapshot::default()),
            history: Mutex::new(Vec::new()),
            history_len: history_len.max(1),
        }
    }

    /// The snapshot a request works on, from start to end.
    #[inline]
    pub fn load(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.current.load()
    }

    /// Publishes a new feature snapshot and model together, in one store.
    pub fn install(&self, features: Arc<FeatureStore>, model: LoadedModel) {
        let mut history = self.history.lock().unwrap_or_else(|p| p.into_inner());
        history.insert(0, ModelRecord::of(&model, SystemTime::now()));
        history.truncate(self.history_len);
        self.current.store(Arc::new(Snapshot {
            model: Some(Arc::new(model)),
            features: Some(features),
        }));
    }

    /// The model history, newest first.
    pub fn history(&self) -> Vec<ModelRecord> {
        self.history
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
