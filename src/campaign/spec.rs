//! The campaign file as the CVM team writes it, validated like a model: every fault with its
//! exact path, all at once, through the model's own [`Faults`] reader.
//!
//! Validation has two halves. [`parse`] checks the file on its own (fields, types, ranges,
//! minimums against maximums and capacity, suppression files that exist); [`super::plan::Plan::resolve`]
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
//!  "send_window": {"from": "09:00", "to": "20:00", "days": ["mon", "tue", "wed", "thu", "fri"],
//!                  "time_zone": {"feature": "tz"}, "default_time_zone": "Europe/Berlin"},
//!  "transactional": false}
//! ```
//!
//! Several channels in one list replace `channel`, `placement` and `capacity` with
//! `"channels": {"sms": {"placement": "sms_campaign", "max_contacts": 50000, "per": "day"},
//! "email": {"placement": "email_campaign", "reachable": {"feature": "email_opt_in", "op": "eq",
//! "value": 1}}}`; a frequency cap may count the customer's calendar week
//! (`"window": "calendar_week"`) instead of `window_days`, and a capacity's `per` may be
//! `calendar_day` or `calendar_week` in the campaign's zone (the send window's
//! `default_time_zone`) instead of the rolling `day` or `week`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use simd_json::prelude::*;

use super::send::{self, SendWindow};
use crate::engine::MAX_LIMIT;
use crate::model::walk::{index, join, Faults, Value};
use crate::model::Fault;
use channels::{read_capacity, read_channels};
pub use channels::{Capacity, ChannelSpec, Per, MAX_CHANNELS};

mod channels;

/// Largest campaign file read, in bytes.
pub const MAX_FILE_BYTES: u64 = 1 << 20;
/// The outbound channels a frequency cap counts when the file names none.
pub const DEFAULT_OUTBOUND: &[&str] = &["sms", "email", "push"];

const TOP_KEYS: &[&str] = &[
    "name",
    "description",
    "channel",
    "channels",
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
    "send_window",
];

/// An offer's minimum and maximum number of customers in one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct OfferLimit {
    /// Filled first, before other offers take the capacity, when the base allows.
    pub min: u64,
    /// Never more than this.
    pub max: Option<u64>,
}

/// "At most N contacts in W days" (or in the customer's calendar week) across outbound
/// channels, on top of the model's policies.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Frequency {
    /// Most contacts in the window, this campaign's included.
    pub max_contacts: u32,
    /// Window in days (7 for a calendar week).
    pub window_days: u32,
    /// The window is the customer's calendar week so far (from Monday 00:00 in their time
    /// zone), not the last `window_days` days.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub calendar_week: bool,
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
    /// The outbound channel the list is for (with `channels`: their names joined by `+`).
    pub channel: String,
    /// With several channels: each, by name (the allocation numbers them in this order).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<ChannelSpec>,
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
    /// When customers may be contacted, in their own time zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_window: Option<SendWindow>,
}

impl CampaignSpec {
    /// True when the file lists `channels` (the list then names each row's channel and why
    /// the others were not chosen).
    pub fn multi_channel(&self) -> bool {
        !self.channels.is_empty()
    }

    /// The campaign's channels as one list: `channels`, or the one `channel` with the file's
    /// placement and capacity.
    pub fn channel_list(&self) -> Vec<ChannelSpec> {
        if self.multi_channel() {
            return self.channels.clone();
        }
        vec![ChannelSpec {
            name: self.channel.clone(),
            placement: self.placement.clone(),
            capacity: self.capacity,
            reachable: None,
        }]
    }
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
    let mut bytes = crate::files::read_regular(path, MAX_FILE_BYTES).map_err(io)?;
    // An editor's byte-order mark is not JSON, and says nothing anybody meant.
    if bytes.starts_with(b"\xef\xbb\xbf") {
        bytes.drain(..3);
    }
    Ok(bytes)
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
    // A field written twice would be read as whichever value the parser keeps.
    if let Some(key) = crate::model::walk::duplicate_key(&bytes) {
        return Err(SpecError::Syntax(format!(
            "`{}` is written twice in one object: give each field once",
            key.chars().take(64).collect::<String>()
        )));
    }
    // simd-json parses in place: the text as written says where a syntax error is.
    let text = bytes.clone();
    let doc = simd_json::to_borrowed_value(&mut bytes)
        .map_err(|e| SpecError::Syntax(crate::model::syntax_error(&text, &e).to_string()))?;
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
    let channels = top.get("channels").map(|v| read_channels(f, v));
    let channel = match (top.get("channel"), &channels) {
        (Some(v), None) => f.string(v, "channel", 128).map(str::to_owned),
        (None, Some(Some(list))) => Some(
            list.iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join("+"),
        ),
        (None, Some(None)) => None,
        (Some(_), Some(_)) => {
            f.push("channels", "give either `channel` or `channels`, not both");
            None
        }
        (None, None) => {
            f.push("channel", "missing field (or give `channels`)");
            None
        }
    };
    if channels.is_some() {
        for (key, what) in [
            ("placement", "each channel's `placement`"),
            ("capacity", "each channel's `max_contacts` and `per`"),
        ] {
            if top.contains_key(key) {
                f.push(key, format!("with `channels`, give {what} instead"));
            }
        }
    }
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
    let send_window = top.get("send_window").map(|v| send::read(f, v));
    if send_window.is_none() {
        channels::calendar_needs_zone(f, &capacity, &channels);
    }
    if let (Some(Some(fr)), None) = (&frequency, &send_window) {
        if fr.calendar_week {
            f.push(
                "frequency.window",
                "`calendar_week` is counted in each customer's time zone: give `send_window` (its `time_zone` and `default_time_zone`)",
            );
        }
    }
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
    let mapped = top
        .get("channels")
        .and_then(|v| v.as_object())
        .map(|o| o.len());
    if let Some(n) = mapped {
        for key in ["offer_limits", "category_limits"] {
            let set = top
                .get(key)
                .and_then(|v| v.as_object())
                .is_some_and(|o| !o.is_empty());
            if set {
                // Offer and category limits cross channel capacities: the best list is then
                // no longer a flow (see `flow`), and no exact allocation is offered for it.
                // A map of one channel is allocated as several are: name its channel with
                // `channel`, `placement` and `capacity` for the limits to apply.
                f.push(
                    key,
                    if n == 1 {
                        "not supported with a `channels` map yet: give its one channel as `channel`, `placement` and `capacity`, where the limit applies"
                    } else {
                        "not supported with several `channels` yet: split the campaign by channel, or drop the limit"
                    },
                );
            }
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
        channel: channel?,
        channels: channels.flatten().unwrap_or_default(),
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
        send_window: send_window.flatten(),
    })
}

fn read_offer_limits(f: &mut Faults, v: &Value<'_>) -> Option<BTreeMap<String, OfferLimit>> {
    let obj = f.map(v, "offer_limits")?;
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
    // The limits that read are kept, so the check still resolves their names against the
    // model; the faults already refuse the file.
    Some(out)
}

fn read_category_limits(f: &mut Faults, v: &Value<'_>) -> Option<BTreeMap<String, u64>> {
    let obj = f.map(v, "category_limits")?;
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
    // The limits that read are kept, so the check still resolves their names against the
    // model; the faults already refuse the file.
    Some(out)
}

fn read_frequency(f: &mut Faults, v: &Value<'_>) -> Option<Frequency> {
    let obj = f.object(
        v,
        "frequency",
        &["max_contacts", "window_days", "window", "channels"],
    )?;
    let max = f
        .req(obj, "max_contacts", "frequency")
        .and_then(|v| f.integer_in(v, "frequency.max_contacts", 1, 256));
    let (days, calendar_week) = match (obj.get("window_days"), obj.get("window")) {
        (Some(v), None) => (f.integer_in(v, "frequency.window_days", 1, 366), false),
        (None, Some(w)) => match w.as_str() {
            Some("calendar_week") => (Some(7), true),
            _ => {
                f.push(
                    "frequency.window",
                    "expected `calendar_week` (or give `window_days` for rolling days)",
                );
                (None, false)
            }
        },
        (Some(_), Some(_)) => {
            f.push(
                "frequency.window",
                "give `window_days` or `window`, not both",
            );
            (None, false)
        }
        (None, None) => {
            f.push(
                "frequency.window_days",
                "missing field (or `window`: `calendar_week`)",
            );
            (None, false)
        }
    };
    let channels = match obj.get("channels") {
        Some(v) => f
            .string_list(v, "frequency.channels", 64)
            .map(|l| l.into_iter().map(str::to_owned).collect()),
        None => Some(DEFAULT_OUTBOUND.iter().map(|s| s.to_string()).collect()),
    };
    Some(Frequency {
        max_contacts: max? as u32,
        window_days: days? as u32,
        calendar_week,
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
        // Read as the run reads it, so a list the run would refuse fails the check.
        match std::fs::read(&full) {
            Ok(bytes) => {
                if let Err(e) = super::suppression::parse(&bytes) {
                    f.push(&path, format!("`{s}`: {e}"));
                    continue;
                }
            }
            Err(e) => {
                f.push(&path, format!("`{s}`: {e}"));
                continue;
            }
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
