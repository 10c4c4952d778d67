//! One process at a time in a folder: an exclusive lock on a file in it (beside it, for a
//! campaign's list), held while the process works there. Two servers appending to one event
//! log (or one deleting the other's open segment at start) lose acknowledged events, and two
//! campaign commands writing one list
//! folder leave a list of one run beside the summary of the other; so the second refuses and
//! names the holder.
//!
//! The lock is the operating system's (`flock` on Linux): it goes with the process, so a
//! `kill -9` never leaves a stale lock behind. The file's content (the holder's pid, what it
//! does and its start time) is only there to name the holder in the refusal.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The lock file's name inside a server's data folder.
pub const LOCK_FILE: &str = "LOCK";
/// The lock file's name inside a decision log's folder (which may be the data folder itself).
pub const DECISION_LOG_LOCK_FILE: &str = "decisions.lock";

/// What a folder is locked for: names the lock file and the words of a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Folder {
    /// A server's `--data-dir` (the event log, the funnel, the shadow's figures).
    Data,
    /// A campaign's list folder, written by `campaign run` and `merge`, read and journalled
    /// by `campaign commit`.
    List,
    /// A server's `--decision-log` folder: two writers would number their files alike, split
    /// each other's lines, and prune each other's files.
    DecisionLog,
}

impl Folder {
    /// The lock file of `dir`. A list folder's lies beside it (`.NAME.lock`, next to the
    /// `.NAME.writing-PID` a run writes in): a command refused, or failing, before its list is
    /// placed leaves no folder behind, and the folder holds only the list.
    pub fn lock_file(self, dir: &Path) -> PathBuf {
        match self {
            Folder::Data => dir.join(LOCK_FILE),
            Folder::DecisionLog => dir.join(DECISION_LOG_LOCK_FILE),
            Folder::List => {
                // One file however the folder is named (`.`, a symbolic link, a full path),
                // once it exists.
                let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
                let name = dir
                    .file_name()
                    .map_or("list".into(), |n| n.to_string_lossy());
                dir.with_file_name(format!(".{name}.lock"))
            }
        }
    }
}

/// Why a folder could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds the folder.
    #[error("{}", held(*.kind, .dir, .holder))]
    Held {
        /// What the folder is.
        kind: Folder,
        /// The folder.
        dir: PathBuf,
        /// What the lock file says of its holder.
        holder: String,
    },
    /// The lock file could not be opened or locked.
    #[error("cannot lock the {} folder {}: {source}", kind_name(*.kind), .dir.display())]
    Io {
        /// What the folder is.
        kind: Folder,
        /// The folder.
        dir: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

fn kind_name(kind: Folder) -> &'static str {
    match kind {
        Folder::Data => "data",
        Folder::List => "list",
        Folder::DecisionLog => "decision log",
    }
}

fn held(kind: Folder, dir: &Path, holder: &str) -> String {
    let dir = dir.display();
    match kind {
        Folder::Data => format!(
            "the data folder {dir} is in use by another nextbest ({holder}); one process per \
             data folder"
        ),
        Folder::List => format!(
            "the list folder {dir} is in use by another campaign command ({holder}); one run, \
             merge or commit at a time per list folder"
        ),
        Folder::DecisionLog => format!(
            "the decision log folder {dir} is in use by another nextbest ({holder}); give each \
             server a folder of its own (`--decision-log`)"
        ),
    }
}

/// The held lock; dropping it releases the folder.
#[derive(Debug)]
pub struct FolderLock {
    _file: File,
}

impl FolderLock {
    /// Takes the lock of `dir` for `kind` (its lock file's folder exists), or says who holds
    /// it; `doing` (the command, when a folder is shared by several) goes into what a refused
    /// second one reads.
    pub fn acquire(dir: &Path, kind: Folder, doing: Option<&str>) -> Result<Self, LockError> {
        let io = |source| LockError::Io {
            kind,
            dir: dir.to_owned(),
            source,
        };
        let path = kind.lock_file(dir);
        let mut file = match OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
        {
            Ok(f) => f,
            // A list this process may only read (a read-only share) is locked through the file
            // as it is: a lock needs no right to write. A data folder must be writable.
            Err(e) if kind == Folder::List && crate::files::read_only(&e) => {
                File::open(&path).map_err(|_| io(e))?
            }
            Err(e) => return Err(io(e)),
        };
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(LockError::Held {
                    kind,
                    dir: dir.to_owned(),
                    holder: if holder.is_empty() {
                        "holder unknown".into()
                    } else {
                        holder.to_owned()
                    },
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        // Naming the holder is best effort: on a full disk the lock still holds.
        let who = format!(
            "pid {}{} since {}",
            std::process::id(),
            doing.map(|d| format!(", {d},")).unwrap_or_default(),
            humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        );
        let _ = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(who.as_bytes()));
        Ok(FolderLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_and_named_until_the_first_lets_go() {
        let dir = std::env::temp_dir().join(format!("nextbest-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let first = FolderLock::acquire(&dir, Folder::Data, None).unwrap();
        let err = FolderLock::acquire(&dir, Folder::Data, None).unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(first);
        FolderLock::acquire(&dir, Folder::Data, None).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
