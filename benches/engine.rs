//! Criterion benches of the engine and the data it reads: one decision on the demo model, 50
//! generated logistic offers (and the same behind rules on text columns, against the same
//! rules on their numeric codes), tree ensembles (numeric, and with categorical splits against
//! the same data as numbers), feature lookup, the demo mix and lookups on a snapshot mapped
//! from a `.nbf` against the owned one, compiling a 1,000-offer model, one adaptive offer's
//! Thompson draw, one contextual adaptive offer's with 8 context features, and the 50 logistic
//! offers in a placement that explores (5 % and every decision) against none, and the demo's
//! web home banner for known customers against anonymous visitors.
//!
//! `cargo bench --bench engine`. Requests walk customers across the whole snapshot in a fixed
//! shuffled order, so no bench measures one hot key sitting in L1. Figures and the issue's
//! targets are recorded in BENCHMARKS.md.

#[path = "common/mod.rs"]
mod common;

use std::borrow::Cow;
use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use nextbest::engine::{self, CtxValue, Decision, NoContacts, Request, Unbounded};
use nextbest::features::FeatureStore;
use nextbest::model::lightgbm::parse_lightgbm;
use nextbest::model::xgboost::parse_xgboost;
use nextbest::model::LoadedModel;

use common::{MixItem, NOW_MS};

/// Cycles through a request mix, one item per call.
struct Cycle<'a> {
    items: &'a [MixItem],
    next: usize,
}

impl<'a> Cycle<'a> {
    fn new(items: &'a [MixItem]) -> Self {
        Cycle { items, next: 0 }
    }

    fn item(&mut self) -> &'a MixItem {
        let it = &self.items[self.next];
        self.next = (self.next + 1) % self.items.len();
        it
    }
}

/// Where a bench sends its decisions.
#[derive(Clone, Copy)]
enum Target {
    /// The mix item's own channel and placement (the demo model).
    Mix,
    /// `web`/`home`, where every offer of a generated model is a candidate.
    Home,
}

/// One decision for the next customer of the mix, as every engine bench makes it.
fn decide_next<'m>(
    model: &'m LoadedModel,
    store: &FeatureStore,
    cycle: &mut Cycle<'_>,
    target: Target,
    context: &[(Cow<'_, str>, CtxValue<'_>)],
    explain: bool,
) -> Decision<'m> {
    let it = cycle.item();
    let (channel, placement) = match target {
        Target::Mix => (it.channel, it.placement),
        Target::Home => ("web", "home"),
    };
    let req = Request {
        customer_id: Some(&it.customer_id),
        channel,
        placement,
        limit: None,
        context,
        explain,
        learnt: None,
    };
    engine::decide(
        &model.compiled,
        store,
        black_box(&req),
        &NoContacts,
        &Unbounded,
        NOW_MS,
    )
}

/// One decision on the demo model (25 offers, 4 placements), customers varying.
fn decide_demo(c: &mut Criterion) {
    let (store, model) = common::demo();
    let mix = common::request_mix(store.len(), 16_384, 1);
    let ctx = [
        (Cow::Borrowed("page"), CtxValue::Str("plans".into())),
        (Cow::Borrowed("device"), CtxValue::Str("ios".into())),
    ];
    let mut cycle = Cycle::new(&mix);
    c.bench_function("decide/demo_mix", |b| {
        b.iter(|| {
            black_box(decide_next(
                &model,
                &store,
                &mut cycle,
                Target::Mix,
                &ctx,
                false,
            ))
        })
    });
}

/// The demo's web home banner, which decides for anonymous visitors (issue 31): known customers
/// across the snapshot against visitors the snapshot does not know, with the same context
/// (page and campaign). An anonymous decision reads the shared all-missing row.
fn decide_anonymous(c: &mut Criterion) {
    let (store, model) = common::demo();
    let mix = common::request_mix(store.len(), 16_384, 3);
    let ctx = [
        (Cow::Borrowed("page"), CtxValue::Str("deals".into())),
        (
            Cow::Borrowed("utm_campaign"),
            CtxValue::Str("spring_switch".into()),
        ),
    ];
    let visitors: Vec<String> = (0..mix.len()).map(|i| format!("V{i:07}")).collect();
    let mut g = c.benchmark_group("anonymous");
    for (name, anonymous) in [("home_hero_known", false), ("home_hero_anonymous", true)] {
        let mut cycle = Cycle::new(&mix);
        let mut n = 0;
        g.bench_function(name, |b| {
            b.iter(|| {
                let it = cycle.item();
                n = (n + 1) % visitors.len();
                let req = Request {
                    customer_id: Some(if anonymous {
                        &visitors[n]
                    } else {
                        &it.customer_id
                    }),
                    channel: "web",
                    placement: "home_hero",
                    limit: None,
                    context: &ctx,
                    explain: false,
                    learnt: None,
                };
                let d = engine::decide(
                    &model.compiled,
                    &store,
                    black_box(&req),
                    &NoContacts,
                    &Unbounded,
                    NOW_MS,
                );
                debug_assert_eq!(d.anonymous, anonymous);
                black_box(d)
            })
        });
    }
    g.finish();
}

/// 50 offers with logistic scorers (8 weights each), every one a candidate: the issue's
/// "engine p50 <= 1 us" case; then the same with a two-leaf eligibility rule per offer.
fn decide_50_logistic(c: &mut Criterion) {
    let (store, _) = common::demo();
    let mix = common::request_mix(store.len(), 16_384, 2);
    let ctx = [(Cow::Borrowed("page"), CtxValue::Str("plans".into()))];
    let mut g = c.benchmark_group("decide");
    for (name, rules) in [("50_logistic", false), ("50_logistic_with_rules", true)] {
        let model = common::compile(common::generated_model(50, 8, rules), &store);
        let mut cycle = Cycle::new(&mix);
        g.bench_function(name, |b| {
            b.iter(|| {
                black_box(decide_next(
                    &model,
                    &store,
                    &mut cycle,
                    Target::Home,
                    &ctx,
                    false,
                ))
            })
        });
    }
    g.finish();
}

/// 50 offers each scored by 100 trees of depth 6: the "<= 40 us" case.
fn decide_50_trees(c: &mut Criterion) {
    let (store, _) = common::demo();
    let mix = common::request_mix(store.len(), 16_384, 2);
    let model = common::compile_in(
        common::generated_tree_model(50),
        &store,
        common::trees_dir(),
    );
    let mut g = c.benchmark_group("decide");
    // With explain every offer is scored (no stopping once the answer cannot change): the
    // per-offer cost of a tree ensemble is that figure over 50.
    for (name, explain) in [("50_trees_100x6", false), ("50_trees_100x6_explain", true)] {
        let mut cycle = Cycle::new(&mix);
        g.bench_function(name, |b| {
            b.iter(|| {
                black_box(decide_next(
                    &model,
                    &store,
                    &mut cycle,
                    Target::Home,
                    &[],
                    explain,
                ))
            })
        });
    }
    g.finish();
}

/// One 100-tree depth-6 XGBoost ensemble scoring rows of the demo snapshot, all of it in cache:
/// the walk itself, without a decision around it (target: <= 0.5 us).
fn trees_in_cache(c: &mut Criterion) {
    let (store, _) = common::demo();
    let bytes = std::fs::read(common::trees_dir().join("bench_100x6.json")).expect("fixture");
    let resolve = |name: &str| store.column(name).map(|c| c as u32);
    let ensemble = parse_xgboost(&bytes, None, &resolve).expect("bench_100x6");
    let rows: Vec<&[f32]> = (0..64).filter_map(|r| store.row_at(r * 97)).collect();
    let mut at = 0;
    c.bench_function("trees/100x6_in_cache", |b| {
        b.iter(|| {
            at = (at + 1) % rows.len();
            black_box(ensemble.predict(black_box(rows[at])))
        })
    });
    // A LightGBM model of 80 leaf-wise trees of 31 leaves (linked layout), on exact f64
    // inputs: the float fixture's snapshot, whose values f32 does not all hold.
    let dir = common::trees_dir();
    let floats = std::fs::read(dir.join("float_inputs.csv")).expect("fixture");
    let floats = FeatureStore::from_csv_bytes(&floats, "float_inputs.csv").expect("snapshot");
    let resolve = |name: &str| floats.column(name).map(|c| c as u32);
    let text = std::fs::read_to_string(dir.join("lgb_float.txt")).expect("fixture");
    let lgb = parse_lightgbm(&text, &resolve).expect("lgb_float");
    let rows: Vec<_> = (0..64)
        .filter_map(|r| floats.exact_row_at(r * 31))
        .collect();
    c.bench_function("trees/lgb_80x31_in_cache", |b| {
        b.iter(|| {
            at = (at + 1) % rows.len();
            black_box(lgb.predict(black_box(rows[at])))
        })
    });
}

/// The same decision with rules on text columns and with the same rules on their numeric
/// codes (one store holds both): the "no slower" pair.
fn decide_text_rules(c: &mut Criterion) {
    let store = common::demo_with_codes();
    let mix = common::request_mix(store.len(), 16_384, 2);
    let mut g = c.benchmark_group("decide");
    for (name, codes) in [
        ("50_logistic_text_rules", false),
        ("50_logistic_code_rules", true),
    ] {
        let model = common::compile(common::generated_text_rule_model(&store, codes), &store);
        let mut cycle = Cycle::new(&mix);
        g.bench_function(name, |b| {
            b.iter(|| {
                black_box(decide_next(
                    &model,
                    &store,
                    &mut cycle,
                    Target::Home,
                    &[],
                    false,
                ))
            })
        });
    }
    g.finish();
}

/// 100 trees of depth 6 trained on the same rows, with segment, plan and region as categories
/// (partition and one-hot splits) and as numbers, both in cache: the "at most 1.3x".
fn trees_categorical(c: &mut Criterion) {
    use nextbest::model::bind::Column;
    use nextbest::model::xgboost::{parse_xgboost_model, Spec};
    let (text, codes) = common::categorical_inputs();
    let dir = common::categorical_dir();
    let load = |file: &str, store: &FeatureStore| {
        let bytes = std::fs::read(dir.join(file)).expect("fixture");
        let resolve = |name: &str| Column::in_store(store, name);
        parse_xgboost_model(&bytes, &Spec::default(), &resolve)
            .expect(file)
            .0
    };
    let mut g = c.benchmark_group("trees");
    for (name, file, store) in [
        ("cat_100x6_in_cache", "bench_cat_100x6.json", &text),
        ("codes_100x6_in_cache", "bench_codes_100x6.json", &codes),
    ] {
        let ensemble = load(file, store);
        let rows: Vec<_> = (0..64).filter_map(|r| store.exact_row_at(r * 6)).collect();
        let mut at = 0;
        g.bench_function(name, |b| {
            b.iter(|| {
                at = (at + 1) % rows.len();
                black_box(ensemble.predict(black_box(rows[at])))
            })
        });
    }
    g.finish();
}

/// `FeatureStore::row` on the demo snapshot (10k rows, cache-resident) and on a synthetic
/// 1M-row one (21 MB of values plus the index: mostly cache misses, as in production).
fn feature_lookup(c: &mut Criterion) {
    let (demo, _) = common::demo();
    let big = common::synthetic_store(1_000_000);
    let mut g = c.benchmark_group("features");
    for (name, store) in [("row/10k", &demo), ("row/1m", &big)] {
        let mix = common::request_mix(store.len(), 65_536, 3);
        let mut cycle = Cycle::new(&mix);
        g.bench_function(name, |b| {
            b.iter(|| black_box(store.row(black_box(&cycle.item().customer_id))))
        });
    }
    let mut misses = 0u64;
    g.bench_function("row/unknown", |b| {
        b.iter(|| {
            misses += 1;
            black_box(demo.row(black_box(if misses.is_multiple_of(2) {
                "C9999999"
            } else {
                "X0000001"
            })))
        })
    });
    g.finish();
}

/// The same lookups and decisions on a snapshot mapped from a version 4 `.nbf` as on the owned
/// vectors, side by side (issue 33: no slower with warm pages): the demo mix over the demo
/// snapshot, and `row` over 1M customers (mostly cache misses, as in production).
fn mapped_vs_owned(c: &mut Criterion) {
    let (owned, model) = common::demo();
    let mapped = common::mapped(&owned, "demo");
    let big = common::synthetic_store(1_000_000);
    let big_mapped = common::mapped(&big, "1m");
    let mix = common::request_mix(owned.len(), 16_384, 1);
    let ctx = [
        (Cow::Borrowed("page"), CtxValue::Str("plans".into())),
        (Cow::Borrowed("device"), CtxValue::Str("ios".into())),
    ];
    let mut g = c.benchmark_group("mapped");
    for (name, store) in [
        ("decide_demo/owned", &owned),
        ("decide_demo/mapped", &mapped),
    ] {
        let mut cycle = Cycle::new(&mix);
        g.bench_function(name, |b| {
            b.iter(|| {
                black_box(decide_next(
                    &model,
                    store,
                    &mut cycle,
                    Target::Mix,
                    &ctx,
                    false,
                ))
            })
        });
    }
    let mix = common::request_mix(big.len(), 65_536, 3);
    for (name, store) in [("row_1m/owned", &big), ("row_1m/mapped", &big_mapped)] {
        let mut cycle = Cycle::new(&mix);
        g.bench_function(name, |b| {
            b.iter(|| black_box(store.row(black_box(&cycle.item().customer_id))))
        });
    }
    g.finish();
}

/// Parsing, validating and compiling a 1,000-offer model (target: <= 50 ms).
fn compile_1000(c: &mut Criterion) {
    let (store, _) = common::demo();
    let doc = common::generated_model(1_000, 8, true);
    let mut g = c.benchmark_group("model");
    g.sample_size(20)
        .measurement_time(Duration::from_secs(8))
        .throughput(Throughput::Bytes(doc.len() as u64));
    g.bench_function("compile/1000_offers", |b| {
        b.iter_batched(
            || doc.clone(),
            |d| black_box(common::compile(d, &store)),
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

/// Scoring one adaptive offer: the counts lookup in a 50-offer snapshot and one seeded Thompson
/// draw from its Beta posterior (a new seed per iteration, as each decision has its own).
fn adaptive_draw(c: &mut Criterion) {
    use nextbest::engine::adaptive::{Adaptive, Outcome};
    use nextbest::engine::posterior::{ArmTallies, Learnt, Posteriors, Tally};
    let mut posteriors = Posteriors::default();
    for i in 0..50u64 {
        let mut t = Tally {
            trials: 10_000 + i * 97,
            ..Tally::default()
        };
        t.successes[1] = [300 + i * 7; 31];
        posteriors.arms.insert(
            nextbest::engine::policy::stable_hash(&format!("o{i}")),
            ArmTallies {
                all: t,
                by_tag: Box::default(),
            },
        );
    }
    let scorer = Adaptive {
        outcome: Outcome::Conversion,
        alpha: 6.0,
        beta: 194.0,
        window_days: 7,
        reset: false,
        floor: 0.01,
        context: None,
    };
    let offer = nextbest::engine::policy::stable_hash("o17");
    let mut g = c.benchmark_group("adaptive");
    let mut seed = 0u64;
    g.bench_function("score_one_offer", |b| {
        b.iter(|| {
            seed = seed.wrapping_add(1);
            let learnt = Learnt {
                posteriors: &posteriors,
                seed,
                tag: 0,
            };
            black_box(scorer.draw(black_box(offer), Some(&learnt)))
        })
    });
    g.finish();
}

/// Scoring one contextual adaptive offer with 8 context features (6 numbers, 2 strings of 12
/// values): the posterior lookup in a 50-offer snapshot, the bin of each feature for the
/// customer's row (8 bins a number, a bin per string value) and one seeded normal draw; a new
/// seed and another of 4,096 rows per iteration, as each decision has its own.
fn contextual_draw(c: &mut Criterion) {
    use nextbest::engine::adaptive::{Adaptive, Outcome};
    use nextbest::engine::contextual::{number_level, text_level, Context, ContextFeature, Source};
    use nextbest::engine::policy::stable_hash;
    use nextbest::engine::posterior::{Bins, ContextPosterior, Learnt, Moments, Posteriors, Term};
    const NUMBERS: usize = 6;
    const VALUES: u32 = 12;
    let value = |f: usize, v: u32| format!("f{f}_value_{v}");
    let features: Box<[ContextFeature]> = (0..8)
        .map(|f| ContextFeature {
            name: format!("f{f}").into(),
            source: Source::Column {
                column: f as u32,
                text: (f >= NUMBERS)
                    .then(|| (0..VALUES).map(|v| text_level(&value(f, v))).collect()),
            },
        })
        .collect();
    let context = Context {
        features,
        key: 0x5eed,
    };
    let term = |i: usize| Term {
        log_odds: 0.05 * i as f64 - 0.2,
        variance: 0.01 + 0.001 * i as f64,
    };
    let mut posteriors = Posteriors::default();
    for o in 0..50 {
        let bins = (0..8)
            .map(|f| {
                if f < NUMBERS {
                    Bins::Number {
                        bounds: (1..8).map(|b| number_level(b as f32 * 10.0)).collect(),
                        terms: (0..8).map(term).collect(),
                        missing: term(9),
                    }
                } else {
                    let mut levels: Vec<(u32, u32)> =
                        (0..VALUES).map(|v| (text_level(&value(f, v)), v)).collect();
                    levels.sort_unstable();
                    Bins::Text {
                        levels: levels.into(),
                        terms: (0..VALUES as usize).map(term).collect(),
                        missing: term(9),
                        other: term(10),
                    }
                }
            })
            .collect();
        let offer = stable_hash(&format!("o{o}"));
        posteriors.context.insert(
            context.posterior_key(offer, None),
            std::sync::Arc::new(ContextPosterior {
                overall: Moments {
                    mean: -3.4 + 0.01 * o as f64,
                    variance: 0.02,
                },
                trials: 10_000,
                successes: 300,
                features: bins,
            }),
        );
    }
    let scorer = Adaptive {
        outcome: Outcome::Conversion,
        alpha: 1.5,
        beta: 48.5,
        window_days: 7,
        reset: false,
        floor: 0.01,
        context: Some(Box::new(context)),
    };
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let rows: Vec<[f32; 8]> = (0..4096)
        .map(|_| {
            std::array::from_fn(|f| {
                let r = next();
                if r % 20 == 0 {
                    f32::NAN
                } else if f < NUMBERS {
                    (r >> 8) as f32 % 80.0
                } else {
                    ((r >> 8) % u64::from(VALUES)) as f32
                }
            })
        })
        .collect();
    let offer = stable_hash("o17");
    let mut g = c.benchmark_group("contextual");
    let (mut seed, mut at) = (0u64, 0usize);
    g.bench_function("score_one_offer_8_features", |b| {
        b.iter(|| {
            seed = seed.wrapping_add(1);
            at = (at + 1) % rows.len();
            let learnt = Learnt {
                posteriors: &posteriors,
                seed,
                tag: 0,
            };
            black_box(scorer.draw_for(black_box(offer), (&rows[at], &[]), Some(&learnt)))
        })
    });
    g.finish();
}

/// The 50 logistic offers with a decision seed (as served decisions have), in a placement
/// without exploration, with 5 % and with every decision exploring.
fn decide_explore(c: &mut Criterion) {
    let (store, _) = common::demo();
    let mix = common::request_mix(store.len(), 16_384, 2);
    let ctx = [(Cow::Borrowed("page"), CtxValue::Str("plans".into()))];
    let empty = nextbest::engine::posterior::Posteriors::default();
    let mut g = c.benchmark_group("explore");
    for (name, share) in [
        ("50_logistic_none", 0.0),
        ("50_logistic_5pct", 0.05),
        ("50_logistic_every", 0.999),
    ] {
        let mut doc: serde_json::Value =
            serde_json::from_slice(&common::generated_model(50, 8, false)).unwrap();
        if share > 0.0 {
            doc["placements"]["home"]["exploration"] = serde_json::json!({"share": share});
        }
        let model = common::compile(serde_json::to_vec(&doc).unwrap(), &store);
        let mut cycle = Cycle::new(&mix);
        let mut n = 0u64;
        g.bench_function(name, |b| {
            b.iter(|| {
                let it = cycle.item();
                n += 1;
                let req = Request {
                    customer_id: Some(&it.customer_id),
                    channel: "web",
                    placement: "home",
                    limit: None,
                    context: &ctx,
                    explain: false,
                    learnt: Some(nextbest::engine::posterior::Learnt {
                        posteriors: &empty,
                        seed: nextbest::engine::posterior::mix(n),
                        tag: 0,
                    }),
                };
                black_box(engine::decide(
                    &model.compiled,
                    &store,
                    black_box(&req),
                    &NoContacts,
                    &Unbounded,
                    NOW_MS,
                ))
            })
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    adaptive_draw,
    contextual_draw,
    decide_demo,
    decide_anonymous,
    decide_50_logistic,
    decide_explore,
    decide_50_trees,
    decide_text_rules,
    trees_in_cache,
    trees_categorical,
    feature_lookup,
    mapped_vs_owned,
    compile_1000
);
criterion_main!(benches);
