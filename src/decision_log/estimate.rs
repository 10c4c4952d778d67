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
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::replay::{answer_of, each_decision, read_log, Inputs, ReplayError};
use super::Skips;
use crate::contact::event::{Event, EventKind};
use crate::engine::{CompiledModel, Decision, Verdict};
use crate::features::FeatureRow;

/// Why there is no estimate.
#[derive(Debug, thiserror::Error)]
pub enum EstimateError {
    /// The log could not be read or replayed.
    #[error(transparent)]
    Replay(#[from] ReplayError),
    /// The event log could not be read.
    #[error("the event log in {path}: {message}")]
    Events {
        /// The data folder.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// Sampled decisions were lost for reasons that are not random.
    #[error(
        "the decision log lost {lost} sampled decisions for reasons that are not random \
         (queue full {queue_full}, write failed {write_failed}, writer stopped {writer_stopped}): \
         an estimate from the rest would be biased; log with a lower --decision-log-sample"
    )]
    NotRandom {
        /// Every such loss.
        lost: u64,
        /// Dropped on a full queue.
        queue_full: u64,
        /// Failed writes.
        write_failed: u64,
        /// Offered after the writer stopped.
        writer_stopped: u64,
    },
    /// The logged decisions do not reproduce, so their probabilities are unknown.
    #[error(
        "{failed} of {decisions} logged decisions did not reproduce with the model that made \
         them: their probabilities of being shown are unknown (run replay without --estimate)"
    )]
    NotReproduced {
        /// Decisions that did not reproduce.
        failed: usize,
        /// Decisions logged.
        decisions: usize,
    },
    /// The candidate changes a placement the log never randomised.
    #[error(
        "{channel}/{placement}: the candidate changes what {changed} of {decisions} logged \
         decisions would show, but none of them was randomised; declare \"exploration\": \
         {{\"share\": 0.05}} on the placement and log again"
    )]
    NoRandomised {
        /// Channel.
        channel: String,
        /// Placement.
        placement: String,
        /// Decisions the candidate changes.
        changed: usize,
        /// Decisions logged there.
        decisions: usize,
    },
    /// Every logged decision of a placement was made by a model without the candidate's
    /// adaptive offers, so none holds what they had learnt.
    #[error(
        "{channel}/{placement}: the {decisions} logged decisions were made by a model without \
         the candidate's adaptive offers, so the log does not hold what those offers had learnt \
         then, and they would decide untrained; estimate on decisions logged while they served \
         (a champion or challenger with them), or put the candidate as a shadow"
    )]
    Untrained {
        /// Channel.
        channel: String,
        /// Placement.
        placement: String,
        /// Decisions logged there.
        decisions: usize,
    },
    /// The candidate shows, too often, offers the logged decisions could not show.
    #[error(
        "{channel}/{placement}: {:.1} % of what the candidate would show, the logged decisions \
         could not show ({randomised} of {decisions} randomised, but not where the candidate \
         differs): no outcome says what those offers earn, only the candidate's own scores, \
         so there is no estimate; log with a larger \"exploration\" share on the placement",
        100.0 * .share
    )]
    Unsupported {
        /// Channel.
        channel: String,
        /// Placement.
        placement: String,
        /// The share of what the candidate shows.
        share: f64,
        /// Decisions randomised there.
        randomised: usize,
        /// Decisions logged there.
        decisions: usize,
    },
}

/// One offer a logged decision showed.
#[derive(Debug, Clone, Copy, PartialEq)]
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
#[derive(Debug, Clone, Default, PartialEq)]
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
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Fewest decisions a placement's estimate should be worth (its effective sample size) for
/// normal intervals to mean what they say; fewer is said in a warning.
pub const MIN_EFFECTIVE_SAMPLE: f64 = 100.0;

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
    let unsupported_share = if size > 0.0 {
        all().map(|s| s.unsupported).sum::<f64>() / (size * n as f64)
    } else {
        0.0
    };
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

/// The estimate of a candidate from a decision log.
#[derive(Debug, Serialize)]
pub struct EstimateReport {
    /// The candidate, as `name version`.
    pub candidate: String,
    /// Logged decisions read.
    pub decisions: usize,
    /// Conversions in the event log joined to a logged decision and offer.
    pub conversions_joined: usize,
    /// Lines of the log skipped as unreadable.
    pub unreadable_lines: usize,
    /// What became of the decisions offered to the log, summed over the processes that wrote
    /// it, and the sampling shares they logged with.
    pub sampling: Sampling,
    /// The direct model DR uses.
    pub direct_model: &'static str,
    /// What makes the figures weak: no conversion joined (another data folder?), placements
    /// worth few decisions.
    pub warnings: Vec<String>,
    /// Per placement.
    pub placements: Vec<PlacementEstimate>,
}

/// The decision log's sampling and losses.
#[derive(Debug, Default, Serialize)]
pub struct Sampling {
    /// The shares the log's processes sampled with.
    pub shares: Vec<f64>,
    /// Counts by reason (only `not_sampled` is random).
    #[serde(flatten)]
    pub skips: Skips,
}

/// Estimates `candidate` from the decision log in `dir` and the event log in `data_dir`.
pub fn run(dir: &Path, candidate: &Path, data_dir: &Path) -> Result<EstimateReport, EstimateError> {
    let log = read_log(dir)?;
    let mut sampling = Sampling::default();
    for (share, s) in log.drops.values() {
        if !sampling.shares.contains(share) {
            sampling.shares.push(*share);
        }
        let t = &mut sampling.skips;
        t.written += s.written;
        t.not_sampled += s.not_sampled;
        t.deadline += s.deadline;
        t.queue_full += s.queue_full;
        t.writer_stopped += s.writer_stopped;
        t.write_failed += s.write_failed;
    }
    let t = sampling.skips;
    if t.not_random() > 0 {
        return Err(EstimateError::NotRandom {
            lost: t.not_random(),
            queue_full: t.queue_full,
            write_failed: t.write_failed,
            writer_stopped: t.writer_stopped,
        });
    }
    let conversions = conversions(data_dir)?;
    let mut joined = 0;
    let mut failed = 0;
    let mut name = String::new();
    let mut by_place: BTreeMap<(String, String), Vec<Sample>> = BTreeMap::new();
    let mut left_out: BTreeMap<(String, String), usize> = BTreeMap::new();
    each_decision(&log, candidate, |d, customer_row, original, cand, store| {
        name = format!("{} {}", cand.compiled.name, cand.compiled.version);
        let inputs = Inputs::new(d, customer_row, original);
        let logging = inputs.decide(&original.compiled, store, true);
        if !answer_of(original, &logging).same(&d.answer) {
            failed += 1;
            return;
        }
        let next = inputs.decide(&cand.compiled, store, true);
        let place = (d.request.channel.clone(), d.request.placement.clone());
        if untrained(&original.compiled, &cand.compiled, &next) {
            *left_out.entry(place).or_default() += 1;
            return;
        }
        let id = ulid::Ulid::from_string(&d.decision_id).map_or(0, |u| u.0);
        let converted = |offer: &str| conversions.contains(&(id, offer.to_owned()));
        let row = customer_row.and_then(|r| store.exact_row(r));
        let sample = Sample::of(
            &original.compiled,
            &logging,
            &d.shown,
            &cand.compiled,
            &next,
            row,
            converted,
        );
        joined += sample.shown.iter().filter(|s| s.converted).count();
        by_place.entry(place).or_default().push(sample);
    })?;
    if failed > 0 {
        return Err(EstimateError::NotReproduced {
            failed,
            decisions: log.decisions.len(),
        });
    }
    if let Some(((channel, placement), &n)) = left_out
        .iter()
        .find(|(place, _)| !by_place.contains_key(*place))
    {
        return Err(EstimateError::Untrained {
            channel: channel.clone(),
            placement: placement.clone(),
            decisions: n,
        });
    }
    let mut placements = Vec::new();
    for ((channel, placement), samples) in &by_place {
        let mut e = estimate(channel, placement, samples);
        let key = (channel.clone(), placement.clone());
        e.untrained_left_out = left_out.get(&key).copied().unwrap_or(0);
        if e.changed > 0 && e.randomised == 0 {
            return Err(EstimateError::NoRandomised {
                channel: channel.clone(),
                placement: placement.clone(),
                changed: e.changed,
                decisions: e.decisions,
            });
        }
        if !e.estimable {
            return Err(EstimateError::Unsupported {
                channel: channel.clone(),
                placement: placement.clone(),
                share: e.unsupported_share,
                randomised: e.randomised,
                decisions: e.decisions,
            });
        }
        placements.push(e);
    }
    let mut warnings = Vec::new();
    if joined == 0 {
        warnings.push(format!(
            "no conversion in {} names a logged decision and an offer it showed: every rate is \
             0 [0, 0]; is it the --data-dir of the server that logged, and do conversions send \
             their decision_id?",
            data_dir.display()
        ));
    }
    for p in &placements {
        if p.effective_sample_size < MIN_EFFECTIVE_SAMPLE {
            warnings.push(format!(
                "{}/{}: worth {:.0} decisions (effective sample size), fewer than {}: the 95 % \
                 intervals assume many more and are too narrow",
                p.channel, p.placement, p.effective_sample_size, MIN_EFFECTIVE_SAMPLE
            ));
        }
    }
    Ok(EstimateReport {
        warnings,
        candidate: name,
        decisions: log.decisions.len(),
        conversions_joined: joined,
        unreadable_lines: log.unreadable,
        sampling,
        direct_model:
            "the candidate's propensity for each offer (an adaptive offer's posterior mean)",
        placements,
    })
}

/// True when the candidate scored an adaptive offer that the logging model did not have as
/// such (by id, with context or without as the candidate's): the log holds only what the
/// logging model's adaptive offers had learnt, so the candidate's would decide untrained.
fn untrained(logging: &CompiledModel, candidate: &CompiledModel, d: &Decision<'_>) -> bool {
    use crate::engine::scorer::Scorer;
    candidate.offers.iter().enumerate().any(|(i, o)| {
        let Scorer::Adaptive(a) = &o.scorer else {
            return false;
        };
        if !matches!(d.explain.get(i), Some(Verdict::Scored { .. })) {
            return false;
        }
        !logging.offers.iter().any(|l| {
            l.id == o.id
                && matches!(&l.scorer, Scorer::Adaptive(b) if b.context.is_some() == a.context.is_some())
        })
    })
}

/// Every conversion in the event log of `data_dir` that names a decision and an offer.
fn conversions(data_dir: &Path) -> Result<HashSet<(u128, String)>, EstimateError> {
    let fail = |message: String| EstimateError::Events {
        path: data_dir.to_owned(),
        message,
    };
    if !data_dir.is_dir() {
        return Err(fail("no such folder (--data-dir)".into()));
    }
    let mut out = HashSet::new();
    crate::contact::log::read_all(data_dir, |payload| {
        if let Ok(e) = Event::decode(payload) {
            if let (EventKind::Conversion, Some(d), Some(o)) = (e.kind, e.decision_id, e.offer_id) {
                out.insert((d, o.to_owned()));
            }
        }
    })
    .map_err(|e| fail(e.to_string()))?;
    Ok(out)
}

impl EstimateReport {
    /// The report as a table for a terminal.
    pub fn to_text(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "candidate {}: {} logged decisions, {} conversions joined by decision id",
            self.candidate, self.decisions, self.conversions_joined
        );
        let k = &self.sampling.skips;
        let _ = writeln!(
            s,
            "decision log: sampled at {:?}; written {}, not sampled {}, deadline {}",
            self.sampling.shares, k.written, k.not_sampled, k.deadline
        );
        let _ = writeln!(s, "DR's direct model: {}", self.direct_model);
        for w in &self.warnings {
            let _ = writeln!(s, "WARNING: {w}");
        }
        for p in &self.placements {
            let _ = writeln!(
                s,
                "\n{}/{}: {} decisions, {} randomised ({} explored), the candidate's probabilities differ on {}; effective sample size {:.0}{}",
                p.channel,
                p.placement,
                p.decisions,
                p.randomised,
                p.explored,
                p.changed,
                p.effective_sample_size,
                if p.unsupported_share > 0.0 {
                    format!(
                        "; WARNING: {:.1} % of what the candidate shows was never possible in the log",
                        100.0 * p.unsupported_share
                    )
                } else {
                    String::new()
                }
            );
            if p.untrained_left_out > 0 {
                let _ = writeln!(
                    s,
                    "  {} more decisions left out: made by a model without the candidate's adaptive offers, the log does not hold what those had learnt",
                    p.untrained_left_out
                );
            }
            let _ = writeln!(
                s,
                "  {:<8} {:>14} {:>22} {:>14} {:>22}",
                "", "conv/1000", "95 %", "value/1000", "95 %"
            );
            for (name, f) in [
                ("logging", &p.logging),
                ("ips", &p.ips),
                ("snips", &p.snips),
                ("dr", &p.dr),
            ] {
                let _ = writeln!(
                    s,
                    "  {:<8} {:>14.2} {:>22} {:>14.1} {:>22}",
                    name,
                    f.conversions_per_1000,
                    format!("[{:.2}, {:.2}]", f.ci95[0], f.ci95[1]),
                    f.value_per_1000,
                    format!("[{:.1}, {:.1}]", f.value_ci95[0], f.value_ci95[1]),
                );
            }
        }
        s
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
