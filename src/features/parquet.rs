//! The Parquet form of a snapshot, as a data warehouse exports it: a `customer_id` string column
//! first, then numeric columns (integers, floats, decimals as a warehouse's `NUMERIC` exports
//! them, booleans as 0/1) and string columns (`Utf8`,
//! `LargeUtf8`, `Utf8View`, and dictionary-encoded strings); a null or an empty string is a
//! missing value. A column of another type (a timestamp, a date, a list) is left out by name,
//! so an export with an `updated_at` beside the features still loads.
//! Every fault names the column and the data row, as the CSV loader names line and column,
//! and a refusal lists the first hundred and counts them all, as the CSV loader's does.
//!
//! Read through the arrow/parquet crates in record batches, written straight into the store's
//! row-major values; nothing here is on a lookup path.

use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Decimal128Type, Decimal256Type, Decimal32Type, Decimal64Type, Float16Type, Float32Type,
    Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, UInt16Type, UInt32Type, UInt64Type,
    UInt8Type,
};
use arrow_array::{Array, ArrowPrimitiveType};
use arrow_schema::DataType;
use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};

use super::csv_load::{MAX_COLUMNS, MAX_ID_BYTES, MAX_LISTED_FAULTS};
use super::dictionary::{finish_columns, DictBuilder};
use super::exact::ExactBuilder;
use super::index::{DuplicateId, IdIndex, Skipped};
use super::{FeatureError, FeatureStore};

/// Rows per record batch read.
const BATCH: usize = 64 * 1024;

/// A file, or a folder's parts read as one snapshot (`shown` the folder, `files` its parts in
/// order; see `parts`): every part has the first one's columns, and faults name the part.
pub(super) fn read_parts(shown: &Path, files: &[PathBuf]) -> Result<FeatureStore, FeatureError> {
    let fault = |detail: String| FeatureError::Format {
        path: shown.to_owned(),
        detail,
    };
    let folder = files.first().is_some_and(|f| f != shown);
    let part_name = |f: &Path| {
        f.file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
    };
    let open = |f: &Path| {
        let file = std::fs::File::open(f).map_err(|source| FeatureError::Io {
            path: f.to_owned(),
            source,
        })?;
        // A writer's Arrow schema with a type this reader lacks (polars' `Int128`) refuses the
        // file: its columns are then read by their Parquet types, and one without an Arrow
        // type of its own (16 fixed bytes) is left out by name, as a timestamp is.
        ParquetRecordBatchReaderBuilder::try_new(file)
            .or_else(|e| {
                let options = ArrowReaderOptions::new().with_skip_arrow_metadata(true);
                std::fs::File::open(f)
                    .ok()
                    .and_then(|file| {
                        ParquetRecordBatchReaderBuilder::try_new_with_options(file, options).ok()
                    })
                    .ok_or(e)
            })
            .map_err(|e| {
                let part = if folder {
                    format!("part `{}`: ", part_name(f))
                } else {
                    String::new()
                };
                fault(format!("{part}not a readable Parquet file: {e}"))
            })
    };
    let Some(first) = files.first() else {
        return Err(fault("no parts".into()));
    };
    let builder = open(first)?;
    let schema = builder.schema().clone();
    let fields = schema.fields();
    // Column names as a CSV header's are read: spaces around them are not part of the name.
    let names: Vec<&str> = fields.iter().map(|f| f.name().trim()).collect();
    match fields.first() {
        // Strings, a dictionary of them (a pandas category), or integers (a warehouse's
        // BIGINT key, read as its decimal digits).
        Some(f) if names[0] == "customer_id" => match f.data_type() {
            t if is_string(t) || is_integer(t) => {}
            other => {
                return Err(fault(format!(
                    "column `customer_id`: expected strings or integers, found {other}"
                )))
            }
        },
        _ => {
            let first = names.first().copied().unwrap_or_default();
            return Err(fault(super::csv_load::misplaced_id(&names).unwrap_or_else(
                || format!("the first column must be `customer_id`, not `{first}`"),
            )));
        }
    }
    // Every part has the first's columns, each holding one kind of values, and their rows
    // are sized together. A column of type `null` (pandas and polars write one for a part
    // where it holds no value) says no kind: it takes the other parts', and the part that
    // said it first is the one a part differing from it is named against.
    let mut kinds: Vec<(DataType, usize)> =
        fields.iter().map(|f| (f.data_type().clone(), 0)).collect();
    let mut rows = 0usize;
    for (p, f) in files.iter().enumerate() {
        let b = if f == first { None } else { Some(open(f)?) };
        let b = b.as_ref().unwrap_or(&builder);
        if let Some((detail, against)) = unlike(&schema, &kinds, b.schema()) {
            return Err(fault(format!(
                "part `{}` differs from `{}`: {detail}",
                part_name(f),
                part_name(&files[against])
            )));
        }
        for ((t, from), y) in kinds.iter_mut().zip(b.schema().fields()) {
            if *t == DataType::Null {
                *t = y.data_type().clone();
                *from = p;
            }
        }
        let claimed = usize::try_from(b.metadata().file_metadata().num_rows()).unwrap_or(0);
        // Room is made up front for what a footer claims only up to a row per byte of the
        // file, so a damaged footer cannot ask for more memory than the file could fill (a file
        // packed tighter than that still loads, its vectors growing as they are read).
        let size = std::fs::metadata(f).map_or(0, |m| m.len());
        rows = rows.saturating_add(claimed.min(usize::try_from(size).unwrap_or(usize::MAX)));
    }
    let mut columns = Vec::with_capacity(fields.len() - 1);
    let mut dicts: Vec<Option<DictBuilder>> = Vec::with_capacity(fields.len() - 1);
    // Per loaded column, its field in the file; other types are left out by name.
    let mut sources = Vec::with_capacity(fields.len() - 1);
    let mut left_out = Vec::new();
    for (i, name) in names.iter().enumerate().skip(1) {
        let marked = super::csv_load::skip_marked(name);
        let name = marked.unwrap_or(name).to_owned();
        if name.is_empty() {
            return Err(fault("empty column name".into()));
        }
        if columns.contains(&name) || left_out.iter().any(|(n, _)| *n == name) {
            return Err(fault(format!("duplicate column `{name}`")));
        }
        let kind = &kinds[i].0;
        if marked.is_some() {
            left_out.push((name, super::SKIPPED.into()));
            continue;
        }
        if is_pandas_index(&name) {
            left_out.push((name, super::PANDAS_INDEX.into()));
            continue;
        }
        if is_string(kind) {
            dicts.push(Some(DictBuilder::default()));
        } else if is_numeric(kind) {
            dicts.push(None);
        } else {
            left_out.push((name, kind.to_string()));
            continue;
        }
        columns.push(name);
        sources.push(i);
    }
    if columns.len() > MAX_COLUMNS {
        return Err(fault(format!("more than {MAX_COLUMNS} feature columns")));
    }
    for (name, kind) in &left_out {
        tracing::warn!(path = %shown.display(), column = %name, kind = %kind, "{}", super::left_out_message(name, kind));
    }
    let width = columns.len();
    let rows = rows.min(u32::MAX as usize);
    let mut ids = IdIndex::with_capacity(rows, 10);
    let mut values: Vec<f32> = Vec::with_capacity(rows.saturating_mul(width));
    let mut exact = ExactBuilder::new(width);
    let mut faults = Faults::default();
    // Columns out of distinct values: told once, not on every row after.
    let mut full = vec![false; width];
    // Where each part's rows start among all the rows read, and the rows that took no id: to
    // name a duplicate's first place.
    let mut starts: Vec<(usize, String)> = Vec::with_capacity(files.len());
    let (mut base, mut skipped) = (0usize, Skipped::default());
    let mut builder = Some(builder);
    for f in files {
        let b = match builder.take() {
            Some(b) => b,
            None => open(f)?,
        };
        if folder {
            faults.part = Some(part_name(f));
        }
        starts.push((base, part_name(f)));
        let reader = b
            .with_batch_size(BATCH)
            .build()
            .map_err(|e| fault(e.to_string()))?;
        let mut done = 0usize;
        for batch in reader {
            let batch = match batch {
                Ok(b) => b,
                Err(e) => {
                    let part = faults.part.as_ref().map(|p| format!("part `{p}`, "));
                    let at = format!("{}after data row {done}", part.unwrap_or_default());
                    return Err(faults.stop(shown, format!("{at}: {e}")));
                }
            };
            let n = batch.num_rows();
            let id_col = batch.column(0);
            // A dictionary's keys, once a batch.
            let keys = id_col.as_any_dictionary_opt().map(|d| d.normalized_keys());
            let mut digits = itoa::Buffer::new();
            // The batch's faults by stream (ids, then each column's strings), merged by row
            // below so the list is in file order.
            let mut id_faults = Stream::default();
            for i in 0..n {
                let row = base + done + i;
                let Some(id) = id_at(id_col.as_ref(), keys.as_deref(), i, &mut digits) else {
                    id_faults.push(i, "null customer_id".into());
                    skipped.skip(row);
                    continue;
                };
                if id.is_empty() {
                    id_faults.push(i, "empty customer_id".into());
                    skipped.skip(row);
                } else if id.len() > MAX_ID_BYTES {
                    id_faults.push(i, format!("customer_id longer than {MAX_ID_BYTES} bytes"));
                    skipped.skip(row);
                } else if ids.arena_len() + id.len() > u32::MAX as usize {
                    id_faults.drain(done, "customer_id", None, &mut faults);
                    let at = faults.at_row(done + i + 1);
                    let detail = "customer ids exceed 4 GiB in total";
                    return Err(faults.stop(shown, format!("{at}, column `customer_id`: {detail}")));
                } else if let Err(DuplicateId(first)) = ids.push(id) {
                    let detail = format!(
                        "duplicate customer_id `{id}` (first seen on {})",
                        first_place(&starts, skipped.row_of(first), folder)
                    );
                    id_faults.push(i, detail);
                    skipped.skip(row);
                }
            }
            let cols: Vec<_> = sources.iter().map(|&i| batch.column(i)).collect();
            // String columns coded for the whole batch first.
            let mut codes: Vec<Vec<f64>> = Vec::with_capacity(width);
            let mut string_faults: Vec<Stream> = (0..width).map(|_| Stream::default()).collect();
            for (c, col) in cols.iter().enumerate() {
                codes.push(match &mut dicts[c] {
                    Some(b) => string_codes(col.as_ref(), b, |i, detail, too_many| {
                        if !(too_many && std::mem::replace(&mut full[c], true)) {
                            string_faults[c].push(i, detail);
                        }
                    }),
                    None => Vec::new(),
                });
            }
            for i in 0..n {
                id_faults.drain(done, "customer_id", Some(i), &mut faults);
                for (c, col) in cols.iter().enumerate() {
                    if let Some(&code) = codes[c].get(i) {
                        string_faults[c].drain(done, &columns[c], Some(i), &mut faults);
                        values.push(exact.push(c, code));
                        continue;
                    }
                    let v = number_at(col.as_ref(), i);
                    if !(v as f32).is_finite() && !missing(col.as_ref(), i) {
                        let at = faults.at_row(done + i + 1);
                        faults.add(format!(
                            "{at}, column `{}`: {}",
                            columns[c],
                            super::not_finite(&v.to_string(), v)
                        ));
                    }
                    // Kept exactly, as the CSV loader keeps a decimal f32 cannot hold.
                    values.push(exact.push(c, v));
                }
                exact.end_row();
            }
            id_faults.drain(done, "customer_id", None, &mut faults);
            for (c, f) in string_faults.iter_mut().enumerate() {
                f.drain(done, &columns[c], None, &mut faults);
            }
            done += n;
        }
        base += done;
    }
    if let Some(e) = faults.into_error(shown) {
        return Err(e);
    }
    values.shrink_to_fit();
    let dicts = finish_columns(dicts, &mut values, width);
    FeatureStore::with_exact(
        columns,
        ids,
        values,
        exact.finish(),
        shown.display().to_string(),
    )
    .and_then(|s| s.with_dictionaries(dicts))
    .map(|s| s.with_left_out(left_out))
    .map_err(fault)
}

/// How a part's columns differ from the first part's: another name, or another kind of
/// values than `kinds` (each column's so far, with the part that said it) holds (text where
/// they are numbers, or a type left out; a column of type `null` is any kind); `None` when
/// alike, else what differs and the part it differs from.
fn unlike(
    first: &arrow_schema::Schema,
    kinds: &[(DataType, usize)],
    part: &arrow_schema::Schema,
) -> Option<(String, usize)> {
    let kind = |t: &DataType| {
        if *t == DataType::Null {
            None
        } else if is_string(t) {
            Some("text")
        } else if is_numeric(t) {
            Some("numbers")
        } else {
            Some("left out")
        }
    };
    let (a, b) = (first.fields(), part.fields());
    for (i, ((x, (t, from)), y)) in a.iter().zip(kinds).zip(b.iter()).enumerate() {
        if x.name() != y.name() {
            let detail = format!(
                "column {} is `{}` there, `{}` here",
                i + 1,
                x.name(),
                y.name()
            );
            return Some((detail, 0));
        }
        if i == 0 {
            if !(is_string(y.data_type()) || is_integer(y.data_type())) {
                let detail = format!(
                    "column `customer_id`: expected strings or integers, found {}",
                    y.data_type()
                );
                return Some((detail, 0));
            }
            continue;
        }
        if let (Some(k), Some(here)) = (kind(t), kind(y.data_type())) {
            if k != here {
                let detail = format!(
                    "column `{}` holds {k} ({t}) there, {here} ({}) here",
                    x.name(),
                    y.data_type()
                );
                return Some((detail, *from));
            }
        }
    }
    (a.len() != b.len()).then(|| (format!("{} columns there, {} here", a.len(), b.len()), 0))
}

/// Where data row `index` (0-based, among all the rows read) was: its row, and in a folder its
/// part.
fn first_place(starts: &[(usize, String)], index: usize, folder: bool) -> String {
    let at = starts
        .partition_point(|(s, _)| *s <= index)
        .saturating_sub(1);
    let (start, name) = starts.get(at).map_or((0, ""), |(s, n)| (*s, n.as_str()));
    let row = index - start + 1;
    if folder {
        format!("part `{name}`, data row {row}")
    } else {
        format!("data row {row}")
    }
}

/// The column pandas writes for a frame's index that is not a plain range
/// (`__index_level_0__`): row labels, not a customer's feature.
fn is_pandas_index(name: &str) -> bool {
    name.strip_prefix("__index_level_")
        .and_then(|rest| rest.strip_suffix("__"))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

fn is_string(t: &DataType) -> bool {
    match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, v) => {
            matches!(
                **v,
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
            )
        }
        _ => false,
    }
}

/// The faults of one read, in file order: the first [`MAX_LISTED_FAULTS`] listed, all counted.
#[derive(Default)]
struct Faults {
    listed: Vec<String>,
    total: u64,
    /// The part being read, in a folder snapshot.
    part: Option<String>,
}

impl Faults {
    /// A data row's place: `row 12`, in a folder `part `p.parquet`, row 12`.
    fn at_row(&self, row: usize) -> String {
        match &self.part {
            Some(p) => format!("part `{p}`, row {row}"),
            None => format!("row {row}"),
        }
    }

    fn add(&mut self, fault: String) {
        self.total += 1;
        if self.listed.len() < MAX_LISTED_FAULTS {
            self.listed.push(fault);
        }
    }

    /// The refusal, or `None` when nothing was wrong: one fault as it always read, several as
    /// a list.
    fn into_error(mut self, path: &Path) -> Option<FeatureError> {
        match self.total {
            0 => None,
            1 => self.listed.pop().map(|detail| FeatureError::Format {
                path: path.to_owned(),
                detail,
            }),
            total => Some(FeatureError::Values {
                path: path.to_owned(),
                faults: self.listed,
                total,
            }),
        }
    }

    /// The refusal with one more fault after which nothing can be read.
    fn stop(mut self, path: &Path, fault: String) -> FeatureError {
        self.add(fault);
        self.into_error(path).expect("a fault was just added")
    }
}

/// One stream of a batch's faults (its ids, or one string column's) in row order: the first
/// [`MAX_LISTED_FAULTS`] kept, as no more of one stream can be listed, the rest counted.
#[derive(Default)]
struct Stream {
    kept: std::collections::VecDeque<(usize, String)>,
    more: u64,
}

impl Stream {
    fn push(&mut self, row_in_batch: usize, detail: String) {
        if self.kept.len() < MAX_LISTED_FAULTS {
            self.kept.push_back((row_in_batch, detail));
        } else {
            self.more += 1;
        }
    }

    /// Moves the kept faults up to row `upto` of the batch (all of them, and the count of the
    /// rest, when `None`) into `faults`, each named by its data row and `column`.
    fn drain(&mut self, done: usize, column: &str, upto: Option<usize>, faults: &mut Faults) {
        while let Some((i, _)) = self.kept.front() {
            if upto.is_some_and(|u| *i > u) {
                return;
            }
            if let Some((i, detail)) = self.kept.pop_front() {
                let at = faults.at_row(done + i + 1);
                faults.add(format!("{at}, column `{column}`: {detail}"));
            }
        }
        if upto.is_none() {
            faults.total += std::mem::take(&mut self.more);
        }
    }
}

/// A string column's provisional codes for one batch (NaN for null, empty or faulty); each
/// fault goes to `fault` with its row in the batch, and whether the column ran out of distinct
/// values. A dictionary array's values are coded once each, when first used.
fn string_codes(
    a: &dyn Array,
    b: &mut DictBuilder,
    mut fault: impl FnMut(usize, String, bool),
) -> Vec<f64> {
    // `None` after a fault: a dictionary value at fault is told on every row that uses it.
    let mut code = |i: usize, s: Option<&str>| -> Option<f64> {
        match s {
            None | Some("") => Some(f64::NAN),
            Some(s) if s.len() > super::csv_load::MAX_STRING_BYTES => {
                let detail = format!(
                    "a value longer than {} bytes: ids and free text do not belong in a snapshot",
                    super::csv_load::MAX_STRING_BYTES
                );
                fault(i, detail, false);
                None
            }
            Some(s) => match b.push(s) {
                Ok(code) => Some(f64::from(code)),
                Err(e) => {
                    fault(i, e.to_string(), true);
                    None
                }
            },
        }
    };
    if let Some(d) = a.as_any_dictionary_opt() {
        let values = d.values();
        let keys = d.normalized_keys();
        let mut coded: Vec<Option<f64>> = vec![None; values.len()];
        let mut out = Vec::with_capacity(a.len());
        for (i, &k) in keys.iter().enumerate() {
            if a.is_null(i) {
                out.push(f64::NAN);
                continue;
            }
            let v = match coded.get(k).copied().flatten() {
                Some(v) => v,
                None => match code(i, string_at(values.as_ref(), k)) {
                    Some(v) => {
                        if let Some(slot) = coded.get_mut(k) {
                            *slot = Some(v);
                        }
                        v
                    }
                    None => f64::NAN,
                },
            };
            out.push(v);
        }
        return out;
    }
    (0..a.len())
        .map(|i| code(i, string_at(a, i)).unwrap_or(f64::NAN))
        .collect()
}

fn is_numeric(t: &DataType) -> bool {
    is_integer(t)
        || matches!(
            t,
            DataType::Float16
                | DataType::Float32
                | DataType::Float64
                | DataType::Decimal32(_, _)
                | DataType::Decimal64(_, _)
                | DataType::Decimal128(_, _)
                | DataType::Decimal256(_, _)
                | DataType::Boolean
                | DataType::Null
        )
}

/// Integer types a customer id may have.
fn is_integer(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64
    )
}

/// A customer id: a string, a dictionary's string (`keys`: its normalized keys), or an
/// integer's decimal digits (written into `digits`); `None` for null.
fn id_at<'a>(
    a: &'a dyn Array,
    keys: Option<&[usize]>,
    i: usize,
    digits: &'a mut itoa::Buffer,
) -> Option<&'a str> {
    if a.is_null(i) {
        return None;
    }
    if let (Some(d), Some(keys)) = (a.as_any_dictionary_opt(), keys) {
        return string_at(d.values().as_ref(), *keys.get(i)?);
    }
    fn int<T: ArrowPrimitiveType>(a: &dyn Array, i: usize) -> T::Native {
        a.as_primitive::<T>().value(i)
    }
    Some(match a.data_type() {
        DataType::Int8 => digits.format(int::<Int8Type>(a, i)),
        DataType::Int16 => digits.format(int::<Int16Type>(a, i)),
        DataType::Int32 => digits.format(int::<Int32Type>(a, i)),
        DataType::Int64 => digits.format(int::<Int64Type>(a, i)),
        DataType::UInt8 => digits.format(int::<UInt8Type>(a, i)),
        DataType::UInt16 => digits.format(int::<UInt16Type>(a, i)),
        DataType::UInt32 => digits.format(int::<UInt32Type>(a, i)),
        DataType::UInt64 => digits.format(int::<UInt64Type>(a, i)),
        _ => return string_at(a, i),
    })
}

fn string_at(a: &dyn Array, i: usize) -> Option<&str> {
    if a.is_null(i) {
        return None;
    }
    match a.data_type() {
        DataType::Utf8 => Some(a.as_string::<i32>().value(i)),
        DataType::LargeUtf8 => Some(a.as_string::<i64>().value(i)),
        DataType::Utf8View => Some(a.as_string_view().value(i)),
        _ => None,
    }
}

/// A decimal's unscaled integer over 10^scale: `8521` at scale 2 is the f64 that "85.21"
/// parses to, as a CSV of the same export gives.
fn scaled(unscaled: f64, scale: i8) -> f64 {
    let scale = i32::from(scale);
    if scale >= 0 {
        unscaled / 10f64.powi(scale)
    } else {
        unscaled * 10f64.powi(-scale)
    }
}

/// True when the value at `i` is null: a column of type `null` (what pandas and polars write
/// for a column without a value tonight) holds no validity bits, so `is_null` alone says no.
fn missing(a: &dyn Array, i: usize) -> bool {
    a.is_null(i) || *a.data_type() == DataType::Null
}

/// The value at `i` as the file holds it, in f64: NaN for null (and for a NaN the file holds,
/// which the caller refuses).
fn number_at(a: &dyn Array, i: usize) -> f64 {
    if missing(a, i) {
        return f64::NAN;
    }
    fn p<T: ArrowPrimitiveType>(a: &dyn Array, i: usize, f: impl Fn(T::Native) -> f64) -> f64 {
        f(a.as_primitive::<T>().value(i))
    }
    match a.data_type() {
        DataType::Int8 => p::<Int8Type>(a, i, f64::from),
        DataType::Int16 => p::<Int16Type>(a, i, f64::from),
        DataType::Int32 => p::<Int32Type>(a, i, f64::from),
        DataType::Int64 => p::<Int64Type>(a, i, |v| v as f64),
        DataType::UInt8 => p::<UInt8Type>(a, i, f64::from),
        DataType::UInt16 => p::<UInt16Type>(a, i, f64::from),
        DataType::UInt32 => p::<UInt32Type>(a, i, f64::from),
        DataType::UInt64 => p::<UInt64Type>(a, i, |v| v as f64),
        DataType::Float32 => p::<Float32Type>(a, i, f64::from),
        DataType::Float64 => p::<Float64Type>(a, i, |v| v),
        DataType::Float16 => p::<Float16Type>(a, i, f64::from),
        DataType::Decimal32(_, scale) => scaled(p::<Decimal32Type>(a, i, f64::from), *scale),
        DataType::Decimal64(_, scale) => scaled(p::<Decimal64Type>(a, i, |v| v as f64), *scale),
        DataType::Decimal128(_, scale) => scaled(p::<Decimal128Type>(a, i, |v| v as f64), *scale),
        // A BIGNUMERIC's unscaled integer, rounded to the nearest f64 once (through its digits
        // only beyond i128).
        DataType::Decimal256(_, scale) => scaled(
            p::<Decimal256Type>(a, i, |v| match v.to_i128() {
                Some(x) => x as f64,
                None => v.to_string().parse().unwrap_or(f64::NAN),
            }),
            *scale,
        ),
        DataType::Boolean => f64::from(u8::from(a.as_boolean().value(i))),
        _ => f64::NAN,
    }
}
