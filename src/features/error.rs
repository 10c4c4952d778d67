//! Why a snapshot was refused: each fault at the place in the file where a person can find
//! it (a CSV's line and field, a Parquet file's row and column), listed one by one for a
//! refusal and counted when there are more than are listed.

use std::path::{Path, PathBuf};

/// What went wrong loading a snapshot, with the place in the file where it can be told.
#[derive(Debug, thiserror::Error)]
pub enum FeatureError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A CSV field or line is wrong, at a place a person can find.
    #[error("{path}:{line}:{column}: {detail}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: u64,
        /// 1-based column (field).
        column: usize,
        /// What is wrong there.
        detail: String,
    },
    /// Several CSV fields or lines are wrong: the first of them at their places, all counted.
    #[error("{}", rows_message(path, faults, *total))]
    Rows {
        /// The file.
        path: PathBuf,
        /// The first faults in file order (at most 100).
        faults: Vec<RowFault>,
        /// Every fault found, listed or not.
        total: u64,
    },
    /// Several values of a Parquet file are wrong: the first of them by data row and column,
    /// all counted.
    #[error("{}", values_message(path, faults, *total))]
    Values {
        /// The file.
        path: PathBuf,
        /// The first faults in file order (at most 100), each naming its row and column.
        faults: Vec<String>,
        /// Every fault found, listed or not.
        total: u64,
    },
    /// The node's snapshot store could not take a copy of a sound snapshot: the server's storage
    /// is at fault (full, read-only, not allowed), not the file, and the answer says so.
    #[error("{}", store_message(store, source))]
    Store {
        /// The store's folder.
        store: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The binary form is damaged or inconsistent.
    #[error("{path}: {detail}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
}

fn store_message(store: &Path, source: &std::io::Error) -> String {
    if crate::files::read_only(source) {
        format!(
            "the snapshot store {} cannot be written ({source}): only a snapshot already in it \
             loads here (its current.nbf); publish this one into the store (`nextbest features \
             publish`, what the node's publisher runs)",
            store.display()
        )
    } else {
        format!(
            "the snapshot store {} could not take a copy of the snapshot ({source}); the file is \
             not at fault: make room there (or fix the store) and try again",
            store.display()
        )
    }
}

/// One wrong field or line of a CSV snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowFault {
    /// 1-based line.
    pub line: u64,
    /// 1-based column (field).
    pub column: usize,
    /// What is wrong there.
    pub detail: String,
}

/// Every listed fault on one line (a log line, an error's detail), the count when some are not.
fn rows_message(path: &Path, faults: &[RowFault], total: u64) -> String {
    let mut text = format!("{total} faults");
    for f in faults {
        text += &format!("; {}:{}:{}: {}", path.display(), f.line, f.column, f.detail);
    }
    if total > faults.len() as u64 {
        text += &format!(" (the first {} listed)", faults.len());
    }
    text
}

/// The same for a file whose faults are named by row and column, not line.
fn values_message(path: &Path, faults: &[String], total: u64) -> String {
    let mut text = format!("{total} faults");
    for f in faults {
        text += &format!("; {}: {f}", path.display());
    }
    if total > faults.len() as u64 {
        text += &format!(" (the first {} listed)", faults.len());
    }
    text
}

/// The line after the listed faults that counts the rest, if any are not listed.
fn not_listed(listed: usize, total: u64) -> Option<String> {
    (total > listed as u64).then(|| {
        format!(
            "{} more faults not listed ({total} in all)",
            total - listed as u64
        )
    })
}

impl FeatureError {
    /// For a fault of the snapshot store rather than the file: whether the store cannot be
    /// written at all (read-only, not allowed) rather than for now (full); `None` for the file's.
    pub fn store_read_only(&self) -> Option<bool> {
        match self {
            FeatureError::Store { source, .. } => Some(crate::files::read_only(source)),
            _ => None,
        }
    }

    /// How many faults the source held, listed or not.
    pub fn total(&self) -> u64 {
        match self {
            FeatureError::Rows { total, .. } | FeatureError::Values { total, .. } => *total,
            _ => 1,
        }
    }

    /// Each fault as its place (`file:line:column`, or the file) and what is wrong there, so a
    /// refusal can list them one by one.
    pub fn located(&self) -> Vec<(String, String)> {
        let at =
            |path: &Path, line: u64, column: usize| format!("{}:{line}:{column}", path.display());
        match self {
            FeatureError::Io { path, source } => {
                vec![(path.display().to_string(), source.to_string())]
            }
            FeatureError::Parse {
                path,
                line,
                column,
                detail,
            } => vec![(at(path, *line, *column), detail.clone())],
            FeatureError::Rows {
                path,
                faults,
                total,
            } => {
                let mut all: Vec<_> = faults
                    .iter()
                    .map(|f| (at(path, f.line, f.column), f.detail.clone()))
                    .collect();
                if let Some(more) = not_listed(faults.len(), *total) {
                    all.push((path.display().to_string(), more));
                }
                all
            }
            FeatureError::Values {
                path,
                faults,
                total,
            } => {
                let file = path.display().to_string();
                let mut all: Vec<_> = faults.iter().map(|f| (file.clone(), f.clone())).collect();
                if let Some(more) = not_listed(faults.len(), *total) {
                    all.push((file, more));
                }
                all
            }
            FeatureError::Format { path, detail } => {
                vec![(path.display().to_string(), detail.clone())]
            }
            FeatureError::Store { store, .. } => {
                vec![(store.display().to_string(), self.to_string())]
            }
        }
    }
}
