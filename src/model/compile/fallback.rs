//! Fallback content: a model's `fallback` (`{channel: {placement | "default": [items]}}`)
//! checked against its channels and placements, and the same shape as a built-in fallback
//! document with nothing to check names against.

use std::collections::BTreeMap;

use super::content::{encode, read_content, ContentKind, FallbackItem};
use super::draft::{FallbackMap, PlacementDraft};
use super::DEFAULT_FALLBACK_KEY;
use crate::engine::{BuiltinChannel, BuiltinFallback, Fallback, FallbackStage, MAX_LIMIT};
use crate::model::walk::{index, join, Fault, Faults, Value};
use crate::model::MAX_NAME_BYTES;

/// Reads a model's `fallback`; entries with faults are left out (and the faults recorded).
pub(super) fn read_fallback(
    f: &mut Faults,
    v: Option<&Value<'_>>,
    placements: &BTreeMap<String, PlacementDraft>,
    channels: &[String],
) -> FallbackMap {
    let mut out = BTreeMap::new();
    let Some(v) = v else { return out };
    let Some(obj) = f.map(v, "fallback") else {
        return out;
    };
    let mut chans: Vec<&str> = obj.keys().map(|k| k.as_ref()).collect();
    chans.sort_unstable();
    for ch in chans {
        let cpath = join("fallback", ch);
        if !channels.iter().any(|c| c == ch) {
            f.push(
                &cpath,
                format!("unknown channel `{ch}` (no placement is on it)"),
            );
            continue;
        }
        let Some(slots) = obj.get(ch).and_then(|v| f.map(v, &cpath)) else {
            continue;
        };
        let mut names: Vec<&str> = slots.keys().map(|k| k.as_ref()).collect();
        names.sort_unstable();
        for pl in names {
            let ppath = join(&cpath, pl);
            let on_channel = placements
                .get(pl)
                .is_some_and(|p| p.channels.iter().any(|c| c == ch));
            if pl != DEFAULT_FALLBACK_KEY && !on_channel {
                f.push(
                    &ppath,
                    format!(
                        "placement `{pl}` is not on channel `{ch}` (use `default` for the channel)"
                    ),
                );
                continue;
            }
            let max = placements.get(pl).and_then(|p| p.max_sms_segments);
            let kind = ContentKind::of(ch);
            let stage = if pl == DEFAULT_FALLBACK_KEY {
                FallbackStage::Channel
            } else {
                FallbackStage::Placement
            };
            let Some(fallback) = slots
                .get(pl)
                .and_then(|v| fallback_items(f, v, &ppath, (kind, max), stage))
            else {
                continue;
            };
            out.insert((ch.to_owned(), pl.to_owned()), fallback);
        }
    }
    out
}

/// One fallback list (`[{"offer_id", "content"}]`) as the stage's content: the pre-encoded
/// `offers` array and its ids.
fn fallback_items(
    f: &mut Faults,
    v: &Value<'_>,
    path: &str,
    (kind, max_segments): (ContentKind, Option<u32>),
    stage: FallbackStage,
) -> Option<Fallback> {
    let items = f.array(v, path, MAX_LIMIT)?;
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let ipath = index(path, i);
        let Some(io) = f.object(item, &ipath, super::FALLBACK_ITEM_KEYS) else {
            ok = false;
            continue;
        };
        let id = f
            .req(io, "offer_id", &ipath)
            .and_then(|v| f.string(v, &join(&ipath, "offer_id"), MAX_NAME_BYTES));
        let content = f
            .req(io, "content", &ipath)
            .and_then(|v| read_content(f, v, &join(&ipath, "content"), kind, max_segments));
        match (id, content) {
            (Some(id), Some(content)) => out.push(FallbackItem::new(id, i + 1, content)),
            _ => ok = false,
        }
    }
    if !ok {
        return None;
    }
    Some(Fallback {
        offers_json: encode(&out)?,
        stage,
        ids: out.iter().map(|item| Box::from(item.offer_id)).collect(),
    })
}

/// Compiles a built-in fallback document: `{channel: {placement | "default": [items]}}`, the
/// shape of a model's `fallback`, with no model to check channel and placement names against.
pub fn compile_builtin(doc: &Value<'_>) -> Result<BuiltinFallback, Vec<Fault>> {
    let mut f = Faults::default();
    let mut channels = Vec::new();
    if let Some(obj) = f.map(doc, "") {
        let mut names: Vec<&str> = obj.keys().map(|k| k.as_ref()).collect();
        names.sort_unstable();
        // A key written twice is one channel (the value a lookup by name finds), not two.
        names.dedup();
        for ch in names {
            let Some(slots) = obj.get(ch).and_then(|v| f.map(v, ch)) else {
                continue;
            };
            let mut placements = Vec::new();
            let mut default = Fallback::builtin_empty();
            let mut pls: Vec<&str> = slots.keys().map(|k| k.as_ref()).collect();
            pls.sort_unstable();
            pls.dedup();
            for pl in pls {
                let path = join(ch, pl);
                let kind = ContentKind::of(ch);
                let items = slots.get(pl).and_then(|v| {
                    fallback_items(&mut f, v, &path, (kind, None), FallbackStage::Builtin)
                });
                if let Some(fb) = items {
                    if pl == DEFAULT_FALLBACK_KEY {
                        default = fb;
                    } else {
                        placements.push((pl.into(), fb));
                    }
                }
            }
            channels.push(BuiltinChannel {
                name: ch.into(),
                placements,
                default,
            });
        }
    }
    if f.is_empty() {
        Ok(BuiltinFallback { channels })
    } else {
        Err(f.0)
    }
}
