//! Placements and channels: the `placements` object read, the channels numbered (in name
//! order, one bit each of an offer's `channel_mask`), and the engine's channel → slot table
//! built with each slot's candidates and fallback.

use std::collections::{BTreeMap, BTreeSet};

use simd_json::prelude::*;

use super::draft::{FallbackMap, OfferDraft, PlacementDraft};
use super::DEFAULT_FALLBACK_KEY;
use crate::engine::{Channel, Fallback, Offer, Slot, MAX_LIMIT};
use crate::model::walk::{join, Faults, Object, Value};
use crate::model::{
    DEFAULT_PLACEMENT_LIMIT, MAX_CHANNELS, MAX_DESCRIPTION_BYTES, MAX_PLACEMENTS,
    MAX_PLACEMENT_PRIORITY,
};

/// Most SMS segments a placement may allow (a concatenated SMS of more is rarely delivered
/// whole).
pub(crate) const MAX_SMS_SEGMENTS: u64 = 10;

/// Reads the `placements` object; a placement whose channels are faulty is left out.
pub(super) fn read_placements(
    f: &mut Faults,
    top: &Object<'_>,
) -> BTreeMap<String, PlacementDraft> {
    let mut out = BTreeMap::new();
    let Some(v) = f.req(top, "placements", "") else {
        return out;
    };
    let Some(obj) = f.map(v, "placements") else {
        return out;
    };
    if obj.is_empty() {
        f.push("placements", "a model needs at least one placement");
    }
    if obj.len() > MAX_PLACEMENTS {
        f.push(
            "placements",
            format!("more than {MAX_PLACEMENTS} placements"),
        );
        return out;
    }
    let mut names: Vec<&str> = obj.keys().map(|k| k.as_ref()).collect();
    names.sort_unstable();
    for name in names {
        let path = join("placements", name);
        if name == DEFAULT_FALLBACK_KEY {
            f.push(
                &path,
                "`default` is reserved for channel-wide fallback content",
            );
            continue;
        }
        let Some(p) = obj
            .get(name)
            .and_then(|v| f.object(v, &path, super::PLACEMENT_KEYS))
        else {
            continue;
        };
        if let Some(d) = p.get("description") {
            f.string(d, &join(&path, "description"), MAX_DESCRIPTION_BYTES);
        }
        let channels = f
            .req(p, "channels", &path)
            .and_then(|v| f.string_list(v, &join(&path, "channels"), MAX_CHANNELS));
        let limit = match p.get("limit") {
            Some(v) => f
                .integer_in(v, &join(&path, "limit"), 1, MAX_LIMIT as u64)
                .map(|l| l as usize),
            None => Some(DEFAULT_PLACEMENT_LIMIT),
        };
        let priority = match p.get("priority") {
            Some(v) => f
                .integer_in(
                    v,
                    &join(&path, "priority"),
                    0,
                    u64::from(MAX_PLACEMENT_PRIORITY),
                )
                .map(|p| p as u8),
            None => Some(MAX_PLACEMENT_PRIORITY),
        };
        let exploration = match p.get("exploration") {
            Some(v) => read_exploration(f, v, &join(&path, "exploration")),
            None => Some(0.0),
        };
        let anonymous = match p.get("anonymous") {
            Some(v) => read_anonymous(f, v, &join(&path, "anonymous")),
            None => Some(false),
        };
        let max_sms_segments = match p.get("max_sms_segments") {
            Some(_) if channels.as_ref().is_some_and(|c| !c.contains(&"sms")) => {
                f.push(
                    &join(&path, "max_sms_segments"),
                    "only a placement on channel `sms` sends SMS bodies",
                );
                None
            }
            Some(v) => f
                .integer_in(v, &join(&path, "max_sms_segments"), 1, MAX_SMS_SEGMENTS)
                .map(|n| Some(n as u32)),
            None => Some(None),
        };
        // A fault in any other field is reported where it is, and the placement is kept with
        // that field's default (the model is refused anyway): the offers, channels and fallback
        // that name it are not reported as well.
        if let Some(channels) = channels {
            out.insert(
                name.to_owned(),
                PlacementDraft {
                    channels: channels.into_iter().map(str::to_owned).collect(),
                    limit: limit.unwrap_or(DEFAULT_PLACEMENT_LIMIT),
                    priority: priority.unwrap_or(MAX_PLACEMENT_PRIORITY),
                    exploration: exploration.unwrap_or(0.0),
                    anonymous: anonymous.unwrap_or(false),
                    max_sms_segments: max_sms_segments.unwrap_or(None),
                },
            );
        }
    }
    out
}

/// A placement's `anonymous`: `"decide"` (decide from the request's context when the
/// customer is unknown) or `"fallback"` (the default: `unknown_customer` fallback content).
fn read_anonymous(f: &mut Faults, v: &Value<'_>, path: &str) -> Option<bool> {
    match v.as_str() {
        Some("decide") => Some(true),
        Some("fallback") => Some(false),
        _ => {
            f.push(path, "expected `decide` or `fallback`");
            None
        }
    }
}

/// A placement's `exploration`: `{"share": S}` with S in [0, 1) (1 would never rank).
fn read_exploration(f: &mut Faults, v: &Value<'_>, path: &str) -> Option<f64> {
    let obj = f.object(v, path, &["share"])?;
    let share_path = join(path, "share");
    let share = f
        .req(obj, "share", path)
        .and_then(|v| f.number(v, &share_path))?;
    if !(0.0..1.0).contains(&share) {
        f.push(
            &share_path,
            format!("{share} is not a share of decisions: it must be at least 0 and below 1"),
        );
        return None;
    }
    Some(share)
}

/// The channels: the union of the placements' channels, numbered in name order. More than
/// [`MAX_CHANNELS`] is a fault (the numbering is then never used).
pub(super) fn channel_names(
    f: &mut Faults,
    placements: &BTreeMap<String, PlacementDraft>,
) -> Vec<String> {
    let names: Vec<String> = placements
        .values()
        .flat_map(|p| p.channels.iter().cloned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if names.len() > MAX_CHANNELS {
        f.push("placements", format!("more than {MAX_CHANNELS} channels"));
    }
    names
}

/// Finishes the offers once channels are numbered: their channel masks and content by
/// channel index. Returns the offers and, beside them, the placements each claims.
pub(super) fn number_channels(
    drafts: Vec<OfferDraft>,
    channel_names: &[String],
) -> (Vec<Offer>, Vec<Vec<String>>) {
    drafts
        .into_iter()
        .map(|mut d| {
            let mut content = vec![None; channel_names.len()];
            for (ci, ch) in channel_names.iter().enumerate() {
                if d.channels.contains(ch) {
                    d.offer.channel_mask |= 1 << ci;
                    content[ci] = d.content.remove(ch);
                }
            }
            d.offer.content_json = content.into_boxed_slice();
            (d.offer, d.placements)
        })
        .unzip()
}

/// The engine's channel table: per channel its slots (candidates in evaluation order) and
/// the fallback each resolves to (placement's, else channel's, else built-in).
pub(super) fn build_channels(
    channel_names: &[String],
    placements: &BTreeMap<String, PlacementDraft>,
    offers: &[Offer],
    offer_placements: &[Vec<String>],
    fallback: &FallbackMap,
) -> Box<[Channel]> {
    channel_names
        .iter()
        .enumerate()
        .map(|(ci, ch)| {
            let chan_fallback = fallback
                .get(&(ch.clone(), DEFAULT_FALLBACK_KEY.to_owned()))
                .cloned()
                .unwrap_or_else(Fallback::builtin_empty);
            let slots = placements
                .iter()
                .filter(|(_, p)| p.channels.contains(ch))
                .map(|(pname, p)| Slot {
                    placement: pname.as_str().into(),
                    limit: p.limit,
                    priority: p.priority,
                    candidates: by_bound(
                        offers
                            .iter()
                            .enumerate()
                            .filter(|(oi, o)| {
                                o.channel_mask & (1 << ci) != 0
                                    && offer_placements[*oi].contains(pname)
                            })
                            .map(|(oi, _)| oi as u32)
                            .collect(),
                        offers,
                    ),
                    fallback: fallback
                        .get(&(ch.clone(), pname.clone()))
                        .cloned()
                        .unwrap_or_else(|| chan_fallback.clone()),
                    exploration: p.exploration,
                    anonymous: p.anonymous,
                })
                .collect();
            Channel {
                name: ch.as_str().into(),
                slots,
                fallback: chan_fallback,
            }
        })
        .collect()
}

/// Orders candidates by the best score they could reach (value × priority, a propensity of 1),
/// highest first, model order among equals: the engine stops once no offer left can beat the
/// answer it holds.
fn by_bound(mut candidates: Vec<u32>, offers: &[Offer]) -> Box<[u32]> {
    candidates.sort_by(|a, b| {
        let bound = |i: &u32| offers[*i as usize].score_bound();
        bound(b).total_cmp(&bound(a)).then(a.cmp(b))
    });
    candidates.into_boxed_slice()
}
