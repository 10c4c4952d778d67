//! The funnel: per model version × offer × channel × variant, how many decisions served the
//! offer and how many impressions, clicks, conversions and dismisses came back.
//!
//! A table is made when a model is published ([`Funnel::bind`]), keyed by the model's content
//! key (the CRC-32 of its document, so a model re-published under the same name and version
//! with other content gets a table of its own). Counting is a relaxed atomic add into that
//! table, where offers and channels are already indices: the decision path compares a few
//! integers, does no hashing and takes no lock. Events find their table through the model tag
//! in their decision id (see [`super::attribution`]), so an outcome counts for the model and
//! variant that made the decision, even after a newer one took over. An event without a
//! decision id counts for the variant the customer's assignment gives under the models active
//! when it is accepted ([`Funnel::activate`], [`Funnel::attribute`]), by its offer and channel;
//! ingest keeps that model and variant in the event's record, so a replay under another
//! experiment counts it the same. Events whose model, offer or channel is
//! unknown are counted as unattributed.
//!
//! A decision's offer counts each stage once: a second conversion (or impression, click,
//! dismiss) quoting the same decision and offer is a repeat purchase or a page posting twice,
//! not another customer won, so rates stay proportions and lift's intervals stay honest. The
//! (decision, offer, stage) keys are remembered like event ids ([`SeenIds`]), by the events'
//! own times, so a replay at start forgets and remembers exactly as live counting did; an
//! outcome without a decision id cannot be told from a new one and always counts.
//!
//! Decisions a placement's exploration chose at random, and the events that name them, count in
//! cells of their own (`explored` rows in stats, their own metric family): a random pick is
//! neither variant's policy, so lift reads only the others. Whether a decision explored is a
//! function of its id and its placement's share (see `engine::explore`), so an event finds it
//! again from the decision id alone.
//!
//! Across restarts: outcomes are rebuilt from the event log as it is replayed at start (the
//! same function of the log as live counting), and decision counts, which no log holds, are
//! saved beside it with the tables' layout by [`store`]. This module does not do I/O itself
//! and does not read the model registry: callers pass the models.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};

use arc_swap::{ArcSwap, ArcSwapOption};

use super::attribution::{attribution, model_tag, origin, Origin};
use super::dedupe::SeenIds;
use super::event::{Attributed, Event, EventKind};
use crate::engine::{CompiledModel, Ranked};
use crate::experiment::{self, Challenger, Variant};
use crate::metrics::prom::{Collect, Exposition, Kind};

pub mod lift;
pub mod store;
#[cfg(test)]
mod tests;

const VARIANTS: usize = Variant::ALL.len();

/// Model versions whose counters are kept (the active ones and a few before them).
pub const MAX_TABLES: usize = 8;

/// Decision × offer × stage keys remembered by default (tests, tools): see
/// [`outcome_capacity`] for the server's.
const DEFAULT_OUTCOMES: u64 = 1 << 16;

/// How many decision × offer × stage keys to remember for a contact-state budget: a sixteenth
/// of the histories' budget, as the adaptive counts take for their waiting impressions.
pub fn outcome_capacity(memory_bytes: u64) -> u64 {
    (memory_bytes / 16 / super::state::BYTES_PER_EVENT_ID).max(DEFAULT_OUTCOMES)
}

/// The key a decision's offer and stage is remembered by.
fn outcome_key(decision_id: u128, offer_id: &str, stage: Stage) -> u128 {
    super::dedupe::key_of((decision_id, offer_id, stage as u8), 3)
}

/// A step of the funnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// A decision served the offer.
    Decision,
    /// The channel showed it.
    Impression,
    /// The customer clicked it.
    Click,
    /// The customer bought it.
    Conversion,
    /// The customer dismissed it.
    Dismiss,
}

impl Stage {
    /// Every stage, in funnel order.
    pub const ALL: [Stage; 5] = [
        Stage::Decision,
        Stage::Impression,
        Stage::Click,
        Stage::Conversion,
        Stage::Dismiss,
    ];

    /// The name in stats (plural, as counted).
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Decision => "decisions",
            Stage::Impression => "impressions",
            Stage::Click => "clicks",
            Stage::Conversion => "conversions",
            Stage::Dismiss => "dismisses",
        }
    }

    /// The stage an event counts in (complaints are not part of the funnel).
    pub fn of(kind: EventKind) -> Option<Stage> {
        match kind {
            EventKind::Impression => Some(Stage::Impression),
            EventKind::Click => Some(Stage::Click),
            EventKind::Conversion => Some(Stage::Conversion),
            EventKind::Dismiss => Some(Stage::Dismiss),
            EventKind::Complaint | EventKind::ComplaintResolved => None,
        }
    }
}

/// The counters of one offer × channel × variant.
#[derive(Debug, Default)]
struct Cell([AtomicU64; Stage::ALL.len()]);

/// One value per placement, by channel and slot index.
type PerSlot<T> = Box<[Box<[T]>]>;

/// One value per placement of a model, by channel and slot index.
fn per_slot<T>(model: &CompiledModel, f: impl Fn(&crate::engine::Slot) -> T) -> PerSlot<T> {
    model
        .channels
        .iter()
        .map(|c| c.slots.iter().map(&f).collect())
        .collect()
}

/// The offers a placement's decisions can show: its candidates, and the model's offers its
/// fallback content names.
fn shown(model: &CompiledModel, slot: &crate::engine::Slot) -> Box<[u32]> {
    let mut v = slot.candidates.to_vec();
    let items: Vec<serde_json::Value> =
        serde_json::from_str(&slot.fallback.offers_json).unwrap_or_default();
    for id in items.iter().filter_map(|i| i.get("offer_id")?.as_str()) {
        if let Some(i) = model.offers.iter().position(|o| &*o.id == id) {
            v.push(i as u32);
        }
    }
    v.sort_unstable();
    v.dedup();
    v.into_boxed_slice()
}

/// The counters of one model version.
pub struct FunnelTable {
    /// The model's content key.
    pub key: u32,
    /// Model name.
    pub name: Box<str>,
    /// Model version.
    pub version: Box<str>,
    /// The tag decision ids of this version carry.
    pub tag: u16,
    offers: Box<[Box<str>]>,
    categories: Box<[Box<str>]>,
    /// Each offer's value (the model's `value`), for value per decision.
    values: Box<[f64]>,
    offer_index: hashbrown::HashMap<Box<str>, u32, foldhash::fast::RandomState>,
    channels: Box<[Box<str>]>,
    /// Placement names by channel and slot index, as decision ids name them: set with the
    /// model, restored from the counts file, or set when a table restored from a file that
    /// lacked them is bound to its model again (unset only for such a table whose model is
    /// gone).
    placements: OnceLock<PerSlot<Box<str>>>,
    /// Each placement's exploration share, by channel and slot index: set as the placements
    /// are.
    exploration: OnceLock<PerSlot<f64>>,
    /// The offers each placement's decisions can show (sorted indices: its candidates and the
    /// model's offers its fallback content names), by channel and slot index: set as the
    /// placements are.
    shown: OnceLock<PerSlot<Box<[u32]>>>,
    cells: Box<[Cell]>,
    /// The same counters for decisions that explored.
    explored: Box<[Cell]>,
}

impl FunnelTable {
    fn new(model: &CompiledModel, key: u32) -> Self {
        let t = FunnelTable::from_parts(
            key,
            model.name.clone(),
            model.version.clone(),
            model.offers.iter().map(|o| o.id.clone()).collect(),
            model.offers.iter().map(|o| o.category.clone()).collect(),
            model.offers.iter().map(|o| o.value).collect(),
            model.channels.iter().map(|c| c.name.clone()).collect(),
        );
        t.set_layout(model);
        t
    }

    /// A table of zeros for a model's layout (also a saved one, whose model may be gone).
    fn from_parts(
        key: u32,
        name: Box<str>,
        version: Box<str>,
        offers: Box<[Box<str>]>,
        categories: Box<[Box<str>]>,
        values: Box<[f64]>,
        channels: Box<[Box<str>]>,
    ) -> Self {
        let n = offers.len() * channels.len() * VARIANTS;
        FunnelTable {
            key,
            name,
            version,
            tag: model_tag(key),
            offer_index: offers
                .iter()
                .enumerate()
                .map(|(i, id)| (id.clone(), i as u32))
                .collect(),
            categories,
            values,
            offers,
            channels,
            placements: OnceLock::new(),
            exploration: OnceLock::new(),
            shown: OnceLock::new(),
            cells: (0..n).map(|_| Cell::default()).collect(),
            explored: (0..n).map(|_| Cell::default()).collect(),
        }
    }

    /// True when the decision with this id explored (its placement's share and its seed say
    /// so); false for ids without an origin or a placement this table does not know.
    pub fn explored(&self, decision_id: u128) -> bool {
        origin(decision_id).is_some_and(|o| self.explored_at(decision_id, o))
    }

    /// [`FunnelTable::explored`] for an id whose origin is already decoded.
    fn explored_at(&self, decision_id: u128, o: Origin) -> bool {
        let share = o
            .channel
            .zip(o.slot)
            .and_then(|(c, s)| self.exploration.get()?.get(c)?.get(s).copied())
            .unwrap_or(0.0);
        crate::engine::explore::explores(
            Some(crate::engine::posterior::seed_of(decision_id)),
            share,
        )
    }

    /// Offer ids, in the model's order.
    pub fn offers(&self) -> &[Box<str>] {
        &self.offers
    }

    /// Channel names, in the model's order.
    pub fn channels(&self) -> &[Box<str>] {
        &self.channels
    }

    /// The name of a placement by channel and slot index, as a decision id names it (`None`
    /// when the table does not know its model's placements).
    pub fn placement(&self, channel: usize, slot: usize) -> Option<&str> {
        self.placements.get()?.get(channel)?.get(slot).map(|p| &**p)
    }

    /// False when the decision's placement can never show the offer (`None`: the table does not
    /// know what its placements show, or the id names no placement of it).
    pub fn shows(&self, channel: usize, slot: usize, offer: usize) -> Option<bool> {
        let shown = self.shown.get()?.get(channel)?.get(slot)?;
        Some(shown.binary_search(&(offer as u32)).is_ok())
    }

    /// True when a decision of this origin was made for a placement that never shows the
    /// offer: an outcome of it is no outcome of that decision.
    fn never_shows(&self, o: Origin, offer: usize) -> bool {
        o.channel
            .zip(o.slot)
            .and_then(|(c, s)| self.shows(c, s, offer))
            == Some(false)
    }

    /// Takes the placement names, exploration shares and offers shown of the model this table
    /// counts for (each kept when already set: one content key, one layout).
    fn set_layout(&self, model: &CompiledModel) {
        self.placements
            .get_or_init(|| per_slot(model, |s| s.placement.clone()));
        self.exploration
            .get_or_init(|| per_slot(model, |s| s.exploration));
        self.shown
            .get_or_init(|| per_slot(model, |s| shown(model, s)));
    }

    #[inline]
    fn cell(&self, offer: usize, channel: usize, variant: Variant) -> Option<&Cell> {
        self.cells
            .get((offer * self.channels.len() + channel) * VARIANTS + variant.index())
    }

    #[inline]
    fn cell_of(
        &self,
        offer: usize,
        channel: usize,
        variant: Variant,
        explored: bool,
    ) -> Option<&Cell> {
        let cells = if explored {
            &self.explored
        } else {
            &self.cells
        };
        cells.get((offer * self.channels.len() + channel) * VARIANTS + variant.index())
    }

    /// The index of an offer id in this model version.
    pub fn offer(&self, id: &str) -> Option<usize> {
        self.offer_index.get(id).map(|&i| i as usize)
    }

    /// The category the model gives an offer id.
    pub fn category(&self, id: &str) -> Option<&str> {
        self.offer(id).map(|i| &*self.categories[i])
    }

    /// Counts a decision: each offer it served, on its channel, for its variant (apart when
    /// it explored).
    #[inline]
    pub fn decided(&self, channel: usize, ranked: &[Ranked], variant: Variant, explored: bool) {
        for r in ranked {
            if let Some(c) = self.cell_of(r.offer as usize, channel, variant, explored) {
                c.0[Stage::Decision as usize].fetch_add(1, Relaxed);
            }
        }
    }

    /// One offer × channel × variant's counts of explored decisions, by stage.
    pub fn explored_counts(
        &self,
        offer_id: &str,
        channel: &str,
        variant: Variant,
    ) -> Option<[u64; 5]> {
        let o = self.offer(offer_id)?;
        let ch = self.channels.iter().position(|c| &**c == channel)?;
        let c = self.cell_of(o, ch, variant, true)?;
        Some(Stage::ALL.map(|s| c.0[s as usize].load(Relaxed)))
    }

    /// One offer × channel × variant's counts, by stage (tests and stats).
    pub fn counts(&self, offer_id: &str, channel: &str, variant: Variant) -> Option<[u64; 5]> {
        let o = self.offer(offer_id)?;
        let ch = self.channels.iter().position(|c| &**c == channel)?;
        let c = self.cell(o, ch, variant)?;
        Some(Stage::ALL.map(|s| c.0[s as usize].load(Relaxed)))
    }
}

/// The active models, for events that name no decision: which table each variant counts in,
/// and the experiment that assigns customers to variants.
struct Active {
    champion: u32,
    challenger: Option<(u32, Challenger)>,
}

/// Every model version's funnel, newest first, and the unattributed events.
pub struct Funnel {
    tables: ArcSwap<Vec<Arc<FunnelTable>>>,
    active: ArcSwapOption<Active>,
    building: Mutex<()>,
    unattributed: [AtomicU64; Stage::ALL.len()],
    /// The decision × offer × stage already counted (see the module's documentation).
    counted: SeenIds,
    /// Saves of the decision counts that failed (see [`store::Saver`]).
    pub save_failures: AtomicU64,
}

impl Default for Funnel {
    fn default() -> Self {
        Funnel::new(DEFAULT_OUTCOMES)
    }
}

impl Funnel {
    /// An empty funnel remembering about `outcomes` decision × offer × stage keys against
    /// repeats, each for at least the week event ids are remembered.
    pub fn new(outcomes: u64) -> Self {
        Funnel {
            tables: ArcSwap::from_pointee(Vec::new()),
            active: ArcSwapOption::empty(),
            building: Mutex::new(()),
            unattributed: Default::default(),
            counted: SeenIds::new(outcomes, super::state::EVENT_ID_MEMORY.as_millis() as i64),
            save_failures: AtomicU64::new(0),
        }
    }

    /// Makes (or keeps) the table of a model about to be published, so its decisions and
    /// events count from the first one.
    pub fn bind(&self, model: &CompiledModel, key: u32) -> Arc<FunnelTable> {
        let _guard = self.building.lock().unwrap_or_else(|p| p.into_inner());
        let tables = self.tables.load();
        if let Some(t) = tables.iter().find(|t| t.key == key) {
            t.set_layout(model);
            return t.clone();
        }
        let t = Arc::new(FunnelTable::new(model, key));
        let mut next = Vec::with_capacity(MAX_TABLES);
        next.push(t.clone());
        next.extend(tables.iter().take(MAX_TABLES - 1).cloned());
        self.tables.store(Arc::new(next));
        t
    }

    /// Counts a decision of the model with this content key: each offer served, on its
    /// channel, for its variant. No reference count is touched, so cores deciding at once do
    /// not contend.
    #[inline]
    pub fn decided(
        &self,
        key: u32,
        channel: usize,
        ranked: &[Ranked],
        variant: Variant,
        explored: bool,
    ) {
        if let Some(t) = self.tables.load().iter().find(|t| t.key == key) {
            t.decided(channel, ranked, variant, explored);
        }
    }

    /// Names the active champion (by content key) and its challenger (key and experiment):
    /// events without a decision id count for the variant a customer's assignment gives.
    pub fn activate(&self, champion: u32, challenger: Option<(u32, Challenger)>) {
        self.active.store(Some(Arc::new(Active {
            champion,
            challenger,
        })));
    }

    /// Installs tables saved by an earlier process (oldest last), before any is bound.
    fn restore(&self, saved: Vec<FunnelTable>) {
        let _guard = self.building.lock().unwrap_or_else(|p| p.into_inner());
        let mut next: Vec<Arc<FunnelTable>> = self.tables.load().iter().cloned().collect();
        for t in saved {
            if next.len() < MAX_TABLES && !next.iter().any(|n| n.key == t.key) {
                next.push(Arc::new(t));
            }
        }
        self.tables.store(Arc::new(next));
    }

    /// Every table, newest first.
    pub fn tables(&self) -> Arc<Vec<Arc<FunnelTable>>> {
        self.tables.load_full()
    }

    /// The table of a model, by content key.
    pub fn table(&self, key: u32) -> Option<Arc<FunnelTable>> {
        self.tables.load().iter().find(|t| t.key == key).cloned()
    }

    /// The newest table (the model most recently decided with), if any.
    pub fn newest(&self) -> Option<Arc<FunnelTable>> {
        self.tables.load().first().cloned()
    }

    /// Counts an accepted event for the decision it names, or as unattributed; a stage its
    /// decision's offer already reached is not counted again.
    pub fn event(&self, e: &Event<'_>) {
        let Some(stage) = Stage::of(e.kind) else {
            return;
        };
        if let Some(d) = e.decision_id {
            let key = outcome_key(d, e.offer_id.unwrap_or(""), stage);
            if !self.counted.claim(key, e.ts_ms) {
                return;
            }
        }
        let tables = self.tables.load();
        let (table, variant) = match e.decision_id {
            Some(d) => {
                let (tag, variant) = attribution(d);
                (tables.iter().find(|t| t.tag == tag), variant)
            }
            None => match e.attributed.or_else(|| self.attribute(e.customer_id)) {
                Some(a) => (tables.iter().find(|t| t.key == a.key), Some(a.variant)),
                None => (None, None),
            },
        };
        let cell = table.and_then(|t| {
            let offer = t.offer(e.offer_id?)?;
            // The id's origin, decoded once for both questions.
            let from = e.decision_id.and_then(|d| Some((d, origin(d)?)));
            if from.is_some_and(|(_, o)| t.never_shows(o, offer)) {
                return None;
            }
            let channel = t.channels.iter().position(|c| Some(&**c) == e.channel)?;
            let explored = from.is_some_and(|(d, o)| t.explored_at(d, o));
            t.cell_of(offer, channel, variant?, explored)
        });
        match cell {
            Some(c) => c.0[stage as usize].fetch_add(1, Relaxed),
            None => self.unattributed[stage as usize].fetch_add(1, Relaxed),
        };
    }

    /// Where an outcome of this customer naming no decision counts under the active models:
    /// the model and variant the customer's assignment gives (ingest stamps it on the event,
    /// so a replay under another experiment counts it the same).
    pub fn attribute(&self, customer_id: &str) -> Option<Attributed> {
        let active = self.active.load();
        let a = active.as_deref()?;
        // A visitor-only event names no customer: the champion's, as its decision.
        let customer = Some(customer_id).filter(|c| !c.is_empty());
        let variant = experiment::pick(a.challenger.as_ref().map(|c| &c.1), customer);
        let key = match (&a.challenger, variant) {
            (Some((key, _)), Variant::Challenger) => *key,
            _ => a.champion,
        };
        Some(Attributed { key, variant })
    }

    /// Unattributed events by stage.
    pub fn unattributed(&self) -> [u64; 5] {
        Stage::ALL.map(|s| self.unattributed[s as usize].load(Relaxed))
    }

    /// Every non-zero row, newest model first, for `/admin/stats`.
    pub fn rows(&self) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        for_each_row(
            &self.tables.load(),
            |t, offer, channel, variant, explored, counts| {
                let mut row = serde_json::json!({
                    "model": &*t.name, "version": &*t.version,
                    "offer_id": offer, "channel": channel, "variant": variant.as_str(),
                });
                if explored {
                    row["explored"] = true.into();
                }
                for s in Stage::ALL {
                    row[s.as_str()] = counts[s as usize].into();
                }
                let mut rates = serde_json::Map::new();
                for (name, value) in rates_of(&counts) {
                    rates.insert(name.into(), value.into());
                }
                row["rates"] = rates.into();
                out.push(row);
            },
        );
        out
    }
}

impl super::Subscriber for Funnel {
    /// Counts this replica's own events (live and replayed); another replica's are counted,
    /// and saved, by the replica that accepted them.
    fn event(&self, e: &Event<'_>, origin: super::Origin, _now_ms: i64) {
        if origin != super::Origin::Fleet {
            self.event(e);
        }
    }
}

impl Collect for Funnel {
    fn collect(&self, out: &mut Exposition) {
        let tables = self.tables.load();
        let mut f = out.family(
            "nextbest_funnel_total",
            Kind::Counter,
            "Offers served and the outcomes reported for them, by model, offer, channel, variant and stage.",
        );
        for_each_row(&tables, |t, offer, channel, variant, explored, counts| {
            if explored {
                return;
            }
            for s in Stage::ALL {
                let [a, b, c, d, e] = labels(t, offer, channel, variant);
                f.sample(&[a, b, c, d, e, ("stage", s.as_str())], counts[s as usize]);
            }
        });
        let mut f = out.family(
            "nextbest_funnel_explored_total",
            Kind::Counter,
            "Offers served by decisions a placement's exploration chose at random, and their outcomes (apart from nextbest_funnel_total).",
        );
        for_each_row(&tables, |t, offer, channel, variant, explored, counts| {
            if !explored {
                return;
            }
            for s in Stage::ALL {
                let [a, b, c, d, e] = labels(t, offer, channel, variant);
                f.sample(&[a, b, c, d, e, ("stage", s.as_str())], counts[s as usize]);
            }
        });
        let mut f = out.family(
            "nextbest_funnel_rate",
            Kind::Gauge,
            "Funnel rates: impression (per decision), click, conversion and dismiss (per impression).",
        );
        for_each_row(&tables, |t, offer, channel, variant, explored, counts| {
            if explored {
                return;
            }
            for (name, value) in rates_of(&counts) {
                if let Some(v) = value {
                    let [a, b, c, d, e] = labels(t, offer, channel, variant);
                    f.sample(&[a, b, c, d, e, ("rate", name)], v);
                }
            }
        });
        let mut f = out.family(
            "nextbest_funnel_unattributed_total",
            Kind::Counter,
            "Outcomes whose decision, model, offer or channel is unknown.",
        );
        for (s, n) in Stage::ALL.iter().zip(self.unattributed()).skip(1) {
            f.sample(&[("stage", s.as_str())], n);
        }
        out.family(
            "nextbest_funnel_save_failures_total",
            Kind::Counter,
            "Saves of the funnel's decision counts (<data>/funnel.counts, every 5 s) that failed.",
        )
        .sample(&[], self.save_failures.load(Relaxed));
    }
}

/// The labels of a funnel row.
fn labels<'a>(
    t: &'a FunnelTable,
    offer: &'a str,
    channel: &'a str,
    variant: Variant,
) -> [(&'static str, &'a str); 5] {
    [
        ("model", &t.name),
        ("version", &t.version),
        ("offer", offer),
        ("channel", channel),
        ("variant", variant.as_str()),
    ]
}

fn for_each_row(
    tables: &[Arc<FunnelTable>],
    mut f: impl FnMut(&FunnelTable, &str, &str, Variant, bool, [u64; 5]),
) {
    for t in tables {
        for (oi, offer) in t.offers.iter().enumerate() {
            for (ci, channel) in t.channels.iter().enumerate() {
                for variant in Variant::ALL {
                    for explored in [false, true] {
                        let Some(c) = t.cell_of(oi, ci, variant, explored) else {
                            continue;
                        };
                        let counts = Stage::ALL.map(|s| c.0[s as usize].load(Relaxed));
                        if counts.iter().any(|&n| n > 0) {
                            f(t, offer, channel, variant, explored, counts);
                        }
                    }
                }
            }
        }
    }
}

/// Rates of one row; `None` where the denominator is zero.
fn rates_of(c: &[u64; 5]) -> [(&'static str, Option<f64>); 4] {
    let ratio = |n: u64, d: u64| (d > 0).then(|| n as f64 / d as f64);
    let [decisions, impressions, clicks, conversions, dismisses] = *c;
    [
        ("impression", ratio(impressions, decisions)),
        ("click", ratio(clicks, impressions)),
        ("conversion", ratio(conversions, impressions)),
        ("dismiss", ratio(dismisses, impressions)),
    ]
}
