use super::*;
use crate::model::{from_bytes, Limits};

const CSV: &str = "customer_id,tenure,arpu,data\nC1,24,40,12\nC2,2,10,\nC3,60,80,30\n";

/// Three offers whose logistic scores order differently per customer, plus a service offer.
fn model_json() -> serde_json::Value {
    let content = |id: &str| {
        serde_json::json!({"title": format!("T {id}"), "body": "b",
            "image_url": format!("https://cdn.test/{id}.jpg"), "cta_url": format!("https://shop.test/{id}")})
    };
    serde_json::json!({
        "name": "t", "version": "7",
        "arbitration": {"min_score": 0.0},
        "placements": {"home": {"channels": ["web", "app"], "limit": 2}, "side": {"channels": ["web"]}},
        "offers": [
            {"id": "a", "category": "sales", "channels": ["web", "app"], "placements": ["home"], "value": 10,
             "scorer": {"kind": "logistic", "intercept": -1, "weights": {"arpu": 0.02}},
             "content": {"web": content("a"), "app": content("a")}},
            {"id": "b", "category": "sales", "channels": ["web"], "placements": ["home", "side"], "value": 20,
             "eligibility": {"feature": "tenure", "op": "ge", "value": 12},
             "scorer": {"kind": "logistic", "intercept": -2, "weights": {"data": 0.05}},
             "content": {"web": content("b")}},
            {"id": "c", "category": "retention", "channels": ["web"], "placements": ["home"], "value": 5, "priority": 3,
             "eligibility": {"all": [{"feature": "tenure", "op": "ge", "value": 36}, {"context": "page", "op": "eq", "value": "plans"}]},
             "scorer": {"kind": "constant", "propensity": 0.5},
             "content": {"web": content("c")}},
            {"id": "old", "category": "sales", "channels": ["web"], "placements": ["home"], "value": 1000,
             "valid_from": "2020-01-01T00:00:00Z", "valid_until": "2020-02-01T00:00:00Z",
             "scorer": {"kind": "constant", "propensity": 1},
             "content": {"web": content("old")}}
        ],
        "fallback": {"web": {"default": [{"offer_id": "fb", "content": content("fb")}]}}
    })
}

fn setup() -> (crate::model::LoadedModel, FeatureStore) {
    compile_doc(&model_json())
}

/// Compiles a model document over the test snapshot.
fn compile_doc(doc: &serde_json::Value) -> (crate::model::LoadedModel, FeatureStore) {
    let store = FeatureStore::from_csv_bytes(CSV.as_bytes(), "t.csv").unwrap();
    let bytes = serde_json::to_vec(doc).unwrap();
    let model = from_bytes(bytes, None, "test".into(), &store, &Limits::default()).unwrap();
    (model, store)
}

const NOW: i64 = 1_795_000_000_000; // 2026-11

fn run<'m>(m: &'m CompiledModel, s: &FeatureStore, req: &Request<'_>) -> Decision<'m> {
    decide(m, s, req, &NoContacts, &Unbounded, NOW)
}

fn ids(m: &CompiledModel, d: &Decision<'_>) -> Vec<String> {
    d.ranked
        .iter()
        .map(|r| m.offers[r.offer as usize].id.to_string())
        .collect()
}

#[test]
fn ranks_by_propensity_times_value_times_priority() {
    let (lm, s) = setup();
    let m = &lm.compiled;
    let ctx = [(Cow::Borrowed("page"), CtxValue::Str("plans".into()))];
    let req = Request {
        customer_id: Some("C3"),
        channel: "web",
        placement: "home",
        limit: Some(5),
        context: &ctx,
        ..Default::default()
    };
    let d = run(m, &s, &req);
    assert_eq!(d.fallback, None);
    // C3: a = σ(-1+1.6)·10 ≈ 6.46, b = σ(-2+1.5)·20 ≈ 7.55, c = 0.5·5·3 = 7.5.
    assert_eq!(ids(m, &d), ["b", "c", "a"]);
    for w in d.ranked.windows(2) {
        assert!(w[0].score >= w[1].score);
    }
    let a = d.ranked.iter().find(|r| r.offer == 0).unwrap();
    assert!((a.propensity - scorer::sigmoid(-1.0 + 0.02 * 80.0)).abs() < 1e-9);
    assert!((a.score - a.propensity * 10.0).abs() < 1e-9);
}

#[test]
fn limit_defaults_to_the_placement_and_is_respected() {
    let (lm, s) = setup();
    let m = &lm.compiled;
    let ctx = [(Cow::Borrowed("page"), CtxValue::Str("plans".into()))];
    let mut req = Request {
        customer_id: Some("C3"),
        channel: "web",
        placement: "home",
        context: &ctx,
        ..Default::default()
    };
    assert_eq!(run(m, &s, &req).ranked.len(), 2);
    req.limit = Some(1);
    assert_eq!(ids(m, &run(m, &s, &req)), ["b"]);
}

#[test]
fn eligibility_channel_and_context_filter_offers() {
    let (lm, s) = setup();
    let m = &lm.compiled;
    // C2 has tenure 2: b and c are not eligible; on app only a is offered at all.
    let req = Request {
        customer_id: Some("C2"),
        channel: "web",
        placement: "home",
        limit: Some(5),
        ..Default::default()
    };
    assert_eq!(ids(m, &run(m, &s, &req)), ["a"]);
    // C3 without the page context: c is not eligible.
    let req = Request {
        customer_id: Some("C3"),
        channel: "app",
        placement: "home",
        limit: Some(5),
        ..Default::default()
    };
    assert_eq!(ids(m, &run(m, &s, &req)), ["a"]);
}

#[test]
fn unknown_customer_and_unknown_placement_get_fallback() {
    let (lm, s) = setup();
    let m = &lm.compiled;
    let req = Request {
        customer_id: Some("nobody"),
        channel: "web",
        placement: "home",
        ..Default::default()
    };
    let d = run(m, &s, &req);
    assert_eq!(d.fallback, Some(FallbackReason::UnknownCustomer));
    assert!(d.ranked.is_empty());
    assert_eq!(d.fallback_content.stage, FallbackStage::Channel);
    assert!(d.fallback_content.offers_json.contains("\"fb\""));
    let anonymous = Request {
        customer_id: None,
        ..req
    };
    assert_eq!(
        run(m, &s, &anonymous).fallback,
        Some(FallbackReason::UnknownCustomer)
    );
    let req = Request {
        customer_id: Some("C1"),
        channel: "web",
        placement: "nowhere",
        ..Default::default()
    };
    assert_eq!(
        run(m, &s, &req).fallback,
        Some(FallbackReason::UnknownPlacement)
    );
    let req = Request {
        customer_id: Some("C1"),
        channel: "tv",
        placement: "home",
        explain: true,
        ..Default::default()
    };
    let d = run(m, &s, &req);
    assert_eq!(d.fallback, Some(FallbackReason::UnknownPlacement));
    assert_eq!(d.fallback_content.stage, FallbackStage::Builtin);
    assert!(
        matches!(&d.explain[0], Verdict::Excluded(why) if why.starts_with("channel: the model has no such channel")),
        "{:?}",
        d.explain
    );
    let req = Request {
        customer_id: Some("nobody"),
        channel: "web",
        placement: "nowhere",
        explain: true,
        ..Default::default()
    };
    let d = run(m, &s, &req);
    assert_eq!(
        d.fallback,
        Some(FallbackReason::UnknownPlacement),
        "a typo in the placement is named before an unknown customer"
    );
    assert!(
        matches!(&d.explain[0], Verdict::Excluded(why) if why.starts_with("placement: the model has no such placement")),
        "{:?}",
        d.explain
    );
}

#[test]
fn nothing_eligible_is_no_eligible_offer() {
    let (lm, s) = setup();
    let m = &lm.compiled;
    // C2 on `side`: only b, which needs tenure >= 12.
    let req = Request {
        customer_id: Some("C2"),
        channel: "web",
        placement: "side",
        ..Default::default()
    };
    let d = run(m, &s, &req);
    assert_eq!(d.fallback, Some(FallbackReason::NoEligibleOffer));
}

#[test]
fn explain_names_every_offer_and_its_exclusion() {
    let (lm, s) = setup();
    let m = &lm.compiled;
    let req = Request {
        customer_id: Some("C2"),
        channel: "web",
        placement: "home",
        explain: true,
        ..Default::default()
    };
    let d = run(m, &s, &req);
    assert_eq!(d.explain.len(), m.offers.len());
    assert!(matches!(d.explain[0], Verdict::Scored { .. }));
    // A failing leaf is named with the value it tested.
    assert_eq!(
        d.explain[1],
        Verdict::Excluded("offers[1].eligibility: tenure is 2, the rule needs >= 12".into())
    );
    assert_eq!(
        d.explain[2],
        Verdict::Excluded("offers[2].eligibility.all[0]: tenure is 2, the rule needs >= 36".into())
    );
    assert_eq!(d.explain[3], Verdict::Excluded(OUTSIDE_WINDOW.into()));
    // Without explain, nothing is collected.
    let quiet = run(
        m,
        &s,
        &Request {
            explain: false,
            ..req
        },
    );
    assert!(quiet.explain.is_empty());
}

#[test]
fn validity_window_is_half_open() {
    let (lm, s) = setup();
    let m = &lm.compiled;
    let old = &m.offers[3];
    let req = Request {
        customer_id: Some("C1"),
        channel: "web",
        placement: "home",
        limit: Some(1),
        ..Default::default()
    };
    let at = |t| decide(m, &s, &req, &NoContacts, &Unbounded, t);
    assert_eq!(ids(m, &at(old.valid_from_ms)), ["old"]);
    assert_eq!(ids(m, &at(old.valid_until_ms - 1)), ["old"]);
    assert_ne!(ids(m, &at(old.valid_until_ms)), ["old"]);
    assert_ne!(ids(m, &at(old.valid_from_ms - 1)), ["old"]);
}

struct Spent;
impl Budget for Spent {
    fn expired(&self) -> bool {
        true
    }
}

#[test]
fn a_spent_budget_stops_between_offers() {
    let content = serde_json::json!({"title": "t", "image_url": "https://x.test/i", "cta_url": "https://x.test/c"});
    let offers: Vec<_> = (0..40)
        .map(|i| {
            serde_json::json!({"id": format!("o{i}"), "category": "sales", "channels": ["web"],
            "placements": ["p"], "value": 1, "scorer": {"kind": "constant", "propensity": 0.5},
            "content": {"web": content}})
        })
        .collect();
    let doc = serde_json::json!({"name": "n", "version": 1, "placements": {"p": {"channels": ["web"]}}, "offers": offers});
    let (lm, store) = compile_doc(&doc);
    let req = Request {
        customer_id: Some("C1"),
        channel: "web",
        placement: "p",
        explain: true,
        ..Default::default()
    };
    let d = decide(&lm.compiled, &store, &req, &NoContacts, &Spent, NOW);
    assert_eq!(d.fallback, Some(FallbackReason::Deadline));
    assert!(d.ranked.is_empty());
    let unevaluated = d
        .explain
        .iter()
        .filter(|v| **v == Verdict::Excluded(NOT_EVALUATED.into()))
        .count();
    assert_eq!(unevaluated, 40 - BUDGET_CHECK_EVERY);
}

#[test]
fn same_input_same_answer() {
    let (lm, s) = setup();
    let m = &lm.compiled;
    let req = Request {
        customer_id: Some("C1"),
        channel: "web",
        placement: "home",
        limit: Some(3),
        ..Default::default()
    };
    let first = run(m, &s, &req).ranked;
    for _ in 0..10 {
        assert_eq!(run(m, &s, &req).ranked, first);
    }
}

#[test]
fn a_propensity_that_is_not_a_number_excludes_the_offer() {
    // Legal but extreme weights: for C1, arpu and data overflow to +inf and -inf, and the
    // sum is NaN. The offer must not rank (NaN sorts above every score).
    let mut doc = model_json();
    doc["offers"][0]["scorer"]["weights"] =
        serde_json::json!({"arpu": f64::MAX, "data": -f64::MAX});
    let (lm, store) = compile_doc(&doc);
    let req = Request {
        customer_id: Some("C1"),
        channel: "app",
        placement: "home",
        explain: true,
        ..Default::default()
    };
    let d = run(&lm.compiled, &store, &req);
    assert_eq!(d.explain[0], Verdict::Excluded(NOT_A_NUMBER.into()));
    assert!(d.ranked.is_empty());
    assert_eq!(d.fallback, Some(FallbackReason::NoEligibleOffer));
    // On the web, the other offers still rank.
    let web = run(
        &lm.compiled,
        &store,
        &Request {
            channel: "web",
            ..req
        },
    );
    assert_eq!(ids(&lm.compiled, &web), ["b"]);
}

#[test]
fn keep_top_matches_a_full_sort() {
    // Scores with ties, in model order, against every limit.
    let scores = [3.0, 1.0, 3.0, 7.0, 0.5, 7.0, 2.0, 3.0, 9.0, 1.0];
    let all: Vec<Ranked> = scores
        .iter()
        .enumerate()
        .map(|(i, &s)| Ranked {
            offer: i as u32,
            propensity: 0.5,
            score: s,
        })
        .collect();
    let mut sorted = all.clone();
    sorted.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.offer.cmp(&b.offer)));
    for limit in 1..=scores.len() + 2 {
        let mut top = Vec::new();
        for r in &all {
            keep_top(&mut top, limit, *r);
        }
        assert_eq!(top, sorted[..limit.min(sorted.len())], "limit {limit}");
    }
}

/// A snapshot with string columns, and a model whose rules test them.
fn strings_setup(rules: serde_json::Value) -> (crate::model::LoadedModel, FeatureStore) {
    let csv = "customer_id,segment,region,churn_score,zip:str\n\
               G1,gold,capital,0.5,007\n\
               B1,bronze,capital,0.13,010\n\
               P1,platinum,north,0.9,\n\
               M1,,capital,,007\n";
    let store = FeatureStore::from_csv_bytes(csv.as_bytes(), "s.csv").unwrap();
    let content = serde_json::json!({"title": "t", "body": "b",
        "image_url": "https://cdn.test/x.jpg", "cta_url": "https://shop.test/x"});
    let offers: Vec<serde_json::Value> = rules
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, r)| {
            serde_json::json!({"id": format!("o{i}"), "category": "sales", "channels": ["web"],
                "placements": ["home"], "value": 1, "eligibility": r,
                "scorer": {"kind": "constant", "propensity": 0.5}, "content": {"web": content}})
        })
        .collect();
    let doc = serde_json::json!({"name": "s", "version": "1",
        "placements": {"home": {"channels": ["web"], "limit": 50}}, "offers": offers});
    let bytes = serde_json::to_vec(&doc).unwrap();
    let model = from_bytes(bytes, None, "test".into(), &store, &Limits::default()).unwrap();
    (model, store)
}

fn explained(m: &CompiledModel, s: &FeatureStore, id: &str) -> Vec<Option<String>> {
    let req = Request {
        customer_id: Some(id),
        channel: "web",
        placement: "home",
        explain: true,
        ..Default::default()
    };
    run(m, s, &req)
        .explain
        .iter()
        .map(|v| match v {
            Verdict::Excluded(why) => Some(why.to_string()),
            Verdict::Scored { .. } => None,
        })
        .collect()
}

#[test]
fn string_rules_compare_dictionary_codes_and_explain_the_value() {
    let rules = serde_json::json!([
        {"feature": "segment", "op": "in", "values": ["gold", "platinum"]},
        {"feature": "segment", "op": "eq", "value": "bronze"},
        {"feature": "segment", "op": "ne", "value": "bronze"},
        {"feature": "segment", "op": "not_in", "values": ["gold", "platinum"]},
        {"feature": "segment", "op": "is_missing"},
        {"all": [{"feature": "region", "op": "eq", "value": "capital"},
                 {"feature": "segment", "op": "in", "values": ["gold", "platinum"], "name": "top tiers"}]},
        {"feature": "zip", "op": "eq", "value": "007"},
        {"feature": "churn_score", "op": "ge", "value": 0.3}
    ]);
    let (lm, s) = strings_setup(rules);
    let m = &lm.compiled;
    assert!(lm.warnings.is_empty(), "{:?}", lm.warnings);
    // Rules on strings become tests on codes: no string survives into the compiled leaves.
    for o in m.offers.iter().take(5) {
        let text = format!("{:?}", o.rule);
        assert!(!text.contains("EqStr") && !text.contains("InStr"), "{text}");
    }
    let holds =
        |id: &str| -> Vec<bool> { explained(m, &s, id).iter().map(Option::is_none).collect() };
    assert_eq!(
        holds("G1"),
        [true, false, true, false, false, true, true, true]
    );
    assert_eq!(
        holds("B1"),
        [false, true, false, true, false, false, false, false]
    );
    assert_eq!(
        holds("P1"),
        [true, false, true, false, false, false, false, true]
    );
    // Missing: every test fails but `is_missing`, `ne` and `not_in` included.
    assert_eq!(
        holds("M1"),
        [false, false, false, false, true, false, true, false]
    );
    let why = explained(m, &s, "B1");
    assert_eq!(
        why[0].as_deref(),
        Some("offers[0].eligibility: segment is bronze, not in gold, platinum")
    );
    assert_eq!(
        why[5].as_deref(),
        Some("offers[5].eligibility.all[1]: top tiers (segment is bronze, not in gold, platinum)")
    );
    assert_eq!(
        why[7].as_deref(),
        Some("offers[7].eligibility: churn_score is 0.13, the rule needs >= 0.3")
    );
    let why = explained(m, &s, "M1");
    assert_eq!(
        why[1].as_deref(),
        Some("offers[1].eligibility: segment is missing, not bronze")
    );
}

#[test]
fn a_string_rule_and_the_same_rule_on_numeric_codes_decide_alike() {
    let (lm, s) = strings_setup(serde_json::json!([
        {"feature": "segment", "op": "in", "values": ["gold", "platinum"]}
    ]));
    let codes: Vec<f64> = ["gold", "platinum"]
        .iter()
        .map(|v| f64::from(s.dictionary(0).unwrap().code(v).unwrap()))
        .collect();
    let numeric = Rule::leaf(Operand::Feature(0), Test::InNum(codes.into()), "r");
    let Some(Rule::Leaf { test, operand, .. }) = &lm.compiled.offers[0].rule else {
        panic!("{:?}", lm.compiled.offers[0].rule)
    };
    let Rule::Leaf {
        test: t2,
        operand: o2,
        ..
    } = &numeric
    else {
        panic!()
    };
    assert_eq!((test, operand), (t2, o2));
}

#[test]
fn unknown_string_values_never_match_and_are_warned_about() {
    let (lm, s) = strings_setup(serde_json::json!([
        {"feature": "segment", "op": "eq", "value": "gold "},
        {"feature": "segment", "op": "in", "values": ["gold", "platnum"]},
        {"feature": "segment", "op": "ne", "value": "Gold"}
    ]));
    let paths: Vec<&str> = lm.warnings.iter().map(|w| w.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "offers[0].eligibility.value",
            "offers[1].eligibility.values[1]",
            "offers[2].eligibility.value"
        ]
    );
    assert!(
        lm.warnings[0]
            .message
            .contains("\"gold \" is not a value of `segment`"),
        "{}",
        lm.warnings[0]
    );
    assert!(
        lm.warnings[0].message.contains("\"gold\""),
        "the snapshot's values are shown"
    );
    let m = &lm.compiled;
    let holds =
        |id: &str| -> Vec<bool> { explained(m, &s, id).iter().map(Option::is_none).collect() };
    assert_eq!(holds("G1"), [false, true, true]);
    assert_eq!(holds("P1"), [false, false, true]);
    assert_eq!(holds("M1"), [false, false, false]);
}

#[test]
fn operator_and_kind_mismatches_are_faults_with_paths() {
    let store =
        FeatureStore::from_csv_bytes(b"customer_id,segment,arpu\nC1,gold,1\n", "s.csv").unwrap();
    let faults = |rule: serde_json::Value| -> Vec<String> {
        let doc = serde_json::json!({"name": "s", "version": "1",
            "placements": {"home": {"channels": ["web"]}},
            "offers": [{"id": "o", "category": "sales", "channels": ["web"], "placements": ["home"],
                "value": 1, "eligibility": rule, "scorer": {"kind": "constant", "propensity": 0.5},
                "content": {"web": {"title": "t", "body": "b", "image_url": "https://c.test/x.jpg",
                    "cta_url": "https://s.test/x"}}}]});
        match from_bytes(
            serde_json::to_vec(&doc).unwrap(),
            None,
            "t".into(),
            &store,
            &Limits::default(),
        ) {
            Err(e) => e.faults().iter().map(|f| f.to_string()).collect(),
            Ok(_) => Vec::new(),
        }
    };
    let f = faults(serde_json::json!({"feature": "segment", "op": "gt", "value": 1}));
    assert_eq!(f.len(), 1);
    assert!(
        f[0].starts_with(
            "offers[0].eligibility.op: `gt` compares numbers, and `segment` holds strings"
        ),
        "{f:?}"
    );
    let f = faults(serde_json::json!({"feature": "segment", "op": "between", "min": 1, "max": 2}));
    assert!(f[0].starts_with("offers[0].eligibility.op:"), "{f:?}");
    let f = faults(serde_json::json!({"feature": "segment", "op": "eq", "value": 3}));
    assert_eq!(
        f,
        ["offers[0].eligibility.value: expected a string: `segment` holds strings"]
    );
    let f = faults(serde_json::json!({"feature": "segment", "op": "in", "values": ["gold", 2]}));
    assert_eq!(
        f,
        ["offers[0].eligibility.values[1]: expected a string: `segment` holds strings"]
    );
    let f = faults(serde_json::json!({"feature": "arpu", "op": "eq", "value": "gold"}));
    assert_eq!(
        f,
        ["offers[0].eligibility.value: expected a number: `arpu` holds numbers"]
    );
    let f = faults(serde_json::json!({"feature": "arpu", "op": "not_in", "values": [1, "x"]}));
    assert_eq!(
        f,
        ["offers[0].eligibility.values[1]: expected a number: `arpu` holds numbers"]
    );
    assert!(
        faults(serde_json::json!({"feature": "arpu", "op": "not_in", "values": [1, 2]})).is_empty()
    );
}

/// Compiles one offer's `scorer` and `value` over a snapshot with string and value columns.
fn scored_offer(
    csv: &str,
    scorer: serde_json::Value,
    value: serde_json::Value,
) -> Result<(crate::model::LoadedModel, FeatureStore), Vec<String>> {
    let store = FeatureStore::from_csv_bytes(csv.as_bytes(), "v.csv").unwrap();
    let doc = serde_json::json!({"name": "v", "version": "1",
        "placements": {"home": {"channels": ["web"]}},
        "offers": [{"id": "o", "category": "sales", "channels": ["web"], "placements": ["home"],
            "value": value, "scorer": scorer,
            "content": {"web": {"title": "t", "body": "b", "image_url": "https://c.test/x.jpg",
                "cta_url": "https://s.test/x"}}}]});
    match from_bytes(
        serde_json::to_vec(&doc).unwrap(),
        None,
        "t".into(),
        &store,
        &Limits::default(),
    ) {
        Ok(m) => Ok((m, store)),
        Err(e) => Err(e.faults().iter().map(|f| f.to_string()).collect()),
    }
}

const VALUES_CSV: &str = "customer_id,segment,margin_12m,arpu\nG1,gold,120,10\nP1,platinum,,20\nB1,bronze,40,30\nM1,,5,40\n";

#[test]
fn logistic_categories_add_the_weight_of_the_customers_value() {
    let scorer = serde_json::json!({"kind": "logistic", "intercept": -1, "weights": {"arpu": 0.01},
        "categories": {"segment": {"gold": 0.4, "platinum": 0.9, "diamond": 2}}});
    let (lm, s) = scored_offer(VALUES_CSV, scorer, serde_json::json!(1)).unwrap();
    let o = &lm.compiled.offers[0];
    let p = |id: &str| o.scorer.predict(s.exact_row(id).unwrap());
    let sig = crate::engine::scorer::sigmoid;
    assert!((p("G1") - sig(-1.0 + 0.1 + 0.4)).abs() < 1e-12);
    assert!((p("P1") - sig(-1.0 + 0.2 + 0.9)).abs() < 1e-12);
    // Not listed, or missing: nothing added.
    assert!((p("B1") - sig(-1.0 + 0.3)).abs() < 1e-12);
    assert!((p("M1") - sig(-1.0 + 0.4)).abs() < 1e-12);
    assert_eq!(lm.warnings.len(), 1);
    assert_eq!(
        lm.warnings[0].path,
        "offers[0].scorer.categories.segment.diamond"
    );
    // A weight on a string column, or categories on a numeric one, are faults with paths.
    let bad = serde_json::json!({"kind": "logistic", "weights": {"segment": 0.1},
        "categories": {"arpu": {"x": 1}}});
    let faults = scored_offer(VALUES_CSV, bad, serde_json::json!(1)).unwrap_err();
    assert_eq!(faults.len(), 2, "{faults:?}");
    assert!(
        faults[0].starts_with("offers[0].scorer.weights.segment: `segment` holds strings"),
        "{faults:?}"
    );
    assert!(
        faults[1].starts_with("offers[0].scorer.categories.arpu: `arpu` holds numbers"),
        "{faults:?}"
    );
}

#[test]
fn an_offer_value_may_come_from_the_snapshot() {
    let constant = serde_json::json!({"kind": "constant", "propensity": 0.5});
    let value = serde_json::json!({"feature": "margin_12m", "default": 10});
    let (lm, s) = scored_offer(VALUES_CSV, constant.clone(), value).unwrap();
    let m = &lm.compiled;
    let score = |id: &str| {
        let req = Request {
            customer_id: Some(id),
            channel: "web",
            placement: "home",
            ..Default::default()
        };
        run(m, &s, &req).ranked[0].score
    };
    assert_eq!(score("G1"), 60.0);
    assert_eq!(score("B1"), 20.0);
    assert_eq!(score("P1"), 5.0, "missing takes the default");
    // The score bound is the highest value any customer has.
    assert_eq!(m.offers[0].score_bound(), 120.0);

    let faults = |csv: &str, value: serde_json::Value| {
        scored_offer(csv, constant.clone(), value).unwrap_err()
    };
    let neg = "customer_id,margin_12m\nA,1\nB,-3\n";
    let f = faults(
        neg,
        serde_json::json!({"feature": "margin_12m", "default": 1}),
    );
    assert_eq!(f.len(), 1);
    assert!(
        f[0].starts_with("offers[0].value.feature: `margin_12m` holds -3 on data row 2"),
        "{f:?}"
    );
    let f = faults(
        VALUES_CSV,
        serde_json::json!({"feature": "segment", "default": 1}),
    );
    assert!(
        f[0].starts_with("offers[0].value.feature: `segment` holds strings"),
        "{f:?}"
    );
    let f = faults(
        VALUES_CSV,
        serde_json::json!({"feature": "nope", "default": 1}),
    );
    assert_eq!(f, ["offers[0].value.feature: unknown feature `nope`"]);
    let f = faults(VALUES_CSV, serde_json::json!({"feature": "arpu"}));
    assert_eq!(f, ["offers[0].value.default: missing field"]);
    let f = faults(
        VALUES_CSV,
        serde_json::json!({"feature": "arpu", "default": -1}),
    );
    assert!(f[0].starts_with("offers[0].value.default:"), "{f:?}");
}
