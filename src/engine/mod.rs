//! The decision: eligibility → scoring → contact policy → arbitration → top N.
//!
//! Everything here is a pure, synchronous function of (compiled model, features, contact view,
//! request, now): no I/O, no await, no clock reads, no locks. That is what lets the server call
//! it inline on a runtime worker, criterion bench it, and batch jobs reuse the very same rules.
//! Names (offers, features, context keys, channels) were resolved to indices when the model was
//! compiled; the only lookups left are the request's channel and placement among a handful.

pub mod adaptive;
pub mod contextual;
mod explain;
pub mod explore;
mod fallback;
pub mod policy;
pub mod posterior;
pub mod rules;
pub mod scorer;
pub mod shown;
pub mod trees;

use std::borrow::Cow;

use explain::{explain_unreached, not_candidate_reason, with_tested_value};
pub use fallback::{BuiltinChannel, BuiltinFallback, Fallback, FallbackReason, FallbackStage};
pub use policy::{OfferCaps, Policies};
pub use rules::{CmpOp, CtxValue, Interval, Operand, Rule, RuleInput, Test, What};
pub use scorer::{ClassCache, ClassScorer, Logistic, Scorer};

use crate::features::{FeatureRow, FeatureStore};

/// Most offers one answer may hold, whatever the request asks.
pub const MAX_LIMIT: usize = 50;
/// Most distinct context keys a model may test (they live in a fixed array per request).
pub const MAX_CONTEXT_KEYS: usize = 16;
/// How many offers are evaluated between two deadline checks.
pub const BUDGET_CHECK_EVERY: usize = 8;

/// One offer in engine form.
#[derive(Debug)]
pub struct Offer {
    /// The offer id as the model names it.
    pub id: Box<str>,
    /// The id as a JSON string literal, escaped once at load.
    pub id_json: Box<str>,
    /// `sales`, `service`, `retention`, ...
    pub category: Box<str>,
    /// Business value of a conversion: the constant, or the default when `value_from` is set
    /// and the customer's value is missing.
    pub value: f64,
    /// The snapshot column a customer's value comes from (`"value": {"feature": ..}`).
    pub value_from: Option<u32>,
    /// The highest value any customer of the snapshot has (the constant when there is no
    /// `value_from`): what the score bound multiplies.
    pub value_max: f64,
    /// Arbitration multiplier the CVM team sets.
    pub priority: f64,
    /// Validity window in Unix milliseconds, `[from, until)`.
    pub valid_from_ms: i64,
    /// End of the validity window (exclusive).
    pub valid_until_ms: i64,
    /// Eligibility; `None` is always eligible.
    pub rule: Option<Rule>,
    /// Propensity model.
    pub scorer: Scorer,
    /// Bit `c` set when the offer is shown on channel index `c`.
    pub channel_mask: u64,
    /// Pre-encoded `content` object per channel index (`None` off that channel).
    pub content_json: Box<[Option<Box<str>>]>,
    /// [`policy::stable_hash`] of `id`: how contact history names the offer without strings.
    pub id_hash: u64,
    /// Contact policies for this offer, the model's defaults applied.
    pub caps: OfferCaps,
}

impl Offer {
    /// The highest score the offer could reach: its propensity is at most 1.
    #[inline]
    pub fn score_bound(&self) -> f64 {
        self.value_max * self.priority
    }

    /// The value of a conversion for this customer: the snapshot column's value where the
    /// offer takes it from one and the customer has it, else the constant (or default).
    #[inline]
    pub fn value_for(&self, row: FeatureRow<'_>) -> f64 {
        match self.value_from {
            Some(c) => {
                let v = row.f64(c as usize);
                if v.is_nan() {
                    self.value
                } else {
                    v
                }
            }
            None => self.value,
        }
    }
}

/// A placement on one channel: the candidate offers and what to show when none wins.
#[derive(Debug)]
pub struct Slot {
    /// Placement name.
    pub placement: Box<str>,
    /// Default number of offers.
    pub limit: usize,
    /// Admission priority 0..=100: under pressure, lower priorities step aside first.
    pub priority: u8,
    /// Offer indices that claim this channel and placement, in evaluation order: the highest
    /// score an offer could reach (value × priority) first, then model order.
    pub candidates: Box<[u32]>,
    /// Fallback resolved at load: this placement's, else the channel's, else built-in.
    pub fallback: Fallback,
    /// Share of decisions that show a random pick of the eligible offers (`exploration.share`;
    /// 0: none).
    pub exploration: f64,
    /// Whether a request without a known customer is decided from its context alone
    /// (`"anonymous": "decide"`) instead of answered with `unknown_customer` fallback.
    pub anonymous: bool,
}

/// A channel with its placements.
#[derive(Debug)]
pub struct Channel {
    /// Channel name (`web`, `app`, ...).
    pub name: Box<str>,
    /// Placements on this channel.
    pub slots: Box<[Slot]>,
    /// The channel's default fallback (or built-in) for placements the model does not know.
    pub fallback: Fallback,
}

/// Arbitration settings: score = propensity × value × priority.
#[derive(Debug, Clone, Copy)]
pub struct Arbitration {
    /// Offers scoring below are dropped.
    pub min_score: f64,
    /// Offers with a lower propensity are dropped.
    pub min_propensity: f64,
}

/// A model compiled against one feature snapshot's column layout.
#[derive(Debug)]
pub struct CompiledModel {
    /// Model name.
    pub name: Box<str>,
    /// Model version.
    pub version: Box<str>,
    /// `{"name":..,"version":..}` pre-encoded for the answer.
    pub model_json: Box<str>,
    /// All offers in model order.
    pub offers: Box<[Offer]>,
    /// Channels and their placements.
    pub channels: Box<[Channel]>,
    /// Context keys rules test, in slot order.
    pub context_keys: Box<[Box<str>]>,
    /// Per context slot, true when the model reads it only as a number: a request giving it
    /// as text that reads as a number is told (as text it fails every comparison).
    pub context_numbers: Box<[bool]>,
    /// The request values contextual adaptive scorers learn from: `(feature id, context slot)`
    /// per distinct `context.<key>` they name ([`contextual::feature_id`] of that name). What
    /// a decision records for the learner.
    pub learnt_context: Box<[(u32, u16)]>,
    /// Arbitration settings.
    pub arbitration: Arbitration,
    /// Feature columns the model reads, by name (to check a new snapshot against).
    pub features_used: Box<[Box<str>]>,
    /// Contact policies that look across offers (per-offer ones are in [`Offer::caps`]).
    pub policies: Policies,
    /// Multiclass tree ensembles, each parsed once and read by the offers that claim one of
    /// its classes ([`ClassScorer::slot`]).
    pub multiclass: Box<[std::sync::Arc<trees::TreeEnsemble>]>,
}

impl CompiledModel {
    /// Per context slot, whether the model reads it only as a number: what rules compare
    /// and logistic terms weigh; a test on text, a category weight or a learner's use of the
    /// key counts as text.
    pub fn context_numbers(
        context_keys: usize,
        offers: &[Offer],
        learnt_context: &[(u32, u16)],
    ) -> Box<[bool]> {
        let mut reads = vec![(false, false); context_keys];
        let mut note = |slot: u16, numeric: bool| {
            if let Some(r) = reads.get_mut(slot as usize) {
                if numeric {
                    r.0 = true;
                } else {
                    r.1 = true;
                }
            }
        };
        for o in offers {
            if let Some(rule) = &o.rule {
                rule.context_reads(&mut |slot, numeric| {
                    if let Some(n) = numeric {
                        note(slot, n);
                    }
                });
            }
            if let Scorer::Logistic(l) = &o.scorer {
                l.context_terms.iter().for_each(|t| note(t.0, true));
                l.context_categories.iter().for_each(|t| note(t.0, false));
            }
        }
        learnt_context
            .iter()
            .for_each(|&(_, slot)| note(slot, false));
        reads.into_iter().map(|(n, t)| n && !t).collect()
    }

    /// The context values a request gives as text where the model reads numbers, and the
    /// text reads as one: `"250"` from a form field, which as text fails every comparison.
    pub fn numbers_sent_as_text<'r>(
        &'r self,
        context: &'r [(Cow<'r, str>, CtxValue<'r>)],
    ) -> impl Iterator<Item = (&'r str, &'r str)> + 'r {
        let slots = context_slots(self, context);
        self.context_keys
            .iter()
            .zip(self.context_numbers.iter())
            .zip(slots)
            .filter_map(|((key, &numeric), value)| {
                let Some(CtxValue::Str(text)) = value else {
                    return None;
                };
                (numeric && text.trim().parse::<f64>().is_ok()).then_some((&**key, &**text))
            })
    }

    /// The channel index and slot for a request, if the model knows them.
    #[inline]
    pub fn resolve(&self, channel: &str, placement: &str) -> (Option<usize>, Option<&Slot>) {
        let (ci, si) = self.locate(channel, placement);
        (ci, ci.zip(si).map(|(c, s)| &self.channels[c].slots[s]))
    }

    /// The channel index and the slot's index on it, if the model knows them (what a decision
    /// id records of where it was made).
    #[inline]
    pub fn locate(&self, channel: &str, placement: &str) -> (Option<usize>, Option<usize>) {
        match self.channels.iter().position(|c| &*c.name == channel) {
            Some(ci) => {
                let slot = self.channels[ci]
                    .slots
                    .iter()
                    .position(|s| &*s.placement == placement);
                (Some(ci), slot)
            }
            None => (None, None),
        }
    }

    /// The fallback for a request, walking the chain placement → channel → built-in.
    pub fn fallback_for<'a>(
        &'a self,
        channel: Option<usize>,
        slot: Option<&'a Slot>,
    ) -> &'a Fallback {
        match (slot, channel) {
            (Some(s), _) => &s.fallback,
            (None, Some(ci)) => &self.channels[ci].fallback,
            (None, None) => Fallback::empty(),
        }
    }
}

/// A decide request as the engine sees it (decoded, borrowed from the request body).
#[derive(Debug, Default)]
pub struct Request<'a> {
    /// The customer, or `None` for an anonymous visitor.
    pub customer_id: Option<&'a str>,
    /// Channel name.
    pub channel: &'a str,
    /// Placement name.
    pub placement: &'a str,
    /// Number of offers wanted; `None` takes the placement's default.
    pub limit: Option<usize>,
    /// Context values the rules may test.
    pub context: &'a [(Cow<'a, str>, CtxValue<'a>)],
    /// Whether to list every offer's verdict.
    pub explain: bool,
    /// The counts and the seed adaptive offers draw with; `None` scores them at their prior.
    pub learnt: Option<posterior::Learnt<'a>>,
}

/// The contact history the engine consults; implemented by the contact state.
pub trait ContactView {
    /// The policy that holds an offer back for this customer, if any (its text lives in the
    /// offer's [`OfferCaps::why`], so explain names it without formatting).
    fn holds_back<'m>(&self, offer_index: usize, offer: &'m Offer) -> Option<&'m str>;
}

/// No history: nothing is held back.
pub struct NoContacts;

impl ContactView for NoContacts {
    #[inline]
    fn holds_back<'m>(&self, _: usize, _: &'m Offer) -> Option<&'m str> {
        None
    }
}

/// The request's time budget, checked between offers.
pub trait Budget {
    /// True once the budget is spent.
    fn expired(&self) -> bool;

    /// True when the budget was spent before the decision began (a client's budget of zero),
    /// told without reading the clock.
    fn spent_at_start(&self) -> bool {
        false
    }
}

/// No deadline.
pub struct Unbounded;

impl Budget for Unbounded {
    #[inline]
    fn expired(&self) -> bool {
        false
    }
}

/// One offer in the answer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ranked {
    /// Offer index in the model.
    pub offer: u32,
    /// Propensity from the scorer.
    pub propensity: f64,
    /// Arbitration score.
    pub score: f64,
}

/// What `explain` says of one offer.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict<'m> {
    /// Scored (and ranked, unless the limit cut it).
    Scored {
        /// Propensity from the scorer.
        propensity: f64,
        /// Arbitration score.
        score: f64,
        /// For an adaptive offer: the posterior, the draw and the counts behind it.
        learnt: Option<posterior::Draw>,
        /// The probability that this decision shows the offer (see [`shown`]), computed for
        /// explain only (NaN otherwise).
        shown: f64,
    },
    /// Excluded by the named rule or policy (a failing rule leaf with the value it tested).
    Excluded(Cow<'m, str>),
}

impl<'m> Verdict<'m> {
    /// Excluded by a fixed text.
    fn text(why: &'m str) -> Self {
        Verdict::Excluded(Cow::Borrowed(why))
    }
}

/// The engine's answer; the server encodes it.
#[derive(Debug)]
pub struct Decision<'m> {
    /// `None` for a personalised answer.
    pub fallback: Option<FallbackReason>,
    /// The content served when `fallback` is set.
    pub fallback_content: &'m Fallback,
    /// Channel index, when the model knows the channel.
    pub channel: Option<usize>,
    /// The ranked offers (empty for a fallback).
    pub ranked: Vec<Ranked>,
    /// Every offer's verdict by offer index, when explain was asked (else empty).
    pub explain: Vec<Verdict<'m>>,
    /// True when the placement's exploration chose the answer at random.
    pub explored: bool,
    /// True when no customer row was found and the placement decided from the request's
    /// context alone (every snapshot feature missing).
    pub anonymous: bool,
}

const OUTSIDE_WINDOW: &str = "validity: outside the offer's validity window";
const BELOW_MIN_SCORE: &str = "arbitration.min_score";
const BELOW_MIN_PROPENSITY: &str = "arbitration.min_propensity";
const NOT_EVALUATED: &str = "not evaluated: the decision stopped before this offer";
const NOT_A_NUMBER: &str = "scorer: the propensity is not a number (a term overflowed)";

/// Decides which offers a customer sees: the pure core of nextbest.
pub fn decide<'m>(
    model: &'m CompiledModel,
    features: &FeatureStore,
    req: &Request<'_>,
    contacts: &impl ContactView,
    budget: &impl Budget,
    now_ms: i64,
) -> Decision<'m> {
    let row = req.customer_id.and_then(|id| features.exact_row(id));
    decide_row(model, features, row, req, contacts, budget, now_ms)
}

/// [`decide`] for a customer whose row the caller already holds (a campaign scanning the
/// snapshot in row order), so the id is not looked up again.
pub fn decide_row<'m>(
    model: &'m CompiledModel,
    features: &FeatureStore,
    row: Option<FeatureRow<'_>>,
    req: &Request<'_>,
    contacts: &impl ContactView,
    budget: &impl Budget,
    now_ms: i64,
) -> Decision<'m> {
    let (channel, slot) = model.resolve(req.channel, req.placement);
    let mut d = Decision {
        fallback: None,
        fallback_content: model.fallback_for(channel, slot),
        channel,
        ranked: Vec::new(),
        explain: Vec::new(),
        explored: false,
        anonymous: false,
    };
    let row = match row {
        Some(row) => Some(row),
        None if slot.is_some_and(|s| s.anonymous) => {
            d.anonymous = true;
            Some(features.missing_row())
        }
        None => None,
    };
    let (Some(slot), Some(ch), Some(row)) = (slot, channel, row) else {
        d.fallback = Some(if slot.is_some() {
            FallbackReason::UnknownCustomer
        } else {
            FallbackReason::UnknownPlacement
        });
        if req.explain {
            explain_unreached(model, channel, slot, &mut d.explain, row.is_none());
        }
        return d;
    };

    let ctx = context_slots(model, req.context);
    let input = RuleInput {
        features: row,
        context: &ctx[..model.context_keys.len()],
    };
    let limit = req.limit.unwrap_or(slot.limit).clamp(1, MAX_LIMIT);

    let mut ranked = Vec::with_capacity(limit);
    let mut classes = ClassCache::new(&model.multiclass);
    let seed = req.learnt.as_ref().map(|l| l.seed);
    let explores = explore::explores(seed, slot.exploration);
    let mut pick = explores.then(|| explore::Pick::new(seed.unwrap_or(0), limit));
    if req.explain {
        d.explain = model
            .offers
            .iter()
            .map(|o| Verdict::text(not_candidate_reason(o, ch)))
            .collect();
    }
    for (n, &oi) in slot.candidates.iter().enumerate() {
        let spent = match n {
            0 => budget.spent_at_start(),
            _ => n % BUDGET_CHECK_EVERY == 0 && budget.expired(),
        };
        if spent {
            d.fallback = Some(FallbackReason::Deadline);
            if req.explain {
                for &rest in &slot.candidates[n..] {
                    d.explain[rest as usize] = Verdict::text(NOT_EVALUATED);
                }
            }
            break;
        }
        let offer = &model.offers[oi as usize];
        // Candidates come best bound first: once the answer is full and this offer could not
        // beat its last entry even at a propensity of 1, neither can any offer after it.
        // (Explain evaluates everything, since it reports every score; so does exploration,
        // which picks among every eligible offer.)
        if !req.explain
            && pick.is_none()
            && ranked.len() == limit
            && ranked
                .last()
                .is_some_and(|last: &Ranked| offer.score_bound() < last.score)
        {
            break;
        }
        let mut verdict = evaluate(
            model,
            offer,
            oi as usize,
            &input,
            row,
            req,
            contacts,
            now_ms,
            &mut classes,
        );
        if req.explain {
            verdict = with_tested_value(verdict, offer, &input, row, features);
        }
        if let Verdict::Scored {
            propensity, score, ..
        } = &verdict
        {
            let r = Ranked {
                offer: oi,
                propensity: *propensity,
                score: *score,
            };
            keep_top(&mut ranked, limit, r);
            if let Some(p) = &mut pick {
                p.offer(r);
            }
        }
        if req.explain {
            d.explain[oi as usize] = verdict;
        }
    }
    if d.fallback.is_some() {
        return d;
    }
    if req.explain {
        let share = if seed.is_some() {
            slot.exploration
        } else {
            0.0
        };
        let eligible = d
            .explain
            .iter()
            .filter(|v| matches!(v, Verdict::Scored { .. }))
            .count() as u32;
        fill_shown(
            model,
            row,
            &mut d.explain,
            &ranked,
            limit,
            share,
            eligible,
            seed.is_some(),
        );
    }
    if let Some(p) = &pick {
        p.finish(&mut ranked);
        d.explored = true;
    }
    if ranked.is_empty() {
        d.fallback = Some(FallbackReason::NoEligibleOffer);
    } else {
        d.ranked = ranked;
    }
    d
}

/// The request's context values by the model's context slots (what rules and scorers read):
/// each key found among the model's handful, once per decision.
#[inline]
pub fn context_slots<'r, 'c>(
    model: &CompiledModel,
    context: &'r [(Cow<'c, str>, CtxValue<'c>)],
) -> [Option<&'r CtxValue<'c>>; MAX_CONTEXT_KEYS] {
    let mut ctx = [None; MAX_CONTEXT_KEYS];
    for (key, value) in context {
        if let Some(i) = model.context_keys.iter().position(|k| **k == **key) {
            ctx[i] = Some(value);
        }
    }
    ctx
}

/// Keeps the best `limit` offers seen so far in `top`, ordered by score (highest first), then
/// by model order. Offers arrive in model order, so an equal score never displaces an earlier
/// offer. With `limit` at most a handful, inserting into the short list beats sorting every
/// candidate (and the list never grows past `limit`).
#[inline]
pub fn keep_top(top: &mut Vec<Ranked>, limit: usize, r: Ranked) {
    let better = |a: &Ranked, b: &Ranked| {
        a.score
            .total_cmp(&b.score)
            .then(b.offer.cmp(&a.offer))
            .is_gt()
    };
    if top.len() == limit {
        match top.last() {
            Some(last) if better(&r, last) => {
                top.pop();
            }
            _ => return,
        }
    }
    let at = top.iter().position(|x| better(&r, x)).unwrap_or(top.len());
    top.insert(at, r);
}

#[inline]
// One offer's verdict needs the model, the offer, the customer's row two ways (for rules and
// for exact tree scores), the request (adaptive draws), the contact view and the time: a struct
// would only rename these for one caller on the hot path.
#[allow(clippy::too_many_arguments)]
fn evaluate<'m>(
    model: &'m CompiledModel,
    offer: &'m Offer,
    index: usize,
    input: &RuleInput<'_, '_>,
    row: FeatureRow<'_>,
    req: &Request<'_>,
    contacts: &impl ContactView,
    now_ms: i64,
    classes: &mut ClassCache<'_>,
) -> Verdict<'m> {
    if now_ms < offer.valid_from_ms || now_ms >= offer.valid_until_ms {
        return Verdict::text(OUTSIDE_WINDOW);
    }
    if let Some(rule) = &offer.rule {
        if let Some(why) = rule.check(input) {
            return Verdict::text(why);
        }
    }
    if let Some(why) = contacts.holds_back(index, offer) {
        return Verdict::text(why);
    }
    let (propensity, learnt) = match &offer.scorer {
        Scorer::Adaptive(a) => {
            let seen = (row.values(), input.context);
            let d = a.draw_for(offer.id_hash, seen, req.learnt.as_ref());
            (d.draw, Some(d))
        }
        Scorer::Class(c) => (classes.probability(c, row), None),
        Scorer::Logistic(l) => (l.predict_in(row.values(), input.context), None),
        s => (s.predict(row), None),
    };
    // A model may hold any finite weight, so terms can overflow to +inf and -inf and sum to
    // NaN. NaN compares false with every threshold and sorts above +inf: it would pass
    // arbitration and take the first rank.
    if propensity.is_nan() {
        return Verdict::text(NOT_A_NUMBER);
    }
    let score = propensity * offer.value_for(row) * offer.priority;
    if propensity < model.arbitration.min_propensity {
        return Verdict::text(BELOW_MIN_PROPENSITY);
    }
    if score < model.arbitration.min_score {
        return Verdict::text(BELOW_MIN_SCORE);
    }
    Verdict::Scored {
        propensity,
        score,
        learnt,
        shown: f64::NAN,
    }
}

/// Explain's probability of being shown, for every scored offer: the ranking's chance to put it
/// in the top `limit` mixed with exploration's uniform pick (see [`shown`]).
#[allow(clippy::too_many_arguments)]
fn fill_shown(
    model: &CompiledModel,
    row: FeatureRow<'_>,
    explain: &mut [Verdict<'_>],
    greedy: &[Ranked],
    limit: usize,
    share: f64,
    eligible: u32,
    floors: bool,
) {
    let laws: Vec<shown::ScoreLaw> = explain
        .iter()
        .enumerate()
        .filter_map(|(oi, v)| shown::ScoreLaw::of(model, oi, v, row, floors))
        .collect();
    let greedy: Vec<u32> = greedy.iter().map(|r| r.offer).collect();
    let mut top = Vec::with_capacity(laws.len());
    shown::in_top(&laws, limit, &greedy, &mut top);
    let uniform = explore::uniform_share(limit, eligible);
    for (law, g) in laws.iter().zip(top) {
        if let Verdict::Scored { shown, .. } = &mut explain[law.offer as usize] {
            *shown = (1.0 - share) * g + share * uniform;
        }
    }
}

#[cfg(test)]
mod tests;
