//! Validation and compilation in one pass: every fault is recorded with its path, and when
//! there is none the engine form is returned with names resolved to indices and content
//! pre-encoded as JSON.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use simd_json::prelude::*;

use super::policies;
use super::walk::{index, is_http_url, join, Fault, Faults, Object, Value};
use super::{resolve_inside, ChallengerSpec, Limits, Schema};
use crate::engine::{
    Arbitration, BuiltinChannel, BuiltinFallback, Channel, CmpOp, CompiledModel, Fallback,
    FallbackStage, Logistic, Offer, Operand, Rule, Scorer, Slot, Test, MAX_CONTEXT_KEYS, MAX_LIMIT,
};

const TOP_KEYS: &[&str] = &[
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
const OFFER_KEYS: &[&str] = &[
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
const CONTENT_KEYS: &[&str] = &["title", "body", "image_url", "cta_url"];
const LEAF_KEYS: &[&str] = &[
    "feature", "context", "op", "value", "values", "min", "max", "name",
];
/// Stands in for a `policies` object that had faults, so offers are still checked.
static DEFAULT_POLICIES: policies::Declared = policies::Declared::EMPTY;
/// Key of a channel's default fallback, for placements without content of their own.
pub const DEFAULT_FALLBACK_KEY: &str = "default";

/// Everything read from the document before channels are numbered.
struct OfferDraft {
    offer: Offer,
    channels: Vec<String>,
    placements: Vec<String>,
    content: BTreeMap<String, Box<str>>,
}

struct Ctx<'s> {
    faults: Faults,
    base_dir: Option<&'s Path>,
    schema: &'s dyn Schema,
    limits: &'s Limits,
    context_keys: Vec<String>,
    features_used: BTreeSet<String>,
    leaves: usize,
}

/// Validates and compiles a parsed model document.
pub fn compile(
    doc: &Value<'_>,
    base_dir: Option<&Path>,
    schema: &dyn Schema,
    limits: &Limits,
) -> Result<(CompiledModel, Option<ChallengerSpec>), Vec<Fault>> {
    let mut cx = Ctx {
        faults: Faults::default(),
        base_dir,
        schema,
        limits,
        context_keys: Vec::new(),
        features_used: BTreeSet::new(),
        leaves: 0,
    };
    let Some(top) = cx.faults.object(doc, "", TOP_KEYS) else {
        return Err(cx.faults.0);
    };
    let name = cx
        .faults
        .req(top, "name", "")
        .and_then(|v| cx.faults.string(v, "name", 128))
        .map(str::to_owned);
    let version = cx
        .faults
        .req(top, "version", "")
        .and_then(|v| match v.as_u64() {
            Some(n) => Some(n.to_string()),
            None => cx.faults.string(v, "version", 64).map(str::to_owned),
        });
    if let Some(d) = top.get("description") {
        cx.faults.string(d, "description", 4096);
    }
    let arbitration = read_arbitration(&mut cx, top.get("arbitration"));
    let challenger = match top.get("challenger") {
        Some(v) => read_challenger(&mut cx.faults, v, base_dir),
        None => None,
    };
    let placements = read_placements(&mut cx, top);
    let declared = policies::read_policies(&mut cx.faults, top.get("policies"));

    let mut drafts = Vec::new();
    if let Some(offers) = cx.faults.req(top, "offers", "") {
        if let Some(items) = cx.faults.array(offers, "offers", cx.limits.max_offers) {
            if items.is_empty() {
                cx.faults.push("offers", "a model needs at least one offer");
            }
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
                let declared = declared.as_ref().unwrap_or(&DEFAULT_POLICIES);
                if let Some(d) = read_offer(&mut cx, item, &path, &placements, declared) {
                    drafts.push(d);
                }
            }
        }
    }

    // Channels are the union of the placements' channels, numbered in name order.
    let channel_names: Vec<String> = placements
        .values()
        .flat_map(|p| p.channels.iter().cloned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if channel_names.len() > 64 {
        cx.faults.push("placements", "more than 64 channels");
    }
    let fallback = read_fallback(&mut cx, top.get("fallback"), &placements, &channel_names);

    if cx.context_keys.len() > MAX_CONTEXT_KEYS {
        cx.faults.push(
            "offers",
            format!(
                "rules test {} context keys, at most {MAX_CONTEXT_KEYS} are supported",
                cx.context_keys.len()
            ),
        );
    }
    let (Some(name), Some(version), Some(arbitration), Some(declared)) =
        (name, version, arbitration, declared)
    else {
        return Err(cx.faults.0);
    };
    let policies = policies::finish(&declared, drafts.iter().map(|d| &d.offer.caps));
    if !cx.faults.is_empty() {
        return Err(cx.faults.0);
    }

    let (offers, offer_placements): (Vec<Offer>, Vec<Vec<String>>) = drafts
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
        .unzip();

    let channels = channel_names
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
                        &offers,
                    ),
                    fallback: fallback
                        .get(&(ch.clone(), pname.clone()))
                        .cloned()
                        .unwrap_or_else(|| chan_fallback.clone()),
                })
                .collect();
            Channel {
                name: ch.as_str().into(),
                slots,
                fallback: chan_fallback,
            }
        })
        .collect();

    let model_json = serde_json::json!({"name": name, "version": version}).to_string();
    let compiled = CompiledModel {
        name: name.into(),
        version: version.into(),
        model_json: model_json.into(),
        offers: offers.into(),
        channels,
        context_keys: cx.context_keys.into_iter().map(Into::into).collect(),
        arbitration,
        features_used: cx.features_used.into_iter().map(Into::into).collect(),
        fallback: Fallback::builtin_empty(),
        policies,
    };
    Ok((compiled, challenger))
}

fn read_challenger(
    f: &mut Faults,
    v: &Value<'_>,
    base_dir: Option<&Path>,
) -> Option<ChallengerSpec> {
    let obj = f.object(v, "challenger", &["path", "share", "salt"])?;
    let path = f
        .req(obj, "path", "challenger")
        .and_then(|p| f.string(p, "challenger.path", 1024));
    let share = f
        .req(obj, "share", "challenger")
        .and_then(|s| f.number_in(s, "challenger.share", 0.0, 1.0));
    let salt = match obj.get("salt") {
        Some(s) => f.string(s, "challenger.salt", 128),
        None => Some(""),
    };
    let (path, share, salt) = (path?, share?, salt?);
    let Some(base) = base_dir else {
        f.push(
            "challenger.path",
            "a model with no folder cannot reference files",
        );
        return None;
    };
    match resolve_inside(base, path) {
        Ok(path) => Some(ChallengerSpec {
            path,
            share,
            salt: salt.to_owned(),
        }),
        Err(e) => {
            f.push("challenger.path", e);
            None
        }
    }
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

fn read_arbitration(cx: &mut Ctx<'_>, v: Option<&Value<'_>>) -> Option<Arbitration> {
    let mut a = Arbitration {
        min_score: 0.0,
        min_propensity: 0.0,
    };
    let Some(v) = v else { return Some(a) };
    let obj = cx
        .faults
        .object(v, "arbitration", &["min_score", "min_propensity"])?;
    if let Some(x) = obj.get("min_score") {
        a.min_score = cx
            .faults
            .number_in(x, "arbitration.min_score", 0.0, f64::MAX)?;
    }
    if let Some(x) = obj.get("min_propensity") {
        a.min_propensity = cx
            .faults
            .number_in(x, "arbitration.min_propensity", 0.0, 1.0)?;
    }
    Some(a)
}

struct PlacementDraft {
    channels: Vec<String>,
    limit: usize,
    priority: u8,
}

fn read_placements(cx: &mut Ctx<'_>, top: &Object<'_>) -> BTreeMap<String, PlacementDraft> {
    let mut out = BTreeMap::new();
    let Some(v) = cx.faults.req(top, "placements", "") else {
        return out;
    };
    let Some(obj) = cx.faults.map(v, "placements") else {
        return out;
    };
    if obj.is_empty() {
        cx.faults
            .push("placements", "a model needs at least one placement");
    }
    if obj.len() > 256 {
        cx.faults.push("placements", "more than 256 placements");
        return out;
    }
    let mut names: Vec<&str> = obj.keys().map(|k| k.as_ref()).collect();
    names.sort_unstable();
    for name in names {
        let path = join("placements", name);
        if name == DEFAULT_FALLBACK_KEY {
            cx.faults.push(
                &path,
                "`default` is reserved for channel-wide fallback content",
            );
            continue;
        }
        let Some(p) = obj.get(name).and_then(|v| {
            cx.faults
                .object(v, &path, &["channels", "limit", "priority", "description"])
        }) else {
            continue;
        };
        let channels = cx
            .faults
            .req(p, "channels", &path)
            .and_then(|v| cx.faults.string_list(v, &join(&path, "channels"), 64));
        let limit = match p.get("limit") {
            Some(v) => cx
                .faults
                .integer_in(v, &join(&path, "limit"), 1, MAX_LIMIT as u64)
                .map(|l| l as usize),
            None => Some(3),
        };
        let priority = match p.get("priority") {
            Some(v) => cx
                .faults
                .integer_in(v, &join(&path, "priority"), 0, 100)
                .map(|p| p as u8),
            None => Some(100),
        };
        if let (Some(channels), Some(limit), Some(priority)) = (channels, limit, priority) {
            out.insert(
                name.to_owned(),
                PlacementDraft {
                    channels: channels.into_iter().map(str::to_owned).collect(),
                    limit,
                    priority,
                },
            );
        }
    }
    out
}

fn read_offer(
    cx: &mut Ctx<'_>,
    v: &Value<'_>,
    path: &str,
    placements: &BTreeMap<String, PlacementDraft>,
    declared: &policies::Declared,
) -> Option<OfferDraft> {
    let obj = cx.faults.object(v, path, OFFER_KEYS)?;
    let before = cx.faults.0.len();
    let f = &mut cx.faults;
    let id = f
        .req(obj, "id", path)
        .and_then(|v| f.string(v, &join(path, "id"), 128));
    let category = f
        .req(obj, "category", path)
        .and_then(|v| f.string(v, &join(path, "category"), 64));
    for key in ["name", "description"] {
        if let Some(v) = obj.get(key) {
            f.string(v, &join(path, key), 4096);
        }
    }
    let channels = f
        .req(obj, "channels", path)
        .and_then(|v| f.string_list(v, &join(path, "channels"), 64));
    let offer_placements = f
        .req(obj, "placements", path)
        .and_then(|v| f.string_list(v, &join(path, "placements"), 256));
    let value = f
        .req(obj, "value", path)
        .and_then(|v| f.number_in(v, &join(path, "value"), 0.0, 1e12));
    let priority = match obj.get("priority") {
        Some(v) => f.number_in(v, &join(path, "priority"), 0.0, 1e6),
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

    // Each placement must share a channel with the offer, or the offer could never be shown.
    if let (Some(chs), Some(pls)) = (&channels, &offer_placements) {
        for (i, p) in pls.iter().enumerate() {
            let ppath = index(&join(path, "placements"), i);
            match placements.get(*p) {
                None => f.push(
                    &ppath,
                    format!("unknown placement `{p}` (not in `placements`)"),
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

    let content = obj.get("content");
    let content = match (content, &channels) {
        (None, _) => {
            f.push(&join(path, "content"), "missing field");
            None
        }
        (Some(c), Some(chs)) => read_offer_content(f, c, &join(path, "content"), chs),
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
    if cx.faults.0.len() != before {
        return None;
    }
    let id = id?;
    Some(OfferDraft {
        offer: Offer {
            id: id.into(),
            id_json: serde_json::to_string(id).ok()?.into(),
            category: category?.into(),
            value: value?,
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
}

fn read_time(f: &mut Faults, v: Option<&Value<'_>>, path: &str, default: i64) -> Option<i64> {
    let Some(v) = v else { return Some(default) };
    let s = f.string(v, path, 64)?;
    match humantime::parse_rfc3339_weak(s) {
        Ok(t) => Some(match t.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => d.as_millis() as i64,
            Err(e) => -(e.duration().as_millis() as i64),
        }),
        Err(e) => {
            f.push(
                path,
                format!("`{s}` is not an RFC 3339 time ({e}); e.g. 2026-11-22T10:00:00Z"),
            );
            None
        }
    }
}

/// Serialises content in a fixed field order, once at load.
#[derive(serde::Serialize)]
struct ContentOut<'a> {
    title: &'a str,
    body: &'a str,
    image_url: &'a str,
    cta_url: &'a str,
}

/// Reads one content object and returns it as a JSON object string.
fn read_content(f: &mut Faults, v: &Value<'_>, path: &str) -> Option<String> {
    let obj = f.object(v, path, CONTENT_KEYS)?;
    let before = f.0.len();
    let title = f
        .req(obj, "title", path)
        .and_then(|v| f.string(v, &join(path, "title"), 200));
    let body = match obj.get("body") {
        Some(v) => match v.as_str() {
            Some(s) if s.len() <= 2000 => Some(s),
            Some(_) => {
                f.push(&join(path, "body"), "longer than 2000 bytes");
                None
            }
            None => {
                f.push(&join(path, "body"), "expected a string");
                None
            }
        },
        None => Some(""),
    };
    let mut url = |key: &str| {
        let p = join(path, key);
        let s = f.req(obj, key, path).and_then(|v| f.string(v, &p, 2048))?;
        if !is_http_url(s) {
            f.push(&p, format!("`{s}` is not an absolute http(s) URL"));
            return None;
        }
        Some(s)
    };
    let image_url = url("image_url");
    let cta_url = url("cta_url");
    if f.0.len() != before {
        return None;
    }
    serde_json::to_string(&ContentOut {
        title: title?,
        body: body?,
        image_url: image_url?,
        cta_url: cta_url?,
    })
    .ok()
}

fn read_offer_content(
    f: &mut Faults,
    v: &Value<'_>,
    path: &str,
    channels: &[&str],
) -> Option<BTreeMap<String, Box<str>>> {
    let obj = f.map(v, path)?;
    let before = f.0.len();
    let mut out = BTreeMap::new();
    for ch in channels {
        match obj.get(*ch) {
            Some(c) => {
                if let Some(json) = read_content(f, c, &join(path, ch)) {
                    out.insert((*ch).to_owned(), json.into());
                }
            }
            None => f.push(
                &join(path, ch),
                format!("the offer claims channel `{ch}` but has no content for it"),
            ),
        }
    }
    let mut extra: Vec<&str> = obj
        .keys()
        .map(|k| k.as_ref())
        .filter(|k| !channels.contains(k))
        .collect();
    extra.sort_unstable();
    for k in extra {
        f.push(
            &join(path, k),
            format!("content for channel `{k}`, which the offer does not claim in `channels`"),
        );
    }
    (f.0.len() == before).then_some(out)
}

fn read_fallback(
    cx: &mut Ctx<'_>,
    v: Option<&Value<'_>>,
    placements: &BTreeMap<String, PlacementDraft>,
    channels: &[String],
) -> BTreeMap<(String, String), Fallback> {
    let mut out = BTreeMap::new();
    let Some(v) = v else { return out };
    let f = &mut cx.faults;
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
            let Some(json) = slots.get(pl).and_then(|v| fallback_items(f, v, &ppath)) else {
                continue;
            };
            {
                let stage = if pl == DEFAULT_FALLBACK_KEY {
                    FallbackStage::Channel
                } else {
                    FallbackStage::Placement
                };
                out.insert(
                    (ch.to_owned(), pl.to_owned()),
                    Fallback {
                        offers_json: json,
                        stage,
                    },
                );
            }
        }
    }
    out
}

/// One fallback list (`[{"offer_id", "content"}]`) as the pre-encoded `offers` array.
fn fallback_items(f: &mut Faults, v: &Value<'_>, path: &str) -> Option<Box<str>> {
    let items = f.array(v, path, MAX_LIMIT)?;
    let mut json = String::from("[");
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let ipath = index(path, i);
        let Some(io) = f.object(item, &ipath, &["offer_id", "content"]) else {
            ok = false;
            continue;
        };
        let id = f
            .req(io, "offer_id", &ipath)
            .and_then(|v| f.string(v, &join(&ipath, "offer_id"), 128));
        let content = f
            .req(io, "content", &ipath)
            .and_then(|v| read_content(f, v, &join(&ipath, "content")));
        match (id, content) {
            (Some(id), Some(content)) => {
                if i > 0 {
                    json.push(',');
                }
                json.push_str(&format!(
                    "{{\"offer_id\":{},\"rank\":{},\"score\":0,\"propensity\":0,\"content\":{}}}",
                    serde_json::Value::from(id),
                    i + 1,
                    content
                ));
            }
            _ => ok = false,
        }
    }
    json.push(']');
    ok.then(|| json.into())
}

/// Compiles a built-in fallback document: `{channel: {placement | "default": [items]}}`, the
/// shape of a model's `fallback`, with no model to check channel and placement names against.
pub fn compile_builtin(doc: &Value<'_>) -> Result<BuiltinFallback, Vec<Fault>> {
    let mut f = Faults::default();
    let mut channels = Vec::new();
    if let Some(obj) = f.map(doc, "") {
        let mut names: Vec<&str> = obj.keys().map(|k| k.as_ref()).collect();
        names.sort_unstable();
        for ch in names {
            let Some(slots) = obj.get(ch).and_then(|v| f.map(v, ch)) else {
                continue;
            };
            let mut placements = Vec::new();
            let mut default = Fallback::builtin_empty();
            let mut pls: Vec<&str> = slots.keys().map(|k| k.as_ref()).collect();
            pls.sort_unstable();
            for pl in pls {
                let path = join(ch, pl);
                if let Some(json) = slots.get(pl).and_then(|v| fallback_items(&mut f, v, &path)) {
                    let fb = Fallback {
                        offers_json: json,
                        stage: FallbackStage::Builtin,
                    };
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

/// Compiles one rule; `Some(None)` is "always eligible" (never produced here), `None` a fault.
fn compile_rule(cx: &mut Ctx<'_>, v: &Value<'_>, path: &str, depth: usize) -> Option<Option<Rule>> {
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
                cx.faults
                    .push(path, format!("`{comb}` must be the rule's only field"));
                return None;
            }
            let items = cx.faults.array(list, &cpath, 1024)?;
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
            cx.faults.push(path, "`not` must be the rule's only field");
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
    let f = &mut cx.faults;
    let obj = f.object(v, path, LEAF_KEYS)?;
    let before = f.0.len();
    let (operand, label) = match (obj.get("feature"), obj.get("context")) {
        (Some(name), None) => {
            let name = f.string(name, &join(path, "feature"), 128)?;
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
            let key = f.string(key, &join(path, "context"), 128)?;
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
        .and_then(|v| f.string(v, &join(path, "op"), 32))?;
    let need = |f: &mut Faults, key: &str| f.req(obj, key, path);
    let is_context = matches!(operand, Operand::Context(_));
    let test = match op {
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
            let items = need(f, "values").and_then(|v| f.array(v, &vpath, 1024))?;
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
    };
    if f.0.len() != before {
        return None;
    }
    let what = match obj.get("name").and_then(|n| n.as_str()) {
        Some(name) => format!("{path}: {name}"),
        None => format!("{path}: {}", describe(&label, &test)),
    };
    Some(Rule::Leaf {
        operand,
        test,
        what: what.into(),
    })
}

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

/// Loads a tree-ensemble scorer file named by the model, inside the model's folder.
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
        .and_then(|p| f.string(p, &ppath, 1024));
    let names: Option<Vec<String>> = match obj.get("features") {
        Some(list) => Some(
            f.string_list(list, &join(path, "features"), 100_000)?
                .into_iter()
                .map(str::to_owned)
                .collect(),
        ),
        None => None,
    };
    let rel = rel?;
    let Some(base) = cx.base_dir else {
        f.push(
            &ppath,
            "a model with no folder cannot reference scorer files",
        );
        return None;
    };
    let file = match super::resolve_inside(base, rel) {
        Ok(file) => file,
        Err(e) => {
            f.push(&ppath, e);
            return None;
        }
    };
    let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    if size > cx.limits.max_scorer_bytes {
        f.push(
            &ppath,
            format!(
                "`{rel}` is {size} bytes, over the limit of {}",
                cx.limits.max_scorer_bytes
            ),
        );
        return None;
    }
    let bytes = match std::fs::read(&file) {
        Ok(b) => b,
        Err(e) => {
            f.push(&ppath, format!("`{rel}`: {e}"));
            return None;
        }
    };
    let resolved = std::cell::RefCell::new(Vec::new());
    let schema = cx.schema;
    let resolve = |name: &str| {
        let col = schema.column(name);
        if col.is_some() {
            resolved.borrow_mut().push(name.to_owned());
        }
        col
    };
    let parsed = if kind == "xgboost" {
        super::xgboost::parse_xgboost(&bytes, names.as_deref(), &resolve)
    } else {
        match std::str::from_utf8(&bytes) {
            Ok(text) => super::lightgbm::parse_lightgbm(text, &resolve),
            Err(e) => {
                f.push(&ppath, format!("`{rel}` is not UTF-8 text: {e}"));
                return None;
            }
        }
    };
    match parsed {
        Ok(ensemble) => {
            cx.features_used.extend(resolved.into_inner());
            Some(Scorer::Trees(Box::new(ensemble)))
        }
        Err(e) => {
            f.push(&ppath, format!("`{rel}` ({kind}): {e}"));
            None
        }
    }
}

fn compile_scorer(cx: &mut Ctx<'_>, v: &Value<'_>, path: &str) -> Option<Scorer> {
    let kind = v.get("kind").and_then(|k| k.as_str());
    match kind {
        Some("logistic") => {
            let f = &mut cx.faults;
            let obj = f.object(v, path, &["kind", "intercept", "weights", "impute"])?;
            let before = f.0.len();
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
            if f.0.len() != before {
                return None;
            }
            Some(Scorer::Logistic(Logistic {
                intercept: intercept?,
                terms: terms.into(),
            }))
        }
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
