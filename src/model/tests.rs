use super::*;

const CSV: &str = "customer_id,tenure,arpu\nC1,1,2\n";

fn store() -> FeatureStore {
    FeatureStore::from_csv_bytes(CSV.as_bytes(), "t.csv").unwrap()
}

fn content() -> serde_json::Value {
    serde_json::json!({"title": "T", "body": "B", "image_url": "https://cdn.test/i.jpg", "cta_url": "https://shop.test/x"})
}

fn offer(id: &str) -> serde_json::Value {
    serde_json::json!({"id": id, "category": "sales", "channels": ["web"], "placements": ["home"],
        "value": 10, "scorer": {"kind": "logistic", "intercept": -1, "weights": {"tenure": 0.1}},
        "content": {"web": content()}})
}

fn model(offers: Vec<serde_json::Value>) -> serde_json::Value {
    serde_json::json!({"name": "m", "version": "1", "placements": {"home": {"channels": ["web"], "limit": 2}},
        "offers": offers})
}

fn compile(doc: &serde_json::Value) -> Result<LoadedModel, ModelError> {
    from_bytes(
        serde_json::to_vec(doc).unwrap(),
        None,
        "t".into(),
        &store(),
        &Limits::default(),
    )
}

/// Asserts the document is refused with a fault at `path` whose message contains `needle`.
fn refused(doc: &serde_json::Value, path: &str, needle: &str) {
    match compile(doc) {
        Err(ModelError::Invalid(faults)) => assert!(
            faults
                .iter()
                .any(|f| f.path == path && f.message.contains(needle)),
            "no fault `{path}: ..{needle}..` in {faults:#?}"
        ),
        Err(other) => panic!("expected Invalid, got {other}"),
        Ok(_) => panic!("expected a refusal at {path}"),
    }
}

fn with(mut doc: serde_json::Value, pointer: &str, value: serde_json::Value) -> serde_json::Value {
    *doc.pointer_mut(pointer).unwrap() = value;
    doc
}

#[test]
fn a_valid_model_compiles_with_names_resolved() {
    let m = compile(&model(vec![offer("a"), offer("b")])).unwrap();
    assert_eq!(&*m.compiled.name, "m");
    assert_eq!(m.compiled.offers.len(), 2);
    assert_eq!(m.compiled.channels.len(), 1);
    assert_eq!(&*m.compiled.channels[0].slots[0].candidates, &[0, 1]);
    assert_eq!(
        &*m.compiled.features_used,
        &["tenure".into()] as &[Box<str>]
    );
    assert!(m.checksum.starts_with("crc32:"));
    let content = m.compiled.offers[0].content_json[0].as_deref().unwrap();
    let parsed: serde_json::Value = serde_json::from_str(content).unwrap();
    assert_eq!(parsed["title"], "T");
}

#[test]
fn duplicate_offer_ids() {
    refused(
        &model(vec![offer("a"), offer("a")]),
        "offers[1].id",
        "duplicate offer id `a`",
    );
}

#[test]
fn channel_without_content() {
    let o = with(offer("a"), "/content", serde_json::json!({}));
    refused(&model(vec![o]), "offers[0].content.web", "no content");
}

#[test]
fn urls_must_be_absolute_http() {
    let o = with(offer("a"), "/content/web/image_url", "/img.jpg".into());
    refused(
        &model(vec![o]),
        "offers[0].content.web.image_url",
        "absolute http(s) URL",
    );
    let o = with(
        offer("a"),
        "/content/web/cta_url",
        "javascript:alert(1)".into(),
    );
    refused(
        &model(vec![o]),
        "offers[0].content.web.cta_url",
        "absolute http(s) URL",
    );
}

#[test]
fn empty_title() {
    let o = with(offer("a"), "/content/web/title", "".into());
    refused(
        &model(vec![o]),
        "offers[0].content.web.title",
        "must not be empty",
    );
}

#[test]
fn window_ending_before_it_starts() {
    let mut o = offer("a");
    o["valid_from"] = "2026-12-01T00:00:00Z".into();
    o["valid_until"] = "2026-11-01T00:00:00Z".into();
    refused(
        &model(vec![o]),
        "offers[0].valid_until",
        "ends before it starts",
    );
    let mut o = offer("a");
    o["valid_from"] = "yesterday".into();
    refused(&model(vec![o]), "offers[0].valid_from", "RFC 3339");
}

#[test]
fn validity_times_take_any_offset_and_refuse_none() {
    let mut o = offer("a");
    o["valid_from"] = "2026-12-04T04:00:00+01:00".into();
    o["valid_until"] = "2026-12-03t22:00:01-05:00".into();
    let m = compile(&model(vec![o])).unwrap();
    let compiled = &m.compiled.offers[0];
    assert_eq!(
        compiled.valid_from_ms, 1_796_353_200_000,
        "04:00 in Paris is 03:00Z"
    );
    assert_eq!(compiled.valid_until_ms, 1_796_353_201_000);
    let mut o = offer("a");
    o["valid_until"] = "2026-12-04T03:00:00".into();
    refused(&model(vec![o]), "offers[0].valid_until", "no UTC offset");
}

#[test]
fn unknown_features_in_weights_and_rules() {
    let o = with(
        offer("a"),
        "/scorer/weights",
        serde_json::json!({"arpu_30d": 0.1}),
    );
    refused(
        &model(vec![o]),
        "offers[0].scorer.weights.arpu_30d",
        "unknown feature",
    );
    let mut o = offer("a");
    o["eligibility"] = serde_json::json!({"all": [{"feature": "tenure", "op": "ge", "value": 1}, {"feature": "nope", "op": "eq", "value": 1}]});
    refused(
        &model(vec![o]),
        "offers[0].eligibility.all[1].feature",
        "unknown feature `nope`",
    );
}

#[test]
fn every_fault_is_reported_not_just_the_first() {
    let mut bad = offer("a");
    bad["value"] = "ten".into();
    bad["content"]["web"]["cta_url"] = "nope".into();
    let dup = offer("a");
    match compile(&model(vec![bad, dup])) {
        Err(ModelError::Invalid(faults)) => {
            let paths: Vec<&str> = faults.iter().map(|f| f.path.as_str()).collect();
            for p in [
                "offers[0].value",
                "offers[0].content.web.cta_url",
                "offers[1].id",
            ] {
                assert!(paths.contains(&p), "{p} missing from {paths:?}");
            }
        }
        other => panic!("expected faults, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn rule_faults() {
    let cases = [
        (
            serde_json::json!({"feature": "tenure", "op": "approx", "value": 1}),
            "offers[0].eligibility.op",
            "unknown operator",
        ),
        (
            serde_json::json!({"feature": "tenure", "op": "between", "min": 5, "max": 1}),
            "offers[0].eligibility.max",
            "below `min`",
        ),
        (
            serde_json::json!({"feature": "tenure", "op": "in", "values": []}),
            "offers[0].eligibility.values",
            "must not be empty",
        ),
        (
            serde_json::json!({"feature": "tenure", "op": "gt"}),
            "offers[0].eligibility.value",
            "missing field",
        ),
        (
            serde_json::json!({"all": []}),
            "offers[0].eligibility.all",
            "must not be empty",
        ),
        (
            serde_json::json!({"op": "eq", "value": 1}),
            "offers[0].eligibility",
            "exactly one of",
        ),
        (
            serde_json::json!({"feature": "tenure", "op": "eq", "value": 1, "vlaue": 2}),
            "offers[0].eligibility.vlaue",
            "unknown field",
        ),
    ];
    for (rule, path, needle) in cases {
        let mut o = offer("a");
        o["eligibility"] = rule;
        refused(&model(vec![o]), path, needle);
    }
}

#[test]
fn deep_rules_are_refused() {
    let mut rule = serde_json::json!({"feature": "tenure", "op": "ge", "value": 1});
    for _ in 0..40 {
        rule = serde_json::json!({"not": rule});
    }
    let mut o = offer("a");
    o["eligibility"] = rule;
    match compile(&model(vec![o])) {
        Err(ModelError::Invalid(f)) => {
            assert!(f.iter().any(|f| f.message.contains("nested deeper")))
        }
        other => panic!("expected a depth fault, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn placements_and_channels_must_agree() {
    let o = with(offer("a"), "/placements", serde_json::json!(["checkout"]));
    refused(
        &model(vec![o]),
        "offers[0].placements[0]",
        "unknown placement `checkout`",
    );
    let o = with(offer("a"), "/placements", serde_json::json!(["hom"]));
    refused(
        &model(vec![o]),
        "offers[0].placements[0]",
        "unknown placement `hom` (not in `placements`): did you mean `home`?",
    );
    let mut o = offer("a");
    o["channels"] = serde_json::json!(["app"]);
    o["content"] = serde_json::json!({"app": content()});
    refused(
        &model(vec![o]),
        "offers[0].placements[0]",
        "none of the offer's channels",
    );
}

#[test]
fn a_placement_field_out_of_range_is_one_fault_not_one_per_offer_naming_the_placement() {
    for (field, value) in [
        ("exploration", serde_json::json!({"share": 1.0})),
        ("limit", serde_json::json!(0)),
        ("priority", serde_json::json!(-1)),
        ("anonymous", serde_json::json!("maybe")),
    ] {
        let mut doc = model(vec![offer("a"), offer("b")]);
        doc["placements"]["home"][field] = value;
        match compile(&doc) {
            Err(ModelError::Invalid(faults)) => {
                assert_eq!(faults.len(), 1, "{field}: {faults:#?}");
                assert!(faults[0]
                    .path
                    .starts_with(&format!("placements.home.{field}")));
            }
            other => panic!("{field}: expected one fault, got {:?}", other.map(|_| ())),
        }
    }
}

#[test]
fn structural_faults() {
    refused(
        &serde_json::json!({"name": "m", "version": "1", "placements": {}, "offers": []}),
        "offers",
        "at least one offer",
    );
    let mut doc = model(vec![offer("a")]);
    doc["colour"] = "blue".into();
    refused(&doc, "colour", "unknown field");
    refused(
        &with(model(vec![offer("a")]), "/name", 3.into()),
        "name",
        "expected a string",
    );
    refused(
        &offer_model_with_scorer(serde_json::json!({"kind": "magic"})),
        "offers[0].scorer.kind",
        "unknown scorer kind",
    );
    refused(
        &offer_model_with_scorer(serde_json::json!({"kind": "constant", "propensity": 2})),
        "offers[0].scorer.propensity",
        "between 0 and 1",
    );
}

fn offer_model_with_scorer(scorer: serde_json::Value) -> serde_json::Value {
    model(vec![with(offer("a"), "/scorer", scorer)])
}

#[test]
fn syntax_errors_give_line_and_column() {
    let err = from_bytes(
        b"{\n  \"name\": \"m\",\n  oops\n}".to_vec(),
        None,
        "t".into(),
        &store(),
        &Limits::default(),
    )
    .unwrap_err();
    match err {
        ModelError::Syntax {
            line,
            column,
            detail,
        } => {
            assert_eq!((line, column), (3, 3));
            assert_eq!(detail, "key must be a string", "words, not parser states");
        }
        other => panic!("expected a syntax error, got {other}"),
    }
    // Nested past the parser's depth in a field nothing reads: said where, and why.
    let deep = format!("{{\n\"x\": {}1{}}}", "[".repeat(1500), "]".repeat(1500));
    let err = from_bytes(
        deep.into_bytes(),
        None,
        "t".into(),
        &store(),
        &Limits::default(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        ModelError::Syntax {
            line: 2,
            column: 6 + 1023,
            detail: "arrays and objects nested more than 1024 deep".into()
        }
        .to_string()
    );
}

#[test]
fn the_bundled_demo_model_is_valid_against_the_bundled_snapshot() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let store = FeatureStore::load(&root.join("features.csv")).unwrap();
    let m = load(&root, &store, &Limits::default()).unwrap();
    assert!(m.compiled.offers.len() >= 20);
    let names: Vec<&str> = m.compiled.channels.iter().map(|c| &*c.name).collect();
    assert_eq!(names, ["app", "email", "push", "sms", "web"]);
    assert!(store.len() >= 10_000);
}

// Policies and caps

fn with_policies(policies: serde_json::Value) -> serde_json::Value {
    let mut doc = model(vec![offer("a"), offer("b")]);
    doc["policies"] = policies;
    doc
}

#[test]
fn policies_resolve_per_offer_with_defaults_and_overrides() {
    let mut doc = with_policies(serde_json::json!({
        "impression_cap": {"max_impressions": 3, "window_days": 7},
        "dismiss_cooldown_days": 30,
        "conversion_cooldown_days": 365,
        "sales_cap": {"max_contacts": 5, "window_days": 7, "categories": ["sales"]},
        "complaint_hold": {"categories": ["sales"], "timeout_days": 30}
    }));
    doc["offers"][1]["caps"] =
        serde_json::json!({"max_impressions": 1, "dismiss_cooldown_days": 0});
    doc["offers"][1]["category"] = "service".into();
    let m = compile(&doc).unwrap().compiled;
    let day = crate::engine::policy::DAY_MS;
    let a = &m.offers[0].caps;
    assert_eq!(a.impressions.unwrap().max, 3);
    assert_eq!(a.impressions.unwrap().window_ms, 7 * day);
    assert_eq!(a.dismiss_cooldown_ms, Some(30 * day));
    assert_eq!(a.conversion_cooldown_ms, Some(365 * day));
    assert!(a.sales_capped && a.complaint_held);
    assert_eq!(
        &*a.why.impressions,
        "policies.impression_cap: at most 3 impressions in 7 days"
    );
    assert!(a.why.dismiss.starts_with("policies.dismiss_cooldown_days"));
    let b = &m.offers[1].caps;
    assert_eq!(b.impressions.unwrap().max, 1, "the offer's own cap");
    assert_eq!(
        b.impressions.unwrap().window_ms,
        7 * day,
        "the window inherited"
    );
    assert_eq!(b.dismiss_cooldown_ms, None, "0 days turns it off");
    assert!(!b.sales_capped && !b.complaint_held, "a service offer");
    assert!(b
        .why
        .impressions
        .starts_with("offers[1].caps.max_impressions"));
    assert_eq!(m.policies.sales_cap.unwrap().max, 5);
    assert_eq!(m.policies.horizon_ms, 365 * day);
    assert_ne!(m.offers[0].id_hash, m.offers[1].id_hash);
    // No policies at all: nothing held, nothing to keep.
    let plain = compile(&model(vec![offer("a")])).unwrap().compiled;
    assert_eq!(plain.offers[0].caps, crate::engine::OfferCaps::default());
    assert_eq!(plain.policies.horizon_ms, 0);
}

#[test]
fn policy_faults_have_exact_paths() {
    let p = |v: serde_json::Value| with_policies(v);
    refused(
        &p(serde_json::json!({"cooldown": 3})),
        "policies.cooldown",
        "unknown field",
    );
    refused(
        &p(serde_json::json!({"dismiss_cooldown_days": -1})),
        "policies.dismiss_cooldown_days",
        "between 0 and 3650",
    );
    refused(
        &p(
            serde_json::json!({"sales_cap": {"max_contacts": 0, "window_days": 7, "categories": ["sales"]}}),
        ),
        "policies.sales_cap.max_contacts",
        "whole number from 1 to 256, found 0",
    );
    refused(
        &p(
            serde_json::json!({"sales_cap": {"max_contacts": "2", "window_days": 7, "categories": ["sales"]}}),
        ),
        "policies.sales_cap.max_contacts",
        "whole number from 1 to 256, found the string \"2\"",
    );

    refused(
        &p(serde_json::json!({"sales_cap": {"max_contacts": 2, "window_days": 7}})),
        "policies.sales_cap.categories",
        "missing field",
    );
    refused(
        &p(serde_json::json!({"complaint_hold": {"categories": ["sales"], "timeout_days": 0}})),
        "policies.complaint_hold.timeout_days",
        "longer than zero",
    );
    refused(
        &p(serde_json::json!({"impression_cap": {"max_impressions": 3}})),
        "policies.impression_cap.window_days",
        "missing field",
    );
    let mut doc = model(vec![offer("a")]);
    doc["offers"][0]["caps"] = serde_json::json!({"max_impressions": 2});
    refused(
        &doc,
        "offers[0].caps.window_days",
        "no policies.impression_cap",
    );
    doc["offers"][0]["caps"] = serde_json::json!({"max_impresions": 2});
    refused(&doc, "offers[0].caps.max_impresions", "unknown field");
    doc["offers"][0]["caps"] = serde_json::json!({"conversion_cooldown_days": "1y"});
    refused(
        &doc,
        "offers[0].caps.conversion_cooldown_days",
        "expected a number",
    );
}

#[test]
fn a_name_on_a_group_says_where_names_belong() {
    let rule = serde_json::json!({"name": "plans or home", "any": [
        {"context": "page", "op": "eq", "value": "plans"},
        {"context": "page", "op": "eq", "value": "home"}]});
    let mut o = offer("a");
    o["eligibility"] = rule;
    let doc = model(vec![o]);
    refused(
        &doc,
        "offers[0].eligibility",
        "`name` is allowed on single conditions only",
    );
    let rule =
        serde_json::json!({"any": [{"context": "page", "op": "eq", "value": "plans"}], "all": []});
    let mut o = offer("a");
    o["eligibility"] = rule;
    refused(
        &model(vec![o]),
        "offers[0].eligibility",
        "`all` must be the rule's only field",
    );
}

mod adaptive;
mod content;
mod trees;

#[test]
fn logistic_scorers_read_request_values_through_the_rules_context_slots() {
    let mut o = offer("a");
    o["eligibility"] = serde_json::json!({"context": "device", "op": "ne", "value": "tv"});
    o["scorer"] = serde_json::json!({"kind": "logistic", "weights": {"tenure": 0.1, "context.cart_value": 0.01},
        "impute": {"context.cart_value": 40}, "categories": {"context.device": {"ios": 0.3}}});
    let mut doc = model(vec![o]);
    doc["placements"]["home"]["anonymous"] = "decide".into();
    let m = compile(&doc).unwrap();
    let keys: Vec<&str> = m.compiled.context_keys.iter().map(|k| &**k).collect();
    assert_eq!(keys, ["device", "cart_value"]);
    assert!(m.compiled.channels[0].slots[0].anonymous);
    let crate::engine::Scorer::Logistic(l) = &m.compiled.offers[0].scorer else {
        panic!("logistic");
    };
    assert_eq!(&*l.context_terms, &[(1, 0.01, 40.0)]);
    assert_eq!(l.context_categories.len(), 1);
    assert_eq!(
        (l.context_categories[0].0, &*l.context_categories[0].1[0].0),
        (0, "ios")
    );
    assert_eq!(l.context_categories[0].1[0].1, 0.3);
    // Request values are not snapshot features.
    let used: Vec<&str> = m.compiled.features_used.iter().map(|k| &**k).collect();
    assert_eq!(used, ["tenure"]);
    assert!(!compile(&model(vec![offer("a")])).unwrap().compiled.channels[0].slots[0].anonymous);

    let mut bad = model(vec![offer("a")]);
    bad["placements"]["home"]["anonymous"] = "always".into();
    refused(&bad, "placements.home.anonymous", "`decide` or `fallback`");
    let mut o = offer("a");
    o["scorer"]["weights"] = serde_json::json!({"context.": 1});
    refused(
        &model(vec![o]),
        "offers[0].scorer.weights.context.",
        "request context key",
    );
}
