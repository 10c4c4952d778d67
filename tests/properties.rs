//! Property tests of the decision core: rule evaluation against the logic it promises, and
//! arbitration against its contract (ordering, limit, exclusions, determinism, top-N).
//!
//! Models are written as JSON and compiled with `model::from_bytes`, as the server does.

use std::borrow::Cow;
use std::cmp::Ordering;

use nextbest::engine::posterior::sigmoid;
use nextbest::engine::{
    decide, CmpOp, CtxValue, Decision, FallbackReason, NoContacts, Operand, Request, Rule,
    RuleInput, Test, Unbounded, Verdict, MAX_LIMIT,
};
use nextbest::features::FeatureStore;
use nextbest::model::{from_bytes, Limits, LoadedModel};
use proptest::prelude::*;
use serde_json::json;

/// Feature columns of the generated rows.
const WIDTH: usize = 4;
/// Context slots the generated rules read.
const SLOTS: usize = 3;
const WORDS: [&str; 3] = ["ios", "web", "plans"];

// ---------------------------------------------------------------------------------------------
// Rules

/// Small whole numbers so equality and `in` tests hit, some fractions, and missing values.
fn feature_value() -> impl Strategy<Value = f32> {
    prop_oneof![
        4 => (-3i32..=3).prop_map(|v| v as f32),
        2 => Just(f32::NAN),
        1 => -1000.0f32..1000.0,
    ]
}

fn constant() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => (-3i32..=3).prop_map(f64::from),
        1 => -1000.0f64..1000.0,
    ]
}

fn ctx_value() -> impl Strategy<Value = Option<CtxValue<'static>>> {
    prop_oneof![
        Just(None),
        (-3i32..=3).prop_map(|v| Some(CtxValue::Num(v.into()))),
        prop::sample::select(&WORDS[..]).prop_map(|s| Some(CtxValue::Str(Cow::Borrowed(s)))),
    ]
}

fn cmp_op() -> impl Strategy<Value = CmpOp> {
    prop::sample::select(&CmpOp::ALL[..])
}

fn test_of_leaf() -> impl Strategy<Value = Test> {
    let word = || prop::sample::select(&WORDS[..]).prop_map(Box::<str>::from);
    prop_oneof![
        3 => (cmp_op(), constant()).prop_map(|(op, v)| Test::Cmp(op, v)),
        1 => (constant(), constant()).prop_map(|(a, b)| Test::Between(a.min(b), a.max(b))),
        1 => prop::collection::vec(constant(), 1..4).prop_map(|v| Test::InNum(v.into())),
        1 => (word(), any::<bool>()).prop_map(|(s, negate)| Test::EqStr(s, negate)),
        1 => prop::collection::vec(word(), 1..3).prop_map(|v| Test::InStr(v.into())),
        1 => prop::collection::vec(constant(), 1..4).prop_map(|v| Test::NotInNum(v.into())),
        1 => prop::collection::vec(word(), 1..3).prop_map(|v| Test::NotInStr(v.into())),
        1 => Just(Test::IsMissing),
    ]
}

fn operand() -> impl Strategy<Value = Operand> {
    prop_oneof![
        2 => (0..WIDTH as u32).prop_map(Operand::Feature),
        1 => (0..SLOTS as u16).prop_map(Operand::Context),
    ]
}

/// Trees of `all`/`any`/`not` over leaves, every node named uniquely (`n0`, `n1`, ...).
fn rule_tree() -> impl Strategy<Value = Rule> {
    let leaf = (operand(), test_of_leaf()).prop_map(|(operand, test)| Rule::Leaf {
        operand,
        test,
        what: "".into(),
    });
    leaf.prop_recursive(5, 48, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 1..4).prop_map(|c| Rule::All(c.into())),
            prop::collection::vec(inner.clone(), 1..4).prop_map(|c| Rule::Any(c.into(), "".into())),
            inner.prop_map(|c| Rule::Not(Box::new(c), "".into())),
        ]
    })
    .prop_map(|r| rename(r, &mut 0))
}

fn rename(rule: Rule, n: &mut usize) -> Rule {
    let mut name = || {
        *n += 1;
        format!("n{}", *n - 1).into_boxed_str()
    };
    match rule {
        Rule::All(c) => Rule::All(c.into_vec().into_iter().map(|r| rename(r, n)).collect()),
        Rule::Any(c, _) => {
            let what = name();
            Rule::Any(
                c.into_vec().into_iter().map(|r| rename(r, n)).collect(),
                what,
            )
        }
        Rule::Not(c, _) => {
            let what = name();
            Rule::Not(Box::new(rename(*c, n)), what)
        }
        Rule::Leaf { operand, test, .. } => Rule::Leaf {
            operand,
            test,
            what: name().into(),
        },
        Rule::FeatureIn(_) | Rule::Intervals(_) => {
            unreachable!("generated trees hold general leaves")
        }
    }
}

/// The rule as the model compiler builds it: each leaf in its fastest form.
fn compiled(rule: &Rule) -> Rule {
    match rule {
        Rule::All(c) => Rule::all(c.iter().map(compiled).collect()),
        Rule::Any(c, what) => Rule::Any(c.iter().map(compiled).collect(), what.clone()),
        Rule::Not(c, what) => Rule::Not(Box::new(compiled(c)), what.clone()),
        Rule::Leaf {
            operand,
            test,
            what,
        } => Rule::leaf(*operand, test.clone(), what.clone()),
        Rule::FeatureIn(_) | Rule::Intervals(_) => {
            unreachable!("generated trees hold general leaves")
        }
    }
}

/// What a leaf reads: a number, a string, or nothing (missing).
enum Seen<'a> {
    Num(f64),
    Str(&'a str),
    Missing,
}

/// The leaf semantics, written from the model format's description rather than the code.
fn leaf_holds(operand: Operand, test: &Test, row: &[f32], ctx: &[Option<CtxValue<'_>>]) -> bool {
    let seen = match operand {
        Operand::Feature(c) if row[c as usize].is_nan() => Seen::Missing,
        Operand::Feature(c) => Seen::Num(row[c as usize].into()),
        Operand::Context(s) => match &ctx[s as usize] {
            None => Seen::Missing,
            Some(CtxValue::Num(x)) => Seen::Num(*x),
            Some(CtxValue::Str(s)) => Seen::Str(s),
        },
    };
    match (seen, test) {
        (Seen::Missing, t) => matches!(t, Test::IsMissing),
        (_, Test::IsMissing) => false,
        (Seen::Num(x), Test::Cmp(op, v)) => {
            let o = x.partial_cmp(v).expect("both are numbers");
            match op {
                CmpOp::Eq => o == Ordering::Equal,
                CmpOp::Ne => o != Ordering::Equal,
                CmpOp::Lt => o == Ordering::Less,
                CmpOp::Le => o != Ordering::Greater,
                CmpOp::Gt => o == Ordering::Greater,
                CmpOp::Ge => o != Ordering::Less,
            }
        }
        (Seen::Num(x), Test::Between(lo, hi)) => {
            x.partial_cmp(lo) != Some(Ordering::Less)
                && x.partial_cmp(hi) != Some(Ordering::Greater)
        }
        (Seen::Num(x), Test::InNum(set)) => set
            .iter()
            .any(|v| x.partial_cmp(v) == Some(Ordering::Equal)),
        (Seen::Num(x), Test::NotInNum(set)) => !set
            .iter()
            .any(|v| x.partial_cmp(v) == Some(Ordering::Equal)),
        (Seen::Num(_), Test::EqStr(..) | Test::InStr(_) | Test::NotInStr(_)) => false,
        (Seen::Str(s), Test::NotInStr(set)) => !set.iter().any(|v| &**v == s),
        (Seen::Str(s), Test::EqStr(v, negate)) => (&**v == s) != *negate,
        (Seen::Str(s), Test::InStr(set)) => set.iter().any(|v| &**v == s),
        (Seen::Str(_), _) => false,
    }
}

/// Checks the compiled form of `rule`, answering with the failing node's description.
fn check(rule: &Rule, row: &[f32], ctx: &[Option<CtxValue<'_>>]) -> Option<String> {
    let refs: Vec<Option<&CtxValue<'_>>> = ctx.iter().map(Option::as_ref).collect();
    compiled(rule)
        .check(&RuleInput {
            features: row.into(),
            context: &refs,
        })
        .map(str::to_owned)
}

/// Checks every node of the tree against its combinator's logic, and that a failing node
/// reports the right description.
fn assert_node_logic(rule: &Rule, row: &[f32], ctx: &[Option<CtxValue<'_>>]) {
    let got = check(rule, row, ctx);
    match rule {
        Rule::All(children) => {
            let first_failure = children.iter().find_map(|c| check(c, row, ctx));
            assert_eq!(
                got.is_none(),
                children.iter().all(|c| check(c, row, ctx).is_none())
            );
            assert_eq!(got, first_failure, "`all` reports its first failing child");
            children.iter().for_each(|c| assert_node_logic(c, row, ctx));
        }
        Rule::Any(children, what) => {
            let some = children.iter().any(|c| check(c, row, ctx).is_none());
            assert_eq!(got.as_deref(), (!some).then_some(&**what));
            children.iter().for_each(|c| assert_node_logic(c, row, ctx));
        }
        Rule::Not(child, what) => {
            let child_holds = check(child, row, ctx).is_none();
            assert_eq!(
                got.as_deref(),
                child_holds.then_some(&**what),
                "`not` inverts"
            );
            assert_node_logic(child, row, ctx);
        }
        Rule::Leaf {
            operand,
            test,
            what,
        } => {
            let holds = leaf_holds(*operand, test, row, ctx);
            assert_eq!(
                got.as_deref(),
                (!holds).then_some(&**what),
                "{operand:?} {test:?} on {row:?}"
            );
        }
        Rule::FeatureIn(_) | Rule::Intervals(_) => {
            unreachable!("generated trees hold general leaves")
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn rules_follow_all_any_not_and_leaf_logic(
        rule in rule_tree(),
        row in prop::collection::vec(feature_value(), WIDTH),
        ctx in prop::collection::vec(ctx_value(), SLOTS),
    ) {
        assert_node_logic(&rule, &row, &ctx);
    }

    #[test]
    fn a_missing_value_fails_every_test_but_is_missing(
        test in test_of_leaf(),
        col in 0..WIDTH as u32,
        slot in 0..SLOTS as u16,
    ) {
        let row = [f32::NAN; WIDTH];
        let ctx: [Option<CtxValue<'_>>; SLOTS] = [None, None, None];
        for operand in [Operand::Feature(col), Operand::Context(slot)] {
            let leaf = Rule::Leaf { operand, test: test.clone(), what: "leaf".into() };
            let holds = check(&leaf, &row, &ctx).is_none();
            prop_assert_eq!(holds, test == Test::IsMissing, "{:?} on a missing value", test);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Arbitration

#[derive(Debug, Clone)]
enum ScorerSpec {
    Constant(f64),
    /// Intercept and one optional weight per feature column.
    Logistic(f64, [Option<f64>; WIDTH]),
}

#[derive(Debug, Clone)]
struct OfferSpec {
    scorer: ScorerSpec,
    value: f64,
    priority: f64,
    /// `f{col} >= threshold`, when the offer has an eligibility rule.
    rule: Option<(usize, f64)>,
}

#[derive(Debug, Clone)]
struct Case {
    offers: Vec<OfferSpec>,
    min_score: f64,
    min_propensity: f64,
    slot_limit: usize,
    request_limit: Option<usize>,
    rows: Vec<[f32; WIDTH]>,
}

/// Mostly ordinary weights, sometimes the largest a model may hold (any finite number).
fn weight() -> impl Strategy<Value = f64> {
    prop_oneof![
        12 => -2.0f64..2.0,
        1 => Just(f64::MAX),
        1 => Just(-f64::MAX),
    ]
}

fn offer_spec() -> impl Strategy<Value = OfferSpec> {
    let scorer = prop_oneof![
        // Propensities on a grid of twentieths: ties between offers happen.
        (0u32..=20).prop_map(|k| ScorerSpec::Constant(f64::from(k) / 20.0)),
        (weight(), prop::array::uniform4(prop::option::of(weight())))
            .prop_map(|(b, w)| ScorerSpec::Logistic(b, w)),
    ];
    (
        scorer,
        prop_oneof![Just(1.0), Just(10.0), (0.0f64..100.0)],
        prop_oneof![3 => Just(1.0), 1 => 0.0f64..5.0],
        prop::option::of((0..WIDTH, (-3i32..=3).prop_map(f64::from))),
    )
        .prop_map(|(scorer, value, priority, rule)| OfferSpec {
            scorer,
            value,
            priority,
            rule,
        })
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec(offer_spec(), 1..=12),
        prop_oneof![Just(0.0), (0.0f64..5.0)],
        prop_oneof![Just(0.0), (0.0f64..0.6)],
        1..=MAX_LIMIT,
        prop::option::of(1..=8usize),
        prop::collection::vec(prop::array::uniform4(feature_value()), 1..=4),
    )
        .prop_map(
            |(offers, min_score, min_propensity, slot_limit, request_limit, rows)| Case {
                offers,
                min_score,
                min_propensity,
                slot_limit,
                request_limit,
                rows,
            },
        )
}

fn model_json(case: &Case) -> serde_json::Value {
    let content = json!({"title": "t", "image_url": "https://cdn.test/i.jpg", "cta_url": "https://shop.test/c"});
    let offers: Vec<_> = case
        .offers
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let scorer = match &o.scorer {
                ScorerSpec::Constant(p) => json!({"kind": "constant", "propensity": p}),
                ScorerSpec::Logistic(b, ws) => {
                    let weights: serde_json::Map<_, _> = ws
                        .iter()
                        .enumerate()
                        .filter_map(|(c, w)| w.map(|w| (format!("f{c}"), json!(w))))
                        .collect();
                    json!({"kind": "logistic", "intercept": b, "weights": weights})
                }
            };
            let mut offer = json!({"id": format!("o{i}"), "category": "sales", "channels": ["web"],
                "placements": ["home"], "value": o.value, "priority": o.priority,
                "scorer": scorer, "content": {"web": content}});
            if let Some((col, t)) = o.rule {
                offer["eligibility"] =
                    json!({"feature": format!("f{col}"), "op": "ge", "value": t});
            }
            offer
        })
        .collect();
    json!({"name": "prop", "version": "1",
        "arbitration": {"min_score": case.min_score, "min_propensity": case.min_propensity},
        "placements": {"home": {"channels": ["web"], "limit": case.slot_limit}},
        "offers": offers})
}

fn compile(case: &Case) -> (LoadedModel, FeatureStore) {
    let mut csv = String::from("customer_id,f0,f1,f2,f3\n");
    for (r, row) in case.rows.iter().enumerate() {
        csv += &format!("C{r}");
        for v in row {
            // Display of an f32 is its shortest round-tripping form; NaN is an empty field.
            csv += &if v.is_nan() {
                ",".to_owned()
            } else {
                format!(",{v}")
            };
        }
        csv.push('\n');
    }
    let store = FeatureStore::from_csv_bytes(csv.as_bytes(), "prop.csv").expect("generated CSV");
    let doc = serde_json::to_vec(&model_json(case)).unwrap();
    let model = from_bytes(doc, None, "prop".into(), &store, &Limits::default())
        .unwrap_or_else(|e| panic!("generated model does not compile: {e}"));
    (model, store)
}

/// The propensity the offer's scorer should give, from the model format's formula.
fn expected_propensity(spec: &ScorerSpec, row: &[f32; WIDTH]) -> f64 {
    match spec {
        ScorerSpec::Constant(p) => *p,
        ScorerSpec::Logistic(b, ws) => {
            let z = ws.iter().zip(row).fold(*b, |z, (w, x)| match w {
                Some(w) if !x.is_nan() => z + w * f64::from(*x),
                _ => z,
            });
            sigmoid(z)
        }
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

fn run<'m>(m: &'m LoadedModel, s: &FeatureStore, req: &Request<'_>) -> Decision<'m> {
    decide(
        &m.compiled,
        s,
        req,
        &NoContacts,
        &Unbounded,
        1_795_000_000_000,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitration_returns_the_top_of_the_scored_offers(case in case()) {
        let (lm, store) = compile(&case);
        let m = &lm.compiled;
        let limit = case.request_limit.unwrap_or(case.slot_limit);
        for (r, row) in case.rows.iter().enumerate() {
            let id = format!("C{r}");
            let req = Request {
                customer_id: Some(&id),
                channel: "web",
                placement: "home",
                limit: case.request_limit,
                explain: true,
                ..Default::default()
            };
            let d = run(&lm, &store, &req);
            prop_assert_eq!(d.explain.len(), case.offers.len());

            // Each verdict is what the offer's rule, scorer and the thresholds make of it.
            let mut scored = Vec::new();
            for (i, (spec, verdict)) in case.offers.iter().zip(&d.explain).enumerate() {
                let eligible = match spec.rule {
                    Some((c, t)) => !row[c].is_nan() && f64::from(row[c]) >= t,
                    None => true,
                };
                match verdict {
                    &Verdict::Scored {
                        propensity, score, ..
                    } => {
                        prop_assert!(eligible, "offer {} scored though its rule fails", i);
                        prop_assert!((0.0..=1.0).contains(&propensity), "offer {}: propensity {}", i, propensity);
                        prop_assert!(score.is_finite(), "offer {}: score {}", i, score);
                        prop_assert!(close(propensity, expected_propensity(&spec.scorer, row)));
                        prop_assert_eq!(score, propensity * m.offers[i].value * m.offers[i].priority);
                        prop_assert!(propensity >= case.min_propensity && score >= case.min_score);
                        scored.push((i as u32, score));
                    }
                    Verdict::Excluded(why) => {
                        if eligible {
                            prop_assert!(why.starts_with("arbitration.") || why.starts_with("scorer"), "offer {}: {}", i, why);
                        } else {
                            prop_assert!(why.starts_with(&format!("offers[{i}].eligibility")), "offer {}: {}", i, why);
                        }
                    }
                }
            }

            // The answer: ordered, within the limit, only scored offers, exactly the top.
            prop_assert!(d.ranked.len() <= limit);
            for w in d.ranked.windows(2) {
                prop_assert!(w[0].score >= w[1].score, "{} before {}", w[0].score, w[1].score);
            }
            for o in &d.ranked {
                let scored_in_explain = matches!(d.explain[o.offer as usize], Verdict::Scored { .. });
                prop_assert!(scored_in_explain, "offer {} returned but excluded", o.offer);
            }
            scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            scored.truncate(limit);
            let top: Vec<u32> = scored.iter().map(|s| s.0).collect();
            let got: Vec<u32> = d.ranked.iter().map(|o| o.offer).collect();
            prop_assert_eq!(&got, &top);
            prop_assert_eq!(d.fallback.is_some(), got.is_empty());
            if got.is_empty() {
                prop_assert_eq!(d.fallback, Some(FallbackReason::NoEligibleOffer));
            }

            // Same input, same answer; explain changes nothing but the explanation.
            let again = run(&lm, &store, &req);
            prop_assert_eq!(&again.ranked, &d.ranked);
            prop_assert_eq!(&again.explain, &d.explain);
            let quiet = run(&lm, &store, &Request { explain: false, ..req });
            prop_assert_eq!(&quiet.ranked, &d.ranked);
            prop_assert_eq!(quiet.fallback, d.fallback);
        }
    }
}
