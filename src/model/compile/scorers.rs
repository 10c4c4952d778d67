//! An offer's `scorer`: logistic weights or a constant checked against the snapshot's
//! columns, or a tree ensemble parsed from a file `model::files` read before.

use simd_json::prelude::*;

use super::Ctx;
use crate::engine::{Logistic, Scorer};
use crate::model::walk::{join, Collects, Value};
use crate::model::{lightgbm, xgboost, MAX_PATH_BYTES, MAX_TREE_FEATURES};

/// Compiles one scorer; `None` after a fault.
pub(super) fn compile_scorer(cx: &mut Ctx<'_>, v: &Value<'_>, path: &str) -> Option<Scorer> {
    let kind = v.get("kind").and_then(|k| k.as_str());
    match kind {
        Some("logistic") => compile_logistic(cx, v, path),
        Some("constant") => {
            let obj = cx.faults.object(v, path, &["kind", "propensity"])?;
            let p = cx
                .faults
                .req(obj, "propensity", path)
                .and_then(|p| cx.faults.number_in(p, &join(path, "propensity"), 0.0, 1.0))?;
            Some(Scorer::Constant(p))
        }
        Some(kind @ ("xgboost" | "lightgbm")) => compile_trees(cx, v, path, kind),
        Some(other) => {
            cx.faults.push(
                &join(path, "kind"),
                format!("unknown scorer kind `{other}` (logistic, constant, xgboost, lightgbm)"),
            );
            None
        }
        None => {
            cx.faults.push(
                &join(path, "kind"),
                "missing field (logistic, constant, xgboost, lightgbm)",
            );
            None
        }
    }
}

fn compile_logistic(cx: &mut Ctx<'_>, v: &Value<'_>, path: &str) -> Option<Scorer> {
    let obj = cx
        .faults
        .object(v, path, &["kind", "intercept", "weights", "impute"])?;
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
    let known: &[&str] = if kind == "xgboost" {
        &["kind", "path", "features"]
    } else {
        &["kind", "path"]
    };
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
