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
use std::sync::{Arc, Mutex};

use crate::contact::log::{self, LogError};
use crate::contact::state::{ContactState, History, StateConfig};
use crate::contact::{Applier, Event, EventKind, Origin, Subscriber};

/// What a run needs to know of the past.
pub struct PastContacts {
    applier: Applier,
    outbound: Arc<Outbound>,
    /// What `outbound` counted, sorted, read without a lock by the parallel scan.
    counted: OutboundCounts,
    /// Events read.
    pub events: u64,
    /// Events stamped after the run's time: read, and left out (a run as of `--now` sees the
    /// history as it was then, whenever it runs).
    pub after: u64,
    /// The history the run decided with (what shards of one run must share).
    pub id: HistoryId,
    /// Segments read.
    pub segments: usize,
}

/// What tells two runs' histories apart: the events up to the run's time, counted and hashed
/// independently of their order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HistoryId {
    /// Events up to the run's time.
    pub events: u64,
    /// The wrapping sum of each event's hash.
    pub key: u64,
}

impl HistoryId {
    fn add(&mut self, e: &Event<'_>) {
        use std::hash::{Hash, Hasher};
        let mut h = std::hash::DefaultHasher::new();
        (e.kind, e.ts_ms, e.customer_id, e.visitor_id).hash(&mut h);
        (
            e.offer_id,
            e.channel,
            e.placement,
            e.decision_id,
            e.event_id,
        )
            .hash(&mut h);
        self.events += 1;
        self.key = self.key.wrapping_add(h.finish());
    }
}

/// What only campaigns count, subscribed to the events as the live funnel is.
struct Outbound {
    /// The campaign's channels, each with the first instant its capacity counts from
    /// (`None`: not counted).
    channels: Vec<(String, Option<i64>)>,
    outbound_channels: Vec<String>,
    frequency_window_ms: i64,
    counts: Mutex<OutboundCounts>,
}

#[derive(Default)]
struct OutboundCounts {
    /// Outbound contact times per customer (only those inside the frequency window).
    times: HashMap<String, Vec<i64>, foldhash::fast::RandomState>,
    /// Per campaign channel: contacts on it inside its capacity period.
    channel_used: Vec<u64>,
}

impl Subscriber for Outbound {
    fn event(&self, e: &Event<'_>, _origin: Origin, now_ms: i64) {
        if e.kind != EventKind::Impression || e.ts_ms > now_ms {
            return;
        }
        let Some(ch) = e.channel else { return };
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        for (i, (name, from)) in self.channels.iter().enumerate() {
            if from.is_some_and(|from| e.ts_ms >= from) && ch == name {
                if c.channel_used.len() <= i {
                    c.channel_used.resize(self.channels.len(), 0);
                }
                c.channel_used[i] += 1;
            }
        }
        if self.frequency_window_ms > 0
            && e.ts_ms > now_ms - self.frequency_window_ms
            && self.outbound_channels.iter().any(|o| o == ch)
        {
            match c.times.get_mut(e.customer_id) {
                Some(v) => v.push(e.ts_ms),
                None => {
                    c.times.insert(e.customer_id.to_owned(), vec![e.ts_ms]);
                }
            }
        }
    }
}

/// What to count while reading.
pub struct Counting<'a> {
    /// Longest window the model's policies look back over.
    pub horizon_ms: i64,
    /// Channels whose impressions count toward the frequency cap.
    pub outbound_channels: &'a [String],
    /// Frequency window, 0 for none.
    pub frequency_window_ms: i64,
    /// The campaign's channels, each with the first instant its capacity counts from (`None`
    /// for no capacity).
    pub channels: &'a [(String, Option<i64>)],
    /// Memory budget of the rebuilt contact state.
    pub memory_bytes: u64,
}

impl PastContacts {
    /// No history at all (no data folder).
    pub fn empty(c: &Counting<'_>) -> Self {
        let outbound = Arc::new(Outbound {
            channels: c.channels.to_vec(),
            outbound_channels: c.outbound_channels.to_vec(),
            frequency_window_ms: c.frequency_window_ms,
            counts: Mutex::default(),
        });
        let state = Arc::new(ContactState::new(&state_config(c), c.horizon_ms));
        PastContacts {
            applier: Applier::new(state, vec![outbound.clone()]),
            outbound,
            counted: OutboundCounts::default(),
            events: 0,
            after: 0,
            id: HistoryId::default(),
            segments: 0,
        }
    }

    /// One event of the history, applied when it happened by the run's time.
    fn apply(&mut self, e: &Event<'_>, origin: Origin, now_ms: i64) {
        self.events += 1;
        if e.ts_ms > now_ms {
            self.after += 1;
            return;
        }
        self.id.add(e);
        self.applier.apply(e, origin, now_ms);
    }

    /// Reads every segment of `dir` (a missing folder is an empty history). Past damage is
    /// stepped over, as the server's replay does; a tail still being written is simply not
    /// counted.
    pub fn read(dir: &Path, c: &Counting<'_>, now_ms: i64) -> Result<Self, LogError> {
        let mut past = PastContacts::empty(c);
        past.segments = each_event(dir, |e| past.apply(e, Origin::Replay, now_ms))?;
        past.settle();
        Ok(past)
    }

    /// Adds one event from elsewhere (the fleet's streams), as if it were in the log.
    pub fn add(&mut self, payload: &[u8], now_ms: i64) {
        if let Ok(e) = Event::decode(payload) {
            self.apply(&e, Origin::Fleet, now_ms);
        }
    }

    /// Done adding: takes what was counted since the last call, sorted, and lets the state
    /// settle.
    pub fn settle(&mut self) {
        let new = std::mem::take(
            &mut *self
                .outbound
                .counts
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        let n = self.outbound.channels.len();
        self.counted.channel_used.resize(n, 0);
        for (a, b) in self.counted.channel_used.iter_mut().zip(new.channel_used) {
            *a += b;
        }
        for (customer, times) in new.times {
            let all = self.counted.times.entry(customer).or_default();
            all.extend(times);
            all.sort_unstable();
        }
        self.applier.settled();
        self.applier.state().settle();
    }

    /// Contacts on the campaign's (first) channel inside its capacity period.
    pub fn channel_used(&self) -> u64 {
        self.channel_used_on(0)
    }

    /// Contacts on campaign channel `i` inside its capacity period.
    pub fn channel_used_on(&self, i: usize) -> u64 {
        self.counted.channel_used.get(i).copied().unwrap_or(0)
    }

    /// A customer's history for the engine's contact view.
    #[inline]
    pub fn history(&self, customer_id: &str) -> Option<Arc<History>> {
        self.applier.state().history(customer_id)
    }

    /// Outbound contacts of a customer after `since_ms`.
    #[inline]
    pub fn outbound_since(&self, customer_id: &str, since_ms: i64) -> u32 {
        self.counted.times.get(customer_id).map_or(0, |v| {
            (v.len() - v.partition_point(|&t| t <= since_ms)) as u32
        })
    }
}

/// Every event of `dir`'s log in log order, read as [`PastContacts::read`] reads them (a
/// missing folder has none; damage and a torn tail are stepped over); the segments read.
pub fn each_event(dir: &Path, mut f: impl FnMut(&Event<'_>)) -> Result<usize, LogError> {
    if !dir.exists() {
        return Ok(0);
    }
    log::read_all(dir, |payload| {
        if let Ok(e) = Event::decode(payload) {
            f(&e);
        }
    })
}

fn state_config(c: &Counting<'_>) -> StateConfig {
    StateConfig {
        memory_bytes: c.memory_bytes,
        ..StateConfig::default()
    }
}
