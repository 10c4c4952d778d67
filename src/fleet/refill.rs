//! **Whether Redis holds the fleet's events yet**, for a replica catching up. A Redis that
//! restarted without its data holds none of them until every running replica has noticed
//! its new run id and shipped its whole log to it again; a replica reading it before then would
//! say it is caught up without the others' dismisses and complaints.
//!
//! So each replica says in its report ([`super::reports`]) which Redis run its whole log has
//! reached (`shipped_to`), at once when that changes, and whom it heard from on an earlier
//! Redis run and not yet on this one (`expects`: a replica stalled through the restart has not
//! reported yet); a catching-up replica says it is caught up only after a read of every
//! stream to its end that began once each live report names the Redis run it reads and every
//! replica expected has reported (or was last heard from [`super::reports::LIVE_FOR`] ago).
//! Until a Redis has been up [`REFILL_MS`], a replica that cannot tell it kept the fleet's
//! events (it lost this replica's, or this replica shipped it none) also waits, for the others
//! to notice the restart and say they are shipping again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

use super::reports::{live, Expected, Report, SERVING};
use super::{redis_time_ms, Fleet};

/// How long after a restart that may have lost the fleet's events a Redis is taken to have
/// been noticed by every running replica: each reconnects within its longest backoff (2 s) or
/// asks the run id within a second, and then reports that it ships its log again.
pub(super) const REFILL_MS: i64 = 5_000;
/// Shortest time between two reads of the reports while waiting on them.
const REPORTS_POLL: Duration = Duration::from_millis(100);
/// How often a wait on other replicas that goes on is said again.
const REMIND_MS: i64 = 30_000;

/// The refill's state, shared by the shipper (which learns the Redis run), the reporter
/// (which says how far this replica's log got) and the consumer (which waits on the others).
#[derive(Default)]
pub(super) struct Refill {
    /// The Redis run the shipper talks to, once it has asked.
    run: Mutex<Option<String>>,
    /// Until when (ms since the link started, on the monotonic clock) catching up waits for
    /// the other replicas to notice a Redis restart.
    until_ms: AtomicI64,
    /// The Redis run this replica's whole log has been shipped to.
    shipped_to: Mutex<Option<String>>,
    /// Whether this replica has shipped an event of its own (this process, or the one before
    /// on this data folder): a Redis that lost its events lost some of this replica's.
    shipped_any: AtomicBool,
    /// Wakes the reporter when `shipped_to` or `shipped_any` changes.
    pub(super) changed: tokio::sync::Notify,
    /// What the looks at the reports found, and said.
    said: Mutex<Said>,
    /// The other replicas heard from lately, by origin: the reports' writer remembers them
    /// across a Redis restart (see [`Report::expects`]).
    peers: Mutex<HashMap<String, Peer>>,
    /// When the reports were last read (ms since the link started; 0: never).
    looked_ms: AtomicI64,
    /// Whether that reading found every other replica's log shipped.
    done: AtomicBool,
}

/// Another replica as last heard from.
struct Peer {
    host: String,
    /// Whether it had shipped an event of its own: one that had not has none to ship again.
    shipped_any: bool,
    /// When its last report was written (Unix ms, Redis's clock).
    at_ms: i64,
    /// The Redis run it was read from.
    run: String,
}

/// What the looks at the other replicas' reports found, and what the log said of it.
#[derive(Default)]
struct Said {
    /// Those still shipping at the last look, by origin and as people find them (`/readyz`
    /// names them).
    waiting: Vec<(String, String)>,
    /// Since when some have been waited for (ms since the link started).
    since_ms: Option<i64>,
    /// When the wait was last said.
    reminded_ms: i64,
    /// Those not waited for because Redis refuses their shipments, each said once.
    refused: std::collections::BTreeSet<String>,
}

impl Fleet {
    /// What the shipper found of the Redis it talks to, up `uptime_s` seconds: it holds this
    /// replica's last shipped event (`Some(true)`); it restarted without it (`Some(false)`), so
    /// without the fleet's, which the other replicas ship again once they notice; or nothing
    /// this replica shipped tells (`None`: a new data folder, or no event yet). The last two
    /// wait for the others to notice.
    pub(super) fn redis_kept(&self, kept: Option<bool>, uptime_s: u64) {
        let why = match kept {
            Some(true) => return,
            Some(false) => {
                "redis restarted without this replica's events, so without the other replicas' too"
            }
            None => {
                "redis started lately, and this replica shipped it nothing that tells whether it kept the fleet's events"
            }
        };
        self.wait_for_notice(uptime_s, why);
    }

    /// Waits, before saying caught up, until Redis has been up [`REFILL_MS`].
    fn wait_for_notice(&self, uptime_s: u64, why: &str) {
        if self.caught_up() {
            return;
        }
        // `uptime_in_seconds` counts whole seconds of the clock crossed since Redis started,
        // up to one more than it has been up: the wait takes the least it may have been.
        let up_ms = uptime_s.saturating_sub(1).saturating_mul(1_000) as i64;
        let left = REFILL_MS.saturating_sub(up_ms);
        if left > 0 {
            tracing::info!(
                uptime_s,
                wait_ms = left,
                "{why}: waiting until it has been up {} s, for every other replica to notice and ship its events again, before saying caught up",
                REFILL_MS / 1_000
            );
            self.refill
                .until_ms
                .store(self.since_start_ms() + left, Relaxed);
        }
    }

    /// The shipper has asked Redis its run.
    pub(super) fn redis_run_checked(&self, run: &str) {
        *self.refill.run.lock().unwrap() = Some(run.to_owned());
    }

    /// The shipper read this replica's log to its end with nothing held back, shipping to
    /// Redis run `run`: the whole log is there.
    pub(super) fn shipped_whole_log(&self, run: Option<&str>) {
        let mut to = self.refill.shipped_to.lock().unwrap();
        if to.as_deref() != run {
            *to = run.map(str::to_owned);
            drop(to);
            self.refill.changed.notify_one();
        }
    }

    /// Redis lacks part of this replica's log until the shipper reaches its end again: it goes
    /// back to the log's start, or Redis refused a shipment.
    pub(super) fn shipping_again(&self) {
        if self.refill.shipped_to.lock().unwrap().take().is_some() {
            self.refill.changed.notify_one();
        }
    }

    /// The shipper shipped an event of this replica's, or found one shipped before.
    pub(super) fn shipped_an_event(&self) {
        if !self.refill.shipped_any.swap(true, Relaxed) {
            self.refill.changed.notify_one();
        }
    }

    /// Whether this replica has shipped an event of its own (see [`Report::shipped_any`]).
    pub(super) fn shipped_any(&self) -> bool {
        self.refill.shipped_any.load(Relaxed)
    }

    /// What this replica's report says of its log (see [`Report::shipped_to`]).
    pub(super) fn shipped_to(&self) -> String {
        self.refill
            .shipped_to
            .lock()
            .unwrap()
            .clone()
            .unwrap_or_default()
    }

    /// Whether the shipper has checked the Redis run and any wait for the others to notice a
    /// restart is over.
    pub(super) fn redis_settled(&self) -> bool {
        self.refill.run.lock().unwrap().is_some() && self.noticed()
    }

    /// Whether the wait for the other replicas to notice a Redis restart, if any, is over.
    pub(super) fn noticed(&self) -> bool {
        self.since_start_ms() >= self.refill.until_ms.load(Relaxed)
    }

    /// Whether every other live replica says its whole log is in the Redis run the shipper
    /// talks to, read from the reports at most every [`REPORTS_POLL`] (between, the last
    /// reading's answer: it was true before anything read after it). Names those still
    /// shipping for `/readyz`; logs them when they change and every [`REMIND_MS`] while the
    /// wait lasts, and warns of each given up on: one whose shipments Redis refuses (its
    /// events cannot come), one that stopped reporting (they come when it is back).
    pub(super) async fn others_shipped(&self, c: &mut redis::aio::MultiplexedConnection) -> bool {
        let now = self.since_start_ms();
        let looked = self.refill.looked_ms.load(Relaxed);
        if looked > 0 && now - looked < REPORTS_POLL.as_millis() as i64 {
            return self.refill.done.load(Relaxed);
        }
        self.refill.looked_ms.store(now.max(1), Relaxed);
        let Some(run) = self.refill.run.lock().unwrap().clone() else {
            return false;
        };
        let read: redis::RedisResult<(i64, HashMap<String, String>)> = async {
            let at = redis_time_ms(c).await?;
            let all: HashMap<String, String> =
                redis::cmd("HGETALL").arg(SERVING).query_async(c).await?;
            Ok((at, all))
        }
        .await;
        let Ok((at, all)) = read else { return false };
        let reports: Vec<Report> = all
            .values()
            .filter_map(|r| serde_json::from_str(r).ok())
            .collect();
        let seen = judge(&reports, &self.origin, &run, at);
        let mut said = self.refill.said.lock().unwrap();
        for (origin, peer) in &seen.refused {
            if said.refused.insert(origin.clone()) {
                tracing::warn!(replica = %peer, "redis refuses the shipments of replica {peer}, so its events cannot reach this replica: not waiting for them (its log says why Redis refuses it)");
            }
        }
        for (origin, peer) in &said.waiting {
            if ![&seen.waiting, &seen.refused, &seen.shipped]
                .iter()
                .any(|list| list.iter().any(|(o, _)| o == origin))
            {
                tracing::warn!(replica = %peer, "replica {peer} stopped reporting before its whole log was in this Redis: saying caught up without the events it has not shipped; they arrive when it is back");
            }
        }
        if !seen.waiting.is_empty()
            && (said.waiting != seen.waiting || now - said.reminded_ms >= REMIND_MS)
        {
            let waited_s = (now - said.since_ms.unwrap_or(now)) / 1_000;
            let (replicas, n) = (shown(&seen.waiting), seen.waiting.len());
            if waited_s * 1_000 < REMIND_MS {
                tracing::info!(%replicas, waited_s, "waiting for {n} other replica(s) to ship their whole log to this Redis before saying caught up");
            } else {
                tracing::warn!(%replicas, waited_s, "still waiting for {n} other replica(s) to ship their whole log to this Redis before saying caught up (their logs say what holds them back)");
            }
            said.reminded_ms = now;
        }
        if seen.waiting.is_empty() {
            said.since_ms = None;
        } else if said.since_ms.is_none() {
            said.since_ms = Some(now);
        }
        let done = seen.waiting.is_empty();
        said.waiting = seen.waiting;
        self.refill.done.store(done, Relaxed);
        done
    }

    /// Notes the reports read from Redis run `run` at `now_ms` (Redis's clock): each other
    /// replica's is remembered with that run; one heard from on this run before and missing
    /// now left (a graceful stop takes its report out), and one not heard from for
    /// [`super::reports::LIVE_FOR`] is gone. Those heard from on an earlier run alone stay:
    /// Redis restarted.
    pub(super) fn heard_from(&self, reports: &[Report], run: &str, now_ms: i64) {
        let mut peers = self.refill.peers.lock().unwrap();
        peers.retain(|origin, p| {
            live(p.at_ms, now_ms) && (p.run != run || reports.iter().any(|r| r.origin == *origin))
        });
        for r in reports
            .iter()
            .filter(|r| r.origin != self.origin && live(r.at_ms, now_ms))
        {
            peers.insert(
                r.origin.clone(),
                Peer {
                    host: r.host.clone(),
                    shipped_any: r.shipped_any,
                    at_ms: r.at_ms,
                    run: run.to_owned(),
                },
            );
        }
    }

    /// The replicas heard from lately on another Redis run than `run` and not on this one,
    /// that had shipped events of their own (one that had not, say a replica replaced on a
    /// new data folder before taking any, has nothing to ship again), for this replica's
    /// report (see [`Report::expects`]).
    pub(super) fn expected_peers(&self, run: &str, now_ms: i64) -> Vec<Expected> {
        let peers = self.refill.peers.lock().unwrap();
        let mut expected: Vec<Expected> = peers
            .iter()
            .filter(|(_, p)| p.shipped_any && p.run != run && live(p.at_ms, now_ms))
            .map(|(origin, p)| Expected {
                origin: origin.clone(),
                host: p.host.clone(),
                at_ms: p.at_ms,
            })
            .collect();
        expected.sort_by(|a, b| a.origin.cmp(&b.origin));
        expected
    }

    /// What `/readyz` says while the refill holds the replica back, if it does.
    pub(super) fn refill_detail(&self) -> Option<String> {
        if !self.noticed() {
            return Some(format!(
                "waiting for the other replicas to ship their events again to a Redis that may \
                 have restarted without them (until it has been up {} s)",
                REFILL_MS / 1_000
            ));
        }
        let said = self.refill.said.lock().unwrap();
        (!said.waiting.is_empty()).then(|| {
            format!(
                "waiting for other replicas to ship their whole log to this Redis: {}",
                shown(&said.waiting)
            )
        })
    }
}

/// The other live replicas, each by origin and as people find it, by what their reports say
/// of the Redis run `run`.
#[derive(Debug, Default, PartialEq)]
struct Seen {
    /// Whose whole log is there.
    shipped: Vec<(String, String)>,
    /// Still shipping it (or not yet noticed that Redis restarted, or not yet reporting).
    waiting: Vec<(String, String)>,
    /// Whose shipments Redis refuses.
    refused: Vec<(String, String)>,
}

/// Replicas as people find them, in one line.
fn shown(peers: &[(String, String)]) -> String {
    peers
        .iter()
        .map(|(_, shown)| shown.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Sorts the live replicas among `reports` (read at `now_ms`, Redis's clock) other than
/// `origin` by whether their whole log is in Redis run `run`. A report from a release that did
/// not say (`shipped_to` absent) counts as shipped.
fn judge(reports: &[Report], origin: &str, run: &str, now_ms: i64) -> Seen {
    let mut seen = Seen::default();
    for r in reports
        .iter()
        .filter(|r| r.origin != origin && live(r.at_ms, now_ms))
    {
        let peer = (
            r.origin.clone(),
            format!(
                "{} (host {})",
                r.origin,
                super::reports::shown_host(&r.host)
            ),
        );
        match r.shipped_to.as_deref() {
            None => seen.shipped.push(peer),
            Some(to) if to == run => seen.shipped.push(peer),
            Some(_) if r.shipping_refused => seen.refused.push(peer),
            Some(_) => seen.waiting.push(peer),
        }
    }
    // Replicas the live ones heard from before Redis restarted, and that have not reported to
    // it since: stalled through the restart, they may still ship their logs.
    let reporting = |origin: &str| {
        reports
            .iter()
            .any(|r| r.origin == origin && live(r.at_ms, now_ms))
    };
    let mut expected: Vec<&Expected> = reports
        .iter()
        .filter(|r| live(r.at_ms, now_ms))
        .flat_map(|r| &r.expects)
        .filter(|e| e.origin != origin && live(e.at_ms, now_ms) && !reporting(&e.origin))
        .collect();
    expected.sort_by(|a, b| a.origin.cmp(&b.origin));
    expected.dedup_by(|a, b| a.origin == b.origin);
    seen.waiting.extend(expected.iter().map(|e| {
        let shown = format!(
            "{} (host {}, not yet reporting to this Redis)",
            e.origin,
            super::reports::shown_host(&e.host)
        );
        (e.origin.clone(), shown)
    }));
    for list in [&mut seen.shipped, &mut seen.waiting, &mut seen.refused] {
        list.sort();
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(origin: &str, shipped_to: Option<&str>, at_ms: i64) -> Report {
        Report {
            origin: origin.into(),
            model: None,
            model_checksum: None,
            snapshot_checksum: None,
            at_ms,
            instance: String::new(),
            started_ms: 0,
            host: format!("{origin}-pod"),
            pid: 0,
            shipped_to: shipped_to.map(str::to_owned),
            shipping_refused: false,
            shipped_any: true,
            expects: Vec::new(),
        }
    }

    fn named(origins: &[&str]) -> Vec<(String, String)> {
        origins
            .iter()
            .map(|o| (o.to_string(), format!("{o} (host {o}-pod)")))
            .collect()
    }

    #[test]
    fn only_live_others_whose_log_is_not_in_this_run_hold_a_replica_back() {
        let now = 1_000_000;
        let mut refused = report("refused", Some(""), now);
        refused.shipping_refused = true;
        let reports = [
            report("me", Some(""), now),
            report("done", Some("run-2"), now),
            report("refilling", Some(""), now - 1_000),
            report("before-restart", Some("run-1"), now),
            report("gone", Some(""), now - 60_000),
            report("older-release", None, now),
            refused,
        ];
        assert_eq!(
            judge(&reports, "me", "run-2", now),
            Seen {
                shipped: named(&["done", "older-release"]),
                waiting: named(&["before-restart", "refilling"]),
                refused: named(&["refused"]),
            }
        );
        assert!(judge(&reports[..2], "me", "run-2", now).waiting.is_empty());
    }

    #[test]
    fn a_replica_heard_from_before_a_restart_is_waited_for_until_it_reports_or_goes_stale() {
        let now = 1_000_000;
        let expect = |origin: &str, at_ms: i64| Expected {
            origin: origin.into(),
            host: format!("{origin}-pod"),
            at_ms,
        };
        let mut a = report("a", Some("run-2"), now);
        a.expects = vec![
            expect("stalled", now - 3_000),
            expect("me", now - 3_000),
            expect("reporting", now - 3_000),
            expect("long-gone", now - 40_000),
        ];
        let reports = [a, report("reporting", Some("run-2"), now)];
        let seen = judge(&reports, "me", "run-2", now);
        assert_eq!(
            seen.waiting,
            [(
                "stalled".to_string(),
                "stalled (host stalled-pod, not yet reporting to this Redis)".to_string()
            )]
        );
        assert_eq!(seen.shipped, named(&["a", "reporting"]));
    }
}
