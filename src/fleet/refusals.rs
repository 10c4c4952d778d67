//! What the fleet says of Redis's answers: an outage and its end, and which operations Redis
//! is refusing (a write out of memory, a new connection with a password it no longer takes).
//! A refusal is said when it starts (and once a minute while it lasts); "takes commands again"
//! is said once each refused operation has gone through, shipping has caught up with what
//! was held back, and no refusal has come for [`QUIET_MS`]: not when another kind that was
//! never refused goes through (reads go on while Redis refuses writes; connections already
//! open go on while it refuses new ones), nor between the refusals of a Redis at its memory
//! limit, which takes a batch now and then.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

use super::{now_ms, Fleet};

/// How long refused operations must have gone through, with none refused, before the log
/// says Redis takes commands again.
const QUIET_MS: i64 = 5_000;
/// How often a refusal that goes on is said again.
const REMIND_MS: i64 = 60_000;
/// No time: nothing cleared, or nothing said.
const NEVER: i64 = i64::MIN / 2;

impl Fleet {
    /// Redis answered `what`.
    pub(super) fn exchanged(&self, what: &'static str, now_ms: i64) {
        if self.failing.swap(false, Relaxed) {
            *self.last_failure.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
        self.refusals.took(what, now_ms);
        self.answered(now_ms);
    }

    /// Shipping found the log shipped to its end: a refusal of shipping held nothing back.
    pub(super) fn nothing_to_ship(&self, now_ms: i64) {
        self.refusals.took("ship", now_ms);
    }

    /// Redis answered, which ends an outage but not a refusal of what is still held back.
    pub(super) fn answered(&self, now_ms: i64) {
        self.last_exchange_ms.store(now_ms, Relaxed);
        self.connected.store(true, Relaxed);
        if self.outage_logged.swap(false, Relaxed) {
            tracing::info!(redis = %super::redact(&self.config.url), "redis reachable again; replication resumes");
        }
        if self.refusals.settled(now_ms) {
            tracing::info!(
                redis = %super::redact(&self.config.url),
                "redis takes commands again; replication resumes"
            );
        }
    }

    /// A new connection, by the password file's password now: its success ends a refusal of
    /// the credentials.
    pub(super) async fn connect(
        &self,
        response: Duration,
    ) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
        let c = self.link.connect(response).await?;
        self.refusals.took("connect", now_ms());
        Ok(c)
    }

    /// What Redis last failed with, until it answers again: what `/readyz` says a replica
    /// waits for.
    pub fn last_failure(&self) -> Option<String> {
        if !self.failing.load(Relaxed) {
            return None;
        }
        self.last_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(super) fn failed(&self, what: &'static str, e: &redis::RedisError) {
        // Redis answered, refusing the command (out of memory, a read-only replica) or the
        // credentials: it is reachable, so this is no outage to flap in and out of, and a wrong
        // password is a setting to fix, not a network to wait for; said at most once a minute.
        // A password missing altogether is refused by the first command, as `NOAUTH`.
        let refused = match e.kind() {
            redis::ErrorKind::AuthenticationFailed => Some("credentials"),
            _ if matches!(e.code(), Some("NOAUTH" | "WRONGPASS")) => Some("credentials"),
            // The same inside a pipeline's failures (the first command of a connection).
            _ if e.to_string().contains("\"NOAUTH\"") => Some("credentials"),
            redis::ErrorKind::Server(_) | redis::ErrorKind::Extension => Some("command"),
            _ => None,
        };
        let redis = super::redact(&self.config.url);
        let why = match refused {
            Some("credentials") => format!("{redis} refused the credentials: {e}"),
            Some(_) => format!("{redis} refused a command: {e}"),
            None => format!("{redis} unreachable: {e}{}", self.tls_hint(e)),
        };
        *self.last_failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
        self.failing.store(true, Relaxed);
        if let Some(refused) = refused {
            if self.refusals.refused(what, now_ms()) {
                if refused == "credentials" && self.config.password_file.is_some() {
                    tracing::error!(error = %e, during = what, %redis, "redis refused the credentials (the user in --redis, the password in --redis-password-file, read again before each connection); events are taken locally and shipped once it takes them, retrying with backoff");
                } else if refused == "credentials" {
                    tracing::error!(error = %e, during = what, %redis, "redis refused the credentials in --redis (user or password, or none given where it asks for one); events are taken locally and shipped once it takes them, retrying with backoff");
                } else {
                    tracing::warn!(error = %e, during = what, %redis, "redis refused a command; events are taken locally and shipped once it takes them, retrying with backoff");
                }
            }
            return;
        }
        self.connected.store(false, Relaxed);
        if !self.outage_logged.swap(true, Relaxed) {
            let hint = self.tls_hint(e);
            tracing::warn!(error = %e, during = what, %redis, "redis unreachable{hint}; events are taken locally and shipped once it answers, retrying with backoff");
        }
    }

    /// A `rediss://` link that times out is most likely a TLS handshake to a port without TLS,
    /// which answers nothing: said, so the network is not all that is looked at.
    fn tls_hint(&self, e: &redis::RedisError) -> &'static str {
        if e.is_timeout() && self.config.url.starts_with("rediss://") {
            " (with rediss://, a port that does not speak TLS answers nothing to the handshake: \
             is it a TLS port?)"
        } else {
            ""
        }
    }
}

/// The operations refused since they last went through, and what the log has said of them.
pub(super) struct Refusals {
    /// Whether `ops` holds any: the check on every exchange takes no lock.
    any: AtomicBool,
    ops: Mutex<Vec<&'static str>>,
    /// When the refusal was last said (Unix ms); `NEVER` once its end has been said.
    said_ms: AtomicI64,
    /// Since when every refused operation has gone through (Unix ms), or `NEVER`.
    clear_since_ms: AtomicI64,
}

impl Default for Refusals {
    fn default() -> Self {
        Refusals {
            any: AtomicBool::new(false),
            ops: Mutex::new(Vec::new()),
            said_ms: AtomicI64::new(NEVER),
            clear_since_ms: AtomicI64::new(NEVER),
        }
    }
}

impl Refusals {
    /// Notes that Redis refused `what`; true when the log should say so now (the start of a
    /// refusal, or a minute since it was last said).
    pub fn refused(&self, what: &'static str, now_ms: i64) -> bool {
        let mut ops = self.ops.lock().unwrap_or_else(|p| p.into_inner());
        if !ops.contains(&what) {
            ops.push(what);
        }
        self.any.store(true, Relaxed);
        self.clear_since_ms.store(NEVER, Relaxed);
        let said = self.said_ms.load(Relaxed);
        (said == NEVER || now_ms - said >= REMIND_MS)
            && self
                .said_ms
                .compare_exchange(said, now_ms, Relaxed, Relaxed)
                .is_ok()
    }

    /// Whether Redis refuses `what` now.
    pub fn refusing(&self, what: &'static str) -> bool {
        self.any.load(Relaxed)
            && self
                .ops
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&what)
    }

    /// Notes that `what` went through; when it was the last refused, the quiet time before
    /// the end is said starts.
    pub fn took(&self, what: &'static str, now_ms: i64) {
        if !self.any.load(Relaxed) {
            return;
        }
        let mut ops = self.ops.lock().unwrap_or_else(|p| p.into_inner());
        let before = ops.len();
        ops.retain(|&o| o != what);
        if ops.len() < before && ops.is_empty() {
            self.clear_since_ms.store(now_ms, Relaxed);
        }
        self.any.store(!ops.is_empty(), Relaxed);
    }

    /// True once, when a refusal that was said has been over for [`QUIET_MS`].
    pub fn settled(&self, now_ms: i64) -> bool {
        let since = self.clear_since_ms.load(Relaxed);
        if since == NEVER || now_ms - since < QUIET_MS || self.any.load(Relaxed) {
            return false;
        }
        self.clear_since_ms.store(NEVER, Relaxed);
        self.said_ms.swap(NEVER, Relaxed) != NEVER
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_refused_operation_going_through_ends_the_refusal() {
        let r = Refusals::default();
        r.took("read", 0);
        assert!(!r.settled(QUIET_MS), "nothing refused: nothing to end");
        assert!(r.refused("ship", 0), "said when it starts");
        r.took("read", 10);
        assert!(!r.settled(10 + QUIET_MS), "reads never stopped");
        assert!(!r.refused("connect", 20), "one refusal, said once");
        r.took("ship", 30);
        assert!(
            !r.settled(30 + QUIET_MS),
            "new connections are still refused"
        );
        r.took("connect", 40);
        assert!(!r.settled(40 + QUIET_MS - 1), "not before the quiet time");
        assert!(r.settled(40 + QUIET_MS));
        assert!(!r.settled(50 + QUIET_MS), "said once");
    }

    #[test]
    fn a_redis_that_refuses_now_and_then_is_said_to_take_commands_only_once_it_stops() {
        let r = Refusals::default();
        assert!(r.refused("ship", 0));
        // At its limit, Redis takes a batch, then refuses the next: no end said, and the
        // refusal is not said again before a minute.
        let mut t = 0;
        while t < REMIND_MS - 1_000 {
            r.took("ship", t + 100);
            assert!(!r.settled(t + 100));
            assert!(!r.refused("ship", t + 1_000));
            t += 1_000;
        }
        assert!(r.refused("ship", REMIND_MS), "a reminder once a minute");
        r.took("ship", REMIND_MS + 100);
        assert!(
            r.settled(REMIND_MS + 100 + QUIET_MS),
            "the end, once it holds"
        );
        // A new refusal after the end was said is said at once.
        assert!(r.refused("ship", REMIND_MS + 200 + QUIET_MS));
    }
}
