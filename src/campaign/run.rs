//! One campaign run, step by step: load the campaign, the model and the snapshot, and resolve
//! the campaign against each variant's model; read the past contacts; scan the base; allocate
//! under the limits; write the list and the control group; summarise.
//!
//! This module sequences the steps and carries what they share ([`Run`]); each step's work
//! lives in its own module ([`super::spec`], [`super::history`], [`super::select`],
//! [`super::allocate`], [`super::output`]). It must not decide differently from
//! `engine::decide`, nor write anything but the output folder.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::allocate;
use super::finish::{self, Customers, OfferInfo, RunInfo, SnapshotId, VariantInfo};
use super::output::Summary;
use super::plan::{self, Plan};
use super::select::Shard;
use super::select::{self, Inputs, Variantly};
use super::shard;
use super::spec::{self, CampaignSpec};
use super::suppression;
use super::{history, CampaignError, RunConfig};
use crate::engine::{CompiledModel, Rule};
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
    let summary = scanned(cfg, None, |s| {
        finish::finish_in_place(&s.info, s.tally, s.candidates, &s.customers, &cfg.out)
    })?;
    tracing::info!(
        rows = summary.selected,
        total_ms = started.elapsed().as_millis() as u64,
        out = %cfg.out.display(),
        "campaign written"
    );
    Ok(summary)
}

/// Scans one shard of the base and writes the candidate pairs a merge needs into `cfg.out`.
pub fn run_shard(cfg: &RunConfig, part: Shard) -> Result<shard::Written, CampaignError> {
    scanned(cfg, Some(part), |s| {
        shard::write(
            &cfg.out,
            part,
            &s.info,
            &s.tally,
            &s.candidates,
            &s.customers,
        )
    })
}

/// What a scan hands to its last step.
struct Scanned<'a> {
    info: RunInfo,
    tally: select::Tally,
    candidates: Vec<select::Pair>,
    customers: Customers<'a>,
}

/// Loads, scans the base (or one shard of it) and reduces the pairs to the candidates; `then`
/// writes the result.
fn scanned<T>(
    cfg: &RunConfig,
    part: Option<Shard>,
    then: impl FnOnce(Scanned<'_>) -> Result<T, CampaignError>,
) -> Result<T, CampaignError> {
    let started = Instant::now();
    // Said before the scan, not after it: the list is a folder.
    if cfg.out.exists() && !cfg.out.is_dir() {
        return Err(CampaignError::OutDir {
            path: cfg.out.clone(),
            source: std::io::Error::other(
                "a file is there: --out names the folder the list is written into",
            ),
        });
    }
    let spec = match spec::load(&cfg.campaign) {
        Ok(spec) => spec,
        // Every fault in one round, as `campaign check` lists them: the file's and, where the
        // file still reads, those against the model and the snapshot.
        Err(spec::SpecError::Invalid(faults)) => {
            let features = (cfg.features.as_path(), &cfg.null_words);
            return Err(
                super::check(&cfg.campaign, Some(&cfg.models), Some(features))
                    .err()
                    .unwrap_or(CampaignError::Spec(spec::SpecError::Invalid(faults))),
            );
        }
        Err(e) => return Err(e.into()),
    };
    // Said before the load, which takes a while on a large base.
    history_folder(cfg)?;
    out_folder(cfg)?;
    // Before the load too, so a second run into the folder is refused at once, and once the
    // quick checks passed (it makes the folder the lock lies in); held to the end.
    let doing = part.map_or("campaign run".to_string(), |p| {
        format!("campaign run --shard {}/{}", p.index, p.count)
    });
    let _out = super::placing::lock(&cfg.out, &doing)?;
    let snap = load_snapshot(cfg)?;
    let run = Run::prepare(&spec, &snap, cfg.now_ms)?;
    tracing::info!(
        campaign = %spec.name, channel = %spec.channel, customers = run.features.len(),
        offers = run.offer_ids.len(), load_ms = started.elapsed().as_millis() as u64,
        "model and snapshot loaded"
    );
    let suppressed = suppression::read(&spec.suppression)?;
    suppressed.warn_unknown(run.features);
    let past = run.past_contacts(cfg)?;
    let used: Vec<u64> = (0..spec.channel_list().len())
        .map(|i| past.channel_used_on(i))
        .collect();
    // A model's sales cap can leave a customer room for fewer offers, as a frequency cap can.
    let sales_capped = run.plans.iter().any(|p| p.sales.contains(&true));
    let limits = allocation_limits(&spec, run.models[0], &run.offer_ids, &used, sales_capped);
    let scan = run.scan(&past, &suppressed.ids, &limits, part, cfg.progress_bar);
    let info = run.info(&limits, &used, suppressed.crc, past.id);
    let t = Instant::now();
    let pairs = scan.pairs.len();
    let candidates = allocate::candidates(scan.pairs, &limits);
    tracing::info!(
        pairs,
        candidates = candidates.len(),
        reduce_ms = t.elapsed().as_millis() as u64,
        "candidates kept"
    );
    then(Scanned {
        info,
        tally: scan.tally,
        candidates,
        customers: Customers::Snapshot(run.features, &run.reach, scan.rooms),
    })
}

/// The model and snapshot, loaded through the registry as the server loads them.
fn load_snapshot(cfg: &RunConfig) -> Result<Arc<Snapshot>, CampaignError> {
    let registry = Registry::new(RegistryConfig {
        models_path: Some(cfg.models.clone()),
        features_path: Some(cfg.features.clone()),
        history_len: 1,
        limits: ModelLimits::default(),
        snapshot_store: None,
        null_words: cfg.null_words.clone(),
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
    /// Per campaign channel, who can be reached on it.
    reach: Vec<Option<Rule>>,
    now_ms: i64,
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
                Err(f) => faults.extend(f.into_iter().map(|f| match i {
                    0 => f,
                    _ => super::challenger_fault(&m.name, f),
                })),
            }
        }
        let reach = plan::reach_rules(spec, &**features).unwrap_or_else(|f| {
            faults.extend(f);
            Vec::new()
        });
        if let Err(f) = plan::zone_column(spec, features) {
            faults.extend(f);
        }
        if let Err(f) = plan::control_salt(spec, set.challenger.as_ref().map(|c| &*c.salt)) {
            faults.extend(f);
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
            reach,
            now_ms,
        })
    }

    /// The contact history that counts: the data folder's event log, and the fleet's events
    /// of the horizon when `--redis` is given.
    fn past_contacts(&self, cfg: &RunConfig) -> Result<history::PastContacts, CampaignError> {
        let spec = self.spec;
        let day = crate::engine::policy::DAY_MS;
        let zone = spec
            .send_window
            .as_ref()
            .and_then(|w| super::send::zone(&w.default_time_zone))
            .unwrap_or(chrono_tz::Tz::UTC);
        // A calendar period's capacity is the period the list goes out in: with a send window,
        // the one of its next opening (a Saturday evening's run sends on Monday).
        let sends_at = spec
            .send_window
            .as_ref()
            .and_then(|w| w.earliest(zone, self.now_ms))
            .unwrap_or(self.now_ms);
        let channels: Vec<(String, Option<i64>)> = spec
            .channel_list()
            .into_iter()
            .map(|c| {
                let from = c.capacity.map(|c| c.per.counts_from(sends_at, zone));
                (c.name, from)
            })
            .collect();
        let counting = history::Counting {
            horizon_ms: self
                .models
                .iter()
                .map(|m| m.policies.horizon_ms)
                .max()
                .unwrap_or(0),
            outbound_channels: spec.frequency.as_ref().map_or(&[], |f| &f.channels),
            // A calendar week starts at most 7 days and a zone's offset before now.
            frequency_window_ms: spec.frequency.as_ref().map_or(0, |f| {
                i64::from(f.window_days + u32::from(f.calendar_week)) * day
            }),
            channels: &channels,
            memory_bytes: cfg.contact_memory_bytes,
        };
        // The server keeps the log as long as the models' longest policy window (and the 7 days
        // event ids are remembered), unless told to keep more.
        let kept_ms = counting
            .horizon_ms
            .max(crate::contact::state::EVENT_ID_MEMORY.as_millis() as i64);
        if counting.frequency_window_ms > kept_ms {
            let days = (counting.frequency_window_ms + day - 1) / day;
            tracing::warn!(
                window_days = days,
                kept_days = kept_ms / day,
                "the campaign's frequency window is longer than the server keeps the event log for the models' policies: start it with --keep-events-days {days}, or contacts older than {} days are deleted with their log segments and not counted",
                kept_ms / day
            );
        }
        let now_ms = self.now_ms;
        let mut past = match &cfg.data_dir {
            Some(dir) => history::PastContacts::read(dir, &counting, now_ms)?,
            None => history::PastContacts::empty(&counting),
        };
        if let Some(fleet) = &cfg.fleet {
            let origin = cfg.data_dir.as_deref().and_then(crate::fleet::origin_of);
            // Far enough back for the policies, the frequency window and every capacity period.
            let capacity_ms = channels
                .iter()
                .filter_map(|(_, from)| from.map(|from| now_ms - from))
                .max()
                .unwrap_or(0);
            let horizon_ms = counting
                .horizon_ms
                .max(counting.frequency_window_ms)
                .max(capacity_ms);
            let n = crate::fleet::read_history(fleet, horizon_ms, origin.as_deref(), |p| {
                past.add(p, now_ms)
            })
            .map_err(|e| CampaignError::Fleet(e.to_string()))?;
            past.settle();
            tracing::info!(events = n, "the fleet's events read from redis");
        }
        if past.after > 0 {
            tracing::info!(
                events = past.after,
                "events stamped after the run's time are left out: the run sees the history as it was at --now"
            );
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
        shard: Option<Shard>,
        progress_bar: bool,
    ) -> select::Scan {
        // Several channels: a customer's lower pairs may be on a channel with room left.
        let keep_all = limits.offer_level() || self.spec.multi_channel();
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
            reach: &self.reach,
            past,
            suppressed,
            now_ms: self.now_ms,
            sends: self
                .spec
                .send_window
                .as_ref()
                .map(|w| select::Sends::new(w, self.features, self.now_ms)),
            keep_all,
            shard,
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

    /// What the list depends on besides the customers (what shards carry to the merge).
    fn info(
        &self,
        limits: &allocate::Limits,
        used: &[u64],
        suppression: u32,
        history: history::HistoryId,
    ) -> RunInfo {
        let keys: Vec<u32> = Variant::ALL.iter().map(|v| self.set.key(*v)).collect();
        let champion = self.models[0];
        RunInfo {
            spec: self.spec.clone(),
            now_ms: self.now_ms,
            placement: self.plans[0]
                .channels
                .iter()
                .map(|c| c.placement.as_str())
                .collect::<Vec<_>>()
                .join("+"),
            offer_ids: self.offer_ids.clone(),
            categories: self
                .offer_ids
                .iter()
                .map(|id| {
                    champion
                        .offers
                        .iter()
                        .find(|o| *o.id == **id)
                        .map_or(String::new(), |o| o.category.to_string())
                })
                .collect(),
            variants: self
                .models
                .iter()
                .zip(&self.plans)
                .enumerate()
                .map(|(vi, (m, plan))| variant_info(m, keys[vi], vi, plan, &self.offer_ids))
                .collect(),
            snapshot: SnapshotId::of(self.features),
            channel_used: used.first().copied().unwrap_or(0),
            channels_used: if self.spec.multi_channel() {
                used.to_vec()
            } else {
                Vec::new()
            },
            limits: limits.clone(),
            suppression,
            history,
        }
    }
}

/// The allocation limits of a campaign, by campaign offer index (with several channels, by
/// (offer, channel): see [`allocate::Limits::slot`]); `used` is what each channel's period
/// already holds.
fn allocation_limits(
    spec: &CampaignSpec,
    model: &CompiledModel,
    offer_ids: &[String],
    used: &[u64],
    sales_capped: bool,
) -> allocate::Limits {
    let capped = (spec.frequency.is_some() && !spec.transactional) || sales_capped;
    if spec.multi_channel() {
        let channels = spec.channel_list();
        let mut l = allocate::Limits {
            per_customer: spec.max_offers_per_customer,
            channels: channels.len() as u32,
            capped,
            ..Default::default()
        };
        let mut limited = Vec::new();
        for (i, ch) in channels.iter().enumerate() {
            limited.push(ch.capacity.map(|c| {
                l.category_max.push(
                    c.max_contacts
                        .saturating_sub(used.get(i).copied().unwrap_or(0)),
                );
                l.category_max.len() - 1
            }));
        }
        for _ in offer_ids {
            for cap in &limited {
                l.min.push(0);
                l.max.push(None);
                l.category.push(*cap);
            }
        }
        return l;
    }
    let channel_used = used.first().copied().unwrap_or(0);
    let mut categories: Vec<&str> = Vec::new();
    let mut l = allocate::Limits {
        capacity: spec
            .capacity
            .map(|c| c.max_contacts.saturating_sub(channel_used)),
        per_customer: spec.max_offers_per_customer,
        capped,
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

/// A variant's model as the list names it: content and value of each campaign offer.
fn variant_info(
    m: &CompiledModel,
    key: u32,
    vi: usize,
    plan: &Plan,
    offer_ids: &[String],
) -> VariantInfo {
    VariantInfo {
        name: m.name.to_string(),
        version: m.version.to_string(),
        variant: Variant::ALL[vi].as_str().to_owned(),
        key,
        places: plan
            .channels
            .iter()
            .map(|c| m.locate(&c.name, &c.placement))
            .collect(),
        offers: offer_ids
            .iter()
            .map(|id| {
                let o = m.offers.iter().find(|o| *o.id == **id);
                let content = |channel: usize| {
                    o.and_then(|o| o.content_json.get(channel)?.as_deref())
                        .and_then(|j| serde_json::from_str(j).ok())
                        .unwrap_or_default()
                };
                OfferInfo {
                    value: o.map_or(0.0, |o| o.value),
                    value_from: o.and_then(|o| o.value_from),
                    content: content(plan.channels[0].channel),
                    by_channel: match plan.channels.len() {
                        1 => Vec::new(),
                        _ => plan.channels.iter().map(|c| content(c.channel)).collect(),
                    },
                }
            })
            .collect(),
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

/// Refuses a `--data-dir` that is no data folder (without a fleet to read the history from):
/// a run without the contact history would contact everyone the caps and policies hold back.
fn history_folder(cfg: &RunConfig) -> Result<(), CampaignError> {
    match &cfg.data_dir {
        Some(dir) if cfg.fleet.is_none() && !dir.is_dir() => {
            Err(CampaignError::NoHistory(dir.clone()))
        }
        Some(dir) if cfg.fleet.is_none() && !is_data_dir(dir) => {
            Err(CampaignError::NotDataDir(dir.clone()))
        }
        _ => Ok(()),
    }
}

/// Refuses an `--out` that is the data folder, or the models folder or inside it: the list's
/// files would land among the server's own.
fn out_folder(cfg: &RunConfig) -> Result<(), CampaignError> {
    let refused = |folder: &std::path::Path, what, inside| CampaignError::OutInServerFolder {
        out: cfg.out.clone(),
        folder: folder.to_owned(),
        what,
        inside,
    };
    if let Some(data) = cfg
        .data_dir
        .as_deref()
        .filter(|d| crate::files::same_folder(&cfg.out, d))
    {
        return Err(refused(data, "data folder (`--data-dir`)", false));
    }
    if crate::model::in_models_folder(&cfg.out, &cfg.models) {
        let (folder, inside) = crate::model::models_folder(&cfg.models);
        return Err(refused(&folder, "models folder (`--models`)", inside));
    }
    Ok(())
}

/// A server's data folder (its lock or a log segment), or an empty one (no history on purpose).
fn is_data_dir(dir: &std::path::Path) -> bool {
    let Ok(mut entries) = std::fs::read_dir(dir) else {
        return true;
    };
    dir.join(crate::folder_lock::LOCK_FILE).exists()
        || crate::contact::log::list_segments(dir).is_ok_and(|s| !s.is_empty())
        || entries.next().is_none()
}
