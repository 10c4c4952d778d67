//! Watches the models folder and reloads the model when its files change.
//!
//! Events are debounced (200 ms of quiet) so a burst of writes gives one reload, and only
//! changes count (creates, writes, renames, removals): reading a file, as every load does, is
//! no reason to load again. The safe way to publish is to write a temporary file and rename it
//! over `model.json` (or a scorer file): the rename is atomic, so the watcher never reads half a
//! file. Files whose names start with `.` or end in `.tmp`, `~` or `.swp`, and feature snapshots
//! (`.csv`, `.nbf`, `.parquet`), are ignored. A change to `model.json` loads it; a change to any other file
//! (a scorer, a challenger) rebuilds the active model so it picks the new file up. A model that
//! fails to parse or validate is refused, logged and counted; the one serving keeps serving.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify_debouncer_full::notify::{self, EventKind, RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{new_debouncer, DebounceEventResult, Debouncer, RecommendedCache};

use crate::model::MODEL_FILE;
use crate::registry::{ModelRecord, Registry, RegistryError};

/// Quiet time before a burst of changes triggers a reload.
pub const DEBOUNCE: Duration = Duration::from_millis(200);

/// Keeps the watcher alive; dropping it stops watching.
pub struct ModelWatcher {
    _debouncer: Debouncer<RecommendedWatcher, RecommendedCache>,
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
        || name.ends_with(".parquet")
}

fn is_change(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_)
    )
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
    let handler = move |res: DebounceEventResult| match res {
        Ok(events) => {
            let changed: Vec<&Path> = events
                .iter()
                .filter(|e| is_change(&e.kind))
                .flat_map(|e| e.paths.iter().map(PathBuf::as_path))
                .filter(|p| !ignored(p))
                .collect();
            if changed.is_empty() {
                return;
            }
            let model_json = changed
                .iter()
                .any(|p| p.file_name().is_some_and(|n| n == MODEL_FILE));
            let result = if model_json {
                registry.reload_models(false)
            } else {
                registry.rebuild_active().map(Some)
            };
            report(result);
        }
        Err(errors) => {
            for e in errors {
                tracing::warn!(error = %e, "model folder watch error");
            }
        }
    };
    let mut debouncer = new_debouncer(DEBOUNCE, None, handler)?;
    debouncer.watch(&dir, RecursiveMode::NonRecursive)?;
    Ok(ModelWatcher {
        _debouncer: debouncer,
        dir,
    })
}

fn report(result: Result<Option<ModelRecord>, RegistryError>) {
    match result {
        Ok(Some(r)) => tracing::info!(
            name = %r.name,
            version = %r.version,
            source = %r.source,
            "model activated from the folder"
        ),
        Ok(None) => tracing::debug!("model folder changed; the model is unchanged"),
        Err(e) => {
            for f in e.faults() {
                tracing::warn!(source = "folder", fault = %f, "load refused; the serving model is unchanged");
            }
        }
    }
}
