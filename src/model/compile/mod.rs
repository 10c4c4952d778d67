//! Validation and compilation in one pass: every fault is recorded with its path, and when
//! there is none the engine form is returned with names resolved to indices and content
//! pre-encoded as JSON.
//!
//! This module orchestrates: the top-level fields, the challenger and arbitration, then the
//! parts in their own files (placements, offers with their rules, scorers and content, the
//! fallback lists). It is pure: files the model names were read by `model::files` before,
//! and nothing here touches the file system.

mod content;
mod draft;
mod fallback;
mod offers;
mod placements;
mod rules;
mod scorers;
mod trees;
mod unseen;

use std::collections::BTreeSet;

use simd_json::prelude::*;

use super::files::ModelFiles;
use super::policies;
use super::walk::{Collects, Fault, Faults, Value};
use super::{
    ChallengerSpec, Limits, Schema, MAX_DESCRIPTION_BYTES, MAX_LABEL_BYTES, MAX_NAME_BYTES,
    MAX_PATH_BYTES,
};
use crate::engine::{Arbitration, CompiledModel, MAX_CONTEXT_KEYS};

#[cfg(test)]
pub(crate) use content::sms_segments;
pub(crate) use content::CONTENT_KEYS;
pub use fallback::compile_builtin;
pub(crate) use offers::OFFER_KEYS;
pub(crate) use placements::MAX_SMS_SEGMENTS;
pub(crate) use rules::LEAF_KEYS;

/// The model document's top-level fields.
pub(crate) const TOP_KEYS: &[&str] = &[
    "name",
    "version",
    "description",
    "arbitration",
    "placements",
    "offers",
    "fallback",
    "challenger",
    "policies",
];
/// The `challenger` object's fields.
pub(crate) const CHALLENGER_KEYS: &[&str] = &["path", "share", "salt"];
/// The `arbitration` object's fields.
pub(crate) const ARBITRATION_KEYS: &[&str] = &["min_score", "min_propensity"];
/// A placement's fields.
pub(crate) const PLACEMENT_KEYS: &[&str] = &[
    "channels",
    "limit",
    "priority",
    "description",
    "exploration",
    "anonymous",
    "max_sms_segments",
];
/// A fallback item's fields.
pub(crate) const FALLBACK_ITEM_KEYS: &[&str] = &["offer_id", "content"];
/// Each scorer kind's fields.
pub(crate) const SCORER_KEYS: [(&str, &[&str]); 5] = [
    (
        "logistic",
        &["kind", "intercept", "weights", "impute", "categories"],
    ),
    ("constant", &["kind", "propensity"]),
    (
        "xgboost",
        &["kind", "path", "features", "class", "categories", "trees"],
    ),
    (
        "lightgbm",
        &["kind", "path", "features", "class", "categories"],
    ),
    (
        "adaptive",
        &[
            "kind",
            "outcome",
            "prior",
            "context",
            "reset",
            "window_days",
            "exposure_floor",
        ],
    ),
];

/// The fields of a scorer kind (`kind` itself first).
pub(crate) fn scorer_keys(kind: &str) -> &'static [&'static str] {
    SCORER_KEYS
        .iter()
        .find(|(k, _)| *k == kind)
        .map_or(&["kind"], |(_, keys)| keys)
}

/// Key of a channel's default fallback, for placements without content of their own.
pub const DEFAULT_FALLBACK_KEY: &str = "default";

/// What compiling carries along: the faults so far, the inputs, and what the offers use.
struct Ctx<'s> {
    faults: Faults,
    files: &'s ModelFiles,
    schema: &'s dyn Schema,
    limits: &'s Limits,
    /// Context keys the rules test, in slot order.
    context_keys: Vec<String>,
    /// Request values contextual scorers learn from: feature id and slot, each once.
    learnt_context: Vec<(u32, u16)>,
    /// Features the rules and scorers read.
    features_used: BTreeSet<String>,
    /// Rule leaves met so far, against [`Limits::max_rules`].
    leaves: usize,
    /// What compiles but is likely a mistake, with paths.
    warnings: Vec<Fault>,
    /// The tree files the offers use, each parsed once.
    trees: trees::TreeFiles,
}

impl<'s> Ctx<'s> {
    /// A compilation that has read nothing yet.
    fn new(files: &'s ModelFiles, schema: &'s dyn Schema, limits: &'s Limits) -> Self {
        Ctx {
            faults: Faults::default(),
            files,
            schema,
            limits,
            context_keys: Vec::new(),
            learnt_context: Vec::new(),
            features_used: BTreeSet::new(),
            leaves: 0,
            warnings: Vec::new(),
            trees: trees::TreeFiles::default(),
        }
    }
}

/// Warns of two request keys the model reads that are one letter or a letter case apart
/// (`devise` beside `device`): pages send one of them, so what reads the other sees nothing,
/// and no request can tell (it sends a key the model reads).
fn near_context_keys(keys: &[String], warnings: &mut Vec<Fault>) {
    for (i, a) in keys.iter().enumerate() {
        for b in keys[..i].iter().filter(|b| b.len() > 3 && a.len() > 3) {
            if a.eq_ignore_ascii_case(b) || strsim::damerau_levenshtein(a, b) == 1 {
                warnings.push(Fault {
                    path: String::new(),
                    message: format!(
                        "the model reads request keys `context.{b}` and `context.{a}`, one \
                         letter apart: pages send one of them, so what reads the other reads \
                         nothing; give both the key the pages send (a typo?)"
                    ),
                });
            }
        }
    }
}

/// The request context slot of `key` among `keys`, given one on first use: rules and scorers
/// that read the same key share its slot. (More than [`MAX_CONTEXT_KEYS`] is refused once all
/// are read, so the slot always fits.)
fn context_slot(keys: &mut Vec<String>, key: &str) -> u16 {
    if let Some(i) = keys.iter().position(|k| k == key) {
        return i as u16;
    }
    keys.push(key.to_owned());
    (keys.len() - 1) as u16
}

impl Collects for Ctx<'_> {
    fn faults(&mut self) -> &mut Faults {
        &mut self.faults
    }
}

/// A compiled model, the challenger it declares, and its warnings.
type Compiled = (CompiledModel, Option<ChallengerSpec>, Vec<Fault>);
/// A refused model's faults, and the warnings found before the refusal.
type Refused = (Vec<Fault>, Vec<Fault>);

/// Validates and compiles a parsed model document, with the files it names already read.
pub fn compile(
    doc: &Value<'_>,
    files: &ModelFiles,
    schema: &dyn Schema,
    limits: &Limits,
) -> Result<Compiled, Refused> {
    let mut cx = Ctx::new(files, schema, limits);
    let Some(top) = cx.faults.object(doc, "", TOP_KEYS) else {
        return Err((cx.faults.0, cx.warnings));
    };
    let name = cx
        .faults
        .req(top, "name", "")
        .and_then(|v| cx.faults.string(v, "name", MAX_NAME_BYTES))
        .map(str::to_owned);
    let version = cx
        .faults
        .req(top, "version", "")
        .and_then(|v| match v.as_u64() {
            Some(n) => Some(n.to_string()),
            None => cx
                .faults
                .string(v, "version", MAX_LABEL_BYTES)
                .map(str::to_owned),
        });
    if let Some(d) = top.get("description") {
        cx.faults.string(d, "description", MAX_DESCRIPTION_BYTES);
    }
    let arbitration = read_arbitration(&mut cx.faults, top.get("arbitration"));
    let challenger = match top.get("challenger") {
        Some(v) => read_challenger(&mut cx.faults, v, files),
        None => None,
    };
    let placements = placements::read_placements(&mut cx.faults, top);
    let declared = policies::read_policies(&mut cx.faults, top.get("policies"));
    let drafts = offers::read_offers(&mut cx, top, &placements, declared.as_ref());

    let channel_names = placements::channel_names(&mut cx.faults, &placements);
    let fallback = fallback::read_fallback(
        &mut cx.faults,
        top.get("fallback"),
        &placements,
        &channel_names,
    );

    if cx.context_keys.len() > MAX_CONTEXT_KEYS {
        cx.faults.push(
            "offers",
            format!(
                "rules and scorers read {} context keys, at most {MAX_CONTEXT_KEYS} are supported",
                cx.context_keys.len()
            ),
        );
    }
    let (Some(name), Some(version), Some(arbitration), Some(declared)) =
        (name, version, arbitration, declared)
    else {
        return Err((cx.faults.0, cx.warnings));
    };
    let policies = policies::finish(&declared, drafts.iter().map(|d| &d.offer.caps));
    policies::unused_categories(
        &declared,
        &drafts
            .iter()
            .map(|d| &*d.offer.category)
            .collect::<Vec<_>>(),
        &mut cx.warnings,
    );
    near_context_keys(&cx.context_keys, &mut cx.warnings);
    for name in &cx.features_used {
        if cx
            .schema
            .column(name)
            .is_some_and(|c| cx.schema.holds_no_value(c))
        {
            cx.warnings.push(Fault {
                path: String::new(),
                message: format!(
                    "feature `{name}`: no customer has a value in the snapshot (every field \
                     empty), so every rule, scorer and value reading it reads it as missing"
                ),
            });
        }
    }
    let Some(model_json) = content::model_json(&name, &version) else {
        cx.faults.push("name", "cannot be encoded as JSON");
        return Err((cx.faults.0, cx.warnings));
    };
    if !cx.faults.is_empty() {
        return Err((cx.faults.0, cx.warnings));
    }

    let (offers, offer_placements) = placements::number_channels(drafts, &channel_names);
    let channels = placements::build_channels(
        &channel_names,
        &placements,
        &offers,
        &offer_placements,
        &fallback,
    );
    let context_numbers =
        CompiledModel::context_numbers(cx.context_keys.len(), &offers, &cx.learnt_context);
    let compiled = CompiledModel {
        name: name.into(),
        version: version.into(),
        model_json,
        offers: offers.into(),
        channels,
        context_keys: cx.context_keys.into_iter().map(Into::into).collect(),
        context_numbers,
        learnt_context: cx.learnt_context.into(),
        arbitration,
        features_used: cx.features_used.into_iter().map(Into::into).collect(),
        policies,
        multiclass: cx.trees.multiclass().into(),
    };
    Ok((compiled, challenger, cx.warnings))
}

/// Compiles one rule on snapshot features alone (a campaign channel's `reachable`), exactly as
/// an offer's eligibility compiles; a rule on the request context is refused, as no request
/// exists outside `/v1/decide`.
pub fn compile_feature_rule(
    v: &Value<'_>,
    path: &str,
    schema: &dyn Schema,
    limits: &Limits,
) -> Result<crate::engine::Rule, Vec<Fault>> {
    let files = ModelFiles::default();
    let mut cx = Ctx::new(&files, schema, limits);
    let rule = rules::compile_rule(&mut cx, v, path, 0).flatten();
    if !cx.context_keys.is_empty() {
        cx.faults.push(
            path,
            "only features can be tested here: there is no request context",
        );
    }
    match rule {
        Some(r) if cx.faults.is_empty() => Ok(r),
        _ => Err(cx.faults.0),
    }
}

fn read_challenger(f: &mut Faults, v: &Value<'_>, files: &ModelFiles) -> Option<ChallengerSpec> {
    let obj = f.object(v, "challenger", CHALLENGER_KEYS)?;
    let path = f
        .req(obj, "path", "challenger")
        .and_then(|p| f.string(p, "challenger.path", MAX_PATH_BYTES));
    let share = f
        .req(obj, "share", "challenger")
        .and_then(|s| f.number_in(s, "challenger.share", 0.0, 1.0));
    let salt = match obj.get("salt") {
        Some(s) => f.string(s, "challenger.salt", MAX_NAME_BYTES),
        None => Some(""),
    };
    let (path, share, salt) = (path?, share?, salt?);
    if !files.has_folder() {
        f.push(
            "challenger.path",
            "a model with no folder cannot reference files",
        );
        return None;
    }
    match files.challenger(path) {
        Ok(path) => Some(ChallengerSpec {
            path: path.to_owned(),
            share,
            salt: salt.to_owned(),
        }),
        Err(e) => {
            f.push("challenger.path", e);
            None
        }
    }
}

fn read_arbitration(f: &mut Faults, v: Option<&Value<'_>>) -> Option<Arbitration> {
    let mut a = Arbitration {
        min_score: 0.0,
        min_propensity: 0.0,
    };
    let Some(v) = v else { return Some(a) };
    let obj = f.object(v, "arbitration", ARBITRATION_KEYS)?;
    if let Some(x) = obj.get("min_score") {
        a.min_score = f.number_in(x, "arbitration.min_score", 0.0, f64::MAX)?;
    }
    if let Some(x) = obj.get("min_propensity") {
        a.min_propensity = f.number_in(x, "arbitration.min_propensity", 0.0, 1.0)?;
    }
    Some(a)
}
