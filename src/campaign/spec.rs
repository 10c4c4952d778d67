//! The campaign file as the CVM team writes it, validated like a model: every fault with its
//! exact path, all at once, through the model's own [`Faults`] reader.
//!
//! Validation has two halves. [`parse`] checks the file on its own (fields, types, ranges,
//! minimums against maximums and capacity, suppression files that exist); [`Plan::resolve`]
//! checks it against a compiled model (the channel, placement, offers and categories it names).
//! `nextbest campaign check` reports both halves' faults together. Nothing here decides or
//! touches the event log.
//!
//! ```json
//! {"name": "dec_sms", "channel": "sms", "placement": "sms_campaign",
//!  "offers": ["data_boost_10gb", "roaming_pass_eu"],
//!  "max_offers_per_customer": 1,
//!  "capacity": {"max_contacts": 100000, "per": "day"},
//!  "offer_limits": {"data_boost_10gb": {"min": 500, "max": 60000}},
//!  "category_limits": {"sales": {"max": 90000}},
//!  "frequency": {"max_contacts": 2, "window_days": 7, "channels": ["sms", "email", "push"]},
//!  "suppression": ["optouts.txt"],
//!  "control_group": {"share": 0.1, "salt": "dec-2026"},
//!  "transactional": false}
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use simd_json::prelude::*;

use crate::engine::{CompiledModel, MAX_LIMIT};
use crate::model::walk::{index, join, Faults, Value};
use crate::model::Fault;

/// Largest campaign file read, in bytes.
pub const MAX_FILE_BYTES: u64 = 1 << 20;
/// The outbound channels a frequency cap counts when the file names none.
pub const DEFAULT_OUTBOUND: &[&str] = &["sms", "email", "push"];

const TOP_KEYS: &[&str] = &[
    "name",
    "description",
    "channel",
    "placement",
    "offers",
    "max_offers_per_customer",
    "capacity",
    "offer_limits",
    "category_limits",
    "frequency",
    "suppression",
    "control_group",
    "transactional",
];

/// The period a channel's capacity is counted over, looking back from the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Per {
    /// The last 24 hours.
    Day,
    /// The last 7 days.
    Week,
}

impl Per {
    /// The period in milliseconds.
    pub fn ms(self) -> i64 {
        match self {
            Per::Day => crate::engine::policy::DAY_MS,
            Per::Week => 7 * crate::engine::policy::DAY_MS,
        }
    }
}

/// How many contacts the channel can take in a period (the SMS gateway's daily volume).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Capacity {
    /// Most contacts on the channel in the period, earlier campaigns' included.
    pub max_contacts: u64,
    /// The period.
    pub per: Per,
}

/// An offer's minimum and maximum number of customers in one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct OfferLimit {
    /// Filled first, before other offers take the capacity, when the base allows.
    pub min: u64,
    /// Never more than this.
    pub max: Option<u64>,
}

/// "At most N contacts in W days" across outbound channels, on top of the model's policies.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Frequency {
    /// Most contacts in the window, this campaign's included.
    pub max_contacts: u32,
    /// Window in days.
    pub window_days: u32,
    /// Channels whose impressions count.
    pub channels: Vec<String>,
}

/// The held-out share for measuring what the campaign achieved.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ControlGroup {
    /// Share of eligible customers held out, in `[0, 1)`.
    pub share: f64,
    /// Salt of the stable hash: the same salt holds out the same customers on every run.
    pub salt: String,
}

/// A campaign file, checked on its own.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CampaignSpec {
    /// Campaign name; with the run time it derives the committed events' ids.
    pub name: String,
    /// The outbound channel the list is for.
    pub channel: String,
    /// The model placement on that channel; `None` means the channel's only placement.
    pub placement: Option<String>,
    /// The offers the campaign may send; `None` means every offer of the placement.
    pub offers: Option<Vec<String>>,
    /// Offers one customer may get in this run.
    pub max_offers_per_customer: u32,
    /// Channel capacity.
    pub capacity: Option<Capacity>,
    /// Minimum and maximum per offer id.
    pub offer_limits: BTreeMap<String, OfferLimit>,
    /// Maximum per offer category.
    pub category_limits: BTreeMap<String, u64>,
    /// Contact frequency across outbound channels.
    pub frequency: Option<Frequency>,
    /// Files of customer ids never contacted (resolved against the campaign file's folder).
    pub suppression: Vec<PathBuf>,
    /// Control group.
    pub control_group: Option<ControlGroup>,
    /// Bypasses frequency caps (never suppression): a bill, a fraud alert.
    pub transactional: bool,
}

/// Why a campaign file was refused.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Not JSON, or too large.
    #[error("{0}")]
    Syntax(String),
    /// JSON, but not a valid campaign: every fault, with its path.
    #[error("{} fault(s); first: {}", .0.len(), .0.first().map(|f| f.to_string()).unwrap_or_default())]
    Invalid(Vec<Fault>),
}

impl SpecError {
    /// The faults as a list (a single entry for I/O and syntax errors).
    pub fn faults(&self) -> Vec<Fault> {
        match self {
            SpecError::Invalid(f) => f.clone(),
            other => vec![Fault {
                path: String::new(),
                message: other.to_string(),
            }],
        }
    }
}

/// Reads and checks a campaign file on its own.
pub fn load(path: &Path) -> Result<CampaignSpec, SpecError> {
    let bytes = read_file(path)?;
    parse(bytes, &crate::model::folder_of(path))
}

fn read_file(path: &Path) -> Result<Vec<u8>, SpecError> {
    let io = |source| SpecError::Io {
        path: path.to_owned(),
        source,
    };
    let size = std::fs::metadata(path).map_err(io)?.len();
    if size > MAX_FILE_BYTES {
        return Err(SpecError::Syntax(format!(
            "campaign file of {size} bytes exceeds the limit of {MAX_FILE_BYTES} bytes"
        )));
    }
    std::fs::read(path).map_err(io)
}

/// Checks a campaign document; suppression files resolve against `base`.
pub fn parse(bytes: Vec<u8>, base: &Path) -> Result<CampaignSpec, SpecError> {
    match parse_lenient(bytes, base)? {
        (Some(s), faults) if faults.is_empty() => Ok(s),
        (_, faults) => Err(SpecError::Invalid(faults)),
    }
}

/// Reads a campaign document and returns its faults beside what could be read of it (`None`
/// when not even the channel could), so a check can also resolve the rest against a model.
pub fn parse_lenient(
    mut bytes: Vec<u8>,
    base: &Path,
) -> Result<(Option<CampaignSpec>, Vec<Fault>), SpecError> {
    let doc = simd_json::to_borrowed_value(&mut bytes).map_err(|e| {
        SpecError::Syntax(format!(
            "invalid JSON at byte {}: {:?}",
            e.index(),
            e.error()
        ))
    })?;
    let mut f = Faults::default();
    let spec = read(&mut f, &doc, base);
    Ok((spec, f.0))
}

/// Reads a campaign file like [`load`], leniently (see [`parse_lenient`]).
pub fn load_lenient(path: &Path) -> Result<(Option<CampaignSpec>, Vec<Fault>), SpecError> {
    let bytes = read_file(path)?;
    parse_lenient(bytes, &crate::model::folder_of(path))
}

fn read(f: &mut Faults, doc: &Value<'_>, base: &Path) -> Option<CampaignSpec> {
    let top = f.object(doc, "", TOP_KEYS)?;
    let name = f.req(top, "name", "").and_then(|v| f.string(v, "name", 64));
    if let Some(n) = name {
        if !n
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        {
            f.push("name", "use letters, digits, `_`, `-` and `.` only");
        }
    }
    if let Some(d) = top.get("description") {
        f.string(d, "description", 4096);
    }
    let channel = f
        .req(top, "channel", "")
        .and_then(|v| f.string(v, "channel", 128));
    let placement = top.get("placement").map(|v| f.string(v, "placement", 128));
    let offers = top
        .get("offers")
        .map(|v| f.string_list(v, "offers", 10_000));
    let max_offers = match top.get("max_offers_per_customer") {
        Some(v) => f
            .integer_in(v, "max_offers_per_customer", 1, MAX_LIMIT as u64)
            .map(|n| n as u32),
        None => Some(1),
    };
    let capacity = top.get("capacity").map(|v| read_capacity(f, v));
    let offer_limits = match top.get("offer_limits") {
        Some(v) => read_offer_limits(f, v),
        None => Some(BTreeMap::new()),
    };
    let category_limits = match top.get("category_limits") {
        Some(v) => read_category_limits(f, v),
        None => Some(BTreeMap::new()),
    };
    let frequency = top.get("frequency").map(|v| read_frequency(f, v));
    let suppression = match top.get("suppression") {
        Some(v) => read_suppression(f, v, base),
        None => Some(Vec::new()),
    };
    let control = top.get("control_group").map(|v| read_control(f, v));
    let transactional = match top.get("transactional") {
        Some(v) => match v.as_bool() {
            Some(b) => Some(b),
            None => {
                f.push("transactional", "expected true or false");
                None
            }
        },
        None => Some(false),
    };

    if let (Some(Some(cap)), Some(limits)) = (&capacity, &offer_limits) {
        let mins: u64 = limits.values().map(|l| l.min).sum();
        if mins > cap.max_contacts {
            f.push(
                "offer_limits",
                format!(
                    "the offers' minimums add up to {mins}, more than the capacity of {}",
                    cap.max_contacts
                ),
            );
        }
    }
    if let (Some(Some(list)), Some(limits)) = (&offers, &offer_limits) {
        for id in limits.keys() {
            if !list.contains(&id.as_str()) {
                f.push(
                    &join("offer_limits", id),
                    format!("`{id}` is not among the campaign's `offers`"),
                );
            }
        }
    }
    // What is valid is kept (the rest defaulted), so the model-side check can still report
    // the names that do not resolve together with these faults.
    Some(CampaignSpec {
        name: name.unwrap_or_default().to_owned(),
        channel: channel?.to_owned(),
        placement: placement.flatten().map(str::to_owned),
        offers: offers
            .flatten()
            .map(|o| o.into_iter().map(str::to_owned).collect()),
        max_offers_per_customer: max_offers.unwrap_or(1),
        capacity: capacity.flatten(),
        offer_limits: offer_limits.unwrap_or_default(),
        category_limits: category_limits.unwrap_or_default(),
        frequency: frequency.flatten(),
        suppression: suppression.unwrap_or_default(),
        control_group: control.flatten(),
        transactional: transactional.unwrap_or(false),
    })
}

fn read_capacity(f: &mut Faults, v: &Value<'_>) -> Option<Capacity> {
    let obj = f.object(v, "capacity", &["max_contacts", "per"])?;
    let max = f
        .req(obj, "max_contacts", "capacity")
        .and_then(|v| f.integer_in(v, "capacity.max_contacts", 1, 1 << 40));
    let per = match obj.get("per") {
        None => Some(Per::Day),
        Some(v) => match v.as_str() {
            Some("day") => Some(Per::Day),
            Some("week") => Some(Per::Week),
            _ => {
                f.push("capacity.per", "expected `day` or `week`");
                None
            }
        },
    };
    Some(Capacity {
        max_contacts: max?,
        per: per?,
    })
}

fn read_offer_limits(f: &mut Faults, v: &Value<'_>) -> Option<BTreeMap<String, OfferLimit>> {
    let obj = f.map(v, "offer_limits")?;
    let before = f.0.len();
    let mut out = BTreeMap::new();
    let mut keys: Vec<&str> = obj.keys().map(|k| k.as_ref()).collect();
    keys.sort_unstable();
    for id in keys {
        let path = join("offer_limits", id);
        let Some(o) = obj
            .get(id)
            .and_then(|v| f.object(v, &path, &["min", "max"]))
        else {
            continue;
        };
        let min = match o.get("min") {
            Some(v) => f.integer_in(v, &join(&path, "min"), 0, 1 << 40),
            None => Some(0),
        };
        let max = o
            .get("max")
            .map(|v| f.integer_in(v, &join(&path, "max"), 0, 1 << 40));
        let (Some(min), Some(max)) = (min, max.map_or(Some(None), |m| m.map(Some))) else {
            continue;
        };
        if max.is_some_and(|m| m < min) {
            f.push(
                &join(&path, "min"),
                format!(
                    "the minimum {min} is above the maximum {}",
                    max.unwrap_or(0)
                ),
            );
        }
        out.insert(id.to_owned(), OfferLimit { min, max });
    }
    (f.0.len() == before).then_some(out)
}

fn read_category_limits(f: &mut Faults, v: &Value<'_>) -> Option<BTreeMap<String, u64>> {
    let obj = f.map(v, "category_limits")?;
    let before = f.0.len();
    let mut out = BTreeMap::new();
    let mut keys: Vec<&str> = obj.keys().map(|k| k.as_ref()).collect();
    keys.sort_unstable();
    for cat in keys {
        let path = join("category_limits", cat);
        let Some(o) = obj.get(cat).and_then(|v| f.object(v, &path, &["max"])) else {
            continue;
        };
        if let Some(max) = f
            .req(o, "max", &path)
            .and_then(|v| f.integer_in(v, &join(&path, "max"), 0, 1 << 40))
        {
            out.insert(cat.to_owned(), max);
        }
    }
    (f.0.len() == before).then_some(out)
}

fn read_frequency(f: &mut Faults, v: &Value<'_>) -> Option<Frequency> {
    let obj = f.object(v, "frequency", &["max_contacts", "window_days", "channels"])?;
    let max = f
        .req(obj, "max_contacts", "frequency")
        .and_then(|v| f.integer_in(v, "frequency.max_contacts", 1, 256));
    let days = f
        .req(obj, "window_days", "frequency")
        .and_then(|v| f.integer_in(v, "frequency.window_days", 1, 366));
    let channels = match obj.get("channels") {
        Some(v) => f
            .string_list(v, "frequency.channels", 64)
            .map(|l| l.into_iter().map(str::to_owned).collect()),
        None => Some(DEFAULT_OUTBOUND.iter().map(|s| s.to_string()).collect()),
    };
    Some(Frequency {
        max_contacts: max? as u32,
        window_days: days? as u32,
        channels: channels?,
    })
}

fn read_suppression(f: &mut Faults, v: &Value<'_>, base: &Path) -> Option<Vec<PathBuf>> {
    let items = f.array(v, "suppression", 64)?;
    let before = f.0.len();
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let path = index("suppression", i);
        let Some(s) = f.string(item, &path, 4096) else {
            continue;
        };
        let full = base.join(s);
        if !full.is_file() {
            f.push(
                &path,
                format!("`{s}`: no such file (relative to the campaign file's folder)"),
            );
            continue;
        }
        out.push(full);
    }
    (f.0.len() == before).then_some(out)
}

fn read_control(f: &mut Faults, v: &Value<'_>) -> Option<ControlGroup> {
    let obj = f.object(v, "control_group", &["share", "salt"])?;
    let share = f
        .req(obj, "share", "control_group")
        .and_then(|v| f.number_in(v, "control_group.share", 0.0, 0.99));
    let salt = f
        .req(obj, "salt", "control_group")
        .and_then(|v| f.string(v, "control_group.salt", 128));
    Some(ControlGroup {
        share: share?,
        salt: salt?.to_owned(),
    })
}

/// A campaign resolved against one compiled model: names turned into indices.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The channel's index in the model.
    pub channel: usize,
    /// The placement the engine decides for.
    pub placement: String,
    /// Campaign offer index (see [`Plan::offer_ids`]) by model offer index, `None` for the
    /// model's offers the campaign does not send.
    pub campaign_offer: Vec<Option<u16>>,
}

impl Plan {
    /// The campaign's offer ids in the order allocation numbers them: the file's `offers`,
    /// else the placement's offers in model order.
    pub fn offer_ids(spec: &CampaignSpec, model: &CompiledModel) -> Vec<String> {
        match &spec.offers {
            Some(list) => list.clone(),
            None => {
                let Some(ci) = model.channels.iter().position(|c| *c.name == spec.channel) else {
                    return Vec::new();
                };
                let slot = match &spec.placement {
                    Some(p) => model.channels[ci].slots.iter().find(|s| *s.placement == *p),
                    None => model.channels[ci].slots.first(),
                };
                let mut idx: Vec<u32> = slot.map(|s| s.candidates.to_vec()).unwrap_or_default();
                idx.sort_unstable();
                idx.iter()
                    .map(|&i| model.offers[i as usize].id.to_string())
                    .collect()
            }
        }
    }

    /// Checks the campaign against a model; every fault with the campaign file's path.
    pub fn resolve(
        spec: &CampaignSpec,
        model: &CompiledModel,
        offer_ids: &[String],
    ) -> Result<Plan, Vec<Fault>> {
        let mut f = Faults::default();
        let names = || {
            model
                .channels
                .iter()
                .map(|c| c.name.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let Some(ci) = model.channels.iter().position(|c| *c.name == spec.channel) else {
            f.push(
                "channel",
                format!(
                    "the model `{}` has no channel `{}` (it has: {})",
                    model.name,
                    spec.channel,
                    names()
                ),
            );
            return Err(f.0);
        };
        let channel = &model.channels[ci];
        let slot = match &spec.placement {
            Some(p) => match channel.slots.iter().find(|s| *s.placement == *p) {
                Some(s) => Some(s),
                None => {
                    f.push(
                        "placement",
                        format!(
                            "the model has no placement `{p}` on channel `{}`",
                            spec.channel
                        ),
                    );
                    None
                }
            },
            None if channel.slots.len() == 1 => channel.slots.first(),
            None => {
                f.push(
                    "placement",
                    format!(
                        "missing field: channel `{}` has {} placements, name one",
                        spec.channel,
                        channel.slots.len()
                    ),
                );
                None
            }
        };
        let mut campaign_offer = vec![None; model.offers.len()];
        if offer_ids.is_empty() {
            f.push("offers", "the campaign has no offer to send");
        }
        for (k, id) in offer_ids.iter().enumerate() {
            let path = match &spec.offers {
                Some(_) => index("offers", k),
                None => "offers".to_owned(),
            };
            match model.offers.iter().position(|o| *o.id == **id) {
                None => f.push(&path, format!("unknown offer `{id}`")),
                Some(oi) => {
                    if let Some(s) = slot {
                        if !s.candidates.contains(&(oi as u32)) {
                            f.push(
                                &path,
                                format!(
                                    "offer `{id}` is not shown in placement `{}` on channel `{}`",
                                    s.placement, spec.channel
                                ),
                            );
                        }
                    }
                    campaign_offer[oi] = Some(k as u16);
                }
            }
        }
        if spec.offers.is_none() {
            for id in spec.offer_limits.keys() {
                if !offer_ids.contains(id) {
                    f.push(
                        &join("offer_limits", id),
                        format!("`{id}` is not an offer of this campaign's placement"),
                    );
                }
            }
        }
        for cat in spec.category_limits.keys() {
            let sent = offer_ids.iter().any(|id| {
                model
                    .offers
                    .iter()
                    .any(|o| *o.id == **id && *o.category == **cat)
            });
            if !sent {
                f.push(
                    &join("category_limits", cat),
                    format!("no offer of the campaign has category `{cat}`"),
                );
            }
        }
        match (slot, f.is_empty()) {
            (Some(s), true) => Ok(Plan {
                channel: ci,
                placement: s.placement.to_string(),
                campaign_offer,
            }),
            _ => Err(f.0),
        }
    }
}
