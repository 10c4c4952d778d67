//! One campaign run, step by step: load the campaign, the model and the snapshot, and resolve
//! the campaign against each variant's model; read the past contacts; scan the base; allocate
//! under the limits; write the list and the control group; summarise.
//!
//! This module sequences the steps and carries what they share ([`Run`]); each step's work
//! lives in its own module ([`super::spec`], [`super::history`], [`super::select`],
//! [`super::allocate`], [`super::output`]). It must not decide differently from
//! `engine::decide`, nor write anything but the output folder.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use super::allocate::{self, Allocation};
use super::output::{self, Content, Row, Summary};
use super::select::{self, Inputs, Variantly};
use super::spec::{self, CampaignSpec, Plan};
use super::{history, CampaignError, RunConfig};
use crate::contact::attribution;
use crate::engine::policy::stable_hash;
use crate::engine::CompiledModel;
use crate::experiment::Variant;
use crate::features::FeatureStore;
use crate::model::{Fault, Limits as ModelLimits};
use crate::registry::{ModelSet, Registry, RegistryConfig, Snapshot};

/// Selects, allocates and writes a campaign's target list; returns its summary.
///
/// The steps: load the campaign, the model and the snapshot, and resolve the campaign against
/// each variant's model; read the past contacts (the data folder's log, the fleet's Redis);
/// scan the base; allocate under the limits; write the list and the control group; summarise.
pub fn run(cfg: &RunConfig) -> Result<Summary, CampaignError> {
    let started = Instant::now();
    let spec = spec::load(&cfg.campaign)?;
    let snap = load_snapshot(cfg)?;
    let run = Run::prepare(&spec, &snap, cfg.now_ms)?;
    tracing::info!(
        campaign = %spec.name, channel = %spec.channel, customers = run.features.len(),
        offers = run.offer_ids.len(), load_ms = started.elapsed().as_millis() as u64,
        "model and snapshot loaded"
    );
    let suppressed = read_suppression(&spec.suppression)?;
    let past = run.past_contacts(cfg)?;
    let limits = allocation_limits(&spec, run.models[0], &run.offer_ids, past.channel_used());
    let mut scan = run.scan(&past, &suppressed, &limits, cfg.progress_bar);
    let alloc = run.allocate(std::mem::take(&mut scan.pairs), &limits);
    std::fs::create_dir_all(&cfg.out).map_err(|source| CampaignError::OutDir {
        path: cfg.out.clone(),
        source,
    })?;
    let t = Instant::now();
    let written = run.write(&cfg.out, &alloc, &scan.control)?;
    let summary = run.summary(&alloc, scan.tally, &past, &limits, &written);
    output::write_summary(&cfg.out, &summary)?;
    tracing::info!(
        rows = written.rows,
        write_ms = t.elapsed().as_millis() as u64,
        total_ms = started.elapsed().as_millis() as u64,
        out = %cfg.out.display(),
        "campaign written"
    );
    Ok(summary)
}

/// The model and snapshot, loaded through the registry as the server loads them.
fn load_snapshot(cfg: &RunConfig) -> Result<Arc<Snapshot>, CampaignError> {
    let registry = Registry::new(RegistryConfig {
        models_path: Some(cfg.models.clone()),
        features_path: Some(cfg.features.clone()),
        history_len: 1,
        limits: ModelLimits::default(),
    });
    registry.reload_from_disk()?;
    Ok(arc_swap::Guard::into_inner(registry.load()))
}

/// A campaign resolved against the loaded models: what every later step of a run reads.
struct Run<'a> {
    spec: &'a CampaignSpec,
    set: &'a ModelSet,
    features: &'a FeatureStore,
    /// Champion, then challenger if any.
    models: Vec<&'a CompiledModel>,
    /// Each model's plan, in the order of `models`.
    plans: Vec<Plan>,
    /// The campaign's offers, numbered as allocation numbers them.
    offer_ids: Vec<String>,
    now_ms: i64,
}

/// What writing the list counted.
struct Written {
    rows: u64,
    customers: u64,
    conversions: f64,
    value: f64,
    per_offer_conversions: Vec<f64>,
}

impl<'a> Run<'a> {
    /// Resolves the campaign against every variant's model; every fault of every variant is
    /// reported at once.
    fn prepare(
        spec: &'a CampaignSpec,
        snap: &'a Snapshot,
        now_ms: Option<i64>,
    ) -> Result<Self, CampaignError> {
        let (Some(set), Some(features)) = (snap.models.as_ref(), snap.features.as_ref()) else {
            return Err(CampaignError::Plan(vec![Fault {
                path: String::new(),
                message: "no model or snapshot loaded".into(),
            }]));
        };
        let champion = &set.champion.compiled;
        let offer_ids = Plan::offer_ids(spec, champion);
        let mut models: Vec<&CompiledModel> = vec![champion];
        if let Some(c) = &set.challenger {
            models.push(&c.model.compiled);
        }
        let mut plans = Vec::new();
        let mut faults = Vec::new();
        for (i, m) in models.iter().enumerate() {
            match Plan::resolve(spec, m, &offer_ids) {
                Ok(p) => plans.push(p),
                Err(f) => faults.extend(f.into_iter().map(|mut f| {
                    if i == 1 {
                        f.message = format!("(challenger `{}`) {}", m.name, f.message);
                    }
                    f
                })),
            }
        }
        if !faults.is_empty() {
            return Err(CampaignError::Plan(faults));
        }
        let now_ms = now_ms.unwrap_or_else(|| crate::contact::Clock::system().now_ms());
        Ok(Run {
            spec,
            set,
            features,
            models,
            plans,
            offer_ids,
            now_ms,
        })
    }

    /// The contact history that counts: the data folder's event log, and the fleet's events
    /// of the horizon when `--redis` is given.
    fn past_contacts(&self, cfg: &RunConfig) -> Result<history::PastContacts, CampaignError> {
        let spec = self.spec;
        let day = crate::engine::policy::DAY_MS;
        let counting = history::Counting {
            horizon_ms: self
                .models
                .iter()
                .map(|m| m.policies.horizon_ms)
                .max()
                .unwrap_or(0),
            outbound_channels: spec.frequency.as_ref().map_or(&[], |f| &f.channels),
            frequency_window_ms: spec
                .frequency
                .as_ref()
                .map_or(0, |f| i64::from(f.window_days) * day),
            channel: &spec.channel,
            capacity_window_ms: spec.capacity.map_or(0, |c| c.per.ms()),
            memory_bytes: cfg.contact_memory_bytes,
        };
        let now_ms = self.now_ms;
        let mut past = match &cfg.data_dir {
            Some(dir) => history::PastContacts::read(dir, &counting, now_ms)?,
            None => history::PastContacts::empty(&counting),
        };
        if let Some(fleet) = &cfg.fleet {
            let origin = cfg.data_dir.as_deref().and_then(crate::fleet::origin_of);
            let n =
                crate::fleet::read_history(fleet, counting.horizon_ms, origin.as_deref(), |p| {
                    past.add(p, now_ms)
                })
                .map_err(|e| CampaignError::Fleet(e.to_string()))?;
            past.settle();
            tracing::info!(events = n, "the fleet's events read from redis");
        }
        tracing::info!(
            events = past.events,
            segments = past.segments,
            channel_used = past.channel_used(),
            "contact history read"
        );
        Ok(past)
    }

    /// Decides for every customer of the base, on every core.
    fn scan(
        &self,
        past: &history::PastContacts,
        suppressed: &HashSet<Box<str>, foldhash::fast::RandomState>,
        limits: &allocate::Limits,
        progress_bar: bool,
    ) -> select::Scan {
        let keep_all = limits.offer_level();
        let inputs = Inputs {
            spec: self.spec,
            set: self.set,
            variants: self
                .models
                .iter()
                .zip(&self.plans)
                .map(|(m, plan)| Variantly { model: m, plan })
                .collect(),
            features: self.features,
            past,
            suppressed,
            now_ms: self.now_ms,
            keep_all,
        };
        let t = Instant::now();
        let scan = with_progress(self.features.len() as u64, progress_bar, |progress| {
            select::scan(&inputs, progress)
        });
        tracing::info!(
            pairs = scan.pairs.len(),
            scan_ms = t.elapsed().as_millis() as u64,
            "base scanned"
        );
        scan
    }

    /// Chooses the best pairs under the limits.
    fn allocate(&self, pairs: Vec<select::Pair>, limits: &allocate::Limits) -> Allocation {
        let t = Instant::now();
        let scanned = pairs.len();
        let candidates = allocate::candidates(pairs, limits);
        let kept = candidates.len();
        let alloc = allocate::allocate(candidates, limits);
        tracing::info!(
            selected = alloc.selected.len(),
            pairs = scanned,
            kept,
            allocate_ms = t.elapsed().as_millis() as u64,
            "allocated"
        );
        alloc
    }

    /// Writes the target list (CSV and Parquet) and the control group into `out`.
    fn write(
        &self,
        out: &Path,
        alloc: &Allocation,
        control: &[select::Pair],
    ) -> Result<Written, CampaignError> {
        let (features, offer_ids) = (self.features, &self.offer_ids);
        let keys: Vec<u32> = Variant::ALL.iter().map(|v| self.set.key(*v)).collect();
        let variants = VariantInfo::build(&self.models, &keys, &self.plans, offer_ids, self.now_ms);
        let mut writer = output::ListWriter::create(out)?;
        let mut ranks = vec![0u8; features.len()];
        let mut w = Written {
            rows: 0,
            customers: 0,
            conversions: 0.0,
            value: 0.0,
            per_offer_conversions: vec![0.0; offer_ids.len()],
        };
        for p in &alloc.selected {
            let Some(id) = features.id_at(p.row as usize) else {
                continue;
            };
            let v = &variants[p.variant as usize];
            let r = &mut ranks[p.row as usize];
            *r += 1;
            if *r == 1 {
                w.customers += 1;
            }
            let decision_id = v.decision_id(&self.spec.name, id);
            let offer = &v.offers[p.offer as usize];
            writer.push(&Row {
                customer_id: id,
                channel: &self.spec.channel,
                offer_id: &offer_ids[p.offer as usize],
                rank: u32::from(*r),
                score: p.score,
                propensity: p.propensity,
                decision_id: &decision_id,
                model_name: &v.name,
                model_version: &v.version,
                variant: v.variant,
                content: &offer.content,
            })?;
            w.conversions += p.propensity;
            w.value += p.propensity * offer.value_for(features.exact_row_at(p.row as usize));
            w.per_offer_conversions[p.offer as usize] += p.propensity;
        }
        w.rows = writer.finish()?;
        output::write_control(
            out,
            control.iter().filter_map(|p| {
                let v = &variants[p.variant as usize];
                Some((
                    features.id_at(p.row as usize)?,
                    offer_ids[p.offer as usize].as_str(),
                    p.score,
                    p.propensity,
                    v.variant,
                ))
            }),
        )?;
        Ok(w)
    }

    /// The run's summary: what was scanned, held out, selected and expected.
    fn summary(
        &self,
        alloc: &Allocation,
        tally: select::Tally,
        past: &history::PastContacts,
        limits: &allocate::Limits,
        written: &Written,
    ) -> Summary {
        let (spec, champion) = (self.spec, self.models[0]);
        let mut offers = BTreeMap::new();
        for (k, id) in self.offer_ids.iter().enumerate() {
            let category = champion
                .offers
                .iter()
                .find(|o| *o.id == **id)
                .map_or(String::new(), |o| o.category.to_string());
            offers.insert(
                id.clone(),
                output::OfferSummary {
                    category,
                    selected: alloc.per_offer[k],
                    min: spec.offer_limits.get(id).map(|l| l.min).filter(|&m| m > 0),
                    expected_conversions: written.per_offer_conversions[k],
                },
            );
        }
        Summary {
            campaign: spec.name.clone(),
            channel: spec.channel.clone(),
            placement: self.plans[0].placement.clone(),
            model_name: champion.name.to_string(),
            model_version: champion.version.to_string(),
            run_at: humantime::format_rfc3339_millis(
                UNIX_EPOCH + Duration::from_millis(self.now_ms.max(0) as u64),
            )
            .to_string(),
            run_at_ms: self.now_ms,
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
                control_group: tally.control_group,
                capacity: tally.candidates - written.customers,
            },
            capacity: spec.capacity.map(|c| output::CapacityUse {
                max_contacts: c.max_contacts,
                per: match c.per {
                    spec::Per::Day => "day".into(),
                    spec::Per::Week => "week".into(),
                },
                used_before: past.channel_used(),
                available: limits.capacity.unwrap_or(0),
            }),
            expected_conversions: written.conversions,
            expected_value: written.value,
            shadow_prices: self.shadow_prices(alloc, limits),
        }
    }
}

impl Run<'_> {
    /// Each shadow price under the name of its limit in the campaign file.
    fn shadow_prices(
        &self,
        alloc: &Allocation,
        limits: &allocate::Limits,
    ) -> BTreeMap<String, output::ShadowPrice> {
        let champion = self.models[0];
        let category_of = |o: usize| {
            champion
                .offers
                .iter()
                .find(|m| *m.id == *self.offer_ids[o])
                .map_or(String::new(), |m| m.category.to_string())
        };
        alloc
            .shadow_prices
            .iter()
            .map(|s| {
                let name = match s.bound {
                    allocate::Bound::Capacity => "capacity.max_contacts".to_owned(),
                    allocate::Bound::CategoryMax(c) => {
                        let o = limits.category.iter().position(|x| *x == Some(c));
                        format!(
                            "category_limits.{}.max",
                            o.map(category_of).unwrap_or_default()
                        )
                    }
                    allocate::Bound::OfferMax(o) => {
                        format!("offer_limits.{}.max", self.offer_ids[o as usize])
                    }
                    allocate::Bound::OfferMin(o) => {
                        format!("offer_limits.{}.min", self.offer_ids[o as usize])
                    }
                };
                let p = output::ShadowPrice {
                    limit: s.limit,
                    per_unit: s.per_unit,
                };
                (name, p)
            })
            .collect()
    }
}

/// The allocation limits of a campaign, by campaign offer index.
fn allocation_limits(
    spec: &CampaignSpec,
    model: &CompiledModel,
    offer_ids: &[String],
    channel_used: u64,
) -> allocate::Limits {
    let mut categories: Vec<&str> = Vec::new();
    let mut l = allocate::Limits {
        capacity: spec
            .capacity
            .map(|c| c.max_contacts.saturating_sub(channel_used)),
        per_customer: spec.max_offers_per_customer,
        ..Default::default()
    };
    for id in offer_ids {
        let lim = spec.offer_limits.get(id).copied().unwrap_or_default();
        l.min.push(lim.min);
        l.max.push(lim.max);
        let cat = model
            .offers
            .iter()
            .find(|o| *o.id == **id)
            .map_or("", |o| &o.category);
        l.category.push(spec.category_limits.get(cat).map(|&max| {
            match categories.iter().position(|c| *c == cat) {
                Some(i) => i,
                None => {
                    categories.push(cat);
                    l.category_max.push(max);
                    categories.len() - 1
                }
            }
        }));
    }
    l
}

/// Reads suppression lists: one customer id a line; blank lines, `#` comments and a
/// `customer_id` header are skipped.
fn read_suppression(
    files: &[PathBuf],
) -> Result<HashSet<Box<str>, foldhash::fast::RandomState>, CampaignError> {
    let mut out = HashSet::default();
    for path in files {
        let text = std::fs::read_to_string(path).map_err(|source| CampaignError::Suppression {
            path: path.clone(),
            source,
        })?;
        for line in text.lines() {
            let id = line.trim().trim_end_matches(',');
            if id.is_empty() || id.starts_with('#') || id == "customer_id" {
                continue;
            }
            out.insert(id.into());
        }
    }
    Ok(out)
}

/// A variant's model as the output names it, with the content of each campaign offer.
struct VariantInfo {
    name: String,
    version: String,
    variant: &'static str,
    /// The model's content key, as decision ids carry it.
    key: u32,
    now_ms: i64,
    offers: Vec<OfferInfo>,
}

struct OfferInfo {
    value: f64,
    /// The snapshot column a customer's value comes from, if the offer takes it from one.
    value_from: Option<u32>,
    content: Content,
}

impl OfferInfo {
    /// The customer's value, as the engine takes it ([`crate::engine::Offer::value_for`]).
    fn value_for(&self, row: Option<crate::features::FeatureRow<'_>>) -> f64 {
        match (self.value_from, row) {
            (Some(c), Some(row)) => Some(row.f64(c as usize)).filter(|v| !v.is_nan()),
            _ => None,
        }
        .unwrap_or(self.value)
    }
}

impl VariantInfo {
    fn build(
        models: &[&CompiledModel],
        keys: &[u32],
        plans: &[Plan],
        offer_ids: &[String],
        now_ms: i64,
    ) -> Vec<VariantInfo> {
        models
            .iter()
            .zip(plans)
            .enumerate()
            .map(|(vi, (m, plan))| VariantInfo {
                name: m.name.to_string(),
                version: m.version.to_string(),
                variant: Variant::ALL[vi].as_str(),
                key: keys[vi],
                now_ms,
                offers: offer_ids
                    .iter()
                    .map(|id| {
                        let o = m.offers.iter().find(|o| *o.id == **id);
                        OfferInfo {
                            value: o.map_or(0.0, |o| o.value),
                            value_from: o.and_then(|o| o.value_from),
                            content: o
                                .and_then(|o| o.content_json.get(plan.channel)?.as_deref())
                                .and_then(|j| serde_json::from_str(j).ok())
                                .unwrap_or_default(),
                        }
                    })
                    .collect(),
            })
            .collect()
    }

    /// The customer's decision id: the run's time, this model version and variant (so events
    /// quoting it are attributed as `/v1/decide`'s are), and bits derived from campaign and
    /// customer instead of random ones, so the same run gives the same ids.
    fn decision_id(&self, campaign: &str, customer: &str) -> String {
        let h = stable_hash(&format!("{campaign}\u{0}{customer}"));
        attribution::decision_id_with_bits(self.now_ms, self.key, self.variant_index(), h)
            .to_string()
    }

    fn variant_index(&self) -> Variant {
        if self.variant == Variant::Challenger.as_str() {
            Variant::Challenger
        } else {
            Variant::Champion
        }
    }
}

/// Runs `work` while showing its progress over `total` rows: a bar on a terminal, a log line
/// every few seconds otherwise.
fn with_progress<T: Send>(total: u64, bar: bool, work: impl FnOnce(&AtomicU64) -> T + Send) -> T {
    let done = AtomicU64::new(0);
    let finished = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let pb = bar.then(|| {
                let pb = indicatif::ProgressBar::new(total);
                if let Ok(style) = indicatif::ProgressStyle::with_template(
                    "{elapsed_precise} [{bar:40}] {pos}/{len} customers ({per_sec}, {eta} left)",
                ) {
                    pb.set_style(style.progress_chars("=> "));
                }
                pb
            });
            let mut last_log = Instant::now();
            while !finished.load(Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                let n = done.load(Relaxed);
                match &pb {
                    Some(pb) => pb.set_position(n),
                    None if last_log.elapsed() >= Duration::from_secs(5) => {
                        last_log = Instant::now();
                        tracing::info!(
                            done = n,
                            total,
                            percent = (n * 100).checked_div(total).unwrap_or(100),
                            "scanning the base"
                        );
                    }
                    None => {}
                }
            }
            if let Some(pb) = pb {
                pb.finish_and_clear();
            }
        });
        // Stops the reporter however `work` ends (a panic too), so the scope can join it.
        struct Finish<'a>(&'a AtomicBool);
        impl Drop for Finish<'_> {
            fn drop(&mut self) {
                self.0.store(true, Relaxed);
            }
        }
        let _finish = Finish(&finished);
        work(&done)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decision_ids_are_stable_and_attributed() {
        let v = VariantInfo {
            name: "m".into(),
            version: "1".into(),
            variant: Variant::Challenger.as_str(),
            key: 0xbeef,
            now_ms: 1_795_341_600_000,
            offers: vec![],
        };
        let a = v.decision_id("c", "C1");
        assert_eq!(a, v.decision_id("c", "C1"));
        assert_ne!(a, v.decision_id("c", "C2"));
        let u = ulid::Ulid::from_string(&a).unwrap();
        assert_eq!(
            attribution::attribution(u.0),
            (attribution::model_tag(0xbeef), Some(Variant::Challenger))
        );
        assert_eq!(u.timestamp_ms(), 1_795_341_600_000);
    }
}
