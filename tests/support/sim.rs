//! A bandit simulation driven through the real HTTP API, shared by `tests/adaptive.rs` and
//! `examples/adaptive_sim.rs`: offers with known true conversion rates on one placement, a
//! driver that asks `/v1/decide`, posts the impression, and posts a conversion with the
//! offer's true probability. The world is fixed by a seed (which customer, and one uniform
//! coin per step, shared by every policy so their regrets compare on the same draws); the
//! server's own draws are seeded by its decision ids, whose random bits come from a seeded
//! sequence, on a clock that stands still, with what adaptive offers learnt published after
//! every batch of events: a run repeats exactly.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use nextbest::contact::attribution::DecisionIds;
use nextbest::contact::{Clock, ContactConfig};
use nextbest::features::FeatureStore;
use nextbest::model::{self, Limits};
use nextbest::registry::Registry;
use nextbest::server::{self, AppState, RunningServer, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Customers in the snapshot (decisions cycle through them in a seeded order).
pub const CUSTOMERS: usize = 500;
/// Events posted per `/v1/events` request.
pub const EVENT_BATCH: usize = 100;

/// SplitMix64: the world's one source of randomness, reproducible from its seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A stream from a seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in 0..n.
    pub fn below(&mut self, n: usize) -> usize {
        (self.unit() * n as f64) as usize
    }
}

/// One offer of the simulated world: its id and true conversion rate.
#[derive(Debug, Clone)]
pub struct Arm {
    /// Offer id.
    pub id: String,
    /// True probability that an impression converts.
    pub rate: f64,
}

/// The arms with the given rates, named `o1`, `o2`, ...
pub fn arms(rates: &[f64]) -> Vec<Arm> {
    rates
        .iter()
        .enumerate()
        .map(|(i, r)| Arm {
            id: format!("o{}", i + 1),
            rate: *r,
        })
        .collect()
}

/// A model with one placement, every arm adaptive with a weak prior (3 %, worth 10 impressions).
pub fn model_doc(arms: &[Arm], version: &str) -> serde_json::Value {
    let offers: Vec<serde_json::Value> = arms
        .iter()
        .map(|a| {
            serde_json::json!({"id": a.id, "category": "sales", "channels": ["web"],
                "placements": ["home"], "value": 1,
                "scorer": {"kind": "adaptive", "outcome": "conversion",
                    "prior": {"propensity": 0.03, "evidence": 10}},
                "content": {"web": {"title": a.id, "body": "b",
                    "image_url": "https://cdn.test/i.jpg", "cta_url": "https://shop.test/x"}}})
        })
        .collect();
    serde_json::json!({"name": "sim", "version": version,
        "placements": {"home": {"channels": ["web"], "limit": 1}}, "offers": offers})
}

/// The simulation's time: every decision and event happens at this instant.
pub const T0: i64 = 1_795_341_600_000;

/// Starts the real server (ephemeral loopback ports) serving the arms, its decision ids drawn
/// from a sequence fixed by `id_seed` and its clock standing at [`T0`].
pub async fn start(arms: &[Arm], id_seed: u64) -> (RunningServer, Arc<AppState>) {
    let mut csv = String::from("customer_id,x\n");
    for c in 0..CUSTOMERS {
        csv.push_str(&format!("C{c},1\n"));
    }
    let features = Arc::new(FeatureStore::from_csv_bytes(csv.as_bytes(), "sim.csv").unwrap());
    let doc = serde_json::to_vec(&model_doc(arms, "1")).unwrap();
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

/// One keep-alive HTTP/1.1 connection.
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    /// Asks `/v1/decide` on the simulation's placement (`web`, `home`) for `customer`: the
    /// top offer's id and the decision id.
    pub async fn decide_top(&mut self, customer: &str) -> (String, serde_json::Value) {
        let body = serde_json::json!({"customer_id": customer, "channel": "web",
            "placement": "home"});
        let (status, answer) = self
            .send("POST", "/v1/decide", &serde_json::to_vec(&body).unwrap())
            .await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
        let answer: serde_json::Value = serde_json::from_slice(&answer).unwrap();
        let offer = answer["offers"][0]["offer_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no offer in {answer}"))
            .to_owned();
        (offer, answer["decision_id"].clone())
    }

    /// Posts `events` to `/v1/events`; every one must be taken.
    pub async fn post_events(&mut self, events: Vec<serde_json::Value>) {
        let body = serde_json::json!({ "events": events });
        let (status, answer) = self
            .send("POST", "/v1/events", &serde_json::to_vec(&body).unwrap())
            .await;
        assert_eq!(status, 202, "{}", String::from_utf8_lossy(&answer));
    }

    /// Connects.
    pub async fn open(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        Conn {
            stream,
            buf: Vec::with_capacity(16 * 1024),
        }
    }

    /// Sends one request and reads its response: the status and the body.
    pub async fn send(&mut self, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(body);
        self.stream.write_all(&req).await.unwrap();
        loop {
            if let Some((status, body, used)) = parse(&self.buf) {
                self.buf.drain(..used);
                return (status, body);
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = self.stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the server closed the connection mid-response");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

fn parse(buf: &[u8]) -> Option<(u16, Vec<u8>, usize)> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let len: usize = head
        .split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .map_or(0, |(_, v)| v.trim().parse().unwrap_or(0));
    let start = end + 4;
    (buf.len() >= start + len).then(|| (status, buf[start..start + len].to_vec(), start + len))
}

/// What a channel posts for a shown offer: its impression, and its conversion when
/// `converted`, both quoting the decision.
pub fn shown(
    events: &mut Vec<serde_json::Value>,
    customer: &str,
    offer: &str,
    decision: &serde_json::Value,
    converted: bool,
) {
    events.push(
        serde_json::json!({"type": "impression", "customer_id": customer,
        "offer_id": offer, "channel": "web", "placement": "home", "decision_id": decision}),
    );
    if converted {
        events.push(
            serde_json::json!({"type": "conversion", "customer_id": customer,
            "offer_id": offer, "channel": "web", "decision_id": decision}),
        );
    }
}

/// The driver: the world's seeded stream and what was chosen so far.
pub struct Driver {
    /// The server, whose adaptive counts the driver publishes after each batch of events.
    state: Arc<AppState>,
    /// The world's randomness.
    pub world: Rng,
    /// Index (into the arms) chosen at each decision so far.
    pub chosen: Vec<usize>,
    /// Sum over decisions of (best rate − chosen rate).
    pub regret: f64,
    events: Vec<serde_json::Value>,
    public: Conn,
}

impl Driver {
    /// A driver with its world seed, talking to the server's public listener.
    pub async fn new(public: SocketAddr, seed: u64, state: Arc<AppState>) -> Driver {
        Driver {
            state,
            world: Rng::new(seed),
            chosen: Vec::new(),
            regret: 0.0,
            events: Vec::new(),
            public: Conn::open(public).await,
        }
    }

    /// Runs `n` decisions against `arms` (the server's model must serve exactly these).
    pub async fn run(&mut self, arms: &[Arm], n: usize) {
        let best = arms.iter().map(|a| a.rate).fold(0.0, f64::max);
        for _ in 0..n {
            let customer = format!("C{}", self.world.below(CUSTOMERS));
            let coin = self.world.unit();
            let (offer, decision) = self.public.decide_top(&customer).await;
            let i = arms.iter().position(|a| a.id == offer).unwrap();
            self.chosen.push(i);
            self.regret += best - arms[i].rate;
            shown(
                &mut self.events,
                &customer,
                &offer,
                &decision,
                coin < arms[i].rate,
            );
            if self.events.len() >= EVENT_BATCH {
                self.flush().await;
            }
        }
        self.flush().await;
    }

    /// Posts the events not yet sent.
    pub async fn flush(&mut self) {
        if self.events.is_empty() {
            return;
        }
        self.public
            .post_events(std::mem::take(&mut self.events))
            .await;
        // The next decisions read every event posted so far, not whatever the refresher had
        // published by then: the run does not depend on the machine's speed.
        self.state.contacts.adaptive().refresh();
    }

    /// The share of the last `n` decisions that chose arm `i`.
    pub fn share_of_last(&self, n: usize, i: usize) -> f64 {
        let tail = &self.chosen[self.chosen.len().saturating_sub(n)..];
        tail.iter().filter(|c| **c == i).count() as f64 / tail.len().max(1) as f64
    }
}

/// Cumulative regret of a policy run in-process on the world `seed` (the same customers and
/// coins as the HTTP driver): `epsilon` = 1 is uniform random choice, 0.1 epsilon-greedy.
pub fn baseline_regret(arms: &[Arm], n: usize, seed: u64, epsilon: f64) -> f64 {
    let mut world = Rng::new(seed);
    let mut own = Rng::new(seed ^ 0x5eed);
    let best = arms.iter().map(|a| a.rate).fold(0.0, f64::max);
    let (mut trials, mut wins) = (vec![0u64; arms.len()], vec![0u64; arms.len()]);
    let mut regret = 0.0;
    for _ in 0..n {
        let _customer = world.below(CUSTOMERS);
        let coin = world.unit();
        let i = if own.unit() < epsilon {
            own.below(arms.len())
        } else {
            // Greedy on the observed rate; an arm never tried is tried first.
            (0..arms.len())
                .max_by(|&a, &b| {
                    let rate = |k: usize| {
                        if trials[k] == 0 {
                            f64::INFINITY
                        } else {
                            wins[k] as f64 / trials[k] as f64
                        }
                    };
                    rate(a).total_cmp(&rate(b)).then(b.cmp(&a))
                })
                .unwrap()
        };
        trials[i] += 1;
        if coin < arms[i].rate {
            wins[i] += 1;
        }
        regret += best - arms[i].rate;
    }
    regret
}
