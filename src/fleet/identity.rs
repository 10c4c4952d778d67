//! Whether a replica's id is its own alone. A data folder copied from a running replica's (a
//! cloned volume, `cp -r`) carries its `replica-id`, and each of the two would skip the other's
//! events as its own. The fleet's reports tell ([`super::reports`]): until they have, the
//! replica takes no event, is not ready, and ships nothing.

use std::sync::atomic::{AtomicU8, Ordering::Relaxed};
use std::time::Duration;

use tokio::sync::Notify;

/// No answer yet.
const PENDING: u8 = 0;
/// No other running process has this id.
const CHECKED: u8 = 1;
/// Redis could not be asked.
const UNREACHABLE: u8 = 2;

/// What the reports have said of this replica's id so far.
#[derive(Default)]
pub struct Identity {
    state: AtomicU8,
    /// Wakes the requests waiting for an answer.
    settled: Notify,
}

impl Identity {
    /// True until this replica knows no other running process has its id: an event taken
    /// meanwhile by such a twin would be skipped by the other as its own, so events wait for
    /// the answer (a second or two; a round of reports, 5 s, when the id's last report is so
    /// recent it may be a live twin's). A replica that cannot reach Redis at start takes
    /// events locally, as in any outage.
    pub fn pending(&self) -> bool {
        self.state.load(Relaxed) == PENDING
    }

    /// Waits at most `wait` for [`Identity::pending`] to be over; false when it is not.
    pub async fn settled(&self, wait: Duration) -> bool {
        let until = tokio::time::Instant::now() + wait;
        loop {
            let settled = self.settled.notified();
            tokio::pin!(settled);
            settled.as_mut().enable();
            if !self.pending() {
                return true;
            }
            if tokio::time::timeout_at(until, settled).await.is_err() {
                return !self.pending();
            }
        }
    }

    /// Whether the reports said no other running process has this id: what shipping waits
    /// for, also when events were taken locally while Redis was away (a copy's events shipped
    /// under the original's id would be skipped by the original).
    pub fn known_alone(&self) -> bool {
        self.state.load(Relaxed) == CHECKED
    }

    /// A recent report under this id may be a live twin's: events wait again, until the next
    /// round of reports tells.
    pub(super) fn suspect(&self) {
        let _ = self
            .state
            .compare_exchange(UNREACHABLE, PENDING, Relaxed, Relaxed);
    }

    /// The reports say no other running process has this id.
    pub(super) fn checked(&self) {
        self.state.store(CHECKED, Relaxed);
        self.settled.notify_waiters();
    }

    /// Redis could not be asked: events are taken locally until it can.
    pub(super) fn unreachable(&self) {
        let _ = self
            .state
            .compare_exchange(PENDING, UNREACHABLE, Relaxed, Relaxed);
        self.settled.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_moves_the_state_and_redis_away_does_not_undo_one() {
        let id = Identity::default();
        assert!(id.pending() && !id.known_alone());
        id.unreachable();
        assert!(
            !id.pending() && !id.known_alone(),
            "events taken locally, nothing shipped"
        );
        id.suspect();
        assert!(
            id.pending(),
            "a recent report under this id: events wait again"
        );
        id.checked();
        assert!(!id.pending() && id.known_alone());
        id.unreachable();
        id.suspect();
        assert!(id.known_alone(), "an answer stands through an outage");
    }
}
