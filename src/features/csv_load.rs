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
use super::index::{DuplicateId, IdIndex, Skipped};
use super::{FeatureError, FeatureStore, RowFault};

/// The name of a column marked to be left out (`updated_at:skip`, an audit column the export
/// carries), in a CSV header or a Parquet schema.
pub(super) fn skip_marked(name: &str) -> Option<&str> {
    match name.rsplit_once(':') {
        Some((n, k)) if k.eq_ignore_ascii_case("skip") => Some(n.trim_end()),
        _ => None,
    }
}

/// Longest customer id accepted, in bytes; longer ids are data errors, not customers.
pub const MAX_ID_BYTES: usize = 255;
/// Most feature columns a snapshot may have.
pub const MAX_COLUMNS: usize = 4096;

/// Most words `--features-null` may name.
pub const MAX_NULL_WORDS: usize = 16;
/// Longest word `--features-null` may name, in bytes.
const MAX_NULL_WORD_BYTES: usize = 64;

/// The words an export writes for a missing value besides an empty field (`NA`, `NULL`,
/// Hive's `\N`): a CSV field that is exactly one of them is missing in any column, so such a
/// word neither turns a column of numbers to text nor becomes a category.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NullWords(Box<[Box<[u8]>]>);

impl NullWords {
    /// The words, each checked: not empty (an empty field is missing already), not a number
    /// (it would hide real values), at most 64 bytes; at most 16 words.
    pub fn new<S: AsRef<str>>(words: &[S]) -> Result<Self, String> {
        if words.len() > MAX_NULL_WORDS {
            return Err(format!("{} words; at most {MAX_NULL_WORDS}", words.len()));
        }
        let mut out: Vec<Box<[u8]>> = Vec::with_capacity(words.len());
        for w in words {
            let w = w.as_ref();
            if w.is_empty() {
                return Err("an empty word: an empty field is a missing value already".into());
            }
            if w.len() > MAX_NULL_WORD_BYTES {
                return Err(format!("`{w}` is longer than {MAX_NULL_WORD_BYTES} bytes"));
            }
            if matches!(parse_value(w.as_bytes()), Ok(v) if !v.is_nan()) {
                return Err(format!(
                    "`{w}` reads as a number, so it would hide every such value"
                ));
            }
            if !out.iter().any(|o| **o == *w.as_bytes()) {
                out.push(w.as_bytes().into());
            }
        }
        Ok(NullWords(out.into()))
    }

    /// Whether a field, exactly as written, is one of the words.
    #[inline]
    fn is_null(&self, field: &[u8]) -> bool {
        !self.0.is_empty() && self.0.iter().any(|w| **w == *field)
    }
}

/// `--features-null WORD` as a shell takes it (the word single-quoted when it holds anything
/// but letters, digits and `_-./`, as Hive's `\N` does); `None` for a word with a comma, which
/// the flag would split.
pub fn null_flag(word: &str) -> Option<String> {
    if word.contains(',') || word.is_empty() {
        return None;
    }
    let plain = word
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'));
    Some(if plain {
        format!("--features-null {word}")
    } else {
        format!("--features-null '{}'", word.replace('\'', "'\\''"))
    })
}

pub(super) fn read_csv(path: &Path, nulls: &NullWords) -> Result<FeatureStore, FeatureError> {
    let bytes = std::fs::read(path).map_err(|source| FeatureError::Io {
        path: path.to_owned(),
        source,
    })?;
    parse_csv(&bytes, path, nulls)
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

pub(super) fn parse_csv(
    bytes: &[u8],
    path: &Path,
    nulls: &NullWords,
) -> Result<FeatureStore, FeatureError> {
    let header = read_header(bytes, path)?;
    let left_out = || {
        let why = |n: &String| (n.clone(), super::SKIPPED.to_owned());
        header.skipped.iter().map(why).collect()
    };
    match read_rows(bytes, path, &header, header.kinds.clone(), nulls)? {
        Pass::Done(store) => Ok(store.with_left_out(left_out())),
        Pass::Again(kinds, turned) => match read_rows(bytes, path, &header, kinds, nulls)? {
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

/// The column names and kinds the header gives (`segment:str`, `tenure:num`, `arpu`); every
/// fault in it is reported at once.
fn read_header(bytes: &[u8], path: &Path) -> Result<Header, FeatureError> {
    let mut faults = Faults::default();
    let fatal = |detail: String| Faults::default().stop(0, 1, detail, bytes, path);
    let header = match reader(bytes).byte_headers() {
        Ok(h) => h.clone(),
        Err(e) => return Err(fatal(e.to_string())),
    };
    if header.is_empty() || header.iter().all(|h| h.is_empty()) {
        return Err(fatal("empty file: expected a header line".into()));
    }
    if header.get(0) != Some(b"customer_id".as_slice()) {
        return Err(fatal(not_an_id_header(bytes, &header)));
    }
    if header.len() - 1 > MAX_COLUMNS {
        return Err(fatal(format!("more than {MAX_COLUMNS} feature columns")));
    }
    let mut columns: Vec<String> = Vec::with_capacity(header.len() - 1);
    let mut kinds = Vec::with_capacity(header.len() - 1);
    let (mut slots, mut skipped) = (Vec::with_capacity(header.len() - 1), Vec::new());
    for (i, name) in header.iter().enumerate().skip(1) {
        let Ok(name) = std::str::from_utf8(name) else {
            faults.add(0, i + 1, "column name is not UTF-8".into());
            slots.push(None);
            continue;
        };
        if let Some(n) = skip_marked(name) {
            if columns.iter().chain(&skipped).any(|c| c == n) {
                faults.add(0, i + 1, format!("duplicate column `{n}`"));
            }
            slots.push(None);
            skipped.push(n.to_owned());
            continue;
        }
        let (name, kind) = match name.rsplit_once(':') {
            Some((n, k)) if k.eq_ignore_ascii_case("str") => (n.trim_end(), Kind::Str),
            Some((n, k)) if k.eq_ignore_ascii_case("num") => (n.trim_end(), Kind::Num),
            // `zip:string`, `plan:text`: a kind misspelt would silently name the column.
            Some((n, k)) if !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphabetic()) => {
                faults.add(
                    0,
                    i + 1,
                    format!(
                        "column `{name}`: `:{k}` is not a kind: write `{n}:str` for text, \
                         `{n}:num` for numbers or `{n}:skip` to leave it out"
                    ),
                );
                slots.push(None);
                continue;
            }
            _ => (name, Kind::Auto),
        };
        if name.is_empty() {
            faults.add(0, i + 1, "empty column name".into());
        } else if columns.iter().chain(&skipped).any(|c| c == name) {
            faults.add(0, i + 1, format!("duplicate column `{name}`"));
        }
        slots.push(Some(columns.len()));
        columns.push(name.to_owned());
        kinds.push(kind);
    }
    if let Some(e) = faults.into_error(bytes, path) {
        return Err(e);
    }
    Ok(Header {
        columns,
        kinds,
        slots,
        skipped,
    })
}

/// Why a snapshot whose columns are `names` (trimmed) is not read when one of them is the id
/// in another case (`CUSTOMER_ID`) or not first (pandas writes an index last); `None` when
/// none is.
pub(super) fn misplaced_id<S: AsRef<str>>(names: &[S]) -> Option<String> {
    let is_id = |n: &str| n.eq_ignore_ascii_case("customer_id");
    let first = names.first().map_or("", AsRef::as_ref);
    let shown: String = first.chars().take(40).collect();
    if is_id(first) {
        return Some(format!(
            "the first column is `{shown}`: name it `customer_id`, in lower case"
        ));
    }
    let at = names.iter().position(|n| is_id(n.as_ref()))?;
    Some(format!(
        "the first column is `{shown}`; `customer_id` is column {}: put it first",
        at + 1
    ))
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
    let names: Vec<String> = header
        .iter()
        .map(|h| String::from_utf8_lossy(h).into_owned())
        .collect();
    if let Some(fault) = misplaced_id(&names) {
        return fault;
    }
    // A file that is no snapshot at all (a key, a password file, `/etc/shadow` given to a
    // reload by mistake or on purpose) is not quoted: only a name a CSV header could hold.
    let a_name = header.len() > 1
        && first.chars().count() <= 40
        && first
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ' '));
    if a_name {
        format!("the first column must be `customer_id`, not `{shown}`")
    } else {
        "the first line is not a snapshot's header (column names separated by commas, \
         `customer_id` first): is this the snapshot file?"
            .into()
    }
}

/// One pass over the data rows with the kinds known so far. Every fault is collected (a
/// pipeline owner fixes them in one round), except those after which nothing can be read.
fn read_rows(
    bytes: &[u8],
    path: &Path,
    header: &Header,
    mut kinds: Vec<Kind>,
    nulls: &NullWords,
) -> Result<Pass, FeatureError> {
    let columns = &header.columns;
    let mut faults = Faults::default();
    let mut reader = reader(bytes);
    if let Err(e) = reader.byte_headers() {
        return Err(faults.stop(0, 1, e.to_string(), bytes, path));
    }
    let width = columns.len();
    // Room for as many rows as the file has lines (a quoted newline aside, an upper bound),
    // so the values never grow by doubling: a load peaks at the file's bytes and the store.
    // No more than the rows the file could hold (an id, a comma per column and a newline
    // each), so blank lines cannot ask for more than four times the file's size.
    let lines = bytes.iter().filter(|&&b| b == b'\n').count() + 1;
    let guess = lines.min(bytes.len() / (width + 2) + 1);
    let mut ids = IdIndex::with_capacity(guess, 10);
    let mut values: Vec<f32> = Vec::with_capacity(guess * width);
    let mut exact = ExactBuilder::new(width);
    let mut dicts: Vec<Option<DictBuilder>> = kinds
        .iter()
        .map(|k| (*k == Kind::Str).then(DictBuilder::default))
        .collect();
    // Per `Auto` column: a number was read in it (a string after that needs a second pass).
    // A non-finite number (`NaN`, `inf`, `1e39`) counts as one: it is a fault in a column of
    // numbers, and a value like any other once a later field makes the column text, which
    // that second pass then reads.
    let mut numbers_seen = vec![false; width];
    // Per column: its distinct values ran out, a fault told once.
    let mut full = vec![false; width];
    let mut again = false;
    let mut turned = Vec::new();
    let mut record = csv::ByteRecord::new();
    let mut last_record_at = 0;
    // Data rows read, and those that took no id (to name a repeat's first row).
    let (mut row, mut skipped) = (0usize, Skipped::default());
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(true) => row += 1,
            Ok(false) => break,
            // A ragged row: named, and the rows after it still read.
            Err(e) if matches!(e.kind(), csv::ErrorKind::UnequalLengths { .. }) => {
                faults.add(e.position().map_or(0, |p| p.byte()), 1, e.to_string());
                skipped.skip(row);
                row += 1;
                continue;
            }
            Err(e) => {
                let at = e.position().map_or(0, |p| p.byte());
                return Err(faults.stop(at, 1, e.to_string(), bytes, path));
            }
        }
        let at = record.position().map_or(0, |p| p.byte());
        last_record_at = at;
        let id = match check_id(&record[0]) {
            Ok(id) => id,
            Err(detail) => {
                faults.add(at, 1, detail);
                skipped.skip(row - 1);
                continue;
            }
        };
        if ids.arena_len() + id.len() > u32::MAX as usize {
            let detail = "customer ids exceed 4 GiB in total".into();
            return Err(faults.stop(at, 1, detail, bytes, path));
        }
        if let Err(DuplicateId(first)) = ids.push(id) {
            let detail = format!(
                "duplicate customer_id `{id}` (first seen on data row {})",
                skipped.row_of(first) + 1
            );
            faults.add(at, 1, detail);
            skipped.skip(row - 1);
            continue;
        }
        for (i, field) in record.iter().enumerate().skip(1) {
            let Some(Some(c)) = header.slots.get(i - 1).copied() else {
                continue;
            };
            if nulls.is_null(field) {
                values.push(exact.push(c, f64::NAN));
                continue;
            }
            let mut fault = |detail: String| {
                faults.add(at, i + 1, format!("column `{}`: {detail}", columns[c]));
                f64::NAN
            };
            let v = match kinds[c] {
                Kind::Str => string_code(&mut dicts[c], field, &mut full[c]).unwrap_or_else(fault),
                Kind::Num => parse_value(field).unwrap_or_else(|e| fault(e.into())),
                Kind::Auto => match parse_value(field) {
                    Ok(v) => {
                        numbers_seen[c] |= !v.is_nan();
                        v
                    }
                    // A number beyond f32's range is a data error in a column of numbers.
                    Err(NotANumber::OutOfRange(e)) => {
                        // Its text was not kept, should the column turn out to be text.
                        numbers_seen[c] = true;
                        fault(e)
                    }
                    Err(_) => {
                        // Not a number: a string column. Values read as numbers before need
                        // their text again, so another pass reads the column as strings.
                        if numbers_seen[c] {
                            // Numbers, then text: often one bad value (`NA`, `1,5`) turning a
                            // numeric column into text, which a model then refuses.
                            let word: String =
                                String::from_utf8_lossy(field).chars().take(64).collect();
                            let line = line_at(bytes, at);
                            tracing::warn!(path = %path.display(), column = %columns[c], line,
                                value = %word,
                                "a column of numbers holds text from this line on, so it is read as text; --features-null reads such a word as a missing value, and `:num` in the header refuses it");
                            turned.push((c as u32, line, word));
                        }
                        again |= numbers_seen[c];
                        kinds[c] = Kind::Str;
                        dicts[c] = Some(DictBuilder::default());
                        string_code(&mut dicts[c], field, &mut full[c]).unwrap_or_else(fault)
                    }
                },
            };
            values.push(exact.push(c, v));
        }
        exact.end_row();
    }
    if let Err(detail) = check_closed(bytes, last_record_at) {
        faults.add(last_record_at, 1, detail);
    }
    // The pass that reads the turned columns as text finds every fault again, and only the
    // numbers' faults of the columns that stay numbers.
    if again {
        return Ok(Pass::Again(kinds, turned));
    }
    if let Some(e) = faults.into_error(bytes, path) {
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

/// A row's customer id, or what is wrong with it.
fn check_id(field: &[u8]) -> Result<&str, String> {
    let id = std::str::from_utf8(field).map_err(|_| "customer_id is not UTF-8".to_string())?;
    if id.is_empty() {
        return Err("empty customer_id".into());
    }
    if id == "customer_id" {
        return Err(
            "the header again (part files joined with a header each? keep the first)".into(),
        );
    }
    if id.len() > MAX_ID_BYTES {
        return Err(format!("customer_id longer than {MAX_ID_BYTES} bytes"));
    }
    Ok(id)
}

/// Most faults a refusal lists; the rest are counted.
pub const MAX_LISTED_FAULTS: usize = 100;

/// The faults one read found, in file order: the first [`MAX_LISTED_FAULTS`] with their place,
/// all of them counted. Places are byte offsets until the refusal, when one scan of the file
/// turns them into lines.
#[derive(Default)]
struct Faults {
    listed: Vec<(u64, usize, String)>,
    total: u64,
}

impl Faults {
    /// A fault in the record starting at byte `at`, in 1-based field `column`.
    fn add(&mut self, at: u64, column: usize, detail: String) {
        self.total += 1;
        if self.listed.len() < MAX_LISTED_FAULTS {
            self.listed.push((at, column, detail));
        }
    }

    /// The refusal, or `None` when nothing was wrong: one fault as it always read, several
    /// with each one's line.
    fn into_error(self, bytes: &[u8], path: &Path) -> Option<FeatureError> {
        let mut faults: Vec<RowFault> = Vec::with_capacity(self.listed.len());
        let (mut line, mut scanned) = (1u64, 0usize);
        for (at, column, detail) in self.listed {
            let start = record_start(bytes, at);
            // Offsets only grow, so each is counted from the last.
            line += bytes[scanned.min(start)..start]
                .iter()
                .filter(|&&b| b == b'\n')
                .count() as u64;
            scanned = scanned.max(start);
            faults.push(RowFault {
                line,
                column,
                detail,
            });
        }
        match self.total {
            0 => None,
            1 => faults.pop().map(|only| FeatureError::Parse {
                path: path.to_owned(),
                line: only.line,
                column: only.column,
                detail: only.detail,
            }),
            total => Some(FeatureError::Rows {
                path: path.to_owned(),
                faults,
                total,
            }),
        }
    }

    /// The refusal with one more fault after which nothing can be read.
    fn stop(
        mut self,
        at: u64,
        column: usize,
        detail: String,
        bytes: &[u8],
        path: &Path,
    ) -> FeatureError {
        self.add(at, column, detail);
        self.into_error(bytes, path)
            .expect("a fault was just added")
    }
}

/// With CRLF line endings (Python's csv writer, Windows exports) the csv crate starts a
/// record at the `\n` of the line ending before it: the record's own first byte.
fn record_start(bytes: &[u8], at: u64) -> usize {
    let mut at = (at as usize).min(bytes.len());
    while matches!(bytes.get(at), Some(b'\r' | b'\n')) {
        at += 1;
    }
    at
}

/// The 1-based line of the record starting at byte `at`.
fn line_at(bytes: &[u8], at: u64) -> u64 {
    let start = record_start(bytes, at);
    bytes[..start].iter().filter(|&&b| b == b'\n').count() as u64 + 1
}

/// Longest string value accepted, in bytes: categories are short names.
pub const MAX_STRING_BYTES: usize = 255;

/// A string field's provisional code (empty is missing, NaN). A column past its distinct
/// values is told once (`told`), not on every row after.
#[inline]
fn string_code(
    dict: &mut Option<DictBuilder>,
    field: &[u8],
    told: &mut bool,
) -> Result<f64, String> {
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
    match dict.push(text) {
        Ok(code) => Ok(f64::from(code)),
        Err(_) if *told => Ok(f64::NAN),
        Err(e) => {
            *told = true;
            Err(e.to_string())
        }
    }
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
        // pandas writes `NaN` for a missing value unless told `na_rep`.
        Ok(v) if v.is_nan() => Err(NotANumber::OutOfRange(match null_flag(text) {
            Some(flag) => format!(
                "`{text}` is not a number: an export's word for a missing value? `{flag}` \
                 reads it as one"
            ),
            None => super::not_finite(text, v),
        })),
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
