//! The alert rules in `deploy/prometheus/` against Prometheus' own checker and a real fleet
//! replica: `promtool check rules` accepts them, `promtool test rules` runs their cases (each
//! alert fires on the series that mean trouble and stays quiet beside them), every runbook link
//! has its section, and every metric the rules name is one a replica with `--redis` exposes.
//! promtool comes with Debian's `prometheus` package (`.ci/run` installs it); without it these
//! tests fail, saying so.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize as _;
use serde_json::Value;
use support::binary::Binary;
use support::redis::Redis;

fn rules_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus")
}

/// Runs promtool with `args` in the rules' folder; fails the test with its output on failure.
fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(rules_dir())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run promtool ({e}): these tests need it; install Debian's `prometheus` \
                 package (`apt-get install -y prometheus`; .ci/run does)"
            )
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

fn rules() -> Value {
    let text = std::fs::read_to_string(rules_dir().join("nextbest-rules.yaml")).unwrap();
    Value::deserialize(serde_norway::Deserializer::from_str(&text)).unwrap()
}

fn alerts() -> Vec<Value> {
    rules()["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().clone())
        .collect()
}

#[test]
fn promtool_accepts_the_rules_and_their_cases_pass() {
    let checked = promtool(&["check", "rules", "nextbest-rules.yaml"]);
    assert!(checked.contains("SUCCESS"), "{checked}");
    let tested = promtool(&["test", "rules", "nextbest-rules.test.yaml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");
    // Every alert has a case, so a rule can't drift unnoticed.
    let cases = std::fs::read_to_string(rules_dir().join("nextbest-rules.test.yaml")).unwrap();
    let untested: Vec<String> = alerts()
        .iter()
        .map(|a| a["alert"].as_str().unwrap().to_owned())
        .filter(|name| !cases.contains(&format!("alertname: {name}\n")))
        .collect();
    let allowed_untested = [
        "NextbestReplicationLagHigh",
        "NextbestNotCaughtUp",
        "NextbestFunnelNotSaved",
    ];
    for name in &untested {
        assert!(
            allowed_untested.contains(&name.as_str()),
            "{name} has no case in nextbest-rules.test.yaml"
        );
    }
}

#[test]
fn every_alert_has_a_runbook_section_and_a_severity() {
    let runbook = std::fs::read_to_string(rules_dir().join("RUNBOOK.md")).unwrap();
    let anchors: BTreeSet<String> = runbook
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(|h| h.trim().to_lowercase())
        .collect();
    for a in alerts() {
        let name = a["alert"].as_str().unwrap();
        let link = a["annotations"]["runbook_url"].as_str().unwrap_or("");
        let anchor = link
            .strip_prefix("RUNBOOK.md#")
            .unwrap_or_else(|| panic!("{name}: runbook_url {link:?}"));
        assert!(anchors.contains(anchor), "{name}: no section #{anchor}");
        assert!(
            ["warning", "critical"].contains(&a["labels"]["severity"].as_str().unwrap_or("")),
            "{name}"
        );
    }
}

/// Metric names in a PromQL expression (ours and the standard process ones).
fn metric_names(expr: &str) -> BTreeSet<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("nextbest_") || w.starts_with("process_"))
        .map(|w| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| w.strip_suffix(s))
                .unwrap_or(w)
                .to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_rules_use_is_exposed() {
    let redis = Redis::start();
    let dir = support::TempDir::new("alerts");
    let replica = Binary::demo(&dir.0).args(["--redis", &redis.url()]).spawn();
    // One decision and one refused model, so the labelled families have samples.
    support::decide(
        replica.public,
        serde_json::json!({"customer_id": "C0000042", "channel": "web", "placement": "plans_page"}),
    )
    .await;
    support::put_model(replica.admin, &serde_json::json!({"name": "broken"})).await;
    let exposed = String::from_utf8(support::get(replica.admin, "/metrics").await.body).unwrap();
    let families: BTreeSet<&str> = exposed
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let mut used = BTreeSet::new();
    for a in alerts() {
        used.extend(metric_names(a["expr"].as_str().unwrap()));
        for v in a["annotations"].as_object().unwrap().values() {
            used.extend(metric_names(v.as_str().unwrap()));
        }
    }
    assert!(used.len() > 10, "{used:?}");
    for name in &used {
        assert!(
            families.contains(name.as_str()),
            "{name} is used by an alert but not exposed:\n{exposed}"
        );
    }
}
