//! Reads XGBoost's JSON model (`Booster.save_model("m.json")`, 2.x and 3.x) into a
//! [`TreeEnsemble`].
//!
//! Owns: the JSON schema, the accepted subset (gbtree; `binary:logistic` / `reg:logistic`, or
//! `multi:softprob` / `multi:softmax` with a class per tree from `tree_info`; one target;
//! numeric splits and categorical ones, partition or one-hot, from `split_type`,
//! `categories`, `categories_nodes`, `categories_segments` and `categories_sizes`),
//! `base_score` decoding, the training categories 3.x stores (`cats.enc`, names in code
//! order, `cats`), the bare `NaN` / `Infinity` tokens XGBoost writes (`tokens`), and mapping
//! feature names to snapshot columns (`model::bind`). Must not: score
//! anything, read files, or accept a model it cannot reproduce exactly (multi-target, dart,
//! gblinear are refused by name, never approximated). Structural checks (child ranges,
//! cycles, limits, finiteness) are left to [`TreeEnsemble::build_model`].

use super::bind::{bind, Categories, Column, Given, Resolve};
use crate::engine::trees::{
    Classes, Flavor, Link, MissingType, RawNode, RawTree, TreeEnsemble, TreeLoadError,
    MAX_NODES_PER_TREE, MAX_TREES,
};
use schema::{Cats, GbTreeModel, ModelFile, Tree};

/// Objectives whose `predict` is `sigmoid(margin)` with `base_score` a probability.
pub const SUPPORTED_OBJECTIVES: [&str; 2] = ["binary:logistic", "reg:logistic"];
/// Objectives whose probabilities are the softmax of one margin per class.
pub const MULTICLASS_OBJECTIVES: [&str; 2] = ["multi:softprob", "multi:softmax"];

/// What the scorer spec adds to a model file: feature names where the file has none, and the
/// categories of features whose file stores only codes.
#[derive(Debug, Default, Clone, Copy)]
pub struct Spec<'a> {
    /// The scorer spec's `features`.
    pub feature_names: Option<&'a [String]>,
    /// The scorer spec's `categories`.
    pub categories: Option<&'a Given>,
    /// Score every tree, also those after early stopping's `best_iteration` (`"trees": "all"`).
    pub all_trees: bool,
}

/// A parsed model: the ensemble, every feature name it resolved, and what the file holds that
/// a reader should know (each a sentence).
pub struct Parsed {
    /// The trees, bound to the snapshot.
    pub ensemble: TreeEnsemble,
    /// The file's feature names, in order.
    pub features: Vec<String>,
    /// Warnings about the file.
    pub notes: Vec<Note>,
}

/// A warning about a scorer's file, placed where the model check shows it.
#[derive(Debug)]
pub struct Note {
    /// The scorer's field the warning is about (`categories.segment`); `None` for the file.
    pub at: Option<String>,
    /// The warning, one sentence or more.
    pub text: String,
}

impl Note {
    /// A warning about the file as a whole, shown at the scorer's `path`.
    pub fn file(text: String) -> Self {
        Self { at: None, text }
    }
}

/// Parses an XGBoost JSON model and resolves its features to snapshot columns.
///
/// Names come from `learner.feature_names`, else from `feature_names` (the scorer spec's list);
/// every name goes through `resolve`, and all unknown ones are reported together.
pub fn parse_xgboost(
    bytes: &[u8],
    feature_names: Option<&[String]>,
    resolve: &dyn Fn(&str) -> Option<u32>,
) -> Result<TreeEnsemble, TreeLoadError> {
    parse_xgboost_with_features(bytes, feature_names, resolve).map(|(ensemble, _)| ensemble)
}

/// [`parse_xgboost`], also returning every feature name it resolved to a column.
pub fn parse_xgboost_with_features(
    bytes: &[u8],
    feature_names: Option<&[String]>,
    resolve: &dyn Fn(&str) -> Option<u32>,
) -> Result<(TreeEnsemble, Vec<String>), TreeLoadError> {
    let spec = Spec {
        feature_names,
        ..Spec::default()
    };
    parse_xgboost_model(bytes, &spec, &|name| resolve(name).map(Column::number))
}

/// Parses an XGBoost JSON model, binary or multiclass, numeric or categorical, against the
/// snapshot's columns (`resolve` says which hold strings); also returns every feature name.
pub fn parse_xgboost_model(
    bytes: &[u8],
    spec: &Spec<'_>,
    resolve: Resolve<'_, '_>,
) -> Result<(TreeEnsemble, Vec<String>), TreeLoadError> {
    parse_xgboost_noted(bytes, spec, resolve).map(|p| (p.ensemble, p.features))
}

/// [`parse_xgboost_model`], with the warnings a model check shows.
pub fn parse_xgboost_noted(
    bytes: &[u8],
    spec: &Spec<'_>,
    resolve: Resolve<'_, '_>,
) -> Result<Parsed, TreeLoadError> {
    let mut notes = Vec::new();
    let feature_names = spec.feature_names;
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        let hint = if bytes.starts_with(b"tree") {
            "it is a LightGBM text model: use \"kind\": \"lightgbm\" for it"
        } else {
            "an xgboost scorer reads the JSON that Booster.save_model(\"m.json\") writes"
        };
        return Err(TreeLoadError::format(
            "json",
            format!("not an XGBoost JSON model; {hint}"),
        ));
    }
    let file = read_file(bytes)?;
    notes.extend(version_note(&file.version).map(Note::file));
    let learner = file.learner;

    let objective = learner.objective.name.as_str();
    let multiclass = MULTICLASS_OBJECTIVES.contains(&objective);
    if !SUPPORTED_OBJECTIVES.contains(&objective) && !multiclass {
        return Err(TreeLoadError::unsupported(
            "learner.objective.name",
            format!(
                "objective '{objective}' (only binary:logistic, reg:logistic, multi:softprob \
                 and multi:softmax)"
            ),
        ));
    }
    let param = &learner.learner_model_param;
    let num_class = param_usize(
        "learner.learner_model_param.num_class",
        param.num_class.as_deref(),
    )?;
    if multiclass != (num_class > 1) {
        return Err(TreeLoadError::format(
            "learner.learner_model_param.num_class",
            format!("{num_class} classes for objective '{objective}'"),
        ));
    }
    let num_target = param_usize(
        "learner.learner_model_param.num_target",
        param.num_target.as_deref(),
    )?;
    if num_target > 1 {
        return Err(TreeLoadError::unsupported(
            "learner.learner_model_param.num_target",
            format!("multi-target model ({num_target} targets)"),
        ));
    }
    let classes = if multiclass {
        // Softmax's ProbToMargin is the identity: one margin per class (3.x), or one for all.
        let base = parse_base_scores(&param.base_score)?;
        let base: Vec<f64> = match base.len() {
            1 => vec![f64::from(base[0]); num_class],
            n if n == num_class => base.into_iter().map(f64::from).collect(),
            n => {
                return Err(TreeLoadError::format(
                    "learner.learner_model_param.base_score",
                    format!("{n} base scores for {num_class} classes"),
                ))
            }
        };
        Some(base)
    } else {
        None
    };
    let base_score = match &classes {
        Some(_) => 0.5,
        None => parse_base_score(&param.base_score)?,
    };
    if !(base_score > 0.0 && base_score < 1.0) {
        return Err(TreeLoadError::format(
            "learner.learner_model_param.base_score",
            format!("{base_score} must be in (0, 1) for a logistic objective"),
        ));
    }
    // LogisticRegression::ProbToMargin, in f32 as XGBoost computes it.
    let base_margin = -((1.0_f32 / base_score - 1.0_f32).ln());

    let booster = &learner.gradient_booster;
    if booster.name != "gbtree" {
        return Err(TreeLoadError::unsupported(
            "learner.gradient_booster.name",
            format!("booster '{}' (only gbtree)", booster.name),
        ));
    }
    let Some(model) = &booster.model else {
        return Err(TreeLoadError::format(
            "learner.gradient_booster",
            "missing 'model'",
        ));
    };
    if model.trees.len() > MAX_TREES {
        return Err(TreeLoadError::format(
            "learner.gradient_booster.model.trees",
            format!(
                "{} trees, at most {MAX_TREES} are allowed",
                model.trees.len()
            ),
        ));
    }
    whole(model)?;
    let kept = rounds::kept_trees(&learner, model, num_class, spec.all_trees, &mut notes)?;
    let (trees, tree_info) = (
        &model.trees[..kept],
        &model.tree_info[..kept.min(model.tree_info.len())],
    );
    let k = num_class.max(1) as i64;
    if let Some(i) = model.tree_info.iter().position(|&g| g < 0 || g >= k) {
        return Err(TreeLoadError::format(
            format!("learner.gradient_booster.model.tree_info[{i}]"),
            format!("output group {} of {k}", model.tree_info[i]),
        ));
    }
    if multiclass && tree_info.len() != trees.len() {
        return Err(TreeLoadError::format(
            "learner.gradient_booster.model.tree_info",
            format!(
                "{} entries for {} trees",
                model.tree_info.len(),
                model.trees.len()
            ),
        ));
    }

    let num_feature = param_usize(
        "learner.learner_model_param.num_feature",
        param.num_feature.as_deref(),
    )?;
    let names = choose_names(&learner.feature_names, feature_names, num_feature)?;
    if num_feature != 0 && names.len() != num_feature {
        let whose = if learner.feature_names.is_empty() {
            "the scorer's `features` list"
        } else {
            "the file"
        };
        return Err(TreeLoadError::format(
            "feature names",
            format!(
                "{whose} names {} feature{}, but the model was trained on {num_feature} \
                 (learner_model_param.num_feature): name each training column, in order",
                names.len(),
                if names.len() == 1 { "" } else { "s" }
            ),
        ));
    }
    let categories = feature_categories(
        &learner.feature_types,
        model.cats.as_ref(),
        &file.version,
        names.len(),
    )?;

    let raw: Vec<RawTree> = trees
        .iter()
        .enumerate()
        .map(|(i, t)| raw_tree(i, t))
        .collect::<Result<_, _>>()?;
    cats::short_lists(names, &categories, spec.categories, &raw)?;
    notes.extend(cats::order_notes(names, &categories, spec.categories));
    notes.extend(
        cats::code_notes(names, &categories, spec.categories, &raw, resolve)
            .into_iter()
            .map(Note::file),
    );
    let features = bind(names, &categories, spec.categories, resolve, "")?;
    let classes = match classes {
        Some(base) => Classes::multi(
            Link::Softmax,
            base,
            tree_info.iter().map(|&g| g as u16).collect(),
        ),
        None => Classes::binary(f64::from(base_margin)),
    };
    let ensemble = TreeEnsemble::build_model(Flavor::XgBoost, classes, &raw, &features)?;
    Ok(Parsed {
        ensemble,
        features: names.to_vec(),
        notes,
    })
}

/// Parses the file: JSON on the fast path (simd-json), else with XGBoost's bare `NaN` and
/// `Infinity` tokens read as numbers (`tokens`), else refuses it saying what the file is.
fn read_file(bytes: &[u8]) -> Result<ModelFile, TreeLoadError> {
    let mut buf = bytes.to_vec();
    if let Ok(file) = simd_json::serde::from_slice::<ModelFile>(&mut buf) {
        return Ok(file);
    }
    let quoted = tokens::quote_bare_numbers(bytes);
    let text = quoted.as_deref().unwrap_or(bytes);
    // simd-json's errors name its internals; serde_json's say what and where.
    let why = match serde_json::from_slice::<ModelFile>(text) {
        Ok(file) => return Ok(file),
        Err(_) if std::str::from_utf8(bytes).is_err() => {
            "it is binary (UBJSON, a `.ubj` file): save the model as JSON, \
             Booster.save_model(\"m.json\")"
                .into()
        }
        Err(_) if super::lightgbm::is_dump(bytes) => {
            "it is LightGBM's dump_model() JSON: save the LightGBM model as text, \
             Booster.save_model(\"m.txt\"), and read it with \"kind\": \"lightgbm\""
                .into()
        }
        Err(e) if e.is_eof() => format!(
            "{e}: the file ends before its JSON does (a save or copy still under way?); save \
             the model again"
        ),
        Err(e) => e.to_string(),
    };
    Err(TreeLoadError::format(
        "json",
        format!("not an XGBoost JSON model: {why}"),
    ))
}

/// Each feature's categories: numeric unless `feature_types` says `c`; then the names (or
/// numbers) 3.1 and later store in `cats.enc`, in code order, else codes only.
fn feature_categories(
    types: &[String],
    cats: Option<&Cats>,
    version: &[i64],
    n: usize,
) -> Result<Vec<Categories>, TreeLoadError> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        if types.get(i).map(String::as_str) != Some("c") {
            out.push(Categories::Numeric);
            continue;
        }
        let loc = format!("learner.gradient_booster.model.cats.enc[{i}]");
        out.push(match cats.and_then(|c| c.enc.get(i)) {
            None => Categories::Codes,
            Some(e) => cats::decode(e, version, &loc)?,
        });
    }
    Ok(out)
}

fn choose_names<'a>(
    in_model: &'a [String],
    given: Option<&'a [String]>,
    num_feature: usize,
) -> Result<&'a [String], TreeLoadError> {
    if in_model.is_empty() && given.is_none() {
        let count = match num_feature {
            0 => String::new(),
            1 => " (1 column)".into(),
            n => format!(" ({n} columns)"),
        };
        return Err(TreeLoadError::format(
            "learner.feature_names",
            format!(
                "the model has no feature names (trained on an array, not a data frame): list \
                 the snapshot's names of its training columns{count}, in order, in the scorer's \
                 `features`"
            ),
        ));
    }
    super::bind::feature_names(
        in_model,
        in_model.is_empty(),
        given,
        "learner.feature_names",
    )
}

/// `base_score` is `"5E-1"` in 2.x and `"[5E-1]"` (one per target) in 3.x; a probability.
/// Refuses a file whose tree count disagrees with what it declares (`num_trees`, the end of
/// `iteration_indptr`, one `tree_info` entry a tree), as XGBoost itself does: a tree was cut
/// or edited out, and what is left would score other numbers than the model trained.
fn whole(model: &GbTreeModel) -> Result<(), TreeLoadError> {
    const AT: &str = "learner.gradient_booster.model";
    let n = model.trees.len();
    let cut = |at: &str, says: String| {
        TreeLoadError::format(
            format!("{AT}.{at}"),
            format!("{says}, but the file has {n} trees: a tree was cut or edited out (XGBoost refuses this file too); save the model again"),
        )
    };
    if let Some(text) = model
        .gbtree_model_param
        .as_ref()
        .and_then(|p| p.num_trees.as_deref())
    {
        let declared: usize = text.trim().parse().map_err(|_| {
            TreeLoadError::format(
                format!("{AT}.gbtree_model_param.num_trees"),
                format!("not a count: {text:?}"),
            )
        })?;
        if declared != n {
            return Err(cut(
                "gbtree_model_param.num_trees",
                format!("says {declared}"),
            ));
        }
    }
    if let Some(&last) = model.iteration_indptr.last() {
        if last != n as i64 {
            return Err(cut("iteration_indptr", format!("ends at tree {last}")));
        }
    }
    if !model.tree_info.is_empty() && model.tree_info.len() != n {
        return Err(cut(
            "tree_info",
            format!("has {} entries", model.tree_info.len()),
        ));
    }
    Ok(())
}

fn parse_base_score(text: &str) -> Result<f32, TreeLoadError> {
    const LOC: &str = "learner.learner_model_param.base_score";
    let parts = parse_base_scores(text)?;
    if parts.len() != 1 {
        return Err(TreeLoadError::unsupported(
            LOC,
            format!("{} base scores (multi-target)", parts.len()),
        ));
    }
    Ok(parts[0])
}

/// Every value of `base_score` (3.x writes one per class for a multiclass model).
fn parse_base_scores(text: &str) -> Result<Vec<f32>, TreeLoadError> {
    const LOC: &str = "learner.learner_model_param.base_score";
    let t = text.trim();
    let inner = match t.strip_prefix('[') {
        Some(rest) => rest
            .strip_suffix(']')
            .ok_or_else(|| TreeLoadError::format(LOC, format!("unterminated list {text:?}")))?,
        None => t,
    };
    inner
        .split(',')
        .map(|p| {
            p.trim()
                .parse::<f32>()
                .map_err(|_| TreeLoadError::format(LOC, format!("not a number: {text:?}")))
        })
        .collect()
}

fn param_usize(loc: &str, v: Option<&str>) -> Result<usize, TreeLoadError> {
    match v {
        None => Ok(0),
        Some(s) => s
            .trim()
            .parse()
            .map_err(|_| TreeLoadError::format(loc, format!("not a count: {s:?}"))),
    }
}

fn raw_tree(i: usize, t: &Tree) -> Result<RawTree, TreeLoadError> {
    let label = format!("trees[{i}]");
    let n = param_usize(
        &format!("{label}.tree_param.num_nodes"),
        Some(&t.tree_param.num_nodes),
    )?;
    if n > MAX_NODES_PER_TREE {
        return Err(TreeLoadError::format(
            format!("{label}.tree_param.num_nodes"),
            format!("{n} nodes, at most {MAX_NODES_PER_TREE} are allowed per tree"),
        ));
    }
    let leaf_vec = param_usize(
        &format!("{label}.tree_param.size_leaf_vector"),
        t.tree_param.size_leaf_vector.as_deref(),
    )?;
    if leaf_vec > 1 {
        return Err(TreeLoadError::unsupported(
            format!("{label}.tree_param.size_leaf_vector"),
            format!("vector leaves (size {leaf_vec}, multi-target)"),
        ));
    }
    let deleted = param_usize(
        &format!("{label}.tree_param.num_deleted"),
        t.tree_param.num_deleted.as_deref(),
    )?;
    let check_len = |field: &str, len: usize| {
        if len == n {
            Ok(())
        } else {
            Err(TreeLoadError::format(
                format!("{label}.{field}"),
                format!("length {len}, expected {n}"),
            ))
        }
    };
    check_len("left_children", t.left_children.len())?;
    check_len("right_children", t.right_children.len())?;
    check_len("split_indices", t.split_indices.len())?;
    check_len("split_conditions", t.split_conditions.len())?;
    check_len("default_left", t.default_left.len())?;
    if !t.split_type.is_empty() {
        check_len("split_type", t.split_type.len())?;
    }

    let mut nodes = Vec::with_capacity(n);
    for j in 0..n {
        let (l, r) = (t.left_children[j], t.right_children[j]);
        // split_conditions are f32 values; the leaf value lives there for leaves too.
        let value = t.split_conditions[j] as f32;
        if l == -1 {
            if r != -1 {
                return Err(TreeLoadError::format(
                    format!("{label}.right_children[{j}]"),
                    format!("{r} on a leaf (left_children[{j}] is -1)"),
                ));
            }
            nodes.push(RawNode::Leaf {
                value: f64::from(value),
            });
            continue;
        }
        let child = |field: &str, v: i64| {
            u32::try_from(v).map_err(|_| {
                TreeLoadError::format(
                    format!("{label}.{field}[{j}]"),
                    format!("bad child index {v}"),
                )
            })
        };
        let feature = u32::try_from(t.split_indices[j]).map_err(|_| {
            TreeLoadError::format(
                format!("{label}.split_indices[{j}]"),
                format!("bad feature index {}", t.split_indices[j]),
            )
        })?;
        let (left, right) = (child("left_children", l)?, child("right_children", r)?);
        let default_left = t.default_left[j].is_true();
        match t.split_type.get(j).copied().unwrap_or(0) {
            0 => nodes.push(RawNode::Split {
                feature,
                threshold: f64::from(value),
                left,
                right,
                default_left,
                missing: MissingType::NaN,
            }),
            // `common::Decision`: the categories of the set go right (one-hot splits are sets
            // of one).
            1 => nodes.push(RawNode::Categorical {
                feature,
                categories: node_categories(&label, t, j)?,
                in_set: right,
                not_in_set: left,
                missing_in_set: !default_left,
            }),
            other => {
                return Err(TreeLoadError::format(
                    format!("{label}.split_type[{j}]"),
                    format!("unknown split type {other}"),
                ))
            }
        }
    }
    Ok(RawTree {
        label,
        nodes,
        allowed_unreachable: deleted,
    })
}

/// The categories of categorical split `j`: `categories[segment..segment + size]` where
/// `categories_nodes[k] == j`.
fn node_categories(label: &str, t: &Tree, j: usize) -> Result<Box<[u32]>, TreeLoadError> {
    let loc = format!("{label}.categories_nodes");
    let k = t
        .categories_nodes
        .iter()
        .position(|&n| n == j as i64)
        .ok_or_else(|| TreeLoadError::format(&loc, format!("no categories for node {j}")))?;
    let (Some(&seg), Some(&size)) = (t.categories_segments.get(k), t.categories_sizes.get(k))
    else {
        return Err(TreeLoadError::format(
            format!("{label}.categories_segments"),
            format!("no segment for node {j}"),
        ));
    };
    let set = usize::try_from(seg)
        .ok()
        .zip(usize::try_from(size).ok())
        .and_then(|(a, n)| t.categories.get(a..a.checked_add(n)?))
        .ok_or_else(|| {
            TreeLoadError::format(
                format!("{label}.categories"),
                format!("segment {seg} + {size} is out of range"),
            )
        })?;
    set.iter()
        .map(|&c| {
            u32::try_from(c).map_err(|_| {
                TreeLoadError::format(format!("{label}.categories"), format!("category {c}"))
            })
        })
        .collect()
}

/// The XGBoost releases whose JSON this reader knows: from the first that saved models as
/// JSON (1.0) to the 3.x series the fixtures cover.
const KNOWN_VERSIONS: std::ops::Range<[i64; 2]> = [1, 0]..[4, 0];

/// A warning for a file that says another release wrote it than those this reader knows (its
/// format may have changed): it loads, and its scores should be compared with the library's.
fn version_note(version: &[i64]) -> Option<String> {
    let major_minor = [*version.first()?, version.get(1).copied().unwrap_or(0)];
    if KNOWN_VERSIONS.contains(&major_minor) {
        return None;
    }
    let shown: Vec<String> = version.iter().map(i64::to_string).collect();
    Some(format!(
        "written by XGBoost {}, outside the releases this build reads (1.0 to 3.x): compare a \
         few of its scores with the library's predict_proba before it serves",
        shown.join(".")
    ))
}

mod cats;
mod rounds;
mod schema;
#[cfg(test)]
mod tests;
mod tokens;
