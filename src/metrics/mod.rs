//! Counters and histograms of the request path, and the Prometheus exposition ([`prom`]).
//!
//! Everything here is a relaxed atomic: recording costs an uncontended add on the decision
//! path, and rendering reads whatever the counters hold (scrapes need no consistency across
//! them). Other owners of numbers (registry, contact side, funnel) keep their own atomics and
//! export them through [`prom::Collect`]; this module must not reach into them.

pub mod process;
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

/// The listener a response was answered on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// Channels: decisions, events, probes.
    Public,
    /// Operators: the admin API and `/metrics`.
    Admin,
}

impl Listener {
    fn as_str(self) -> &'static str {
        match self {
            Listener::Public => "public",
            Listener::Admin => "admin",
        }
    }

    /// The routes counted one by one; any other path counts as `other` (a bounded label, whatever
    /// paths clients try).
    fn routes(self) -> &'static [&'static str] {
        match self {
            Listener::Public => &[
                "/v1/decide",
                "/v1/events",
                "/healthz",
                "/readyz",
                "/openapi.json",
            ],
            Listener::Admin => &[
                "/admin/models",
                "/admin/models/rollback",
                "/admin/features/reload",
                "/admin/stats",
                "/admin/status",
                "/admin/status.json",
                "/metrics",
                "/openapi.json",
            ],
        }
    }

    /// The route label's index for a path (the last one, `other`, for an unknown path).
    #[inline]
    pub fn route(self, path: &str) -> Route {
        let routes = self.routes();
        Route(
            routes
                .iter()
                .position(|r| *r == path)
                .unwrap_or(routes.len()),
        )
    }
}

/// A route of a listener, as counted (see [`Listener::route`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route(usize);

/// Most routes of one listener, `other` included.
const ROUTES: usize = 9;

/// Upper bounds of the replication lag buckets, in microseconds: from a millisecond (a quiet
/// fleet on one network) to ten minutes (an outage being caught up), so a lag of seconds or
/// minutes lands in a bucket of its own instead of past the last one.
pub const LAG_BUCKETS_US: [u64; 16] = [
    1_000,
    2_500,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    30_000_000,
    120_000_000,
    600_000_000,
];

/// A histogram with fixed buckets (upper bounds in microseconds; [`LATENCY_BUCKETS_US`]
/// unless built [`Histogram::with_bounds`]).
pub struct Histogram<const N: usize = 16> {
    bounds: &'static [u64; N],
    buckets: [AtomicU64; N],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::with_bounds(&LATENCY_BUCKETS_US)
    }
}

/// A histogram's observations at one moment: per bucket (not cumulative), in all (those past
/// the last bound included), and their sum in nanoseconds.
#[derive(Debug, Clone, Copy)]
pub struct HistogramSnapshot<const N: usize = 16> {
    /// The buckets' upper bounds, in microseconds.
    pub bounds: &'static [u64; N],
    /// Observations per bucket.
    pub buckets: [u64; N],
    /// Observations in all.
    pub count: u64,
    /// Their sum, in nanoseconds.
    pub sum_ns: u64,
}

impl<const N: usize> Histogram<N> {
    /// An empty histogram with these upper bounds (microseconds, ascending).
    pub fn with_bounds(bounds: &'static [u64; N]) -> Self {
        Histogram {
            bounds,
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_ns: AtomicU64::new(0),
        }
    }

    /// Records one observation.
    #[inline]
    pub fn observe_ns(&self, ns: u64) {
        let us = ns / 1_000;
        if let Some(i) = self.bounds.iter().position(|&b| us < b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(ns, Relaxed);
    }

    /// Observations per bucket (not cumulative; the last bucket's upper bound is the last
    /// bound) and the total count, which also holds those past it.
    pub fn snapshot(&self) -> ([u64; N], u64) {
        (
            std::array::from_fn(|i| self.buckets[i].load(Relaxed)),
            self.count.load(Relaxed),
        )
    }

    /// Everything the histogram holds now, with its bounds.
    pub fn read(&self) -> HistogramSnapshot<N> {
        let (buckets, count) = self.snapshot();
        HistogramSnapshot {
            bounds: self.bounds,
            buckets,
            count,
            sum_ns: self.sum_ns(),
        }
    }

    /// Total of the observations, in nanoseconds.
    pub fn sum_ns(&self) -> u64 {
        self.sum_ns.load(Relaxed)
    }

    /// Writes the histogram as one family (buckets, sum, count).
    pub fn write(&self, out: &mut Exposition, name: &str, help: &str) {
        self.read().write(out, name, help);
    }
}

impl<const N: usize> HistogramSnapshot<N> {
    /// Writes the snapshot as one family (cumulative buckets in seconds, sum, count).
    pub fn write(&self, out: &mut Exposition, name: &str, help: &str) {
        let mut f = out.family(name, Kind::Histogram, help);
        let mut cumulative = 0;
        for (n, b) in self.buckets.iter().zip(self.bounds) {
            cumulative += n;
            let le = (*b as f64 / 1e6).to_string();
            f.suffixed("_bucket", &[("le", &le)], cumulative);
        }
        f.suffixed("_bucket", &[("le", "+Inf")], self.count)
            .suffixed("_sum", &[], self.sum_ns as f64 / 1e9)
            .suffixed("_count", &[], self.count);
    }
}

/// The request path's counters.
#[derive(Default)]
pub struct Metrics {
    /// Personalised decisions.
    pub personalised: AtomicU64,
    fallbacks: [AtomicU64; FallbackReason::ALL.len()],
    /// Responses by listener, route and status.
    responses: [[[AtomicU64; STATUSES.len() + 1]; ROUTES]; 2],
    /// Time from request read to answer encoded, for `/v1/decide`.
    pub decide_latency: Histogram,
    variants: [AtomicU64; Variant::ALL.len()],
    /// Decisions made from the request's context alone (anonymous visitors): personalised,
    /// then fallback.
    anonymous: [AtomicU64; 2],
}

impl Metrics {
    /// Counts one decide answer: the variant that decided (none without a model), personalised
    /// or the fallback's reason, whether it was decided for an anonymous visitor, and its
    /// latency.
    #[inline]
    pub fn decided(
        &self,
        variant: Option<Variant>,
        fallback: Option<FallbackReason>,
        anonymous: bool,
        took: Duration,
    ) {
        if let Some(v) = variant {
            self.variants[v.index()].fetch_add(1, Relaxed);
        }
        if anonymous {
            self.anonymous[usize::from(fallback.is_some())].fetch_add(1, Relaxed);
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
            anonymous: std::array::from_fn(|i| self.anonymous[i].load(Relaxed)),
            latency: self.decide_latency.snapshot(),
        }
    }

    /// Counts an HTTP response by listener, route and status.
    #[inline]
    pub fn response(&self, listener: Listener, route: Route, status: u16) {
        let i = STATUSES
            .iter()
            .position(|s| *s == status)
            .unwrap_or(STATUSES.len());
        self.responses[listener as usize][route.0.min(ROUTES - 1)][i].fetch_add(1, Relaxed);
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
    /// Of all answers, those decided for anonymous visitors from the request's context alone:
    /// personalised, then fallback (`no_eligible_offer`, `deadline`); the rest are known
    /// customers' (or fallbacks before any customer was looked up).
    pub anonymous: [u64; 2],
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
        let mut f = out.family(
            "nextbest_anonymous_decisions_total",
            Kind::Counter,
            "Decisions made for anonymous visitors from the request's context alone, by outcome (also counted in nextbest_decisions_total).",
        );
        f.sample(&[("outcome", "personalised")], self.anonymous[0]);
        f.sample(&[("outcome", "fallback")], self.anonymous[1]);
    }
}

impl Collect for Metrics {
    fn collect(&self, out: &mut Exposition) {
        self.decisions().collect(out);
        let mut f = out.family(
            "nextbest_http_responses_total",
            Kind::Counter,
            "HTTP responses, by listener, route (`other`: any unknown path) and status; series appear once counted.",
        );
        for listener in [Listener::Public, Listener::Admin] {
            let routes = listener.routes().iter().copied().chain(["other"]);
            for (r, route) in routes.enumerate() {
                for (i, n) in self.responses[listener as usize][r].iter().enumerate() {
                    let n = n.load(Relaxed);
                    if n == 0 {
                        continue;
                    }
                    let status = STATUSES
                        .get(i)
                        .map_or_else(|| "other".into(), u16::to_string);
                    let labels = [
                        ("listener", listener.as_str()),
                        ("route", route),
                        ("status", status.as_str()),
                    ];
                    f.sample(&labels, n);
                }
            }
        }
        self.decide_latency.write(
            out,
            "nextbest_decide_duration_seconds",
            "Time to answer /v1/decide, from request read to answer encoded.",
        );
    }
}
