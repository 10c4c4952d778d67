//! Reading the binary form into memory: every version, one sequential pass, the checksum
//! checked as the bytes go by. The head of versions 3 and 4 (header, column table,
//! dictionaries) is read here for the mapped reader too ([`read_head`]).

use std::io::{BufReader, Read};
use std::path::Path;

use super::super::csv_load::{MAX_COLUMNS, MAX_ID_BYTES};
use super::super::dictionary::Dictionary;
use super::super::exact::ExactColumns;
use super::super::index::{stored_slots, IdIndex, LayoutError};
use super::super::{FeatureError, FeatureStore};
use super::{
    pad8, HASH_XXH3, HEADER_V3, INDEX_HEAD, KIND_NUMBER, KIND_STRING, MAGIC, MAGIC_EXACT, MAGIC_V3,
    MAGIC_V4,
};

/// Reads a snapshot in the binary form, checking its checksum and every bound.
pub(in crate::features) fn read_nbf(path: &Path) -> Result<FeatureStore, FeatureError> {
    let io = |source| FeatureError::Io {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let file_len = file.metadata().map_err(io)?.len();
    read_from(BufReader::with_capacity(1 << 20, file), file_len, path)
}

/// Reads the binary form from memory (fuzzing and tests); `path` names it in errors.
pub(in crate::features) fn from_nbf_bytes(
    bytes: &[u8],
    path: &Path,
) -> Result<FeatureStore, FeatureError> {
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
        m if m == MAGIC_V3 || m == MAGIC_V4 => {
            let parts = read_v3(&mut r, file_len, m == MAGIC_V4).map_err(|e| match e {
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

/// A fault while reading version 3 or 4: an I/O error (a short file among them) or a bad field.
pub(in crate::features) enum Fault {
    Io(std::io::Error),
    Bad(String),
}

impl From<std::io::Error> for Fault {
    fn from(e: std::io::Error) -> Self {
        Fault::Io(e)
    }
}

/// The head of a version 3 or 4 file, and where its bulk sections lie (checked against the
/// file's length, not yet against the sections themselves).
pub(in crate::features) struct Head {
    pub rows: usize,
    pub n_exact: usize,
    pub columns: Vec<String>,
    /// Per column (empty when every column is numeric).
    pub dicts: Vec<Option<Dictionary>>,
    pub ids_off: u64,
    pub values_off: u64,
    pub exact_off: u64,
    pub index_off: u64,
}

/// Reads the head of version 3 (`v4` false) or 4 after its magic (see the module doc): the
/// header, the column table and the dictionaries, checking every offset up to the ids against
/// the position the sections before it end at, and every size against the file's length.
pub(in crate::features) fn read_head<R: Read>(
    r: &mut CrcReader<R>,
    file_len: u64,
    v4: bool,
) -> Result<Head, Fault> {
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
    match (v4, index_off) {
        (false, 0) => {}
        (false, _) => return Err(bad("version 3 with an id index offset".into())),
        (true, 0) => return Err(bad("version 4 without an id index".into())),
        (true, off) if off >= file_len || off % 8 != 0 => {
            return Err(bad(format!(
                "id index at offset {off} cannot fit in {file_len} bytes"
            )))
        }
        (true, _) => {}
    }
    let rows = rows as usize;
    let mut pos = HEADER_V3;
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
            if kind == KIND_NUMBER {
                dicts.push(None);
                continue;
            }
            let count = r.u32()? as usize;
            let bytes = r.u32()? as usize;
            if count > super::super::MAX_DISTINCT || (bytes as u64) > file_len {
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
    Ok(Head {
        rows,
        n_exact,
        columns,
        dicts,
        ids_off,
        values_off,
        exact_off,
        index_off,
    })
}

/// Checks that a section starts where the one before it ended.
pub(in crate::features) fn at(pos: usize, off: u64, what: &str) -> Result<(), Fault> {
    if off == pos as u64 {
        Ok(())
    } else {
        Err(Fault::Bad(format!(
            "{what} section at offset {off}, expected {pos}"
        )))
    }
}

/// Checks the index section's own head (slots for `rows` ids, the hash): the slot count.
pub(in crate::features) fn index_slots(
    slots: u64,
    hash: u32,
    rows: usize,
    room: u64,
) -> Result<usize, Fault> {
    if hash != HASH_XXH3 {
        return Err(Fault::Bad(format!(
            "id index hashed with {hash}: written by a newer nextbest"
        )));
    }
    if !slots.is_power_of_two()
        || slots < stored_slots(rows) as u64
        || slots.saturating_mul(8) > room
    {
        return Err(Fault::Bad(format!(
            "id index of {slots} slots for {rows} ids in {room} bytes"
        )));
    }
    Ok(slots as usize)
}

/// Reads version 3 or 4 after its magic: the head, then the bulk sections into memory. A
/// version 4 index is read through (for the checksum) and dropped: the built index serves.
fn read_v3<R: Read>(r: &mut CrcReader<R>, file_len: u64, v4: bool) -> Result<Parts, Fault> {
    let bad = |s: String| Fault::Bad(s);
    let Head {
        rows,
        n_exact,
        columns,
        dicts,
        ids_off,
        values_off,
        exact_off,
        index_off,
    } = read_head(r, file_len, v4)?;
    let cols = columns.len();
    let mut pos = ids_off as usize;
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
        pos = skip_pad(r, pos + n_exact * 4)?;
        let mut residuals = vec![0i32; rows * n_exact];
        r.read_exact(bytemuck::cast_slice_mut(&mut residuals))?;
        pos += rows * n_exact * 4;
        if v4 {
            pos = skip_pad(r, pos)?;
        }
        ExactColumns::from_parts(exact_cols, residuals)
    } else {
        ExactColumns::default()
    };
    if v4 {
        at(pos, index_off, "index")?;
        let slots = r.u64()?;
        let hash = r.u32()?;
        let _ = r.u32()?;
        let room = file_len.saturating_sub(index_off + INDEX_HEAD as u64);
        let slots = index_slots(slots, hash, rows, room)?;
        let read = std::io::copy(&mut r.take(slots as u64 * 8), &mut std::io::sink())?;
        if read != slots as u64 * 8 {
            return Err(Fault::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
    }
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
pub(in crate::features) fn skip_pad<R: Read>(
    r: &mut CrcReader<R>,
    pos: usize,
) -> Result<usize, Fault> {
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

/// A reader that keeps the CRC-32 of every byte read through it.
pub(in crate::features) struct CrcReader<R> {
    pub(in crate::features) inner: R,
    pub(in crate::features) crc: crc32fast::Hasher,
}

impl<R: Read> Read for CrcReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.crc.update(&buf[..n]);
        Ok(n)
    }
}

impl<R: Read> CrcReader<R> {
    pub(in crate::features) fn u64(&mut self) -> std::io::Result<u64> {
        let mut b = [0u8; 8];
        self.read_exact(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    pub(in crate::features) fn u32(&mut self) -> std::io::Result<u32> {
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
