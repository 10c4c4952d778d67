//! What the registry reports: the model history records the admin API shows, the feature
//! snapshot figures and version, what it serves (for the fleet's comparison and `/metrics`),
//! and the load counters exported to Prometheus.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::set::ModelSet;
use crate::features::{FeatureError, FeatureStore, NullWords, SnapshotStore};
use crate::metrics::prom::{Collect, Exposition, Kind};

/// One entry of the model history shown by the admin API: one change, as the audit trail
/// keeps it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ModelRecord {
    /// Model name.
    pub name: String,
    /// Model version.
    pub version: String,
    /// Checksum of the document.
    pub checksum: String,
    /// When it was activated (RFC 3339).
    pub loaded_at: String,
    /// Who made the change: `disk <file>` (start, SIGHUP), `folder <file>` (the watcher),
    /// `admin`, `rollback`, `fleet: <change> on <replica>` (another replica's admin change).
    pub source: String,
    /// The challenger it declares.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub challenger: Option<ChallengerRecord>,
    /// What compiled but is likely a mistake (a rule value the snapshot never holds, a policy
    /// category no offer has), with its path: shown where the model was loaded, not only logged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<crate::model::Fault>,
}

/// The challenger part of a history entry.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
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
    pub(super) fn of(set: &ModelSet, at: SystemTime, source: &str) -> Self {
        let m = &set.champion;
        ModelRecord {
            name: m.compiled.name.to_string(),
            version: m.compiled.version.to_string(),
            checksum: m.checksum.clone(),
            loaded_at: humantime::format_rfc3339_millis(at).to_string(),
            source: source.to_owned(),
            challenger: set.challenger.as_ref().map(|c| ChallengerRecord {
                name: c.model.compiled.name.to_string(),
                version: c.model.compiled.version.to_string(),
                checksum: c.model.checksum.clone(),
                share: c.share,
                salt: c.salt.clone(),
            }),
            warnings: set.warnings(),
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
    /// Bytes of the snapshot file mapped from a store (shared with the node's other
    /// replicas), beside the heap; 0 for a snapshot read into memory.
    pub mapped_bytes: usize,
    /// Load and swap time.
    pub load_ms: u64,
    /// Columns the snapshot left out for their type or a word turned to text, then the serving model's warnings
    /// against it (a rule value it no longer holds), each with its path; absent when none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<crate::model::Fault>,
}

impl FeatureInfo {
    pub(super) fn of(store: &FeatureStore, started: Instant) -> Self {
        FeatureInfo {
            source: store.source().to_owned(),
            customers: store.len(),
            features: store.columns().len(),
            bytes: store.bytes_held(),
            mapped_bytes: store.mapped_bytes(),
            load_ms: started.elapsed().as_millis() as u64,
            warnings: column_faults(store),
        }
    }
}

/// The snapshot's warnings about its columns, as faults with their paths (`columns.<name>`).
pub(super) fn column_faults(store: &FeatureStore) -> Vec<crate::model::Fault> {
    store
        .column_warnings()
        .into_iter()
        .map(|(path, message)| crate::model::Fault { path, message })
        .collect()
}

/// Which feature snapshot serves: the same file on every replica has the same version, so
/// replicas compare data, not paths.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FeatureVersion {
    /// Where it was loaded from.
    pub source: String,
    /// CRC-32 of the file's bytes (`crc32:` and 8 hex digits; `unreadable` if it could not be
    /// read again).
    pub checksum: String,
    /// When the file was last modified (Unix ms): how old its data is.
    pub modified_ms: Option<i64>,
    /// When it was swapped in (Unix ms).
    pub loaded_ms: i64,
}

fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl FeatureVersion {
    /// The version of the snapshot file at `path`: a mapped store's checksum was computed as it
    /// was opened; otherwise the file is read through once (off the request path, beside its
    /// load).
    pub(super) fn of(path: &Path, store: &FeatureStore, loaded: SystemTime) -> Self {
        let crc = match store.file_crc() {
            Some(c) => Ok(c),
            None => crate::features::snapshots::content_crc(path),
        };
        let checksum = crc.map_or_else(|_| "unreadable".to_owned(), |c| format!("crc32:{c:08x}"));
        Self::with_checksum(path, checksum, loaded)
    }

    fn with_checksum(path: &Path, checksum: String, loaded: SystemTime) -> Self {
        FeatureVersion {
            source: path.display().to_string(),
            checksum,
            modified_ms: std::fs::metadata(path)
                .and_then(|m| m.modified())
                .ok()
                .map(unix_ms),
            loaded_ms: unix_ms(loaded),
        }
    }
}

/// What a replica serves now: the model (champion and challenger) and the feature snapshot.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Serving {
    /// The champion's name.
    pub model: Option<String>,
    /// The champion's version.
    pub version: Option<String>,
    /// The champion's checksum, and the challenger's after a `+` when one serves: equal on two
    /// replicas when they serve the same models.
    pub checksum: Option<String>,
    /// The feature snapshot.
    pub snapshot: Option<FeatureVersion>,
}

impl Serving {
    /// Renders what serves as Prometheus families, with the snapshot's age at `now_ms`.
    pub fn collect_at(&self, out: &mut Exposition, now_ms: i64) {
        out.family(
            "nextbest_build_info",
            Kind::Gauge,
            "Always 1; the version label names the nextbest build.",
        )
        .sample(&[("version", env!("CARGO_PKG_VERSION"))], 1);
        if let (Some(name), Some(version), Some(checksum)) =
            (&self.model, &self.version, &self.checksum)
        {
            out.family(
                "nextbest_model_info",
                Kind::Gauge,
                "Always 1; the labels name the model serving (checksum: champion+challenger).",
            )
            .sample(
                &[("name", name), ("version", version), ("checksum", checksum)],
                1,
            );
        }
        let Some(s) = &self.snapshot else { return };
        out.family(
            "nextbest_feature_snapshot_info",
            Kind::Gauge,
            "Always 1; the labels name the feature snapshot serving.",
        )
        .sample(&[("source", &s.source), ("checksum", &s.checksum)], 1);
        if let Some(m) = s.modified_ms {
            out.family(
                "nextbest_feature_snapshot_age_seconds",
                Kind::Gauge,
                "Time since the serving feature snapshot's file was written.",
            )
            .sample(&[], (now_ms - m).max(0) as f64 / 1e3);
        }
        out.family(
            "nextbest_feature_snapshot_loaded_timestamp_seconds",
            Kind::Gauge,
            "When the serving feature snapshot was swapped in (Unix seconds).",
        )
        .sample(&[], s.loaded_ms as f64 / 1e3);
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

/// Reads of a snapshot file that keeps changing while it is read, before it is refused.
const READS_OF_A_CHANGING_FILE: usize = 3;

/// Why a snapshot whose file changed while it was read is refused.
pub const CHANGED_WHILE_READ: &str = "the file changed while it was read (a writer still at \
    work, or new files renamed over it), three times: the snapshot serving is unchanged; load it \
    again once the new file is whole (write it beside its place, then rename it over)";

/// A snapshot and its version, read from one state of the file: one written or replaced while
/// it was read is read again (a new file renamed over it is then read whole), and refused after
/// three tries: its checksum would name the new file while the values are the old one's, or a
/// mix of both. A mapped store's entry was copied and checked whole, its version with it.
pub(super) fn read_snapshot(
    path: &Path,
    store: Option<&SnapshotStore>,
    nulls: &NullWords,
) -> Result<(FeatureStore, Option<FeatureVersion>), FeatureError> {
    for _ in 0..READS_OF_A_CHANGING_FILE {
        let (read, unchanged) = crate::files::read_unchanged(path, || {
            let opened = FeatureStore::open_with(path, store, nulls)?.with_customers(path)?;
            let version = FeatureVersion::of(path, &opened, crate::contact::Clock::system().now());
            Ok::<_, FeatureError>((opened, Some(version)))
        });
        let mapped = matches!(&read, Ok((s, _)) if s.file_crc().is_some());
        if unchanged || mapped {
            return read;
        }
        tracing::info!(path = %path.display(), "the snapshot file changed while it was read: reading it again");
    }
    Err(FeatureError::Format {
        path: path.to_owned(),
        detail: CHANGED_WHILE_READ.into(),
    })
}
