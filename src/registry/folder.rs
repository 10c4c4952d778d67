//! The models folder on disk: where a change's document and scorer files are written back, and
//! where uploaded files resolve.

use std::path::{Path, PathBuf};

use super::{ModelSet, Registry, RegistryError};
use crate::model;

impl Registry {
    /// Writes an admin change's document over the folder's `model.json` (when a models path
    /// is configured), atomically and durably, after any scorer file it was compiled from that
    /// the folder no longer holds (a rollback past a retrained tree file): a SIGHUP or a
    /// restart then loads what serves.
    pub(super) fn persist(&self, set: &ModelSet) -> Result<(), RegistryError> {
        let Some(path) = &self.config.models_path else {
            return Ok(());
        };
        let file = model::model_file(path);
        let champion = &set.champion;
        for (rel, bytes) in &champion.scorer_files {
            let Some(at) = champion.base_dir.as_ref().map(|d| d.join(rel)) else {
                continue;
            };
            if std::fs::read(&at).ok().as_deref() != Some(&**bytes) {
                crate::durable::write_atomic(&at, bytes, true)
                    .map_err(|e| persist_error(&at, e))?;
                tracing::info!(path = %at.display(), model = %champion.compiled.name, version = %champion.compiled.version, "scorer file written back: the folder holds what serves");
            }
        }
        crate::durable::write_atomic(&file, &champion.document, true)
            .map_err(|e| persist_error(&file, e))
    }

    /// The folder an uploaded model's scorer and challenger files resolve against.
    pub fn models_folder(&self) -> Option<PathBuf> {
        let p = self.config.models_path.as_ref()?;
        if p.is_dir() {
            Some(p.clone())
        } else {
            Some(model::folder_of(p))
        }
    }

    /// When the models folder's `model.json` was last written, if there is one.
    pub fn model_file_modified(&self) -> Option<std::time::SystemTime> {
        let path = self.config.models_path.as_ref()?;
        std::fs::metadata(model::model_file(path))
            .and_then(|m| m.modified())
            .ok()
    }

    pub(super) fn models_path(&self) -> Result<PathBuf, RegistryError> {
        self.config
            .models_path
            .clone()
            .ok_or(RegistryError::NoPath("models"))
    }
}

/// A write into the models folder refused: a read-only folder (a ConfigMap) says so.
fn persist_error(file: &Path, source: std::io::Error) -> RegistryError {
    match source {
        source if crate::files::read_only(&source) => RegistryError::ReadOnly {
            path: file
                .parent()
                .map_or_else(|| file.to_owned(), Path::to_owned),
            source,
        },
        _ => RegistryError::Persist {
            path: file.to_owned(),
            source,
        },
    }
}
