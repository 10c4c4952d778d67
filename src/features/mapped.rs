//! A version 4 `.nbf` used in place: the file is mapped read-only and the store's values, ids,
//! residuals and id index are sections of that map (`section`), so every replica of a node
//! that maps the same file shares its pages through the page cache, and a reload holds no
//! second copy in anonymous memory.
//!
//! Only files in the snapshot store (`snapshots`) are mapped: nextbest fills it by copying,
//! never writes an entry once it is named, and replaces nothing in place, so a page of the map
//! cannot change or vanish under a request (a truncated mapped file would raise SIGBUS).
//!
//! Opening checks, before any request can see the store: the CRC-32 of the whole file (read in
//! two halves on two threads and combined), the head as the in-memory reader checks it, every
//! section's offset, length and alignment, the ids' offsets and UTF-8, and that every value is
//! finite and every string cell a code of its dictionary (or missing). What the checksum
//! vouches for and a damaged table could only turn into a miss (duplicate ids, the stored
//! index's slots, residuals rounding back) is not scanned: lookups read every slot with bounds
//! checks. Must not: map a file outside the store, or write to a map.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::{Mmap, MmapOptions};

use super::binary::{index_slots, read_head, CrcReader, Fault, Head, INDEX_HEAD, MAGIC_V4};
use super::csv_load::MAX_ID_BYTES;
use super::dictionary::Dictionary;
use super::exact::ExactColumns;
use super::index::{Ids, StoredIndex};
use super::section::Section;
use super::{FeatureError, FeatureStore};

/// The map a store's sections read, with what the memory report and the version need.
pub(super) struct Mapping {
    /// The snapshot-store file mapped.
    pub(super) path: PathBuf,
    pub(super) map: Arc<Mmap>,
    /// CRC-32 of the file's content, the checksum its trailer carries (checked at open): the
    /// figure `FeatureVersion` reports.
    pub(super) file_crc: u32,
}

/// True when `path` is a version 4 `.nbf` (by its magic, whatever its name): what a store
/// maps.
pub(super) fn is_mappable(path: &Path) -> Result<bool, FeatureError> {
    use std::io::Read as _;
    let mut magic = [0u8; 4];
    let read = std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut magic));
    match read {
        Ok(()) => Ok(&magic == MAGIC_V4),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(source) => Err(FeatureError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Maps `file` (a store entry, or the copy about to become `entry`) and builds a store over
/// it; `source` (the path the operator gave) names the snapshot in errors and in
/// [`FeatureStore::source`].
pub(super) fn open(file: &Path, entry: &Path, source: &Path) -> Result<FeatureStore, FeatureError> {
    let bad = |detail: String| FeatureError::Format {
        path: source.to_owned(),
        detail: format!("{detail} (snapshot store file {})", entry.display()),
    };
    let io = |e| FeatureError::Io {
        path: file.to_owned(),
        source: e,
    };
    let file = std::fs::File::open(file).map_err(io)?;
    let map = Arc::new(map_file(&file).map_err(io)?);
    let bytes: &[u8] = &map;
    let Some(body_len) = bytes.len().checked_sub(4) else {
        return Err(bad("truncated file".into()));
    };
    let (body, stored) = bytes.split_at(body_len);
    let stored = u32::from_le_bytes(stored.try_into().unwrap_or_default());
    let crc = crc_of(body);
    if crc != stored {
        return Err(bad("checksum mismatch: the file is damaged".into()));
    }
    // The whole file's CRC is the same for every such file (it ends in its own CRC): the
    // content's tells snapshots apart.
    let file_crc = crc;
    if body.get(..4) != Some(MAGIC_V4) {
        return Err(bad("not a version 4 snapshot".into()));
    }
    let mut r = CrcReader {
        inner: &body[4..],
        crc: crc32fast::Hasher::new(),
    };
    let head = read_head(&mut r, bytes.len() as u64, true).map_err(|e| match e {
        Fault::Io(_) => bad("truncated file".into()),
        Fault::Bad(detail) => bad(detail),
    })?;
    let store = build(&map, body_len, head).map_err(bad)?;
    Ok(FeatureStore {
        source: source.display().to_string(),
        mapping: Some(Mapping {
            path: entry.to_owned(),
            map,
            file_crc,
        }),
        ..store
    })
}

/// Maps a whole file read-only, its pages faulted in now (they are read by the checksum next).
#[allow(unsafe_code)]
fn map_file(file: &std::fs::File) -> std::io::Result<Mmap> {
    // SAFETY: the map is read-only and the file is a snapshot-store entry, which nextbest
    // never writes or truncates once named (see the module doc), so its bytes do not change
    // while mapped; every read of the map goes through bounds-checked slices.
    let map = unsafe { MmapOptions::new().populate().map(file) }?;
    // Huge pages where the page cache holds the file in 2 MiB folios (the store's copy is
    // written so): one TLB entry for 2 MiB of rows instead of 512. Only advice: a kernel or
    // file system without it maps 4 KiB pages.
    let _ = map.advise(memmap2::Advice::HugePage);
    Ok(map)
}

/// CRC-32 of `bytes`, its two halves computed on two threads and combined.
fn crc_of(bytes: &[u8]) -> u32 {
    let (a, b) = bytes.split_at(bytes.len() / 2);
    let crc = |part: &[u8]| {
        let mut h = crc32fast::Hasher::new();
        h.update(part);
        h
    };
    std::thread::scope(|s| {
        let second = s.spawn(|| crc(b));
        let mut first = crc(a);
        match second.join() {
            Ok(h) => {
                first.combine(&h);
                first.finalize()
            }
            // The thread only hashes: a panic there cannot happen; hash on this one if it did.
            Err(_) => crc32fast::hash(bytes),
        }
    })
}

/// Lays the sections out from the head, checking each against the file and the next one's
/// offset, then checks the ids and the values (see the module doc).
fn build(map: &Arc<Mmap>, body_len: usize, head: Head) -> Result<FeatureStore, String> {
    let Head {
        rows,
        n_exact,
        columns,
        dicts,
        ids_off,
        values_off,
        exact_off,
        index_off,
    } = head;
    let cols = columns.len();
    let pad8 = |n: usize| n.div_ceil(8) * 8;
    let off = |o: u64| usize::try_from(o).map_err(|_| format!("offset {o}"));
    let expect = |pos: usize, o: u64, what: &str| {
        if pos as u64 == o {
            Ok(())
        } else {
            Err(format!("{what} section at offset {o}, expected {pos}"))
        }
    };
    let section_err = |what: &str| format!("{what} section lies outside the file");
    let ends_off = off(ids_off)?;
    let ends: Section<u32> =
        Section::mapped(map, ends_off, rows).ok_or_else(|| section_err("ids"))?;
    let arena_len = ends.last().map_or(0, |e| *e as usize);
    let arena_off = pad8(ends_off + rows * 4);
    let arena: Section<u8> =
        Section::mapped(map, arena_off, arena_len).ok_or_else(|| section_err("ids"))?;
    check_ids(&arena, &ends)?;
    expect(pad8(arena_off + arena_len), values_off, "values")?;
    let values_at = off(values_off)?;
    let values: Section<f32> =
        Section::mapped(map, values_at, rows * cols).ok_or_else(|| section_err("values"))?;
    expect(pad8(values_at + rows * cols * 4), exact_off, "exact")?;
    let mut pos = off(exact_off)?;
    let exact = if n_exact > 0 {
        let cols_at: Section<u32> =
            Section::mapped(map, pos, n_exact).ok_or_else(|| section_err("exact"))?;
        let res_at = pad8(pos + n_exact * 4);
        let residuals: Section<i32> =
            Section::mapped(map, res_at, rows * n_exact).ok_or_else(|| section_err("exact"))?;
        pos = pad8(res_at + rows * n_exact * 4);
        ExactColumns::from_parts(cols_at.to_vec(), residuals)
    } else {
        ExactColumns::default()
    };
    expect(pos, index_off, "index")?;
    let index_head: Section<u64> =
        Section::mapped(map, pos, 2).ok_or_else(|| section_err("index"))?;
    let (slots, hash) = (index_head[0], index_head[1] as u32);
    let room = body_len.saturating_sub(pos + INDEX_HEAD) as u64;
    let n_slots = index_slots(slots, hash, rows, room).map_err(|e| match e {
        Fault::Bad(d) => d,
        Fault::Io(e) => e.to_string(),
    })?;
    let slots_at = pos + INDEX_HEAD;
    if slots_at + n_slots * 8 != body_len {
        return Err(format!(
            "{} bytes between the id index and the checksum",
            body_len as i64 - (slots_at + n_slots * 8) as i64
        ));
    }
    let slots = Section::mapped(map, slots_at, n_slots).ok_or_else(|| section_err("index"))?;
    check_values(&values, &columns, &dicts)?;
    let slot_of = exact.slot_of(values.len(), cols)?;
    let dicts = match dicts.iter().all(Option::is_none) {
        true => Box::default(),
        false => dicts.into_boxed_slice(),
    };
    Ok(FeatureStore {
        missing: vec![f32::NAN; columns.len()].into(),
        columns: columns.into_iter().map(String::into_boxed_str).collect(),
        values,
        exact,
        slot_of,
        dicts,
        ids: Ids::Stored(StoredIndex { arena, ends, slots }),
        source: String::new(),
        mapping: None,
        left_out: Box::default(),
        turned: Box::default(),
        no_value: std::sync::OnceLock::new(),
    })
}

/// Every id non-empty, at most [`MAX_ID_BYTES`], UTF-8, and the offsets covering the arena.
fn check_ids(arena: &[u8], ends: &[u32]) -> Result<(), String> {
    let text = std::str::from_utf8(arena).map_err(|_| "customer ids are not UTF-8".to_string())?;
    let mut start = 0usize;
    for (row, &end) in ends.iter().enumerate() {
        let end = end as usize;
        if end <= start || end - start > MAX_ID_BYTES || !text.is_char_boundary(end) {
            return Err(format!("row {row}: bad id offset"));
        }
        start = end;
    }
    Ok(())
}

/// Every value finite or missing, every string cell a code of its dictionary or missing: one
/// pass over the rows, two threads, each row compared with per-column bounds.
fn check_values(
    values: &[f32],
    columns: &[String],
    dicts: &[Option<Dictionary>],
) -> Result<(), String> {
    let cols = columns.len();
    if cols == 0 {
        return Ok(());
    }
    let bound = |c: usize| match dicts.get(c).and_then(Option::as_ref) {
        Some(d) => (0.0, d.len() as f32 - 1.0),
        None => (f32::MIN, f32::MAX),
    };
    let (lo, hi): (Vec<f32>, Vec<f32>) = (0..cols).map(bound).unzip();
    let rows_bad = |part: &[f32]| {
        part.chunks_exact(cols).position(|row| {
            row.iter()
                .zip(lo.iter().zip(&hi))
                .fold(false, |bad, (&v, (&l, &h))| {
                    bad | !((v >= l && v <= h) || v.is_nan())
                })
        })
    };
    let rows = values.len() / cols;
    let (a, b) = values.split_at(rows / 2 * cols);
    let found = std::thread::scope(|s| {
        let second = s.spawn(|| rows_bad(b));
        let first = rows_bad(a);
        first.or_else(|| second.join().unwrap_or(Some(0)).map(|r| r + rows / 2))
    });
    let Some(row) = found else { return Ok(()) };
    let (c, v) = (0..cols)
        .map(|c| (c, values[row * cols + c]))
        .find(|&(c, v)| !((v >= lo[c] && v <= hi[c]) || v.is_nan()))
        .unwrap_or((0, f32::NAN));
    Err(match dicts.get(c).and_then(Option::as_ref) {
        Some(d) => format!(
            "row {row}, column `{}`: {v} is not a code of its {} values",
            columns[c],
            d.len()
        ),
        None => format!(
            "row {row}, column `{}`: {v} is not a finite number",
            columns[c]
        ),
    })
}
