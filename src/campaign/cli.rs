//! The `nextbest campaign` subcommands: flags (each also an environment variable, the same ones
//! the server reads for the model, snapshot and data folder), and what each prints.
//!
//! `main.rs` only hands the parsed command here; nothing here decides or writes lists itself.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::commit::{self, Target};
use super::select::Shard;
use super::{output, CampaignError, RunConfig};
use crate::settings::{self, NullArgs, RedisArgs, SettingsError, MAX_MEMORY_MB};

/// `nextbest campaign ...`.
#[derive(Subcommand, Debug)]
pub enum CampaignCmd {
    /// Validate a campaign file (and, with --models, against the model) and print every fault.
    Check {
        /// The campaign file.
        file: PathBuf,
        /// Also check it against this model (folder or file).
        #[arg(long, env = "NEXTBEST_MODELS")]
        models: Option<PathBuf>,
        /// Check the model's features against this snapshot.
        #[arg(long, env = "NEXTBEST_FEATURES")]
        features: Option<PathBuf>,
        /// Words a CSV snapshot writes for a missing value (`--features-null`).
        #[command(flatten)]
        null: NullArgs,
    },
    /// Select a campaign's target list over the whole base and write it to --out (with
    /// --shard, write one shard's candidates for `campaign merge` instead).
    Run(RunArgs),
    /// Join the folders of every `campaign run --shard I/N` of one run into the list, exactly
    /// as one machine would write it.
    Merge {
        /// The shard folders (every shard of the run, once each).
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// Output folder for targets.csv, targets.parquet, control.csv and summary.json.
        #[arg(long)]
        out: PathBuf,
    },
    /// Record a sent list's contacts as impression events (once, however often it is run).
    Commit(CommitArgs),
    /// Did it work? Conversions and value of the list's targets since the run against the
    /// control group's, per offer and overall, with the lift and its 95 % interval.
    Report {
        /// The run's output folder (summary.json, targets.csv, control.csv).
        dir: PathBuf,
        /// The data folder whose event log holds the outcomes (read, never written).
        #[arg(long, env = "NEXTBEST_DATA_DIR", default_value = "data")]
        data_dir: PathBuf,
        /// Count outcomes up to this time only (RFC 3339, e.g. 2026-12-20T00:00:00Z): a
        /// later campaign that contacted the control group ends the comparison.
        #[arg(long)]
        until: Option<String>,
        /// Print the report as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// `nextbest campaign run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// The campaign file.
    pub file: PathBuf,
    /// Output folder for targets.csv, targets.parquet, control.csv and summary.json.
    #[arg(long)]
    pub out: PathBuf,
    /// The model: a folder holding model.json, or a model file.
    #[arg(long, env = "NEXTBEST_MODELS", default_value = "models")]
    pub models: PathBuf,
    /// The feature snapshot: CSV, .nbf or .parquet.
    #[arg(long, env = "NEXTBEST_FEATURES", default_value = "models/features.csv")]
    pub features: PathBuf,
    /// Words a CSV snapshot writes for a missing value (`--features-null`).
    #[command(flatten)]
    pub null: NullArgs,
    /// The data folder whose event log holds the contact history (read, never written).
    #[arg(long, env = "NEXTBEST_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    /// Decide as of this time (RFC 3339) instead of now; the same inputs and time give the
    /// same bytes.
    #[arg(long)]
    pub now: Option<String>,
    /// Memory budget of the contact history rebuilt from the log, in MiB.
    #[arg(
        long,
        env = "NEXTBEST_CONTACT_MEMORY_MB",
        default_value_t = 512,
        allow_negative_numbers = true
    )]
    pub contact_memory_mb: u64,
    /// Worker threads for the scan (0: one per core; at most 1024).
    #[arg(
        long,
        env = "NEXTBEST_WORKERS",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    pub workers: usize,
    /// The fleet's Redis: its events of the horizon count too.
    #[command(flatten)]
    pub fleet: RedisArgs,
    /// Scan only shard I of N (customers by a stable hash of their id) and write its candidate
    /// pairs to --out for `campaign merge`.
    #[arg(long, env = "NEXTBEST_SHARD", value_name = "I/N")]
    pub shard: Option<Shard>,
}

/// `nextbest campaign commit`.
#[derive(Args, Debug)]
pub struct CommitArgs {
    /// The folder `campaign run --out` wrote.
    pub dir: PathBuf,
    /// The running sidecar to post the events to (its public listener).
    #[arg(long, env = "NEXTBEST_SERVER", default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// Largest /v1/events body to send (at least 1024); keep it under the server's
    /// --max-body-bytes.
    #[arg(long, default_value_t = 60 * 1024, allow_negative_numbers = true)]
    pub batch_bytes: usize,
    /// Write the data folder's event log directly instead (only when no server uses it).
    #[arg(long)]
    pub direct: bool,
    /// The data folder for --direct.
    #[arg(long, env = "NEXTBEST_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    /// Commit a list whose first contacts are more than 6 days old, which event ids cannot tell
    /// from an earlier commit: the list's folder (its commit.json) says how far earlier commits
    /// got, so a failed one resumes and a list committed in full is refused.
    #[arg(long)]
    pub late: bool,
}

/// Why a campaign command failed (its faults are printed first).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Check, run or load failed.
    #[error(transparent)]
    Campaign(#[from] CampaignError),
    /// Commit failed.
    #[error(transparent)]
    Commit(#[from] commit::CommitError),
    /// The report could not be made.
    #[error(transparent)]
    Report(#[from] super::report::ReportError),
    /// A flag is wrong.
    #[error("{0}")]
    Flag(String),
    /// A flag's value is out of its range.
    #[error(transparent)]
    Settings(#[from] SettingsError),
}

/// Runs one campaign subcommand.
pub fn main(cmd: CampaignCmd) -> Result<(), CliError> {
    match cmd {
        CampaignCmd::Check {
            file,
            models,
            features,
            null,
        } => {
            let nulls = null.check()?;
            let snapshot = features.as_deref().map(|f| (f, &nulls));
            match super::check(&file, models.as_deref(), snapshot) {
                Ok(spec) => {
                    println!(
                        "ok: campaign {} on channel {}{}",
                        spec.name,
                        spec.channel,
                        match (&models, &features) {
                            (None, _) => " (not checked against a model)",
                            // Feature names (reachability, time zones, values) are the snapshot's.
                            (Some(_), None) => {
                                " (not checked against a snapshot: give --features for the feature \
                             names it reads)"
                            }
                            (Some(_), Some(_)) => "",
                        }
                    );
                    Ok(())
                }
                Err(e) => {
                    for f in e.listed_faults() {
                        println!("{}: {f}", file.display());
                    }
                    Err(e.into())
                }
            }
        }
        CampaignCmd::Run(a) => {
            let now_ms = a
                .now
                .as_deref()
                .map(|s| {
                    crate::rfc3339::parse_ms(s).map_err(|e| CliError::Flag(format!("--now: {e}")))
                })
                .transpose()?;
            if a.shard.is_some() && now_ms.is_none() {
                // Each shard would take its own clock, and the merge refuse them all at the end.
                return Err(CliError::Flag(
                    "--shard needs --now: every shard of a run must decide as of the same time \
                     (the merge refuses shards of different runs)"
                        .into(),
                ));
            }
            let cfg = RunConfig {
                campaign: a.file.clone(),
                out: a.out,
                models: a.models,
                features: a.features,
                null_words: a.null.check()?,
                data_dir: Some(a.data_dir),
                fleet: a.fleet.check()?,
                now_ms,
                contact_memory_bytes: settings::mib(
                    "--contact-memory-mb",
                    a.contact_memory_mb,
                    MAX_MEMORY_MB,
                )?,
                progress_bar: RunConfig::stderr_is_terminal(),
            };
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(settings::within(
                    "--workers",
                    a.workers,
                    0,
                    settings::MAX_WORKERS,
                )?)
                .build()
                .map_err(|e| CliError::Flag(format!("--workers: {e}")))?;
            if let Some(shard) = a.shard {
                return match pool.install(|| super::run_shard(&cfg, shard)) {
                    Ok(w) => {
                        println!(
                            "shard {}/{}: {} customers scanned, {} candidate pairs written to {}",
                            shard.index,
                            shard.count,
                            w.scanned,
                            w.candidates,
                            cfg.out.display()
                        );
                        Ok(())
                    }
                    Err(e) => {
                        for f in e.listed_faults() {
                            println!("{}: {f}", a.file.display());
                        }
                        Err(e.into())
                    }
                };
            }
            match pool.install(|| super::run(&cfg)) {
                Ok(summary) => {
                    print!("{}", output::table(&summary));
                    println!("wrote {}", cfg.out.display());
                    Ok(())
                }
                Err(e) => {
                    for f in e.listed_faults() {
                        println!("{}: {f}", a.file.display());
                    }
                    Err(e.into())
                }
            }
        }
        CampaignCmd::Merge { dirs, out } => {
            let summary = super::merge(&dirs, &out)?;
            print!("{}", output::table(&summary));
            println!("wrote {} from {} shards", out.display(), dirs.len());
            Ok(())
        }
        CampaignCmd::Commit(a) => {
            let target = if a.direct {
                Target::Direct {
                    data_dir: a.data_dir,
                }
            } else {
                Target::Server {
                    url: a.server,
                    batch_bytes: settings::at_least("--batch-bytes", a.batch_bytes, 1024)?,
                }
            };
            let now_ms = crate::contact::Clock::system().now_ms();
            let done = commit::commit_with(&a.dir, &target, now_ms, a.late)?;
            let into = match &target {
                Target::Direct { data_dir } => format!("the event log in {}", data_dir.display()),
                Target::Server { url, .. } => url.clone(),
            };
            println!(
                "committed {} contacts of {} to {into}: {} recorded now, {} already recorded",
                done.events, done.list, done.accepted, done.duplicates
            );
            if let Some(until) = done.planned_until_ms {
                tracing::warn!(
                    contacts = done.ahead,
                    "{} contacts are planned after now (up to {}): they are recorded as of now, as an event cannot be in the future, so caps count them from now (`campaign report` still finds them by their decision ids); commit a list when it goes out",
                    done.ahead,
                    crate::rfc3339::format_ms(until)
                );
            }
            Ok(())
        }
        CampaignCmd::Report {
            dir,
            data_dir,
            until,
            json,
        } => {
            let until = until
                .as_deref()
                .map(|s| {
                    crate::rfc3339::parse_ms(s).map_err(|e| CliError::Flag(format!("--until: {e}")))
                })
                .transpose()?;
            let r = super::report::report(&dir, &data_dir, until)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
            } else {
                print!("{}", super::report::table(&r));
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: CampaignCmd,
    }

    #[test]
    fn the_run_flags_debug_hides_the_redis_password() {
        let cli = Cli::try_parse_from([
            "campaign",
            "run",
            "c.json",
            "--out",
            "out",
            "--redis",
            "redis://:s3cret@redis.svc:6379",
        ])
        .unwrap();
        let printed = format!("{:?}", cli.cmd);
        assert!(!printed.contains("s3cret"), "{printed}");
        assert!(printed.contains("redis://***@redis.svc:6379"), "{printed}");
    }
}
