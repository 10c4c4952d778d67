//! Campaign test helpers: a small model and base in a temporary folder, runs read back, the real
//! binary, conversions written to a data folder's log.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use nextbest::campaign::output::Summary;
use nextbest::campaign::{self, RunConfig};
use nextbest::features::FeatureStore;

use super::TempDir;

/// The runs' time: the demo server's manual clock.
pub const NOW: i64 = super::T0;
/// An hour in milliseconds.
pub const HOUR: i64 = 3_600_000;

/// A content object on channel `ch`, with every field.
pub fn content(ch: &str) -> Value {
    json!({"title": "T", "body": format!("on {ch}"), "image_url": "https://cdn.test/i.jpg",
           "cta_url": format!("https://shop.test/{ch}")})
}

/// An offer on sms, email and web, scored by a logistic on `weights`.
pub fn offer(id: &str, cat: &str, value: f64, intercept: f64, weights: Value) -> Value {
    json!({"id": id, "category": cat, "channels": ["sms", "email", "web"],
           "placements": ["sms_campaign", "email_campaign", "home"], "value": value,
           "scorer": {"kind": "logistic", "intercept": intercept, "weights": weights},
           "content": {"sms": content("sms"), "email": content("email"), "web": content("web")}})
}

/// A small model: three offers whose scores depend on two features, on sms, email and web.
pub fn small_model() -> Value {
    json!({"name": "small", "version": "7",
    "placements": {"sms_campaign": {"channels": ["sms"], "limit": 2},
                   "email_campaign": {"channels": ["email"], "limit": 2},
                   "home": {"channels": ["web"], "limit": 3}},
    "offers": [
        offer("a", "sales", 10.0, -1.0, json!({"x": 0.4})),
        offer("b", "sales", 6.0, -0.5, json!({"y": 0.5})),
        offer("c", "retention", 8.0, -2.0, json!({"x": 0.2, "y": 0.3})),
    ]})
}

/// `n` customers with features spread by a fixed generator (some values missing).
pub fn small_csv(n: usize) -> String {
    let mut s = String::from("customer_id,x,y\n");
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % 1000) as f64 / 100.0
    };
    for i in 0..n {
        let (x, y) = (next(), next());
        let y = if i % 17 == 5 {
            String::new()
        } else {
            format!("{y}")
        };
        s.push_str(&format!("K{i:05},{x},{y}\n"));
    }
    s
}

/// A folder with the small model, its snapshot, and room for campaigns and outputs.
pub struct Base {
    pub dir: TempDir,
}

impl Base {
    pub fn new(tag: &str, customers: usize) -> Base {
        let dir = TempDir::new(tag);
        std::fs::write(
            dir.0.join("model.json"),
            serde_json::to_vec(&small_model()).unwrap(),
        )
        .unwrap();
        std::fs::write(dir.0.join("features.csv"), small_csv(customers)).unwrap();
        // The data folder a server would have made: no history yet.
        std::fs::create_dir_all(dir.0.join("data")).unwrap();
        Base { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.0.join(name)
    }

    pub fn store(&self) -> FeatureStore {
        FeatureStore::load(&self.path("features.csv")).unwrap()
    }

    pub fn write_campaign(&self, name: &str, doc: &Value) -> PathBuf {
        let p = self.path(&format!("{name}.json"));
        std::fs::write(&p, serde_json::to_vec_pretty(doc).unwrap()).unwrap();
        p
    }

    pub fn config(&self, campaign: &Path, out: &str, now: i64) -> RunConfig {
        RunConfig {
            campaign: campaign.to_owned(),
            out: self.path(out),
            models: self.path("model.json"),
            features: self.path("features.csv"),
            null_words: Default::default(),
            data_dir: Some(self.path("data")),
            fleet: None,
            now_ms: Some(now),
            contact_memory_bytes: 64 << 20,
            progress_bar: false,
        }
    }

    pub fn run(&self, doc: &Value, out: &str, now: i64) -> Run {
        let name = doc["name"].as_str().unwrap();
        let file = self.write_campaign(name, doc);
        run_config(&self.config(&file, out, now))
    }
}

/// What a run wrote.
pub struct Run {
    pub summary: Summary,
    pub out: PathBuf,
    /// (customer, offer) in file order.
    pub rows: Vec<(String, String)>,
}

impl Run {
    pub fn customers(&self) -> BTreeSet<String> {
        self.rows.iter().map(|r| r.0.clone()).collect()
    }

    pub fn csv(&self) -> Vec<u8> {
        std::fs::read(self.out.join("targets.csv")).unwrap()
    }
}

/// Runs a campaign and reads its list back.
pub fn run_config(cfg: &RunConfig) -> Run {
    let summary = campaign::run(cfg).unwrap_or_else(|e| panic!("run failed: {:#?}", e.faults()));
    let mut r = csv::Reader::from_path(cfg.out.join("targets.csv")).unwrap();
    let rows = r
        .records()
        .map(|rec| {
            let rec = rec.unwrap();
            (rec[0].to_owned(), rec[2].to_owned())
        })
        .collect();
    Run {
        summary,
        out: cfg.out.clone(),
        rows,
    }
}

/// A campaign on the small model's SMS placement.
pub fn sms(name: &str) -> Value {
    json!({"name": name, "channel": "sms", "placement": "sms_campaign"})
}

/// Now, as the direct commit's log and the runs that read it agree on it.
pub fn support_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// An RFC 3339 time in Unix milliseconds.
pub fn at(rfc3339: &str) -> i64 {
    humantime::parse_rfc3339(rfc3339)
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Writes conversion events `(customer, offer, ts)` on `sms` into a data folder's log.
pub fn log_conversions(data_dir: &Path, conversions: &[(String, String, i64)]) {
    let list: Vec<_> = conversions
        .iter()
        .map(|(c, o, ts)| (c.as_str(), o.as_str(), Some("sms"), *ts))
        .collect();
    super::outcomes::write_conversions(data_dir, &list).unwrap();
}

/// Runs the real binary from the repository's folder (where the demo's default paths point).
pub fn nextbest(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_nextbest"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("NO_COLOR", "1")
        .env_remove("NEXTBEST_MODELS")
        .env_remove("NEXTBEST_FEATURES")
        .env_remove("NEXTBEST_DATA_DIR")
        .output()
        .unwrap()
}

/// The small base with a `tz` text column: Berlin, New York, none, and a name no database
/// knows, in turn.
pub fn base_with_zones(tag: &str, customers: usize) -> Base {
    let base = Base::new(tag, customers);
    let zones = ["Europe/Berlin", "America/New_York", "", "Mars/Olympus"];
    let csv: String = small_csv(customers)
        .lines()
        .enumerate()
        .map(|(i, line)| match i {
            0 => format!("{line},tz\n"),
            i => format!("{line},{}\n", zones[(i - 1) % 4]),
        })
        .collect();
    std::fs::write(base.path("features.csv"), csv).unwrap();
    base
}

/// The zone `base_with_zones` gives a customer.
pub fn zone_of(customer: &str) -> &'static str {
    let i: usize = customer[1..].parse().unwrap();
    ["Europe/Berlin", "America/New_York", "", "Mars/Olympus"][i % 4]
}

/// A base whose model declares a challenger (written as `challenger.json` beside it).
pub fn base_with_challenger(tag: &str, challenger: &Value) -> Base {
    let base = Base::new(tag, 400);
    let mut champion = small_model();
    champion["challenger"] = json!({"path": "challenger.json", "share": 0.5, "salt": "fair"});
    std::fs::write(
        base.path("model.json"),
        serde_json::to_vec(&champion).unwrap(),
    )
    .unwrap();
    std::fs::write(
        base.path("challenger.json"),
        serde_json::to_vec(challenger).unwrap(),
    )
    .unwrap();
    base
}
