//! The compact binary form of a snapshot (`.nbf`), written by `nextbest features compile`.
//!
//! Layout, all integers little-endian:
//! `b"NBF1"`, `rows: u64`, `cols: u32`, per column `len: u16` + UTF-8 name,
//! `arena_len: u64` + id bytes, `rows` x `end: u32`, `rows * cols` x `f32`, then a CRC-32 of
//! everything before it, and nothing after. Version 2 (`b"NBF2"`, written only when some value
//! is not exact in f32) adds, after the values, `exact_cols: u32`, that many ascending column
//! indices as `u32`, and `rows * exact_cols` x `i32` residuals (see `exact`); version 1 files
//! read as before. Values are read straight into their final
//! `Vec<f32>` (one copy, no parsing); the id index is rebuilt on load. DESIGN.md suggested a
//! memory map: reading into owned memory costs one sequential copy but needs no `unsafe`, and
//! a snapshot file replaced or truncated under a running server cannot fault it.

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use super::csv_load::{MAX_COLUMNS, MAX_ID_BYTES};
use super::exact::ExactColumns;
use super::index::{IdIndex, LayoutError};
use super::{FeatureError, FeatureStore};

const MAGIC: &[u8; 4] = b"NBF1";
/// The form with residuals for values f32 does not hold.
const MAGIC_EXACT: &[u8; 4] = b"NBF2";

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

/// Writes the whole form, checksum last, and hands the writer back (unflushed).
fn write_to<W: Write>(store: &FeatureStore, inner: W) -> std::io::Result<W> {
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
    w.write_all(&head)?;
    w.write_all(arena)?;
    for chunk in ends.chunks(1 << 16) {
        let bytes: Vec<u8> = chunk.iter().flat_map(|e| e.to_le_bytes()).collect();
        w.write_all(&bytes)?;
    }
    w.write_all(le_bytes(store.values()).as_ref())?;
    if !exact.is_empty() {
        w.write_all(&(exact.columns().len() as u32).to_le_bytes())?;
        let cols: Vec<u8> = exact
            .columns()
            .iter()
            .flat_map(|c| c.to_le_bytes())
            .collect();
        w.write_all(&cols)?;
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
    FeatureStore::with_exact(columns, ids, values, exact, path.display().to_string()).map_err(bad)
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
