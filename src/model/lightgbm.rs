//! Reads LightGBM's text model (`Booster.save_model("m.txt")`) into a [`TreeEnsemble`].
//!
//! Owns: the text format (header, `Tree=N` blocks, `end of trees`, the `pandas_categorical`
//! line), the accepted subset (objective `binary` with its `sigmoid:`, `cross_entropy`,
//! `multiclass` and `multiclassova` with `num_class`, tree `i` belonging to class `i % num_class`; numeric and
//! categorical splits of non-linear trees), `decision_type` decoding, the categorical bitsets
//! (`num_cat`, `cat_boundaries`, `cat_threshold`), and mapping `feature_names` to snapshot
//! columns (`model::bind`). Must not: score anything, read files, or accept a model it cannot
//! reproduce exactly (linear trees and `average_output` forests are refused by name).
//! `leaf_value` is used as written: LightGBM applies shrinkage to it before saving, and folds
//! the initial score (`boost_from_average`) into the first trees. Structural checks are left
//! to [`TreeEnsemble::build_model`].
//!
//! **Categories.** A feature is categorical when its `feature_infos` entry is a list of
//! values (`-1:0:1:2`) rather than a range (`[0:119]`). The Python package writes, per column
//! that was a pandas `category` at training, its categories in code order
//! (`pandas_categorical`), in column order; they are given to the categorical features whose
//! snapshot column holds strings, in feature order. A categorical feature on a numeric column
//! reads the value as its category code, as LightGBM does.

use std::collections::HashMap;

use super::bind::{bind, Categories, Column, Given, Resolve};
use crate::engine::trees::{
    Classes, Flavor, Link, RawTree, TreeEnsemble, TreeLoadError, MAX_TREES,
};
use categories::feature_categories;
use tree::parse_tree;

/// Parses a LightGBM text model and resolves its features to snapshot columns.
///
/// Every name in the header's `feature_names` goes through `resolve`; all unknown ones are
/// reported together.
pub fn parse_lightgbm(
    text: &str,
    resolve: &dyn Fn(&str) -> Option<u32>,
) -> Result<TreeEnsemble, TreeLoadError> {
    parse_lightgbm_with_features(text, resolve).map(|(ensemble, _)| ensemble)
}

/// [`parse_lightgbm`], also returning every feature name it resolved to a column.
pub fn parse_lightgbm_with_features(
    text: &str,
    resolve: &dyn Fn(&str) -> Option<u32>,
) -> Result<(TreeEnsemble, Vec<String>), TreeLoadError> {
    parse_lightgbm_model(text, None, &|name| resolve(name).map(Column::number))
}

/// Parses a LightGBM text model, binary or multiclass, numeric or categorical, against the
/// snapshot's columns (`resolve` says which hold strings); `given` names the categories of
/// features the file stores no names for. Also returns every feature name.
pub fn parse_lightgbm_model(
    text: &str,
    given: Option<&Given>,
    resolve: Resolve<'_, '_>,
) -> Result<(TreeEnsemble, Vec<String>), TreeLoadError> {
    parse_lightgbm_named(text, given, None, resolve)
}

/// [`parse_lightgbm_model`] with the scorer spec's `features`: the names of a model trained
/// without them (LightGBM then writes `Column_0 Column_1 ...`); a file with names of its own
/// must name the same, in order.
pub fn parse_lightgbm_named(
    text: &str,
    given: Option<&Given>,
    feature_names: Option<&[String]>,
    resolve: Resolve<'_, '_>,
) -> Result<(TreeEnsemble, Vec<String>), TreeLoadError> {
    let mut lines = text.lines().map(|l| l.trim_end_matches('\r')).peekable();
    match lines.next() {
        Some("tree") => {}
        Some(first) if first.trim_start().starts_with('{') => {
            return Err(TreeLoadError::format(
                "line 1",
                if is_dump(text.as_bytes()) {
                    "not a LightGBM text model: it is its dump_model() JSON; save the model as text, \
                 Booster.save_model(\"m.txt\")"
                } else {
                    "not a LightGBM text model: it is JSON (an XGBoost model takes \"kind\": \"xgboost\")"
                },
            ))
        }
        other => {
            return Err(TreeLoadError::format(
                "line 1",
                format!(
                    "expected 'tree' (a LightGBM text model), found {:?}",
                    other.unwrap_or("")
                ),
            ))
        }
    }

    // Header: key=value lines (and bare flags such as `average_output`) up to the first tree.
    let mut header: HashMap<&str, &str> = HashMap::new();
    while let Some(&line) = lines.peek() {
        if line.starts_with("Tree=") || line == "end of trees" {
            break;
        }
        lines.next();
        if line.is_empty() {
            continue;
        }
        let (k, v) = line.split_once('=').unwrap_or((line, ""));
        header.insert(k, v);
    }
    if header.contains_key("average_output") {
        return Err(TreeLoadError::unsupported(
            "header: average_output",
            "averaged output (random forest mode)",
        ));
    }
    let objective = parse_objective(header.get("objective").copied())?;
    let mut counts = [1usize; 2];
    for (key, n) in ["num_class", "num_tree_per_iteration"]
        .iter()
        .zip(&mut counts)
    {
        let v = header.get(key).copied().unwrap_or("1");
        *n = v.trim().parse().map_err(|_| {
            TreeLoadError::format(format!("header: {key}"), format!("not a count: {v:?}"))
        })?;
    }
    let k = objective.classes;
    if counts != [k, k] {
        return Err(TreeLoadError::format(
            "header: num_class",
            format!(
                "num_class={}, num_tree_per_iteration={}, the objective has {k} classes",
                counts[0], counts[1]
            ),
        ));
    }
    let names: Vec<String> = match header.get("feature_names") {
        Some(v) => v
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        None => return Err(TreeLoadError::format("header", "missing feature_names")),
    };
    // LightGBM names the features of a frame without names `Column_0 Column_1 ...`.
    let nameless = names
        .iter()
        .enumerate()
        .all(|(i, n)| *n == format!("Column_{i}"));
    let names = match feature_names {
        // LightGBM writes a feature name's spaces as underscores: the snapshot's names listed.
        Some(listed) if !nameless && written_as(listed, &names) => listed.to_vec(),
        _ => super::bind::feature_names(&names, nameless, feature_names, "header: feature_names")?
            .iter()
            .map(|n| spaced(n, resolve).unwrap_or_else(|| n.clone()))
            .collect(),
    };
    if let Some(v) = header.get("max_feature_idx") {
        let max: usize = v.trim().parse().map_err(|_| {
            TreeLoadError::format("header: max_feature_idx", format!("not a count: {v:?}"))
        })?;
        if max + 1 != names.len() {
            return Err(TreeLoadError::format(
                "header: feature_names",
                format!("{} names, but max_feature_idx={max}", names.len()),
            ));
        }
    }
    let expected_trees = header
        .get("tree_sizes")
        .map(|v| v.split(' ').filter(|s| !s.is_empty()).count());
    // A file that ends inside its trees would otherwise be refused for the last tree's missing
    // fields, which sends its reader into the tree instead of to the copy.
    if !text
        .lines()
        .any(|l| l.trim_end_matches('\r') == "end of trees")
    {
        return Err(TreeLoadError::format(
            "model",
            format!(
                "the file ends before `end of trees`{}, so it was cut short; copy or save it again",
                expected_trees
                    .map_or_else(String::new, |n| format!(" (tree_sizes lists {n} trees)"))
            ),
        ));
    }

    // Tree blocks up to `end of trees`.
    let mut trees: Vec<RawTree> = Vec::new();
    let mut ended = false;
    while let Some(line) = lines.next() {
        if line == "end of trees" {
            ended = true;
            break;
        }
        if line.is_empty() {
            continue;
        }
        let Some(id) = line.strip_prefix("Tree=") else {
            return Err(TreeLoadError::format(
                format!("after Tree={}", trees.len().saturating_sub(1)),
                format!("unexpected line {line:?}"),
            ));
        };
        let label = format!("Tree={id}");
        if id.parse::<usize>().ok() != Some(trees.len()) {
            return Err(TreeLoadError::format(
                label,
                format!("expected Tree={}", trees.len()),
            ));
        }
        if trees.len() == MAX_TREES {
            return Err(TreeLoadError::format(
                label,
                format!("more than {MAX_TREES} trees"),
            ));
        }
        let mut fields: HashMap<&str, &str> = HashMap::new();
        while let Some(&l) = lines.peek() {
            if l.is_empty() || l.starts_with("Tree=") || l == "end of trees" {
                break;
            }
            lines.next();
            let (k, v) = l.split_once('=').ok_or_else(|| {
                TreeLoadError::format(&label, format!("expected key=value, found {l:?}"))
            })?;
            fields.insert(k, v);
        }
        trees.push(parse_tree(label, &fields)?);
    }
    if !ended {
        return Err(TreeLoadError::format("model", "missing 'end of trees'"));
    }
    if let Some(n) = expected_trees {
        if n != trees.len() {
            return Err(TreeLoadError::format(
                "header: tree_sizes",
                format!("lists {n} trees, the file has {}", trees.len()),
            ));
        }
    }
    let infos: Vec<&str> = header
        .get("feature_infos")
        .map(|v| v.split(' ').filter(|s| !s.is_empty()).collect())
        .unwrap_or_default();
    let (pandas, tail) = pandas_categorical(lines)?;
    let categories = feature_categories(&names, &infos, &pandas, resolve)?;
    if categories.iter().any(|c| matches!(c, Categories::Codes)) {
        match tail {
            Tail::Nothing => {
                return Err(TreeLoadError::format(
                    "end of trees",
                    "the file ends there: the sections LightGBM writes after the trees \
                     (feature_importances, parameters, and from Python pandas_categorical, the \
                     names of the categories) are missing, so the file was cut short; copy or \
                     save it again",
                ))
            }
            Tail::CutInParameters => {
                return Err(TreeLoadError::format(
                    "parameters",
                    "the file ends before `end of parameters`, so it was cut short (and the \
                     names of the categories, which LightGBM's Python package writes after \
                     them, with it); copy or save it again",
                ))
            }
            Tail::Sections | Tail::Pandas => {}
        }
    }
    // A file LightGBM's Python package saved names text categories on its last line: without
    // that line, codes alone are most likely a file cut short.
    let unnamed = if tail == Tail::Pandas {
        ""
    } else {
        " (a file LightGBM's Python package saved names them on its last line, \
         `pandas_categorical:`; this file has none: if it came from Python, it was cut short, \
         so copy it again instead)"
    };
    let features = bind(&names, &categories, given, resolve, unnamed)?;
    let flavor = Flavor::LightGbm {
        sigmoid: objective.sigmoid,
    };
    let classes = match objective.link {
        Link::Binary => Classes::binary(0.0),
        link => Classes::multi(
            link,
            vec![0.0; k],
            (0..trees.len()).map(|t| (t % k) as u16).collect(),
        ),
    };
    let ensemble = TreeEnsemble::build_model(flavor, classes, &trees, &features)?;
    Ok((ensemble, names))
}

/// The model format versions this reader knows (`version=v4` in the header, written by
/// LightGBM 4; v3 and v2 by the releases before).
const KNOWN_VERSIONS: [&str; 3] = ["v2", "v3", "v4"];

/// A warning for a file whose header says another format version than those this reader
/// knows: it loads, and its scores should be compared with the library's.
pub fn version_note(text: &str) -> Option<String> {
    let version = text
        .lines()
        .take_while(|l| !l.starts_with("Tree="))
        .find_map(|l| l.trim_end_matches('\r').strip_prefix("version="))?;
    (!KNOWN_VERSIONS.contains(&version)).then(|| {
        format!(
            "written in LightGBM model format {version:?}, outside those this build reads \
             (v2 to v4): compare a few of its scores with the library's predict before it serves"
        )
    })
}

/// Whether a file is LightGBM's `dump_model()` JSON (its trees under `tree_info`, and no
/// XGBoost `learner`), which neither reader takes.
pub(super) fn is_dump(bytes: &[u8]) -> bool {
    let has = |key: &[u8]| bytes.windows(key.len()).any(|w| w == key);
    has(b"\"tree_info\"") && !has(b"\"learner\"")
}

/// How a file goes on after `end of trees`: LightGBM writes `feature_importances:`, then
/// `parameters:` to `end of parameters`, and its Python package a `pandas_categorical:` line.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Tail {
    /// Nothing: the file was cut at its trees.
    Nothing,
    /// `parameters:` without its end: the file was cut inside them.
    CutInParameters,
    /// The sections LightGBM writes, without the Python package's line.
    Sections,
    /// The `pandas_categorical:` line.
    Pandas,
}

/// The `pandas_categorical:` line after the trees: per pandas `category` column at training,
/// its categories in code order (`null` when there was none), and how the file ends.
fn pandas_categorical<'a>(
    lines: impl Iterator<Item = &'a str>,
) -> Result<(Vec<Vec<serde_json::Value>>, Tail), TreeLoadError> {
    const LOC: &str = "pandas_categorical";
    let mut tail = Tail::Nothing;
    for line in lines {
        if let Some(json) = line.strip_prefix("pandas_categorical:") {
            let v: Option<Vec<Vec<serde_json::Value>>> =
                serde_json::from_str(json).map_err(|e| {
                    let cut = if e.is_eof() {
                        ": the line ends before its list does (the file was cut short: a save \
                         or copy still under way?); save the model again"
                    } else {
                        ""
                    };
                    TreeLoadError::format(LOC, format!("{e}{cut}"))
                })?;
            return Ok((v.unwrap_or_default(), Tail::Pandas));
        }
        tail = match line {
            "parameters:" => Tail::CutInParameters,
            "end of parameters" => Tail::Sections,
            "feature_importances:" if tail == Tail::Nothing => Tail::Sections,
            _ => tail,
        };
    }
    Ok((Vec::new(), tail))
}

/// Whether `in_file` is `listed` as LightGBM writes names: each space an underscore.
fn written_as(listed: &[String], in_file: &[String]) -> bool {
    listed.len() == in_file.len()
        && listed
            .iter()
            .zip(in_file)
            .all(|(l, f)| l.replace(' ', "_") == *f)
}

/// The snapshot's column a file's feature name stands for when the snapshot has no column of
/// that name: LightGBM wrote the training column's spaces as underscores (`tenure months` is
/// `tenure_months` in the file), so the one column that differs only there is it. A name the
/// snapshot has, or that several columns could be, stays as it is (and is refused if unknown).
fn spaced(name: &str, resolve: Resolve<'_, '_>) -> Option<String> {
    /// Underscores beyond this many are not tried each way (2^n lookups at load).
    const MOST: usize = 10;
    let at: Vec<usize> = name.match_indices('_').map(|(i, _)| i).collect();
    if at.is_empty() || at.len() > MOST || resolve(name).is_some() {
        return None;
    }
    let mut found = None;
    for mask in 1u32..(1 << at.len()) {
        let mut bytes = name.as_bytes().to_vec();
        for (bit, &i) in at.iter().enumerate() {
            if mask & (1 << bit) != 0 {
                bytes[i] = b' ';
            }
        }
        let candidate = String::from_utf8(bytes).ok()?;
        if resolve(&candidate).is_some() {
            if found.is_some() {
                return None;
            }
            found = Some(candidate);
        }
    }
    found
}

/// What the `objective` line says.
struct Objective {
    link: Link,
    sigmoid: f64,
    classes: usize,
}

/// `objective=binary sigmoid:1`, `cross_entropy`, `multiclass num_class:4`, `multiclassova
/// num_class:3 sigmoid:1`; anything else is refused.
fn parse_objective(v: Option<&str>) -> Result<Objective, TreeLoadError> {
    const LOC: &str = "header: objective";
    let v = v.ok_or_else(|| TreeLoadError::format("header", "missing objective"))?;
    let mut parts = v.split(' ').filter(|s| !s.is_empty());
    let name = parts.next().unwrap_or("");
    if name == "cross_entropy_lambda" {
        // LightGBM's `predict` gives lambda = log(1 + exp(score)), a rate whose probability
        // 1 - exp(-lambda * w) depends on each row's training weight w.
        return Err(TreeLoadError::unsupported(
            LOC,
            "objective 'cross_entropy_lambda': its predictions are a rate, not a probability \
             (retrain with objective cross_entropy or binary)",
        ));
    }
    if !matches!(
        name,
        "binary" | "cross_entropy" | "multiclass" | "multiclassova"
    ) {
        return Err(TreeLoadError::unsupported(
            LOC,
            format!(
                "objective '{name}' (only binary, cross_entropy, multiclass and multiclassova)"
            ),
        ));
    }
    let multi = name.starts_with("multiclass");
    let mut sigmoid = 1.0_f64;
    let mut classes = 1usize;
    for p in parts {
        match p.split_once(':') {
            Some(("sigmoid", s)) if matches!(name, "binary" | "multiclassova") => {
                sigmoid = s
                    .parse()
                    .map_err(|_| TreeLoadError::format(LOC, format!("bad sigmoid {s:?}")))?;
            }
            Some(("num_class", s)) if multi => {
                classes = s
                    .parse()
                    .map_err(|_| TreeLoadError::format(LOC, format!("bad num_class {s:?}")))?;
            }
            _ => {
                return Err(TreeLoadError::unsupported(
                    LOC,
                    format!("objective parameter '{p}'"),
                ))
            }
        }
    }
    if !(sigmoid.is_finite() && sigmoid > 0.0) {
        return Err(TreeLoadError::format(
            LOC,
            format!("sigmoid {sigmoid} must be finite and > 0"),
        ));
    }
    if multi && !(2..=crate::engine::trees::MAX_CLASSES).contains(&classes) {
        return Err(TreeLoadError::format(
            LOC,
            format!("{classes} classes for a multiclass objective"),
        ));
    }
    let link = match name {
        // LightGBM's `CrossEntropy::ConvertOutput` is `binary`'s at sigmoid 1, which the file
        // leaves unsaid.
        "binary" | "cross_entropy" => Link::Binary,
        "multiclass" => Link::Softmax,
        _ => Link::OneVsAll { sigmoid },
    };
    Ok(Objective {
        link,
        sigmoid,
        classes,
    })
}

mod categories;
#[cfg(test)]
mod tests;
mod tree;
