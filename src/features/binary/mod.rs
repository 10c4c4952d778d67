//! The compact binary form of a snapshot (`.nbf`), written by `nextbest features compile`.
//!
//! **Version 4** (`b"NBF4"`, what is written) is used in place from a read-only memory map
//! (`features::mapped`): every integer little-endian, every section starting at an offset that
//! is a multiple of 8 (zero bytes pad the gaps), and a fixed header that gives each section's
//! offset, so a reader finds any section without reading the ones before and a mapped section
//! is aligned for the values it holds (a map starts on a page):
//!
//! ```text
//! header (72 bytes): magic "NBF4", header_len u32 (72), rows u64, cols u32, exact_cols u32,
//!     columns_off u64, dicts_off u64, ids_off u64, values_off u64, exact_off u64, index_off u64
//! columns:  cols x {kind u32 (0 number, 1 string), name_len u32}, then the names' UTF-8 bytes
//! dicts:    per string column, in column order: {count u32, bytes u32}, count x end u32,
//!           then the values' bytes, sorted by bytes, distinct, non-empty (padded to 8)
//! ids:      rows x end u32 (padded to 8), then the id bytes (arena)
//! values:   rows x cols x f32, row-major; NaN is missing; a string cell holds its value's
//!           code in the column's dictionary (an integer below 65,536, exact in f32)
//! exact:    exact_cols x u32 ascending column indices (padded to 8), then
//!           rows x exact_cols x i32 residuals (see `exact`), padded to 8
//! index:    slots u64 (a power of two), hash u32 (1: XXH3-64), 0u32, then slots x u64
//!           (the stored id index, see `index`)
//! crc32:    u32 over every byte before it; nothing after it
//! ```
//!
//! A string cell costs 4 bytes like a number (a u16 code would save 2 bytes but break the
//! one-slice row every reader and the tree walk take). **Version 3** (`b"NBF3"`) is the same
//! without the index (`index_off` 0, the exact section unpadded); it loads into memory with
//! the index rebuilt. Versions 1 and 2 also load: `b"NBF1"`, `rows: u64`, `cols: u32`, per
//! column `len: u16` + UTF-8 name, `arena_len: u64` + id bytes, `rows` x `end: u32`,
//! `rows * cols` x `f32`, then a CRC-32 of everything before it; version 2 (`b"NBF2"`) adds,
//! after the values, `exact_cols: u32`, that many column indices as `u32`, and
//! `rows * exact_cols` x `i32` residuals. Reading into memory (`read`) is one sequential pass
//! straight into the store's final vectors; every size is bounded by the file's length before
//! anything is allocated.
//!
//! A file is written beside its place, synced and renamed over it, so a server loading or
//! copying the path never sees half a file.

mod read;

use std::io::{BufWriter, Write};
use std::path::Path;

use super::dictionary::Dictionary;
use super::index::build_stored;
use super::{FeatureError, FeatureStore};

pub(super) use read::{from_nbf_bytes, index_slots, read_head, read_nbf, CrcReader, Fault, Head};

const MAGIC: &[u8; 4] = b"NBF1";
/// The form with residuals for values f32 does not hold.
const MAGIC_EXACT: &[u8; 4] = b"NBF2";
/// The sectioned form with string columns.
const MAGIC_V3: &[u8; 4] = b"NBF3";
/// The sectioned form with a stored id index (what is written, and what is mapped).
pub(super) const MAGIC_V4: &[u8; 4] = b"NBF4";
/// Bytes of the version 3 and 4 header.
const HEADER_V3: usize = 72;
/// Column kinds in the version 3 column table.
const KIND_NUMBER: u32 = 0;
const KIND_STRING: u32 = 1;
/// The stored index's hash in the version 4 index section: XXH3-64, seed 0.
const HASH_XXH3: u32 = 1;
/// Bytes of the index section's own header (slots, hash, padding).
pub(super) const INDEX_HEAD: usize = 16;

/// Writes a snapshot in the binary form: beside `path`, synced, then renamed over it.
pub fn write_nbf(store: &FeatureStore, path: &Path) -> Result<(), FeatureError> {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(format!(".{}.tmp", std::process::id()));
    let tmp = path.with_file_name(name);
    let io = |source| FeatureError::Io {
        path: path.to_owned(),
        source,
    };
    let written = (|| {
        let file = std::fs::File::create(&tmp)?;
        let mut inner = write_to(store, BufWriter::with_capacity(1 << 20, file), true)?;
        inner.flush()?;
        inner.get_ref().sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map_err(io)
}

/// The binary form held in memory (fuzzing and tests); the same bytes [`write_nbf`] writes.
pub(super) fn to_nbf_bytes(store: &FeatureStore) -> Vec<u8> {
    // Writing to a Vec cannot fail.
    write_to(store, Vec::new(), true).unwrap_or_default()
}

/// Writes version 3, without the stored index (tests of the reader that still loads it).
#[cfg(test)]
pub(super) fn write_v3(store: &FeatureStore) -> Vec<u8> {
    write_to(store, Vec::new(), false).unwrap_or_default()
}

/// Writes versions 1 and 2 (tests of the readers that still load them).
#[cfg(test)]
pub(super) fn write_legacy(store: &FeatureStore) -> Vec<u8> {
    let inner = Vec::new();
    let mut w = CrcWriter {
        inner,
        crc: crc32fast::Hasher::new(),
    };
    let (arena, ends) = store.ids().raw();
    let exact = store.exact();
    let mut head = Vec::new();
    head.extend_from_slice(if exact.is_empty() { MAGIC } else { MAGIC_EXACT });
    head.extend_from_slice(&(store.len() as u64).to_le_bytes());
    head.extend_from_slice(&(store.columns().len() as u32).to_le_bytes());
    for c in store.columns() {
        head.extend_from_slice(&(c.len() as u16).to_le_bytes());
        head.extend_from_slice(c.as_bytes());
    }
    head.extend_from_slice(&(arena.len() as u64).to_le_bytes());
    let _ = w.write_all(&head);
    let _ = w.write_all(arena);
    for chunk in ends.chunks(1 << 16) {
        let bytes: Vec<u8> = chunk.iter().flat_map(|e| e.to_le_bytes()).collect();
        let _ = w.write_all(&bytes);
    }
    let _ = w.write_all(le_bytes(store.values()).as_ref());
    if !exact.is_empty() {
        let _ = w.write_all(&(exact.columns().len() as u32).to_le_bytes());
        let cols: Vec<u8> = exact
            .columns()
            .iter()
            .flat_map(|c| c.to_le_bytes())
            .collect();
        let _ = w.write_all(&cols);
        for chunk in exact.residuals().chunks(1 << 16) {
            let bytes: Vec<u8> = chunk.iter().flat_map(|k| k.to_le_bytes()).collect();
            let _ = w.write_all(&bytes);
        }
    }
    let crc = w.crc.clone().finalize();
    let mut inner = w.inner;
    inner.extend_from_slice(&crc.to_le_bytes());
    inner
}

/// Writes version 4, checksum last, and hands the writer back (unflushed).
fn write_to<W: Write>(store: &FeatureStore, inner: W, index: bool) -> std::io::Result<W> {
    let mut w = CrcWriter {
        inner,
        crc: crc32fast::Hasher::new(),
    };
    let (arena, ends) = store.ids().raw();
    let exact = store.exact();
    let cols = store.columns().len();
    let rows = store.len();
    // Section sizes first, so the header can give every offset.
    let columns_len = cols * 8 + store.columns().iter().map(|c| c.len()).sum::<usize>();
    let dicts: Vec<&Dictionary> = (0..cols).filter_map(|c| store.dictionary(c)).collect();
    let dicts_len: usize = dicts
        .iter()
        .map(|d| pad8(8 + d.raw().1.len() * 4 + d.raw().0.len()))
        .sum();
    let ids_len = pad8(rows * 4) + arena.len();
    let values_len = rows * cols * 4;
    let columns_off = HEADER_V3;
    let dicts_off = columns_off + pad8(columns_len);
    let ids_off = dicts_off + dicts_len;
    let values_off = ids_off + pad8(ids_len);
    let exact_off = values_off + pad8(values_len);
    let n_exact = exact.columns().len();
    let exact_len = match n_exact {
        0 => 0,
        n => pad8(n * 4) + pad8(rows * n * 4),
    };
    let (index_off, slots) = match index {
        true => (exact_off + exact_len, build_stored(arena, ends)),
        false => (0, Vec::new()),
    };

    let mut head = Vec::with_capacity(HEADER_V3);
    head.extend_from_slice(if index { MAGIC_V4 } else { MAGIC_V3 });
    head.extend_from_slice(&(HEADER_V3 as u32).to_le_bytes());
    head.extend_from_slice(&(rows as u64).to_le_bytes());
    head.extend_from_slice(&(cols as u32).to_le_bytes());
    head.extend_from_slice(&(exact.columns().len() as u32).to_le_bytes());
    for off in [
        columns_off,
        dicts_off,
        ids_off,
        values_off,
        exact_off,
        index_off,
    ] {
        head.extend_from_slice(&(off as u64).to_le_bytes());
    }
    for (c, name) in store.columns().iter().enumerate() {
        let kind = match store.dictionary(c) {
            Some(_) => KIND_STRING,
            None => KIND_NUMBER,
        };
        head.extend_from_slice(&kind.to_le_bytes());
        head.extend_from_slice(&(name.len() as u32).to_le_bytes());
    }
    for name in store.columns() {
        head.extend_from_slice(name.as_bytes());
    }
    pad_vec(&mut head);
    for d in &dicts {
        let (bytes, ends) = d.raw();
        head.extend_from_slice(&(ends.len() as u32).to_le_bytes());
        head.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        head.extend(ends.iter().flat_map(|e| e.to_le_bytes()));
        head.extend_from_slice(bytes);
        pad_vec(&mut head);
    }
    debug_assert_eq!(head.len(), ids_off);
    w.write_all(&head)?;
    for chunk in ends.chunks(1 << 16) {
        let bytes: Vec<u8> = chunk.iter().flat_map(|e| e.to_le_bytes()).collect();
        w.write_all(&bytes)?;
    }
    w.write_all(&[0u8; 8][..pad8(rows * 4) - rows * 4])?;
    w.write_all(arena)?;
    w.write_all(&[0u8; 8][..pad8(ids_len) - ids_len])?;
    w.write_all(le_bytes(store.values()).as_ref())?;
    w.write_all(&[0u8; 8][..pad8(values_len) - values_len])?;
    if !exact.is_empty() {
        let n = exact.columns().len();
        let cols: Vec<u8> = exact
            .columns()
            .iter()
            .flat_map(|c| c.to_le_bytes())
            .collect();
        w.write_all(&cols)?;
        w.write_all(&[0u8; 8][..pad8(n * 4) - n * 4])?;
        for chunk in exact.residuals().chunks(1 << 16) {
            let bytes: Vec<u8> = chunk.iter().flat_map(|k| k.to_le_bytes()).collect();
            w.write_all(&bytes)?;
        }
        let residuals = rows * n * 4;
        if index {
            w.write_all(&[0u8; 8][..pad8(residuals) - residuals])?;
        }
    }
    if index {
        write_index(&mut w, &slots)?;
    }
    let crc = w.crc.clone().finalize();
    let mut inner = w.inner;
    inner.write_all(&crc.to_le_bytes())?;
    Ok(inner)
}

/// The index section: its head, then the slots.
fn write_index<W: Write>(w: &mut W, slots: &[u64]) -> std::io::Result<()> {
    let mut index_head = Vec::with_capacity(INDEX_HEAD);
    index_head.extend_from_slice(&(slots.len() as u64).to_le_bytes());
    index_head.extend_from_slice(&HASH_XXH3.to_le_bytes());
    index_head.extend_from_slice(&0u32.to_le_bytes());
    w.write_all(&index_head)?;
    for chunk in slots.chunks(1 << 16) {
        let bytes: Vec<u8> = chunk.iter().flat_map(|e| e.to_le_bytes()).collect();
        w.write_all(&bytes)?;
    }
    Ok(())
}

/// `n` rounded up to a multiple of 8.
fn pad8(n: usize) -> usize {
    n.div_ceil(8) * 8
}

/// Pads `v` with zero bytes to a multiple of 8.
fn pad_vec(v: &mut Vec<u8>) {
    v.resize(pad8(v.len()), 0);
}

/// The values as little-endian bytes (a no-op view on little-endian hosts).
fn le_bytes(values: &[f32]) -> std::borrow::Cow<'_, [u8]> {
    if cfg!(target_endian = "little") {
        std::borrow::Cow::Borrowed(bytemuck::cast_slice(values))
    } else {
        std::borrow::Cow::Owned(values.iter().flat_map(|v| v.to_le_bytes()).collect())
    }
}

struct CrcWriter<W> {
    inner: W,
    crc: crc32fast::Hasher,
}

impl<W: Write> Write for CrcWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
