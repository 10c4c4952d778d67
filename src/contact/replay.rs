//! Rebuilding the contact state from the log at start, within the memory budget.
//!
//! Histories are built in a plain hash map (no copy-on-write per event, as the live cache
//! needs), but only up to [`replay_buffer_bytes`]: then they are folded into the cache, whose
//! budget evicts the least valuable customers as it does live, and the map starts again. A
//! customer whose events span two flushes gets the two parts merged, which gives the same
//! history as applying every event to one. So peak memory is the cache's budget plus this
//! buffer and the segment being read, however many customers the log holds.

use std::collections::HashMap;
use std::path::Path;

use super::apply::{Applier, Origin};
use super::event::Event;
use super::log::{self, LogError, ReplayReport, Segment};
use super::state::{changes_history, event_key, ContactState, History};

/// The replay buffer's size for a histories' budget of `budget` bytes: with one segment read
/// whole, the overhead on top of `--contact-memory-mb` while replaying. Each flush lets the
/// cache hold this much over its budget until it evicts (16 MiB cost 40 MiB of peak RSS, 2 MiB
/// cost 5), so it is a sixteenth of the budget; but each flush also merges every customer it
/// holds into the cache again (a clone of the history so far), so it is at least 2 MiB and
/// grows with the budget up to 64 MiB (1 M events of 100,000 customers replayed 2.3 times as
/// fast with 32 MiB as with 2: BENCHMARKS.md).
pub fn replay_buffer_bytes(budget: u64) -> u64 {
    (budget / 16).clamp(2 << 20, 64 << 20)
}

/// Histories being rebuilt, flushed into the state as the buffer fills.
struct Buffer<'s> {
    state: &'s ContactState,
    histories: HashMap<String, History, foldhash::fast::RandomState>,
    bytes: u64,
    limit: u64,
    horizon_ms: i64,
    now_ms: i64,
}

impl Buffer<'_> {
    fn apply(&mut self, e: &Event<'_>) {
        if !changes_history(e, self.horizon_ms, self.now_ms) {
            return;
        }
        let (horizon, now) = (self.horizon_ms, self.now_ms);
        let histories = &mut self.histories;
        let found = e.subject().with_key(move |key| {
            if !histories.contains_key(key) {
                histories.insert(key.to_owned(), History::default());
            }
            histories.get_mut(key).map(|h| (key.len(), h))
        });
        let Some((key_len, h)) = found.flatten() else {
            return;
        };
        let before = u64::from(h.weight(key_len));
        h.apply(e, horizon, now);
        self.bytes = (self.bytes + u64::from(h.weight(key_len))).saturating_sub(before);
        if self.bytes > self.limit {
            self.flush();
        }
    }

    fn flush(&mut self) {
        for (customer, h) in self.histories.drain() {
            self.state.merge_in(customer, h, self.now_ms);
        }
        // Let the cache evict down to its budget before the buffer fills again.
        self.state.settle();
        self.histories.shrink_to(0);
        self.bytes = 0;
    }
}

/// Replays the log in `dir` through `applier`: histories within the horizon (built in bulk
/// here), the ids of events that arrived within the de-duplication window, and every event to
/// the subscribers.
pub fn replay_into(
    dir: &Path,
    applier: &Applier,
    memory_budget: u64,
    now_ms: i64,
) -> Result<(ReplayReport, Vec<Segment>), LogError> {
    let state = applier.state();
    let dedupe_ttl = state.dedupe_ttl_ms();
    let mut buffer = Buffer {
        state,
        histories: HashMap::default(),
        bytes: 0,
        limit: replay_buffer_bytes(memory_budget).min(memory_budget.max(1 << 20)),
        horizon_ms: state.horizon_ms(),
        now_ms,
    };
    let result = log::replay(dir, |payload| {
        let (e, accepted) = Event::decode_accepted(payload).ok()?;
        buffer.apply(&e);
        applier.notify(&e, Origin::Replay, now_ms);
        if let Some(id) = e.event_id {
            // Ids are remembered from their arrival, as live ones are, not from the `ts` a
            // channel stamped (records of older builds carry no arrival: their `ts` stands in).
            if accepted.unwrap_or(e.ts_ms) >= now_ms.saturating_sub(dedupe_ttl) {
                state.claim(event_key(id), e.digest(), now_ms);
            }
        }
        Some(accepted.map_or(e.ts_ms, |a| a.max(e.ts_ms)))
    });
    buffer.flush();
    applier.settled();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_buffer_is_a_sixteenth_of_the_budget_between_2_and_64_mib() {
        const MIB: u64 = 1 << 20;
        assert_eq!(replay_buffer_bytes(12 * MIB), 2 * MIB);
        assert_eq!(replay_buffer_bytes(192 * MIB), 12 * MIB);
        assert_eq!(replay_buffer_bytes(384 * MIB), 24 * MIB);
        assert_eq!(replay_buffer_bytes(4096 * MIB), 64 * MIB);
    }
}
