//! Text columns in the engine: rules on dictionary codes, logistic categories, values from
//! a column, and what explain shows of them.

use super::*;

/// A snapshot with string columns, and a model whose rules test them.
fn strings_setup(rules: serde_json::Value) -> (crate::model::LoadedModel, FeatureStore) {
    let csv = "customer_id,segment,region,churn_score,zip:str\n\
               G1,gold,capital,0.5,007\n\
               B1,bronze,capital,0.13,010\n\
               P1,platinum,north,0.9,\n\
               M1,,capital,,007\n";
    with_rules(csv, rules)
}

/// The snapshot `csv`, and a model with one offer per rule of `rules` (offer `o<i>`).
pub(super) fn with_rules(
    csv: &str,
    rules: serde_json::Value,
) -> (crate::model::LoadedModel, FeatureStore) {
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

pub(super) fn explained(m: &CompiledModel, s: &FeatureStore, id: &str) -> Vec<Option<String>> {
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

/// A one-offer model over `store`, the offer's `fields` (scorer, value, eligibility) given.
fn one_offer(
    store: &FeatureStore,
    fields: serde_json::Value,
) -> Result<crate::model::LoadedModel, Vec<String>> {
    let mut offer = serde_json::json!({"id": "o", "category": "sales", "channels": ["web"],
        "placements": ["home"],
        "content": {"web": {"title": "t", "body": "b", "image_url": "https://c.test/x.jpg",
            "cta_url": "https://s.test/x"}}});
    for (k, v) in fields.as_object().unwrap() {
        offer[k] = v.clone();
    }
    let doc = serde_json::json!({"name": "s", "version": "1",
        "placements": {"home": {"channels": ["web"]}}, "offers": [offer]});
    from_bytes(
        serde_json::to_vec(&doc).unwrap(),
        None,
        "t".into(),
        store,
        &Limits::default(),
    )
    .map_err(|e| e.faults().iter().map(|f| f.to_string()).collect())
}

/// The faults of a one-offer model whose eligibility is `rule`, compiled over `store`.
fn rule_faults(store: &FeatureStore, rule: serde_json::Value) -> Vec<String> {
    let fields = serde_json::json!({"value": 1, "eligibility": rule,
        "scorer": {"kind": "constant", "propensity": 0.5}});
    one_offer(store, fields).err().unwrap_or_default()
}

/// A column of numbers that one word turned to text: the snapshot warns with the line and
/// the word, and a rule reading the column as numbers is refused saying the same.
#[test]
fn a_word_that_turned_a_column_of_numbers_is_named_where_it_matters() {
    let csv = "customer_id,a,b\nC1,1,1\nC2,2,2\nC3,3,N/A\nC4,4,4\n";
    let store = FeatureStore::from_csv_bytes(csv.as_bytes(), "s.csv").unwrap();
    assert_eq!(store.turned().collect::<Vec<_>>(), [(1, 4, "N/A")]);
    let warnings = store.column_warnings();
    assert_eq!(warnings.len(), 1);
    assert_eq!(warnings[0].0, "columns.b");
    assert!(
        warnings[0]
            .1
            .contains("up to line 4, where `N/A` made it text"),
        "{warnings:?}"
    );
    let f = rule_faults(
        &store,
        serde_json::json!({"feature": "b", "op": "ge", "value": 3}),
    );
    assert_eq!(
        f,
        [
            "offers[0].eligibility.op: `ge` compares numbers, and `b` holds strings (the \
          snapshot's line 4 made it text: `N/A`) (use eq, ne, in, not_in or is_missing)"
        ]
    );
    // A column that is text from its first value was never numbers: nothing to say.
    let text = FeatureStore::from_csv_bytes(b"customer_id,s\nC1,x\nC2,1\n", "t.csv").unwrap();
    assert!(text.column_warnings().is_empty());
}

#[test]
fn operator_and_kind_mismatches_are_faults_with_paths() {
    let store =
        FeatureStore::from_csv_bytes(b"customer_id,segment,arpu\nC1,gold,1\n", "s.csv").unwrap();
    let faults = |rule: serde_json::Value| rule_faults(&store, rule);
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
    let m = one_offer(
        &store,
        serde_json::json!({"value": value, "scorer": scorer}),
    )?;
    Ok((m, store))
}

const VALUES_CSV: &str = "customer_id,segment,margin_12m,arpu\nG1,gold,120,10\nP1,platinum,,20\nB1,bronze,40,30\nM1,,5,40\n";

#[test]
fn logistic_categories_add_the_weight_of_the_customers_value() {
    let scorer = serde_json::json!({"kind": "logistic", "intercept": -1, "weights": {"arpu": 0.01},
        "categories": {"segment": {"gold": 0.4, "platinum": 0.9, "diamond": 2}}});
    let (lm, s) = scored_offer(VALUES_CSV, scorer, serde_json::json!(1)).unwrap();
    let o = &lm.compiled.offers[0];
    let p = |id: &str| o.scorer.predict(s.exact_row(id).unwrap());
    let sig = crate::engine::posterior::sigmoid;
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
    // A slip or another letter case is said.
    let store = FeatureStore::from_csv_bytes(VALUES_CSV.as_bytes(), "v.csv").unwrap();
    let f = rule_faults(
        &store,
        serde_json::json!({"feature": "SEGMENT", "op": "is_missing"}),
    );
    assert_eq!(
        f,
        [
            "offers[0].eligibility.feature: unknown feature `SEGMENT`: the snapshot has \
          `segment` (names match exactly, letter case included)"
        ]
    );
    let f = rule_faults(
        &store,
        serde_json::json!({"feature": "margn_12m", "op": "is_missing"}),
    );
    assert_eq!(
        f,
        ["offers[0].eligibility.feature: unknown feature `margn_12m`: did you mean `margin_12m`?"]
    );
    let f = faults(VALUES_CSV, serde_json::json!({"feature": "arpu"}));
    assert_eq!(f, ["offers[0].value.default: missing field"]);
    let f = faults(
        VALUES_CSV,
        serde_json::json!({"feature": "arpu", "default": -1}),
    );
    assert!(f[0].starts_with("offers[0].value.default:"), "{f:?}");
}

/// A CSV column with no value in any row says nothing of numbers or text: rules may read it
/// either way, and hold for each customer as they do on the same column declared text.
#[test]
fn a_column_with_no_value_reads_as_missing_as_numbers_or_as_text() {
    let rows = "C1,,1\nC2,,2\n";
    let inferred = format!("customer_id,seg,arpu\n{rows}");
    let text_rules = serde_json::json!([
        {"feature": "seg", "op": "eq", "value": "gold"},
        {"feature": "seg", "op": "in", "values": ["gold", "silver"]},
        {"feature": "seg", "op": "not_in", "values": ["gold"]},
        {"feature": "seg", "op": "ne", "value": "gold"},
        {"feature": "seg", "op": "is_missing"}
    ]);
    let (a, sa) = with_rules(&inferred, text_rules.clone());
    let (b, sb) = with_rules(&format!("customer_id,seg:str,arpu\n{rows}"), text_rules);
    assert!(sa.dictionary(0).is_none() && sb.dictionary(0).is_some());
    let holds = |m: &CompiledModel, s: &FeatureStore, id: &str| -> Vec<bool> {
        explained(m, s, id).iter().map(Option::is_none).collect()
    };
    for id in ["C1", "C2"] {
        assert_eq!(holds(&a.compiled, &sa, id), holds(&b.compiled, &sb, id));
        // A missing value passes no test of a value, `ne` and `not_in` included.
        assert_eq!(
            holds(&a.compiled, &sa, id),
            [false, false, false, false, true]
        );
    }
    let (n, sn) = with_rules(
        &inferred,
        serde_json::json!([
            {"feature": "seg", "op": "ge", "value": 3},
            {"feature": "seg", "op": "is_missing"}
        ]),
    );
    assert_eq!(holds(&n.compiled, &sn, "C1"), [false, true]);
    assert_eq!(
        sa.column_warnings(),
        [(
            "columns.seg".to_owned(),
            crate::features::NO_VALUE.to_owned()
        )]
    );
    // The model says so too, once, as its upload's answer shows it.
    let said: Vec<String> = n.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        said,
        [
            "feature `seg`: no customer has a value in the snapshot (every field empty), so \
          every rule, scorer and value reading it reads it as missing"
        ]
    );
    // A column with one value anywhere holds numbers, as before.
    let one = FeatureStore::from_csv_bytes(b"customer_id,seg\nC1,\nC2,4\n", "o.csv").unwrap();
    assert!(!one.holds_no_value(0) && one.column_warnings().is_empty());
}

/// The categorical fixtures' tree models over their inputs with `plan` emptied: the column
/// read as numbers scores every row bit for bit as the same column declared text does.
#[test]
fn tree_models_score_a_column_with_no_value_as_missing() {
    use crate::model::bind::Column;
    use crate::model::{lightgbm, xgboost};
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/categorical");
    let text = std::fs::read_to_string(dir.join("inputs.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let plan = header.iter().position(|h| *h == "plan").unwrap();
    let body: String = lines
        .map(|l| {
            let mut f: Vec<&str> = l.split(',').collect();
            f[plan] = "";
            f.join(",") + "\n"
        })
        .collect();
    let store = |plan_as: &str| {
        let mut h = header.clone();
        h[plan] = plan_as;
        let csv = format!("{}\n{body}", h.join(","));
        FeatureStore::from_csv_bytes(csv.as_bytes(), "inputs.csv").unwrap()
    };
    let (inferred, declared) = (store("plan"), store("plan:str"));
    let c = inferred.column("plan").unwrap();
    assert!(inferred.dictionary(c).is_none() && inferred.holds_no_value(c));
    let load = |file: &str, s: &FeatureStore| {
        let resolve = |name: &str| Column::in_store(s, name);
        let path = dir.join(file);
        if file.ends_with(".json") {
            let bytes = std::fs::read(&path).unwrap();
            xgboost::parse_xgboost_model(&bytes, &xgboost::Spec::default(), &resolve)
                .unwrap_or_else(|e| panic!("{file}: {e}"))
                .0
        } else {
            let text = std::fs::read_to_string(&path).unwrap();
            lightgbm::parse_lightgbm_model(&text, None, &resolve)
                .unwrap_or_else(|e| panic!("{file}: {e}"))
                .0
        }
    };
    for file in [
        "xgb_binary.json",
        "xgb_softprob.json",
        "xgb_softmax.json",
        "lgb_binary.txt",
        "lgb_multiclass.txt",
        "lgb_ova.txt",
    ] {
        let (a, b) = (load(file, &inferred), load(file, &declared));
        let (mut x, mut y) = (vec![0.0; a.n_classes()], vec![0.0; b.n_classes()]);
        for r in 0..inferred.len() {
            a.predict_classes(inferred.exact_row_at(r).unwrap(), &mut x);
            b.predict_classes(declared.exact_row_at(r).unwrap(), &mut y);
            let bits = |v: &[f64]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&x), bits(&y), "{file} row {r}");
        }
    }
}
