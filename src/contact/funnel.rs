//! The funnel: per model version × offer × channel × variant, how many decisions served the
//! offer and how many impressions, clicks, conversions and dismisses came back.
//!
//! Counting is a relaxed atomic add into a table built once per model version, where offers
//! and channels are already indices: the decision path does no hashing and takes no lock.
//! Events find their table through the model tag in their decision id (see
//! [`super::attribution`]), so an outcome counts for the model version and variant that made the
//! decision, even after a newer version took over. Events without a decision id, or whose
//! model, offer or channel is unknown, are counted as unattributed. Counters start at zero with
//! the process (as Prometheus counters do); they are not rebuilt from the log.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use super::attribution::{attribution, model_tag, VARIANTS};
use super::event::{Event, EventKind};
use crate::engine::{CompiledModel, Ranked};

/// Model versions whose counters are kept (the active ones and a few before them).
pub const MAX_TABLES: usize = 8;

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

/// The counters of one model version.
pub struct FunnelTable {
    model_json: Box<str>,
    /// Model name.
    pub name: Box<str>,
    /// Model version.
    pub version: Box<str>,
    /// The tag decision ids of this version carry.
    pub tag: u16,
    offers: Box<[Box<str>]>,
    categories: Box<[Box<str>]>,
    offer_index: hashbrown::HashMap<Box<str>, u32, foldhash::fast::RandomState>,
    channels: Box<[Box<str>]>,
    cells: Box<[Cell]>,
}

impl FunnelTable {
    fn new(model: &CompiledModel) -> Self {
        let offers: Box<[Box<str>]> = model.offers.iter().map(|o| o.id.clone()).collect();
        let channels: Box<[Box<str>]> = model.channels.iter().map(|c| c.name.clone()).collect();
        let n = offers.len() * channels.len() * VARIANTS.len();
        FunnelTable {
            model_json: model.model_json.clone(),
            name: model.name.clone(),
            version: model.version.clone(),
            tag: model_tag(&model.model_json),
            offer_index: offers
                .iter()
                .enumerate()
                .map(|(i, id)| (id.clone(), i as u32))
                .collect(),
            categories: model.offers.iter().map(|o| o.category.clone()).collect(),
            offers,
            channels,
            cells: (0..n).map(|_| Cell::default()).collect(),
        }
    }

    #[inline]
    fn cell(&self, offer: usize, channel: usize, variant: usize) -> Option<&Cell> {
        self.cells
            .get((offer * self.channels.len() + channel) * VARIANTS.len() + variant)
    }

    /// The index of an offer id in this model version.
    pub fn offer(&self, id: &str) -> Option<usize> {
        self.offer_index.get(id).map(|&i| i as usize)
    }

    /// The category the model gives an offer id.
    pub fn category(&self, id: &str) -> Option<&str> {
        self.offer(id).map(|i| &*self.categories[i])
    }

    /// Counts a decision: each offer it served, on its channel, for its variant.
    #[inline]
    pub fn decided(&self, channel: usize, ranked: &[Ranked], variant: u8) {
        for r in ranked {
            if let Some(c) = self.cell(r.offer as usize, channel, variant as usize) {
                c.0[Stage::Decision as usize].fetch_add(1, Relaxed);
            }
        }
    }

    /// One offer × channel × variant's counts, by stage (tests and stats).
    pub fn counts(&self, offer_id: &str, channel: &str, variant: u8) -> Option<[u64; 5]> {
        let o = self.offer(offer_id)?;
        let ch = self.channels.iter().position(|c| &**c == channel)?;
        let c = self.cell(o, ch, variant as usize)?;
        Some(Stage::ALL.map(|s| c.0[s as usize].load(Relaxed)))
    }
}

/// Every model version's funnel, newest first, and the unattributed events.
pub struct Funnel {
    tables: ArcSwap<Vec<Arc<FunnelTable>>>,
    building: Mutex<()>,
    unattributed: [AtomicU64; Stage::ALL.len()],
}

impl Default for Funnel {
    fn default() -> Self {
        Funnel {
            tables: ArcSwap::from_pointee(Vec::new()),
            building: Mutex::new(()),
            unattributed: Default::default(),
        }
    }
}

impl Funnel {
    /// The table of a model version, made on its first decision (a lock only then).
    #[inline]
    pub fn table(&self, model: &CompiledModel) -> Arc<FunnelTable> {
        if let Some(t) = self.find(model) {
            return t;
        }
        let _guard = self.building.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = self.find(model) {
            return t;
        }
        let t = Arc::new(FunnelTable::new(model));
        let mut next = Vec::with_capacity(MAX_TABLES);
        next.push(t.clone());
        next.extend(self.tables.load().iter().take(MAX_TABLES - 1).cloned());
        self.tables.store(Arc::new(next));
        t
    }

    /// The tag of a model version's decision ids (making its table on first use).
    #[inline]
    pub fn tag(&self, model: &CompiledModel) -> u16 {
        let tables = self.tables.load();
        match tables.iter().find(|t| t.model_json == model.model_json) {
            Some(t) => t.tag,
            None => self.table(model).tag,
        }
    }

    /// Counts a decision of a model version: each offer served, on its channel, for its
    /// variant. No reference count is touched, so cores deciding at once do not contend.
    #[inline]
    pub fn decided(&self, model: &CompiledModel, channel: usize, ranked: &[Ranked], variant: u8) {
        let tables = self.tables.load();
        if let Some(t) = tables.iter().find(|t| t.model_json == model.model_json) {
            t.decided(channel, ranked, variant);
        }
    }

    #[inline]
    fn find(&self, model: &CompiledModel) -> Option<Arc<FunnelTable>> {
        self.tables
            .load()
            .iter()
            .find(|t| t.model_json == model.model_json)
            .cloned()
    }

    /// The newest table (the model most recently decided with), if any.
    pub fn newest(&self) -> Option<Arc<FunnelTable>> {
        self.tables.load().first().cloned()
    }

    /// Counts an accepted event for the decision it names, or as unattributed.
    pub fn event(&self, e: &Event<'_>) {
        let Some(stage) = Stage::of(e.kind) else {
            return;
        };
        let tables = self.tables.load();
        let cell = e.decision_id.and_then(|d| {
            let (tag, variant) = attribution(d);
            let t = tables.iter().find(|t| t.tag == tag)?;
            let offer = t.offer(e.offer_id?)?;
            let channel = t.channels.iter().position(|c| Some(&**c) == e.channel)?;
            t.cell(offer, channel, variant as usize)
                .filter(|_| (variant as usize) < VARIANTS.len())
        });
        match cell {
            Some(c) => c.0[stage as usize].fetch_add(1, Relaxed),
            None => self.unattributed[stage as usize].fetch_add(1, Relaxed),
        };
    }

    /// Unattributed events by stage.
    pub fn unattributed(&self) -> [u64; 5] {
        Stage::ALL.map(|s| self.unattributed[s as usize].load(Relaxed))
    }

    /// Every non-zero row, newest model first, for `/admin/stats`.
    pub fn rows(&self) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        for_each_row(&self.tables.load(), |t, offer, channel, variant, counts| {
            let mut row = serde_json::json!({
                "model": &*t.name, "version": &*t.version,
                "offer_id": offer, "channel": channel, "variant": variant,
            });
            for s in Stage::ALL {
                row[s.as_str()] = counts[s as usize].into();
            }
            let mut rates = serde_json::Map::new();
            for (name, value) in rates_of(&counts) {
                rates.insert(name.into(), value.into());
            }
            row["rates"] = rates.into();
            out.push(row);
        });
        out
    }

    /// The Prometheus text for the funnel.
    pub fn render(&self, out: &mut String) {
        let tables = self.tables.load();
        out.push_str("# HELP nextbest_funnel_total Offers served and the outcomes reported for them, by model, offer, channel, variant and stage.\n");
        out.push_str("# TYPE nextbest_funnel_total counter\n");
        let mut rates = String::new();
        for_each_row(&tables, |t, offer, channel, variant, counts| {
            let mut labels = String::new();
            let _ = write!(
                labels,
                "model=\"{}\",version=\"{}\",offer=\"{}\",channel=\"{}\",variant=\"{}\"",
                escape(&t.name),
                escape(&t.version),
                escape(offer),
                escape(channel),
                variant
            );
            for s in Stage::ALL {
                let _ = writeln!(
                    out,
                    "nextbest_funnel_total{{{labels},stage=\"{}\"}} {}",
                    s.as_str(),
                    counts[s as usize]
                );
            }
            for (name, value) in rates_of(&counts) {
                if let Some(v) = value {
                    let _ = writeln!(
                        rates,
                        "nextbest_funnel_rate{{{labels},rate=\"{name}\"}} {v}"
                    );
                }
            }
        });
        out.push_str("# HELP nextbest_funnel_rate Funnel rates: impression (per decision), click, conversion and dismiss (per impression).\n");
        out.push_str("# TYPE nextbest_funnel_rate gauge\n");
        out.push_str(&rates);
        out.push_str("# HELP nextbest_funnel_unattributed_total Outcomes whose decision, model, offer or channel is unknown.\n");
        out.push_str("# TYPE nextbest_funnel_unattributed_total counter\n");
        for (s, n) in Stage::ALL.iter().zip(self.unattributed()).skip(1) {
            let _ = writeln!(
                out,
                "nextbest_funnel_unattributed_total{{stage=\"{}\"}} {n}",
                s.as_str()
            );
        }
    }
}

fn for_each_row(
    tables: &[Arc<FunnelTable>],
    mut f: impl FnMut(&FunnelTable, &str, &str, &str, [u64; 5]),
) {
    for t in tables {
        for (oi, offer) in t.offers.iter().enumerate() {
            for (ci, channel) in t.channels.iter().enumerate() {
                for (vi, variant) in VARIANTS.iter().enumerate() {
                    let Some(c) = t.cell(oi, ci, vi) else {
                        continue;
                    };
                    let counts = Stage::ALL.map(|s| c.0[s as usize].load(Relaxed));
                    if counts.iter().any(|&n| n > 0) {
                        f(t, offer, channel, variant, counts);
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

/// A Prometheus label value, escaped.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
