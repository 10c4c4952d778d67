//! Keeping what nextbest writes from other users of the host: event logs and the decision log
//! hold customer ids and request context, snapshots hold customer features, campaign lists
//! hold customer ids.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use rustix::fs::Mode;

/// The permission bits the umask keeps off what nextbest writes: any for others, and write for
/// the group.
const CLOSED: u32 = 0o027;

/// How deep [`open_to_others`] looks below a folder it is given (the snapshot store's copies
/// sit one level down, the event log's segments at the top), and how many entries at most.
const DEPTH: usize = 3;
const MOST: usize = 100_000;

/// Narrows the process's umask so no file it writes is readable by all: an inherited umask of
/// 022 would leave every file so. A narrower umask (077) is kept.
pub fn narrow_umask() {
    let inherited = rustix::process::umask(Mode::empty());
    rustix::process::umask(inherited | Mode::from_bits_truncate(CLOSED));
}

/// The files under `dir` that this process owns and others may read or write (files an
/// earlier release wrote before the umask closed them, or copied in by hand), and the folders
/// others may write into: how many, and the first. A folder others may only list or enter
/// (0755, what a new volume or `mkdir` gives) shows names, never what the files hold, and is
/// not counted. Only looked at, never changed: the folder may hold files that are not
/// nextbest's.
pub fn open_to_others(dir: &Path) -> (usize, Option<PathBuf>) {
    let uid = rustix::process::geteuid().as_raw();
    let mut found = (0, None);
    let mut seen = 0;
    look(dir, uid, DEPTH, &mut seen, &mut found);
    found
}

/// Logs, per folder nextbest writes in (`data` and those of `others` outside it), the files
/// [`open_to_others`] finds, with the `chmod` that closes them.
pub fn say_what_is_open<'a>(data: &'a Path, others: impl Iterator<Item = &'a Path>) {
    let beyond_data = others.filter(|d| !d.starts_with(data));
    for dir in std::iter::once(data).chain(beyond_data) {
        if let (n @ 1.., Some(first)) = open_to_others(dir) {
            tracing::warn!(
                count = n,
                first = %first.display(),
                "files or folders of {} are open to other users of the host (this process writes its own closed, but a folder made beforehand or files an earlier release wrote may be open): close them with `chmod -R o-rwx {}`",
                dir.display(),
                dir.display()
            );
        }
    }
}

fn look(
    path: &Path,
    uid: u32,
    depth: usize,
    seen: &mut usize,
    found: &mut (usize, Option<PathBuf>),
) {
    use std::os::unix::fs::MetadataExt as _;
    *seen += 1;
    // Not following links: what a link points to is not the folder's.
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return;
    };
    if meta.file_type().is_symlink() || *seen > MOST {
        return;
    }
    let open = if meta.is_dir() { 0o002 } else { 0o006 };
    if meta.uid() == uid && meta.permissions().mode() & open != 0 {
        found.0 += 1;
        found.1.get_or_insert_with(|| path.to_owned());
    }
    if meta.is_dir() && depth > 0 {
        if let Ok(entries) = std::fs::read_dir(path) {
            for entry in entries.flatten() {
                look(&entry.path(), uid, depth - 1, seen, found);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn files_left_open_by_an_earlier_release_are_found_and_left_alone() {
        let dir = std::env::temp_dir().join(format!("nb-private-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("snapshots")).unwrap();
        let log = dir.join("events-0001.log");
        let copy = dir.join("snapshots").join("s.nbf");
        let own = dir.join("LOCK");
        for f in [&log, &copy, &own] {
            std::fs::write(f, b"x").unwrap();
        }
        let set = |p: &Path, m: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
        };
        set(&dir, 0o750);
        set(&dir.join("snapshots"), 0o755);
        set(&log, 0o640);
        set(&copy, 0o644);
        set(&own, 0o600);
        // The readable copy counts; its folder, which others may only list, does not.
        let (n, first) = open_to_others(&dir);
        assert_eq!((n, first.as_deref()), (1, Some(copy.as_path())));
        assert_eq!(mode(&copy), 0o644, "looked at, never changed");
        set(&copy, 0o640);
        assert_eq!(open_to_others(&dir), (0, None));
        // A folder others may write into counts: they could put files in nextbest's place.
        set(&dir.join("snapshots"), 0o757);
        assert_eq!(open_to_others(&dir).0, 1);
        set(&dir.join("snapshots"), 0o755);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
