//! Counters and histograms, rendered in the Prometheus text format.
//!
//! Everything is a relaxed atomic: recording costs an uncontended add on the decision path,
//! and rendering reads whatever the counters hold (scrapes need no consistency across them).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::engine::FallbackReason;
use crate::registry::Variant;

/// Upper bounds of the decision latency buckets, in microseconds: fine below a millisecond,
/// where nextbest lives, coarse above it.
pub const LATENCY_BUCKETS_US: [u64; 16] = [
    5, 10, 20, 35, 50, 75, 100, 150, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 100_000,
];

/// HTTP statuses counted one by one; others fall into `other`.
const STATUSES: [u16; 13] = [
    200, 202, 400, 401, 404, 405, 408, 409, 413, 415, 422, 500, 503,
];

/// A latency histogram with fixed buckets.
#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS_US.len()],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    #[inline]
    pub fn observe_ns(&self, ns: u64) {
        let us = ns / 1_000;
        if let Some(i) = LATENCY_BUCKETS_US.iter().position(|&b| us < b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(ns, Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, b) in LATENCY_BUCKETS_US.iter().enumerate() {
            cumulative += self.buckets[i].load(Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{}\"}} {cumulative}",
                *b as f64 / 1e6
            );
        }
        let count = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {}", self.sum_ns.load(Relaxed) as f64 / 1e9);
        let _ = writeln!(out, "{name}_count {count}");
    }
}

/// Every metric nextbest exports.
#[derive(Default)]
pub struct Metrics {
    /// Personalised decisions.
    pub personalised: AtomicU64,
    fallbacks: [AtomicU64; FallbackReason::ALL.len()],
    statuses: [AtomicU64; STATUSES.len() + 1],
    /// Time from request read to answer encoded, for `/v1/decide`.
    pub decide_latency: Histogram,
    variants: [AtomicU64; 2],
}

impl Metrics {
    /// Counts a fallback answer by reason.
    #[inline]
    pub fn fallback(&self, reason: FallbackReason) {
        let i = FallbackReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        self.fallbacks[i].fetch_add(1, Relaxed);
    }

    /// Fallback answers so far for a reason.
    pub fn fallbacks(&self, reason: FallbackReason) -> u64 {
        let i = FallbackReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        self.fallbacks[i].load(Relaxed)
    }

    /// Counts a decision by the variant that made it (champion/challenger comparison).
    #[inline]
    pub fn variant(&self, v: Variant) {
        self.variants[v as usize].fetch_add(1, Relaxed);
    }

    /// Counts an HTTP response by status.
    #[inline]
    pub fn status(&self, status: u16) {
        let i = STATUSES
            .iter()
            .position(|s| *s == status)
            .unwrap_or(STATUSES.len());
        self.statuses[i].fetch_add(1, Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self, extra: &str) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str("# HELP nextbest_decisions_total Decisions answered, by outcome.\n");
        out.push_str("# TYPE nextbest_decisions_total counter\n");
        let _ = writeln!(
            out,
            "nextbest_decisions_total{{outcome=\"personalised\"}} {}",
            self.personalised.load(Relaxed)
        );
        for (i, r) in FallbackReason::ALL.iter().enumerate() {
            let _ = writeln!(
                out,
                "nextbest_decisions_total{{outcome=\"fallback\",reason=\"{}\"}} {}",
                r.as_str(),
                self.fallbacks[i].load(Relaxed)
            );
        }
        out.push_str(
            "# HELP nextbest_variant_decisions_total Decisions made by a model, by variant.\n",
        );
        out.push_str("# TYPE nextbest_variant_decisions_total counter\n");
        for v in [Variant::Champion, Variant::Challenger] {
            let _ = writeln!(
                out,
                "nextbest_variant_decisions_total{{variant=\"{}\"}} {}",
                v.as_str(),
                self.variants[v as usize].load(Relaxed)
            );
        }
        out.push_str("# HELP nextbest_http_responses_total HTTP responses, by status.\n");
        out.push_str("# TYPE nextbest_http_responses_total counter\n");
        for (i, s) in STATUSES.iter().enumerate() {
            let _ = writeln!(
                out,
                "nextbest_http_responses_total{{status=\"{s}\"}} {}",
                self.statuses[i].load(Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "nextbest_http_responses_total{{status=\"other\"}} {}",
            self.statuses[STATUSES.len()].load(Relaxed)
        );
        self.decide_latency.render(
            &mut out,
            "nextbest_decide_duration_seconds",
            "Time to answer /v1/decide, from request read to answer encoded.",
        );
        out.push_str(extra);
        out
    }
}
