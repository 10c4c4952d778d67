use super::*;
use crate::engine::adaptive::{Adaptive, Outcome};

fn ev<'a>(kind: EventKind, ts_ms: i64, customer: &'a str, decision: Option<u128>) -> Event<'a> {
    Event {
        decision_id: decision,
        ..Event::on(kind, customer, Some("o1"), "web", ts_ms)
    }
}

fn arm(window_days: u8, reset: bool) -> Adaptive {
    Adaptive {
        outcome: Outcome::Conversion,
        alpha: 1.0,
        beta: 1.0,
        window_days,
        reset,
        floor: 0.0,
        context: None,
    }
}

#[test]
fn outcomes_are_credited_once_by_decision_id_or_within_the_window() {
    let c = Counts::new(1_024);
    let t0 = 1_800_000_000_000;
    let d = attribution::decision_id(
        t0,
        0xabcd,
        crate::experiment::Variant::Champion,
        attribution::Origin::default(),
    )
    .0;
    c.observe(&ev(EventKind::Impression, t0, "c1", Some(d)), t0);
    c.observe(&ev(EventKind::Impression, t0, "c2", None), t0);
    c.observe(&ev(EventKind::Impression, t0, "c3", None), t0);
    // c1 converts late but quotes the decision: credited whatever the window.
    c.observe(
        &ev(EventKind::Conversion, t0 + 20 * DAY_MS, "c1", Some(d)),
        t0,
    );
    c.observe(
        &ev(EventKind::Conversion, t0 + 20 * DAY_MS, "c1", Some(d)),
        t0,
    );
    // c2 converts after 2 days without a decision id; c3 never had... a click only.
    c.observe(
        &ev(EventKind::Conversion, t0 + 2 * DAY_MS - 5, "c2", None),
        t0,
    );
    c.observe(&ev(EventKind::Click, t0 + 1, "c3", None), t0);
    // An outcome with no impression before it is not credited.
    c.observe(&ev(EventKind::Conversion, t0, "c9", None), t0);
    c.refresh();
    let p = c.snapshot();
    let t = p.tally(stable_hash("o1"), None).unwrap();
    assert_eq!(arm(1, false).counts(t), (3, 1));
    assert_eq!(arm(2, false).counts(t), (3, 2));
    let click = Adaptive {
        outcome: Outcome::Click,
        ..arm(1, false)
    };
    assert_eq!(click.counts(t), (3, 1));
    let own = p.tally(stable_hash("o1"), Some(attribution::model_tag(0xabcd)));
    assert_eq!(arm(30, true).counts(own.unwrap()), (1, 1));
}

/// A conversion quoting its decision that arrives before the decision's impression (an
/// order system faster than the web's batch) is credited when the impression comes, once;
/// one without a decision id, or quoting another decision, is not.
#[test]
fn an_outcome_before_its_impression_is_credited_when_the_impression_arrives() {
    let c = Counts::new(1_024);
    let t0 = 1_800_000_000_000;
    let decided = |n: u64| {
        attribution::decision_id(
            t0 + n as i64,
            0xabcd,
            crate::experiment::Variant::Champion,
            attribution::Origin::default(),
        )
        .0
    };
    let (d1, d2) = (decided(1), decided(2));
    c.observe(&ev(EventKind::Conversion, t0 + 60_000, "c1", Some(d1)), t0);
    c.observe(&ev(EventKind::Conversion, t0 + 60_000, "c1", Some(d1)), t0);
    c.observe(&ev(EventKind::Conversion, t0 + 60_000, "c2", None), t0);
    c.observe(&ev(EventKind::Conversion, t0 + 60_000, "c3", Some(d1)), t0);
    c.observe(&ev(EventKind::Impression, t0, "c1", Some(d1)), t0);
    c.observe(&ev(EventKind::Impression, t0, "c2", Some(d2)), t0);
    c.observe(&ev(EventKind::Impression, t0, "c3", Some(d2)), t0);
    // A repeat after the credit changes nothing.
    c.observe(&ev(EventKind::Conversion, t0 + 90_000, "c1", Some(d1)), t0);
    c.refresh();
    let p = c.snapshot();
    let t = p.tally(stable_hash("o1"), None).unwrap();
    assert_eq!(arm(7, false).counts(t), (3, 1));
}

/// A `reset` offer's health reads its model version's impressions only, as its counts do;
/// another offer's reads them all.
#[test]
fn a_reset_offers_health_is_its_versions_own() {
    let t0 = 1_800_000_000_000;
    let decided = |key: u32| {
        attribution::decision_id(
            t0,
            key,
            crate::experiment::Variant::Champion,
            attribution::Origin::default(),
        )
        .0
    };
    let (old, new) = (0xabcd, 0x1234);
    for reset in [true, false] {
        let c = Counts::new(1_024);
        c.inner.master.lock().unwrap().adaptive =
            [(stable_hash("o1"), reset)].into_iter().collect();
        for (i, key) in [old, old, old, new, new].into_iter().enumerate() {
            let customer = format!("c{i}");
            c.observe(
                &ev(EventKind::Impression, t0, &customer, Some(decided(key))),
                t0,
            );
        }
        c.observe(&ev(EventKind::Impression, t0, "c9", None), t0);
        let health = |key: u32| {
            c.health(
                stable_hash("o1"),
                attribution::model_tag(key),
                Outcome::Conversion,
            )
            .impressions
        };
        if reset {
            assert_eq!(health(new), 2);
            assert_eq!(health(old), 3);
        } else {
            assert_eq!((health(new), health(old)), (6, 6));
        }
    }
}

#[test]
fn an_offer_one_model_scores_without_reset_keeps_one_health() {
    let modes = health_modes([(1, true), (2, true), (2, false), (3, false), (1, true)].into_iter());
    assert_eq!((modes[&1], modes[&2], modes[&3]), (true, false, false));
}

#[test]
fn refresh_publishes_what_was_observed() {
    let c = Counts::new(1_024);
    let t0 = 1_800_000_000_000;
    c.observe(&ev(EventKind::Impression, t0, "c1", None), t0);
    c.observe(&ev(EventKind::Dismiss, t0, "c1", None), t0);
    c.refresh();
    assert_eq!(
        c.snapshot().tally(stable_hash("o1"), None).unwrap().trials,
        1
    );
    assert!(c.snapshot().tally(stable_hash("o2"), None).is_none());
}

/// The verdict on a contextual offer whose recent impressions do not show ranking: targeting
/// when it learnt to tell customers apart (its terms' spreads summing to at least 0.5
/// log-odds) and its impressions span less than half of that; else not separating.
#[test]
fn a_contextual_offer_that_targets_is_told_from_one_that_learnt_nothing() {
    use super::health::{Group, Report};
    let band = |lo: f64, hi: f64| Report {
        auc: Some(0.52),
        calibration: vec![
            Group {
                impressions: 100,
                predicted: lo,
                observed: lo,
            },
            Group {
                impressions: 100,
                predicted: hi,
                observed: hi,
            },
        ],
        ..Report::default()
    };
    let v = |report: &Report, predictors: &[(&str, f64)]| verdict(true, 500, report, predictors);
    // 5 % to 6 %: 0.19 log-odds apart.
    let narrow = band(0.05, 0.06);
    assert!(v(&narrow, &[("is_prepaid", 0.45), ("tenure", 0.1)])
        .starts_with("learning, and targeting: it puts customers up to 0.6 log-odds apart (most by `is_prepaid`)"));
    // Learnt too little to tell customers apart.
    assert!(v(&narrow, &[("is_prepaid", 0.3), ("tenure", 0.1)]).starts_with("not separating"));
    // Impressions spread widely (2 % to 20 %: 2.5 log-odds), and still no ranking.
    assert!(v(&band(0.02, 0.2), &[("is_prepaid", 1.5)]).starts_with("not separating"));
    // A prediction of 0 or 1 (an infinite log-odds) and no calibration groups say nothing of a
    // band: not taken for targeting.
    assert!(v(&band(0.0, 0.06), &[("is_prepaid", 2.0)]).starts_with("not separating"));
    let no_groups = Report {
        auc: Some(0.5),
        ..Report::default()
    };
    assert!(v(&no_groups, &[("is_prepaid", 2.0)]).starts_with("not separating"));
    // Ranking shown, too few trials, context-free: the other verdicts.
    let ranked = Report {
        auc: Some(0.7),
        ..narrow.clone()
    };
    assert!(v(&ranked, &[]).starts_with("learning: ranks responders"));
    assert!(verdict(true, 10, &narrow, &[]).starts_with("gathering evidence"));
    assert!(verdict(false, 500, &narrow, &[]).starts_with("learning one propensity"));
}
