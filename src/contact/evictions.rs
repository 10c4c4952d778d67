//! Customers whose history the contact state dropped, by cause. A drop to stay within
//! `--contact-memory-mb` forgets a cap or a cool-down, so the log says it when it starts, and
//! again at most every [`SAY_EVERY`] while it goes on, beside the alert the counter feeds.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// The least time between two log lines about histories dropped for the budget.
pub const SAY_EVERY: Duration = Duration::from_secs(600);

/// The counts, and when the log last spoke of budget drops.
#[derive(Debug)]
pub(super) struct Evictions {
    /// To stay within the memory budget: the customer is then shown offers as if new.
    budget: AtomicU64,
    /// Past the horizon: nothing a policy reads was lost.
    expired: AtomicU64,
    /// The histories' share of the budget, for the log line.
    histories_budget_bytes: u64,
    epoch: Instant,
    /// Milliseconds after `epoch` of the last line, plus one (0: never said).
    said_at: AtomicU64,
}

impl Evictions {
    /// No drops yet, under a budget of `histories_budget_bytes` for histories (three quarters
    /// of `--contact-memory-mb`).
    pub fn new(histories_budget_bytes: u64) -> Self {
        Evictions {
            budget: AtomicU64::new(0),
            expired: AtomicU64::new(0),
            histories_budget_bytes,
            epoch: Instant::now(),
            said_at: AtomicU64::new(0),
        }
    }

    /// Counts a history dropped for the budget, saying so when it is due.
    pub fn over_budget(&self) {
        let total = self.budget.fetch_add(1, Relaxed) + 1;
        if self.due(self.epoch.elapsed()) {
            tracing::warn!(
                dropped = total,
                histories_budget_bytes = self.histories_budget_bytes,
                "customers' contact histories are being dropped to stay within --contact-memory-mb: \
                 they are shown offers as if new (a cap or a cool-down forgotten); raise \
                 --contact-memory-mb and the pod's memory with it"
            );
        }
    }

    /// Counts a history dropped past the horizon.
    pub fn expired(&self) {
        self.expired.fetch_add(1, Relaxed);
    }

    /// Dropped for the budget, and past the horizon.
    pub fn counts(&self) -> (u64, u64) {
        (self.budget.load(Relaxed), self.expired.load(Relaxed))
    }

    /// Whether a line is due at `since_epoch`: the first time, then [`SAY_EVERY`] after the
    /// last; one caller wins when several race.
    fn due(&self, since_epoch: Duration) -> bool {
        let now = since_epoch.as_millis() as u64 + 1;
        let last = self.said_at.load(Relaxed);
        let quiet = SAY_EVERY.as_millis() as u64;
        (last == 0 || now >= last + quiet)
            && self
                .said_at
                .compare_exchange(last, now, Relaxed, Relaxed)
                .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_drops_are_said_at_the_first_then_at_most_every_ten_minutes() {
        let e = Evictions::new(1 << 20);
        let at = |s: u64| Duration::from_secs(s);
        assert!(e.due(at(0)), "the first drop is said");
        assert!(!e.due(at(1)));
        assert!(!e.due(at(599)));
        assert!(e.due(at(600)), "ten minutes on, said again");
        assert!(!e.due(at(601)));
        assert!(e.due(at(5_000)));
    }

    #[test]
    fn every_drop_counts_by_its_cause() {
        let e = Evictions::new(1 << 20);
        for _ in 0..3 {
            e.over_budget();
        }
        e.expired();
        assert_eq!(e.counts(), (3, 1));
    }
}
