//! One tree of a LightGBM model text (`Tree=N` and its fields) read into a [`RawTree`]:
//! split features, thresholds, decision types with their categorical and default-left bits,
//! category bitsets, and leaf values.

use std::collections::HashMap;

use crate::engine::trees::{MissingType, RawNode, RawTree, TreeLoadError, MAX_NODES_PER_TREE};

const CATEGORICAL_MASK: i8 = 1;
const DEFAULT_LEFT_MASK: i8 = 2;

pub(super) fn parse_tree(label: String, f: &HashMap<&str, &str>) -> Result<RawTree, TreeLoadError> {
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
    let num_cat: usize = match f.get("num_cat") {
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| TreeLoadError::format(format!("{label}: num_cat"), "not a count"))?,
        None => 0,
    };
    let n_internal = num_leaves - 1;
    if num_cat > n_internal {
        return Err(TreeLoadError::format(
            format!("{label}: num_cat"),
            format!("{num_cat} categorical splits in {n_internal} splits"),
        ));
    }
    // Bitsets of the categorical splits: split `k`'s words are
    // `cat_threshold[cat_boundaries[k]..cat_boundaries[k + 1]]`.
    let (boundaries, words): (Vec<usize>, Vec<u32>) = if num_cat > 0 {
        let b: Vec<usize> = array(
            &label,
            "cat_boundaries",
            field("cat_boundaries")?,
            num_cat + 1,
        )?;
        let n_words = b.last().copied().unwrap_or(0);
        if b.windows(2).any(|w| w[1] < w[0]) || b.first() != Some(&0) || n_words > 1 << 16 {
            return Err(TreeLoadError::format(
                format!("{label}: cat_boundaries"),
                "offsets must rise from 0 (at most 65,536 words)",
            ));
        }
        let w: Vec<u32> = array(&label, "cat_threshold", field("cat_threshold")?, n_words)?;
        (b, w)
    } else {
        (Vec::new(), Vec::new())
    };
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
            // `CategoricalDecision`: the set goes left; NaN, negatives and the rest right.
            let k = threshold[i];
            let set = (k >= 0.0 && k.fract() == 0.0)
                .then_some(k as usize)
                .and_then(|k| Some(&words[*boundaries.get(k)?..*boundaries.get(k + 1)?]))
                .ok_or_else(|| {
                    TreeLoadError::format(
                        format!("{label}: threshold[{i}]"),
                        format!("{k} is not a categorical split of this tree ({num_cat})"),
                    )
                })?;
            let categories: Box<[u32]> = set
                .iter()
                .enumerate()
                .flat_map(|(w, bits)| {
                    (0..32u32)
                        .filter(move |b| bits >> b & 1 == 1)
                        .map(move |b| w as u32 * 32 + b)
                })
                .collect();
            nodes.push(RawNode::Categorical {
                feature: split_feature[i],
                categories,
                in_set: child("left_child", i, left_child[i])?,
                not_in_set: child("right_child", i, right_child[i])?,
                missing_in_set: false,
            });
            continue;
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
