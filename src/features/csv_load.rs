//! The CSV form of a snapshot: a header with `customer_id` first, then numeric or string
//! columns; an empty field is a missing value. Every fault names file, line and column.
//!
//! A column whose non-empty fields are not all numbers holds strings; the header may force a
//! kind with a suffix: `zip:str` (codes with leading zeros stay `007`), `tenure:num` (a field
//! that is not a number is an error). Detection costs one pass; a second one only when a
//! column shows a string after numbers (their text was not kept).

use std::path::Path;

use super::dictionary::{finish_columns, DictBuilder};
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

/// How a column's fields are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Numbers unless a non-empty field is not one (the default).
    Auto,
    /// Numbers, forced by `name:num`: a field that is not one is an error.
    Num,
    /// Strings, forced by `name:str` or detected.
    Str,
}

/// What one pass over the rows found.
enum Pass {
    /// The snapshot.
    Done(Box<FeatureStore>),
    /// A column read as numbers turned out to hold strings after some numbers: read again
    /// with these kinds (the numbers' text, `007` say, was not kept), and the columns that
    /// turned with the line and word that turned each.
    Again(Vec<Kind>, Vec<(u32, u64, String)>),
}

/// What the header says: the loaded columns with their kinds, and where each field goes.
struct Header {
    columns: Vec<String>,
    kinds: Vec<Kind>,
    /// Per field after the id, the loaded column it fills (`None`: marked `:skip`).
    slots: Vec<Option<usize>>,
    /// The columns marked `:skip`, by name.
    skipped: Vec<String>,
}

pub(super) fn parse_csv(bytes: &[u8], path: &Path) -> Result<FeatureStore, FeatureError> {
    let header = read_header(bytes, path)?;
    let left_out = || {
        let why = |n: &String| (n.clone(), super::SKIPPED.to_owned());
        header.skipped.iter().map(why).collect()
    };
    match read_rows(bytes, path, &header, header.kinds.clone())? {
        Pass::Done(store) => Ok(store.with_left_out(left_out())),
        Pass::Again(kinds, turned) => match read_rows(bytes, path, &header, kinds)? {
            Pass::Done(store) => Ok(store.with_turned(turned).with_left_out(left_out())),
            // Every column that could turn is forced to strings now.
            Pass::Again(..) => Err(FeatureError::Format {
                path: path.to_owned(),
                detail: "column kinds did not settle".into(),
            }),
        },
    }
}

/// Fields are kept as written (a text value `"gold "` is not `gold`, as in Parquet and in the
/// frame a model was trained on); numbers are read with the blanks around them, and names in
/// the header without.
fn reader(bytes: &[u8]) -> csv::Reader<&[u8]> {
    csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::Headers)
        .from_reader(bytes)
}

/// The column names and kinds the header gives (`segment:str`, `tenure:num`, `arpu`).
fn read_header(bytes: &[u8], path: &Path) -> Result<Header, FeatureError> {
    let fault = |column: usize, detail: String| FeatureError::Parse {
        path: path.to_owned(),
        line: 1,
        column,
        detail,
    };
    let header = reader(bytes)
        .byte_headers()
        .map_err(|e| fault(1, e.to_string()))?
        .clone();
    if header.is_empty() || header.iter().all(|h| h.is_empty()) {
        return Err(fault(1, "empty file: expected a header line".into()));
    }
    if header.get(0) != Some(b"customer_id".as_slice()) {
        return Err(fault(1, not_an_id_header(bytes, &header)));
    }
    if header.len() - 1 > MAX_COLUMNS {
        return Err(fault(1, format!("more than {MAX_COLUMNS} feature columns")));
    }
    let mut columns: Vec<String> = Vec::with_capacity(header.len() - 1);
    let mut kinds = Vec::with_capacity(header.len() - 1);
    let (mut slots, mut skipped) = (Vec::with_capacity(header.len() - 1), Vec::new());
    for (i, name) in header.iter().enumerate().skip(1) {
        let name = std::str::from_utf8(name)
            .map_err(|_| fault(i + 1, "column name is not UTF-8".into()))?;
        let (name, kind) = match name.rsplit_once(':') {
            // An audit column the export carries (`updated_at:skip`): not loaded.
            Some((n, k)) if k.eq_ignore_ascii_case("skip") => {
                slots.push(None);
                skipped.push(n.trim_end().to_owned());
                continue;
            }
            Some((n, k)) if k.eq_ignore_ascii_case("str") => (n.trim_end(), Kind::Str),
            Some((n, k)) if k.eq_ignore_ascii_case("num") => (n.trim_end(), Kind::Num),
            // `zip:string`, `plan:text`: a kind misspelt would silently name the column.
            Some((n, k)) if !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphabetic()) => {
                return Err(fault(
                    i + 1,
                    format!(
                        "column `{name}`: `:{k}` is not a kind: write `{n}:str` for text, \
                         `{n}:num` for numbers or `{n}:skip` to leave it out"
                    ),
                ));
            }
            _ => (name, Kind::Auto),
        };
        if name.is_empty() {
            return Err(fault(i + 1, "empty column name".into()));
        }
        if columns.iter().any(|c| c == name) {
            return Err(fault(i + 1, format!("duplicate column `{name}`")));
        }
        slots.push(Some(columns.len()));
        columns.push(name.to_owned());
        kinds.push(kind);
    }
    Ok(Header {
        columns,
        kinds,
        slots,
        skipped,
    })
}

/// Why the header does not start with `customer_id`, saying what the file starts with.
fn not_an_id_header(bytes: &[u8], header: &csv::ByteRecord) -> String {
    let first_line = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    let first = String::from_utf8_lossy(header.get(0).unwrap_or_default());
    let shown: String = first.chars().take(40).collect();
    if bytes.starts_with(&[0x1f, 0x8b]) {
        return "the file is gzip-compressed: decompress it first".into();
    }
    if bytes.starts_with(&[0xff, 0xfe]) || bytes.starts_with(&[0xfe, 0xff]) {
        return "the file is UTF-16: save it as UTF-8".into();
    }
    if header.len() == 1 {
        for (sep, name) in [(b';', "semicolons"), (b'\t', "tabs"), (b'|', "bars")] {
            if first_line.contains(&sep) {
                return format!(
                    "the header is separated by {name}: the snapshot is comma-separated"
                );
            }
        }
    }
    if first.eq_ignore_ascii_case("customer_id") {
        return format!("the first column is `{shown}`: name it `customer_id`, in lower case");
    }
    if let Some(at) = header
        .iter()
        .position(|h| h.eq_ignore_ascii_case(b"customer_id"))
    {
        return format!(
            "the first column is `{shown}`; `customer_id` is column {}: put it first",
            at + 1
        );
    }
    format!("the first column must be `customer_id`, not `{shown}`")
}

/// One pass over the data rows with the kinds known so far.
fn read_rows(
    bytes: &[u8],
    path: &Path,
    header: &Header,
    mut kinds: Vec<Kind>,
) -> Result<Pass, FeatureError> {
    let columns = &header.columns;
    let fault = |line: u64, column: usize, detail: String| FeatureError::Parse {
        path: path.to_owned(),
        line,
        column,
        detail,
    };
    let mut reader = reader(bytes);
    reader
        .byte_headers()
        .map_err(|e| fault(1, 1, e.to_string()))?;
    let width = columns.len();
    // A rough guess of rows from the file size keeps reallocation rare on large snapshots.
    let guess = bytes.len() / (12 + 4 * width.max(1));
    let mut ids = IdIndex::with_capacity(guess, 10);
    let mut values: Vec<f32> = Vec::with_capacity(guess * width);
    let mut exact = ExactBuilder::new(width);
    let mut dicts: Vec<Option<DictBuilder>> = kinds
        .iter()
        .map(|k| (*k == Kind::Str).then(DictBuilder::default))
        .collect();
    // Per `Auto` column: a number was read in it (a string after that needs a second pass).
    let mut numbers_seen = vec![false; width];
    // Per `Auto` column: its first non-finite number (`NaN`, `inf`, `1e39`), a fault unless a
    // later field makes it a text column (where it is a value like any other).
    let mut not_finite: Vec<Option<FeatureError>> = (0..width).map(|_| None).collect();
    let mut again = false;
    let mut turned = Vec::new();
    let mut record = csv::ByteRecord::new();
    let mut last_record_at = 0;
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
        last_record_at = at;
        let line = || line_at(at);
        let id = std::str::from_utf8(&record[0])
            .map_err(|_| fault(line(), 1, "customer_id is not UTF-8".into()))?;
        if id.is_empty() {
            return Err(fault(line(), 1, "empty customer_id".into()));
        }
        if id == "customer_id" {
            return Err(fault(
                line(),
                1,
                "the header again (part files joined with a header each? keep the first)".into(),
            ));
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
            let Some(Some(c)) = header.slots.get(i - 1).copied() else {
                continue;
            };
            let at =
                |detail: String| fault(line(), i + 1, format!("column `{}`: {detail}", columns[c]));
            let v = match kinds[c] {
                Kind::Str => string_code(&mut dicts[c], field).map_err(at)?,
                Kind::Num => parse_value(field).map_err(|e| at(e.into()))?,
                Kind::Auto => match parse_value(field) {
                    Ok(v) => {
                        numbers_seen[c] |= !v.is_nan();
                        v
                    }
                    // A number beyond f32's range is a data error in a column of numbers.
                    Err(NotANumber::OutOfRange(e)) => {
                        if not_finite[c].is_none() {
                            not_finite[c] = Some(at(e));
                        }
                        // Its text was not kept, should the column turn out to be text.
                        numbers_seen[c] = true;
                        f64::NAN
                    }
                    Err(_) => {
                        // Not a number: a string column. Values read as numbers before need
                        // their text again, so another pass reads the column as strings.
                        if numbers_seen[c] {
                            // Numbers, then text: often one bad value (`NA`, `1,5`) turning a
                            // numeric column into text, which a model then refuses.
                            let word: String =
                                String::from_utf8_lossy(field).chars().take(64).collect();
                            tracing::warn!(path = %path.display(), column = %columns[c], line = line(),
                                value = %word,
                                "a column of numbers holds text from this line on, so it is read as text; mark it `:num` in the header to have such a value refused");
                            turned.push((c as u32, line(), word));
                        }
                        again |= numbers_seen[c];
                        kinds[c] = Kind::Str;
                        dicts[c] = Some(DictBuilder::default());
                        string_code(&mut dicts[c], field).map_err(at)?
                    }
                },
            };
            values.push(exact.push(c, v));
        }
        exact.end_row();
    }
    check_closed(bytes, last_record_at)
        .map_err(|detail| fault(line_at(last_record_at), 1, detail))?;
    if again {
        return Ok(Pass::Again(kinds, turned));
    }
    if let Some(e) = (0..width)
        .filter(|&c| kinds[c] != Kind::Str)
        .find_map(|c| not_finite[c].take())
    {
        return Err(e);
    }
    values.shrink_to_fit();
    let dicts = finish_columns(dicts, &mut values, width);
    let store = FeatureStore::with_exact(
        columns.to_vec(),
        ids,
        values,
        exact.finish(),
        path.display().to_string(),
    )
    .and_then(|s| s.with_dictionaries(dicts));
    store
        .map(|s| Pass::Done(Box::new(s)))
        .map_err(|detail| FeatureError::Format {
            path: path.to_owned(),
            detail,
        })
}

/// Longest string value accepted, in bytes: categories are short names.
pub const MAX_STRING_BYTES: usize = 255;

/// A string field's provisional code (empty is missing, NaN).
#[inline]
fn string_code(dict: &mut Option<DictBuilder>, field: &[u8]) -> Result<f64, String> {
    if field.is_empty() {
        return Ok(f64::NAN);
    }
    let text = std::str::from_utf8(field).map_err(|_| "not UTF-8".to_string())?;
    if text.len() > MAX_STRING_BYTES {
        return Err(format!(
            "a value longer than {MAX_STRING_BYTES} bytes: ids and free text do not belong in a snapshot"
        ));
    }
    let dict = dict.get_or_insert_with(DictBuilder::default);
    dict.push(text).map(f64::from).map_err(|e| e.to_string())
}

/// Why a field is not a number a snapshot holds.
enum NotANumber {
    /// A word (or not UTF-8): in a column not forced to numbers, it makes the column text.
    Word(String),
    /// A number whose f32 is not finite (`NaN`, `inf`, `1e39`).
    OutOfRange(String),
}

impl From<NotANumber> for String {
    fn from(e: NotANumber) -> String {
        match e {
            NotANumber::Word(s) | NotANumber::OutOfRange(s) => s,
        }
    }
}

/// One field: empty (or blank) is missing (NaN); `true` and `false` in any case are 1 and 0;
/// otherwise a number, blanks around it allowed, whose f32 is finite. Parsed as f64 (what the
/// libraries were given) and narrowed from there, as numpy does for XGBoost.
fn parse_value(field: &[u8]) -> Result<f64, NotANumber> {
    let text = std::str::from_utf8(field).map_err(|_| NotANumber::Word("not UTF-8".into()))?;
    let text = text.trim();
    if text.is_empty() {
        return Ok(f64::NAN);
    }
    // A dataframe's booleans (`True`, `false`): 1 and 0, as a Parquet boolean column reads.
    if text.eq_ignore_ascii_case("true") {
        return Ok(1.0);
    }
    if text.eq_ignore_ascii_case("false") {
        return Ok(0.0);
    }
    match text.parse::<f64>() {
        Ok(v) if (v as f32).is_finite() => Ok(v),
        Ok(v) => Err(NotANumber::OutOfRange(super::not_finite(text, v))),
        Err(_) => Err(NotANumber::Word(format!(
            "`{}` is not a number",
            text.escape_debug()
        ))),
    }
}

/// Refuses a file that ends inside a quoted field (an export cut short: `"12.5"` cut to `"1`),
/// which the CSV reader would take as the field's last value. `from` is where the last record
/// starts.
fn check_closed(bytes: &[u8], from: u64) -> Result<(), String> {
    let mut rest = bytes
        .get(from as usize..)
        .unwrap_or_default()
        .iter()
        .peekable();
    let mut field_start = true;
    while let Some(&b) = rest.next() {
        match b {
            b'"' if field_start => loop {
                match rest.next() {
                    None => {
                        return Err(
                            "the file ends inside a quoted field: was the export cut short?".into(),
                        )
                    }
                    Some(b'"') if rest.peek() == Some(&&b'"') => {
                        rest.next();
                    }
                    Some(b'"') => {
                        field_start = false;
                        break;
                    }
                    Some(_) => {}
                }
            },
            b',' | b'\n' | b'\r' => field_start = true,
            _ => field_start = false,
        }
    }
    Ok(())
}
