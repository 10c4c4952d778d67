//! What contextual adaptive offers learn, and the bins decisions draw from.
//!
//! The learner is per-predictor binned naive Bayes, as Pega's adaptive models use, with
//! empirical-Bayes shrinkage: for each offer and `context` feature it counts impressions and
//! credited outcomes by the *level* the customer's value falls on ([`number_level`],
//! [`text_level`]; missing values have a level of their own). When counts change, it merges a
//! number's levels into at most [`MAX_BINS`] bins of equal traffic (so the bins follow the range
//! and spread of the values shown, whatever their scale) and keeps a string's most shown values
//! as bins of their own ([`MAX_TEXT_BINS`], the rest sharing one). Each bin's log-odds contrast
//! against the feature's overall rate is shrunk by how much the feature's bins differ beyond
//! their noise: a feature that tells nothing adds nothing, not even noise, and one that tells a
//! lot keeps its contrasts. `examples/contextual_sim.rs` compares this learner with Bayesian
//! logistic regression (online Laplace, diagonal) and records why it was chosen.
//!
//! Counts are sums over events, so the same events give the same model in any order: every
//! replica of a fleet, and a restart replaying the log, reach the same posterior. A series (an
//! offer's counts by one feature) is counted from the first binding that names it and for good
//! after, whatever is bound later, so unbinding never leaves a gap; a series first bound live
//! misses the events before, which a restart's replay counts.
//!
//! **Which features are learnt from.** A request value (`context.<key>`) is the one the
//! decision saw: the replica that made the decision recorded its level, and wrote it into the
//! impression's log record (`contact::requests`), so a replay of the log and the other replicas
//! learn from the same value. An impression without it (posted to a replica that did not make
//! the decision, too long after it, or quoting no decision) counts as missing for the request
//! features, in their missing bin, like a customer without a value. A request feature's kind is
//! the request's: its bins are strings' when most values counted were strings, else numbers'.
//!
//! A decision's snapshot features are the customer's row in the snapshot the decision read.
//! The learner reads the row when the *impression* is applied, from the snapshot bound then,
//! and keeps the levels with the impression until its outcome is credited. That is the
//! decision's row whenever no new snapshot was swapped in between the decision and its
//! impression (a channel posts the impression within seconds; snapshots change daily). An
//! impression replayed from the log at start, or arriving from another replica, is read against
//! the snapshot serving when it is applied: after a snapshot change, older impressions learn
//! from the customer's newer values.
//!
//! This module must not decide, read the registry, or lock anything itself: [`Learner`] lives
//! inside the adaptive counts' state, under their lock, on the thread that applies events.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use foldhash::fast::FixedState;

use super::event::RequestLevels;
use crate::engine::adaptive::Outcome;
use crate::engine::contextual::{feature_id, number_level, text_level, Source};
use crate::engine::posterior::{sigmoid, Bins, ContextPosterior, Moments, Term, MISSING, TEXT_BIT};
use crate::engine::{CompiledModel, Scorer};
use crate::features::FeatureStore;

/// Most bins a number's levels are merged into.
pub const MAX_BINS: usize = 8;
/// Most string values with a bin of their own; the rest share one.
pub const MAX_TEXT_BINS: usize = 32;
/// Most distinct levels counted per offer and feature (a number spanning 30 octaves has 480);
/// values past it count in the totals only.
pub const MAX_LEVELS: usize = 512;
/// Most (offer, feature, window, model tag) series counted: with [`MAX_LEVELS`], at most about
/// 64 MiB of counts (a few kilobytes a series in practice).
pub const MAX_SERIES: usize = 4_096;
/// The pseudo-successes a bin's rate starts from, at the offer's rate: how much a few outcomes
/// in one bin may move its contrast.
const BIN_PRIOR_SUCCESSES: f64 = 2.0;

/// What decisions read: each bound scorer's posterior by its key.
type Published = hashbrown::HashMap<u64, Arc<ContextPosterior>, FixedState>;

/// A customer's level of each context feature of an offer (by [`feature_id`]), kept with its
/// impression: 8 bytes a feature.
pub(super) type Levels = Box<[(u32, u32)]>;

/// One offer's counts of one feature, for one credit window (and model tag, for `reset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct SeriesKey {
    offer: u64,
    feature: u32,
    window_days: u8,
    tag: Option<u16>,
}

/// Counts by level: `[impressions, clicks, conversions]`.
#[derive(Debug, Default)]
struct Series {
    levels: HashMap<u32, [u64; 3], FixedState>,
    total: [u64; 3],
}

impl Series {
    /// True when most values counted (missing ones aside) were strings: how a request value,
    /// whose kind the model does not say, is binned.
    fn mostly_text(&self) -> bool {
        let (mut text, mut number) = (0u64, 0u64);
        for (level, c) in &self.levels {
            match *level {
                MISSING => {}
                l if l & TEXT_BIT != 0 => text += c[0],
                _ => number += c[0],
            }
        }
        text > number
    }

    fn count(&mut self, level: u32, kind: usize) {
        self.total[kind] += 1;
        let full = self.levels.len() >= MAX_LEVELS;
        match self.levels.get_mut(&level) {
            Some(c) => c[kind] += 1,
            None if !full => {
                let mut c = [0; 3];
                c[kind] = 1;
                self.levels.insert(level, c);
            }
            None => {}
        }
    }
}

/// How to read one feature of an impression: a column of the customer's row (found by name in
/// each snapshot bound; `None` when it has no such column), or the request levels its decision
/// recorded.
#[derive(Debug, Clone)]
struct Read {
    feature: u32,
    name: Box<str>,
    column: Option<u32>,
    request: bool,
}

/// What an offer's impressions record and count in.
#[derive(Debug, Default)]
struct Interest {
    reads: Vec<Read>,
    series: Vec<SeriesKey>,
    /// Impressions counted, and how many of them its posteriors were last built from.
    seen: u64,
    built_from: u64,
}

/// One bound contextual scorer.
#[derive(Debug)]
struct Spec {
    /// The key its posterior is published under.
    key: u64,
    offer: u64,
    outcome: Outcome,
    window_days: u8,
    alpha: f64,
    beta: f64,
    tag: Option<u16>,
    /// Per context feature, in the scorer's order: its series, and whether it holds strings
    /// (`None` for a request value: as its counts say).
    series: Vec<(SeriesKey, Option<bool>)>,
}

/// The contextual part of the adaptive counts.
#[derive(Debug, Default)]
pub(super) struct Learner {
    store: Option<Arc<FeatureStore>>,
    specs: Vec<Spec>,
    /// A shadow candidate's, published beside them (never predicted for model health).
    shadow_specs: Vec<Spec>,
    offers: HashMap<u64, Interest, FixedState>,
    series: HashMap<SeriesKey, Series, FixedState>,
    /// Offers counted since the last publish.
    dirty: HashSet<u64, FixedState>,
    /// The posteriors last built, by key.
    built: Published,
}

impl Learner {
    /// Learns for the contextual scorers of these models (with their content keys), reading
    /// customers from `store` (the snapshot they were compiled against) from now on. What was
    /// counted before keeps counting, bound or not: a feature dropped from an offer's context
    /// and added back, or a `reset` version in between, finds every event counted, as a
    /// restart replaying the log does.
    pub(super) fn bind(&mut self, models: &[(&CompiledModel, u32)], store: Arc<FeatureStore>) {
        for interest in self.offers.values_mut() {
            for r in interest.reads.iter_mut().filter(|r| !r.request) {
                r.column = store.column(&r.name).map(|c| c as u32);
            }
        }
        self.specs = self.specs_of(models);
        self.store = Some(store);
    }

    /// Learns for a shadow candidate's contextual scorers too (`None` ends it), so its offers
    /// draw from what their own context lists learnt; it was compiled against the snapshot
    /// serving, which [`Learner::bind`] gave.
    pub(super) fn bind_shadow(&mut self, model: Option<(&CompiledModel, u32)>) {
        self.shadow_specs = match model {
            Some(m) => self.specs_of(&[m]),
            None => Vec::new(),
        };
    }

    /// The specs of these models' contextual scorers, their offers' reads and series added
    /// to what is counted.
    fn specs_of(&mut self, models: &[(&CompiledModel, u32)]) -> Vec<Spec> {
        let mut specs = Vec::new();
        for (model, key) in models {
            let tag = crate::contact::attribution::model_tag(*key);
            for o in model.offers.iter() {
                let Scorer::Adaptive(a) = &o.scorer else {
                    continue;
                };
                let Some(ctx) = &a.context else { continue };
                let reset = a.reset.then_some(tag);
                let mut spec = Spec {
                    key: ctx.posterior_key(o.id_hash, reset),
                    offer: o.id_hash,
                    outcome: a.outcome,
                    window_days: a.window_days,
                    alpha: a.alpha,
                    beta: a.beta,
                    tag: reset,
                    series: Vec::with_capacity(ctx.features.len()),
                };
                let interest = self.offers.entry(o.id_hash).or_default();
                for f in ctx.features.iter() {
                    let feature = feature_id(&f.name);
                    let key = SeriesKey {
                        offer: o.id_hash,
                        feature,
                        window_days: a.window_days,
                        tag: reset,
                    };
                    let (column, text) = match &f.source {
                        Source::Column { column, text } => (Some(*column), Some(text.is_some())),
                        Source::Request { .. } => (None, None),
                    };
                    if !interest.reads.iter().any(|r| r.feature == feature) {
                        interest.reads.push(Read {
                            feature,
                            name: f.name.clone(),
                            column,
                            request: text.is_none(),
                        });
                    }
                    let known = self.series.contains_key(&key);
                    if !known && self.series.len() < MAX_SERIES {
                        self.series.insert(key, Series::default());
                    }
                    if !interest.series.contains(&key) && self.series.contains_key(&key) {
                        interest.series.push(key);
                    }
                    spec.series.push((key, text));
                }
                self.dirty.insert(o.id_hash);
                specs.push(spec);
            }
        }
        specs
    }

    /// Counts an impression of an offer, when a contextual scorer learns from it: returns the
    /// customer's levels (snapshot values, and the request values its decision recorded), to
    /// keep with the impression for its outcome.
    pub(super) fn impression(
        &mut self,
        offer: u64,
        customer_id: &str,
        request: Option<RequestLevels<'_>>,
        tag: Option<u16>,
    ) -> Option<Levels> {
        let interest = self.offers.get_mut(&offer)?;
        interest.seen += 1;
        let interest = &*interest;
        let store = self.store.as_deref();
        let row = store.and_then(|s| s.row(customer_id));
        let levels: Levels = interest
            .reads
            .iter()
            .map(|r| {
                let level = match (r.request, r.column) {
                    (true, _) => request.and_then(|q| q.get(r.feature)).unwrap_or(MISSING),
                    (false, Some(column)) => level_of(store, row, column),
                    (false, None) => MISSING,
                };
                (r.feature, level)
            })
            .collect();
        for key in &interest.series {
            if key.tag.is_some() && key.tag != tag {
                continue;
            }
            if let (Some(s), Some(level)) = (self.series.get_mut(key), find(&levels, key.feature)) {
                s.count(level, 0);
            }
        }
        self.dirty.insert(offer);
        Some(levels)
    }

    /// Credits an outcome (`kind` 0 for a click, 1 for a conversion) `day` days after its
    /// impression (0: by decision id) to the levels kept with it, in every series whose
    /// window holds it.
    pub(super) fn credit(
        &mut self,
        offer: u64,
        levels: &[(u32, u32)],
        tag: Option<u16>,
        day: usize,
        kind: usize,
    ) {
        let Some(interest) = self.offers.get(&offer) else {
            return;
        };
        for key in &interest.series {
            if (key.tag.is_some() && key.tag != tag) || day > usize::from(key.window_days) {
                continue;
            }
            if let (Some(s), Some(level)) = (self.series.get_mut(key), find(levels, key.feature)) {
                s.count(level, kind + 1);
            }
        }
        self.dirty.insert(offer);
    }

    /// The posteriors of every bound scorer, rebuilding those whose offer was counted since
    /// the last call. `overall(offer, tag, outcome, window)` gives the offer's context-free
    /// impressions and credited outcomes.
    pub(super) fn publish(
        &mut self,
        overall: impl Fn(u64, Option<u16>, Outcome, u8) -> (u64, u64),
    ) -> Published {
        let mut out = Published::with_capacity_and_hasher(self.specs.len(), FixedState::default());
        for spec in self.specs.iter().chain(&self.shadow_specs) {
            if out.contains_key(&spec.key) {
                continue;
            }
            let fresh = match self.built.get(&spec.key) {
                Some(p) if !self.dirty.contains(&spec.offer) => p.clone(),
                _ => {
                    let (trials, successes) =
                        overall(spec.offer, spec.tag, spec.outcome, spec.window_days);
                    Arc::new(self.build(spec, trials, successes))
                }
            };
            out.insert(spec.key, fresh);
        }
        for offer in self.dirty.drain() {
            if let Some(i) = self.offers.get_mut(&offer) {
                i.built_from = i.seen;
            }
        }
        self.built = out.clone();
        out
    }

    /// Rebuilds one offer's posteriors in place when they were built from less than 95 % of
    /// its impressions (and at least 50 are new): its predictions would lag what it learnt.
    /// Publishing follows the clock, which a replay of the log at start outruns; this follows
    /// the evidence, for the one offer an impression is predicted for.
    pub(super) fn refresh_if_stale(
        &mut self,
        offer: u64,
        overall: impl Fn(u64, Option<u16>, Outcome, u8) -> (u64, u64),
    ) {
        let Some(i) = self.offers.get_mut(&offer) else {
            return;
        };
        if i.seen - i.built_from <= (i.built_from / 20).max(50) {
            return;
        }
        i.built_from = i.seen;
        // Built now: the next publish reuses these.
        self.dirty.remove(&offer);
        for spec in self
            .specs
            .iter()
            .chain(&self.shadow_specs)
            .filter(|s| s.offer == offer)
        {
            let (trials, successes) = overall(spec.offer, spec.tag, spec.outcome, spec.window_days);
            let built = Arc::new(self.build(spec, trials, successes));
            self.built.insert(spec.key, built);
        }
    }

    fn build(&self, spec: &Spec, trials: u64, successes: u64) -> ContextPosterior {
        let a = spec.alpha + successes as f64;
        let b = spec.beta + trials.saturating_sub(successes) as f64;
        let kind = spec.outcome as usize + 1;
        ContextPosterior {
            overall: Moments {
                mean: (a / b).ln(),
                variance: 1.0 / a + 1.0 / b,
            },
            trials,
            successes,
            features: spec
                .series
                .iter()
                .map(|(key, text)| match self.series.get(key) {
                    Some(s) => {
                        let text = text.unwrap_or_else(|| s.mostly_text());
                        bins(s, kind, text, spec.alpha, spec.beta)
                    }
                    None => Bins::Number {
                        bounds: Box::default(),
                        terms: Box::new([Term::default()]),
                        missing: Term::default(),
                    },
                })
                .collect(),
        }
    }
}

impl Learner {
    /// The propensity an offer's learner predicts for the levels kept with an impression (its
    /// posterior mean on the log-odds scale, through the logistic), from the posteriors last
    /// built, or its prior before any; `None` when no contextual scorer learns from the offer.
    pub(super) fn predicted(
        &self,
        offer: u64,
        levels: &[(u32, u32)],
        tag: Option<u16>,
    ) -> Option<f64> {
        let spec = self
            .specs
            .iter()
            .find(|s| s.offer == offer && (s.tag.is_none() || s.tag == tag))?;
        let Some(p) = self.built.get(&spec.key) else {
            return Some(spec.alpha / (spec.alpha + spec.beta));
        };
        let mut mean = p.overall.mean;
        for ((key, _), bins) in spec.series.iter().zip(p.features.iter()) {
            if let Some(level) = find(levels, key.feature) {
                mean += bins.term(level).log_odds;
            }
        }
        Some(sigmoid(mean))
    }
}

/// The level kept for a feature, if the impression recorded it.
fn find(levels: &[(u32, u32)], feature: u32) -> Option<u32> {
    levels.iter().find(|l| l.0 == feature).map(|l| l.1)
}

/// The level of a customer's value in a column, read as the engine reads it.
fn level_of(store: Option<&FeatureStore>, row: Option<&[f32]>, column: u32) -> u32 {
    let x = row
        .and_then(|r| r.get(column as usize))
        .copied()
        .unwrap_or(f32::NAN);
    if x.is_nan() {
        return MISSING;
    }
    match store.and_then(|s| s.dictionary(column as usize)) {
        Some(d) => d.value_of(x).map_or(MISSING, text_level),
        None => number_level(x),
    }
}

/// One bin's counts: impressions and successes.
type Cell = (u64, u64);

/// A feature's bins and what each adds to the log-odds, from its counts by level.
fn bins(s: &Series, kind: usize, text: bool, alpha: f64, beta: f64) -> Bins {
    let (n, k) = (s.total[0], s.total[kind]);
    // The feature's overall rate, with the scorer's prior: the bins' contrasts are against it.
    let rate = (alpha + k as f64) / (alpha + beta + n as f64);
    let cell = |c: &[u64; 3]| (c[0], c[kind]);
    let missing = s.levels.get(&MISSING).map_or((0, 0), cell);
    let mut cells: Vec<Cell> = Vec::new();
    let bins = if text {
        let mut by_trials: Vec<(u32, Cell)> = s
            .levels
            .iter()
            .filter(|(l, _)| **l != MISSING)
            .map(|(l, c)| (*l, cell(c)))
            .collect();
        by_trials.sort_unstable_by(|a, b| b.1 .0.cmp(&a.1 .0).then(a.0.cmp(&b.0)));
        let mut levels = Vec::new();
        let mut other = (0, 0);
        for (i, (level, c)) in by_trials.into_iter().enumerate() {
            if i < MAX_TEXT_BINS {
                levels.push((level, cells.len() as u32));
                cells.push(c);
            } else {
                other = add(other, c);
            }
        }
        levels.sort_unstable();
        cells.push(other);
        Draft::Text(levels.into())
    } else {
        let mut by_level: Vec<(u32, Cell)> = s
            .levels
            .iter()
            .filter(|(l, _)| **l != MISSING)
            .map(|(l, c)| (*l, cell(c)))
            .collect();
        by_level.sort_unstable_by_key(|e| e.0);
        let shown: u64 = by_level.iter().map(|e| e.1 .0).sum();
        let per_bin = shown.div_ceil(MAX_BINS as u64).max(1);
        let mut bounds = Vec::new();
        let mut acc = (0, 0);
        for (i, (level, c)) in by_level.iter().enumerate() {
            if acc.0 >= per_bin && i > 0 {
                bounds.push(*level);
                cells.push(acc);
                acc = (0, 0);
            }
            acc = add(acc, *c);
        }
        cells.push(acc);
        Draft::Number(bounds.into())
    };
    cells.push(missing);
    let terms = shrink(&cells, rate);
    let (last, rest) = terms
        .split_last()
        .map_or((Term::default(), &[][..]), |(l, r)| (*l, r));
    match bins {
        Draft::Text(levels) => {
            let (other, named) = rest
                .split_last()
                .map_or((Term::default(), &[][..]), |(o, n)| (*o, n));
            Bins::Text {
                levels,
                terms: named.into(),
                missing: last,
                other,
            }
        }
        Draft::Number(bounds) => Bins::Number {
            bounds,
            terms: rest.into(),
            missing: last,
        },
    }
}

enum Draft {
    Text(Box<[(u32, u32)]>),
    Number(Box<[u32]>),
}

fn add(a: Cell, b: Cell) -> Cell {
    (a.0 + b.0, a.1 + b.1)
}

/// Each bin's log-odds contrast against `rate` and its variance, shrunk toward 0 by the spread
/// the bins show beyond their noise (method of moments over the bins, weighted by traffic).
fn shrink(cells: &[Cell], rate: f64) -> Vec<Term> {
    let base = (rate / (1.0 - rate)).ln();
    let raw: Vec<(f64, f64, f64)> = cells
        .iter()
        .map(|&(n, k)| {
            let a = BIN_PRIOR_SUCCESSES + k as f64;
            let b = BIN_PRIOR_SUCCESSES * (1.0 - rate) / rate + n.saturating_sub(k) as f64;
            ((a / b).ln() - base, 1.0 / a + 1.0 / b, n as f64)
        })
        .collect();
    let weight: f64 = raw.iter().map(|r| r.2).sum();
    let spread = if weight > 0.0 {
        (raw.iter().map(|(d, v, n)| n * (d * d - v)).sum::<f64>() / weight).max(0.0)
    } else {
        0.0
    };
    raw.iter()
        .map(|(d, v, _)| {
            if spread == 0.0 {
                Term::default()
            } else {
                Term {
                    log_odds: d * spread / (spread + v),
                    variance: spread * v / (spread + v),
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
