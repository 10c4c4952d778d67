//! A contextual bandit simulation driven through the real HTTP API, shared by
//! `tests/contextual.rs` and `examples/contextual_sim.rs`: customers with features (one that
//! matters, distractors beside it), offers whose true conversion rates depend on them, and a
//! driver that asks `/v1/decide`, posts the impression and posts a conversion with the rate
//! the shown offer has for that customer. As in `sim.rs`, the world (customers, and which
//! customer and coin each step uses) is fixed by a seed, the server's draws by its decision
//! ids' seed, the clock stands still and what was learnt is published after every batch of
//! events, so a run repeats exactly.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use nextbest::contact::attribution::DecisionIds;
use nextbest::contact::{Clock, ContactConfig};
use nextbest::features::FeatureStore;
use nextbest::model::{self, Limits};
use nextbest::registry::Registry;
use nextbest::server::{self, AppState, RunningServer, ServerConfig};

use crate::sim::{shown, Conn, Rng, EVENT_BATCH, T0};

/// Customers in the snapshot.
pub const CUSTOMERS: usize = 2_000;
/// The `context` every contextual offer of the simulation declares: the feature that matters
/// first, then three that do not (a string, an integer, a skewed number with missing values).
pub const CONTEXT: [&str; 4] = ["is_prepaid", "segment", "tenure_months", "data_gb_30d"];
/// Values of the `segment` string column.
pub const SEGMENTS: [&str; 4] = ["basic", "bronze", "silver", "gold"];

/// One simulated customer.
#[derive(Debug, Clone)]
pub struct Customer {
    /// 1 for prepaid, 0 for postpaid.
    pub is_prepaid: bool,
    /// Index into [`SEGMENTS`].
    pub segment: usize,
    /// Whole months, 0 to 120.
    pub tenure_months: u32,
    /// Gigabytes in the last 30 days, log-normal; `None` is missing (about 5 %).
    pub data_gb_30d: Option<f64>,
}

/// How true rates depend on the customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Truth {
    /// The world: offer rates by prepaid or postpaid.
    Prepaid,
    /// Rates by a tenure band (24 to 59 months): a feature that matters, but not in a line.
    TenureBand,
    /// Rates by prepaid or postpaid, with `segment` mostly telling the same (85 % of customers:
    /// prepaid are `basic`, postpaid `gold`): two features that carry one fact.
    Correlated,
}

/// One offer: its id and its true rates for the two kinds of customer each [`Truth`] knows
/// (prepaid or in the band first).
#[derive(Debug, Clone)]
pub struct Offer {
    /// Offer id.
    pub id: String,
    /// True conversion rate: `[in the group, outside it]`.
    pub rates: [f64; 2],
}

/// The offers with the given rate pairs, named `o1`, `o2`, ...
pub fn offers(rates: &[[f64; 2]]) -> Vec<Offer> {
    rates
        .iter()
        .enumerate()
        .map(|(i, r)| Offer {
            id: format!("o{}", i + 1),
            rates: *r,
        })
        .collect()
}

/// The three offers: prepaid take o1 (6 % against 1 %), postpaid take o2 (5 % against
/// 1 %), o3 converts 3 % of everybody.
pub fn three() -> Vec<Offer> {
    offers(&[[0.06, 0.01], [0.01, 0.05], [0.03, 0.03]])
}

/// [`three`] and a fourth offer, best for postpaid customers (8 %; 1 % for prepaid).
pub fn four() -> Vec<Offer> {
    offers(&[[0.06, 0.01], [0.01, 0.05], [0.03, 0.03], [0.01, 0.08]])
}

/// The customers and the rule that gives their true rates.
#[derive(Debug, Clone)]
pub struct World {
    /// Every customer of the snapshot, `C0` first.
    pub customers: Vec<Customer>,
    /// How rates depend on them.
    pub truth: Truth,
}

impl World {
    /// Customers drawn from `seed`.
    pub fn new(seed: u64, truth: Truth) -> World {
        let mut rng = Rng::new(seed ^ 0xc0ffee);
        let customers = (0..CUSTOMERS)
            .map(|_| {
                let is_prepaid = rng.unit() < 0.5;
                let mut segment = rng.below(SEGMENTS.len());
                if truth == Truth::Correlated && rng.unit() < 0.85 {
                    segment = if is_prepaid { 0 } else { 3 };
                }
                let tenure_months = rng.below(121) as u32;
                let gb = ((1.0 + 1.2 * normal(&mut rng)).exp() * 100.0).round() / 100.0;
                let data_gb_30d = (rng.unit() >= 0.05).then_some(gb);
                Customer {
                    is_prepaid,
                    segment,
                    tenure_months,
                    data_gb_30d,
                }
            })
            .collect();
        World { customers, truth }
    }

    /// True when the customer is in the group the first rate of each offer is for.
    pub fn in_group(&self, c: &Customer) -> bool {
        match self.truth {
            Truth::Prepaid | Truth::Correlated => c.is_prepaid,
            Truth::TenureBand => (24..60).contains(&c.tenure_months),
        }
    }

    /// The true rate of an offer for a customer.
    pub fn rate(&self, c: &Customer, o: &Offer) -> f64 {
        o.rates[usize::from(!self.in_group(c))]
    }

    /// The best offer for a customer (the first of equals) and its rate.
    pub fn best(&self, c: &Customer, offers: &[Offer]) -> (usize, f64) {
        let mut best = (0, f64::MIN);
        for (i, o) in offers.iter().enumerate() {
            let r = self.rate(c, o);
            if r > best.1 {
                best = (i, r);
            }
        }
        best
    }

    /// The feature snapshot as CSV (`segment` is a string column).
    pub fn csv(&self) -> String {
        let mut csv = format!("customer_id,{}\n", CONTEXT.join(","));
        for (i, c) in self.customers.iter().enumerate() {
            let gb = c.data_gb_30d.map_or(String::new(), |g| g.to_string());
            csv.push_str(&format!(
                "C{i},{},{},{},{gb}\n",
                u8::from(c.is_prepaid),
                SEGMENTS[c.segment],
                c.tenure_months
            ));
        }
        csv
    }
}

/// A model with one placement (limit 1) and every offer adaptive, with the prior (3 %,
/// worth 50 impressions) and, when `contextual`, the `context` [`CONTEXT`].
pub fn model_doc(offers: &[Offer], contextual: bool, version: &str) -> serde_json::Value {
    let offers: Vec<serde_json::Value> = offers
        .iter()
        .map(|o| {
            let mut scorer = serde_json::json!({"kind": "adaptive", "outcome": "conversion",
                "prior": {"propensity": 0.03, "evidence": 50}});
            if contextual {
                scorer["context"] = serde_json::json!(CONTEXT);
            }
            serde_json::json!({"id": o.id, "category": "sales", "channels": ["web"],
                "placements": ["home"], "value": 1, "scorer": scorer,
                "content": {"web": {"title": o.id, "body": "b",
                    "image_url": "https://cdn.test/i.jpg", "cta_url": "https://shop.test/x"}}})
        })
        .collect();
    serde_json::json!({"name": "contextual-sim", "version": version,
        "placements": {"home": {"channels": ["web"], "limit": 1}}, "offers": offers})
}

/// Starts the real server (ephemeral loopback ports) on the world's snapshot and the offers'
/// model, its decision ids drawn from a sequence fixed by `id_seed` and its clock at [`T0`].
pub async fn start(
    world: &World,
    offers: &[Offer],
    contextual: bool,
    id_seed: u64,
) -> (RunningServer, Arc<AppState>) {
    let features =
        Arc::new(FeatureStore::from_csv_bytes(world.csv().as_bytes(), "world.csv").unwrap());
    let doc = serde_json::to_vec(&model_doc(offers, contextual, "1")).unwrap();
    let model = model::from_bytes(doc, None, "sim".into(), &*features, &Limits::default()).unwrap();
    let registry = Arc::new(Registry::default());
    registry.install(features, model).unwrap();
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        drain_delay: std::time::Duration::ZERO,
        // A debug build on a shared machine must not turn answers into deadline fallbacks.
        deadline: std::time::Duration::from_secs(1),
        decision_ids: DecisionIds::seeded(id_seed),
        ..ServerConfig::default()
    };
    let (clock, _) = Clock::manual(T0);
    let contacts =
        Arc::new(server::open_contacts(&registry, &ContactConfig::default(), clock).unwrap());
    let state = Arc::new(
        AppState::builder(registry, config)
            .contacts(contacts)
            .build(),
    );
    let running = server::start(state.clone()).await.unwrap();
    (running, state)
}

/// One decision of a run.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    /// The customer's index.
    pub customer: usize,
    /// The offer shown (index into the offers).
    pub chosen: usize,
    /// The best offer for the customer.
    pub best: usize,
}

/// The driver: the world's seeded stream and what was chosen so far.
pub struct Driver {
    state: Arc<AppState>,
    /// Which customer and which coin each step uses.
    pub stream: Rng,
    /// Every decision so far.
    pub steps: Vec<Step>,
    /// Sum over decisions of (the best offer's rate − the shown offer's rate) for the customer.
    pub regret: f64,
    /// Conversions posted.
    pub conversions: u64,
    events: Vec<serde_json::Value>,
    public: Conn,
}

impl Driver {
    /// A driver with its world seed, talking to the server's public listener.
    pub async fn new(public: SocketAddr, seed: u64, state: Arc<AppState>) -> Driver {
        Driver {
            state,
            stream: Rng::new(seed),
            steps: Vec::new(),
            regret: 0.0,
            conversions: 0,
            events: Vec::new(),
            public: Conn::open(public).await,
        }
    }

    /// Runs `n` decisions (the server's model must serve exactly `offers`).
    pub async fn run(&mut self, world: &World, offers: &[Offer], n: usize) {
        for _ in 0..n {
            let ci = self.stream.below(world.customers.len());
            let coin = self.stream.unit();
            let c = &world.customers[ci];
            let customer = format!("C{ci}");
            let (offer, decision) = self.public.decide_top(&customer).await;
            let chosen = offers.iter().position(|o| o.id == offer).unwrap();
            let (best, best_rate) = world.best(c, offers);
            let rate = world.rate(c, &offers[chosen]);
            self.regret += best_rate - rate;
            self.steps.push(Step {
                customer: ci,
                chosen,
                best,
            });
            let converted = coin < rate;
            self.conversions += u64::from(converted);
            shown(&mut self.events, &customer, &offer, &decision, converted);
            if self.events.len() >= EVENT_BATCH {
                self.flush().await;
            }
        }
        self.flush().await;
    }

    /// Posts the events not yet sent, then publishes what was learnt.
    pub async fn flush(&mut self) {
        if self.events.is_empty() {
            return;
        }
        self.public
            .post_events(std::mem::take(&mut self.events))
            .await;
        self.state.contacts.adaptive().refresh();
    }

    /// The share of the last `n` decisions that showed the customer's best offer.
    pub fn right_of_last(&self, n: usize) -> f64 {
        let tail = &self.steps[self.steps.len().saturating_sub(n)..];
        tail.iter().filter(|s| s.chosen == s.best).count() as f64 / tail.len().max(1) as f64
    }
}

/// Regret of Thompson sampling that knows which group each customer is in (a Beta posterior
/// per offer and group, the same prior as the server's), run in-process on the world `seed`
/// (the same customers and coins as the HTTP driver), learning after every batch of
/// [`EVENT_BATCH`] decisions as the server does: what a learner that sees only the feature that
/// matters loses to exploration.
pub fn group_oracle_regret(world: &World, offers: &[Offer], n: usize, seed: u64) -> f64 {
    let mut stream = Rng::new(seed);
    let mut own = Rng::new(seed ^ 0x0dd5);
    let k = offers.len();
    let prior = (0.03 * 50.0, 0.97 * 50.0);
    let mut counts = vec![[(0u64, 0u64); 2]; k];
    let mut seen = counts.clone();
    let mut regret = 0.0;
    for step in 0..n {
        let c = &world.customers[stream.below(world.customers.len())];
        let coin = stream.unit();
        let g = usize::from(!world.in_group(c));
        let i = (0..k)
            .max_by(|&a, &b| {
                let draw = |j: usize, own: &mut Rng| {
                    let (t, s) = seen[j][g];
                    beta(own, prior.0 + s as f64, prior.1 + (t - s) as f64)
                };
                let (da, db) = (draw(a, &mut own), draw(b, &mut own));
                da.total_cmp(&db)
            })
            .unwrap_or(0);
        let rate = world.rate(c, &offers[i]);
        regret += world.best(c, offers).1 - rate;
        counts[i][g].0 += 1;
        if coin < rate {
            counts[i][g].1 += 1;
        }
        if (step + 1) % EVENT_BATCH == 0 {
            seen.clone_from(&counts);
        }
    }
    regret
}

/// A Beta(a, b) draw as X / (X + Y) of two gamma draws (Marsaglia and Tsang).
pub fn beta(rng: &mut Rng, a: f64, b: f64) -> f64 {
    let (x, y) = (gamma(rng, a), gamma(rng, b));
    x / (x + y)
}

fn gamma(rng: &mut Rng, shape: f64) -> f64 {
    if shape < 1.0 {
        return gamma(rng, shape + 1.0) * (1.0 - rng.unit()).powf(1.0 / shape);
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = normal(rng);
        let v = (1.0 + c * x).powi(3);
        if v > 0.0 && (1.0 - rng.unit()).ln() < 0.5 * x * x + d - d * v + d * v.ln() {
            return d * v;
        }
    }
}

/// A standard normal draw (Box-Muller).
pub fn normal(rng: &mut Rng) -> f64 {
    let (u, v) = (1.0 - rng.unit(), rng.unit());
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// Writes a models folder for the real binary: `model.json` (the offers, see [`model_doc`])
/// and the world's snapshot as `features.csv`.
pub fn write_models(dir: &std::path::Path, world: &World, offers: &[Offer], contextual: bool) {
    std::fs::create_dir_all(dir).unwrap();
    let doc = model_doc(offers, contextual, "1");
    std::fs::write(
        dir.join("model.json"),
        serde_json::to_vec_pretty(&doc).unwrap(),
    )
    .unwrap();
    std::fs::write(dir.join("features.csv"), world.csv()).unwrap();
}
