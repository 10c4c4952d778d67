//! An ensemble's classes: which class each tree adds to, the base margins, and how margins
//! become probabilities as each library's `predict` makes them.
//!
//! Owns: [`Classes`], [`Link`] and `TreeEnsemble::predict_classes`. Must not: allocate
//! while scoring (a model with more than [`ON_STACK`] classes is the one exception, and none
//! is trained for offers).
//!
//! - XGBoost `multi:softprob` / `multi:softmax`: per class an f32 sum seeded with that
//!   class's base margin, trees adding to the class `tree_info` names; then `common::Softmax`
//!   (f32 values, max subtracted, `expf`, the sum accumulated in double and divided in f32).
//!   `multi:softmax`'s predict answers the class itself; its probabilities are these.
//! - LightGBM `multiclass`: f64 sums, tree `i` adding to class `i % num_class`, then
//!   `Common::Softmax` in f64. `multiclassova`: each class through its own sigmoid.

use super::{lightgbm_snapped, Flavor, Layout, TreeEnsemble, TreeLoadError};
use crate::features::FeatureRow;

/// Classes scored on the stack (more take one allocation per predict).
pub const ON_STACK: usize = 32;

/// Most classes a model may have.
pub const MAX_CLASSES: usize = 1024;

/// How margins become probabilities.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Link {
    /// One class: the flavor's sigmoid (the binary path).
    Binary,
    /// Softmax across classes (XGBoost `multi:*`, LightGBM `multiclass`).
    Softmax,
    /// One sigmoid per class, `1 / (1 + exp(-sigmoid * margin))` (LightGBM `multiclassova`).
    OneVsAll {
        /// The objective's `sigmoid:` parameter.
        sigmoid: f64,
    },
}

/// An ensemble's classes.
#[derive(Debug, Clone, PartialEq)]
pub struct Classes {
    link: Link,
    /// Per class, the margin its sum starts from.
    base: Box<[f64]>,
    /// Per tree, its class (empty for one class).
    tree_class: Box<[u16]>,
}

impl Classes {
    /// One class starting from `base_margin`.
    pub fn binary(base_margin: f64) -> Self {
        Self {
            link: Link::Binary,
            base: Box::new([base_margin]),
            tree_class: Box::default(),
        }
    }

    /// Several classes: per class its base margin, per tree its class.
    pub fn multi(link: Link, base: Vec<f64>, tree_class: Vec<u16>) -> Self {
        Self {
            link,
            base: base.into_boxed_slice(),
            tree_class: tree_class.into_boxed_slice(),
        }
    }

    /// Number of classes.
    pub fn len(&self) -> usize {
        self.base.len()
    }

    /// Never true: an ensemble has at least one class.
    pub fn is_empty(&self) -> bool {
        self.base.is_empty()
    }

    /// The base margin of a class.
    pub(super) fn base_margin(&self, class: usize) -> f64 {
        self.base.get(class).copied().unwrap_or(0.0)
    }

    /// The largest `|base margin|`, for the overflow bound.
    pub(super) fn largest_base_margin(&self) -> f64 {
        self.base.iter().fold(0.0, |m, b| m.max(b.abs()))
    }

    /// The class tree `t` adds to.
    #[inline]
    pub(super) fn class_of(&self, t: usize) -> usize {
        self.tree_class.get(t).map_or(0, |&c| usize::from(c))
    }

    /// Checks the classes against `n_trees` trees.
    pub(super) fn check(&self, n_trees: usize) -> Result<(), TreeLoadError> {
        let k = self.len();
        if k == 0 || k > MAX_CLASSES {
            return Err(TreeLoadError::format(
                "model",
                format!("{k} classes (1 to {MAX_CLASSES})"),
            ));
        }
        if let Some(b) = self.base.iter().find(|b| !b.is_finite()) {
            return Err(TreeLoadError::format(
                "model",
                format!("base margin {b} is not finite"),
            ));
        }
        if k == 1 {
            return Ok(());
        }
        if self.tree_class.len() != n_trees {
            return Err(TreeLoadError::format(
                "model",
                format!("{} tree classes for {n_trees} trees", self.tree_class.len()),
            ));
        }
        if let Some(t) = self.tree_class.iter().position(|&c| usize::from(c) >= k) {
            return Err(TreeLoadError::format(
                format!("tree {t}"),
                format!("class {} of {k}", self.tree_class[t]),
            ));
        }
        if let Link::OneVsAll { sigmoid } = self.link {
            if !(sigmoid.is_finite() && sigmoid > 0.0) {
                return Err(TreeLoadError::format(
                    "objective",
                    format!("sigmoid {sigmoid} must be finite and > 0"),
                ));
            }
        }
        Ok(())
    }

    /// Seeds XGBoost's f32 sums with the base margins.
    pub(super) fn seed_f32(&self, sums: &mut [f32]) {
        for (s, b) in sums.iter_mut().zip(self.base.iter()) {
            *s = *b as f32;
        }
    }

    /// XGBoost's `common::Softmax` of the f32 margins into `out`.
    pub(super) fn probabilities_f32(&self, margins: &[f32], out: &mut [f64]) {
        let wmax = margins.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut wsum = 0.0_f64;
        for &m in margins {
            wsum += f64::from((m - wmax).exp());
        }
        for (o, &m) in out.iter_mut().zip(margins) {
            *o = f64::from((m - wmax).exp() / wsum as f32);
        }
    }

    /// LightGBM's conversion of the f64 margins in `out`, in place.
    pub(super) fn probabilities_f64(&self, out: &mut [f64]) {
        match self.link {
            Link::OneVsAll { sigmoid } => {
                for o in out.iter_mut() {
                    *o = 1.0 / (1.0 + (-sigmoid * *o).exp());
                }
            }
            Link::Softmax | Link::Binary => {
                let wmax = out.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let mut wsum = 0.0;
                for o in out.iter_mut() {
                    *o = (*o - wmax).exp();
                    wsum += *o;
                }
                for o in out.iter_mut() {
                    *o /= wsum;
                }
            }
        }
    }
}

impl TreeEnsemble {
    /// Every class's probability for one row, as the library's predict gives them
    /// (`out.len()` is [`TreeEnsemble::n_classes`]; a binary ensemble fills one).
    pub fn predict_classes<'r>(&self, row: impl Into<FeatureRow<'r>>, out: &mut [f64]) {
        let row = row.into();
        if self.classes.len() == 1 {
            if let Some(o) = out.first_mut() {
                *o = self.predict(row);
            }
            return;
        }
        match self.flavor {
            Flavor::XgBoost => {
                let score = |xs: &[f32]| {
                    let mut sums = [0.0_f32; ON_STACK];
                    let mut big = Vec::new();
                    let sums: &mut [f32] = match sums.get_mut(..self.classes.len()) {
                        Some(s) => s,
                        None => {
                            big.resize(self.classes.len(), 0.0);
                            &mut big
                        }
                    };
                    self.classes.seed_f32(sums);
                    let mut t = 0;
                    let mut add = |v: f32| {
                        if let Some(s) = sums.get_mut(self.classes.class_of(t)) {
                            *s += v;
                        }
                        t += 1;
                    };
                    match &self.layout {
                        Layout::Perfect32(p) => p.for_each_leaf(xs, &mut add),
                        Layout::Linked(l) => {
                            l.for_each_leaf(xs, |x, t| x > t as f32, |v| add(v as f32))
                        }
                        Layout::Perfect64(_) => {}
                    }
                    self.classes.probabilities_f32(sums, out);
                };
                self.gathered(row, |c| row.f32(c), score)
            }
            Flavor::LightGbm { .. } => {
                let score = |xs: &[f64]| {
                    out.fill(0.0);
                    let mut t = 0;
                    let mut add = |v: f64| {
                        if let Some(s) = out.get_mut(self.classes.class_of(t)) {
                            *s += v;
                        }
                        t += 1;
                    };
                    match &self.layout {
                        Layout::Perfect64(p) => p.for_each_leaf(xs, &mut add),
                        Layout::Linked(l) => l.for_each_leaf(xs, |x, t| x > t, &mut add),
                        Layout::Perfect32(_) => {}
                    }
                    self.classes.probabilities_f64(out);
                };
                self.gathered(row, lightgbm_snapped(row), score)
            }
        }
    }
}
