//! The snapshot store: the folder of `.nbf` files nextbest maps (`--snapshot-store`, by default
//! `<data>/snapshots`), one file per content, named `<crc32>-<length>.nbf` from the CRC-32 and
//! length the file carries.
//!
//! A mapped file must not change while mapped: a truncation would fault the process (SIGBUS)
//! and an overwrite would change answers mid-request. The source path a data team publishes
//! to is not safe to map (it may be rewritten or truncated in place), so a load copies it
//! here first (a plain copy in large writes: see `copy`), under a temporary name, and names the copy only once its checksum has been verified. A
//! source whose entry is already there is read through once to check it is that content. An
//! entry is read-only and never written again; replacing a snapshot adds an entry, and
//! [`SnapshotStore::retain`] removes the ones no longer served once the new one serves (the
//! previous one is kept for a rollback). Removing a mapped file is safe: its pages live until
//! the last map of it goes.
//!
//! Replicas of one node share pages only if they map the same file, so they share one store:
//! a node-local volume. When the source already lies in the store (a path into it, or a
//! symlink to an entry, as a DaemonSet publishes), nothing is copied, and the store may be
//! mounted read-only. A process admits and publishes with the store's lock held (`.lock`,
//! `flock`, the file open to every user of the store), so replicas starting together copy a
//! snapshot once (the others wait, then map the entry) and a publisher never removes an entry
//! another has just pointed `current.nbf` at; pruning after a reload takes the lock only if it
//! is free, and a replica mapping an entry in place takes none (the entries `current.nbf` names
//! now and named before are never pruned), so neither waits on a publisher's copy. Should two
//! copies still race (a build that takes no lock), the first to name its copy wins (a hard link
//! never replaces an entry) and the other drops its own. An entry whose last bytes are not the
//! checksum and length its name says was written over, and is replaced; one damaged inside is
//! found by the map's checksum and copied again from its source. Entries and the lock file
//! belong to the store's owner and group (0440, 0660), whoever made them.
//!
//! The name holds a 32-bit checksum, not a cryptographic hash: two different snapshots of the
//! same length with the same CRC-32 would share a name, a 2^-32 chance per pair of snapshots in
//! the store (a handful at a time), accepted for a start that reads 8 bytes of the source
//! instead of hashing all of it. Must not: write into an entry, or remove anything but entries
//! and its own temporaries.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::FeatureError;

/// The link a publisher points at the newest entry: give replicas `--features
/// <store>/current.nbf` and they map whatever was published last, with nothing to copy.
pub const CURRENT: &str = "current.nbf";

/// The folder of mapped snapshot files, shared by the replicas of a node.
#[derive(Debug, Clone)]
pub struct SnapshotStore {
    dir: PathBuf,
}

/// A source admitted into the store: the file to map, and the entry it is (or becomes).
pub(super) struct Admitted {
    /// What to map: the entry, or a verified-to-be copy under a temporary name.
    pub(super) file: PathBuf,
    /// The entry's name in the store.
    pub(super) entry: PathBuf,
    /// True when `file` is a fresh copy to be named `entry` once it opens.
    fresh: bool,
    /// True when `file` is an entry found in the store for a source outside it: damaged, it
    /// can be copied again from the source.
    pub(super) found: bool,
}

/// The store's lock file. A process holds it while it copies, publishes or prunes, so two of
/// them never copy one snapshot twice into a store with room for one, nor remove an entry the
/// other has just named.
const LOCK: &str = ".lock";

/// The store's lock, released when dropped (`None`: the store has no lock file to take).
pub(super) struct StoreLock {
    _file: Option<std::fs::File>,
}

impl SnapshotStore {
    /// The store in `dir` (created on the first copy).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Takes the store's lock, waiting (and saying so) for the process holding it. The lock
    /// file belongs to the store's owner and group and is readable by them (a manual publish
    /// as root and the node's publisher as its own user must take the same lock), and an
    /// exclusive lock needs only a read; a store where no lock file can be opened is used
    /// without one, and says so.
    pub(super) fn lock(&self) -> StoreLock {
        let file = self.lock_file();
        if let Some(f) = &file {
            if matches!(f.try_lock(), Err(std::fs::TryLockError::WouldBlock)) {
                tracing::info!(store = %self.dir.display(), "snapshot store: waiting for another process copying or publishing into it");
            }
        }
        match file {
            Some(f) if f.lock().is_ok() => StoreLock { _file: Some(f) },
            _ => {
                tracing::warn!(store = %self.dir.display(), "snapshot store: its lock file cannot be opened (permissions?); going on without it, so two processes changing the store at once may undo each other: make {} readable by every user of the store", self.dir.join(LOCK).display());
                StoreLock { _file: None }
            }
        }
    }

    /// Makes a file the store's owner's and group's when this process runs as root (an
    /// operator's manual publish), so the store's user can read what it made.
    fn give_to_store(&self, file: &std::fs::File) {
        use std::os::unix::fs::MetadataExt as _;
        if !rustix::process::geteuid().is_root() {
            return;
        }
        if let Ok(m) = std::fs::metadata(&self.dir) {
            let (uid, gid) = (
                rustix::fs::Uid::from_raw(m.uid()),
                rustix::fs::Gid::from_raw(m.gid()),
            );
            let _ = rustix::fs::fchown(file, Some(uid), Some(gid));
        }
    }

    /// The store's lock if no other process holds it (pruning after a reload waits for no
    /// publisher: the next publish prunes).
    fn try_lock(&self) -> Option<std::fs::File> {
        let f = self.lock_file()?;
        f.try_lock().ok().map(|()| f)
    }

    /// The lock file, made (the store's owner's and group's, 0660) if the store has none yet.
    fn lock_file(&self) -> Option<std::fs::File> {
        use std::os::unix::fs::PermissionsExt as _;
        let path = self.dir.join(LOCK);
        let made = std::fs::create_dir_all(&self.dir).ok().and_then(|()| {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)
                .ok()
        });
        if let Some(f) = &made {
            self.give_to_store(f);
            let _ = f.set_permissions(std::fs::Permissions::from_mode(0o660));
        }
        made.or_else(|| std::fs::File::open(&path).ok())
    }

    /// Finds or copies the entry for `source` (see the module doc).
    pub(super) fn admit(&self, source: &Path) -> Result<Admitted, FeatureError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| FeatureError::Io { path, source }
        };
        let real = std::fs::canonicalize(source).map_err(io(source))?;
        if self.holds(&real) {
            return Ok(Admitted {
                file: real.clone(),
                entry: real,
                fresh: false,
                found: false,
            });
        }
        let (crc, len) = trailer(source).map_err(io(source))?;
        let entry = self.dir.join(entry_name(crc, len));
        if let Some(found) = trailer(&entry).ok().filter(|&t| t != (crc, len)) {
            // Its name says its checksum and length: another file was written over it (a `cp`
            // onto current.nbf writes through the link). Make way for the good copy.
            tracing::warn!(
                file = %entry.display(), size = found.1, checksum = format_args!("{:08x}", found.0),
                "snapshot store: an entry was written over (its checksum or size is not the one its name says); it is replaced"
            );
            let _ = std::fs::remove_file(&entry);
        }
        if std::fs::metadata(&entry).is_ok_and(|m| m.len() == len) {
            // The source's own bytes must be what its trailer claims, or a damaged file would
            // pass for the good copy of the same name: read through once, nothing kept.
            let checked = body_crc(source, len).map_err(io(source))?;
            drop_pages(source);
            if checked != crc {
                return Err(FeatureError::Format {
                    path: source.to_owned(),
                    detail: "checksum mismatch: the file is damaged".into(),
                });
            }
            return Ok(Admitted {
                file: entry.clone(),
                entry,
                fresh: false,
                found: true,
            });
        }
        std::fs::create_dir_all(&self.dir).map_err(|source| FeatureError::Store {
            store: self.dir.clone(),
            source,
        })?;
        let tmp = self.dir.join(format!(
            ".{}.{}.{}.tmp",
            entry_name(crc, len),
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        let in_store = |source| FeatureError::Store {
            store: self.dir.clone(),
            source,
        };
        let copied = (|| {
            copy(source, &tmp, &self.dir)?;
            // The copy keeps the source's time: a snapshot's age is its data's, the same on
            // every node whenever each one's publisher copied it.
            if let Ok(t) = std::fs::metadata(source).and_then(|m| m.modified()) {
                std::fs::File::options()
                    .write(true)
                    .open(&tmp)
                    .and_then(|f| f.set_modified(t))
                    .map_err(in_store)?;
            }
            let file = std::fs::File::open(&tmp).map_err(in_store)?;
            // Read-only, the store's owner's and group's whoever copied it (a manual publish
            // as root must not leave the replicas' user an entry it cannot map).
            use std::os::unix::fs::PermissionsExt as _;
            self.give_to_store(&file);
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o440))
                .and_then(|()| file.sync_all())
                .map_err(in_store)?;
            trailer(&tmp).map_err(in_store)
        })();
        match copied {
            Ok(found) if found == (crc, len) => Ok(Admitted {
                file: tmp,
                entry,
                fresh: true,
                found: false,
            }),
            Ok(_) => {
                let _ = std::fs::remove_file(&tmp);
                Err(FeatureError::Format {
                    path: source.to_owned(),
                    detail: "the file changed while it was copied into the snapshot store".into(),
                })
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    /// After the admitted file was opened (`ok`) or refused: names a fresh copy, or drops it;
    /// a damaged entry is removed so the next load copies the source again. True when another
    /// process named its own copy first (replicas starting together): the caller should map
    /// that entry instead, so the node's replicas share one copy's pages.
    pub(super) fn settle(&self, admitted: &Admitted, ok: bool) -> bool {
        let mut lost = false;
        let result = match (admitted.fresh, ok) {
            (true, true) => match std::fs::hard_link(&admitted.file, &admitted.entry) {
                Ok(()) => sync_dir(&self.dir),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    lost = true;
                    Ok(())
                }
                Err(e) => Err(e),
            }
            .and_then(|()| std::fs::remove_file(&admitted.file)),
            (true, false) => std::fs::remove_file(&admitted.file),
            (false, true) => Ok(()),
            (false, false) if admitted.found || self.holds(&admitted.entry) => {
                std::fs::remove_file(&admitted.entry)
            }
            (false, false) => Ok(()),
        };
        if let Err(e) = result {
            tracing::warn!(file = %admitted.file.display(), error = %e, "snapshot store: could not settle a load");
        }
        lost
    }

    /// Publishes `source` into the store as a node's publisher does (`nextbest features
    /// publish`): admits and verifies it, points [`CURRENT`] at its entry (a relative symlink
    /// replaced by a rename, so a replica opening it finds the old entry or the new one), and
    /// keeps only it and the entry `current.nbf` pointed to before. Returns the entry.
    pub fn publish(&self, source: &Path) -> Result<PathBuf, FeatureError> {
        // The store's faults are said plainly to the one who publishes into it (the advice a
        // replica's reload gets is to publish).
        let plain = |e| match e {
            FeatureError::Store { store, source: e } => FeatureError::Io {
                path: store,
                source: std::io::Error::new(
                    e.kind(),
                    format!("copying {} into the store: {e}", source.display()),
                ),
            },
            e => e,
        };
        let _lock = self.lock();
        let store = super::FeatureStore::open_in_store(source, self).map_err(plain)?;
        let Some(entry) = store.mapped_file().map(Path::to_owned) else {
            return Err(not_mappable(source));
        };
        let (customers, published) = (store.len(), self.dir.join(CURRENT));
        drop(store);
        // Replicas reload what is published here: a half-written export is said before they do.
        if let Some(w) = rows_of(&published).and_then(|before| super::shrunk(before, customers)) {
            tracing::warn!(source = %source.display(), "{w}");
        }
        let io = |source| FeatureError::Io {
            path: self.dir.join(CURRENT),
            source,
        };
        let current = self.dir.join(CURRENT);
        let previous = std::fs::canonicalize(&current).ok();
        let tmp = self
            .dir
            .join(format!(".{CURRENT}.{}.tmp", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        let name = entry
            .file_name()
            .ok_or_else(|| io(std::io::ErrorKind::InvalidInput.into()))?;
        std::os::unix::fs::symlink(name, &tmp).map_err(io)?;
        std::fs::rename(&tmp, &current).map_err(io)?;
        sync_dir(&self.dir).map_err(io)?;
        let keep: Vec<&Path> = [Some(entry.as_path()), previous.as_deref()]
            .into_iter()
            .flatten()
            .collect();
        self.retain_locked(&keep);
        Ok(entry)
    }

    /// Removes the entries not in `keep` (what serves now and the previous one) except the one
    /// [`CURRENT`] names, which replicas starting later open (a replica loading a file of its
    /// own must not take the node's published snapshot away), and temporary copies left by a
    /// process killed while copying (untouched for [`STALE_TMP`]); a read-only store is left as
    /// it is.
    pub fn retain(&self, keep: &[&Path]) {
        match self.try_lock() {
            Some(_lock) => self.retain_locked(keep),
            None => {
                tracing::debug!(store = %self.dir.display(), "snapshot store: busy; pruning left to the next publish or reload")
            }
        }
    }

    /// [`SnapshotStore::retain`] with the store's lock held.
    fn retain_locked(&self, keep: &[&Path]) {
        let Ok(list) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let current = self.dir.join(CURRENT);
        let keep: Vec<PathBuf> = keep
            .iter()
            .copied()
            .chain([current.as_path()])
            .filter_map(|p| std::fs::canonicalize(p).ok())
            .collect();
        for path in list.flatten().map(|e| e.path()) {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.starts_with('.') && name.ends_with(".tmp") {
                remove_if_stale(&path);
                continue;
            }
            if !is_entry_name(name) {
                continue;
            }
            let Ok(real) = std::fs::canonicalize(&path) else {
                continue;
            };
            if !keep.contains(&real) {
                match std::fs::remove_file(&path) {
                    Ok(()) => {
                        tracing::info!(file = %path.display(), "snapshot store: removed an entry neither published nor served here (a replica still mapping it keeps its pages, and its disk space, until it lets go)")
                    }
                    Err(e) => {
                        tracing::debug!(file = %path.display(), error = %e, "snapshot store: entry kept")
                    }
                }
            }
        }
    }

    /// True when `source` is an entry of this store (`current.nbf`, say): a replica maps it in
    /// place, copying nothing, and takes no lock for it (the entry `current.nbf` names and the
    /// one before it are never pruned, so it cannot go while being opened).
    pub(super) fn maps_in_place(&self, source: &Path) -> bool {
        std::fs::canonicalize(source).is_ok_and(|real| self.holds(&real))
    }

    /// True when the entry [`CURRENT`] names no longer ends in the checksum and length its name
    /// says (written over through the link): a publisher publishes its source again.
    pub fn current_written_over(&self) -> bool {
        let Ok(real) = std::fs::canonicalize(self.dir.join(CURRENT)) else {
            return false;
        };
        let name = real.file_name().and_then(|n| n.to_str()).unwrap_or("");
        entry_of_name(name).is_some_and(|n| trailer(&real).is_ok_and(|t| t != n))
    }

    /// True when `real` (a canonical path) is an entry of this store.
    fn holds(&self, real: &Path) -> bool {
        let name = real.file_name().and_then(|n| n.to_str()).unwrap_or("");
        is_entry_name(name)
            && std::fs::canonicalize(&self.dir).is_ok_and(|d| real.parent() == Some(d.as_path()))
    }
}

/// How long a temporary copy may go unwritten before it counts as left by a killed process: a
/// copy in progress writes far more often than this.
pub const STALE_TMP: std::time::Duration = std::time::Duration::from_secs(60);

/// Removes a temporary file no process has written for [`STALE_TMP`].
fn remove_if_stale(path: &Path) {
    let idle = std::fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok());
    if idle.is_some_and(|idle| idle >= STALE_TMP) && std::fs::remove_file(path).is_ok() {
        tracing::info!(file = %path.display(), "snapshot store: removed a copy left by a process killed while copying");
    }
}

/// Why a file cannot be published or mapped from the store.
pub(super) fn not_mappable(path: &Path) -> FeatureError {
    FeatureError::Format {
        path: path.to_owned(),
        detail: "not a version 4 .nbf: compile it with `nextbest features compile`".into(),
    }
}

/// The customers a version 4 `.nbf` holds, read from its header (after the magic and the
/// header's length); `None` for anything else.
fn rows_of(path: &Path) -> Option<usize> {
    let mut head = [0u8; 16];
    std::fs::File::open(path).ok()?.read_exact(&mut head).ok()?;
    let rows = u64::from_le_bytes(head[8..16].try_into().ok()?);
    (head[..4] == super::binary::MAGIC_V4[..]).then_some(rows as usize)
}

/// An entry's name: the file's own CRC-32 (its last 4 bytes) and its length.
fn entry_name(crc: u32, len: u64) -> String {
    format!("{crc:08x}-{len}.nbf")
}

/// True for a name [`entry_name`] makes.
fn is_entry_name(name: &str) -> bool {
    entry_of_name(name).is_some()
}

/// The CRC-32 and length an entry's name says ([`entry_name`]'s inverse).
fn entry_of_name(name: &str) -> Option<(u32, u64)> {
    let (crc, len) = name.strip_suffix(".nbf")?.split_once('-')?;
    let well_formed = crc.len() == 8
        && crc.bytes().all(|b| b.is_ascii_hexdigit())
        && !len.is_empty()
        && len.bytes().all(|b| b.is_ascii_digit());
    well_formed.then_some((u32::from_str_radix(crc, 16).ok()?, len.parse().ok()?))
}

/// The CRC-32 a `.nbf` file ends with, and its length.
fn trailer(path: &Path) -> std::io::Result<(u32, u64)> {
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    if len < 4 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    f.seek(SeekFrom::Start(len - 4))?;
    let mut crc = [0u8; 4];
    f.read_exact(&mut crc)?;
    Ok((u32::from_le_bytes(crc), len))
}

/// CRC-32 naming a file's content (a snapshot's version): for a file that ends in the CRC of
/// what precedes it (a `.nbf`), that CRC, since the CRC of such a whole file is one constant
/// for all of them; for a folder of Parquet parts, the CRC of its parts; for any other file,
/// the CRC of the whole file.
pub fn content_crc(path: &Path) -> std::io::Result<u32> {
    if path.is_dir() {
        return super::parts::folder_crc(path);
    }
    let (stored, len) = match trailer(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            return Ok(crc32fast::hash(&std::fs::read(path)?))
        }
        Err(e) => return Err(e),
    };
    let body = body_crc(path, len)?;
    if body == stored {
        return Ok(body);
    }
    let mut whole = crc32fast::Hasher::new_with_initial_len(body, len - 4);
    whole.update(&stored.to_le_bytes());
    Ok(whole.finalize())
}

/// CRC-32 of a file's first `len - 4` bytes (all but its checksum).
fn body_crc(path: &Path, len: u64) -> std::io::Result<u32> {
    let mut h = crc32fast::Hasher::new();
    crate::files::crc_feed(
        &mut h,
        std::fs::File::open(path)?.take(len.saturating_sub(4)),
    )?;
    Ok(h.finalize())
}

/// Copies a file in 2 MiB writes, so the page cache can hold the copy in large folios that a
/// map uses as huge pages (measured so on ext4; lookups on a map of a `std::fs::copy` copy
/// measured 2.5 times slower: BENCHMARKS.md, issue 33).
fn copy(from: &Path, to: &Path, store: &Path) -> Result<(), FeatureError> {
    use std::io::Write as _;
    let read = |source| FeatureError::Io {
        path: from.to_owned(),
        source,
    };
    let write = |source| FeatureError::Store {
        store: store.to_owned(),
        source,
    };
    let mut src = std::fs::File::open(from).map_err(read)?;
    let mut dst = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(to)
        .map_err(write)?;
    let mut buf = vec![0u8; 2 << 20];
    loop {
        let mut filled = 0;
        while filled < buf.len() {
            match src.read(&mut buf[filled..]).map_err(read)? {
                0 => break,
                n => filled += n,
            }
        }
        if filled == 0 {
            drop_pages(from);
            return Ok(());
        }
        dst.write_all(&buf[..filled]).map_err(write)?;
    }
}

/// Drops a source's pages from the page cache once read: they are charged to the reading
/// process's memory cgroup (the node's publisher), where they would push out the pages of the
/// entry the replicas serve.
fn drop_pages(path: &Path) {
    if let Ok(f) = std::fs::File::open(path) {
        let _ = rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed);
    }
}

/// Syncs a folder, so a name made in it survives a crash.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}
