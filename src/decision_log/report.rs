//! What `nextbest replay` reports: reproduction of the logged decisions, what a candidate
//! would change per placement and offer, expected value and decision time, as data (`--json`)
//! and as tables for a terminal. Nothing here replays; `replay` fills these in.

use serde::Serialize;

use super::format::LoggedAnswer;

/// What a replay found.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The candidate, as `name version`.
    pub candidate: String,
    /// What makes the comparison say less than it seems to (an adaptive offer the log holds
    /// no learning of).
    pub warnings: Vec<String>,
    /// Decisions replayed.
    pub decisions: usize,
    /// Decisions the original model answered exactly as logged.
    pub reproduced: usize,
    /// The first decisions that did not reproduce.
    pub mismatches: Vec<Mismatch>,
    /// Lines skipped as unreadable (a torn last line after a crash).
    pub unreadable_lines: usize,
    /// Per channel and placement: how many answers the candidate changes.
    pub placements: Vec<PlacementShift>,
    /// How often each offer is served, before (logged) and after (candidate).
    pub offer_mix: Vec<OfferMix>,
    /// Mean over decisions of the sum of propensity x value over the offers served.
    pub expected_value_per_decision: BeforeAfter,
    /// Candidate offers it never served in this log.
    pub never_shown: Vec<String>,
    /// The candidate's decision time on this machine, in microseconds.
    pub candidate_latency_us: Latency,
}

/// A decision whose replay differs from its log.
#[derive(Debug, Serialize)]
pub struct Mismatch {
    /// The decision id.
    pub decision_id: String,
    /// What the log says.
    pub logged: LoggedAnswer,
    /// What the model answers now.
    pub replayed: LoggedAnswer,
}

/// One placement's share of changed answers.
#[derive(Debug, Serialize)]
pub struct PlacementShift {
    /// Channel.
    pub channel: String,
    /// Placement.
    pub placement: String,
    /// Decisions logged here.
    pub decisions: usize,
    /// Answers whose offers (or their order) the candidate changes.
    pub changed: usize,
    /// `changed / decisions`.
    pub changed_share: f64,
}

/// One offer's share of decisions, before and after.
#[derive(Debug, Serialize)]
pub struct OfferMix {
    /// Offer id.
    pub offer_id: String,
    /// Decisions that served it, as logged.
    pub before: usize,
    /// Decisions the candidate would serve it in.
    pub after: usize,
    /// `before / decisions`.
    pub before_share: f64,
    /// `after / decisions`.
    pub after_share: f64,
}

/// A figure before and after.
#[derive(Debug, Serialize)]
pub struct BeforeAfter {
    /// As logged.
    pub before: f64,
    /// With the candidate.
    pub after: f64,
}

/// Latency percentiles.
#[derive(Debug, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Slowest.
    pub max: f64,
}

impl Report {
    /// True when every logged decision reproduced exactly.
    pub fn reproduces(&self) -> bool {
        self.reproduced == self.decisions
    }

    /// The report as tables for a terminal.
    pub fn to_text(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let pct = |x: f64| format!("{:.1} %", 100.0 * x);
        let _ = writeln!(
            s,
            "replayed {} logged decisions; the models that made them reproduce {} ({}); candidate: {}",
            self.decisions,
            self.reproduced,
            pct(self.reproduced as f64 / self.decisions as f64),
            self.candidate
        );
        if self.unreadable_lines > 0 {
            let _ = writeln!(s, "{} unreadable lines skipped", self.unreadable_lines);
        }
        for w in &self.warnings {
            let _ = writeln!(s, "WARNING: {w}");
        }
        for m in &self.mismatches {
            let _ = writeln!(
                s,
                "MISMATCH {}: logged {:?}, replayed {:?}",
                m.decision_id,
                ids(&m.logged),
                ids(&m.replayed)
            );
        }
        let _ = writeln!(
            s,
            "\n{:<10} {:<14} {:>9} {:>9} {:>9}",
            "channel", "placement", "decisions", "changed", "share"
        );
        for p in &self.placements {
            let _ = writeln!(
                s,
                "{:<10} {:<14} {:>9} {:>9} {:>9}",
                p.channel,
                p.placement,
                p.decisions,
                p.changed,
                pct(p.changed_share)
            );
        }
        let _ = writeln!(
            s,
            "\n{:<28} {:>8} {:>8} {:>9} {:>9}",
            "offer", "before", "after", "before %", "after %"
        );
        for m in &self.offer_mix {
            let _ = writeln!(
                s,
                "{:<28} {:>8} {:>8} {:>9} {:>9}",
                m.offer_id,
                m.before,
                m.after,
                pct(m.before_share),
                pct(m.after_share)
            );
        }
        let ev = &self.expected_value_per_decision;
        let _ = writeln!(
            s,
            "\nexpected value per decision (propensity x value): before {:.4}, after {:.4}",
            ev.before, ev.after
        );
        let _ = writeln!(
            s,
            "offers the candidate never shows: {}",
            if self.never_shown.is_empty() {
                "none".to_owned()
            } else {
                self.never_shown.join(", ")
            }
        );
        let l = &self.candidate_latency_us;
        let _ = writeln!(
            s,
            "candidate decision time: p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs",
            l.p50, l.p99, l.max
        );
        s
    }
}

fn ids(a: &LoggedAnswer) -> Vec<&str> {
    match &a.fallback {
        Some(r) => vec![r.as_str()],
        None => a.offers.iter().map(|o| o.offer_id.as_str()).collect(),
    }
}
