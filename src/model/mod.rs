//! The offer model as the CVM team writes it (JSON), and its way into the engine form.
//!
//! Loading is parse (simd-json) → read the files the model names (`files`) → validate and
//! compile in one pass (`compile`, which touches no file) against the column layout of a
//! feature snapshot. Every fault is reported with its exact path, so a bad model is refused
//! whole and whatever is serving keeps serving. This module reads files only when asked to
//! load one; nothing here runs on the request path.

pub mod bind;
mod compile;
mod files;
pub mod lightgbm;
mod policies;
pub mod schema;
pub mod walk;
pub mod xgboost;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use compile::{compile_feature_rule, DEFAULT_FALLBACK_KEY};
pub use walk::Fault;

use crate::engine::CompiledModel;
use crate::features::{Dictionary, FeatureStore};

/// The file a model folder holds its model in.
pub const MODEL_FILE: &str = "model.json";

/// Why a model was refused.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The document is larger than the limit.
    #[error("model of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// Not JSON.
    #[error("line {line}, column {column}: {detail}")]
    Syntax {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What the parser said.
        detail: String,
    },
    /// JSON, but not a valid model: every fault, with its path.
    #[error("{} fault(s); first: {}", .0.len(), .0.first().map(|f| f.to_string()).unwrap_or_default())]
    Invalid(Vec<Fault>),
}

impl ModelError {
    /// The faults as a list (a single entry for I/O and syntax errors).
    pub fn faults(&self) -> Vec<Fault> {
        match self {
            ModelError::Invalid(f) => f.clone(),
            other => vec![Fault {
                path: String::new(),
                message: other.to_string(),
            }],
        }
    }
}

/// Bounds on what a model may hold, so a hurried or hostile model cannot exhaust the server.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest model document in bytes.
    pub max_bytes: usize,
    /// Most offers.
    pub max_offers: usize,
    /// Most rule leaves across the model.
    pub max_rules: usize,
    /// Deepest nesting of `all`/`any`/`not`.
    pub max_rule_depth: usize,
    /// Largest scorer file (XGBoost JSON, LightGBM text) in bytes.
    pub max_scorer_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 16 << 20,
            max_offers: 10_000,
            max_rules: 200_000,
            max_rule_depth: 16,
            max_scorer_bytes: 64 << 20,
        }
    }
}

/// Most channels a model may use: each is one bit of an offer's `channel_mask`, a `u64`.
pub const MAX_CHANNELS: usize = u64::BITS as usize;
/// Most placements a model may declare, and list on one offer: keeps slot lookups short.
pub const MAX_PLACEMENTS: usize = 256;
/// Longest name in bytes (model name, offer id, feature, context key, channel, placement,
/// category): names are copied into answers, logs and metrics.
pub const MAX_NAME_BYTES: usize = 128;
/// Longest short label in bytes (model version, offer category, a time).
pub const MAX_LABEL_BYTES: usize = 64;
/// Longest description in bytes (model, offer): documentation, never served.
pub const MAX_DESCRIPTION_BYTES: usize = 4096;
/// Longest file path a model may name, in bytes.
pub const MAX_PATH_BYTES: usize = 1024;
/// Most children of one `all`/`any` rule and most values of one `in` test.
pub const MAX_RULE_LIST: usize = 1024;
/// Longest rule operator in bytes (the longest real one, `is_missing`, is 10).
pub const MAX_OPERATOR_BYTES: usize = 32;
/// Most feature names an XGBoost scorer spec may list.
pub const MAX_TREE_FEATURES: usize = 100_000;
/// Longest content title in bytes.
pub const MAX_TITLE_BYTES: usize = 200;
/// Longest content body in bytes.
pub const MAX_BODY_BYTES: usize = 2000;
/// Longest content URL in bytes.
pub const MAX_URL_BYTES: usize = 2048;
/// Largest offer value: far above any real price, and finite products stay finite.
pub const MAX_OFFER_VALUE: f64 = 1e12;
/// Largest offer priority multiplier.
pub const MAX_OFFER_PRIORITY: f64 = 1e6;
/// Offers a placement shows when it names no `limit`.
pub const DEFAULT_PLACEMENT_LIMIT: usize = 3;
/// Highest placement admission priority, and the one a placement without `priority` gets
/// (it never steps aside under pressure).
pub const MAX_PLACEMENT_PRIORITY: u8 = 100;

/// What a snapshot column holds, as compiling needs to know it.
#[derive(Debug, Clone, Copy)]
pub enum ColumnInfo<'a> {
    /// Numbers.
    Number,
    /// Strings, coded against this dictionary.
    Strings(&'a Dictionary),
    /// Not known: the model is checked without a snapshot.
    Unknown,
}

/// Resolves feature names to snapshot columns while compiling.
pub trait Schema {
    /// The column of a feature, if the snapshot has it.
    fn column(&self, name: &str) -> Option<u32>;

    /// What a column (from [`Schema::column`]) holds.
    fn info(&self, _column: u32) -> ColumnInfo<'_> {
        ColumnInfo::Unknown
    }

    /// A column's values, to check what a model reads from it (`None` without a snapshot).
    fn cells(&self, _column: u32) -> Option<Box<dyn Iterator<Item = f64> + '_>> {
        None
    }

    /// True when no customer has a value in the column (every CSV field empty).
    fn holds_no_value(&self, _column: u32) -> bool {
        false
    }

    /// The line and the word that turned a column of numbers to text, if one did (a CSV
    /// column whose later cell reads `NA`): what a fault reading it as numbers points at.
    fn turned(&self, _column: u32) -> Option<(u64, &str)> {
        None
    }

    /// "`segment` holds strings", for a fault that reads a text column as numbers; with the
    /// line and word that turned it to text when it began with numbers.
    fn holds_strings(&self, name: &str, column: u32) -> String {
        match self.turned(column) {
            Some((line, word)) => format!(
                "`{name}` holds strings (the snapshot's line {line} made it text: `{word}`)"
            ),
            None => format!("`{name}` holds strings"),
        }
    }

    /// The type of a source column the snapshot left out (a Parquet timestamp), by name.
    fn left_out(&self, _name: &str) -> Option<&str> {
        None
    }

    /// The column a mistyped feature name most likely meant (another letter case, a slip).
    fn near(&self, _name: &str) -> Option<&str> {
        None
    }

    /// The fault for a feature name without a column: why, when the snapshot left it out, or
    /// the column it likely meant.
    fn unknown(&self, name: &str) -> String {
        match (self.left_out(name), self.near(name)) {
            (Some(kind), _) => format!("unknown feature `{name}`: {}", left_out_reason(kind)),
            (None, Some(near)) if near.eq_ignore_ascii_case(name) => format!(
                "unknown feature `{name}`: the snapshot has `{near}` (names match exactly, \
                 letter case included)"
            ),
            (None, Some(near)) => format!("unknown feature `{name}`: did you mean `{near}`?"),
            (None, None) => format!("unknown feature `{name}`"),
        }
    }
}

/// Why a column of the source is not among the snapshot's.
pub fn left_out_reason(kind: &str) -> String {
    if kind == crate::features::SKIPPED {
        return "the snapshot leaves it out (`:skip`)".into();
    }
    if kind == crate::features::PANDAS_INDEX {
        return "the snapshot's column of that name is pandas's index, left out (row labels, \
                not a feature)"
            .into();
    }
    format!(
        "the snapshot's column of that name holds {kind}, which nextbest does not read \
         (export it as numbers or strings)"
    )
}

impl Schema for FeatureStore {
    fn column(&self, name: &str) -> Option<u32> {
        FeatureStore::column(self, name).map(|c| c as u32)
    }

    fn info(&self, column: u32) -> ColumnInfo<'_> {
        match self.dictionary(column as usize) {
            Some(d) => ColumnInfo::Strings(d),
            // Nothing says numbers or text: either reading binds, and reads it as missing.
            None if self.holds_no_value(column as usize) => ColumnInfo::Unknown,
            None => ColumnInfo::Number,
        }
    }

    fn holds_no_value(&self, column: u32) -> bool {
        FeatureStore::holds_no_value(self, column as usize)
    }

    fn turned(&self, column: u32) -> Option<(u64, &str)> {
        FeatureStore::turned(self)
            .find(|t| t.0 == column as usize)
            .map(|(_, line, word)| (line, word))
    }

    fn near(&self, name: &str) -> Option<&str> {
        crate::near::nearest(name, self.columns().iter().map(|c| &**c))
    }

    fn left_out(&self, name: &str) -> Option<&str> {
        FeatureStore::left_out(self)
            .find(|(n, _)| *n == name)
            .map(|(_, k)| k)
    }

    fn cells(&self, column: u32) -> Option<Box<dyn Iterator<Item = f64> + '_>> {
        let c = column as usize;
        Some(Box::new(
            (0..self.len()).filter_map(move |r| Some(self.exact_row_at(r)?.f64(c))),
        ))
    }
}

/// Accepts every feature name, numbering them as met: checks a model without a snapshot.
#[derive(Default)]
pub struct AnySchema(std::cell::RefCell<Vec<String>>);

impl Schema for AnySchema {
    fn column(&self, name: &str) -> Option<u32> {
        let mut names = self.0.borrow_mut();
        let i = names.iter().position(|n| n == name).unwrap_or_else(|| {
            names.push(name.to_owned());
            names.len() - 1
        });
        Some(i as u32)
    }
}

/// A model as read: its bytes' checksum and where it came from, beside the compiled form.
#[derive(Debug)]
pub struct LoadedModel {
    /// The engine form.
    pub compiled: CompiledModel,
    /// `crc32:<hex>` of the source document and the scorer files it reads.
    pub checksum: String,
    /// The same CRC-32 as a number: the content key funnel rows and decision ids carry, so a
    /// retrained tree behind an unchanged document counts as another model.
    pub key: u32,
    /// Where it came from (a path, or `admin`).
    pub source: String,
    /// The folder scorer files resolve against.
    pub base_dir: Option<PathBuf>,
    /// The document itself, kept to recompile against a new snapshot's column layout.
    pub document: Vec<u8>,
    /// The paths it names in its folder (scorer files, the challenger's file), as written: a
    /// change to any other file beside it is no change of this model.
    pub files: Vec<String>,
    /// The scorer files it was compiled from, by the path written: a rebuild against another
    /// snapshot and a rollback use these, not whatever the folder holds since.
    pub scorer_files: Vec<(String, Arc<[u8]>)>,
    /// The challenger the model declares, if any (loaded by the registry).
    pub challenger: Option<ChallengerSpec>,
    /// What compiles but is likely a mistake (a rule value the snapshot never holds), with
    /// paths: `model check --features` prints them.
    pub warnings: Vec<Fault>,
}

/// A challenger declared by a model: another model file and the share of customers it serves.
#[derive(Debug, Clone, PartialEq)]
pub struct ChallengerSpec {
    /// The challenger's model file, inside the champion's folder.
    pub path: PathBuf,
    /// Share of customers (0..=1) assigned to the challenger.
    pub share: f64,
    /// Experiment salt: a new salt reshuffles who is in the experiment; a new share does not.
    pub salt: String,
}

/// Resolves a path a model names against its folder, refusing anything that leaves it:
/// absolute paths, `..`, and symlinks pointing outside.
pub fn resolve_inside(base: &Path, rel: &str) -> Result<PathBuf, String> {
    use std::path::Component;
    let relp = Path::new(rel);
    if rel.is_empty() {
        return Err("empty path".into());
    }
    if rel.contains('\0') {
        return Err(format!("`{}` holds a NUL byte", rel.replace('\0', "\\0")));
    }
    // `./x` names `x`: a leading `.` stays in the folder.
    if !relp
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(format!("`{rel}` must be a plain relative path inside the model's folder (no `..`, no absolute path)"));
    }
    let base = base
        .canonicalize()
        .map_err(|e| format!("model folder {}: {e}", base.display()))?;
    let full = base.join(relp).canonicalize().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            format!(
                "`{rel}`: no such file in the model's folder {} (a model uploaded to \
                 /admin/models reads its scorer files from there too: copy them in first)",
                base.display()
            )
        } else {
            format!("`{rel}` in {}: {e}", base.display())
        }
    })?;
    if !full.starts_with(&base) {
        return Err(format!(
            "`{rel}` leads outside the model's folder (through a symlink)"
        ));
    }
    if !full.is_file() {
        return Err(format!("`{rel}` is not a file"));
    }
    Ok(full)
}

/// The folder a model file's relative paths resolve against: its parent, and the current
/// folder for a bare file name (whose parent is the empty path, which names no folder).
pub fn folder_of(file: &Path) -> PathBuf {
    match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// The folder a server's models are kept in, and whether what lies inside it is the models'
/// too: a models folder is published whole (a folder renamed over it, `rm -rf` and a copy),
/// while a model given as its file is often kept in a working folder, whose own files (the
/// default `data` folder beside it) are not the model's.
pub fn models_folder(models: &Path) -> (PathBuf, bool) {
    let document =
        models.is_file() || (!models.exists() && models.extension().is_some_and(|e| e == "json"));
    if document {
        (folder_of(models), false)
    } else {
        (models.to_path_buf(), true)
    }
}

/// Whether `dir` is where a server's models are kept ([`models_folder`]): the folder, or, for a
/// models folder, inside it.
pub fn in_models_folder(dir: &Path, models: &Path) -> bool {
    let (folder, inside) = models_folder(models);
    if inside {
        crate::files::within(dir, &folder)
    } else {
        crate::files::same_folder(dir, &folder)
    }
}

/// Finds the model file: a folder means its `model.json`.
pub fn model_file(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join(MODEL_FILE)
    } else {
        path.to_owned()
    }
}

/// Whether a JSON file may be a model document under another name: it has offers (a tree
/// file, `xgb.json`, has none). Only its start is read.
fn looks_like_a_model(file: &Path) -> bool {
    use std::io::Read;
    let mut head = Vec::new();
    std::fs::File::open(file)
        .and_then(|f| f.take(1 << 20).read_to_end(&mut head))
        .is_ok()
        && head.windows(8).any(|w| w == b"\"offers\"")
}

/// Why a model at `path` cannot be opened: for a folder without `model.json`, the JSON files
/// it holds that may be the model under another name (`nbo.json`), said with how to read one;
/// else `error` as it is.
pub fn missing_document(path: &Path, error: std::io::Error) -> std::io::Error {
    if error.kind() != std::io::ErrorKind::NotFound || !path.is_dir() {
        return error;
    }
    let mut names: Vec<String> = std::fs::read_dir(path)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".json") && !n.starts_with('.'))
        .filter(|n| looks_like_a_model(&path.join(n)))
        .collect();
    if names.is_empty() {
        return error;
    }
    names.sort();
    let first = path.join(&names[0]);
    let listed = names.iter().take(3).cloned().collect::<Vec<_>>().join(", ");
    std::io::Error::new(
        std::io::ErrorKind::NotFound,
        format!(
            "no such file; the folder holds {listed}{}: a folder's model is its {MODEL_FILE}, \
             so name that file {MODEL_FILE} or give the file itself (`{}`)",
            if names.len() > 3 { " and more" } else { "" },
            first.display()
        ),
    )
}

/// Reads and compiles a model from a file or a folder holding `model.json`.
pub fn load(path: &Path, schema: &dyn Schema, limits: &Limits) -> Result<LoadedModel, ModelError> {
    load_with_warnings(path, schema, limits).map_err(|(e, _)| e)
}

/// [`load`], keeping a refused model's warnings too: `model check` prints them with its faults,
/// so a second round is not needed to see them.
pub fn load_with_warnings(
    path: &Path,
    schema: &dyn Schema,
    limits: &Limits,
) -> Result<LoadedModel, (ModelError, Vec<Fault>)> {
    let file = model_file(path);
    let io = |source| ModelError::Io {
        path: file.clone(),
        source,
    };
    let plain = |e| (e, Vec::new());
    let size = std::fs::metadata(&file)
        .map_err(|e| missing_document(path, e))
        .map_err(io)
        .map_err(plain)?
        .len() as usize;
    if size > limits.max_bytes {
        return Err(plain(ModelError::TooLarge {
            size,
            max: limits.max_bytes,
        }));
    }
    let bytes = crate::files::read_regular(&file, limits.max_bytes as u64)
        .map_err(io)
        .map_err(plain)?;
    let base = Some(folder_of(&file));
    build(bytes, base, file.display().to_string(), &[], schema, limits)
}

/// The largest built-in fallback file read (`--fallback-file`): content for a few channels.
pub const MAX_FALLBACK_FILE_BYTES: u64 = 1 << 20;

/// Compiles a unit test's model document with the default limits; panics on a fault.
#[cfg(test)]
pub(crate) fn from_doc(doc: &serde_json::Value, schema: &dyn Schema) -> LoadedModel {
    from_bytes(
        serde_json::to_vec(doc).unwrap(),
        None,
        "t".into(),
        schema,
        &Limits::default(),
    )
    .unwrap()
}

/// Compiles a model from its document bytes (an admin upload, a fuzz input, a test).
pub fn from_bytes(
    document: Vec<u8>,
    base_dir: Option<PathBuf>,
    source: String,
    schema: &dyn Schema,
    limits: &Limits,
) -> Result<LoadedModel, ModelError> {
    from_bytes_kept(document, base_dir, source, &[], schema, limits)
}

/// [`from_bytes`], with scorer files taken from `kept` (the bytes a model was first compiled
/// from) before the folder.
pub fn from_bytes_kept(
    document: Vec<u8>,
    base_dir: Option<PathBuf>,
    source: String,
    kept: &[(String, Arc<[u8]>)],
    schema: &dyn Schema,
    limits: &Limits,
) -> Result<LoadedModel, ModelError> {
    build(document, base_dir, source, kept, schema, limits).map_err(|(e, _)| e)
}

/// [`from_bytes`], with a refused model's warnings beside its error.
fn build(
    document: Vec<u8>,
    base_dir: Option<PathBuf>,
    source: String,
    kept: &[(String, Arc<[u8]>)],
    schema: &dyn Schema,
    limits: &Limits,
) -> Result<LoadedModel, (ModelError, Vec<Fault>)> {
    if document.len() > limits.max_bytes {
        return Err((
            ModelError::TooLarge {
                size: document.len(),
                max: limits.max_bytes,
            },
            Vec::new(),
        ));
    }
    // Absolute, so a decision log names the folder wherever replay runs.
    let base_dir = base_dir.map(|d| std::fs::canonicalize(&d).unwrap_or(d));
    let mut scratch = document.clone();
    let parsed = simd_json::to_borrowed_value(&mut scratch);
    if let Some((library, kind)) = library_file(&document, parsed.as_ref().ok()) {
        let name = Path::new(&source)
            .file_name()
            .map_or("m".into(), |n| n.to_string_lossy());
        return Err((
            ModelError::Invalid(vec![Fault {
                path: String::new(),
                message: format!(
                    "this is {library} model file, not a nextbest model: name it in an offer's \
                     scorer in model.json, {{\"kind\": \"{kind}\", \"path\": \"{name}\"}} \
                     (README, \"Offer models\")"
                ),
            }]),
            Vec::new(),
        ));
    }
    let doc = parsed.map_err(|e| (syntax_error(&document, &e), Vec::new()))?;
    let files = files::ModelFiles::read(&doc, base_dir.as_deref(), limits, kept);
    // The document and the scorer files it reads: a retrained tree is another model.
    let mut crc = crc32fast::Hasher::new();
    crc.update(&document);
    for bytes in files.scorer_bytes() {
        crc.update(bytes);
    }
    let key = crc.finalize();
    let checksum = format!("crc32:{key:08x}");
    let (compiled, challenger, warnings) = compile::compile(&doc, &files, schema, limits)
        .map_err(|(faults, warnings)| (ModelError::Invalid(faults), warnings))?;
    Ok(LoadedModel {
        compiled,
        checksum,
        key,
        source,
        base_dir,
        files: files.named(),
        scorer_files: files.scorer_files(),
        document,
        challenger,
        warnings,
    })
}

/// Reads a built-in fallback file (`{channel: {placement | "default": [items]}}`).
pub fn load_builtin_fallback(path: &Path) -> Result<crate::engine::BuiltinFallback, ModelError> {
    let io = |source| ModelError::Io {
        path: path.to_owned(),
        source,
    };
    let bytes = crate::files::read_regular(path, MAX_FALLBACK_FILE_BYTES).map_err(io)?;
    builtin_fallback_from_bytes(bytes)
}

/// Parses a built-in fallback document held in memory.
pub fn builtin_fallback_from_bytes(
    bytes: Vec<u8>,
) -> Result<crate::engine::BuiltinFallback, ModelError> {
    let mut scratch = bytes.clone();
    let doc = simd_json::to_borrowed_value(&mut scratch).map_err(|e| syntax_error(&bytes, &e))?;
    compile::compile_builtin(&doc).map_err(ModelError::Invalid)
}

/// What library's own model file `document` is, if it is one (a trained file given where its
/// model.json goes): LightGBM's text, or XGBoost's JSON (its `learner`); in words, and as the
/// scorer's `kind` that reads it.
fn library_file(
    document: &[u8],
    parsed: Option<&simd_json::BorrowedValue<'_>>,
) -> Option<(&'static str, &'static str)> {
    use simd_json::prelude::ValueObjectAccess as _;
    if document.starts_with(b"tree\n") || document.starts_with(b"tree\r\n") {
        return Some(("a LightGBM", "lightgbm"));
    }
    parsed
        .filter(|doc| doc.get("learner").is_some() && doc.get("offers").is_none())
        .map(|_| ("an XGBoost", "xgboost"))
}

/// A parse error with the line and column it happened at, in serde_json's words (simd-json's
/// own name its internal states, such as `ExpectedString`); `bytes` as they were before
/// simd-json parsed them in place.
pub(crate) fn syntax_error(bytes: &[u8], e: &simd_json::Error) -> ModelError {
    match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
        Err(j) => {
            let text = j.to_string();
            let detail = text.rsplit_once(" at line ").map_or(&*text, |(w, _)| w);
            ModelError::Syntax {
                line: j.line(),
                column: j.column(),
                detail: detail.to_owned(),
            }
        }
        Ok(_) => {
            let deep = walk::too_deep(bytes);
            let (line, column) = walk::line_col(bytes, deep.unwrap_or(e.index()));
            ModelError::Syntax {
                line,
                column,
                detail: match deep {
                    Some(_) => format!(
                        "arrays and objects nested more than {} deep",
                        simd_json::DEFAULT_MAX_DEPTH
                    ),
                    None => "not JSON this server can read".into(),
                },
            }
        }
    }
}

#[cfg(test)]
mod tests;
