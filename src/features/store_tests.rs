//! Snapshot stores and mapped snapshots: admission, publishing, retention, races between
//! replicas, and a mapped store answering as an owned one does.

use super::*;

fn parse(text: &str) -> Result<FeatureStore, FeatureError> {
    FeatureStore::from_csv_bytes(text.as_bytes(), "t.csv")
}

/// Sets a file's modification time.
fn touch(path: &std::path::Path, at: std::time::SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(at)
        .unwrap();
}

/// A fresh folder under the temp dir, removed on drop.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "nbf-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    /// A snapshot store in the folder.
    fn store(&self) -> SnapshotStore {
        SnapshotStore::new(self.0.join("snapshots"))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Mixed columns: numbers, a number f32 does not hold (residuals), strings, missing cells,
/// and enough ids for the stored index to have collisions to probe past.
fn mixed(rows: usize) -> FeatureStore {
    mixed_from(rows, 0)
}

/// `mixed` with `shift` added to every row's `n`: with 1, a snapshot of the same length and
/// shape whose content differs, as tomorrow's export of the same customers is.
fn mixed_from(rows: usize, shift: usize) -> FeatureStore {
    let mut csv = String::from("customer_id,n,x,segment\n");
    for r in 0..rows {
        let seg = ["gold", "bronze", ""][r % 3];
        let x = if r % 5 == 0 {
            String::new()
        } else {
            format!("{}.2932", r)
        };
        csv.push_str(&format!("C{r:07},{},{x},{seg}\n", r + shift));
    }
    parse(&csv).unwrap()
}

#[test]
fn a_mapped_store_answers_as_the_owned_one_does() {
    let dir = Scratch::new("map");
    let owned = mixed(5_000);
    let src = dir.0.join("f.nbf");
    write_nbf(&owned, &src).unwrap();
    let store = dir.store();
    let mapped = FeatureStore::open(&src, Some(&store)).unwrap();
    let entry = mapped.mapped_file().unwrap().to_owned();
    assert_eq!(
        entry.parent().unwrap(),
        std::fs::canonicalize(store.dir()).unwrap()
    );
    assert_eq!(mapped.source(), src.display().to_string());
    assert_eq!(
        mapped.mapped_bytes() as u64,
        std::fs::metadata(&src).unwrap().len()
    );
    assert_eq!(mapped.len(), owned.len());
    assert_eq!(mapped.columns(), owned.columns());
    assert_eq!(mapped.exact(), owned.exact());
    for c in 0..3 {
        assert_eq!(mapped.dictionary(c), owned.dictionary(c));
    }
    for r in 0..owned.len() {
        let id = owned.id_at(r).unwrap();
        assert_eq!(mapped.id_at(r), Some(id));
        let (a, b) = (owned.exact_row(id).unwrap(), mapped.exact_row(id).unwrap());
        for c in 0..3 {
            assert_eq!(a.f64(c).to_bits(), b.f64(c).to_bits(), "{id} column {c}");
        }
    }
    for miss in ["C9999999", "", "C000000", "C00000001"] {
        assert!(mapped.row(miss).is_none(), "{miss}");
    }
    // Heap: names and dictionaries only; the values, ids and index stay in the page cache.
    assert!(mapped.bytes_held() < 1024, "{}", mapped.bytes_held());
    assert!(owned.bytes_held() > 5_000 * 12);
    // The same bytes back: the writer reads a mapped store as it reads an owned one.
    assert_eq!(mapped.to_nbf_bytes(), std::fs::read(&src).unwrap());
    // A second open of the same content maps the same entry without copying again, and so
    // does a path into the store itself.
    let again = FeatureStore::open(&src, Some(&store)).unwrap();
    assert_eq!(again.mapped_file(), Some(entry.as_path()));
    let direct = FeatureStore::open(&entry, Some(&store)).unwrap();
    assert_eq!(direct.mapped_file(), Some(entry.as_path()));
    // The content's CRC, the trailer's: the whole file's is one constant for every `.nbf`.
    let bytes = std::fs::read(&src).unwrap();
    let body = &bytes[..bytes.len() - 4];
    assert_eq!(mapped.file_crc(), Some(crc32fast::hash(body)));
    assert_eq!(
        bytes[bytes.len() - 4..],
        crc32fast::hash(body).to_le_bytes()
    );
}

#[test]
fn a_mapped_store_survives_its_source_changing_and_the_store_is_read_only() {
    let dir = Scratch::new("map-src");
    let s = mixed(300);
    let src = dir.0.join("f.nbf");
    write_nbf(&s, &src).unwrap();
    let store = dir.store();
    let mapped = FeatureStore::open(&src, Some(&store)).unwrap();
    let entry = mapped.mapped_file().unwrap().to_owned();
    assert!(std::fs::metadata(&entry).unwrap().permissions().readonly());
    // Truncated in place, overwritten in place, deleted: the mapped copy does not change.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&src)
        .unwrap()
        .set_len(10)
        .unwrap();
    let bits = |r: Option<&[f32]>| r.unwrap().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(mapped.row("C0000042")), bits(s.row("C0000042")));
    std::fs::write(&src, vec![0xAB; 4096]).unwrap();
    assert_eq!(bits(mapped.row("C0000299")), bits(s.row("C0000299")));
    std::fs::remove_file(&src).unwrap();
    assert_eq!(mapped.id_at(7), Some("C0000007"));
}

#[test]
fn a_damaged_file_is_refused_with_its_path_and_leaves_no_entry() {
    let dir = Scratch::new("map-bad");
    let s = mixed(300);
    let src = dir.0.join("f.nbf");
    write_nbf(&s, &src).unwrap();
    let mut bytes = std::fs::read(&src).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&src, &bytes).unwrap();
    let store = dir.store();
    let err = FeatureStore::open(&src, Some(&store))
        .unwrap_err()
        .to_string();
    assert!(err.starts_with(&src.display().to_string()), "{err}");
    assert!(err.contains("checksum"), "{err}");
    let left: Vec<_> = std::fs::read_dir(store.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != ".lock")
        .collect();
    assert!(left.is_empty(), "{left:?}");
    // An entry damaged in the store is removed, and the load copies its source again.
    bytes[mid] ^= 0x01;
    std::fs::write(&src, &bytes).unwrap();
    let entry = FeatureStore::open(&src, Some(&store))
        .unwrap()
        .mapped_file()
        .unwrap()
        .to_owned();
    let mut perms = std::fs::metadata(&entry).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&entry, perms).unwrap();
    let mut damaged = std::fs::read(&entry).unwrap();
    damaged[100] ^= 0x80;
    std::fs::write(&entry, &damaged).unwrap();
    let again = FeatureStore::open(&src, Some(&store)).unwrap();
    assert_eq!(again.mapped_file(), Some(entry.as_path()));
    assert_eq!(again.len(), 300);
    assert_eq!(std::fs::read(&entry).unwrap(), bytes);
}

#[test]
fn older_versions_and_csv_load_into_memory_even_with_a_store() {
    let dir = Scratch::new("map-old");
    let s = mixed(50);
    let store = dir.store();
    let v3 = dir.0.join("v3.nbf");
    std::fs::write(&v3, binary::write_v3(&s)).unwrap();
    let old = FeatureStore::open(&v3, Some(&store)).unwrap();
    assert!(old.mapped_file().is_none());
    assert_eq!(old.id_at(49), Some("C0000049"));
    assert_eq!(old.row("C0000049").unwrap()[0], 49.0);
    let csv = dir.0.join("f.csv");
    std::fs::write(&csv, "customer_id,a\nC1,1\n").unwrap();
    assert!(FeatureStore::open(&csv, Some(&store))
        .unwrap()
        .mapped_file()
        .is_none());
    assert!(!store.dir().exists(), "nothing was copied");
}

#[test]
fn retain_keeps_what_serves_and_the_previous_one() {
    let dir = Scratch::new("map-gc");
    let store = dir.store();
    let mut entries = Vec::new();
    for n in [10, 20, 30] {
        let src = dir.0.join(format!("f{n}.nbf"));
        write_nbf(&mixed(n), &src).unwrap();
        let m = FeatureStore::open(&src, Some(&store)).unwrap();
        entries.push(m.mapped_file().unwrap().to_owned());
    }
    std::fs::write(store.dir().join("notes.txt"), "not an entry").unwrap();
    // Copies a killed process left: one untouched for longer than a copy pauses, one being
    // written now.
    let left = store.dir().join(".0000abcd-10.nbf.41.1.tmp");
    let busy = store.dir().join(".0000abcd-10.nbf.42.2.tmp");
    std::fs::write(&left, "half a copy").unwrap();
    std::fs::write(&busy, "half a copy").unwrap();
    touch(
        &left,
        std::time::SystemTime::now() - super::snapshots::STALE_TMP * 2,
    );
    store.retain(&[&entries[2], &entries[1]]);
    assert!(!entries[0].exists());
    assert!(entries[1].exists() && entries[2].exists());
    assert!(store.dir().join("notes.txt").exists());
    assert!(!left.exists() && busy.exists());

    // The node's published snapshot stays whatever a replica keeps of its own loads.
    let published = store.publish(&dir.0.join("f10.nbf")).unwrap();
    store.retain(&[&entries[2]]);
    assert!(published.exists(), "current.nbf's entry was removed");
    assert!(!entries[1].exists());
    assert!(FeatureStore::open(&store.dir().join(super::snapshots::CURRENT), None).is_ok());
}

#[test]
fn a_crafted_index_finds_nothing_rather_than_faulting() {
    // A valid checksum over a table with every slot taken and no id matching: a lookup ends
    // after one pass.
    let s = mixed(20);
    let mut bytes = s.to_nbf_bytes();
    let index_off = u64::from_le_bytes(bytes[64..72].try_into().unwrap()) as usize;
    let slots = u64::from_le_bytes(bytes[index_off..index_off + 8].try_into().unwrap()) as usize;
    let body = bytes.len() - 4;
    for k in 0..slots {
        let at = index_off + 16 + k * 8;
        bytes[at..at + 8].copy_from_slice(&(u64::MAX).to_le_bytes());
    }
    let crc = crc32fast::hash(&bytes[..body]);
    bytes[body..].copy_from_slice(&crc.to_le_bytes());
    let dir = Scratch::new("map-crafted");
    let src = dir.0.join("f.nbf");
    std::fs::write(&src, &bytes).unwrap();
    let m = FeatureStore::open(&src, Some(&SnapshotStore::new(dir.0.join("s")))).unwrap();
    assert!(m.row("C0000001").is_none());
    assert_eq!(m.id_at(1), Some("C0000001"));
}

#[test]
fn publish_points_current_at_the_newest_entry_and_replicas_map_it_in_place() {
    let dir = Scratch::new("map-publish");
    let store = dir.store();
    let current = store.dir().join(snapshots::CURRENT);
    let mut published = Vec::new();
    for n in [10, 20, 30] {
        let src = dir.0.join(format!("f{n}.nbf"));
        write_nbf(&mixed(n), &src).unwrap();
        let entry = store.publish(&src).unwrap();
        assert_eq!(std::fs::canonicalize(&current).unwrap(), entry);
        // A replica given current.nbf maps the entry itself: nothing is copied.
        let before = std::fs::read_dir(store.dir()).unwrap().count();
        let m = FeatureStore::open(&current, Some(&store)).unwrap();
        assert_eq!(m.mapped_file(), Some(entry.as_path()));
        assert_eq!(m.len(), n);
        assert_eq!(std::fs::read_dir(store.dir()).unwrap().count(), before);
        published.push(entry);
    }
    // The newest and the one before it stay; the first is gone.
    assert!(!published[0].exists());
    assert!(published[1].exists() && published[2].exists());
    // An older version cannot be mapped: refused, naming the command that makes one.
    let v3 = dir.0.join("v3.nbf");
    std::fs::write(&v3, binary::write_v3(&mixed(5))).unwrap();
    let err = store.publish(&v3).unwrap_err().to_string();
    assert!(err.contains("features compile"), "{err}");
    assert_eq!(std::fs::canonicalize(&current).unwrap(), published[2]);
}

#[test]
fn an_entry_written_over_through_current_is_replaced_by_the_next_publish() {
    let dir = Scratch::new("map-overwritten");
    let store = dir.store();
    let (a, b) = (dir.0.join("a.nbf"), dir.0.join("b.nbf"));
    write_nbf(&mixed(10), &a).unwrap();
    write_nbf(&mixed(20), &b).unwrap();
    let entry = store.publish(&a).unwrap();
    // The operator's `cp b.nbf store/current.nbf`: through the link, into the entry.
    std::fs::write(
        store.dir().join(super::snapshots::CURRENT),
        std::fs::read(&b).unwrap(),
    )
    .unwrap();
    assert_ne!(std::fs::read(&entry).unwrap(), std::fs::read(&a).unwrap());
    assert_eq!(store.publish(&a).unwrap(), entry);
    assert_eq!(std::fs::read(&entry).unwrap(), std::fs::read(&a).unwrap());
    assert!(FeatureStore::open(&store.dir().join(super::snapshots::CURRENT), None).is_ok());
}

#[test]
fn a_snapshot_is_read_by_its_first_bytes_whatever_its_name() {
    let dir = Scratch::new("by-magic");
    let nbf = dir.0.join("snapshot.NBF");
    write_nbf(&mixed(12), &nbf).unwrap();
    let bin = dir.0.join("snapshot.bin");
    std::fs::copy(&nbf, &bin).unwrap();
    for p in [&nbf, &bin] {
        assert_eq!(FeatureStore::load(p).unwrap().len(), 12, "{}", p.display());
    }
    let store = dir.store();
    assert!(FeatureStore::open(&bin, Some(&store))
        .unwrap()
        .mapped_file()
        .is_some());
    let csv = dir.0.join("export");
    std::fs::write(&csv, "customer_id,x\nC1,1\n").unwrap();
    assert_eq!(FeatureStore::load(&csv).unwrap().len(), 1);
}

#[test]
fn a_replica_that_loses_the_race_to_name_its_copy_maps_the_winners() {
    let dir = Scratch::new("map-race");
    let store = dir.store();
    let src = dir.0.join("f.nbf");
    write_nbf(&mixed(10), &src).unwrap();
    let admitted = store.admit(&src).unwrap();
    // Another replica, starting at the same moment, names its own copy first.
    std::fs::copy(&src, &admitted.entry).unwrap();
    let s = FeatureStore::open_admitted(&store, &admitted, &src).unwrap();
    assert_eq!(s.mapped_file(), Some(admitted.entry.as_path()));
    assert!(!admitted.file.exists(), "this replica's copy stayed");
    assert_eq!(s.len(), 10);
    // The pages mapped are the winner's file, not this replica's unlinked copy.
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let tmp = admitted
        .file
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(!maps.contains(&tmp), "still mapping {tmp}");
    assert!(maps.contains(&*admitted.entry.to_string_lossy()));
}

#[test]
fn an_entry_keeps_its_sources_time_so_every_node_shows_the_datas_age() {
    let dir = Scratch::new("map-mtime");
    let store = dir.store();
    let src = dir.0.join("f.nbf");
    write_nbf(&mixed(10), &src).unwrap();
    let written = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_790_000_000);
    touch(&src, written);
    let s = FeatureStore::open(&src, Some(&store)).unwrap();
    let entry = s.mapped_file().unwrap();
    assert_eq!(
        std::fs::metadata(entry).unwrap().modified().unwrap(),
        written
    );
}

#[test]
fn an_entry_written_over_with_a_file_of_its_length_is_replaced() {
    let dir = Scratch::new("map-same-length");
    let store = dir.store();
    let (a, b) = (dir.0.join("a.nbf"), dir.0.join("b.nbf"));
    write_nbf(&mixed(40), &a).unwrap();
    write_nbf(&mixed_from(40, 1), &b).unwrap();
    let (ab, bb) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    assert!(
        ab.len() == bb.len() && ab != bb,
        "the same length, other content"
    );
    let entry = store.publish(&a).unwrap();
    assert!(!store.current_written_over());
    std::fs::write(store.dir().join(super::snapshots::CURRENT), &bb).unwrap();
    // The publisher's loop sees it, though its source did not change.
    assert!(store.current_written_over());
    // Loading `a` maps a's content, not what was written over its entry.
    let m = FeatureStore::open(&a, Some(&store)).unwrap();
    assert_eq!(m.mapped_file(), Some(entry.as_path()));
    assert_eq!(m.row("C0000003").unwrap()[0], 3.0);
    assert_eq!(std::fs::read(&entry).unwrap(), ab);
    assert!(!store.current_written_over());
}

/// A damaged entry is copied again however the store's path is written (through a link here,
/// a relative path in a manifest): the entry's path then differs from its canonical one.
#[test]
fn a_damaged_entry_of_a_store_named_through_a_link_is_copied_again() {
    let dir = Scratch::new("map-damaged-link");
    std::fs::create_dir_all(dir.0.join("real")).unwrap();
    std::os::unix::fs::symlink(dir.0.join("real"), dir.0.join("link")).unwrap();
    let store = SnapshotStore::new(dir.0.join("link"));
    let a = dir.0.join("a.nbf");
    write_nbf(&mixed(40), &a).unwrap();
    let entry = store.publish(&a).unwrap();
    let mut bytes = std::fs::read(&entry).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    std::fs::remove_file(&entry).unwrap();
    std::fs::write(&entry, &bytes).unwrap();
    let m = FeatureStore::open(&a, Some(&store)).unwrap();
    assert_eq!(m.len(), 40);
    assert_eq!(std::fs::read(&entry).unwrap(), std::fs::read(&a).unwrap());
    // Entries and the lock are the store's owner's and group's, closed to others.
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&entry).unwrap().permissions().mode() & 0o777,
        0o440
    );
    let lock = store.dir().join(".lock");
    assert_eq!(
        std::fs::metadata(&lock).unwrap().permissions().mode() & 0o777,
        0o660
    );
}

/// A publish as root into a store another user owns (an operator's manual publish beside the
/// node's publisher) leaves that user an entry and a lock it can use; as any other user, what
/// it makes is its own (only root can give files away).
#[test]
fn a_root_publish_gives_the_store_owner_its_entry_and_lock() {
    use std::os::unix::fs::MetadataExt as _;
    let root = rustix::process::geteuid().is_root();
    let dir = Scratch::new("map-root-publish");
    let store = dir.store();
    std::fs::create_dir_all(store.dir()).unwrap();
    if root {
        let (uid, gid) = (
            rustix::fs::Uid::from_raw(10001),
            rustix::fs::Gid::from_raw(10001),
        );
        rustix::fs::chown(store.dir(), Some(uid), Some(gid)).unwrap();
    }
    let a = dir.0.join("a.nbf");
    write_nbf(&mixed(20), &a).unwrap();
    let entry = store.publish(&a).unwrap();
    let owner = std::fs::metadata(store.dir()).unwrap().uid();
    for f in [entry, store.dir().join(".lock")] {
        let m = std::fs::metadata(&f).unwrap();
        assert_eq!(m.uid(), owner, "{}", f.display());
        if root {
            assert_eq!((m.uid(), m.gid()), (10001, 10001), "{}", f.display());
        }
    }
}
/// Two publishers into one store at once (a manual publish during the node's loop): each
/// round ends with `current.nbf` on an entry that is there, whichever won.
#[test]
fn two_publishers_at_once_leave_current_on_an_entry() {
    let dir = Scratch::new("map-two-publishers");
    let store = dir.store();
    let sources: Vec<std::path::PathBuf> = (0..24)
        .map(|i| {
            let p = dir.0.join(format!("s{i}.nbf"));
            write_nbf(&mixed(200 + i), &p).unwrap();
            p
        })
        .collect();
    let current = store.dir().join(super::snapshots::CURRENT);
    for pair in sources.chunks(2) {
        std::thread::scope(|s| {
            for src in pair {
                let store = store.clone();
                s.spawn(move || store.publish(src).unwrap());
            }
        });
        let served = std::fs::canonicalize(&current).expect("current.nbf names an entry");
        assert!(served.exists());
        assert!(FeatureStore::open(&current, Some(&store)).is_ok());
    }
}
