//! Snapshot values a categorical feature's training never saw: the trees score them as
//! missing, which is right for a new plan and wrong for a renamed one (`Gold` against `gold`)
//! or a new device generation the model was not retrained for, and only the share of
//! customers tells the two apart. A string column is checked through its dictionary, a column
//! of numbers the model lists as its categories (a pandas category of numbers) value by value.
//!
//! Faults and warnings, once per file: a warning with the values and the customers who hold
//! them; a fault when no customer holds a value the model knows (every one would be scored as
//! if the feature were missing: the column holds something else than the model was trained
//! on).

use std::collections::{HashMap, HashSet};

use super::Ctx;
use crate::engine::trees::TreeEnsemble;
use crate::model::walk::Fault;
use crate::model::ColumnInfo;

/// Values listed in a message; the rest are counted.
const LISTED: usize = 5;
/// Distinct numbers tracked per column; a column holding more is said to hold more.
const MAX_DISTINCT: usize = 1 << 16;

/// Warnings given so far: several files reading one column warn of its values once, with the
/// places of the others (one line per offer said the same thing over and over).
#[derive(Default)]
pub(super) struct Said {
    /// Per message, its index among the warnings and the other places it holds for.
    given: HashMap<String, (usize, Vec<String>)>,
}

/// What a snapshot column holds outside a feature's categories.
struct Unseen {
    /// Up to [`LISTED`] of those values, as a message writes them.
    listed: Vec<String>,
    /// Distinct values outside the categories, and whether there may be more.
    outside: (usize, bool),
    /// Distinct values the column holds, and whether there may be more.
    values: (usize, bool),
    /// Customers holding a value outside and customers in all, when the cells could be read.
    held: Option<(u64, u64)>,
    /// Customers holding no value.
    empty: u64,
    /// No customer holds a value the model knows, and some hold one it does not.
    none_known: bool,
}

/// Warns of (or refuses) the snapshot values each categorical feature of `ensemble` never saw.
pub(super) fn check(cx: &mut Ctx<'_>, ensemble: &TreeEnsemble, features: &[String], path: &str) {
    let name = |f: usize| features.get(f).map_or("?", String::as_str).to_owned();
    let mut found: Vec<(String, Unseen, String)> = Vec::new();
    for (feature, column, codes) in ensemble.unseen_codes() {
        if let Some(u) = strings(cx, column, &codes) {
            found.push((
                name(feature),
                u,
                "the column holds other values than the model was trained on (codes where it \
                 has names, or its names written another way: letter case, spaces?); export the \
                 values as it was trained on them"
                    .into(),
            ));
        }
    }
    for (feature, column, categories) in ensemble.listed_categories() {
        if let Some(u) = numbers(cx, column, categories) {
            let trained: Vec<String> = categories.iter().take(LISTED).map(number).collect();
            found.push((
                name(feature),
                u,
                format!(
                    "the column holds other numbers than the model was trained on ({}{}); \
                     export the values it was trained on",
                    trained.join(", "),
                    and_more(categories.len(), trained.len(), false),
                ),
            ));
        }
    }
    for (name, u, advice) in found {
        say(cx, path, &name, &u, &advice);
    }
}

/// A string column's values outside the model's categories (`codes`: their dictionary codes).
fn strings(cx: &Ctx<'_>, column: u32, codes: &[u32]) -> Option<Unseen> {
    let ColumnInfo::Strings(dict) = cx.schema.info(column) else {
        return None;
    };
    let mut unseen = vec![false; dict.len()];
    for &c in codes {
        unseen[c as usize] = true;
    }
    let mut empty = 0u64;
    let held = cx.schema.cells(column).map(|cells| {
        let (mut hit, mut all) = (0u64, 0u64);
        for x in cells {
            all += 1;
            empty += u64::from(x.is_nan() || x < 0.0);
            hit += u64::from(x >= 0.0 && unseen.get(x as usize).copied().unwrap_or(false));
        }
        (hit, all)
    });
    Some(Unseen {
        listed: codes
            .iter()
            .take(LISTED)
            .filter_map(|&c| dict.get(c))
            .map(|v| format!("{v:?}"))
            .collect(),
        outside: (codes.len(), false),
        values: (dict.len(), false),
        held,
        empty,
        none_known: codes.len() == dict.len() && held.is_some_and(|(hit, _)| hit > 0),
    })
}

/// A column of numbers' values outside the numbers the model lists as its categories (matched
/// exactly, as scoring matches them); `None` when every value is listed.
fn numbers(cx: &Ctx<'_>, column: u32, categories: &[f64]) -> Option<Unseen> {
    let bits = |x: f64| if x == 0.0 { 0u64 } else { x.to_bits() };
    let known: HashSet<u64> = categories.iter().map(|&c| bits(c)).collect();
    let (mut values, mut outside) = (HashSet::new(), HashSet::new());
    let (mut hit, mut present, mut all) = (0u64, 0u64, 0u64);
    for x in cx.schema.cells(column)? {
        all += 1;
        if x.is_nan() {
            continue;
        }
        present += 1;
        let b = bits(x);
        if values.len() < MAX_DISTINCT {
            values.insert(b);
        }
        if !known.contains(&b) {
            hit += 1;
            if outside.len() < MAX_DISTINCT {
                outside.insert(b);
            }
        }
    }
    if hit == 0 {
        return None;
    }
    let mut listed: Vec<f64> = outside.iter().map(|&b| f64::from_bits(b)).collect();
    listed.sort_by(f64::total_cmp);
    Some(Unseen {
        listed: listed.iter().take(LISTED).map(|&x| number(&x)).collect(),
        outside: (outside.len(), outside.len() == MAX_DISTINCT),
        values: (values.len(), values.len() == MAX_DISTINCT),
        held: Some((hit, all)),
        empty: all - present,
        none_known: hit == present,
    })
}

/// A number as a message writes it: `6`, not `6.0`.
fn number(x: &f64) -> String {
    format!("{x}")
}

/// ` and N more` (`and more` when the count is a floor), or nothing.
fn and_more(total: usize, listed: usize, at_least: bool) -> String {
    match total.saturating_sub(listed) {
        0 => String::new(),
        _ if at_least => " and more".into(),
        n => format!(" and {n} more"),
    }
}

fn say(cx: &mut Ctx<'_>, path: &str, name: &str, u: &Unseen, advice: &str) {
    let listed = format!(
        "{}{}",
        u.listed.join(", "),
        and_more(u.outside.0, u.listed.len(), u.outside.1)
    );
    let values = format!("{}{}", if u.values.1 { "over " } else { "" }, u.values.0);
    if u.none_known {
        let none = if u.values == (1, false) {
            format!("the snapshot's one value ({listed}) is not")
        } else {
            format!("none of the snapshot's {values} values ({listed}) is")
        };
        let empty = match u.held {
            Some((_, all)) if u.empty > 0 => {
                let verb = if u.empty == 1 { "holds" } else { "hold" };
                format!(" ({} of {all} customers {verb} no value)", u.empty)
            }
            _ => String::new(),
        };
        cx.faults.push(
            path,
            format!(
                "feature `{name}`: {none} among the model's categories, so every customer would \
                 be scored as if `{name}` were missing{empty}: {advice}"
            ),
        );
        return;
    }
    let customers = u.held.map_or(String::new(), |(hit, all)| {
        format!(
            ", held by {hit} of {all} customers, {:.2} %",
            100.0 * hit as f64 / all.max(1) as f64
        )
    });
    let n = u.outside.0;
    let message = format!(
        "feature `{name}`: {n}{} of the snapshot's {values} values {} not among the model's \
         categories ({listed}{customers}): they are scored as if `{name}` were missing",
        if u.outside.1 { " or more" } else { "" },
        if n == 1 { "is" } else { "are" },
    );
    if let Some((at, others)) = cx.trees.unseen.given.get_mut(&message) {
        others.push(path.to_owned());
        if let Some(w) = cx.warnings.get_mut(*at) {
            w.message = format!("{message} (the same at {})", others.join(", "));
        }
        return;
    }
    (cx.trees.unseen.given).insert(message.clone(), (cx.warnings.len(), Vec::new()));
    cx.warnings.push(Fault {
        path: path.to_owned(),
        message,
    });
}
