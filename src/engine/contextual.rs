//! Contextual adaptive offers at decision time: the customer's values of the offer's `context`
//! features (snapshot columns, or request values named `context.<key>`, read from the request's
//! context slots as rules read them) each fall in one learnt bin, the bins' log-odds terms add to the offer's overall
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
use super::posterior::{mix, Moments, Posteriors, MISSING, TEXT_BIT};
use super::rules::CtxValue;

/// What a contextual scorer reads of a decision: the customer's feature row and the request's
/// context slots (as rules read them).
pub type Seen<'r, 'c> = (&'r [f32], &'r [Option<&'r CtxValue<'c>>]);

/// Most features one offer's `context` may list: each costs a bin lookup per decision and a
/// count per impression.
pub const MAX_CONTEXT_FEATURES: usize = 16;

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

/// The level of a request value: a number's or a string's, as a snapshot value of that kind
/// would have; a missing value (or a number that is not one) is [`MISSING`]. What a decision
/// draws with and what the contact side records for the learner, so both bin alike.
#[inline]
pub fn request_level(value: Option<&CtxValue<'_>>) -> u32 {
    match value {
        Some(CtxValue::Num(x)) if !x.is_nan() => number_level(*x as f32),
        Some(CtxValue::Str(s)) => text_level(s),
        _ => MISSING,
    }
}

/// What the learner calls a feature: the top half of its name's stable hash (an offer lists at
/// most 16 features, so two of them sharing an id is out of the question in practice).
#[inline]
pub fn feature_id(name: &str) -> u32 {
    (stable_hash(name) >> 32) as u32
}

/// Where a contextual scorer's feature takes its value from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// A snapshot column.
    Column {
        /// Its column in the snapshot.
        column: u32,
        /// For a string column: the level of each dictionary code.
        text: Option<Box<[u32]>>,
    },
    /// A request value (`context.<key>`): the request context slot rules read it from. Its
    /// kind is the request's: the learner bins it as the values it counted mostly are.
    Request {
        /// The slot in [`crate::engine::CompiledModel::context_keys`].
        slot: u16,
    },
}

/// One feature of a contextual scorer, resolved against the snapshot it was compiled for.
#[derive(Debug, Clone, PartialEq)]
pub struct ContextFeature {
    /// The feature's name (what the learner counts it under, by hash), `context.<key>` for a
    /// request value.
    pub name: Box<str>,
    /// Where its value comes from.
    pub source: Source,
}

impl ContextFeature {
    /// The level of this feature's value in a feature row and the request's context slots.
    #[inline]
    pub fn level(&self, row: &[f32], context: &[Option<&CtxValue<'_>>]) -> u32 {
        match &self.source {
            Source::Column { column, text } => {
                let x = row.get(*column as usize).copied().unwrap_or(f32::NAN);
                if x.is_nan() {
                    return MISSING;
                }
                match text {
                    Some(levels) => levels.get(x as usize).copied().unwrap_or(MISSING),
                    None => number_level(x),
                }
            }
            Source::Request { slot } => {
                request_level(context.get(usize::from(*slot)).copied().flatten())
            }
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

    /// The log-odds a decision for this row and request context draws from, and the counts
    /// behind them: the published posterior, or `prior` when nothing was published for this
    /// scorer yet.
    #[inline]
    pub fn moments(
        &self,
        prior: Moments,
        offer_hash: u64,
        reset: Option<u16>,
        (row, context): Seen<'_, '_>,
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
            let t = bins.term(f.level(row, context));
            m.mean += t.log_odds;
            m.variance += t.variance;
        }
        (m, p.trials, p.successes)
    }
}
