//! The changes the registry applies, and who makes each, for history and logs.

use std::path::PathBuf;
use std::sync::Arc;

use super::RegistryConfig;
use crate::features::FeatureStore;
use crate::model::{self, LoadedModel};

/// A change to the serving state, from whichever source.
pub enum Change {
    /// The feature snapshot and the model from their configured paths (start-up, SIGHUP).
    FromDisk,
    /// The models folder's `model.json`; unless `force`, a document identical to the active
    /// one, or to the one last refused, changes nothing (the watcher sees unrelated events).
    Folder {
        /// Reinstall even an unchanged document.
        force: bool,
    },
    /// A model document (admin upload).
    Document {
        /// The JSON document.
        document: Vec<u8>,
        /// The folder its scorer and challenger files resolve against.
        base_dir: Option<PathBuf>,
        /// Where it came from, for history and logs.
        source: String,
    },
    /// The active model again, re-reading the files it names (a scorer file changed).
    RebuildActive,
    /// A new feature snapshot (the configured one when `None`), the active models recompiled
    /// against its columns.
    Features {
        /// The snapshot to load.
        path: Option<PathBuf>,
    },
    /// Back to the previous model version.
    Rollback,
    /// An already-built feature store and model (start-up, tests).
    Install {
        /// The feature snapshot.
        store: Arc<FeatureStore>,
        /// The model.
        model: Box<LoadedModel>,
    },
}

impl Change {
    /// Who makes the change, for history and logs; a change read from the models folder names
    /// the file (`folder models/model.json`), a feature load the snapshot it reads.
    pub(super) fn source(&self, config: &RegistryConfig) -> String {
        let file = || {
            config
                .models_path
                .as_deref()
                .map_or_else(String::new, |p| model::model_file(p).display().to_string())
        };
        match self {
            Change::FromDisk => format!("disk {}", file()),
            Change::Folder { .. } => format!("folder {}", file()),
            Change::RebuildActive => format!("folder {} (scorer files)", file()),
            Change::Document { source, .. } => source.clone(),
            Change::Features { path } => {
                match path.as_deref().or(config.features_path.as_deref()) {
                    Some(p) => features_source(p),
                    None => "features".into(),
                }
            }
            Change::Rollback => "rollback".into(),
            Change::Install { .. } => "install".into(),
        }
    }
}

/// Who a snapshot's load is journalled and logged as: its file.
pub(super) fn features_source(path: &std::path::Path) -> String {
    format!("features {}", path.display())
}
