//! An offer's `scorer`: logistic weights or a constant checked against the snapshot's
//! columns, a tree ensemble parsed from a file `model::files` read before, or an adaptive
//! scorer's prior, credit rule and `context` features (what it learns is the contact side's,
//! never the model's).

use simd_json::prelude::*;

use super::Ctx;
use crate::engine::adaptive::{Adaptive, Outcome};
use crate::engine::contextual::{
    feature_id, text_level, Context, ContextFeature, Source, MAX_CONTEXT_FEATURES,
};
use crate::engine::policy::stable_hash;
use crate::engine::posterior::MAX_WINDOW_DAYS;
use crate::engine::{Logistic, Scorer};
use crate::model::walk::{index, join, Collects, Fault, Faults, Value};
use crate::model::{ColumnInfo, MAX_NAME_BYTES};

/// Compiles one scorer; `None` after a fault.
pub(super) fn compile_scorer(cx: &mut Ctx<'_>, v: &Value<'_>, path: &str) -> Option<Scorer> {
    let kind = v.get("kind").and_then(|k| k.as_str());
    match kind {
        Some("logistic") => compile_logistic(cx, v, path),
        Some("constant") => {
            let obj = cx.faults.object(v, path, super::scorer_keys("constant"))?;
            let p = cx
                .faults
                .req(obj, "propensity", path)
                .and_then(|p| cx.faults.number_in(p, &join(path, "propensity"), 0.0, 1.0))?;
            Some(Scorer::Constant(p))
        }
        Some(kind @ ("xgboost" | "lightgbm")) => super::trees::compile_trees(cx, v, path, kind),
        Some("adaptive") => compile_adaptive(cx, v, path),
        Some(other) => {
            const KINDS: [&str; 5] = ["logistic", "constant", "xgboost", "lightgbm", "adaptive"];
            let hint = crate::near::did_you_mean(other, KINDS);
            cx.faults.push(
                &join(path, "kind"),
                format!("unknown scorer kind `{other}` ({}){hint}", KINDS.join(", ")),
            );
            None
        }
        None => {
            cx.faults.push(
                &join(path, "kind"),
                "missing field (logistic, constant, xgboost, lightgbm, adaptive)",
            );
            None
        }
    }
}

fn compile_logistic(cx: &mut Ctx<'_>, v: &Value<'_>, path: &str) -> Option<Scorer> {
    let obj = cx.faults.object(v, path, super::scorer_keys("logistic"))?;
    cx.checked(|cx| {
        let f = &mut cx.faults;
        let intercept = match obj.get("intercept") {
            Some(i) => f.number(i, &join(path, "intercept")),
            None => Some(0.0),
        };
        let wpath = join(path, "weights");
        let weights = f.req(obj, "weights", path).and_then(|w| f.map(w, &wpath));
        let ipath = join(path, "impute");
        let impute = match obj.get("impute") {
            Some(i) => f.map(i, &ipath),
            None => None,
        };
        let mut terms = Vec::new();
        let mut context_terms = Vec::new();
        if let Some(weights) = weights {
            let mut names: Vec<&str> = weights.keys().map(|k| k.as_ref()).collect();
            names.sort_unstable();
            for name in names {
                let p = join(&wpath, name);
                let w = weights.get(name).and_then(|w| f.number(w, &p));
                let imp = match impute.and_then(|i| i.get(name)) {
                    Some(x) => f.number(x, &join(&ipath, name)),
                    None => Some(0.0),
                };
                if let Some(key) = context_key(f, name, &p) {
                    if let (Some(w), Some(imp), Some(key)) = (w, imp, key) {
                        context_terms.push((key.to_owned(), w, imp));
                    }
                    continue;
                }
                let col = cx.schema.column(name);
                match col.map(|c| (c, cx.schema.info(c))) {
                    None => f.push(&p, cx.schema.unknown(name)),
                    Some((c, ColumnInfo::Strings(_))) => {
                        let holds = cx.schema.holds_strings(name, c);
                        f.push(
                            &p,
                            format!("{holds}: give a weight per value under `categories.{name}`"),
                        )
                    }
                    Some(_) => {}
                }
                if let (Some(w), Some(col), Some(imp)) = (w, col, imp) {
                    cx.features_used.insert(name.to_owned());
                    terms.push((col, w, imp));
                }
            }
            if let Some(impute) = impute {
                let mut extra: Vec<&str> = impute
                    .keys()
                    .map(|k| k.as_ref())
                    .filter(|k| !weights.contains_key(*k))
                    .collect();
                extra.sort_unstable();
                for k in extra {
                    f.push(
                        &join(&ipath, k),
                        "an imputed value for a feature without a weight",
                    );
                }
            }
        }
        let mut context_categories = Vec::new();
        let categories = match obj.get("categories") {
            Some(c) => read_categories(cx, c, &join(path, "categories"), &mut context_categories),
            None => Some(Vec::new()),
        };
        Some(Scorer::Logistic(Logistic {
            intercept: intercept?,
            terms: terms.into(),
            categories: categories?.into(),
            context_terms: context_terms
                .into_iter()
                .map(|(key, w, imp)| (super::context_slot(&mut cx.context_keys, &key), w, imp))
                .collect(),
            context_categories: context_categories
                .into_iter()
                .map(|(key, table)| (super::context_slot(&mut cx.context_keys, &key), table))
                .collect(),
        }))
    })
}

/// A request value's name in a logistic scorer, `context.<key>`: `None` for a feature name,
/// `Some(None)` for a faulty key (pushed), else the key.
fn context_key<'n>(f: &mut Faults, name: &'n str, path: &str) -> Option<Option<&'n str>> {
    let key = name.strip_prefix(CONTEXT_PREFIX)?;
    if key.is_empty() || key.len() > MAX_NAME_BYTES {
        f.push(
            path,
            format!("`{CONTEXT_PREFIX}` must be followed by a request context key of 1 to {MAX_NAME_BYTES} bytes"),
        );
        return Some(None);
    }
    Some(Some(key))
}

/// A logistic weight or category on a request value rather than a snapshot feature.
pub(crate) const CONTEXT_PREFIX: &str = "context.";

/// A string request value's weights (`categories.context.<key>`): the key and its
/// `(value, weight)` pairs in value order.
type ContextCategory = (String, Box<[(Box<str>, f64)]>);

/// `categories`: per string feature, a weight per value, as a table by dictionary code. A
/// value the snapshot lacks is a warning with its path (it would never add its weight).
/// Request values (`context.<key>`) go to `context` as `(value, weight)` lists instead.
fn read_categories(
    cx: &mut Ctx<'_>,
    v: &Value<'_>,
    path: &str,
    context: &mut Vec<ContextCategory>,
) -> Option<Vec<(u32, Box<[f64]>)>> {
    let features = cx.faults.map(v, path)?;
    let mut names: Vec<&str> = features.keys().map(|k| k.as_ref()).collect();
    names.sort_unstable();
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let fpath = join(path, name);
        let Some(values) = features.get(name).and_then(|m| cx.faults.map(m, &fpath)) else {
            continue;
        };
        if let Some(key) = context_key(&mut cx.faults, name, &fpath) {
            let Some(key) = key else { continue };
            let mut keys: Vec<&str> = values.keys().map(|k| k.as_ref()).collect();
            keys.sort_unstable();
            let table: Vec<(Box<str>, f64)> = keys
                .into_iter()
                .filter_map(|value| {
                    let vpath = join(&fpath, value);
                    let w = values
                        .get(value)
                        .and_then(|w| cx.faults.number(w, &vpath))?;
                    Some((value.into(), w))
                })
                .collect();
            context.push((key.to_owned(), table.into()));
            continue;
        }
        let Some(col) = cx.schema.column(name) else {
            cx.faults.push(&fpath, cx.schema.unknown(name));
            continue;
        };
        let dict = match cx.schema.info(col) {
            ColumnInfo::Strings(d) => Some(d),
            ColumnInfo::Unknown => None,
            ColumnInfo::Number => {
                cx.faults.push(
                    &fpath,
                    format!("`{name}` holds numbers: give it a weight under `weights`"),
                );
                continue;
            }
        };
        cx.features_used.insert(name.to_owned());
        let mut table = vec![0.0; dict.map_or(0, |d| d.len())];
        let mut keys: Vec<&str> = values.keys().map(|k| k.as_ref()).collect();
        keys.sort_unstable();
        for value in keys {
            let vpath = join(&fpath, value);
            let Some(w) = values.get(value).and_then(|w| cx.faults.number(w, &vpath)) else {
                continue;
            };
            match dict.map(|d| (d, d.code(value))) {
                Some((_, Some(code))) => table[code as usize] = w,
                Some((d, None)) => cx.warnings.push(Fault {
                    path: vpath,
                    message: format!(
                        "{value:?} is not a value of `{name}` in the snapshot ({} values): its \
                         weight never applies",
                        d.len()
                    ),
                }),
                None => {}
            }
        }
        out.push((col, table.into_boxed_slice()));
    }
    Some(out)
}

/// Least prior evidence: below one impression's worth the prior says nothing.
const MIN_EVIDENCE: f64 = 1.0;
/// Most prior evidence: beyond it the offer would hardly learn at all.
const MAX_EVIDENCE: f64 = 1e7;
/// The credit window when the model does not declare one.
const DEFAULT_WINDOW_DAYS: u64 = 7;
/// The exposure floor when the model does not declare one.
const DEFAULT_FLOOR: f64 = 0.01;

/// An adaptive scorer: the outcome it learns from, a Beta prior given as a propensity worth
/// some evidence, the credit window, and the exposure floor.
fn compile_adaptive(cx: &mut Ctx<'_>, v: &Value<'_>, path: &str) -> Option<Scorer> {
    let f = &mut cx.faults;
    let obj = f.object(v, path, super::scorer_keys("adaptive"))?;
    let opath = join(path, "outcome");
    let outcome = f.req(obj, "outcome", path).and_then(|o| match o.as_str() {
        Some("conversion") => Some(Outcome::Conversion),
        Some("click") => Some(Outcome::Click),
        other => {
            let found = match other {
                Some(s) => format!(
                    "`{s}`{}",
                    crate::near::did_you_mean(s, ["click", "conversion"])
                ),
                None => "not a string".into(),
            };
            f.push(
                &opath,
                format!("expected `click` or `conversion`, found {found}"),
            );
            None
        }
    });
    let ppath = join(path, "prior");
    let prior = f.req(obj, "prior", path).and_then(|p| {
        let p = f.object(p, &ppath, &["propensity", "evidence"])?;
        let mean = f.req(p, "propensity", &ppath).and_then(|x| {
            let at = join(&ppath, "propensity");
            let x = f.number(x, &at)?;
            if x <= 0.0 || x >= 1.0 {
                f.push(&at, format!("must be above 0 and below 1, found {x}"));
                return None;
            }
            Some(x)
        });
        let evidence = f
            .req(p, "evidence", &ppath)
            .and_then(|x| f.number_in(x, &join(&ppath, "evidence"), MIN_EVIDENCE, MAX_EVIDENCE));
        Some((mean?, evidence?))
    });
    let reset = match obj.get("reset") {
        Some(r) => match r.as_bool() {
            Some(true) => {
                cx.warnings.push(Fault {
                    path: join(path, "reset"),
                    message: "this offer starts over with every version of the model, this one \
                              included (a title edit too): it learns only from the decisions of \
                              the version that serves; once one version has started over, \
                              remove `reset` from the next, or each edit forgets again"
                        .into(),
                });
                Some(true)
            }
            Some(b) => Some(b),
            None => {
                f.push(&join(path, "reset"), "expected true or false");
                None
            }
        },
        None => Some(false),
    };
    let window_days = match obj.get("window_days") {
        Some(w) => f.integer_in(w, &join(path, "window_days"), 1, MAX_WINDOW_DAYS as u64),
        None => Some(DEFAULT_WINDOW_DAYS),
    };
    let floor = match obj.get("exposure_floor") {
        Some(x) => f.number_in(x, &join(path, "exposure_floor"), 0.0, 0.5),
        None => Some(DEFAULT_FLOOR),
    };
    let features = match obj.get("context") {
        Some(list) => Some(Some(compile_context(cx, list, &join(path, "context"))?)),
        None => Some(None),
    };
    let (mean, evidence) = prior?;
    let mut a = Adaptive {
        outcome: outcome?,
        alpha: mean * evidence,
        beta: (1.0 - mean) * evidence,
        window_days: window_days? as u8,
        reset: reset?,
        floor: floor?,
        context: None,
    };
    if let Some(features) = features? {
        let names: Vec<&str> = features.iter().map(|f| &*f.name).collect();
        let spec = format!(
            "{}\0{}\0{}\0{:x}\0{:x}",
            names.join("\0"),
            a.outcome.as_str(),
            a.window_days,
            a.alpha.to_bits(),
            a.beta.to_bits()
        );
        a.context = Some(Box::new(Context {
            features,
            key: stable_hash(&spec),
        }));
    }
    Some(Scorer::Adaptive(a))
}

/// A contextual scorer's features: snapshot columns, numbers or strings (a string column's
/// dictionary codes resolved to the levels the learner counts), and request values
/// (`context.<key>`, any key, as logistic scorers and rules read them) resolved to their
/// context slots; each named once.
fn compile_context(
    cx: &mut Ctx<'_>,
    list: &Value<'_>,
    path: &str,
) -> Option<Box<[ContextFeature]>> {
    let names = cx.faults.string_list(list, path, MAX_CONTEXT_FEATURES)?;
    cx.checked(|cx| {
        let mut out = Vec::with_capacity(names.len());
        for (i, name) in names.into_iter().enumerate() {
            if let Some(key) = context_key(&mut cx.faults, name, &index(path, i)) {
                let Some(key) = key else { continue };
                let slot = super::context_slot(&mut cx.context_keys, key);
                let learnt = (feature_id(name), slot);
                if !cx.learnt_context.contains(&learnt) {
                    cx.learnt_context.push(learnt);
                }
                out.push(ContextFeature {
                    name: name.into(),
                    source: Source::Request { slot },
                });
                continue;
            }
            let Some(column) = cx.schema.column(name) else {
                cx.faults.push(&index(path, i), cx.schema.unknown(name));
                continue;
            };
            let text = match cx.schema.info(column) {
                ColumnInfo::Strings(d) => Some(d.iter().map(text_level).collect()),
                ColumnInfo::Number | ColumnInfo::Unknown => None,
            };
            cx.features_used.insert(name.to_owned());
            out.push(ContextFeature {
                name: name.into(),
                source: Source::Column { column, text },
            });
        }
        Some(out.into())
    })
}
