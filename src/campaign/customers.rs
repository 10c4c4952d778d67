//! Where a run's last step looks its customers up: the snapshot on one machine (or a shard
//! writing its candidates), or what the shards listed at a merge, so both write the same
//! bytes. Nothing here decides or allocates.

use std::collections::HashMap;

use super::finish::RunInfo;
use super::select::{Pair, Rooms};
use crate::engine::{Rule, RuleInput};
use crate::features::FeatureStore;

/// Where a candidate's customer id, value and room under the caps come from.
pub enum Customers<'a> {
    /// The snapshot (a one-machine run, or a shard writing its candidates), with each
    /// campaign channel's `reachable` rule and the scan's rooms.
    Snapshot(&'a FeatureStore, &'a [Option<Rule>], Rooms),
    /// What the shards listed: ids by row, values by (row, offer).
    Listed {
        /// Customer ids by snapshot row.
        ids: HashMap<u32, Box<str>>,
        /// A pair's value for its customer.
        values: HashMap<(u32, u16), f64>,
        /// Customers' time-zone names by snapshot row (with a send window).
        zones: HashMap<u32, Box<str>>,
        /// The campaign channels a customer cannot be reached on, a bit each (absent: none).
        unreachable: HashMap<u32, u8>,
        /// Customers with room for fewer offers than the list may give one.
        rooms: Rooms,
    },
}

impl Customers<'_> {
    /// The customers the frequency or sales cap leaves room for fewer offers than the list may give.
    pub fn rooms(&self) -> &Rooms {
        match self {
            Customers::Snapshot(_, _, rooms) | Customers::Listed { rooms, .. } => rooms,
        }
    }

    /// The customer id of a snapshot row.
    pub fn id(&self, row: u32) -> Option<&str> {
        match self {
            Customers::Snapshot(f, ..) => f.id_at(row as usize),
            Customers::Listed { ids, .. } => ids.get(&row).map(|s| &**s),
        }
    }

    /// The offer's value for the pair's customer.
    pub fn value(&self, info: &RunInfo, p: &Pair) -> f64 {
        match self {
            Customers::Snapshot(f, ..) => info.variants[p.variant as usize].offers
                [p.offer as usize]
                .value_for(f.exact_row_at(p.row as usize)),
            Customers::Listed { values, .. } => {
                values.get(&(p.row, p.offer)).copied().unwrap_or(0.0)
            }
        }
    }

    /// The customer's time-zone name, read from the send window's `time_zone` feature.
    pub fn zone_name(&self, info: &RunInfo, row: u32) -> Option<&str> {
        match self {
            Customers::Snapshot(f, ..) => {
                let name = info.spec.send_window.as_ref()?.zone_feature.as_deref()?;
                let col = f.column(name)?;
                let cell = *f.row_at(row as usize)?.get(col)?;
                f.dictionary(col)?.value_of(cell)
            }
            Customers::Listed { zones, .. } => zones.get(&row).map(|z| &**z),
        }
    }

    /// True when the customer of `row` can be reached on campaign channel `ci`.
    pub fn reachable(&self, row: u32, ci: usize) -> bool {
        match self {
            Customers::Snapshot(f, reach, _) => match reach.get(ci) {
                Some(Some(rule)) => {
                    let input = RuleInput {
                        features: f
                            .exact_row_at(row as usize)
                            .unwrap_or_else(|| (&[][..]).into()),
                        context: &[],
                    };
                    rule.check(&input).is_none()
                }
                _ => true,
            },
            Customers::Listed { unreachable, .. } => unreachable
                .get(&row)
                .is_none_or(|off| off.checked_shr(ci as u32).unwrap_or(0) & 1 == 0),
        }
    }
}
