//! The `nextbest` binary: command-line parsing and wiring; the library does the work.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use nextbest::contact::funnel::store as funnel_store;
use nextbest::contact::{Clock, ContactConfig};
use nextbest::decision_log::DecisionLog;
use nextbest::fleet;
use nextbest::registry::{Change, Registry, RegistryError};
use nextbest::server::{self, AppState};
use nextbest::settings::{NullArgs, ServeArgs};
use tokio::signal::unix::{signal, Signal, SignalKind};

mod command_line;
mod features_cli;
mod model_cli;
use command_line::{refused_command_line, unknown_environment, usage, Usage};
use features_cli::{compile_features, publish_features, show_features};
use model_cli::{check_model, estimate, replay};

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Real-time next-best-offer decisions from precomputed features and hot-loaded offer models.
#[derive(Parser)]
#[command(name = "nextbest", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
    /// Log lines on stderr: `json` (one object a line) or `text`; default: text on a terminal,
    /// JSON otherwise.
    #[arg(long, env = "NEXTBEST_LOG_FORMAT", value_enum, global = true)]
    log_format: Option<nextbest::logging::LogFormat>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve decisions (the default).
    Serve(Box<ServeArgs>),
    /// Work with offer models.
    #[command(subcommand)]
    Model(ModelCmd),
    /// Work with feature snapshots.
    #[command(subcommand)]
    Features(FeaturesCmd),
    /// Outbound campaigns: check a campaign file, run it over the base, commit the sent list.
    #[cfg(feature = "offline")]
    #[command(subcommand)]
    Campaign(nextbest::campaign::cli::CampaignCmd),
    /// Outbound campaigns: not in this build (the lean sidecar, built without `offline`).
    #[cfg(not(feature = "offline"))]
    Campaign {
        /// Whatever follows `campaign`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// Re-decide a decision log with the models that made it and with a candidate, and report
    /// what the candidate would change.
    Replay {
        /// The decision log folder (`--decision-log` of the server).
        #[arg(long)]
        log: PathBuf,
        /// The candidate model: a folder holding model.json, or a model file.
        #[arg(long)]
        candidate: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Estimate the candidate's conversions and value per 1,000 decisions (IPS, SNIPS,
        /// doubly robust) from the logged decisions and their outcomes in `--data-dir`.
        #[arg(long)]
        estimate: bool,
        /// The data folder whose event log holds the outcomes (read with `--estimate` only).
        #[arg(long, env = "NEXTBEST_DATA_DIR", default_value = "data")]
        data_dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum ModelCmd {
    /// Validate a model file or folder and print every fault.
    Check {
        /// The model file, or a folder holding model.json.
        #[arg(required_unless_present = "models")]
        file: Option<PathBuf>,
        /// The models folder, as `serve --models` names it (instead of FILE).
        #[arg(long, value_name = "DIR", conflicts_with = "file")]
        models: Option<PathBuf>,
        /// Check feature names against this snapshot (CSV, Parquet, a folder of parts or .nbf).
        #[arg(long, env = "NEXTBEST_FEATURES")]
        features: Option<PathBuf>,
        /// Words a CSV snapshot writes for a missing value (`--features-null`).
        #[command(flatten)]
        null: NullArgs,
    },
    /// Print each customer's propensity per offer, as the model scores the snapshot (CSV on
    /// stdout): the numbers to hold against the training library's own predictions.
    Score {
        /// The model file, or a folder holding model.json.
        #[arg(required_unless_present = "models")]
        file: Option<PathBuf>,
        /// The models folder, as `serve --models` names it (instead of FILE).
        #[arg(long, value_name = "DIR", conflicts_with = "file")]
        models: Option<PathBuf>,
        /// The snapshot to score (CSV, Parquet or .nbf).
        #[arg(long, env = "NEXTBEST_FEATURES")]
        features: PathBuf,
        /// Only these customers (default: every customer, in the snapshot's order).
        #[arg(long, num_args = 1..)]
        customers: Vec<String>,
        /// Words a CSV snapshot writes for a missing value (`--features-null`).
        #[command(flatten)]
        null: NullArgs,
    },
}

#[derive(Subcommand)]
enum FeaturesCmd {
    /// Convert a snapshot (CSV, Parquet, a folder of Parquet parts or an older .nbf) into the
    /// compact binary form (.nbf).
    Compile {
        /// The snapshot: CSV, Parquet or .nbf (read by its first bytes), or a folder of Parquet
        /// parts.
        input: PathBuf,
        /// The .nbf file to write.
        output: PathBuf,
        /// Words a CSV snapshot writes for a missing value (`--features-null`): missing in the
        /// .nbf.
        #[command(flatten)]
        null: NullArgs,
    },
    /// Copy a compiled snapshot into a node's snapshot store, verified, and point
    /// `current.nbf` there (what a DaemonSet runs; replicas map it with nothing to copy).
    Publish {
        /// The .nbf snapshot (version 4, as `features compile` writes it).
        source: PathBuf,
        /// The snapshot store the node's replicas share (`--snapshot-store`).
        #[arg(long, env = "NEXTBEST_SNAPSHOT_STORE")]
        store: PathBuf,
        /// Keep running: publish again whenever the source changes, checking every SECONDS.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        every: Option<u64>,
    },
    /// Print customers' values as the snapshot holds them (what a decision reads), one JSON
    /// line each.
    Show {
        /// The snapshot: CSV, Parquet or .nbf.
        snapshot: PathBuf,
        /// The customers.
        #[arg(required = true)]
        customer_ids: Vec<String>,
        /// Words a CSV snapshot writes for a missing value (`--features-null`).
        #[command(flatten)]
        null: NullArgs,
    },
}

fn main() -> ExitCode {
    nextbest::private::narrow_umask();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return refused_command_line(&e),
    };
    let style = match nextbest::logging::init(cli.log_format) {
        Ok(style) => style,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    // A typo in a manifest's variable is refused as a flag's typo is; another tool's
    // `NEXTBEST_*` variable is only reported.
    for unknown in unknown_environment() {
        if unknown.is_typo() {
            nextbest::logging::fatal_line(style, unknown.to_string());
            return ExitCode::from(2);
        }
        tracing::warn!(variable = %unknown.name, "{unknown}");
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            nextbest::logging::fatal(style, e.as_ref());
            if e.is::<Usage>() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// The model a `model` command reads: FILE or `--models DIR` (clap lets exactly one through).
fn one_of(file: Option<PathBuf>, models: Option<PathBuf>) -> PathBuf {
    file.or(models).unwrap_or_default()
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        None => serve(cli.serve),
        Some(Command::Serve(args)) => serve(*args),
        Some(Command::Model(ModelCmd::Check {
            file,
            models,
            features,
            null,
        })) => check_model(
            &one_of(file, models),
            features.as_deref(),
            &null.check().map_err(usage)?,
        ),
        Some(Command::Model(ModelCmd::Score {
            file,
            models,
            features,
            customers,
            null,
        })) => model_cli::score(
            &one_of(file, models),
            &features,
            &customers,
            &null.check().map_err(usage)?,
        ),
        Some(Command::Features(FeaturesCmd::Compile {
            input,
            output,
            null,
        })) => compile_features(&input, &output, &null.check().map_err(usage)?),
        Some(Command::Features(FeaturesCmd::Publish {
            source,
            store,
            every,
        })) => publish_features(&source, &store, every),
        Some(Command::Features(FeaturesCmd::Show {
            snapshot,
            customer_ids,
            null,
        })) => show_features(&snapshot, &customer_ids, &null.check().map_err(usage)?),
        #[cfg(feature = "offline")]
        Some(Command::Campaign(cmd)) => {
            use nextbest::campaign::cli::{main, CliError};
            main(cmd).map_err(|e| match e {
                CliError::Flag(_) | CliError::Settings(_) => usage(e),
                e => e.into(),
            })
        }
        #[cfg(not(feature = "offline"))]
        Some(Command::Campaign { .. }) => anyhow::bail!(
            "nextbest campaign is not built in: this is the lean sidecar (--no-default-features); \
             build with the default `offline` feature for campaigns"
        ),
        Some(Command::Replay {
            log,
            candidate,
            json,
            estimate: true,
            data_dir,
        }) => estimate(&log, &candidate, &data_dir, json),
        Some(Command::Replay {
            log,
            candidate,
            json,
            ..
        }) => {
            // Given on the command line, not by a ConfigMap's variable shared with the server.
            if std::env::args().any(|a| a == "--data-dir" || a.starts_with("--data-dir=")) {
                return Err(usage(
                    "--data-dir is read with --estimate only (the outcomes' event log): add --estimate, or leave --data-dir out",
                ));
            }
            replay(&log, &candidate, json)
        }
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let settings = args.check().map_err(usage)?;
    // Refused before the model and snapshot load, which can take a while: a path that is no
    // folder, a folder another process holds (it is locked again when the log opens).
    let data = &settings.data_dir;
    if let Some(file) = data
        .ancestors()
        .find(|a| a.exists())
        .filter(|a| !a.is_dir())
    {
        if file == data.as_path() {
            anyhow::bail!("--data-dir {}: not a folder", data.display());
        }
        anyhow::bail!(
            "--data-dir {}: {} is a file, not a folder",
            data.display(),
            file.display()
        );
    }
    if data.is_dir() {
        drop(nextbest::folder_lock::FolderLock::acquire(
            data,
            nextbest::folder_lock::Folder::Data,
            None,
        )?);
    }
    // What an earlier release left open to others is said, with the command that closes it.
    let elsewhere = [
        settings.registry.snapshot_store.as_ref().map(|s| s.dir()),
        settings.decision_log.as_ref().map(|d| d.dir.as_path()),
    ];
    nextbest::private::say_what_is_open(data, elsewhere.into_iter().flatten());
    // Both ports are taken before anything loads: a clash is said at once, not after the
    // snapshot, the replay and the fleet's first words.
    let reserved = server::reserve(&settings.server).map_err(bind_refusal)?;
    let registry = Arc::new(Registry::new(settings.registry));
    if let Err(e) = registry.reload_from_disk() {
        // Serve anyway (the registry logged why): every decision gets the built-in fallback
        // (reason `no_model`) and /readyz says 503 until a model and snapshot load (admin API,
        // folder, SIGHUP). A snapshot that loads is kept, so the model published later finds
        // its features.
        let features_loaded = matches!(e, RegistryError::Model(_))
            && registry.commit(Change::Features { path: None }).is_ok();
        let config = registry.config();
        let without = match e.part() {
            nextbest::registry::Part::Features => "a feature snapshot",
            nextbest::registry::Part::Model => "a model",
        };
        tracing::error!(
            path = %config.models_path.as_deref().unwrap_or(Path::new("")).display(),
            features = %config.features_path.as_deref().unwrap_or(Path::new("")).display(),
            features_loaded,
            "serving without {without}: decisions get built-in fallback content"
        );
    }
    let _watcher = settings.watch_models.then(|| watch(&registry)).flatten();
    // Replay the event log before serving, so policies hold from the start; history reaches
    // back as far as champion or challenger looks.
    let data_dir = settings.data_dir;
    let shadow = Arc::new(server::shadow::Shadow::open(
        Some(data_dir.clone()),
        registry.load().features.clone(),
        registry.models_folder(),
        &registry.config().limits,
    ));
    // A second process refused the data folder learns it is this server's, and where it listens.
    let contact = ContactConfig {
        holder: Some(format!(
            "a server whose public listener is http://{}",
            reserved.public()
        )),
        ..settings.contact
    };
    let contacts = Arc::new(
        server::open_contacts_with(&registry, &contact, Clock::system(), Some(&shadow))
            .with_context(|| format!("opening the event log in {}", data_dir.display()))?,
    );
    // The data folder is this process's now: the model history goes on in it.
    let history = data_dir.join("model-history.jsonl");
    if let Err(e) = registry.audit.persist_to(history.clone()) {
        tracing::warn!(path = %history.display(), error = %e, "the model history file cannot be kept; history stays in memory");
    }
    let mut funnel_saver = funnel_store::Saver::start(
        data_dir.clone(),
        Arc::downgrade(&contacts),
        funnel_store::INTERVAL,
    )
    .context("starting the decision-count saver")?;
    let decision_log = match settings.decision_log {
        Some(config) => {
            let dir = config.dir.clone();
            Some(
                DecisionLog::start(config)
                    .with_context(|| format!("opening the decision log in {}", dir.display()))?,
            )
        }
        None => None,
    };
    let mut shadow_saver = server::shadow::saved::Saver::start(
        Arc::downgrade(&shadow),
        server::shadow::saved::INTERVAL,
    )
    .context("starting the shadow figures' saver")?;
    let mut state = AppState::builder(registry.clone(), settings.server)
        .builtin(settings.builtin)
        .contacts(contacts.clone())
        .shadow(shadow.clone());
    if let Some(log) = &decision_log {
        state = state.decision_log(log.clone());
    }
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = settings.workers {
        rt.worker_threads(n.get());
    }
    let rt = rt.enable_all().build().context("starting the runtime")?;
    let fleet_contacts = contacts.clone();
    let served = rt.block_on(async move {
        // Replication runs on a thread of its own (see `fleet::start`).
        if let Some(fc) = settings.fleet {
            state = state.fleet(fleet::start(fc, fleet_contacts, registry.clone())?);
        }
        run_until_signal(Arc::new(state.build()), registry, reserved).await
    });
    contacts.close();
    funnel_saver.stop();
    shadow_saver.stop();
    if let Some(log) = &decision_log {
        log.close();
    }
    served
}

/// Watches the models folder; without a watcher, changes come through SIGHUP and the admin API.
fn watch(registry: &Arc<Registry>) -> Option<nextbest::watch::ModelWatcher> {
    match nextbest::watch::watch_models(registry.clone()) {
        Ok(w) => {
            match w.waiting_in() {
                Some(parent) => tracing::warn!(
                    path = %w.dir.display(),
                    watching = %parent.display(),
                    "the models folder does not exist; waiting for it to appear"
                ),
                None => tracing::info!(path = %w.dir.display(), "watching the models folder"),
            }
            Some(w)
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the models folder; reload with SIGHUP or the admin API");
            None
        }
    }
}

/// A listener's address refused, named by its flag.
fn bind_refusal(e: server::BindError) -> anyhow::Error {
    let flag = match e.listener {
        server::Listener::Public => "--listen",
        server::Listener::Admin => "--admin-listen",
    };
    anyhow::anyhow!("{flag} {}: {}", e.addr, e.source)
}

/// Serves on the reserved addresses until SIGTERM or SIGINT, then drains.
async fn run_until_signal(
    state: Arc<AppState>,
    registry: Arc<Registry>,
    reserved: server::Reserved,
) -> anyhow::Result<()> {
    let fleet = state.fleet.clone();
    let running = server::start_reserved(state, reserved).map_err(bind_refusal)?;
    let mut signals = Signals::register();
    tracing::info!(public = %running.public_addr, admin = %running.admin_addr, "serving");
    tokio::spawn(load_snapshot_when_published(registry.clone()));
    tokio::spawn(reload_on_hangup(registry, signals.hup.take()));
    // One plain line on stdout, for scripts and tests that bind port 0. A reader that went
    // away (`| head -1`) is no reason to stop serving.
    {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "nextbest listening public={} admin={}",
            running.public_addr, running.admin_addr
        )
        .and_then(|()| out.flush());
    }
    tokio::select! {
        _ = next(&mut signals.int) => tracing::info!("interrupted; stopping"),
        _ = next(&mut signals.term) => tracing::info!("terminated; stopping"),
    }
    // A second signal cuts the drain short (an operator at a terminal, a supervisor in a
    // hurry); what was acknowledged is durable already, and the saves below still run.
    let drained = tokio::select! {
        left = running.shutdown() => Some(left),
        () = async {
            tokio::select! {
                _ = next(&mut signals.int) => {}
                _ = next(&mut signals.term) => {}
            }
        } => None,
    };
    match drained {
        Some(0) => {}
        Some(left) => tracing::warn!(
            connections = left,
            "grace period over; closing what is left"
        ),
        None => tracing::warn!("a second signal; stopping without waiting for the drain"),
    }
    // What the fleet has not got yet waits in this data folder until the replica starts again
    // on it: a scale-down that keeps the volume should know.
    if let Some(f) = &fleet {
        f.leave().await;
    }
    let unshipped = fleet.map_or(0, |f| f.stats().backlog_bytes);
    if unshipped > 0 {
        tracing::warn!(
            backlog_bytes = unshipped,
            "events not yet shipped to the fleet stay in this replica's log; they are shipped when a replica starts on this data folder again"
        );
    }
    tracing::info!("stopped");
    Ok(())
}

/// The signals the server acts on, registered before it says it listens: one sent the moment
/// it does reaches these handlers, not the default action, which ends the process.
struct Signals {
    hup: Option<Signal>,
    int: Option<Signal>,
    term: Option<Signal>,
}

impl Signals {
    fn register() -> Self {
        let on = |kind| match signal(kind) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot handle a signal; its default action stays");
                None
            }
        };
        Signals {
            hup: on(SignalKind::hangup()),
            int: on(SignalKind::interrupt()),
            term: on(SignalKind::terminate()),
        }
    }
}

/// Waits for the signal (forever when it could not be registered); false once it can no
/// longer come (the runtime is shutting down).
async fn next(s: &mut Option<Signal>) -> bool {
    match s {
        Some(s) => s.recv().await.is_some(),
        None => std::future::pending().await,
    }
}

/// SIGHUP reloads the feature snapshot and the model from disk.
async fn reload_on_hangup(registry: Arc<Registry>, mut hup: Option<Signal>) {
    while next(&mut hup).await {
        tracing::info!("SIGHUP: reloading from disk");
        let r = registry.clone();
        // The registry logs and counts the outcome.
        if let Err(e) = tokio::task::spawn_blocking(move || r.reload_from_disk()).await {
            tracing::error!(error = %e, "SIGHUP reload task failed");
        }
    }
}

/// While no snapshot is loaded (the node's publisher has not written it yet, or it could not
/// be read), loads the configured one once it appears or changes, and with it the model that
/// waited for it: checked every second, each version of the file tried once (a refusal is
/// logged once, not every second), and only once it has stopped changing for a check (an
/// export written in place is not read half-written).
async fn load_snapshot_when_published(registry: Arc<Registry>) {
    let Some(path) = registry.config().features_path.clone() else {
        return;
    };
    let version = |p: &Path| {
        let meta = std::fs::metadata(p).ok()?;
        Some((meta.modified().ok(), meta.len()))
    };
    // The start tried the file as it stands (a refusal logged then): tried again once it
    // changes.
    let start = version(&path);
    let (mut tried, mut seen) = (start, start);
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    while registry.load().features.is_none() {
        tick.tick().await;
        let (r, p) = (registry.clone(), path.clone());
        let (before, last_tried) = (seen, tried);
        let Ok((version, attempted)) = tokio::task::spawn_blocking(move || {
            let version = version(&p);
            let settled = version.is_some() && version == before;
            if !settled || version == last_tried || r.load().features.is_some() {
                return (version, false);
            }
            // The registry logs and counts the outcome.
            let _ = r.reload_features(None);
            (version, true)
        })
        .await
        else {
            return;
        };
        seen = version;
        if attempted {
            tried = version;
        }
    }
}
