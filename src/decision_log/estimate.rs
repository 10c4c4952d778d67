//! `nextbest replay --estimate`: what a candidate model would earn, estimated from logged
//! decisions and their outcomes (off-policy evaluation), per placement, by inverse propensity
//! scoring (IPS), self-normalised IPS and doubly robust (DR), beside what the logging policy
//! observed.
//!
//! Each logged decision is made again, with `explain`, by the model that made it (it must
//! reproduce) and by the candidate: that gives, for every offer, the probability `μ` with which
//! the logged decision showed it and the probability `π` with which the candidate would (see
//! `engine::shown`). Outcomes come from the data folder's event log, joined by decision id and
//! offer id: an offer converted when a conversion event names both. A decision's outcome is taken
//! as the sum over the offers it shows, each offer's conversion depending on the customer and
//! the offer only (not on what was shown beside it or at which rank), so the estimators weigh
//! each shown offer by `π / μ` (for a one-offer placement these are the usual estimators).
//! The direct model of DR is the candidate's own propensity for each offer (an adaptive
//! offer's posterior mean): DR stays unbiased whatever its quality, which only moves the
//! interval. A conversion is worth the logging model's value of the offer for the customer (the
//! candidate's for an offer only it has), so a candidate that merely revalues offers is judged in
//! the logging model's money. Intervals are normal 95 % intervals of the mean over decisions (SNIPS through the
//! delta method).
//!
//! Refused, with one line: a log whose sampled decisions were lost for reasons that are not
//! random (a full queue, a failed write), a log the models that made it do not reproduce, and a
//! placement where the candidate changes what would be shown but no logged decision was
//! randomised. Reads the log folder, the event log and the candidate; writes nothing.

use std::borrow::Borrow;

use serde::{Deserialize, Serialize};

use crate::engine::{CompiledModel, Decision, Verdict};
use crate::features::FeatureRow;

mod offline;

pub use offline::{run, EstimateError, EstimateReport, Sampling, MIN_EFFECTIVE_SAMPLE};

/// One offer a logged decision showed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Shown {
    /// Its index in the logging model's offers.
    pub offer: u32,
    /// The probability with which the logged decision showed it.
    pub logging: f64,
    /// The probability with which the candidate would show it.
    pub candidate: f64,
    /// True when a conversion names the decision and the offer.
    pub converted: bool,
    /// The value of its conversion for this customer.
    pub value: f64,
    /// The direct model's conversion probability.
    pub direct: f64,
}

/// One logged decision as the estimators read it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// The offers it showed.
    pub shown: Vec<Shown>,
    /// The direct model's conversions under the candidate: `Σ π(a) r̂(a)` over every offer.
    pub direct_conversions: f64,
    /// The same for value: `Σ π(a) r̂(a) v(a)`.
    pub direct_value: f64,
    /// The candidate's expected number of offers shown: `Σ π(a)`.
    pub candidate_size: f64,
    /// Probability the candidate puts on offers the logged decision could not show.
    pub unsupported: f64,
    /// Of `direct_conversions`, the part on those offers (no outcome can correct it).
    pub unsupported_direct: f64,
    /// Of `direct_value`, the part on those offers.
    pub unsupported_direct_value: f64,
    /// `Σ π(a) v(a)` over those offers: the most their conversions could be worth.
    pub unsupported_value: f64,
    /// True when the logged decision showed some offer with a probability strictly between 0
    /// and 1.
    pub randomised: bool,
    /// True when exploration chose the logged answer.
    pub explored: bool,
    /// True when the candidate's probabilities differ from the logged decision's.
    pub changed: bool,
}

impl Sample {
    /// A logged decision from its remaking by the logging model and by the candidate (both with
    /// explain, on the same inputs), the probabilities recorded for the offers it showed (empty
    /// when none were), the customer's row and which shown offers converted.
    pub fn of(
        logging_model: &CompiledModel,
        logging: &Decision<'_>,
        recorded: &[f64],
        candidate_model: &CompiledModel,
        candidate: &Decision<'_>,
        row: Option<FeatureRow<'_>>,
        converted: impl Fn(&str) -> bool,
    ) -> Sample {
        let shown_in = |model: &CompiledModel, d: &Decision<'_>, id: &str| -> (f64, f64) {
            let Some(i) = model.offers.iter().position(|o| &*o.id == id) else {
                return (0.0, 0.0);
            };
            match d.explain.get(i) {
                Some(Verdict::Scored {
                    shown,
                    propensity,
                    learnt,
                    ..
                }) => (*shown, learnt.map_or(*propensity, |l| l.mean)),
                _ => (0.0, 0.0),
            }
        };
        let value_of = |id: &str| {
            let offer = logging_model
                .offers
                .iter()
                .chain(candidate_model.offers.iter())
                .find(|o| &*o.id == id);
            match (offer, row) {
                (Some(o), Some(r)) => o.value_for(r),
                (Some(o), None) => o.value,
                (None, _) => 0.0,
            }
        };
        let mut s = Sample {
            explored: logging.explored,
            ..Sample::default()
        };
        for (i, r) in logging.ranked.iter().enumerate() {
            let id = &*logging_model.offers[r.offer as usize].id;
            let (mu, _) = shown_in(logging_model, logging, id);
            let mu = recorded
                .get(i)
                .copied()
                .filter(|m| m.is_finite())
                .unwrap_or(mu);
            // A shown offer always had a chance; one computed as none (an adaptive draw far
            // in its tail, below the integration's resolution) cannot be weighed.
            if mu <= 0.0 {
                continue;
            }
            let (pi, direct) = shown_in(candidate_model, candidate, id);
            s.shown.push(Shown {
                offer: r.offer,
                logging: mu,
                candidate: pi,
                converted: converted(id),
                value: value_of(id),
                direct,
            });
        }
        for (i, o) in logging_model.offers.iter().enumerate() {
            if let Some(Verdict::Scored { shown, .. }) = logging.explain.get(i) {
                s.randomised |= *shown > 1e-12 && *shown < 1.0 - 1e-12;
                let (pi, _) = shown_in(candidate_model, candidate, &o.id);
                s.changed |= (pi - shown).abs() > 1e-9;
            }
        }
        for o in candidate_model.offers.iter() {
            let (pi, direct) = shown_in(candidate_model, candidate, &o.id);
            if pi <= 0.0 {
                continue;
            }
            let (mu, _) = shown_in(logging_model, logging, &o.id);
            s.candidate_size += pi;
            s.direct_conversions += pi * direct;
            s.direct_value += pi * direct * value_of(&o.id);
            if mu <= 0.0 {
                s.unsupported += pi;
                s.unsupported_direct += pi * direct;
                s.unsupported_direct_value += pi * direct * value_of(&o.id);
                s.unsupported_value += pi * value_of(&o.id);
                s.changed = true;
            }
        }
        s
    }

    /// The sum of the importance weights of the offers it showed.
    fn weight(&self) -> f64 {
        self.shown.iter().map(|s| s.candidate / s.logging).sum()
    }
}

/// Conversions and value per 1,000 decisions with 95 % intervals.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Figure {
    /// Conversions per 1,000 decisions.
    pub conversions_per_1000: f64,
    /// Value of the conversions per 1,000 decisions.
    pub value_per_1000: f64,
    /// 95 % interval of `conversions_per_1000`.
    pub ci95: [f64; 2],
    /// 95 % interval of `value_per_1000`.
    pub value_ci95: [f64; 2],
}

/// One placement's estimates.
#[derive(Debug, Clone, Serialize)]
pub struct PlacementEstimate {
    /// Channel.
    pub channel: String,
    /// Placement.
    pub placement: String,
    /// Logged decisions.
    pub decisions: usize,
    /// Of them, decisions that showed an offer with a probability strictly between 0 and 1.
    pub randomised: usize,
    /// Of them, decisions exploration chose.
    pub explored: usize,
    /// Of them, decisions whose probabilities the candidate changes.
    pub changed: usize,
    /// Share of the candidate's shown offers the logged decisions could not have shown (the
    /// estimates cannot see their outcomes: IPS and SNIPS count them as no conversion, DR as
    /// its direct model says, with its interval stretched to anything they could bring).
    pub unsupported_share: f64,
    /// Logged decisions left out because their model had no adaptive offer of the candidate's
    /// (by id, with or without context as the candidate's), so the log does not hold what that
    /// offer had learnt then; the rest, a random share of the customers, are estimated.
    #[serde(skip_serializing_if = "is_zero")]
    pub untrained_left_out: usize,
    /// Whether the figures say something: the candidate changes nothing, or changes it where
    /// the log randomised, all but at most [`MAX_UNSUPPORTED_SHARE`] of what it shows.
    pub estimable: bool,
    /// What the logging policy observed.
    pub logging: Figure,
    /// Inverse propensity scoring.
    pub ips: Figure,
    /// Self-normalised IPS.
    pub snips: Figure,
    /// Doubly robust.
    pub dr: Figure,
    /// DR less what the logging policy observed, decision by decision: the candidate's gain, with
    /// a paired interval (narrower than the two intervals apart, which share their noise).
    pub dr_difference: Figure,
    /// How many logged decisions the estimate is worth: the decisions times `(Σ w)² / (m Σ w²)`
    /// over the `m` shown offers' weights `w = π / μ` (all the decisions when the candidate is
    /// the logging policy, however many offers each answer shows).
    pub effective_sample_size: f64,
    /// Whether any shown offer converted: before one has, DR is its direct model's claim alone
    /// (said beside the figures, not a figure).
    #[serde(skip)]
    pub answered: bool,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Most of what a candidate shows that the log could not have shown, for an estimate: past
/// it, the figures are its direct model's claims more than the customers' answers.
pub const MAX_UNSUPPORTED_SHARE: f64 = 0.01;

/// Stretches a DR figure's interval by what the offers the log could not show may bring: from
/// none of the conversions the direct model gives them (`claimed`, per decision) to every
/// one shown converting (`most`).
fn stretch(f: &mut Figure, claimed: (f64, f64), most: (f64, f64)) {
    f.ci95[0] -= 1000.0 * claimed.0;
    f.ci95[1] += 1000.0 * (most.0 - claimed.0);
    f.value_ci95[0] -= 1000.0 * claimed.1;
    f.value_ci95[1] += 1000.0 * (most.1 - claimed.1);
}

/// The estimators over one placement's samples (at least one), owned or borrowed.
pub fn estimate<S: Borrow<Sample>>(
    channel: &str,
    placement: &str,
    samples: &[S],
) -> PlacementEstimate {
    let n = samples.len();
    let all = || samples.iter().map(Borrow::borrow);
    let per = |f: &dyn Fn(&Sample) -> (f64, f64)| -> Figure {
        let (c, v): (Vec<f64>, Vec<f64>) = all().map(f).unzip();
        let (cm, ch) = mean_half(&c);
        let (vm, vh) = mean_half(&v);
        figure(cm, ch, vm, vh)
    };
    let logging_of = |s: &Sample| {
        s.shown.iter().fold((0.0, 0.0), |(c, v), x| {
            let r = f64::from(u8::from(x.converted));
            (c + r, v + r * x.value)
        })
    };
    let logging = per(&logging_of);
    let ips_of = |s: &Sample| {
        s.shown.iter().fold((0.0, 0.0), |(c, v), x| {
            let w = x.candidate / x.logging;
            let r = f64::from(u8::from(x.converted));
            (c + w * r, v + w * r * x.value)
        })
    };
    let ips = per(&ips_of);
    let dr_of = |s: &Sample| {
        s.shown
            .iter()
            .fold((s.direct_conversions, s.direct_value), |(c, v), x| {
                let w = x.candidate / x.logging;
                let r = f64::from(u8::from(x.converted));
                (c + w * (r - x.direct), v + w * (r - x.direct) * x.value)
            })
    };
    let mut dr = per(&dr_of);
    let mut dr_difference = per(&|s| {
        let (dc, dv) = dr_of(s);
        let (lc, lv) = logging_of(s);
        (dc - lc, dv - lv)
    });
    let mean = |f: fn(&Sample) -> f64| all().map(f).sum::<f64>() / n as f64;
    let claimed = (
        mean(|s| s.unsupported_direct),
        mean(|s| s.unsupported_direct_value),
    );
    let most = (mean(|s| s.unsupported), mean(|s| s.unsupported_value));
    stretch(&mut dr, claimed, most);
    stretch(&mut dr_difference, claimed, most);
    let weights: Vec<f64> = all().map(Sample::weight).collect();
    let size = all().map(|s| s.candidate_size).sum::<f64>() / n as f64;
    let snips = {
        let (c, v): (Vec<f64>, Vec<f64>) = all().map(ips_of).unzip();
        let (cm, ch) = ratio(&c, &weights, size);
        let (vm, vh) = ratio(&v, &weights, size);
        figure(cm, ch, vm, vh)
    };
    let (sum, sq, shown) = all()
        .flat_map(|s| s.shown.iter().map(|x| x.candidate / x.logging))
        .fold((0.0, 0.0, 0usize), |(a, b, m), w| (a + w, b + w * w, m + 1));
    let count = |f: fn(&Sample) -> bool| all().filter(|s| f(s)).count();
    let (randomised, changed) = (count(|s| s.randomised), count(|s| s.changed));
    let unsupported_share = if size > 0.0 { most.0 / size } else { 0.0 };
    PlacementEstimate {
        channel: channel.to_owned(),
        placement: placement.to_owned(),
        decisions: n,
        randomised,
        explored: count(|s| s.explored),
        changed,
        unsupported_share,
        untrained_left_out: 0,
        estimable: (changed == 0 || randomised > 0) && unsupported_share <= MAX_UNSUPPORTED_SHARE,
        logging,
        ips,
        snips,
        dr,
        dr_difference,
        answered: all().any(|s| s.shown.iter().any(|x| x.converted)),
        effective_sample_size: if sq > 0.0 {
            n as f64 * sum * sum / (shown as f64 * sq)
        } else {
            0.0
        },
    }
}

/// Mean and the half-width of its normal 95 % interval.
fn mean_half(x: &[f64]) -> (f64, f64) {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, 1.96 * (var / n).sqrt())
}

/// `size · Σy / Σw` and the half-width of its 95 % interval (delta method).
fn ratio(y: &[f64], w: &[f64], size: f64) -> (f64, f64) {
    let (sy, sw): (f64, f64) = (y.iter().sum(), w.iter().sum());
    if sw <= 0.0 {
        return (0.0, 0.0);
    }
    let r = sy / sw;
    let wm = sw / w.len() as f64;
    let z: Vec<f64> = y
        .iter()
        .zip(w)
        .map(|(y, w)| size * (y - r * w) / wm)
        .collect();
    (size * r, mean_half(&z).1)
}

fn figure(c: f64, ch: f64, v: f64, vh: f64) -> Figure {
    Figure {
        conversions_per_1000: 1000.0 * c,
        value_per_1000: 1000.0 * v,
        ci95: [1000.0 * (c - ch), 1000.0 * (c + ch)],
        value_ci95: [1000.0 * (v - vh), 1000.0 * (v + vh)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(offer: u32, logging: f64, candidate: f64) -> Shown {
        Shown {
            offer,
            logging,
            candidate,
            converted: false,
            value: 1.0,
            direct: 0.0,
        }
    }

    fn sample(offers: Vec<Shown>) -> Sample {
        Sample {
            candidate_size: offers.iter().map(|s| s.candidate).sum(),
            shown: offers,
            ..Sample::default()
        }
    }

    #[test]
    fn the_logging_policy_is_worth_every_decision_whatever_the_answers_size() {
        let same = [
            sample(vec![shown(0, 1.0, 1.0), shown(1, 1.0, 1.0)]),
            sample(vec![shown(0, 1.0, 1.0)]),
            sample(vec![]),
        ];
        let e = estimate("web", "home", &same);
        assert_eq!(e.decisions, 3);
        assert!((e.effective_sample_size - 3.0).abs() < 1e-12, "{e:?}");
        // One offer weighed 4, three weighed 0: the estimate rests on that one.
        let skewed = [
            sample(vec![shown(0, 0.25, 1.0), shown(1, 1.0, 0.0)]),
            sample(vec![shown(0, 1.0, 0.0)]),
            sample(vec![shown(1, 1.0, 0.0)]),
        ];
        let e = estimate("web", "home", &skewed);
        assert!((e.effective_sample_size - 0.75).abs() < 1e-12, "{e:?}");
    }

    /// A logged decision the candidate keeps, randomised or not.
    fn kept(randomised: bool) -> Sample {
        Sample {
            randomised,
            ..sample(vec![shown(0, if randomised { 0.5 } else { 1.0 }, 1.0)])
        }
    }

    /// A deterministic logged decision where the candidate shows, instead, an offer the log
    /// could not show, which its own score says converts at `direct` for a value of 10.
    fn moved(direct: f64) -> Sample {
        Sample {
            changed: true,
            unsupported: 1.0,
            unsupported_direct: direct,
            unsupported_direct_value: 10.0 * direct,
            unsupported_value: 10.0,
            direct_conversions: direct,
            direct_value: 10.0 * direct,
            candidate_size: 1.0,
            ..sample(vec![shown(0, 1.0, 0.0)])
        }
    }

    #[test]
    fn a_candidate_that_changes_only_what_was_never_randomised_is_not_estimated() {
        // Two randomised decisions elsewhere, nine changed where none was, no outcome at all:
        // the direct model alone would make a gain of 9 x 0.25 per 100 decisions.
        let mut samples: Vec<Sample> = (0..89).map(|_| kept(false)).collect();
        samples.extend([kept(true), kept(true)]);
        samples.extend((0..9).map(|_| moved(0.25)));
        let e = estimate("web", "plans", &samples);
        assert_eq!((e.randomised, e.changed), (2, 9));
        assert!(!e.estimable, "{e:?}");
        assert!((e.dr_difference.conversions_per_1000 - 22.5).abs() < 1e-9);
        // The interval spans from none of the moved offers converting to all of them.
        assert!(e.dr_difference.ci95[0] <= 0.0, "{:?}", e.dr_difference);
        assert!(e.dr_difference.ci95[1] >= 90.0, "{:?}", e.dr_difference);
        assert!(e.dr.value_ci95[1] >= 900.0, "{:?}", e.dr);
        // One such decision in 200 is estimated, with that one's range in the interval.
        let mut samples: Vec<Sample> = (0..197).map(|_| kept(false)).collect();
        samples.extend([kept(true), kept(true), moved(0.25)]);
        let e = estimate("web", "plans", &samples);
        assert!(e.estimable, "{e:?}");
        assert!(e.dr.ci95[0] <= 0.0 && e.dr.ci95[1] >= 5.0, "{:?}", e.dr);
    }
}
