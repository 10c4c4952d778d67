//! Propensity scorers in their compiled form: feature names already resolved to columns.
//!
//! A multiclass tree model scores several offers, one class each ([`ClassScorer`]); within a
//! decision its trees are walked once for all classes ([`ClassCache`]) and each offer reads
//! its own class's probability.

use std::sync::Arc;

use super::posterior::sigmoid;
use super::rules::CtxValue;
use super::trees::TreeEnsemble;
use crate::features::FeatureRow;

/// A logistic model: `p = 1 / (1 + e^-(intercept + Σ w·x + Σ w[category]))`.
///
/// A missing feature contributes `w · impute` where the model gave an imputed value for it,
/// else nothing (as if it were 0): the rule the model format documents. A string feature adds
/// the weight of the customer's value (`categories`); a value without one, or a missing
/// value, adds nothing.
///
/// Request values (`context.<name>`) weigh the same way, read from the request's context
/// slots: a number by its weight, a string by its value's weight. A context value that is
/// missing, or of the other kind, adds its imputed value's term (numbers) or nothing (strings).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Logistic {
    /// The bias term.
    pub intercept: f64,
    /// `(column, weight, imputed value when missing)`.
    pub terms: Box<[(u32, f64, f64)]>,
    /// `(string column, weight by dictionary code)`: codes resolved when compiled.
    pub categories: Box<[(u32, Box<[f64]>)]>,
    /// `(context slot, weight, imputed value when missing)`: numeric request values.
    pub context_terms: Box<[(u16, f64, f64)]>,
    /// `(context slot, (value, weight) pairs)`: string request values, a short list each.
    pub context_categories: Box<[(u16, ValueWeights)]>,
}

impl Logistic {
    /// Probability for one feature row, every request value missing.
    #[inline]
    pub fn predict(&self, row: &[f32]) -> f64 {
        self.predict_in(row, &[])
    }

    /// Probability for one feature row and the request's context slots (as rules read them).
    #[inline]
    pub fn predict_in(&self, row: &[f32], context: &[Option<&CtxValue<'_>>]) -> f64 {
        let mut z = self.intercept;
        for &(col, w, impute) in self.terms.iter() {
            let x = row.get(col as usize).copied().unwrap_or(f32::NAN);
            z += w * if x.is_nan() { impute } else { x as f64 };
        }
        for (col, weights) in self.categories.iter() {
            let code = row.get(*col as usize).copied().unwrap_or(f32::NAN);
            // NaN (missing) casts to 0 but is tested first; codes are exact integers.
            if !code.is_nan() {
                z += weights.get(code as usize).copied().unwrap_or(0.0);
            }
        }
        for &(slot, w, impute) in self.context_terms.iter() {
            z += w * match context.get(usize::from(slot)) {
                Some(Some(CtxValue::Num(x))) => *x,
                _ => impute,
            };
        }
        for (slot, weights) in self.context_categories.iter() {
            if let Some(Some(CtxValue::Str(v))) = context.get(usize::from(*slot)) {
                if let Some((_, w)) = weights.iter().find(|(k, _)| **k == **v) {
                    z += w;
                }
            }
        }
        sigmoid(z)
    }
}

/// A string request value's weights: `(value, weight)` pairs, in value order.
pub type ValueWeights = Box<[(Box<str>, f64)]>;

/// Any scorer an offer may use.
#[derive(Debug)]
pub enum Scorer {
    /// A logistic regression.
    Logistic(Logistic),
    /// A constant propensity (an offer scored only by value and priority).
    Constant(f64),
    /// An XGBoost or LightGBM tree ensemble, flattened.
    Trees(Box<super::trees::TreeEnsemble>),
    /// One class of a multiclass tree ensemble.
    Class(ClassScorer),
    /// Learnt online from impressions and outcomes (Thompson sampling at decision time).
    Adaptive(super::adaptive::Adaptive),
}

impl Scorer {
    /// Propensity in `[0, 1]` for one feature row: a [`FeatureRow`] from the store (tree
    /// ensembles read its exact values) or a bare `&[f32]`.
    #[inline]
    pub fn predict<'r>(&self, row: impl Into<FeatureRow<'r>>) -> f64 {
        let row = row.into();
        match self {
            Scorer::Logistic(l) => l.predict(row.values()),
            Scorer::Constant(p) => *p,
            Scorer::Trees(t) => t.predict(row),
            Scorer::Class(c) => c.ensemble.predict_class(row, usize::from(c.class)),
            // Without the counts snapshot (the engine draws with it), the prior's mean.
            Scorer::Adaptive(a) => a.prior_mean(),
        }
    }
}

/// One class of a multiclass ensemble the model holds once (slot `slot` of
/// [`super::CompiledModel::multiclass`]).
#[derive(Debug)]
pub struct ClassScorer {
    /// The ensemble, shared by every offer that reads one of its classes.
    pub ensemble: Arc<TreeEnsemble>,
    /// The class this offer reads.
    pub class: u16,
    /// The ensemble's slot in the model.
    pub slot: u16,
}

/// Most multiclass ensembles one model may hold (a decision remembers which it walked in a
/// 64-bit mask).
pub const MAX_MULTICLASS: usize = 64;

/// A decision's multiclass probabilities: each ensemble walked at most once, on first use.
/// Building one costs nothing for a model without multiclass ensembles (every decision
/// makes one).
pub struct ClassCache<'m> {
    models: &'m [Arc<TreeEnsemble>],
    /// Every ensemble's classes, slot after slot; empty until one is walked.
    probs: Vec<f64>,
    done: u64,
}

impl<'m> ClassCache<'m> {
    /// An empty cache for a model's multiclass ensembles; allocates only when one is used.
    #[inline]
    pub fn new(models: &'m [Arc<TreeEnsemble>]) -> Self {
        Self {
            models,
            probs: Vec::new(),
            done: 0,
        }
    }

    /// The probability of `c`'s class for this decision's customer.
    #[inline]
    pub fn probability(&mut self, c: &ClassScorer, row: FeatureRow<'_>) -> f64 {
        let slot = usize::from(c.slot);
        let Some(m) = self.models.get(slot) else {
            return f64::NAN;
        };
        // Where the slot's classes start: the classes of the slots before it (a model holds
        // few multiclass ensembles).
        let at: usize = self.models[..slot].iter().map(|m| m.n_classes()).sum();
        let k = m.n_classes();
        if self.done & (1 << slot) == 0 {
            if self.probs.is_empty() {
                let width: usize = self.models.iter().map(|m| m.n_classes()).sum();
                self.probs.resize(width, 0.0);
            }
            if let Some(out) = self.probs.get_mut(at..at + k) {
                m.predict_classes(row, out);
            }
            self.done |= 1 << slot;
        }
        self.probs
            .get(at + usize::from(c.class))
            .copied()
            .unwrap_or(f64::NAN)
    }

    /// How many ensembles this decision walked so far.
    pub fn walks(&self) -> u32 {
        self.done.count_ones()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logistic_matches_formula_and_missing_rule() {
        let l = Logistic {
            intercept: -1.0,
            terms: [(0, 0.5, 0.0), (1, 2.0, 0.25)].into(),
            categories: Box::default(),
            ..Logistic::default()
        };
        let p = l.predict(&[2.0, 1.0]);
        assert!((p - sigmoid(-1.0 + 1.0 + 2.0)).abs() < 1e-12);
        // Missing column 0 contributes nothing; missing column 1 contributes 2.0 * 0.25.
        let p = l.predict(&[f32::NAN, f32::NAN]);
        assert!((p - sigmoid(-1.0 + 0.5)).abs() < 1e-12);
        assert!((sigmoid(0.0) - 0.5).abs() < 1e-15);
        assert!(sigmoid(-800.0) >= 0.0 && sigmoid(800.0) <= 1.0);
        // A string column's code picks its weight; missing or unlisted adds nothing.
        let c = Logistic {
            intercept: 0.0,
            terms: Box::default(),
            categories: [(0, [0.0, 0.4, 0.9].into())].into(),
            ..Logistic::default()
        };
        assert!((c.predict(&[1.0]) - sigmoid(0.4)).abs() < 1e-15);
        assert!((c.predict(&[2.0]) - sigmoid(0.9)).abs() < 1e-15);
        assert!((c.predict(&[f32::NAN]) - 0.5).abs() < 1e-15);
        assert!((c.predict(&[7.0]) - 0.5).abs() < 1e-15);
    }

    #[test]
    fn logistic_weighs_request_values_by_slot() {
        let l = Logistic {
            intercept: -1.0,
            context_terms: [(0, 0.01, 5.0)].into(),
            context_categories: [(1, [("ios".into(), 0.3), ("web".into(), -0.2)].into())].into(),
            ..Logistic::default()
        };
        let cart = CtxValue::Num(250.0);
        let ios = CtxValue::Str("ios".into());
        let other = CtxValue::Str("tv".into());
        let p = l.predict_in(&[], &[Some(&cart), Some(&ios)]);
        assert!((p - sigmoid(-1.0 + 2.5 + 0.3)).abs() < 1e-12);
        // A value without a weight adds nothing; a missing number adds its imputed term.
        let p = l.predict_in(&[], &[None, Some(&other)]);
        assert!((p - sigmoid(-1.0 + 0.05)).abs() < 1e-12);
        // A string where a number is weighed counts as missing; so does no context at all.
        let p = l.predict_in(&[], &[Some(&ios), None]);
        assert!((p - sigmoid(-1.0 + 0.05)).abs() < 1e-12);
        assert_eq!(l.predict(&[]), l.predict_in(&[], &[None, None]));
    }

    #[test]
    fn a_multiclass_ensemble_is_walked_once_per_decision() {
        use crate::engine::trees::{Classes, Feature, Flavor, Link, MissingType, RawNode, RawTree};
        // Two classes, one stump each on column 0.
        let stump = |label: &str| RawTree {
            label: label.into(),
            nodes: vec![
                RawNode::Split {
                    feature: 0,
                    threshold: 0.5,
                    left: 1,
                    right: 2,
                    default_left: true,
                    missing: MissingType::NaN,
                },
                RawNode::Leaf { value: -1.0 },
                RawNode::Leaf { value: 1.0 },
            ],
            allowed_unreachable: 0,
        };
        let classes = Classes::multi(Link::Softmax, vec![0.0, 0.0], vec![0, 1]);
        let e = TreeEnsemble::build_model(
            Flavor::LightGbm { sigmoid: 1.0 },
            classes,
            &[stump("a"), stump("b")],
            &[Feature::value(0)],
        )
        .unwrap();
        let models = [Arc::new(e)];
        let mut cache = ClassCache::new(&models);
        let scorer = |class| ClassScorer {
            ensemble: models[0].clone(),
            class,
            slot: 0,
        };
        let row: &[f32] = &[1.0];
        let p0 = cache.probability(&scorer(0), row.into());
        let p1 = cache.probability(&scorer(1), row.into());
        assert_eq!(cache.walks(), 1);
        assert_eq!(p0, 0.5);
        assert_eq!(p1, 0.5);
        assert!(cache.probability(&scorer(2), row.into()).is_nan());
    }
}
