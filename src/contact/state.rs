//! The in-memory contact state: each customer's recent history, and the event ids already seen.
//!
//! Histories live in a moka cache keyed by customer id (or a visitor's key, see
//! [`super::links`]), as `Arc<History>` values that are never
//! changed in place: a writer builds the customer's next history beside the current one and
//! replaces it under moka's per-key lock, so a decision reading a history never waits for a
//! writer and never sees half an update. Every update is commutative (a maximum, or an insert
//! into a time-ordered list), so events applied out of order, or replayed in log order after a
//! restart, give the same state.
//!
//! Event ids live in [`super::dedupe::SeenIds`], not in moka (see there why).
//!
//! Memory is bounded three ways: each history keeps at most [`MAX_IMPRESSIONS`] impressions and
//! [`MAX_OFFER_MARKS`] per-offer marks; each entry expires once the longest policy window has
//! passed since its newest event; and the whole cache is weighed in bytes against a budget
//! (least-recently-used customers go first when full; a forgotten customer is shown offers as if
//! new). Policies themselves are not applied here: see [`super::view`].

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::notification::RemovalCause;
use moka::sync::Cache;

use super::dedupe::{Claim, SeenIds};
use super::event::{Event, EventKind};
use super::evictions::Evictions;
use super::subject::Subject;
use crate::engine::policy::{stable_hash, MAX_CAP};

/// Most impressions one customer's history remembers (the newest are kept).
pub const MAX_IMPRESSIONS: usize = MAX_CAP as usize;
/// Most offers one customer's history keeps dismiss and conversion marks for.
pub const MAX_OFFER_MARKS: usize = 64;
/// Marks "never" in a timestamp field.
const NEVER: i64 = i64::MIN;
/// Shortest time an entry is kept, so a write is never evicted before a reader can see it.
const MIN_TTL: Duration = Duration::from_secs(60);

/// One impression: when, of which offer, of which category (hashes, see [`stable_hash`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Impression {
    /// When it was shown (Unix ms).
    pub ts_ms: i64,
    /// The offer id's hash.
    pub offer: u64,
    /// The category's hash, 0 when unknown.
    pub category: u64,
}

/// The latest dismiss and conversion of one offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OfferMark {
    /// The offer id's hash.
    pub offer: u64,
    /// Latest dismiss (Unix ms), or never.
    pub dismissed_ms: i64,
    /// Latest conversion (Unix ms), or never.
    pub converted_ms: i64,
}

impl OfferMark {
    /// The latest dismiss, if any.
    pub fn dismissed(&self) -> Option<i64> {
        (self.dismissed_ms != NEVER).then_some(self.dismissed_ms)
    }

    /// The latest conversion, if any.
    pub fn converted(&self) -> Option<i64> {
        (self.converted_ms != NEVER).then_some(self.converted_ms)
    }

    fn newest(&self) -> i64 {
        self.dismissed_ms.max(self.converted_ms)
    }
}

/// What one customer did recently, as far as contact policies care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct History {
    /// Per-offer marks, sorted by offer hash.
    marks: Vec<OfferMark>,
    /// Impressions, sorted by time, oldest first.
    impressions: Vec<Impression>,
    /// Latest complaint, or never.
    complaint_ms: i64,
    /// Latest resolution, or never.
    resolved_ms: i64,
    /// Newest event time held: the entry may go a horizon after it.
    newest_ms: i64,
    /// How long moka keeps this version of the entry, fixed when it was written.
    ttl: Duration,
}

impl Default for History {
    fn default() -> Self {
        History {
            marks: Vec::new(),
            impressions: Vec::new(),
            complaint_ms: NEVER,
            resolved_ms: NEVER,
            newest_ms: NEVER,
            ttl: MIN_TTL,
        }
    }
}

impl History {
    /// The marks of one offer, if the customer dismissed or bought it.
    #[inline]
    pub fn mark(&self, offer: u64) -> Option<&OfferMark> {
        self.marks
            .binary_search_by_key(&offer, |m| m.offer)
            .ok()
            .map(|i| &self.marks[i])
    }

    /// Impressions of one offer after `since_ms` (newest first, so only the window is read).
    #[inline]
    pub fn impressions_since(&self, offer: u64, since_ms: i64) -> u32 {
        self.impressions
            .iter()
            .rev()
            .take_while(|i| i.ts_ms > since_ms)
            .filter(|i| i.offer == offer)
            .count() as u32
    }

    /// Impressions of any offer of the given categories after `since_ms`.
    pub fn category_contacts_since(&self, categories: &[u64], since_ms: i64) -> u32 {
        self.impressions
            .iter()
            .rev()
            .take_while(|i| i.ts_ms > since_ms)
            .filter(|i| categories.contains(&i.category))
            .count() as u32
    }

    /// True while a complaint is open: newer than its last resolution and not timed out.
    pub fn complaint_open(&self, now_ms: i64, timeout_ms: i64) -> bool {
        self.complaint_ms != NEVER
            && self.complaint_ms > self.resolved_ms
            && now_ms < self.complaint_ms.saturating_add(timeout_ms)
    }

    /// Every impression held, oldest first.
    pub fn impressions(&self) -> &[Impression] {
        &self.impressions
    }

    /// Approximate bytes held, for the cache's memory budget.
    pub fn weight(&self, key_len: usize) -> u32 {
        let bytes = std::mem::size_of::<History>()
            + key_len
            // moka's per-entry bookkeeping: the entry, its shared info, the access- and
            // write-order nodes, the expiry timer node and the hash table slot, as measured
            // (peak RSS over 1M replayed customers under a 16 MiB budget).
            + 320
            + self.marks.capacity() * std::mem::size_of::<OfferMark>()
            + self.impressions.capacity() * std::mem::size_of::<Impression>();
        bytes.min(u32::MAX as usize) as u32
    }

    /// Applies one event; false when it changes nothing (see [`changes_history`]).
    pub fn apply(&mut self, e: &Event<'_>, horizon_ms: i64, now_ms: i64) -> bool {
        if !changes_history(e, horizon_ms, now_ms) {
            return false;
        }
        let offer = e.offer_id.map_or(0, stable_hash);
        let category = e.category.map_or(0, stable_hash);
        match e.kind {
            EventKind::Click => return false,
            EventKind::Impression => {
                let at = self.impressions.partition_point(|i| i.ts_ms <= e.ts_ms);
                self.impressions.insert(
                    at,
                    Impression {
                        ts_ms: e.ts_ms,
                        offer,
                        category,
                    },
                );
            }
            EventKind::Dismiss | EventKind::Conversion => {
                let i = match self.marks.binary_search_by_key(&offer, |m| m.offer) {
                    Ok(i) => i,
                    Err(i) => {
                        self.marks.insert(
                            i,
                            OfferMark {
                                offer,
                                dismissed_ms: NEVER,
                                converted_ms: NEVER,
                            },
                        );
                        i
                    }
                };
                let m = &mut self.marks[i];
                if e.kind == EventKind::Dismiss {
                    m.dismissed_ms = m.dismissed_ms.max(e.ts_ms);
                } else {
                    m.converted_ms = m.converted_ms.max(e.ts_ms);
                }
            }
            EventKind::Complaint => self.complaint_ms = self.complaint_ms.max(e.ts_ms),
            EventKind::ComplaintResolved => self.resolved_ms = self.resolved_ms.max(e.ts_ms),
        }
        self.newest_ms = self.newest_ms.max(e.ts_ms);
        self.settle(horizon_ms, now_ms);
        true
    }

    /// Folds in the history of the same customer built from other events (replay builds one
    /// in pieces to stay within its memory budget). The result is the history of all the
    /// events together.
    pub fn merge(&mut self, other: &History, horizon_ms: i64, now_ms: i64) {
        self.impressions.extend_from_slice(&other.impressions);
        self.impressions.sort_by_key(|i| i.ts_ms);
        for m in &other.marks {
            match self.marks.binary_search_by_key(&m.offer, |x| x.offer) {
                Ok(i) => {
                    let x = &mut self.marks[i];
                    x.dismissed_ms = x.dismissed_ms.max(m.dismissed_ms);
                    x.converted_ms = x.converted_ms.max(m.converted_ms);
                }
                Err(i) => self.marks.insert(i, *m),
            }
        }
        self.complaint_ms = self.complaint_ms.max(other.complaint_ms);
        self.resolved_ms = self.resolved_ms.max(other.resolved_ms);
        self.newest_ms = self.newest_ms.max(other.newest_ms);
        self.settle(horizon_ms, now_ms);
    }

    /// After a change: drops what is past the horizon, keeps the bounds, fixes the entry's
    /// time to live.
    fn settle(&mut self, horizon_ms: i64, now_ms: i64) {
        self.prune(now_ms.saturating_sub(horizon_ms));
        self.ttl = Duration::from_millis(
            self.newest_ms
                .saturating_add(horizon_ms)
                .saturating_sub(now_ms)
                .max(0) as u64,
        )
        .max(MIN_TTL);
    }

    /// Drops what no policy can look at any more, and keeps the bounds.
    fn prune(&mut self, oldest_kept: i64) {
        let stale = self.impressions.partition_point(|i| i.ts_ms < oldest_kept);
        let over = self.impressions.len().saturating_sub(MAX_IMPRESSIONS);
        self.impressions.drain(..stale.max(over));
        self.marks.retain(|m| m.newest() >= oldest_kept);
        while self.marks.len() > MAX_OFFER_MARKS {
            // Forget the offer touched longest ago.
            if let Some((i, _)) = self
                .marks
                .iter()
                .enumerate()
                .min_by_key(|(_, m)| m.newest())
            {
                self.marks.remove(i);
            }
        }
    }
}

/// Gives each history version the time to live it computed when written.
struct HistoryExpiry;

impl moka::Expiry<String, Arc<History>> for HistoryExpiry {
    fn expire_after_create(&self, _: &String, v: &Arc<History>, _: Instant) -> Option<Duration> {
        Some(v.ttl)
    }

    fn expire_after_update(
        &self,
        _: &String,
        v: &Arc<History>,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(v.ttl)
    }
}

/// Settings of the contact state.
#[derive(Debug, Clone)]
pub struct StateConfig {
    /// Memory budget for histories, in bytes (approximate; see [`History::weight`]).
    pub memory_bytes: u64,
    /// Most event ids remembered for de-duplication.
    pub dedupe_capacity: u64,
    /// How long an event id is remembered.
    pub dedupe_ttl: Duration,
    /// The least time the log keeps events, whatever the models' windows (`--keep-events-days`:
    /// a campaign's frequency window longer than every policy's).
    pub keep: Duration,
}

/// How long an event id is remembered against repeats, and so the least time the log keeps
/// events.
pub const EVENT_ID_MEMORY: Duration = Duration::from_secs(7 * 86_400);

/// Bytes one remembered event id may take at most: 16 for the id, the hash set's control byte
/// and load factor, and room for a set that has just doubled.
pub const BYTES_PER_EVENT_ID: u64 = 40;

impl StateConfig {
    /// One memory budget for the whole contact state: three quarters for histories, one
    /// quarter for remembered event ids.
    pub fn within(budget_bytes: u64) -> Self {
        StateConfig {
            memory_bytes: budget_bytes / 4 * 3,
            dedupe_capacity: (budget_bytes / 4 / BYTES_PER_EVENT_ID).max(1_000),
            dedupe_ttl: EVENT_ID_MEMORY,
            keep: Duration::ZERO,
        }
    }
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig::within(512 << 20)
    }
}

/// Customer histories and seen event ids.
pub struct ContactState {
    histories: Cache<String, Arc<History>, foldhash::fast::RandomState>,
    evictions: Arc<Evictions>,
    seen: SeenIds,
    horizon_ms: AtomicI64,
    dedupe_ttl_ms: i64,
    keep_ms: i64,
}

/// Hashes an event id into the 128-bit key de-duplication remembers (two independent halves).
pub fn event_key(event_id: &str) -> u128 {
    super::dedupe::key_of(event_id, 1)
}

impl ContactState {
    /// An empty state keeping history for `horizon_ms` (the longest policy window).
    pub fn new(config: &StateConfig, horizon_ms: i64) -> Self {
        let evictions = Arc::new(Evictions::new(config.memory_bytes));
        let counted = evictions.clone();
        ContactState {
            histories: Cache::builder()
                .max_capacity(config.memory_bytes)
                .weigher(|k: &String, v: &Arc<History>| v.weight(k.len()))
                .expire_after(HistoryExpiry)
                .eviction_listener(move |_, _, cause| match cause {
                    RemovalCause::Size => counted.over_budget(),
                    RemovalCause::Expired => counted.expired(),
                    RemovalCause::Explicit | RemovalCause::Replaced => {}
                })
                .build_with_hasher(foldhash::fast::RandomState::default()),
            evictions,
            seen: SeenIds::new(config.dedupe_capacity, config.dedupe_ttl.as_millis() as i64),
            horizon_ms: AtomicI64::new(horizon_ms.max(0)),
            dedupe_ttl_ms: config.dedupe_ttl.as_millis() as i64,
            keep_ms: config.keep.as_millis() as i64,
        }
    }

    /// How long history is kept (the longest window of the active model's policies).
    pub fn horizon_ms(&self) -> i64 {
        self.horizon_ms.load(Ordering::Relaxed)
    }

    /// Changes how long history is kept (a model with longer windows was activated); events
    /// already forgotten do not come back.
    pub fn set_horizon_ms(&self, ms: i64) {
        self.horizon_ms.store(ms.max(0), Ordering::Relaxed);
    }

    /// One customer's history, for a decision: a clone of an `Arc`, no lock held afterwards.
    #[inline]
    pub fn history(&self, customer_id: &str) -> Option<Arc<History>> {
        self.histories.get(customer_id)
    }

    /// Claims an event id for the event of `digest` (see [`super::Event::digest`]): new the
    /// first time, then a repeat of that event or another event reusing the id while the id is
    /// remembered.
    pub fn claim(&self, key: u128, digest: u32, now_ms: i64) -> Claim {
        self.seen.claim_for(key, digest, now_ms)
    }

    /// Gives up a claim (the event could not be written, so a retry must not look repeated).
    pub fn unclaim(&self, key: u128) {
        self.seen.unclaim(key);
    }

    /// A visitor's or a customer's history (see [`super::links`]).
    #[inline]
    pub fn history_of(&self, who: Subject<'_>) -> Option<Arc<History>> {
        who.with_key(|k| self.histories.get(k)).flatten()
    }

    /// Applies an accepted event to its subject's history (copy, change, replace): the
    /// customer's when it names one, else the visitor's.
    pub fn apply(&self, e: &Event<'_>, now_ms: i64) {
        let horizon = self.horizon_ms();
        if !changes_history(e, horizon, now_ms) {
            return;
        }
        e.subject().with_key(|key| {
            self.histories.entry_by_ref(key).and_upsert_with(|old| {
                let mut h = old.map(|o| (*o.into_value()).clone()).unwrap_or_default();
                h.apply(e, horizon, now_ms);
                Arc::new(h)
            })
        });
    }

    /// Folds a history rebuilt by replay (from part of the log) into the customer's entry.
    pub fn merge_in(&self, customer: String, h: History, now_ms: i64) {
        let horizon = self.horizon_ms();
        self.histories
            .entry(customer)
            .and_upsert_with(|old| match old {
                Some(o) => {
                    let mut m = (*o.into_value()).clone();
                    m.merge(&h, horizon, now_ms);
                    Arc::new(m)
                }
                None => Arc::new(h),
            });
    }

    /// Customers held (approximate until moka runs its pending tasks).
    pub fn customers(&self) -> u64 {
        self.histories.entry_count()
    }

    /// Bytes held by histories, as weighed.
    pub fn weighted_bytes(&self) -> u64 {
        self.histories.weighted_size()
    }

    /// Customers dropped so far to stay within the memory budget, and past the horizon.
    pub fn evictions(&self) -> (u64, u64) {
        self.evictions.counts()
    }

    /// Event ids remembered.
    pub fn seen_ids(&self) -> u64 {
        self.seen.len()
    }

    /// Lets moka finish evictions and counts (tests and stats want settled numbers).
    pub fn settle(&self) {
        self.histories.run_pending_tasks();
    }
}

/// Whether an event can change a history: clicks never do (no policy reads them), nor do
/// events older than the horizon.
pub fn changes_history(e: &Event<'_>, horizon_ms: i64, now_ms: i64) -> bool {
    e.kind != EventKind::Click && e.ts_ms >= now_ms.saturating_sub(horizon_ms)
}

impl ContactState {
    /// How long event ids are remembered, in milliseconds.
    pub fn dedupe_ttl_ms(&self) -> i64 {
        self.dedupe_ttl_ms
    }

    /// How long an accepted event still matters (to a policy window, to the ids remembered
    /// against repeats, to what adaptive offers learnt): the log keeps events this long, and
    /// the fleet's streams too, so a replica rebuilds the same from either.
    pub fn retention_ms(&self) -> i64 {
        self.horizon_ms().max(self.dedupe_ttl_ms).max(self.keep_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;
    const NOW: i64 = 1_795_000_000_000;

    fn ev(kind: EventKind, offer: Option<&'static str>, ts_ms: i64) -> Event<'static> {
        Event {
            category: Some("sales"),
            ..Event::on(kind, "C1", offer, "web", ts_ms)
        }
    }

    #[test]
    fn updates_commute() {
        let events = [
            ev(EventKind::Impression, Some("a"), NOW - 3 * DAY),
            ev(EventKind::Conversion, Some("a"), NOW - DAY),
            ev(EventKind::Impression, Some("a"), NOW - 2 * DAY),
            ev(EventKind::Dismiss, Some("b"), NOW - 5 * DAY),
            ev(EventKind::Complaint, None, NOW - 4 * DAY),
            ev(EventKind::ComplaintResolved, None, NOW - 3 * DAY),
            ev(EventKind::Dismiss, Some("b"), NOW - 6 * DAY),
        ];
        let mut forward = History::default();
        let mut backward = History::default();
        for e in &events {
            forward.apply(e, 30 * DAY, NOW);
        }
        for e in events.iter().rev() {
            backward.apply(e, 30 * DAY, NOW);
        }
        assert_eq!(forward, backward);
        let a = stable_hash("a");
        assert_eq!(forward.impressions_since(a, NOW - 7 * DAY), 2);
        assert_eq!(forward.impressions_since(a, NOW - 2 * DAY - 1), 1);
        assert_eq!(
            forward.mark(a).and_then(OfferMark::converted),
            Some(NOW - DAY)
        );
        let b = forward.mark(stable_hash("b")).unwrap();
        assert_eq!(
            b.dismissed(),
            Some(NOW - 5 * DAY),
            "the latest dismiss wins"
        );
        assert!(
            !forward.complaint_open(NOW, 30 * DAY),
            "resolved after it was made"
        );
        let (sales, service) = (stable_hash("sales"), stable_hash("service"));
        assert_eq!(forward.category_contacts_since(&[sales], NOW - 30 * DAY), 2);
        assert_eq!(
            forward.category_contacts_since(&[service], NOW - 30 * DAY),
            0
        );
    }

    #[test]
    fn history_is_bounded_and_pruned() {
        let mut h = History::default();
        for i in 0..(MAX_IMPRESSIONS as i64 + 50) {
            h.apply(
                &ev(EventKind::Impression, Some("a"), NOW - DAY + i),
                7 * DAY,
                NOW,
            );
        }
        assert_eq!(h.impressions().len(), MAX_IMPRESSIONS);
        assert_eq!(
            h.impressions()[0].ts_ms,
            NOW - DAY + 50,
            "the oldest go first"
        );
        let offers: Vec<String> = (0..MAX_OFFER_MARKS + 10).map(|i| format!("o{i}")).collect();
        for (i, o) in offers.iter().enumerate() {
            let e = Event {
                offer_id: Some(o),
                ..ev(EventKind::Dismiss, None, NOW - DAY + i as i64)
            };
            h.apply(&e, 7 * DAY, NOW);
        }
        assert_eq!(h.marks.len(), MAX_OFFER_MARKS);
        assert!(
            h.mark(stable_hash("o0")).is_none(),
            "the oldest mark is forgotten"
        );
        assert!(h.mark(stable_hash(&offers[MAX_OFFER_MARKS + 9])).is_some());
        // Older than the horizon: changes nothing.
        assert!(!h.apply(
            &ev(EventKind::Dismiss, Some("z"), NOW - 8 * DAY),
            7 * DAY,
            NOW
        ));
        // A week later, the week-old impressions are pruned at the next write.
        h.apply(
            &ev(EventKind::Impression, Some("a"), NOW + 7 * DAY),
            7 * DAY,
            NOW + 7 * DAY,
        );
        assert_eq!(h.impressions().len(), 1);
    }

    #[test]
    fn complaints_open_until_resolved_or_timed_out() {
        let mut h = History::default();
        h.apply(&ev(EventKind::Complaint, None, NOW), 60 * DAY, NOW);
        assert!(h.complaint_open(NOW + DAY, 30 * DAY));
        assert!(!h.complaint_open(NOW + 30 * DAY, 30 * DAY), "timed out");
        h.apply(
            &ev(EventKind::ComplaintResolved, None, NOW + 1),
            60 * DAY,
            NOW,
        );
        assert!(!h.complaint_open(NOW + DAY, 30 * DAY));
        h.apply(&ev(EventKind::Complaint, None, NOW + 2), 60 * DAY, NOW);
        assert!(
            h.complaint_open(NOW + DAY, 30 * DAY),
            "a new complaint reopens"
        );
    }

    #[test]
    fn the_log_is_kept_for_the_longest_of_policies_event_ids_and_the_setting() {
        let s = ContactState::new(&StateConfig::default(), DAY);
        assert_eq!(s.retention_ms(), 7 * DAY, "event ids are remembered 7 days");
        s.set_horizon_ms(10 * DAY);
        assert_eq!(s.retention_ms(), 10 * DAY);
        let keep = StateConfig {
            keep: Duration::from_secs(30 * 86_400),
            ..StateConfig::default()
        };
        let s = ContactState::new(&keep, 10 * DAY);
        assert_eq!(
            s.retention_ms(),
            30 * DAY,
            "a campaign's longer frequency window"
        );
        s.set_horizon_ms(40 * DAY);
        assert_eq!(s.retention_ms(), 40 * DAY);
    }

    #[test]
    fn claims_are_once() {
        let s = ContactState::new(&StateConfig::default(), DAY);
        let k = event_key("e1");
        assert_ne!(k, event_key("e2"));
        assert_eq!(s.claim(k, 1, NOW), Claim::New);
        assert_eq!(s.claim(k, 1, NOW), Claim::Repeat);
        assert_eq!(s.claim(k, 2, NOW), Claim::Reused);
        s.unclaim(k);
        assert_eq!(s.claim(k, 2, NOW), Claim::New);
    }

    #[test]
    fn the_cache_serves_the_applied_history() {
        let s = ContactState::new(&StateConfig::default(), 30 * DAY);
        assert!(s.history("C1").is_none());
        s.apply(&ev(EventKind::Dismiss, Some("a"), NOW), NOW);
        s.apply(&ev(EventKind::Click, Some("a"), NOW), NOW);
        let h = s.history("C1").unwrap();
        assert_eq!(h.mark(stable_hash("a")).unwrap().dismissed(), Some(NOW));
        assert!(h.ttl >= Duration::from_secs(29 * 86_400));
    }
}
