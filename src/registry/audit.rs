//! The model audit trail: every model the registry activated, newest first, each with who
//! made the change (its source), when, and the document's checksum. A rollback is an entry of
//! its own; nothing is ever removed or rewritten, so the version rolled back from stays in the
//! trail. (What a rollback goes back to is the registry's compiled history, a separate stack.)
//!
//! The newest [`KEPT`] entries are held in memory for the admin API. Once a file is given
//! ([`Audit::persist_to`], `<data>/model-history.jsonl`, after the data folder is locked), each
//! entry is also appended to it as one JSON line, and the file's tail is what a restart shows.
//! A write that fails is logged and counted; the change itself stands.

use std::collections::VecDeque;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use super::ModelRecord;

/// Entries held in memory.
pub const KEPT: usize = 100;

/// The trail.
#[derive(Default)]
pub struct Audit {
    inner: Mutex<Inner>,
    /// Entries that could not be appended to the file.
    pub write_failures: AtomicU64,
}

#[derive(Default)]
struct Inner {
    newest_first: VecDeque<ModelRecord>,
    file: Option<PathBuf>,
}

impl Audit {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds one change.
    pub(super) fn record(&self, r: &ModelRecord) {
        let mut inner = self.inner();
        if let Some(path) = &inner.file {
            if let Err(e) = append(path, std::slice::from_ref(r)) {
                self.write_failures.fetch_add(1, Relaxed);
                tracing::warn!(path = %path.display(), error = %e, "model history entry not written");
            }
        }
        inner.newest_first.push_front(r.clone());
        inner.newest_first.truncate(KEPT);
    }

    /// The newest entries, newest first.
    pub fn entries(&self) -> Vec<ModelRecord> {
        self.inner().newest_first.iter().cloned().collect()
    }

    /// From now on appends to `path`: what it holds becomes the older part of the trail, and
    /// the entries recorded so far (this start's first load) are appended after it.
    pub fn persist_to(&self, path: PathBuf) -> std::io::Result<()> {
        let mut inner = self.inner();
        let mut older: Vec<ModelRecord> = match std::fs::read_to_string(&path) {
            Ok(text) => text
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let ours: Vec<ModelRecord> = inner.newest_first.iter().rev().cloned().collect();
        append(&path, &ours)?;
        older.extend(ours);
        inner.newest_first = older.into_iter().rev().take(KEPT).collect();
        inner.file = Some(path);
        Ok(())
    }
}

/// Appends entries (oldest first) as JSON lines, synced.
fn append(path: &Path, records: &[ModelRecord]) -> std::io::Result<()> {
    if records.is_empty() {
        return Ok(());
    }
    let mut text = Vec::new();
    for r in records {
        serde_json::to_writer(&mut text, r)?;
        text.push(b'\n');
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    f.write_all(&text)?;
    f.sync_data()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(version: &str, source: &str) -> ModelRecord {
        ModelRecord {
            name: "m".into(),
            version: version.into(),
            checksum: format!("crc32:{version}"),
            loaded_at: "2026-12-04T00:00:00.000Z".into(),
            source: source.into(),
            challenger: None,
            warnings: Vec::new(),
        }
    }

    #[test]
    fn the_trail_only_grows_and_survives_a_restart() {
        let dir = std::env::temp_dir().join(format!("nextbest-audit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("model-history.jsonl");
        let versions = |a: &Audit| -> Vec<(String, String)> {
            a.entries()
                .into_iter()
                .map(|r| (r.version, r.source))
                .collect()
        };

        let a = Audit::default();
        a.record(&record("1", "disk"));
        a.persist_to(path.clone()).unwrap();
        a.record(&record("2", "admin"));
        a.record(&record("1", "rollback"));
        let want = [("1", "rollback"), ("2", "admin"), ("1", "disk")]
            .map(|(v, s)| (v.to_owned(), s.to_owned()));
        assert_eq!(versions(&a), want);

        // A restart: its own first load goes on top of what the file holds.
        let b = Audit::default();
        b.record(&record("1", "disk"));
        b.persist_to(path.clone()).unwrap();
        assert_eq!(versions(&b)[0], ("1".to_owned(), "disk".to_owned()));
        assert_eq!(versions(&b)[1..], want);
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 4);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
