//! Tree ensembles in their runtime form: one flat node array scored without allocating.
//!
//! Owns: the flattened layout ([`TreeEnsemble`]), the exact split semantics of each library
//! ([`Flavor`]), structural validation of trees handed in by the parsers ([`RawTree`]), and the
//! load error type ([`TreeLoadError`]). Must not: read files, know model-file syntax, look up
//! feature names (beyond handing them to the caller's resolver), or allocate / panic on the
//! scoring path. Parsers in `model::xgboost` and `model::lightgbm` translate files into
//! [`RawTree`]s; everything structural is checked here once, so `predict` walks unchecked
//! paths only in the sense that every index it follows was proven in range at build time.
//!
//! Scoring walks [`LANES`] trees in lock-step with branch-free turns (a leaf steps to itself),
//! and adds leaf values in tree order so the sum rounds exactly as the library's does.

/// Most nodes one tree may hold (parsers refuse larger trees before building).
pub const MAX_NODES_PER_TREE: usize = 100_000;
/// Most trees one ensemble may hold.
pub const MAX_TREES: usize = 10_000;

/// LightGBM's `kZeroThreshold` (`const double kZeroThreshold = 1e-35f;`): a float literal
/// widened to double, so it is `1.0000000180025095e-35`, not the double `1e-35`.
pub const LIGHTGBM_ZERO_THRESHOLD: f64 = 1e-35_f32 as f64;

/// Why a tree model could not be loaded; every variant names where, so a bad model is fixable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TreeLoadError {
    /// The file is malformed or structurally inconsistent at `location`.
    #[error("{location}: {message}")]
    Format {
        /// Where, e.g. `trees[3].split_conditions` or `Tree=4: left_child`.
        location: String,
        /// What is wrong there.
        message: String,
    },
    /// The file is well formed but uses something this scorer deliberately does not implement.
    #[error("{location}: not supported: {what}")]
    Unsupported {
        /// Where, e.g. `learner.objective.name` or `Tree=4: decision_type`.
        location: String,
        /// The feature refused, e.g. `categorical splits`.
        what: String,
    },
    /// Model features the snapshot does not have, all of them, by name.
    #[error("model features not found in the feature snapshot: {}", .0.join(", "))]
    UnknownFeatures(Vec<String>),
}

impl TreeLoadError {
    /// Shorthand for a [`TreeLoadError::Format`] fault.
    pub fn format(location: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Format {
            location: location.into(),
            message: message.into(),
        }
    }

    /// Shorthand for a [`TreeLoadError::Unsupported`] refusal.
    pub fn unsupported(location: impl Into<String>, what: impl Into<String>) -> Self {
        Self::Unsupported {
            location: location.into(),
            what: what.into(),
        }
    }
}

/// How a split treats a missing value (LightGBM's `decision_type` bits 2-3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingType {
    /// No missing handling: NaN is scored as 0.0 and compared like any value.
    None,
    /// Zero (and NaN, read as zero) take the default direction.
    Zero,
    /// NaN takes the default direction (XGBoost's only mode).
    NaN,
}

/// Whose arithmetic the ensemble reproduces; the two libraries differ in every step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Flavor {
    /// XGBoost: left when `x < t` in f32, NaN to `default_left`; leaves summed in f32 after the
    /// base margin, then XGBoost's f32 sigmoid.
    XgBoost,
    /// LightGBM: left when `x <= t` in f64 with the `decision_type` missing rules; leaves summed
    /// in f64; probability `1 / (1 + exp(-sigmoid * margin))`.
    LightGbm {
        /// The objective's `sigmoid:` parameter.
        sigmoid: f64,
    },
}

/// One node as a parser hands it over: indices local to its tree, features as model indices.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RawNode {
    /// A leaf and the value it adds to the margin.
    Leaf {
        /// Leaf output, learning rate already applied.
        value: f64,
    },
    /// A numeric split.
    Split {
        /// Model feature index (position in the model's feature list).
        feature: u32,
        /// Split threshold as the library stores it (an f32 value for XGBoost).
        threshold: f64,
        /// Local index of the child taken when the comparison holds.
        left: u32,
        /// Local index of the other child.
        right: u32,
        /// Direction a missing value takes.
        default_left: bool,
        /// Which values count as missing.
        missing: MissingType,
    },
}

/// One tree as a parser hands it over, before validation and flattening.
#[derive(Debug, Clone, PartialEq)]
pub struct RawTree {
    /// Where the tree is in its file, for messages (`trees[3]`, `Tree=3`).
    pub label: String,
    /// Nodes; the root is node 0.
    pub nodes: Vec<RawNode>,
    /// How many nodes may be unreachable from the root (XGBoost keeps pruned nodes).
    pub allowed_unreachable: usize,
}

// Node flags. The missing type is not stored as such: `flatten_tree` turns it into where a
// NaN goes and whether zero goes the default way, which is all the walk needs.
const LEAF: u8 = 1;
/// The node's default direction (`default_left`).
const DEFAULT_LEFT: u8 = 2;
/// A NaN goes left: `default_left` for missing types NaN and Zero, `0.0 <= threshold` for None.
const NAN_LEFT: u8 = 4;
/// Zero (after LightGBM's tiny-value snap) takes the default direction: missing type Zero.
const ZERO_TO_DEFAULT: u8 = 8;

/// A node of the flat array; 24 bytes, children as absolute indices into the same array.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Node {
    /// Split threshold, or the leaf value when `flags & LEAF`.
    value: f64,
    /// The right child; a split's left child is the next node (depth-first, left first), and
    /// a leaf's right is itself. 16 bytes a node, not 24: the working set of an ensemble is
    /// what a decision over many of them pays for in cache misses.
    right: u32,
    /// Snapshot column read by the split (snapshots have at most 4,096 columns).
    column: u16,
    flags: u8,
}

/// A flattened tree ensemble: features already mapped to snapshot columns.
#[derive(Debug, Clone, PartialEq)]
pub struct TreeEnsemble {
    flavor: Flavor,
    /// Added before the first tree (XGBoost's logit(base_score); 0 for LightGBM).
    base_margin: f64,
    /// Every tree's nodes, each tree in depth-first order (left child right after its parent).
    nodes: Vec<Node>,
    /// Index of each tree's root in `nodes`.
    roots: Vec<u32>,
    /// Per group of [`LANES`] consecutive trees, the deepest leaf's depth (steps to walk).
    lane_depths: Vec<u32>,
    /// Distinct snapshot columns the splits read, ascending.
    columns: Vec<u32>,
}

impl TreeEnsemble {
    /// Validates parser output and flattens it; the one way to build an ensemble.
    ///
    /// `feature_columns[i]` is the snapshot column of model feature `i`. Checks: tree and node
    /// limits, child indices in range, every reachable node reached once (no cycles, no shared
    /// children), no more unreachable nodes than allowed, features in range, finite numbers.
    pub fn build(
        flavor: Flavor,
        base_margin: f64,
        trees: &[RawTree],
        feature_columns: &[u32],
    ) -> Result<Self, TreeLoadError> {
        if trees.is_empty() {
            return Err(TreeLoadError::format("model", "no trees"));
        }
        if trees.len() > MAX_TREES {
            return Err(TreeLoadError::format(
                "model",
                format!("{} trees, at most {MAX_TREES} are allowed", trees.len()),
            ));
        }
        if !base_margin.is_finite() {
            return Err(TreeLoadError::format(
                "model",
                format!("base margin {base_margin} is not finite"),
            ));
        }
        if let Flavor::LightGbm { sigmoid } = flavor {
            if !(sigmoid.is_finite() && sigmoid > 0.0) {
                return Err(TreeLoadError::format(
                    "objective",
                    format!("sigmoid {sigmoid} must be finite and > 0"),
                ));
            }
        }
        let total: usize = trees.iter().map(|t| t.nodes.len()).sum();
        let mut nodes = Vec::with_capacity(total);
        let mut roots = Vec::with_capacity(trees.len());
        let mut order = Vec::new();
        let mut stack = Vec::new();
        let mut seen = Vec::new();
        let mut local_to_flat = Vec::new();
        let mut depths = Vec::with_capacity(trees.len());
        for tree in trees {
            roots.push(to_u32(nodes.len(), &tree.label)?);
            depths.push(flatten_tree(
                tree,
                feature_columns,
                &mut nodes,
                Scratch {
                    order: &mut order,
                    stack: &mut stack,
                    seen: &mut seen,
                    map: &mut local_to_flat,
                },
            )?);
        }
        check_margin_range(flavor, base_margin, &nodes, &roots)?;
        let lane_depths = depths
            .chunks_exact(LANES)
            .map(|c| c.iter().copied().max().unwrap_or(0))
            .collect();
        let mut columns: Vec<u32> = nodes
            .iter()
            .filter(|n| n.flags & LEAF == 0)
            .map(|n| u32::from(n.column))
            .collect();
        columns.sort_unstable();
        columns.dedup();
        Ok(Self {
            flavor,
            base_margin,
            nodes,
            roots,
            lane_depths,
            columns,
        })
    }

    /// Probability for one customer's row (NaN = missing), as the library's predict gives it.
    pub fn predict(&self, row: &[f32]) -> f64 {
        match self.flavor {
            Flavor::XgBoost => f64::from(xgboost_sigmoid(self.margin_xgboost(row))),
            Flavor::LightGbm { sigmoid } => {
                1.0 / (1.0 + (-sigmoid * self.margin_lightgbm(row)).exp())
            }
        }
    }

    /// Raw margin (sum of leaves + base margin) before the sigmoid.
    pub fn margin(&self, row: &[f32]) -> f64 {
        match self.flavor {
            Flavor::XgBoost => f64::from(self.margin_xgboost(row)),
            Flavor::LightGbm { .. } => self.margin_lightgbm(row),
        }
    }

    /// Number of trees, for validation messages and benches.
    pub fn n_trees(&self) -> usize {
        self.roots.len()
    }

    /// Number of reachable nodes kept (leaves included), for memory accounting and benches.
    pub fn n_nodes(&self) -> usize {
        self.nodes.len()
    }

    /// Snapshot columns read, for validation messages and benches.
    pub fn columns(&self) -> &[u32] {
        &self.columns
    }

    /// Which library's semantics this ensemble reproduces, for explain output and tests.
    pub fn flavor(&self) -> Flavor {
        self.flavor
    }

    /// XGBoost's CPU predictor: f32 accumulator seeded with the base margin, trees in order.
    fn margin_xgboost(&self, row: &[f32]) -> f32 {
        let mut sum = self.base_margin as f32;
        self.for_each_leaf(row, xgboost_goes_left, |v| sum += v as f32);
        sum
    }

    /// LightGBM's `Tree::Predict` summed over trees in f64 (init score is folded into tree 0).
    fn margin_lightgbm(&self, row: &[f32]) -> f64 {
        let mut sum = 0.0_f64;
        self.for_each_leaf(row, lightgbm_goes_left, |v| sum += v);
        sum
    }

    /// Calls `add` with each tree's leaf value, in tree order (so sums round as the library's).
    ///
    /// Trees are walked [`LANES`] at a time for as many steps as the deepest of them (a leaf
    /// steps to itself), so the lanes' dependent loads overlap and there is no data-dependent
    /// branch; trees left over are walked one by one until their leaf.
    #[inline(always)]
    fn for_each_leaf(
        &self,
        row: &[f32],
        goes_left: impl Fn(&Node, f32) -> bool,
        mut add: impl FnMut(f64),
    ) {
        let step = |i: usize| {
            let n = &self.nodes[i];
            let x = row.get(n.column as usize).copied().unwrap_or(f32::NAN);
            // The turn is data-dependent: ask for a conditional move, not a branch.
            // A split's left child follows it; a leaf "goes left" to itself.
            let left = i + (n.flags & LEAF == 0) as usize;
            std::hint::select_unpredictable(goes_left(n, x), left, n.right as usize)
        };
        let mut chunks = self.roots.chunks_exact(LANES);
        for (chunk, &depth) in (&mut chunks).zip(&self.lane_depths) {
            let mut at = [0_usize; LANES];
            for (a, &r) in at.iter_mut().zip(chunk) {
                *a = r as usize;
            }
            for _ in 0..depth {
                for a in at.iter_mut() {
                    *a = step(*a);
                }
            }
            for a in at {
                add(self.nodes[a].value);
            }
        }
        for &root in chunks.remainder() {
            let mut i = root as usize;
            while self.nodes[i].flags & LEAF == 0 {
                i = step(i);
            }
            add(self.nodes[i].value);
        }
    }
}

/// Refuses an ensemble whose margin could overflow the type it is summed in (f32 for XGBoost,
/// f64 for LightGBM), so `margin` is finite for every row: `|base margin|` plus each tree's
/// largest `|leaf|` must stay within half the type's range (the rest absorbs rounding). No
/// trainer writes such leaves (they are a few units at most); a crafted file could, and the
/// sum would reach +-inf and saturate the probability, as in the library itself.
fn check_margin_range(
    flavor: Flavor,
    base_margin: f64,
    nodes: &[Node],
    roots: &[u32],
) -> Result<(), TreeLoadError> {
    let (limit, summed_in) = match flavor {
        Flavor::XgBoost => (f64::from(f32::MAX) / 2.0, "f32"),
        Flavor::LightGbm { .. } => (f64::MAX / 2.0, "f64"),
    };
    let mut bound = base_margin.abs();
    for (k, &root) in roots.iter().enumerate() {
        let end = roots.get(k + 1).map_or(nodes.len(), |&r| r as usize);
        let largest = nodes[root as usize..end]
            .iter()
            .filter(|n| n.flags & LEAF != 0)
            .map(|n| n.value.abs())
            .fold(0.0, f64::max);
        bound += largest;
    }
    if bound > limit {
        return Err(TreeLoadError::format(
            "model",
            format!(
                "leaf values can add up to {bound:e} (or overflow), beyond what the margin is \
                 summed in ({summed_in}, at most {limit:e} here)"
            ),
        ));
    }
    Ok(())
}

/// Trees walked together by [`TreeEnsemble::for_each_leaf`].
const LANES: usize = 8;

/// XGBoost's split: `x < split_condition` in f32, NaN to the default child.
#[inline(always)]
fn xgboost_goes_left(n: &Node, x: f32) -> bool {
    // `value` holds an f32 exactly, so this is XGBoost's float comparison. `x < t` is false
    // and `!(x >= t)` true for NaN, which routes NaN by NAN_LEFT (= default_left) untested.
    let t = n.value as f32;
    #[allow(clippy::neg_cmp_op_on_partial_ord)]
    std::hint::select_unpredictable(n.flags & NAN_LEFT != 0, !(x >= t), x < t)
}

/// Maps every model feature name to its snapshot column, reporting all unknown names at once.
pub fn resolve_columns(
    names: &[String],
    resolve: &dyn Fn(&str) -> Option<u32>,
) -> Result<Vec<u32>, TreeLoadError> {
    let mut columns = Vec::with_capacity(names.len());
    let mut unknown = Vec::new();
    for name in names {
        match resolve(name) {
            Some(c) => columns.push(c),
            None => unknown.push(name.clone()),
        }
    }
    if unknown.is_empty() {
        Ok(columns)
    } else {
        Err(TreeLoadError::UnknownFeatures(unknown))
    }
}

/// LightGBM's `NumericalDecision`, fed as its dense-matrix predict path feeds it:
/// ```text
/// if isnan(x) && missing != NaN { x = 0 }
/// if (missing == Zero && IsZero(x)) || (missing == NaN && isnan(x)) { return default_left }
/// return x <= threshold
/// ```
/// restated without branches using the per-node bits [`flatten_tree`] derives: where NaN goes
/// (`NAN_LEFT`) and whether zero goes the default way (`ZERO_TO_DEFAULT`).
#[inline(always)]
fn lightgbm_goes_left(n: &Node, raw: f32) -> bool {
    let raw = f64::from(raw);
    // The dense-row predict path keeps only `|x| > kZeroThreshold || isnan(x)`; what it drops
    // reads as 0.0 (so -0.0 and 1e-40 are exactly 0.0 there). After this, IsZero(x) is x == 0.
    let x = if raw.abs() <= LIGHTGBM_ZERO_THRESHOLD {
        0.0
    } else {
        raw
    };
    // `x <= t` is false and `!(x > t)` true for NaN, so NaN goes where NAN_LEFT says.
    #[allow(clippy::neg_cmp_op_on_partial_ord)]
    let compared =
        std::hint::select_unpredictable(n.flags & NAN_LEFT != 0, !(x > n.value), x <= n.value);
    let to_default = (n.flags & ZERO_TO_DEFAULT != 0) & (x == 0.0);
    std::hint::select_unpredictable(to_default, n.flags & DEFAULT_LEFT != 0, compared)
}

/// XGBoost's `common::Sigmoid(float)`, clamp and epsilon included.
#[inline]
fn xgboost_sigmoid(x: f32) -> f32 {
    const EPS: f32 = 1e-16;
    let x = (-x).min(88.7_f32);
    1.0_f32 / (x.exp() + 1.0_f32 + EPS)
}

/// Reusable buffers for [`flatten_tree`], so building a large ensemble allocates them once.
struct Scratch<'a> {
    order: &'a mut Vec<u32>,
    stack: &'a mut Vec<(u32, u32)>,
    seen: &'a mut Vec<bool>,
    map: &'a mut Vec<u32>,
}

fn to_u32(n: usize, label: &str) -> Result<u32, TreeLoadError> {
    u32::try_from(n).map_err(|_| TreeLoadError::format(label, "too many nodes in the ensemble"))
}

/// Checks one tree, appends its reachable nodes to `out` in depth-first order, and returns its
/// depth (edges from the root to the deepest leaf).
fn flatten_tree(
    tree: &RawTree,
    feature_columns: &[u32],
    out: &mut Vec<Node>,
    s: Scratch<'_>,
) -> Result<u32, TreeLoadError> {
    let label = tree.label.as_str();
    let n = tree.nodes.len();
    if n == 0 {
        return Err(TreeLoadError::format(label, "tree has no nodes"));
    }
    if n > MAX_NODES_PER_TREE {
        return Err(TreeLoadError::format(
            label,
            format!("{n} nodes, at most {MAX_NODES_PER_TREE} are allowed per tree"),
        ));
    }
    // Pass 1: depth-first from the root, left first, each node at most once.
    s.order.clear();
    s.stack.clear();
    s.seen.clear();
    s.seen.resize(n, false);
    s.stack.push((0, 0));
    s.seen[0] = true;
    let mut depth = 0;
    while let Some((i, d)) = s.stack.pop() {
        s.order.push(i);
        depth = depth.max(d);
        if let RawNode::Split { left, right, .. } = tree.nodes[i as usize] {
            for (side, child) in [("right", right), ("left", left)] {
                let c = child as usize;
                if c >= n {
                    return Err(TreeLoadError::format(
                        format!("{label} node {i}"),
                        format!("{side} child {child} is out of range ({n} nodes)"),
                    ));
                }
                if s.seen[c] {
                    return Err(TreeLoadError::format(
                        format!("{label} node {i}"),
                        format!("{side} child {child} is reached twice (cycle or shared subtree)"),
                    ));
                }
                s.seen[c] = true;
                s.stack.push((child, d + 1));
            }
        }
    }
    let unreachable = n - s.order.len();
    if unreachable > tree.allowed_unreachable {
        return Err(TreeLoadError::format(
            label,
            format!(
                "{unreachable} nodes are unreachable from the root (at most {} allowed)",
                tree.allowed_unreachable
            ),
        ));
    }
    // Pass 2: emit in that order with absolute child indices.
    let base = out.len();
    s.map.clear();
    s.map.resize(n, u32::MAX);
    for (k, &i) in s.order.iter().enumerate() {
        s.map[i as usize] = to_u32(base + k, label)?;
    }
    for (k, &i) in s.order.iter().enumerate() {
        let here = to_u32(base + k, label)?;
        let node = match tree.nodes[i as usize] {
            RawNode::Leaf { value } => {
                if !value.is_finite() {
                    return Err(TreeLoadError::format(
                        format!("{label} node {i}"),
                        format!("leaf value {value} is not finite"),
                    ));
                }
                // A leaf steps to itself, so lanes of unequal depth can walk in step.
                Node {
                    value,
                    column: 0,
                    right: here,
                    flags: LEAF,
                }
            }
            RawNode::Split {
                feature,
                threshold,
                left,
                right,
                default_left,
                missing,
            } => {
                // LightGBM writes `inf` for a split whose right side holds only the last bin;
                // an infinite threshold compares as it should, only NaN is meaningless.
                if threshold.is_nan() {
                    return Err(TreeLoadError::format(
                        format!("{label} node {i}"),
                        "threshold is NaN",
                    ));
                }
                let Some(&column) = feature_columns.get(feature as usize) else {
                    return Err(TreeLoadError::format(
                        format!("{label} node {i}"),
                        format!(
                            "feature index {feature} is out of range ({} features)",
                            feature_columns.len()
                        ),
                    ));
                };
                let nan_left = match missing {
                    MissingType::None => 0.0 <= threshold,
                    MissingType::Zero | MissingType::NaN => default_left,
                };
                let mut flags = 0;
                for (set, bit) in [
                    (default_left, DEFAULT_LEFT),
                    (nan_left, NAN_LEFT),
                    (missing == MissingType::Zero, ZERO_TO_DEFAULT),
                ] {
                    if set {
                        flags |= bit;
                    }
                }
                // Depth-first, left first: the left child is the next node.
                debug_assert_eq!(s.map[left as usize], here + 1);
                let Ok(column) = u16::try_from(column) else {
                    return Err(TreeLoadError::format(
                        format!("{label} node {i}"),
                        format!("snapshot column {column} is beyond 65,535"),
                    ));
                };
                Node {
                    value: threshold,
                    column,
                    right: s.map[right as usize],
                    flags,
                }
            }
        };
        out.push(node);
    }
    Ok(depth)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(
        feature: u32,
        threshold: f64,
        left: u32,
        right: u32,
        default_left: bool,
        missing: MissingType,
    ) -> RawNode {
        RawNode::Split {
            feature,
            threshold,
            left,
            right,
            default_left,
            missing,
        }
    }

    fn stump(
        flavor: Flavor,
        missing: MissingType,
        default_left: bool,
        threshold: f64,
    ) -> TreeEnsemble {
        let tree = RawTree {
            label: "t".into(),
            nodes: vec![
                split(0, threshold, 1, 2, default_left, missing),
                RawNode::Leaf { value: -1.0 },
                RawNode::Leaf { value: 1.0 },
            ],
            allowed_unreachable: 0,
        };
        TreeEnsemble::build(flavor, 0.0, &[tree], &[3]).expect("valid stump")
    }

    const LGB: Flavor = Flavor::LightGbm { sigmoid: 1.0 };

    #[test]
    fn xgboost_is_strict_less_than_and_nan_follows_default() {
        let e = stump(Flavor::XgBoost, MissingType::NaN, true, 0.5);
        let row = |x: f32| [0.0, 0.0, 0.0, x];
        assert_eq!(e.margin(&row(0.4)), -1.0);
        assert_eq!(e.margin(&row(0.5)), 1.0); // equal goes right
        assert_eq!(e.margin(&row(f32::NAN)), -1.0);
        assert_eq!(e.margin(&[0.0]), -1.0); // short row = missing
        let e = stump(Flavor::XgBoost, MissingType::NaN, false, 0.5);
        assert_eq!(e.margin(&row(f32::NAN)), 1.0);
        assert_eq!(e.columns(), &[3]);
    }

    #[test]
    fn lightgbm_missing_types() {
        let row = |x: f32| [0.0, 0.0, 0.0, x];
        // None: NaN reads as 0.0 and is compared; default_left is ignored.
        let e = stump(LGB, MissingType::None, false, 0.5);
        assert_eq!(e.margin(&row(f32::NAN)), -1.0);
        assert_eq!(e.margin(&row(0.5)), -1.0); // equal goes left
        let e = stump(LGB, MissingType::None, true, -0.5);
        assert_eq!(e.margin(&row(f32::NAN)), 1.0);
        // Zero: 0 and NaN go the default way, whatever the threshold says.
        let e = stump(LGB, MissingType::Zero, false, 0.5);
        assert_eq!(e.margin(&row(0.0)), 1.0);
        assert_eq!(e.margin(&row(f32::NAN)), 1.0);
        assert_eq!(e.margin(&row(1e-36)), 1.0);
        assert_eq!(e.margin(&row(0.25)), -1.0);
        // NaN: only NaN goes the default way; zero is compared.
        let e = stump(LGB, MissingType::NaN, false, 0.5);
        assert_eq!(e.margin(&row(f32::NAN)), 1.0);
        assert_eq!(e.margin(&row(0.0)), -1.0);
        assert_eq!(e.margin(&[]), 1.0); // out of range = NaN
                                        // Tiny values are read as exact 0.0, as LightGBM's dense predict path does.
        let e = stump(LGB, MissingType::None, false, -LIGHTGBM_ZERO_THRESHOLD);
        assert_eq!(e.margin(&row(-1e-35)), 1.0);
        assert_eq!(e.margin(&row(-1e-34)), -1.0);
    }

    #[test]
    fn refuses_bad_structure() {
        let leaf = RawNode::Leaf { value: 0.0 };
        let mk = |nodes: Vec<RawNode>| RawTree {
            label: "trees[0]".into(),
            nodes,
            allowed_unreachable: 0,
        };
        let bad_child = mk(vec![
            split(0, 1.0, 1, 5, false, MissingType::NaN),
            leaf,
            leaf,
        ]);
        let err = TreeEnsemble::build(Flavor::XgBoost, 0.0, &[bad_child], &[0]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "trees[0] node 0: right child 5 is out of range (3 nodes)"
        );
        let cycle = mk(vec![
            split(0, 1.0, 1, 2, false, MissingType::NaN),
            split(0, 1.0, 0, 2, false, MissingType::NaN),
            leaf,
        ]);
        let err = TreeEnsemble::build(Flavor::XgBoost, 0.0, &[cycle], &[0]).unwrap_err();
        assert!(err.to_string().contains("reached twice"), "{err}");
        let orphan = mk(vec![leaf, leaf]);
        let err = TreeEnsemble::build(Flavor::XgBoost, 0.0, &[orphan], &[0]).unwrap_err();
        assert!(err.to_string().contains("unreachable"), "{err}");
        let nan = mk(vec![RawNode::Leaf { value: f64::NAN }]);
        assert!(TreeEnsemble::build(Flavor::XgBoost, 0.0, &[nan], &[0]).is_err());
        let feat = mk(vec![
            split(7, 1.0, 1, 2, false, MissingType::NaN),
            leaf,
            leaf,
        ]);
        let err = TreeEnsemble::build(Flavor::XgBoost, 0.0, &[feat], &[0]).unwrap_err();
        assert!(err.to_string().contains("feature index 7"), "{err}");
        let big = mk(vec![leaf; MAX_NODES_PER_TREE + 1]);
        assert!(TreeEnsemble::build(Flavor::XgBoost, 0.0, &[big], &[0]).is_err());
    }

    #[test]
    fn refuses_leaves_whose_sum_overflows_the_margin() {
        let leaves = |v: f64| RawTree {
            label: "t".into(),
            nodes: vec![
                split(0, 0.5, 1, 2, true, MissingType::NaN),
                RawNode::Leaf { value: v },
                RawNode::Leaf { value: -v },
            ],
            allowed_unreachable: 0,
        };
        // A tree of leaves +-MAX / 4 is fine; two of +-MAX / 1.5 can sum past MAX.
        let quarter = f64::from(f32::MAX) / 4.0;
        assert!(TreeEnsemble::build(Flavor::XgBoost, 0.0, &[leaves(quarter)], &[0]).is_ok());
        let big = leaves(f64::from(f32::MAX) / 1.5);
        let err = TreeEnsemble::build(Flavor::XgBoost, 0.0, &[big.clone(), big], &[0]);
        assert!(err.unwrap_err().to_string().contains("summed in (f32"));
        let lgb = Flavor::LightGbm { sigmoid: 1.0 };
        assert!(TreeEnsemble::build(lgb, 0.0, &[leaves(f64::MAX / 4.0)], &[0]).is_ok());
        let f64_big = leaves(f64::MAX / 1.5);
        let err = TreeEnsemble::build(lgb, 0.0, &[f64_big.clone(), f64_big], &[0]);
        assert!(err.unwrap_err().to_string().contains("summed in (f64"));
    }

    #[test]
    fn flat_layout_is_depth_first() {
        let tree = RawTree {
            label: "t".into(),
            nodes: vec![
                split(0, 1.0, 2, 1, false, MissingType::NaN),
                RawNode::Leaf { value: 2.0 },
                RawNode::Leaf { value: 1.0 },
            ],
            allowed_unreachable: 0,
        };
        let e =
            TreeEnsemble::build(Flavor::XgBoost, 0.0, &[tree.clone(), tree], &[0]).expect("valid");
        assert_eq!((e.n_trees(), e.n_nodes()), (2, 6));
        assert_eq!(std::mem::size_of::<Node>(), 16);
        assert_eq!((e.nodes[0].right, e.nodes[3].right), (2, 5));
        assert_eq!(e.margin(&[0.0]), 2.0);
        assert_eq!(e.margin(&[1.0]), 4.0);
    }
}
