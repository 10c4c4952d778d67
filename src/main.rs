//! The `nextbest` binary: command-line parsing and wiring; the library does the work.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::{Args, Parser, Subcommand, ValueEnum};

use nextbest::contact::funnel::store as funnel_store;
use nextbest::contact::{Clock, ContactConfig, FsyncPolicy, StateConfig};
use nextbest::decision_log::{replay as decision_replay, DecisionLog, DecisionLogConfig};
use nextbest::features::{self, FeatureStore};
use nextbest::fleet::{self, FleetConfig};
use nextbest::model::{self, AnySchema, Limits};
use nextbest::registry::{Registry, RegistryConfig};
use nextbest::server::{self, AdminToken, AppState, ServerConfig};

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
    #[command(subcommand)]
    Campaign(nextbest::campaign::cli::CampaignCmd),
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
    },
}

#[derive(Subcommand)]
enum ModelCmd {
    /// Validate a model file or folder and print every fault.
    Check {
        /// The model file, or a folder holding model.json.
        file: PathBuf,
        /// Check feature names against this snapshot (CSV or .nbf).
        #[arg(long, env = "NEXTBEST_FEATURES")]
        features: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum FeaturesCmd {
    /// Convert a CSV snapshot into the compact binary form (.nbf).
    Compile {
        /// The CSV snapshot.
        input: PathBuf,
        /// The .nbf file to write.
        output: PathBuf,
    },
}

#[derive(Args, Clone)]
struct ServeArgs {
    /// Public listener (channels call /v1/decide here).
    #[arg(long, env = "NEXTBEST_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Admin listener (/admin/*, /metrics).
    #[arg(long, env = "NEXTBEST_ADMIN_LISTEN", default_value = "127.0.0.1:9091")]
    admin_listen: SocketAddr,
    /// The model: a folder holding model.json (and scorer files), or a model file.
    #[arg(long, env = "NEXTBEST_MODELS", default_value = "models")]
    models: PathBuf,
    /// The feature snapshot: CSV, or the binary form (.nbf).
    #[arg(long, env = "NEXTBEST_FEATURES", default_value = "models/features.csv")]
    features: PathBuf,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "NEXTBEST_MAX_BODY_BYTES", default_value_t = 64 * 1024)]
    max_body_bytes: usize,
    /// Time a client has to send its request headers, in milliseconds; hyper also closes a
    /// keep-alive connection idle this long (keep client pools' idle timeout below it).
    #[arg(long, env = "NEXTBEST_HEADER_TIMEOUT_MS", default_value_t = 10_000)]
    header_timeout_ms: u64,
    /// Time a client has to send a request body, in milliseconds (408 after).
    #[arg(long, env = "NEXTBEST_BODY_TIMEOUT_MS", default_value_t = 2_000)]
    body_timeout_ms: u64,
    /// Budget of one decision in microseconds, from request read to answer; past it the answer
    /// is fallback content with reason `deadline`. Clients may ask for less with X-Deadline-Us.
    #[arg(long, env = "NEXTBEST_DEADLINE_US", default_value_t = 5_000)]
    deadline_us: u64,
    /// Decide requests in flight before new ones get `overload` fallback at once.
    #[arg(long, env = "NEXTBEST_MAX_INFLIGHT", default_value_t = 128)]
    max_inflight: usize,
    /// Open connections per listener; at the bound a new one replaces the one idle longest.
    #[arg(long, env = "NEXTBEST_MAX_CONNECTIONS", default_value_t = 4096)]
    max_connections: usize,
    /// On SIGTERM/SIGINT: milliseconds /readyz answers 503 while still serving.
    #[arg(long, env = "NEXTBEST_DRAIN_DELAY_MS", default_value_t = 1_000)]
    drain_delay_ms: u64,
    /// On SIGTERM/SIGINT: milliseconds in-flight requests get to finish.
    #[arg(long, env = "NEXTBEST_GRACE_MS", default_value_t = 10_000)]
    grace_ms: u64,
    /// Built-in fallback content (JSON, the shape of a model's `fallback`), served when no
    /// model content applies or no model is loaded.
    #[arg(long, env = "NEXTBEST_FALLBACK_FILE")]
    fallback_file: Option<PathBuf>,
    /// Bearer token the admin listener requires (unset: none). Prefer --admin-token-file: a
    /// token on the command line shows in `ps`.
    #[arg(
        long,
        env = "NEXTBEST_ADMIN_TOKEN",
        hide_env_values = true,
        default_value = "",
        conflicts_with = "admin_token_file"
    )]
    admin_token: String,
    /// File holding the admin bearer token (surrounding white space ignored), e.g. a mounted
    /// Kubernetes Secret: the token stays out of `ps` and the environment.
    #[arg(long, env = "NEXTBEST_ADMIN_TOKEN_FILE")]
    admin_token_file: Option<PathBuf>,
    /// Runtime worker threads (0: one per core).
    #[arg(long, env = "NEXTBEST_WORKERS", default_value_t = 0)]
    workers: usize,
    /// Model versions kept compiled for instant rollback.
    #[arg(long, env = "NEXTBEST_HISTORY", default_value_t = 5)]
    history: usize,
    /// Do not watch the models folder for changes (reload with SIGHUP or the admin API).
    #[arg(long, env = "NEXTBEST_NO_WATCH")]
    no_watch: bool,
    /// Folder of the durable event log, replayed on start (created if missing; one server each).
    #[arg(long, env = "NEXTBEST_DATA_DIR", default_value = "data")]
    data_dir: PathBuf,
    /// When an accepted event is on disk: `always` syncs each group commit before the 202;
    /// `interval` answers after the write and syncs within --fsync-interval-ms (an OS crash or
    /// power loss can lose the events of that interval; a crash of nextbest alone loses none).
    #[arg(long, env = "NEXTBEST_FSYNC", value_enum, default_value = "always")]
    fsync: FsyncMode,
    /// Longest time between syncs under `--fsync interval`, in milliseconds.
    #[arg(long, env = "NEXTBEST_FSYNC_INTERVAL_MS", default_value_t = 200)]
    fsync_interval_ms: u64,
    /// An event log segment rolls over at this size, in MiB.
    #[arg(long, env = "NEXTBEST_LOG_SEGMENT_MB", default_value_t = 64)]
    log_segment_mb: u64,
    /// Share accepted events with the other replicas through Redis Streams: `redis://` or
    /// `rediss://` URL, password in the userinfo (unset: this replica works alone).
    #[arg(long, env = "NEXTBEST_REDIS", hide_env_values = true)]
    redis: Option<String>,
    /// Stream partitions (keys with their own hash tag; every replica must use the same number).
    #[arg(long, env = "NEXTBEST_REDIS_PARTITIONS", default_value_t = 8)]
    redis_partitions: u16,
    /// Longest wait at start for the fleet's recent events before /readyz says ready anyway.
    #[arg(long, env = "NEXTBEST_REDIS_CATCHUP_MS", default_value_t = 10_000)]
    redis_catchup_ms: u64,
    /// Folder of the decision log: a sample of decisions with what it takes to make them
    /// again, for `nextbest replay` (unset: off).
    #[arg(long, env = "NEXTBEST_DECISION_LOG")]
    decision_log: Option<PathBuf>,
    /// Share of decisions the decision log keeps, 0 to 1.
    #[arg(long, env = "NEXTBEST_DECISION_LOG_SAMPLE", default_value_t = 0.01)]
    decision_log_sample: f64,
    /// A decision log file rolls over at this size, in MiB.
    #[arg(long, env = "NEXTBEST_DECISION_LOG_FILE_MB", default_value_t = 64)]
    decision_log_file_mb: u64,
    /// Decision log files kept; the oldest is deleted first.
    #[arg(long, env = "NEXTBEST_DECISION_LOG_FILES", default_value_t = 16)]
    decision_log_files: usize,
    /// Memory budget of the contact state, in MiB: three quarters for customer histories (the
    /// least valuable customers go first), a quarter for remembered event ids. Replay at start
    /// stays within it plus one log segment and a 2 MiB buffer.
    #[arg(long, env = "NEXTBEST_CONTACT_MEMORY_MB", default_value_t = 512)]
    contact_memory_mb: u64,
}

/// `--fsync` values.
#[derive(Clone, Copy, ValueEnum)]
enum FsyncMode {
    /// fdatasync per group commit, before the 202.
    Always,
    /// 202 after the write; fdatasync at most --fsync-interval-ms later.
    Interval,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    nextbest::logging::init(cli.log_format)?;
    match cli.command {
        None => serve(cli.serve),
        Some(Command::Serve(args)) => serve(*args),
        Some(Command::Model(ModelCmd::Check { file, features })) => {
            check_model(&file, features.as_deref())
        }
        Some(Command::Features(FeaturesCmd::Compile { input, output })) => {
            compile_features(&input, &output)
        }
        Some(Command::Campaign(cmd)) => Ok(nextbest::campaign::cli::main(cmd)?),
        Some(Command::Replay {
            log,
            candidate,
            json,
        }) => replay(&log, &candidate, json),
    }
}

fn load_features(path: &Path) -> anyhow::Result<FeatureStore> {
    let t = Instant::now();
    let store = FeatureStore::load(path)?;
    tracing::info!(
        path = %path.display(),
        customers = store.len(),
        features = store.columns().len(),
        bytes = store.bytes_held(),
        duration_ms = t.elapsed().as_millis() as u64,
        "feature snapshot loaded"
    );
    Ok(store)
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let registry = Arc::new(Registry::new(RegistryConfig {
        models_path: Some(args.models.clone()),
        features_path: Some(args.features.clone()),
        history_len: args.history,
        limits: Limits::default(),
    }));
    if registry.reload_from_disk().is_err() {
        // Serve anyway (the registry logged why): every decision gets the built-in fallback
        // (reason `no_model`) and /readyz says 503 until a model and snapshot load (admin API,
        // folder, SIGHUP).
        tracing::error!(
            path = %args.models.display(),
            features = %args.features.display(),
            "serving without a model: decisions get built-in fallback content"
        );
    }
    let _watcher = if args.no_watch {
        None
    } else {
        match nextbest::watch::watch_models(registry.clone()) {
            Ok(w) => {
                tracing::info!(path = %w.dir.display(), "watching the models folder");
                Some(w)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch the models folder; reload with SIGHUP or the admin API");
                None
            }
        }
    };
    // Replay the event log before serving, so policies hold from the start; history reaches
    // back as far as champion or challenger looks.
    let contact_config = ContactConfig {
        data_dir: Some(args.data_dir.clone()),
        fsync: match args.fsync {
            FsyncMode::Always => FsyncPolicy::Always,
            FsyncMode::Interval => {
                FsyncPolicy::Interval(Duration::from_millis(args.fsync_interval_ms.max(1)))
            }
        },
        segment_bytes: args.log_segment_mb.max(1) << 20,
        state: StateConfig::within(args.contact_memory_mb.max(1) << 20),
        ..ContactConfig::default()
    };
    let contacts = Arc::new(
        server::open_contacts(&registry, &contact_config, Clock::system())
            .with_context(|| format!("opening the event log in {}", args.data_dir.display()))?,
    );
    let mut funnel_saver = funnel_store::Saver::start(
        args.data_dir.clone(),
        Arc::downgrade(&contacts),
        funnel_store::INTERVAL,
    )
    .context("starting the decision-count saver")?;

    let builtin = match &args.fallback_file {
        Some(path) => model::load_builtin_fallback(path).map_err(|e| {
            for f in e.faults() {
                tracing::error!(fault = %f, "fallback file refused");
            }
            anyhow::anyhow!("fallback file {} refused: {e}", path.display())
        })?,
        None => Default::default(),
    };
    let config = ServerConfig {
        listen: args.listen,
        admin_listen: args.admin_listen,
        max_body_bytes: args.max_body_bytes,
        header_timeout: Duration::from_millis(args.header_timeout_ms),
        body_timeout: Duration::from_millis(args.body_timeout_ms),
        deadline: Duration::from_micros(args.deadline_us),
        max_inflight: args.max_inflight,
        max_connections: args.max_connections,
        drain_delay: Duration::from_millis(args.drain_delay_ms),
        grace: Duration::from_millis(args.grace_ms),
        admin_token: admin_token(&args)?,
    };
    let decision_log = match &args.decision_log {
        Some(dir) => {
            if !(0.0..=1.0).contains(&args.decision_log_sample) {
                bail!(
                    "--decision-log-sample {} is not between 0 and 1",
                    args.decision_log_sample
                );
            }
            let log = DecisionLog::start(DecisionLogConfig {
                dir: dir.clone(),
                sample: args.decision_log_sample,
                file_bytes: args.decision_log_file_mb.max(1) << 20,
                max_files: args.decision_log_files.max(1),
            })
            .with_context(|| format!("opening the decision log in {}", dir.display()))?;
            Some(log)
        }
        None => None,
    };
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if args.workers > 0 {
        rt.worker_threads(args.workers);
    }
    let rt = rt.enable_all().build().context("starting the runtime")?;
    let fleet_config = args.redis.clone().map(|url| FleetConfig {
        url,
        partitions: args.redis_partitions.max(1),
        catchup_wait: Duration::from_millis(args.redis_catchup_ms),
        prefix: "nextbest:events".into(),
    });
    rt.block_on(async move {
        let mut state = AppState::builder(registry.clone(), config)
            .builtin(builtin)
            .contacts(contacts.clone());
        if let Some(fc) = fleet_config {
            state = state.fleet(fleet::start(fc, contacts.clone())?);
        }
        if let Some(log) = &decision_log {
            state = state.decision_log(log.clone());
        }
        let state = Arc::new(state.build());
        let running = server::start(state)
            .await
            .context("binding the listeners")?;
        tracing::info!(public = %running.public_addr, admin = %running.admin_addr, "serving");
        tokio::spawn(reload_on_hangup(registry));
        // One plain line on stdout, for scripts and tests that bind port 0.
        println!(
            "nextbest listening public={} admin={}",
            running.public_addr, running.admin_addr
        );
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("interrupted; stopping"),
            _ = terminate() => tracing::info!("terminated; stopping"),
        }
        let left = running.shutdown().await;
        if left > 0 {
            tracing::warn!(
                connections = left,
                "grace period over; closing what is left"
            );
        }
        tracing::info!("stopped");
        contacts.close();
        funnel_saver.stop();
        if let Some(log) = &decision_log {
            log.close();
        }
        anyhow::Ok(())
    })
}

/// The admin token, from its file when one is named.
fn admin_token(args: &ServeArgs) -> anyhow::Result<Option<AdminToken>> {
    let Some(path) = &args.admin_token_file else {
        return Ok(AdminToken::new(args.admin_token.clone()));
    };
    let token = std::fs::read_to_string(path)
        .with_context(|| format!("reading the admin token file {}", path.display()))?;
    match AdminToken::new(token.trim().to_owned()) {
        Some(t) => Ok(Some(t)),
        // An empty file must not quietly open the admin listener to everyone.
        None => bail!("the admin token file {} is empty", path.display()),
    }
}

/// SIGHUP reloads the feature snapshot and the model from disk.
#[cfg(unix)]
async fn reload_on_hangup(registry: Arc<Registry>) {
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        return;
    };
    while hup.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading from disk");
        let r = registry.clone();
        // The registry logs and counts the outcome.
        if let Err(e) = tokio::task::spawn_blocking(move || r.reload_from_disk()).await {
            tracing::error!(error = %e, "SIGHUP reload task failed");
        }
    }
}

#[cfg(not(unix))]
async fn reload_on_hangup(_: Arc<Registry>) {}

#[cfg(unix)]
async fn terminate() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}

#[cfg(not(unix))]
async fn terminate() {
    std::future::pending().await
}

fn check_model(file: &Path, features: Option<&Path>) -> anyhow::Result<()> {
    let store = features.map(load_features).transpose()?;
    let limits = Limits::default();
    let result = match &store {
        Some(s) => model::load(file, s, &limits),
        None => model::load(file, &AnySchema::default(), &limits),
    };
    match result {
        Ok(m) => {
            println!(
                "ok: {} version {}: {} offers, {} channels, {} features used{}",
                m.compiled.name,
                m.compiled.version,
                m.compiled.offers.len(),
                m.compiled.channels.len(),
                m.compiled.features_used.len(),
                if store.is_some() {
                    ""
                } else {
                    " (not checked against a snapshot)"
                }
            );
            Ok(())
        }
        Err(e) => {
            let faults = e.faults();
            for f in &faults {
                println!("{}: {f}", model::model_file(file).display());
            }
            bail!("{} fault(s) in {}", faults.len(), file.display())
        }
    }
}

fn compile_features(input: &Path, output: &Path) -> anyhow::Result<()> {
    let store = load_features(input)?;
    let t = Instant::now();
    features::write_nbf(&store, output)?;
    println!(
        "wrote {} ({} customers x {} features) in {} ms",
        output.display(),
        store.len(),
        store.columns().len(),
        t.elapsed().as_millis()
    );
    Ok(())
}

/// `nextbest replay`: prints the report; a log the original models do not reproduce exactly is
/// an error (non-zero exit) after the report.
fn replay(log: &Path, candidate: &Path, json: bool) -> anyhow::Result<()> {
    let report = decision_replay::run(log, candidate)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_text());
    }
    if !report.reproduces() {
        bail!(
            "{} of {} logged decisions did not reproduce with the model that made them",
            report.decisions - report.reproduced,
            report.decisions
        );
    }
    Ok(())
}
