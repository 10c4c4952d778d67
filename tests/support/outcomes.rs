//! Simulated outcomes of a sent campaign list, for the demo (`examples/campaign_outcomes.rs`)
//! and the test that keeps the README's demo true (`tests/campaign_outcomes.rs`).
//!
//! Each target converts on their offer with the chance the model gave them (the row's
//! `propensity`); each control-group customer converts on the offer they would have been sent
//! with [`CONTROL_SHARE`] of that chance, since some buy without being asked. The draw is a
//! hash of customer and offer, so the same list gives the same outcomes on every machine.
//! The conversions go into the data folder's event log as a server would write them.

use std::path::Path;

use nextbest::contact::{Clock, ContactConfig, Contacts, Event, EventKind};

/// A control customer's chance to convert unasked, as a share of the model's propensity.
pub const CONTROL_SHARE: f64 = 0.4;

/// What [`simulate`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Simulated {
    /// The list's (customer, offer) rows, and those that converted.
    pub targets: (u64, u64),
    /// The control group's rows, and those that converted.
    pub control: (u64, u64),
}

impl std::fmt::Display for Simulated {
    /// The line the demo prints.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "simulated conversions: {} of {} target rows, {} of {} control-group rows",
            self.targets.1, self.targets.0, self.control.1, self.control.0
        )
    }
}

/// A uniform draw in `[0, 1)` from customer and offer (FNV-1a, then the top 53 bits).
fn draw(customer: &str, offer: &str) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in customer.bytes().chain([0]).chain(offer.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 29;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 32;
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// `(customer, offer, channel, propensity)` of every row of a list file.
fn rows(path: &Path, channel: bool) -> Result<Vec<(String, String, String, f64)>, String> {
    let mut r = csv::Reader::from_path(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let h = r.headers().map_err(|e| e.to_string())?.clone();
    let col = |name: &str| {
        h.iter()
            .position(|x| x == name)
            .ok_or_else(|| format!("{}: no column `{name}`", path.display()))
    };
    let (c, o, p) = (col("customer_id")?, col("offer_id")?, col("propensity")?);
    let ch = if channel { Some(col("channel")?) } else { None };
    r.records()
        .map(|rec| {
            let rec = rec.map_err(|e| format!("{}: {e}", path.display()))?;
            let propensity: f64 = rec[p]
                .parse()
                .map_err(|_| format!("{}: propensity `{}`", path.display(), &rec[p]))?;
            let channel = ch.map_or("", |i| &rec[i]).to_owned();
            Ok((rec[c].to_owned(), rec[o].to_owned(), channel, propensity))
        })
        .collect()
}

/// Draws the outcomes of the list in `dir` and writes its conversions, stamped `at_ms`, into
/// `data_dir`'s event log (no server may run on that folder).
pub fn simulate(dir: &Path, data_dir: &Path, at_ms: i64) -> Result<Simulated, String> {
    let targets = rows(&dir.join("targets.csv"), true)?;
    let control = rows(&dir.join("control.csv"), false)?;
    let mut converted = Vec::new();
    let mut sim = Simulated {
        targets: (targets.len() as u64, 0),
        control: (control.len() as u64, 0),
    };
    for (c, o, ch, p) in &targets {
        if draw(c, o) < *p {
            converted.push((c, o, Some(ch.as_str())));
            sim.targets.1 += 1;
        }
    }
    for (c, o, _, p) in &control {
        if draw(c, o) < p * CONTROL_SHARE {
            converted.push((c, o, None));
            sim.control.1 += 1;
        }
    }
    let conversions: Vec<_> = converted
        .iter()
        .map(|(c, o, ch)| (c.as_str(), o.as_str(), *ch, at_ms))
        .collect();
    write_conversions(data_dir, &conversions)?;
    Ok(sim)
}

/// Writes conversions `(customer, offer, channel, ts)` into `data_dir`'s event log, each with
/// an event id of its own fields.
pub fn write_conversions(
    data_dir: &Path,
    conversions: &[(&str, &str, Option<&str>, i64)],
) -> Result<(), String> {
    write_events(data_dir, EventKind::Conversion, conversions)
}

/// Writes events of one kind (customer, offer, channel, time) into `data_dir`'s log, as the
/// server would.
pub fn write_events(
    data_dir: &Path,
    kind: EventKind,
    list: &[(&str, &str, Option<&str>, i64)],
) -> Result<(), String> {
    let ids: Vec<String> = list
        .iter()
        .map(|(c, o, _, ts)| format!("{}-{c}-{o}-{ts}", kind.as_str()))
        .collect();
    let events: Vec<Event<'_>> = list
        .iter()
        .zip(&ids)
        .map(|((c, o, ch, ts), id)| Event {
            kind,
            ts_ms: *ts,
            customer_id: c,
            visitor_id: None,
            offer_id: Some(o),
            channel: *ch,
            placement: None,
            decision_id: None,
            event_id: Some(id),
            category: None,
            request: None,
            attributed: None,
        })
        .collect();
    let config = ContactConfig {
        data_dir: Some(data_dir.to_owned()),
        ..ContactConfig::default()
    };
    let contacts = Contacts::open(&config, Clock::system()).map_err(|e| e.to_string())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(contacts.ingest(&events))
        .map_err(|e| e.to_string())?;
    contacts.close();
    Ok(())
}
