//! The serve flags, checked once: the raw command line ([`ServeArgs`], what clap parses, every
//! flag also an environment variable) becomes [`Settings`] (durations, byte sizes, the fsync
//! policy, the admin token read from its file, the fallback content, the decision log and the
//! fleet configuration) in one step, [`ServeArgs::check`]. A value out of its range is an error
//! that names the flag and the value (`--log-segment-mb 0: must be at least 1`); nothing is
//! clamped, because a clamp turns an operator's typo into a setting nobody asked for.
//!
//! It lives in the library, beside the campaign's flags, so the checks are unit-tested without
//! a process and the campaign's `--redis` shares them. It owns the serve flags, their defaults
//! and their limits. It reads only the files the flags name (the token, the fallback content),
//! and must not start anything: no listener, thread, event log or model load. `main.rs` wires
//! what it returns.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::{Args, ValueEnum};

use crate::contact::attribution::DecisionIds;
use crate::contact::{ContactConfig, FsyncPolicy, StateConfig};
use crate::decision_log::DecisionLogConfig;
use crate::engine::BuiltinFallback;
use crate::features::{NullWords, SnapshotStore};
use crate::fleet::FleetConfig;
use crate::model::{self, Limits, ModelError};
use crate::registry::RegistryConfig;
use crate::secrets::AdminToken;
use crate::secrets::SecretUrl;
use crate::server::ServerConfig;

pub mod environment;

/// `--features-null`: the words a CSV snapshot writes for a missing value, shared by every
/// command that reads one (serve, `model check`, `features compile` and `show`, campaigns).
#[derive(Args, Clone, Debug, Default)]
pub struct NullArgs {
    /// Words a CSV snapshot writes for a missing value besides an empty field, comma-separated
    /// or repeated (`NA`, `NULL`, `\N`): a field that is exactly one of them is missing.
    #[arg(
        long = "features-null",
        env = "NEXTBEST_FEATURES_NULL",
        value_delimiter = ',',
        value_name = "WORD"
    )]
    pub words: Vec<String>,
}

impl NullArgs {
    /// The words, checked (not a number, at most 16); an empty one is none (an empty
    /// `NEXTBEST_FEATURES_NULL` in a template means no word).
    pub fn check(&self) -> Result<NullWords, SettingsError> {
        let words: Vec<&str> = self
            .words
            .iter()
            .map(String::as_str)
            .filter(|w| !w.is_empty())
            .collect();
        NullWords::new(&words).map_err(|reason| invalid("--features-null", words.join(","), reason))
    }
}

/// The serve flags as given: each also an environment variable.
#[derive(Args, Clone)]
pub struct ServeArgs {
    /// Public listener (channels call /v1/decide here): an address or host name, and a port.
    #[arg(long, env = "NEXTBEST_LISTEN", default_value = "127.0.0.1:8080", value_parser = listen_addr)]
    pub listen: SocketAddr,
    /// Admin listener (/admin/*, /metrics): an address or host name, and a port.
    #[arg(long, env = "NEXTBEST_ADMIN_LISTEN", default_value = "127.0.0.1:9091", value_parser = listen_addr)]
    pub admin_listen: SocketAddr,
    /// The model: a folder holding model.json (and scorer files), or a model file.
    #[arg(long, env = "NEXTBEST_MODELS", default_value = "models")]
    pub models: PathBuf,
    /// The feature snapshot: CSV, Parquet (a file, or a folder of parts), or the binary form
    /// (.nbf).
    #[arg(long, env = "NEXTBEST_FEATURES", default_value = "models/features.csv")]
    pub features: PathBuf,
    /// Largest request body accepted, in bytes (1 to 64 MiB).
    #[arg(long, env = "NEXTBEST_MAX_BODY_BYTES", default_value_t = 64 * 1024, allow_negative_numbers = true)]
    pub max_body_bytes: usize,
    /// Time a client has to send its request headers, in milliseconds (1 to 600,000); hyper
    /// also closes a keep-alive connection idle this long (keep client pools' idle timeout
    /// below it).
    #[arg(
        long,
        env = "NEXTBEST_HEADER_TIMEOUT_MS",
        default_value_t = 10_000,
        allow_negative_numbers = true
    )]
    pub header_timeout_ms: u64,
    /// Time a client has to send a request body, in milliseconds (1 to 600,000; 408 after).
    #[arg(
        long,
        env = "NEXTBEST_BODY_TIMEOUT_MS",
        default_value_t = 2_000,
        allow_negative_numbers = true
    )]
    pub body_timeout_ms: u64,
    /// Budget of one decision in microseconds, from request read to answer; past it the answer
    /// is fallback content with reason `deadline` (1 to 60,000,000). Clients may ask for less
    /// with X-Deadline-Us.
    #[arg(
        long,
        env = "NEXTBEST_DEADLINE_US",
        default_value_t = 5_000,
        allow_negative_numbers = true
    )]
    pub deadline_us: u64,
    /// Decide requests in flight before new ones get `overload` fallback at once.
    #[arg(
        long,
        env = "NEXTBEST_MAX_INFLIGHT",
        default_value_t = 128,
        allow_negative_numbers = true
    )]
    pub max_inflight: usize,
    /// Open connections per listener; at the bound a new one replaces the one idle longest.
    #[arg(
        long,
        env = "NEXTBEST_MAX_CONNECTIONS",
        default_value_t = 4096,
        allow_negative_numbers = true
    )]
    pub max_connections: usize,
    /// On SIGTERM/SIGINT: milliseconds /readyz answers 503 while still serving (0 to 600,000).
    #[arg(
        long,
        env = "NEXTBEST_DRAIN_DELAY_MS",
        default_value_t = 1_000,
        allow_negative_numbers = true
    )]
    pub drain_delay_ms: u64,
    /// On SIGTERM/SIGINT: milliseconds in-flight requests get to finish (0 to 600,000).
    #[arg(
        long,
        env = "NEXTBEST_GRACE_MS",
        default_value_t = 10_000,
        allow_negative_numbers = true
    )]
    pub grace_ms: u64,
    /// Built-in fallback content (JSON, the shape of a model's `fallback`), served when no
    /// model content applies or no model is loaded.
    #[arg(long, env = "NEXTBEST_FALLBACK_FILE")]
    pub fallback_file: Option<PathBuf>,
    /// Bearer token the admin listener requires (unset: none). Prefer --admin-token-file: a
    /// token on the command line shows in `ps`.
    #[arg(
        long,
        env = "NEXTBEST_ADMIN_TOKEN",
        hide_env_values = true,
        default_value = "",
        conflicts_with = "admin_token_file"
    )]
    pub admin_token: String,
    /// File holding the admin bearer token (surrounding white space ignored), e.g. a mounted
    /// Kubernetes Secret: the token stays out of `ps` and the environment.
    #[arg(long, env = "NEXTBEST_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// Serve the admin API on a non-loopback --admin-listen without a token (anyone who can
    /// reach it can swap models); without this flag such a start is refused.
    #[arg(long, env = "NEXTBEST_ADMIN_INSECURE", value_parser = BoolishValueParser::new())]
    pub admin_insecure: bool,
    /// Runtime worker threads (0: one per core; at most 1024).
    #[arg(
        long,
        env = "NEXTBEST_WORKERS",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    pub workers: usize,
    /// Model versions kept compiled for instant rollback, the active one included (2 to 1000).
    #[arg(
        long,
        env = "NEXTBEST_HISTORY",
        default_value_t = 5,
        allow_negative_numbers = true
    )]
    pub history: usize,
    /// Do not watch the models folder for changes (reload with SIGHUP or the admin API).
    #[arg(long, env = "NEXTBEST_NO_WATCH", value_parser = BoolishValueParser::new())]
    pub no_watch: bool,
    /// Folder of the durable event log, replayed on start (created if missing; one server each).
    #[arg(long, env = "NEXTBEST_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    /// Folder of mapped `.nbf` snapshots (default `<data-dir>/snapshots`): a `.nbf` is copied
    /// here once under its content's name and used in place from a read-only map. Give the
    /// replicas of a node one node-local folder so they share one copy of the snapshot.
    #[arg(long, env = "NEXTBEST_SNAPSHOT_STORE")]
    pub snapshot_store: Option<PathBuf>,
    /// Load `.nbf` snapshots into this process's memory instead of mapping them (one copy per
    /// replica, and two during a reload).
    #[arg(
        long,
        env = "NEXTBEST_FEATURES_IN_MEMORY",
        value_parser = BoolishValueParser::new(),
        conflicts_with = "snapshot_store"
    )]
    pub features_in_memory: bool,
    /// Words a CSV snapshot writes for a missing value (`--features-null`).
    #[command(flatten)]
    pub null: NullArgs,
    /// When an accepted event is on disk: `always` syncs each group commit before the 202;
    /// `interval` answers after the write and syncs within --fsync-interval-ms (an OS crash or
    /// power loss can lose the events of that interval; a crash of nextbest alone loses none).
    #[arg(long, env = "NEXTBEST_FSYNC", value_enum, default_value = "always")]
    pub fsync: FsyncMode,
    /// Longest time between syncs under `--fsync interval`, in milliseconds (1 to 60,000).
    #[arg(
        long,
        env = "NEXTBEST_FSYNC_INTERVAL_MS",
        default_value_t = 200,
        allow_negative_numbers = true
    )]
    pub fsync_interval_ms: u64,
    /// An event log segment rolls over at this size, in MiB (1 to 1024; replay at start holds
    /// one segment in memory).
    #[arg(
        long,
        env = "NEXTBEST_LOG_SEGMENT_MB",
        default_value_t = 64,
        allow_negative_numbers = true
    )]
    pub log_segment_mb: u64,
    /// Share accepted events with the other replicas through Redis Streams: `redis://` or
    /// `rediss://` URL, password in the userinfo (unset: this replica works alone).
    #[arg(long, env = "NEXTBEST_REDIS", hide_env_values = true)]
    pub redis: Option<SecretUrl>,
    /// File holding the Redis password (surrounding white space ignored), e.g. a mounted
    /// Kubernetes Secret: put into --redis's URL, it stays out of `ps` and the environment;
    /// read again before each new connection, so a rotated password needs no restart.
    #[arg(long, env = "NEXTBEST_REDIS_PASSWORD_FILE", requires = "redis")]
    pub redis_password_file: Option<PathBuf>,
    /// Stream partitions (keys with their own hash tag; every replica must use the same number;
    /// 1 to 1024).
    #[arg(
        long,
        env = "NEXTBEST_REDIS_PARTITIONS",
        default_value_t = 8,
        allow_negative_numbers = true
    )]
    pub redis_partitions: u16,
    /// With --ready-when-behind: longest wait at start for the fleet's recent events before
    /// /readyz says ready as behind. Without it, /readyz waits for them however long it takes.
    #[arg(
        long,
        env = "NEXTBEST_REDIS_CATCHUP_MS",
        default_value_t = 10_000,
        allow_negative_numbers = true
    )]
    pub redis_catchup_ms: u64,
    /// Say ready after --redis-catchup-ms even when the fleet's events are not all applied
    /// (Redis unreachable at start): serve with the history this replica has, as behind the
    /// fleet. Off: /readyz stays 503 until caught up, so no customer is shown an offer they
    /// dismissed or complained about on another replica.
    #[arg(long, env = "NEXTBEST_READY_WHEN_BEHIND", value_parser = BoolishValueParser::new())]
    pub ready_when_behind: bool,
    /// Folder of the decision log: a sample of decisions with what it takes to make them
    /// again, for `nextbest replay` (unset: off).
    #[arg(long, env = "NEXTBEST_DECISION_LOG")]
    pub decision_log: Option<PathBuf>,
    /// Share of decisions the decision log keeps, 0 to 1.
    #[arg(
        long,
        env = "NEXTBEST_DECISION_LOG_SAMPLE",
        default_value_t = DECISION_LOG_SAMPLE,
        allow_negative_numbers = true
    )]
    pub decision_log_sample: f64,
    /// A decision log file rolls over at this size, in MiB (1 to 1024).
    #[arg(
        long,
        env = "NEXTBEST_DECISION_LOG_FILE_MB",
        default_value_t = DECISION_LOG_FILE_MB,
        allow_negative_numbers = true
    )]
    pub decision_log_file_mb: u64,
    /// Decision log files kept; the oldest is deleted first.
    #[arg(
        long,
        env = "NEXTBEST_DECISION_LOG_FILES",
        default_value_t = DECISION_LOG_FILES,
        allow_negative_numbers = true
    )]
    pub decision_log_files: usize,
    /// Memory budget of the contact state, in MiB: three quarters for customer histories (the
    /// least valuable customers go first), a quarter for remembered event ids. Replay at start
    /// stays within it plus one log segment and a buffer of a sixteenth of the histories' share
    /// (2 to 64 MiB).
    #[arg(
        long,
        env = "NEXTBEST_CONTACT_MEMORY_MB",
        default_value_t = 512,
        allow_negative_numbers = true
    )]
    pub contact_memory_mb: u64,
    /// Keep the event log at least this many days (0 to 400), whatever the models' policy
    /// windows: a campaign's `frequency.window_days` longer than every policy window needs it,
    /// or its older contacts are deleted with their segments.
    #[arg(
        long,
        env = "NEXTBEST_KEEP_EVENTS_DAYS",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    pub keep_events_days: u64,
}

/// `--fsync` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FsyncMode {
    /// fdatasync per group commit, before the 202.
    Always,
    /// 202 after the write; fdatasync at most --fsync-interval-ms later.
    Interval,
}

/// Largest `--max-body-bytes`: a body is held whole in memory, up to `--max-inflight` of them.
pub const MAX_BODY_BYTES: usize = 64 << 20;
/// The fewest characters of an admin token on a listener beyond loopback without a warning.
pub const MIN_EXPOSED_TOKEN_CHARS: usize = 16;
/// Largest `--log-segment-mb` and `--decision-log-file-mb`.
pub const MAX_FILE_MB: u64 = 1024;
/// Most runtime worker threads (`--workers`).
pub const MAX_WORKERS: usize = 1024;
/// Largest `--contact-memory-mb` (1 TiB).
pub const MAX_MEMORY_MB: u64 = 1 << 20;
/// Largest `--redis-partitions`: each is a stream that every replica's one reader asks for.
pub const MAX_PARTITIONS: u16 = 1024;

/// Longest `--keep-events-days`: a campaign's frequency window (366 days) and a calendar week.
pub const MAX_KEEP_DAYS: u64 = 400;
/// The decision log's defaults: the share of decisions kept, a file's size in MiB, the files
/// kept (a flag set to another value without `--decision-log` is said to do nothing).
pub const DECISION_LOG_SAMPLE: f64 = 0.01;
/// See [`DECISION_LOG_SAMPLE`].
pub const DECISION_LOG_FILE_MB: u64 = 64;
/// See [`DECISION_LOG_SAMPLE`].
pub const DECISION_LOG_FILES: usize = 16;
/// Longest `--fsync-interval-ms`: past a minute the interval is no longer a durability
/// setting but syncing turned off.
pub const MAX_FSYNC_INTERVAL_MS: u64 = 60_000;
/// Longest `--header-timeout-ms`, `--body-timeout-ms`, `--drain-delay-ms` and `--grace-ms`:
/// ten minutes, longer than any Kubernetes grace period or client would wait.
pub const MAX_WAIT_MS: u64 = 600_000;
/// Longest `--deadline-us`: 60 s, as for `X-Deadline-Us`.
pub const MAX_DEADLINE_US: u64 = 60_000_000;
/// Most `--max-inflight` and `--max-connections`: past this, a typo rather than a plan.
pub const MAX_CONCURRENT: usize = 1 << 20;
/// Most `--history`: each version kept is a compiled model in memory.
pub const MAX_HISTORY: usize = 1000;

/// Everything `serve` needs, checked and built.
pub struct Settings {
    /// The listeners, guards and admin token.
    pub server: ServerConfig,
    /// Where models and the snapshot load from, and the rollback history.
    pub registry: RegistryConfig,
    /// Whether the models folder is watched.
    pub watch_models: bool,
    /// The event log and contact state (models set the history horizon as they are bound).
    pub contact: ContactConfig,
    /// The data folder (event log, funnel tables, replica id).
    pub data_dir: PathBuf,
    /// The last stage of the fallback chain (empty without `--fallback-file`).
    pub builtin: BuiltinFallback,
    /// The decision log, when `--decision-log` is set.
    pub decision_log: Option<DecisionLogConfig>,
    /// The fleet link, when `--redis` is set.
    pub fleet: Option<FleetConfig>,
    /// Runtime worker threads; `None` is one per core.
    pub workers: Option<NonZeroUsize>,
}

/// A flag whose value cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A value outside its range, or a combination that cannot work.
    #[error("{flag} {value}: {reason}")]
    Invalid {
        /// The flag, as typed on the command line.
        flag: &'static str,
        /// The value given.
        value: String,
        /// What is wrong, and what would be right.
        reason: String,
    },
    /// A file a flag names could not be read.
    #[error("{flag} {}: {source}", path.display())]
    File {
        /// The flag.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The fallback file is not valid fallback content.
    #[error("--fallback-file: {source}")]
    Fallback {
        /// The file.
        path: PathBuf,
        /// Its faults.
        #[source]
        source: ModelError,
    },
}

fn invalid(flag: &'static str, value: impl ToString, reason: impl Into<String>) -> SettingsError {
    SettingsError::Invalid {
        flag,
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// A listener's address: `IP:PORT`, or `HOST:PORT` resolved once at start (`localhost:8080`
/// binds the first address the name resolves to).
fn listen_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    use std::net::ToSocketAddrs as _;
    let resolved = text
        .to_socket_addrs()
        .map_err(|e| format!("give IP:PORT or HOST:PORT, e.g. 127.0.0.1:8080 ({e})"))?;
    let mut all: Vec<SocketAddr> = resolved.collect();
    // IPv4 first: `localhost` resolves to ::1 too, where a client's 127.0.0.1 would not reach.
    all.sort_by_key(|a| !a.is_ipv4());
    all.into_iter()
        .next()
        .ok_or_else(|| format!("`{text}` resolves to no address"))
}

/// `value`, if it is at least `min`.
pub(crate) fn at_least<T: PartialOrd + std::fmt::Display>(
    flag: &'static str,
    value: T,
    min: T,
) -> Result<T, SettingsError> {
    if value < min {
        return Err(invalid(flag, value, format!("must be at least {min}")));
    }
    Ok(value)
}

/// `value`, if it lies in `min..=max`.
pub(crate) fn within<T: PartialOrd + std::fmt::Display>(
    flag: &'static str,
    value: T,
    min: T,
    max: T,
) -> Result<T, SettingsError> {
    if value > max {
        return Err(invalid(flag, value, format!("must be at most {max}")));
    }
    at_least(flag, value, min)
}

/// A size given in MiB, in bytes, if it lies in `1..=max` MiB.
pub(crate) fn mib(flag: &'static str, value: u64, max: u64) -> Result<u64, SettingsError> {
    Ok(within(flag, value, 1, max)? << 20)
}

/// A duration given in milliseconds, if it lies in 1 ms ..= `max` ms.
fn positive_ms(flag: &'static str, value: u64, max: u64) -> Result<Duration, SettingsError> {
    within(flag, value, 1, max).map(Duration::from_millis)
}

impl ServeArgs {
    /// Checks every flag and builds what `serve` wires: the first bad value is the error.
    pub fn check(self) -> Result<Settings, SettingsError> {
        let server = self.server_config()?;
        let builtin = match &self.fallback_file {
            Some(path) => model::load_builtin_fallback(path).map_err(|source| {
                // The fatal line says the first fault; the others are listed before it.
                let faults = source.faults();
                if faults.len() > 1 {
                    for f in &faults {
                        tracing::error!(fault = %f, "fallback file refused");
                    }
                }
                SettingsError::Fallback {
                    path: path.clone(),
                    source,
                }
            })?,
            None => BuiltinFallback::default(),
        };
        if let Some(store) = self
            .snapshot_store
            .as_ref()
            .filter(|p| p.exists() && !p.is_dir())
        {
            return Err(invalid(
                "--snapshot-store",
                store.display(),
                "is a file: give the folder the node's snapshots are kept in (the folder \
                 `features publish --store` writes)",
            ));
        }
        let registry = RegistryConfig {
            models_path: Some(self.models.clone()),
            features_path: Some(self.features.clone()),
            history_len: within("--history", self.history, 2, MAX_HISTORY)?,
            limits: Limits::default(),
            snapshot_store: match (&self.snapshot_store, self.features_in_memory) {
                (_, true) => None,
                (Some(dir), false) => Some(SnapshotStore::new(dir)),
                (None, false) => Some(SnapshotStore::new(self.data_dir.join("snapshots"))),
            },
            null_words: self.null.check()?,
        };
        // Checked whatever --fsync says: a bad value is a bad value, even while unused.
        let interval = positive_ms(
            "--fsync-interval-ms",
            self.fsync_interval_ms,
            MAX_FSYNC_INTERVAL_MS,
        )?;
        let contact = ContactConfig {
            data_dir: Some(self.data_dir.clone()),
            fsync: match self.fsync {
                FsyncMode::Always => FsyncPolicy::Always,
                FsyncMode::Interval => FsyncPolicy::Interval(interval),
            },
            segment_bytes: mib("--log-segment-mb", self.log_segment_mb, MAX_FILE_MB)?,
            state: StateConfig {
                keep: Duration::from_secs(
                    within(
                        "--keep-events-days",
                        self.keep_events_days,
                        0,
                        MAX_KEEP_DAYS,
                    )? * 86_400,
                ),
                ..StateConfig::within(mib(
                    "--contact-memory-mb",
                    self.contact_memory_mb,
                    MAX_MEMORY_MB,
                )?)
            },
            ..ContactConfig::default()
        };
        let decision_log = self.decision_log_config()?;
        // The admin token signs the fleet's admin changes (every replica has the same one).
        let fleet = self.fleet_config()?.map(|f| FleetConfig {
            signing: server.admin_token.clone(),
            ..f
        });
        Ok(Settings {
            server,
            registry,
            watch_models: !self.no_watch,
            contact,
            data_dir: self.data_dir,
            builtin,
            decision_log,
            fleet,
            // Each worker is a thread with its own stack: beyond this, a typo, not a plan.
            workers: NonZeroUsize::new(within("--workers", self.workers, 0, MAX_WORKERS)?),
        })
    }

    fn server_config(&self) -> Result<ServerConfig, SettingsError> {
        if self.admin_listen == self.listen && self.listen.port() != 0 {
            return Err(invalid(
                "--admin-listen",
                self.admin_listen,
                "the same address as --listen; give the admin listener its own",
            ));
        }
        let admin_token = self.admin_token()?;
        let exposed = !self.admin_listen.ip().to_canonical().is_loopback();
        if let Some(short) = admin_token
            .as_ref()
            .map(AdminToken::char_count)
            .filter(|&n| exposed && n < MIN_EXPOSED_TOKEN_CHARS)
        {
            // Guessed at thousands of tries a second over the network; a warning, since the
            // operator may rotate it later.
            tracing::warn!(
                characters = short,
                "the admin token of a listener beyond loopback is short: use at least \
                 {MIN_EXPOSED_TOKEN_CHARS} random characters (e.g. `openssl rand -hex 32`)"
            );
        }
        if admin_token.is_none() && exposed && !self.admin_insecure {
            return Err(invalid(
                "--admin-listen",
                self.admin_listen,
                "not a loopback address, and no admin token is set: anyone who reaches it \
                 could swap models; set a token with --admin-token-file PATH \
                 (NEXTBEST_ADMIN_TOKEN_FILE), or pass --admin-insecure to allow it without one",
            ));
        }
        Ok(ServerConfig {
            listen: self.listen,
            admin_listen: self.admin_listen,
            max_body_bytes: within("--max-body-bytes", self.max_body_bytes, 1, MAX_BODY_BYTES)?,
            header_timeout: positive_ms(
                "--header-timeout-ms",
                self.header_timeout_ms,
                MAX_WAIT_MS,
            )?,
            body_timeout: positive_ms("--body-timeout-ms", self.body_timeout_ms, MAX_WAIT_MS)?,
            deadline: Duration::from_micros(within(
                "--deadline-us",
                self.deadline_us,
                1,
                MAX_DEADLINE_US,
            )?),
            max_inflight: within("--max-inflight", self.max_inflight, 1, MAX_CONCURRENT)?,
            max_connections: within("--max-connections", self.max_connections, 1, MAX_CONCURRENT)?,
            drain_delay: Duration::from_millis(within(
                "--drain-delay-ms",
                self.drain_delay_ms,
                0,
                MAX_WAIT_MS,
            )?),
            grace: Duration::from_millis(within("--grace-ms", self.grace_ms, 0, MAX_WAIT_MS)?),
            admin_token,
            decision_ids: DecisionIds::default(),
        })
    }

    /// The admin token, from its file when one is named; an empty or unreadable file is an
    /// error, never an open admin listener.
    fn admin_token(&self) -> Result<Option<AdminToken>, SettingsError> {
        let Some(path) = &self.admin_token_file else {
            let token = &self.admin_token;
            if token.trim() != token {
                // An Authorization header drops white space around its value: such a token
                // (or one of spaces alone) could never be presented.
                return Err(invalid(
                    "--admin-token",
                    "(hidden)",
                    "has white space around it, which no Authorization header can carry: \
                     give the token alone",
                ));
            }
            return Ok(AdminToken::new(token.clone()));
        };
        let token = read_secret("--admin-token-file", path, "token")?;
        Ok(AdminToken::new(token))
    }

    fn decision_log_config(&self) -> Result<Option<DecisionLogConfig>, SettingsError> {
        let sample = self.decision_log_sample;
        // `contains` is false for NaN too.
        if !(0.0..=1.0).contains(&sample) {
            return Err(invalid(
                "--decision-log-sample",
                sample,
                "must be between 0 and 1",
            ));
        }
        let file_bytes = mib(
            "--decision-log-file-mb",
            self.decision_log_file_mb,
            MAX_FILE_MB,
        )?;
        let max_files = at_least("--decision-log-files", self.decision_log_files, 1)?;
        if let Some(dir) = self
            .decision_log
            .as_ref()
            .filter(|d| d.exists() && !d.is_dir())
        {
            return Err(invalid(
                "--decision-log",
                dir.display(),
                "is a file: give the folder the decision log's files are written in",
            ));
        }
        let tuned = [
            ("--decision-log-sample", sample != DECISION_LOG_SAMPLE),
            (
                "--decision-log-file-mb",
                self.decision_log_file_mb != DECISION_LOG_FILE_MB,
            ),
            (
                "--decision-log-files",
                self.decision_log_files != DECISION_LOG_FILES,
            ),
        ];
        if self.decision_log.is_none() {
            for (flag, _) in tuned.iter().filter(|(_, set)| *set) {
                tracing::warn!(
                    flag,
                    "{flag} is set but no decision log is written: give --decision-log DIR too"
                );
            }
        }
        Ok(self.decision_log.clone().map(|dir| DecisionLogConfig {
            dir,
            sample,
            file_bytes,
            max_files,
        }))
    }

    fn fleet_config(&self) -> Result<Option<FleetConfig>, SettingsError> {
        let partitions = within(
            "--redis-partitions",
            self.redis_partitions,
            1,
            MAX_PARTITIONS,
        )?;
        let Some(url) = &self.redis else {
            return Ok(None);
        };
        Ok(Some(FleetConfig {
            catchup_wait: Duration::from_millis(self.redis_catchup_ms),
            ready_when_behind: self.ready_when_behind,
            password_file: self.redis_password_file.clone(),
            ..FleetConfig::new(
                redis_url(url, self.redis_password_file.as_deref())?,
                partitions,
            )
        }))
    }
}

/// The Redis URL to connect with: `--redis`, checked as the fleet will parse it, with the
/// password of `--redis-password-file` put into its user information (percent-encoded).
pub fn redis_url(url: &SecretUrl, password_file: Option<&Path>) -> Result<String, SettingsError> {
    let Some(path) = password_file else {
        check_redis_url(url.expose()).map_err(|reason| invalid("--redis", url, reason))?;
        return Ok(url.expose().to_owned());
    };
    let flag = "--redis-password-file";
    let password = read_secret(flag, path, "password")?;
    let parsed = url::Url::parse(url.expose())
        .map_err(|e| invalid("--redis", url, format!("not a URL: {e}")))?;
    if parsed.password().is_some() {
        return Err(invalid(
            flag,
            path.display(),
            "--redis already holds a password; give it in one place",
        ));
    }
    let with_password = crate::secrets::url_with_password(url.expose(), &password)
        .map_err(|reason| invalid("--redis", url, reason))?;
    check_redis_url(&with_password).map_err(|reason| invalid("--redis", url, reason))?;
    Ok(with_password)
}

/// A secret from the file a flag names, its faults said with the flag.
fn read_secret(flag: &'static str, path: &Path, what: &str) -> Result<String, SettingsError> {
    use crate::secrets::SecretFileError;
    crate::secrets::read_secret_file(path).map_err(|e| match e {
        SecretFileError::Unreadable(source) => SettingsError::File {
            flag,
            path: path.to_owned(),
            source,
        },
        SecretFileError::Empty => invalid(
            flag,
            path.display(),
            format!("the file is empty; put the {what} in it"),
        ),
    })
}

/// Whether the fleet's Redis client takes the URL (it parses only; nothing connects).
fn check_redis_url(url: &str) -> Result<(), String> {
    redis::Client::open(url)
        .map(drop)
        .map_err(|e| format!("not a Redis URL ({e})"))
}

#[cfg(test)]
mod tests;
