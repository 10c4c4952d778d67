//! Exploration in the decision: which decisions explore, what they show, and the probability
//! of being shown that explain reports, checked against how often offers are really shown.

use super::*;
use crate::engine::posterior::{ArmTallies, Learnt, Posteriors, Tally, MAX_WINDOW_DAYS};

/// Three fixed offers and one context-free adaptive offer in one placement, limit `limit`.
fn doc(limit: usize, share: f64) -> serde_json::Value {
    let content = serde_json::json!({"web": {"title": "t", "body": "b", "image_url": "https://cdn.test/i.jpg", "cta_url": "https://shop.test/x"}});
    let fixed = |id: &str, p: f64, value: f64| {
        serde_json::json!({"id": id, "category": "sales",
        "channels": ["web"], "placements": ["home"], "value": value,
        "scorer": {"kind": "constant", "propensity": p}, "content": content})
    };
    let mut adaptive = fixed("learner", 0.0, 10.0);
    adaptive["scorer"] = serde_json::json!({"kind": "adaptive", "outcome": "conversion",
        "prior": {"propensity": 0.04, "evidence": 50}});
    serde_json::json!({
        "name": "x", "version": "1",
        "placements": {"home": {"channels": ["web"], "limit": limit, "exploration": {"share": share}}},
        "offers": [fixed("a", 0.05, 10.0), fixed("b", 0.03, 10.0), fixed("c", 0.02, 10.0), adaptive]
    })
}

/// The adaptive offer has seen 400 impressions and 18 conversions (mean about 4.4 %).
fn learnt() -> Posteriors {
    let mut t = Tally {
        trials: 400,
        ..Tally::default()
    };
    t.successes[1] = [18; MAX_WINDOW_DAYS + 1];
    let mut p = Posteriors::default();
    p.arms.insert(
        crate::engine::policy::stable_hash("learner"),
        ArmTallies {
            all: t,
            by_tag: Box::default(),
        },
    );
    p
}

fn request<'a>(posteriors: &'a Posteriors, seed: u64, explain: bool) -> Request<'a> {
    Request {
        customer_id: Some("C1"),
        channel: "web",
        placement: "home",
        explain,
        learnt: Some(Learnt {
            posteriors,
            seed,
            tag: 0,
        }),
        ..Default::default()
    }
}

fn shown_of(d: &Decision<'_>) -> Vec<f64> {
    d.explain
        .iter()
        .map(|v| match v {
            Verdict::Scored { shown, .. } => *shown,
            _ => 0.0,
        })
        .collect()
}

#[test]
fn exploring_decisions_are_the_share_and_explain_gives_how_often_each_offer_shows() {
    for limit in [1usize, 2] {
        let (m, s) = compile_doc(&doc(limit, 0.2));
        let p = learnt();
        let n = 20_000u64;
        let mut explored = 0;
        let mut counts = [0u32; 4];
        for seed in 0..n {
            let seed = crate::engine::posterior::mix(seed);
            let d = run(&m.compiled, &s, &request(&p, seed, false));
            explored += usize::from(d.explored);
            assert_eq!(d.ranked.len(), limit);
            for r in &d.ranked {
                counts[r.offer as usize] += 1;
            }
            if seed.is_multiple_of(500) {
                // Explain makes the same decision.
                let e = run(&m.compiled, &s, &request(&p, seed, true));
                assert_eq!(
                    (e.ranked.clone(), e.explored),
                    (d.ranked.clone(), d.explored)
                );
            }
        }
        let share = explored as f64 / n as f64;
        assert!((share - 0.2).abs() < 0.01, "explored {share}");
        // The probabilities do not depend on the seed (the same posterior, the same customer).
        let shown = shown_of(&run(&m.compiled, &s, &request(&p, 1, true)));
        assert_eq!(
            shown,
            shown_of(&run(&m.compiled, &s, &request(&p, 2, true)))
        );
        let total: f64 = shown.iter().sum();
        assert!(
            (total - limit as f64).abs() < 0.01,
            "limit {limit}: {shown:?}"
        );
        for (o, c) in counts.iter().enumerate() {
            let seen = f64::from(*c) / n as f64;
            assert!(
                (seen - shown[o]).abs() < 0.015,
                "limit {limit}, offer {o}: shown {seen}, explain says {}",
                shown[o]
            );
        }
    }
}

#[test]
fn a_fixed_ranking_has_exact_probabilities_and_no_seed_never_explores() {
    let (m, s) = compile_doc(&doc(1, 0.1));
    let p = Posteriors::default();
    // Without counts the adaptive offer scores its prior (4 %, fixed): a 5 %, learner 4 %, ...
    let d = run(&m.compiled, &s, &request(&p, 3, true));
    let shown = shown_of(&d);
    let k = 4.0;
    // Without a snapshot of counts the adaptive draw is still random (the prior); the fixed
    // offers' probabilities stay exact around it.
    assert!((shown.iter().sum::<f64>() - 1.0).abs() < 0.01, "{shown:?}");
    assert!(
        shown[2] >= 0.1 / k - 1e-12 && shown[2] < 0.1 / k + 0.01,
        "{shown:?}"
    );
    let no_seed = Request {
        learnt: None,
        ..request(&p, 0, true)
    };
    let d = run(&m.compiled, &s, &no_seed);
    assert!(!d.explored);
    assert_eq!(
        shown_of(&d),
        [1.0, 0.0, 0.0, 0.0],
        "no seed: the ranking, exactly"
    );
    // An unknown exploration value is refused with its path.
    let mut bad = doc(1, 0.1);
    bad["placements"]["home"]["exploration"]["share"] = serde_json::json!(1.5);
    let store = FeatureStore::from_csv_bytes(CSV.as_bytes(), "t.csv").unwrap();
    let err = from_bytes(
        serde_json::to_vec(&bad).unwrap(),
        None,
        "t".into(),
        &store,
        &Limits::default(),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("placements.home.exploration.share"),
        "{err}"
    );
}
