//! Counters and histograms of the request path, and the Prometheus exposition ([`prom`]).
//!
//! Everything here is a relaxed atomic: recording costs an uncontended add on the decision
//! path, and rendering reads whatever the counters hold (scrapes need no consistency across
//! them). Other owners of numbers (registry, contact side, funnel) keep their own atomics and
//! export them through [`prom::Collect`]; this module must not reach into them.

pub mod prom;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::engine::FallbackReason;
use crate::experiment::Variant;
use prom::{Collect, Exposition, Kind};

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

    /// Observations per bucket (not cumulative; the last bucket's upper bound is
    /// [`LATENCY_BUCKETS_US`]'s last) and the total count, which also holds those past it.
    pub fn snapshot(&self) -> ([u64; LATENCY_BUCKETS_US.len()], u64) {
        (
            std::array::from_fn(|i| self.buckets[i].load(Relaxed)),
            self.count.load(Relaxed),
        )
    }

    /// Total of the observations, in nanoseconds.
    pub fn sum_ns(&self) -> u64 {
        self.sum_ns.load(Relaxed)
    }

    /// Writes the histogram as one family (buckets, sum, count).
    pub fn write(&self, out: &mut Exposition, name: &str, help: &str) {
        let (buckets, count) = self.snapshot();
        Self::write_snapshot(out, name, help, (&buckets, count, self.sum_ns()));
    }

    /// Writes a snapshot (per-bucket counts, count, sum in ns) as one family.
    pub fn write_snapshot(
        out: &mut Exposition,
        name: &str,
        help: &str,
        (buckets, count, sum_ns): (&[u64; LATENCY_BUCKETS_US.len()], u64, u64),
    ) {
        let mut f = out.family(name, Kind::Histogram, help);
        let mut cumulative = 0;
        for (i, b) in LATENCY_BUCKETS_US.iter().enumerate() {
            cumulative += buckets[i];
            let le = (*b as f64 / 1e6).to_string();
            f.suffixed("_bucket", &[("le", &le)], cumulative);
        }
        f.suffixed("_bucket", &[("le", "+Inf")], count)
            .suffixed("_sum", &[], sum_ns as f64 / 1e9)
            .suffixed("_count", &[], count);
    }
}

/// The request path's counters.
#[derive(Default)]
pub struct Metrics {
    /// Personalised decisions.
    pub personalised: AtomicU64,
    fallbacks: [AtomicU64; FallbackReason::ALL.len()],
    statuses: [AtomicU64; STATUSES.len() + 1],
    /// Time from request read to answer encoded, for `/v1/decide`.
    pub decide_latency: Histogram,
    variants: [AtomicU64; Variant::ALL.len()],
}

impl Metrics {
    /// Counts one decide answer: the variant that decided (none without a model), personalised
    /// or the fallback's reason, and its latency.
    #[inline]
    pub fn decided(
        &self,
        variant: Option<Variant>,
        fallback: Option<FallbackReason>,
        took: Duration,
    ) {
        if let Some(v) = variant {
            self.variants[v.index()].fetch_add(1, Relaxed);
        }
        match fallback {
            Some(r) => self.fallbacks[r.index()].fetch_add(1, Relaxed),
            None => self.personalised.fetch_add(1, Relaxed),
        };
        self.decide_latency.observe_ns(took.as_nanos() as u64);
    }

    /// Fallback answers so far for a reason.
    pub fn fallbacks(&self, reason: FallbackReason) -> u64 {
        self.fallbacks[reason.index()].load(Relaxed)
    }

    /// The decisions answered so far.
    pub fn decisions(&self) -> DecisionStats {
        DecisionStats {
            personalised: self.personalised.load(Relaxed),
            fallbacks: std::array::from_fn(|i| self.fallbacks[i].load(Relaxed)),
            variants: std::array::from_fn(|i| self.variants[i].load(Relaxed)),
            latency: self.decide_latency.snapshot(),
        }
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
}

/// One snapshot of the decisions answered: what `/metrics` and the status page both show.
#[derive(Debug, Clone, Copy)]
pub struct DecisionStats {
    /// Personalised answers.
    pub personalised: u64,
    /// Fallback answers, by reason (in [`FallbackReason::ALL`] order).
    pub fallbacks: [u64; FallbackReason::ALL.len()],
    /// Decisions by the variant that made them (in [`Variant::ALL`] order).
    pub variants: [u64; Variant::ALL.len()],
    /// Decide latency: observations per bucket (see [`Histogram::snapshot`]) and in all.
    pub latency: ([u64; LATENCY_BUCKETS_US.len()], u64),
}

impl DecisionStats {
    /// Every answer: personalised and fallback.
    pub fn total(&self) -> u64 {
        self.personalised + self.fallbacks.iter().sum::<u64>()
    }

    /// Fallback answers for one reason.
    pub fn fallbacks(&self, reason: FallbackReason) -> u64 {
        self.fallbacks[reason.index()]
    }
}

impl Collect for DecisionStats {
    fn collect(&self, out: &mut Exposition) {
        let mut f = out.family(
            "nextbest_decisions_total",
            Kind::Counter,
            "Decisions answered, by outcome.",
        );
        f.sample(&[("outcome", "personalised")], self.personalised);
        for r in FallbackReason::ALL {
            f.sample(
                &[("outcome", "fallback"), ("reason", r.as_str())],
                self.fallbacks(r),
            );
        }
        let mut f = out.family(
            "nextbest_variant_decisions_total",
            Kind::Counter,
            "Decisions made by a model, by variant.",
        );
        for v in Variant::ALL {
            f.sample(&[("variant", v.as_str())], self.variants[v.index()]);
        }
    }
}

impl Collect for Metrics {
    fn collect(&self, out: &mut Exposition) {
        self.decisions().collect(out);
        let mut f = out.family(
            "nextbest_http_responses_total",
            Kind::Counter,
            "HTTP responses, by status.",
        );
        for (i, s) in STATUSES.iter().enumerate() {
            f.sample(
                &[("status", &s.to_string())],
                self.statuses[i].load(Relaxed),
            );
        }
        f.sample(
            &[("status", "other")],
            self.statuses[STATUSES.len()].load(Relaxed),
        );
        self.decide_latency.write(
            out,
            "nextbest_decide_duration_seconds",
            "Time to answer /v1/decide, from request read to answer encoded.",
        );
    }
}
