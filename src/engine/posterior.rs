//! What offers have learnt, as a decision reads it: one immutable snapshot of the context-free
//! counts and the contextual posteriors, the seeded random streams every draw takes its bits
//! from, and the log-odds arithmetic both learners share.
//!
//! A leaf of the engine: the context-free scorer (`adaptive`) and the contextual one
//! (`contextual`) both read it and neither reads the other's internals through it. The
//! contact side builds the snapshot off the decision path and publishes it whole.

use rand_pcg::Pcg64Mcg;

/// The longest credit window a model may declare, in days (tallies keep one bucket per day).
pub const MAX_WINDOW_DAYS: usize = 30;

/// The level of a missing value: a bin of its own.
pub const MISSING: u32 = 0x7fff_ffff;
/// Levels of string values have this bit set; levels of numbers stay below 2^13.
pub const TEXT_BIT: u32 = 0x8000_0000;

/// The logistic function, shared by every scorer that ends in a probability.
#[inline]
pub fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// What `explain` says of an adaptive offer's score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Draw {
    /// The posterior mean.
    pub mean: f64,
    /// The propensity used: the Thompson draw, or 1 when the exposure floor chose the offer.
    pub draw: f64,
    /// Impressions counted.
    pub trials: u64,
    /// Outcomes credited.
    pub successes: u64,
    /// True when the exposure floor, not the draw, chose the propensity.
    pub floor: bool,
    /// The normal on the log-odds the draw is a sigmoid of (exact for a contextual offer, the
    /// Beta's log-odds mean and variance for a context-free one; variance 0 for a prior draw):
    /// what the probability of being shown integrates over.
    pub log_odds: Moments,
}

impl Draw {
    /// The draw of an offer with nothing learnt to draw from: its prior's mean.
    pub fn prior(mean: f64) -> Self {
        Draw {
            mean,
            draw: mean,
            trials: 0,
            successes: 0,
            floor: false,
            log_odds: Moments {
                mean: (mean / (1.0 - mean)).ln(),
                variance: 0.0,
            },
        }
    }
}

/// Counts of one offer: impressions, and credited outcomes per kind, cumulative by delay in
/// days (`successes[kind][d]`: outcomes credited by decision id or within `d` days).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// Impressions.
    pub trials: u64,
    /// Cumulative credited outcomes by outcome kind (click, conversion) and window in days.
    pub successes: [[u64; MAX_WINDOW_DAYS + 1]; 2],
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            trials: 0,
            successes: [[0; MAX_WINDOW_DAYS + 1]; 2],
        }
    }
}

/// Counts of one offer: over every decision, and per model tag for offers that `reset`.
#[derive(Debug, Clone, Default)]
pub struct ArmTallies {
    /// Every impression of the offer, whoever decided it.
    pub all: Tally,
    /// Impressions whose decision id carries a model tag, by tag.
    pub by_tag: Box<[(u16, Tally)]>,
}

/// An immutable snapshot of what every offer has learnt, keyed by the offer id's hash.
#[derive(Debug, Default)]
pub struct Posteriors {
    /// Tallies by [`super::policy::stable_hash`] of the offer id.
    pub arms: hashbrown::HashMap<u64, ArmTallies, foldhash::fast::FixedState>,
    /// What contextual scorers learnt, by the key each scorer publishes under.
    pub context:
        hashbrown::HashMap<u64, std::sync::Arc<ContextPosterior>, foldhash::fast::FixedState>,
}

impl Posteriors {
    /// The tally for an offer: all its impressions, or only one model tag's.
    #[inline]
    pub fn tally(&self, offer_hash: u64, tag: Option<u16>) -> Option<&Tally> {
        let arm = self.arms.get(&offer_hash)?;
        match tag {
            None => Some(&arm.all),
            Some(tag) => arm.by_tag.iter().find(|t| t.0 == tag).map(|t| &t.1),
        }
    }
}

/// What a decision passes the engine so adaptive offers can draw.
#[derive(Debug, Clone, Copy)]
pub struct Learnt<'a> {
    /// The counts snapshot.
    pub posteriors: &'a Posteriors,
    /// The decision's seed (from its id): the same id gives the same draws.
    pub seed: u64,
    /// The deciding model's tag, for offers that learn only from their own version.
    pub tag: u16,
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
    /// How far apart the feature's bins put two customers on the log-odds scale (largest term
    /// less smallest, missing and other values included): what the status page ranks
    /// predictors by.
    pub fn spread(&self) -> f64 {
        let (terms, a, b) = match self {
            Bins::Number { terms, missing, .. } => (terms, *missing, *missing),
            Bins::Text {
                terms,
                missing,
                other,
                ..
            } => (terms, *missing, *other),
        };
        let all = || terms.iter().copied().chain([a, b]).map(|t| t.log_odds);
        let hi = all().fold(f64::NEG_INFINITY, f64::max);
        let lo = all().fold(f64::INFINITY, f64::min);
        hi - lo
    }

    /// The term of a level.
    #[inline]
    pub fn term(&self, level: u32) -> Term {
        match self {
            Bins::Number {
                bounds,
                terms,
                missing,
            } => {
                // A string where numbers were learnt (a request value of the other kind) tells
                // as much as none.
                if level == MISSING || level & TEXT_BIT != 0 {
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

/// The per-decision seed from a decision id.
#[inline]
pub fn seed_of(decision_id: u128) -> u64 {
    mix((decision_id >> 64) as u64 ^ mix(decision_id as u64))
}

/// The floor's coin and the generator of one offer's draw in one decision: separate bits of
/// one stream seeded by the decision's seed and the offer.
#[inline]
pub fn streams(seed: u64, offer_hash: u64) -> (f64, Pcg64Mcg) {
    let mut seed = mix(seed ^ offer_hash);
    let coin = (seed >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
    seed = mix(seed);
    let rng = Pcg64Mcg::new(u128::from(seed) << 64 | u128::from(mix(seed)) | 1);
    (coin, rng)
}

/// SplitMix64's finaliser: spreads a seed's bits so nearby seeds give unrelated streams.
#[inline]
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
