//! Contextual adaptive offers at decision time: the customer's values of the offer's `context`
//! features each fall in one learnt bin, the bins' log-odds terms add to the offer's overall
//! log-odds, and one seeded normal draw on that sum is the Thompson sample.
//!
//! The learner is per-predictor binned naive Bayes with empirical-Bayes shrinkage (see
//! `contact::contextual`, which learns off the decision path and publishes [`ContextPosterior`]s
//! into the same immutable [`Posteriors`] snapshot as the context-free counts). Each term is a
//! normal on the log-odds scale, so their sum is one normal: one draw per offer, whatever the
//! number of features.
//!
//! This module owns the scorer's compiled form, the *level* a value falls on (shared with the
//! learner, so both bin a value alike: numbers by their f32 bits at 1/16 of an octave, strings
//! by a hash of the value, resolved from dictionary codes when the model is compiled), the
//! published bins and the draw. It must not read a clock, lock, allocate or look a string up per
//! decision.

use rand_distr::{Distribution, StandardNormal};

use super::adaptive::{Adaptive, Draw, Learnt, Posteriors};
use super::policy::stable_hash;
use super::scorer::sigmoid;

/// Most features one offer's `context` may list: each costs a bin lookup per decision and a
/// count per impression.
pub const MAX_CONTEXT_FEATURES: usize = 16;
/// The level of a missing value: a bin of its own.
pub const MISSING: u32 = 0x7fff_ffff;
/// Levels of string values have this bit set; levels of numbers stay below 2^13.
const TEXT_BIT: u32 = 0x8000_0000;

/// The level of a number: its f32 bits in an order-preserving form, keeping sign, exponent and
/// the top 4 bits of the mantissa. Integers up to 16 keep a level each; beyond, a level spans
/// 1/16 of an octave (about 4 %), so any range, from shares to gigabytes, gets fine levels the
/// learner merges into bins of equal traffic.
#[inline]
pub fn number_level(x: f32) -> u32 {
    let x = if x == 0.0 { 0.0 } else { x };
    let bits = x.to_bits();
    let ordered = if bits >> 31 == 1 {
        !bits
    } else {
        bits | 0x8000_0000
    };
    ordered >> 19
}

/// The level of a string value: a hash of its bytes, stable across snapshots (dictionary codes
/// are not).
#[inline]
pub fn text_level(value: &str) -> u32 {
    let l = (stable_hash(value) >> 33) as u32 | TEXT_BIT;
    if l == MISSING {
        l - 1
    } else {
        l
    }
}

/// One feature of a contextual scorer, resolved against the snapshot it was compiled for.
#[derive(Debug, Clone, PartialEq)]
pub struct ContextFeature {
    /// The feature's name (what the learner counts it under, by hash).
    pub name: Box<str>,
    /// Its column in the snapshot.
    pub column: u32,
    /// For a string column: the level of each dictionary code.
    pub text: Option<Box<[u32]>>,
}

impl ContextFeature {
    /// The level of this feature's value in a feature row.
    #[inline]
    pub fn level(&self, row: &[f32]) -> u32 {
        let x = row.get(self.column as usize).copied().unwrap_or(f32::NAN);
        if x.is_nan() {
            return MISSING;
        }
        match &self.text {
            Some(levels) => levels.get(x as usize).copied().unwrap_or(MISSING),
            None => number_level(x),
        }
    }
}

/// The `context` of an adaptive scorer.
#[derive(Debug, Clone, PartialEq)]
pub struct Context {
    /// The features, in the model's order.
    pub features: Box<[ContextFeature]>,
    /// What the learner publishes this scorer's posterior under: a hash of the offer id, the
    /// feature names, the outcome, the credit window and the prior. Model versions that agree
    /// on all of them share what was learnt.
    pub key: u64,
}

/// The log-odds a decision draws from: mean and variance of a normal.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Moments {
    /// Mean log-odds.
    pub mean: f64,
    /// Variance of the log-odds.
    pub variance: f64,
}

/// What one bin adds to the log-odds: the shrunk contrast of its rate against the offer's, and
/// the variance that contrast keeps.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Term {
    /// Log-odds added.
    pub log_odds: f64,
    /// Variance added.
    pub variance: f64,
}

/// The learnt bins of one feature.
#[derive(Debug, Clone, PartialEq)]
pub enum Bins {
    /// A number: levels below `bounds[0]` fall in `terms[0]`, and so on; at or past the last
    /// bound, in the last term (`terms` has one more entry than `bounds`).
    Number {
        /// Ascending level bounds.
        bounds: Box<[u32]>,
        /// One term per bin.
        terms: Box<[Term]>,
        /// A missing value.
        missing: Term,
    },
    /// A string: the frequent values have a bin each; rarer and unseen ones share `other`.
    Text {
        /// `(level, term index)`, sorted by level.
        levels: Box<[(u32, u32)]>,
        /// One term per bin.
        terms: Box<[Term]>,
        /// A missing value.
        missing: Term,
        /// Any other value.
        other: Term,
    },
}

impl Bins {
    /// The term of a level.
    #[inline]
    pub fn term(&self, level: u32) -> Term {
        match self {
            Bins::Number {
                bounds,
                terms,
                missing,
            } => {
                if level == MISSING {
                    return *missing;
                }
                let at = bounds.iter().take_while(|b| level >= **b).count();
                terms.get(at).copied().unwrap_or_default()
            }
            Bins::Text {
                levels,
                terms,
                missing,
                other,
            } => {
                if level == MISSING {
                    return *missing;
                }
                match levels.binary_search_by_key(&level, |e| e.0) {
                    Ok(i) => terms.get(levels[i].1 as usize).copied().unwrap_or_default(),
                    Err(_) => *other,
                }
            }
        }
    }
}

/// What a contextual offer has learnt, as decisions read it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContextPosterior {
    /// The offer's overall log-odds (its context-free posterior mean) and their variance.
    pub overall: Moments,
    /// Impressions counted.
    pub trials: u64,
    /// Outcomes credited.
    pub successes: u64,
    /// Per feature, in the scorer's order: the learnt bins. A replayed decision holds none, and
    /// its `overall` is the sum the decision drew from.
    pub features: Box<[Bins]>,
}

impl Context {
    /// The key the posterior of this scorer on an offer is published under; `reset` scorers
    /// learn per model version, so theirs names the deciding model's tag too.
    #[inline]
    pub fn posterior_key(&self, offer_hash: u64, reset: Option<u16>) -> u64 {
        let k = super::adaptive::mix(self.key ^ offer_hash);
        match reset {
            None => k,
            Some(tag) => super::adaptive::mix(k ^ u64::from(tag)),
        }
    }

    /// The log-odds a decision for this row draws from, and the counts behind them: the
    /// published posterior, or the prior when nothing was published for this scorer yet.
    #[inline]
    pub fn moments(
        &self,
        a: &Adaptive,
        offer_hash: u64,
        row: &[f32],
        posteriors: &Posteriors,
        tag: u16,
    ) -> (Moments, u64, u64) {
        let key = self.posterior_key(offer_hash, a.reset.then_some(tag));
        let Some(p) = posteriors.context.get(&key) else {
            return (prior(a), 0, 0);
        };
        let mut m = p.overall;
        for (f, bins) in self.features.iter().zip(p.features.iter()) {
            let t = bins.term(f.level(row));
            m.mean += t.log_odds;
            m.variance += t.variance;
        }
        (m, p.trials, p.successes)
    }

    /// The Thompson draw for one offer in one decision: a normal on the log-odds, seeded like
    /// the context-free draw (the same decision id draws the same again).
    #[inline]
    pub fn draw(
        &self,
        a: &Adaptive,
        offer_hash: u64,
        row: &[f32],
        learnt: Option<&Learnt<'_>>,
    ) -> Draw {
        let Some(l) = learnt else {
            return Draw::prior(a.prior_mean());
        };
        let (m, trials, successes) = self.moments(a, offer_hash, row, l.posteriors, l.tag);
        let (coin, mut rng) = super::adaptive::streams(l.seed, offer_hash);
        let z: f64 = StandardNormal.sample(&mut rng);
        let floor = coin < a.floor;
        Draw {
            mean: sigmoid(m.mean),
            draw: if floor {
                1.0
            } else {
                sigmoid(m.mean + m.variance.max(0.0).sqrt() * z)
            },
            trials,
            successes,
            floor,
        }
    }
}

/// The prior as log-odds: the logit of the prior mean and the variance of a Beta's logit.
#[inline]
fn prior(a: &Adaptive) -> Moments {
    Moments {
        mean: (a.alpha / a.beta).ln(),
        variance: 1.0 / a.alpha + 1.0 / a.beta,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::engine::adaptive::Outcome;

    fn scorer() -> Adaptive {
        Adaptive {
            outcome: Outcome::Conversion,
            alpha: 1.5,
            beta: 48.5,
            window_days: 7,
            reset: false,
            floor: 0.0,
            context: Some(Box::new(Context {
                features: Box::new([
                    ContextFeature {
                        name: "is_prepaid".into(),
                        column: 0,
                        text: None,
                    },
                    ContextFeature {
                        name: "segment".into(),
                        column: 1,
                        text: Some(Box::new([text_level("basic"), text_level("gold")])),
                    },
                ]),
                key: 99,
            })),
        }
    }

    fn term(log_odds: f64, variance: f64) -> Term {
        Term { log_odds, variance }
    }

    /// is_prepaid: 0 in the first bin (-1), 1 in the second (+1); segment: gold +0.5, others 0.
    fn posteriors(a: &Adaptive) -> Posteriors {
        let mut p = Posteriors::default();
        let c = a.context.as_ref().unwrap();
        p.context.insert(
            c.posterior_key(7, None),
            Arc::new(ContextPosterior {
                overall: Moments {
                    mean: -3.0,
                    variance: 0.01,
                },
                trials: 1_000,
                successes: 40,
                features: Box::new([
                    Bins::Number {
                        bounds: Box::new([number_level(1.0)]),
                        terms: Box::new([term(-1.0, 0.02), term(1.0, 0.03)]),
                        missing: term(0.2, 0.5),
                    },
                    Bins::Text {
                        levels: Box::new([(text_level("gold"), 0)]),
                        terms: Box::new([term(0.5, 0.04)]),
                        missing: Term::default(),
                        other: term(-0.1, 0.05),
                    },
                ]),
            }),
        );
        p
    }

    #[test]
    fn levels_keep_the_order_of_numbers_and_tell_strings_and_missing_apart() {
        let xs = [
            -1e9f32, -2.5, -1.0, 0.0, 0.5, 1.0, 2.0, 3.0, 16.0, 17.5, 1e3, 1e9,
        ];
        for w in xs.windows(2) {
            assert!(number_level(w[0]) < number_level(w[1]), "{w:?}");
        }
        assert_eq!(number_level(-0.0), number_level(0.0));
        // Integers to 16 keep a level each; beyond, a level spans 1/16 of an octave.
        let small: std::collections::HashSet<u32> =
            (0..=16).map(|i| number_level(i as f32)).collect();
        assert_eq!(small.len(), 17);
        assert_eq!(number_level(100.0), number_level(101.0));
        assert_ne!(number_level(100.0), number_level(106.0));
        assert!(number_level(f32::MAX) < 1 << 13);
        for v in ["", "gold", "a much longer segment name"] {
            let l = text_level(v);
            assert!(l & TEXT_BIT != 0 && l != MISSING, "{v}");
        }
        assert_ne!(text_level("gold"), text_level("silver"));
        let f = &scorer().context.unwrap().features[1];
        assert_eq!(f.level(&[0.0, 1.0]), text_level("gold"));
        assert_eq!(f.level(&[0.0, f32::NAN]), MISSING);
        assert_eq!(f.level(&[0.0, 7.0]), MISSING, "a code past the dictionary");
    }

    #[test]
    fn each_value_finds_its_bin_and_the_terms_add_up() {
        let a = scorer();
        let p = posteriors(&a);
        let c = a.context.as_ref().unwrap();
        let m = |row: &[f32]| c.moments(&a, 7, row, &p, 0).0;
        let close = |x: Moments, mean: f64, variance: f64| {
            assert!((x.mean - mean).abs() < 1e-12, "{x:?} vs {mean}");
            assert!((x.variance - variance).abs() < 1e-12, "{x:?} vs {variance}");
        };
        close(m(&[1.0, 1.0]), -3.0 + 1.0 + 0.5, 0.01 + 0.03 + 0.04);
        close(m(&[0.0, 1.0]), -3.0 - 1.0 + 0.5, 0.01 + 0.02 + 0.04);
        close(m(&[5.0, 0.0]), -3.0 + 1.0 - 0.1, 0.01 + 0.03 + 0.05);
        close(m(&[f32::NAN, f32::NAN]), -3.0 + 0.2, 0.01 + 0.5);
        // Another offer has nothing published: the prior.
        let (prior, trials, _) = c.moments(&a, 8, &[1.0, 1.0], &p, 0);
        close(prior, (1.5f64 / 48.5).ln(), 1.0 / 1.5 + 1.0 / 48.5);
        assert_eq!(trials, 0);
        // A replayed decision's posterior: the logged sum, and no bins.
        let mut replayed = Posteriors::default();
        let logged = m(&[1.0, 1.0]);
        replayed.context.insert(
            c.posterior_key(7, None),
            Arc::new(ContextPosterior {
                overall: logged,
                ..ContextPosterior::default()
            }),
        );
        assert_eq!(c.moments(&a, 7, &[0.0, 0.0], &replayed, 0).0, logged);
    }

    #[test]
    fn the_draw_follows_the_seed_and_the_customer() {
        let a = scorer();
        let p = posteriors(&a);
        let l = |seed| Learnt {
            posteriors: &p,
            seed,
            tag: 3,
        };
        let prepaid = [1.0, 1.0];
        let d = a.draw_for(7, &prepaid, Some(&l(11)));
        assert_eq!(d, a.draw_for(7, &prepaid, Some(&l(11))));
        assert_ne!(d.draw, a.draw_for(7, &prepaid, Some(&l(12))).draw);
        assert!((d.mean - sigmoid(-1.5)).abs() < 1e-12);
        assert_eq!((d.trials, d.successes), (1_000, 40));
        let mean_draw = |row: &[f32]| {
            (0..4_000)
                .map(|s| a.draw_for(7, row, Some(&l(s))).draw)
                .sum::<f64>()
                / 4_000.0
        };
        let (hi, lo) = (mean_draw(&prepaid), mean_draw(&[0.0, 0.0]));
        assert!((hi - sigmoid(-1.5)).abs() < 0.01, "{hi}");
        assert!((lo - sigmoid(-4.1)).abs() < 0.005, "{lo}");
        // Without the learnt snapshot: the prior's mean, no draw.
        let none = a.draw_for(7, &prepaid, None);
        assert_eq!((none.mean, none.draw), (a.prior_mean(), a.prior_mean()));
        // A reset scorer reads its model tag's posterior only.
        let reset = Adaptive {
            reset: true,
            ..scorer()
        };
        assert_eq!(reset.draw_for(7, &prepaid, Some(&l(11))).trials, 0);
    }
}
