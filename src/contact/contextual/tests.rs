use super::*;
use crate::contact::adaptive::Counts;
use crate::contact::event::{Event, EventKind};
use crate::engine::posterior::Posteriors;

const DAY_MS: i64 = 86_400_000;
const T0: i64 = 1_800_000_000_000;

/// 400 customers: half prepaid; a segment that says nothing; a tenure with missing values.
fn store() -> Arc<FeatureStore> {
    let mut csv = String::from("customer_id,is_prepaid,segment,tenure\n");
    for i in 0..400 {
        let tenure = if i % 10 == 0 {
            String::new()
        } else {
            (i % 37).to_string()
        };
        csv.push_str(&format!(
            "C{i},{},{},{tenure}\n",
            i % 2,
            ["basic", "gold", "silver"][i % 3]
        ));
    }
    Arc::new(FeatureStore::from_csv_bytes(csv.as_bytes(), "t.csv").unwrap())
}

fn model(store: &FeatureStore, window_days: u8) -> crate::model::LoadedModel {
    let doc = serde_json::json!({"name": "m", "version": "1",
        "placements": {"home": {"channels": ["web"]}},
        "offers": [{"id": "o1", "category": "sales", "channels": ["web"], "placements": ["home"],
            "value": 1, "scorer": {"kind": "adaptive", "outcome": "conversion",
                "prior": {"propensity": 0.03, "evidence": 50}, "window_days": window_days,
                "context": ["is_prepaid", "segment", "tenure"]},
            "content": {"web": {"title": "T", "image_url": "https://cdn.test/i.jpg",
                "cta_url": "https://shop.test/x"}}}]});
    crate::model::from_doc(&doc, store)
}

fn ev(kind: EventKind, customer: &str, ts_ms: i64) -> Event<'_> {
    Event::on(kind, customer, Some("o1"), "web", ts_ms)
}

/// Every customer sees o1 once; prepaid ones convert one in four (a day later), postpaid
/// ones one in forty (twenty days later, past a 7-day window).
fn events(ids: &[String]) -> Vec<Event<'_>> {
    let mut out = Vec::new();
    for id in ids {
        out.push(ev(EventKind::Impression, id, T0));
    }
    for (i, id) in ids.iter().enumerate() {
        if i % 2 == 1 && i % 8 == 1 {
            out.push(ev(EventKind::Conversion, id, T0 + DAY_MS / 2));
        }
        if i % 2 == 0 && i % 40 == 0 {
            out.push(ev(EventKind::Conversion, id, T0 + 20 * DAY_MS));
        }
    }
    out
}

fn learnt(order: impl Fn(&mut Vec<Event<'_>>)) -> Arc<Posteriors> {
    let store = store();
    let m = model(&store, 7);
    let counts = Counts::new(1 << 16);
    counts.bind(&[(&m.compiled, 1)], store);
    let ids: Vec<String> = (0..400).map(|i| format!("C{i}")).collect();
    let mut evs = events(&ids);
    order(&mut evs);
    for e in &evs {
        counts.observe(e, T0 + 30 * DAY_MS);
    }
    counts.refresh();
    let snapshot = counts.snapshot();
    Arc::clone(&snapshot)
}

fn the_posterior(p: &Posteriors) -> &ContextPosterior {
    assert_eq!(p.context.len(), 1);
    p.context.values().next().unwrap()
}

#[test]
fn the_feature_that_matters_gets_the_contrast_and_the_others_little() {
    let p = learnt(|_| {});
    let post = the_posterior(&p);
    // 400 impressions; 50 prepaid conversions within the window, the late postpaid ones not.
    assert_eq!((post.trials, post.successes), (400, 50));
    let Bins::Number { bounds, terms, .. } = &post.features[0] else {
        panic!("is_prepaid is a number: {:?}", post.features[0]);
    };
    assert_eq!(**bounds, [number_level(1.0)]);
    let (postpaid, prepaid) = (terms[0].log_odds, terms[1].log_odds);
    assert!(prepaid > 0.5 && postpaid < -0.5, "{terms:?}");
    let Bins::Text { levels, terms, .. } = &post.features[1] else {
        panic!("segment is a string: {:?}", post.features[1]);
    };
    assert_eq!(levels.len(), 3);
    assert!(terms.iter().all(|t| t.log_odds.abs() < 0.2), "{terms:?}");
    let Bins::Number {
        bounds, missing, ..
    } = &post.features[2]
    else {
        panic!("tenure is a number");
    };
    // 37 tenure values in equal-traffic bins, missing values apart.
    assert_eq!(bounds.len(), MAX_BINS - 1);
    assert!(missing.log_odds.abs() < 0.2, "{missing:?}");
}

#[test]
fn the_same_events_in_any_order_give_the_same_posterior() {
    let a = learnt(|_| {});
    // Impressions first still, so every outcome finds its impression; the rest reversed.
    let b = learnt(|evs| {
        let split = evs
            .iter()
            .position(|e| e.kind != EventKind::Impression)
            .unwrap();
        evs[..split].reverse();
        evs[split..].reverse();
    });
    assert_eq!(the_posterior(&a), the_posterior(&b));
}

/// A log replayed at start arrives faster than the clock publishes: the predictions the
/// health ring keeps must still follow what was learnt so far, as they did live, not the
/// prior (which ranks nobody: an AUC of 0.5 for a model that separates customers well).
#[test]
fn predictions_follow_the_evidence_when_events_outrun_the_clock() {
    let store = store();
    let m = model(&store, 7);
    let counts = Counts::new(1 << 16);
    counts.bind(&[(&m.compiled, 1)], store);
    let ids: Vec<String> = (0..400).map(|i| format!("C{i}")).collect();
    // Six rounds: each customer sees o1 and prepaid ones convert one in four, postpaid ones
    // one in forty, within the hour; all observed in one burst, as a replay does.
    let mut n = 0usize;
    for round in 0..6 {
        for (i, id) in ids.iter().enumerate() {
            let ts = T0 + (round * 400 + i) as i64 * 1_000;
            counts.observe(&ev(EventKind::Impression, id, ts), ts);
            n += 1;
            let converts = if i % 2 == 1 {
                n.is_multiple_of(4)
            } else {
                n.is_multiple_of(40)
            };
            if converts {
                counts.observe(&ev(EventKind::Conversion, id, ts + 500), ts + 500);
            }
        }
    }
    let h = counts.health(
        crate::engine::policy::stable_hash("o1"),
        0,
        Outcome::Conversion,
    );
    let auc = h.auc.expect("enough responders for an AUC");
    assert!(auc > 0.7, "{h:?}");
}

#[test]
fn a_feature_that_tells_nothing_adds_nothing() {
    // Two bins with the same rate: their spread is within the noise, so no term at all.
    let cells = [(1_000, 30), (1_000, 30), (0, 0)];
    let terms = shrink(&cells, 0.03);
    assert!(terms.iter().all(|t| *t == Term::default()), "{terms:?}");
    // Rates 6 % and 1 %: clear contrasts, little shrunk, small variance.
    let terms = shrink(&[(1_000, 60), (1_000, 10), (0, 0)], 0.035);
    assert!(
        terms[0].log_odds > 0.4 && terms[1].log_odds < -0.9,
        "{terms:?}"
    );
    assert!(terms[0].variance < 0.05, "{terms:?}");
    assert_eq!(terms[2].log_odds, 0.0);
}

/// A model whose o1 learns from `context`, counting only its own version's decisions when
/// `reset`.
fn model_with(store: &FeatureStore, context: &[&str], reset: bool) -> crate::model::LoadedModel {
    let doc = serde_json::json!({"name": "m", "version": "1",
        "placements": {"home": {"channels": ["web"]}},
        "offers": [{"id": "o1", "category": "sales", "channels": ["web"], "placements": ["home"],
            "value": 1, "scorer": {"kind": "adaptive", "outcome": "conversion",
                "prior": {"propensity": 0.03, "evidence": 50}, "window_days": 7,
                "context": context, "reset": reset},
            "content": {"web": {"title": "T", "image_url": "https://cdn.test/i.jpg",
                "cta_url": "https://shop.test/x"}}}]});
    crate::model::from_doc(&doc, store)
}

/// Models published while events arrive: `is_prepaid` learnt, dropped from the context, then
/// a `reset` version, then the first model again. The live posterior is the one a restart
/// replaying every event with the last model builds.
#[test]
fn a_feature_dropped_and_added_back_or_a_reset_version_between_loses_no_count() {
    let store = store();
    let ids: Vec<String> = (0..400).map(|i| format!("C{i}")).collect();
    let evs = events(&ids);
    let a = model_with(&store, &["is_prepaid", "segment"], false);
    let b = model_with(&store, &["is_prepaid", "segment"], true);
    let c = model_with(&store, &["segment"], false);
    let counts = Counts::new(1 << 16);
    counts.bind(&[(&a.compiled, 1)], store.clone());
    for e in &evs[..evs.len() / 2] {
        counts.observe(e, T0 + 30 * DAY_MS);
    }
    counts.bind(&[(&c.compiled, 2)], store.clone());
    counts.bind(&[(&b.compiled, 3)], store.clone());
    for e in &evs[evs.len() / 2..] {
        counts.observe(e, T0 + 30 * DAY_MS);
    }
    counts.bind(&[(&a.compiled, 4)], store.clone());
    counts.refresh();
    let live = Arc::clone(&counts.snapshot());
    let fresh = Counts::new(1 << 16);
    fresh.bind(&[(&a.compiled, 4)], store.clone());
    for e in &evs {
        fresh.observe(e, T0 + 30 * DAY_MS);
    }
    fresh.refresh();
    let restart = Arc::clone(&fresh.snapshot());
    assert_eq!(the_posterior(&live), the_posterior(&restart));
}

/// A shadow candidate whose offer learns from a longer context list than the champion's gets
/// a posterior of its own, learnt from every event as the champion's is: the same contrast
/// for the feature both read.
#[test]
fn a_shadow_candidates_context_list_learns_beside_the_champions() {
    let store = store();
    let ids: Vec<String> = (0..400).map(|i| format!("C{i}")).collect();
    let champion = model_with(&store, &["is_prepaid"], false);
    let candidate = model_with(&store, &["is_prepaid", "tenure"], false);
    let counts = Counts::new(1 << 16);
    counts.bind(&[(&champion.compiled, 1)], store.clone());
    counts.bind_shadow(Some((&candidate.compiled, 0)));
    for e in &events(&ids) {
        counts.observe(e, T0 + 30 * DAY_MS);
    }
    counts.refresh();
    let p = counts.snapshot();
    assert_eq!(p.context.len(), 2, "the champion's and the candidate's");
    let prepaid = |post: &ContextPosterior| match &post.features[0] {
        Bins::Number { terms, .. } => terms[1].log_odds,
        b => panic!("is_prepaid is a number: {b:?}"),
    };
    let (a, b): (Vec<_>, Vec<_>) = p.context.values().partition(|c| c.features.len() == 1);
    assert!(prepaid(a[0]) > 0.5, "{:?}", a[0]);
    assert_eq!(prepaid(a[0]), prepaid(b[0]));
    // Ended: only the champion's is published.
    counts.bind_shadow(None);
    counts.refresh();
    assert_eq!(counts.snapshot().context.len(), 1);
}
