//! Reading a file an operator or an admin names (a snapshot, a model, a secret, a campaign's
//! list): a regular file only, since opening a FIFO blocks its reader until someone writes,
//! and a device such as `/dev/zero` never ends. The type is checked before the file is opened
//! and again on the open file, so a path swapped in between is caught too.

use std::io::Read as _;
use std::path::{Path, PathBuf};

/// Refuses anything but a regular file (a symlink counts as what it points to).
pub fn check_regular(path: &Path) -> std::io::Result<()> {
    let kind = std::fs::metadata(path)?.file_type();
    if kind.is_file() {
        return Ok(());
    }
    Err(not_a_file(kind))
}

/// Reads a regular file whole, refusing one over `limit` bytes.
pub fn read_regular(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    check_regular(path)?;
    let file = std::fs::File::open(path)?;
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(not_a_file(meta.file_type()));
    }
    let mut bytes = Vec::with_capacity(meta.len().min(limit) as usize);
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {limit} bytes"),
        ));
    }
    Ok(bytes)
}

/// Runs everything `r` reads through the CRC-32 `h`, a megabyte at a time (a snapshot's
/// version, read through once beside its load).
pub fn crc_feed(h: &mut crc32fast::Hasher, mut r: impl std::io::Read) -> std::io::Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match r.read(&mut buf)? {
            0 => return Ok(()),
            n => h.update(&buf[..n]),
        }
    }
}

/// Reads a regular UTF-8 text file whole, refusing one over `limit` bytes.
pub fn read_regular_text(path: &Path, limit: u64) -> std::io::Result<String> {
    String::from_utf8(read_regular(path, limit)?)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// What changes when a file is written, or another is renamed over it: its device and inode,
/// length, modification time, and change time (a rename sets it, and nobody can set it back, so
/// a file copied with the old one's size and time, `cp -p`, is told apart). For a folder, its
/// own and every entry's, by name. `None` when it cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp(Vec<(std::ffi::OsString, FileStamp)>);

type FileStamp = ((u64, u64, u64), Option<std::time::SystemTime>, (i64, i64));

/// The [`Stamp`] of `path` now (following symbolic links).
pub fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt as _;
    let of = |m: &std::fs::Metadata| -> FileStamp {
        (
            (m.dev(), m.ino(), m.len()),
            m.modified().ok(),
            (m.ctime(), m.ctime_nsec()),
        )
    };
    let m = std::fs::metadata(path).ok()?;
    let mut all = vec![(std::ffi::OsString::new(), of(&m))];
    if m.is_dir() {
        for e in std::fs::read_dir(path).ok()? {
            let e = e.ok()?;
            let m = std::fs::metadata(e.path()).ok()?;
            all.push((e.file_name(), of(&m)));
        }
        all.sort();
    }
    Some(Stamp(all))
}

/// Runs `read` on `path` and says whether the file (or folder) stayed as it was meanwhile:
/// what was read is then one state of it, not a mix of an old and a new one.
pub fn read_unchanged<T>(path: &Path, read: impl FnOnce() -> T) -> (T, bool) {
    let before = stamp(path);
    let got = read();
    let same = before.is_some() && stamp(path) == before;
    (got, same)
}

/// Whether a write failed because the place cannot be written at all (a read-only mount, no
/// permission), as against for now (a full disk).
pub fn read_only(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{PermissionDenied, ReadOnlyFilesystem};
    matches!(e.kind(), PermissionDenied | ReadOnlyFilesystem)
}

/// Whether `a` and `b` are one folder, however either is written (see [`within`]).
pub fn same_folder(a: &Path, b: &Path) -> bool {
    within(a, b) && within(b, a)
}

/// Whether `dir` is `folder` or lies inside it, however either is written (symbolic links,
/// `..`, a folder not made yet).
pub fn within(dir: &Path, folder: &Path) -> bool {
    let full = |p: &Path| -> Option<PathBuf> {
        let p = std::path::absolute(p).ok()?;
        if let Ok(c) = p.canonicalize() {
            return Some(c);
        }
        // Not made yet: its nearest existing ancestor, resolved, and the rest as written, its
        // `..` taken as written too (nothing in it is a link yet).
        let base = p.ancestors().skip(1).find(|a| a.exists())?;
        let mut full = base.canonicalize().ok()?;
        for part in p.strip_prefix(base).ok()?.components() {
            match part {
                std::path::Component::ParentDir => {
                    full.pop();
                }
                std::path::Component::Normal(name) => full.push(name),
                _ => {}
            }
        }
        Some(full)
    };
    match (full(dir), full(folder)) {
        (Some(d), Some(f)) => d.starts_with(f),
        _ => false,
    }
}

fn not_a_file(kind: std::fs::FileType) -> std::io::Error {
    use std::os::unix::fs::FileTypeExt as _;
    let what = if kind.is_dir() {
        "a folder"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_char_device() || kind.is_block_device() {
        "a device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "not a file"
    };
    std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        format!("not a regular file ({what})"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn within_reads_folders_not_made_yet_relative_or_through_dot_dot() {
        let cwd = std::env::current_dir().unwrap();
        assert!(within(Path::new("no-such-list"), Path::new(".")));
        assert!(within(Path::new("no-such/list"), &cwd));
        assert!(within(Path::new("."), &cwd) && within(&cwd, Path::new(".")));
        let tmp = std::env::temp_dir().join(format!("nb-within-{}", std::process::id()));
        std::fs::create_dir_all(tmp.join("models")).unwrap();
        let models = tmp.join("models");
        assert!(within(&models.join("new/list"), &models));
        assert!(!within(&models.join("new/../../list"), &models));
        assert!(within(&models.join("new/../list"), &models));
        assert!(!within(&tmp.join("modelsx"), &models));
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn only_regular_files_within_the_limit_are_read() {
        let dir = std::env::temp_dir().join(format!("nb-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("f.txt");
        std::fs::write(&file, "hello").unwrap();
        assert_eq!(read_regular(&file, 5).unwrap(), b"hello");
        let e = read_regular(&file, 4).unwrap_err().to_string();
        assert_eq!(e, "larger than 4 bytes");
        let link = dir.join("link");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        for (path, says) in [
            (link.as_path(), "not a regular file (a device)"),
            (Path::new("/dev/zero"), "not a regular file (a device)"),
            (dir.as_path(), "not a regular file (a folder)"),
        ] {
            assert_eq!(read_regular(path, 1 << 20).unwrap_err().to_string(), says);
        }
        let fifo = dir.join("fifo");
        let _ = std::fs::remove_file(&fifo);
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.is_ok_and(|s| s.success()), "mkfifo (coreutils) failed");
        // Refused before it is opened: opening a FIFO would wait for a writer.
        assert_eq!(
            check_regular(&fifo).unwrap_err().to_string(),
            "not a regular file (a FIFO)"
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    /// A file written in place, replaced by a rename (even with the same length and time, as
    /// `cp -p` leaves them), or a folder that gains a part while it is read is told apart; a
    /// file read alone is not.
    #[test]
    fn a_file_changed_while_it_is_read_is_told() {
        let dir = std::env::temp_dir().join(format!("nb-stamp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("f.csv");
        std::fs::write(&file, "customer_id,x\nC1,1\n").unwrap();
        let read = || std::fs::read(&file).unwrap();
        assert!(read_unchanged(&file, read).1, "nothing wrote it");
        let in_place = || {
            let got = read();
            std::fs::write(&file, "customer_id,x\nC1,2\n").unwrap();
            got
        };
        assert!(!read_unchanged(&file, in_place).1, "written in place");
        let renamed = || {
            let got = read();
            let beside = dir.join(".f.tmp");
            std::fs::write(&beside, "customer_id,x\nC1,3\n").unwrap();
            let old = std::fs::metadata(&file).unwrap().modified().unwrap();
            std::fs::File::options()
                .write(true)
                .open(&beside)
                .unwrap()
                .set_modified(old)
                .unwrap();
            std::fs::rename(&beside, &file).unwrap();
            got
        };
        assert!(
            !read_unchanged(&file, renamed).1,
            "renamed over, same size and time"
        );
        let parts = dir.join("parts");
        std::fs::create_dir_all(&parts).unwrap();
        std::fs::write(parts.join("a.parquet"), "x").unwrap();
        let grown = || std::fs::write(parts.join("b.parquet"), "y").unwrap();
        assert!(!read_unchanged(&parts, grown).1, "a part came");
        assert!(
            !read_unchanged(&dir.join("none"), || ()).1,
            "no file: no state read"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
