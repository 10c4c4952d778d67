//! Puts a list written beside its folder into place, and clears what killed runs left there.
//! A run writes its list into `.NAME.writing-PID` next to the folder and moves it in only when
//! whole; this module owns that move, the clean-up, and the folder's lock (`.NAME.lock` beside
//! it) that keeps a second command from writing or committing the folder meanwhile.

use std::path::Path;

use super::output::{CONTROL_CSV, LIST_CSV, LIST_PARQUET, SUMMARY_JSON};
use crate::folder_lock::{Folder, FolderLock, LockError};

/// Takes the list folder `out` for `doing` (a run, a merge, a commit), making the folder it
/// lies in if needed: two runs into one folder would each move their files in, and leave one's
/// list beside the other's summary; a commit meanwhile would record a list being replaced.
/// Held until dropped, so a second command is refused at once, naming the first.
pub fn lock(out: &Path, doing: &str) -> Result<FolderLock, LockError> {
    if let Some(parent) = Folder::List.lock_file(out).parent() {
        std::fs::create_dir_all(parent).map_err(|source| LockError::Io {
            kind: Folder::List,
            dir: out.to_owned(),
            source,
        })?;
    }
    FolderLock::acquire(out, Folder::List, Some(doing))
}

/// Moves a list written in `tmp` into `out`, file by file with the summary last, and removes
/// the list files of an earlier run that the new one does not have: `out` never holds a list
/// of two runs (a run killed, or out of space, before this leaves the earlier list whole). The
/// summary marks a whole list (a commit reads it first): the earlier one is removed before any
/// file moves, so a move that fails halfway leaves no list rather than a mix.
pub fn place(tmp: &Path, out: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(out)?;
    match std::fs::remove_file(out.join(SUMMARY_JSON)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    for name in [LIST_CSV, LIST_PARQUET, CONTROL_CSV, SUMMARY_JSON] {
        let (from, to) = (tmp.join(name), out.join(name));
        if from.exists() {
            std::fs::rename(&from, &to)?;
        } else if to.exists() {
            std::fs::remove_file(&to)?;
        }
    }
    // Anything else the writer made (none today) follows.
    for e in std::fs::read_dir(tmp)? {
        let e = e?;
        std::fs::rename(e.path(), out.join(e.file_name()))?;
    }
    std::fs::File::open(out)?.sync_all()
}

/// Removes what runs into `out` that were killed (`kill -9`, a lost node) left beside it: a
/// `.NAME.writing-PID` folder whose process is gone. Where `/proc` cannot say, nothing goes.
pub fn remove_dead_writes(out: &Path, name: &str) {
    let (Some(parent), true) = (out.parent(), Path::new("/proc/self").exists()) else {
        return;
    };
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    let prefix = format!(".{name}.writing-");
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for e in entries.flatten() {
        let file = e.file_name();
        let Some(pid) = file
            .to_str()
            .and_then(|f| f.strip_prefix(&prefix))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            tracing::info!(path = %e.path().display(), "removing what a killed run left");
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A move that fails halfway (here `control.csv` cannot be replaced) leaves no summary, so
    /// no commit takes a list of two runs; one that goes through leaves the new list whole.
    #[test]
    fn a_list_placed_halfway_has_no_summary() {
        let dir = std::env::temp_dir().join(format!("nb-place-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (tmp, out) = (dir.join("tmp"), dir.join("out"));
        let files = [LIST_CSV, LIST_PARQUET, CONTROL_CSV, SUMMARY_JSON];
        let write = |at: &Path, what: &str| {
            std::fs::create_dir_all(at).unwrap();
            for f in files {
                std::fs::write(at.join(f), what).unwrap();
            }
        };
        write(&out, "old");
        write(&tmp, "new");
        std::fs::remove_file(out.join(CONTROL_CSV)).unwrap();
        std::fs::create_dir_all(out.join(CONTROL_CSV).join("in-the-way")).unwrap();
        assert!(place(&tmp, &out).is_err());
        assert!(
            !out.join(SUMMARY_JSON).exists(),
            "a summary beside a mixed list"
        );

        std::fs::remove_dir_all(out.join(CONTROL_CSV)).unwrap();
        write(&tmp, "new");
        place(&tmp, &out).unwrap();
        for f in files {
            assert_eq!(std::fs::read_to_string(out.join(f)).unwrap(), "new", "{f}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
