//! The linked layout and its walk; what a split compares.
//!
//! Owns: flattening a validated [`RawTree`] into linked nodes ([`flatten_tree`]), the walk of
//! the linked layout, and the restating of each library's split as one comparison
//! ([`SplitRule`]), which the perfect layout (`perfect`) reads too. Must not: allocate or
//! panic on a walk (every index was proven in range when the layout was built), or know file
//! syntax.
//!
//! **Linked** (for deep or lopsided trees, as LightGBM's leaf-wise trees are, and the source
//! the perfect layout is padded from): 16-byte nodes depth-first, a split's first child right
//! after it, a leaf stepping to itself. [`LANES`] trees are walked in lock-step so their
//! dependent loads overlap, and leaves are handed over in tree order so sums round as the
//! library's do.
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

/// Flag of a linked node that is a categorical split: `value` holds its second-child mask
/// (see [`cat_second`]) in its bits, and it reads a category-code input ([`read::CODE`]).
pub(super) const CAT: u8 = 2;

/// Category codes a masked categorical split tests directly (0..30); code 30 stands for
/// every category outside them (invalid, or in no set), 31 for a missing value.
pub(super) const MASK_CODES: u32 = 30;
/// The code of a category outside the masks' range.
pub(super) const CODE_OTHER: u32 = 30;
/// The code of a missing value.
pub(super) const CODE_MISSING: u32 = 31;

/// Whether a masked categorical split sends the category code `code` (an integer 0..=31 held
/// as a float) to its second child: bit `code` of `mask`.
#[inline(always)]
pub(super) fn cat_second(code: f64, mask: u32) -> bool {
    (mask >> (code as u32 & 31)) & 1 == 1
}

/// Trees walked together.
pub(super) const LANES: usize = 8;

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
    /// The column's category code for masked categorical splits (0..30, 30 other, 31
    /// missing; see `categorical::Categorical::code_input`).
    pub const CODE: u8 = 5;
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

/// A categorical split as a masked one: the child a missing value takes comes first, and bit
/// `code` of `mask` is set when category code `code` goes to the second child.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct CatRule {
    pub first: u32,
    pub second: u32,
    pub mask: u32,
}

/// The linked layout: every tree's nodes depth-first, one array.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Linked {
    pub nodes: Vec<Node>,
    /// Index of each tree's root in `nodes`.
    pub roots: Vec<u32>,
    /// Per group of [`LANES`] consecutive trees, the deepest leaf's depth (steps to walk).
    pub lane_depths: Vec<u32>,
    /// Whether any split tests a category set: an ensemble without one walks without the test.
    pub has_categories: bool,
}

impl Linked {
    /// The layout of `nodes` (every tree depth-first) with each tree's root and depth.
    pub fn new(nodes: Vec<Node>, roots: Vec<u32>, depths: &[u32]) -> Self {
        let lane_depths = depths
            .chunks_exact(LANES)
            .map(|c| c.iter().copied().max().unwrap_or(0))
            .collect();
        let has_categories = nodes.iter().any(|n| n.flags & CAT != 0);
        Linked {
            nodes,
            roots,
            lane_depths,
            has_categories,
        }
    }

    /// Calls `add` with each tree's leaf value, in tree order.
    ///
    /// Trees are walked [`LANES`] at a time for as many steps as the deepest of them (a leaf
    /// steps to itself); trees left over are walked one by one until their leaf.
    #[inline(always)]
    pub fn for_each_leaf<X: Copy + Into<f64>>(
        &self,
        xs: &[X],
        greater: impl Fn(X, f64) -> bool,
        add: impl FnMut(f64),
    ) {
        if self.has_categories {
            self.walk::<X, true>(xs, greater, add);
        } else {
            self.walk::<X, false>(xs, greater, add);
        }
    }

    /// [`Linked::for_each_leaf`] with the category test compiled in only where a split has one.
    #[inline(always)]
    fn walk<X: Copy + Into<f64>, const CATS: bool>(
        &self,
        xs: &[X],
        greater: impl Fn(X, f64) -> bool,
        mut add: impl FnMut(f64),
    ) {
        let step = |i: usize| {
            let n = &self.nodes[i];
            // A split's first child follows it; both "children" of a leaf are itself.
            let first = i + (n.flags & LEAF == 0) as usize;
            let x = xs[usize::from(n.column)];
            let second = if CATS && n.flags & CAT != 0 {
                cat_second(x.into(), n.value.to_bits() as u32)
            } else {
                greater(x, n.value)
            };
            std::hint::select_unpredictable(second, n.right as usize, first)
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
    cat_rule: &dyn Fn(&RawNode) -> Option<CatRule>,
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
        let node = &tree.nodes[i as usize];
        let children = match *node {
            RawNode::Split {
                left,
                right,
                threshold,
                default_left,
                missing,
                ..
            } => {
                // Pushed second child first, so the first child is emitted right after it.
                Some(if rule(threshold, default_left, missing).mirrored {
                    [("left", left), ("right", right)]
                } else {
                    [("right", right), ("left", left)]
                })
            }
            RawNode::Categorical { .. } => match cat_rule(node) {
                Some(c) => Some([("second", c.second), ("first", c.first)]),
                None => {
                    return Err(TreeLoadError::format(
                        format!("{label} node {i}"),
                        "a categorical split was not restated",
                    ))
                }
            },
            RawNode::Leaf { .. } => None,
        };
        if let Some(children) = children {
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
            RawNode::Categorical { feature, .. } => {
                let Some(c) = cat_rule(&tree.nodes[i as usize]) else {
                    return Err(TreeLoadError::format(
                        format!("{label} node {i}"),
                        "a categorical split was not restated",
                    ));
                };
                let Some(&column) = feature_columns.get(feature as usize) else {
                    return Err(TreeLoadError::format(
                        format!("{label} node {i}"),
                        format!(
                            "feature index {feature} is out of range ({} features)",
                            feature_columns.len()
                        ),
                    ));
                };
                debug_assert_eq!(s.map[c.first as usize], here + 1);
                keys.push(column * 8 + u32::from(read::CODE));
                Node {
                    value: f64::from_bits(u64::from(c.mask)),
                    column: 0,
                    right: s.map[c.second as usize],
                    flags: CAT,
                }
            }
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
