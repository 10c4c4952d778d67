//! The model's contact policies: the top-level `policies` object and each offer's `caps`,
//! validated with exact fault paths and resolved into [`crate::engine::policy`] form.
//!
//! ```json
//! "policies": {
//!   "impression_cap": {"max_impressions": 3, "window_days": 7},
//!   "dismiss_cooldown_days": 30,
//!   "conversion_cooldown_days": 365,
//!   "sales_cap": {"max_contacts": 5, "window_days": 7, "categories": ["sales"]},
//!   "complaint_hold": {"categories": ["sales"], "timeout_days": 30}
//! }
//! ```
//! and per offer `"caps": {"max_impressions": 2, "window_days": 7, "dismiss_cooldown_days": 14,
//! "conversion_cooldown_days": 365}`, each field overriding the model-wide default (0 days turns a
//! cool-down off for that offer). Every policy is optional; a model without any holds nothing back.

use simd_json::prelude::*;

use super::walk::{join, Collects, Fault, Faults, Value};
use crate::engine::policy::MAX_CAP;
use crate::engine::policy::{stable_hash, OfferCaps, Policies, PolicyReasons, WindowCap, DAY_MS};

/// The `policies` object's fields.
pub(crate) const POLICY_KEYS: &[&str] = &[
    "impression_cap",
    "dismiss_cooldown_days",
    "conversion_cooldown_days",
    "sales_cap",
    "complaint_hold",
];
/// An offer's `caps` fields.
pub(crate) const CAPS_KEYS: &[&str] = &[
    "max_impressions",
    "window_days",
    "dismiss_cooldown_days",
    "conversion_cooldown_days",
];
/// Longest window or cool-down a policy may declare (ten years).
const MAX_DAYS: f64 = 3650.0;

/// A duration as declared (days, kept for messages) and resolved (milliseconds).
#[derive(Debug, Clone, Copy, Default)]
struct Days {
    days: f64,
    ms: i64,
}

impl Days {
    fn new(days: f64) -> Self {
        Days {
            days,
            ms: (days * DAY_MS as f64).round() as i64,
        }
    }
}

/// The `policies` object as read: model-wide defaults for offers, and the cross-offer policies.
#[derive(Debug)]
pub(super) struct Declared {
    impression_cap: Option<(u32, Days)>,
    dismiss_cooldown: Option<Days>,
    conversion_cooldown: Option<Days>,
    sales_cap: Option<(u32, Days)>,
    sales_categories: Vec<String>,
    complaint_timeout: Option<Days>,
    complaint_categories: Vec<String>,
}

impl Declared {
    /// No policy at all: what a model without `policies` declares.
    pub(super) const EMPTY: Declared = Declared {
        impression_cap: None,
        dismiss_cooldown: None,
        conversion_cooldown: None,
        sales_cap: None,
        sales_categories: Vec::new(),
        complaint_timeout: None,
        complaint_categories: Vec::new(),
    };
}

fn days(f: &mut Faults, v: &Value<'_>, path: &str) -> Option<Days> {
    f.number_in(v, path, 0.0, MAX_DAYS).map(Days::new)
}

fn positive_days(f: &mut Faults, v: &Value<'_>, path: &str) -> Option<Days> {
    let d = days(f, v, path)?;
    if d.ms <= 0 {
        f.push(path, "a window must be longer than zero");
        return None;
    }
    Some(d)
}

fn categories(f: &mut Faults, obj: &super::walk::Object<'_>, path: &str) -> Option<Vec<String>> {
    let v = f.req(obj, "categories", path)?;
    let list = f.string_list(v, &join(path, "categories"), 64)?;
    Some(list.into_iter().map(str::to_owned).collect())
}

/// Reads the top-level `policies` object (absent: no policies); `None` after a fault.
pub(super) fn read_policies(f: &mut Faults, v: Option<&Value<'_>>) -> Option<Declared> {
    let Some(v) = v else {
        return Some(Declared::EMPTY);
    };
    let obj = f.object(v, "policies", POLICY_KEYS)?;
    f.checked(|f| {
        let mut d = Declared::EMPTY;
        if let Some(cap) = obj.get("impression_cap") {
            let path = "policies.impression_cap";
            if let Some(c) = f.object(cap, path, &["max_impressions", "window_days"]) {
                let max = f.req(c, "max_impressions", path).and_then(|v| {
                    f.integer_in(v, &join(path, "max_impressions"), 1, MAX_CAP as u64)
                });
                let window = f
                    .req(c, "window_days", path)
                    .and_then(|v| positive_days(f, v, &join(path, "window_days")));
                if let (Some(max), Some(window)) = (max, window) {
                    d.impression_cap = Some((max as u32, window));
                }
            }
        }
        if let Some(x) = obj.get("dismiss_cooldown_days") {
            d.dismiss_cooldown = days(f, x, "policies.dismiss_cooldown_days");
        }
        if let Some(x) = obj.get("conversion_cooldown_days") {
            d.conversion_cooldown = days(f, x, "policies.conversion_cooldown_days");
        }
        if let Some(cap) = obj.get("sales_cap") {
            let path = "policies.sales_cap";
            if let Some(c) = f.object(cap, path, &["max_contacts", "window_days", "categories"]) {
                let max = f
                    .req(c, "max_contacts", path)
                    .and_then(|v| f.integer_in(v, &join(path, "max_contacts"), 1, MAX_CAP as u64));
                let window = f
                    .req(c, "window_days", path)
                    .and_then(|v| positive_days(f, v, &join(path, "window_days")));
                let cats = categories(f, c, path);
                if let (Some(max), Some(window), Some(cats)) = (max, window, cats) {
                    d.sales_cap = Some((max as u32, window));
                    d.sales_categories = cats;
                }
            }
        }
        if let Some(hold) = obj.get("complaint_hold") {
            let path = "policies.complaint_hold";
            if let Some(c) = f.object(hold, path, &["categories", "timeout_days"]) {
                let timeout = f
                    .req(c, "timeout_days", path)
                    .and_then(|v| positive_days(f, v, &join(path, "timeout_days")));
                let cats = categories(f, c, path);
                if let (Some(timeout), Some(cats)) = (timeout, cats) {
                    d.complaint_timeout = Some(timeout);
                    d.complaint_categories = cats;
                }
            }
        }
        Some(d)
    })
}

/// Warns of each category a cross-offer policy names that no offer carries: such a policy
/// holds no offer, which is a typo far more often than a plan (`Sales` for `sales`). And of
/// each offer whose category no policy names but is a letter or two from one a policy names
/// and other offers carry (`salse`): the typo takes the offer out of the policy.
pub(super) fn unused_categories(
    declared: &Declared,
    offer_categories: &[&str],
    warnings: &mut Vec<Fault>,
) {
    let lists = [
        ("policies.sales_cap.categories", &declared.sales_categories),
        (
            "policies.complaint_hold.categories",
            &declared.complaint_categories,
        ),
    ];
    for (path, list) in lists {
        for (i, c) in list.iter().enumerate() {
            if offer_categories.contains(&c.as_str()) {
                continue;
            }
            let hint = match offer_categories.iter().find(|o| o.eq_ignore_ascii_case(c)) {
                Some(o) => format!(": did you mean {o:?}? (letter case counts)"),
                None => {
                    let mut all = offer_categories.to_vec();
                    all.sort_unstable();
                    all.dedup();
                    format!(" (offers have {})", all.join(", "))
                }
            };
            warnings.push(Fault {
                path: format!("{path}[{i}]"),
                message: format!("no offer has category {c:?}, so the policy holds none{hint}"),
            });
        }
    }
    let named = |c: &str| lists.iter().any(|(_, l)| l.iter().any(|n| n == c));
    for (i, c) in offer_categories.iter().enumerate() {
        if named(c) {
            continue;
        }
        // Among names other offers carry: a name none does is warned about above.
        let near = lists.iter().find_map(|(path, list)| {
            let carried = list
                .iter()
                .map(String::as_str)
                .filter(|n| offer_categories.contains(n));
            crate::near::nearest(c, carried).map(|n| (n, path))
        });
        if let Some((n, path)) = near {
            warnings.push(Fault {
                path: format!("offers[{i}].category"),
                message: format!(
                    "{c:?} is named by no contact policy, and is close to {n:?}, which {path} \
                     names: as written, the offer is outside that policy"
                ),
            });
        }
    }
}

/// Reads one offer's `caps` over the model's defaults; `None` after a fault.
pub(super) fn read_caps(
    f: &mut Faults,
    v: Option<&Value<'_>>,
    path: &str,
    category: Option<&str>,
    declared: &Declared,
) -> Option<OfferCaps> {
    f.checked(|f| {
        let mut cap = declared.impression_cap;
        let mut cap_path = "policies.impression_cap".to_owned();
        let mut dismiss = declared.dismiss_cooldown;
        let mut dismiss_path = "policies.dismiss_cooldown_days".to_owned();
        let mut conversion = declared.conversion_cooldown;
        let mut conversion_path = "policies.conversion_cooldown_days".to_owned();
        if let Some(v) = v {
            if let Some(obj) = f.object(v, path, CAPS_KEYS) {
                let max = obj.get("max_impressions").and_then(|v| {
                    f.integer_in(v, &join(path, "max_impressions"), 1, MAX_CAP as u64)
                });
                let window = obj
                    .get("window_days")
                    .and_then(|v| positive_days(f, v, &join(path, "window_days")));
                match (max, window, cap) {
                    (None, None, _) => {}
                    (Some(m), Some(w), _) => cap = Some((m as u32, w)),
                    (Some(m), None, Some((_, w))) => cap = Some((m as u32, w)),
                    (None, Some(w), Some((m, _))) => cap = Some((m, w)),
                    (Some(_), None, None) => f.push(
                        &join(path, "window_days"),
                        "missing field (no policies.impression_cap to take it from)",
                    ),
                    (None, Some(_), None) => f.push(
                        &join(path, "max_impressions"),
                        "missing field (no policies.impression_cap to take it from)",
                    ),
                }
                if max.is_some() || window.is_some() {
                    cap_path = join(path, "max_impressions");
                }
                if let Some(x) = obj.get("dismiss_cooldown_days") {
                    dismiss = days(f, x, &join(path, "dismiss_cooldown_days"));
                    dismiss_path = join(path, "dismiss_cooldown_days");
                }
                if let Some(x) = obj.get("conversion_cooldown_days") {
                    conversion = days(f, x, &join(path, "conversion_cooldown_days"));
                    conversion_path = join(path, "conversion_cooldown_days");
                }
            }
        }
        let in_list = |list: &[String]| category.is_some_and(|c| list.iter().any(|l| l == c));
        let sales_capped = declared.sales_cap.is_some() && in_list(&declared.sales_categories);
        let complaint_held =
            declared.complaint_timeout.is_some() && in_list(&declared.complaint_categories);
        // A cool-down of zero days turns the policy off for this offer.
        let dismiss = dismiss.filter(|d| d.ms > 0);
        let conversion = conversion.filter(|d| d.ms > 0);
        let why = PolicyReasons {
            impressions: cap
                .map(|(m, w)| format!("{cap_path}: at most {m} impressions in {} days", w.days))
                .unwrap_or_default()
                .into(),
            dismiss: dismiss
                .map(|d| format!("{dismiss_path}: dismissed, held back for {} days", d.days))
                .unwrap_or_default()
                .into(),
            conversion: conversion
                .map(|d| format!("{conversion_path}: bought, held back for {} days", d.days))
                .unwrap_or_default()
                .into(),
            sales_cap: declared
                .sales_cap
                .filter(|_| sales_capped)
                .map(|(m, w)| {
                    format!(
                        "policies.sales_cap: at most {m} sales contacts in {} days across channels",
                        w.days
                    )
                })
                .unwrap_or_default()
                .into(),
            complaint: if complaint_held {
                "policies.complaint_hold: the customer has an open complaint".into()
            } else {
                "".into()
            },
        };
        Some(OfferCaps {
            impressions: cap.map(|(max, w)| WindowCap {
                max,
                window_ms: w.ms,
            }),
            dismiss_cooldown_ms: dismiss.map(|d| d.ms),
            conversion_cooldown_ms: conversion.map(|d| d.ms),
            sales_capped,
            complaint_held,
            why,
        })
    })
}

/// The cross-offer policies, with the horizon: the longest window any policy looks back over.
pub(super) fn finish<'o>(
    declared: &Declared,
    offers: impl IntoIterator<Item = &'o OfferCaps>,
) -> Policies {
    let mut horizon = [
        declared.sales_cap.map(|(_, w)| w.ms),
        declared.complaint_timeout.map(|d| d.ms),
    ]
    .into_iter()
    .flatten()
    .max()
    .unwrap_or(0);
    for caps in offers {
        for ms in [
            caps.impressions.map(|c| c.window_ms),
            caps.dismiss_cooldown_ms,
            caps.conversion_cooldown_ms,
        ]
        .into_iter()
        .flatten()
        {
            horizon = horizon.max(ms);
        }
    }
    Policies {
        sales_cap: declared.sales_cap.map(|(max, w)| WindowCap {
            max,
            window_ms: w.ms,
        }),
        sales_categories: declared
            .sales_categories
            .iter()
            .map(|c| stable_hash(c))
            .collect(),
        complaint_timeout_ms: declared.complaint_timeout.map(|d| d.ms),
        horizon_ms: horizon,
    }
}
