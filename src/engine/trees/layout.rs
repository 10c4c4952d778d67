//! The two runtime layouts of an ensemble and their walks; what a split compares.
//!
//! Owns: flattening a validated [`RawTree`] into linked nodes ([`flatten_tree`]), the
//! *perfect* layout built from them ([`Perfect`]), and the walks of both. Must not: allocate or
//! panic on a walk (every index was proven in range when the layout was built), or know file
//! syntax.
//!
//! **Perfect** (chosen when the trees are shallow enough that padding costs little, as
//! XGBoost's depth-limited trees are): every tree padded to the ensemble's depth `D`, without
//! child pointers; a leaf above depth `D` becomes pad splits whose every descendant leaf holds
//! its value, so where a pad sends a value does not matter. Splits are stored in blocks of
//! three levels, each breadth-first (children of `j` at `2j + 1` and `2j + 2`) in 8 slots
//! aligned to a cache line: the top block, then the 8 blocks below it, and so on, so a path
//! through a depth-6 tree reads two lines of splits (breadth-first over the whole tree, it
//! read four or five). A split is 8 bytes for XGBoost (f32 threshold and the input's slot) and
//! 16 for LightGBM (f64 threshold), leaves sit in a side array, and a walk is `D` steps of
//! `j = 2j + 1 + (x > t)` with no branch. Measured on a 100-tree depth-6 XGBoost ensemble
//! against 16-byte linked nodes and against plain breadth-first order: see BENCHMARKS.md.
//!
//! **Linked** (the fallback for deep or lopsided trees, as LightGBM's leaf-wise trees are):
//! 16-byte nodes depth-first, a split's first child right after it, a leaf stepping to itself.
//!
//! Both walk [`LANES`] trees in lock-step so their dependent loads overlap, and hand leaves
//! over in tree order so sums round as the library's do.
//!
//! **One comparison a split.** (Infinite inputs, which no snapshot holds, may go the other
//! way at an infinite threshold; every finite input and NaN go as in the library.) Every split of either library is restated, when built, as
//! "the *first* child unless `y > t`", with `y` one of the ensemble's gathered inputs (`xs`,
//! read from the row once per predict) and `t` an adjusted threshold (see [`SplitRule`]): the
//! first child is the one a missing value takes, so NaN (which compares false) needs no test;
//! when that is the right child the split is mirrored and reads the negated input; XGBoost's
//! `x < t` becomes `!(x > next_down(t))`; LightGBM's zero-as-missing reads an input where zero
//! is NaN, and its missing-type None one where NaN is zero. A step is then one load, one
//! compare and an add, with no flags to test.

use super::{MissingType, RawNode, RawTree, TreeLoadError, MAX_NODES_PER_TREE};

/// Flag of a linked node that is a leaf.
pub(super) const LEAF: u8 = 1;

/// Trees walked together.
pub(super) const LANES: usize = 8;

/// Deepest ensemble given the perfect layout (2^10 leaves a tree).
const MAX_PERFECT_DEPTH: u32 = 10;

/// A node of the linked layout; 16 bytes, children as absolute indices into the same array.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Node {
    /// Adjusted threshold (the first child unless `input > value`), or the leaf value when
    /// `flags & LEAF`.
    pub value: f64,
    /// The second child; a split's first child is the next node (depth-first, first child
    /// first), and a leaf's second is itself.
    pub right: u32,
    /// The gathered input the split reads (0 for a leaf).
    pub column: u16,
    pub flags: u8,
}

/// A split of the perfect layout: 8 bytes with an f32 threshold, 16 with an f64.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(super) struct Split<T> {
    /// Adjusted threshold: the first child unless `input > threshold`.
    pub threshold: T,
    /// Index into the gathered inputs.
    pub slot: u16,
}

/// How a split reads its column: the transforms of [`SplitRule::input`].
pub(super) mod read {
    /// The value as it is.
    pub const PLAIN: u8 = 0;
    /// The value negated (a mirrored split).
    pub const NEGATED: u8 = 1;
    /// NaN read as 0.0 (LightGBM's missing type None).
    pub const NAN_AS_ZERO: u8 = 2;
    /// 0.0 read as NaN (LightGBM's missing type Zero: zero goes where missing goes).
    pub const ZERO_AS_NAN: u8 = 3;
    /// 0.0 read as NaN, then negated (a mirrored zero-as-missing split).
    pub const ZERO_AS_NAN_NEGATED: u8 = 4;
}

/// A library's split restated as one comparison (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct SplitRule {
    /// The first child is the right one (the split reads a negated input).
    pub mirrored: bool,
    /// Which transform of the column the split reads (a [`read`] constant).
    pub input: u8,
    /// The first child unless `input > threshold`.
    pub threshold: f64,
}

impl SplitRule {
    /// XGBoost: left when `x < t` in f32, NaN to the default child. Unmirrored (default left):
    /// for f32 `x`, `x < t` is `!(x > next_down(t))`. Mirrored (default right): right when
    /// `x >= t`, which is `!(-x > -t)`.
    pub fn xgboost(threshold: f64, default_left: bool) -> Self {
        let t = threshold as f32;
        if default_left {
            Self {
                mirrored: false,
                input: read::PLAIN,
                threshold: f64::from(t.next_down()),
            }
        } else {
            Self {
                mirrored: true,
                input: read::NEGATED,
                threshold: f64::from(-t),
            }
        }
    }

    /// LightGBM's `NumericalDecision`, fed as its dense-matrix predict path feeds it:
    /// ```text
    /// if isnan(x) && missing != NaN { x = 0 }
    /// if (missing == Zero && IsZero(x)) || (missing == NaN && isnan(x)) { return default_left }
    /// return x <= threshold
    /// ```
    /// Unmirrored: left when `!(x > t)`. Mirrored (missing values go right): right when
    /// `x > t`, which for f64 `x` is `!(-x > next_down(-t))`.
    pub fn lightgbm(threshold: f64, default_left: bool, missing: MissingType) -> Self {
        let (input, can_mirror) = match missing {
            MissingType::None => (read::NAN_AS_ZERO, false),
            MissingType::NaN => (read::PLAIN, true),
            MissingType::Zero => (read::ZERO_AS_NAN, true),
        };
        if default_left || !can_mirror {
            return Self {
                mirrored: false,
                input,
                threshold,
            };
        }
        Self {
            mirrored: true,
            input: if input == read::ZERO_AS_NAN {
                read::ZERO_AS_NAN_NEGATED
            } else {
                read::NEGATED
            },
            threshold: (-threshold).next_down(),
        }
    }
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
        greater: impl Fn(X, f64) -> bool,
        mut add: impl FnMut(f64),
    ) {
        let step = |i: usize| {
            let n = &self.nodes[i];
            // A split's first child follows it; both "children" of a leaf are itself.
            let first = i + (n.flags & LEAF == 0) as usize;
            std::hint::select_unpredictable(
                greater(xs[usize::from(n.column)], n.value),
                n.right as usize,
                first,
            )
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

/// Levels of a tree per block of the perfect layout: 7 splits and a pad slot, one cache line
/// of 8-byte splits.
const BLOCK_LEVELS: u32 = 3;
/// Most block levels (`MAX_PERFECT_DEPTH` / `BLOCK_LEVELS`, rounded up).
const MAX_BLOCK_LEVELS: usize = 4;

/// The perfect layout: every tree padded to depth `depth`, its splits in blocks of three
/// levels (a top block, then one block per path below it, ...) so a root-to-leaf path of a
/// depth-6 tree reads two cache lines of splits and one of leaves; leaves apart.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Perfect<T, L> {
    /// `stride` slots per tree, tree after tree, from `origin` (which aligns them to 64
    /// bytes); block `q` of block level `k` of a tree starts at `offsets[k] + q << heights[k]`
    /// and holds its splits breadth-first.
    splits: Vec<Split<T>>,
    /// `2^depth` leaves per tree, tree after tree, left to right.
    leaves: Vec<L>,
    origin: usize,
    stride: usize,
    /// Levels of each block level (3, except a shallower last one).
    heights: [u32; MAX_BLOCK_LEVELS],
    offsets: [usize; MAX_BLOCK_LEVELS],
    block_levels: usize,
    depth: u32,
    n_trees: usize,
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
        let block_levels = depth.div_ceil(BLOCK_LEVELS) as usize;
        let (mut heights, mut offsets) = ([0; MAX_BLOCK_LEVELS], [0; MAX_BLOCK_LEVELS]);
        let mut stride = 0;
        for k in 0..block_levels {
            heights[k] = BLOCK_LEVELS.min(depth - k as u32 * BLOCK_LEVELS);
            offsets[k] = stride;
            // 8^k blocks of 2^height slots (the last one of each unused).
            stride += (1 << (BLOCK_LEVELS as usize * k)) << heights[k];
        }
        // Where breadth-first position `pos` at depth `d` lives in a tree's slots.
        let slot_of = |pos: usize, d: u32| {
            let (k, r) = ((d / BLOCK_LEVELS) as usize, d % BLOCK_LEVELS);
            let in_level = pos + 1 - (1 << d);
            let block = in_level >> r;
            offsets[k] + (block << heights[k]) + (1 << r) - 1 + (in_level & ((1 << r) - 1))
        };
        let line = 64 / std::mem::size_of::<Split<T>>().max(1);
        let mut splits = vec![Split::default(); n_trees * stride + line];
        let misaligned = (splits.as_ptr() as usize) % 64;
        let size = std::mem::size_of::<Split<T>>();
        let origin = if misaligned.is_multiple_of(size) {
            ((64 - misaligned) % 64) / size
        } else {
            0
        };
        let mut leaves = Vec::with_capacity(n_trees * (inner + 1));
        let mut stack = Vec::new();
        for (t, &root) in linked.roots.iter().enumerate() {
            let base = leaves.len();
            leaves.resize(base + inner + 1, leaf(0.0));
            let tree_splits = &mut splits[origin + t * stride..origin + (t + 1) * stride];
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
                    tree_splits[slot_of(pos, d)] = Split {
                        threshold: threshold(n.value),
                        slot: n.column,
                    };
                    stack.push((n.right as usize, 2 * pos + 2, d + 1));
                    stack.push((i + 1, 2 * pos + 1, d + 1));
                }
            }
        }
        Some(Self {
            splits,
            leaves,
            origin,
            stride,
            heights,
            offsets,
            block_levels,
            depth,
            n_trees,
        })
    }

    /// Calls `add` with each tree's leaf value, in tree order: [`LANES`] trees at a time,
    /// `depth` branch-free steps each.
    #[inline(always)]
    pub fn for_each_leaf(&self, xs: &[T], mut add: impl FnMut(L))
    where
        T: PartialOrd,
    {
        let n_leaves = 1_usize << self.depth;
        if self.depth == 0 {
            // Every tree is one leaf.
            self.leaves.iter().for_each(|&v| add(v));
            return;
        }
        let splits = &self.splits[self.origin..];
        // One tree from its first slot: the leaf's index among the tree's leaves.
        let walk_block = |tree: usize, k: usize, q: usize| {
            let block = &splits[tree + self.offsets[k] + (q << self.heights[k])..];
            let mut j = 0;
            for _ in 0..self.heights[k] {
                let s = block[j];
                j = 2 * j + 1 + usize::from(xs[usize::from(s.slot)] > s.threshold);
            }
            (q << self.heights[k]) | (j + 1 - (1 << self.heights[k]))
        };
        let groups = self.n_trees / LANES;
        for g in 0..groups {
            let first = g * LANES;
            let mut q = [0_usize; LANES];
            for k in 0..self.block_levels {
                let h = self.heights[k];
                let mut at = [0_usize; LANES];
                let mut base = [0_usize; LANES];
                for (l, b) in base.iter_mut().enumerate() {
                    *b = (first + l) * self.stride + self.offsets[k] + (q[l] << h);
                }
                for _ in 0..h {
                    for (a, &b) in at.iter_mut().zip(&base) {
                        let s = splits[b + *a];
                        *a = 2 * *a + 1 + usize::from(xs[usize::from(s.slot)] > s.threshold);
                    }
                }
                for (qq, a) in q.iter_mut().zip(at) {
                    *qq = (*qq << h) | (a + 1 - (1 << h));
                }
            }
            for (l, leaf) in q.iter().enumerate() {
                add(self.leaves[(first + l) * n_leaves + leaf]);
            }
        }
        for t in groups * LANES..self.n_trees {
            let mut q = 0;
            for k in 0..self.block_levels {
                q = walk_block(t * self.stride, k, q);
            }
            add(self.leaves[t * n_leaves + q]);
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
///
/// `rule` restates each split as one comparison; `keys` gets, per node, the input it reads as
/// `snapshot column * 8 + read` (0 for leaves), for the caller to map to gathered slots.
pub(super) fn flatten_tree(
    tree: &RawTree,
    feature_columns: &[u32],
    rule: &dyn Fn(f64, bool, MissingType) -> SplitRule,
    out: &mut Vec<Node>,
    keys: &mut Vec<u32>,
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
        if let RawNode::Split {
            left,
            right,
            threshold,
            default_left,
            missing,
            ..
        } = tree.nodes[i as usize]
        {
            // Pushed second child first, so the first child is emitted right after the split.
            let children = if rule(threshold, default_left, missing).mirrored {
                [("left", left), ("right", right)]
            } else {
                [("right", right), ("left", left)]
            };
            for (side, child) in children {
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
    let columns_limit = u32::MAX / 8;
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
                keys.push(0);
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
                if column > columns_limit || column > u32::from(u16::MAX) {
                    return Err(TreeLoadError::format(
                        format!("{label} node {i}"),
                        format!("snapshot column {column} is beyond 65,535"),
                    ));
                }
                let r = rule(threshold, default_left, missing);
                let (first, second) = if r.mirrored {
                    (right, left)
                } else {
                    (left, right)
                };
                // Depth-first, first child first: the first child is the next node.
                debug_assert_eq!(s.map[first as usize], here + 1);
                keys.push(column * 8 + u32::from(r.input));
                Node {
                    value: r.threshold,
                    column: 0,
                    right: s.map[second as usize],
                    flags: 0,
                }
            }
        };
        out.push(node);
    }
    Ok(depth)
}
