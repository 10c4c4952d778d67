//! What the registry reports: the model history records the admin API shows, the feature
//! snapshot figures, and the load counters exported to Prometheus.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Instant, SystemTime};

use super::set::ModelSet;
use crate::features::FeatureStore;
use crate::metrics::prom::{Collect, Exposition, Kind};

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
    /// The challenger it declares.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub challenger: Option<ChallengerRecord>,
}

/// The challenger part of a history entry.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ChallengerRecord {
    /// Model name.
    pub name: String,
    /// Model version.
    pub version: String,
    /// Checksum of the challenger's document.
    pub checksum: String,
    /// Share of customers it serves.
    pub share: f64,
    /// Experiment salt.
    pub salt: String,
}

impl ModelRecord {
    pub(super) fn of(set: &ModelSet, at: SystemTime) -> Self {
        let m = &set.champion;
        ModelRecord {
            name: m.compiled.name.to_string(),
            version: m.compiled.version.to_string(),
            checksum: m.checksum.clone(),
            loaded_at: humantime::format_rfc3339_millis(at).to_string(),
            source: m.source.clone(),
            challenger: set.challenger.as_ref().map(|c| ChallengerRecord {
                name: c.model.compiled.name.to_string(),
                version: c.model.compiled.version.to_string(),
                checksum: c.model.checksum.clone(),
                share: c.share,
                salt: c.salt.clone(),
            }),
        }
    }
}

/// What a feature load reports.
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
    pub(super) fn of(store: &FeatureStore, started: Instant) -> Self {
        FeatureInfo {
            source: store.source().to_owned(),
            customers: store.len(),
            features: store.columns().len(),
            bytes: store.bytes_held(),
            load_ms: started.elapsed().as_millis() as u64,
        }
    }
}

/// Which of the two load counters a change or refusal belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// `nextbest_model_loads_total`.
    Model,
    /// `nextbest_feature_loads_total`.
    Features,
}

/// Load outcomes, exported as `nextbest_model_loads_total` and `nextbest_feature_loads_total`.
#[derive(Default)]
pub struct LoadCounters {
    counts: [[AtomicU64; 2]; 2],
}

impl LoadCounters {
    pub(super) fn count(&self, part: Part, accepted: bool) {
        self.counts[part as usize][usize::from(!accepted)].fetch_add(1, Relaxed);
    }

    fn get(&self, part: Part, accepted: bool) -> u64 {
        self.counts[part as usize][usize::from(!accepted)].load(Relaxed)
    }

    /// Accepted loads so far of one part.
    pub fn accepted(&self, part: Part) -> u64 {
        self.get(part, true)
    }

    /// Refused loads so far of one part.
    pub fn rejected(&self, part: Part) -> u64 {
        self.get(part, false)
    }
}

impl Collect for LoadCounters {
    fn collect(&self, out: &mut Exposition) {
        for (part, name, help) in [
            (
                Part::Model,
                "nextbest_model_loads_total",
                "Model loads, by result.",
            ),
            (
                Part::Features,
                "nextbest_feature_loads_total",
                "Feature snapshot loads, by result.",
            ),
        ] {
            out.family(name, Kind::Counter, help)
                .sample(&[("result", "accepted")], self.accepted(part))
                .sample(&[("result", "rejected")], self.rejected(part));
        }
    }
}
