//! The scan: every customer of the snapshot through the same decision as `/v1/decide`, spread
//! over the cores, into candidate (customer, offer) pairs and the reasons the others are held out.
//!
//! Per customer, in this order: suppression (never contacted, transactional or not) → the
//! engine's decision for the campaign's channel and placement, with the customer's variant and
//! contact history (no eligible offer, or the contact policy that held the offers back) → the
//! campaign's frequency cap across outbound channels (skipped when transactional). Whoever is
//! left offers their eligible campaign offers to [`super::allocate`]; the control group is drawn
//! from the list the allocation makes ([`super::finish`]), so it stands for the targets.
//!
//! rayon splits the rows into chunks: each is scanned on its own with no shared state but a
//! progress counter, and chunks are merged in row order, so the result does not depend on how
//! the work was spread. Nothing here writes files.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use rayon::prelude::*;

use super::history::PastContacts;
use super::plan::Plan;
use super::spec::CampaignSpec;
use crate::contact::view::CustomerView;
use crate::engine::{self, CompiledModel, Request, Rule, RuleInput, Unbounded, Verdict, MAX_LIMIT};
use crate::experiment::{assignment, Variant};
use crate::features::FeatureStore;
use crate::registry::ModelSet;

/// The salt of the shard hash (the control group and champion/challenger use their own).
const SALT: &str = "nextbest-campaign-shard";
/// Most shards of one run.
pub const MAX_SHARDS: u32 = 4096;

/// One shard of `count`, numbered from 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Shard {
    /// This shard.
    pub index: u32,
    /// How many there are.
    pub count: u32,
}

impl Shard {
    /// True when the customer falls in this shard: the stable hash of the id, as a share of
    /// `[0, 1)`, in `[index / count, (index + 1) / count)`.
    pub fn holds(&self, customer_id: &str) -> bool {
        let at = (assignment(SALT, customer_id) * f64::from(self.count)) as u32;
        at.min(self.count - 1) == self.index
    }
}

impl std::str::FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}`: expected I/N with 0 <= I < N <= {MAX_SHARDS}, such as 3/8");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count): (u32, u32) = (
            i.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if count == 0 || count > MAX_SHARDS || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

/// Rows per unit of parallel work (small enough to balance, large enough to merge cheaply).
const CHUNK: usize = 8192;

/// One candidate: a customer, an offer of the campaign, and what the engine said of it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pair {
    /// Arbitration score (propensity × value × priority).
    pub score: f64,
    /// The scorer's propensity.
    pub propensity: f64,
    /// The customer's row in the snapshot.
    pub row: u32,
    /// The campaign offer index.
    pub offer: u16,
    /// 0 champion, 1 challenger.
    pub variant: u8,
    /// The campaign channel (index into [`CampaignSpec::channel_list`]; 0 with one).
    pub channel: u8,
}

// A pair fills 24 bytes, the channel included: the scan holds one per customer and offer.
const _: () = assert!(std::mem::size_of::<Pair>() == 24);

impl Pair {
    /// The global order: highest score first, then snapshot row, then campaign offer order.
    #[inline]
    pub fn order(a: &Pair, b: &Pair) -> std::cmp::Ordering {
        b.score
            .total_cmp(&a.score)
            .then(a.row.cmp(&b.row))
            .then(a.offer.cmp(&b.offer))
    }
}

/// Counts of customers by what happened to them before allocation.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Tally {
    /// Customers in the snapshot.
    pub scanned: u64,
    /// Reachable on none of the campaign's channels (their `reachable` rules).
    #[serde(default)]
    pub unreachable: u64,
    /// Customers with at least one eligible campaign offer (suppressed ones not decided).
    pub eligible: u64,
    /// On a suppression list.
    pub suppression: u64,
    /// No campaign offer passed eligibility and arbitration.
    pub no_eligible_offer: u64,
    /// Every campaign offer held back, by the first contact policy that did.
    pub contact_policy: BTreeMap<String, u64>,
    /// Over the campaign's frequency cap.
    pub frequency: u64,
    /// Customers who offered pairs to the allocation.
    pub candidates: u64,
    /// The same, by variant (champion, challenger): what each variant's share of the limits
    /// is in proportion to.
    #[serde(default)]
    pub by_variant: [u64; 2],
    /// (customer, campaign offer) pairs left out because the offer runs at the run but the
    /// customer's send time (the send window) falls at or after its `valid_until`.
    #[serde(default)]
    pub ends_before_send: u64,
}

impl Tally {
    /// Adds another part's counts.
    pub fn merge(&mut self, o: Tally) {
        self.scanned += o.scanned;
        self.unreachable += o.unreachable;
        self.eligible += o.eligible;
        self.suppression += o.suppression;
        self.no_eligible_offer += o.no_eligible_offer;
        for (k, v) in o.contact_policy {
            *self.contact_policy.entry(k).or_default() += v;
        }
        self.frequency += o.frequency;
        self.candidates += o.candidates;
        self.ends_before_send += o.ends_before_send;
        for (a, b) in self.by_variant.iter_mut().zip(o.by_variant) {
            *a += b;
        }
    }
}

/// Per snapshot row, the offers a customer has room for under the campaign's frequency cap
/// (and the model's sales cap, when all their offers count in it), for those with room for
/// fewer than `max_offers_per_customer` (at most [`MAX_LIMIT`]): the allocation counts the
/// list's own messages against the caps.
pub type Rooms = HashMap<u32, u8, foldhash::fast::RandomState>;

const _: () = assert!(MAX_LIMIT <= u8::MAX as usize);

/// What the scan found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Candidate pairs, in row order.
    pub pairs: Vec<Pair>,
    /// Customers with room for fewer offers than the list may give one.
    pub rooms: Rooms,
    /// Held-out counts.
    pub tally: Tally,
}

/// One model's view of the campaign.
pub struct Variantly<'a> {
    /// The model.
    pub model: &'a CompiledModel,
    /// The campaign resolved against it.
    pub plan: &'a Plan,
}

/// Everything the scan reads, borrowed.
pub struct Inputs<'a> {
    /// The campaign.
    pub spec: &'a CampaignSpec,
    /// The models (a customer's variant picks one).
    pub set: &'a ModelSet,
    /// Champion, then challenger if any.
    pub variants: Vec<Variantly<'a>>,
    /// The snapshot.
    pub features: &'a FeatureStore,
    /// Per campaign channel, who can be reached on it (`None`: everyone).
    pub reach: &'a [Option<Rule>],
    /// Contact history.
    pub past: &'a PastContacts,
    /// Suppressed customer ids.
    pub suppressed: &'a HashSet<Box<str>, foldhash::fast::RandomState>,
    /// The run's time.
    pub now_ms: i64,
    /// With a send window: each customer's zone and send time.
    pub sends: Option<Sends>,
    /// Keep every eligible pair of a customer (offer-level limits may need the lower ones);
    /// otherwise only the best `max_offers_per_customer`.
    pub keep_all: bool,
    /// Only the customers of this shard (the others are not counted either).
    pub shard: Option<Shard>,
}

/// Scans every row; `progress` counts rows done.
pub fn scan(inp: &Inputs<'_>, progress: &AtomicU64) -> Scan {
    if inp.keep_all {
        scan_all(inp, progress)
    } else {
        scan_best(inp, progress)
    }
}

/// Keeps every eligible pair: chunks gather their own and are joined in row order.
fn scan_all(inp: &Inputs<'_>, progress: &AtomicU64) -> Scan {
    let rows = inp.features.len();
    let chunks: Vec<Scan> = (0..rows.div_ceil(CHUNK))
        .into_par_iter()
        .map(|c| {
            let start = c * CHUNK;
            let end = (start + CHUNK).min(rows);
            let mut out = Scan::default();
            let mut buf = Vec::new();
            for row in start..end {
                customer(inp, row, &mut out, &mut buf);
            }
            progress.fetch_add((end - start) as u64, Relaxed);
            out
        })
        .collect();
    let mut all = Scan {
        pairs: Vec::with_capacity(chunks.iter().map(|c| c.pairs.len()).sum()),
        ..Scan::default()
    };
    for c in chunks {
        all.pairs.extend_from_slice(&c.pairs);
        all.tally.merge(c.tally);
        all.rooms.extend(c.rooms);
    }
    all
}

/// Leaves a customer's sales pairs (`sales`, by campaign offer) of their best `left` sales
/// offers only (all channels of each), and every other pair; nothing changes when they have
/// no more sales offers than that.
fn keep_best_sales(buf: &mut Vec<Pair>, left: usize, sales: &[bool]) {
    let is_sales = |p: &Pair| sales[usize::from(p.offer)];
    let mut offers: Vec<u16> = Vec::new();
    for p in buf.iter().filter(|p| is_sales(p)) {
        if !offers.contains(&p.offer) {
            offers.push(p.offer);
        }
    }
    if offers.len() <= left {
        return;
    }
    buf.sort_by(Pair::order);
    offers.clear();
    buf.retain(|p| {
        if !is_sales(p) || offers.contains(&p.offer) {
            return true;
        }
        let kept = offers.len() < left;
        if kept {
            offers.push(p.offer);
        }
        kept
    });
}

/// Keeps each customer's best `max_offers_per_customer` pairs, written straight into one
/// array of that many slots per customer and compacted in place: the pairs are held once,
/// never gathered per chunk and copied again (at 10 million customers that copy would be
/// hundreds of megabytes at the peak).
fn scan_best(inp: &Inputs<'_>, progress: &AtomicU64) -> Scan {
    let rows = inp.features.len();
    let k = inp.spec.max_offers_per_customer as usize;
    let empty = Pair {
        score: 0.0,
        propensity: 0.0,
        row: u32::MAX,
        offer: 0,
        variant: 0,
        channel: 0,
    };
    let mut slots = vec![empty; rows * k];
    let parts: Vec<Scan> = slots
        .par_chunks_mut(CHUNK * k)
        .enumerate()
        .map(|(c, out)| {
            let start = c * CHUNK;
            let end = (start + CHUNK).min(rows);
            let mut part = Scan::default();
            let mut buf = Vec::new();
            for row in start..end {
                customer(inp, row, &mut part, &mut buf);
                let at = (row - start) * k;
                for (slot, p) in out[at..at + k].iter_mut().zip(part.pairs.drain(..)) {
                    *slot = p;
                }
            }
            progress.fetch_add((end - start) as u64, Relaxed);
            part
        })
        .collect();
    slots.retain(|p| p.row != u32::MAX);
    let mut all = Scan {
        pairs: slots,
        ..Scan::default()
    };
    for p in parts {
        all.tally.merge(p.tally);
        all.rooms.extend(p.rooms);
    }
    all
}

fn customer(inp: &Inputs<'_>, row: usize, out: &mut Scan, buf: &mut Vec<Pair>) {
    let Some(id) = inp.features.id_at(row) else {
        return;
    };
    if inp.shard.is_some_and(|s| !s.holds(id)) {
        return;
    }
    out.tally.scanned += 1;
    if inp.suppressed.contains(id) {
        out.tally.suppression += 1;
        return;
    }
    let (_, variant) = inp.set.pick(Some(id));
    let vi = usize::from(variant == Variant::Challenger);
    let Some(v) = inp.variants.get(vi) else {
        return;
    };
    // Decided as of when the message goes out (the customer's send time with a send window):
    // an offer must run then, and the contact policies' windows end then; the history is
    // what is known at the run.
    let (zone, send_at) = inp.sends.as_ref().map_or((None, None), |s| {
        let (zone, at) = s.of(inp.features, row);
        (Some(zone), at)
    });
    let decided_at = send_at.unwrap_or(inp.now_ms);
    if let Some(t) = send_at {
        // Offers running at the run but ended by the send time: left out, and counted.
        out.tally.ends_before_send += v.plan.ending_between(inp.now_ms, t) as u64;
    }
    let history = inp.past.history(id);
    let view = CustomerView::new(history.as_deref(), &v.model.policies, decided_at);
    // At the row the scan holds: the id is not looked up again.
    let at = inp.features.exact_row_at(row);
    let decide_on = |channel: &str, placement: &str, explain: bool| {
        let req = request(id, channel, placement, explain);
        engine::decide_row(
            v.model,
            inp.features,
            at,
            &req,
            &view,
            &Unbounded,
            decided_at,
        )
    };
    buf.clear();
    let mut first_reachable = None;
    for (ci, ch) in v.plan.channels.iter().enumerate() {
        if !reachable(inp, row, ci) {
            continue;
        }
        first_reachable.get_or_insert(ci);
        let d = decide_on(&ch.name, &ch.placement, false);
        for r in &d.ranked {
            if let Some(k) = v.plan.campaign_offer[r.offer as usize] {
                buf.push(Pair {
                    score: r.score,
                    propensity: r.propensity,
                    row: row as u32,
                    offer: k,
                    variant: vi as u8,
                    channel: ci as u8,
                });
            }
        }
    }
    let Some(first) = first_reachable else {
        out.tally.unreachable += 1;
        return;
    };
    if buf.is_empty() {
        let ch = &v.plan.channels[first];
        let d = decide_on(&ch.name, &ch.placement, true);
        match held_by_policy(v, &d.explain) {
            Some(name) => *out.tally.contact_policy.entry(name.to_owned()).or_default() += 1,
            None => out.tally.no_eligible_offer += 1,
        }
        return;
    }
    out.tally.eligible += 1;
    let k = inp.spec.max_offers_per_customer;
    let mut room = k;
    if let (Some(f), false) = (&inp.spec.frequency, inp.spec.transactional) {
        // Counted back from when the list goes out (a Saturday run for Monday counts Monday's
        // week); no contact lies between the run and then.
        let since = match (zone, f.calendar_week) {
            (Some(zone), true) => super::send::week_start(zone, decided_at),
            _ => decided_at - i64::from(f.window_days) * engine::policy::DAY_MS,
        };
        let past = inp.past.outbound_since(id, since);
        if past >= f.max_contacts {
            out.tally.frequency += 1;
            return;
        }
        // The list's own messages count against the cap too: the allocation gives this
        // customer no more than their room.
        room = room.min(f.max_contacts - past);
    }
    // So do its sales offers against the model's sales cap: a customer offered only sales
    // offers has that room in all; one offered others too keeps their best sales offers up to
    // it (the others are not capped).
    if let Some(left) = view.sales_left().filter(|&l| l < k) {
        if buf.iter().all(|p| v.plan.sales[usize::from(p.offer)]) {
            room = room.min(left);
        } else {
            keep_best_sales(buf, left as usize, &v.plan.sales);
        }
    }
    if room < k {
        out.rooms.insert(row as u32, room as u8);
    }
    out.tally.candidates += 1;
    out.tally.by_variant[vi] += 1;
    let keep = if inp.keep_all {
        buf.len()
    } else {
        (inp.spec.max_offers_per_customer as usize).min(buf.len())
    };
    out.pairs.extend_from_slice(&buf[..keep]);
}

/// Each customer's zone (the window's zone feature, else its default zone, else UTC) and the
/// list's send time in it, worked out once per zone: the zone column's values, not its rows.
pub struct Sends {
    column: Option<usize>,
    /// Per dictionary code of the zone column.
    by_code: Vec<(chrono_tz::Tz, Option<i64>)>,
    default: (chrono_tz::Tz, Option<i64>),
}

impl Sends {
    /// The send times of a window for a run at `now_ms`.
    pub fn new(w: &super::send::SendWindow, features: &FeatureStore, now_ms: i64) -> Self {
        let default_zone = super::send::zone(&w.default_time_zone).unwrap_or(chrono_tz::Tz::UTC);
        let at = |tz| (tz, w.earliest(tz, now_ms));
        let column = w.zone_feature.as_deref().and_then(|n| features.column(n));
        let by_code = column
            .and_then(|c| features.dictionary(c))
            .map(|d| {
                d.iter()
                    .map(|name| at(super::send::zone(name).unwrap_or(default_zone)))
                    .collect()
            })
            .unwrap_or_default();
        Sends {
            column,
            by_code,
            default: at(default_zone),
        }
    }

    /// Row `row`'s zone and send time (`None`: the window is empty).
    #[inline]
    pub fn of(&self, features: &FeatureStore, row: usize) -> (chrono_tz::Tz, Option<i64>) {
        self.column
            .and_then(|c| features.row_at(row)?.get(c).copied())
            .filter(|cell| *cell >= 0.0 && cell.fract() == 0.0)
            .and_then(|cell| self.by_code.get(cell as usize).copied())
            .unwrap_or(self.default)
    }
}

/// The decision request for one channel's placement.
fn request<'r>(id: &'r str, channel: &'r str, placement: &'r str, explain: bool) -> Request<'r> {
    Request {
        customer_id: Some(id),
        channel,
        placement,
        limit: Some(MAX_LIMIT),
        context: &[],
        explain,
        // Outbound selection scores adaptive offers by their prior mean: a target list must
        // come out the same on every run.
        learnt: None,
    }
}

/// True when the customer of `row` can be reached on campaign channel `ci`.
pub fn reachable(inp: &Inputs<'_>, row: usize, ci: usize) -> bool {
    let Some(Some(rule)) = inp.reach.get(ci) else {
        return true;
    };
    let input = RuleInput {
        features: inp
            .features
            .exact_row_at(row)
            .unwrap_or_else(|| (&[][..]).into()),
        context: &[],
    };
    rule.check(&input).is_none()
}

/// The contact policy that held back the first campaign offer it held, by its model path
/// (`policies.sales_cap`, `offers[3].caps.max_impressions`, ...).
fn held_by_policy<'m>(v: &Variantly<'m>, explain: &[Verdict<'m>]) -> Option<&'m str> {
    for (oi, verdict) in explain.iter().enumerate() {
        if v.plan.campaign_offer.get(oi).copied().flatten().is_none() {
            continue;
        }
        // Policies say fixed texts; a rule's verdict with a tested value is never one.
        if let Verdict::Excluded(std::borrow::Cow::Borrowed(why)) = verdict {
            let why: &'m str = why;
            let w = &v.model.offers[oi].caps.why;
            let policy = [
                &w.impressions,
                &w.dismiss,
                &w.conversion,
                &w.sales_cap,
                &w.complaint,
            ]
            .iter()
            .any(|p| !p.is_empty() && ***p == *why);
            if policy {
                return Some(why.split(": ").next().unwrap_or(why));
            }
        }
    }
    None
}
