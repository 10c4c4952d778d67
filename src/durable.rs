//! Replacing a small file whole: written beside its place, synced, renamed over it, and the
//! folder synced, so a reader (or a restart after a crash) finds the old file or the new one,
//! never a mix. Every small state file nextbest keeps (models written by the admin API, funnel
//! counts, the replication position, the replica id) is written this way.

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

/// `.<name>.<pid>.tmp` in the same folder: hidden from folder watchers' model globs, on the
/// same file system, so the rename is atomic, and this process's own, so replicas writing one
/// shared folder never rename each other's half-written file away.
fn temp_beside(path: &Path) -> PathBuf {
    temp_of(path, std::process::id())
}

fn temp_of(path: &Path, pid: u32) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy());
    path.with_file_name(format!(".{name}.{pid}.tmp"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_writers_temporary_file_is_left_alone() {
        let dir = std::env::temp_dir().join(format!("nb-durable-other-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("model.json");
        // Another replica's write in progress into the same folder.
        let theirs = temp_of(&path, std::process::id() + 1);
        assert_ne!(theirs, temp_beside(&path));
        std::fs::write(&theirs, b"half written").unwrap();
        write_atomic(&path, b"ours", true).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"ours");
        assert_eq!(std::fs::read(&theirs).unwrap(), b"half written");
        std::fs::remove_dir_all(&dir).ok();
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
