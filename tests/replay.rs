//! The decision log and `nextbest replay` with the real binary: a log recorded by the demo
//! replays exactly with the demo model, changes nothing with it as the candidate, and with a
//! candidate that doubles one offer's value shows the shift where that offer competes; a log
//! that does not reproduce is an error.

mod support;

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};
use support::binary::Binary;
use support::*;

const PLACES: [(&str, &str); 4] = [
    ("web", "home_hero"),
    ("web", "plans_page"),
    ("web", "checkout"),
    ("app", "app_home"),
];

/// Records a decision log with the demo: every decision sampled, some customers with history.
async fn record(data: &Path, log: &Path) -> usize {
    let server = Binary::demo(data)
        .arg("--decision-log")
        .arg(log)
        .args(["--decision-log-sample", "1", "--drain-delay-ms", "0"])
        .spawn();
    // History: a few dismisses, so contact policies hold offers back in some decisions.
    let mut events = Vec::new();
    for i in (1..=40).step_by(4) {
        let a = decide_demo_customer(server.public, i).await.2;
        if let Some(offer) = a["offers"][0]["offer_id"].as_str() {
            let channel = if i % 2 == 0 { "web" } else { "app" };
            events.push(json!({"type": "dismiss", "customer_id": format!("C{i:07}"),
                               "offer_id": offer, "channel": channel}));
        }
    }
    post_events(server.public, json!(events)).await;
    let mut n = 10;
    for i in 1..=120 {
        let (channel, placement) = PLACES[i % PLACES.len()];
        let mut ask =
            json!({"customer_id": format!("C{i:07}"), "channel": channel, "placement": placement});
        // Decisions without a snapshot row among them: a customer the snapshot lacks, and an
        // anonymous visitor. Each later decision still replays with its own row.
        if i % 11 == 0 {
            ask["customer_id"] = json!(format!("X{i:07}"));
        }
        if i % 17 == 0 {
            ask =
                json!({"visitor_id": format!("v{i}"), "channel": "web", "placement": "home_hero"});
        }
        if placement == "checkout" {
            ask["context"] = json!({"cart_value": 50 * (i % 7), "cart_type": if i % 2 == 0 { "device" } else { "plan" }});
        }
        decide(server.public, ask).await;
        n += 1;
    }
    server.stop();
    n
}

/// Runs `nextbest replay --json`; exit success and the report (or stderr).
fn replay(log: &Path, candidate: &Path) -> (bool, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_nextbest"))
        .args(["replay", "--json", "--log"])
        .arg(log)
        .arg("--candidate")
        .arg(candidate)
        .env("NEXTBEST_LOG_FORMAT", "text")
        .output()
        .expect("the binary runs");
    let report = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (
        out.status.success(),
        report,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The offer of a model document with this id.
fn offer_of<'a>(doc: &'a mut Value, id: &str) -> &'a mut Value {
    doc["offers"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|o| o["id"] == id)
        .unwrap_or_else(|| panic!("no offer {id}"))
}

fn placement<'a>(report: &'a Value, channel: &str, placement: &str) -> &'a Value {
    report["placements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["channel"] == channel && p["placement"] == placement)
        .unwrap_or_else(|| panic!("no {channel}/{placement} in {report}"))
}

fn mix(report: &Value, offer: &str) -> (u64, u64) {
    report["offer_mix"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["offer_id"] == offer)
        .map_or((0, 0), |m| {
            (m["before"].as_u64().unwrap(), m["after"].as_u64().unwrap())
        })
}

#[tokio::test]
async fn a_demo_log_replays_exactly_and_shows_what_a_candidate_changes() {
    let dir = TempDir::new("replay");
    let (data, log) = (dir.0.join("data"), dir.0.join("decisions"));
    let decided = record(&data, &log).await;
    // A visitor's decision keeps the visitor it was made for, so it joins the visitor's events.
    let logged: String = std::fs::read_dir(&log)
        .unwrap()
        .map(|f| std::fs::read_to_string(f.unwrap().path()).unwrap_or_default())
        .collect();
    let visitor = logged
        .lines()
        .find(|l| l.contains(r#""visitor_id":"v17""#))
        .unwrap_or_else(|| panic!("no decision for visitor v17 in the log"));
    assert!(visitor.contains(r#""customer_id":"""#), "{visitor}");

    // The demo model as its own candidate: every decision reproduced, nothing changed.
    let (ok, same, stderr) = replay(&log, &demo_dir());
    assert!(ok, "{stderr}\n{same}");
    let n = same["decisions"].as_u64().unwrap();
    assert!(
        n as usize >= decided - 5 && n as usize <= decided,
        "{n} of {decided} logged"
    );
    assert_eq!(same["reproduced"], n);
    for (channel, place) in PLACES {
        let p = placement(&same, channel, place);
        assert!(p["decisions"].as_u64().unwrap() >= 20, "{p}");
        assert_eq!(p["changed"], 0, "{p}");
    }
    let ev = &same["expected_value_per_decision"];
    assert_eq!(ev["before"], ev["after"]);
    for m in same["offer_mix"].as_array().unwrap() {
        assert_eq!(m["before"], m["after"], "{m}");
    }
    assert!(same["candidate_latency_us"]["p50"].as_f64().unwrap() > 0.0);

    // A candidate whose streaming_bundle is worth twice as much: it wins more often where it
    // competes (home_hero, plans_page, app_home), and checkout, where it is not offered, does
    // not move.
    let candidate = dir.0.join("candidate");
    std::fs::create_dir_all(&candidate).unwrap();
    for entry in std::fs::read_dir(demo_dir()).unwrap() {
        let p = entry.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, candidate.join(p.file_name().unwrap())).unwrap();
        }
    }
    let mut doc: Value =
        serde_json::from_slice(&std::fs::read(candidate.join("model.json")).unwrap()).unwrap();
    doc["version"] = json!("streaming-x2");
    let offer = offer_of(&mut doc, "streaming_bundle");
    offer["value"] = json!(offer["value"].as_f64().unwrap() * 2.0);
    let write = |doc: &Value| {
        std::fs::write(
            candidate.join("model.json"),
            serde_json::to_vec(doc).unwrap(),
        )
        .unwrap()
    };
    write(&doc);

    let (ok, shifted, stderr) = replay(&log, &candidate);
    assert!(ok, "{stderr}\n{shifted}");
    assert_eq!(shifted["reproduced"], n);
    assert_eq!(shifted["candidate"], "demo streaming-x2");
    let (before, after) = mix(&shifted, "streaming_bundle");
    assert!(
        after > before,
        "streaming_bundle served {before} -> {after}"
    );
    let changed: u64 = ["home_hero", "plans_page", "app_home"]
        .iter()
        .map(|p| {
            let ch = if *p == "app_home" { "app" } else { "web" };
            placement(&shifted, ch, p)["changed"].as_u64().unwrap()
        })
        .sum();
    assert!(changed > 0, "{shifted}");
    assert_eq!(placement(&shifted, "web", "checkout")["changed"], 0);
    let ev = &shifted["expected_value_per_decision"];
    assert!(ev["after"].as_f64() > ev["before"].as_f64(), "{ev}");
    assert_eq!(
        shifted["warnings"],
        json!([]),
        "ebill_switch learns as logged"
    );

    // The same candidate whose adaptive ebill_switch learns from one more feature: the log
    // holds what the logged offer learnt from its own list only, which replay says.
    offer_of(&mut doc, "ebill_switch")["scorer"]["context"]
        .as_array_mut()
        .unwrap()
        .push(json!("region"));
    write(&doc);
    let (ok, widened, stderr) = replay(&log, &candidate);
    assert!(ok, "{stderr}\n{widened}");
    let warned = widened["warnings"].to_string();
    assert!(
        warned.contains(&format!(
            "offer `ebill_switch`: in {n} of {n} decisions the logging model did not learn it as \
             the candidate does"
        )),
        "{widened}"
    );

    // A log that does not reproduce (a score changed by one bit) is an error.
    let file = std::fs::read_dir(&log)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    // Contact policies held offers back in some logged decisions: replay reproduced those too.
    assert!(
        text.contains("\"held\":[\""),
        "no decision with held offers"
    );
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let at = lines
        .iter()
        .position(|l| l.contains("\"type\":\"decision\"") && l.contains("\"bits\":["))
        .unwrap();
    let mut rec: Value = serde_json::from_str(&lines[at]).unwrap();
    let bits = rec["answer"]["offers"][0]["bits"][1].as_u64().unwrap();
    rec["answer"]["offers"][0]["bits"][1] = json!(bits ^ 1);
    lines[at] = rec.to_string();
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let (ok, report, stderr) = replay(&log, &demo_dir());
    assert!(!ok, "a mismatch must fail: {report}");
    assert_eq!(report["reproduced"].as_u64(), Some(n - 1));
    assert!(stderr.contains("did not reproduce"), "{stderr}");
}

#[tokio::test]
async fn a_log_whose_scorer_files_changed_since_is_refused_saying_so() {
    let dir = TempDir::new("replay-retrained");
    let models = TempModels::new("replay-retrained-models");
    let log = dir.0.join("decisions");
    let server = Binary::with_models(&models.dir, &dir.0.join("data"))
        .arg("--decision-log")
        .arg(&log)
        .args(["--decision-log-sample", "1", "--drain-delay-ms", "0"])
        .spawn();
    for i in 1..=20 {
        decide_demo_customer(server.public, i).await;
    }
    server.stop();
    // Replayed from another folder, with the files that made it: exact.
    let (ok, report, stderr) = replay(&log, &models.dir);
    assert!(ok, "{stderr}\n{report}");
    assert_eq!(report["reproduced"], report["decisions"], "{report}");
    // A retrained tree file: refused, naming why, not thousands of mismatches.
    let tree = models.dir.join("streaming_bundle.lgb.txt");
    let mut bytes = std::fs::read(&tree).unwrap();
    bytes.extend_from_slice(b"\n");
    std::fs::write(&tree, bytes).unwrap();
    let (ok, _, stderr) = replay(&log, &models.dir);
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains("changed since the log was written"),
        "{stderr}"
    );
}
