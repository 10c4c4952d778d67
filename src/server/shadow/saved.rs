//! The shadow's figures beside its document, so a restart (a rolling deploy, a `kill -9`)
//! goes on counting where it stopped instead of from zero.
//!
//! `<data>/shadow.figures` holds the counters, the top places and the decisions kept for the
//! estimate with the conversions joined to them, under the candidate's checksum and shares:
//! figures are restored only for the candidate that made them. A thread writes it atomically
//! every [`INTERVAL`] while the figures change, and once more at shutdown; putting or deleting
//! a candidate removes it first. A crash loses at most the decisions of the last interval; the
//! conversions of that interval are not lost, since the shadow is subscribed to the events
//! before the log is replayed at start and joining a conversion twice counts it once. A file
//! that does not parse is set aside (`shadow.figures.bad`) and the figures start from zero.
//! Nothing here runs on the decision path.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::outcomes::Outcomes;
use super::{Candidate, Figures, Shadow};

/// The file's name in the data folder.
pub const FILE: &str = "shadow.figures";

/// How often the figures are saved while they change: the file holds up to
/// [`super::outcomes::KEPT`] decisions (a few MB), so less often than the funnel's counts.
pub const INTERVAL: Duration = Duration::from_secs(30);

const FORMAT: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Saved {
    format: u32,
    /// Whose figures: the candidate's checksum and shares.
    checksum: String,
    share: f64,
    estimate_share: f64,
    sampled: u64,
    decisions: u64,
    agreed: u64,
    skipped_busy: u64,
    skipped_snapshot: u64,
    not_reproduced: u64,
    top: Vec<(Box<str>, [u64; 2])>,
    outcomes: Outcomes,
}

impl Figures {
    /// A number that grows whenever a figure changes: what a save compares with the last.
    fn generation(&self) -> u64 {
        [
            &self.sampled,
            &self.decisions,
            &self.skipped_busy,
            &self.skipped_snapshot,
            &self.not_reproduced,
        ]
        .iter()
        .map(|n| n.load(Relaxed))
        .sum::<u64>()
            + self
                .outcomes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .joined()
    }
}

/// The candidate's figures as the file holds them; the locks are held only to copy, the kept
/// decisions' a chunk at a time.
fn snapshot(c: &Candidate) -> Saved {
    let f = &c.figures;
    let top = f.top.lock().unwrap_or_else(|p| p.into_inner());
    let top = top.iter().map(|(k, v)| (k.clone(), *v)).collect();
    let outcomes = Outcomes::copy(&f.outcomes);
    Saved {
        format: FORMAT,
        checksum: c.model.checksum.clone(),
        share: c.share,
        estimate_share: c.estimate_share,
        sampled: f.sampled.load(Relaxed),
        decisions: f.decisions.load(Relaxed),
        agreed: f.agreed.load(Relaxed),
        skipped_busy: f.skipped_busy.load(Relaxed),
        skipped_snapshot: f.skipped_snapshot.load(Relaxed),
        not_reproduced: f.not_reproduced.load(Relaxed),
        top,
        outcomes,
    }
}

/// Writes the candidate's figures atomically into `path`.
fn save(path: &Path, c: &Candidate) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(&snapshot(c)).map_err(std::io::Error::other)?;
    crate::durable::write_atomic(path, &bytes, true)
}

/// The figures saved in `path` for this candidate; `None` without a file or when the file
/// holds another candidate's. A file that does not parse is set aside and logged.
pub(super) fn restore(path: &Path, c: &Candidate) -> Option<Arc<Figures>> {
    let bytes = std::fs::read(path).ok()?;
    let saved = match serde_json::from_slice::<Saved>(&bytes) {
        Ok(s) if s.format == FORMAT => s,
        Ok(s) => return set_aside(path, &format!("unknown format {}", s.format)),
        Err(e) => return set_aside(path, &e.to_string()),
    };
    if saved.checksum != c.model.checksum
        || saved.share != c.share
        || saved.estimate_share != c.estimate_share
    {
        tracing::info!(path = %path.display(), "the saved shadow figures are another candidate's; counting from zero");
        return None;
    }
    let mut outcomes = saved.outcomes;
    outcomes.reindex();
    tracing::info!(path = %path.display(), decisions = saved.decisions, kept = outcomes.kept(), "shadow figures restored");
    Some(Arc::new(Figures {
        sampled: AtomicU64::new(saved.sampled),
        decisions: AtomicU64::new(saved.decisions),
        agreed: AtomicU64::new(saved.agreed),
        skipped_busy: AtomicU64::new(saved.skipped_busy),
        skipped_snapshot: AtomicU64::new(saved.skipped_snapshot),
        not_reproduced: AtomicU64::new(saved.not_reproduced),
        top: Mutex::new(saved.top.into_iter().collect::<HashMap<_, _>>()),
        outcomes: Mutex::new(outcomes),
    }))
}

fn set_aside(path: &Path, why: &str) -> Option<Arc<Figures>> {
    let aside = path.with_extension("figures.bad");
    let _ = std::fs::rename(path, &aside);
    tracing::error!(path = %path.display(), error = %why, set_aside = %aside.display(),
        "saved shadow figures unreadable; counting from zero");
    None
}

/// The thread that saves the shadow's figures every [`INTERVAL`] while they change, and once
/// more when stopped.
pub struct Saver(crate::durable::Periodic);

impl Saver {
    /// Starts saving the figures of `shadow`'s candidate (held weakly) beside its document;
    /// a shadow kept in memory only has nothing to save, and no thread is started.
    pub fn start(shadow: Weak<Shadow>, interval: Duration) -> std::io::Result<Self> {
        let Some(path) = shadow.upgrade().and_then(|s| s.figures_file()) else {
            return Ok(Saver(crate::durable::Periodic::none()));
        };
        // The candidate (by address: a put makes new figures) and its figures' generation at
        // the last save.
        let mut last: Option<(usize, u64)> = None;
        let save = move || {
            let s = shadow.upgrade()?;
            let _saving = s.saving.lock().unwrap_or_else(|p| p.into_inner());
            let Some(c) = s.slot.load_full() else {
                return Some(Ok(()));
            };
            let now = (Arc::as_ptr(&c.figures) as usize, c.figures.generation());
            if last == Some(now) {
                return Some(Ok(()));
            }
            let saved = save(&path, &c).map_err(|e| format!("{}: {e}", path.display()));
            if saved.is_ok() {
                last = Some(now);
            }
            Some(saved)
        };
        crate::durable::Periodic::start("shadow-saver", "shadow figures", interval, save).map(Saver)
    }

    /// Saves once more and stops the thread (blocks until it is done).
    pub fn stop(&mut self) {
        self.0.stop();
    }
}

/// The figures file beside a shadow's document.
pub(super) fn beside(document: &Path) -> PathBuf {
    document.with_file_name(FILE)
}
