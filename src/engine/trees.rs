//! Tree ensembles in their runtime form: compact node arrays scored without allocating.
//!
//! Owns: the ensemble ([`TreeEnsemble`]) and its choice of layout (a padded *perfect* layout,
//! `perfect`, of splits in cache-line blocks compared a block at a time, where the trees allow
//! it; linked 16-byte nodes, `layout`, where they do not), the exact split semantics of each
//! library ([`Flavor`]), structural validation of trees handed in by the parsers
//! ([`RawTree`]), and the load error type ([`TreeLoadError`]). Must not: read files, know
//! model-file syntax, look up feature names (beyond handing them to the caller's resolver), or allocate / panic on the
//! scoring path. Parsers in `model::xgboost` and `model::lightgbm` translate files into
//! [`RawTree`]s; everything structural is checked here once, so `predict` walks unchecked
//! paths only in the sense that every index it follows was proven in range at build time.
//!
//! Scoring first gathers the ensemble's inputs from the row, once: XGBoost's as the f32 the
//! snapshot keeps (XGBoost casts its input to f32 itself), LightGBM's as the exact f64 the
//! source gave (the snapshot's residuals restore what f32 dropped; LightGBM compares in f64),
//! snapped and checked once instead of at every split. Then it walks several trees in
//! lock-step with branch-free turns, and adds leaf values in tree order so the sum rounds
//! exactly as the library's does.

/// Most nodes one tree may hold (parsers refuse larger trees before building).
pub const MAX_NODES_PER_TREE: usize = 100_000;
/// Most trees one ensemble may hold.
pub const MAX_TREES: usize = 10_000;

/// LightGBM's `kZeroThreshold` (`const double kZeroThreshold = 1e-35f;`): a float literal
/// widened to double, so it is `1.0000000180025095e-35`, not the double `1e-35`.
pub const LIGHTGBM_ZERO_THRESHOLD: f64 = 1e-35_f32 as f64;

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
#[derive(Debug, Clone, PartialEq)]
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
    /// A categorical split: the model's category codes in `categories` go to `in_set`, the
    /// others to `not_in_set` (see `categorical` for each library's rules on invalid codes).
    Categorical {
        /// Model feature index.
        feature: u32,
        /// Category codes of the set (model codes, not snapshot codes).
        categories: Box<[u32]>,
        /// Local index of the child a category in the set takes.
        in_set: u32,
        /// Local index of the child the other categories take.
        not_in_set: u32,
        /// Whether a missing value takes `in_set` (XGBoost's default direction; LightGBM
        /// sends missing values with the categories not in the set).
        missing_in_set: bool,
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

mod categorical;
mod classes;
mod error;
pub use error::TreeLoadError;
mod layout;
mod perfect;

pub use categorical::{Codes, Feature};
pub use classes::{Classes, Link, MAX_CLASSES};

use categorical::{Categorical, VIRTUAL_BASE};
use layout::{flatten_tree, read, to_u32, Linked, Node, Scratch, SplitRule, LEAF};
use perfect::Perfect;

use crate::features::FeatureRow;

/// The layout an ensemble was given (see `layout`).
#[derive(Debug, Clone, PartialEq)]
enum Layout {
    /// Linked nodes: deep or lopsided trees.
    Linked(Linked),
    /// XGBoost, padded breadth-first: f32 thresholds and leaves.
    Perfect32(Perfect<f32, f32>),
    /// LightGBM, padded breadth-first: f64 thresholds and leaves.
    Perfect64(Perfect<f64, f64>),
}

/// Which layout [`TreeEnsemble::build_with`] gives the trees.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Choice {
    /// Perfect when the depth and padding allow it (`build`).
    Auto,
    /// Linked whatever the trees.
    #[cfg_attr(not(test), allow(dead_code))]
    Linked,
    /// Perfect up to its depth limit, whatever the padding.
    #[cfg_attr(not(test), allow(dead_code))]
    Perfect,
}

/// Most padding the perfect layout may add in `build`: its nodes over the linked layout's.
/// Depth-limited trees (XGBoost's) are near full and grow little; LightGBM's leaf-wise trees
/// of the same leaf count go deep and would grow many times, and stay linked.
const MAX_PERFECT_GROWTH: usize = 3;

/// Inputs gathered on the stack; an ensemble reading more distinct columns gathers into a
/// vector (one allocation per predict; no trained model here comes near).
const GATHER_ON_STACK: usize = 64;

/// A tree ensemble ready to score: features already mapped to snapshot columns.
#[derive(Debug, Clone, PartialEq)]
pub struct TreeEnsemble {
    flavor: Flavor,
    /// Added before the first tree (XGBoost's logit(base_score); 0 for LightGBM).
    base_margin: f64,
    layout: Layout,
    /// What the splits read, ascending: `snapshot column * 8 + read` (a `layout::read`
    /// transform); a split reads the input gathered from `inputs[slot]`.
    inputs: Vec<u32>,
    /// Distinct snapshot columns the splits read, ascending.
    columns: Vec<u32>,
    /// Categorical split sets and how their features read the snapshot (empty when none).
    cat: Categorical,
    /// Classes and how margins become probabilities.
    classes: Classes,
    n_trees: usize,
    /// Reachable nodes (leaves included) before any padding.
    n_nodes: usize,
}

impl TreeEnsemble {
    /// Validates parser output and lays it out; the one way to build an ensemble.
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
        let features: Vec<Feature> = feature_columns.iter().map(|&c| Feature::value(c)).collect();
        Self::build_with(
            flavor,
            Classes::binary(base_margin),
            trees,
            &features,
            Choice::Auto,
        )
    }

    /// [`TreeEnsemble::build`] for any model: features bound with their codes (categorical
    /// splits), and one or several classes.
    pub fn build_model(
        flavor: Flavor,
        classes: Classes,
        trees: &[RawTree],
        features: &[Feature],
    ) -> Result<Self, TreeLoadError> {
        Self::build_with(flavor, classes, trees, features, Choice::Auto)
    }

    /// [`TreeEnsemble::build_model`] with the layout chosen by the caller (tests compare both).
    fn build_with(
        flavor: Flavor,
        classes: Classes,
        trees: &[RawTree],
        features: &[Feature],
        choice: Choice,
    ) -> Result<Self, TreeLoadError> {
        let base_margin = classes.base_margin(0);
        if trees.is_empty() {
            return Err(TreeLoadError::format("model", "no trees"));
        }
        if trees.len() > MAX_TREES {
            return Err(TreeLoadError::format(
                "model",
                format!("{} trees, at most {MAX_TREES} are allowed", trees.len()),
            ));
        }
        classes.check(trees.len())?;
        let masked = Categorical::fits_masks(trees);
        let (cat, restated, feature_columns) =
            Categorical::restate(flavor, trees, features, masked)?;
        let (trees, feature_columns) = (&restated[..], &feature_columns[..]);
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
        let mut keys = Vec::with_capacity(total);
        let mut roots = Vec::with_capacity(trees.len());
        let mut order = Vec::new();
        let mut stack = Vec::new();
        let mut seen = Vec::new();
        let mut local_to_flat = Vec::new();
        let mut depths = Vec::with_capacity(trees.len());
        let rule = |threshold: f64, default_left: bool, missing: MissingType| match flavor {
            Flavor::XgBoost => SplitRule::xgboost(threshold, default_left),
            Flavor::LightGbm { .. } => SplitRule::lightgbm(threshold, default_left, missing),
        };
        let cat_rule = |n: &RawNode| Categorical::cat_rule(flavor, n);
        for tree in trees {
            roots.push(to_u32(nodes.len(), &tree.label)?);
            depths.push(flatten_tree(
                tree,
                feature_columns,
                &rule,
                &cat_rule,
                &mut nodes,
                &mut keys,
                Scratch {
                    order: &mut order,
                    stack: &mut stack,
                    seen: &mut seen,
                    map: &mut local_to_flat,
                },
            )?);
        }
        // Splits read gathered inputs: (column, read) -> slot among the distinct ones.
        let mut inputs: Vec<u32> = nodes
            .iter()
            .zip(&keys)
            .filter(|(n, _)| n.flags & LEAF == 0)
            .map(|(_, &k)| k)
            .collect();
        inputs.sort_unstable();
        inputs.dedup();
        if inputs.len() > usize::from(u16::MAX) {
            return Err(TreeLoadError::format(
                "model",
                format!("{} distinct split inputs, at most 65,535", inputs.len()),
            ));
        }
        for (n, k) in nodes.iter_mut().zip(&keys) {
            if n.flags & LEAF == 0 {
                // Found: the list holds every split's key, and fits u16 (checked above).
                n.column = inputs.binary_search(k).unwrap_or(0) as u16;
            }
        }
        let mut columns: Vec<u32> = inputs
            .iter()
            .map(|k| k / 8)
            .filter_map(|c| {
                if c >= VIRTUAL_BASE {
                    cat.column_of(c)
                } else {
                    Some(c)
                }
            })
            .collect();
        columns.sort_unstable();
        columns.dedup();
        let n_nodes = nodes.len();
        let linked = Linked::new(nodes, roots, &depths);
        check_margin_range(flavor, &classes, &linked)?;
        let depth = depths.iter().copied().max().unwrap_or(0);
        let n_inputs = inputs.len();
        let perfect = |l: &Linked| -> Option<Layout> {
            let growth = match choice {
                Choice::Linked => return None,
                Choice::Auto => MAX_PERFECT_GROWTH,
                Choice::Perfect => usize::MAX,
            };
            Some(match flavor {
                // XGBoost's thresholds and leaves are f32 values: narrowing keeps them exact.
                Flavor::XgBoost => Layout::Perfect32(Perfect::from_linked(
                    l,
                    depth,
                    n_inputs,
                    growth,
                    |t| t as f32,
                    |v| v as f32,
                )?),
                Flavor::LightGbm { .. } => Layout::Perfect64(Perfect::from_linked(
                    l,
                    depth,
                    n_inputs,
                    growth,
                    |t| t,
                    |v| v,
                )?),
            })
        };
        let layout = perfect(&linked).unwrap_or(Layout::Linked(linked));
        Ok(Self {
            flavor,
            base_margin,
            layout,
            inputs,
            columns,
            cat,
            classes,
            n_trees: trees.len(),
            n_nodes,
        })
    }

    /// Probability for one customer's row (NaN = missing), as the library's predict gives it.
    ///
    /// Takes a [`FeatureRow`] (exact values) or a bare `&[f32]` (read as exact).
    pub fn predict<'r>(&self, row: impl Into<FeatureRow<'r>>) -> f64 {
        let row = row.into();
        if self.classes.len() > 1 {
            return self.predict_class(row, 0);
        }
        match self.flavor {
            Flavor::XgBoost => f64::from(xgboost_sigmoid(self.margin_xgboost(row))),
            Flavor::LightGbm { sigmoid } => {
                1.0 / (1.0 + (-sigmoid * self.margin_lightgbm(row)).exp())
            }
        }
    }

    /// Raw margin (sum of leaves + base margin) before the sigmoid.
    pub fn margin<'r>(&self, row: impl Into<FeatureRow<'r>>) -> f64 {
        let row = row.into();
        match self.flavor {
            Flavor::XgBoost => f64::from(self.margin_xgboost(row)),
            Flavor::LightGbm { .. } => self.margin_lightgbm(row),
        }
    }

    /// The probability of one class of a multiclass model (NaN for a class it lacks), on the
    /// stack for up to `classes::ON_STACK` classes.
    pub fn predict_class(&self, row: FeatureRow<'_>, class: usize) -> f64 {
        let n = self.classes.len();
        let mut on_stack = [0.0; classes::ON_STACK];
        let mut on_heap = Vec::new();
        let p = match on_stack.get_mut(..n) {
            Some(p) => p,
            None => {
                on_heap.resize(n, 0.0);
                &mut on_heap[..]
            }
        };
        self.predict_classes(row, p);
        p.get(class).copied().unwrap_or(f64::NAN)
    }

    /// Number of classes (1 for a binary model).
    pub fn n_classes(&self) -> usize {
        self.classes.len()
    }

    /// Number of trees, for validation messages and benches.
    pub fn n_trees(&self) -> usize {
        self.n_trees
    }

    /// Number of reachable nodes (leaves included, padding not), for messages and benches.
    pub fn n_nodes(&self) -> usize {
        self.n_nodes
    }

    /// Distinct inputs the splits read (a column read two ways counts twice; a categorical
    /// feature's code once): at most 32 keep the walk's inputs in registers.
    pub fn n_inputs(&self) -> usize {
        self.inputs.len()
    }

    /// Snapshot columns read, for validation messages and benches.
    pub fn columns(&self) -> &[u32] {
        &self.columns
    }

    /// Per model feature read through a snapshot dictionary, the snapshot's codes for values
    /// the model never saw (they are scored as missing): what a load warns about.
    pub fn unseen_codes(&self) -> Vec<(usize, u32, Vec<u32>)> {
        self.cat.unseen_codes()
    }

    /// The model features whose snapshot values become other category codes here than in
    /// `other`, the same file bound with other `categories`: one file's codes mean one thing.
    pub fn categories_differ(&self, other: &TreeEnsemble) -> Vec<usize> {
        self.cat.codes_differ(&other.cat)
    }

    /// Per model feature whose snapshot column holds numbers the model lists as its categories
    /// (a pandas category of numbers), the list: a value outside it is scored as missing,
    /// which a load warns about as it does for strings.
    pub fn listed_categories(&self) -> Vec<(usize, u32, &[f64])> {
        self.cat.listed_categories()
    }

    /// Which library's semantics this ensemble reproduces, for explain output and tests.
    pub fn flavor(&self) -> Flavor {
        self.flavor
    }

    /// Heap bytes the layout holds, for memory accounting and benches.
    pub fn bytes_held(&self) -> usize {
        let layout = match &self.layout {
            Layout::Linked(l) => {
                l.nodes.capacity() * std::mem::size_of::<Node>()
                    + (l.roots.capacity() + l.lane_depths.capacity()) * 4
            }
            Layout::Perfect32(p) => p.bytes_held(),
            Layout::Perfect64(p) => p.bytes_held(),
        };
        layout + (self.columns.capacity() + self.inputs.capacity()) * 4 + self.cat.bytes_held()
    }

    /// True when the trees were given the padded breadth-first layout (tests and benches).
    pub fn is_perfect_layout(&self) -> bool {
        !matches!(self.layout, Layout::Linked(_))
    }

    /// Hands `score` the ensemble's inputs, `xs[slot]` read from the row as `inputs[slot]`
    /// says (`value` reads a column): on the stack when they fit.
    #[inline(always)]
    fn gathered<X: Input, R>(
        &self,
        row: FeatureRow<'_>,
        value: impl Fn(usize) -> X,
        score: impl FnOnce(&[X]) -> R,
    ) -> R {
        if self.cat.is_empty() {
            return self.gather_with(|key| transformed(key, value((key / 8) as usize)), score);
        }
        let read = |key: u32| {
            let c = (key / 8) as usize;
            if (key % 8) as u8 == read::CODE {
                return X::from_f64(self.cat.code_input(c, row, self.flavor));
            }
            let x = if c >= VIRTUAL_BASE as usize {
                X::from_f64(self.cat.indicator(c, row, self.flavor))
            } else {
                value(c)
            };
            transformed(key, x)
        };
        self.gather_with(read, score)
    }

    /// Reads every input with `read` (by its key) into a buffer, on the stack when it fits,
    /// and hands them to `score`.
    #[inline(always)]
    fn gather_with<X: Input, R>(
        &self,
        read: impl Fn(u32) -> X,
        score: impl FnOnce(&[X]) -> R,
    ) -> R {
        let n = self.inputs.len();
        if n <= GATHER_ON_STACK {
            let mut xs = [X::NAN; GATHER_ON_STACK];
            for (x, &k) in xs.iter_mut().zip(&self.inputs) {
                *x = read(k);
            }
            score(&xs[..n])
        } else {
            let xs: Vec<X> = self.inputs.iter().map(|&k| read(k)).collect();
            score(&xs)
        }
    }

    /// XGBoost's CPU predictor: f32 accumulator seeded with the base margin, trees in order,
    /// on the f32 inputs (XGBoost's own cast).
    fn margin_xgboost(&self, row: FeatureRow<'_>) -> f32 {
        let score = |xs: &[f32]| {
            let mut sum = self.base_margin as f32;
            match &self.layout {
                Layout::Perfect32(p) => p.for_each_leaf(xs, |v| sum += v),
                Layout::Linked(l) => l.for_each_leaf(xs, |x, t| x > t as f32, |v| sum += v as f32),
                Layout::Perfect64(_) => {}
            }
            sum
        };
        self.gathered(row, |c| row.f32(c), score)
    }

    /// LightGBM's `Tree::Predict` summed over trees in f64 (init score is folded into tree 0),
    /// on the exact f64 inputs.
    fn margin_lightgbm(&self, row: FeatureRow<'_>) -> f64 {
        let score = |xs: &[f64]| {
            let mut sum = 0.0_f64;
            match &self.layout {
                Layout::Perfect64(p) => p.for_each_leaf(xs, |v| sum += v),
                Layout::Linked(l) => l.for_each_leaf(xs, |x, t| x > t, |v| sum += v),
                Layout::Perfect32(_) => {}
            }
            sum
        };
        self.gathered(row, lightgbm_snapped(row), score)
    }
}

/// LightGBM's inputs: the dense-row predict path keeps only `|x| > kZeroThreshold ||
/// isnan(x)`; what it drops reads as 0.0 (so -0.0 and 1e-40 are exactly 0.0 there). After
/// this, IsZero(x) is x == 0.
#[inline(always)]
fn lightgbm_snapped(row: FeatureRow<'_>) -> impl Fn(usize) -> f64 + '_ {
    move |c: usize| {
        let x = row.f64(c);
        if x.abs() <= LIGHTGBM_ZERO_THRESHOLD {
            0.0
        } else {
            x
        }
    }
}

/// What a split compares: f32 for XGBoost, f64 for LightGBM.
trait Input: Copy + PartialEq {
    const NAN: Self;
    const ZERO: Self;
    fn negated(self) -> Self;
    fn is_nan(self) -> bool;
    /// A categorical indicator (0, 1 or NaN: exact in either type).
    fn from_f64(x: f64) -> Self;
}

impl Input for f32 {
    const NAN: Self = f32::NAN;
    const ZERO: Self = 0.0;
    fn negated(self) -> Self {
        -self
    }
    fn from_f64(x: f64) -> Self {
        x as f32
    }
    fn is_nan(self) -> bool {
        f32::is_nan(self)
    }
}

impl Input for f64 {
    const NAN: Self = f64::NAN;
    const ZERO: Self = 0.0;
    fn negated(self) -> Self {
        -self
    }
    fn from_f64(x: f64) -> Self {
        x
    }
    fn is_nan(self) -> bool {
        f64::is_nan(self)
    }
}

/// Refuses an ensemble whose margin could overflow the type it is summed in (f32 for XGBoost,
/// f64 for LightGBM), so `margin` is finite for every row: `|base margin|` plus each tree's
/// largest `|leaf|` must stay within half the type's range (the rest absorbs rounding). No
/// trainer writes such leaves (they are a few units at most); a crafted file could, and the
/// sum would reach +-inf and saturate the probability, as in the library itself.
fn check_margin_range(
    flavor: Flavor,
    classes: &Classes,
    linked: &Linked,
) -> Result<(), TreeLoadError> {
    let (nodes, roots) = (&linked.nodes, &linked.roots);
    let (limit, summed_in) = match flavor {
        Flavor::XgBoost => (f64::from(f32::MAX) / 2.0, "f32"),
        Flavor::LightGbm { .. } => (f64::MAX / 2.0, "f64"),
    };
    // Bounded over all classes together: at least as strict as per class.
    let mut bound = classes.largest_base_margin();
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

/// XGBoost's `common::Sigmoid(float)`, clamp and epsilon included.
#[inline]
fn xgboost_sigmoid(x: f32) -> f32 {
    const EPS: f32 = 1e-16;
    let x = (-x).min(88.7_f32);
    1.0_f32 / (x.exp() + 1.0_f32 + EPS)
}

/// A column's value as a split reads it (key `% 8` is the [`read`] transform).
#[inline(always)]
fn transformed<X: Input>(key: u32, x: X) -> X {
    match (key % 8) as u8 {
        read::NEGATED => x.negated(),
        read::NAN_AS_ZERO if x.is_nan() => X::ZERO,
        read::ZERO_AS_NAN | read::ZERO_AS_NAN_NEGATED if x == X::ZERO => X::NAN,
        read::ZERO_AS_NAN_NEGATED => x.negated(),
        _ => x,
    }
}

#[cfg(test)]
mod tests;
