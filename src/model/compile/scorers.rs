//! An offer's `scorer`: logistic weights or a constant checked against the snapshot's
//! columns, a tree ensemble parsed from a file `model::files` read before, or an adaptive
//! scorer's prior and credit rule (its counts are the contact side's, never the model's).

use simd_json::prelude::*;

use super::Ctx;
use crate::engine::adaptive::{Adaptive, Outcome, MAX_WINDOW_DAYS};
use crate::engine::{Logistic, Scorer};
use crate::model::walk::{join, Collects, Value};
use crate::model::{lightgbm, xgboost, MAX_PATH_BYTES, MAX_TREE_FEATURES};

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
        Some(kind @ ("xgboost" | "lightgbm")) => compile_trees(cx, v, path, kind),
        Some("adaptive") => compile_adaptive(cx, v, path),
        Some(other) => {
            cx.faults.push(
                &join(path, "kind"),
                format!("unknown scorer kind `{other}` (logistic, constant, xgboost, lightgbm, adaptive)"),
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
        if let Some(weights) = weights {
            let mut names: Vec<&str> = weights.keys().map(|k| k.as_ref()).collect();
            names.sort_unstable();
            for name in names {
                let p = join(&wpath, name);
                let w = weights.get(name).and_then(|w| f.number(w, &p));
                let col = cx.schema.column(name);
                if col.is_none() {
                    f.push(&p, format!("unknown feature `{name}`"));
                }
                let imp = match impute.and_then(|i| i.get(name)) {
                    Some(x) => f.number(x, &join(&ipath, name)),
                    None => Some(0.0),
                };
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
        Some(Scorer::Logistic(Logistic {
            intercept: intercept?,
            terms: terms.into(),
        }))
    })
}

/// A tree-ensemble scorer from a file inside the model's folder, read before compiling.
fn compile_trees(cx: &mut Ctx<'_>, v: &Value<'_>, path: &str, kind: &str) -> Option<Scorer> {
    let known = super::scorer_keys(kind);
    let f = &mut cx.faults;
    let obj = f.object(v, path, known)?;
    let ppath = join(path, "path");
    let rel = f
        .req(obj, "path", path)
        .and_then(|p| f.string(p, &ppath, MAX_PATH_BYTES));
    let names: Option<Vec<String>> = match obj.get("features") {
        Some(list) => Some(
            f.string_list(list, &join(path, "features"), MAX_TREE_FEATURES)?
                .into_iter()
                .map(str::to_owned)
                .collect(),
        ),
        None => None,
    };
    let rel = rel?;
    if !cx.files.has_folder() {
        f.push(
            &ppath,
            "a model with no folder cannot reference scorer files",
        );
        return None;
    }
    let bytes = match cx.files.scorer(rel) {
        Ok(bytes) => bytes,
        Err(e) => {
            f.push(&ppath, e);
            return None;
        }
    };
    let schema = cx.schema;
    let resolve = |name: &str| schema.column(name);
    let parsed = if kind == "xgboost" {
        xgboost::parse_xgboost_with_features(bytes, names.as_deref(), &resolve)
    } else {
        match std::str::from_utf8(bytes) {
            Ok(text) => lightgbm::parse_lightgbm_with_features(text, &resolve),
            Err(e) => {
                f.push(&ppath, format!("`{rel}` is not UTF-8 text: {e}"));
                return None;
            }
        }
    };
    match parsed {
        Ok((ensemble, features)) => {
            cx.features_used.extend(features);
            Some(Scorer::Trees(Box::new(ensemble)))
        }
        Err(e) => {
            f.push(&ppath, format!("`{rel}` ({kind}): {e}"));
            None
        }
    }
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
        _ => {
            f.push(&opath, "expected `click` or `conversion`");
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
    if obj.contains_key("segment_by") {
        f.push(
            &join(path, "segment_by"),
            "learning per segment is not supported yet: an adaptive offer learns one posterior",
        );
    }
    let reset = match obj.get("reset") {
        Some(r) => match r.as_bool() {
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
    let (mean, evidence) = prior?;
    Some(Scorer::Adaptive(Adaptive {
        outcome: outcome?,
        alpha: mean * evidence,
        beta: (1.0 - mean) * evidence,
        window_days: window_days? as u8,
        reset: reset?,
        floor: floor?,
    }))
}
