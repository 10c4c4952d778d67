//! `nextbest model check --features`: a rule value the snapshot's text column never holds is a
//! warning with its path (the model still checks out), and a number test on a text column is
//! a fault that fails the command.

use std::process::Command;

fn check(model: &serde_json::Value, tag: &str) -> (bool, String) {
    let dir = std::env::temp_dir().join(format!("nb-check-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("f.csv"),
        "customer_id,segment,arpu\nC1,gold,10\nC2,bronze,20\nC3,,30\n",
    )
    .unwrap();
    std::fs::write(dir.join("model.json"), serde_json::to_vec(model).unwrap()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_nextbest"))
        .args(["model", "check"])
        .arg(dir.join("model.json"))
        .arg("--features")
        .arg(dir.join("f.csv"))
        .env("NEXTBEST_LOG", "error")
        .output()
        .expect("nextbest runs");
    std::fs::remove_dir_all(&dir).ok();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn model(rule: serde_json::Value) -> serde_json::Value {
    serde_json::json!({"name": "m", "version": "1",
        "placements": {"home": {"channels": ["web"]}},
        "offers": [{"id": "o", "category": "sales", "channels": ["web"], "placements": ["home"],
            "value": 1, "eligibility": rule, "scorer": {"kind": "constant", "propensity": 0.5},
            "content": {"web": {"title": "t", "body": "b", "image_url": "https://c.test/x.jpg",
                "cta_url": "https://s.test/x"}}}]})
}

#[test]
fn a_typo_in_a_text_rule_is_warned_about_with_its_path() {
    let rule = serde_json::json!({"feature": "segment", "op": "in", "values": ["gold", "platnum"]});
    let (ok, text) = check(&model(rule), "typo");
    assert!(ok, "{text}");
    assert!(
        text.contains(
            "warning: offers[0].eligibility.values[1]: \"platnum\" is not a value of `segment`"
        ),
        "{text}"
    );
    assert!(text.contains("ok: m version 1"), "{text}");
    let (ok, text) = check(
        &model(serde_json::json!({"feature": "segment", "op": "eq", "value": "gold"})),
        "clean",
    );
    assert!(ok && !text.contains("warning"), "{text}");
}

#[test]
fn a_number_test_on_a_text_column_fails_the_check() {
    let rule = serde_json::json!({"feature": "segment", "op": "ge", "value": 2});
    let (ok, text) = check(&model(rule), "kind");
    assert!(!ok, "{text}");
    assert!(
        text.contains(
            "offers[0].eligibility.op: `ge` compares numbers, and `segment` holds strings"
        ),
        "{text}"
    );
}
