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

use crate::contact::attribution::DecisionIds;
use crate::contact::{ContactConfig, FsyncPolicy, StateConfig};
use crate::decision_log::DecisionLogConfig;
use crate::engine::BuiltinFallback;
use crate::features::SnapshotStore;
use crate::fleet::FleetConfig;
use crate::model::{self, Limits, ModelError};
use crate::registry::RegistryConfig;
use crate::secrets::AdminToken;
use crate::secrets::SecretUrl;
use crate::server::ServerConfig;

mod args;
pub mod environment;

pub use args::{FsyncMode, NullArgs, RedisArgs, ServeArgs};

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
/// The stream partitions a fleet has unless told otherwise.
pub const REDIS_PARTITIONS: u16 = 8;
/// How long a replica waits for the fleet's events before `--ready-when-behind` says ready.
pub const REDIS_CATCHUP_MS: u64 = 10_000;

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
        // The models folder is published whole (a folder renamed over it, `rm -rf` and a copy):
        // what the server writes for itself must not go with it, nor wake its watcher.
        let (models, inside) = model::models_folder(&self.models);
        let written = [
            ("--data-dir", Some(&self.data_dir)),
            ("--decision-log", self.decision_log.as_ref()),
        ];
        for (flag, dir) in written {
            if let Some(dir) = dir.filter(|d| model::in_models_folder(d, &self.models)) {
                return Err(invalid(
                    flag,
                    dir.display(),
                    format!(
                        "is the models folder {}{}: a model published by replacing the folder \
                         would take what this server writes with it; give a folder of its own",
                        models.display(),
                        if inside { " or inside it" } else { "" }
                    ),
                ));
            }
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
        // A server started by a manifest says what a setting without --redis changes (nothing)
        // rather than refusing to start on it.
        let fleet = self.fleet.link()?;
        let catchup_set = self.redis_catchup_ms.is_some();
        if fleet.is_none() {
            // Set for a fleet, most likely, whose Redis went under another name (the default
            // partition count given as well).
            let set = [
                ("--redis-catchup-ms", catchup_set),
                ("--ready-when-behind", self.ready_when_behind),
                ("--redis-partitions", self.fleet.redis_partitions.is_some()),
                (
                    "--redis-password-file",
                    self.fleet.redis_password_file.is_some(),
                ),
            ];
            for (flag, _) in set.iter().filter(|(_, set)| *set) {
                tracing::warn!(
                    flag,
                    "{flag} is set but --redis is not (NEXTBEST_REDIS): this server runs alone, \
                     and the events it takes reach no other replica"
                );
            }
        } else if catchup_set && !self.ready_when_behind {
            tracing::warn!(
                "--redis-catchup-ms is set without --ready-when-behind, so it changes nothing: \
                 /readyz waits for the fleet's events however long it takes; give \
                 --ready-when-behind too to say ready after that wait anyway"
            );
        }
        Ok(fleet.map(|fleet| FleetConfig {
            catchup_wait: Duration::from_millis(self.redis_catchup_ms.unwrap_or(REDIS_CATCHUP_MS)),
            ready_when_behind: self.ready_when_behind,
            ..fleet
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
    // What is wrong, where the URL's parser can say it (a port out of range, no host); never
    // the URL itself, which may hold the password.
    let why = match url::Url::parse(url) {
        Err(e) => e.to_string(),
        // The client's own schemes: TCP, TLS and a Unix socket's.
        Ok(u) if !matches!(u.scheme(), "redis" | "rediss" | "redis+unix" | "unix") => {
            format!("the scheme is {}:, not redis: or rediss:", u.scheme())
        }
        Ok(_) => match redis::Client::open(url) {
            Ok(_) => return Ok(()),
            Err(e) => e.to_string(),
        },
    };
    // A password with a character a URL reserves ends the user information early.
    let hint = if url.contains('@') {
        "; a password holding any of @ : / ? # % or a space must be percent-encoded in the \
         URL, or given in --redis-password-file"
    } else {
        ""
    };
    Err(format!("not a Redis URL ({why}){hint}"))
}

#[cfg(test)]
mod tests;
