//! Which visitors logged in as which customers (see [`super::subject`] for who an event or a
//! decision is about).
//!
//! A login links the two: an event naming both a customer and a visitor (see [`Links`]). From
//! then on a decision for the customer reads the visitor's history too, and a decision for the
//! visitor the customer's: a dismissed offer stays dismissed across the login, both ways.
//!
//! This module must not read the clock, write, or decide: it names subjects and remembers
//! links, which arrive like every event (live, replayed from the log, from the fleet) through
//! the [`super::Applier`], so a link survives restarts and reaches every replica.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;

use moka::sync::Cache;

use super::apply::{Origin, Subscriber};
use super::event::Event;
use super::subject::Subject;

/// Most visitors (devices, browsers) remembered per customer: the newest links win.
pub const MAX_VISITORS: usize = 4;

/// A customer's visitors, newest link first: `(link time, visitor id)`.
pub type Visitors = Arc<[(i64, Arc<str>)]>;

/// Which visitors logged in as which customers, both ways, bounded in bytes like the contact
/// state (least recently used links go first when full).
///
/// Every update is commutative (the newest link by event time wins, a visitor list is merged
/// by time), so links applied out of order on different replicas, or again on replay, end the
/// same: a link is applied once in effect however often it arrives.
pub struct Links {
    customer_of: Cache<String, (i64, Arc<str>), foldhash::fast::RandomState>,
    visitors_of: Cache<String, Visitors, foldhash::fast::RandomState>,
    /// False until the first link: decisions then skip the two lookups.
    any: AtomicBool,
}

/// Bytes one link entry is weighed at besides its strings (moka's bookkeeping, as the contact
/// state measures it for histories).
const ENTRY_BYTES: usize = 320;

impl Links {
    /// An empty table within `memory_bytes` (split between the two directions).
    pub fn new(memory_bytes: u64) -> Self {
        let half = (memory_bytes / 2).max(1 << 16);
        Links {
            customer_of: Cache::builder()
                .max_capacity(half)
                .weigher(|k: &String, v: &(i64, Arc<str>)| {
                    (ENTRY_BYTES + k.len() + v.1.len()).min(u32::MAX as usize) as u32
                })
                .build_with_hasher(foldhash::fast::RandomState::default()),
            visitors_of: Cache::builder()
                .max_capacity(half)
                .weigher(|k: &String, v: &Visitors| {
                    let ids: usize = v.iter().map(|(_, id)| 24 + id.len()).sum();
                    (ENTRY_BYTES + k.len() + ids).min(u32::MAX as usize) as u32
                })
                .build_with_hasher(foldhash::fast::RandomState::default()),
            any: AtomicBool::new(false),
        }
    }

    /// Links `visitor` to `customer` as of `ts_ms`.
    pub fn link(&self, customer: &str, visitor: &str, ts_ms: i64) {
        self.any.store(true, Relaxed);
        self.customer_of
            .entry_by_ref(visitor)
            .and_upsert_with(|old| match old.map(|o| o.into_value()) {
                Some(o) if (o.0, &*o.1) >= (ts_ms, customer) => o,
                _ => (ts_ms, Arc::from(customer)),
            });
        self.visitors_of
            .entry_by_ref(customer)
            .and_upsert_with(|old| {
                let mut list: Vec<(i64, Arc<str>)> =
                    old.map(|o| o.into_value().to_vec()).unwrap_or_default();
                match list.iter_mut().find(|(_, v)| &**v == visitor) {
                    Some(seen) => seen.0 = seen.0.max(ts_ms),
                    None => list.push((ts_ms, Arc::from(visitor))),
                }
                list.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
                list.truncate(MAX_VISITORS);
                list.into()
            });
    }

    /// The customer a visitor logged in as, if linked.
    #[inline]
    pub fn customer_of(&self, visitor: &str) -> Option<Arc<str>> {
        if !self.any.load(Relaxed) {
            return None;
        }
        self.customer_of.get(visitor).map(|(_, c)| c)
    }

    /// A customer's linked visitors, newest first.
    #[inline]
    pub fn visitors_of(&self, customer: &str) -> Option<Visitors> {
        if !self.any.load(Relaxed) {
            return None;
        }
        self.visitors_of.get(customer)
    }

    /// The visitor most recently linked to a customer: whose variant `"sticky": "visitor"`
    /// keeps for them.
    #[inline]
    pub fn newest_visitor_of(&self, customer: &str) -> Option<Arc<str>> {
        self.visitors_of(customer)?.first().map(|(_, v)| v.clone())
    }

    /// Links held (visitors linked to a customer; approximate until moka settles).
    pub fn len(&self) -> u64 {
        self.customer_of.entry_count()
    }

    /// True when no visitor is linked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Subscriber for Links {
    fn event(&self, e: &Event<'_>, _: Origin, _: i64) {
        if let (Subject::Customer(c), Some(v)) = (e.subject(), e.visitor_id) {
            self.link(c, v, e.ts_ms);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_commute_and_keep_the_newest_visitors() {
        let a = Links::new(1 << 20);
        let b = Links::new(1 << 20);
        let events = [
            ("C1", "v1", 10),
            ("C2", "v1", 20),
            ("C1", "v2", 5),
            ("C1", "v3", 30),
        ];
        for (c, v, t) in events {
            a.link(c, v, t);
        }
        for (c, v, t) in events.iter().rev() {
            b.link(c, v, *t);
            b.link(c, v, *t);
        }
        for l in [&a, &b] {
            assert_eq!(
                l.customer_of("v1").as_deref(),
                Some("C2"),
                "the newest link wins"
            );
            assert_eq!(l.customer_of("v3").as_deref(), Some("C1"));
            let list = l.visitors_of("C1").unwrap();
            let vs: Vec<&str> = list.iter().map(|(_, v)| &**v).collect();
            assert_eq!(vs, ["v3", "v1", "v2"]);
            assert_eq!(l.customer_of("nobody"), None);
        }
        let many = Links::new(1 << 20);
        for i in 0..10 {
            many.link("C", &format!("v{i}"), i);
        }
        assert_eq!(many.visitors_of("C").unwrap().len(), MAX_VISITORS);
        assert_eq!(&*many.visitors_of("C").unwrap()[0].1, "v9");
    }
}
