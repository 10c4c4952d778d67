//! Watches the models folder and reloads the model when its files change.
//!
//! Events are debounced (200 ms of quiet) so a burst of writes gives one reload. The safe way
//! to publish is to write a temporary file and rename it over `model.json` (or a scorer file):
//! the rename is atomic, so the watcher never reads half a file. Files whose names start with
//! `.` or end in `.tmp`, `~` or `.swp`, and feature snapshots (`.csv`, `.nbf`), are ignored.
//! A model that fails to parse or validate is refused, logged and counted; the one serving
//! keeps serving.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify_debouncer_mini::notify::{self, RecommendedWatcher, RecursiveMode};
use notify_debouncer_mini::{new_debouncer, DebounceEventResult, Debouncer};

use crate::model::MODEL_FILE;
use crate::registry::Registry;

/// Quiet time before a burst of changes triggers a reload.
pub const DEBOUNCE: Duration = Duration::from_millis(200);

/// Keeps the watcher alive; dropping it stops watching.
pub struct ModelWatcher {
    _debouncer: Debouncer<RecommendedWatcher>,
    /// The folder being watched.
    pub dir: PathBuf,
}

fn ignored(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.starts_with('.')
        || name.ends_with(".tmp")
        || name.ends_with('~')
        || name.ends_with(".swp")
        || name.ends_with(".csv")
        || name.ends_with(".nbf")
}

/// Starts watching the registry's models folder.
pub fn watch_models(registry: Arc<Registry>) -> Result<ModelWatcher, notify::Error> {
    let models = registry
        .config()
        .models_path
        .clone()
        .ok_or_else(|| notify::Error::generic("no models path configured"))?;
    let dir = if models.is_dir() {
        models
    } else {
        models
            .parent()
            .map(Path::to_owned)
            .unwrap_or_else(|| PathBuf::from("."))
    };
    let mut debouncer = new_debouncer(DEBOUNCE, move |res: DebounceEventResult| match res {
        Ok(events) => {
            let relevant: Vec<&Path> = events
                .iter()
                .map(|e| e.path.as_path())
                .filter(|p| !ignored(p))
                .collect();
            if relevant.is_empty() {
                return;
            }
            // Only model.json changed: an identical document is left alone. Any other file
            // (a scorer, a challenger) forces a rebuild.
            let force = relevant
                .iter()
                .any(|p| p.file_name().is_some_and(|n| n != MODEL_FILE));
            match registry.reload_models(force) {
                Ok(Some(r)) => {
                    tracing::info!(name = %r.name, version = %r.version, source = %r.source, "model activated from folder")
                }
                Ok(None) => tracing::debug!("model folder changed; model.json unchanged"),
                Err(e) => {
                    for f in e.faults() {
                        tracing::warn!(source = "folder", fault = %f, "load refused; the serving model is unchanged");
                    }
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "model folder watch error"),
    })?;
    debouncer
        .watcher()
        .watch(&dir, RecursiveMode::NonRecursive)?;
    Ok(ModelWatcher {
        _debouncer: debouncer,
        dir,
    })
}
