//! Offers that learn: a Beta posterior per offer from counts of impressions and outcomes, and
//! the Thompson draw that scores an adaptive offer at decision time (a scorer with a `context`
//! draws from what `contextual` reads instead).
//!
//! The engine stays pure: the counts arrive as an immutable [`Posteriors`] snapshot in the
//! request, and the randomness as a seed in it (derived by the caller from the decision id),
//! so the same decision id explains the same draw. Nothing here reads a clock, locks, or
//! allocates per draw. Who counts (and how outcomes are credited to impressions) is the
//! contact side's business; this module only reads the tallies.

use rand_distr::{Distribution, Gamma};
use rand_pcg::Pcg64Mcg;

/// The longest credit window a model may declare, in days (tallies keep one bucket per day).
pub const MAX_WINDOW_DAYS: usize = 30;

/// Which outcome an adaptive offer learns from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A click on the offer.
    Click = 0,
    /// A conversion (purchase).
    Conversion = 1,
}

impl Outcome {
    /// The model's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Click => "click",
            Outcome::Conversion => "conversion",
        }
    }
}

/// An adaptive scorer in engine form.
#[derive(Debug, Clone, PartialEq)]
pub struct Adaptive {
    /// The outcome that counts as a success.
    pub outcome: Outcome,
    /// Prior Beta `alpha` (`propensity × evidence`).
    pub alpha: f64,
    /// Prior Beta `beta` (`(1 − propensity) × evidence`).
    pub beta: f64,
    /// Outcomes without a decision id are credited to an impression this many days before.
    pub window_days: u8,
    /// Learn only from this model version's own decisions (`"reset": true`).
    pub reset: bool,
    /// Share of decisions on which the offer is shown regardless of its draw.
    pub floor: f64,
    /// The features the propensity depends on (`None`: one propensity for everybody).
    pub context: Option<Box<super::contextual::Context>>,
}

impl Adaptive {
    /// The prior mean: the propensity before any evidence (and without a counts snapshot).
    #[inline]
    pub fn prior_mean(&self) -> f64 {
        self.alpha / (self.alpha + self.beta)
    }

    /// Trials and successes this scorer reads from a tally.
    #[inline]
    pub fn counts(&self, t: &Tally) -> (u64, u64) {
        let w = usize::from(self.window_days).min(MAX_WINDOW_DAYS);
        (t.trials, t.successes[self.outcome as usize][w])
    }

    /// The Thompson draw for one offer in one decision, for the customer's feature row (which
    /// only a contextual scorer reads).
    #[inline]
    pub fn draw_for(&self, offer_hash: u64, row: &[f32], learnt: Option<&Learnt<'_>>) -> Draw {
        match &self.context {
            None => self.draw(offer_hash, learnt),
            Some(c) => c.draw(self, offer_hash, row, learnt),
        }
    }

    /// The context-free Thompson draw for one offer in one decision.
    #[inline]
    pub fn draw(&self, offer_hash: u64, learnt: Option<&Learnt<'_>>) -> Draw {
        let Some(l) = learnt else {
            return Draw::prior(self.prior_mean());
        };
        let (trials, successes) = l
            .posteriors
            .tally(offer_hash, self.reset.then_some(l.tag))
            .map_or((0, 0), |t| self.counts(t));
        let a = self.alpha + successes as f64;
        let b = self.beta + trials.saturating_sub(successes) as f64;
        let (coin, mut rng) = streams(l.seed, offer_hash);
        let draw = beta_draw(a, b, &mut rng);
        let floor = coin < self.floor;
        Draw {
            mean: a / (a + b),
            draw: if floor { 1.0 } else { draw },
            trials,
            successes,
            floor,
        }
    }
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
        }
    }
}

/// Counts of one offer: impressions, and credited outcomes per kind, cumulative by delay in
/// days (`successes[kind][d]`: outcomes credited by decision id or within `d` days).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// Impressions.
    pub trials: u64,
    /// Cumulative credited outcomes by kind ([`Outcome`] order) and window in days.
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
    /// What contextual scorers learnt, by [`super::contextual::Context::posterior_key`].
    pub context: hashbrown::HashMap<
        u64,
        std::sync::Arc<super::contextual::ContextPosterior>,
        foldhash::fast::FixedState,
    >,
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

/// One draw from Beta(a, b) as X / (X + Y) with X ~ Gamma(a), Y ~ Gamma(b): Marsaglia and
/// Tsang's gamma sampler (a normal, a uniform and a squeeze test, rarely a log) costs less than
/// the crate's Beta (Cheng's algorithm, which sets up logs and roots each call), and set-up per
/// draw is all there is since every decision draws from a new posterior.
#[inline]
fn beta_draw(a: f64, b: f64, rng: &mut Pcg64Mcg) -> f64 {
    match (Gamma::new(a, 1.0), Gamma::new(b, 1.0)) {
        (Ok(x), Ok(y)) => {
            let (x, y) = (x.sample(rng), y.sample(rng));
            if x + y > 0.0 {
                x / (x + y)
            } else {
                a / (a + b)
            }
        }
        _ => a / (a + b),
    }
}

/// The per-decision seed from a decision id.
#[inline]
pub fn seed_of(decision_id: u128) -> u64 {
    mix((decision_id >> 64) as u64 ^ mix(decision_id as u64))
}

/// The floor's coin and the generator of one offer's draw in one decision: separate bits of
/// one stream seeded by the decision's seed and the offer.
#[inline]
pub(super) fn streams(seed: u64, offer_hash: u64) -> (f64, Pcg64Mcg) {
    let mut seed = mix(seed ^ offer_hash);
    let coin = (seed >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
    seed = mix(seed);
    let rng = Pcg64Mcg::new(u128::from(seed) << 64 | u128::from(mix(seed)) | 1);
    (coin, rng)
}

/// SplitMix64's finaliser: spreads a seed's bits so nearby seeds give unrelated streams.
#[inline]
pub(super) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Mean and a 95 % interval of a Beta posterior (normal approximation, clamped to [0, 1]):
/// what operators read in stats.
pub fn interval(alpha: f64, beta: f64) -> (f64, f64, f64) {
    let n = alpha + beta;
    let mean = alpha / n;
    let sd = (mean * (1.0 - mean) / (n + 1.0)).sqrt();
    (
        mean,
        (mean - 1.96 * sd).max(0.0),
        (mean + 1.96 * sd).min(1.0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arm(floor: f64, reset: bool) -> Adaptive {
        Adaptive {
            outcome: Outcome::Conversion,
            alpha: 1.0,
            beta: 19.0,
            window_days: 7,
            reset,
            floor,
            context: None,
        }
    }

    fn posteriors(trials: u64, successes: u64) -> Posteriors {
        let mut t = Tally {
            trials,
            ..Tally::default()
        };
        t.successes[1] = [successes; MAX_WINDOW_DAYS + 1];
        let mut p = Posteriors::default();
        p.arms.insert(
            42,
            ArmTallies {
                all: t,
                by_tag: [(7, Tally::default())].into(),
            },
        );
        p
    }

    #[test]
    fn same_seed_same_draw_and_draws_follow_the_posterior() {
        let p = posteriors(10_000, 3_000);
        let a = arm(0.0, false);
        let l = |seed| Learnt {
            posteriors: &p,
            seed,
            tag: 7,
        };
        let d1 = a.draw(42, Some(&l(5)));
        assert_eq!(d1, a.draw(42, Some(&l(5))));
        assert_ne!(d1.draw, a.draw(42, Some(&l(6))).draw);
        assert_eq!((d1.trials, d1.successes), (10_000, 3_000));
        let mean = (1.0 + 3000.0) / (20.0 + 10_000.0);
        assert!((d1.mean - mean).abs() < 1e-12);
        let avg: f64 = (0..2000).map(|s| a.draw(42, Some(&l(s))).draw).sum::<f64>() / 2000.0;
        assert!(
            (avg - mean).abs() < 0.002,
            "average draw {avg} vs mean {mean}"
        );
    }

    #[test]
    fn reset_reads_only_its_tag_and_no_snapshot_gives_the_prior() {
        let p = posteriors(10_000, 3_000);
        let l = Learnt {
            posteriors: &p,
            seed: 1,
            tag: 7,
        };
        let d = arm(0.0, true).draw(42, Some(&l));
        assert_eq!((d.trials, d.successes), (0, 0));
        let d = arm(0.0, false).draw(42, None);
        assert_eq!((d.mean, d.draw), (0.05, 0.05));
    }

    #[test]
    fn the_floor_shows_an_arm_about_as_often_as_it_says() {
        let p = Posteriors::default();
        let a = arm(0.1, false);
        let floored = (0..10_000u64)
            .filter(|s| {
                let l = Learnt {
                    posteriors: &p,
                    seed: *s,
                    tag: 0,
                };
                a.draw(1, Some(&l)).floor
            })
            .count();
        assert!((800..1200).contains(&floored), "{floored} of 10000");
    }

    #[test]
    fn interval_brackets_the_mean() {
        let (m, lo, hi) = interval(30.0, 970.0);
        assert!((m - 0.03).abs() < 1e-12);
        assert!(lo < m && m < hi && lo > 0.0 && hi < 0.05);
    }
}
