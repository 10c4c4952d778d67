//! The serve flags as given (what clap parses, each also an environment variable), with their
//! defaults and help; [`ServeArgs::check`] in the parent turns them into checked settings.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::builder::BoolishValueParser;
use clap::{Args, ValueEnum};

use super::{
    invalid, listen_addr, redis_url, within, SettingsError, DECISION_LOG_FILES,
    DECISION_LOG_FILE_MB, DECISION_LOG_SAMPLE, MAX_PARTITIONS, REDIS_PARTITIONS,
};
use crate::features::NullWords;
use crate::fleet::FleetConfig;
use crate::secrets::SecretUrl;

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

/// The fleet's Redis, shared by the server (which shares its events through it) and campaigns
/// (which count the fleet's events): one set of flags, help and checks for both.
#[derive(Args, Clone, Debug, Default)]
pub struct RedisArgs {
    /// The fleet's Redis Streams, `redis://` or `rediss://` URL, password in the userinfo: the
    /// server shares accepted events with the other replicas there, a campaign counts them
    /// (unset: this process knows only its own event log).
    #[arg(long, env = "NEXTBEST_REDIS", hide_env_values = true)]
    pub redis: Option<SecretUrl>,
    /// File holding the Redis password (surrounding white space ignored), e.g. a mounted
    /// Kubernetes Secret: put into --redis's URL, it stays out of `ps` and the environment;
    /// read again before each new connection, so a rotated password needs no restart.
    #[arg(long, env = "NEXTBEST_REDIS_PASSWORD_FILE")]
    pub redis_password_file: Option<PathBuf>,
    /// Stream partitions (keys with their own hash tag; every replica and campaign of a fleet
    /// must use the same number; 1 to 1024) [default: 8].
    #[arg(long, env = "NEXTBEST_REDIS_PARTITIONS", allow_negative_numbers = true)]
    pub redis_partitions: Option<u16>,
}

impl RedisArgs {
    /// The fleet link the flags ask for, as [`RedisArgs::link`] does, and a password file
    /// without --redis refused: a one-off command says what it cannot use.
    pub fn check(&self) -> Result<Option<FleetConfig>, SettingsError> {
        if let (None, Some(file)) = (&self.redis, &self.redis_password_file) {
            return Err(super::invalid(
                "--redis-password-file",
                file.display(),
                "is set but --redis is not (NEXTBEST_REDIS): give the fleet's Redis URL too",
            ));
        }
        self.link()
    }

    /// The fleet link the flags ask for (none without --redis), checked: the partitions in
    /// range, the URL as the fleet will parse it, the password file read.
    pub fn link(&self) -> Result<Option<FleetConfig>, SettingsError> {
        let partitions = within(
            "--redis-partitions",
            self.redis_partitions.unwrap_or(REDIS_PARTITIONS),
            1,
            MAX_PARTITIONS,
        )?;
        let Some(url) = &self.redis else {
            return Ok(None);
        };
        Ok(Some(FleetConfig {
            password_file: self.redis_password_file.clone(),
            ..FleetConfig::new(
                redis_url(url, self.redis_password_file.as_deref())?,
                partitions,
            )
        }))
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
    /// The fleet's Redis (`--redis`, `--redis-password-file`, `--redis-partitions`).
    #[command(flatten)]
    pub fleet: RedisArgs,
    /// With --ready-when-behind: longest wait at start for the fleet's recent events before
    /// /readyz says ready as behind. Without it, /readyz waits for them however long it takes
    /// [default: 10000].
    #[arg(long, env = "NEXTBEST_REDIS_CATCHUP_MS", allow_negative_numbers = true)]
    pub redis_catchup_ms: Option<u64>,
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
