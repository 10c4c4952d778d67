//! Reads LightGBM's text model (`Booster.save_model("m.txt")`) into a [`TreeEnsemble`].
//!
//! Owns: the text format (header, `Tree=N` blocks, `end of trees`), the accepted subset
//! (objective `binary` with its `sigmoid:`, one tree per iteration, numeric non-linear trees),
//! `decision_type` decoding, and mapping `feature_names` to snapshot columns. Must not: score
//! anything, read files, or accept a model it cannot reproduce exactly (multiclass,
//! categorical splits, linear trees, `average_output` forests are refused by name). `leaf_value`
//! is used as written: LightGBM applies shrinkage to it before saving, and folds the initial
//! score (`boost_from_average`) into the first tree. Structural checks are left to
//! [`TreeEnsemble::build`].

use std::collections::HashMap;

use crate::engine::trees::{
    resolve_columns, Flavor, MissingType, RawNode, RawTree, TreeEnsemble, TreeLoadError,
    MAX_NODES_PER_TREE, MAX_TREES,
};

const CATEGORICAL_MASK: i8 = 1;
const DEFAULT_LEFT_MASK: i8 = 2;

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
    let mut lines = text.lines().map(|l| l.trim_end_matches('\r')).peekable();
    match lines.next() {
        Some("tree") => {}
        Some(first) if first.trim_start().starts_with('{') => return Err(TreeLoadError::format(
            "line 1",
            "not a LightGBM text model: it is JSON (an XGBoost model takes \"kind\": \"xgboost\")",
        )),
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
    let sigmoid = parse_objective(header.get("objective").copied())?;
    for key in ["num_class", "num_tree_per_iteration"] {
        let v = header.get(key).copied().unwrap_or("1");
        let n: usize = v.trim().parse().map_err(|_| {
            TreeLoadError::format(format!("header: {key}"), format!("not a count: {v:?}"))
        })?;
        if n != 1 {
            return Err(TreeLoadError::unsupported(
                format!("header: {key}"),
                format!("multiclass model ({key}={n})"),
            ));
        }
    }
    let names: Vec<String> = match header.get("feature_names") {
        Some(v) => v
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        None => return Err(TreeLoadError::format("header", "missing feature_names")),
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
        return Err(TreeLoadError::format(
            "model",
            "missing 'end of trees' (truncated file?)",
        ));
    }
    if let Some(n) = expected_trees {
        if n != trees.len() {
            return Err(TreeLoadError::format(
                "header: tree_sizes",
                format!("lists {n} trees, the file has {}", trees.len()),
            ));
        }
    }
    let columns = resolve_columns(&names, resolve)?;
    let ensemble = TreeEnsemble::build(Flavor::LightGbm { sigmoid }, 0.0, &trees, &columns)?;
    Ok((ensemble, names))
}

/// `objective=binary sigmoid:1` → the sigmoid scale; anything else is refused.
fn parse_objective(v: Option<&str>) -> Result<f64, TreeLoadError> {
    const LOC: &str = "header: objective";
    let v = v.ok_or_else(|| TreeLoadError::format("header", "missing objective"))?;
    let mut parts = v.split(' ').filter(|s| !s.is_empty());
    let name = parts.next().unwrap_or("");
    if name != "binary" {
        return Err(TreeLoadError::unsupported(
            LOC,
            format!("objective '{name}' (only binary)"),
        ));
    }
    let mut sigmoid = 1.0_f64;
    for p in parts {
        match p.split_once(':') {
            Some(("sigmoid", s)) => {
                sigmoid = s
                    .parse()
                    .map_err(|_| TreeLoadError::format(LOC, format!("bad sigmoid {s:?}")))?;
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
    Ok(sigmoid)
}

fn parse_tree(label: String, f: &HashMap<&str, &str>) -> Result<RawTree, TreeLoadError> {
    let field = |k: &str| {
        f.get(k)
            .copied()
            .ok_or_else(|| TreeLoadError::format(&label, format!("missing {k}")))
    };
    let num_leaves: usize = field("num_leaves")?
        .trim()
        .parse()
        .map_err(|_| TreeLoadError::format(format!("{label}: num_leaves"), "not a count"))?;
    if num_leaves == 0 || num_leaves > MAX_NODES_PER_TREE.div_ceil(2) {
        return Err(TreeLoadError::format(
            format!("{label}: num_leaves"),
            format!(
                "{num_leaves} leaves, expected 1..={}",
                MAX_NODES_PER_TREE.div_ceil(2)
            ),
        ));
    }
    if f.get("is_linear").is_some_and(|v| v.trim() != "0") {
        return Err(TreeLoadError::unsupported(
            format!("{label}: is_linear"),
            "linear trees",
        ));
    }
    if f.get("num_cat").is_some_and(|v| v.trim() != "0") {
        return Err(TreeLoadError::unsupported(
            format!("{label}: num_cat"),
            "categorical splits",
        ));
    }
    let n_internal = num_leaves - 1;
    let leaf_value: Vec<f64> = array(&label, "leaf_value", field("leaf_value")?, num_leaves)?;
    if n_internal == 0 {
        return Ok(RawTree {
            label,
            nodes: vec![RawNode::Leaf {
                value: leaf_value[0],
            }],
            allowed_unreachable: 0,
        });
    }
    let split_feature: Vec<u32> =
        array(&label, "split_feature", field("split_feature")?, n_internal)?;
    let threshold: Vec<f64> = array(&label, "threshold", field("threshold")?, n_internal)?;
    let decision_type: Vec<i8> =
        array(&label, "decision_type", field("decision_type")?, n_internal)?;
    let left_child: Vec<i32> = array(&label, "left_child", field("left_child")?, n_internal)?;
    let right_child: Vec<i32> = array(&label, "right_child", field("right_child")?, n_internal)?;

    // Internal nodes keep their indices; leaf k (written as ~k) becomes node n_internal + k.
    let child = |name: &str, i: usize, c: i32| -> Result<u32, TreeLoadError> {
        let local = if c >= 0 {
            let c = c as usize;
            (c < n_internal).then_some(c)
        } else {
            let leaf = (!c) as usize;
            (leaf < num_leaves).then_some(n_internal + leaf)
        };
        local.map(|v| v as u32).ok_or_else(|| {
            TreeLoadError::format(
                format!("{label}: {name}[{i}]"),
                format!("{c} is out of range ({n_internal} internal nodes, {num_leaves} leaves)"),
            )
        })
    };
    let mut nodes = Vec::with_capacity(n_internal + num_leaves);
    for i in 0..n_internal {
        let dt = decision_type[i];
        if dt & CATEGORICAL_MASK != 0 {
            return Err(TreeLoadError::unsupported(
                format!("{label}: decision_type"),
                "categorical splits",
            ));
        }
        let missing = match (dt >> 2) & 3 {
            0 => MissingType::None,
            1 => MissingType::Zero,
            2 => MissingType::NaN,
            _ => {
                return Err(TreeLoadError::format(
                    format!("{label}: decision_type[{i}]"),
                    format!("{dt} has missing type 3 (unknown)"),
                ))
            }
        };
        nodes.push(RawNode::Split {
            feature: split_feature[i],
            threshold: threshold[i],
            left: child("left_child", i, left_child[i])?,
            right: child("right_child", i, right_child[i])?,
            default_left: dt & DEFAULT_LEFT_MASK != 0,
            missing,
        });
    }
    nodes.extend(leaf_value.iter().map(|&value| RawNode::Leaf { value }));
    Ok(RawTree {
        label,
        nodes,
        allowed_unreachable: 0,
    })
}

/// A space-separated array of exactly `len` values.
fn array<T: std::str::FromStr>(
    label: &str,
    name: &str,
    v: &str,
    len: usize,
) -> Result<Vec<T>, TreeLoadError> {
    let out: Vec<T> = v
        .split(' ')
        .filter(|s| !s.is_empty())
        .enumerate()
        .map(|(i, s)| {
            s.parse().map_err(|_| {
                TreeLoadError::format(
                    format!("{label}: {name}[{i}]"),
                    format!("cannot read {s:?}"),
                )
            })
        })
        .collect::<Result<_, _>>()?;
    if out.len() != len {
        return Err(TreeLoadError::format(
            format!("{label}: {name}"),
            format!("length {}, expected {len}", out.len()),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_xgboost_file_says_it_is_json() {
        let json = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("models/device_upgrade_5g.xgb.json"),
        )
        .unwrap();
        let e = parse_lightgbm(&json, &|_| Some(0)).unwrap_err().to_string();
        assert!(
            e.contains("an XGBoost model takes \"kind\": \"xgboost\""),
            "{e}"
        );
    }

    fn resolve(name: &str) -> Option<u32> {
        ["tenure_months", "arpu_30d", "complaints_90d"]
            .iter()
            .position(|n| *n == name)
            .map(|i| i as u32)
    }

    /// Root: arpu_30d <= 20 (decision_type `dt0`); its right child: complaints_90d <= 0.5
    /// (Zero-missing, default right); plus a one-leaf tree adding 0.25.
    fn model(dt0: &str, objective: &str, num_class: &str) -> String {
        format!(
            "tree\nversion=v4\nnum_class={num_class}\nnum_tree_per_iteration=1\nlabel_index=0\nmax_feature_idx=2\n\
             objective={objective}\nfeature_names=tenure_months arpu_30d complaints_90d\n\
             feature_infos=[0:100] [0:50] [0:3]\ntree_sizes=300 200\n\n\
             Tree=0\nnum_leaves=3\nnum_cat=0\nsplit_feature=1 2\nsplit_gain=1 1\nthreshold=20.000000000000004 0.5\n\
             decision_type={dt0} 4\nleft_child=-1 -2\nright_child=1 -3\nleaf_value=-1 2 3\nleaf_weight=1 1 1\n\
             leaf_count=1 1 1\ninternal_value=0 0\ninternal_weight=1 1\ninternal_count=3 2\nis_linear=0\nshrinkage=0.1\n\n\n\
             Tree=1\nnum_leaves=1\nnum_cat=0\nsplit_feature=\nsplit_gain=\nthreshold=\ndecision_type=\nleft_child=\n\
             right_child=\nleaf_value=0.25\nleaf_weight=\nleaf_count=\ninternal_value=\ninternal_weight=\n\
             internal_count=\nis_linear=0\nshrinkage=1\n\n\nend of trees\n\nfeature_importances:\narpu_30d=1\n\n\
             parameters:\n[boosting: gbdt]\nend of parameters\n\npandas_categorical:null\n"
        )
    }

    #[test]
    fn missing_directions_follow_decision_type() {
        // dt 10 = NaN missing, default left.
        let e = parse_lightgbm(&model("10", "binary sigmoid:1", "1"), &resolve).expect("parses");
        assert_eq!((e.n_trees(), e.n_nodes()), (2, 6));
        assert_eq!(e.columns(), &[1, 2]);
        let m = |arpu: f32, compl: f32| e.margin(&[0.0, arpu, compl]);
        assert_eq!(m(20.0, 9.0), -1.0 + 0.25); // equal goes left
        assert_eq!(m(f32::NAN, 9.0), -1.0 + 0.25); // NaN → default left
        assert_eq!(m(25.0, 0.5), 2.0 + 0.25);
        assert_eq!(m(25.0, 0.0), 3.0 + 0.25); // Zero-missing: 0 → default right
        assert_eq!(m(25.0, f32::NAN), 3.0 + 0.25); // ... and NaN too
                                                   // dt 8 = NaN missing, default right.
        let e = parse_lightgbm(&model("8", "binary sigmoid:1", "1"), &resolve).expect("parses");
        assert_eq!(e.margin(&[0.0, f32::NAN, 9.0]), 3.0 + 0.25);
        // dt 2 = missing None (default_left ignored): NaN is scored as 0.0 <= 20 → left.
        let e = parse_lightgbm(&model("2", "binary sigmoid:1", "1"), &resolve).expect("parses");
        assert_eq!(e.margin(&[0.0, f32::NAN, 9.0]), -1.0 + 0.25);
        assert_eq!(e.margin(&[0.0]), -1.0 + 0.25); // short row: arpu missing → 0.0 → left
    }

    #[test]
    fn sigmoid_scale_applies() {
        let e = parse_lightgbm(&model("10", "binary sigmoid:0.5", "1"), &resolve).expect("parses");
        let p = e.predict(&[0.0, 25.0, 0.5]);
        assert!((p - 1.0 / (1.0 + (-0.5_f64 * 2.25).exp())).abs() < 1e-15);
    }

    #[test]
    fn refuses_categorical_split() {
        let err = parse_lightgbm(&model("9", "binary sigmoid:1", "1"), &resolve).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Tree=0: decision_type: not supported: categorical splits"
        );
        let text = model("10", "binary sigmoid:1", "1").replacen("num_cat=0", "num_cat=1", 1);
        assert!(parse_lightgbm(&text, &resolve).is_err());
    }

    #[test]
    fn refuses_multiclass_and_other_objectives() {
        let err =
            parse_lightgbm(&model("10", "multiclass num_class:3", "3"), &resolve).unwrap_err();
        assert!(matches!(err, TreeLoadError::Unsupported { .. }), "{err}");
        let err = parse_lightgbm(&model("10", "binary sigmoid:1", "3"), &resolve).unwrap_err();
        assert_eq!(
            err.to_string(),
            "header: num_class: not supported: multiclass model (num_class=3)"
        );
        let err = parse_lightgbm(&model("10", "regression", "1"), &resolve).unwrap_err();
        assert!(err.to_string().contains("regression"), "{err}");
        let text = model("10", "binary sigmoid:1", "1").replacen("is_linear=0", "is_linear=1", 1);
        let err = parse_lightgbm(&text, &resolve).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Tree=0: is_linear: not supported: linear trees"
        );
    }

    #[test]
    fn refuses_unknown_feature_by_name() {
        let text = model("10", "binary sigmoid:1", "1")
            .replace("tenure_months arpu_30d", "tenure_days arpu_30d");
        let err = parse_lightgbm(&text, &resolve).unwrap_err();
        assert_eq!(
            err,
            TreeLoadError::UnknownFeatures(vec!["tenure_days".into()])
        );
    }

    #[test]
    fn refuses_bad_structure_with_location() {
        let text =
            model("10", "binary sigmoid:1", "1").replace("right_child=1 -3", "right_child=5 -3");
        let err = parse_lightgbm(&text, &resolve).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Tree=0: right_child[0]: 5 is out of range (2 internal nodes, 3 leaves)"
        );
        let text =
            model("10", "binary sigmoid:1", "1").replace("left_child=-1 -2", "left_child=-1 -7");
        assert!(parse_lightgbm(&text, &resolve).is_err());
        // Both children of node 1 pointing at the same leaf leaves another leaf unreachable.
        let text =
            model("10", "binary sigmoid:1", "1").replace("right_child=1 -3", "right_child=1 -2");
        let err = parse_lightgbm(&text, &resolve).unwrap_err();
        assert!(err.to_string().contains("reached twice"), "{err}");
        let text = model("10", "binary sigmoid:1", "1")
            .replace("threshold=20.000000000000004 0.5", "threshold=20");
        let err = parse_lightgbm(&text, &resolve).unwrap_err();
        assert_eq!(err.to_string(), "Tree=0: threshold: length 1, expected 2");
        let text = model("10", "binary sigmoid:1", "1").replace("end of trees", "");
        assert!(parse_lightgbm(&text, &resolve).is_err());
    }
}
