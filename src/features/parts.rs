//! A snapshot as a folder of Parquet parts, as Spark, Hive or a warehouse's unload writes one
//! (`part-00000-….snappy.parquet`, `000000_0`, beside `_SUCCESS` and hidden `.crc` files): read
//! as one snapshot, its rows in the parts' name order. Every file whose name does not start with
//! `_` or `.` is a part; a folder inside, or a `_temporary` a job is still writing, is refused.
//! Also the door to the Parquet reader, which the lean build leaves out.

use std::path::{Path, PathBuf};

use super::{FeatureError, FeatureStore};

/// The most parts one folder snapshot may hold.
pub const MAX_PARTS: usize = 10_000;

/// The parts of a folder snapshot, in name order.
pub fn parts_of(dir: &Path) -> Result<Vec<PathBuf>, FeatureError> {
    let fault = |detail: String| FeatureError::Format {
        path: dir.to_owned(),
        detail,
    };
    let io = |source| FeatureError::Io {
        path: dir.to_owned(),
        source,
    };
    // Checked in name order, so the fault named is the same on every file system.
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        names.push(entry.map_err(io)?.file_name());
    }
    names.sort();
    if names.iter().any(|n| n == "_temporary") {
        return Err(fault(
            "a job is still writing this folder (it holds `_temporary`): load it once the job \
             has finished"
                .into(),
        ));
    }
    let mut parts = Vec::new();
    for name in names {
        let path = dir.join(&name);
        let name = name.to_string_lossy();
        let at = |source| FeatureError::Io {
            path: path.clone(),
            source,
        };
        if name.starts_with('_') || name.starts_with('.') {
            continue;
        }
        // A link is taken as what it points at.
        if std::fs::metadata(&path).map_err(at)?.is_dir() {
            return Err(fault(format!(
                "`{name}` is a folder: a snapshot folder holds Parquet parts only (a partitioned \
                 table's `key=value` folders are not read: give the folder of one partition)"
            )));
        }
        // A FIFO or a device is refused before it is opened (opening a FIFO waits).
        crate::files::check_regular(&path).map_err(at)?;
        if !is_parquet(&path).map_err(at)? {
            return Err(fault(format!(
                "`{name}` is not a Parquet file: a folder is read as a snapshot only when it \
                 holds the Parquet parts of an export (Spark, Hive); give the snapshot's file, \
                 or a folder of parts"
            )));
        }
        if parts.len() == MAX_PARTS {
            return Err(fault(format!(
                "more than {MAX_PARTS} parts: write the snapshot in fewer files"
            )));
        }
        parts.push(path);
    }
    if parts.is_empty() {
        return Err(fault(
            "no parts: the folder holds no Parquet file (names starting with `_` or `.` are \
             passed over)"
                .into(),
        ));
    }
    Ok(parts)
}

/// Whether a file begins as Parquet does (`PAR1`).
fn is_parquet(path: &Path) -> std::io::Result<bool> {
    let mut head = [0u8; 4];
    let mut f = std::fs::File::open(path)?;
    let read = std::io::Read::read(&mut f, &mut head)?;
    Ok(&head[..read] == b"PAR1")
}

/// Loads a folder snapshot.
pub(super) fn read_folder(dir: &Path) -> Result<FeatureStore, FeatureError> {
    let parts = parts_of(dir)?;
    read_parts(dir, &parts)
}

/// CRC-32 naming a folder snapshot's content (its version): of its parts' bytes, in name
/// order, so replicas reading copies of one export agree.
pub fn folder_crc(dir: &Path) -> std::io::Result<u32> {
    let parts = parts_of(dir).map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut h = crc32fast::Hasher::new();
    for part in parts {
        crate::files::crc_feed(&mut h, std::fs::File::open(part)?)?;
    }
    Ok(h.finalize())
}

/// Loads one Parquet file.
pub(super) fn read_file(path: &Path) -> Result<FeatureStore, FeatureError> {
    read_parts(path, &[path.to_owned()])
}

#[cfg(feature = "offline")]
fn read_parts(shown: &Path, parts: &[PathBuf]) -> Result<FeatureStore, FeatureError> {
    super::parquet::read_parts(shown, parts)
}

/// The lean build (without the `offline` feature) reads no Parquet, in a folder or not: it
/// says so, naming the feature, rather than misreading the file as CSV.
#[cfg(not(feature = "offline"))]
fn read_parts(shown: &Path, _parts: &[PathBuf]) -> Result<FeatureStore, FeatureError> {
    Err(FeatureError::Format {
        path: shown.to_owned(),
        detail: "Parquet snapshots (a file, or a folder of parts) need the `offline` feature, \
                 which this build leaves out (built with --no-default-features): build with \
                 default features, or give the snapshot as CSV or .nbf"
            .into(),
    })
}
