//! The CSV form of a snapshot: a header with `customer_id` first, then numeric columns; an
//! empty field is a missing value. Every fault names file, line and column.

use std::path::Path;

use super::exact::ExactBuilder;
use super::index::{DuplicateId, IdIndex};
use super::{FeatureError, FeatureStore};

/// Longest customer id accepted, in bytes; longer ids are data errors, not customers.
pub const MAX_ID_BYTES: usize = 255;
/// Most feature columns a snapshot may have.
pub const MAX_COLUMNS: usize = 4096;

pub(super) fn read_csv(path: &Path) -> Result<FeatureStore, FeatureError> {
    let bytes = std::fs::read(path).map_err(|source| FeatureError::Io {
        path: path.to_owned(),
        source,
    })?;
    parse_csv(&bytes, path)
}

pub(super) fn parse_csv(bytes: &[u8], path: &Path) -> Result<FeatureStore, FeatureError> {
    let fault = |line: u64, column: usize, detail: String| FeatureError::Parse {
        path: path.to_owned(),
        line,
        column,
        detail,
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_reader(bytes);
    let header = reader
        .byte_headers()
        .map_err(|e| fault(1, 1, e.to_string()))?
        .clone();
    if header.is_empty() || header.iter().all(|h| h.is_empty()) {
        return Err(fault(1, 1, "empty file: expected a header line".into()));
    }
    if header.get(0) != Some(b"customer_id".as_slice()) {
        return Err(fault(1, 1, "the first column must be `customer_id`".into()));
    }
    if header.len() - 1 > MAX_COLUMNS {
        return Err(fault(
            1,
            1,
            format!("more than {MAX_COLUMNS} feature columns"),
        ));
    }
    let mut columns: Vec<String> = Vec::with_capacity(header.len() - 1);
    for (i, name) in header.iter().enumerate().skip(1) {
        let name = std::str::from_utf8(name)
            .map_err(|_| fault(1, i + 1, "column name is not UTF-8".into()))?;
        if name.is_empty() {
            return Err(fault(1, i + 1, "empty column name".into()));
        }
        if columns.iter().any(|c| c == name) {
            return Err(fault(1, i + 1, format!("duplicate column `{name}`")));
        }
        columns.push(name.to_owned());
    }

    let width = columns.len();
    // A rough guess of rows from the file size keeps reallocation rare on large snapshots.
    let guess = bytes.len() / (12 + 4 * width.max(1));
    let mut ids = IdIndex::with_capacity(guess, 10);
    let mut values: Vec<f32> = Vec::with_capacity(guess * width);
    let mut exact = ExactBuilder::new(width);
    let mut record = csv::ByteRecord::new();
    // With CRLF line endings (Python's csv writer, Windows exports) the csv crate starts a
    // record at the `\n` of the line ending before it, and its line count runs one short:
    // lines are counted from the first byte of the record itself, only when there is a fault.
    let line_at = |byte: u64| {
        let mut at = (byte as usize).min(bytes.len());
        while matches!(bytes.get(at), Some(b'\r' | b'\n')) {
            at += 1;
        }
        bytes[..at].iter().filter(|&&b| b == b'\n').count() as u64 + 1
    };
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                let line = e.position().map_or(0, |p| line_at(p.byte()));
                return Err(fault(line, 1, e.to_string()));
            }
        }
        let at = record.position().map_or(0, |p| p.byte());
        let line = || line_at(at);
        let id = std::str::from_utf8(&record[0])
            .map_err(|_| fault(line(), 1, "customer_id is not UTF-8".into()))?;
        if id.is_empty() {
            return Err(fault(line(), 1, "empty customer_id".into()));
        }
        if id.len() > MAX_ID_BYTES {
            return Err(fault(
                line(),
                1,
                format!("customer_id longer than {MAX_ID_BYTES} bytes"),
            ));
        }
        if ids.arena_len() + id.len() > u32::MAX as usize {
            return Err(fault(
                line(),
                1,
                "customer ids exceed 4 GiB in total".into(),
            ));
        }
        ids.push(id).map_err(|DuplicateId(first)| {
            fault(
                line(),
                1,
                format!(
                    "duplicate customer_id `{id}` (first seen on data row {})",
                    first + 1
                ),
            )
        })?;
        for (i, field) in record.iter().enumerate().skip(1) {
            let v = parse_value(field).map_err(|detail| {
                fault(
                    line(),
                    i + 1,
                    format!("column `{}`: {detail}", columns[i - 1]),
                )
            })?;
            values.push(exact.push(i - 1, v));
        }
        exact.end_row();
    }
    values.shrink_to_fit();
    let store = FeatureStore::with_exact(
        columns,
        ids,
        values,
        exact.finish(),
        path.display().to_string(),
    );
    store.map_err(|detail| FeatureError::Format {
        path: path.to_owned(),
        detail,
    })
}

/// One field: empty is missing (NaN); otherwise a number whose f32 is finite. Parsed as f64
/// (what the libraries were given) and narrowed from there, as numpy does for XGBoost.
fn parse_value(field: &[u8]) -> Result<f64, String> {
    if field.is_empty() {
        return Ok(f64::NAN);
    }
    let text = std::str::from_utf8(field).map_err(|_| "not UTF-8".to_string())?;
    match text.parse::<f64>() {
        Ok(v) if (v as f32).is_finite() => Ok(v),
        Ok(_) => Err(format!("`{text}` is not a finite number")),
        Err(_) => Err(format!("`{}` is not a number", text.escape_debug())),
    }
}
