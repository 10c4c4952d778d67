//! An offer's `eligibility`: `all`/`any`/`not` over leaves that test a feature or a context
//! key, with names resolved to columns and context slots, and each leaf's explain text
//! written once here.
//!
//! On a string column, `eq`, `ne`, `in` and `not_in` take strings and become tests on the
//! column's dictionary codes (requests compare numbers); a value the dictionary lacks never
//! matches and is a warning with its path. A numeric operator on a string column, or a
//! string on a numeric one, is a fault with its path.

use simd_json::prelude::*;

use super::Ctx;
use crate::engine::{CmpOp, Operand, Rule, Test, What};
use crate::model::walk::{index, join, Collects, Fault, Faults, Value};
use crate::model::ColumnInfo;
use crate::model::{MAX_DESCRIPTION_BYTES, MAX_NAME_BYTES, MAX_OPERATOR_BYTES, MAX_RULE_LIST};

/// A single condition's fields.
pub(crate) const LEAF_KEYS: &[&str] = &[
    "feature", "context", "op", "value", "values", "min", "max", "name",
];

/// Why a group (`all`, `any`, `not`) with other fields is refused: a `name` there gets a word
/// of its own, as it is the mistake people make.
fn only_field(comb: &str, obj: &simd_json::borrowed::Object<'_>) -> String {
    if obj.contains_key("name") {
        format!(
            "`{comb}` must be the rule's only field: `name` is allowed on single conditions only (a rule with `feature` or `context`), not on a group; name the conditions inside it"
        )
    } else {
        format!("`{comb}` must be the rule's only field")
    }
}

/// Compiles one rule; `Some(None)` is "always eligible" (never produced here), `None` a fault.
pub(super) fn compile_rule(
    cx: &mut Ctx<'_>,
    v: &Value<'_>,
    path: &str,
    depth: usize,
) -> Option<Option<Rule>> {
    compile_rule_inner(cx, v, path, depth).map(Some)
}

fn compile_rule_inner(cx: &mut Ctx<'_>, v: &Value<'_>, path: &str, depth: usize) -> Option<Rule> {
    if depth >= cx.limits.max_rule_depth {
        cx.faults.push(
            path,
            format!("rules nested deeper than {}", cx.limits.max_rule_depth),
        );
        return None;
    }
    let Some(obj) = v.as_object() else {
        cx.faults.push(path, "expected a rule object");
        return None;
    };
    for comb in ["all", "any"] {
        if let Some(list) = obj.get(comb) {
            let cpath = join(path, comb);
            if obj.len() != 1 {
                cx.faults.push(path, only_field(comb, obj));
                return None;
            }
            let items = cx.faults.array(list, &cpath, MAX_RULE_LIST)?;
            if items.is_empty() {
                cx.faults.push(&cpath, "must not be empty");
                return None;
            }
            let children: Vec<Option<Rule>> = items
                .iter()
                .enumerate()
                .map(|(i, item)| compile_rule_inner(cx, item, &index(&cpath, i), depth + 1))
                .collect();
            let children: Option<Vec<Rule>> = children.into_iter().collect();
            let children = children?.into_boxed_slice();
            return Some(if comb == "all" {
                Rule::all(children)
            } else {
                Rule::Any(
                    children,
                    format!("{cpath}: none of the alternatives holds").into(),
                )
            });
        }
    }
    if let Some(inner) = obj.get("not") {
        if obj.len() != 1 {
            cx.faults.push(path, only_field("not", obj));
            return None;
        }
        let child = compile_rule_inner(cx, inner, &join(path, "not"), depth + 1)?;
        return Some(Rule::Not(
            Box::new(child),
            format!("{path}: `not` rule").into(),
        ));
    }
    compile_leaf(cx, v, path)
}

fn compile_leaf(cx: &mut Ctx<'_>, v: &Value<'_>, path: &str) -> Option<Rule> {
    cx.leaves += 1;
    if cx.leaves > cx.limits.max_rules {
        if cx.leaves == cx.limits.max_rules + 1 {
            cx.faults.push(
                path,
                format!("more than {} rule leaves in the model", cx.limits.max_rules),
            );
        }
        return None;
    }
    let obj = cx.faults.object(v, path, LEAF_KEYS)?;
    let (operand, label, test, shown) = cx.checked(|cx| {
        let f = &mut cx.faults;
        // Said by a fault that reads a text column as numbers.
        let mut holds_strings = String::new();
        let (operand, label, kind) = match (obj.get("feature"), obj.get("context")) {
            (Some(name), None) => {
                let name = f.string(name, &join(path, "feature"), MAX_NAME_BYTES)?;
                match cx.schema.column(name) {
                    Some(col) => {
                        cx.features_used.insert(name.to_owned());
                        let kind = match cx.schema.info(col) {
                            ColumnInfo::Number => Kind::Number,
                            ColumnInfo::Strings(d) => {
                                holds_strings = cx.schema.holds_strings(name, col);
                                Kind::Strings(d)
                            }
                            ColumnInfo::Unknown => Kind::Unknown,
                        };
                        (Operand::Feature(col), name.to_owned(), kind)
                    }
                    None => {
                        f.push(&join(path, "feature"), cx.schema.unknown(name));
                        return None;
                    }
                }
            }
            (None, Some(key)) => {
                let key = f.string(key, &join(path, "context"), MAX_NAME_BYTES)?;
                (
                    Operand::Context(super::context_slot(&mut cx.context_keys, key)),
                    format!("context.{key}"),
                    Kind::Context,
                )
            }
            _ => {
                f.push(
                    path,
                    "a rule needs exactly one of `feature` or `context` (or is `all`/`any`/`not`)",
                );
                return None;
            }
        };
        let op = f
            .req(obj, "op", path)
            .and_then(|v| f.string(v, &join(path, "op"), MAX_OPERATOR_BYTES))?;
        let leaf = Leaf {
            obj,
            path,
            label: &label,
            kind,
            holds_strings: &holds_strings,
        };
        let (test, shown) = read_test(f, &mut cx.warnings, &leaf, op)?;
        Some((operand, label, test, shown))
    })?;
    let (what, before, after) = match obj.get("name") {
        Some(n) => {
            let name = cx
                .faults
                .string(n, &join(path, "name"), MAX_DESCRIPTION_BYTES)?;
            (
                format!("{path}: {name}"),
                format!("{path}: {name} ({label} is "),
                format!("{})", needs(&shown)),
            )
        }
        None => (
            format!("{path}: {}", describe(&label, &shown)),
            format!("{path}: {label} is "),
            needs(&shown),
        ),
    };
    Some(Rule::leaf(
        operand,
        test,
        What::with_value(what, before, after),
    ))
}

/// What a leaf reads, as compiling must know it to read the leaf's values.
#[derive(Clone, Copy)]
enum Kind<'d> {
    /// A request context key: strings or numbers, compared as they come.
    Context,
    /// A numeric snapshot column.
    Number,
    /// A string snapshot column: values become its dictionary's codes.
    Strings(&'d crate::features::Dictionary),
    /// A snapshot column of unknown kind (checked without a snapshot).
    Unknown,
}

/// The keys that carry a leaf's operands.
const OPERANDS: [&str; 4] = ["value", "values", "min", "max"];

/// One leaf being read.
struct Leaf<'a, 'v, 'd> {
    obj: &'a crate::model::walk::Object<'v>,
    path: &'a str,
    label: &'a str,
    kind: Kind<'d>,
    /// "`segment` holds strings", with why when a word turned a column of numbers.
    holds_strings: &'a str,
}

/// The leaf's operator and operands: the test the engine runs, and the same test with the
/// strings as the model wrote them (what explain shows).
fn read_test(
    f: &mut Faults,
    warnings: &mut Vec<Fault>,
    leaf: &Leaf<'_, '_, '_>,
    op: &str,
) -> Option<(Test, Test)> {
    let Leaf {
        obj,
        path,
        label,
        kind,
        holds_strings,
    } = *leaf;
    let need = |f: &mut Faults, key: &str| f.req(obj, key, path);
    // An operand the operator does not read is ignored: said, since the author meant something
    // by it (`is_missing` with a `value`, `eq` with a list of `values`).
    let reads: &[&str] = match op {
        "eq" | "ne" | "lt" | "le" | "gt" | "ge" => &["value"],
        "in" | "not_in" => &["values"],
        "between" => &["min", "max"],
        "is_missing" => &[],
        _ => &OPERANDS,
    };
    // One value where a list is read, or a list where one value is: the operator meant.
    let swapped = match op {
        "eq" | "ne" if obj.get("value").is_none() && obj.get("values").is_some() => Some(format!(
            "`{op}` compares one `value`; for a list of `values` use `{}`",
            if op == "eq" { "in" } else { "not_in" }
        )),
        "in" | "not_in" if obj.get("values").is_none() && obj.get("value").is_some() => {
            Some(format!(
                "`{op}` reads a list of `values`; for one `value` use `{}`, or write `values`: [...]",
                if op == "in" { "eq" } else { "ne" }
            ))
        }
        _ => None,
    };
    if let Some(message) = swapped {
        f.push(&join(path, "op"), message);
        return None;
    }
    for key in OPERANDS {
        if !reads.contains(&key) && obj.get(key).is_some() {
            warnings.push(Fault {
                path: join(path, key),
                message: format!("`{op}` does not read `{key}`: it is ignored"),
            });
        }
    }
    let strings_only = |f: &mut Faults| {
        f.push(
            &join(path, "op"),
            format!(
                "`{op}` compares numbers, and {holds_strings} (use eq, ne, in, not_in or \
                 is_missing)"
            ),
        );
    };
    // The codes of string values on a string column; a value the dictionary lacks never
    // matches, and is warned about with its path (a typo must not empty a target quietly).
    let mut codes = |values: &[(String, &str)], d: &crate::features::Dictionary| -> Vec<f64> {
        let mut out = Vec::with_capacity(values.len());
        for (vpath, v) in values {
            match d.code(v) {
                Some(c) => out.push(f64::from(c)),
                None => warnings.push(Fault {
                    path: vpath.clone(),
                    message: format!(
                        "{v:?} is not a value of `{label}` in the snapshot ({}): {}",
                        sample(d),
                        match op {
                            "ne" | "not_in" => {
                                "no customer has it, so this test holds for every customer with a value"
                            }
                            _ => "it never matches",
                        }
                    ),
                }),
            }
        }
        out
    };
    Some(match op {
        "eq" | "ne" | "lt" | "le" | "gt" | "ge" => {
            let v = need(f, "value")?;
            let vpath = join(path, "value");
            let cmp = match op {
                "eq" => CmpOp::Eq,
                "ne" => CmpOp::Ne,
                "lt" => CmpOp::Lt,
                "le" => CmpOp::Le,
                "gt" => CmpOp::Gt,
                _ => CmpOp::Ge,
            };
            let equality = matches!(cmp, CmpOp::Eq | CmpOp::Ne);
            let negate = cmp == CmpOp::Ne;
            match (kind, v.as_str()) {
                (Kind::Strings(_), _) if !equality => {
                    strings_only(f);
                    return None;
                }
                (Kind::Strings(d), Some(s)) => {
                    let shown = Test::EqStr(s.into(), negate);
                    let test = match codes(&[(vpath, s)], d).first() {
                        Some(&c) => Test::Cmp(cmp, c),
                        None if negate => Test::NotInNum(Box::default()),
                        None => Test::InNum(Box::default()),
                    };
                    (test, shown)
                }
                (Kind::Strings(_), None) => {
                    f.push(&vpath, format!("expected a string: {holds_strings}"));
                    return None;
                }
                (Kind::Number, Some(_)) => {
                    f.push(
                        &vpath,
                        format!("expected a number: `{label}` holds numbers"),
                    );
                    return None;
                }
                (Kind::Context | Kind::Unknown, Some(s)) if equality => {
                    let shown = Test::EqStr(s.into(), negate);
                    let test = match kind {
                        Kind::Context => shown.clone(),
                        // Without a snapshot there are no codes: checked, never served.
                        _ if negate => Test::NotInNum(Box::default()),
                        _ => Test::InNum(Box::default()),
                    };
                    (test, shown)
                }
                _ => {
                    let t = Test::Cmp(cmp, f.number(v, &vpath)?);
                    (t.clone(), t)
                }
            }
        }
        "between" => {
            if matches!(kind, Kind::Strings(_)) {
                strings_only(f);
                return None;
            }
            let lo = need(f, "min").and_then(|v| f.number(v, &join(path, "min")));
            let hi = need(f, "max").and_then(|v| f.number(v, &join(path, "max")));
            let (lo, hi) = (lo?, hi?);
            if hi < lo {
                f.push(&join(path, "max"), "`max` is below `min`");
                return None;
            }
            let t = Test::Between(lo, hi);
            (t.clone(), t)
        }
        "in" | "not_in" => {
            let negate = op == "not_in";
            let vpath = join(path, "values");
            let items = need(f, "values").and_then(|v| f.array(v, &vpath, MAX_RULE_LIST))?;
            if items.is_empty() {
                f.push(&vpath, "must not be empty");
                return None;
            }
            let all_strings = items.iter().all(|i| i.as_str().is_some());
            let strings: Vec<(String, &str)> = items
                .iter()
                .enumerate()
                .filter_map(|(i, v)| Some((index(&vpath, i), v.as_str()?)))
                .collect();
            let str_test = |set: Box<[Box<str>]>| {
                if negate {
                    Test::NotInStr(set)
                } else {
                    Test::InStr(set)
                }
            };
            let num_test = |set: Box<[f64]>| {
                if negate {
                    Test::NotInNum(set)
                } else {
                    Test::InNum(set)
                }
            };
            let shown = str_test(strings.iter().map(|(_, s)| (*s).into()).collect());
            match kind {
                Kind::Strings(d) => {
                    if let Some(i) = items.iter().position(|i| i.as_str().is_none()) {
                        f.push(
                            &index(&vpath, i),
                            format!("expected a string: {holds_strings}"),
                        );
                        return None;
                    }
                    (num_test(codes(&strings, d).into()), shown)
                }
                Kind::Context if all_strings => (shown.clone(), shown),
                Kind::Unknown if all_strings => (num_test(Box::default()), shown),
                _ => {
                    if kind_is_number(kind) {
                        if let Some(i) = items.iter().position(|i| i.as_str().is_some()) {
                            f.push(
                                &index(&vpath, i),
                                format!("expected a number: `{label}` holds numbers"),
                            );
                            return None;
                        }
                    }
                    let nums: Vec<Option<f64>> = items
                        .iter()
                        .enumerate()
                        .map(|(i, v)| f.number(v, &index(&vpath, i)))
                        .collect();
                    let t = num_test(nums.into_iter().collect::<Option<Vec<f64>>>()?.into());
                    (t.clone(), t)
                }
            }
        }
        "is_missing" => (Test::IsMissing, Test::IsMissing),
        other => {
            f.push(
                &join(path, "op"),
                format!(
                    "unknown operator `{other}` (eq, ne, lt, le, gt, ge, in, not_in, between, \
                     is_missing)"
                ),
            );
            return None;
        }
    })
}

fn kind_is_number(kind: Kind<'_>) -> bool {
    matches!(kind, Kind::Number)
}

/// A few of a dictionary's values, for a warning.
fn sample(d: &crate::features::Dictionary) -> String {
    const SHOWN: usize = 8;
    let mut s: Vec<String> = d.iter().take(SHOWN).map(|v| format!("{v:?}")).collect();
    if d.len() > SHOWN {
        s.push(format!("and {} more", d.len() - SHOWN));
    }
    if s.is_empty() {
        return "it holds no value".into();
    }
    format!("it holds {}", s.join(", "))
}

/// The words after the tested value in explain: `, the rule needs >= 0.3`,
/// `, not in gold, platinum`.
fn needs(test: &Test) -> String {
    let list = |set: &[Box<str>]| set.iter().map(|s| &**s).collect::<Vec<_>>().join(", ");
    let nums = |set: &[f64]| {
        set.iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match test {
        Test::Cmp(op, v) => format!(", the rule needs {} {v}", symbol(*op)),
        Test::Between(lo, hi) => format!(", the rule needs between {lo} and {hi}"),
        Test::InNum(set) => format!(", the rule needs one of {}", nums(set)),
        Test::NotInNum(set) => format!(", the rule needs none of {}", nums(set)),
        Test::EqStr(s, false) => format!(", not {s}"),
        Test::EqStr(s, true) => format!(", the rule needs another value than {s}"),
        Test::InStr(set) => format!(", not in {}", list(set)),
        Test::NotInStr(set) => format!(", the rule excludes {}", list(set)),
        Test::IsMissing => ", the rule needs it missing".into(),
    }
}

fn symbol(op: CmpOp) -> &'static str {
    match op {
        CmpOp::Eq => "==",
        CmpOp::Ne => "!=",
        CmpOp::Lt => "<",
        CmpOp::Le => "<=",
        CmpOp::Gt => ">",
        CmpOp::Ge => ">=",
    }
}

/// The explain text of a leaf without a `name`, e.g. `tenure_months >= 12`.
fn describe(label: &str, test: &Test) -> String {
    match test {
        Test::Cmp(op, v) => format!("{label} {} {v}", symbol(*op)),
        Test::Between(lo, hi) => format!("{label} between {lo} and {hi}"),
        Test::InNum(set) => format!("{label} in {set:?}"),
        Test::EqStr(s, false) => format!("{label} == {s:?}"),
        Test::EqStr(s, true) => format!("{label} != {s:?}"),
        Test::InStr(set) => format!("{label} in {set:?}"),
        Test::NotInNum(set) => format!("{label} not in {set:?}"),
        Test::NotInStr(set) => format!("{label} not in {set:?}"),
        Test::IsMissing => format!("{label} is missing"),
    }
}
