//! What the fleet says of Redis's answers: an outage and its end, and which operations Redis
//! is refusing (a write out of memory, a new connection with a password it no longer takes), so
//! the log says "takes commands again" only once each of them has gone through, not when
//! another kind that was never refused does (reads go on while Redis refuses writes;
//! connections already open go on while it refuses new ones).

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

use super::{now_ms, Fleet};

impl Fleet {
    /// Redis answered `what`.
    pub(super) fn exchanged(&self, what: &'static str, now_ms: i64) {
        self.last_exchange_ms.store(now_ms, Relaxed);
        self.connected.store(true, Relaxed);
        if self.failing.swap(false, Relaxed) {
            *self.last_failure.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
        if self.outage_logged.swap(false, Relaxed) {
            tracing::info!(redis = %super::redact(&self.config.url), "redis reachable again; replication resumes");
        }
        self.took(what);
    }

    /// `what` went through: the end of the refusals when it was the last refused.
    fn took(&self, what: &'static str) {
        if self.refusals.took(what) {
            tracing::info!(
                during = what,
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
        self.took("connect");
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
            None => format!("{redis} unreachable: {e}"),
        };
        *self.last_failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
        self.failing.store(true, Relaxed);
        if let Some(refused) = refused {
            self.refusals.refused(what);
            let now = now_ms();
            let last = self.refusal_logged_ms.load(Relaxed);
            if now - last >= 60_000
                && self
                    .refusal_logged_ms
                    .compare_exchange(last, now, Relaxed, Relaxed)
                    .is_ok()
            {
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
            tracing::warn!(error = %e, during = what, %redis, "redis unreachable; events are taken locally and shipped once it answers, retrying with backoff");
        }
    }
}

/// The operations refused since they last went through.
#[derive(Default)]
pub(super) struct Refusals {
    /// Whether `ops` holds any: the check on every exchange takes no lock.
    any: AtomicBool,
    ops: Mutex<Vec<&'static str>>,
}

impl Refusals {
    /// Notes that Redis refused `what`.
    pub fn refused(&self, what: &'static str) {
        let mut ops = self.ops.lock().unwrap_or_else(|p| p.into_inner());
        if !ops.contains(&what) {
            ops.push(what);
        }
        self.any.store(true, Relaxed);
    }

    /// Notes that `what` went through; true when that was the last refused operation.
    pub fn took(&self, what: &'static str) -> bool {
        if !self.any.load(Relaxed) {
            return false;
        }
        let mut ops = self.ops.lock().unwrap_or_else(|p| p.into_inner());
        let before = ops.len();
        ops.retain(|&o| o != what);
        let cleared = ops.len() < before && ops.is_empty();
        self.any.store(!ops.is_empty(), Relaxed);
        cleared
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_refused_operation_going_through_ends_the_refusal() {
        let r = Refusals::default();
        assert!(!r.took("read"), "nothing refused: nothing to end");
        r.refused("ship");
        assert!(!r.took("read"), "reads never stopped");
        r.refused("connect");
        assert!(!r.took("ship"), "new connections are still refused");
        assert!(r.took("connect"));
        assert!(!r.took("connect"), "said once");
    }
}
