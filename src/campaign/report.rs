//! `nextbest campaign report DIR --data-dir DATA`: did the campaign work? The outcomes logged
//! since the run, for the list's targets against the control group, per offer and overall.
//!
//! A target converted when the log holds a conversion of their offer after the run; a
//! control-group customer, when it holds one of the offer they would have been sent. Rates
//! get the Wilson score interval and their difference (the lift) Newcombe's hybrid score
//! interval, the very method of the live funnel's challenger lift
//! ([`crate::contact::funnel::lift`]); value is conversions times the offer's value (the
//! champion's, as the summary states it), per customer with the rate's interval scaled. A list
//! over several channels is also compared per channel: each channel's targets against the
//! control customers who would have been sent on it.
//!
//! Reads the output folder and the event log (through [`super::history::each_event`]), never
//! writes either.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::history;
use super::output::{open_list, Summary, CONTROL_CSV, LIST_CSV, SUMMARY_JSON};
use super::spec;
use crate::contact::funnel::lift::{difference, wilson, Estimate};
use crate::contact::EventKind;

/// How far before the run another list's contacts of a target are said.
const WEEK_MS: i64 = 7 * crate::engine::policy::DAY_MS;

/// The interval method, as the report states it.
pub const METHOD: &str = "conversion rate per customer: Wilson score, 95 %; lift (targets - control): Newcombe hybrid score (MOVER); value per customer: the rate's interval times the offer's value; all offers: rates over the whole groups, added value the sum of the offers'";

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A file of the output folder is missing or not what a run writes.
    #[error("{path}: {detail}")]
    Input {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The event log could not be read.
    #[error("event log: {0}")]
    Log(#[from] crate::contact::log::LogError),
    /// `--until` comes before the run: no outcome of the list can be in the window.
    #[error("--until {0} is before the run's time {1}: outcomes are counted from the run on")]
    Until(String, String),
}

/// One group's outcomes (the targets, or the control group).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Group {
    /// Customers in the group.
    pub customers: u64,
    /// Of them, those with a conversion of their offer since the run.
    pub converted: u64,
    /// `converted / customers` with its interval (`None` for an empty group).
    pub rate: Option<Estimate>,
    /// Value of the conversions.
    pub value: f64,
    /// Value per customer with its interval (one offer's group only).
    pub value_per_customer: Option<Estimate>,
}

/// Targets against control for one offer, or overall.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Comparison {
    /// The list's customers.
    pub targets: Group,
    /// The held-out customers.
    pub control: Group,
    /// Target rate minus control rate, with its interval (`None` when a group is empty).
    pub lift: Option<Estimate>,
    /// Value per customer, targets minus control, with its interval (per offer only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_lift_per_customer: Option<Estimate>,
    /// Value the campaign added: the value lift per customer times the targets (`None` when it
    /// cannot be measured: no targets or no control customers; all offers: the measured
    /// offers' sum, `None` when none is).
    pub incremental_value: Option<f64>,
}

/// The report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Campaign name.
    pub campaign: String,
    /// The run's time: outcomes from then on count.
    pub since: String,
    /// Outcomes after this time do not count (`--until`; absent: all of the log).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// Events read from the log.
    pub events: u64,
    /// Conversions after the run by the list's and the control group's customers.
    pub conversions: u64,
    /// The list's contacts the log holds: impressions quoting one of its decision ids
    /// (whenever recorded), and impressions of a target's offer since the run quoting none (a
    /// sending system reporting them itself). 0 means the list was committed to another data
    /// folder, or not yet.
    pub contacts_in_log: u64,
    /// Targets the log shows contacted since the run with their offer on an outbound channel
    /// (the list's, or SMS, e-mail, push) by another list (a decision id not in this one: a
    /// later run, another campaign): a conversion after that counts in both lists' reports.
    /// `--until` before those contacts measures this list alone.
    pub targets_contacted_again: u64,
    /// Targets another list sent their offer in the 7 days before the run (this list is a
    /// top-up of it, or repeats it): their conversions may be that list's doing, and both
    /// reports claim them.
    pub targets_contacted_before: u64,
    /// Control-group customers the log shows contacted since the run with the offer they were
    /// held out of (another campaign, a later run): their outcomes no longer measure what the
    /// list left undone, and the lift is understated. `--until` before those contacts helps.
    pub control_contacted: u64,
    /// The interval method.
    pub method: &'static str,
    /// Per offer.
    pub offers: BTreeMap<String, Comparison>,
    /// Per channel, for a list over several: the customers sent (or held out) on it, each
    /// converted when any of their offers on it did; its added value is its offers' sum.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub channels: BTreeMap<String, Comparison>,
    /// All offers together (a customer converted when any of their offers did).
    pub overall: Comparison,
    /// What a reader must know to read the figures right (the notes under the table).
    pub notes: Vec<String>,
}

/// Who is in a group: each customer's offers.
type Members = BTreeMap<String, Vec<String>>;

/// Adds a customer to a set, copying the id only the first time.
fn once(set: &mut HashSet<String>, customer: &str) {
    if !set.contains(customer) {
        set.insert(customer.to_owned());
    }
}

/// A list's or control group's rows as the report reads them.
struct Rows {
    /// Each customer's offers.
    members: Members,
    /// The same, by the channel of each row.
    by_channel: BTreeMap<String, Members>,
    /// The rows' decision ids (the control group has none).
    decisions: HashSet<u128>,
}

fn read_rows(path: &Path) -> Result<Rows, ReportError> {
    let bad = |detail: String| ReportError::Input {
        path: path.to_owned(),
        detail,
    };
    let (mut r, [c, o]) = open_list(path, ["customer_id", "offer_id"]).map_err(bad)?;
    // Lists written before rows named their channel are one channel's.
    let header = r.headers().map_err(|e| bad(e.to_string()))?;
    let at = |name: &str| header.iter().position(|h| h == name);
    let (ch, d) = (at("channel"), at("decision_id"));
    let mut rows = Rows {
        members: Members::new(),
        by_channel: BTreeMap::new(),
        decisions: HashSet::new(),
    };
    for rec in r.records() {
        let rec = rec.map_err(|e| bad(e.to_string()))?;
        rows.members
            .entry(rec[c].to_owned())
            .or_default()
            .push(rec[o].to_owned());
        rows.by_channel
            .entry(ch.and_then(|i| rec.get(i)).unwrap_or("").to_owned())
            .or_default()
            .entry(rec[c].to_owned())
            .or_default()
            .push(rec[o].to_owned());
        if let Some(Ok(id)) = d.and_then(|i| rec.get(i)).map(ulid::Ulid::from_string) {
            rows.decisions.insert(id.0);
        }
    }
    Ok(rows)
}

fn group(customers: u64, converted: u64, value: f64, offer_value: Option<f64>) -> Group {
    let rate = wilson(converted, customers);
    Group {
        customers,
        converted,
        rate,
        value,
        // Over several offers the value has no interval by this method: none is claimed.
        value_per_customer: offer_value.and_then(|v| rate.map(|r| r.scaled(v.max(0.0)))),
    }
}

fn compare(targets: Group, control: Group, per_offer: bool) -> Comparison {
    let lift = targets
        .rate
        .zip(control.rate)
        .map(|(t, c)| difference(c, t));
    let value_lift = match per_offer {
        true => targets
            .value_per_customer
            .zip(control.value_per_customer)
            .map(|(t, c)| difference(c, t)),
        false => None,
    };
    let per_customer = targets
        .value_per_customer
        .zip(control.value_per_customer)
        .map(|(t, c)| t.value - c.value);
    Comparison {
        incremental_value: per_customer.map(|v| v * targets.customers as f64),
        targets,
        control,
        lift,
        value_lift_per_customer: value_lift,
    }
}

/// Reads `dir` (a run's output folder) and the event log of `data_dir`, and compares the
/// targets' outcomes since the run (up to `until_ms`, when given) with the control group's.
pub fn report(dir: &Path, data_dir: &Path, until_ms: Option<i64>) -> Result<Report, ReportError> {
    let summary_path = dir.join(SUMMARY_JSON);
    if !summary_path.exists() && dir.join(super::shard::SHARD_JSON).exists() {
        return Err(ReportError::Input {
            path: dir.to_owned(),
            detail: "a shard's folder, not a list: merge the shards first (`nextbest campaign \
                     merge`), commit the merged list, then report on it"
                .into(),
        });
    }
    let text = std::fs::read_to_string(&summary_path).map_err(|e| ReportError::Input {
        path: summary_path.clone(),
        detail: e.to_string(),
    })?;
    let summary: Summary = serde_json::from_str(&text).map_err(|e| ReportError::Input {
        path: summary_path.clone(),
        detail: format!("not a campaign summary: {e}"),
    })?;
    // A mistyped folder would report a campaign that converted nobody.
    let not_committed = |detail: &str| ReportError::Input {
        path: data_dir.to_owned(),
        detail: format!(
            "{detail}: give the data folder the list was committed to (`campaign commit \
             --data-dir`, or the server's `--data-dir` for `--server`)"
        ),
    };
    let Rows {
        members: targets,
        by_channel: targets_by_channel,
        decisions: ours,
    } = read_rows(&dir.join(LIST_CSV))?;
    let Rows {
        members: control,
        by_channel: control_by_channel,
        ..
    } = read_rows(&dir.join(CONTROL_CSV))?;
    if !data_dir.is_dir() {
        return Err(not_committed("no such folder"));
    }
    if let Some(until) = until_ms.filter(|&u| u < summary.run_at_ms) {
        let at = crate::rfc3339::format_ms;
        return Err(ReportError::Until(at(until), at(summary.run_at_ms)));
    }

    // (customer, offer) pairs of either group that converted after the run.
    let mut watched: HashMap<&str, &[String]> = HashMap::new();
    for (c, offers) in targets.iter().chain(&control) {
        watched.insert(c, offers);
    }
    let mut converted: HashSet<(String, String)> = HashSet::new();
    let (mut events, mut conversions, mut contacts) = (0u64, 0u64, 0u64);
    let mut contaminated: HashSet<String> = HashSet::new();
    let mut again: HashSet<String> = HashSet::new();
    let mut before: HashSet<String> = HashSet::new();
    let until = until_ms.unwrap_or(i64::MAX);
    history::each_event(data_dir, |e| {
        events += 1;
        if e.kind == EventKind::Impression && e.decision_id.is_some_and(|d| ours.contains(&d)) {
            // The list's own contact, whenever it was recorded (a list committed before its
            // time is recorded as of the commit).
            contacts += 1;
            return;
        }
        let counted = matches!(e.kind, EventKind::Conversion | EventKind::Impression);
        let recent = e.ts_ms >= summary.run_at_ms - WEEK_MS && e.ts_ms < summary.run_at_ms;
        let in_window = e.ts_ms >= summary.run_at_ms && e.ts_ms <= until;
        if !counted || !(in_window || (recent && e.kind == EventKind::Impression)) {
            return;
        }
        let (Some(offer), Some(offers)) = (e.offer_id, watched.get(e.customer_id)) else {
            return;
        };
        if !offers.iter().any(|o| o == offer) {
            return;
        }
        // Another list's message of the target's offer: an impression quoting another decision
        // on an outbound channel (an inbound page showing the offer is not one).
        let other_list = e.decision_id.is_some()
            && targets.contains_key(e.customer_id)
            && e.channel.is_some_and(|c| {
                targets_by_channel.contains_key(c) || spec::DEFAULT_OUTBOUND.contains(&c)
            });
        if !in_window {
            if other_list {
                once(&mut before, e.customer_id);
            }
            return;
        }
        if e.kind == EventKind::Impression {
            if other_list {
                once(&mut again, e.customer_id);
            } else if e.decision_id.is_none() && targets.contains_key(e.customer_id) {
                contacts += 1;
            }
            if control.contains_key(e.customer_id) {
                once(&mut contaminated, e.customer_id);
            }
        } else {
            conversions += 1;
            converted.insert((e.customer_id.to_owned(), offer.to_owned()));
        }
    })?;
    if events == 0 {
        return Err(not_committed("its event log holds no event"));
    }
    let hit = |c: &str, o: &str| converted.contains(&(c.to_owned(), o.to_owned()));
    let value_of = |o: &str| summary.offers.get(o).map_or(0.0, |s| s.value);

    // Per offer, then all offers together: stratified by offer, so the added value is what the
    // offers' rows add up to.
    let compared = |targets: &Members, control: &Members| {
        let mut offers = BTreeMap::new();
        for id in summary.offers.keys() {
            let side = |members: &Members| {
                let (mut n, mut k) = (0u64, 0u64);
                for (c, list) in members {
                    if list.iter().any(|o| o == id) {
                        n += 1;
                        k += u64::from(hit(c, id));
                    }
                }
                group(n, k, k as f64 * value_of(id), Some(value_of(id)))
            };
            offers.insert(id.clone(), compare(side(targets), side(control), true));
        }
        let all = |members: &Members| {
            let (mut k, mut value) = (0u64, 0.0);
            for (c, list) in members {
                let won: Vec<&String> = list.iter().filter(|o| hit(c, o)).collect();
                k += u64::from(!won.is_empty());
                value += won.iter().map(|o| value_of(o)).sum::<f64>();
            }
            group(members.len() as u64, k, value, None)
        };
        let mut overall = compare(all(targets), all(control), false);
        overall.incremental_value = offers
            .values()
            .filter_map(|c| c.incremental_value)
            .reduce(|a, b| a + b);
        (offers, overall)
    };
    let (offers, overall) = compared(&targets, &control);
    let mut channels = BTreeMap::new();
    let names: BTreeSet<&String> = targets_by_channel
        .keys()
        .chain(control_by_channel.keys())
        .collect();
    if names.len() > 1 {
        let none = Members::new();
        for name in names {
            let t = targets_by_channel.get(name).unwrap_or(&none);
            let c = control_by_channel.get(name).unwrap_or(&none);
            channels.insert(name.clone(), compared(t, c).1);
        }
    }
    let mut report = Report {
        campaign: summary.campaign.clone(),
        since: crate::rfc3339::format_ms(summary.run_at_ms),
        until: until_ms.map(crate::rfc3339::format_ms),
        events,
        conversions,
        contacts_in_log: contacts,
        targets_contacted_again: again.len() as u64,
        targets_contacted_before: before.len() as u64,
        control_contacted: contaminated.len() as u64,
        method: METHOD,
        offers,
        channels,
        overall,
        notes: Vec::new(),
    };
    report.notes = notes(&report);
    Ok(report)
}

/// The report as a table for the terminal.
pub fn table(r: &Report) -> String {
    use std::fmt::Write as _;
    let pct = |e: Option<Estimate>| {
        e.map_or("-".to_owned(), |e| {
            format!(
                "{:.2} % ({:.2} to {:.2})",
                100.0 * e.value,
                100.0 * e.low,
                100.0 * e.high
            )
        })
    };
    let mut t = String::new();
    let until = r
        .until
        .as_ref()
        .map(|u| format!(" until {u}"))
        .unwrap_or_default();
    let _ = writeln!(
        t,
        "campaign {}: outcomes since {}{until} ({} events read)",
        r.campaign, r.since, r.events
    );
    let _ = writeln!(
        t,
        "  {:<22} {:>9} {:>9} {:>27} {:>27} {:>12}",
        "offer", "targets", "control", "targets' rate", "lift (targets - control)", "added value"
    );
    let channels: Vec<(String, &Comparison)> = r
        .channels
        .iter()
        .map(|(k, v)| (format!("on {k}"), v))
        .collect();
    let rows = r
        .offers
        .iter()
        .map(|(k, v)| (k.as_str(), v))
        .chain(channels.iter().map(|(k, v)| (k.as_str(), *v)))
        .chain(std::iter::once(("all offers", &r.overall)));
    for (name, c) in rows {
        let _ = writeln!(
            t,
            "  {:<22} {:>9} {:>9} {:>27} {:>27} {:>12}",
            name,
            format!("{}/{}", c.targets.converted, c.targets.customers),
            format!("{}/{}", c.control.converted, c.control.customers),
            pct(c.targets.rate),
            pct(c.lift),
            c.incremental_value
                .map_or("-".to_owned(), |v| format!("{v:.2}"))
        );
    }
    let _ = writeln!(t, "  ({})", r.method);
    for note in &r.notes {
        let _ = writeln!(t, "  note: {note}");
    }
    t
}

/// What a reader must know to read the figures right, one sentence each: printed under the
/// table and kept in the JSON as `notes`.
fn notes(r: &Report) -> Vec<String> {
    let mut out = Vec::new();
    let unmeasured: Vec<&str> = r
        .offers
        .iter()
        .filter(|(_, c)| c.targets.customers > 0 && c.incremental_value.is_none())
        .map(|(id, _)| id.as_str())
        .collect();
    if !unmeasured.is_empty() {
        out.push(format!(
            "{} had targets but no control customers: their added value is not measured and \
             not in the total",
            unmeasured.join(", ")
        ));
    }
    if r.contacts_in_log == 0 {
        out.push(format!(
            "none of the list's {} contacts is in this log: was it committed to another data \
             folder, or not yet?",
            r.overall.targets.customers
        ));
    }
    if r.targets_contacted_again > 0 {
        out.push(format!(
            "{} of the list's {} targets were contacted again since the run with their offer by \
             another list (a later run, another campaign): a conversion after that counts in \
             both lists' reports; `--until` before those contacts measures this list alone",
            r.targets_contacted_again, r.overall.targets.customers
        ));
    }
    if r.targets_contacted_before > 0 {
        out.push(format!(
            "{} of the list's {} targets had their offer from another list in the 7 days before \
             the run: their conversions may be that list's doing, and both reports claim them",
            r.targets_contacted_before, r.overall.targets.customers
        ));
    }
    if r.control_contacted > 0 {
        out.push(format!(
            "{} of the control group's {} customers were contacted since the run with the offer \
             they were held out of (another campaign, a later run): the lift is understated; \
             `--until` before those contacts measures the run alone",
            r.control_contacted, r.overall.control.customers
        ));
    }
    out
}
