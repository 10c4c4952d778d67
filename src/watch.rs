//! Watches the models folder and reloads the model when its files change.
//!
//! Events are debounced (200 ms of quiet) so a burst of writes gives one reload, and only
//! changes count (creates, writes, renames, removals): reading a file, as every load does, is
//! no reason to load again. The safe way to publish is to write a temporary file and rename it
//! over `model.json` (or a scorer file): the rename is atomic, so the watcher never reads half a
//! file. Files whose names start with `.` or end in `.tmp`, `~` or `.swp`, and feature
//! snapshots (`.csv`, `.nbf`, `.parquet`), are ignored. A change to `model.json` loads it; a
//! change to a file the serving models read (a scorer, a challenger) rebuilds them so they pick
//! the new file up (unless the document on disk is another one, refused while its files were
//! still arriving under the serving ones' names: that one is tried again), and other files
//! beside them are left alone; a change to a file the
//! document on disk names but the serving models do not read (the new scorer file a refused
//! document waited for) tries the document again. Subfolders are watched too (a scorer file
//! may lie in `trees/`). While no model serves, any change loads the folder (a scorer file may
//! complete a refused model). A model that fails to
//! parse or validate is refused, logged and counted by the registry; the one serving keeps
//! serving. With `--models x.json`, `x.json` is the document.
//!
//! A Kubernetes ConfigMap or Secret volume is published differently: the visible files are
//! symlinks into `..data`, itself a symlink to a hidden timestamped folder, and the kubelet
//! updates the volume by renaming a new `..data` over the old one. The visible files never
//! change themselves, so a swap of `..data` counts as a change of `model.json` (and of every
//! scorer file when `model.json` is unchanged).
//!
//! A models folder that is a symbolic link (`models -> releases/v7`) follows the link: the
//! folder holding it is watched too, for the link alone, and pointing it at another release
//! loads that one. A models folder that does not exist yet (a volume mounted later, a folder
//! removed to be copied again) is waited for: the nearest folder on its way that exists is watched alone,
//! not its whole tree, and the watch moves down to the models folder when it appears (and back
//! up when it goes), loading the model found there.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use notify_debouncer_full::notify::event::{ModifyKind, RenameMode};
use notify_debouncer_full::notify::{self, EventKind, RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{
    new_debouncer, DebounceEventResult, DebouncedEvent, Debouncer, RecommendedCache,
};

use crate::model::MODEL_FILE;
use crate::registry::{Change, Committed, Registry};

/// Quiet time before a burst of changes triggers a reload.
pub const DEBOUNCE: Duration = Duration::from_millis(200);

type Watcher = Debouncer<RecommendedWatcher, RecommendedCache>;

/// Keeps the watcher alive; dropping it stops watching.
pub struct ModelWatcher {
    _debouncer: Arc<Mutex<Watcher>>,
    arming: Arc<Mutex<Arming>>,
    /// The folder the model's files lie in.
    pub dir: PathBuf,
}

impl ModelWatcher {
    /// The folder watched while the models folder does not exist (the nearest one on its way
    /// that does), so a start-up log can say what it waits for; `None` once it is watched.
    pub fn waiting_in(&self) -> Option<PathBuf> {
        let arming = self.arming.lock().unwrap_or_else(|e| e.into_inner());
        arming
            .watched
            .as_ref()
            .map(|(w, _)| w.clone())
            .filter(|w| *w != arming.target)
    }
}

/// What is watched: the models folder with its subfolders when it exists, else the nearest
/// existing folder on its way, alone, to see it appear.
struct Arming {
    target: PathBuf,
    /// The folder watched, and which folder it was (device and inode): one put under its name
    /// within one debounce is another folder, watched anew (as is one made again after the
    /// event of the removal, whatever its inode).
    watched: Option<(PathBuf, Option<(u64, u64)>)>,
    /// When the models folder is a symbolic link (`models -> releases/v7`), the folder holding
    /// the link, watched alone: pointing the link elsewhere changes nothing in the folder it
    /// pointed to, only there.
    link_parent: Option<PathBuf>,
}

/// A folder's device and inode, which a folder moved under the same name does not share (one
/// made after a removal may: see [`Arming::forget_if_gone`]).
fn identity(folder: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(folder).ok().map(|m| (m.dev(), m.ino()))
}

impl Arming {
    /// Moves the watch to where it belongs after `events`, saying where it went. A folder may
    /// appear while the watch moves to its parent, so it moves until it settles (at most once
    /// per folder on the way, and once more).
    fn rearm(&mut self, watcher: &mut Watcher, events: &[DebouncedEvent]) -> notify::Result<Moved> {
        let was_there = self.watching_target();
        self.forget_if_gone(watcher, events);
        let mut moved = false;
        for _ in 0..=self.target.components().count() {
            if !self.step(watcher)? {
                break;
            }
            moved = true;
        }
        self.watch_link(watcher);
        Ok(match (moved, was_there, self.watching_target()) {
            (false, _, _) => Moved::Stayed,
            (true, false, true) => Moved::Arrived,
            (true, true, true) => Moved::Replaced,
            (true, true, false) => Moved::Left,
            (true, false, false) => Moved::Nearer,
        })
    }

    /// Moves the watch once; false when it is where it belongs already.
    fn step(&mut self, watcher: &mut Watcher) -> notify::Result<bool> {
        let next = nearest_folder(&self.target).map(|p| {
            let id = identity(&p);
            (p, id)
        });
        if next.is_some() && next == self.watched {
            return Ok(false);
        }
        if let Some((old, _)) = self.watched.take() {
            // A folder removed took its watch with it; unwatching it then fails, harmlessly.
            let _ = watcher.unwatch(&old);
        }
        let Some((next, id)) = next else {
            return Err(notify::Error::generic(&format!(
                "no folder on the way to {} exists",
                self.target.display()
            )));
        };
        // Recursive: a scorer file may lie in a subfolder (`trees/offer.json`).
        let mode = if next == self.target {
            RecursiveMode::Recursive
        } else {
            RecursiveMode::NonRecursive
        };
        watcher.watch(&next, mode)?;
        self.watched = Some((next, id));
        Ok(true)
    }

    /// Forgets the watch when the batch says the folder watched went (removed, or moved
    /// away): a folder made again under its name may even get the removed one's inode number
    /// back (ext4 hands it out again at once), so only the event tells it is another folder.
    fn forget_if_gone(&mut self, watcher: &mut Watcher, events: &[DebouncedEvent]) {
        let Some((watched, _)) = &self.watched else {
            return;
        };
        let went = |e: &&DebouncedEvent| {
            matches!(
                e.kind,
                EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(RenameMode::From))
            )
        };
        if events
            .iter()
            .filter(went)
            .any(|e| e.paths.iter().any(|p| p.ends_with(watched)))
        {
            // Its watch went with it; unwatching then fails, harmlessly.
            let _ = watcher.unwatch(watched);
            self.watched = None;
        }
    }

    /// Watches the folder holding the models folder's link while the link is watched through;
    /// lets go of it otherwise.
    fn watch_link(&mut self, watcher: &mut Watcher) {
        let wanted =
            (self.watching_target() && self.target.is_symlink()).then(|| link_parent(&self.target));
        if wanted == self.link_parent {
            return;
        }
        if let Some(old) = self.link_parent.take() {
            let _ = watcher.unwatch(&old);
        }
        if let Some(parent) = wanted {
            match watcher.watch(&parent, RecursiveMode::NonRecursive) {
                Ok(()) => self.link_parent = Some(parent),
                Err(e) => tracing::warn!(
                    path = %parent.display(),
                    error = %e,
                    "the models folder is a link, and the folder holding it cannot be watched: \
                     pointing the link elsewhere needs a SIGHUP"
                ),
            }
        }
    }

    fn watching_target(&self) -> bool {
        self.watched
            .as_ref()
            .is_some_and(|(w, _)| *w == self.target)
    }
}

/// Where a re-arming took the watch.
#[derive(Debug, PartialEq)]
enum Moved {
    Stayed,
    /// Between folders on the way to the models folder.
    Nearer,
    /// Onto the models folder, which appeared.
    Arrived,
    /// Onto the models folder made again under its name, within one batch of changes.
    Replaced,
    /// Up from it, as it went.
    Left,
}

/// The folder holding a link (`.` for a relative name alone).
fn link_parent(link: &Path) -> PathBuf {
    match link.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The folder itself if it exists, else the nearest of its ancestors that does (`.` for a
/// relative path's start).
fn nearest_folder(folder: &Path) -> Option<PathBuf> {
    folder
        .ancestors()
        .map(|a| {
            if a.as_os_str().is_empty() {
                Path::new(".")
            } else {
                a
            }
        })
        .find(|a| a.is_dir())
        .map(Path::to_path_buf)
}

/// The folder a model's files lie in and the name of its document: `model.json` in a folder,
/// or the file named (`--models x.json`). A path that does not exist is a folder to come,
/// unless its name ends in `.json`.
fn layout(models: &Path) -> (PathBuf, OsString) {
    match crate::model::models_folder(models) {
        (folder, false) => (
            folder,
            models
                .file_name()
                .map(ToOwned::to_owned)
                .unwrap_or_default(),
        ),
        (folder, true) => (folder, OsString::from(MODEL_FILE)),
    }
}

/// A file the watcher does not act on. `path` is relative to the watched folder where it
/// lies inside it: a hidden folder on the way (a projected volume's `..2026_12_05...`) hides
/// what is in it.
fn ignored(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let hidden_folder = path.parent().is_some_and(|p| {
        p.components().any(|c| {
            c.as_os_str()
                .to_str()
                .is_some_and(|c| c.starts_with('.') && c != "." && c != "..")
        })
    });
    hidden_folder
        || name.starts_with('.')
        || name.ends_with(".tmp")
        || name.ends_with('~')
        || name.ends_with(".swp")
        || name.ends_with(".csv")
        || name.ends_with(".nbf")
        || name.ends_with(".parquet")
}

/// The link a Kubernetes projected volume (ConfigMap, Secret) swaps atomically on update.
const PROJECTED_DATA: &str = "..data";

fn is_projection_swap(path: &Path) -> bool {
    path.file_name().is_some_and(|n| n == PROJECTED_DATA)
}

/// Whether a model document names the file at `rel` (a scorer's `path`, written as a JSON
/// string): a plain search, as the paths are plain relative ones.
fn names(document: &[u8], rel: &Path) -> bool {
    let Some(rel) = rel.to_str() else {
        return false;
    };
    let quoted = format!("\"{rel}\"");
    document
        .windows(quoted.len())
        .any(|w| w == quoted.as_bytes())
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
    let (dir, model_name) = layout(&models);
    let model_path = dir.join(&model_name);
    let folder = dir.clone();
    let arming = Arc::new(Mutex::new(Arming {
        target: dir.clone(),
        watched: None,
        link_parent: None,
    }));
    // Event paths are absolute; what lies beside a linked models folder is none of its business.
    let linked = std::path::absolute(&dir).unwrap_or_else(|_| dir.clone());
    let beside_link = move |p: &Path| p.parent() == linked.parent() && p != linked;
    let cell: Arc<OnceLock<Weak<Mutex<Watcher>>>> = Arc::new(OnceLock::new());
    let (arming_h, cell_h) = (arming.clone(), cell.clone());
    let handler = move |res: DebounceEventResult| match res {
        Ok(events) => {
            let Some(watcher) = cell_h.get().and_then(Weak::upgrade) else {
                return;
            };
            let mut arming = arming_h.lock().unwrap_or_else(|e| e.into_inner());
            let moved = {
                let mut watcher = watcher.lock().unwrap_or_else(|e| e.into_inner());
                arming.rearm(&mut watcher, &events)
            };
            match moved {
                // The models folder appeared: what it holds was written before its watch.
                Ok(m @ (Moved::Arrived | Moved::Replaced)) => {
                    if m == Moved::Replaced {
                        tracing::info!(
                            path = %folder.display(),
                            "the models folder was replaced (made again, or its link pointed elsewhere); watching the new one"
                        );
                    } else {
                        tracing::info!(path = %folder.display(), "watching the models folder");
                    }
                    if crate::model::model_file(&models).is_file() {
                        let _ = registry.commit(Change::Folder { force: false });
                    }
                    return;
                }
                Ok(Moved::Left) => tracing::warn!(
                    path = %folder.display(),
                    "the models folder was removed; the model serving keeps serving, and the \
                     folder is waited for"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "model folder watch error"),
            }
            // Waiting for the folder, only the document itself appearing in its place counts.
            if !arming.watching_target() {
                if crate::model::model_file(&models).is_file() {
                    let _ = registry.commit(Change::Folder { force: false });
                }
                return;
            }
            drop(arming);
            let paths = || {
                events
                    .iter()
                    .filter(|e| is_change(&e.kind))
                    .flat_map(|e| e.paths.iter().map(PathBuf::as_path))
                    .filter(|p| !beside_link(p))
            };
            let swapped = paths().any(is_projection_swap);
            let rel = |p: &Path| -> PathBuf {
                p.strip_prefix(&folder)
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|_| p.file_name().map(PathBuf::from).unwrap_or_default())
            };
            let changed: Vec<PathBuf> = paths().map(rel).filter(|p| !ignored(p)).collect();
            if changed.is_empty() && !swapped {
                return;
            }
            let is_model = |p: &PathBuf| p.as_os_str() == model_name;
            let model_json = changed.iter().any(is_model);
            let snapshot = registry.load();
            // While no model serves, a scorer file arriving may complete the one refused
            // before; with no document there at all there is nothing to load (and no refusal
            // to log, which in a folder holding the log would itself be a change).
            let Some(set) = snapshot.models.as_ref() else {
                if model_path.exists() {
                    let _ = registry.commit(Change::Folder { force: false });
                }
                return;
            };
            // Only a file the serving models read is a reason to rebuild them: a log, notes
            // or any other file beside them is not (nor a history entry).
            let read = |p: &PathBuf| set.reads(p);
            let other_files = swapped || changed.iter().any(|p| !is_model(p) && read(p));
            // A file the document on disk names that the serving models do not read: the
            // scorer file a refused document waited for (a retrain shipped under a new name,
            // or a broken file fixed), so the document is tried again with it.
            let awaited: Vec<&PathBuf> = changed
                .iter()
                .filter(|&p| !is_model(p) && !read(p))
                .collect();
            if !model_json && !awaited.is_empty() {
                let document = std::fs::read(&model_path).unwrap_or_default();
                if awaited.iter().any(|p| names(&document, p)) {
                    let _ = registry.commit(Change::Folder { force: true });
                    return;
                }
            }
            // The model if its document changed, else (or when only its document's bytes are
            // the same, as after an admin upload wrote it) the files it names. The registry
            // logs and counts the outcome.
            let unchanged = if model_json || swapped {
                matches!(
                    registry.commit(Change::Folder { force: false }),
                    Ok(Committed::Unchanged)
                )
            } else if other_files
                && std::fs::read(&model_path).is_ok_and(|d| d != set.champion.document)
            {
                // The document on disk is not the one serving (refused, its files arriving
                // under the serving ones' names): it is what was published, so it is tried
                // again; the serving document rebuilt with its files would be neither.
                let _ = registry.commit(Change::Folder { force: true });
                false
            } else {
                true
            };
            if unchanged && other_files {
                let _ = registry.commit(Change::RebuildActive);
            }
        }
        Err(errors) => {
            for e in errors {
                tracing::warn!(error = %e, "model folder watch error");
            }
        }
    };
    let mut debouncer = new_debouncer(DEBOUNCE, None, handler)?;
    arming
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .rearm(&mut debouncer, &[])?;
    let debouncer = Arc::new(Mutex::new(debouncer));
    let _ = cell.set(Arc::downgrade(&debouncer));
    Ok(ModelWatcher {
        _debouncer: debouncer,
        arming,
        dir,
    })
}
