//! The offer model document as a JSON Schema (2020-12, as OpenAPI 3.1 uses it), built from the
//! parser's own field lists and limits, so the contract cannot list a field the parser refuses
//! or miss one it takes. `server::openapi` puts these schemas into the served document, where
//! `PUT /admin/models` refers to them.
//!
//! The schema says what a model must look like; the parser also checks what a schema cannot say
//! (names that resolve to features, placements and channels; content for every channel an
//! offer claims; files that exist): such a model fits the schema and is refused with `422`. So
//! every constraint here is one the parser enforces too, and none is stricter: lengths are the
//! parser's byte bounds, which a string within them in characters may still exceed.

use serde_json::{json, Map, Value};

use super::compile::{
    scorer_keys, ARBITRATION_KEYS, CHALLENGER_KEYS, CONTENT_KEYS, FALLBACK_ITEM_KEYS, LEAF_KEYS,
    MAX_SMS_SEGMENTS, OFFER_KEYS, PLACEMENT_KEYS, SCORER_KEYS, TOP_KEYS,
};
use super::policies::{CAPS_KEYS, POLICY_KEYS};
use super::{
    MAX_BODY_BYTES, MAX_CHANNELS, MAX_DESCRIPTION_BYTES, MAX_LABEL_BYTES, MAX_NAME_BYTES,
    MAX_OFFER_PRIORITY, MAX_OFFER_VALUE, MAX_PATH_BYTES, MAX_PLACEMENTS, MAX_PLACEMENT_PRIORITY,
    MAX_TITLE_BYTES, MAX_URL_BYTES,
};
use crate::engine::MAX_LIMIT;

/// A `$ref` to one of these schemas.
fn r(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn name(what: &str) -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": MAX_NAME_BYTES, "description": what})
}

fn names(what: &str, max: usize) -> Value {
    json!({"type": "array", "minItems": 1, "maxItems": max, "uniqueItems": true,
           "items": {"type": "string", "minLength": 1, "maxLength": MAX_NAME_BYTES},
           "description": what})
}

/// An object of exactly the fields `keys` (the parser's list), each described in `props`.
fn object(keys: &[&str], required: &[&str], props: Value, description: &str) -> Value {
    let Value::Object(mut props) = props else {
        unreachable!("props are written as an object")
    };
    let mut ordered = Map::new();
    for k in keys {
        let p = props
            .remove(*k)
            .unwrap_or_else(|| panic!("no schema for field `{k}`"));
        ordered.insert((*k).to_owned(), p);
    }
    assert!(
        props.is_empty(),
        "fields the parser does not take: {props:?}"
    );
    json!({"type": "object", "required": required, "properties": ordered,
           "additionalProperties": false, "description": description})
}

/// Every schema of the model document by name; `ModelDocument` is the document itself.
pub fn schemas() -> Map<String, Value> {
    let mut out = Map::new();
    let mut add = |n: &str, v: Value| {
        out.insert(n.to_owned(), v);
    };
    add("ModelDocument", object(TOP_KEYS, &["name", "version", "placements", "offers"], json!({
        "name": name("The model's name, shown in answers as `model.name`."),
        "version": {"type": ["string", "integer"], "description": "The model's version (a string of at most 64 bytes, or a whole number), shown in answers as `model.version`.", "maxLength": MAX_LABEL_BYTES, "minimum": 0},
        "description": {"type": "string", "minLength": 1, "maxLength": MAX_DESCRIPTION_BYTES, "description": "Documentation for people; never served."},
        "arbitration": object(ARBITRATION_KEYS, &[], json!({
            "min_score": {"type": "number", "minimum": 0, "description": "Offers scoring below it are dropped (score = propensity x value x priority)."},
            "min_propensity": {"type": "number", "minimum": 0, "maximum": 1, "description": "Offers with a lower propensity are dropped."},
        }), "Thresholds an offer must pass to be shown."),
        "placements": {"type": "object", "minProperties": 1, "maxProperties": MAX_PLACEMENTS,
            "additionalProperties": r("ModelPlacement"),
            "description": "The places offers appear in, by name (`default` is reserved)."},
        "offers": {"type": "array", "minItems": 1, "items": r("ModelOffer"), "description": "Every offer, in model order (which breaks ties)."},
        "fallback": {"type": "object", "description": "Content shown when no offer wins, by channel, then by placement or `default` for the whole channel.",
            "additionalProperties": {"type": "object", "additionalProperties":
                {"type": "array", "maxItems": MAX_LIMIT, "items": r("ModelFallbackItem")}}},
        "challenger": object(CHALLENGER_KEYS, &["path", "share"], json!({
            "path": {"type": "string", "minLength": 1, "maxLength": MAX_PATH_BYTES, "description": "The challenger's model file, relative to this model's folder."},
            "share": {"type": "number", "minimum": 0, "maximum": 1, "description": "Share of customers the challenger serves."},
            "salt": {"type": "string", "minLength": 1, "maxLength": MAX_NAME_BYTES, "description": "Experiment salt: a new salt reshuffles who is in the experiment."},
        }), "Another model serving a share of customers, for comparison."),
        "policies": r("ModelPolicies"),
    }), "An offer model, as `nextbest model check` and `PUT /admin/models` take it (docs/formats.md)."));
    add(
        "ModelPlacement",
        object(
            PLACEMENT_KEYS,
            &["channels"],
            json!({
                "channels": names("The channels the placement is on.", MAX_CHANNELS),
                "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "description": "Offers shown when a request names no limit (default 3)."},
                "priority": {"type": "integer", "minimum": 0, "maximum": MAX_PLACEMENT_PRIORITY, "description": "Admission priority under load, 0 to 100 (default 100)."},
                "description": {"type": "string", "minLength": 1, "maxLength": MAX_DESCRIPTION_BYTES, "description": "Documentation for people."},
                "max_sms_segments": {"type": "integer", "minimum": 1, "maximum": MAX_SMS_SEGMENTS, "description": "Most segments an SMS body shown here may take (160 GSM-7 characters, or 70 UCS-2 units, for one; 153 or 67 each when concatenated); longer bodies are refused."},
                "exploration": {"type": "object", "required": ["share"], "additionalProperties": false, "properties": {
                    "share": {"type": "number", "minimum": 0, "exclusiveMaximum": 1, "description": "Share of decisions, chosen by a hash of the decision id, that show a uniform random pick of the eligible offers (in score order) instead of the top of the ranking."}},
                    "description": "Randomised decisions with known probabilities, for off-policy estimates (`nextbest replay --estimate`). Every decision then knows the probability with which it showed each offer (explain's `shown_probability`, the decision log's `shown`)."},
                "anonymous": {"type": "string", "enum": ["decide", "fallback"], "description": "A request whose customer the snapshot does not know (or that names only a `visitor_id`, or no id): `decide` decides it from the request's context alone, every snapshot feature missing (the answer says `anonymous: true`); `fallback` (the default) serves fallback content with reason `unknown_customer`."},
            }),
            "A placement: where on which channels offers appear.",
        ),
    );
    add(
        "ModelOffer",
        object(
            OFFER_KEYS,
            &[
                "id",
                "category",
                "channels",
                "placements",
                "value",
                "scorer",
                "content",
            ],
            json!({
                "id": name("The offer id answers and events use."),
                "name": {"type": "string", "minLength": 1, "maxLength": MAX_DESCRIPTION_BYTES, "description": "A name for people."},
                "description": {"type": "string", "minLength": 1, "maxLength": MAX_DESCRIPTION_BYTES, "description": "Documentation for people."},
                "category": {"type": "string", "minLength": 1, "maxLength": MAX_LABEL_BYTES, "description": "`sales`, `service`, `retention`, ...: what category caps and holds look at."},
                "channels": names("The channels the offer is shown on.", MAX_CHANNELS),
                "placements": names("The placements the offer is shown in.", MAX_PLACEMENTS),
                "value": {"oneOf": [
                    {"type": "number", "minimum": 0, "maximum": MAX_OFFER_VALUE},
                    {"type": "object", "required": ["feature", "default"], "additionalProperties": false, "properties": {
                        "feature": {"type": "string", "minLength": 1, "maxLength": MAX_NAME_BYTES, "description": "A numeric snapshot column holding each customer's value."},
                        "default": {"type": "number", "minimum": 0, "maximum": MAX_OFFER_VALUE, "description": "The value where the column is missing."}}}],
                    "description": "Business value of a conversion: a number, or per customer from a snapshot column."},
                "priority": {"type": "number", "minimum": 0, "maximum": MAX_OFFER_PRIORITY, "description": "Arbitration multiplier (default 1)."},
                "valid_from": {"type": "string", "format": "date-time", "description": "Start of the validity window: RFC 3339 with an offset."},
                "valid_until": {"type": "string", "format": "date-time", "description": "End of the validity window (exclusive): RFC 3339 with an offset."},
                "eligibility": r("ModelRule"),
                "scorer": r("ModelScorer"),
                "content": {"type": "object", "minProperties": 1, "additionalProperties": r("ModelContent"), "description": "What the offer shows, by channel."},
                "caps": object(CAPS_KEYS, &[], json!({
                    "max_impressions": {"type": "integer", "minimum": 1, "maximum": crate::engine::policy::MAX_CAP, "description": "Impressions of this offer per customer within `window_days`."},
                    "window_days": {"type": "number", "exclusiveMinimum": 0, "maximum": 3650, "description": "The impression cap's window."},
                    "dismiss_cooldown_days": {"type": "number", "minimum": 0, "maximum": 3650, "description": "Days a dismissed offer is held back (0: off)."},
                    "conversion_cooldown_days": {"type": "number", "minimum": 0, "maximum": 3650, "description": "Days a bought offer is held back (0: off)."},
                }), "This offer's contact policies, over the model's."),
            }),
            "One offer.",
        ),
    );
    let scorer_props = json!({
        "kind": {"type": "string", "enum": SCORER_KEYS.map(|(k, _)| k), "description": "Which scorer."},
        "intercept": {"type": "number", "description": "Logistic: the intercept (default 0)."},
        "weights": {"type": "object", "additionalProperties": {"type": "number"}, "description": "Logistic: a weight per numeric feature, or per numeric request value as `context.<key>` (`{\"context.cart_value\": 0.01}`; a missing or non-numeric value counts as its `impute`, default 0)."},
        "impute": {"type": "object", "additionalProperties": {"type": "number"}, "description": "Logistic: the value a missing feature (or `context.<key>`) counts as."},
        "categories": {"type": "object", "additionalProperties": {"oneOf": [
                {"type": "object", "additionalProperties": {"type": "number"}},
                {"type": "array", "items": {"oneOf": [{"type": "string", "minLength": 1, "maxLength": MAX_NAME_BYTES}, {"type": "number"}]}}]},
            "description": "Logistic: per text feature, or text request value as `context.<key>`, a weight per value (`{\"segment\": {\"gold\": 0.8}, \"context.device\": {\"ios\": 0.3}}`; other values add nothing). Trees: per categorical feature, its categories in the model's code order (names for a text column, numbers for a numeric one), for a file that does not carry them."},
        "class": {"type": "integer", "minimum": 0, "description": "Trees: the class of a multiclass file whose probability is this offer's propensity."},
        "propensity": {"type": "number", "minimum": 0, "maximum": 1, "description": "Constant: the propensity."},
        "path": {"type": "string", "minLength": 1, "maxLength": MAX_PATH_BYTES, "description": "Trees: the file Booster.save_model wrote, relative to the model's folder."},
        "features": {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1, "maxLength": MAX_NAME_BYTES}, "description": "XGBoost and LightGBM: feature names, for a model trained without them (LightGBM writes `Column_0 ...`)."},
        "trees": {"type": "string", "enum": ["best", "all"], "description": "XGBoost: `best` (default) scores the rounds up to early stopping's `best_iteration`, as `predict_proba` does; `all` scores every tree, as `Booster.predict` does."},
        "outcome": {"type": "string", "enum": ["conversion", "click"], "description": "Adaptive: what counts as a success."},
        "prior": {"type": "object", "required": ["propensity", "evidence"], "additionalProperties": false, "description": "Adaptive: the starting belief and its weight.",
            "properties": {
                "propensity": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1, "description": "The propensity expected before any outcome."},
                "evidence": {"type": "number", "minimum": 1, "maximum": 1e7, "description": "How many impressions' worth of results that guess weighs."}}},
        "context": {"type": "array", "minItems": 1, "maxItems": crate::engine::contextual::MAX_CONTEXT_FEATURES, "uniqueItems": true, "items": {"type": "string", "minLength": 1, "maxLength": MAX_NAME_BYTES},
            "description": "Adaptive: the snapshot features (numbers or strings) the propensity depends on; it is learnt per customer from them (binned naive Bayes, Thompson sampling). Without it, one propensity for everybody."},
        "reset": {"type": "boolean", "description": "Adaptive: start over, counting only this version's decisions."},
        "window_days": {"type": "integer", "minimum": 1, "maximum": crate::engine::posterior::MAX_WINDOW_DAYS, "description": "Adaptive: days an outcome is credited to an impression without a decision id."},
        "exposure_floor": {"type": "number", "minimum": 0, "maximum": 0.5, "description": "Adaptive: share of decisions on which the offer is shown whatever its draw."},
    });
    let required = |kind: &str| match kind {
        "logistic" => vec!["kind", "weights"],
        "constant" => vec!["kind", "propensity"],
        "adaptive" => vec!["kind", "outcome", "prior"],
        _ => vec!["kind", "path"],
    };
    let kinds: Vec<Value> = SCORER_KEYS
        .iter()
        .map(|(kind, keys)| {
            let mut props = Map::new();
            for k in *keys {
                props.insert((*k).to_owned(), scorer_props[*k].clone());
            }
            props.insert(
                "kind".into(),
                json!({"const": kind, "description": format!("`{kind}`.")}),
            );
            json!({"title": kind, "type": "object", "required": required(kind),
                   "properties": props, "additionalProperties": false})
        })
        .collect();
    debug_assert!(SCORER_KEYS.iter().all(|(k, keys)| scorer_keys(k) == *keys));
    add(
        "ModelScorer",
        json!({"oneOf": kinds, "description": "How the offer's propensity is computed."}),
    );
    add(
        "ModelRule",
        json!({"description": "Eligibility: a condition on a feature or context value, or `all`, `any`, `not` of rules.",
        "oneOf": [
            r("ModelCondition"),
            {"title": "all", "type": "object", "required": ["all"], "additionalProperties": false,
             "properties": {"all": {"type": "array", "minItems": 1, "items": r("ModelRule"), "description": "Every rule holds."}}},
            {"title": "any", "type": "object", "required": ["any"], "additionalProperties": false,
             "properties": {"any": {"type": "array", "minItems": 1, "items": r("ModelRule"), "description": "At least one rule holds."}}},
            {"title": "not", "type": "object", "required": ["not"], "additionalProperties": false,
             "properties": {"not": {"allOf": [r("ModelRule")], "description": "The rule does not hold."}}},
        ]}),
    );
    let mut condition = object(
        LEAF_KEYS,
        &["op"],
        json!({
            "feature": name("The customer feature tested."),
            "context": name("The request context value tested."),
            "op": {"type": "string", "enum": ["eq", "ne", "lt", "le", "gt", "ge", "in", "not_in", "between", "is_missing"], "description": "The test."},
            "value": {"type": ["number", "string"], "description": "eq .. ge: the value compared with (a string for text columns and context values; eq and ne only)."},
            "values": {"type": "array", "minItems": 1, "items": {"type": ["number", "string"]}, "description": "in, not_in: the values."},
            "min": {"type": "number", "description": "between: the lower bound (inclusive)."},
            "max": {"type": "number", "description": "between: the upper bound (inclusive)."},
            "name": {"type": "string", "minLength": 1, "maxLength": MAX_DESCRIPTION_BYTES, "description": "What explain shows for this condition (single conditions only, not groups)."},
        }),
        "One condition; exactly one of `feature` or `context`.",
    );
    condition["oneOf"] = json!([{"required": ["feature"]}, {"required": ["context"]}]);
    add("ModelCondition", condition);
    add(
        "ModelContent",
        object(
            CONTENT_KEYS,
            &[],
            json!({
                "title": {"type": "string", "minLength": 1, "maxLength": MAX_TITLE_BYTES, "description": "The headline (an e-mail's subject)."},
                "body": {"type": "string", "maxLength": MAX_BODY_BYTES, "description": "The text (default empty)."},
                "image_url": {"type": "string", "minLength": 1, "maxLength": MAX_URL_BYTES, "description": "An absolute http(s) URL."},
                "cta_url": {"type": "string", "minLength": 1, "maxLength": MAX_URL_BYTES, "description": "Where the call to action leads: an absolute http(s) URL."},
            }),
            "What an offer shows on one channel. Which fields are required depends on the channel's name: `sms` a body; `email` a title (the subject) and a body; `push` a title and a body; any other channel a title, an image_url and a cta_url. Fields a channel does not need are empty strings in answers.",
        ),
    );
    add(
        "ModelFallbackItem",
        object(
            FALLBACK_ITEM_KEYS,
            &["offer_id", "content"],
            json!({
                "offer_id": name("The id answers carry for this content."),
                "content": r("ModelContent"),
            }),
            "One piece of fallback content.",
        ),
    );
    let window = json!({"type": "number", "exclusiveMinimum": 0, "maximum": 3650, "description": "The window, in days."});
    let categories = json!({"type": "array", "minItems": 1, "maxItems": 64, "uniqueItems": true, "items": {"type": "string", "minLength": 1, "maxLength": MAX_NAME_BYTES}, "description": "The offer categories it applies to."});
    let cap = |max: &str, with_categories: bool| {
        let mut p = Map::new();
        p.insert(
            max.into(),
            json!({"type": "integer", "minimum": 1, "maximum": crate::engine::policy::MAX_CAP, "description": "The most contacts within the window."}),
        );
        p.insert("window_days".into(), window.clone());
        let mut req = vec![max.to_owned(), "window_days".to_owned()];
        if with_categories {
            p.insert("categories".into(), categories.clone());
            req.push("categories".into());
        }
        let what = if with_categories {
            "Contacts of the listed categories per customer within the window, across offers."
        } else {
            "Impressions of each offer per customer within the window."
        };
        json!({"type": "object", "required": req, "properties": p, "additionalProperties": false, "description": what})
    };
    add(
        "ModelPolicies",
        object(
            POLICY_KEYS,
            &[],
            json!({
                "impression_cap": cap("max_impressions", false),
                "dismiss_cooldown_days": {"type": "number", "minimum": 0, "maximum": 3650, "description": "Days a dismissed offer is held back (0: off)."},
                "conversion_cooldown_days": {"type": "number", "minimum": 0, "maximum": 3650, "description": "Days a bought offer is held back (0: off)."},
                "sales_cap": cap("max_contacts", true),
                "complaint_hold": {"type": "object", "required": ["categories", "timeout_days"], "additionalProperties": false,
                    "description": "While a complaint is open (until resolved, or `timeout_days`), offers of these categories are held back.",
                    "properties": {"categories": categories.clone(), "timeout_days": window.clone()}},
            }),
            "Contact policies for every offer (an offer's `caps` may say otherwise).",
        ),
    );
    // A shadow candidate (`PUT /admin/models/shadow`): a model document and its share.
    let mut shadow = out["ModelDocument"].clone();
    shadow["properties"]["share"] = json!({"type": "number", "exclusiveMinimum": 0, "maximum": 1,
        "description": "Share of decisions the candidate decides beside the champion, never served."});
    shadow["properties"]["estimate_share"] = json!({"type": "number", "minimum": 0, "maximum": 1,
        "description": "Share of the shadowed decisions kept for the off-policy estimate against the champion (each costs two decisions with every offer's probability of being shown); default: enough for 1 % of all decisions, at most all of them."});
    if let Some(required) = shadow["required"].as_array_mut() {
        required.push(json!("share"));
    }
    shadow["description"] = json!("An offer model document with `share`: the shadow candidate.");
    out.insert("ShadowDocument".to_owned(), shadow);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validator() -> jsonschema::Validator {
        let root = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "components": {"schemas": schemas()},
            "$ref": "#/components/schemas/ModelDocument",
        });
        jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .build(&root)
            .expect("the schema compiles")
    }

    #[test]
    fn the_models_the_parser_takes_fit_the_schema() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let v = validator();
        for file in ["models/model.json", "deploy/k8s/models/model.json"] {
            let doc: Value =
                serde_json::from_slice(&std::fs::read(root.join(file)).unwrap()).unwrap();
            let errors: Vec<String> = v
                .iter_errors(&doc)
                .map(|e| format!("{e} at {}", e.instance_path()))
                .collect();
            assert!(errors.is_empty(), "{file}: {errors:#?}");
        }
    }

    #[test]
    fn what_the_schema_refuses_the_parser_refuses() {
        let v = validator();
        let base = json!({"name": "m", "version": 1, "placements": {"p": {"channels": ["web"]}},
            "offers": [{"id": "a", "category": "sales", "channels": ["web"], "placements": ["p"],
                "value": 1, "scorer": {"kind": "constant", "propensity": 0.5},
                "content": {"web": {"title": "T", "image_url": "https://x.test/i", "cta_url": "https://x.test/c"}}}]});
        assert!(v.is_valid(&base));
        let compile = |doc: &Value| {
            super::super::from_bytes(
                serde_json::to_vec(doc).unwrap(),
                None,
                "t".into(),
                &super::super::AnySchema::default(),
                &super::super::Limits::default(),
            )
        };
        assert!(compile(&base).is_ok());
        for (pointer, value) in [
            ("/offers/0/scorer/kind", json!("magic")),
            ("/offers/0/scorer/extra", json!(1)),
            ("/offers/0/value", json!(-1)),
            (
                "/offers/0/eligibility",
                json!({"name": "x", "any": [{"feature": "f", "op": "is_missing"}]}),
            ),
            ("/placements/p/limit", json!(0)),
            ("/placements/p/exploration", json!({"share": 1})),
            ("/placements/p/exploration", json!({"rate": 0.1})),
            ("/name", json!("")),
            ("/typo", json!(1)),
            ("/offers/0/content/web/title", json!(7)),
        ] {
            let mut doc = base.clone();
            let (parent, key) = pointer.rsplit_once('/').unwrap();
            doc.pointer_mut(parent).unwrap()[key] = value;
            assert!(!v.is_valid(&doc), "schema took {pointer}");
            assert!(compile(&doc).is_err(), "parser took {pointer}");
        }
    }
}
