//! What adaptive offers learn from the event stream: impressions (trials) and the outcomes
//! credited to them (successes), per offer id, published to decisions as an immutable
//! [`Posteriors`] snapshot.
//!
//! Counting is a function of the events alone, not of any model: every offer's impressions
//! are counted, and outcomes credited (by decision id, else to the customer's last impression
//! of the offer, bucketed by delay in days up to [`MAX_WINDOW_DAYS`]), so replaying the log
//! before a model is bound, or a new model version, finds the same numbers; each scorer picks
//! its outcome, window and (with `reset`) its own model tag when it reads them. Contextual
//! offers also count by the customer's context levels, which needs to know their features: that
//! part (`contact::contextual`) counts for the models bound through [`Counts::bind`] (before the
//! log is replayed at start). Events reach [`Counts::observe`] on the log writer thread (and at
//! start, from the replay). The snapshot is rebuilt when counts change, at most every
//! [`REFRESH`], so decisions read it with one atomic load and take no lock. This module must
//! not decide or read the model registry.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use super::attribution;
use super::contextual::{Learner, Levels};
use super::event::{Event, EventKind};
use super::health::{self, Health, Ticket};
use crate::engine::adaptive::interval;
use crate::engine::policy::stable_hash;
use crate::engine::posterior::{ArmTallies, Posteriors, Tally, MAX_WINDOW_DAYS};
use crate::engine::{CompiledModel, Scorer};
use crate::features::FeatureStore;

/// The longest a decision reads counts older than the newest: the snapshot's refresh period.
pub const REFRESH: Duration = Duration::from_millis(100);
/// Bytes one remembered impression may take: key and value, the hash map's control byte and
/// load factor, and room for a map that has just doubled (an impression of a contextual offer
/// keeps 8 bytes per context feature on the heap besides).
pub const BYTES_PER_PENDING: u64 = 128;
/// Offer ids counted; impressions of further ids (no model has more offers) are not counted.
pub const MAX_ARMS: usize = 10_000;
/// Model tags remembered per offer for `reset` scorers; older tags' counts are dropped.
pub const MAX_TAGS_PER_OFFER: usize = 4;

/// How many impressions to remember for crediting within a contact memory budget: a
/// sixteenth of it. Beyond it the oldest are forgotten (their later outcomes go uncredited).
pub fn pending_capacity(memory_bytes: u64) -> usize {
    (memory_bytes / 16 / BYTES_PER_PENDING).max(1_024) as usize
}

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// The last impression of an offer to a customer, waiting for its outcome.
#[derive(Debug, Clone)]
struct Pending {
    ts_ms: i64,
    decision_id: Option<u128>,
    tag: Option<u16>,
    /// Outcomes already credited, by [`crate::engine::adaptive::Outcome`] bit.
    credited: u8,
    /// The customer's context levels, when a contextual scorer learns from the offer.
    levels: Option<Levels>,
    /// Where model health remembers the impression (its health key and ticket), for an
    /// adaptive offer.
    ticket: Option<(u64, Ticket)>,
}

/// Raw per-day counts of one offer (successes not yet cumulative).
#[derive(Debug, Clone, Default)]
struct Arm {
    all: Tally,
    by_tag: Vec<(u16, Tally)>,
}

/// An outcome that quoted its decision before the decision's impression arrived (an order
/// system posting faster than the web's batch of impressions): credited when it does.
#[derive(Debug, Clone, Copy)]
struct Early {
    decision_id: u128,
    /// Outcome bits (1 click, 2 conversion).
    bits: u8,
    ts_ms: i64,
}

#[derive(Debug, Default)]
struct Master {
    arms: HashMap<u64, Arm, foldhash::fast::FixedState>,
    pending: HashMap<(u64, u64), Pending, foldhash::fast::FixedState>,
    pending_capacity: usize,
    early: HashMap<(u64, u64), Early, foldhash::fast::FixedState>,
    context: Learner,
    /// Offers an adaptive scorer of a bound model scores, and whether it counts its own
    /// model version's decisions only (`reset`): their health is kept, so keyed.
    adaptive: HashMap<u64, bool, foldhash::fast::FixedState>,
    health: Health,
}

struct Inner {
    master: Mutex<Master>,
    published: ArcSwap<Posteriors>,
    dirty: AtomicBool,
    last: Mutex<Instant>,
}

/// The learning state of adaptive offers.
pub struct Counts {
    inner: Arc<Inner>,
}

impl Default for Counts {
    fn default() -> Self {
        Counts::new(pending_capacity(512 << 20))
    }
}

impl Counts {
    /// Empty counts remembering up to `pending_capacity` impressions for crediting, with a
    /// thread that publishes a change left pending by the rate limit.
    pub fn new(pending_capacity: usize) -> Self {
        let inner = Arc::new(Inner {
            master: Mutex::new(Master {
                pending_capacity,
                ..Master::default()
            }),
            published: ArcSwap::from_pointee(Posteriors::default()),
            dirty: AtomicBool::new(false),
            last: Mutex::new(Instant::now()),
        });
        let weak: Weak<Inner> = Arc::downgrade(&inner);
        let spawned = std::thread::Builder::new()
            .name("nextbest-adaptive".into())
            .spawn(move || loop {
                std::thread::sleep(REFRESH);
                match weak.upgrade() {
                    Some(inner) => inner.publish_if_due(),
                    None => return,
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "the adaptive counts refresher did not start; counts publish on events only");
        }
        Counts { inner }
    }

    /// Counts one event: an impression is a trial of its offer; a click or conversion is
    /// credited to the impression it follows. Other kinds change nothing.
    pub fn observe(&self, e: &Event<'_>, now_ms: i64) {
        let Some(offer) = e.offer_id else { return };
        let bit = match e.kind {
            EventKind::Impression => 0,
            EventKind::Click => 1,
            EventKind::Conversion => 2,
            _ => return,
        };
        // Impressions wait for their outcomes per subject: a visitor-only event's under the
        // visitor's own key, not the empty customer id every anonymous visitor shares.
        let customer = e.subject().with_key(stable_hash).unwrap_or_default();
        let offer_hash = stable_hash(offer);
        let mut m = self.inner.master.lock().unwrap_or_else(|p| p.into_inner());
        if bit == 0 {
            let tag = e.decision_id.map(|d| attribution::attribution(d).0);
            let levels = m
                .context
                .impression(offer_hash, e.customer_id, e.request, tag);
            let Master { arms, context, .. } = &mut *m;
            context.refresh_if_stale(offer_hash, |offer, tag, outcome, window| {
                overall(arms, offer, tag, outcome, window)
            });
            let health = m
                .adaptive
                .get(&offer_hash)
                .and_then(|&reset| health_key(offer_hash, reset, tag));
            let ticket = health.map(|key| {
                let predicted = levels
                    .as_deref()
                    .and_then(|l| m.context.predicted(offer_hash, l, tag))
                    .unwrap_or(f64::NAN);
                (key, m.health.impression(key, predicted, e.ts_ms))
            });
            let key = (customer, offer_hash);
            m.impression(key, e, tag, levels, ticket, now_ms);
            let early = m.early.get(&key).copied();
            if let Some(early) = early.filter(|x| Some(x.decision_id) == e.decision_id) {
                m.early.remove(&key);
                for bit in [1, 2].into_iter().filter(|b| early.bits & b != 0) {
                    m.credit(key, e.decision_id, early.ts_ms, bit);
                }
            }
        } else if !m.credit((customer, offer_hash), e.decision_id, e.ts_ms, bit) {
            if let Some(d) = e.decision_id {
                m.remember_early((customer, offer_hash), d, bit, e.ts_ms, now_ms);
            }
            return;
        }
        drop(m);
        self.inner.dirty.store(true, Relaxed);
        self.inner.publish_if_due();
    }

    /// The snapshot decisions read (one atomic load; no lock).
    #[inline]
    pub fn snapshot(&self) -> arc_swap::Guard<Arc<Posteriors>> {
        self.inner.published.load()
    }

    /// Publishes pending changes now, whatever the rate limit (tests, shutdown, stats).
    pub fn refresh(&self) {
        self.inner.publish();
    }

    /// Learns for the contextual scorers of these models (with their content keys) from now
    /// on, reading customers' features from `store`, the snapshot the models were compiled
    /// against; publishes at once, so their first decisions find what was learnt.
    pub fn bind(&self, models: &[(&CompiledModel, u32)], store: Arc<FeatureStore>) {
        let mut m = self.inner.master.lock().unwrap_or_else(|p| p.into_inner());
        m.context.bind(models, store);
        m.adaptive = health_modes(
            models
                .iter()
                .flat_map(|(model, _)| model.offers.iter())
                .filter_map(|o| match &o.scorer {
                    Scorer::Adaptive(a) => Some((o.id_hash, a.reset)),
                    _ => None,
                }),
        );
        drop(m);
        self.inner.publish();
    }

    /// Learns for a shadow candidate's contextual scorers beside the bound models' (`None`:
    /// no candidate), with the content key its decisions read under; publishes at once.
    pub fn bind_shadow(&self, model: Option<(&CompiledModel, u32)>) {
        let mut m = self.inner.master.lock().unwrap_or_else(|p| p.into_inner());
        m.context.bind_shadow(model);
        drop(m);
        self.inner.publish();
    }

    /// What an adaptive offer's recent impressions say of its predictions of `outcome`; a
    /// `reset` offer's, of the decisions of the model version `tag` only, as its counts.
    pub fn health(
        &self,
        offer_hash: u64,
        tag: u16,
        outcome: crate::engine::adaptive::Outcome,
    ) -> health::Report {
        let m = self.inner.master.lock().unwrap_or_else(|p| p.into_inner());
        let reset = m.adaptive.get(&offer_hash).copied().unwrap_or(false);
        let key = health_key(offer_hash, reset, Some(tag)).unwrap_or(offer_hash);
        m.health.report(key, 1 << outcome as u8)
    }
}

impl super::Subscriber for Counts {
    /// Learns from every source: the fleet's impressions and outcomes teach every replica.
    fn event(&self, e: &Event<'_>, _origin: super::Origin, now_ms: i64) {
        self.observe(e, now_ms);
    }

    fn settled(&self) {
        self.refresh();
    }
}

impl Inner {
    fn publish_if_due(&self) {
        if !self.dirty.load(Relaxed) {
            return;
        }
        let due = {
            let last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            last.elapsed() >= REFRESH
        };
        if due {
            self.publish();
        }
    }

    fn publish(&self) {
        self.dirty.store(false, Relaxed);
        let snapshot = {
            let mut m = self.master.lock().unwrap_or_else(|p| p.into_inner());
            let Master { arms, context, .. } = &mut *m;
            let context = context
                .publish(|offer, tag, outcome, window| overall(arms, offer, tag, outcome, window));
            Posteriors {
                context,
                arms: m
                    .arms
                    .iter()
                    .map(|(k, a)| {
                        let tallies = ArmTallies {
                            all: cumulative(&a.all),
                            by_tag: a.by_tag.iter().map(|(t, x)| (*t, cumulative(x))).collect(),
                        };
                        (*k, tallies)
                    })
                    .collect(),
            }
        };
        self.published.store(Arc::new(snapshot));
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }
}

/// An offer's context-free impressions and outcomes credited within `window` days: for all
/// its decisions, or (with `tag`) those of one model version.
fn overall(
    arms: &HashMap<u64, Arm, foldhash::fast::FixedState>,
    offer: u64,
    tag: Option<u16>,
    outcome: crate::engine::adaptive::Outcome,
    window: u8,
) -> (u64, u64) {
    let arm = arms.get(&offer);
    let t = match tag {
        None => arm.map(|a| &a.all),
        Some(tag) => arm.and_then(|a| a.by_tag.iter().find(|t| t.0 == tag).map(|t| &t.1)),
    };
    t.map_or((0, 0), |t| {
        let days = &t.successes[outcome as usize][..=usize::from(window).min(MAX_WINDOW_DAYS)];
        (t.trials, days.iter().sum())
    })
}

impl Master {
    fn impression(
        &mut self,
        key: (u64, u64),
        e: &Event<'_>,
        tag: Option<u16>,
        levels: Option<Levels>,
        ticket: Option<(u64, Ticket)>,
        now_ms: i64,
    ) {
        if self.arms.len() >= MAX_ARMS && !self.arms.contains_key(&key.1) {
            return;
        }
        let arm = self.arms.entry(key.1).or_default();
        arm.all.trials += 1;
        if let Some(t) = tag {
            tagged(&mut arm.by_tag, t).trials += 1;
        }
        make_room(
            &mut self.pending,
            self.pending_capacity,
            &key,
            now_ms,
            |p| p.ts_ms,
        );
        self.pending.insert(
            key,
            Pending {
                ts_ms: e.ts_ms,
                decision_id: e.decision_id,
                tag,
                credited: 0,
                levels,
                ticket,
            },
        );
    }

    /// Remembers an outcome quoting `decision_id` that found no impression of it to credit,
    /// for when the impression arrives; bounded like the impressions waiting for outcomes.
    fn remember_early(&mut self, key: (u64, u64), decision_id: u128, bit: u8, ts: i64, now: i64) {
        if self.pending.get(&key).and_then(|p| p.decision_id) == Some(decision_id) {
            // Its impression is here and was credited already: a repeat.
            return;
        }
        let cap = (self.pending_capacity / 8).max(1_024);
        make_room(&mut self.early, cap, &key, now, |x| x.ts_ms);
        let fresh = Early {
            decision_id,
            bits: 0,
            ts_ms: ts,
        };
        let x = self.early.entry(key).or_insert(fresh);
        if x.decision_id != decision_id {
            *x = fresh;
        }
        x.bits |= bit;
    }

    /// Credits an outcome (quoting `decision_id`, at `ts_ms`) to the impression it follows;
    /// false when there is none to credit.
    fn credit(&mut self, key: (u64, u64), decision_id: Option<u128>, ts_ms: i64, bit: u8) -> bool {
        let Some(p) = self.pending.get_mut(&key) else {
            return false;
        };
        if p.credited & bit != 0 {
            return false;
        }
        let day = match (decision_id, p.decision_id) {
            (Some(a), Some(b)) if a == b => 0,
            _ => {
                let delay = ts_ms - p.ts_ms;
                if !(0..=MAX_WINDOW_DAYS as i64 * DAY_MS).contains(&delay) {
                    return false;
                }
                // Within a day counts in window 1, and so on: a window of d days is [0, d].
                ((delay + DAY_MS - 1) / DAY_MS).max(1) as usize
            }
        };
        p.credited |= bit;
        if let Some((health, t)) = p.ticket {
            self.health.outcome(health, t, bit, ts_ms.max(p.ts_ms));
        }
        let (tag, kind) = (p.tag, usize::from(bit - 1));
        if let Some(levels) = &p.levels {
            self.context.credit(key.1, levels, tag, day, kind);
        }
        let arm = self.arms.entry(key.1).or_default();
        arm.all.successes[kind][day] += 1;
        if let Some(t) = tag {
            tagged(&mut arm.by_tag, t).successes[kind][day] += 1;
        }
        true
    }
}

/// Makes room for `key` in a map of at most `cap` entries waiting for outcomes: what is past
/// the longest credit window goes first, then, still full of live entries, the older half.
fn make_room<V>(
    map: &mut HashMap<(u64, u64), V, foldhash::fast::FixedState>,
    cap: usize,
    key: &(u64, u64),
    now_ms: i64,
    ts_of: impl Fn(&V) -> i64,
) {
    if map.len() < cap || map.contains_key(key) {
        return;
    }
    let horizon = now_ms.saturating_sub(MAX_WINDOW_DAYS as i64 * DAY_MS);
    map.retain(|_, v| ts_of(v) >= horizon);
    if map.len() >= cap {
        let mut ts: Vec<i64> = map.values().map(&ts_of).collect();
        let mid = ts.len() / 2;
        let cut = *ts.select_nth_unstable(mid).1;
        map.retain(|_, v| ts_of(v) > cut);
    }
}

/// The tally of one model tag, made (dropping the oldest tag when full) if new.
fn tagged(by_tag: &mut Vec<(u16, Tally)>, tag: u16) -> &mut Tally {
    let at = match by_tag.iter().position(|t| t.0 == tag) {
        Some(i) => i,
        None => {
            if by_tag.len() >= MAX_TAGS_PER_OFFER {
                by_tag.remove(0);
            }
            by_tag.push((tag, Tally::default()));
            by_tag.len() - 1
        }
    };
    &mut by_tag[at].1
}

/// Per-day successes turned into "within d days" sums, as scorers read them.
fn cumulative(t: &Tally) -> Tally {
    let mut out = *t;
    for kind in &mut out.successes {
        for d in 1..kind.len() {
            kind[d] += kind[d - 1];
        }
    }
    out
}

/// `/admin/stats`' `adaptive` rows: per adaptive offer of each serving model (with its
/// variant name), its trials, successes, posterior mean and 95 % interval, and its health:
/// what its recent impressions say of its predictions, its top predictors, and a verdict an
/// analyst reads first.
pub fn stats_json<'m>(
    models: impl Iterator<Item = (&'m CompiledModel, &'static str, u32)>,
    counts: &Counts,
) -> serde_json::Value {
    let posteriors = counts.snapshot();
    let mut rows = Vec::new();
    for (model, variant, key) in models {
        let tag = attribution::model_tag(key);
        for o in model.offers.iter() {
            let Scorer::Adaptive(a) = &o.scorer else {
                continue;
            };
            let (trials, successes) = posteriors
                .tally(o.id_hash, a.reset.then_some(tag))
                .map_or((0, 0), |t| a.counts(t));
            let alpha = a.alpha + successes as f64;
            let beta = a.beta + trials.saturating_sub(successes) as f64;
            let (mean, lo, hi) = interval(alpha, beta);
            let predictors = top_predictors(a, o.id_hash, tag, &posteriors);
            let health = counts.health(o.id_hash, tag, a.outcome);
            rows.push(serde_json::json!({
                "offer_id": &*o.id,
                "variant": variant,
                "outcome": a.outcome.as_str(),
                "contextual": a.context.is_some(),
                "trials": trials,
                "successes": successes,
                "posterior_mean": mean,
                "interval_95": [lo, hi],
                "health": {
                    "verdict": verdict(a.context.is_some(), trials, &health, &predictors),
                    "recent": health,
                    "top_predictors": predictors
                        .iter()
                        .map(|(feature, spread)| {
                            serde_json::json!({"feature": feature, "log_odds_spread": spread})
                        })
                        .collect::<Vec<_>>(),
                },
            }));
        }
    }
    rows.into()
}

/// A contextual offer's features by how far apart their learnt bins put customers (log-odds),
/// largest first.
fn top_predictors<'a>(
    a: &'a crate::engine::adaptive::Adaptive,
    offer_hash: u64,
    tag: u16,
    posteriors: &Posteriors,
) -> Vec<(&'a str, f64)> {
    let Some(c) = &a.context else {
        return Vec::new();
    };
    let key = c.posterior_key(offer_hash, a.reset.then_some(tag));
    let Some(p) = posteriors.context.get(&key) else {
        return Vec::new();
    };
    let mut named: Vec<(&str, f64)> = c
        .features
        .iter()
        .zip(p.features.iter())
        .map(|(f, b)| (&*f.name, b.spread()))
        .collect();
    named.sort_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(y.0)));
    named
}

/// Per adaptive offer (by id hash, with `reset` per scoring model): whether its health is kept
/// per model version. An offer some model scores without `reset` keeps one health for all.
fn health_modes(
    offers: impl Iterator<Item = (u64, bool)>,
) -> HashMap<u64, bool, foldhash::fast::FixedState> {
    let mut by_offer = HashMap::default();
    for (offer, reset) in offers {
        *by_offer.entry(offer).or_insert(true) &= reset;
    }
    by_offer
}

/// Where health keeps an offer's impressions: by offer, and for a `reset` offer by offer and
/// model version, since its counts start over with each version (an impression without a
/// decision id belongs to no version, and is not kept for it).
fn health_key(offer_hash: u64, reset: bool, tag: Option<u16>) -> Option<u64> {
    match (reset, tag) {
        (false, _) => Some(offer_hash),
        (true, Some(t)) => {
            Some(offer_hash ^ (u64::from(t) + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15))
        }
        (true, None) => None,
    }
}

/// Fewest impressions before a verdict on learning.
const MIN_TRIALS_FOR_VERDICT: u64 = 200;
/// An AUC below this among recent impressions does not show ranking.
const MIN_AUC: f64 = 0.55;
/// A learnt spread (log-odds between the customers the offer's terms put furthest apart) that
/// tells customers apart: a factor of about 1.6 in the odds.
const MIN_SPREAD: f64 = 0.5;

/// One line on whether the offer learns: enough evidence, and for a contextual offer, whether
/// its predictions rank responders above the rest. An offer that learnt to tell customers
/// apart (`predictors`: each feature's learnt spread, largest first; their sum is how far apart
/// its additive terms can put two customers) shows itself to those it rates highest, so its
/// recent impressions may span a narrow band of predictions, among which no AUC can show
/// ranking: that is targeting, said as such, not "not separating".
fn verdict(
    contextual: bool,
    trials: u64,
    h: &health::Report,
    predictors: &[(&str, f64)],
) -> String {
    if trials < MIN_TRIALS_FOR_VERDICT {
        return format!("gathering evidence ({trials} of {MIN_TRIALS_FOR_VERDICT} impressions)");
    }
    if !contextual {
        return "learning one propensity for everybody (context-free: nothing to rank)".into();
    }
    let auc = match h.auc {
        None => return "too few outcomes among recent impressions to judge ranking".into(),
        Some(auc) if auc >= MIN_AUC => {
            return format!("learning: ranks responders above the rest (AUC {auc:.2})")
        }
        Some(auc) => auc,
    };
    // The log-odds between the lowest and the highest fifth of recent predictions.
    let logit = |p: f64| (p / (1.0 - p)).ln();
    let band = match (h.calibration.first(), h.calibration.last()) {
        (Some(lo), Some(hi)) => Some((lo.predicted, hi.predicted)),
        _ => None,
    };
    let spread: f64 = predictors.iter().map(|p| p.1).sum();
    match (predictors.first(), band) {
        (Some((feature, _)), Some((lo, hi)))
            if spread >= MIN_SPREAD && logit(hi) - logit(lo) < spread / 2.0 =>
        {
            format!(
                "learning, and targeting: it puts customers up to {spread:.1} log-odds apart \
                 (most by `{feature}`), and its recent impressions went to those it rates alike \
                 ({:.1} % to {:.1} % predicted), among whom the AUC ({auc:.2}) cannot show \
                 ranking",
                lo * 100.0,
                hi * 100.0
            )
        }
        _ => format!("not separating customers (AUC {auc:.2}, 0.5 is chance)"),
    }
}

#[cfg(test)]
mod tests;
