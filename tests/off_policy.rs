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
            (
                1000.0 * c / CUSTOMERS as f64,
                1000.0 * v / CUSTOMERS as f64,
            )
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
        let est: Vec<_> = samples
            .iter()
            .map(|s| estimate("web", "home", s))
            .collect();
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
        "DR coverage: personal {}/{RUNS}, flat {}/{RUNS} (value {}/{RUNS}, {}/{RUNS}); told apart in {comparable} runs, ranked right in {ranked_right}",
        covered[0], covered[1], covered_value[0], covered_value[1]
    );
}
