//! The customer feature snapshot: precomputed features per customer, numbers and strings, held
//! in memory (loaded from CSV, Parquet or an older `.nbf`) or used in place from a read-only map
//! of a version 4 `.nbf` file in the snapshot store (`mapped`, `snapshots`), so the replicas of
//! a node share one copy through the page cache.
//!
//! Values live in one row-major `Vec<f32>` (NaN marks a missing value), with the exact f64 of
//! values f32 does not hold kept beside it as residuals (see `exact`); a string column holds
//! each value's code in its column's [`Dictionary`] there (see `dictionary`), so a string costs
//! a cell like a number and a row is one slice for every reader. Customer ids live in one
//! byte arena indexed by a hash table of row numbers, so a lookup by `&str` hashes once and
//! allocates nothing; a mapped file carries that table itself (`index`). A store is immutable
//! once built; a new snapshot is a new store, swapped in whole by the registry, and a mapped
//! file is unmapped when the last request holding its store lets go. This module does file
//! I/O only in its loaders and the memory report (`memory`), never on lookups.

mod binary;
mod csv_load;
mod dictionary;
mod error;
mod exact;
mod index;
mod mapped;
pub mod memory;
#[cfg(feature = "offline")]
mod parquet;
mod parts;
mod section;
pub mod snapshots;

use std::path::Path;

pub use binary::write_nbf;
/// The longest customer id, in bytes, anywhere: snapshots, decisions and events.
pub use csv_load::{null_flag, NullWords, MAX_ID_BYTES};
pub use dictionary::{DictBuilder, Dictionary, TooManyValues, MAX_DISTINCT};
pub use error::{FeatureError, RowFault};
pub use exact::{join_f64, split_f64, ExactBuilder, ExactColumns, FeatureRow};
pub use index::IdIndex;
pub use snapshots::SnapshotStore;

use index::Ids;
use section::Section;

/// The warning for a source column left out for its type (`kind`, as the source names it).
pub fn left_out_message(name: &str, kind: &str) -> String {
    if kind == SKIPPED {
        return format!(
            "column `{name}` is marked `{name}:skip`: it is left out, and a model \
             naming it is refused"
        );
    }
    if kind == PANDAS_INDEX {
        return format!(
            "column `{name}` is the index pandas writes beside a frame's columns when the index \
             is not a plain range (`to_parquet(..., index=False)` leaves it out): row labels, \
             not a feature, so it is left out"
        );
    }
    format!(
        "column `{name}` holds {kind}, which nextbest does not read (numbers and strings): it \
         is left out, and a model naming it is refused"
    )
}

/// The kind of a left-out column that the CSV header (or a Parquet column's name) marked
/// `name:skip`.
pub const SKIPPED: &str = ":skip";
/// The kind of a left-out column that is pandas's index (`__index_level_0__`).
pub const PANDAS_INDEX: &str = "pandas's index";

/// The warning for a CSV column of numbers that a word later in the file turned to text.
pub fn turned_message(name: &str, line: u64, value: &str) -> String {
    let null = null_flag(value).map_or_else(String::new, |flag| {
        format!("`{flag}` reads such a word as a missing value; ")
    });
    format!(
        "column `{name}` holds numbers up to line {line}, where `{value}` made it text: a rule, \
         scorer or value that reads it as a number is refused ({null}mark the column \
         `{name}:num` in the header to have it refused instead)"
    )
}

/// A snapshot with a tenth fewer customers than the one it replaces, or more, is likely a
/// partial export (a file cut short, a job that stopped): it serves (a base can shrink), and
/// says so. A day's churn is a few per cent.
pub fn shrunk(before: usize, now: usize) -> Option<String> {
    (now < before - before / 10).then(|| {
        format!(
            "{now} customers, {:.2} % fewer than the {before} of the snapshot it replaces: a \
             partial export? The others now get `unknown_customer` fallbacks",
            // Rounded down: a snapshot with a customer left is never "100 % fewer".
            (10_000.0 * (before - now) as f64 / before as f64).floor() / 100.0
        )
    })
}

/// Customers sampled from a snapshot to see whether the next one still holds them.
const ID_SAMPLE: usize = 4_096;

/// A snapshot that holds few of the customers of the one it replaces, beyond what its size
/// explains, likely writes its ids another way (a warehouse's padded `CHAR`, numbers for
/// text, another key): it serves, and says so with an id it lost and one it has.
pub fn ids_lost(before: &FeatureStore, now: &FeatureStore) -> Option<String> {
    let sampled = before.len().min(ID_SAMPLE);
    if sampled == 0 {
        return None;
    }
    let mut found = 0usize;
    let mut lost = None;
    for i in 0..sampled {
        let id = before.id_at(i * before.len() / sampled)?;
        if now.row(id).is_some() {
            found += 1;
        } else {
            lost.get_or_insert(id);
        }
    }
    let kept = found as f64 / sampled as f64;
    let expected = (now.len() as f64 / before.len() as f64).min(1.0);
    if kept >= expected - 0.1 {
        return None;
    }
    let had = now
        .id_at(0)
        .map_or_else(String::new, |id| format!(", it has {id:?}"));
    Some(format!(
        "{found} of {sampled} customers sampled from the snapshot it replaces are in this one \
         ({:.1} %; {:?} is not{had}): are its ids written another way (padded with spaces, \
         numbers for text, another key)? The customers not found get `unknown_customer` \
         fallbacks",
        100.0 * kept,
        lost.unwrap_or_default(),
    ))
}

/// What a column with no value in any row is warned with.
pub const NO_VALUE: &str = "no customer has a value here (every field is empty): rules, scorers \
     and values read it as missing, whether they read it as numbers or as text";

/// An immutable snapshot of customer features, shared by every request that reads it.
pub struct FeatureStore {
    columns: Box<[Box<str>]>,
    values: Section<f32>,
    /// Residuals of the values f32 does not hold (empty when every value is exact in f32).
    exact: ExactColumns,
    /// Per column, its slot among `exact`'s columns (empty when `exact` is).
    slot_of: Box<[u32]>,
    /// Per column, its dictionary when it holds strings (empty when every column is numeric).
    dicts: Box<[Option<Dictionary>]>,
    ids: Ids,
    source: String,
    /// The mapped file the sections read from (`None` when the store owns its values).
    mapping: Option<mapped::Mapping>,
    /// One row of the snapshot's width with every value missing: what a visitor without a
    /// profile is decided on, shared so that such a decision allocates nothing for it.
    missing: Box<[f32]>,
    /// Columns of the source not loaded, each with the type it holds (a Parquet timestamp):
    /// a model reading one is told why it is not there.
    left_out: Box<[(Box<str>, Box<str>)]>,
    /// Columns of numbers a later word turned to text, each with that word's line and the
    /// word: a model reading one as a number is told where its data changed.
    turned: Box<[(u32, u64, Box<str>)]>,
    /// Per column, true when no customer has a value there: found on first ask (binding a
    /// model asks once per rule), as a scan of a mapped file would touch every page.
    no_value: std::sync::OnceLock<Box<[bool]>>,
}

/// What a column holds, as `/admin/stats` and the status page show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    /// Numbers (f32, with exact f64 residuals where needed).
    Number,
    /// Strings coded against a dictionary of `distinct` values.
    Text {
        /// Number of distinct values.
        distinct: usize,
    },
}

impl ColumnKind {
    /// The name used in JSON views and the CSV header override (`num`, `str`).
    pub fn as_str(self) -> &'static str {
        match self {
            ColumnKind::Number => "num",
            ColumnKind::Text { .. } => "str",
        }
    }
}

impl std::fmt::Debug for FeatureStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeatureStore")
            .field("customers", &self.len())
            .field("columns", &self.columns)
            .field("source", &self.source)
            .finish()
    }
}

/// The format a file's name says it holds, where that is not CSV (`.parquet`, `.nbf`), and
/// the bytes it begins with.
fn named_binary(path: &Path) -> Option<(&'static str, &'static [u8])> {
    let ext = path.extension()?.to_str()?;
    if ext.eq_ignore_ascii_case("parquet") {
        Some(("Parquet", b"PAR1"))
    } else if ext.eq_ignore_ascii_case("nbf") {
        Some(("a .nbf snapshot", b"NBF"))
    } else {
        None
    }
}

impl FeatureStore {
    /// Builds a store from parts that are already consistent; loaders and tests use it.
    pub fn new(
        columns: Vec<String>,
        ids: IdIndex,
        values: Vec<f32>,
        source: impl Into<String>,
    ) -> Result<Self, String> {
        let width = columns.len();
        if ids.len() * width != values.len() {
            return Err(format!(
                "{} customers x {} columns needs {} values, got {}",
                ids.len(),
                width,
                ids.len() * width,
                values.len()
            ));
        }
        Ok(Self {
            columns: columns.into_iter().map(String::into_boxed_str).collect(),
            values: values.into(),
            exact: ExactColumns::default(),
            slot_of: Box::default(),
            dicts: Box::default(),
            ids: Ids::Built(ids),
            source: source.into(),
            mapping: None,
            missing: vec![f32::NAN; width].into(),
            left_out: Box::default(),
            turned: Box::default(),
            no_value: std::sync::OnceLock::new(),
        })
    }

    /// Builds a store whose values came as f64: the f32 values with the residuals an
    /// [`ExactBuilder`] collected beside them, so every f64 reads back bit for bit.
    pub fn with_exact(
        columns: Vec<String>,
        ids: IdIndex,
        values: Vec<f32>,
        exact: ExactColumns,
        source: impl Into<String>,
    ) -> Result<Self, String> {
        let mut store = Self::new(columns, ids, values, source)?;
        store.slot_of = exact.check(&store.values, store.columns.len())?;
        store.exact = exact;
        Ok(store)
    }

    /// Gives string columns their dictionaries (`None` for a numeric column; an empty list
    /// when every column is numeric), checking that every cell of a string column is missing
    /// or a code of its dictionary.
    pub fn with_dictionaries(mut self, dicts: Vec<Option<Dictionary>>) -> Result<Self, String> {
        if dicts.iter().all(Option::is_none) {
            self.dicts = Box::default();
            return Ok(self);
        }
        let width = self.columns.len();
        if dicts.len() != width {
            return Err(format!("{} dictionaries for {width} columns", dicts.len()));
        }
        for (c, d) in dicts.iter().enumerate() {
            let Some(d) = d else { continue };
            if !self.exact.is_empty() && self.exact.columns().contains(&(c as u32)) {
                return Err(format!(
                    "column `{}`: strings with residuals",
                    self.columns[c]
                ));
            }
            let bad = self
                .values
                .iter()
                .skip(c)
                .step_by(width)
                .position(|&v| !v.is_nan() && d.value_of(v).is_none());
            if let Some(row) = bad {
                return Err(format!(
                    "row {row}, column `{}`: {} is not a code of its {} values",
                    self.columns[c],
                    self.values[row * width + c],
                    d.len()
                ));
            }
        }
        self.dicts = dicts.into_boxed_slice();
        Ok(self)
    }

    /// Refuses a snapshot without customers: a header alone is an export that failed, and
    /// models checked against it would find every column numeric for want of a value.
    pub fn with_customers(self, path: &Path) -> Result<Self, FeatureError> {
        if self.is_empty() {
            return Err(FeatureError::Format {
                path: path.to_owned(),
                detail: "no customers: the file holds a header only".into(),
            });
        }
        Ok(self)
    }

    /// Records columns of the source left out for their type, by name and type.
    pub fn with_left_out(mut self, columns: Vec<(String, String)>) -> Self {
        self.left_out = columns
            .into_iter()
            .map(|(name, kind)| (name.into(), kind.into()))
            .collect();
        self
    }

    /// Columns of the source left out for their type, by name and type.
    pub fn left_out(&self) -> impl Iterator<Item = (&str, &str)> {
        self.left_out.iter().map(|(n, k)| (&**n, &**k))
    }

    /// Records columns of numbers that a word turned to text: (column, line, word).
    pub fn with_turned(mut self, columns: Vec<(u32, u64, String)>) -> Self {
        self.turned = columns
            .into_iter()
            .map(|(c, line, word)| (c, line, word.into()))
            .collect();
        self
    }

    /// Columns of numbers a word turned to text: (column, line of the word, the word).
    pub fn turned(&self) -> impl Iterator<Item = (usize, u64, &str)> {
        self.turned
            .iter()
            .map(|(c, line, w)| (*c as usize, *line, &**w))
    }

    /// True when customers exist and none has a value in the column (a CSV column whose
    /// every field is empty): it says nothing of whether it holds numbers or text, so a model
    /// may read it as either, as missing. Found once per store, each column's scan stopping at
    /// its first value.
    pub fn holds_no_value(&self, column: usize) -> bool {
        let no_value = self.no_value.get_or_init(|| {
            let w = self.columns.len();
            (0..w)
                .map(|c| {
                    !self.is_empty() && self.values.iter().skip(c).step_by(w).all(|v| v.is_nan())
                })
                .collect()
        });
        no_value.get(column).copied().unwrap_or(false)
    }

    /// Warnings about the source's columns: those left out for their type, those a word
    /// turned to text, and those with no value at all, each with its path (`columns.<name>`).
    pub fn column_warnings(&self) -> Vec<(String, String)> {
        let left = self
            .left_out()
            .map(|(name, kind)| (name.to_owned(), left_out_message(name, kind)));
        let turned = self.turned().map(|(c, line, word)| {
            let name = &self.columns[c];
            (name.to_string(), turned_message(name, line, word))
        });
        let empty = (0..self.columns.len())
            .filter(|&c| self.holds_no_value(c))
            .map(|c| (self.columns[c].to_string(), NO_VALUE.to_owned()));
        left.chain(turned)
            .chain(empty)
            .map(|(name, message)| (format!("columns.{name}"), message))
            .collect()
    }

    /// Loads a snapshot as a server does: a version 4 `.nbf` is admitted into `store` (copied
    /// there once, under its content's name) and mapped from there; anything else, or any
    /// `.nbf` without a store, loads as [`FeatureStore::load`] does.
    pub fn open(path: &Path, store: Option<&SnapshotStore>) -> Result<Self, FeatureError> {
        Self::open_with(path, store, &NullWords::default())
    }

    /// [`FeatureStore::open`], with the words a CSV writes for a missing value.
    pub fn open_with(
        path: &Path,
        store: Option<&SnapshotStore>,
        nulls: &NullWords,
    ) -> Result<Self, FeatureError> {
        // A folder of Parquet parts is never mapped: it loads as `load_with` reads it.
        if path.is_dir() {
            return Self::load_with(path, nulls);
        }
        crate::files::check_regular(path).map_err(|source| FeatureError::Io {
            path: path.to_owned(),
            source,
        })?;
        match store {
            Some(store) if mapped::is_mappable(path)? => {
                let _lock = (!store.maps_in_place(path)).then(|| store.lock());
                Self::open_in_store(path, store)
            }
            _ => Self::load_with(path, nulls),
        }
    }

    /// Maps a version 4 `.nbf` through `store`, with the store's lock held (see `snapshots`);
    /// anything else is refused. An entry already in the store for this source that turns out
    /// damaged is copied again from the source, once.
    fn open_in_store(path: &Path, store: &SnapshotStore) -> Result<Self, FeatureError> {
        if !mapped::is_mappable(path)? {
            return Err(snapshots::not_mappable(path));
        }
        let admitted = store.admit(path)?;
        match Self::open_admitted(store, &admitted, path) {
            Err(e) if admitted.found => {
                tracing::warn!(entry = %admitted.entry.display(), error = %e, "snapshot store: the entry for this snapshot is damaged; it is copied again from the source");
                let again = store.admit(path)?;
                Self::open_admitted(store, &again, path)
            }
            opened => opened,
        }
    }

    /// Maps an admitted file and settles it in the store.
    fn open_admitted(
        store: &SnapshotStore,
        admitted: &snapshots::Admitted,
        path: &Path,
    ) -> Result<Self, FeatureError> {
        let opened = mapped::open(&admitted.file, &admitted.entry, path);
        if store.settle(admitted, opened.is_ok()) {
            // Another replica's copy became the entry: map it (the same content, checked
            // again), and let this one's unlinked copy go with its map.
            if let Ok(shared) = mapped::open(&admitted.entry, &admitted.entry, path) {
                return Ok(shared);
            }
        }
        opened
    }

    /// Loads a snapshot into memory, choosing the format by the file's first bytes (`NBF` the
    /// binary form, `PAR1` Parquet, anything else CSV), so `.NBF`, `.bin` or an export without
    /// an extension read as what they are; a folder is read as Parquet parts (`parts`).
    pub fn load(path: &Path) -> Result<Self, FeatureError> {
        Self::load_with(path, &NullWords::default())
    }

    /// [`FeatureStore::load`], with the words a CSV writes for a missing value (`NA`): a
    /// Parquet file has nulls of its own, and a `.nbf` kept them as missing when compiled.
    pub fn load_with(path: &Path, nulls: &NullWords) -> Result<Self, FeatureError> {
        if path.is_dir() {
            return parts::read_folder(path);
        }
        let mut head = [0u8; 4];
        let read = crate::files::check_regular(path)
            .and_then(|()| std::fs::File::open(path))
            .and_then(|mut f| std::io::Read::read(&mut f, &mut head))
            .map_err(|source| FeatureError::Io {
                path: path.to_owned(),
                source,
            })?;
        match &head[..read] {
            [b'N', b'B', b'F', _] => binary::read_nbf(path),
            b"PAR1" => parts::read_file(path),
            head => match named_binary(path) {
                // Read as CSV, an empty or damaged export would be called a CSV without header.
                Some((format, magic)) => Err(FeatureError::Format {
                    path: path.to_owned(),
                    detail: match (head.len(), magic.starts_with(head)) {
                        (0, _) => {
                            format!("empty file (0 bytes), not {format}: the export wrote nothing")
                        }
                        (n, true) => format!("{format} cut short: the file has {n} bytes"),
                        _ => format!(
                            "not {format}: it begins with {:?}, not {}",
                            String::from_utf8_lossy(head),
                            String::from_utf8_lossy(magic)
                        ),
                    },
                }),
                None => csv_load::read_csv(path, nulls),
            },
        }
    }

    /// Parses CSV text held in memory (fuzzing and tests); `name` stands in for the file name.
    pub fn from_csv_bytes(bytes: &[u8], name: &str) -> Result<Self, FeatureError> {
        csv_load::parse_csv(bytes, Path::new(name), &NullWords::default())
    }

    /// Reads the binary form held in memory (fuzzing and tests); `name` stands in for the file
    /// name. The same reader as [`FeatureStore::load`] on a `.nbf` file.
    pub fn from_nbf_bytes(bytes: &[u8], name: &str) -> Result<Self, FeatureError> {
        binary::from_nbf_bytes(bytes, Path::new(name))
    }

    /// The binary form as bytes, exactly what [`write_nbf`] writes to a file.
    pub fn to_nbf_bytes(&self) -> Vec<u8> {
        binary::to_nbf_bytes(self)
    }

    /// The feature row of a customer, if the snapshot knows them.
    #[inline]
    pub fn row(&self, customer_id: &str) -> Option<&[f32]> {
        let r = self.ids.get(customer_id)? as usize;
        let w = self.columns.len();
        self.values.get(r * w..(r + 1) * w)
    }

    /// The row at an index (0..len), for scans and benches.
    pub fn row_at(&self, row: usize) -> Option<&[f32]> {
        let w = self.columns.len();
        self.values.get(row * w..(row + 1) * w)
    }

    /// The feature row of a customer with the exact f64 of every value: what tree ensembles
    /// compare (LightGBM in f64).
    #[inline]
    pub fn exact_row(&self, customer_id: &str) -> Option<FeatureRow<'_>> {
        self.exact_row_at(self.ids.get(customer_id)? as usize)
    }

    /// A row with every feature missing (NaN), the snapshot's width: an anonymous visitor's.
    #[inline]
    pub fn missing_row(&self) -> FeatureRow<'_> {
        FeatureRow::from(&*self.missing)
    }

    /// [`FeatureStore::exact_row`] at a row index (0..len).
    #[inline]
    pub fn exact_row_at(&self, row: usize) -> Option<FeatureRow<'_>> {
        let values = self.row_at(row)?;
        let n = self.exact.columns().len();
        let residuals = self
            .exact
            .residuals()
            .get(row * n..(row + 1) * n)
            .unwrap_or_default();
        Some(FeatureRow::new(values, &self.slot_of, residuals))
    }

    /// The residuals of the values f32 does not hold (empty when every value is exact in f32).
    pub fn exact(&self) -> &ExactColumns {
        &self.exact
    }

    /// The customer id at a row index.
    pub fn id_at(&self, row: usize) -> Option<&str> {
        self.ids.id_at(row)
    }

    /// The dictionary of a string column (`None` for a numeric one).
    #[inline]
    pub fn dictionary(&self, column: usize) -> Option<&Dictionary> {
        self.dicts.get(column)?.as_ref()
    }

    /// What a column holds.
    pub fn kind(&self, column: usize) -> ColumnKind {
        match self.dictionary(column) {
            Some(d) => ColumnKind::Text { distinct: d.len() },
            None => ColumnKind::Number,
        }
    }

    /// Each column's name and kind, in column order (admin views).
    pub fn column_kinds(&self) -> impl Iterator<Item = (&str, ColumnKind)> + '_ {
        self.columns
            .iter()
            .enumerate()
            .map(|(c, name)| (&**name, self.kind(c)))
    }

    /// Column index of a feature, resolved once when a model is compiled.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| &**c == name)
    }

    /// Feature names in column order.
    pub fn columns(&self) -> &[Box<str>] {
        &self.columns
    }

    /// Number of customers.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when the snapshot holds no customer.
    pub fn is_empty(&self) -> bool {
        self.ids.len() == 0
    }

    /// Where the snapshot came from (a path), for logs and the admin API.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The snapshot-store file this store is mapped from, if it is.
    pub fn mapped_file(&self) -> Option<&Path> {
        self.mapping.as_ref().map(|m| m.path.as_path())
    }

    /// Bytes of the file mapped (0 when the store owns its values).
    pub fn mapped_bytes(&self) -> usize {
        self.mapping.as_ref().map_or(0, |m| m.map.len())
    }

    /// CRC-32 of the mapped file's content (its trailer's checksum, the form `FeatureVersion`
    /// reports), checked when it was opened; `None` for an owned store.
    pub fn file_crc(&self) -> Option<u32> {
        self.mapping.as_ref().map(|m| m.file_crc)
    }

    /// A checksum of every value (the file's own for a mapped `.nbf`): what tells a refreshed
    /// snapshot with the same customers and columns from the one before it.
    pub fn content_crc(&self) -> u32 {
        if let Some(crc) = self.file_crc() {
            return crc;
        }
        let mut h = crc32fast::Hasher::new();
        h.update(bytemuck::cast_slice(&self.values));
        h.update(bytemuck::cast_slice(self.exact.residuals()));
        for d in self.dicts.iter().flatten() {
            let (arena, ends) = d.raw();
            h.update(arena);
            h.update(bytemuck::cast_slice(ends));
        }
        h.finalize()
    }

    /// Heap bytes held: values, id arena and index (only dictionaries and column names when
    /// mapped); the figure operators size memory by.
    pub fn bytes_held(&self) -> usize {
        self.values.heap_bytes()
            + self.exact.bytes_held()
            + self.slot_of.len() * 4
            + self
                .dicts
                .iter()
                .flatten()
                .map(Dictionary::bytes_held)
                .sum::<usize>()
            + self.ids.bytes_held()
    }

    /// Raw values in row-major order (for the binary writer).
    pub(crate) fn values(&self) -> &[f32] {
        &self.values
    }

    /// The ids (for the binary writer).
    fn ids(&self) -> &Ids {
        &self.ids
    }
}

/// Why a value cannot be a feature: it is not finite, or beyond what the 32 bits a feature
/// is held in can hold.
fn not_finite(shown: &str, v: f64) -> String {
    if v.is_finite() {
        format!("`{shown}` is out of range: features are 32-bit, at most about 3.4e38 either way")
    } else {
        format!("`{shown}` is not a finite number")
    }
}

#[cfg(test)]
mod export_tests;
#[cfg(test)]
mod fault_tests;
#[cfg(all(test, feature = "offline"))]
mod parquet_tests;
#[cfg(all(test, feature = "offline"))]
mod parts_tests;
#[cfg(test)]
mod store_tests;
#[cfg(test)]
mod tests;
