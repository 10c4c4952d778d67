//! The files a model names, read before it is compiled so compiling touches no file: each
//! tree-ensemble scorer file (`offers[i].scorer.path`) and the challenger's model file.
//!
//! Every path goes through [`resolve_inside`] (a plain relative path inside the model's
//! folder, no `..`, no absolute path, no symlink out), and a scorer file over
//! [`Limits::max_scorer_bytes`] is refused unread. Failures are kept as the message the
//! compiler reports at that path, so a bad file is a fault like any other.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use simd_json::prelude::*;

use super::walk::Value;
use super::{resolve_inside, Limits, MAX_PATH_BYTES};

/// What a lookup answers for a path the reader did not meet (the reader and the compiler
/// disagree on where paths are: a defect, reported as a fault rather than a panic).
const NOT_READ: &str = "was not read before compiling";

/// The files a model document names, read (or refused) from its folder.
#[derive(Debug, Default)]
pub struct ModelFiles {
    /// Whether the model has a folder at all (an upload without one names no files).
    folder: bool,
    /// Scorer file contents by the path the model wrote.
    scorers: BTreeMap<String, Result<Arc<[u8]>, String>>,
    /// The challenger's model file resolved, by the path the model wrote.
    challenger: Option<(String, Result<PathBuf, String>)>,
}

impl ModelFiles {
    /// Reads what `doc` names from `folder`, taking a scorer file's bytes from `kept` when it
    /// is there (a model rebuilt from what it was first compiled from); with no folder,
    /// nothing is read.
    pub fn read(
        doc: &Value<'_>,
        folder: Option<&Path>,
        limits: &Limits,
        kept: &[(String, Arc<[u8]>)],
    ) -> Self {
        let mut files = ModelFiles {
            folder: folder.is_some(),
            ..ModelFiles::default()
        };
        let Some(folder) = folder else {
            return files;
        };
        if let Some(rel) = named_path(doc.get("challenger")) {
            let found = resolve_inside(folder, rel).and_then(|p| {
                // The champion is the folder's model file, wherever this document came from.
                let own = folder.join(super::MODEL_FILE).canonicalize().ok();
                match own {
                    Some(own) if own == p => Err(format!(
                        "`{rel}` is the folder's champion model file ({}): a challenger is \
                         another model file beside it",
                        super::MODEL_FILE
                    )),
                    _ => Ok(p),
                }
            });
            files.challenger = Some((rel.to_owned(), found));
        }
        let offers = doc.get("offers").and_then(|o| o.as_array());
        for offer in offers
            .filter(|o| o.len() <= limits.max_offers)
            .into_iter()
            .flatten()
        {
            let scorer = offer.get("scorer");
            let is_trees = scorer
                .and_then(|s| s.get("kind"))
                .and_then(|k| k.as_str())
                .is_some_and(|k| k == "xgboost" || k == "lightgbm");
            if let Some(rel) = named_path(scorer).filter(|_| is_trees) {
                if !files.scorers.contains_key(rel) {
                    let read = match kept.iter().find(|(k, _)| k == rel) {
                        Some((_, bytes)) => Ok(bytes.clone()),
                        None => read_scorer(folder, rel, limits.max_scorer_bytes).map(Arc::from),
                    };
                    files.scorers.insert(rel.to_owned(), read);
                }
            }
        }
        files
    }

    /// The scorer files' bytes, in path order (what a model's checksum covers beside its
    /// document).
    pub fn scorer_bytes(&self) -> impl Iterator<Item = &[u8]> {
        self.scorers.values().filter_map(|r| r.as_deref().ok())
    }

    /// The scorer files read, by the path the model wrote: what a rollback writes back.
    pub fn scorer_files(&self) -> Vec<(String, Arc<[u8]>)> {
        self.scorers
            .iter()
            .filter_map(|(rel, r)| Some((rel.clone(), r.as_ref().ok()?.clone())))
            .collect()
    }

    /// The paths the document names (scorer files, the challenger's file), as written.
    pub fn named(&self) -> Vec<String> {
        let challenger = self.challenger.iter().map(|(rel, _)| rel.clone());
        self.scorers.keys().cloned().chain(challenger).collect()
    }

    /// Whether the model has a folder its paths resolve against.
    pub fn has_folder(&self) -> bool {
        self.folder
    }

    /// The challenger's model file, or why it is refused.
    pub fn challenger(&self, rel: &str) -> Result<&Path, String> {
        match &self.challenger {
            Some((r, found)) if r == rel => found.as_deref().map_err(Clone::clone),
            _ => Err(format!("`{rel}` {NOT_READ}")),
        }
    }

    /// A scorer file's bytes, or why it is refused.
    pub fn scorer(&self, rel: &str) -> Result<&[u8], String> {
        match self.scorers.get(rel) {
            Some(found) => found.as_deref().map_err(Clone::clone),
            None => Err(format!("`{rel}` {NOT_READ}")),
        }
    }
}

/// The `path` field of an object, when it is a string the compiler would look up.
fn named_path<'v>(v: Option<&'v Value<'_>>) -> Option<&'v str> {
    v?.get("path")?
        .as_str()
        .filter(|p| !p.is_empty() && p.len() <= MAX_PATH_BYTES)
}

/// Reads a scorer file inside `folder`, refusing one larger than `max` bytes.
fn read_scorer(folder: &Path, rel: &str, max: u64) -> Result<Vec<u8>, String> {
    let file = resolve_inside(folder, rel)?;
    let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    if size > max {
        return Err(format!("`{rel}` is {size} bytes, over the limit of {max}"));
    }
    crate::files::read_regular(&file, max)
        .map_err(|e| format!("`{rel}` in {}: {e}", folder.display()))
}
