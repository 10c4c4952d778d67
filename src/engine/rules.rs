//! Compiled eligibility rules: feature and context names already resolved to indices.
//!
//! Checking a rule returns the description of the rule that failed (built once at compile
//! time), so the normal path formats nothing. `explain` asks again with [`Rule::explain`],
//! which adds the value the failing leaf tested (`churn_score is 0.13, the rule needs >= 0.3`).
//! A comparison on a missing value is false; only `is_missing` is true for it.
//!
//! A string feature's tests arrive here as numeric tests on dictionary codes (the snapshot
//! holds codes; the model compiler resolved the strings), so requests compare numbers only.

use std::borrow::Cow;

use crate::features::FeatureRow;

/// A value from the request's `context`, string or number.
#[derive(Debug, Clone, PartialEq)]
pub enum CtxValue<'a> {
    /// A string value, compared with `eq`, `ne` and `in`.
    Str(std::borrow::Cow<'a, str>),
    /// A numeric value, compared with every operator.
    Num(f64),
}

impl CtxValue<'_> {
    /// The same value owning its string: for work that outlives the request (the shadow).
    pub fn into_owned(self) -> CtxValue<'static> {
        match self {
            CtxValue::Str(s) => CtxValue::Str(std::borrow::Cow::Owned(s.into_owned())),
            CtxValue::Num(n) => CtxValue::Num(n),
        }
    }
}

/// What a leaf reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operand {
    /// A column of the customer's feature row.
    Feature(u32),
    /// A slot of the request context (keys resolved per request, once).
    Context(u16),
}

/// Numeric comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl CmpOp {
    /// Every operator, for tests and tools that must cover them all.
    pub const ALL: [CmpOp; 6] = [
        CmpOp::Eq,
        CmpOp::Ne,
        CmpOp::Lt,
        CmpOp::Le,
        CmpOp::Gt,
        CmpOp::Ge,
    ];

    #[inline]
    fn holds(self, x: f64, v: f64) -> bool {
        match self {
            CmpOp::Eq => x == v,
            CmpOp::Ne => x != v,
            CmpOp::Lt => x < v,
            CmpOp::Le => x <= v,
            CmpOp::Gt => x > v,
            CmpOp::Ge => x >= v,
        }
    }
}

/// The test a leaf applies to its operand.
#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    /// Numeric comparison against a constant.
    Cmp(CmpOp, f64),
    /// `lo <= x <= hi`.
    Between(f64, f64),
    /// `x` is one of the numbers.
    InNum(Box<[f64]>),
    /// A string equal to the constant (`ne` when negated).
    EqStr(Box<str>, bool),
    /// A string in the set.
    InStr(Box<[Box<str>]>),
    /// `x` is none of the numbers (a missing value is not tested: it fails).
    NotInNum(Box<[f64]>),
    /// A string not in the set (a missing value fails).
    NotInStr(Box<[Box<str>]>),
    /// The value is missing.
    IsMissing,
}

/// How `explain` names a leaf: the description the normal path returns, and, for the
/// verdict of a failing leaf, the words around the value it tested.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct What {
    text: Box<str>,
    /// `(before, after)`: the verdict is `before` + the value + `after`.
    says: Option<Box<(Box<str>, Box<str>)>>,
}

impl What {
    /// A description with the words around the tested value, e.g. `("...: segment is ",
    /// ", not in gold, platinum")`.
    pub fn with_value(text: impl Into<Box<str>>, before: String, after: String) -> Self {
        Self {
            text: text.into(),
            says: Some(Box::new((before.into(), after.into()))),
        }
    }

    /// The verdict with the value the leaf tested.
    fn with(&self, value: &str) -> Cow<'_, str> {
        match &self.says {
            Some(s) => Cow::Owned(format!("{}{value}{}", s.0, s.1)),
            None => Cow::Borrowed(&self.text),
        }
    }
}

impl std::ops::Deref for What {
    type Target = str;
    fn deref(&self) -> &str {
        &self.text
    }
}

impl From<&str> for What {
    fn from(text: &str) -> Self {
        Self {
            text: text.into(),
            says: None,
        }
    }
}

impl From<Box<str>> for What {
    fn from(text: Box<str>) -> Self {
        Self { text, says: None }
    }
}

impl From<String> for What {
    fn from(text: String) -> Self {
        Self {
            text: text.into(),
            says: None,
        }
    }
}

/// A feature compared with constants, as the closed interval it must lie in (`x < v` is
/// `x <=` the largest f64 below `v`): [`Rule::FeatureIn`] alone, or one of the tests of
/// [`Rule::Intervals`].
///
/// The bounds are the model's numbers and the value is the snapshot's exactly as written (an
/// `arpu_30d` of 34.56 is `le 34.56`). The row's f32 decides every value but those that round
/// to a bound's f32 (rounding is monotonic, so a value whose f32 lies strictly inside or
/// outside the bounds' f32 lies so itself); those alone read the exact f64.
#[derive(Debug, Clone, PartialEq)]
pub struct Interval {
    /// Snapshot column.
    pub column: u32,
    /// Least value that holds.
    pub lo: f64,
    /// Greatest value that holds.
    pub hi: f64,
    /// `lo` and `hi` rounded to the f32 the row holds.
    lo32: f32,
    hi32: f32,
    /// How `explain` names it.
    pub what: What,
}

impl Interval {
    /// An interval on `column` from `lo` to `hi` (both held).
    pub fn new(column: u32, lo: f64, hi: f64, what: What) -> Self {
        Self {
            column,
            lo,
            hi,
            lo32: lo as f32,
            hi32: hi as f32,
            what,
        }
    }

    /// Whether the row's value lies in `[lo, hi]`. A missing value (NaN, or a column the row
    /// lacks) lies in no interval.
    #[inline(always)]
    fn holds(&self, features: FeatureRow<'_>) -> bool {
        let x = features.f32(self.column as usize);
        if self.lo32 < x && x < self.hi32 {
            return true;
        }
        if !(self.lo32 <= x && x <= self.hi32) {
            return false;
        }
        // On the f32 of a bound: the f64 the snapshot was given decides.
        let v = features.f64(self.column as usize);
        self.lo <= v && v <= self.hi
    }
}

/// The first of `tests` that the row fails: one loop for `check` and `explain`, out of line
/// (inlining it into the rule's match measured no faster).
#[inline(never)]
fn first_outside<'t>(tests: &'t [Interval], features: FeatureRow<'_>) -> Option<&'t Interval> {
    tests.iter().find(|t| !t.holds(features))
}

/// One compiled rule.
#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    /// Every child holds; the first that fails is reported.
    All(Box<[Rule]>),
    /// An `all` whose children are all feature intervals (the commonest targeting rule),
    /// tested in one loop instead of a call per child. Built by [`Rule::all`].
    Intervals(Box<[Interval]>),
    /// At least one child holds; otherwise the whole rule is reported.
    Any(Box<[Rule]>, Box<str>),
    /// The child does not hold.
    Not(Box<Rule>, Box<str>),
    /// A feature in an interval: the commonest leaf, tested without a branch on its
    /// operator. Built by [`Rule::leaf`].
    FeatureIn(Interval),
    /// A single test.
    Leaf {
        /// What it reads.
        operand: Operand,
        /// What it tests.
        test: Test,
        /// How `explain` names it, e.g. `offers[2].eligibility.all[0]: tenure_months >= 6`.
        what: What,
    },
}

/// What a rule sees: the customer's feature row and the request context by slot.
pub struct RuleInput<'r, 'c> {
    /// The customer's features (the f32 row and the exact values behind it), NaN for missing.
    pub features: FeatureRow<'r>,
    /// Context values in the model's context slot order.
    pub context: &'r [Option<&'r CtxValue<'c>>],
}

impl Rule {
    /// Calls `f` with each context slot the rule tests and whether as a number (`Some(true)`),
    /// as text (`Some(false)`) or for being missing (`None`).
    pub fn context_reads(&self, f: &mut impl FnMut(u16, Option<bool>)) {
        match self {
            Rule::All(rules) | Rule::Any(rules, _) => {
                rules.iter().for_each(|r| r.context_reads(f));
            }
            Rule::Not(rule, _) => rule.context_reads(f),
            Rule::Intervals(_) | Rule::FeatureIn(_) => {}
            Rule::Leaf {
                operand: Operand::Context(slot),
                test,
                ..
            } => f(
                *slot,
                match test {
                    Test::Cmp(..) | Test::Between(..) | Test::InNum(_) | Test::NotInNum(_) => {
                        Some(true)
                    }
                    Test::EqStr(..) | Test::InStr(_) | Test::NotInStr(_) => Some(false),
                    Test::IsMissing => None,
                },
            ),
            Rule::Leaf { .. } => {}
        }
    }

    /// A leaf in its fastest form: a feature against finite constants (every operator but
    /// `ne`, and `between`) becomes [`Rule::FeatureIn`], anything else a [`Rule::Leaf`].
    pub fn leaf(operand: Operand, test: Test, what: impl Into<What>) -> Rule {
        let what = what.into();
        let range = match (&operand, &test) {
            (Operand::Feature(_), Test::Cmp(op, v)) if v.is_finite() => match op {
                CmpOp::Eq => Some((*v, *v)),
                CmpOp::Lt => Some((f64::NEG_INFINITY, v.next_down())),
                CmpOp::Le => Some((f64::NEG_INFINITY, *v)),
                CmpOp::Gt => Some((v.next_up(), f64::INFINITY)),
                CmpOp::Ge => Some((*v, f64::INFINITY)),
                CmpOp::Ne => None,
            },
            (Operand::Feature(_), Test::Between(lo, hi)) if lo.is_finite() && hi.is_finite() => {
                Some((*lo, *hi))
            }
            _ => None,
        };
        match (operand, range) {
            (Operand::Feature(column), Some((lo, hi))) => {
                Rule::FeatureIn(Interval::new(column, lo, hi, what))
            }
            _ => Rule::Leaf {
                operand,
                test,
                what,
            },
        }
    }

    /// An `all` in its fastest form: [`Rule::Intervals`] when every child is a feature
    /// interval, else [`Rule::All`].
    pub fn all(children: Box<[Rule]>) -> Rule {
        if children.len() < 2 || !children.iter().all(|c| matches!(c, Rule::FeatureIn(_))) {
            return Rule::All(children);
        }
        let tests = children.into_vec().into_iter().map(|c| match c {
            Rule::FeatureIn(t) => t,
            _ => unreachable!("every child was checked to be an interval"),
        });
        Rule::Intervals(tests.collect())
    }

    /// `None` when the rule holds, else the description of the rule that failed.
    #[inline]
    pub fn check(&self, input: &RuleInput<'_, '_>) -> Option<&str> {
        match self {
            Rule::FeatureIn(t) => {
                if t.holds(input.features) {
                    None
                } else {
                    Some(&t.what.text)
                }
            }
            Rule::Intervals(tests) => first_outside(tests, input.features).map(|t| &*t.what.text),
            Rule::All(children) => children.iter().find_map(|c| c.check(input)),
            Rule::Any(children, what) => {
                if children.iter().any(|c| c.check(input).is_none()) {
                    None
                } else {
                    Some(what)
                }
            }
            Rule::Not(child, what) => match child.check(input) {
                None => Some(what),
                Some(_) => None,
            },
            Rule::Leaf {
                operand,
                test,
                what,
            } => {
                if leaf_holds(*operand, test, input) {
                    None
                } else {
                    Some(&what.text)
                }
            }
        }
    }

    /// What [`Rule::check`] says, with the value the failing leaf tested where it names one:
    /// `shown(operand)` renders the value a leaf read (explain only: it allocates).
    pub fn explain(
        &self,
        input: &RuleInput<'_, '_>,
        shown: &dyn Fn(Operand) -> String,
    ) -> Option<Cow<'_, str>> {
        match self {
            Rule::FeatureIn(t) => {
                self.check(input)?;
                Some(t.what.with(&shown(Operand::Feature(t.column))))
            }
            Rule::Leaf { operand, what, .. } => {
                self.check(input)?;
                Some(what.with(&shown(*operand)))
            }
            Rule::Intervals(tests) => {
                let t = first_outside(tests, input.features)?;
                Some(t.what.with(&shown(Operand::Feature(t.column))))
            }
            Rule::All(children) => children.iter().find_map(|c| c.explain(input, shown)),
            Rule::Any(..) | Rule::Not(..) => self.check(input).map(Cow::Borrowed),
        }
    }
}

#[inline]
fn leaf_holds(operand: Operand, test: &Test, input: &RuleInput<'_, '_>) -> bool {
    match operand {
        Operand::Feature(col) => {
            let x = input.features.f64(col as usize);
            num_holds((!x.is_nan()).then_some(x), test)
        }
        Operand::Context(slot) => match input.context.get(slot as usize) {
            Some(Some(CtxValue::Num(x))) => num_holds(Some(*x), test),
            Some(Some(CtxValue::Str(s))) => match test {
                Test::EqStr(v, negate) => (**v == **s) != *negate,
                Test::InStr(set) => set.iter().any(|v| **v == **s),
                Test::NotInStr(set) => !set.iter().any(|v| **v == **s),
                _ => false,
            },
            _ => matches!(test, Test::IsMissing),
        },
    }
}

#[inline]
fn num_holds(x: Option<f64>, test: &Test) -> bool {
    let Some(x) = x else {
        return matches!(test, Test::IsMissing);
    };
    match test {
        Test::Cmp(op, v) => op.holds(x, *v),
        Test::Between(lo, hi) => *lo <= x && x <= *hi,
        Test::InNum(set) => set.contains(&x),
        Test::NotInNum(set) => !set.contains(&x),
        Test::EqStr(..) | Test::InStr(_) | Test::NotInStr(_) | Test::IsMissing => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(operand: Operand, test: Test, what: &str) -> Rule {
        Rule::Leaf {
            operand,
            test,
            what: what.into(),
        }
    }

    #[test]
    fn not_in_and_explain_with_the_tested_value() {
        let f = [2.0, f32::NAN];
        let not_in = leaf(Operand::Feature(0), Test::NotInNum([1.0, 3.0].into()), "n");
        assert!(check(&not_in, &f, &[]).is_none());
        let not_in = leaf(Operand::Feature(0), Test::NotInNum([2.0].into()), "n");
        assert_eq!(check(&not_in, &f, &[]), Some("n"));
        // A missing value fails every test but `is_missing`, `not_in` too.
        let on_missing = leaf(Operand::Feature(1), Test::NotInNum([2.0].into()), "m");
        assert_eq!(check(&on_missing, &f, &[]), Some("m"));
        let ctx = [Some(CtxValue::Str("ios".into()))];
        let strs = leaf(
            Operand::Context(0),
            Test::NotInStr(["web".into()].into()),
            "s",
        );
        assert!(check(&strs, &[], &ctx).is_none());

        let what = What::with_value(
            "offers[0].eligibility.all[1]: churn_score >= 0.3",
            "offers[0].eligibility.all[1]: churn_score is ".into(),
            ", the rule needs >= 0.3".into(),
        );
        let fast = Rule::leaf(Operand::Feature(0), Test::Cmp(CmpOp::Ge, 0.3), what);
        assert!(matches!(fast, Rule::FeatureIn(_)));
        let ok = leaf(Operand::Feature(0), Test::IsMissing.clone(), "ok");
        let all = Rule::All([Rule::Not(Box::new(ok), "not".into()), fast].into());
        let refs: Vec<Option<&CtxValue<'_>>> = Vec::new();
        let input = RuleInput {
            features: (&[0.13, f32::NAN]).into(),
            context: &refs,
        };
        let shown = |op: Operand| match op {
            Operand::Feature(c) => format!("{}", [0.13_f32, f32::NAN][c as usize]),
            Operand::Context(_) => "?".into(),
        };
        assert_eq!(
            all.check(&input),
            Some("offers[0].eligibility.all[1]: churn_score >= 0.3")
        );
        assert_eq!(
            all.explain(&input, &shown).as_deref(),
            Some("offers[0].eligibility.all[1]: churn_score is 0.13, the rule needs >= 0.3")
        );
        let holds = RuleInput {
            features: (&[0.5, f32::NAN]).into(),
            context: &refs,
        };
        assert_eq!(all.explain(&holds, &shown), None);
        // Combinators say what they said before.
        let any = Rule::Any(
            [leaf(Operand::Feature(1), Test::Cmp(CmpOp::Gt, 1.0), "x")].into(),
            "any".into(),
        );
        assert_eq!(any.explain(&input, &shown).as_deref(), Some("any"));
    }

    fn check<'a>(
        rule: &'a Rule,
        features: &[f32],
        ctx: &[Option<CtxValue<'_>>],
    ) -> Option<&'a str> {
        let refs: Vec<Option<&CtxValue<'_>>> = ctx.iter().map(Option::as_ref).collect();
        rule.check(&RuleInput {
            features: features.into(),
            context: &refs,
        })
    }

    #[test]
    fn comparisons_on_features() {
        let f = [5.0, f32::NAN];
        let cases = [
            (CmpOp::Eq, 5.0, true),
            (CmpOp::Ne, 5.0, false),
            (CmpOp::Lt, 6.0, true),
            (CmpOp::Le, 5.0, true),
            (CmpOp::Gt, 5.0, false),
            (CmpOp::Ge, 5.0, true),
        ];
        for (op, v, holds) in cases {
            let r = leaf(Operand::Feature(0), Test::Cmp(op, v), "r");
            assert_eq!(check(&r, &f, &[]).is_none(), holds, "{op:?} {v}");
            // Every comparison on a missing value fails, `ne` included.
            let m = leaf(Operand::Feature(1), Test::Cmp(op, v), "m");
            assert_eq!(check(&m, &f, &[]), Some("m"));
        }
        let between = leaf(Operand::Feature(0), Test::Between(1.0, 5.0), "b");
        assert!(check(&between, &f, &[]).is_none());
        let outside = leaf(Operand::Feature(0), Test::Between(5.5, 9.0), "b");
        assert_eq!(check(&outside, &f, &[]), Some("b"));
        let inn = leaf(Operand::Feature(0), Test::InNum([1.0, 5.0].into()), "in");
        assert!(check(&inn, &f, &[]).is_none());
        let miss = leaf(Operand::Feature(1), Test::IsMissing, "miss");
        assert!(check(&miss, &f, &[]).is_none());
        let not_miss = leaf(Operand::Feature(0), Test::IsMissing, "miss");
        assert_eq!(check(&not_miss, &f, &[]), Some("miss"));
    }

    #[test]
    fn feature_intervals_agree_with_the_comparisons_they_replace() {
        let consts = [
            0.0,
            -0.0,
            1.0,
            -2.5,
            0.1,
            85.21,
            1e-30,
            f64::MAX,
            f64::MIN_POSITIVE,
        ];
        let mut xs: Vec<f32> = vec![f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 0.0, -0.0];
        for &v in &consts {
            let f = v as f32;
            xs.extend([f, f.next_up(), f.next_down(), -f, f32::MAX, f32::MIN]);
        }
        let mut tests: Vec<Test> = Vec::new();
        for &v in &consts {
            tests.extend(CmpOp::ALL.map(|op| Test::Cmp(op, v)));
            tests.push(Test::Between(v, v + 1.0));
            tests.push(Test::Between(-v, v));
        }
        let mut intervals = 0;
        for test in tests {
            let fast = Rule::leaf(Operand::Feature(0), test.clone(), "r");
            intervals += usize::from(matches!(fast, Rule::FeatureIn(_)));
            let general = leaf(Operand::Feature(0), test.clone(), "r");
            for &x in &xs {
                assert_eq!(
                    check(&fast, &[x], &[]),
                    check(&general, &[x], &[]),
                    "{test:?} on {x}"
                );
            }
            // A column past the row is missing.
            assert_eq!(check(&fast, &[], &[]), check(&general, &[], &[]));
        }
        assert_eq!(intervals, consts.len() * 7, "all but `ne` become intervals");
    }

    #[test]
    fn context_strings_and_numbers() {
        let ctx = [
            Some(CtxValue::Str("ios".into())),
            Some(CtxValue::Num(3.0)),
            None,
        ];
        let eq = leaf(Operand::Context(0), Test::EqStr("ios".into(), false), "eq");
        assert!(check(&eq, &[], &ctx).is_none());
        let ne = leaf(Operand::Context(0), Test::EqStr("ios".into(), true), "ne");
        assert_eq!(check(&ne, &[], &ctx), Some("ne"));
        let inn = leaf(
            Operand::Context(0),
            Test::InStr(["android".into(), "ios".into()].into()),
            "in",
        );
        assert!(check(&inn, &[], &ctx).is_none());
        let gt = leaf(Operand::Context(1), Test::Cmp(CmpOp::Gt, 2.0), "gt");
        assert!(check(&gt, &[], &ctx).is_none());
        // A string compared as a number fails; an absent key is missing.
        let num_on_str = leaf(Operand::Context(0), Test::Cmp(CmpOp::Gt, 2.0), "x");
        assert_eq!(check(&num_on_str, &[], &ctx), Some("x"));
        let absent = leaf(Operand::Context(2), Test::IsMissing, "absent");
        assert!(check(&absent, &[], &ctx).is_none());
    }

    #[test]
    fn an_all_of_intervals_says_what_the_all_says() {
        let what = |i: usize| {
            What::with_value(
                format!("all[{i}]"),
                format!("all[{i}]: x{i} is "),
                ", out of range".into(),
            )
        };
        let children = || -> Box<[Rule]> {
            [
                Rule::leaf(Operand::Feature(0), Test::Cmp(CmpOp::Ge, 2.0), what(0)),
                Rule::leaf(Operand::Feature(1), Test::Between(1.0, 3.0), what(1)),
                Rule::leaf(Operand::Feature(2), Test::Cmp(CmpOp::Lt, 0.5), what(2)),
            ]
            .into()
        };
        let fast = Rule::all(children());
        assert!(matches!(&fast, Rule::Intervals(t) if t.len() == 3));
        let general = Rule::All(children());
        // A `ne` leaf is no interval: the `all` stays general.
        let mixed = [
            Rule::leaf(Operand::Feature(0), Test::Cmp(CmpOp::Ge, 2.0), "a"),
            Rule::leaf(Operand::Feature(1), Test::Cmp(CmpOp::Ne, 2.0), "b"),
        ];
        assert!(matches!(Rule::all(mixed.into()), Rule::All(_)));
        let shown = |op: Operand| match op {
            Operand::Feature(c) => format!("f{c}"),
            Operand::Context(_) => "?".into(),
        };
        let refs: Vec<Option<&CtxValue<'_>>> = Vec::new();
        let rows: [&[f32]; 6] = [
            &[2.0, 1.0, 0.0],
            &[1.9, 1.0, 0.0],
            &[2.0, 3.5, 0.0],
            &[2.0, 2.0, 0.5],
            &[f32::NAN, 2.0, 0.0],
            &[2.0, 2.0],
        ];
        let mut failed = Vec::new();
        for row in rows {
            let input = RuleInput {
                features: row.into(),
                context: &refs,
            };
            assert_eq!(fast.check(&input), general.check(&input), "{row:?}");
            assert_eq!(
                fast.explain(&input, &shown),
                general.explain(&input, &shown),
                "{row:?}"
            );
            failed.push(fast.explain(&input, &shown).map(|c| c.into_owned()));
        }
        assert_eq!(
            failed,
            [
                None,
                Some("all[0]: x0 is f0, out of range".to_owned()),
                Some("all[1]: x1 is f1, out of range".to_owned()),
                Some("all[2]: x2 is f2, out of range".to_owned()),
                Some("all[0]: x0 is f0, out of range".to_owned()),
                Some("all[2]: x2 is f2, out of range".to_owned()),
            ]
        );
    }

    #[test]
    fn combinators_report_the_failing_rule() {
        let f = [5.0, 1.0];
        let a = leaf(Operand::Feature(0), Test::Cmp(CmpOp::Ge, 3.0), "a");
        let b = leaf(Operand::Feature(1), Test::Cmp(CmpOp::Eq, 0.0), "b");
        let all = Rule::All([a.clone(), b.clone()].into());
        assert_eq!(check(&all, &f, &[]), Some("b"));
        let any = Rule::Any([a.clone(), b.clone()].into(), "any".into());
        assert!(check(&any, &f, &[]).is_none());
        let none = Rule::Any([b.clone()].into(), "any-b".into());
        assert_eq!(check(&none, &f, &[]), Some("any-b"));
        let not = Rule::Not(Box::new(a), "not-a".into());
        assert_eq!(check(&not, &f, &[]), Some("not-a"));
        let not_b = Rule::Not(Box::new(b), "not-b".into());
        assert!(check(&not_b, &f, &[]).is_none());
    }
}
