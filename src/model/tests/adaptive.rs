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
        "`click` or `conversion`",
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
    use crate::engine::contextual::{number_level, text_level};
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
    assert_eq!(
        c.features[0].column as usize,
        store.column("segment").unwrap()
    );
    // A string column's codes map to the levels the learner counts (codes in byte order).
    assert_eq!(
        c.features[0].text.as_deref(),
        Some(&[text_level("gold"), text_level("silver")][..])
    );
    assert!(c.features[1].text.is_none());
    assert!(m.compiled.features_used.iter().any(|f| &**f == "segment"));
    let (c1, c2) = (store.row("C1").unwrap(), store.row("C2").unwrap());
    assert_eq!(c.features[0].level(c1), text_level("silver"));
    assert_eq!(c.features[0].level(c2), text_level("gold"));
    assert_eq!(c.features[1].level(c1), number_level(3.0));
    assert_eq!(c.features[1].level(c2), MISSING);
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
