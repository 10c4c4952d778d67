//! Measures the replication backlog from the log itself, every second, whether Redis answers
//! or not: the record bytes after the shipper's position (segment sizes against the cursor,
//! nothing read) and the accept time of the first record not yet shipped (one record read).
//! During an outage the shipper waits on Redis; this timer does not, so the figures grow with
//! the log instead of freezing at their last value.
//!
//! It only reads the log through its reading API and writes the figures; it ships nothing.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use super::Fleet;
use crate::contact::log::{self, Position};
use crate::contact::Event;

/// How often the backlog is measured.
pub const EVERY: Duration = Duration::from_secs(1);

/// What the log holds after a position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backlog {
    /// Record bytes after the position.
    pub bytes: u64,
    /// When the first event after it was accepted (Unix ms); its own time for a record written
    /// before accept times were stamped; `None` when there is none.
    pub oldest_ms: Option<i64>,
}

/// Measures the log in `dir` after `from`.
pub fn measure(dir: &Path, from: Position) -> Result<Backlog, log::LogError> {
    let bytes = log::unread_bytes(dir, from)?;
    let mut oldest_ms = None;
    if bytes > 0 {
        let mut at = from;
        // A position at the end of a finished segment reads nothing and moves on to the next:
        // a few steps at most.
        for _ in 0..4 {
            let progress = log::read_from(dir, at, 64 * 1024, |payload, _| {
                oldest_ms = Event::decode_accepted(payload)
                    .ok()
                    .map(|(e, accepted)| accepted.unwrap_or(e.ts_ms));
                false
            })?;
            if oldest_ms.is_some() || progress.next == at {
                break;
            }
            at = progress.next;
        }
    }
    Ok(Backlog { bytes, oldest_ms })
}

/// Runs until the process ends.
pub async fn backlog(fleet: Arc<Fleet>, dir: PathBuf) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let cursor = fleet.cursor();
        let dir = dir.clone();
        match tokio::task::spawn_blocking(move || measure(&dir, cursor)).await {
            Ok(Ok(b)) => {
                fleet.backlog_bytes.store(b.bytes, Relaxed);
                fleet
                    .backlog_oldest_ms
                    .store(b.oldest_ms.unwrap_or(0), Relaxed);
            }
            Ok(Err(e)) => tracing::debug!(error = %e, "measuring the replication backlog failed"),
            Err(e) => tracing::debug!(error = %e, "the backlog task failed"),
        }
    }
}
