//! The last step of a run, on one machine or after merging shards: allocate over the candidate
//! pairs, write the list and the control group, and summarise.
//!
//! It knows the run only through [`RunInfo`] (what every shard also writes down, so a merge
//! can check that its shards belong together) and looks customers up through [`Customers`]
//! (the snapshot, or what the shards listed), so a merged run writes the very bytes a
//! one-machine run writes. Nothing here loads a model, scans or decides.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use super::allocate::{self, Allocation, Limits};
pub use super::customers::Customers;
use super::not_chosen::{channels_full, OtherChannels};
use super::output::{self, Content, Row, Summary};
use super::placing;
use super::select::{Pair, Tally};
use super::send;
use super::spec::CampaignSpec;
use super::CampaignError;
use crate::contact::attribution;
use crate::engine::policy::stable_hash;
use crate::experiment::{assignment, Variant};
use crate::features::FeatureStore;

/// Everything about a run that its list depends on besides the customers: the campaign, the
/// time, the models as the list names them, the snapshot's identity and the limits.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunInfo {
    /// The campaign file, as read.
    pub spec: CampaignSpec,
    /// The run's time.
    pub now_ms: i64,
    /// The placement decided for (the champion's).
    pub placement: String,
    /// The campaign's offers, numbered as allocation numbers them.
    pub offer_ids: Vec<String>,
    /// Each campaign offer's category in the champion.
    pub categories: Vec<String>,
    /// Champion, then challenger if any.
    pub variants: Vec<VariantInfo>,
    /// The snapshot the customers come from.
    pub snapshot: SnapshotId,
    /// Contacts the log already held on the channel in the capacity's period.
    pub channel_used: u64,
    /// With several channels: the same, per channel.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels_used: Vec<u64>,
    /// The allocation's limits.
    pub limits: Limits,
    /// CRC-32 of the suppression lists' content (0 without lists).
    #[serde(default)]
    pub suppression: u32,
    /// The contact history up to the run's time.
    #[serde(default)]
    pub history: super::history::HistoryId,
}

impl RunInfo {
    /// The campaign as read, its suppression lists by where they were found left out: two
    /// runs of one campaign given by other paths (shards run from other folders) read the same.
    pub fn spec_as_run(&self) -> CampaignSpec {
        CampaignSpec {
            suppression: Vec::new(),
            ..self.spec.clone()
        }
    }

    /// CRC-32 of the campaign's content (the file as read, the suppression lists' content),
    /// which the committed events' ids derive from: two campaign files with one name (a copy
    /// with other limits) are two sets of contacts, and one file run twice at one time is one.
    pub fn campaign_crc32(&self) -> u32 {
        let mut h = crc32fast::Hasher::new();
        h.update(&serde_json::to_vec(&self.spec_as_run()).unwrap_or_default());
        h.update(&self.suppression.to_le_bytes());
        h.finalize()
    }
}

/// What tells two snapshots apart: the size, the columns, a hash of the columns' names and of
/// every customer id at 1,024 rows spread over the file, and a checksum of the values.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SnapshotId {
    /// Customers.
    pub customers: u64,
    /// Columns.
    pub columns: u64,
    /// The hash.
    pub fingerprint: u64,
    /// CRC-32 of every value ([`FeatureStore::content_crc`]): a refresh with the same
    /// customers differs here.
    #[serde(default)]
    pub content: u32,
}

impl SnapshotId {
    /// Identifies `features`.
    pub fn of(features: &FeatureStore) -> Self {
        let n = features.len();
        let mut h = stable_hash(&features.columns().join("\u{0}"));
        let step = (n / 1024).max(1);
        for row in (0..n).step_by(step) {
            if let Some(id) = features.id_at(row) {
                h = h.rotate_left(5) ^ stable_hash(id);
            }
        }
        SnapshotId {
            customers: n as u64,
            columns: features.columns().len() as u64,
            fingerprint: h,
            content: features.content_crc(),
        }
    }
}

/// A variant's model as the list names it, with the content of each campaign offer.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct VariantInfo {
    /// Model name.
    pub name: String,
    /// Model version.
    pub version: String,
    /// `champion` or `challenger`.
    pub variant: String,
    /// The model's content key, as decision ids carry it.
    pub key: u32,
    /// Per campaign channel: its channel index in the model and its placement's slot there,
    /// as decision ids carry them.
    #[serde(default)]
    pub places: Vec<(Option<usize>, Option<usize>)>,
    /// Per campaign offer.
    pub offers: Vec<OfferInfo>,
}

/// A campaign offer in one variant's model.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OfferInfo {
    /// The offer's value.
    pub value: f64,
    /// The snapshot column a customer's value comes from, if the offer takes it from one.
    pub value_from: Option<u32>,
    /// The content on the campaign's channel.
    pub content: Content,
    /// With several channels: the content on each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub by_channel: Vec<Content>,
}

impl OfferInfo {
    /// The content on campaign channel `ci`.
    pub fn content_on(&self, ci: u8) -> &Content {
        self.by_channel
            .get(usize::from(ci))
            .unwrap_or(&self.content)
    }
}

impl OfferInfo {
    /// The customer's value, as the engine takes it ([`crate::engine::Offer::value_for`]).
    pub fn value_for(&self, row: Option<crate::features::FeatureRow<'_>>) -> f64 {
        match (self.value_from, row) {
            (Some(c), Some(row)) => Some(row.f64(c as usize)).filter(|v| !v.is_nan()),
            _ => None,
        }
        .unwrap_or(self.value)
    }
}

impl VariantInfo {
    /// The customer's decision id on campaign channel `ci`: the run's time, this model version
    /// and variant, the channel, placement and customer as `/v1/decide`'s carry them (so events
    /// quoting it are attributed, and checked, as theirs are), and bits derived from campaign
    /// and customer instead of random ones, so the same run gives the same ids. Two customers
    /// of a run share an id only when their 12-bit checks and 32 hashed bits agree (about 3
    /// pairs in 10 million customers on one channel): harmless, since an event names its
    /// customer and the shared id says the same model, variant, channel and placement.
    pub fn decision_id(&self, now_ms: i64, campaign: &str, customer: &str, ci: u8) -> String {
        let h = stable_hash(&format!("{campaign}\u{0}{customer}"));
        let variant = if self.variant == Variant::Challenger.as_str() {
            Variant::Challenger
        } else {
            Variant::Champion
        };
        let (channel, slot) = self
            .places
            .get(usize::from(ci))
            .copied()
            .unwrap_or_default();
        let origin = attribution::Origin {
            channel,
            slot,
            customer: Some(attribution::customer_check(customer)),
        };
        attribution::decision_id_with_random(now_ms, self.key, variant, origin, h as u32)
            .to_string()
    }
}

/// What writing the list counted.
struct Written {
    rows: u64,
    customers: u64,
    conversions: f64,
    value: f64,
    per_offer_conversions: Vec<f64>,
    /// Rows sent in the default time zone as their own is unknown, by the name given.
    unknown_zones: BTreeMap<String, u64>,
    /// Rows sent in the default time zone as the zone feature is empty for their customer.
    missing_zones: u64,
}

/// Allocates over `candidates` (as [`allocate::candidates`] leaves them), draws the control
/// group from the list, writes the list, the control group and the summary beside `out` and
/// then into it ([`placing::place`]), and returns the summary: a run killed or out of space
/// leaves the list `out` held before whole.
pub fn finish_in_place(
    info: &RunInfo,
    tally: Tally,
    candidates: Vec<Pair>,
    customers: &Customers<'_>,
    out: &Path,
) -> Result<Summary, CampaignError> {
    if tally.ends_before_send > 0 {
        tracing::warn!(
            pairs = tally.ends_before_send,
            "left out {} (customer, offer) pairs: the offer runs now but ends before the customer's send time",
            tally.ends_before_send
        );
    }
    if let Some((recorded, events)) = super::commit::recorded(out) {
        tracing::warn!(
            out = %out.display(),
            "this run replaces a list that was committed ({recorded} of its {events} contacts recorded): its targets go with it, so `campaign report` can no longer measure that send; give each send a folder of its own"
        );
    }
    let name = out
        .file_name()
        .map_or("list".into(), |n| n.to_string_lossy());
    let tmp = out.with_file_name(format!(".{name}.writing-{}", std::process::id()));
    placing::remove_dead_writes(out, &name);
    let _ = std::fs::remove_dir_all(&tmp);
    let written = finish(info, tally, candidates, customers, &tmp).map_err(|e| e.not_placed(out));
    let done = written.and_then(|summary| {
        placing::place(&tmp, out)
            .map(|()| summary)
            .map_err(|source| CampaignError::OutDir {
                path: out.to_owned(),
                source,
            })
    });
    let _ = std::fs::remove_dir_all(&tmp);
    done
}

/// [`finish_in_place`]'s work, written straight into `out` (the folder beside the list's).
fn finish(
    info: &RunInfo,
    tally: Tally,
    candidates: Vec<Pair>,
    customers: &Customers<'_>,
    out: &Path,
) -> Result<Summary, CampaignError> {
    let t = std::time::Instant::now();
    let kept = candidates.len();
    // Customers each offer could go to (minimums are per offer on one channel).
    let mut offered = vec![0u64; info.offer_ids.len()];
    for p in &candidates {
        if let Some(n) = offered.get_mut(usize::from(p.offer)) {
            *n += 1;
        }
    }
    let eligible = &tally.by_variant[..info.variants.len().min(2)];
    let mut others = info
        .spec
        .multi_channel()
        .then(|| OtherChannels::new(&candidates));
    let (mut alloc, mut uses) =
        allocate::allocate_variants(candidates, &info.limits, customers.rooms(), eligible);
    if let Some(o) = &mut others {
        o.full = channels_full(&alloc, &info.limits);
    }
    if !alloc.complete {
        tracing::warn!("the allocation stopped on a rounding cycle before the best list");
    }
    tracing::info!(
        selected = alloc.selected.len(),
        kept,
        allocate_ms = t.elapsed().as_millis() as u64,
        "allocated"
    );
    std::fs::create_dir_all(out).map_err(|source| CampaignError::OutDir {
        path: out.to_owned(),
        source,
    })?;
    let shortfalls = min_shortfalls(info, &alloc, &offered);
    let control = hold_out_control(info, &mut alloc, &mut uses, customers);
    let written = write(info, out, &alloc, &control, customers, others.as_ref())?;
    let summary = summary(info, &alloc, &uses, tally, &written, &control, &shortfalls);
    output::write_summary(out, &summary)?;
    Ok(summary)
}

/// The offers whose minimum the list could not meet (before the control group, as the limits
/// bound it), by how many, logged with the cause: the capacity left, the category's maximum, too
/// few customers the offer could go to (`offered`: its candidate pairs), a category other offers
/// fill, minimums asking more together than the capacity left, or customers the other
/// minimums take. Logged, since such a minimum also takes the best offer from every customer it
/// reaches.
fn min_shortfalls(info: &RunInfo, alloc: &Allocation, offered: &[u64]) -> Vec<Option<u64>> {
    let l = &info.limits;
    let mut in_category = vec![0u64; l.category_max.len()];
    for p in &alloc.selected {
        if let Some(c) = l.category.get(usize::from(p.offer)).copied().flatten() {
            in_category[c] += 1;
        }
    }
    let min_total: u64 = l.min.iter().sum();
    let mut out = Vec::with_capacity(info.offer_ids.len());
    for (k, id) in info.offer_ids.iter().enumerate() {
        let min = info.spec.offer_limits.get(id).map_or(0, |l| l.min);
        let got = alloc.per_offer.get(k).copied().unwrap_or(0);
        if got < min {
            let category = l.category.get(k).copied().flatten();
            let cat_max = category.and_then(|c| l.category_max.get(c)).copied();
            let can = offered.get(k).copied().unwrap_or(0);
            let why = match (l.capacity, cat_max) {
                (Some(c), _) if c < min => {
                    format!("the capacity left for the run, {c}, is below it")
                }
                (_, Some(m)) if m < min => {
                    format!("its category's maximum, {m}, is below it")
                }
                _ if can < min => {
                    format!("the base has too few customers it can go to ({can})")
                }
                (_, Some(m)) if category.is_some_and(|c| in_category[c] >= m) => {
                    format!("its category's maximum, {m}, is filled with other offers' minimums")
                }
                (Some(c), _) if min_total > c => format!(
                    "the offers' minimums together ({min_total}) ask more than the capacity left \
                     for the run, {c}"
                ),
                _ => format!(
                    "of the {can} customers it can go to, too few are left by the other offers' \
                     minimums, each customer taking at most {} offers",
                    l.per_customer
                ),
            };
            tracing::warn!(offer = %id, min, selected = got, "an offer's minimum is not met: {why}");
        }
        out.push((got < min).then(|| min - got));
    }
    out
}

/// Draws the control group from the list: every row of a customer whose stable hash of the
/// salt falls in the share leaves the list, with the offer, channel and score the allocation
/// gave it. The limits bound the list before the hold-out, so the control group is a random
/// part of the customers the campaign would have sent, and the lift compares like with like.
fn hold_out_control(
    info: &RunInfo,
    alloc: &mut Allocation,
    uses: &mut [allocate::VariantUse],
    customers: &Customers<'_>,
) -> Vec<Pair> {
    let Some(c) = &info.spec.control_group else {
        return Vec::new();
    };
    let mut control = Vec::new();
    alloc.selected.retain(|p| {
        let held = customers
            .id(p.row)
            .is_some_and(|id| assignment(&c.salt, id) < c.share);
        if held {
            alloc.per_offer[p.offer as usize] -= 1;
            if let Some(u) = uses.get_mut(usize::from(p.variant)) {
                u.selected -= 1;
            }
            control.push(*p);
        }
        !held
    });
    control
}

/// Writes the target list (CSV and Parquet) and the control group into `out`.
fn write(
    info: &RunInfo,
    out: &Path,
    alloc: &Allocation,
    control: &[Pair],
    customers: &Customers<'_>,
    others: Option<&OtherChannels>,
) -> Result<Written, CampaignError> {
    let offer_ids = &info.offer_ids;
    let channels = info.spec.channel_list();
    // The channel a pair goes out on: its own with several, else the campaign's one.
    let channel_of = |p: &Pair| -> &str {
        match others {
            Some(_) => &channels[usize::from(p.channel)].name,
            None => &info.spec.channel,
        }
    };
    let mut writer = output::ListWriter::create(
        out,
        output::Extra {
            send_at: info.spec.send_window.is_some(),
            not_chosen: others.is_some(),
        },
    )?;
    let mut not_chosen = String::new();
    let mut ranks: HashMap<u32, u32> = HashMap::with_capacity(alloc.selected.len());
    let mut w = Written {
        rows: 0,
        customers: 0,
        conversions: 0.0,
        value: 0.0,
        per_offer_conversions: vec![0.0; offer_ids.len()],
        unknown_zones: BTreeMap::new(),
        missing_zones: 0,
    };
    let window = info.spec.send_window.as_ref();
    let mut zones = window.map(|w| {
        let default = send::zone(&w.default_time_zone).unwrap_or(chrono_tz::Tz::UTC);
        send::Zones::new(default, w.zone_feature.is_some())
    });
    let mut send_at = String::new();
    let mut send_at_ms = None;
    for p in &alloc.selected {
        let Some(id) = customers.id(p.row) else {
            continue;
        };
        let v = &info.variants[p.variant as usize];
        let r = ranks.entry(p.row).or_insert(0);
        *r += 1;
        if *r == 1 {
            w.customers += 1;
        }
        let decision_id = v.decision_id(info.now_ms, &info.spec.name, id, p.channel);
        let offer = &v.offers[p.offer as usize];
        if let Some(o) = others {
            o.reasons(
                p,
                &channels,
                |row, ci| customers.reachable(row, ci),
                &mut not_chosen,
            );
        }
        if let (Some(w), Some(z)) = (window, zones.as_mut()) {
            let tz = z.of(customers.zone_name(info, p.row));
            send_at_ms = w.earliest(tz, info.now_ms).map(send::whole_second);
            send_at = send_at_ms.map(send::format_utc).unwrap_or_default();
        }
        writer.push(&Row {
            customer_id: id,
            channel: channel_of(p),
            offer_id: &offer_ids[p.offer as usize],
            rank: *r,
            score: p.score,
            propensity: p.propensity,
            decision_id: &decision_id,
            model_name: &v.name,
            model_version: &v.version,
            variant: &v.variant,
            content: offer.content_on(p.channel),
            not_chosen: &not_chosen,
            send_at: &send_at,
            send_at_ms,
        })?;
        w.conversions += p.propensity;
        w.value += p.propensity * customers.value(info, p);
        w.per_offer_conversions[p.offer as usize] += p.propensity;
    }
    w.rows = writer.finish()?;
    if let Some(z) = zones {
        w.unknown_zones = z
            .unknown
            .into_iter()
            .map(|(k, v)| (k.into_string(), v))
            .collect();
        if !w.unknown_zones.is_empty() {
            tracing::warn!(zones = ?w.unknown_zones, "unknown time zones: those rows are sent in the default time zone");
        }
        w.missing_zones = z.missing;
        if z.missing > 0 {
            tracing::warn!(rows = z.missing, "rows whose customer has no time zone in the zone feature: sent in the default time zone");
        }
    }
    output::write_control(
        out,
        control.iter().filter_map(|p| {
            Some((
                customers.id(p.row)?,
                offer_ids[p.offer as usize].as_str(),
                p.score,
                p.propensity,
                info.variants[p.variant as usize].variant.as_str(),
                channel_of(p),
            ))
        }),
    )?;
    Ok(w)
}

/// The run's summary: what was scanned, held out, selected and expected.
fn summary(
    info: &RunInfo,
    alloc: &Allocation,
    uses: &[allocate::VariantUse],
    tally: Tally,
    written: &Written,
    control: &[Pair],
    shortfalls: &[Option<u64>],
) -> Summary {
    let (spec, champion) = (&info.spec, &info.variants[0]);
    let control_customers = control.iter().map(|p| p.row).collect::<HashSet<_>>().len() as u64;
    let mut offers = BTreeMap::new();
    for (k, id) in info.offer_ids.iter().enumerate() {
        offers.insert(
            id.clone(),
            output::OfferSummary {
                category: info.categories[k].clone(),
                selected: alloc.per_offer[k],
                min: spec.offer_limits.get(id).map(|l| l.min).filter(|&m| m > 0),
                min_shortfall: shortfalls.get(k).copied().flatten(),
                expected_conversions: written.per_offer_conversions[k],
                value: champion.offers[k].value,
            },
        );
    }
    Summary {
        campaign: spec.name.clone(),
        channel: spec.channel.clone(),
        placement: info.placement.clone(),
        model_name: champion.name.clone(),
        model_version: champion.version.clone(),
        run_at: crate::rfc3339::format_ms(info.now_ms),
        run_at_ms: info.now_ms,
        campaign_crc32: Some(info.campaign_crc32()),
        transactional: spec.transactional,
        scanned: tally.scanned,
        eligible: tally.eligible,
        selected: written.rows,
        customers_selected: written.customers,
        offers,
        held_out: output::HeldOut {
            suppression: tally.suppression,
            no_eligible_offer: tally.no_eligible_offer,
            contact_policy: tally.contact_policy,
            frequency: tally.frequency,
            control_group: control_customers,
            capacity: tally
                .candidates
                .saturating_sub(written.customers + control_customers),
            unreachable: tally.unreachable,
        },
        capacity: spec.capacity.map(|c| capacity_use(c, info.channel_used)),
        channels: channel_summaries(info, alloc, control),
        unknown_time_zones: written.unknown_zones.clone(),
        no_time_zone: written.missing_zones,
        expected_conversions: written.conversions,
        expected_value: written.value,
        shadow_prices: shadow_prices(info, alloc),
        variants: if uses.len() > 1 {
            uses.iter()
                .zip(&info.variants)
                .map(|(u, v)| output::VariantSummary {
                    variant: v.variant.clone(),
                    model: format!("{} v{}", v.name, v.version),
                    eligible: u.eligible,
                    capacity: u.capacity,
                    selected: u.selected,
                })
                .collect()
        } else {
            Vec::new()
        },
    }
}

fn capacity_use(c: super::spec::Capacity, used_before: u64) -> output::CapacityUse {
    output::CapacityUse {
        max_contacts: c.max_contacts,
        per: c.per.name().into(),
        used_before,
        available: c.max_contacts.saturating_sub(used_before),
    }
}

/// With several channels: each one's placement, capacity and rows.
fn channel_summaries(
    info: &RunInfo,
    alloc: &Allocation,
    control: &[Pair],
) -> BTreeMap<String, output::ChannelSummary> {
    if !info.spec.multi_channel() {
        return BTreeMap::new();
    }
    let placements: Vec<&str> = info.placement.split('+').collect();
    info.spec
        .channel_list()
        .into_iter()
        .enumerate()
        .map(|(ci, ch)| {
            let used = info.channels_used.get(ci).copied().unwrap_or(0);
            let on = |pairs: &[Pair]| {
                pairs
                    .iter()
                    .filter(|p| usize::from(p.channel) == ci)
                    .count()
            };
            let summary = output::ChannelSummary {
                placement: placements.get(ci).copied().unwrap_or("").to_owned(),
                capacity: ch.capacity.map(|c| capacity_use(c, used)),
                selected: on(&alloc.selected) as u64,
                control_group: on(control) as u64,
            };
            (ch.name, summary)
        })
        .collect()
}

/// Each shadow price under the name of its limit in the campaign file.
fn shadow_prices(info: &RunInfo, alloc: &Allocation) -> BTreeMap<String, output::ShadowPrice> {
    let l = &info.limits;
    alloc
        .shadow_prices
        .iter()
        .map(|s| {
            let name = match s.bound {
                allocate::Bound::Capacity => "capacity.max_contacts".to_owned(),
                allocate::Bound::CategoryMax(c) if info.spec.multi_channel() => {
                    // A channel's capacity: the limited category of its slots.
                    let slot = l.category.iter().position(|x| *x == Some(c)).unwrap_or(0);
                    let ci = slot % l.channels as usize;
                    let name = info.spec.channels.get(ci).map_or("", |c| c.name.as_str());
                    format!("channels.{name}.max_contacts")
                }
                allocate::Bound::CategoryMax(c) => {
                    let o = l.category.iter().position(|x| *x == Some(c));
                    let cat = o.map_or("", |o| info.categories[o].as_str());
                    format!("category_limits.{cat}.max")
                }
                allocate::Bound::OfferMax(o) => {
                    format!("offer_limits.{}.max", info.offer_ids[o as usize])
                }
                allocate::Bound::OfferMin(o) => {
                    format!("offer_limits.{}.min", info.offer_ids[o as usize])
                }
            };
            let name = match s.variant {
                0 => name,
                v => format!("{}.{name}", info.variants[usize::from(v)].variant),
            };
            let p = output::ShadowPrice {
                limit: s.limit,
                per_unit: s.per_unit,
            };
            (name, p)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decision_ids_are_stable_and_carry_model_variant_channel_placement_and_customer() {
        let v = VariantInfo {
            name: "m".into(),
            version: "1".into(),
            variant: Variant::Challenger.as_str().into(),
            key: 0xbeef,
            places: vec![(Some(2), Some(0)), (Some(0), Some(3))],
            offers: vec![],
        };
        let now = 1_795_341_600_000;
        let a = v.decision_id(now, "c", "C1", 1);
        assert_eq!(a, v.decision_id(now, "c", "C1", 1));
        assert_ne!(a, v.decision_id(now, "c", "C2", 1));
        assert_ne!(a, v.decision_id(now, "c", "C1", 0));
        let u = ulid::Ulid::from_string(&a).unwrap();
        assert_eq!(
            attribution::attribution(u.0),
            (attribution::model_tag(0xbeef), Some(Variant::Challenger))
        );
        assert_eq!(
            attribution::origin(u.0),
            Some(attribution::Origin {
                channel: Some(0),
                slot: Some(3),
                customer: Some(attribution::customer_check("C1")),
            })
        );
        assert_eq!(u.timestamp_ms(), now as u64);
    }
}
