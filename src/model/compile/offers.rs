//! The `offers` array: each offer's fields, validity window, channels and placements checked
//! against the model's placements, and its parts (content, eligibility, scorer, caps) read
//! into a draft that waits for the channels to be numbered.

use std::collections::{BTreeMap, BTreeSet};

use simd_json::prelude::*;

use super::draft::{OfferDraft, PlacementDraft};
use super::rules::compile_rule;
use super::scorers::compile_scorer;
use super::{content, Ctx};
use crate::engine::Offer;
use crate::model::policies;
use crate::model::walk::{index, join, Collects, Faults, Object, Value};
use crate::model::ColumnInfo;
use crate::model::{
    MAX_CHANNELS, MAX_DESCRIPTION_BYTES, MAX_LABEL_BYTES, MAX_NAME_BYTES, MAX_OFFER_PRIORITY,
    MAX_OFFER_VALUE, MAX_PLACEMENTS,
};

/// An offer's fields.
pub(crate) const OFFER_KEYS: &[&str] = &[
    "id",
    "name",
    "description",
    "category",
    "channels",
    "placements",
    "value",
    "priority",
    "valid_from",
    "valid_until",
    "eligibility",
    "scorer",
    "content",
    "caps",
];
/// Stands in for a `policies` object that had faults, so offers are still checked.
static DEFAULT_POLICIES: policies::Declared = policies::Declared::EMPTY;

/// Reads the `offers` array (a missing or empty one is a fault); ids must be unique.
pub(super) fn read_offers(
    cx: &mut Ctx<'_>,
    top: &Object<'_>,
    placements: &BTreeMap<String, PlacementDraft>,
    declared: Option<&policies::Declared>,
) -> Vec<OfferDraft> {
    let mut drafts = Vec::new();
    let Some(offers) = cx.faults.req(top, "offers", "") else {
        return drafts;
    };
    let Some(items) = cx.faults.array(offers, "offers", cx.limits.max_offers) else {
        return drafts;
    };
    if items.is_empty() {
        cx.faults.push("offers", "a model needs at least one offer");
    }
    let declared = declared.unwrap_or(&DEFAULT_POLICIES);
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, item) in items.iter().enumerate() {
        let path = index("offers", i);
        if let Some(id) = item.get("id").and_then(|v| v.as_str()) {
            if let Some(first) = seen.insert(id, i) {
                cx.faults.push(
                    &join(&path, "id"),
                    format!("duplicate offer id `{id}` (first at offers[{first}])"),
                );
            }
        }
        if let Some(d) = read_offer(cx, item, &path, placements, declared) {
            drafts.push(d);
        }
    }
    drafts
}

fn read_offer(
    cx: &mut Ctx<'_>,
    v: &Value<'_>,
    path: &str,
    placements: &BTreeMap<String, PlacementDraft>,
    declared: &policies::Declared,
) -> Option<OfferDraft> {
    let obj = cx.faults.object(v, path, OFFER_KEYS)?;
    cx.checked(|cx| {
        let f = &mut cx.faults;
        let id = f
            .req(obj, "id", path)
            .and_then(|v| f.string(v, &join(path, "id"), MAX_NAME_BYTES));
        let category = f
            .req(obj, "category", path)
            .and_then(|v| f.string(v, &join(path, "category"), MAX_LABEL_BYTES));
        for key in ["name", "description"] {
            if let Some(v) = obj.get(key) {
                f.string(v, &join(path, key), MAX_DESCRIPTION_BYTES);
            }
        }
        let channels = f
            .req(obj, "channels", path)
            .and_then(|v| f.string_list(v, &join(path, "channels"), MAX_CHANNELS));
        let offer_placements = f
            .req(obj, "placements", path)
            .and_then(|v| f.string_list(v, &join(path, "placements"), MAX_PLACEMENTS));
        let value = f.req(obj, "value", path).and_then(|v| match v.as_object() {
            Some(_) => Some(None),
            None => f
                .number_in(v, &join(path, "value"), 0.0, MAX_OFFER_VALUE)
                .map(|x| Some((x, None, x))),
        });
        // `{"feature": .., "default": ..}`: read with the snapshot (below, outside `f`).
        let value = match value {
            Some(None) => obj
                .get("value")
                .and_then(|v| read_value_feature(cx, v, &join(path, "value"))),
            other => other.flatten(),
        };
        let f = &mut cx.faults;
        let priority = match obj.get("priority") {
            Some(v) => f.number_in(v, &join(path, "priority"), 0.0, MAX_OFFER_PRIORITY),
            None => Some(1.0),
        };
        let valid_from = read_time(
            f,
            obj.get("valid_from"),
            &join(path, "valid_from"),
            i64::MIN,
        );
        let valid_until = read_time(
            f,
            obj.get("valid_until"),
            &join(path, "valid_until"),
            i64::MAX,
        );
        if let (Some(from), Some(until)) = (valid_from, valid_until) {
            if until <= from {
                f.push(
                    &join(path, "valid_until"),
                    "the validity window ends before it starts",
                );
            }
        }
        if let (Some(chs), Some(pls)) = (&channels, &offer_placements) {
            check_reach(f, path, chs, pls, placements);
        }

        let content = match (obj.get("content"), &channels) {
            (None, _) => {
                f.push(&join(path, "content"), "missing field");
                None
            }
            (Some(c), Some(chs)) => {
                // The tightest SMS limit of the placements that show the offer by SMS.
                let sms_max = offer_placements.iter().flatten().filter_map(|p| {
                    let p = placements.get(*p)?;
                    p.channels
                        .iter()
                        .any(|c| c == "sms")
                        .then_some(p.max_sms_segments)?
                });
                let sms_max = sms_max.min();
                content::read_offer_content(f, c, &join(path, "content"), chs, sms_max)
            }
            (Some(_), None) => None,
        };
        let rule = match obj.get("eligibility") {
            Some(r) => compile_rule(cx, r, &join(path, "eligibility"), 0),
            None => Some(None),
        };
        let scorer = match cx.faults.req(obj, "scorer", path) {
            Some(s) => compile_scorer(cx, s, &join(path, "scorer")),
            None => None,
        };
        let caps = policies::read_caps(
            &mut cx.faults,
            obj.get("caps"),
            &join(path, "caps"),
            category,
            declared,
        );
        let id = id?;
        Some(OfferDraft {
            offer: Offer {
                id: id.into(),
                id_json: content::encode(id)?,
                category: category?.into(),
                value: value?.0,
                value_from: value?.1,
                value_max: value?.2,
                priority: priority?,
                valid_from_ms: valid_from?,
                valid_until_ms: valid_until?,
                rule: rule?,
                scorer: scorer?,
                channel_mask: 0,
                content_json: Box::new([]),
                id_hash: crate::engine::policy::stable_hash(id),
                caps: caps?,
            },
            channels: channels?.into_iter().map(str::to_owned).collect(),
            placements: offer_placements?.into_iter().map(str::to_owned).collect(),
            content: content?,
        })
    })
}

/// Each placement must share a channel with the offer, and each channel must have a
/// placement, or the offer could never be shown there.
fn check_reach(
    f: &mut Faults,
    path: &str,
    chs: &[&str],
    pls: &[&str],
    placements: &BTreeMap<String, PlacementDraft>,
) {
    for (i, p) in pls.iter().enumerate() {
        let ppath = index(&join(path, "placements"), i);
        match placements.get(*p) {
            None => f.push(
                &ppath,
                format!(
                    "unknown placement `{p}` (not in `placements`){}",
                    crate::near::did_you_mean(p, placements.keys().map(String::as_str))
                ),
            ),
            Some(pd) if !pd.channels.iter().any(|c| chs.contains(&c.as_str())) => f.push(
                &ppath,
                format!(
                    "placement `{p}` is on {:?}, none of the offer's channels {:?}",
                    pd.channels, chs
                ),
            ),
            Some(_) => {}
        }
    }
    let known: BTreeSet<&str> = placements
        .values()
        .flat_map(|p| p.channels.iter().map(String::as_str))
        .collect();
    for (i, c) in chs.iter().enumerate() {
        if !known.contains(c) {
            f.push(
                &index(&join(path, "channels"), i),
                format!("channel `{c}` has no placement in `placements`"),
            );
        }
    }
}

/// An RFC 3339 time as milliseconds since the epoch; `default` when absent.
fn read_time(f: &mut Faults, v: Option<&Value<'_>>, path: &str, default: i64) -> Option<i64> {
    let Some(v) = v else { return Some(default) };
    let s = f.string(v, path, MAX_LABEL_BYTES)?;
    match crate::rfc3339::parse_ms(s) {
        Ok(ms) => Some(ms),
        Err(e) => {
            f.push(path, e.to_string());
            None
        }
    }
}

/// `"value": {"feature": "margin_12m", "default": 10}`: a numeric snapshot column gives each
/// customer's value, the default stands in where it is missing. Checked against the snapshot
/// the model is compiled with: a negative or non-finite value there is a fault (it would turn
/// a score negative or infinite). Returns `(default, column, highest value)`.
fn read_value_feature(
    cx: &mut Ctx<'_>,
    v: &Value<'_>,
    path: &str,
) -> Option<(f64, Option<u32>, f64)> {
    let f = &mut cx.faults;
    let obj = f.object(v, path, &["feature", "default"])?;
    let fpath = join(path, "feature");
    let name = f
        .req(obj, "feature", path)
        .and_then(|n| f.string(n, &fpath, MAX_NAME_BYTES));
    let default = f
        .req(obj, "default", path)
        .and_then(|d| f.number_in(d, &join(path, "default"), 0.0, MAX_OFFER_VALUE));
    let (name, default) = (name?, default?);
    let Some(col) = cx.schema.column(name) else {
        f.push(&fpath, cx.schema.unknown(name));
        return None;
    };
    if let ColumnInfo::Strings(_) = cx.schema.info(col) {
        let holds = cx.schema.holds_strings(name, col);
        f.push(&fpath, format!("{holds}; a value needs numbers"));
        return None;
    }
    cx.features_used.insert(name.to_owned());
    let mut max = default;
    if let Some(cells) = cx.schema.cells(col) {
        for (row, x) in cells.enumerate() {
            if x.is_nan() {
                continue;
            }
            if !(x.is_finite() && (0.0..=MAX_OFFER_VALUE).contains(&x)) {
                f.push(
                    &fpath,
                    format!(
                        "`{name}` holds {x} on data row {} of the snapshot; a value must be a \
                         finite number in 0..={MAX_OFFER_VALUE:e}",
                        row + 1
                    ),
                );
                return None;
            }
            max = max.max(x);
        }
    } else {
        max = MAX_OFFER_VALUE;
    }
    Some((default, Some(col), max))
}
