//! Adaptive scorers: the prior, the credit rule and the `context` a contextual scorer learns
//! from, and every refusal with its path.

use super::*;

fn adaptive(scorer: serde_json::Value) -> serde_json::Value {
    with(model(vec![offer("a")]), "/offers/0/scorer", scorer)
}

#[test]
fn an_adaptive_scorer_compiles_its_prior_into_a_beta() {
    let m = compile(&adaptive(
        serde_json::json!({"kind": "adaptive", "outcome": "click",
        "prior": {"propensity": 0.05, "evidence": 200}, "reset": true, "window_days": 3,
        "exposure_floor": 0.02}),
    ))
    .unwrap();
    let crate::engine::Scorer::Adaptive(a) = &m.compiled.offers[0].scorer else {
        panic!("not adaptive: {:?}", m.compiled.offers[0].scorer);
    };
    assert!((a.alpha - 10.0).abs() < 1e-9 && (a.beta - 190.0).abs() < 1e-9);
    assert_eq!(a.outcome, crate::engine::adaptive::Outcome::Click);
    assert_eq!((a.window_days, a.reset, a.floor), (3, true, 0.02));
    let m = compile(&adaptive(
        serde_json::json!({"kind": "adaptive", "outcome": "conversion",
        "prior": {"propensity": 0.5, "evidence": 2}}),
    ))
    .unwrap();
    let crate::engine::Scorer::Adaptive(a) = &m.compiled.offers[0].scorer else {
        panic!("not adaptive");
    };
    assert_eq!((a.window_days, a.reset, a.floor), (7, false, 0.01));
}

#[test]
fn adaptive_scorer_faults_name_their_paths() {
    let ok = serde_json::json!({"kind": "adaptive", "outcome": "conversion",
        "prior": {"propensity": 0.05, "evidence": 200}});
    let at = "offers[0].scorer";
    let bad = |ptr: &str, v: serde_json::Value| {
        let mut s = ok.clone();
        *s.pointer_mut(ptr).unwrap() = v;
        adaptive(s)
    };
    refused(
        &bad("/outcome", "purchase".into()),
        &format!("{at}.outcome"),
        "`click` or `conversion`, found `purchase`",
    );
    refused(
        &bad("/outcome", "convertion".into()),
        &format!("{at}.outcome"),
        "found `convertion`: did you mean `conversion`?",
    );
    refused(
        &bad("/kind", "adaptve".into()),
        &format!("{at}.kind"),
        "unknown scorer kind `adaptve` (logistic, constant, xgboost, lightgbm, adaptive): did you mean `adaptive`?",
    );
    refused(
        &bad(
            "/prior",
            serde_json::json!({"propensity": 0.1, "evidense": 5}),
        ),
        &format!("{at}.prior.evidense"),
        "unknown field: did you mean `evidence`?",
    );
    refused(
        &bad("/prior/propensity", 1.0.into()),
        &format!("{at}.prior.propensity"),
        "below 1",
    );
    refused(
        &bad("/prior/propensity", 0.into()),
        &format!("{at}.prior.propensity"),
        "above 0",
    );
    refused(
        &bad("/prior/evidence", 0.5.into()),
        &format!("{at}.prior.evidence"),
        "between 1",
    );
    refused(
        &bad("/prior", serde_json::json!({"propensity": 0.1})),
        &format!("{at}.prior.evidence"),
        "missing field",
    );
    refused(
        &bad(
            "/prior",
            serde_json::json!({"mean": 0.1, "propensity": 0.1, "evidence": 5}),
        ),
        &format!("{at}.prior.mean"),
        "unknown field",
    );
    let mut s = ok.clone();
    s["outcome"] = serde_json::Value::Null;
    s.as_object_mut().unwrap().remove("outcome");
    refused(&adaptive(s), &format!("{at}.outcome"), "missing field");
    let mut s = ok.clone();
    s["reset"] = "yes".into();
    refused(
        &adaptive(s.clone()),
        &format!("{at}.reset"),
        "true or false",
    );
    s["reset"] = true.into();
    s["window_days"] = 31.into();
    refused(
        &adaptive(s.clone()),
        &format!("{at}.window_days"),
        "from 1 to 30",
    );
    s["window_days"] = 7.into();
    s["exposure_floor"] = 0.9.into();
    refused(
        &adaptive(s.clone()),
        &format!("{at}.exposure_floor"),
        "between 0 and 0.5",
    );
    s["exposure_floor"] = 0.01.into();
    s["segment_by"] = serde_json::json!([{"feature": "tenure"}]);
    refused(
        &adaptive(s.clone()),
        &format!("{at}.segment_by"),
        "unknown field",
    );
    s.as_object_mut().unwrap().remove("segment_by");
    s["seed"] = 1.into();
    refused(&adaptive(s), &format!("{at}.seed"), "unknown field");
}

fn contextual(context: serde_json::Value) -> serde_json::Value {
    adaptive(
        serde_json::json!({"kind": "adaptive", "outcome": "conversion",
        "prior": {"propensity": 0.03, "evidence": 50}, "context": context}),
    )
}

fn context_of(m: &LoadedModel) -> &crate::engine::contextual::Context {
    match &m.compiled.offers[0].scorer {
        crate::engine::Scorer::Adaptive(a) => a.context.as_deref().expect("a context"),
        other => panic!("not adaptive: {other:?}"),
    }
}

#[test]
fn a_context_resolves_columns_and_string_values_when_compiled() {
    use crate::engine::contextual::{number_level, text_level, ContextFeature, Source};
    use crate::engine::posterior::MISSING;
    let store = FeatureStore::from_csv_bytes(
        b"customer_id,tenure,segment\nC1,3,silver\nC2,,gold\n",
        "t.csv",
    )
    .unwrap();
    let build = |doc: &serde_json::Value| {
        from_bytes(
            serde_json::to_vec(doc).unwrap(),
            None,
            "t".into(),
            &store,
            &Limits::default(),
        )
        .unwrap()
    };
    let m = build(&contextual(serde_json::json!(["segment", "tenure"])));
    let c = context_of(&m);
    let names: Vec<&str> = c.features.iter().map(|f| &*f.name).collect();
    assert_eq!(names, ["segment", "tenure"]);
    let column_of = |f: &ContextFeature| match &f.source {
        Source::Column { column, text } => (*column as usize, text.clone()),
        Source::Request { .. } => panic!("a column: {f:?}"),
    };
    let (segment, levels) = column_of(&c.features[0]);
    assert_eq!(segment, store.column("segment").unwrap());
    // A string column's codes map to the levels the learner counts (codes in byte order).
    assert_eq!(
        levels.as_deref(),
        Some(&[text_level("gold"), text_level("silver")][..])
    );
    assert!(column_of(&c.features[1]).1.is_none());
    assert!(m.compiled.learnt_context.is_empty());
    assert!(m.compiled.features_used.iter().any(|f| &**f == "segment"));
    let (c1, c2) = (store.row("C1").unwrap(), store.row("C2").unwrap());
    assert_eq!(c.features[0].level(c1, &[]), text_level("silver"));
    assert_eq!(c.features[0].level(c2, &[]), text_level("gold"));
    assert_eq!(c.features[1].level(c1, &[]), number_level(3.0));
    assert_eq!(c.features[1].level(c2, &[]), MISSING);
    // The key names what was learnt: the same scorer keeps it, another order or prior not.
    let again = build(&contextual(serde_json::json!(["segment", "tenure"])));
    assert_eq!(context_of(&again).key, c.key);
    let swapped = build(&contextual(serde_json::json!(["tenure", "segment"])));
    assert_ne!(context_of(&swapped).key, c.key);
    let mut doc = contextual(serde_json::json!(["segment", "tenure"]));
    doc["offers"][0]["scorer"]["prior"]["evidence"] = 10.into();
    assert_ne!(context_of(&build(&doc)).key, c.key);
}

#[test]
fn a_context_names_request_values_through_the_rules_context_slots() {
    use crate::engine::contextual::{feature_id, Source};
    let mut doc = contextual(serde_json::json!([
        "context.device",
        "tenure",
        "context.utm_campaign"
    ]));
    doc["offers"][0]["eligibility"] =
        serde_json::json!({"context": "utm_campaign", "op": "ne", "value": "spam"});
    let m = compile(&doc).unwrap();
    let keys: Vec<&str> = m.compiled.context_keys.iter().map(|k| &**k).collect();
    // The rule read utm_campaign first: the scorer shares its slot and adds device's.
    assert_eq!(keys, ["utm_campaign", "device"]);
    let c = context_of(&m);
    let names: Vec<&str> = c.features.iter().map(|f| &*f.name).collect();
    assert_eq!(names, ["context.device", "tenure", "context.utm_campaign"]);
    assert_eq!(c.features[0].source, Source::Request { slot: 1 });
    assert!(matches!(c.features[1].source, Source::Column { .. }));
    assert_eq!(c.features[2].source, Source::Request { slot: 0 });
    assert_eq!(
        &*m.compiled.learnt_context,
        &[
            (feature_id("context.device"), 1),
            (feature_id("context.utm_campaign"), 0)
        ]
    );
    // Request values are not snapshot features; the learnt key tells them from a column.
    let used: Vec<&str> = m.compiled.features_used.iter().map(|k| &**k).collect();
    assert!(!used.iter().any(|u| u.contains("device")), "{used:?}");
    let plain = compile(&contextual(serde_json::json!(["tenure"]))).unwrap();
    assert_ne!(context_of(&plain).key, c.key);
    // Any key is fine, as in rules and logistic scorers; an empty one is not.
    refused(
        &contextual(serde_json::json!(["tenure", "context."])),
        "offers[0].scorer.context[1]",
        "request context key",
    );
    refused(
        &contextual(serde_json::json!(["context.device", "context.device"])),
        "offers[0].scorer.context[1]",
        "listed twice",
    );
}

#[test]
fn bad_context_entries_are_refused_with_their_paths() {
    let at = "offers[0].scorer.context";
    refused(
        &contextual(serde_json::json!(["tenure", "churn_score"])),
        &format!("{at}[1]"),
        "unknown feature `churn_score`",
    );
    refused(
        &contextual(serde_json::json!(["tenure", "arpu", "tenure"])),
        &format!("{at}[2]"),
        "`tenure` is listed twice",
    );
    let many: Vec<String> = (0..17).map(|i| format!("f{i}")).collect();
    refused(
        &contextual(serde_json::json!(many)),
        at,
        "more than 16 items",
    );
    refused(&contextual(serde_json::json!([])), at, "must not be empty");
    refused(
        &contextual(serde_json::json!("tenure")),
        at,
        "expected an array",
    );
    refused(
        &contextual(serde_json::json!([7])),
        &format!("{at}[0]"),
        "expected a string",
    );
}

/// What compiles but likely is a mistake is said: a `reset` left in (every version starts over
/// again), two request keys a letter apart, and a share written as a percentage.
#[test]
fn a_kept_reset_near_request_keys_and_a_percentage_are_said() {
    let m = compile(&adaptive(
        serde_json::json!({"kind": "adaptive", "outcome": "conversion",
        "prior": {"propensity": 0.05, "evidence": 20}, "reset": true}),
    ))
    .unwrap();
    let said: Vec<String> = m.warnings.iter().map(ToString::to_string).collect();
    assert!(
        said.iter()
            .any(|w| w
                .starts_with("offers[0].scorer.reset: this offer starts over with every version")),
        "{said:?}"
    );
    let m = compile(&contextual(serde_json::json!([
        "context.devise",
        "context.device",
        "context.dev"
    ])))
    .unwrap();
    let said: Vec<String> = m.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        said,
        ["the model reads request keys `context.devise` and `context.device`, one letter apart: \
          pages send one of them, so what reads the other reads nothing; give both the key the \
          pages send (a typo?)"]
    );
    let far = compile(&contextual(serde_json::json!([
        "context.device",
        "context.page"
    ])))
    .unwrap();
    assert!(far.warnings.is_empty(), "{:?}", far.warnings);
    refused(
        &adaptive(
            serde_json::json!({"kind": "adaptive", "outcome": "conversion",
            "prior": {"propensity": "5%", "evidence": 20}}),
        ),
        "offers[0].scorer.prior.propensity",
        "expected a number, found a string (`5%`: write 0.05 for 5 %)",
    );
}
