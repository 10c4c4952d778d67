//! Contextual adaptive offers at decision time: the customer's values of the offer's `context`
//! features each fall in one learnt bin, the bins' log-odds terms add to the offer's overall
//! log-odds, and one seeded normal draw on that sum is the Thompson sample.
//!
//! The learner is per-predictor binned naive Bayes with empirical-Bayes shrinkage (see
//! `contact::contextual`, which learns off the decision path and publishes `ContextPosterior`s
//! into the same immutable `Posteriors` snapshot as the context-free counts). Each term is a
//! normal on the log-odds scale, so their sum is one normal: one draw per offer, whatever the
//! number of features.
//!
//! This module owns the scorer's compiled form, the *level* a value falls on (shared with the
//! learner, so both bin a value alike: numbers by their f32 bits at 1/16 of an octave, strings
//! by a hash of the value, resolved from dictionary codes when the model is compiled) and the sum
//! of a customer's terms; the published bins are `posterior`'s, the draw is `adaptive`'s. It
//! must not read a clock, lock, allocate or look a string up per decision.

use super::policy::stable_hash;
use super::posterior::{mix, Moments, Posteriors, MISSING};

/// Most features one offer's `context` may list: each costs a bin lookup per decision and a
/// count per impression.
pub const MAX_CONTEXT_FEATURES: usize = 16;
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

impl Context {
    /// The key the posterior of this scorer on an offer is published under; `reset` scorers
    /// learn per model version, so theirs names the deciding model's tag too.
    #[inline]
    pub fn posterior_key(&self, offer_hash: u64, reset: Option<u16>) -> u64 {
        let k = mix(self.key ^ offer_hash);
        match reset {
            None => k,
            Some(tag) => mix(k ^ u64::from(tag)),
        }
    }

    /// The log-odds a decision for this row draws from, and the counts behind them: the
    /// published posterior, or `prior` when nothing was published for this scorer yet.
    #[inline]
    pub fn moments(
        &self,
        prior: Moments,
        offer_hash: u64,
        reset: Option<u16>,
        row: &[f32],
        posteriors: &Posteriors,
    ) -> (Moments, u64, u64) {
        let Some(p) = posteriors
            .context
            .get(&self.posterior_key(offer_hash, reset))
        else {
            return (prior, 0, 0);
        };
        let mut m = p.overall;
        for (f, bins) in self.features.iter().zip(p.features.iter()) {
            let t = bins.term(f.level(row));
            m.mean += t.log_odds;
            m.variance += t.variance;
        }
        (m, p.trials, p.successes)
    }
}
