//! The two runtime layouts of an ensemble and their walks; what a split compares.
//!
//! Owns: flattening a validated [`RawTree`] into linked nodes ([`flatten_tree`]), the
//! *perfect* layout built from them ([`Perfect`]), and the walks of both. Must not: allocate or
//! panic on a walk (every index was proven in range when the layout was built), or know file
//! syntax.
//!
//! **Perfect** (chosen when the trees are shallow enough that padding costs little, as
//! XGBoost's depth-limited trees are): every tree padded to the ensemble's depth `D` and stored
//! breadth-first without child pointers, children of `i` at `2i + 1` and `2i + 2`; a leaf above
//! depth `D` becomes pad splits whose every descendant leaf holds its value, so where a pad
//! sends a value does not matter. A split is 8 bytes for XGBoost (f32 threshold, the input's
//! slot, flags) and 16 for LightGBM (f64 threshold), leaves sit in a side array, and a walk is
//! `D` steps of `i = 2i + 2 - left` with no branch. Measured on a 100-tree depth-6 XGBoost
//! ensemble against 16-byte linked nodes: see BENCHMARKS.md.
//!
//! **Linked** (the fallback for deep or lopsided trees, as LightGBM's leaf-wise trees are):
//! 16-byte nodes depth-first, a split's left child right after it, a leaf stepping to itself.
//!
//! Both walk [`LANES`] trees in lock-step so their dependent loads overlap, and hand leaves
//! over in tree order so sums round as the library's do. Splits read the *gathered* input:
//! `xs[slot]`, the value of the ensemble's `slot`-th distinct column, fetched once per predict.

use super::{MissingType, RawNode, RawTree, TreeLoadError, MAX_NODES_PER_TREE};

// Node flags. The missing type is not stored as such: `flatten_tree` turns it into where a
// NaN goes and whether zero goes the default way, which is all the walk needs.
pub(super) const LEAF: u8 = 1;
/// The node's default direction (`default_left`).
pub(super) const DEFAULT_LEFT: u8 = 2;
/// A NaN goes left: `default_left` for missing types NaN and Zero, `0.0 <= threshold` for None.
pub(super) const NAN_LEFT: u8 = 4;
/// Zero (after LightGBM's tiny-value snap) takes the default direction: missing type Zero.
pub(super) const ZERO_TO_DEFAULT: u8 = 8;

/// Trees walked together.
pub(super) const LANES: usize = 8;

/// Deepest ensemble given the perfect layout (2^10 leaves a tree).
const MAX_PERFECT_DEPTH: u32 = 10;

/// A node of the linked layout; 16 bytes, children as absolute indices into the same array.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Node {
    /// Split threshold, or the leaf value when `flags & LEAF`.
    pub value: f64,
    /// The right child; a split's left child is the next node (depth-first, left first), and
    /// a leaf's right is itself.
    pub right: u32,
    /// Snapshot column while building; the input's slot (see the module doc) once built.
    pub column: u16,
    pub flags: u8,
}

/// A split of the perfect layout: 8 bytes with an f32 threshold, 16 with an f64.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(super) struct Split<T> {
    pub threshold: T,
    /// Index into the gathered input.
    pub slot: u16,
    pub flags: u8,
}

/// XGBoost's split: `x < split_condition` in f32, NaN to the default child.
#[inline(always)]
pub(super) fn xgboost_goes_left(t: f32, flags: u8, x: f32) -> bool {
    // `x < t` is false and `!(x >= t)` true for NaN, which routes NaN by NAN_LEFT
    // (= default_left) untested.
    #[allow(clippy::neg_cmp_op_on_partial_ord)]
    std::hint::select_unpredictable(flags & NAN_LEFT != 0, !(x >= t), x < t)
}

/// LightGBM's `NumericalDecision` on an input already snapped as its dense predict path snaps
/// it (`|x| <= kZeroThreshold` reads as 0.0, see `TreeEnsemble::predict`):
/// ```text
/// if isnan(x) && missing != NaN { x = 0 }
/// if (missing == Zero && IsZero(x)) || (missing == NaN && isnan(x)) { return default_left }
/// return x <= threshold
/// ```
/// restated without branches using the per-node bits [`flatten_tree`] derives: where NaN goes
/// (`NAN_LEFT`) and whether zero goes the default way (`ZERO_TO_DEFAULT`).
#[inline(always)]
pub(super) fn lightgbm_goes_left(t: f64, flags: u8, x: f64) -> bool {
    // `x <= t` is false and `!(x > t)` true for NaN, so NaN goes where NAN_LEFT says.
    #[allow(clippy::neg_cmp_op_on_partial_ord)]
    let compared = std::hint::select_unpredictable(flags & NAN_LEFT != 0, !(x > t), x <= t);
    let to_default = (flags & ZERO_TO_DEFAULT != 0) & (x == 0.0);
    std::hint::select_unpredictable(to_default, flags & DEFAULT_LEFT != 0, compared)
}

/// The linked layout: every tree's nodes depth-first, one array.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Linked {
    pub nodes: Vec<Node>,
    /// Index of each tree's root in `nodes`.
    pub roots: Vec<u32>,
    /// Per group of [`LANES`] consecutive trees, the deepest leaf's depth (steps to walk).
    pub lane_depths: Vec<u32>,
}

impl Linked {
    /// Calls `add` with each tree's leaf value, in tree order.
    ///
    /// Trees are walked [`LANES`] at a time for as many steps as the deepest of them (a leaf
    /// steps to itself); trees left over are walked one by one until their leaf.
    #[inline(always)]
    pub fn for_each_leaf<X: Copy>(
        &self,
        xs: &[X],
        goes_left: impl Fn(f64, u8, X) -> bool,
        mut add: impl FnMut(f64),
    ) {
        let step = |i: usize| {
            let n = &self.nodes[i];
            let x = xs[usize::from(n.column)];
            // A split's left child follows it; a leaf "goes left" to itself.
            let left = i + (n.flags & LEAF == 0) as usize;
            std::hint::select_unpredictable(goes_left(n.value, n.flags, x), left, n.right as usize)
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

/// The perfect layout: every tree padded to depth `depth`, splits breadth-first, leaves apart.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Perfect<T, L> {
    /// `2^depth - 1` splits per tree, tree after tree.
    pub splits: Vec<Split<T>>,
    /// `2^depth` leaves per tree, tree after tree.
    pub leaves: Vec<L>,
    pub depth: u32,
    pub n_trees: usize,
}

impl<T: Copy + Default, L: Copy> Perfect<T, L> {
    /// Pads the linked trees to their deepest depth, or `None` when that depth or the padding
    /// (more than `growth` times the linked nodes) is beyond what pays.
    pub fn from_linked(
        linked: &Linked,
        depth: u32,
        growth: usize,
        threshold: impl Fn(f64) -> T,
        leaf: impl Fn(f64) -> L,
    ) -> Option<Self> {
        if depth > MAX_PERFECT_DEPTH {
            return None;
        }
        let n_trees = linked.roots.len();
        let inner = (1_usize << depth) - 1;
        if n_trees * (2 * inner + 1) > growth.saturating_mul(linked.nodes.len()) {
            return None;
        }
        let mut splits = vec![Split::default(); n_trees * inner];
        let mut leaves = Vec::with_capacity(n_trees * (inner + 1));
        let mut stack = Vec::new();
        for (t, &root) in linked.roots.iter().enumerate() {
            let base = leaves.len();
            leaves.resize(base + inner + 1, leaf(0.0));
            let tree_splits = &mut splits[t * inner..(t + 1) * inner];
            // (linked index, breadth-first position, depth)
            stack.push((root as usize, 0_usize, 0_u32));
            while let Some((i, pos, d)) = stack.pop() {
                let n = linked.nodes[i];
                if n.flags & LEAF != 0 {
                    // Every leaf position under `pos` holds this value; pads above stay
                    // default (their direction cannot change the leaf reached).
                    let span = 1_usize << (depth - d);
                    let first = (pos + 1) * span - 1 - inner;
                    leaves[base + first..base + first + span].fill(leaf(n.value));
                } else {
                    tree_splits[pos] = Split {
                        threshold: threshold(n.value),
                        slot: n.column,
                        flags: n.flags,
                    };
                    stack.push((n.right as usize, 2 * pos + 2, d + 1));
                    stack.push((i + 1, 2 * pos + 1, d + 1));
                }
            }
        }
        Some(Self {
            splits,
            leaves,
            depth,
            n_trees,
        })
    }

    /// Calls `add` with each tree's leaf value, in tree order: [`LANES`] trees at a time,
    /// `depth` branch-free steps each.
    #[inline(always)]
    pub fn for_each_leaf<X: Copy>(
        &self,
        xs: &[X],
        goes_left: impl Fn(T, u8, X) -> bool,
        mut add: impl FnMut(L),
    ) {
        let inner = (1_usize << self.depth) - 1;
        let walk = |splits: &[Split<T>], at: &mut usize| {
            let s = splits[*at];
            *at =
                2 * *at + 2 - usize::from(goes_left(s.threshold, s.flags, xs[usize::from(s.slot)]));
        };
        let mut trees = self
            .splits
            .chunks_exact(inner.max(1))
            .zip(self.leaves.chunks_exact(inner + 1));
        if inner == 0 {
            // Every tree is one leaf.
            self.leaves.iter().for_each(|&v| add(v));
            return;
        }
        let groups = self.n_trees / LANES;
        for _ in 0..groups {
            let mut lane: [(&[Split<T>], &[L]); LANES] = [(&[], &[]); LANES];
            for l in lane.iter_mut() {
                *l = trees.next().unwrap_or((&[], &[]));
            }
            let mut at = [0_usize; LANES];
            for _ in 0..self.depth {
                for (a, (splits, _)) in at.iter_mut().zip(&lane) {
                    walk(splits, a);
                }
            }
            for (a, (_, leaves)) in at.iter().zip(&lane) {
                add(leaves[a - inner]);
            }
        }
        for (splits, leaves) in trees {
            let mut at = 0;
            for _ in 0..self.depth {
                walk(splits, &mut at);
            }
            add(leaves[at - inner]);
        }
    }

    /// Heap bytes held.
    pub fn bytes_held(&self) -> usize {
        self.splits.capacity() * std::mem::size_of::<Split<T>>()
            + self.leaves.capacity() * std::mem::size_of::<L>()
    }
}

/// Reusable buffers for [`flatten_tree`], so building a large ensemble allocates them once.
pub(super) struct Scratch<'a> {
    pub order: &'a mut Vec<u32>,
    pub stack: &'a mut Vec<(u32, u32)>,
    pub seen: &'a mut Vec<bool>,
    pub map: &'a mut Vec<u32>,
}

pub(super) fn to_u32(n: usize, label: &str) -> Result<u32, TreeLoadError> {
    u32::try_from(n).map_err(|_| TreeLoadError::format(label, "too many nodes in the ensemble"))
}

/// Checks one tree, appends its reachable nodes to `out` in depth-first order (with snapshot
/// columns), and returns its depth (edges from the root to the deepest leaf).
pub(super) fn flatten_tree(
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
