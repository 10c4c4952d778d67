//! Outbound campaigns: allocation against brute-force references on small bases, contact rules
//! across campaigns and channels, commit through a real server, file faults, Parquet snapshots.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{json, Value};

use nextbest::campaign::commit::{self, Target};
use nextbest::campaign::output::Summary;
use nextbest::campaign::{self, RunConfig};
use nextbest::engine::{self, Request, Unbounded, Verdict};
use nextbest::features::FeatureStore;
use nextbest::model::{self, Limits};
use support::{demo_dir, post_json, TempDir, T0};

const NOW: i64 = T0;
const HOUR: i64 = 3_600_000;

fn content(ch: &str) -> Value {
    json!({"title": "T", "body": format!("on {ch}"), "image_url": "https://cdn.test/i.jpg",
           "cta_url": format!("https://shop.test/{ch}")})
}

fn offer(id: &str, cat: &str, value: f64, intercept: f64, weights: Value) -> Value {
    json!({"id": id, "category": cat, "channels": ["sms", "email", "web"],
           "placements": ["sms_campaign", "email_campaign", "home"], "value": value,
           "scorer": {"kind": "logistic", "intercept": intercept, "weights": weights},
           "content": {"sms": content("sms"), "email": content("email"), "web": content("web")}})
}

/// A small model: three offers whose scores depend on two features, on sms, email and web.
fn small_model() -> Value {
    json!({"name": "small", "version": "7",
    "placements": {"sms_campaign": {"channels": ["sms"], "limit": 1},
                   "email_campaign": {"channels": ["email"], "limit": 1},
                   "home": {"channels": ["web"], "limit": 3}},
    "offers": [
        offer("a", "sales", 10.0, -1.0, json!({"x": 0.4})),
        offer("b", "sales", 6.0, -0.5, json!({"y": 0.5})),
        offer("c", "retention", 8.0, -2.0, json!({"x": 0.2, "y": 0.3})),
    ]})
}

/// `n` customers with features spread by a fixed generator (some values missing).
fn small_csv(n: usize) -> String {
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
struct Base {
    dir: TempDir,
}

impl Base {
    fn new(tag: &str, customers: usize) -> Base {
        let dir = TempDir::new(tag);
        std::fs::write(
            dir.0.join("model.json"),
            serde_json::to_vec(&small_model()).unwrap(),
        )
        .unwrap();
        std::fs::write(dir.0.join("features.csv"), small_csv(customers)).unwrap();
        Base { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.0.join(name)
    }

    fn store(&self) -> FeatureStore {
        FeatureStore::load(&self.path("features.csv")).unwrap()
    }

    fn write_campaign(&self, name: &str, doc: &Value) -> PathBuf {
        let p = self.path(&format!("{name}.json"));
        std::fs::write(&p, serde_json::to_vec_pretty(doc).unwrap()).unwrap();
        p
    }

    fn config(&self, campaign: &Path, out: &str, now: i64) -> RunConfig {
        RunConfig {
            campaign: campaign.to_owned(),
            out: self.path(out),
            models: self.path("model.json"),
            features: self.path("features.csv"),
            data_dir: Some(self.path("data")),
            fleet: None,
            now_ms: Some(now),
            contact_memory_bytes: 64 << 20,
            progress_bar: false,
        }
    }

    fn run(&self, doc: &Value, out: &str, now: i64) -> Run {
        let name = doc["name"].as_str().unwrap();
        let file = self.write_campaign(name, doc);
        run_config(&self.config(&file, out, now))
    }
}

/// What a run wrote.
struct Run {
    summary: Summary,
    out: PathBuf,
    /// (customer, offer) in file order.
    rows: Vec<(String, String)>,
}

impl Run {
    fn customers(&self) -> BTreeSet<String> {
        self.rows.iter().map(|r| r.0.clone()).collect()
    }

    fn csv(&self) -> Vec<u8> {
        std::fs::read(self.out.join("targets.csv")).unwrap()
    }
}

fn run_config(cfg: &RunConfig) -> Run {
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

/// Every (customer, offer) score the engine gives on a channel and placement, from explain:
/// the reference the allocation is checked against.
fn engine_scores(base: &Base, placement: &str, channel: &str) -> Vec<(String, String, f64)> {
    let store = base.store();
    let m = model::load(&base.path("model.json"), &store, &Limits::default()).unwrap();
    let mut out = Vec::new();
    for row in 0..store.len() {
        let id = store.id_at(row).unwrap();
        let req = Request {
            customer_id: Some(id),
            channel,
            placement,
            limit: Some(50),
            context: &[],
            explain: true,
            learnt: None,
        };
        let d = engine::decide(
            &m.compiled,
            &store,
            &req,
            &engine::NoContacts,
            &Unbounded,
            NOW,
        );
        for (oi, v) in d.explain.iter().enumerate() {
            if let Verdict::Scored { score, .. } = v {
                out.push((id.to_owned(), m.compiled.offers[oi].id.to_string(), *score));
            }
        }
    }
    out
}

/// Each customer's best pair (ties: offer order), best customers first (ties: customer id).
fn best_per_customer(scores: &[(String, String, f64)]) -> Vec<(String, String, f64)> {
    let mut best: BTreeMap<String, (String, f64)> = BTreeMap::new();
    for (c, o, s) in scores {
        match best.get(c) {
            Some((_, b)) if *b >= *s => {}
            _ => {
                best.insert(c.clone(), (o.clone(), *s));
            }
        }
    }
    let mut v: Vec<_> = best.into_iter().map(|(c, (o, s))| (c, o, s)).collect();
    v.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(&b.0)));
    v
}

fn sms(name: &str) -> Value {
    json!({"name": name, "channel": "sms", "placement": "sms_campaign"})
}

#[test]
fn when_capacity_binds_exactly_the_best_pairs_are_selected() {
    let base = Base::new("cmp-capacity", 300);
    let mut doc = sms("cap");
    doc["capacity"] = json!({"max_contacts": 40, "per": "day"});
    let run = base.run(&doc, "out", NOW);

    let reference = best_per_customer(&engine_scores(&base, "sms_campaign", "sms"));
    assert!(
        reference.len() > 100,
        "the base must offer more than the capacity"
    );
    let expected: Vec<(String, String)> = reference
        .iter()
        .take(40)
        .map(|(c, o, _)| (c.clone(), o.clone()))
        .collect();
    assert_eq!(
        run.rows, expected,
        "the 40 best customers, each with their best offer"
    );
    assert_eq!(run.summary.selected, 40);
    assert_eq!(run.summary.eligible, reference.len() as u64);
    assert_eq!(run.summary.held_out.capacity, reference.len() as u64 - 40);
    assert_eq!(
        run.summary.held_out.no_eligible_offer,
        300 - reference.len() as u64
    );

    // The same inputs give the same bytes, list and Parquet alike.
    let again = base.run(&doc, "out2", NOW);
    assert_eq!(run.csv(), again.csv());
    for f in ["targets.parquet", "summary.json"] {
        assert_eq!(
            std::fs::read(run.out.join(f)).unwrap(),
            std::fs::read(again.out.join(f)).unwrap(),
            "{f}"
        );
    }
}

/// The limits of a campaign as the exact reference takes them.
#[derive(Clone, Default)]
struct Bounds {
    capacity: Option<u64>,
    per_customer: u32,
    min: BTreeMap<&'static str, u64>,
    max: BTreeMap<&'static str, u64>,
    /// Category maximums, with the category of each offer of the small model.
    category_max: BTreeMap<&'static str, u64>,
}

fn category(offer: &str) -> &'static str {
    if offer == "c" {
        "retention"
    } else {
        "sales"
    }
}

/// The exact integer optimum of the list's total score over `scores` under `b` (offer
/// minimums as hard constraints), by a MILP solver.
fn optimum(scores: &[(String, String, f64)], b: &Bounds) -> f64 {
    use good_lp::{constraint, variable, Expression, ProblemVariables, Solution, SolverModel};
    let mut vars = ProblemVariables::new();
    let x: Vec<_> = scores
        .iter()
        .map(|_| vars.add(variable().binary()))
        .collect();
    let sum = |keep: &dyn Fn(&(String, String, f64)) -> bool| -> Expression {
        scores
            .iter()
            .zip(&x)
            .filter(|(s, _)| keep(s))
            .map(|(_, v)| *v)
            .sum()
    };
    let objective: Expression = scores.iter().zip(&x).map(|(s, v)| s.2 * *v).sum();
    let mut model = vars.maximise(objective.clone()).using(good_lp::microlp);
    let customers: BTreeSet<&str> = scores.iter().map(|s| s.0.as_str()).collect();
    for c in customers {
        model = model.with(constraint!(sum(&|s| s.0 == c) <= b.per_customer as f64));
    }
    if let Some(cap) = b.capacity {
        model = model.with(constraint!(sum(&|_| true) <= cap as f64));
    }
    for (o, &m) in &b.max {
        model = model.with(constraint!(sum(&|s| s.1 == *o) <= m as f64));
    }
    for (o, &m) in &b.min {
        model = model.with(constraint!(sum(&|s| s.1 == *o) >= m as f64));
    }
    for (cat, &m) in &b.category_max {
        model = model.with(constraint!(sum(&|s| category(&s.1) == *cat) <= m as f64));
    }
    let solution = model.solve().expect("the reference problem is feasible");
    solution.eval(&objective)
}

impl Bounds {
    fn campaign(&self, name: &str) -> Value {
        let mut doc = sms(name);
        doc["max_offers_per_customer"] = json!(self.per_customer);
        if let Some(c) = self.capacity {
            doc["capacity"] = json!({"max_contacts": c});
        }
        let mut limits = serde_json::Map::new();
        for o in ["a", "b", "c"] {
            let mut l = serde_json::Map::new();
            if let Some(m) = self.min.get(o) {
                l.insert("min".into(), json!(m));
            }
            if let Some(m) = self.max.get(o) {
                l.insert("max".into(), json!(m));
            }
            if !l.is_empty() {
                limits.insert(o.into(), Value::Object(l));
            }
        }
        doc["offer_limits"] = Value::Object(limits);
        doc["category_limits"] = self
            .category_max
            .iter()
            .map(|(c, m)| (c.to_string(), json!({"max": m})))
            .collect::<serde_json::Map<_, _>>()
            .into();
        doc
    }
}

/// The list's total score, read back from targets.csv, with its per-offer and per-customer
/// counts checked against the limits.
fn list_score(run: &Run, b: &Bounds) -> f64 {
    let mut r = csv::Reader::from_path(run.out.join("targets.csv")).unwrap();
    let (mut total, mut per_offer, mut per_customer) = (0.0, BTreeMap::new(), BTreeMap::new());
    let mut rows = 0u64;
    for rec in r.records() {
        let rec = rec.unwrap();
        total += rec[4].parse::<f64>().unwrap();
        *per_offer.entry(rec[2].to_owned()).or_insert(0u64) += 1;
        *per_customer.entry(rec[0].to_owned()).or_insert(0u32) += 1;
        rows += 1;
    }
    assert!(b.capacity.is_none_or(|c| rows <= c));
    assert!(per_customer.values().all(|&n| n <= b.per_customer));
    for (o, n) in &per_offer {
        assert!(b.max.get(o.as_str()).is_none_or(|m| n <= m), "{o}: {n}");
        assert!(b.min.get(o.as_str()).is_none_or(|m| n >= m), "{o}: {n}");
    }
    for (cat, m) in &b.category_max {
        let n: u64 = per_offer
            .iter()
            .filter(|(o, _)| category(o) == *cat)
            .map(|(_, n)| n)
            .sum();
        assert!(n <= *m, "{cat}: {n}");
    }
    total
}

/// The four cases of the issue (capacity only, capped offers, minimums with a category cap,
/// two offers a customer) on a base where their limits bind: the list is the exact optimum,
/// and each shadow price is what the optimum gains with one unit more of its limit.
#[test]
fn the_list_is_the_exact_optimum_and_shadow_prices_are_its_margins() {
    let base = Base::new("cmp-optimum", 300);
    let scores = engine_scores(&base, "sms_campaign", "sms");
    let cases = [
        (
            "capacity_only",
            Bounds {
                capacity: Some(40),
                per_customer: 1,
                ..Bounds::default()
            },
        ),
        (
            "capped_offers",
            Bounds {
                capacity: Some(80),
                per_customer: 1,
                max: [("a", 12), ("b", 20)].into(),
                ..Bounds::default()
            },
        ),
        (
            "minimums_with_a_category_cap",
            Bounds {
                capacity: Some(60),
                per_customer: 1,
                min: [("c", 25), ("b", 10)].into(),
                category_max: [("sales", 30)].into(),
                ..Bounds::default()
            },
        ),
        (
            "two_per_customer",
            Bounds {
                capacity: Some(90),
                per_customer: 2,
                max: [("a", 30)].into(),
                category_max: [("sales", 60)].into(),
                ..Bounds::default()
            },
        ),
    ];
    for (name, b) in cases {
        let run = base.run(&b.campaign(name), name, NOW);
        let got = list_score(&run, &b);
        let best = optimum(&scores, &b);
        assert!(
            (got - best).abs() <= 1e-9 * best,
            "{name}: the list scores {got}, the optimum is {best}"
        );
        assert!(
            !run.summary.shadow_prices.is_empty(),
            "{name}: the limits must bind"
        );
        for (limit, p) in &run.summary.shadow_prices {
            let mut more = b.clone();
            let bump = |m: &mut u64, by: i64| *m = (*m as i64 + by) as u64;
            match limit.split('.').collect::<Vec<_>>()[..] {
                ["capacity", "max_contacts"] => more.capacity = more.capacity.map(|c| c + 1),
                ["offer_limits", o, "max"] => bump(more.max.get_mut(o).unwrap(), 1),
                ["offer_limits", o, "min"] => bump(more.min.get_mut(o).unwrap(), -1),
                ["category_limits", c, "max"] => bump(more.category_max.get_mut(c).unwrap(), 1),
                _ => panic!("{name}: unexpected limit {limit}"),
            }
            let margin = (optimum(&scores, &more) - best).max(0.0);
            assert!(
                (p.per_unit - margin).abs() <= 1e-6 * best,
                "{name}: {limit} is priced {} but one unit more adds {margin}",
                p.per_unit
            );
        }
    }
}

/// Several channels, one list: sms for everyone, e-mail for those with `y >= 5` (its
/// `reachable` rule), each with its own capacity. The list is the exact optimum over
/// (customer, offer, channel) with one channel per customer and offer (by a MILP solver), each
/// channel's shadow price is its margin, and every row says why the other channel was not
/// chosen.
#[test]
fn several_channels_give_the_exact_optimum_over_all_channels_jointly() {
    let base = Base::new("cmp-channels", 160);
    let store = base.store();
    let y = store.column("y").unwrap();
    let email_ok = |c: &str| {
        let v = store.row(c).unwrap()[y];
        !v.is_nan() && v >= 5.0
    };
    let mut triples: Vec<(String, String, &str, f64)> = Vec::new();
    for (channel, placement) in [("email", "email_campaign"), ("sms", "sms_campaign")] {
        for (c, o, s) in engine_scores(&base, placement, channel) {
            if channel == "sms" || email_ok(&c) {
                triples.push((c, o, channel, s));
            }
        }
    }
    for (per_customer, sms_cap, email_cap) in [(1u32, 30u64, 45u64), (2, 50, 70)] {
        let name = format!("multi_{per_customer}");
        let doc = json!({"name": name, "offers": ["a", "b", "c"],
            "max_offers_per_customer": per_customer,
            "channels": {
                "sms": {"placement": "sms_campaign", "max_contacts": sms_cap},
                "email": {"placement": "email_campaign", "max_contacts": email_cap,
                          "reachable": {"feature": "y", "op": "ge", "value": 5}}}});
        let run = base.run(&doc, &name, NOW);
        let best = channel_optimum(
            &triples,
            per_customer,
            [("email", email_cap), ("sms", sms_cap)],
        );
        let mut r = csv::Reader::from_path(run.out.join("targets.csv")).unwrap();
        let header = r.headers().unwrap().clone();
        assert_eq!(header.iter().next_back(), Some("not_chosen"));
        let (mut total, mut per_channel) = (0.0, BTreeMap::new());
        let mut pairs = BTreeSet::new();
        let mut reasons = BTreeSet::new();
        for rec in r.records() {
            let rec = rec.unwrap();
            let (customer, channel, offer) = (&rec[0], &rec[1], &rec[2]);
            total += rec[4].parse::<f64>().unwrap();
            *per_channel.entry(channel.to_owned()).or_insert(0u64) += 1;
            assert!(
                pairs.insert((customer.to_owned(), offer.to_owned())),
                "{customer} {offer} twice"
            );
            assert!(
                channel == "sms" || email_ok(customer),
                "{customer} is not reachable by e-mail"
            );
            let other = if channel == "sms" { "email" } else { "sms" };
            let why = rec[14].to_owned();
            let (ch, reason) = why.split_once(':').unwrap();
            assert_eq!(ch, other, "{why}");
            assert_eq!(
                reason == "unreachable",
                other == "email" && !email_ok(customer),
                "{customer}: {why}"
            );
            reasons.insert(reason.to_owned());
        }
        assert!(per_channel["sms"] <= sms_cap && per_channel["email"] <= email_cap);
        assert!(
            (total - best).abs() <= 1e-9 * best,
            "{name}: the list scores {total}, the optimum is {best}"
        );
        assert!(reasons.contains("unreachable"), "{name}: {reasons:?}");
        let s = &run.summary;
        assert_eq!(s.channels["sms"].selected, per_channel["sms"]);
        assert_eq!(s.channels["email"].placement, "email_campaign");
        assert!(
            !s.shadow_prices.is_empty(),
            "{name}: the capacities must bind"
        );
        for (limit, p) in &s.shadow_prices {
            let mut caps = [("email", email_cap), ("sms", sms_cap)];
            match limit.split('.').collect::<Vec<_>>()[..] {
                ["channels", ch, "max_contacts"] => {
                    caps.iter_mut().find(|c| c.0 == ch).unwrap().1 += 1
                }
                _ => panic!("{name}: unexpected limit {limit}"),
            }
            let margin = (channel_optimum(&triples, per_customer, caps) - best).max(0.0);
            assert!(
                (p.per_unit - margin).abs() <= 1e-6 * best,
                "{name}: {limit} is priced {} but one unit more adds {margin}",
                p.per_unit
            );
        }
        if per_customer == 1 {
            // Committed, each row counts on its own channel: the next run sees each
            // channel's capacity used by its own rows.
            let data_dir = base.path("data");
            commit::commit(&run.out, &Target::Direct { data_dir }, NOW).unwrap();
            let again = base.run(&doc, &format!("{name}-again"), NOW + HOUR);
            for ch in ["sms", "email"] {
                let c = again.summary.channels[ch].capacity.as_ref().unwrap();
                assert_eq!(c.used_before, per_channel[ch], "{ch}");
            }
            std::fs::remove_dir_all(base.path("data")).unwrap();
        }
    }
}

/// The exact optimum over (customer, offer, channel, score) under offers per customer, one
/// channel per customer and offer, and each channel's capacity.
type Triple<'a> = (String, String, &'a str, f64);

fn channel_optimum(triples: &[Triple<'_>], per_customer: u32, caps: [(&str, u64); 2]) -> f64 {
    use good_lp::{constraint, variable, Expression, ProblemVariables, Solution, SolverModel};
    let mut vars = ProblemVariables::new();
    let x: Vec<_> = triples
        .iter()
        .map(|_| vars.add(variable().binary()))
        .collect();
    let sum = |keep: &dyn Fn(&Triple<'_>) -> bool| -> Expression {
        triples
            .iter()
            .zip(&x)
            .filter(|(t, _)| keep(t))
            .map(|(_, v)| *v)
            .sum()
    };
    let objective: Expression = triples.iter().zip(&x).map(|(t, v)| t.3 * *v).sum();
    let mut model = vars.maximise(objective.clone()).using(good_lp::microlp);
    let customers: BTreeSet<&str> = triples.iter().map(|t| t.0.as_str()).collect();
    for c in customers {
        model = model.with(constraint!(sum(&|t| t.0 == c) <= per_customer as f64));
        for o in ["a", "b", "c"] {
            model = model.with(constraint!(sum(&|t| t.0 == c && t.1 == o) <= 1.0));
        }
    }
    for (ch, cap) in caps {
        model = model.with(constraint!(sum(&|t| t.2 == ch) <= cap as f64));
    }
    let solution = model.solve().expect("the reference problem is feasible");
    solution.eval(&objective)
}

#[test]
fn a_frequency_cap_holds_across_campaigns_committed_one_after_the_other() {
    let base = Base::new("cmp-freq", 200);
    let freq = json!({"max_contacts": 1, "window_days": 7, "channels": ["sms", "email"]});
    let mut first = sms("first");
    first["capacity"] = json!({"max_contacts": 60});
    first["frequency"] = freq.clone();
    let now = support_now();
    let a = base.run(&first, "a", now);
    assert_eq!(a.rows.len(), 60);
    let done = commit::commit(
        &a.out,
        &Target::Direct {
            data_dir: base.path("data"),
        },
        now,
    )
    .unwrap();
    assert_eq!((done.events, done.accepted, done.duplicates), (60, 60, 0));

    let second = json!({"name": "second", "channel": "email", "placement": "email_campaign",
                        "capacity": {"max_contacts": 60}, "frequency": freq});
    let b = base.run(&second, "b", now + HOUR);
    assert!(
        a.customers().is_disjoint(&b.customers()),
        "a customer texted an hour ago must not get the e-mail"
    );
    assert_eq!(b.summary.held_out.frequency, 60);
    assert_eq!(b.rows.len(), 60, "others fill the capacity");

    // A transactional message bypasses the frequency cap.
    let mut urgent = second.clone();
    urgent["name"] = json!("urgent");
    urgent["transactional"] = json!(true);
    let u = base.run(&urgent, "u", now + HOUR);
    assert_eq!(u.summary.held_out.frequency, 0);
    assert!(!a.customers().is_disjoint(&u.customers()));

    // The SMS gateway's daily capacity counts what the first campaign already sent.
    let mut again = sms("again");
    again["capacity"] = json!({"max_contacts": 100, "per": "day"});
    let g = base.run(&again, "g", now + HOUR);
    let cap = g.summary.capacity.as_ref().unwrap();
    assert_eq!((cap.used_before, cap.available), (60, 40));
    assert_eq!(g.rows.len(), 40);
}

/// Now, as the direct commit's log and the runs that read it agree on it.
fn support_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn suppression_and_a_stable_control_group() {
    let base = Base::new("cmp-control", 2000);
    let suppressed: Vec<String> = (0..2000).step_by(97).map(|i| format!("K{i:05}")).collect();
    std::fs::write(
        base.path("optouts.txt"),
        format!("customer_id\n# opted out\n{}\n", suppressed.join("\n")),
    )
    .unwrap();
    let mut doc = sms("ctl");
    doc["suppression"] = json!(["optouts.txt"]);
    doc["control_group"] = json!({"share": 0.2, "salt": "s1"});
    doc["transactional"] = json!(true);
    let run = base.run(&doc, "one", NOW);
    let selected = run.customers();
    for s in &suppressed {
        assert!(
            !selected.contains(s),
            "{s} is suppressed, transactional or not"
        );
    }
    assert_eq!(run.summary.held_out.suppression, suppressed.len() as u64);

    let control: BTreeSet<String> = csv::Reader::from_path(run.out.join("control.csv"))
        .unwrap()
        .records()
        .map(|r| r.unwrap()[0].to_owned())
        .collect();
    assert!(control.is_disjoint(&selected));
    assert!(control.iter().all(|c| !suppressed.contains(c)));
    for c in &control {
        assert!(nextbest::experiment::assignment("s1", c) < 0.2, "{c}");
    }
    for c in &selected {
        assert!(nextbest::experiment::assignment("s1", c) >= 0.2, "{c}");
    }
    let eligible = run.summary.eligible as f64;
    let share = control.len() as f64 / eligible;
    let sigma = (0.2 * 0.8 / eligible).sqrt();
    assert!(
        (share - 0.2).abs() < 4.0 * sigma,
        "control share {share} of {eligible}"
    );
    assert_eq!(run.summary.held_out.control_group, control.len() as u64);

    let again = base.run(&doc, "two", NOW + HOUR);
    assert_eq!(
        std::fs::read(run.out.join("control.csv")).unwrap(),
        std::fs::read(again.out.join("control.csv")).unwrap(),
        "the same salt holds out the same customers"
    );
    doc["control_group"]["salt"] = json!("s2");
    let other = base.run(&doc, "three", NOW);
    assert_ne!(
        std::fs::read(run.out.join("control.csv")).unwrap(),
        std::fs::read(other.out.join("control.csv")).unwrap(),
        "a new salt, a new control group"
    );
}

#[test]
fn every_campaign_file_fault_is_reported_with_its_path() {
    let base = Base::new("cmp-faults", 10);
    let bad = json!({
        "name": "bad name!", "channel": 7, "offers": ["a", "a"],
        "max_offers_per_customer": 0,
        "capacity": {"max_contacts": 10, "per": "month"},
        "offer_limits": {"a": {"min": 5, "max": 2}, "zz": {"min": 1}},
        "category_limits": {"sales": {}},
        "frequency": {"max_contacts": 0, "window_days": 7, "channels": []},
        "suppression": ["missing.txt"],
        "control_group": {"share": 1.5},
        "transactional": "no",
        "typo": 1
    });
    let file = base.write_campaign("bad", &bad);
    let err = campaign::check(&file, None, None).unwrap_err();
    let faults = err.faults();
    let expect = [
        ("name", "letters, digits"),
        ("channel", "expected a string"),
        ("offers[1]", "listed twice"),
        ("max_offers_per_customer", "whole number from 1"),
        ("capacity.per", "`day` or `week`"),
        ("offer_limits.a.min", "above the maximum"),
        ("category_limits.sales.max", "missing field"),
        ("frequency.max_contacts", "whole number from 1"),
        ("frequency.channels", "must not be empty"),
        ("suppression[0]", "no such file"),
        ("control_group.share", "between 0 and 0.99"),
        ("control_group.salt", "missing field"),
        ("transactional", "true or false"),
        ("typo", "unknown field"),
    ];
    for (path, needle) in expect {
        assert!(
            faults
                .iter()
                .any(|f| f.path == path && f.message.contains(needle)),
            "no fault `{path}: ..{needle}..` in {faults:#?}"
        );
    }

    // Against the model: names that do not resolve, each with its path.
    let against = json!({"name": "m", "channel": "sms", "placement": "sms_campaign",
        "offers": ["a", "nope"], "category_limits": {"service": {"max": 1}},
        "capacity": {"max_contacts": 10}, "offer_limits": {"a": {"min": 20}}});
    let file = base.write_campaign("against", &against);
    let faults = campaign::check(&file, Some(&base.path("model.json")), None)
        .unwrap_err()
        .faults();
    for (path, needle) in [
        ("offers[1]", "unknown offer `nope`"),
        ("category_limits.service", "no offer of the campaign"),
        ("offer_limits", "minimums add up to 20"),
    ] {
        assert!(
            faults
                .iter()
                .any(|f| f.path == path && f.message.contains(needle)),
            "no fault `{path}: ..{needle}..` in {faults:#?}"
        );
    }
    let wrong_channel = json!({"name": "m", "channel": "fax"});
    let file = base.write_campaign("fax", &wrong_channel);
    let faults = campaign::check(&file, Some(&base.path("model.json")), None)
        .unwrap_err()
        .faults();
    assert!(faults
        .iter()
        .any(|f| f.path == "channel" && f.message.contains("no channel `fax`")));

    // A model that does not load adds its fault to the campaign's own: all are printed.
    let mut bad_on_sms = bad.clone();
    bad_on_sms["channel"] = "sms".into();
    let file = base.write_campaign("bad_with_model", &bad_on_sms);
    let faults = campaign::check(&file, Some(&base.path("missing.json")), None)
        .unwrap_err()
        .faults();
    assert!(faults.iter().any(|f| f.path == "name"), "{faults:#?}");
    assert!(faults.iter().any(|f| f.path == "typo"), "{faults:#?}");
    assert!(
        faults
            .iter()
            .any(|f| f.path == "--models" && f.message.contains("missing.json")),
        "{faults:#?}"
    );
    // Every fault of `expect` but the channel's, and the model's.
    assert_eq!(faults.len(), expect.len(), "{faults:#?}");

    // The demo campaign is valid against the demo model.
    campaign::check(
        &demo_dir().join("campaigns/demo_sms.json"),
        Some(&demo_dir()),
        Some(&demo_dir().join("features.csv")),
    )
    .unwrap();
}

/// A campaign over several channels: each fault of its `channels` named with its path, on its
/// own and against the model and snapshot; a sharded run refuses it in one line.
#[test]
fn channel_faults_are_named_with_their_path() {
    let base = Base::new("cmp-channel-faults", 10);
    let expect_faults = |doc: &Value, with_model: bool, expect: &[(&str, &str)]| {
        let file = base.write_campaign("chf", doc);
        let (models, features) = (base.path("model.json"), base.path("features.csv"));
        let faults = match with_model {
            true => campaign::check(&file, Some(&models), Some(&features)),
            false => campaign::check(&file, None, None),
        }
        .unwrap_err()
        .faults();
        for (path, needle) in expect {
            assert!(
                faults
                    .iter()
                    .any(|f| f.path == *path && f.message.contains(needle)),
                "no fault `{path}: ..{needle}..` in {faults:#?}"
            );
        }
    };
    expect_faults(
        &json!({"name": "m", "channel": "sms", "placement": "sms_campaign",
                "capacity": {"max_contacts": 5},
                "offer_limits": {"a": {"max": 3}},
                "channels": {"sms": {"per": "day", "reachable": 5, "colour": 1},
                             "email": {"max_contacts": 0}}}),
        false,
        &[
            ("channels", "either `channel` or `channels`"),
            ("placement", "each channel's `placement`"),
            ("capacity", "each channel's `max_contacts`"),
            ("offer_limits", "not supported with several `channels`"),
            ("channels.sms.reachable", "expected a rule object"),
            ("channels.sms.colour", "unknown field"),
            ("channels.email.max_contacts", "whole number from 1"),
        ],
    );
    expect_faults(
        &json!({"name": "m", "channels": {
            "fax": {},
            "email": {"placement": "nope"},
            "sms": {"placement": "sms_campaign",
                    "reachable": {"all": [{"feature": "opt_in", "op": "eq", "value": 1}]}}}}),
        true,
        &[
            ("channels.fax", "no channel `fax`"),
            ("channels.email.placement", "no placement `nope`"),
            (
                "channels.sms.reachable.all[0].feature",
                "unknown feature `opt_in`",
            ),
        ],
    );
    let doc = json!({"name": "m", "channels": {"sms": {"placement": "sms_campaign"},
                                                 "email": {"placement": "email_campaign"}}});
    let file = base.write_campaign("two", &doc);
    campaign::check(
        &file,
        Some(&base.path("model.json")),
        Some(&base.path("features.csv")),
    )
    .unwrap_or_else(|e| panic!("{:#?}", e.faults()));
    let cfg = base.config(&file, "two-shard", NOW);
    let err = campaign::run_shard(&cfg, campaign::select::Shard { index: 0, count: 2 })
        .unwrap_err()
        .faults();
    assert_eq!(err[0].path, "channels", "{err:#?}");
    assert!(!cfg.out.exists(), "a refused shard writes nothing");
}

/// Milliseconds of an RFC 3339 time.
fn at(rfc3339: &str) -> i64 {
    humantime::parse_rfc3339(rfc3339)
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The small base with a `tz` text column: Berlin, New York, none, and a name no database
/// knows, in turn.
fn base_with_zones(tag: &str, customers: usize) -> Base {
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

fn zone_of(customer: &str) -> &'static str {
    let i: usize = customer[1..].parse().unwrap();
    ["Europe/Berlin", "America/New_York", "", "Mars/Olympus"][i % 4]
}

/// Every row's `send_at` is the earliest time inside its customer's local window, in UTC:
/// across Berlin's October change, in New York's own hours, in the default zone for a
/// customer without one or with an unknown one (counted in the summary).
#[test]
fn send_times_follow_each_customers_time_zone_across_the_change() {
    let base = base_with_zones("cmp-send", 40);
    let doc = json!({"name": "window", "channel": "sms", "placement": "sms_campaign",
        "send_window": {"from": "09:00", "to": "20:00",
                        "days": ["mon", "tue", "wed", "thu", "fri", "sat"],
                        "time_zone": {"feature": "tz"}, "default_time_zone": "Europe/Berlin"}});
    // Saturday 24 October 2026, 21:00 in Berlin (CEST), 15:00 in New York (EDT).
    let run = base.run(&doc, "window", at("2026-10-24T19:00:00Z"));
    let mut r = csv::Reader::from_path(run.out.join("targets.csv")).unwrap();
    assert_eq!(r.headers().unwrap().iter().next_back(), Some("send_at"));
    let mut unknown = 0;
    for rec in r.records() {
        let rec = rec.unwrap();
        let expected = match zone_of(&rec[0]) {
            // Sunday is closed; Monday 09:00 is CET (UTC+1) after the change.
            "America/New_York" => "2026-10-24T19:00:00Z",
            "Mars/Olympus" => {
                unknown += 1;
                "2026-10-26T08:00:00Z"
            }
            _ => "2026-10-26T08:00:00Z",
        };
        assert_eq!(&rec[14], expected, "{}", &rec[0]);
    }
    assert!(unknown > 0);
    assert_eq!(run.summary.unknown_time_zones["Mars/Olympus"], unknown);
    // The same inputs, the same bytes.
    let again = base.run(&doc, "window-again", at("2026-10-24T19:00:00Z"));
    assert_eq!(run.csv(), again.csv());
}

/// A frequency cap over `calendar_week` counts from Monday 00:00 in each customer's zone: at
/// 02:00 UTC on Monday 26 October, Berlin's week has begun (last week's contact no longer
/// counts) and New York's has not (it still does); a rolling 7 days counts it for both.
#[test]
fn a_calendar_week_frequency_cap_starts_on_the_customers_monday() {
    let base = base_with_zones("cmp-week", 40);
    let first = json!({"name": "first", "channel": "sms", "placement": "sms_campaign",
                       "capacity": {"max_contacts": 20}});
    let sent = base.run(&first, "first", at("2026-10-23T12:00:00Z"));
    let data_dir = base.path("data");
    commit::commit(
        &sent.out,
        &Target::Direct { data_dir },
        at("2026-10-23T12:00:00Z"),
    )
    .unwrap();
    let window = json!({"from": "09:00", "to": "20:00", "time_zone": {"feature": "tz"},
                        "default_time_zone": "Europe/Berlin"});
    let monday = at("2026-10-26T02:00:00Z");
    let weekly = json!({"name": "weekly", "channel": "sms", "placement": "sms_campaign",
        "send_window": window,
        "frequency": {"max_contacts": 1, "window": "calendar_week", "channels": ["sms"]}});
    let run = base.run(&weekly, "weekly", monday);
    let chosen = run.customers();
    for c in sent.customers() {
        let new_york = zone_of(&c) == "America/New_York";
        assert_eq!(chosen.contains(&c), !new_york, "{c} ({})", zone_of(&c));
    }
    let mut rolling = weekly.clone();
    rolling["frequency"] = json!({"max_contacts": 1, "window_days": 7, "channels": ["sms"]});
    let run = base.run(&rolling, "rolling", monday);
    assert!(run.customers().is_disjoint(&sent.customers()));
    assert!(!run.customers().is_empty());
}

/// Send-window and time-zone faults, each with its path.
#[test]
fn send_window_faults_are_named_with_their_path() {
    let base = base_with_zones("cmp-send-faults", 8);
    let doc = json!({"name": "w", "channel": "sms", "placement": "sms_campaign",
        "send_window": {"from": "20:00", "to": "09:00", "days": [],
                        "default_time_zone": "Europe/Berlinn"}});
    let file = base.write_campaign("w", &doc);
    let faults = campaign::check(&file, None, None).unwrap_err().faults();
    for (path, needle) in [
        (
            "send_window",
            "the send window is empty: `from` must be before `to`",
        ),
        ("send_window.days", "must not be empty"),
        (
            "send_window.default_time_zone",
            "unknown time zone `Europe/Berlinn`",
        ),
    ] {
        assert!(
            faults
                .iter()
                .any(|f| f.path == path && f.message.contains(needle)),
            "no fault `{path}: ..{needle}..` in {faults:#?}"
        );
    }
    let doc = json!({"name": "w", "channel": "sms",
        "frequency": {"max_contacts": 1, "window": "calendar_week"}});
    let file = base.write_campaign("w", &doc);
    let faults = campaign::check(&file, None, None).unwrap_err().faults();
    assert_eq!(faults.len(), 1, "{faults:#?}");
    assert_eq!(faults[0].path, "frequency.window");
    assert!(
        faults[0].message.contains("give `send_window`"),
        "{faults:#?}"
    );
    for (feature, needle) in [("nope", "unknown feature `nope`"), ("x", "a number column")] {
        let doc = json!({"name": "w", "channel": "sms", "placement": "sms_campaign",
            "send_window": {"from": "09:00", "to": "20:00", "time_zone": {"feature": feature},
                            "default_time_zone": "Europe/Berlin"}});
        let file = base.write_campaign("w", &doc);
        let faults = campaign::check(
            &file,
            Some(&base.path("model.json")),
            Some(&base.path("features.csv")),
        )
        .unwrap_err()
        .faults();
        assert!(
            faults
                .iter()
                .any(|f| f.path == "send_window.time_zone.feature" && f.message.contains(needle)),
            "{faults:#?}"
        );
    }
}

/// Writes conversion events `(customer, offer, ts)` into a data folder's log.
fn log_conversions(data_dir: &Path, conversions: &[(String, String, i64)]) {
    use nextbest::contact::{Clock, ContactConfig, Contacts, Event, EventKind};
    let contacts = Contacts::open(
        &ContactConfig {
            data_dir: Some(data_dir.to_owned()),
            ..ContactConfig::default()
        },
        Clock::system(),
    )
    .unwrap();
    let ids: Vec<String> = (0..conversions.len())
        .map(|i| format!("conv-{i}"))
        .collect();
    let events: Vec<Event<'_>> = conversions
        .iter()
        .zip(&ids)
        .map(|((c, o, ts), id)| Event {
            kind: EventKind::Conversion,
            ts_ms: *ts,
            customer_id: c,
            offer_id: Some(o),
            channel: Some("sms"),
            placement: None,
            decision_id: None,
            event_id: Some(id),
            category: None,
        })
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(contacts.ingest(&events)).unwrap();
    contacts.close();
}

/// `campaign report` after simulated outcomes: every third target converts on its offer,
/// every tenth control-group customer on the offer they would have been sent; conversions
/// before the run, of another offer, or by customers of neither group do not count. The
/// counts, rates, lift (Newcombe's interval around the difference) and values are the
/// simulation's; `--json` prints the same report.
#[test]
fn the_report_compares_targets_with_the_control_group() {
    let base = Base::new("cmp-report", 600);
    let mut doc = sms("report");
    doc["capacity"] = json!({"max_contacts": 200});
    doc["offer_limits"] = json!({"a": {"max": 120}});
    doc["control_group"] = json!({"share": 0.3, "salt": "r"});
    let run = base.run(&doc, "report", NOW);
    let data_dir = base.path("data");
    commit::commit(
        &run.out,
        &Target::Direct {
            data_dir: data_dir.clone(),
        },
        NOW + 1,
    )
    .unwrap();
    let read = |file: &str| -> Vec<(String, String)> {
        let mut r = csv::Reader::from_path(run.out.join(file)).unwrap();
        let h = r.headers().unwrap().clone();
        let (c, o) = (
            h.iter().position(|x| x == "customer_id").unwrap(),
            h.iter().position(|x| x == "offer_id").unwrap(),
        );
        r.records()
            .map(|x| {
                let x = x.unwrap();
                (x[c].to_owned(), x[o].to_owned())
            })
            .collect()
    };
    let (targets, control) = (read("targets.csv"), read("control.csv"));
    assert!(targets.len() == 200 && control.len() > 50);
    let later = NOW + 3 * 24 * HOUR;
    let mut conversions = Vec::new();
    for (i, (c, o)) in targets.iter().enumerate() {
        if i % 3 == 0 {
            conversions.push((c.clone(), o.clone(), later));
        }
    }
    for (i, (c, o)) in control.iter().enumerate() {
        if i % 10 == 0 {
            conversions.push((c.clone(), o.clone(), later));
        }
    }
    // None of these count.
    conversions.push((targets[1].0.clone(), targets[1].1.clone(), NOW - HOUR));
    let other = if targets[2].1 == "a" { "b" } else { "a" };
    conversions.push((targets[2].0.clone(), other.to_owned(), later));
    conversions.push(("K99999".into(), "a".into(), later));
    log_conversions(&data_dir, &conversions);

    let r = campaign::report::report(&run.out, &data_dir).unwrap();
    let t_conv = targets.len().div_ceil(3) as u64;
    let c_conv = control.len().div_ceil(10) as u64;
    assert_eq!(r.overall.targets.customers, 200);
    assert_eq!(r.overall.targets.converted, t_conv);
    assert_eq!(r.overall.control.customers, control.len() as u64);
    assert_eq!(r.overall.control.converted, c_conv);
    assert_eq!(r.conversions, t_conv + c_conv);
    let lift = r.overall.lift.unwrap();
    let expected = t_conv as f64 / 200.0 - c_conv as f64 / control.len() as f64;
    assert!((lift.value - expected).abs() < 1e-12);
    assert!(
        lift.low < lift.value && lift.value < lift.high && lift.low > 0.0,
        "{lift:?}"
    );
    let values: HashMap<&str, f64> = [("a", 10.0), ("b", 6.0), ("c", 8.0)].into();
    let mut offers_seen = 0;
    for (offer, cmp) in &r.offers {
        let n = targets.iter().filter(|t| &t.1 == offer).count() as u64;
        let k = targets
            .iter()
            .enumerate()
            .filter(|(i, t)| &t.1 == offer && i % 3 == 0)
            .count() as u64;
        assert_eq!(
            (cmp.targets.customers, cmp.targets.converted),
            (n, k),
            "{offer}"
        );
        assert!((cmp.targets.value - k as f64 * values[offer.as_str()]).abs() < 1e-9);
        offers_seen += usize::from(n > 0);
    }
    assert!(offers_seen >= 2, "{:?}", r.offers.keys());
    let out = nextbest(&[
        "campaign",
        "report",
        run.out.to_str().unwrap(),
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed, serde_json::to_value(&r).unwrap());
    let table = nextbest(&[
        "campaign",
        "report",
        run.out.to_str().unwrap(),
        "--data-dir",
        data_dir.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("all offers") && text.contains(&format!("{t_conv}/200")),
        "{text}"
    );
    // A folder that is not a run's output is named.
    let missing = nextbest(&["campaign", "report", base.path("nope").to_str().unwrap()]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("summary.json"));
}

#[test]
fn parquet_and_csv_snapshots_give_identical_lists() {
    use arrow_array::{ArrayRef, Float32Array, RecordBatch, StringArray};
    let base = Base::new("cmp-parquet", 500);
    let store = base.store();
    let ids: Vec<&str> = (0..store.len()).map(|r| store.id_at(r).unwrap()).collect();
    let mut cols: Vec<(String, ArrayRef)> = vec![(
        "customer_id".into(),
        Arc::new(StringArray::from(ids.clone())) as ArrayRef,
    )];
    for (c, name) in store.columns().iter().enumerate() {
        let vals: Vec<Option<f32>> = (0..store.len())
            .map(|r| Some(store.row_at(r).unwrap()[c]).filter(|v| !v.is_nan()))
            .collect();
        cols.push((name.to_string(), Arc::new(Float32Array::from(vals))));
    }
    let batch = RecordBatch::try_from_iter(cols).unwrap();
    let pq = base.path("features.parquet");
    let mut w = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(&pq).unwrap(),
        batch.schema(),
        None,
    )
    .unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();

    let loaded = FeatureStore::load(&pq).unwrap();
    assert_eq!(loaded.len(), store.len());
    assert!(loaded.row("K00005").unwrap()[1].is_nan(), "null is missing");

    let mut doc = sms("pq");
    doc["capacity"] = json!({"max_contacts": 100});
    let file = base.write_campaign("pq", &doc);
    let from_csv = run_config(&base.config(&file, "csv", NOW));
    let mut cfg = base.config(&file, "pq", NOW);
    cfg.features = pq;
    let from_pq = run_config(&cfg);
    assert_eq!(from_csv.rows.len(), 100);
    assert_eq!(from_csv.csv(), from_pq.csv());
}

#[test]
fn parquet_faults_name_the_column_and_the_row() {
    use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
    let dir = TempDir::new("cmp-pq-faults");
    let write = |name: &str, cols: Vec<(&str, ArrayRef)>| {
        let batch = RecordBatch::try_from_iter(cols).unwrap();
        let p = dir.0.join(name);
        let mut w = parquet::arrow::ArrowWriter::try_new(
            std::fs::File::create(&p).unwrap(),
            batch.schema(),
            None,
        )
        .unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        p
    };
    let ids = |v: Vec<Option<&str>>| Arc::new(StringArray::from(v)) as ArrayRef;
    let p = write(
        "text.parquet",
        vec![
            ("customer_id", ids(vec![Some("A"), Some("B")])),
            (
                "plan",
                Arc::new(arrow_array::BinaryArray::from(vec![
                    b"x".as_slice(),
                    b"y".as_slice(),
                ])) as ArrayRef,
            ),
        ],
    );
    let e = FeatureStore::load(&p).unwrap_err().to_string();
    assert!(
        e.contains("column `plan`: expected numbers or strings"),
        "{e}"
    );
    let p = write(
        "nullid.parquet",
        vec![
            ("customer_id", ids(vec![Some("A"), None])),
            ("n", Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef),
        ],
    );
    let e = FeatureStore::load(&p).unwrap_err().to_string();
    assert!(e.contains("row 2, column `customer_id`: null"), "{e}");
    let p = write(
        "dup.parquet",
        vec![
            ("customer_id", ids(vec![Some("A"), Some("A")])),
            (
                "n",
                Arc::new(Int64Array::from(vec![Some(1), None])) as ArrayRef,
            ),
        ],
    );
    let e = FeatureStore::load(&p).unwrap_err().to_string();
    assert!(
        e.contains("row 2") && e.contains("duplicate customer_id `A`"),
        "{e}"
    );
    let p = write(
        "first.parquet",
        vec![("n", Arc::new(Int64Array::from(vec![1])) as ArrayRef)],
    );
    let e = FeatureStore::load(&p).unwrap_err().to_string();
    assert!(e.contains("first column must be `customer_id`"), "{e}");
}

async fn web_explain(srv: &support::TestServer, customer: &str) -> HashMap<String, Value> {
    let r = post_json(
        srv.public,
        "/v1/decide",
        &json!({"customer_id": customer, "channel": "web", "placement": "plans_page", "explain": true}),
    )
    .await;
    assert_eq!(r.status, 200);
    r.json()["explain"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["offer_id"].as_str().unwrap().to_owned(), e.clone()))
        .collect()
}

fn sales_capped(explain: &HashMap<String, Value>) -> usize {
    explain
        .values()
        .filter(|e| {
            e["excluded"]
                .as_str()
                .is_some_and(|x| x.starts_with("policies.sales_cap"))
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_contacts_count_on_the_web_and_the_web_counts_outbound() {
    let data = TempDir::new("cmp-server");
    let (srv, _clock) = support::start_demo_contacts(Some(&data.0)).await;
    let out = TempDir::new("cmp-server-out");
    let file = out.0.join("sales_sms.json");
    std::fs::write(
        &file,
        serde_json::to_vec(&json!({"name": "sales_sms", "channel": "sms",
            "placement": "sms_campaign", "offers": ["data_boost_10gb", "unlimited_upgrade", "roaming_pass_eu"]}))
        .unwrap(),
    )
    .unwrap();
    let cfg = |dir: &str| RunConfig {
        campaign: file.clone(),
        out: out.0.join(dir),
        models: demo_dir(),
        features: demo_dir().join("features.csv"),
        data_dir: Some(data.0.clone()),
        fleet: None,
        now_ms: Some(NOW),
        contact_memory_bytes: 64 << 20,
        progress_bar: false,
    };
    let first = tokio::task::spawn_blocking({
        let c = cfg("r0");
        move || run_config(&c)
    })
    .await
    .unwrap();
    assert!(first.rows.len() > 100);

    // An offer dismissed on the web is never sent by SMS.
    let (x, o) = first.rows[0].clone();
    let r = post_json(
        srv.public,
        "/v1/events",
        &json!({"events": [{"type": "dismiss", "customer_id": x, "offer_id": o, "channel": "web"}]}),
    )
    .await;
    assert_eq!(r.status, 202);
    let second = tokio::task::spawn_blocking({
        let c = cfg("r1");
        move || run_config(&c)
    })
    .await
    .unwrap();
    assert!(
        !second.rows.contains(&(x.clone(), o.clone())),
        "{x} dismissed {o} on the web"
    );
    assert!(second.summary.selected > 100);

    // Four web sales contacts for y, then the campaign's SMS: the sales cap (5 in 7 days) binds.
    let (y, _) = second.rows.iter().find(|r| r.0 != x).cloned().unwrap();
    let before = web_explain(&srv, &y).await;
    assert_eq!(sales_capped(&before), 0);
    let web: Vec<Value> = [
        "fiber_home",
        "device_trade_in",
        "family_line_add",
        "smartwatch_addon",
    ]
    .iter()
    .map(|o| json!({"type": "impression", "customer_id": y, "offer_id": o, "channel": "web"}))
    .collect();
    let r = post_json(srv.public, "/v1/events", &json!({"events": web})).await;
    assert_eq!(r.status, 202);
    assert_eq!(sales_capped(&web_explain(&srv, &y).await), 0, "4 of 5");

    let url = format!("http://{}", srv.public);
    let dir = second.out.clone();
    let done = tokio::task::spawn_blocking({
        let (url, dir) = (url.clone(), dir.clone());
        move || {
            commit::commit(
                &dir,
                &Target::Server {
                    url,
                    batch_bytes: 16 * 1024,
                },
                NOW,
            )
        }
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(done.events, second.summary.selected);
    assert_eq!(done.accepted, done.events);
    assert!(
        sales_capped(&web_explain(&srv, &y).await) > 0,
        "the SMS was the fifth sales contact"
    );

    // Committing twice records once.
    let stats = || async { support::get(srv.admin, "/admin/stats").await.json() };
    let accepted = stats().await["events"]["accepted"].as_u64().unwrap();
    let again = tokio::task::spawn_blocking(move || {
        commit::commit(
            &dir,
            &Target::Server {
                url,
                batch_bytes: 60 * 1024,
            },
            NOW,
        )
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!((again.accepted, again.duplicates), (0, done.events));
    assert_eq!(
        stats().await["events"]["accepted"].as_u64().unwrap(),
        accepted
    );

    // The next campaign sees the committed SMS through the log the server wrote.
    let third = tokio::task::spawn_blocking({
        let c = cfg("r2");
        move || run_config(&c)
    })
    .await
    .unwrap();
    assert!(!third.customers().contains(&y), "{y} reached the sales cap");
    assert!(third.summary.held_out.contact_policy["policies.sales_cap"] >= 1);
    srv.stop().await;
}

/// Runs the real binary from the repository's folder (where the demo's default paths point).
fn nextbest(args: &[&str]) -> std::process::Output {
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

#[test]
fn the_demo_campaign_runs_and_commits_with_one_command_each() {
    let tmp = TempDir::new("cmp-cli");
    let out = tmp.0.join("out");
    let data = tmp.0.join("data");
    let (out_s, data_s) = (out.to_str().unwrap(), data.to_str().unwrap());
    let run = nextbest(&[
        "campaign",
        "run",
        "models/campaigns/demo_sms.json",
        "--out",
        out_s,
        "--data-dir",
        data_s,
    ]);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let summary: Summary =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary.selected, 2000, "the demo's capacity binds");
    assert!(stdout.contains("customers scanned") && stdout.contains("2000"));
    assert!(summary.offers["roaming_pass_eu"].selected >= 150);
    assert!(summary.offers["unlimited_upgrade"].selected <= 800);
    assert!(out.join("targets.parquet").is_file());

    let commit = |expect: &str| {
        let c = nextbest(&[
            "campaign",
            "commit",
            out_s,
            "--direct",
            "--data-dir",
            data_s,
        ]);
        let text = String::from_utf8_lossy(&c.stdout);
        assert!(c.status.success(), "{text}");
        assert!(text.contains(expect), "{text}");
    };
    commit("committed 2000 contacts: 2000 recorded now, 0 already recorded");
    commit("committed 2000 contacts: 0 recorded now, 2000 already recorded");

    // Without a server, the default path says what to do.
    let c = nextbest(&[
        "campaign",
        "commit",
        out_s,
        "--server",
        "http://127.0.0.1:9",
    ]);
    assert!(!c.status.success());
    assert!(String::from_utf8_lossy(&c.stderr).contains("--direct"));

    // A bad file: non-zero exit, every fault printed as `file: path: message`.
    let bad = tmp.0.join("bad.json");
    std::fs::write(
        &bad,
        r#"{"name": "x", "channel": "sms", "capacity": {"max_contacts": 0}, "oops": 1}"#,
    )
    .unwrap();
    let c = nextbest(&[
        "campaign",
        "check",
        bad.to_str().unwrap(),
        "--models",
        "models",
    ]);
    let text = String::from_utf8_lossy(&c.stdout);
    assert!(!c.status.success());
    let b = bad.display();
    assert!(
        text.contains(&format!(
            "{b}: capacity.max_contacts: expected a whole number"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("{b}: oops: unknown field")),
        "{text}"
    );
}

const LIST_FILES: [&str; 4] = [
    "targets.csv",
    "targets.parquet",
    "control.csv",
    "summary.json",
];

/// Runs every shard of `count` into its own folder; returns the folders.
fn run_shards(base: &Base, campaign: &Path, tag: &str, count: u32, now: i64) -> Vec<PathBuf> {
    (0..count)
        .map(|index| {
            let cfg = base.config(campaign, &format!("{tag}-shard-{index}-of-{count}"), now);
            campaign::run_shard(&cfg, campaign::select::Shard { index, count })
                .unwrap_or_else(|e| panic!("shard {index}/{count}: {:#?}", e.faults()));
            cfg.out
        })
        .collect()
}

/// A merge of 1, 3 and 8 shards writes the list, the control group and the summary exactly as
/// one machine does: with offer and category limits (every pair kept) and with a capacity only
/// (each customer's best pairs kept) and a send window (the shards carry each customer's
/// time zone), both with a control group and ties broken by row.
#[test]
fn sharded_runs_merge_into_the_one_machine_list_byte_for_byte() {
    let base = base_with_zones("cmp-shards", 600);
    let mut limited = sms("limited");
    limited["max_offers_per_customer"] = json!(2);
    limited["capacity"] = json!({"max_contacts": 150});
    limited["offer_limits"] = json!({"a": {"max": 40}, "c": {"min": 30}});
    limited["category_limits"] = json!({"sales": {"max": 100}});
    limited["control_group"] = json!({"share": 0.1, "salt": "s"});
    let mut capacity = sms("capacity");
    capacity["capacity"] = json!({"max_contacts": 120});
    capacity["control_group"] = json!({"share": 0.2, "salt": "t"});
    // Each customer's send time in their zone: the shards carry the zone names.
    capacity["send_window"] = json!({"from": "09:00", "to": "20:00", "days": ["mon", "sat"],
        "time_zone": {"feature": "tz"}, "default_time_zone": "Asia/Tokyo"});
    for doc in [limited, capacity] {
        let name = doc["name"].as_str().unwrap().to_owned();
        let file = base.write_campaign(&name, &doc);
        let one = run_config(&base.config(&file, &format!("{name}-one"), NOW));
        assert!(
            !one.summary.shadow_prices.is_empty(),
            "{name}: the limits must bind"
        );
        for count in [1, 3, 8] {
            let dirs = run_shards(&base, &file, &name, count, NOW);
            let out = base.path(&format!("{name}-merged-{count}"));
            let merged = campaign::merge(&dirs, &out)
                .unwrap_or_else(|e| panic!("merge of {count}: {:#?}", e.faults()));
            assert_eq!(merged.scanned, 600, "{name}/{count}");
            for f in LIST_FILES {
                assert!(
                    std::fs::read(one.out.join(f)).unwrap() == std::fs::read(out.join(f)).unwrap(),
                    "{name}: {f} of {count} merged shards differs from the one-machine run"
                );
            }
        }
    }
}

/// Shards of different runs (campaign, snapshot, `--now`), a missing or repeated shard, or a
/// shard folder that never finished are refused by name, and the merge writes nothing.
#[test]
fn shards_from_different_runs_are_refused_and_nothing_is_written() {
    let base = Base::new("cmp-shard-refuse", 200);
    let mut doc = sms("refuse");
    doc["capacity"] = json!({"max_contacts": 30});
    let file = base.write_campaign("refuse", &doc);
    let good = run_shards(&base, &file, "good", 3, NOW);
    let later = run_shards(&base, &file, "later", 3, NOW + HOUR);
    doc["capacity"] = json!({"max_contacts": 31});
    let other_file = base.write_campaign("refuse2", &doc);
    let other = run_shards(&base, &other_file, "other", 3, NOW);
    // Another snapshot: the same customers, one value changed.
    let csv = std::fs::read_to_string(base.path("features.csv")).unwrap();
    std::fs::write(
        base.path("features2.csv"),
        csv.replacen("K00000,", "K00000x,", 1),
    )
    .unwrap();
    let snapshot: Vec<PathBuf> = (0..3)
        .map(|index| {
            let mut cfg = base.config(&file, &format!("snap-{index}"), NOW);
            cfg.features = base.path("features2.csv");
            campaign::run_shard(&cfg, campaign::select::Shard { index, count: 3 }).unwrap();
            cfg.out
        })
        .collect();
    let eight = run_shards(&base, &file, "eight", 8, NOW);

    let out = base.path("never");
    let refused = |dirs: Vec<PathBuf>, expect: &[&str]| {
        let err = campaign::merge(&dirs, &out).expect_err("must be refused");
        let text = err.to_string();
        for e in expect {
            assert!(text.contains(e), "`{text}` should say {e}");
        }
        assert!(!out.exists(), "a refused merge wrote {}", out.display());
    };
    let mix = |a: &[PathBuf], b: &PathBuf| vec![a[0].clone(), a[1].clone(), b.clone()];
    refused(mix(&good, &later[2]), &["--now", "later-shard-2-of-3"]);
    refused(mix(&good, &other[2]), &["the campaign", "max_contacts"]);
    refused(mix(&good, &snapshot[2]), &["the snapshot", "snap-2"]);
    refused(mix(&good, &eight[2]), &["the number of shards"]);
    refused(good[..2].to_vec(), &["1 of 3 shards missing: 2/3"]);
    refused(
        vec![good[0].clone(), good[1].clone(), good[1].clone()],
        &["shard 1/3 given twice"],
    );
    // A shard that never finished (no header) and one whose candidates were cut short.
    std::fs::remove_file(later[0].join(campaign::shard::SHARD_JSON)).unwrap();
    refused(
        vec![later[0].clone(), later[1].clone(), later[2].clone()],
        &["shard.json", "not the folder of a finished"],
    );
    let torn = std::fs::read_to_string(good[2].join(campaign::shard::CANDIDATES_CSV)).unwrap();
    let cut = torn.lines().take(3).collect::<Vec<_>>().join("\n") + "\n";
    std::fs::write(good[2].join(campaign::shard::CANDIDATES_CSV), cut).unwrap();
    refused(
        good.clone(),
        &["shard-candidates.csv", "the shard is incomplete"],
    );
}

/// A base whose model declares a challenger (written as `challenger.json` beside it).
fn base_with_challenger(tag: &str, challenger: &Value) -> Base {
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

/// A challenger that only triples one offer's priority outscores the champion everywhere; each
/// variant still gets the share of the capacity (and of every limit) its customers are of the
/// base, and the summary says so.
#[test]
fn a_challenger_gets_its_share_of_the_limits_whatever_its_scores() {
    let mut boosted = small_model();
    boosted["name"] = json!("small-boosted");
    boosted["offers"][0]["priority"] = json!(3);
    let base = base_with_challenger("cmp-fair", &boosted);
    let mut doc = sms("fair");
    doc["capacity"] = json!({"max_contacts": 61});
    doc["offer_limits"] = json!({"a": {"max": 21}});
    let run = base.run(&doc, "out", NOW);
    let v = &run.summary.variants;
    assert_eq!(v.len(), 2, "{v:?}");
    assert_eq!(
        (v[0].variant.as_str(), v[1].variant.as_str()),
        ("champion", "challenger")
    );
    assert_eq!(v[1].model, "small-boosted v7");
    let (e0, e1) = (v[0].eligible, v[1].eligible);
    assert!(
        e0 > 61 && e1 > 61,
        "both variants must have more customers than capacity"
    );
    // The capacity split by share, the rounding unit to the larger remainder.
    let exact0 = 61.0 * e0 as f64 / (e0 + e1) as f64;
    let c0 = if exact0.fract() >= 61.0 * e1 as f64 / (e0 + e1) as f64 % 1.0 {
        exact0.ceil()
    } else {
        exact0.floor()
    } as u64;
    assert_eq!(v[0].capacity, Some(c0), "{v:?}");
    assert_eq!(v[1].capacity, Some(61 - c0), "{v:?}");
    // Each variant fills exactly its share, and the list says which variant each row is.
    let mut r = csv::Reader::from_path(run.out.join("targets.csv")).unwrap();
    let mut rows = BTreeMap::new();
    for rec in r.records() {
        let rec = rec.unwrap();
        *rows
            .entry((rec[9].to_owned(), rec[2].to_owned()))
            .or_insert(0u64) += 1;
    }
    let per_variant = |name: &str| -> u64 {
        rows.iter()
            .filter(|((v, _), _)| v == name)
            .map(|(_, n)| n)
            .sum()
    };
    assert_eq!(per_variant("champion"), v[0].selected);
    assert_eq!(per_variant("challenger"), v[1].selected);
    assert_eq!((v[0].selected, v[1].selected), (c0, 61 - c0));
    // The boosted offer's maximum is split too: the challenger cannot take most of it.
    let a = |name: &str| {
        rows.get(&(name.to_owned(), "a".to_owned()))
            .copied()
            .unwrap_or(0)
    };
    assert!(a("challenger") <= 11 && a("champion") <= 11, "{rows:?}");
    assert!(run
        .summary
        .shadow_prices
        .keys()
        .any(|k| k.starts_with("challenger.")));
}

/// `campaign check` resolves the campaign against the challenger too: one without the
/// campaign's channel is refused by check, not first by run.
#[test]
fn campaign_check_validates_the_challenger() {
    let mut web_only = small_model();
    web_only["name"] = json!("web-only");
    web_only["placements"] = json!({"home": {"channels": ["web"], "limit": 3}});
    for o in web_only["offers"].as_array_mut().unwrap() {
        o["channels"] = json!(["web"]);
        o["placements"] = json!(["home"]);
        o["content"] = json!({"web": content("web")});
    }
    let base = base_with_challenger("cmp-check-challenger", &web_only);
    let file = base.write_campaign("checked", &sms("checked"));
    let err = campaign::check(&file, Some(&base.path("model.json")), None)
        .expect_err("the challenger has no sms channel");
    let faults = err.faults();
    assert!(
        faults.iter().any(|f| f.path == "channel"
            && f.message.contains("(challenger `web-only`)")
            && f.message.contains("no channel `sms`")),
        "{faults:?}"
    );
    // With features too, and the run refuses the same way.
    let err = campaign::check(
        &file,
        Some(&base.path("model.json")),
        Some(&base.path("features.csv")),
    )
    .expect_err("the same with a snapshot");
    assert!(err.to_string().contains("challenger"), "{err}");
    let run = campaign::run(&base.config(&file, "out", NOW)).expect_err("run refuses");
    assert!(run.to_string().contains("(challenger `web-only`)"), "{run}");
}
