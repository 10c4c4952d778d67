//! Rules on decimals: a rule compares the number the snapshot was given, not the f32 it keeps.

use super::strings::{explained, with_rules};

/// Every comparison of `x` against the decimal `at`, and the same against the f32 neighbours
/// of `at` (which a value rounding to the same f32 must not be mistaken for).
fn comparisons(at: &str) -> serde_json::Value {
    let v: f64 = at.parse().unwrap();
    serde_json::json!([
        {"feature": "x", "op": "le", "value": v},
        {"feature": "x", "op": "eq", "value": v},
        {"feature": "x", "op": "ge", "value": v},
        {"feature": "x", "op": "in", "values": [v]},
        {"feature": "x", "op": "between", "min": v, "max": v},
        {"feature": "x", "op": "lt", "value": v},
        {"feature": "x", "op": "gt", "value": v},
        {"feature": "x", "op": "ne", "value": v},
        {"feature": "x", "op": "not_in", "values": [v]},
    ])
}

#[test]
fn a_rule_on_the_value_a_customer_has_holds_as_written() {
    // None of these is an f32: each rounds to an f32 on one side or the other of itself.
    for at in [
        "34.56",
        "0.26",
        "18.1",
        "0.1",
        "2.675",
        "0.7",
        "16777217",
        "123456789.123",
    ] {
        let csv = format!("customer_id,x\nC1,{at}\n");
        let (m, s) = with_rules(&csv, comparisons(at));
        let verdicts = explained(&m.compiled, &s, "C1");
        let holds: Vec<bool> = verdicts.iter().map(Option::is_none).collect();
        assert_eq!(
            holds,
            [true, true, true, true, true, false, false, false, false],
            "x = {at}: {verdicts:?}"
        );
    }
}

#[test]
fn a_value_rounding_to_the_bounds_f32_is_still_on_its_own_side() {
    // 34.5600001 and 34.56 share their f32; the rule tells them apart.
    let csv = "customer_id,x\nABOVE,34.5600001\nBELOW,34.5599999\n";
    let rules = serde_json::json!([
        {"feature": "x", "op": "le", "value": 34.56},
        {"feature": "x", "op": "eq", "value": 34.56},
        {"feature": "x", "op": "gt", "value": 34.56},
        {"all": [{"feature": "x", "op": "ge", "value": 34.0},
                 {"feature": "x", "op": "lt", "value": 34.56}]},
    ]);
    let (m, s) = with_rules(csv, rules);
    assert_eq!(
        (34.5600001_f64 as f32, 34.5599999_f64 as f32),
        (34.56_f64 as f32, 34.56_f64 as f32),
        "the test needs values that share the bound's f32"
    );
    let holds = |id: &str| -> Vec<bool> {
        let v = explained(&m.compiled, &s, id);
        v.iter().map(Option::is_none).collect()
    };
    assert_eq!(holds("ABOVE"), [false, false, true, false]);
    assert_eq!(holds("BELOW"), [true, false, false, true]);
    // Explain names the value as given, and the bound.
    let why = explained(&m.compiled, &s, "ABOVE");
    assert_eq!(
        why[0].as_deref(),
        Some("offers[0].eligibility: x is 34.5600001, the rule needs <= 34.56")
    );
}

#[test]
fn explain_shows_very_large_and_very_small_values_in_exponent_form() {
    let csv = "customer_id,x\nBIG,3.4e38\nTINY,1e-40\nPLAIN,1234.5\n";
    let rules = serde_json::json!([{"feature": "x", "op": "lt", "value": 0}]);
    let (m, s) = with_rules(csv, rules);
    for (id, shown) in [("BIG", "3.4e38"), ("TINY", "1e-40"), ("PLAIN", "1234.5")] {
        let why = explained(&m.compiled, &s, id);
        assert_eq!(
            why[0].as_deref(),
            Some(format!("offers[0].eligibility: x is {shown}, the rule needs < 0").as_str()),
            "{id}"
        );
    }
}
