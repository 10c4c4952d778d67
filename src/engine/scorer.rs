//! Propensity scorers in their compiled form: feature names already resolved to columns.

use crate::features::FeatureRow;

/// A logistic model: `p = 1 / (1 + e^-(intercept + Σ w·x + Σ w[category]))`.
///
/// A missing feature contributes `w · impute` where the model gave an imputed value for it,
/// else nothing (as if it were 0): the rule the model format documents. A string feature adds
/// the weight of the customer's value (`categories`); a value without one, or a missing
/// value, adds nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct Logistic {
    /// The bias term.
    pub intercept: f64,
    /// `(column, weight, imputed value when missing)`.
    pub terms: Box<[(u32, f64, f64)]>,
    /// `(string column, weight by dictionary code)`: codes resolved when compiled.
    pub categories: Box<[(u32, Box<[f64]>)]>,
}

impl Logistic {
    /// Probability for one feature row.
    #[inline]
    pub fn predict(&self, row: &[f32]) -> f64 {
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
        sigmoid(z)
    }
}

/// The logistic function, shared by every scorer that ends in a probability.
#[inline]
pub fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// Any scorer an offer may use.
#[derive(Debug)]
pub enum Scorer {
    /// A logistic regression.
    Logistic(Logistic),
    /// A constant propensity (an offer scored only by value and priority).
    Constant(f64),
    /// An XGBoost or LightGBM tree ensemble, flattened.
    Trees(Box<super::trees::TreeEnsemble>),
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
            // Without the counts snapshot (the engine draws with it), the prior's mean.
            Scorer::Adaptive(a) => a.prior_mean(),
        }
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
        };
        assert!((c.predict(&[1.0]) - sigmoid(0.4)).abs() < 1e-15);
        assert!((c.predict(&[2.0]) - sigmoid(0.9)).abs() < 1e-15);
        assert!((c.predict(&[f32::NAN]) - 0.5).abs() < 1e-15);
        assert!((c.predict(&[7.0]) - 0.5).abs() < 1e-15);
    }
}
