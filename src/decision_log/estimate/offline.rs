//! `nextbest replay --estimate` offline: the decision log read, each decision made again by
//! its model and by the candidate, outcomes joined from the event log, the estimators run per
//! placement, and the report with what makes it weak.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{estimate, PlacementEstimate, Sample};
use crate::contact::event::{Event, EventKind};
use crate::decision_log::replay::{answer_of, each_decision, read_log, Inputs, ReplayError};
use crate::decision_log::Skips;
use crate::engine::{CompiledModel, Decision, Verdict};

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
         the candidate's adaptive offers as the candidate has them (a contextual offer's \
         context list, outcome, window and prior the same), so the log does not hold what \
         those offers had learnt then, and they would decide untrained; estimate on decisions \
         logged while they served (a champion or challenger with them), or put the candidate \
         as a shadow, whose offers learn their own context lists live"
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

/// Fewest decisions a placement's estimate should be worth (its effective sample size) for
/// normal intervals to mean what they say; fewer is said in a warning.
pub const MIN_EFFECTIVE_SAMPLE: f64 = 100.0;

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
    for (place, samples) in &by_place {
        let (channel, placement) = place;
        let mut e = estimate(channel, placement, samples);
        e.untrained_left_out = left_out.get(place).copied().unwrap_or(0);
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
            "no conversion in {} names a logged decision and an offer it showed: the observed \
             rates, IPS and SNIPS are 0 [0, 0], and DR is the candidate's own propensities with \
             nothing to correct them; is it the --data-dir of the server that logged, and do \
             conversions send their decision_id?",
            data_dir.display()
        ));
    }
    for p in &placements {
        if joined > 0 && !p.answered {
            warnings.push(format!(
                "{}/{}: no conversion names a decision logged here: DR is the candidate's own \
                 propensities with nothing to correct them, not a measure",
                p.channel, p.placement
            ));
        }
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

/// True when the candidate scored an adaptive offer that the logging model did not learn as
/// the candidate does (`replay::learnt_alike`): the log holds only what the logging model's adaptive
/// offers had learnt, so the candidate's would decide untrained.
fn untrained(logging: &CompiledModel, candidate: &CompiledModel, d: &Decision<'_>) -> bool {
    use crate::engine::scorer::Scorer;
    candidate.offers.iter().enumerate().any(|(i, o)| {
        matches!(o.scorer, Scorer::Adaptive(_))
            && matches!(d.explain.get(i), Some(Verdict::Scored { .. }))
            && !logging
                .offers
                .iter()
                .any(|l| super::super::replay::learnt_alike(l, o))
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
                    "  {} more decisions left out: made by a model without the candidate's adaptive offers as it has them, the log does not hold what those had learnt",
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
