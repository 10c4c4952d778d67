//! Outbound campaigns with the same brain: a target list for an outbound channel (SMS, e-mail,
//! push) chosen over the whole customer base by the very decision `/v1/decide` makes, then
//! allocated under volume limits, written out, and committed back as contacts.
//!
//! The path of a run: [`spec`] reads and checks the campaign file → the model and snapshot load
//! through the [`crate::registry::Registry`] as the server loads them, and [`plan`] resolves
//! the campaign's names (channels, placements, offers, `reachable` rules) against them → [`history`] reads the data folder's event
//! log (never writing it) → [`select`] decides for every customer (or one [`shard`]'s) on every
//! core → [`allocate`] keeps the candidate pairs an optimal list can use and chooses the best
//! list under capacity, minimums and maximums (exactly, through `flow`) → [`finish`] writes
//! the list (CSV, Parquet), the control group and the summary with its shadow prices, through
//! [`output`]. A sharded run writes its candidates instead, and [`merge`] finishes the run from
//! all shards. [`commit`] later records the sent list as impressions, so inbound caps,
//! cool-downs and the next campaign see them, and [`report`] compares the targets' outcomes
//! with the control group's.
//!
//! This module must not change how a decision is made (it calls `engine::decide` as is), write
//! the event log other than through [`commit`], or serve HTTP.

pub mod allocate;
pub mod cli;
pub mod commit;
mod customers;
pub mod finish;
mod flow;
pub mod history;
mod limits;
mod not_chosen;
pub mod output;
mod placing;
pub mod plan;
pub mod report;
mod run;
pub mod select;
pub mod send;
pub mod shard;
pub mod spec;
pub mod suppression;

pub use run::{run, run_shard};
pub use shard::merge;

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};

use crate::contact::log::LogError;
use crate::model::{self, AnySchema, Fault, Limits as ModelLimits};
use crate::registry::RegistryError;
use plan::Plan;
pub use spec::CampaignSpec;
use spec::SpecError;

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
    /// The data folder holding the contact history does not exist: a run without history
    /// would contact everyone the caps and policies hold back.
    #[error(
        "--data-dir {}: no such folder: give the data folder whose event log holds the contact \
         history (the server's `--data-dir`; frequency caps, contact policies and the capacity \
         already used read it), or `--redis` for a fleet's; to run without any history on \
         purpose, give an empty folder", .0.display()
    )]
    NoHistory(PathBuf),
    /// The folder holds files but no event log: another folder (the models', a parent) given
    /// by mistake, which would read as no history at all.
    #[error(
        "--data-dir {}: not a data folder (no event log `events-*.log` and no `LOCK` in it, \
         but other files): give the server's `--data-dir`; to run without any history on \
         purpose, give an empty folder", .0.display()
    )]
    NotDataDir(PathBuf),
    /// `--out` is a folder the server owns: its data folder (the list's files beside its event
    /// log, a commit's record among its own), or its models folder or one inside it (watched,
    /// and replaced whole when a model is published).
    #[error(
        "--out {}: is the {what} {}{}; give the list a folder of its own", .out.display(),
        .folder.display(), if *.inside { " or inside it" } else { "" }
    )]
    OutInServerFolder {
        /// The list folder given.
        out: PathBuf,
        /// The server's folder it falls in.
        folder: PathBuf,
        /// Which one: "data folder (`--data-dir`)" or "models folder (`--models`)".
        what: &'static str,
        /// Whether the models folder's inside counts too.
        inside: bool,
    },
    /// A suppression list could not be read.
    #[error("suppression list {path}: {source}")]
    Suppression {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Shards could not be written or merged.
    #[error(transparent)]
    Shard(#[from] shard::ShardError),
    /// The output could not be written.
    #[error("output: {0}")]
    Output(#[from] output::OutputError),
    /// Another campaign command holds the output folder, or its lock could not be taken.
    #[error(transparent)]
    Lock(#[from] crate::folder_lock::LockError),
    /// The list could not be written beside its folder (a full disk, a folder read-only).
    #[error(
        "{}: the list was not written ({source}); the list the folder held before, if any, is \
         as it was", .out.display()
    )]
    NotPlaced {
        /// The list's folder (`--out`).
        out: PathBuf,
        /// Why.
        source: Box<CampaignError>,
    },
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

    /// A failure to write the list beside `out`, said of `out` and of the list it keeps.
    pub fn not_placed(self, out: &Path) -> Self {
        match self {
            CampaignError::Output(_) | CampaignError::OutDir { .. } => CampaignError::NotPlaced {
                out: out.to_owned(),
                source: Box::new(self),
            },
            other => other,
        }
    }

    /// The faults listed one per line before the error's own line: those of the campaign file
    /// and the model it is resolved against. Any other error (a folder in use, a data folder
    /// that is none, a disk) is its own one line, not a fault of the campaign file.
    pub fn listed_faults(&self) -> Vec<Fault> {
        match self {
            CampaignError::Spec(_) | CampaignError::Load(_) | CampaignError::Plan(_) => {
                self.faults()
            }
            _ => Vec::new(),
        }
    }
}

/// Checks a campaign file; with a model (and optionally a snapshot, read with the words it
/// writes for a missing value) also against it, and against the challenger the model
/// declares, as a run resolves it. Every fault of every half is reported at once.
pub fn check(
    file: &Path,
    models: Option<&Path>,
    features: Option<(&Path, &crate::features::NullWords)>,
) -> Result<CampaignSpec, CampaignError> {
    let (spec, mut faults) = spec::load_lenient(file)?;
    if let (Some(models), Some(spec)) = (models, &spec) {
        if let Err(e) = check_models(spec, models, features, &mut faults) {
            // The campaign's own faults still count: the model's are added to them, each
            // named as the model's (or snapshot's), so one run shows everything to fix.
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
    match spec {
        Some(s) if faults.is_empty() => Ok(s),
        _ => Err(CampaignError::Plan(faults)),
    }
}

/// Resolves the campaign against the model and its challenger, adding the names that do not
/// resolve to `faults`; an error when a model or the snapshot does not load.
fn check_models(
    spec: &CampaignSpec,
    models: &Path,
    features: Option<(&Path, &crate::features::NullWords)>,
    faults: &mut Vec<Fault>,
) -> Result<(), CampaignError> {
    let limits = ModelLimits::default();
    let store = features
        .map(|(path, nulls)| crate::features::FeatureStore::load_with(path, nulls))
        .transpose()
        .map_err(|e| CampaignError::Load(RegistryError::Features(e)))?;
    let any = AnySchema::default();
    let schema: &dyn model::Schema = match &store {
        Some(s) => s,
        None => &any,
    };
    let load = |path: &Path| {
        model::load(path, schema, &limits).map_err(|e| CampaignError::Load(RegistryError::Model(e)))
    };
    if let Some(store) = &store {
        if let Err(f) = plan::reach_rules(spec, store) {
            faults.extend(f);
        }
        if let Err(f) = plan::zone_column(spec, store) {
            faults.extend(f);
        }
        // As the run does: a list of ids the snapshot lacks is said before the run.
        if let Ok(suppressed) = suppression::read(&spec.suppression) {
            suppressed.warn_unknown(store);
        }
    }
    let champion = load(models)?;
    let salt = champion.challenger.as_ref().map(|c| c.salt.as_str());
    if let Err(f) = plan::control_salt(spec, salt) {
        faults.extend(f);
    }
    let ids = Plan::offer_ids(spec, &champion.compiled);
    let mut champions = Vec::new();
    if let Err(f) = Plan::resolve(spec, &champion.compiled, &ids) {
        champions = f.iter().map(|f| f.path.clone()).collect();
        faults.extend(f);
    }
    if let Some(c) = &champion.challenger {
        let challenger = load(&c.path).map_err(|e| {
            CampaignError::Plan(
                e.faults()
                    .into_iter()
                    .map(|f| Fault {
                        path: format!("challenger:{}", f.path),
                        message: f.message,
                    })
                    .collect(),
            )
        })?;
        // A place in the campaign the champion already faults is said once: the challenger's
        // fault there (most often the same one) is fixed with it, or shows at the next check.
        if let Err(f) = Plan::resolve(spec, &challenger.compiled, &ids) {
            let name = &challenger.compiled.name;
            faults.extend(
                f.into_iter()
                    .filter(|f| !champions.contains(&f.path))
                    .map(|f| challenger_fault(name, f)),
            );
        }
    }
    Ok(())
}

/// A fault of the campaign against the challenger's model, said so.
fn challenger_fault(name: &str, mut f: Fault) -> Fault {
    f.message = format!("(challenger `{name}`) {}", f.message);
    f
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
    /// The words a CSV snapshot writes for a missing value (`--features-null`).
    pub null_words: crate::features::NullWords,
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
