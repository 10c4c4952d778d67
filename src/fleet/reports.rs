//! **Every replica says what it serves.** Every [`REPORT_EVERY`] each replica writes its model
//! checksum and snapshot checksum into the hash `nextbest:serving` and reads everyone's back:
//! the [`FleetView`] counts the distinct versions among replicas heard from within
//! [`LIVE_FOR`], which `/admin/status` shows and `nextbest_fleet_model_versions` /
//! `nextbest_fleet_snapshot_versions` export (above 1: the fleet disagrees).
//!
//! The same reports tell whether another running process has this replica's id (a data folder
//! copied from a running replica's): see [`super::Identity`].

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use super::{now_ms, redis_time_ms, Fleet};
use crate::metrics::prom::{Collect, Exposition, Kind};
use crate::registry::Registry;

/// The hash of what each replica serves.
pub const SERVING: &str = "nextbest:serving";
/// How often a replica reports what it serves and reads the others'.
pub const REPORT_EVERY: Duration = Duration::from_secs(5);
/// How long a replica's report counts after it was written.
pub const LIVE_FOR: Duration = Duration::from_secs(30);
/// Whether a report written at `at_ms` still counts at `now_ms` (both on Redis's clock), or a
/// replica last heard from then is still taken to run.
pub fn live(at_ms: i64, now_ms: i64) -> bool {
    now_ms - at_ms <= LIVE_FOR.as_millis() as i64
}

/// Reports older than this are removed from the hash (replicas long gone).
const FORGET_AFTER_MS: i64 = 3_600_000;

/// What one replica said it serves.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Report {
    /// The replica.
    pub origin: String,
    /// The champion's name and version, for people.
    pub model: Option<String>,
    /// Champion (+challenger) checksum.
    pub model_checksum: Option<String>,
    /// The snapshot file's checksum.
    pub snapshot_checksum: Option<String>,
    /// When it was written (Unix ms, on Redis's clock).
    pub at_ms: i64,
    /// The process that wrote it (random at each start): two live ones under one origin are
    /// two replicas sharing a data folder's id.
    #[serde(default)]
    pub instance: String,
    /// When that process started (Unix ms).
    #[serde(default)]
    pub started_ms: i64,
    /// Its host name (in Kubernetes, the pod's name): how people find the replica.
    #[serde(default)]
    pub host: String,
    /// Its process id on that host (0 from a release that wrote none).
    #[serde(default)]
    pub pid: u32,
    /// The Redis run (its `run_id`) the replica's whole log has been shipped to: empty while it
    /// has not reached its log's end since it started or since Redis restarted without it;
    /// absent from a release that did not say. What a catching-up replica waits on
    /// ([`super::refill`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipped_to: Option<String>,
    /// Whether Redis refuses the replica's shipments (out of memory, a user without `XADD`):
    /// what it has not shipped cannot come, and a catching-up replica does not wait for it.
    #[serde(default)]
    pub shipping_refused: bool,
    /// Whether the replica has shipped an event of its own, ever on its data folder (true
    /// from a release that did not say): one that has not is not expected to ship again
    /// after a Redis restart.
    #[serde(default = "shipped_any_unsaid")]
    pub shipped_any: bool,
    /// Replicas this one heard from on an earlier Redis run, lately, and not yet on this one:
    /// after a Redis restart, those a catching-up replica waits for though they have not
    /// reported to this Redis yet (one stalled through the restart).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expects: Vec<Expected>,
}

/// A report without `shipped_any` may have shipped events.
fn shipped_any_unsaid() -> bool {
    true
}

/// A replica another one heard from before Redis restarted.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Expected {
    /// The replica.
    pub origin: String,
    /// Its host name.
    pub host: String,
    /// When its last report was written (Unix ms, on Redis's clock).
    pub at_ms: i64,
}

/// What the fleet serves, from the replicas heard from lately.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct FleetView {
    /// Each live replica's report, this one's included.
    pub replicas: Vec<Report>,
    /// Distinct model checksums among them.
    pub model_versions: usize,
    /// Distinct snapshot checksums among them.
    pub snapshot_versions: usize,
    /// True while every live replica serves the same model and snapshot.
    pub agree: bool,
    /// When it was read (Unix ms; 0: not yet).
    pub at_ms: i64,
}

impl FleetView {
    /// The view of `reports` at `now`: the live ones, and how many versions they serve.
    pub fn of(reports: Vec<Report>, now: i64) -> Self {
        let mut replicas: Vec<Report> =
            reports.into_iter().filter(|r| live(r.at_ms, now)).collect();
        replicas.sort_by(|a, b| a.origin.cmp(&b.origin));
        let distinct = |f: fn(&Report) -> &Option<String>| {
            replicas.iter().map(f).collect::<BTreeSet<_>>().len()
        };
        let (model_versions, snapshot_versions) = (
            distinct(|r| &r.model_checksum),
            distinct(|r| &r.snapshot_checksum),
        );
        FleetView {
            agree: model_versions <= 1 && snapshot_versions <= 1,
            replicas,
            model_versions,
            snapshot_versions,
            at_ms: now,
        }
    }
}

impl Collect for FleetView {
    fn collect(&self, out: &mut Exposition) {
        for (name, help, v) in [
            (
                "nextbest_fleet_replicas",
                "Replicas that reported what they serve within the last 30 s, this one included.",
                self.replicas.len(),
            ),
            (
                "nextbest_fleet_model_versions",
                "Distinct models (champion+challenger checksums) the live replicas serve; above 1 the fleet disagrees.",
                self.model_versions,
            ),
            (
                "nextbest_fleet_snapshot_versions",
                "Distinct feature snapshots (file checksums) the live replicas serve; above 1 the fleet disagrees.",
                self.snapshot_versions,
            ),
        ] {
            out.family(name, Kind::Gauge, help).sample(&[], v);
        }
    }
}

/// Takes this replica's report out of the fleet's view at a graceful stop, so the others stop
/// counting it at once rather than when it goes stale ([`LIVE_FOR`]). Only its own report: a
/// replica that refused to join, or has not checked its id, may share it with a live one.
pub async fn leave(fleet: &Fleet) {
    if fleet.refused().is_some() || fleet.identity().pending() {
        return;
    }
    let Ok(mut c) = fleet.connect(Duration::from_secs(1)).await else {
        return;
    };
    let ours: redis::RedisResult<Option<String>> = redis::cmd("HGET")
        .arg(SERVING)
        .arg(&fleet.origin)
        .query_async(&mut c)
        .await;
    let Ok(Some(report)) = ours else { return };
    if serde_json::from_str::<Report>(&report).is_ok_and(|r| r.instance == fleet.instance) {
        let _: redis::RedisResult<()> = redis::cmd("HDEL")
            .arg(SERVING)
            .arg(&fleet.origin)
            .query_async(&mut c)
            .await;
    }
}

/// How recent the last report under this replica's id may be and still be a live process's:
/// two rounds of reports. One older was this replica's own before it restarted.
const MAYBE_LIVE_MS: i64 = 2 * REPORT_EVERY.as_millis() as i64;

/// Reports what this replica serves and reads what the others do, every [`REPORT_EVERY`] and
/// at once when its log reaches another Redis run (once its id is checked, so the rounds that
/// check it stay [`REPORT_EVERY`] apart); the first rounds also tell whether another running
/// process has this replica's id.
pub(super) async fn report(fleet: Arc<Fleet>, registry: Arc<Registry>) {
    let mut con = None;
    let mut tick = tokio::time::interval(REPORT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Whether our report is in Redis: from then on, another process's report under our origin
    // was written after ours, by a process alive now (a stopped one writes nothing more).
    let mut reported = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = fleet.refill.changed.notified(), if !fleet.identity().pending() => {}
        }
        if fleet.refused().is_some() {
            return;
        }
        let c = match &mut con {
            Some(c) => c,
            None => match fleet.connect(Duration::from_secs(10)).await {
                Ok(c) => con.insert(c),
                Err(_) => {
                    fleet.identity().unreachable();
                    continue;
                }
            },
        };
        // Reports are stamped and judged on Redis's clock, so a replica whose own clock is
        // wrong neither drops the others from its view nor is dropped from theirs (nor takes
        // their reports out of the hash as long gone). The same reading measures the skew for
        // a replica that ships nothing.
        let before = now_ms();
        let now = match redis_time_ms(c).await {
            Ok(t) => t,
            Err(_) => {
                fleet.identity().unreachable();
                con = None;
                continue;
            }
        };
        fleet.observe_skew(now, before + (now_ms() - before) / 2);
        let Ok((run, _)) = super::shipper::server_run_id(c).await else {
            fleet.identity().unreachable();
            con = None;
            continue;
        };
        let serving = registry.serving();
        let ours = Report {
            origin: fleet.origin.clone(),
            model: serving
                .model
                .as_ref()
                .map(|m| format!("{m} {}", serving.version.as_deref().unwrap_or(""))),
            model_checksum: serving.checksum.clone(),
            snapshot_checksum: serving.snapshot.as_ref().map(|s| s.checksum.clone()),
            at_ms: now,
            instance: fleet.instance.clone(),
            started_ms: fleet.started_ms,
            host: fleet.host.clone(),
            pid: std::process::id(),
            shipped_to: Some(fleet.shipped_to()),
            shipping_refused: fleet.refusals.refusing("ship"),
            shipped_any: fleet.shipped_any(),
            expects: fleet.expected_peers(&run, now),
        };
        let Ok(json) = serde_json::to_string(&ours) else {
            continue;
        };
        let all: redis::RedisResult<(Option<String>, HashMap<String, String>)> = redis::pipe()
            .cmd("HGET")
            .arg(SERVING)
            .arg(&fleet.origin)
            .cmd("HSET")
            .arg(SERVING)
            .arg(&fleet.origin)
            .arg(json)
            .ignore()
            .cmd("HGETALL")
            .arg(SERVING)
            .query_async(c)
            .await;
        match all {
            Ok((before, all)) => {
                let other = before
                    .and_then(|b| serde_json::from_str::<Report>(&b).ok())
                    .filter(|r| !r.instance.is_empty() && r.instance != fleet.instance);
                if reported {
                    if other.is_some_and(|t| shares_our_id(&fleet, &t)) {
                        return;
                    }
                    fleet.identity().checked();
                } else if other
                    .is_none_or(|r| now - r.at_ms > MAYBE_LIVE_MS || earlier_self(&fleet, &r))
                {
                    // No report under this id, or this replica's own before it restarted.
                    fleet.identity().checked();
                } else {
                    fleet.identity().suspect();
                }
                reported = true;
                let reports: Vec<Report> = all
                    .values()
                    .filter_map(|v| serde_json::from_str(v).ok())
                    .collect();
                let gone: Vec<&String> = reports
                    .iter()
                    .filter(|r| now - r.at_ms > FORGET_AFTER_MS)
                    .map(|r| &r.origin)
                    .collect();
                if !gone.is_empty() {
                    let _: redis::RedisResult<()> = redis::cmd("HDEL")
                        .arg(SERVING)
                        .arg(gone)
                        .query_async(c)
                        .await;
                }
                fleet.heard_from(&reports, &run, now);
                fleet.set_view(FleetView::of(reports, now));
            }
            Err(_) => {
                fleet.identity().unreachable();
                con = None;
            }
        }
    }
}

/// Whether a recent report under this replica's id is its own from before a restart: written
/// on this host by a process that is gone, or by one with this process's id (a container
/// restarted in its pod runs as the same pid). Otherwise it may be a live twin's, and the next
/// round of reports tells.
fn earlier_self(fleet: &Fleet, r: &Report) -> bool {
    r.host == fleet.host && r.pid != 0 && (r.pid == std::process::id() || process_gone(r.pid))
}

/// Whether process `pid` of this host is gone: no such process, or one that has exited and
/// waits to be reaped (a zombie, which a slow supervisor leaves for a second or two after a
/// `kill -9`).
fn process_gone(pid: u32) -> bool {
    let exists = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .is_some_and(|p| rustix::process::test_kill_process(p) != Err(rustix::io::Errno::SRCH));
    let zombie = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| Some(s.rsplit_once(')')?.1.trim_start().starts_with('Z')))
            .unwrap_or(false)
    };
    !exists || zombie()
}

/// A report's host as said in a refusal: `unknown` from a release that wrote none, and at
/// most 64 characters of what another process wrote.
pub(super) fn shown_host(host: &str) -> String {
    if host.is_empty() {
        return "unknown".into();
    }
    host.chars().take(64).collect()
}

/// A live process reports under this replica's origin besides this one (its report replaced
/// ours since our last): a data folder copied with its `replica-id` (a cloned volume, `cp -r`).
/// Each would skip the other's events as its own. The later started of the two refuses to join,
/// naming why, and returns true; the earlier says so and goes on.
fn shares_our_id(fleet: &Fleet, twin: &Report) -> bool {
    if (twin.started_ms, &twin.instance) < (fleet.started_ms, &fleet.instance) {
        fleet.refuse(format!(
            "another running replica has this replica's id ({}, on host {}): its data folder \
             was copied from this one's or the reverse, and each would skip the other's events \
             as its own. Give this replica a data folder of its own and restart it",
            fleet.origin,
            shown_host(&twin.host)
        ));
        return true;
    }
    tracing::error!(origin = %fleet.origin, twin_host = %shown_host(&twin.host), "another running replica, started after this one, has this replica's id (a copied data folder); it refuses to join the fleet");
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_is_gone_once_it_exits_even_before_it_is_reaped() {
        let mut live = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        assert!(!process_gone(live.id()));
        live.kill().unwrap();
        // Killed and not yet waited for: a zombie until reaped.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !process_gone(live.id()) {
            assert!(
                std::time::Instant::now() < deadline,
                "a killed child never read as gone"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let pid = live.id();
        live.wait().unwrap();
        assert!(process_gone(pid));
        assert!(!process_gone(std::process::id()));
    }

    fn report(origin: &str, model: &str, snapshot: &str, at_ms: i64) -> Report {
        Report {
            origin: origin.into(),
            model: Some("demo".into()),
            model_checksum: Some(model.into()),
            snapshot_checksum: Some(snapshot.into()),
            at_ms,
            instance: String::new(),
            started_ms: 0,
            host: String::new(),
            pid: 0,
            shipped_to: None,
            shipping_refused: false,
            shipped_any: true,
            expects: Vec::new(),
        }
    }

    #[test]
    fn the_view_counts_the_versions_of_live_replicas_only() {
        let now = 1_000_000;
        let agree = FleetView::of(
            vec![
                report("b", "m1", "s1", now - 1_000),
                report("a", "m1", "s1", now),
                report("gone", "m0", "s0", now - 60_000),
            ],
            now,
        );
        assert!(agree.agree);
        assert_eq!(agree.replicas.len(), 2);
        assert_eq!(agree.replicas[0].origin, "a");
        let split = FleetView::of(
            vec![
                report("a", "m1", "s1", now),
                report("b", "m2", "s1", now),
                report("c", "m2", "s2", now),
            ],
            now,
        );
        assert!(!split.agree);
        assert_eq!((split.model_versions, split.snapshot_versions), (2, 2));
        let mut out = Exposition::new();
        out.collect(&split);
        assert!(out.finish().contains("nextbest_fleet_model_versions 2\n"));
    }
}
