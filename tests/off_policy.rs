//! The off-policy simulation: a logging policy that explores 10 % of its decisions, customers
//! whose true conversion rates are known, and two candidates whose true values differ. The
//! estimates are the very functions `nextbest replay --estimate` runs on each logged decision
//! (`Sample::of`) and per placement (`estimate`), fed by the engine's own decisions with
//! explain. Over 50 seeded runs, the doubly robust 95 % interval covers each candidate's true
//! value in at least 90 % of runs, and whenever the true difference of the two candidates
//! exceeds the two half-widths, the estimates rank them right.
//!
//! A second test drives the real binary: a server with a decision log and exploration, events
//! with decision ids, then `replay --estimate --json` on its log and data folder.

mod support;

use nextbest::decision_log::estimate::{estimate, Sample};
use nextbest::engine::posterior::{mix, Learnt, Posteriors};
use nextbest::engine::{self, NoContacts, Request, Unbounded};
use nextbest::features::FeatureStore;
use nextbest::model::{from_bytes, Limits, LoadedModel};
use serde_json::{json, Value};
use support::binary::Binary;
use support::TempDir;

const CUSTOMERS: usize = 2_000;
const DECISIONS: usize = 40_000;
const RUNS: u64 = 50;
const NOW: i64 = 1_795_000_000_000;

/// Offer values: `a`, `b`, `c`.
const VALUES: [f64; 3] = [10.0, 12.0, 8.0];

/// True conversion rates: prepaid customers take `a` (6 % against 1 %), postpaid ones `b` (5 %
/// against 1 %), and `c` converts 3 % of everybody.
fn truth(prepaid: bool, offer: usize) -> f64 {
    match (offer, prepaid) {
        (0, true) => 0.06,
        (0, false) => 0.01,
        (1, true) => 0.01,
        (1, false) => 0.05,
        _ => 0.03,
    }
}

fn csv() -> String {
    let mut s = String::from("customer_id,is_prepaid,tenure\n");
    for i in 0..CUSTOMERS {
        let prepaid = mix(i as u64 ^ 0xc0ffee) % 2;
        let tenure = mix(i as u64) % 120;
        s.push_str(&format!("C{i:05},{prepaid},{tenure}\n"));
    }
    s
}

/// A model of offers `a`, `b`, `c`: per offer, intercept and `is_prepaid` weight.
fn model(name: &str, scorers: [(f64, f64); 3], exploration: f64) -> Value {
    let content = json!({"web": {"title": "t", "body": "b", "image_url": "https://cdn.test/i.jpg", "cta_url": "https://shop.test/x"}});
    let offers: Vec<Value> = ["a", "b", "c"]
        .iter()
        .zip(scorers)
        .zip(VALUES)
        .map(|((id, (intercept, w)), value)| {
            json!({"id": id, "category": "sales", "channels": ["web"], "placements": ["home"],
                   "value": value, "content": content,
                   "scorer": {"kind": "logistic", "intercept": intercept, "weights": {"is_prepaid": w}}})
        })
        .collect();
    let mut placement = json!({"channels": ["web"], "limit": 1});
    if exploration > 0.0 {
        placement["exploration"] = json!({"share": exploration});
    }
    json!({"name": name, "version": "1", "placements": {"home": placement}, "offers": offers})
}

fn logit(p: f64) -> f64 {
    (p / (1.0 - p)).ln()
}

fn compile(doc: &Value, store: &FeatureStore) -> LoadedModel {
    from_bytes(
        serde_json::to_vec(doc).unwrap(),
        None,
        "test".into(),
        store,
        &Limits::default(),
    )
    .unwrap()
}

fn decide<'m>(
    m: &'m LoadedModel,
    store: &FeatureStore,
    customer: &str,
    posteriors: &Posteriors,
    seed: u64,
) -> engine::Decision<'m> {
    let req = Request {
        customer_id: Some(customer),
        channel: "web",
        placement: "home",
        explain: true,
        learnt: Some(Learnt {
            posteriors,
            seed,
            tag: 0,
        }),
        ..Default::default()
    };
    engine::decide(&m.compiled, store, &req, &NoContacts, &Unbounded, NOW)
}

fn uniform(state: u64) -> f64 {
    (mix(state) >> 11) as f64 / (1u64 << 53) as f64
}

#[test]
fn doubly_robust_intervals_cover_the_truth_and_rank_the_candidates() {
    let store = FeatureStore::from_csv_bytes(csv().as_bytes(), "sim.csv").unwrap();
    let prepaid: Vec<bool> = (0..CUSTOMERS)
        .map(|i| {
            let row = store.row(&format!("C{i:05}")).unwrap();
            row[0] == 1.0
        })
        .collect();
    // The logging policy believes b is best for everybody (score 0.36 against a's 0.35).
    let logging = compile(
        &model(
            "logging",
            [(logit(0.035), 0.0), (logit(0.03), 0.0), (logit(0.03), 0.0)],
            0.1,
        ),
        &store,
    );
    // Candidate 1 personalises (a for prepaid, b for postpaid), with rates a little off.
    let personal = compile(
        &model(
            "personal",
            [
                (logit(0.012), logit(0.05) - logit(0.012)),
                (logit(0.045), logit(0.012) - logit(0.045)),
                (logit(0.028), 0.0),
            ],
            0.0,
        ),
        &store,
    );
    // Candidate 2 shows c to everybody.
    let flat = compile(
        &model(
            "flat",
            [(logit(0.01), 0.0), (logit(0.01), 0.0), (logit(0.05), 0.0)],
            0.0,
        ),
        &store,
    );
    let empty = Posteriors::default();
    let candidates = [&personal, &flat];
    // True conversions and value per 1,000 decisions of each candidate over the customers.
    let true_value: Vec<(f64, f64)> = candidates
        .iter()
        .map(|m| {
            let (mut c, mut v) = (0.0, 0.0);
            for (i, &p) in prepaid.iter().enumerate() {
                let d = decide(m, &store, &format!("C{i:05}"), &empty, 1);
                for (o, verdict) in d.explain.iter().enumerate() {
                    if let engine::Verdict::Scored { shown, .. } = verdict {
                        c += shown * truth(p, o);
                        v += shown * truth(p, o) * VALUES[o];
                    }
                }
            }
            (1000.0 * c / CUSTOMERS as f64, 1000.0 * v / CUSTOMERS as f64)
        })
        .collect();
    assert!(
        (true_value[0].0 - 55.0).abs() < 3.0 && (true_value[1].0 - 30.0).abs() < 1e-9,
        "{true_value:?}"
    );

    let mut covered = [0usize; 2];
    let mut covered_value = [0usize; 2];
    let (mut comparable, mut ranked_right) = (0, 0);
    let mut explored = 0;
    for run in 0..RUNS {
        let mut samples: [Vec<Sample>; 2] = [Vec::new(), Vec::new()];
        for n in 0..DECISIONS {
            let state = mix(run << 32 | n as u64);
            let i = (mix(state ^ 1) % CUSTOMERS as u64) as usize;
            let customer = format!("C{i:05}");
            let seed = mix(state ^ 2);
            let logged = decide(&logging, &store, &customer, &empty, seed);
            explored += usize::from(logged.explored);
            let shown = logged.ranked[0].offer as usize;
            let converted = uniform(state ^ 3) < truth(prepaid[i], shown);
            let row = store.exact_row(&customer);
            for (k, cand) in candidates.iter().enumerate() {
                let next = decide(cand, &store, &customer, &empty, seed);
                samples[k].push(Sample::of(
                    &logging.compiled,
                    &logged,
                    &[],
                    &cand.compiled,
                    &next,
                    row,
                    |id| converted && id == &*logging.compiled.offers[shown].id,
                ));
            }
        }
        let est: Vec<_> = samples.iter().map(|s| estimate("web", "home", s)).collect();
        for k in 0..2 {
            let dr = &est[k].dr;
            let truth = true_value[k];
            covered[k] += usize::from(dr.ci95[0] <= truth.0 && truth.0 <= dr.ci95[1]);
            covered_value[k] +=
                usize::from(dr.value_ci95[0] <= truth.1 && truth.1 <= dr.value_ci95[1]);
            assert!(est[k].changed > 0 && est[k].randomised == DECISIONS);
            assert!(est[k].effective_sample_size > 100.0, "{:?}", est[k]);
        }
        let half = |k: usize| (est[k].dr.ci95[1] - est[k].dr.ci95[0]) / 2.0;
        let true_diff = true_value[0].0 - true_value[1].0;
        if true_diff.abs() > half(0) + half(1) {
            comparable += 1;
            let est_diff = est[0].dr.conversions_per_1000 - est[1].dr.conversions_per_1000;
            ranked_right += usize::from(est_diff.signum() == true_diff.signum());
        }
    }
    let share = explored as f64 / (RUNS as usize * DECISIONS) as f64;
    assert!((share - 0.1).abs() < 0.005, "explored {share}");
    for k in 0..2 {
        assert!(
            covered[k] * 10 >= RUNS as usize * 9,
            "candidate {k}: DR covered the truth in {} of {RUNS} runs",
            covered[k]
        );
        assert!(
            covered_value[k] * 10 >= RUNS as usize * 9,
            "candidate {k}: DR's value interval covered the truth in {} of {RUNS} runs",
            covered_value[k]
        );
    }
    assert!(comparable > 0, "the candidates were never told apart");
    assert_eq!(
        ranked_right, comparable,
        "ranked right in {ranked_right} of {comparable} runs whose true difference exceeds two half-widths"
    );
    eprintln!(
        "true values {true_value:?}; DR coverage: personal {}/{RUNS}, flat {}/{RUNS} (value {}/{RUNS}, {}/{RUNS}); told apart in {comparable} runs, ranked right in {ranked_right}",
        covered[0], covered[1], covered_value[0], covered_value[1]
    );
}

/// A models folder: the model and a snapshot of the first 200 simulated customers.
fn models_folder(dir: &std::path::Path, doc: &Value) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("model.json"), serde_json::to_vec(doc).unwrap()).unwrap();
    let csv: String = csv().lines().take(201).map(|l| format!("{l}\n")).collect();
    std::fs::write(dir.join("features.csv"), csv).unwrap();
}

/// Serves `models` with every decision logged, decides once with explain and 300 times
/// without, posts an impression for every answer and a conversion for every 7th; returns the conversions posted and the
/// server's `/admin/stats` decision-log counts.
async fn record(
    models: &std::path::Path,
    data: &std::path::Path,
    log: &std::path::Path,
) -> (usize, Value) {
    let server = Binary::with_models(models, data)
        .arg("--decision-log")
        .arg(log)
        .args(["--decision-log-sample", "1", "--drain-delay-ms", "0"])
        .spawn();
    // Explain gives every scored offer its probability of being shown; one is shown.
    let a = support::decide(
        server.public,
        json!({"customer_id": "C00001", "channel": "web", "placement": "home", "explain": true}),
    )
    .await;
    let shown: Vec<f64> = a["explain"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            v["shown_probability"]
                .as_f64()
                .unwrap_or_else(|| panic!("{a}"))
        })
        .collect();
    assert_eq!(shown.len(), 3, "{a}");
    assert!((shown.iter().sum::<f64>() - 1.0).abs() < 1e-9, "{a}");
    let mut events = Vec::new();
    let mut conversions = 0;
    for n in 0..300 {
        let customer = format!("C{:05}", n % 200);
        let a = support::decide(
            server.public,
            json!({"customer_id": customer, "channel": "web", "placement": "home"}),
        )
        .await;
        let offer = a["offers"][0]["offer_id"].as_str().unwrap().to_owned();
        let id = a["decision_id"].as_str().unwrap().to_owned();
        events.push(
            json!({"type": "impression", "customer_id": customer, "offer_id": offer,
                           "channel": "web", "placement": "home", "decision_id": id}),
        );
        if n % 7 == 0 {
            conversions += 1;
            events.push(
                json!({"type": "conversion", "customer_id": customer, "offer_id": offer,
                               "channel": "web", "placement": "home", "decision_id": id}),
            );
        }
    }
    let accepted = support::post_events(server.public, json!(events)).await;
    assert_eq!(accepted["accepted"], events.len(), "{accepted}");
    // The writer catches up (the decision path never waits for it).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let stats = loop {
        let stats = support::get(server.admin, "/admin/stats").await.json();
        let c = &stats["decision_log"];
        if c["written"].as_u64().unwrap() + c["queue_full"].as_u64().unwrap() == 301 {
            break stats;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the writer did not catch up: {c}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    server.stop();
    (conversions, stats["decision_log"].clone())
}

/// `nextbest replay --estimate --json`: success, the report (or null) and stderr.
fn estimate_cli(
    log: &std::path::Path,
    candidate: &std::path::Path,
    data: &std::path::Path,
) -> (bool, Value, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nextbest"))
        .args(["replay", "--estimate", "--json", "--log"])
        .arg(log)
        .arg("--candidate")
        .arg(candidate)
        .arg("--data-dir")
        .arg(data)
        .env("NEXTBEST_LOG_FORMAT", "text")
        .output()
        .expect("the binary runs");
    (
        out.status.success(),
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn replay_estimate_reads_a_real_log_and_event_log_and_refuses_what_it_cannot_estimate() {
    let dir = TempDir::new("off-policy");
    let logging = model(
        "logging",
        [(logit(0.035), 0.0), (logit(0.03), 0.0), (logit(0.03), 0.0)],
        0.3,
    );
    let candidate = model(
        "flat",
        [(logit(0.01), 0.0), (logit(0.01), 0.0), (logit(0.05), 0.0)],
        0.0,
    );
    let (models, cand) = (dir.0.join("models"), dir.0.join("candidate"));
    models_folder(&models, &logging);
    models_folder(&cand, &candidate);
    let (data, log) = (dir.0.join("data"), dir.0.join("decisions"));
    let (conversions, counts) = record(&models, &data, &log).await;
    assert_eq!(
        counts["written"].as_u64().unwrap() + counts["queue_full"].as_u64().unwrap(),
        301,
        "{counts}"
    );
    assert_eq!(counts["not_sampled"], 0, "{counts}");

    let (ok, report, stderr) = estimate_cli(&log, &cand, &data);
    assert!(ok, "{stderr}");
    assert_eq!(report["decisions"], 301, "{report}");
    assert_eq!(report["conversions_joined"], conversions, "{report}");
    assert_eq!(report["sampling"]["written"], 301, "{report}");
    assert_eq!(report["sampling"]["queue_full"], 0, "{report}");
    let p = &report["placements"][0];
    assert_eq!(
        (p["channel"].as_str(), p["placement"].as_str()),
        (Some("web"), Some("home"))
    );
    for name in ["logging", "ips", "snips", "dr"] {
        let f = &p[name];
        let ci = f["ci95"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: {p}"));
        let (lo, hi, x) = (
            ci[0].as_f64().unwrap(),
            ci[1].as_f64().unwrap(),
            f["conversions_per_1000"].as_f64().unwrap(),
        );
        assert!(lo <= x && x <= hi, "{name}: {f}");
        assert!(f["value_per_1000"].as_f64().is_some(), "{name}: {f}");
    }
    let observed = p["logging"]["conversions_per_1000"].as_f64().unwrap();
    assert!(
        (observed - 1000.0 * conversions as f64 / 301.0).abs() < 1e-9,
        "{p}"
    );
    let explored = p["explored"].as_u64().unwrap();
    assert!((50..130).contains(&explored), "about 30 % explored: {p}");
    assert_eq!(p["randomised"], 301, "{p}");
    let ess = p["effective_sample_size"].as_f64().unwrap();
    assert!(ess > 5.0 && ess < 300.0, "{p}");
    // The log records each answer's probability of being shown.
    let text: String = std::fs::read_dir(&log)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    assert!(
        text.contains("\"shown\":[0."),
        "no shown probabilities logged"
    );
    assert!(text.contains("\"type\":\"drops\""), "no drops line");

    // Another data folder, whose events name none of the logged decisions: said, not only
    // zeros with zero-width intervals.
    let elsewhere = dir.0.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let (ok, report, stderr) = estimate_cli(&log, &cand, &elsewhere);
    assert!(ok, "{stderr}");
    assert_eq!(report["conversions_joined"], 0);
    let warned = report["warnings"].to_string();
    assert!(
        warned.contains("no conversion in") && warned.contains("elsewhere"),
        "{report}"
    );
    // DR is not zero without outcomes: the warning says what it is then.
    assert!(
        warned.contains("DR is the candidate's own propensities"),
        "{report}"
    );

    // Losses that are not random make the estimate refuse, in one line.
    let file = std::fs::read_dir(&log)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .unwrap();
    let original = std::fs::read_to_string(&file).unwrap();
    let lossy = original.replace("\"queue_full\":0", "\"queue_full\":4");
    std::fs::write(&file, lossy).unwrap();
    let (ok, _, stderr) = estimate_cli(&log, &cand, &data);
    assert!(!ok);
    assert!(
        stderr.contains("lost 4 sampled decisions for reasons that are not random"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    std::fs::write(&file, original).unwrap();

    // An adaptive candidate on a log whose model had no adaptive offers: the log does not hold
    // what its offers had learnt, so they would decide untrained; refused, saying so.
    let adaptive = dir.0.join("adaptive");
    let mut learning = candidate.clone();
    learning["offers"][0]["scorer"] = json!({"kind": "adaptive", "outcome": "conversion",
        "prior": {"propensity": 0.03, "evidence": 20}});
    models_folder(&adaptive, &learning);
    let (ok, _, stderr) = estimate_cli(&log, &adaptive, &data);
    assert!(!ok);
    assert!(
        stderr.contains("web/home: the 301 logged decisions were made by a model without the candidate's adaptive offers"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");

    // A log without exploration cannot judge a candidate that changes the answers.
    let plain = dir.0.join("plain");
    let mut no_explore = logging.clone();
    no_explore["placements"]["home"]
        .as_object_mut()
        .unwrap()
        .remove("exploration");
    models_folder(&plain, &no_explore);
    let (data2, log2) = (dir.0.join("data2"), dir.0.join("decisions2"));
    record(&plain, &data2, &log2).await;
    let (ok, _, stderr) = estimate_cli(&log2, &cand, &data2);
    assert!(!ok);
    assert!(stderr.contains("web/home: the candidate changes what 301 of 301 logged decisions would show, but none of them was randomised"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    // The logging model as its own candidate changes nothing: its estimate is what it observed.
    let (ok, same, stderr) = estimate_cli(&log2, &plain, &data2);
    assert!(ok, "{stderr}");
    let p = &same["placements"][0];
    assert_eq!(p["changed"], 0);
    assert_eq!(
        p["ips"]["conversions_per_1000"], p["logging"]["conversions_per_1000"],
        "{p}"
    );
}

/// Explain says when the placement's exploration chose the answer: otherwise an offer ranked
/// above a better-scored one has no reason given. Only explored answers carry the flag.
#[tokio::test]
async fn explain_says_when_an_answer_was_explored() {
    let dir = TempDir::new("explain-explored");
    let models = dir.0.join("models");
    models_folder(
        &models,
        &model("explores", [(0.0, 0.0), (-1.0, 0.0), (-2.0, 0.0)], 0.5),
    );
    let server = Binary::with_models(&models, &dir.0.join("data")).spawn();
    let (mut explored, mut best_first) = (0, 0);
    for n in 0..40 {
        let a = support::decide(
            server.public,
            json!({"customer_id": format!("C{n:05}"), "channel": "web", "placement": "home",
                   "explain": true}),
        )
        .await;
        match a.get("explored") {
            Some(v) => {
                assert_eq!(v, true, "{a}");
                explored += 1;
            }
            None => {
                // Not explored: the best-scored offer is first.
                assert_eq!(a["offers"][0]["offer_id"], "a", "{a}");
                best_first += 1;
            }
        }
    }
    assert!(explored > 0 && best_first > 0, "{explored} explored of 40");
    // Without explain the answer stays as the contract has it.
    let a = support::decide(
        server.public,
        json!({"customer_id": "C00001", "channel": "web", "placement": "home"}),
    )
    .await;
    assert!(a.get("explored").is_none(), "{a}");
}
