//! Contextual adaptive offers: the levels values fall on, the bins they find, and the draw.

use std::sync::Arc;

use crate::engine::adaptive::{Adaptive, Outcome};
use crate::engine::contextual::{number_level, text_level, Context, ContextFeature, Source};
use crate::engine::posterior::{
    sigmoid, Bins, ContextPosterior, Learnt, Moments, Posteriors, Term, MISSING,
};
use crate::engine::rules::CtxValue;

fn scorer() -> Adaptive {
    Adaptive {
        outcome: Outcome::Conversion,
        alpha: 1.5,
        beta: 48.5,
        window_days: 7,
        reset: false,
        floor: 0.0,
        context: Some(Box::new(Context {
            features: Box::new([
                ContextFeature {
                    name: "is_prepaid".into(),
                    source: Source::Column {
                        column: 0,
                        text: None,
                    },
                },
                ContextFeature {
                    name: "segment".into(),
                    source: Source::Column {
                        column: 1,
                        text: Some(Box::new([text_level("basic"), text_level("gold")])),
                    },
                },
            ]),
            key: 99,
        })),
    }
}

fn term(log_odds: f64, variance: f64) -> Term {
    Term { log_odds, variance }
}

/// is_prepaid: 0 in the first bin (-1), 1 in the second (+1); segment: gold +0.5, others 0.
fn posteriors(a: &Adaptive) -> Posteriors {
    published(
        a,
        term(0.2, 0.5),
        Bins::Text {
            levels: Box::new([(text_level("gold"), 0)]),
            terms: Box::new([term(0.5, 0.04)]),
            missing: Term::default(),
            other: term(-0.1, 0.05),
        },
    )
}

/// What offer 7 learnt: overall -3; is_prepaid's bins (a missing value's term given), then the
/// second feature's.
fn published(a: &Adaptive, prepaid_missing: Term, second: Bins) -> Posteriors {
    let mut p = Posteriors::default();
    let c = a.context.as_ref().unwrap();
    p.context.insert(
        c.posterior_key(7, None),
        Arc::new(ContextPosterior {
            overall: Moments {
                mean: -3.0,
                variance: 0.01,
            },
            trials: 1_000,
            successes: 40,
            features: Box::new([
                Bins::Number {
                    bounds: Box::new([number_level(1.0)]),
                    terms: Box::new([term(-1.0, 0.02), term(1.0, 0.03)]),
                    missing: prepaid_missing,
                },
                second,
            ]),
        }),
    );
    p
}

#[test]
fn levels_keep_the_order_of_numbers_and_tell_strings_and_missing_apart() {
    let xs = [
        -1e9f32, -2.5, -1.0, 0.0, 0.5, 1.0, 2.0, 3.0, 16.0, 17.5, 1e3, 1e9,
    ];
    for w in xs.windows(2) {
        assert!(number_level(w[0]) < number_level(w[1]), "{w:?}");
    }
    assert_eq!(number_level(-0.0), number_level(0.0));
    // Integers to 16 keep a level each; beyond, a level spans 1/16 of an octave.
    let small: std::collections::HashSet<u32> = (0..=16).map(|i| number_level(i as f32)).collect();
    assert_eq!(small.len(), 17);
    assert_eq!(number_level(100.0), number_level(101.0));
    assert_ne!(number_level(100.0), number_level(106.0));
    assert!(number_level(f32::MAX) < 1 << 13);
    for v in ["", "gold", "a much longer segment name"] {
        let l = text_level(v);
        assert!(l & 0x8000_0000 != 0 && l != MISSING, "{v}");
    }
    assert_ne!(text_level("gold"), text_level("silver"));
    let f = &scorer().context.unwrap().features[1];
    assert_eq!(f.level(&[0.0, 1.0], &[]), text_level("gold"));
    assert_eq!(f.level(&[0.0, f32::NAN], &[]), MISSING);
    assert_eq!(
        f.level(&[0.0, 7.0], &[]),
        MISSING,
        "a code past the dictionary"
    );
}

#[test]
fn each_value_finds_its_bin_and_the_terms_add_up() {
    let a = scorer();
    let p = posteriors(&a);
    let c = a.context.as_ref().unwrap();
    let m = |row: &[f32]| c.moments(a.prior_log_odds(), 7, None, (row, &[]), &p).0;
    let close = |x: Moments, mean: f64, variance: f64| {
        assert!((x.mean - mean).abs() < 1e-12, "{x:?} vs {mean}");
        assert!((x.variance - variance).abs() < 1e-12, "{x:?} vs {variance}");
    };
    close(m(&[1.0, 1.0]), -3.0 + 1.0 + 0.5, 0.01 + 0.03 + 0.04);
    close(m(&[0.0, 1.0]), -3.0 - 1.0 + 0.5, 0.01 + 0.02 + 0.04);
    close(m(&[5.0, 0.0]), -3.0 + 1.0 - 0.1, 0.01 + 0.03 + 0.05);
    close(m(&[f32::NAN, f32::NAN]), -3.0 + 0.2, 0.01 + 0.5);
    // Another offer has nothing published: the prior.
    let (prior, trials, _) = c.moments(a.prior_log_odds(), 8, None, (&[1.0, 1.0], &[]), &p);
    close(prior, (1.5f64 / 48.5).ln(), 1.0 / 1.5 + 1.0 / 48.5);
    assert_eq!(trials, 0);
    // A replayed decision's posterior: the logged sum, and no bins.
    let mut replayed = Posteriors::default();
    let logged = m(&[1.0, 1.0]);
    replayed.context.insert(
        c.posterior_key(7, None),
        Arc::new(ContextPosterior {
            overall: logged,
            ..ContextPosterior::default()
        }),
    );
    assert_eq!(
        c.moments(a.prior_log_odds(), 7, None, (&[0.0, 0.0], &[]), &replayed)
            .0,
        logged
    );
}

#[test]
fn the_draw_follows_the_seed_and_the_customer() {
    let a = scorer();
    let p = posteriors(&a);
    let l = |seed| Learnt {
        posteriors: &p,
        seed,
        tag: 3,
    };
    let prepaid = [1.0, 1.0];
    let d = a.draw_for(7, (&prepaid, &[]), Some(&l(11)));
    assert_eq!(d, a.draw_for(7, (&prepaid, &[]), Some(&l(11))));
    assert_ne!(d.draw, a.draw_for(7, (&prepaid, &[]), Some(&l(12))).draw);
    assert!((d.mean - sigmoid(-1.5)).abs() < 1e-12);
    assert_eq!((d.trials, d.successes), (1_000, 40));
    let mean_draw = |row: &[f32]| {
        (0..4_000)
            .map(|s| a.draw_for(7, (row, &[]), Some(&l(s))).draw)
            .sum::<f64>()
            / 4_000.0
    };
    let (hi, lo) = (mean_draw(&prepaid), mean_draw(&[0.0, 0.0]));
    assert!((hi - sigmoid(-1.5)).abs() < 0.01, "{hi}");
    assert!((lo - sigmoid(-4.1)).abs() < 0.005, "{lo}");
    // Without the learnt snapshot: the prior's mean, no draw.
    let none = a.draw_for(7, (&prepaid, &[]), None);
    assert_eq!((none.mean, none.draw), (a.prior_mean(), a.prior_mean()));
    // A reset scorer reads its model tag's posterior only.
    let reset = Adaptive {
        reset: true,
        ..scorer()
    };
    assert_eq!(reset.draw_for(7, (&prepaid, &[]), Some(&l(11))).trials, 0);
}

/// A scorer learning from a snapshot column and a request value (`context.device`, slot 1).
fn with_device() -> Adaptive {
    let mut a = scorer();
    let c = a.context.as_mut().unwrap();
    c.features = Box::new([
        c.features[0].clone(),
        ContextFeature {
            name: "context.device".into(),
            source: Source::Request { slot: 1 },
        },
    ]);
    a
}

#[test]
fn an_anonymous_requests_context_value_moves_its_draw() {
    let a = with_device();
    let c = a.context.as_ref().unwrap();
    let p = published(
        &a,
        Term::default(),
        Bins::Text {
            levels: Box::new([(text_level("android"), 0), (text_level("ios"), 1)]),
            terms: Box::new([term(-0.4, 0.01), term(0.8, 0.01)]),
            missing: term(0.1, 0.2),
            other: term(-0.05, 0.3),
        },
    );
    // An anonymous visitor: every snapshot value missing; slot 0 is a key only rules test.
    let anonymous = [f32::NAN, f32::NAN];
    let page = CtxValue::Str("home".into());
    let (ios, android) = (CtxValue::Str("ios".into()), CtxValue::Str("android".into()));
    let level = |slots: &[Option<&CtxValue<'_>>]| c.features[1].level(&anonymous, slots);
    assert_eq!(level(&[Some(&page), Some(&ios)]), text_level("ios"));
    assert_eq!(level(&[Some(&page), None]), MISSING);
    assert_eq!(level(&[Some(&page)]), MISSING, "a slot past the request's");
    assert_eq!(
        level(&[None, Some(&CtxValue::Num(3.0))]),
        number_level(3.0),
        "a number sent where strings were learnt keeps a number's level"
    );
    let l = Learnt {
        posteriors: &p,
        seed: 11,
        tag: 3,
    };
    let draw = |device: Option<&CtxValue<'_>>| {
        let slots = [Some(&page), device];
        a.draw_for(7, (&anonymous, &slots), Some(&l))
    };
    let (on_ios, on_android, unknown) = (draw(Some(&ios)), draw(Some(&android)), draw(None));
    assert!(
        (on_ios.log_odds.mean - (-3.0 + 0.8)).abs() < 1e-12,
        "{on_ios:?}"
    );
    assert!(
        (on_android.log_odds.mean - (-3.0 - 0.4)).abs() < 1e-12,
        "{on_android:?}"
    );
    assert!(
        (unknown.log_odds.mean - (-3.0 + 0.1)).abs() < 1e-12,
        "{unknown:?}"
    );
    // One seed, one normal: the device alone moves the draw.
    assert!(on_ios.draw > unknown.draw && unknown.draw > on_android.draw);
}

#[test]
fn a_string_where_numbers_were_learnt_counts_as_missing() {
    let bins = Bins::Number {
        bounds: Box::new([number_level(1.0)]),
        terms: Box::new([term(-1.0, 0.02), term(1.0, 0.03)]),
        missing: term(0.2, 0.5),
    };
    assert_eq!(bins.term(text_level("ios")), term(0.2, 0.5));
    assert_eq!(bins.term(number_level(4.0)), term(1.0, 0.03));
}
