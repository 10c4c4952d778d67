//! An offer's `eligibility`: `all`/`any`/`not` over leaves that test a feature or a context
//! key, with names resolved to columns and context slots, and each leaf's explain text
//! written once here.

use simd_json::prelude::*;

use super::Ctx;
use crate::engine::{CmpOp, Operand, Rule, Test};
use crate::model::walk::{index, join, Collects, Faults, Value};
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
                Rule::All(children)
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
    let (operand, label, test) = cx.checked(|cx| {
        let f = &mut cx.faults;
        let (operand, label) = match (obj.get("feature"), obj.get("context")) {
            (Some(name), None) => {
                let name = f.string(name, &join(path, "feature"), MAX_NAME_BYTES)?;
                match cx.schema.column(name) {
                    Some(col) => {
                        cx.features_used.insert(name.to_owned());
                        (Operand::Feature(col), name.to_owned())
                    }
                    None => {
                        f.push(&join(path, "feature"), format!("unknown feature `{name}`"));
                        return None;
                    }
                }
            }
            (None, Some(key)) => {
                let key = f.string(key, &join(path, "context"), MAX_NAME_BYTES)?;
                let found = cx.context_keys.iter().position(|k| k == key);
                let slot = match found {
                    Some(i) => i,
                    None => {
                        cx.context_keys.push(key.to_owned());
                        cx.context_keys.len() - 1
                    }
                };
                (Operand::Context(slot as u16), format!("context.{key}"))
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
        let is_context = matches!(operand, Operand::Context(_));
        let test = read_test(f, obj, path, op, is_context)?;
        Some((operand, label, test))
    })?;
    let what = match obj.get("name") {
        Some(n) => {
            let name = cx
                .faults
                .string(n, &join(path, "name"), MAX_DESCRIPTION_BYTES)?;
            format!("{path}: {name}")
        }
        None => format!("{path}: {}", describe(&label, &test)),
    };
    Some(Rule::leaf(operand, test, what.into()))
}

/// The leaf's operator and its operands.
fn read_test(
    f: &mut Faults,
    obj: &crate::model::walk::Object<'_>,
    path: &str,
    op: &str,
    is_context: bool,
) -> Option<Test> {
    let need = |f: &mut Faults, key: &str| f.req(obj, key, path);
    Some(match op {
        "eq" | "ne" | "lt" | "le" | "gt" | "ge" => {
            let v = need(f, "value")?;
            let cmp = match op {
                "eq" => CmpOp::Eq,
                "ne" => CmpOp::Ne,
                "lt" => CmpOp::Lt,
                "le" => CmpOp::Le,
                "gt" => CmpOp::Gt,
                _ => CmpOp::Ge,
            };
            match v.as_str() {
                Some(s) if is_context && matches!(cmp, CmpOp::Eq | CmpOp::Ne) => {
                    Test::EqStr(s.into(), cmp == CmpOp::Ne)
                }
                _ => Test::Cmp(cmp, f.number(v, &join(path, "value"))?),
            }
        }
        "between" => {
            let lo = need(f, "min").and_then(|v| f.number(v, &join(path, "min")));
            let hi = need(f, "max").and_then(|v| f.number(v, &join(path, "max")));
            let (lo, hi) = (lo?, hi?);
            if hi < lo {
                f.push(&join(path, "max"), "`max` is below `min`");
                return None;
            }
            Test::Between(lo, hi)
        }
        "in" => {
            let vpath = join(path, "values");
            let items = need(f, "values").and_then(|v| f.array(v, &vpath, MAX_RULE_LIST))?;
            if items.is_empty() {
                f.push(&vpath, "must not be empty");
                return None;
            }
            if is_context && items.iter().all(|i| i.as_str().is_some()) {
                Test::InStr(
                    items
                        .iter()
                        .filter_map(|i| i.as_str())
                        .map(Into::into)
                        .collect(),
                )
            } else {
                let nums: Vec<Option<f64>> = items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| f.number(v, &index(&vpath, i)))
                    .collect();
                Test::InNum(nums.into_iter().collect::<Option<Vec<f64>>>()?.into())
            }
        }
        "is_missing" => Test::IsMissing,
        other => {
            f.push(
                &join(path, "op"),
                format!(
                    "unknown operator `{other}` (eq, ne, lt, le, gt, ge, in, between, is_missing)"
                ),
            );
            return None;
        }
    })
}

/// The explain text of a leaf without a `name`, e.g. `tenure_months >= 12`.
fn describe(label: &str, test: &Test) -> String {
    match test {
        Test::Cmp(op, v) => {
            let sym = match op {
                CmpOp::Eq => "==",
                CmpOp::Ne => "!=",
                CmpOp::Lt => "<",
                CmpOp::Le => "<=",
                CmpOp::Gt => ">",
                CmpOp::Ge => ">=",
            };
            format!("{label} {sym} {v}")
        }
        Test::Between(lo, hi) => format!("{label} between {lo} and {hi}"),
        Test::InNum(set) => format!("{label} in {set:?}"),
        Test::EqStr(s, false) => format!("{label} == {s:?}"),
        Test::EqStr(s, true) => format!("{label} != {s:?}"),
        Test::InStr(set) => format!("{label} in {set:?}"),
        Test::IsMissing => format!("{label} is missing"),
    }
}
