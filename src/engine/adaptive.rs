//! Offers that learn: a Beta posterior per offer from counts of impressions and outcomes, and
//! the Thompson draw that scores an adaptive offer at decision time (a scorer with a `context`
//! draws from what `contextual` reads instead).
//!
//! The engine stays pure: the counts arrive as an immutable [`Posteriors`] snapshot in the
//! request, and the randomness as a seed in it (derived by the caller from the decision id),
//! so the same decision id explains the same draw. Nothing here reads a clock, locks, or
//! allocates per draw. Who counts (and how outcomes are credited to impressions) is the
//! contact side's business; this module only reads the tallies.

use rand_distr::{Distribution, Gamma, StandardNormal};
use rand_pcg::Pcg64Mcg;

use super::contextual::{Context, Seen};
use super::posterior::{
    sigmoid, streams, Draw, Learnt, Moments, Posteriors, Tally, MAX_WINDOW_DAYS,
};

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
    pub context: Option<Box<Context>>,
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

    /// The Thompson draw for one offer in one decision, for the customer's feature row and the
    /// request's context slots (which only a contextual scorer reads).
    #[inline]
    pub fn draw_for(&self, offer_hash: u64, at: Seen<'_, '_>, learnt: Option<&Learnt<'_>>) -> Draw {
        match &self.context {
            None => self.draw(offer_hash, learnt),
            Some(c) => self.draw_in_context(c, offer_hash, at, learnt),
        }
    }

    /// The prior as log-odds: the logit of the prior mean and the variance of a Beta's logit.
    #[inline]
    pub fn prior_log_odds(&self) -> Moments {
        Moments {
            mean: (self.alpha / self.beta).ln(),
            variance: 1.0 / self.alpha + 1.0 / self.beta,
        }
    }

    /// The log-odds a contextual decision for this row and request draws from, and the counts
    /// behind them (`None` for a context-free scorer).
    #[inline]
    pub fn moments(
        &self,
        offer_hash: u64,
        at: Seen<'_, '_>,
        posteriors: &Posteriors,
        tag: u16,
    ) -> Option<(Moments, u64, u64)> {
        let c = self.context.as_deref()?;
        Some(self.moments_in(c, offer_hash, at, posteriors, tag))
    }

    #[inline]
    fn moments_in(
        &self,
        c: &Context,
        offer_hash: u64,
        at: Seen<'_, '_>,
        posteriors: &Posteriors,
        tag: u16,
    ) -> (Moments, u64, u64) {
        let reset = self.reset.then_some(tag);
        c.moments(self.prior_log_odds(), offer_hash, reset, at, posteriors)
    }

    /// The contextual Thompson draw: one normal on the log-odds the customer's bins add up to,
    /// seeded like the context-free draw (the same decision id draws the same again).
    #[inline]
    fn draw_in_context(
        &self,
        c: &Context,
        offer_hash: u64,
        at: Seen<'_, '_>,
        learnt: Option<&Learnt<'_>>,
    ) -> Draw {
        let Some(l) = learnt else {
            return Draw::prior(self.prior_mean());
        };
        let (m, trials, successes) = self.moments_in(c, offer_hash, at, l.posteriors, l.tag);
        let (coin, mut rng) = streams(l.seed, offer_hash);
        let z: f64 = StandardNormal.sample(&mut rng);
        let floor = coin < self.floor;
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
            log_odds: m,
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
            log_odds: beta_log_odds(a, b),
        }
    }
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

/// The mean and variance of the log-odds of a Beta(a, b) draw: `ψ(a) − ψ(b)` and
/// `ψ'(a) + ψ'(b)` (digamma and trigamma).
pub fn beta_log_odds(a: f64, b: f64) -> Moments {
    Moments {
        mean: digamma(a) - digamma(b),
        variance: trigamma(a) + trigamma(b),
    }
}

/// ψ(x) for x > 0: the recurrence up to 6, then the asymptotic series (error under 1e-10).
fn digamma(mut x: f64) -> f64 {
    let mut r = 0.0;
    while x < 6.0 {
        r -= 1.0 / x;
        x += 1.0;
    }
    let f = 1.0 / (x * x);
    r + x.ln() - 0.5 / x - f * (1.0 / 12.0 - f * (1.0 / 120.0 - f * (1.0 / 252.0 - f / 240.0)))
}

/// ψ'(x) for x > 0: the recurrence up to 6, then the asymptotic series (error under 1e-10).
fn trigamma(mut x: f64) -> f64 {
    let mut r = 0.0;
    while x < 6.0 {
        r += 1.0 / (x * x);
        x += 1.0;
    }
    let f = 1.0 / (x * x);
    r + 1.0 / x + f / 2.0 + f / x * (1.0 / 6.0 - f * (1.0 / 30.0 - f * (1.0 / 42.0 - f / 30.0)))
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
    use crate::engine::posterior::ArmTallies;

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
    fn beta_log_odds_match_known_values() {
        // Beta(1, 1): the logit of a uniform is logistic, mean 0 and variance π²/3.
        let m = beta_log_odds(1.0, 1.0);
        assert!(m.mean.abs() < 1e-9);
        assert!((m.variance - std::f64::consts::PI.powi(2) / 3.0).abs() < 1e-8);
        // ψ(1) = −γ.
        assert!((digamma(1.0) + 0.577_215_664_901_532_9).abs() < 1e-9);
    }

    #[test]
    fn interval_brackets_the_mean() {
        let (m, lo, hi) = interval(30.0, 970.0);
        assert!((m - 0.03).abs() < 1e-12);
        assert!(lo < m && m < hi && lo > 0.0 && hi < 0.05);
    }
}
