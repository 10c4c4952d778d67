//! The one place an event takes effect.
//!
//! An event reaches nextbest three ways: accepted here and written to the log (applied on the
//! writer thread, from the very bytes written), read back from the log at start, or accepted by
//! another replica and read from the fleet's streams. All three go through [`Applier`]: the
//! contact state that policies read, then every [`Subscriber`] (the funnel, what adaptive
//! offers learn, a campaign's own counts). A new consumer of events subscribes here once and
//! sees every event from every source; it tells the sources apart by [`Origin`] where it must
//! (the funnel counts only this replica's own traffic, which it persists).
//!
//! This module must not read the clock (callers pass `now`), write anything, or await.

use std::sync::Arc;

use arc_swap::ArcSwap;

use super::dedupe::Claim;
use super::event::{Event, RecordError};
use super::state::{event_key, ContactState};

/// Where an event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Accepted by this replica and just written to its log.
    Local,
    /// Read back from this replica's log at start (or from a data folder by a tool).
    Replay,
    /// Accepted by another replica of the fleet.
    Fleet,
}

/// What reacts to events besides the contact state.
pub trait Subscriber: Send + Sync {
    /// Takes one event in; called on the thread that applies (never a request's).
    fn event(&self, e: &Event<'_>, origin: Origin, now_ms: i64);

    /// A bulk pass (replay at start) is over: publish what it gathered.
    fn settled(&self) {}
}

/// The contact state and the subscribers, applied in one step.
pub struct Applier {
    state: Arc<ContactState>,
    /// Read once per event (one atomic load); replaced whole when one subscribes.
    subscribers: ArcSwap<Vec<Arc<dyn Subscriber>>>,
}

impl Applier {
    /// Applies events to `state`, then to each subscriber in order.
    pub fn new(state: Arc<ContactState>, subscribers: Vec<Arc<dyn Subscriber>>) -> Self {
        Applier {
            state,
            subscribers: ArcSwap::from_pointee(subscribers),
        }
    }

    /// Adds a subscriber that sees every event applied from now on (one that lives beside the
    /// contact side rather than in it, as a shadow model's outcome join); one already
    /// subscribed stays subscribed once.
    pub fn subscribe(&self, s: Arc<dyn Subscriber>) {
        self.subscribers.rcu(|list| {
            let mut list = Vec::clone(list);
            if !list
                .iter()
                .any(|x| std::ptr::addr_eq(Arc::as_ptr(x), Arc::as_ptr(&s)))
            {
                list.push(s.clone());
            }
            list
        });
    }

    /// The contact state events are applied to.
    pub fn state(&self) -> &Arc<ContactState> {
        &self.state
    }

    /// Applies one event to the state and every subscriber.
    #[inline]
    pub fn apply(&self, e: &Event<'_>, origin: Origin, now_ms: i64) {
        self.state.apply(e, now_ms);
        self.notify(e, origin, now_ms);
    }

    /// Applies one event to the subscribers only: for a pass that builds the state's histories
    /// in bulk itself (replay at start, see `super::replay`).
    #[inline]
    pub fn notify(&self, e: &Event<'_>, origin: Origin, now_ms: i64) {
        for s in self.subscribers.load().iter() {
            s.event(e, origin, now_ms);
        }
    }

    /// Decodes and applies every framed record of `records` (what the log writer just wrote).
    pub fn apply_records(
        &self,
        records: &[u8],
        origin: Origin,
        now_ms: i64,
    ) -> Result<(), RecordError> {
        let mut result = Ok(());
        let (_, bad) = super::log::scan(records, |payload| match Event::decode(payload) {
            Ok(e) => self.apply(&e, origin, now_ms),
            Err(err) => result = Err(err),
        });
        if bad.is_some() {
            // The writer frames every record itself; a bad frame here is a bug, not a crash.
            tracing::error!("a batch handed to the event log had a bad frame");
        }
        result
    }

    /// Applies another replica's event (its log payload) once per event `id`; false when the id
    /// was applied before.
    pub fn apply_once(&self, payload: &[u8], id: &str, now_ms: i64) -> Result<bool, RecordError> {
        let e = Event::decode(payload)?;
        if self.state.claim(event_key(id), e.digest(), now_ms) != Claim::New {
            return Ok(false);
        }
        self.apply(&e, Origin::Fleet, now_ms);
        Ok(true)
    }

    /// Tells every subscriber that a bulk pass is over.
    pub fn settled(&self) {
        for s in self.subscribers.load().iter() {
            s.settled();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::contact::log::push_record;
    use crate::contact::state::StateConfig;
    use crate::contact::EventKind;

    #[derive(Default)]
    struct Seen(Mutex<Vec<(String, Origin)>>);

    impl Subscriber for Seen {
        fn event(&self, e: &Event<'_>, origin: Origin, _now_ms: i64) {
            self.0
                .lock()
                .unwrap()
                .push((e.customer_id.to_owned(), origin));
        }
    }

    fn dismiss(customer: &str) -> Event<'_> {
        Event::on(EventKind::Dismiss, customer, Some("o1"), "web", 1_000)
    }

    #[test]
    fn every_source_reaches_state_and_subscribers_once() {
        let state = Arc::new(ContactState::new(&StateConfig::default(), 86_400_000));
        let seen = Arc::new(Seen::default());
        let applier = Applier::new(state.clone(), vec![seen.clone()]);

        let mut records = Vec::new();
        assert!(push_record(&mut records, |b| dismiss("A").encode(b)));
        applier
            .apply_records(&records, Origin::Local, 2_000)
            .unwrap();

        let mut payload = Vec::new();
        dismiss("B").encode(&mut payload);
        assert!(applier.apply_once(&payload, "ev-1", 2_000).unwrap());
        assert!(!applier.apply_once(&payload, "ev-1", 2_000).unwrap());

        assert!(state
            .history("A")
            .is_some_and(|h| h.mark(crate::engine::policy::stable_hash("o1")).is_some()));
        assert!(state.history("B").is_some());
        assert_eq!(
            *seen.0.lock().unwrap(),
            vec![
                ("A".to_owned(), Origin::Local),
                ("B".to_owned(), Origin::Fleet)
            ]
        );
    }

    #[test]
    fn another_replicas_event_is_remembered_with_what_it_was() {
        let state = Arc::new(ContactState::new(&StateConfig::default(), 86_400_000));
        let applier = Applier::new(state.clone(), Vec::new());
        let mut payload = Vec::new();
        dismiss("B").encode(&mut payload);
        assert!(applier.apply_once(&payload, "ev-1", 2_000).unwrap());
        // The same id sent here: a retry of the same event, or another event reusing it.
        let key = event_key("ev-1");
        assert_eq!(
            state.claim(key, dismiss("B").digest(), 3_000),
            Claim::Repeat
        );
        assert_eq!(
            state.claim(key, dismiss("C").digest(), 3_000),
            Claim::Reused
        );
    }

    #[test]
    fn a_late_subscriber_sees_the_events_applied_after_it_subscribed() {
        let state = Arc::new(ContactState::new(&StateConfig::default(), 86_400_000));
        let first = Arc::new(Seen::default());
        let late = Arc::new(Seen::default());
        let applier = Applier::new(state, vec![first.clone()]);
        applier.apply(&dismiss("A"), Origin::Replay, 2_000);
        applier.subscribe(late.clone());
        applier.subscribe(late.clone());
        applier.apply(&dismiss("B"), Origin::Local, 2_000);
        applier.settled();
        let customers = |s: &Seen| -> Vec<String> {
            s.0.lock().unwrap().iter().map(|(c, _)| c.clone()).collect()
        };
        assert_eq!(customers(&first), ["A", "B"]);
        assert_eq!(customers(&late), ["B"]);
    }
}
