//! Replacing a small file whole: written beside its place, synced, renamed over it, and the
//! folder synced, so a reader (or a restart after a crash) finds the old file or the new one,
//! never a mix. Every small state file nextbest keeps (models written by the admin API, funnel
//! counts, the replication position, the replica id) is written this way; state saved every
//! few seconds (the funnel's counts, the shadow's figures) is saved by a [`Periodic`] thread.

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Writes `bytes` as `path` atomically; with `durable`, also so that it survives power loss
/// once this returns (file and folder synced). A failed write leaves the old file and no
/// temporary behind.
pub fn write_atomic(path: &Path, bytes: &[u8], durable: bool) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let tmp = temp_beside(path);
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        if durable {
            f.sync_data()?;
        }
        drop(f);
        std::fs::rename(&tmp, path)?;
        if durable {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    };
    write().inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// `.<name>.<random>.tmp` in the same folder: hidden from folder watchers' model globs, on the
/// same file system, so the rename is atomic, and this write's own, so replicas writing one
/// shared folder (containers all running as pid 1) never rename each other's half-written file
/// away.
fn temp_beside(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy());
    path.with_file_name(format!(".{name}.{:016x}.tmp", rand::random::<u64>()))
}

/// A thread that saves something every interval and once more when stopped, off every path
/// that serves.
pub struct Periodic {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Periodic {
    /// Calls `save` every `interval` and once more at [`Periodic::stop`]; `save` returns
    /// `None` once there is nothing left to save for (what it saves is gone), which ends the
    /// thread. A failure is logged once when an episode starts (a full disk fails every save)
    /// and once when it ends, naming `what` was saved.
    pub fn start(
        name: &str,
        what: &'static str,
        interval: std::time::Duration,
        mut save: impl FnMut() -> Option<Result<(), String>> + Send + 'static,
    ) -> std::io::Result<Self> {
        use std::sync::mpsc;
        let (tx, rx) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let mut failing = false;
                loop {
                    let stopping = !matches!(
                        rx.recv_timeout(interval),
                        Err(mpsc::RecvTimeoutError::Timeout)
                    );
                    match save() {
                        None => return,
                        Some(Ok(())) if failing => {
                            failing = false;
                            tracing::info!("{what} saved again");
                        }
                        Some(Ok(())) => {}
                        Some(Err(e)) if !std::mem::replace(&mut failing, true) => {
                            tracing::warn!(error = %e, "{what} not saved; retrying every interval, logged again once they are");
                        }
                        Some(Err(_)) => {}
                    }
                    if stopping {
                        return;
                    }
                }
            })?;
        Ok(Periodic {
            stop: Some(tx),
            thread: Some(thread),
        })
    }

    /// A saver with nothing to save (no data folder): no thread.
    pub fn none() -> Self {
        Periodic {
            stop: None,
            thread: None,
        }
    }

    /// Saves once more and stops the thread (blocks until it is done).
    pub fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Periodic {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_write_has_a_temporary_file_of_its_own() {
        // Two replicas in containers have the same pid: their writes into one shared folder
        // must still not share a temporary file.
        let path = Path::new("/models/model.json");
        let (a, b) = (temp_beside(path), temp_beside(path));
        assert_ne!(a, b);
        for t in [a, b] {
            let name = t.file_name().unwrap().to_string_lossy().into_owned();
            assert!(
                name.starts_with(".model.json.") && name.ends_with(".tmp"),
                "{name}"
            );
            assert_eq!(t.parent(), path.parent());
        }
    }

    #[test]
    fn replaces_whole_and_leaves_no_temporary() {
        let dir = std::env::temp_dir().join(format!("nextbest-durable-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("state.json");
        write_atomic(&file, b"one", true).unwrap();
        write_atomic(&file, b"two", false).unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["state.json"]);
        // A folder that is not there: an error, and nothing is left behind.
        assert!(write_atomic(&dir.join("missing/x"), b"x", true).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
