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
    assert!((a.propensity - posterior::sigmoid(-1.0 + 0.02 * 80.0)).abs() < 1e-9);
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

mod contextual;
mod exact;
mod explore;
mod strings;
