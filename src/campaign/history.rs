//! The contact history a campaign run decides with, read from the data folder's event log.
//!
//! The log is read, never written: segments are scanned as they are on disk and a record still
//! being written by a running server (a torn tail) is simply not counted, where the server's own
//! start-up replay would cut it off. The events rebuild the very contact state the server holds
//! (into a [`ContactState`]), so the model's policies judge a campaign exactly as they
//! judge `/v1/decide`; besides, the same pass counts what only campaigns ask: each customer's
//! recent contacts on the outbound channels (the frequency cap) and the channel's volume already
//! used (the capacity).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use crate::contact::log::{self, LogError, MAGIC};
use crate::contact::state::{ContactState, History, StateConfig};
use crate::contact::{Event, EventKind};

/// What a run needs to know of the past.
pub struct PastContacts {
    state: ContactState,
    /// Outbound contact times per customer (only those inside the frequency window), sorted.
    outbound: HashMap<String, Vec<i64>, foldhash::fast::RandomState>,
    /// Contacts on the campaign's channel inside the capacity period.
    pub channel_used: u64,
    /// Events read.
    pub events: u64,
    /// Segments read.
    pub segments: usize,
}

/// What to count while reading.
pub struct Counting<'a> {
    /// Longest window the model's policies look back over.
    pub horizon_ms: i64,
    /// Channels whose impressions count toward the frequency cap.
    pub outbound_channels: &'a [String],
    /// Frequency window, 0 for none.
    pub frequency_window_ms: i64,
    /// The campaign's channel.
    pub channel: &'a str,
    /// Capacity period, 0 for none.
    pub capacity_window_ms: i64,
    /// Memory budget of the rebuilt contact state.
    pub memory_bytes: u64,
}

impl PastContacts {
    /// No history at all (no data folder).
    pub fn empty(c: &Counting<'_>) -> Self {
        PastContacts {
            state: ContactState::new(&state_config(c), c.horizon_ms),
            outbound: HashMap::default(),
            channel_used: 0,
            events: 0,
            segments: 0,
        }
    }

    /// Reads every segment of `dir` (a missing folder is an empty history).
    pub fn read(dir: &Path, c: &Counting<'_>, now_ms: i64) -> Result<Self, LogError> {
        let mut past = PastContacts::empty(c);
        if !dir.exists() {
            return Ok(past);
        }
        for (_, path) in log::list_segments(dir)? {
            let Ok(bytes) = std::fs::read(&path) else {
                tracing::warn!(path = %path.display(), "event log segment unreadable; skipped");
                continue;
            };
            let Some(body) = bytes.strip_prefix(MAGIC.as_slice()) else {
                continue;
            };
            past.segments += 1;
            // Past damage too, as the server's replay does; a tail still being written is
            // simply not counted.
            log::scan_all(body, |payload| {
                if let Ok(e) = Event::decode(payload) {
                    past.events += 1;
                    past.state.apply(&e, now_ms);
                    past.count(&e, c, now_ms);
                }
            });
        }
        for times in past.outbound.values_mut() {
            times.sort_unstable();
        }
        past.state.settle();
        Ok(past)
    }

    /// Adds one event from elsewhere (the fleet's streams), as if it were in the log.
    pub fn add(&mut self, payload: &[u8], c: &Counting<'_>, now_ms: i64) {
        if let Ok(e) = Event::decode(payload) {
            self.events += 1;
            self.state.apply(&e, now_ms);
            self.count(&e, c, now_ms);
        }
    }

    fn count(&mut self, e: &Event<'_>, c: &Counting<'_>, now_ms: i64) {
        if e.kind != EventKind::Impression || e.ts_ms > now_ms {
            return;
        }
        let Some(ch) = e.channel else { return };
        if c.capacity_window_ms > 0 && ch == c.channel && e.ts_ms > now_ms - c.capacity_window_ms {
            self.channel_used += 1;
        }
        if c.frequency_window_ms > 0
            && e.ts_ms > now_ms - c.frequency_window_ms
            && c.outbound_channels.iter().any(|o| o == ch)
        {
            match self.outbound.get_mut(e.customer_id) {
                Some(v) => v.push(e.ts_ms),
                None => {
                    self.outbound
                        .insert(e.customer_id.to_owned(), vec![e.ts_ms]);
                }
            }
        }
    }

    /// A customer's history for the engine's contact view.
    #[inline]
    pub fn history(&self, customer_id: &str) -> Option<Arc<History>> {
        self.state.history(customer_id)
    }

    /// Outbound contacts of a customer after `since_ms`.
    #[inline]
    pub fn outbound_since(&self, customer_id: &str, since_ms: i64) -> u32 {
        self.outbound.get(customer_id).map_or(0, |v| {
            (v.len() - v.partition_point(|&t| t <= since_ms)) as u32
        })
    }
}

fn state_config(c: &Counting<'_>) -> StateConfig {
    StateConfig {
        memory_bytes: c.memory_bytes,
        ..StateConfig::default()
    }
}
