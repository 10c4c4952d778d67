//! The request values recent decisions recorded for contextual adaptive offers, by decision
//! id, until their impressions arrive: what lets an offer learn from `context.<key>` values
//! although a channel's impression carries only the decision id.
//!
//! A decision whose model learns from request values and that ranked an offer records their
//! levels here ([`super::decide::DecideContacts::remember_request`]); when an impression
//! quoting its id is ingested, the levels are written into the impression's log record
//! ([`super::event::REQUEST_TAG`]), so the learner, a replay of the log and the other replicas
//! all read the values the decision saw. An impression whose decision is not remembered here
//! (made by another replica, forgotten, or before a restart) carries none: the learner counts it
//! as missing for the request features, as it does a customer without a value.
//!
//! The memory is a fixed table of slots, one per decision id hash: a new decision takes its
//! slot over from whichever older one held it, so memory stays bounded without a sweep and a
//! decision writes one atomic pointer, never waiting on a lock. With [`capacity`] slots, a
//! decision survives `k` later recorded decisions with a probability of about `e^(-k/slots)`:
//! with the 98,304 slots of the default contact budget (512 MiB, of which 384 for histories),
//! 90 % of impressions posted 10,000 recorded decisions after their decision find its values.
//!
//! This module must not decide or read the registry; it keeps bytes it is given.

use std::sync::Arc;

use arc_swap::ArcSwapOption;

use crate::engine::posterior::seed_of;

/// Most request levels a record carries (a model reads at most this many context keys).
pub const MAX_REQUEST_LEVELS: usize = crate::engine::MAX_CONTEXT_KEYS;

/// The request values a decision recorded for the learner, as memory and log records keep
/// them: `(feature id, level)` pairs, 8 bytes each (see [`crate::engine::contextual::request_level`]), borrowed from a record or from the
/// contact side's memory of recent decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RequestLevels<'a>(&'a [u8]);

impl<'a> RequestLevels<'a> {
    /// Levels from their encoded pairs; `None` when the bytes are not whole pairs or too many.
    pub fn from_bytes(bytes: &'a [u8]) -> Option<Self> {
        (bytes.len().is_multiple_of(8) && bytes.len() / 8 <= MAX_REQUEST_LEVELS)
            .then_some(Self(bytes))
    }

    /// Appends one pair to an encoded list.
    pub fn push(out: &mut Vec<u8>, feature: u32, level: u32) {
        out.extend_from_slice(&feature.to_le_bytes());
        out.extend_from_slice(&level.to_le_bytes());
    }

    /// The pairs, in recorded order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, u32)> + 'a {
        self.0.chunks_exact(8).map(|c| {
            let (f, l) = c.split_at(4);
            let word = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            (word(f), word(l))
        })
    }

    /// The level recorded for a feature, if the decision recorded it.
    pub fn get(&self, feature: u32) -> Option<u32> {
        self.iter().find(|p| p.0 == feature).map(|p| p.1)
    }

    /// The encoded pairs.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.0
    }
}

/// Bytes one remembered decision may take: the slot's pointer, the entry's reference counts,
/// id and levels (a few request values), and the allocator's rounding.
pub const BYTES_PER_DECISION: u64 = 128;

/// How many decisions to remember within a contact memory budget: a thirty-second of it.
pub fn capacity(memory_bytes: u64) -> usize {
    (memory_bytes / 32 / BYTES_PER_DECISION).max(1_024) as usize
}

/// One remembered decision.
#[derive(Debug)]
struct Remembered {
    decision_id: u128,
    /// Encoded [`RequestLevels`] pairs.
    levels: Box<[u8]>,
}

/// Recent decisions' request levels, by decision id.
pub struct RequestMemory {
    slots: Box<[ArcSwapOption<Remembered>]>,
}

impl RequestMemory {
    /// A memory of `capacity` slots.
    pub fn new(capacity: usize) -> Self {
        RequestMemory {
            slots: (0..capacity.max(1))
                .map(|_| ArcSwapOption::empty())
                .collect(),
        }
    }

    fn slot(&self, decision_id: u128) -> &ArcSwapOption<Remembered> {
        &self.slots[(seed_of(decision_id) % self.slots.len() as u64) as usize]
    }

    /// Remembers a decision's encoded levels (see [`RequestLevels::push`]).
    pub fn remember(&self, decision_id: u128, levels: Box<[u8]>) {
        self.slot(decision_id).store(Some(Arc::new(Remembered {
            decision_id,
            levels,
        })));
    }

    /// What a decision recorded, if it is still remembered.
    pub fn recall(&self, decision_id: u128) -> Option<Recalled> {
        let found = self.slot(decision_id).load_full()?;
        (found.decision_id == decision_id).then_some(Recalled(found))
    }
}

/// A remembered decision's request values.
pub struct Recalled(Arc<Remembered>);

impl Recalled {
    /// The levels (`None` if what was remembered is not whole pairs).
    pub fn levels(&self) -> Option<RequestLevels<'_>> {
        RequestLevels::from_bytes(&self.0.levels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decision_is_recalled_by_its_id_and_a_later_one_takes_its_slot() {
        let m = RequestMemory::new(1);
        let mut levels = Vec::new();
        RequestLevels::push(&mut levels, 7, 42);
        m.remember(1, levels.into());
        let got = m
            .recall(1)
            .and_then(|r| r.levels().map(|l| l.iter().collect::<Vec<_>>()));
        assert_eq!(got, Some(vec![(7, 42)]));
        assert!(m.recall(2).is_none(), "another id is not this one");
        m.remember(2, Box::new([]));
        assert!(
            m.recall(1).is_none(),
            "one slot: the newer decision took it"
        );
        let empty = m.recall(2).and_then(|r| r.levels().map(|l| l.get(7)));
        assert_eq!(empty, Some(None));
    }

    /// Visitors on iOS convert one in four, on Android one in twenty; every third impression
    /// reaches the learner without its decision's values and converts: the learner tells the
    /// devices apart and files the unmatched ones in the missing bin.
    #[test]
    fn the_learner_counts_recorded_levels_and_an_impression_without_them_as_missing() {
        use crate::contact::adaptive::Counts;
        use crate::contact::event::{Event, EventKind};
        use crate::engine::contextual::{feature_id, text_level};
        use crate::engine::posterior::Bins;
        use crate::features::FeatureStore;
        const T0: i64 = 1_800_000_000_000;
        let store =
            Arc::new(FeatureStore::from_csv_bytes(b"customer_id,tenure\nC1,3\n", "t").unwrap());
        let doc = serde_json::json!({"name": "m", "version": "1",
            "placements": {"home": {"channels": ["web"], "anonymous": "decide"}},
            "offers": [{"id": "o1", "category": "sales", "channels": ["web"], "placements": ["home"],
                "value": 1, "scorer": {"kind": "adaptive", "outcome": "conversion",
                    "prior": {"propensity": 0.05, "evidence": 20}, "context": ["context.device"]},
                "content": {"web": {"title": "T", "image_url": "https://cdn.test/i.jpg",
                    "cta_url": "https://shop.test/x"}}}]});
        let m = crate::model::from_doc(&doc, &*store);
        let counts = Counts::new(1 << 16);
        counts.bind(&[(&m.compiled, 1)], store);
        let device = feature_id("context.device");
        let levels: Vec<Vec<u8>> = ["ios", "android"]
            .iter()
            .map(|d| {
                let mut pairs = Vec::new();
                RequestLevels::push(&mut pairs, device, text_level(d));
                pairs
            })
            .collect();
        let visitors: Vec<String> = (0..600).map(|i| format!("v{i}")).collect();
        for (i, v) in visitors.iter().enumerate() {
            let unmatched = i % 3 == 0;
            let mut raw = format!(r#"{{"type":"impression","visitor_id":"{v}","offer_id":"o1"}}"#)
                .into_bytes();
            let doc = simd_json::to_borrowed_value(&mut raw).unwrap();
            let base = Event::from_json(&doc, T0).unwrap();
            let ev = |kind, ts_ms| Event {
                kind,
                ts_ms,
                request: (!unmatched).then(|| RequestLevels(&levels[i % 2])),
                attributed: None,
                ..base
            };
            counts.observe(&ev(EventKind::Impression, T0), T0);
            let converts = unmatched || (i % 2 == 0 && i % 8 == 4) || (i % 2 == 1 && i % 40 == 1);
            if converts {
                counts.observe(&ev(EventKind::Conversion, T0 + 3_600_000), T0);
            }
        }
        counts.refresh();
        let p = counts.snapshot();
        let post = p.context.values().next().expect("a posterior");
        assert_eq!(post.trials, 600);
        let Bins::Text { levels, .. } = &post.features[0] else {
            panic!("strings were sent: {:?}", post.features[0]);
        };
        assert_eq!(levels.len(), 2, "ios and android, no third value");
        let bins = &post.features[0];
        let (ios, android) = (
            bins.term(text_level("ios")),
            bins.term(text_level("android")),
        );
        let missing = bins.term(crate::engine::posterior::MISSING);
        assert!(ios.log_odds > android.log_odds + 0.5, "{ios:?} {android:?}");
        assert!(missing.log_odds > ios.log_odds, "{missing:?} {ios:?}");
    }
}
