//! Outbound campaigns with the same brain: a target list for an outbound channel (SMS, e-mail,
//! push) chosen over the whole customer base by the very decision `/v1/decide` makes, then
//! allocated under volume limits, written out, and committed back as contacts.
//!
//! The path of a run: [`spec`] reads and checks the campaign file → the model and snapshot load
//! through the [`Registry`] as the server loads them → [`history`] reads the data folder's event
//! log (never writing it) → [`select`] decides for every customer on every core → [`allocate`]
//! chooses the best pairs under capacity, minimums and maximums → [`output`] writes the list
//! (CSV, Parquet), the control group and the summary. [`commit`] later records the sent list as
//! impressions, so inbound caps, cool-downs and the next campaign see them.
//!
//! This module must not change how a decision is made (it calls `engine::decide` as is), write
//! the event log other than through [`commit`], or serve HTTP.

pub mod allocate;
pub mod cli;
pub mod commit;
pub mod history;
pub mod output;
pub mod select;
pub mod spec;

use std::collections::{BTreeMap, HashSet};
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::contact::attribution;
use crate::contact::log::LogError;
use crate::engine::policy::stable_hash;
use crate::engine::CompiledModel;
use crate::experiment::Variant;
use crate::model::{self, AnySchema, Fault, Limits as ModelLimits};
use crate::registry::{Registry, RegistryConfig, RegistryError};
use output::{Content, Row, Summary};
use select::{Inputs, Variantly};
use spec::{CampaignSpec, Plan, SpecError};

/// Why a campaign could not be checked, run or committed.
#[derive(Debug, thiserror::Error)]
pub enum CampaignError {
    /// The campaign file is wrong.
    #[error("campaign file: {0}")]
    Spec(#[from] SpecError),
    /// The model or snapshot did not load.
    #[error("model or snapshot: {0}")]
    Load(#[from] RegistryError),
    /// The campaign file has faults (its own, or names the model does not know).
    #[error("{} fault(s); first: {}", .0.len(), .0.first().map(|f| f.to_string()).unwrap_or_default())]
    Plan(Vec<Fault>),
    /// The event log could not be read.
    #[error("event log: {0}")]
    Log(#[from] LogError),
    /// The fleet's Redis could not be read.
    #[error("the fleet's events: {0}")]
    Fleet(String),
    /// A suppression list could not be read.
    #[error("suppression list {path}: {source}")]
    Suppression {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The output could not be written.
    #[error("output: {0}")]
    Output(#[from] output::OutputError),
    /// The output folder could not be made.
    #[error("output folder {path}: {source}")]
    OutDir {
        /// The folder.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl CampaignError {
    /// Every fault with its path (one entry for errors that have no path).
    pub fn faults(&self) -> Vec<Fault> {
        match self {
            CampaignError::Spec(e) => e.faults(),
            CampaignError::Load(e) => e.faults(),
            CampaignError::Plan(f) => f.clone(),
            other => vec![Fault {
                path: String::new(),
                message: other.to_string(),
            }],
        }
    }
}

/// Checks a campaign file; with a model (and optionally a snapshot) also against it. Every
/// fault of both halves is reported at once.
pub fn check(
    file: &Path,
    models: Option<&Path>,
    features: Option<&Path>,
) -> Result<CampaignSpec, CampaignError> {
    let (spec, mut faults) = spec::load_lenient(file)?;
    if let (Some(models), Some(spec)) = (models, &spec) {
        let limits = ModelLimits::default();
        let loaded = match features {
            Some(f) => crate::features::FeatureStore::load(f)
                .map_err(|e| CampaignError::Load(RegistryError::Features(e)))
                .and_then(|store| {
                    model::load(models, &store, &limits)
                        .map_err(|e| CampaignError::Load(RegistryError::Model(e)))
                }),
            None => model::load(models, &AnySchema::default(), &limits)
                .map_err(|e| CampaignError::Load(RegistryError::Model(e))),
        };
        match loaded {
            Ok(loaded) => {
                let ids = Plan::offer_ids(spec, &loaded.compiled);
                if let Err(f) = Plan::resolve(spec, &loaded.compiled, &ids) {
                    faults.extend(f);
                }
            }
            // The campaign's own faults still count: the model's are added to them, each
            // named as the model's (or snapshot's), so one run shows everything to fix.
            Err(e) => {
                let flag = match &e {
                    CampaignError::Load(RegistryError::Features(_)) => "--features",
                    _ => "--models",
                };
                faults.extend(e.faults().into_iter().map(|f| Fault {
                    path: flag.into(),
                    message: if f.path.is_empty() {
                        f.message
                    } else {
                        format!("{}: {}", f.path, f.message)
                    },
                }))
            }
        }
    }
    match spec {
        Some(s) if faults.is_empty() => Ok(s),
        _ => Err(CampaignError::Plan(faults)),
    }
}

/// What a run reads and where it writes.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The campaign file.
    pub campaign: PathBuf,
    /// The output folder (created; files in it are replaced).
    pub out: PathBuf,
    /// The model folder or file, as the server takes it.
    pub models: PathBuf,
    /// The feature snapshot (CSV, `.nbf`, `.parquet`).
    pub features: PathBuf,
    /// The data folder whose event log holds the contact history; `None` for none.
    pub data_dir: Option<PathBuf>,
    /// The fleet whose shared events count too (`--redis`); `None` for the local log only.
    pub fleet: Option<crate::fleet::FleetConfig>,
    /// The decision time; `None` is now. The same inputs and time give the same bytes.
    pub now_ms: Option<i64>,
    /// Memory budget of the contact history rebuilt from the log.
    pub contact_memory_bytes: u64,
    /// Show a progress bar (else a log line every few seconds).
    pub progress_bar: bool,
}

impl RunConfig {
    /// True when stderr is a terminal (a progress bar is then worth drawing).
    pub fn stderr_is_terminal() -> bool {
        std::io::stderr().is_terminal()
    }
}

/// Selects, allocates and writes a campaign's target list; returns its summary.
pub fn run(cfg: &RunConfig) -> Result<Summary, CampaignError> {
    let started = Instant::now();
    let spec = spec::load(&cfg.campaign)?;
    let registry = Registry::new(RegistryConfig {
        models_path: Some(cfg.models.clone()),
        features_path: Some(cfg.features.clone()),
        history_len: 1,
        limits: ModelLimits::default(),
    });
    registry.reload_from_disk()?;
    let snap = arc_swap::Guard::into_inner(registry.load());
    let (Some(set), Some(features)) = (snap.models.as_ref(), snap.features.as_ref()) else {
        return Err(CampaignError::Plan(vec![Fault {
            path: String::new(),
            message: "no model or snapshot loaded".into(),
        }]));
    };
    let champion = &set.champion.compiled;
    let offer_ids = Plan::offer_ids(&spec, champion);
    let mut models: Vec<&CompiledModel> = vec![champion];
    if let Some(c) = &set.challenger {
        models.push(&c.model.compiled);
    }
    let mut plans = Vec::new();
    let mut faults = Vec::new();
    for (i, m) in models.iter().enumerate() {
        match Plan::resolve(&spec, m, &offer_ids) {
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
    let now_ms = cfg.now_ms.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    });
    tracing::info!(
        campaign = %spec.name, channel = %spec.channel, customers = features.len(),
        offers = offer_ids.len(), load_ms = started.elapsed().as_millis() as u64,
        "model and snapshot loaded"
    );

    let suppressed = read_suppression(&spec.suppression)?;
    let day = crate::engine::policy::DAY_MS;
    let counting = history::Counting {
        horizon_ms: models
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
    let mut past = match &cfg.data_dir {
        Some(dir) => history::PastContacts::read(dir, &counting, now_ms)?,
        None => history::PastContacts::empty(&counting),
    };
    if let Some(fleet) = &cfg.fleet {
        let origin = cfg.data_dir.as_deref().and_then(crate::fleet::origin_of);
        let n = crate::fleet::read_history(fleet, counting.horizon_ms, origin.as_deref(), |p| {
            past.add(p, &counting, now_ms)
        })
        .map_err(|e| CampaignError::Fleet(e.to_string()))?;
        tracing::info!(events = n, "the fleet's events read from redis");
    }
    tracing::info!(
        events = past.events,
        segments = past.segments,
        channel_used = past.channel_used,
        "contact history read"
    );

    let limits = allocation_limits(&spec, champion, &offer_ids, past.channel_used);
    let keep_all = limits.min.iter().any(|&m| m > 0)
        || limits.max.iter().any(Option::is_some)
        || !limits.category_max.is_empty();
    let inputs = Inputs {
        spec: &spec,
        set,
        variants: models
            .iter()
            .zip(&plans)
            .map(|(m, plan)| Variantly { model: m, plan })
            .collect(),
        features,
        past: &past,
        suppressed: &suppressed,
        now_ms,
        keep_all,
    };
    let t = Instant::now();
    let scan = with_progress(features.len() as u64, cfg.progress_bar, |progress| {
        select::scan(&inputs, progress)
    });
    tracing::info!(
        pairs = scan.pairs.len(),
        scan_ms = t.elapsed().as_millis() as u64,
        "base scanned"
    );
    let t = Instant::now();
    let candidates = scan.pairs.chunk_by(|a, b| a.row == b.row).count();
    let alloc = allocate::allocate(scan.pairs, &limits, features.len());
    tracing::info!(
        selected = alloc.selected.len(),
        candidates,
        allocate_ms = t.elapsed().as_millis() as u64,
        "allocated"
    );

    std::fs::create_dir_all(&cfg.out).map_err(|source| CampaignError::OutDir {
        path: cfg.out.clone(),
        source,
    })?;
    let t = Instant::now();
    let keys: Vec<u32> = Variant::ALL.iter().map(|v| set.key(*v)).collect();
    let variants = VariantInfo::build(&models, &keys, &plans, &offer_ids, now_ms);
    let mut writer = output::ListWriter::create(&cfg.out)?;
    let mut ranks = vec![0u8; features.len()];
    let mut customers_selected = 0u64;
    let (mut conversions, mut value) = (0.0, 0.0);
    let mut per_offer_conv = vec![0.0; offer_ids.len()];
    for p in &alloc.selected {
        let Some(id) = features.id_at(p.row as usize) else {
            continue;
        };
        let v = &variants[p.variant as usize];
        let r = &mut ranks[p.row as usize];
        *r += 1;
        if *r == 1 {
            customers_selected += 1;
        }
        let decision_id = v.decision_id(&spec.name, id);
        let offer = &v.offers[p.offer as usize];
        writer.push(&Row {
            customer_id: id,
            channel: &spec.channel,
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
        conversions += p.propensity;
        value += p.propensity * offer.value;
        per_offer_conv[p.offer as usize] += p.propensity;
    }
    let rows_written = writer.finish()?;
    output::write_control(
        &cfg.out,
        scan.control.iter().filter_map(|p| {
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

    let mut offers = BTreeMap::new();
    for (k, id) in offer_ids.iter().enumerate() {
        offers.insert(
            id.clone(),
            output::OfferSummary {
                category: variants[0].offers[k].category.clone(),
                selected: alloc.per_offer[k],
                min: spec.offer_limits.get(id).map(|l| l.min).filter(|&m| m > 0),
                expected_conversions: per_offer_conv[k],
            },
        );
    }
    let tally = scan.tally;
    let summary = Summary {
        campaign: spec.name.clone(),
        channel: spec.channel.clone(),
        placement: plans[0].placement.clone(),
        model_name: champion.name.to_string(),
        model_version: champion.version.to_string(),
        run_at: humantime::format_rfc3339_millis(
            UNIX_EPOCH + Duration::from_millis(now_ms.max(0) as u64),
        )
        .to_string(),
        run_at_ms: now_ms,
        transactional: spec.transactional,
        scanned: tally.scanned,
        eligible: tally.eligible,
        selected: rows_written,
        customers_selected,
        offers,
        held_out: output::HeldOut {
            suppression: tally.suppression,
            no_eligible_offer: tally.no_eligible_offer,
            contact_policy: tally.contact_policy,
            frequency: tally.frequency,
            control_group: tally.control_group,
            capacity: alloc.lost_to_limits,
        },
        capacity: spec.capacity.map(|c| output::CapacityUse {
            max_contacts: c.max_contacts,
            per: match c.per {
                spec::Per::Day => "day".into(),
                spec::Per::Week => "week".into(),
            },
            used_before: past.channel_used,
            available: limits.capacity.unwrap_or(0),
        }),
        expected_conversions: conversions,
        expected_value: value,
    };
    output::write_summary(&cfg.out, &summary)?;
    tracing::info!(
        rows = rows_written,
        write_ms = t.elapsed().as_millis() as u64,
        total_ms = started.elapsed().as_millis() as u64,
        out = %cfg.out.display(),
        "campaign written"
    );
    Ok(summary)
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
    category: String,
    value: f64,
    content: Content,
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
                            category: o.map_or(String::new(), |o| o.category.to_string()),
                            value: o.map_or(0.0, |o| o.value),
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
