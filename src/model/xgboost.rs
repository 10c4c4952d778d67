//! Reads XGBoost's JSON model (`Booster.save_model("m.json")`, 2.x and 3.x) into a
//! [`TreeEnsemble`].
//!
//! Owns: the JSON schema, the accepted subset (gbtree, `binary:logistic` / `reg:logistic`, one
//! target, numeric splits), `base_score` decoding, and mapping feature names to snapshot
//! columns. Must not: score anything, read files, or accept a model it cannot reproduce exactly
//! (multiclass, categorical, dart, gblinear are refused by name, never approximated).
//! Structural checks (child ranges, cycles, limits, finiteness) are left to
//! [`TreeEnsemble::build`].

use serde::Deserialize;

use crate::engine::trees::{
    resolve_columns, Flavor, MissingType, RawNode, RawTree, TreeEnsemble, TreeLoadError,
    MAX_NODES_PER_TREE, MAX_TREES,
};

/// Objectives whose `predict` is `sigmoid(margin)` with `base_score` a probability.
pub const SUPPORTED_OBJECTIVES: [&str; 2] = ["binary:logistic", "reg:logistic"];

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
    let mut buf = bytes.to_vec();
    let file: ModelFile = simd_json::serde::from_slice(&mut buf).map_err(|_| {
        // simd-json's errors name its internals; serde_json's say what and where.
        let why = match serde_json::from_slice::<ModelFile>(bytes) {
            Err(e) => e.to_string(),
            Ok(_) => "not JSON this server can read".into(),
        };
        TreeLoadError::format("json", format!("not an XGBoost JSON model: {why}"))
    })?;
    let learner = file.learner;

    let objective = learner.objective.name.as_str();
    if !SUPPORTED_OBJECTIVES.contains(&objective) {
        return Err(TreeLoadError::unsupported(
            "learner.objective.name",
            format!("objective '{objective}' (only binary:logistic and reg:logistic)"),
        ));
    }
    let param = &learner.learner_model_param;
    let num_class = param_usize(
        "learner.learner_model_param.num_class",
        param.num_class.as_deref(),
    )?;
    if num_class > 1 {
        return Err(TreeLoadError::unsupported(
            "learner.learner_model_param.num_class",
            format!("multiclass model ({num_class} classes)"),
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
    let base_score = parse_base_score(&param.base_score)?;
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
    if let Some(i) = model.tree_info.iter().position(|&g| g != 0) {
        return Err(TreeLoadError::unsupported(
            format!("learner.gradient_booster.model.tree_info[{i}]"),
            "a tree for output group other than 0 (multiclass)",
        ));
    }

    let names = choose_names(&learner.feature_names, feature_names)?;
    let num_feature = param_usize(
        "learner.learner_model_param.num_feature",
        param.num_feature.as_deref(),
    )?;
    if num_feature != 0 && names.len() != num_feature {
        return Err(TreeLoadError::format(
            "feature names",
            format!(
                "{} names, but the model has num_feature = {num_feature}",
                names.len()
            ),
        ));
    }
    if let Some(i) = learner.feature_types.iter().position(|t| t == "c") {
        return Err(TreeLoadError::unsupported(
            format!("learner.feature_types[{i}]"),
            format!(
                "categorical feature '{}'",
                names.get(i).map_or("?", String::as_str)
            ),
        ));
    }

    let raw: Vec<RawTree> = model
        .trees
        .iter()
        .enumerate()
        .map(|(i, t)| raw_tree(i, t))
        .collect::<Result<_, _>>()?;
    let columns = resolve_columns(names, resolve)?;
    let ensemble = TreeEnsemble::build(Flavor::XgBoost, f64::from(base_margin), &raw, &columns)?;
    Ok((ensemble, names.to_vec()))
}

fn choose_names<'a>(
    in_model: &'a [String],
    given: Option<&'a [String]>,
) -> Result<&'a [String], TreeLoadError> {
    match (in_model.is_empty(), given) {
        (true, None) => Err(TreeLoadError::format(
            "learner.feature_names",
            "the model has no feature names; list them in the scorer spec",
        )),
        (true, Some(given)) => Ok(given),
        (false, None) => Ok(in_model),
        (false, Some(given)) => {
            if let Some(i) =
                (0..in_model.len().max(given.len())).find(|&i| in_model.get(i) != given.get(i))
            {
                return Err(TreeLoadError::format(
                    format!("learner.feature_names[{i}]"),
                    format!(
                        "model says {:?}, the scorer spec says {:?} (the lists must match)",
                        in_model.get(i).map_or("<none>", String::as_str),
                        given.get(i).map_or("<none>", String::as_str)
                    ),
                ));
            }
            Ok(in_model)
        }
    }
}

/// `base_score` is `"5E-1"` in 2.x and `"[5E-1]"` (one per target) in 3.x; a probability.
fn parse_base_score(text: &str) -> Result<f32, TreeLoadError> {
    const LOC: &str = "learner.learner_model_param.base_score";
    let t = text.trim();
    let inner = match t.strip_prefix('[') {
        Some(rest) => rest
            .strip_suffix(']')
            .ok_or_else(|| TreeLoadError::format(LOC, format!("unterminated list {text:?}")))?,
        None => t,
    };
    let parts: Vec<&str> = inner.split(',').map(str::trim).collect();
    if parts.len() != 1 {
        return Err(TreeLoadError::unsupported(
            LOC,
            format!("{} base scores (multi-target)", parts.len()),
        ));
    }
    parts[0]
        .parse::<f32>()
        .map_err(|_| TreeLoadError::format(LOC, format!("not a number: {text:?}")))
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
        if t.split_type.get(j).copied().unwrap_or(0) != 0 {
            return Err(TreeLoadError::unsupported(
                format!("{label}.split_type[{j}]"),
                "categorical splits",
            ));
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
        nodes.push(RawNode::Split {
            feature,
            threshold: f64::from(value),
            left: child("left_children", l)?,
            right: child("right_children", r)?,
            default_left: t.default_left[j].is_true(),
            missing: MissingType::NaN,
        });
    }
    Ok(RawTree {
        label,
        nodes,
        allowed_unreachable: deleted,
    })
}

#[derive(Deserialize)]
struct ModelFile {
    learner: Learner,
}

#[derive(Deserialize)]
struct Learner {
    #[serde(default)]
    feature_names: Vec<String>,
    #[serde(default)]
    feature_types: Vec<String>,
    gradient_booster: GradientBooster,
    learner_model_param: LearnerModelParam,
    objective: Objective,
}

#[derive(Deserialize)]
struct LearnerModelParam {
    base_score: String,
    num_class: Option<String>,
    num_target: Option<String>,
    num_feature: Option<String>,
}

#[derive(Deserialize)]
struct Objective {
    name: String,
}

#[derive(Deserialize)]
struct GradientBooster {
    name: String,
    /// Present for gbtree (and gblinear, whose shape differs: every field here is defaulted).
    model: Option<GbTreeModel>,
}

#[derive(Deserialize)]
struct GbTreeModel {
    #[serde(default)]
    trees: Vec<Tree>,
    #[serde(default)]
    tree_info: Vec<i64>,
}

#[derive(Deserialize)]
struct Tree {
    tree_param: TreeParam,
    left_children: Vec<i64>,
    right_children: Vec<i64>,
    split_indices: Vec<i64>,
    split_conditions: Vec<f64>,
    default_left: Vec<Flag>,
    #[serde(default)]
    split_type: Vec<i64>,
}

#[derive(Deserialize)]
struct TreeParam {
    num_nodes: String,
    num_deleted: Option<String>,
    size_leaf_vector: Option<String>,
}

/// `default_left` entries: 0/1 in current XGBoost, booleans in some older writers.
#[derive(Deserialize, Clone, Copy)]
#[serde(untagged)]
enum Flag {
    Int(i64),
    Bool(bool),
}

impl Flag {
    fn is_true(self) -> bool {
        match self {
            Flag::Int(v) => v != 0,
            Flag::Bool(b) => b,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lightgbm_file_or_other_text_says_what_it_is() {
        let resolve = |_: &str| Some(0);
        let lgb = std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("models/streaming_bundle.lgb.txt"),
        )
        .unwrap();
        let e = parse_xgboost(&lgb, None, &resolve).unwrap_err().to_string();
        assert!(
            e.contains("it is a LightGBM text model: use \"kind\": \"lightgbm\""),
            "{e}"
        );
        let e = parse_xgboost(b"{\"learner\": 7}", None, &resolve)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("json: not an XGBoost JSON model: invalid type"),
            "{e}"
        );
        assert!(!e.contains("Expected"), "{e}");
    }

    const NAMES: [&str; 2] = ["tenure_months", "arpu_30d"];

    fn resolve(name: &str) -> Option<u32> {
        NAMES.iter().position(|n| *n == name).map(|i| i as u32 + 10)
    }

    /// One split on arpu_30d < 20 (NaN left), leaves -1 / +1, base_score given as text.
    fn model(base_score: &str, extra_tree_fields: &str, names: &str, objective: &str) -> String {
        format!(
            r#"{{"learner":{{"attributes":{{}},"feature_names":{names},"feature_types":[],
            "gradient_booster":{{"model":{{"gbtree_model_param":{{"num_parallel_tree":"1","num_trees":"1"}},
              "iteration_indptr":[0,1],"tree_info":[0],
              "trees":[{{"base_weights":[0,0,0],"categories":[],"categories_nodes":[],"categories_segments":[],
                "categories_sizes":[],"default_left":[1,0,0],"id":0,"left_children":[1,-1,-1],
                "loss_changes":[1,0,0],"parents":[2147483647,0,0],"right_children":[2,-1,-1],
                "split_conditions":[2E1,-1E0,1E0],"split_indices":[1,0,0],{extra_tree_fields}
                "sum_hessian":[2,1,1],"tree_param":{{"num_deleted":"0","num_feature":"2","num_nodes":"3","size_leaf_vector":"1"}}}}]}},
              "name":"gbtree"}},
            "learner_model_param":{{"base_score":"{base_score}","boost_from_average":"1","num_class":"0","num_feature":"2","num_target":"1"}},
            "objective":{{"name":"{objective}","reg_loss_param":{{"scale_pos_weight":"1"}}}}}},"version":[3,2,0]}}"#
        )
    }

    /// A snapshot row with arpu_30d (column 11) set.
    fn row(x: f32) -> Vec<f32> {
        let mut r = vec![0.0_f32; 12];
        r[11] = x;
        r
    }

    fn ok_model() -> String {
        model(
            "[5E-1]",
            r#""split_type":[0,0,0],"#,
            r#"["tenure_months","arpu_30d"]"#,
            "binary:logistic",
        )
    }

    #[test]
    fn scores_and_routes_missing_by_default_left() {
        let e = parse_xgboost(ok_model().as_bytes(), None, &resolve).expect("parses");
        assert_eq!(e.columns(), &[11]);
        assert_eq!(e.margin(&row(19.0)), -1.0);
        assert_eq!(e.margin(&row(20.0)), 1.0);
        assert_eq!(e.margin(&row(f32::NAN)), -1.0); // default_left = 1
        assert_eq!(e.margin(&[]), -1.0); // column beyond the row = missing
        assert!((e.predict(&row(20.0)) - 1.0 / (1.0 + (-1.0_f64).exp())).abs() < 1e-7);
    }

    #[test]
    fn base_score_plain_and_bracketed() {
        for text in ["2.5E-1", "[2.5E-1]"] {
            let m = model(text, "", r#"["tenure_months","arpu_30d"]"#, "reg:logistic");
            let e = parse_xgboost(m.as_bytes(), None, &resolve).expect("parses");
            assert!((e.margin(&row(25.0)) - (1.0 + (0.25_f64 / 0.75).ln())).abs() < 1e-6);
        }
        let m = model(
            "[2E-1,3E-1]",
            "",
            r#"["tenure_months","arpu_30d"]"#,
            "reg:logistic",
        );
        assert!(parse_xgboost(m.as_bytes(), None, &resolve).is_err());
    }

    #[test]
    fn names_from_argument_when_model_has_none() {
        let m = model("5E-1", "", "[]", "binary:logistic");
        let err = parse_xgboost(m.as_bytes(), None, &resolve).unwrap_err();
        assert!(err.to_string().contains("no feature names"), "{err}");
        let names: Vec<String> = NAMES.iter().map(|s| s.to_string()).collect();
        let e = parse_xgboost(m.as_bytes(), Some(&names), &resolve).expect("parses");
        assert_eq!(e.columns(), &[11]);
        let wrong: Vec<String> = vec!["tenure_months".into(), "arpu_7d".into()];
        let err = parse_xgboost(ok_model().as_bytes(), Some(&wrong), &resolve).unwrap_err();
        assert!(err.to_string().contains("feature_names[1]"), "{err}");
    }

    #[test]
    fn refuses_unknown_features_by_name() {
        let m = model(
            "5E-1",
            "",
            r#"["tenure_days","arpu_30d","nps"]"#,
            "binary:logistic",
        )
        .replace(
            r#""num_feature":"2","num_target""#,
            r#""num_feature":"3","num_target""#,
        );
        let err = parse_xgboost(m.as_bytes(), None, &resolve).unwrap_err();
        assert_eq!(
            err,
            TreeLoadError::UnknownFeatures(vec!["tenure_days".into(), "nps".into()])
        );
        assert!(err.to_string().contains("tenure_days, nps"));
    }

    #[test]
    fn refuses_categorical_split() {
        let m = model(
            "5E-1",
            r#""split_type":[1,0,0],"#,
            r#"["tenure_months","arpu_30d"]"#,
            "binary:logistic",
        );
        let err = parse_xgboost(m.as_bytes(), None, &resolve).unwrap_err();
        assert_eq!(
            err.to_string(),
            "trees[0].split_type[0]: not supported: categorical splits"
        );
    }

    #[test]
    fn refuses_multiclass_and_other_objectives_and_boosters() {
        let m = model(
            "5E-1",
            "",
            r#"["tenure_months","arpu_30d"]"#,
            "multi:softprob",
        )
        .replace(r#""num_class":"0""#, r#""num_class":"3""#);
        let err = parse_xgboost(m.as_bytes(), None, &resolve).unwrap_err();
        assert!(err.to_string().contains("multi:softprob"), "{err}");
        let m = ok_model().replace(r#""num_class":"0""#, r#""num_class":"3""#);
        let err = parse_xgboost(m.as_bytes(), None, &resolve).unwrap_err();
        assert!(err.to_string().contains("multiclass"), "{err}");
        let m = ok_model().replace(r#""tree_info":[0]"#, r#""tree_info":[1]"#);
        assert!(parse_xgboost(m.as_bytes(), None, &resolve).is_err());
        let m = ok_model().replace(r#""name":"gbtree""#, r#""name":"dart""#);
        let err = parse_xgboost(m.as_bytes(), None, &resolve).unwrap_err();
        assert!(err.to_string().contains("dart"), "{err}");
        let m = ok_model().replace(r#""num_target":"1""#, r#""num_target":"2""#);
        assert!(parse_xgboost(m.as_bytes(), None, &resolve).is_err());
    }

    #[test]
    fn refuses_bad_structure_with_location() {
        let m = ok_model().replace(
            r#""right_children":[2,-1,-1]"#,
            r#""right_children":[7,-1,-1]"#,
        );
        let err = parse_xgboost(m.as_bytes(), None, &resolve).unwrap_err();
        assert_eq!(
            err.to_string(),
            "trees[0] node 0: right child 7 is out of range (3 nodes)"
        );
        let m = ok_model().replace(
            r#""split_conditions":[2E1,-1E0,1E0]"#,
            r#""split_conditions":[2E1,-1E0]"#,
        );
        let err = parse_xgboost(m.as_bytes(), None, &resolve).unwrap_err();
        assert_eq!(
            err.to_string(),
            "trees[0].split_conditions: length 2, expected 3"
        );
        let err = parse_xgboost(b"{\"learner\":", None, &resolve).unwrap_err();
        assert!(matches!(err, TreeLoadError::Format { .. }));
    }
}
