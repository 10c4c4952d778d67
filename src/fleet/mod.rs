//! The fleet: every replica shares the events it accepted through Redis Streams, so contact
//! policies hold across replicas and channels (a dismiss on web pod 3 holds the offer back on
//! app pod 7).
//!
//! The local event log stays the source of truth and is the outbox: a 202 still means durable
//! locally, and a [`shipper`] tails the log and appends each record to the stream of its
//! customer's partition, at least once, remembering how far it got in the data folder. Each
//! replica's [`consumer`]s read every partition and apply the other replicas' events to the
//! local contact state, once per event id (events without one get an id from their origin and
//! log position). Decisions never wait on the network: they read the local state as alone.
//!
//! Redis down: ingest and decisions go on locally, the shipper keeps its backlog and the
//! consumers retry with backoff, logging once per outage. A restarted Redis is noticed by its
//! run id changing, checked every second also while nothing is shipped; one that lost the last
//! event shipped to it (a restart without persistence) gets the whole local log again (receivers
//! apply each id once), one that kept it (AOF, a snapshot, a failover) nothing twice.
//! The backlog is measured from the log itself every second ([`monitor`]), connected or not; the
//! lag from the time the origin accepted an event (stamped in its log record) to its apply here.
//!
//! Joining: the stream partition count is recorded in Redis by the first replica; one started
//! with another count refuses to join (its streams would miss half the customers), says so
//! naming both, and stays unready ([`join`]). A replica starting catches up on the fleet's
//! events kept in the streams (as long as each log keeps its own: the longest policy window, at
//! least as long as event ids are remembered) before it says ready, and not before every other
//! live replica says its whole log is in the Redis it reads ([`refill`]: a Redis back empty
//! holds none of the fleet's events until they ship them again); with `--ready-when-behind`
//! it says ready anyway after `--redis-catchup-ms`, serving as behind. Once caught up it stays
//! ready through later outages: every replica losing Redis at once must not empty the Service.
//!
//! Applied fleet events are not written to the local log: each event stays in its origin's log
//! (which re-ships it after a Redis data loss) and in Redis, so a replica's disk and fsyncs
//! carry its own traffic only, not the fleet's times the number of replicas.
//!
//! This module owns the Redis side; it must not decide, and it changes contact state only
//! through [`crate::contact::Contacts::apply_remote`].

mod changes;
pub mod consumer;
mod cursor;
mod identity;
pub mod join;
mod link;
pub mod models;
pub mod monitor;
mod refill;
mod refusals;
pub mod reports;
pub mod shipper;
pub mod signing;
mod stats;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::contact::log::Position;
use crate::contact::Contacts;
use crate::metrics::{Histogram, LAG_BUCKETS_US};
use crate::registry::Registry;
pub use identity::Identity;
use models::Shared;
use reports::FleetView;
pub use stats::FleetStats;

/// Settings of the fleet link.
#[derive(Clone)]
pub struct FleetConfig {
    /// `redis://` or `rediss://` URL (password in the userinfo).
    pub url: String,
    /// `--redis-password-file`: read again before each new connection, so a rotated password
    /// is taken without a restart; `None`: the URL's password stays.
    pub password_file: Option<PathBuf>,
    /// Stream partitions (a fixed number of keys, each its own hash tag).
    pub partitions: u16,
    /// Longest wait for the catch-up before the replica says ready anyway.
    pub catchup_wait: Duration,
    /// Key prefix of the streams.
    pub prefix: String,
    /// Say ready after `catchup_wait` even when not caught up (serve as behind); otherwise stay
    /// unready until the fleet's kept events are applied.
    pub ready_when_behind: bool,
    /// The admin token, which signs the admin changes this replica shares and must have signed
    /// those it makes; `None`: changes go unsigned and are taken unsigned.
    pub signing: Option<crate::secrets::AdminToken>,
}

/// Shows the URL without its password, so a configuration in a log line or a panic message
/// never carries the secret.
impl std::fmt::Debug for FleetConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetConfig")
            .field("url", &crate::logging::redact_url(&self.url))
            .field("password_file", &self.password_file)
            .field("partitions", &self.partitions)
            .field("catchup_wait", &self.catchup_wait)
            .field("prefix", &self.prefix)
            .field("ready_when_behind", &self.ready_when_behind)
            .field("signing", &self.signing.is_some())
            .finish()
    }
}

impl FleetConfig {
    /// A link to the fleet at `url` with `partitions` streams, the default key prefix, no
    /// catch-up wait, and unready until caught up.
    pub fn new(url: String, partitions: u16) -> Self {
        FleetConfig {
            url,
            password_file: None,
            partitions,
            catchup_wait: Duration::ZERO,
            prefix: "nextbest:events".into(),
            ready_when_behind: false,
            signing: None,
        }
    }

    /// The key recording the fleet's partition count.
    pub fn partitions_key(&self) -> String {
        format!("{}:partitions", self.prefix)
    }

    /// The stream key of a partition: its own hash tag, so Redis Cluster spreads partitions.
    pub fn key(&self, partition: u16) -> String {
        format!("{}:{{p{partition:03}}}", self.prefix)
    }

    /// The partition of a customer (or of a visitor without one): a fixed hash, the same on
    /// every replica.
    pub fn partition(&self, customer_id: &str) -> u16 {
        let h = crate::engine::policy::stable_hash(customer_id);
        (h % u64::from(self.partitions.max(1))) as u16
    }
}

/// Why the fleet link could not start.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// The URL is not a Redis URL.
    #[error("--redis: {0}")]
    Url(String),
    /// The replica id file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Replication needs the event log (a data folder).
    #[error("--redis needs the event log: no data folder is configured")]
    NoLog,
    /// The Redis read holds no fleet, or one whose partition count differs: reading it would
    /// see none or part of the fleet's events.
    #[error("{0}")]
    NotTheFleet(String),
}

/// The state of the link, shared by the shipper, the consumers, readiness and metrics.
pub struct Fleet {
    /// This replica's id in the fleet (kept in the data folder across restarts).
    pub origin: String,
    /// This process among the fleet's (random at each start): tells a copied data folder's
    /// twin from this replica.
    instance: String,
    /// When this process joined (Unix ms).
    started_ms: i64,
    /// Whether this replica knows it is the only running one with its id.
    identity: Identity,
    /// The host name (in Kubernetes, the pod's name), named in the fleet's view.
    host: String,
    config: FleetConfig,
    /// The Redis every task connects to.
    link: link::Link,
    started: Instant,
    caught_up: AtomicBool,
    /// Whether the newest admin change made elsewhere is made here too (read at start).
    changes_caught_up: AtomicBool,
    /// Whether Redis holds the fleet's events yet (see [`refill`]).
    refill: refill::Refill,
    connected: AtomicBool,
    /// Unix ms of the last successful exchange with Redis.
    last_exchange_ms: AtomicI64,
    /// Events shipped, and applied from other replicas.
    shipped: AtomicU64,
    applied: AtomicU64,
    /// Where shipping has got to (what the backlog is measured from).
    cursor: Mutex<Position>,
    /// Log bytes not yet shipped.
    backlog_bytes: AtomicU64,
    /// When the oldest event not yet shipped was accepted (Unix ms; 0 when none).
    backlog_oldest_ms: AtomicI64,
    /// Time from the origin's acceptance to this replica's apply, of the last remote event (ms).
    lag_ms: AtomicI64,
    lag: Histogram,
    /// Redis's clock less this host's, at the last append (ms).
    clock_skew_ms: AtomicI64,
    /// When a skewed clock was last logged (Unix ms).
    skew_logged_ms: AtomicI64,
    outage_logged: AtomicBool,
    /// Whether saying ready behind the fleet was logged.
    ready_behind_logged: AtomicBool,
    /// Whether `last_failure` holds Redis's last failure (the check on every exchange takes
    /// no lock).
    failing: AtomicBool,
    last_failure: Mutex<Option<String>>,
    /// The operations Redis refuses now.
    refusals: refusals::Refusals,
    /// Why this replica refused to join the fleet, once it has.
    refused: OnceLock<String>,
    /// Admin changes made here, on their way to the fleet's stream.
    outgoing: tokio::sync::mpsc::UnboundedSender<Shared>,
    /// Changes made elsewhere and applied here.
    changes_applied: AtomicU64,
    /// Changes made elsewhere and refused for their signature (missing, or not this token's).
    changes_unsigned: AtomicU64,
    /// Signs the admin changes shared, and checks those made elsewhere (`None`: no token).
    signer: Option<signing::Signer>,
    /// What the fleet serves, as last read.
    view: Mutex<FleetView>,
}

/// How far this host's clock may stray from Redis's before it is said: past it, the times this
/// replica stamps on events and counts policy windows from are off for the rest of the fleet.
pub const MAX_CLOCK_SKEW_MS: i64 = 5_000;

impl Fleet {
    /// Notes how far this host's clock is from Redis's (`redis_ms`, an entry id's time, against
    /// `local_ms`, read just before the append); a skew past [`MAX_CLOCK_SKEW_MS`] is logged, at
    /// most once a minute.
    fn observe_skew(&self, redis_ms: i64, local_ms: i64) {
        let skew = redis_ms - local_ms;
        self.clock_skew_ms.store(skew, Relaxed);
        let now = now_ms();
        let last = self.skew_logged_ms.load(Relaxed);
        if skew.abs() > MAX_CLOCK_SKEW_MS
            && now - last >= 60_000
            && self
                .skew_logged_ms
                .compare_exchange(last, now, Relaxed, Relaxed)
                .is_ok()
        {
            tracing::error!(
                skew_ms = skew,
                "this host's clock is {} s {} the fleet's Redis: the events it stamps (a `ts` left out) and the policy windows it counts are off by as much for every replica; set the host's time right (NTP)",
                skew.abs() / 1000,
                if skew > 0 { "behind" } else { "ahead of" }
            );
        }
    }

    /// This host's time on the fleet's clock, for measures that compare it with times other
    /// replicas stamped (a replication lag): its own clock corrected by the skew once that is
    /// past [`MAX_CLOCK_SKEW_MS`], and as it is within, where a host's NTP-kept clock is finer
    /// than a skew measured through a round trip to Redis.
    fn fleet_now_ms(&self) -> i64 {
        let skew = self.clock_skew_ms.load(Relaxed);
        now_ms()
            + if skew.abs() > MAX_CLOCK_SKEW_MS {
                skew
            } else {
                0
            }
    }

    /// Whether the replica may say ready: caught up, or (with `--ready-when-behind`) done
    /// waiting for it; never after refusing to join.
    pub fn ready(&self) -> bool {
        if self.refused().is_some() || self.identity.pending() {
            return false;
        }
        if self.caught_up() && self.changes_caught_up.load(Relaxed) {
            return true;
        }
        let behind =
            self.config.ready_when_behind && self.started.elapsed() >= self.config.catchup_wait;
        if behind && !self.ready_behind_logged.swap(true, Relaxed) {
            tracing::warn!(
                waited_ms = self.config.catchup_wait.as_millis() as u64,
                "ready behind the fleet (--ready-when-behind): serving with the history this replica has while it catches up"
            );
        }
        behind
    }

    /// Whether this replica's id is known to be its own alone (see [`Identity`]).
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Leaves the fleet's view at a graceful stop (at most a second or two; nothing waits on
    /// it when Redis is away).
    pub async fn leave(&self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), reports::leave(self)).await;
    }

    /// What an unready replica waits for, as `/readyz` says it.
    pub fn not_ready_detail(&self) -> String {
        if let Some(why) = self.refused() {
            return format!("refused to join the fleet: {why}");
        }
        if let Some(failure) = self.last_failure() {
            return format!("waiting for the fleet's Redis: {failure}");
        }
        if self.identity.pending() {
            return "making sure no running replica has this replica's id, as at every start \
                    (one started on a copy of its data folder would have it)"
                .into();
        }
        if let Some(refill) = self.refill_detail() {
            return refill;
        }
        if self.caught_up() {
            return "catching up with the fleet's model changes".into();
        }
        "catching up with the fleet's events".into()
    }

    /// Why this replica refused to join the fleet, if it did.
    pub fn refused(&self) -> Option<&str> {
        self.refused.get().map(String::as_str)
    }

    /// Stops taking part: nothing more is shipped or applied, and readiness says why.
    fn refuse(&self, why: String) {
        if self.refused.set(why.clone()).is_ok() {
            tracing::error!(reason = %why, "refusing to join the fleet; replication stopped");
        }
    }

    /// Shares an admin change made here with every replica (queued; sent as soon as Redis
    /// takes it).
    pub fn share(&self, change: Shared) {
        if self.refused().is_none() && self.outgoing.send(change).is_err() {
            tracing::warn!("the fleet's change publisher has stopped; the change stays local");
        }
    }

    /// What an admin change made now meets on its way to the other replicas, when it is not
    /// shared at once: the admin API's answer says so beside the change made here.
    pub fn sharing_delay(&self) -> Option<String> {
        if let Some(why) = self.refused() {
            return Some(format!(
                "not shared: this replica refused to join the fleet ({why})"
            ));
        }
        if self.connected.load(Relaxed) {
            return None;
        }
        let failure = self
            .last_failure()
            .unwrap_or_else(|| "the fleet's Redis is not connected yet".into());
        Some(format!(
            "queued: {failure}; the change reaches the other replicas once Redis answers"
        ))
    }

    /// What the fleet serves, as last read.
    pub fn view(&self) -> FleetView {
        self.view.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_view(&self, v: FleetView) {
        *self.view.lock().unwrap_or_else(|p| p.into_inner()) = v;
    }

    /// The link's settings.
    pub fn config(&self) -> &FleetConfig {
        &self.config
    }

    fn set_cursor(&self, at: Position) {
        *self.cursor.lock().unwrap_or_else(|p| p.into_inner()) = at;
    }

    fn cursor(&self) -> Position {
        *self.cursor.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the replica has applied the fleet's kept events.
    pub fn caught_up(&self) -> bool {
        self.caught_up.load(Relaxed)
    }

    /// Milliseconds since this fleet link started, on the monotonic clock.
    fn since_start_ms(&self) -> i64 {
        self.started.elapsed().as_millis() as i64
    }

    /// Notes one remote event applied `lag_ms` after its origin accepted it.
    fn observe_lag(&self, lag_ms: i64) {
        let lag = lag_ms.max(0);
        self.lag_ms.store(lag, Relaxed);
        self.lag.observe_ns(lag as u64 * 1_000_000);
    }
}

/// A Redis URL with its password hidden, for logs and stats.
pub fn redact(url: &str) -> String {
    crate::logging::redact_url(url).into_owned()
}

/// Starts the shipper, the consumers and the model follower on a thread of their own.
pub fn start(
    config: FleetConfig,
    contacts: Arc<Contacts>,
    registry: Arc<Registry>,
) -> Result<Arc<Fleet>, FleetError> {
    if config.url.starts_with("rediss://") {
        // rustls needs one process-wide crypto provider; installing it twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    let link = link::Link::new(&config)
        .map_err(|e| FleetError::Url(format!("{}: {e}", redact(&config.url))))?;
    let dir = contacts.data_dir().ok_or(FleetError::NoLog)?.to_owned();
    let origin = replica_id(&dir)?;
    let (outgoing, to_publish) = models::channel();
    // Read once: its position is the fleet's figure, its Redis and layout the shipper's.
    let resumed = cursor::load_cursor(&dir, config.partitions);
    let signer = config.signing.as_ref().map(signing::Signer::new);
    let fleet = Arc::new(Fleet {
        origin,
        instance: format!("{:016x}", rand::random::<u64>()),
        started_ms: now_ms(),
        identity: Identity::default(),
        host: rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned(),
        config,
        link,
        started: Instant::now(),
        caught_up: AtomicBool::new(false),
        changes_caught_up: AtomicBool::new(false),
        refill: refill::Refill::default(),
        connected: AtomicBool::new(false),
        last_exchange_ms: AtomicI64::new(0),
        shipped: AtomicU64::new(0),
        applied: AtomicU64::new(0),
        cursor: Mutex::new(resumed.at),
        backlog_bytes: AtomicU64::new(0),
        backlog_oldest_ms: AtomicI64::new(0),
        lag_ms: AtomicI64::new(0),
        clock_skew_ms: AtomicI64::new(0),
        skew_logged_ms: AtomicI64::new(0),
        lag: Histogram::with_bounds(&LAG_BUCKETS_US),
        failing: AtomicBool::new(false),
        last_failure: Mutex::new(None),
        ready_behind_logged: AtomicBool::new(false),
        outage_logged: AtomicBool::new(false),
        refusals: refusals::Refusals::default(),
        refused: OnceLock::new(),
        outgoing,
        changes_applied: AtomicU64::new(0),
        changes_unsigned: AtomicU64::new(0),
        signer,
        view: Mutex::new(FleetView::default()),
    });
    if fleet.signer.is_none() {
        tracing::warn!("no admin token: the fleet's admin changes (model uploads, rollbacks, feature reloads) travel unsigned, and any writer to Redis can make them on every replica; give every replica the same admin token (--admin-token-file, NEXTBEST_ADMIN_TOKEN_FILE) to sign them");
    }
    tracing::info!(redis = %redact(&fleet.config.url), origin = %fleet.origin, partitions = fleet.config.partitions, "replicating events through redis");
    // Replication runs on a thread of its own: decoding the streams and applying the other
    // replicas' events never takes a worker that runs decisions.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("nextbest-fleet")
        .build()
        .map_err(|source| FleetError::Io {
            path: dir.clone(),
            source,
        })?;
    let link = fleet.clone();
    std::thread::Builder::new()
        .name("nextbest-fleet".into())
        .spawn(move || {
            rt.block_on(async move {
                // The backlog is measured whether Redis answers or not.
                tokio::spawn(monitor::backlog(link.clone(), dir.clone()));
                if !join::join(&link).await {
                    return;
                }
                tokio::spawn(consumer::run(link.clone(), contacts.clone()));
                tokio::spawn(models::run(link.clone(), registry, to_publish));
                shipper::run(link, contacts, dir, resumed).await;
            });
        })
        .map_err(|source| FleetError::Io {
            path: PathBuf::from("nextbest-fleet thread"),
            source,
        })?;
    Ok(fleet)
}

/// This replica's id: made once, kept in the data folder.
fn replica_id(dir: &Path) -> Result<String, FleetError> {
    let path = dir.join("replica-id");
    let io = |source| FleetError::Io {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => Ok(id.trim().to_owned()),
        Ok(_) | Err(_) => {
            let id = ulid::Ulid::new().to_string();
            crate::durable::write_atomic(&path, id.as_bytes(), true).map_err(io)?;
            Ok(id)
        }
    }
}

/// Backoff between retries: doubling from 50 ms to 2 s.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis((50u64 << attempt.min(6)).min(2_000))
}

/// Now, in Unix ms: the system clock, as the contact side reads it.
fn now_ms() -> i64 {
    crate::contact::Clock::system().now_ms()
}

/// Redis's clock (`TIME`), in Unix ms: the one clock every replica of a fleet reads alike.
async fn redis_time_ms(c: &mut redis::aio::MultiplexedConnection) -> redis::RedisResult<i64> {
    let (s, us): (i64, i64) = redis::cmd("TIME").query_async(c).await?;
    Ok(s * 1000 + us / 1000)
}

/// Reads the fleet's events of the last `horizon_ms` from every partition, once per event id,
/// skipping those `skip_origin` shipped (a data folder's own replica: they are in its log):
/// what a tool outside the serving path (an outbound campaign) needs of the fleet's history.
/// Calls `f` with each event's log payload; returns how many were read.
pub fn read_history(
    config: &FleetConfig,
    horizon_ms: i64,
    skip_origin: Option<&str>,
    mut f: impl FnMut(&[u8]),
) -> Result<u64, FleetError> {
    let redis_err = |e: redis::RedisError| FleetError::Url(format!("{}: {e}", redact(&config.url)));
    let client = redis::Client::open(config.url.as_str()).map_err(redis_err)?;
    let mut con = client.get_connection().map_err(redis_err)?;
    // Every replica records the fleet's partition count when it joins: without it there is no
    // fleet here (another database, another Redis), and with another count only some of its
    // streams would be read.
    let recorded: Option<String> = redis::cmd("GET")
        .arg(config.partitions_key())
        .query(&mut con)
        .map_err(redis_err)?;
    match recorded.as_deref().map(str::trim) {
        None => {
            return Err(FleetError::NotTheFleet(format!(
                "--redis {}: no nextbest fleet has joined this Redis and database (no {}): give \
                 the URL the replicas' --redis names, database number included",
                redact(&config.url),
                config.partitions_key()
            )))
        }
        Some(r) if r != config.partitions.to_string() => {
            return Err(FleetError::NotTheFleet(format!(
                "--redis-partitions {} but the fleet at {} uses {r}: give --redis-partitions {r}, \
                 as the replicas do",
                config.partitions,
                redact(&config.url)
            )))
        }
        Some(_) => {}
    }
    let mut seen = std::collections::HashSet::new();
    let mut read = 0;
    for p in 0..config.partitions {
        let key = config.key(p);
        let mut start = format!("{}-0", now_ms().saturating_sub(horizon_ms).max(0));
        loop {
            let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
                .arg(&key)
                .arg(&start)
                .arg("+")
                .arg("COUNT")
                .arg(10_000)
                .query(&mut con)
                .map_err(redis_err)?;
            for entry in &reply.ids {
                let field = |name: &str| match entry.map.get(name) {
                    Some(redis::Value::BulkString(b)) => Some(b.as_slice()),
                    _ => None,
                };
                if skip_origin.is_some_and(|o| field("o") == Some(o.as_bytes())) {
                    continue;
                }
                let (Some(payload), Some(id)) = (field("e"), field("i")) else {
                    continue;
                };
                if seen.insert(id.to_vec()) {
                    read += 1;
                    f(payload);
                }
            }
            match reply.ids.last() {
                Some(last) if reply.ids.len() == 10_000 => start = format!("({}", last.id),
                _ => break,
            }
        }
    }
    Ok(read)
}

/// The replica id a data folder's server ships under, if it has one.
pub fn origin_of(data_dir: &Path) -> Option<String> {
    std::fs::read_to_string(data_dir.join("replica-id"))
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        assert_eq!(
            redact("rediss://user:s3cret@redis.example:6380/0"),
            "rediss://***@redis.example:6380/0"
        );
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }

    #[test]
    fn the_config_debug_hides_the_password() {
        let c = FleetConfig::new("redis://:s3cret@redis.svc:6379/0".into(), 8);
        let printed = format!("{c:?}");
        assert!(!printed.contains("s3cret"), "{printed}");
        assert!(
            printed.contains("redis://***@redis.svc:6379/0"),
            "{printed}"
        );
    }

    #[test]
    fn partitions_are_stable_hash_tags() {
        let c = FleetConfig::new(String::new(), 8);
        assert_eq!(c.key(3), "nextbest:events:{p003}");
        assert_eq!(c.partition("C0000042"), c.partition("C0000042"));
        let spread: std::collections::HashSet<u16> = (0..1000)
            .map(|i| c.partition(&format!("C{i:07}")))
            .collect();
        assert_eq!(spread.len(), 8);
    }
}
