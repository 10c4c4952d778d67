//! A campaign's channels and their capacities: `capacity` (one channel) or `channels` (several,
//! each with its placement, capacity and `reachable` rule), and the period a capacity counts,
//! rolling or a calendar day or week in the campaign's time zone.

use simd_json::prelude::*;

use super::send;
use crate::model::walk::{join, Faults, Value};

/// The period a channel's capacity is counted over: rolling, looking back from the run, or the
/// calendar day or week the run falls in, in the campaign's time zone (its send window's
/// `default_time_zone`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Per {
    /// The last 24 hours.
    Day,
    /// The last 7 days.
    Week,
    /// Since local midnight.
    CalendarDay,
    /// Since Monday 00:00 local time.
    CalendarWeek,
}

impl Per {
    /// The name the campaign file uses.
    pub fn name(self) -> &'static str {
        match self {
            Per::Day => "day",
            Per::Week => "week",
            Per::CalendarDay => "calendar_day",
            Per::CalendarWeek => "calendar_week",
        }
    }

    /// The first instant (Unix ms) whose contacts count against a capacity of this period, for
    /// a run at `now_ms` in the campaign's zone `tz`.
    pub fn counts_from(self, now_ms: i64, tz: chrono_tz::Tz) -> i64 {
        let day = crate::engine::policy::DAY_MS;
        match self {
            Per::Day => now_ms - day + 1,
            Per::Week => now_ms - 7 * day + 1,
            Per::CalendarDay => send::day_start(tz, now_ms),
            Per::CalendarWeek => send::week_start(tz, now_ms),
        }
    }

    fn calendar(self) -> bool {
        matches!(self, Per::CalendarDay | Per::CalendarWeek)
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

/// One channel of a campaign that lists several (`channels`): its placement, capacity and who
/// can be reached on it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ChannelSpec {
    /// The model's channel.
    pub name: String,
    /// The placement decided for on it; `None` means the channel's only placement.
    pub placement: Option<String>,
    /// Its capacity.
    pub capacity: Option<Capacity>,
    /// Who can be reached on it: a rule on the snapshot's features, compiled as an offer's
    /// eligibility is (`None`: everyone).
    pub reachable: Option<serde_json::Value>,
}

/// Most channels one campaign lists.
pub const MAX_CHANNELS: usize = 8;

/// A calendar period needs the campaign's time zone, which is its send window's
/// `default_time_zone`: each calendar `per` of a campaign without a send window is a fault.
pub(super) fn calendar_needs_zone(
    f: &mut Faults,
    capacity: &Option<Option<Capacity>>,
    channels: &Option<Option<Vec<ChannelSpec>>>,
) {
    let calendar = |c: &Capacity| c.per.calendar();
    let mut paths: Vec<String> = Vec::new();
    if let Some(Some(c)) = &capacity {
        if calendar(c) {
            paths.push("capacity.per".into());
        }
    }
    if let Some(Some(list)) = &channels {
        for ch in list
            .iter()
            .filter(|ch| ch.capacity.as_ref().is_some_and(calendar))
        {
            paths.push(join(&join("channels", &ch.name), "per"));
        }
    }
    for p in paths {
        f.push(
            &p,
            "a calendar period is counted in the campaign's time zone: give `send_window` (its `default_time_zone`)",
        );
    }
}

pub(super) fn read_capacity(f: &mut Faults, v: &Value<'_>) -> Option<Capacity> {
    let obj = f.object(v, "capacity", &["max_contacts", "per"])?;
    capacity_fields(f, obj, "capacity")
}

/// `max_contacts` (required) and `per` of the object at `path`.
fn capacity_fields(
    f: &mut Faults,
    obj: &simd_json::borrowed::Object<'_>,
    path: &str,
) -> Option<Capacity> {
    let max = f
        .req(obj, "max_contacts", path)
        .and_then(|v| f.integer_in(v, &join(path, "max_contacts"), 1, 1 << 40));
    let per = match obj.get("per") {
        None => Some(Per::Day),
        Some(v) => {
            let all = [Per::Day, Per::Week, Per::CalendarDay, Per::CalendarWeek];
            match all.into_iter().find(|p| v.as_str() == Some(p.name())) {
                Some(p) => Some(p),
                None => {
                    f.push(
                        &join(path, "per"),
                        "expected `day` or `week` (rolling 24 hours or 7 days), or `calendar_day` or `calendar_week` (in the campaign's time zone)",
                    );
                    None
                }
            }
        }
    };
    Some(Capacity {
        max_contacts: max?,
        per: per?,
    })
}

/// `channels`: by name, each with its placement, capacity and `reachable` rule; sorted by
/// name, which is also the order ties between channels are broken in.
pub(super) fn read_channels(f: &mut Faults, v: &Value<'_>) -> Option<Vec<ChannelSpec>> {
    let obj = f.map(v, "channels")?;
    let before = f.0.len();
    if obj.is_empty() {
        f.push("channels", "must name at least one channel");
    }
    if obj.len() > MAX_CHANNELS {
        f.push(
            "channels",
            format!("{} channels, at most {MAX_CHANNELS}", obj.len()),
        );
    }
    let mut names: Vec<&str> = obj.keys().map(|k| k.as_ref()).collect();
    names.sort_unstable();
    let mut out = Vec::new();
    for name in names {
        let path = join("channels", name);
        let Some(o) = obj
            .get(name)
            .and_then(|v| f.object(v, &path, &["placement", "max_contacts", "per", "reachable"]))
        else {
            continue;
        };
        let placement = o.get("placement").map(|v| {
            f.string(v, &join(&path, "placement"), 128)
                .map(str::to_owned)
        });
        let capacity = match (o.get("max_contacts"), o.get("per")) {
            (None, None) => Some(None),
            (None, Some(_)) => {
                f.push(&join(&path, "per"), "`per` needs `max_contacts`");
                None
            }
            _ => capacity_fields(f, o, &path).map(Some),
        };
        let reachable = match o.get("reachable") {
            None => Some(None),
            Some(r) if r.is_object() => simd_json::to_string(r)
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok())
                .map(Some),
            Some(_) => {
                f.push(
                    &join(&path, "reachable"),
                    "expected a rule object, such as {\"feature\": \"email_opt_in\", \"op\": \"eq\", \"value\": 1}",
                );
                None
            }
        };
        let (Some(placement), Some(capacity), Some(reachable)) = (
            placement.map_or(Some(None), |p| p.map(Some)),
            capacity,
            reachable,
        ) else {
            continue;
        };
        out.push(ChannelSpec {
            name: name.to_owned(),
            placement,
            capacity,
            reachable,
        });
    }
    (f.0.len() == before).then_some(out)
}
