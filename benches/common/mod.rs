//! Fixtures shared by the criterion benches and the profiling example: the demo model and
//! snapshot, a request mix that walks the whole snapshot, and generated models of N offers.
//!
//! Included with `#[path]` (each bench is its own crate), so every item here may be unused in
//! one of them.
#![allow(dead_code)]

use std::path::Path;

use nextbest::features::{FeatureStore, IdIndex};
use nextbest::model::{self, Limits, LoadedModel};

/// 2026-11-22T12:00:00Z: inside the demo offers' validity windows.
pub const NOW_MS: i64 = 1_795_348_800_000;

/// The demo's channel and placement pairs, as a page would ask for them.
pub const PLACEMENTS: [(&str, &str); 4] = [
    ("web", "home_hero"),
    ("web", "plans_page"),
    ("web", "checkout"),
    ("app", "app_home"),
];

/// The repository root (benches and examples run with the package root as working directory,
/// but this does not depend on it).
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The demo snapshot (10,000 customers x 21 features) and the demo model compiled against it.
pub fn demo() -> (FeatureStore, LoadedModel) {
    let store = FeatureStore::load(&root().join("models/features.csv")).expect("demo snapshot");
    let model = model::load(&root().join("models"), &store, &Limits::default()).expect("demo");
    (store, model)
}

/// SplitMix64, so every run walks the same "random" order.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// One request of the mix: a customer of the snapshot on a channel and placement.
pub struct MixItem {
    pub customer_id: String,
    pub channel: &'static str,
    pub placement: &'static str,
}

/// `n` requests over customers C0000001..C{customers} in a shuffled order, each on one of
/// the demo placements, so a bench does not keep one hot row in cache.
pub fn request_mix(customers: usize, n: usize, seed: u64) -> Vec<MixItem> {
    let mut rng = Rng(seed);
    (0..n)
        .map(|_| {
            let (channel, placement) = PLACEMENTS[rng.below(PLACEMENTS.len())];
            MixItem {
                customer_id: format!("C{:07}", 1 + rng.below(customers)),
                channel,
                placement,
            }
        })
        .collect()
}

/// The JSON body a channel backend sends for a mix item (the DESIGN.md example's shape).
pub fn request_body(item: &MixItem) -> Vec<u8> {
    format!(
        r#"{{"customer_id": "{}", "channel": "{}", "placement": "{}", "limit": 3, "context": {{"page": "plans", "device": "ios"}}, "explain": false}}"#,
        item.customer_id, item.channel, item.placement
    )
    .into_bytes()
}

/// The demo snapshot's feature names, which generated models use.
pub const FEATURES: [&str; 21] = [
    "tenure_months",
    "arpu_30d",
    "data_gb_30d",
    "data_allowance_gb",
    "voice_min_30d",
    "sms_30d",
    "days_since_last_topup",
    "app_sessions_7d",
    "web_sessions_7d",
    "complaints_90d",
    "is_prepaid",
    "device_age_months",
    "is_5g_device",
    "roaming_days_90d",
    "contract_months_left",
    "num_lines",
    "late_payments_12m",
    "nps_score",
    "has_fiber",
    "churn_score",
    "loyalty_points",
];

/// A model of `offers` logistic offers with `weights` terms each, all candidates of one
/// placement (`web`/`home`, limit 3), so a decision scores every one of them. With `rules`,
/// each offer also carries a two-leaf eligibility rule that most customers pass.
pub fn generated_model(offers: usize, weights: usize, rules: bool) -> Vec<u8> {
    let mut rng = Rng(7);
    let list: Vec<serde_json::Value> = (0..offers)
        .map(|i| {
            let id = format!("offer_{i:05}");
            let mut w = serde_json::Map::new();
            for j in 0..weights {
                let f = FEATURES[(i * 7 + j * 5) % FEATURES.len()];
                let v = (rng.below(2001) as f64 - 1000.0) / 50_000.0;
                w.insert(f.to_owned(), v.into());
            }
            let mut o = serde_json::json!({
                "id": id, "category": (["sales", "service", "retention"][i % 3]),
                "channels": ["web"], "placements": ["home"],
                "value": 1 + i % 20, "priority": 1.0,
                "valid_from": "2026-01-01T00:00:00Z", "valid_until": "2027-12-31T23:59:59Z",
                "scorer": {"kind": "logistic", "intercept": -2.0 + (i % 10) as f64 / 10.0,
                           "weights": w, "impute": {(FEATURES[(i * 7) % FEATURES.len()]): 1.0}},
                "content": {"web": {"title": format!("Offer {i}"), "body": "A generated offer for benchmarks.",
                    "image_url": format!("https://cdn.example.com/{id}.jpg"),
                    "cta_url": format!("https://shop.example.com/{id}")}}
            });
            if rules {
                o["eligibility"] = serde_json::json!({"all": [
                    {"feature": "complaints_90d", "op": "lt", "value": 3},
                    {"any": [{"feature": "tenure_months", "op": "ge", "value": 1},
                             {"context": "page", "op": "in", "values": ["plans", "home"]}]}
                ]});
            }
            o
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "name": "generated", "version": "1",
        "arbitration": {"min_score": 0.0, "min_propensity": 0.0},
        "placements": {"home": {"channels": ["web"], "limit": 3}},
        "offers": list,
        "fallback": {"web": {"default": [{"offer_id": "brand", "content": {"title": "Our plans",
            "body": "", "image_url": "https://cdn.example.com/b.jpg", "cta_url": "https://shop.example.com/"}}]}}
    }))
    .expect("serialisable")
}

/// A generated model of `offers` offers each scored by the XGBoost fixture of 100 trees of
/// depth 6 (tests/fixtures/trees/bench_100x6.json; its features are all in the demo snapshot).
/// Each offer loads its own copy, as 50 separately trained models would be.
pub fn generated_tree_model(offers: usize) -> Vec<u8> {
    let mut doc: serde_json::Value =
        serde_json::from_slice(&generated_model(offers, 1, false)).expect("generated JSON");
    for o in doc["offers"].as_array_mut().expect("offers") {
        o["scorer"] = serde_json::json!({"kind": "xgboost", "path": "bench_100x6.json"});
    }
    serde_json::to_vec(&doc).expect("serialisable")
}

/// The folder of the tree fixtures.
pub fn trees_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/trees")
}

/// Compiles a generated model whose scorer files live in `dir`.
pub fn compile_in(doc: Vec<u8>, store: &FeatureStore, dir: std::path::PathBuf) -> LoadedModel {
    model::from_bytes(doc, Some(dir), "bench".into(), store, &Limits::default())
        .expect("valid model")
}

/// Compiles a generated model against a snapshot.
pub fn compile(doc: Vec<u8>, store: &FeatureStore) -> LoadedModel {
    model::from_bytes(doc, None, "bench".into(), store, &Limits::default()).expect("valid model")
}

/// A synthetic snapshot of `customers` rows with the demo's columns (values are arbitrary
/// but finite), to look customers up in a table far larger than the caches.
pub fn synthetic_store(customers: usize) -> FeatureStore {
    let mut ids = IdIndex::with_capacity(customers, 8);
    let mut rng = Rng(11);
    let mut values = Vec::with_capacity(customers * FEATURES.len());
    for i in 0..customers {
        ids.push(&format!("C{:07}", i + 1)).expect("unique ids");
        values.extend((0..FEATURES.len()).map(|_| (rng.below(1000) as f32) / 10.0));
    }
    let columns = FEATURES.iter().map(|s| s.to_string()).collect();
    FeatureStore::new(columns, ids, values, "synthetic").expect("consistent")
}

/// The same snapshot used in place from a read-only map, as a server with a snapshot store
/// serves a `.nbf`: written as version 4, admitted into a scratch store, mapped; the scratch
/// folder is removed at once (the map keeps the file's pages).
pub fn mapped(store: &FeatureStore, tag: &str) -> FeatureStore {
    let dir = std::env::temp_dir().join(format!("nextbest-bench-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch folder");
    let src = dir.join("snapshot.nbf");
    nextbest::features::write_nbf(store, &src).expect("written");
    let snapshots = nextbest::features::SnapshotStore::new(dir.join("snapshots"));
    let mapped = FeatureStore::open(&src, Some(&snapshots)).expect("mapped");
    assert!(mapped.mapped_file().is_some());
    std::fs::remove_dir_all(&dir).expect("scratch folder removed");
    mapped
}

/// The server's state with the demo installed, to run its decide path without sockets.
pub struct Handler {
    /// What the handlers share (registry, metrics, guards, contacts).
    pub state: nextbest::server::AppState,
}

impl Handler {
    /// The demo installed in a registry, as the server runs it.
    pub fn demo() -> Self {
        Handler {
            state: Self::demo_builder().build(),
        }
    }

    /// The demo's server state, still to be completed (a decision log, say).
    pub fn demo_builder() -> nextbest::server::AppStateBuilder {
        let (store, model) = demo();
        let registry = std::sync::Arc::new(nextbest::registry::Registry::default());
        registry
            .install(std::sync::Arc::new(store), model)
            .expect("the demo model installs");
        nextbest::server::AppState::builder(registry, Default::default())
    }

    /// The in-process part of `POST /v1/decide` after the body is read: the server's own
    /// `server::decide::decide_body`, without hyper (no `X-Deadline-Us`).
    pub fn decide_post(&self, body: &[u8]) -> hyper::Response<http_body_util::Full<bytes::Bytes>> {
        nextbest::server::decide::decide_body(&self.state, body, None).expect("valid request")
    }
}

/// The demo snapshot with each text column's codes beside it as a numeric column
/// (`segment_code`, ...): the same decision on strings and on numbers, from one store.
pub fn demo_with_codes() -> FeatureStore {
    let text = std::fs::read_to_string(root().join("models/features.csv")).expect("demo CSV");
    let plain = FeatureStore::from_csv_bytes(text.as_bytes(), "features.csv").expect("demo");
    let texts: Vec<usize> = (0..plain.columns().len())
        .filter(|&c| plain.dictionary(c).is_some())
        .collect();
    let mut out = String::with_capacity(text.len() * 2);
    for (i, line) in text.lines().enumerate() {
        out.push_str(line);
        for &c in &texts {
            out.push(',');
            if i == 0 {
                out.push_str(&format!("{}_code", plain.columns()[c]));
            } else if let Some(x) = plain.row_at(i - 1).map(|r| r[c]).filter(|x| !x.is_nan()) {
                out.push_str(&(x as u32).to_string());
            }
        }
        out.push('\n');
    }
    FeatureStore::from_csv_bytes(out.as_bytes(), "features_codes.csv").expect("demo with codes")
}

/// 50 logistic offers (as [`generated_model`], 8 weights), each behind a rule on the text
/// columns (`segment in [silver, gold, platinum]` and `plan != basic`), or, with `codes`, the
/// same rule on their numeric code columns.
pub fn generated_text_rule_model(store: &FeatureStore, codes: bool) -> Vec<u8> {
    let mut doc: serde_json::Value =
        serde_json::from_slice(&generated_model(50, 8, false)).expect("generated JSON");
    let code = |col: &str, v: &str| -> f64 {
        let c = store.column(col).expect("text column");
        f64::from(store.dictionary(c).and_then(|d| d.code(v)).expect("value"))
    };
    let rule = if codes {
        let tiers: Vec<f64> = ["silver", "gold", "platinum"]
            .iter()
            .map(|v| code("segment", v))
            .collect();
        serde_json::json!({"all": [
            {"feature": "segment_code", "op": "in", "values": tiers},
            {"feature": "plan_code", "op": "ne", "value": code("plan", "basic")}]})
    } else {
        serde_json::json!({"all": [
            {"feature": "segment", "op": "in", "values": ["silver", "gold", "platinum"]},
            {"feature": "plan", "op": "ne", "value": "basic"}]})
    };
    for o in doc["offers"].as_array_mut().expect("offers") {
        o["eligibility"] = rule.clone();
    }
    serde_json::to_vec(&doc).expect("serialisable")
}

/// The folder of the categorical fixtures.
pub fn categorical_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/categorical")
}

/// The categorical fixtures' scoring rows twice: with segment, plan and region as text, and
/// with them as the training categories' numbers (what `bench_codes_100x6.json` was trained
/// on).
pub fn categorical_inputs() -> (FeatureStore, FeatureStore) {
    let text = std::fs::read_to_string(categorical_dir().join("inputs.csv")).expect("inputs.csv");
    let store = FeatureStore::from_csv_bytes(text.as_bytes(), "inputs.csv").expect("inputs");
    let lists: [(&str, &[&str]); 3] = [
        ("segment", &["bronze", "silver", "gold", "platinum"]),
        (
            "plan",
            &[
                "basic",
                "family",
                "prepaid_s",
                "prepaid_m",
                "unlimited",
                "unlimited_5g",
                "data_only",
                "senior",
            ],
        ),
        ("region", &["capital", "north", "south"]),
    ];
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    let mut out = header.join(",") + "\n";
    for line in lines {
        let fields: Vec<String> = line
            .split(',')
            .zip(&header)
            .map(|(f, h)| match lists.iter().find(|(n, _)| n == h) {
                Some((_, list)) => list
                    .iter()
                    .position(|v| v == &f)
                    .map_or(String::new(), |i| i.to_string()),
                None => f.to_owned(),
            })
            .collect();
        out += &(fields.join(",") + "\n");
    }
    let codes = FeatureStore::from_csv_bytes(out.as_bytes(), "codes.csv").expect("codes");
    (store, codes)
}
