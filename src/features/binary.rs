//! The compact binary form of a snapshot (`.nbf`), written by `nextbest features compile`.
//!
//! **Version 3** (`b"NBF3"`, what is written), laid out so the file can later be used in place
//! from a read-only memory map: every integer little-endian, every section starting at an
//! offset that is a multiple of 8 (zero bytes pad the gaps), and a fixed header that gives
//! each section's offset, so a reader can find any section without reading the ones before:
//!
//! ```text
//! header (72 bytes): magic "NBF3", header_len u32 (72), rows u64, cols u32, exact_cols u32,
//!     columns_off u64, dicts_off u64, ids_off u64, values_off u64, exact_off u64,
//!     index_off u64 (0: reserved for a stored id index; rebuilt on load today)
//! columns:  cols x {kind u32 (0 number, 1 string), name_len u32}, then the names' UTF-8 bytes
//! dicts:    per string column, in column order: {count u32, bytes u32}, count x end u32,
//!           then the values' bytes, sorted by bytes, distinct, non-empty (padded to 8)
//! ids:      rows x end u32 (padded to 8), then the id bytes (arena)
//! values:   rows x cols x f32, row-major; NaN is missing; a string cell holds its value's
//!           code in the column's dictionary (an integer below 65,536, exact in f32)
//! exact:    exact_cols x u32 ascending column indices (padded to 8), then
//!           rows x exact_cols x i32 residuals (see `exact`)
//! crc32:    u32 over every byte before it; nothing after it
//! ```
//!
//! A string cell costs 4 bytes like a number (a u16 code would save 2 bytes but break the
//! one-slice row every reader and the tree walk take). Versions 1 and 2 still load:
//! `b"NBF1"`, `rows: u64`, `cols: u32`, per column `len: u16` + UTF-8 name,
//! `arena_len: u64` + id bytes, `rows` x `end: u32`, `rows * cols` x `f32`, then a CRC-32 of
//! everything before it; version 2 (`b"NBF2"`) adds, after the values, `exact_cols: u32`, that
//! many column indices as `u32`, and `rows * exact_cols` x `i32` residuals. Reading is one
//! sequential pass straight into the store's final vectors (no parsing); the id index is
//! rebuilt on load. Every size is bounded by the file's length before anything is allocated.

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use super::csv_load::{MAX_COLUMNS, MAX_ID_BYTES};
use super::dictionary::Dictionary;
use super::exact::ExactColumns;
use super::index::{IdIndex, LayoutError};
use super::{FeatureError, FeatureStore};

const MAGIC: &[u8; 4] = b"NBF1";
/// The form with residuals for values f32 does not hold.
const MAGIC_EXACT: &[u8; 4] = b"NBF2";
/// The sectioned form with string columns (what is written).
const MAGIC_V3: &[u8; 4] = b"NBF3";
/// Bytes of the version 3 header.
const HEADER_V3: usize = 72;
/// Column kinds in the version 3 column table.
const KIND_NUMBER: u32 = 0;
const KIND_STRING: u32 = 1;

/// Writes a snapshot in the binary form.
pub fn write_nbf(store: &FeatureStore, path: &Path) -> Result<(), FeatureError> {
    let io = |source| FeatureError::Io {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::create(path).map_err(io)?;
    let mut inner = write_to(store, BufWriter::with_capacity(1 << 20, file)).map_err(io)?;
    inner.flush().map_err(io)?;
    inner.get_ref().sync_all().map_err(io)
}

/// The binary form held in memory (fuzzing and tests); the same bytes [`write_nbf`] writes.
pub(super) fn to_nbf_bytes(store: &FeatureStore) -> Vec<u8> {
    // Writing to a Vec cannot fail.
    write_to(store, Vec::new()).unwrap_or_default()
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

/// Writes version 3, checksum last, and hands the writer back (unflushed).
fn write_to<W: Write>(store: &FeatureStore, inner: W) -> std::io::Result<W> {
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

    let mut head = Vec::with_capacity(HEADER_V3);
    head.extend_from_slice(MAGIC_V3);
    head.extend_from_slice(&(HEADER_V3 as u32).to_le_bytes());
    head.extend_from_slice(&(rows as u64).to_le_bytes());
    head.extend_from_slice(&(cols as u32).to_le_bytes());
    head.extend_from_slice(&(exact.columns().len() as u32).to_le_bytes());
    for off in [columns_off, dicts_off, ids_off, values_off, exact_off, 0] {
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
    }
    let crc = w.crc.clone().finalize();
    let mut inner = w.inner;
    inner.write_all(&crc.to_le_bytes())?;
    Ok(inner)
}

/// `n` rounded up to a multiple of 8.
fn pad8(n: usize) -> usize {
    n.div_ceil(8) * 8
}

/// Pads `v` with zero bytes to a multiple of 8.
fn pad_vec(v: &mut Vec<u8>) {
    v.resize(pad8(v.len()), 0);
}

/// Reads a snapshot in the binary form, checking its checksum and every bound.
pub(super) fn read_nbf(path: &Path) -> Result<FeatureStore, FeatureError> {
    let io = |source| FeatureError::Io {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let file_len = file.metadata().map_err(io)?.len();
    read_from(BufReader::with_capacity(1 << 20, file), file_len, path)
}

/// Reads the binary form from memory (fuzzing and tests); `path` names it in errors.
pub(super) fn from_nbf_bytes(bytes: &[u8], path: &Path) -> Result<FeatureStore, FeatureError> {
    read_from(bytes, bytes.len() as u64, path)
}

/// The one reader: `file_len` (the size of what `inner` holds) bounds every allocation.
fn read_from(inner: impl Read, file_len: u64, path: &Path) -> Result<FeatureStore, FeatureError> {
    let bad = |detail: String| FeatureError::Format {
        path: path.to_owned(),
        detail,
    };
    if cfg!(target_endian = "big") {
        return Err(bad(
            "the binary form is little-endian; use the CSV form on this machine".into(),
        ));
    }
    let mut r = CrcReader {
        inner,
        crc: crc32fast::Hasher::new(),
    };
    let truncated = |e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            bad("truncated file".into())
        } else {
            FeatureError::Io {
                path: path.to_owned(),
                source: e,
            }
        }
    };
    let mut magic = [0u8; 4];
    r.read_exact(&mut magic).map_err(truncated)?;
    let with_exact = match &magic {
        m if m == MAGIC => false,
        m if m == MAGIC_EXACT => true,
        m if m == MAGIC_V3 => {
            let parts = read_v3(&mut r, file_len).map_err(|e| match e {
                Fault::Io(e) => truncated(e),
                Fault::Bad(detail) => bad(detail),
            })?;
            return finish(r, parts, path);
        }
        _ => return Err(bad("not a nextbest binary snapshot (bad magic)".into())),
    };
    let rows = r.u64().map_err(truncated)?;
    let cols = r.u32().map_err(truncated)? as usize;
    if cols > MAX_COLUMNS {
        return Err(bad(format!("{cols} columns, more than {MAX_COLUMNS}")));
    }
    // Every row needs at least 4 bytes of end offset plus its values: bound `rows` by the file
    // size before allocating anything for them.
    let per_row = 4 + 4 * cols as u64;
    if rows.saturating_mul(per_row) > file_len || rows > u32::MAX as u64 {
        return Err(bad(format!("{rows} rows cannot fit in {file_len} bytes")));
    }
    let rows = rows as usize;
    let mut columns = Vec::with_capacity(cols);
    for i in 0..cols {
        let len = r.u16().map_err(truncated)? as usize;
        let mut name = vec![0u8; len];
        r.read_exact(&mut name).map_err(truncated)?;
        let name =
            String::from_utf8(name).map_err(|_| bad(format!("column {i}: name is not UTF-8")))?;
        if name.is_empty() || columns.contains(&name) {
            return Err(bad(format!("column {i}: empty or duplicate name `{name}`")));
        }
        columns.push(name);
    }
    let arena_len = r.u64().map_err(truncated)?;
    if arena_len > file_len || arena_len > u32::MAX as u64 {
        return Err(bad(format!(
            "id arena of {arena_len} bytes is larger than the file"
        )));
    }
    let mut arena = vec![0u8; arena_len as usize];
    r.read_exact(&mut arena).map_err(truncated)?;
    let mut ends = vec![0u32; rows];
    r.read_exact(bytemuck::cast_slice_mut(&mut ends))
        .map_err(truncated)?;
    let mut values = vec![0f32; rows * cols];
    r.read_exact(bytemuck::cast_slice_mut(&mut values))
        .map_err(truncated)?;
    let exact = if with_exact {
        let n = r.u32().map_err(truncated)? as usize;
        if n == 0 || n > cols || (rows as u64).saturating_mul(4 * n as u64) > file_len {
            return Err(bad(format!(
                "{n} exact columns do not fit {cols} columns and {file_len} bytes"
            )));
        }
        let mut exact_cols = vec![0u32; n];
        r.read_exact(bytemuck::cast_slice_mut(&mut exact_cols))
            .map_err(truncated)?;
        let mut residuals = vec![0i32; rows * n];
        r.read_exact(bytemuck::cast_slice_mut(&mut residuals))
            .map_err(truncated)?;
        ExactColumns::from_parts(exact_cols, residuals)
    } else {
        ExactColumns::default()
    };
    let parts = Parts {
        columns,
        arena,
        ends,
        values,
        exact,
        dicts: Vec::new(),
    };
    finish(r, parts, path)
}

/// What a reader of any version hands [`finish`].
struct Parts {
    columns: Vec<String>,
    arena: Vec<u8>,
    ends: Vec<u32>,
    values: Vec<f32>,
    exact: ExactColumns,
    /// Per column (empty when every column is numeric).
    dicts: Vec<Option<Dictionary>>,
}

/// A fault while reading version 3: an I/O error (a short file among them) or a bad field.
enum Fault {
    Io(std::io::Error),
    Bad(String),
}

impl From<std::io::Error> for Fault {
    fn from(e: std::io::Error) -> Self {
        Fault::Io(e)
    }
}

/// Reads version 3 after its magic (see the module doc), checking every offset against the
/// position the sections before it end at, and every size against the file's length.
fn read_v3<R: Read>(r: &mut CrcReader<R>, file_len: u64) -> Result<Parts, Fault> {
    let bad = |s: String| Fault::Bad(s);
    let header_len = r.u32()? as usize;
    if header_len != HEADER_V3 {
        return Err(bad(format!(
            "header of {header_len} bytes, expected {HEADER_V3}"
        )));
    }
    let rows = r.u64()?;
    let cols = r.u32()? as usize;
    let n_exact = r.u32()? as usize;
    let mut offsets = [0u64; 6];
    for o in &mut offsets {
        *o = r.u64()?;
    }
    let [columns_off, dicts_off, ids_off, values_off, exact_off, index_off] = offsets;
    if cols > MAX_COLUMNS {
        return Err(bad(format!("{cols} columns, more than {MAX_COLUMNS}")));
    }
    let per_row = 4 + 4 * cols as u64;
    if rows.saturating_mul(per_row) > file_len || rows > u32::MAX as u64 {
        return Err(bad(format!("{rows} rows cannot fit in {file_len} bytes")));
    }
    if n_exact > cols || (rows).saturating_mul(4 * n_exact as u64) > file_len {
        return Err(bad(format!(
            "{n_exact} exact columns do not fit {cols} columns and {file_len} bytes"
        )));
    }
    if index_off != 0 {
        return Err(bad("a stored id index: written by a newer nextbest".into()));
    }
    let rows = rows as usize;
    let mut pos = HEADER_V3;
    let at = |pos: usize, off: u64, what: &str| {
        if off == pos as u64 {
            Ok(())
        } else {
            Err(Fault::Bad(format!(
                "{what} section at offset {off}, expected {pos}"
            )))
        }
    };
    at(pos, columns_off, "columns")?;
    let mut kinds = Vec::with_capacity(cols);
    let mut lens = Vec::with_capacity(cols);
    for i in 0..cols {
        let kind = r.u32()?;
        let len = r.u32()? as usize;
        if kind > KIND_STRING || len == 0 || len > u16::MAX as usize {
            return Err(bad(format!("column {i}: kind {kind}, name of {len} bytes")));
        }
        kinds.push(kind);
        lens.push(len);
    }
    pos += cols * 8;
    let mut columns: Vec<String> = Vec::with_capacity(cols);
    for (i, &len) in lens.iter().enumerate() {
        let mut name = vec![0u8; len];
        r.read_exact(&mut name)?;
        let name =
            String::from_utf8(name).map_err(|_| bad(format!("column {i}: name is not UTF-8")))?;
        if columns.contains(&name) {
            return Err(bad(format!("column {i}: duplicate name `{name}`")));
        }
        columns.push(name);
        pos += len;
    }
    pos = skip_pad(r, pos)?;
    at(pos, dicts_off, "dictionaries")?;
    let mut dicts: Vec<Option<Dictionary>> = Vec::new();
    if kinds.contains(&KIND_STRING) {
        dicts.reserve(cols);
        for (i, &kind) in kinds.iter().enumerate() {
            if kind != KIND_STRING {
                dicts.push(None);
                continue;
            }
            let count = r.u32()? as usize;
            let bytes = r.u32()? as usize;
            if count > super::MAX_DISTINCT || (bytes as u64) > file_len {
                return Err(bad(format!(
                    "column `{}`: a dictionary of {count} values in {bytes} bytes",
                    columns[i]
                )));
            }
            let mut ends = vec![0u32; count];
            r.read_exact(bytemuck::cast_slice_mut(&mut ends))?;
            let mut arena = vec![0u8; bytes];
            r.read_exact(&mut arena)?;
            pos = skip_pad(r, pos + 8 + count * 4 + bytes)?;
            let d = Dictionary::from_parts(arena, ends)
                .map_err(|e| bad(format!("column `{}`: {e}", columns[i])))?;
            dicts.push(Some(d));
        }
    }
    at(pos, ids_off, "ids")?;
    let mut ends = vec![0u32; rows];
    r.read_exact(bytemuck::cast_slice_mut(&mut ends))?;
    pos = skip_pad(r, pos + rows * 4)?;
    let arena_len = ends.last().map_or(0, |e| *e as usize);
    if arena_len as u64 > file_len {
        return Err(bad(format!(
            "id arena of {arena_len} bytes is larger than the file"
        )));
    }
    let mut arena = vec![0u8; arena_len];
    r.read_exact(&mut arena)?;
    pos = skip_pad(r, pos + arena_len)?;
    at(pos, values_off, "values")?;
    let mut values = vec![0f32; rows * cols];
    r.read_exact(bytemuck::cast_slice_mut(&mut values))?;
    pos = skip_pad(r, pos + rows * cols * 4)?;
    at(pos, exact_off, "exact")?;
    let exact = if n_exact > 0 {
        let mut exact_cols = vec![0u32; n_exact];
        r.read_exact(bytemuck::cast_slice_mut(&mut exact_cols))?;
        skip_pad(r, pos + n_exact * 4)?;
        let mut residuals = vec![0i32; rows * n_exact];
        r.read_exact(bytemuck::cast_slice_mut(&mut residuals))?;
        ExactColumns::from_parts(exact_cols, residuals)
    } else {
        ExactColumns::default()
    };
    Ok(Parts {
        columns,
        arena,
        ends,
        values,
        exact,
        dicts,
    })
}

/// Reads the zero bytes from `pos` to the next multiple of 8; returns that position.
fn skip_pad<R: Read>(r: &mut CrcReader<R>, pos: usize) -> Result<usize, Fault> {
    let to = pad8(pos);
    let mut zeros = [0u8; 8];
    r.read_exact(&mut zeros[..to - pos])?;
    if zeros.iter().any(|b| *b != 0) {
        return Err(Fault::Bad(format!("non-zero padding before offset {to}")));
    }
    Ok(to)
}

/// Checks the checksum and that nothing follows it, then builds the store from the parts.
fn finish<R: Read>(
    mut r: CrcReader<R>,
    parts: Parts,
    path: &Path,
) -> Result<FeatureStore, FeatureError> {
    let bad = |detail: String| FeatureError::Format {
        path: path.to_owned(),
        detail,
    };
    let truncated = |e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            bad("truncated file".into())
        } else {
            FeatureError::Io {
                path: path.to_owned(),
                source: e,
            }
        }
    };
    let Parts {
        columns,
        arena,
        ends,
        values,
        exact,
        dicts,
    } = parts;
    let cols = columns.len();
    let computed = r.crc.clone().finalize();
    let mut stored = [0u8; 4];
    r.inner.read_exact(&mut stored).map_err(truncated)?;
    if u32::from_le_bytes(stored) != computed {
        return Err(bad("checksum mismatch: the file is damaged".into()));
    }
    // The checksum ends the form: anything after it is damage (data appended, two files run
    // together), not something to ignore.
    let after = std::io::copy(&mut r.inner.take(1), &mut std::io::sink()).map_err(truncated)?;
    if after > 0 {
        return Err(bad("bytes after the checksum: the file is damaged".into()));
    }

    let ids = IdIndex::from_layout(arena, ends, MAX_ID_BYTES).map_err(|e| match e {
        LayoutError::BadOffset(row) => bad(format!("row {row}: bad id offset")),
        LayoutError::NotUtf8(row) => bad(format!("row {row}: customer_id is not UTF-8")),
        LayoutError::Duplicate(row, first) => bad(format!(
            "row {row}: duplicate customer_id (first at row {first})"
        )),
        LayoutError::Unused(n) => bad(format!("id arena holds {n} bytes no customer_id uses")),
    })?;
    // The CSV loader refuses infinities; a binary snapshot must not smuggle them in (a
    // logistic term over one can turn a propensity into NaN).
    if let Some(i) = values.iter().position(|v| v.is_infinite()) {
        let (row, col) = (i / cols.max(1), i % cols.max(1));
        return Err(bad(format!(
            "row {row}, column `{}`: {} is not a finite number",
            columns[col], values[i]
        )));
    }
    FeatureStore::with_exact(columns, ids, values, exact, path.display().to_string())
        .and_then(|s| s.with_dictionaries(dicts))
        .map_err(bad)
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

struct CrcReader<R> {
    inner: R,
    crc: crc32fast::Hasher,
}

impl<R: Read> Read for CrcReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.crc.update(&buf[..n]);
        Ok(n)
    }
}

impl<R: Read> CrcReader<R> {
    fn u64(&mut self) -> std::io::Result<u64> {
        let mut b = [0u8; 8];
        self.read_exact(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    fn u32(&mut self) -> std::io::Result<u32> {
        let mut b = [0u8; 4];
        self.read_exact(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn u16(&mut self) -> std::io::Result<u16> {
        let mut b = [0u8; 2];
        self.read_exact(&mut b)?;
        Ok(u16::from_le_bytes(b))
    }
}
