//! Outbound campaigns: the allocation against exact references on small bases (capacity,
//! capped offers, minimums with a category cap, two per customer, several channels).

mod support;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use nextbest::campaign::commit::{self, Target};
use nextbest::engine::{self, Request, Unbounded, Verdict};
use nextbest::model::{self, Limits};
use support::campaign::*;

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
        let mut why_not = Vec::new();
        let cap_of = |ch: &str| if ch == "sms" { sms_cap } else { email_cap };
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
            why_not.push((
                customer.to_owned(),
                offer.to_owned(),
                other,
                reason.to_owned(),
                rec[4].parse::<f64>().unwrap(),
            ));
        }
        assert!(per_channel["sms"] <= sms_cap && per_channel["email"] <= email_cap);
        // A tie with a channel whose capacity the list used up is that capacity's doing; a
        // tie with one that had room is a tie.
        let full = |ch: &str| per_channel.get(ch).copied().unwrap_or(0) >= cap_of(ch);
        let mut ties = 0;
        for (customer, offer, other, reason, score) in &why_not {
            let there = triples
                .iter()
                .find(|t| (&t.0, &t.1, t.2) == (customer, offer, *other))
                .map(|t| t.3);
            // (`not_offered`: the pair there was one no best list could use.)
            if there == Some(*score) && reason != "not_offered" {
                ties += 1;
                let want = if full(other) {
                    "capacity"
                } else {
                    "equal_score"
                };
                assert_eq!(reason, want, "{customer} {offer} on {other}");
            }
        }
        assert!(ties > 0, "{name}: no row ties with its other channel");
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
            let table = nextbest::campaign::output::table(&again.summary);
            for ch in ["sms", "email"] {
                let c = again.summary.channels[ch].capacity.as_ref().unwrap();
                assert_eq!(c.used_before, per_channel[ch], "{ch}");
                // The table gives the channel's capacity itself, however much is used.
                let said = format!(" of {} ({} used before)", c.max_contacts, c.used_before);
                assert!(table.contains(&said), "{said}: {table}");
            }
            // The next case starts from an empty history.
            std::fs::remove_dir_all(base.path("data")).unwrap();
            std::fs::create_dir(base.path("data")).unwrap();
        }
    }
    // A map of one channel names its capacity's price by the channel too.
    let doc = json!({"name": "one", "offers": ["a", "b", "c"],
        "channels": {"sms": {"placement": "sms_campaign", "max_contacts": 20}}});
    let prices: Vec<String> = base
        .run(&doc, "one", NOW)
        .summary
        .shadow_prices
        .into_keys()
        .collect();
    assert_eq!(prices, ["channels.sms.max_contacts"]);
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

/// A minimum the base cannot meet is named with its shortfall (in the summary and its table);
/// one met before the control group is met, though the control group takes some of it.
#[test]
fn a_minimum_the_base_cannot_meet_is_said_with_its_shortfall() {
    let base = Base::new("cmp-min-short", 120);
    let eligible_a = engine_scores(&base, "sms_campaign", "sms")
        .iter()
        .filter(|(_, o, _)| o == "a")
        .count() as u64;
    assert!(eligible_a > 20, "{eligible_a}");
    let doc = json!({"name": "short", "channel": "sms", "placement": "sms_campaign",
        "offers": ["a", "b", "c"], "max_offers_per_customer": 2,
        "offer_limits": {"a": {"min": eligible_a + 500}, "b": {"min": 10}}});
    let run = base.run(&doc, "short", NOW);
    let a = &run.summary.offers["a"];
    assert_eq!(a.selected, eligible_a);
    assert_eq!(a.min_shortfall, Some(500));
    assert_eq!(run.summary.offers["b"].min_shortfall, None);
    let table = nextbest::campaign::output::table(&run.summary);
    assert!(
        table.contains(&format!("a (min {}, NOT MET: 500 short)", eligible_a + 500)),
        "{table}"
    );
    // Met before the control group, which then holds some of its customers out: met.
    let doc = json!({"name": "held", "channel": "sms", "placement": "sms_campaign",
        "offers": ["a", "b", "c"], "offer_limits": {"a": {"min": eligible_a}},
        "control_group": {"share": 0.3, "salt": "s"}});
    let run = base.run(&doc, "held", NOW);
    let a = &run.summary.offers["a"];
    assert!(a.selected < eligible_a, "{a:?}");
    assert_eq!(a.min_shortfall, None);

    // A minimum above what is left of the day's capacity (12 of 20 texts sent this morning)
    // is said to be the capacity's, not the base's.
    let morning = json!({"name": "morning", "channel": "sms", "placement": "sms_campaign",
        "capacity": {"max_contacts": 12}});
    let sent = base.run(&morning, "morning", NOW - 2 * HOUR);
    commit::commit(
        &sent.out,
        &Target::Direct {
            data_dir: base.path("data"),
        },
        NOW,
    )
    .unwrap();
    let doc = json!({"name": "capped_min", "channel": "sms", "placement": "sms_campaign",
        "offers": ["a", "b", "c"], "capacity": {"max_contacts": 20, "per": "day"},
        "offer_limits": {"b": {"min": 15}}});
    let file = base.write_campaign("capped_min", &doc);
    let path = |p: std::path::PathBuf| p.to_str().unwrap().to_owned();
    let out = nextbest(&[
        "campaign",
        "run",
        &path(file),
        "--models",
        &path(base.path("model.json")),
        "--features",
        &path(base.path("features.csv")),
        "--data-dir",
        &path(base.path("data")),
        "--out",
        &path(base.path("capped_min")),
        "--now",
        "2026-11-22T10:00:00Z",
    ]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains(
            "an offer's minimum is not met: the capacity left for the run, 8, is below it"
        ),
        "{said}"
    );
}

/// With several channels, `control.csv` says the channel the list would have sent each held
/// out customer on (its last column): the same run without a control group sends each of them
/// that offer on that channel, since the group is drawn after the allocation.
#[test]
fn the_control_group_file_names_each_customers_channel() {
    let base = Base::new("cmp-control-channel", 160);
    let doc = |control: bool| {
        let mut d = json!({"name": "control_channels", "offers": ["a", "b", "c"],
            "channels": {
                "sms": {"placement": "sms_campaign", "max_contacts": 40},
                "email": {"placement": "email_campaign", "max_contacts": 60,
                          "reachable": {"feature": "y", "op": "ge", "value": 5}}}});
        if control {
            d["control_group"] = json!({"share": 0.3, "salt": "s"});
        }
        d
    };
    let held = base.run(&doc(true), "held", NOW);
    let all = base.run(&doc(false), "all", NOW);
    let mut sent = BTreeMap::new();
    let mut r = csv::Reader::from_path(all.out.join("targets.csv")).unwrap();
    for rec in r.records() {
        let rec = rec.unwrap();
        sent.insert((rec[0].to_owned(), rec[2].to_owned()), rec[1].to_owned());
    }
    let mut r = csv::Reader::from_path(held.out.join("control.csv")).unwrap();
    let header: Vec<String> = r.headers().unwrap().iter().map(str::to_owned).collect();
    assert_eq!(
        header,
        [
            "customer_id",
            "offer_id",
            "score",
            "propensity",
            "variant",
            "channel"
        ]
    );
    let mut channels = BTreeSet::new();
    let mut rows = 0;
    for rec in r.records() {
        let rec = rec.unwrap();
        let key = (rec[0].to_owned(), rec[1].to_owned());
        assert_eq!(sent.get(&key).map(String::as_str), Some(&rec[5]), "{key:?}");
        channels.insert(rec[5].to_owned());
        rows += 1;
    }
    assert!(rows >= 10, "{rows} held out");
    assert_eq!(
        channels,
        BTreeSet::from(["email".to_owned(), "sms".to_owned()])
    );
}
