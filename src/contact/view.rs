//! The engine's window on one customer's history for one decision: contact policies applied.
//!
//! Built once per decision from the customer's history, the model's policies and `now`; what
//! looks across offers (the sales cap count, an open complaint) is computed here once, so the
//! per-offer check is a few comparisons. Pure: no clock, no I/O, no lock.

use super::state::History;
use crate::engine::{ContactView, Offer, Policies};

/// One customer's history as the engine consults it for one decision.
pub struct CustomerView<'h> {
    history: Option<&'h History>,
    now_ms: i64,
    /// Sales contacts the sales cap still allows in its window (`None`: no sales cap).
    sales_left: Option<u32>,
    complaint_open: bool,
}

impl<'h> CustomerView<'h> {
    /// The view at `now_ms`; a customer without history gets everything.
    pub fn new(history: Option<&'h History>, policies: &Policies, now_ms: i64) -> Self {
        let sales_left = policies.sales_cap.map(|cap| {
            let made = history.map_or(0, |h| {
                h.category_contacts_since(
                    &policies.sales_categories,
                    now_ms.saturating_sub(cap.window_ms),
                )
            });
            cap.max.saturating_sub(made)
        });
        let complaint_open = history.is_some_and(|h| {
            policies
                .complaint_timeout_ms
                .is_some_and(|t| h.complaint_open(now_ms, t))
        });
        CustomerView {
            history,
            now_ms,
            sales_left,
            complaint_open,
        }
    }

    /// True once the customer had as many sales contacts in the window as the cap allows.
    pub fn sales_cap_reached(&self) -> bool {
        self.sales_left == Some(0)
    }

    /// Sales contacts the model's sales cap still allows this customer (`None`: no cap): a
    /// list sending several offers must not send more of them.
    pub fn sales_left(&self) -> Option<u32> {
        self.sales_left
    }

    /// True while the customer has an open complaint (and the model holds offers for it).
    pub fn complaint_open(&self) -> bool {
        self.complaint_open
    }
}

/// True while `since + cooldown` lies ahead of `now`.
#[inline]
fn cooling(since: Option<i64>, cooldown_ms: Option<i64>, now_ms: i64) -> bool {
    match (since, cooldown_ms) {
        (Some(t), Some(c)) => now_ms < t.saturating_add(c),
        _ => false,
    }
}

impl ContactView for CustomerView<'_> {
    #[inline]
    fn holds_back<'m>(&self, _: usize, offer: &'m Offer) -> Option<&'m str> {
        let h = self.history?;
        let caps = &offer.caps;
        if caps.complaint_held && self.complaint_open {
            return Some(&caps.why.complaint);
        }
        if caps.conversion_cooldown_ms.is_some() || caps.dismiss_cooldown_ms.is_some() {
            if let Some(m) = h.mark(offer.id_hash) {
                if cooling(m.converted(), caps.conversion_cooldown_ms, self.now_ms) {
                    return Some(&caps.why.conversion);
                }
                if cooling(m.dismissed(), caps.dismiss_cooldown_ms, self.now_ms) {
                    return Some(&caps.why.dismiss);
                }
            }
        }
        if caps.sales_capped && self.sales_cap_reached() {
            return Some(&caps.why.sales_cap);
        }
        if let Some(cap) = caps.impressions {
            let since = self.now_ms.saturating_sub(cap.window_ms);
            if h.impressions_since(offer.id_hash, since) >= cap.max {
                return Some(&caps.why.impressions);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contact::event::{Event, EventKind};
    use crate::engine::policy::DAY_MS as DAY;
    use crate::engine::{decide, CompiledModel, Decision, Request, Unbounded, Verdict};
    use crate::features::FeatureStore;
    use crate::model::{from_bytes, Limits};

    const NOW: i64 = 1_795_341_600_000; // 2026-11-22T10:00:00Z

    fn setup() -> (CompiledModel, FeatureStore) {
        let content = serde_json::json!({"title": "T", "body": "", "image_url": "https://cdn.test/i.jpg", "cta_url": "https://shop.test/x"});
        let offer = |id: &str, cat: &str, p: f64| {
            serde_json::json!({"id": id, "category": cat, "channels": ["web", "app"], "placements": ["home"],
                "value": 1, "scorer": {"kind": "constant", "propensity": p},
                "content": {"web": content, "app": content}})
        };
        let mut s1 = offer("s1", "sales", 0.9);
        s1["caps"] = serde_json::json!({"max_impressions": 2});
        let doc = serde_json::json!({
            "name": "v", "version": "1",
            "placements": {"home": {"channels": ["web", "app"], "limit": 5}},
            "policies": {
                "impression_cap": {"max_impressions": 3, "window_days": 7},
                "dismiss_cooldown_days": 30, "conversion_cooldown_days": 365,
                "sales_cap": {"max_contacts": 4, "window_days": 7, "categories": ["sales"]},
                "complaint_hold": {"categories": ["sales"], "timeout_days": 30}
            },
            "offers": [s1, offer("s2", "sales", 0.8), offer("svc", "service", 0.7)]
        });
        let store = FeatureStore::from_csv_bytes(b"customer_id,x\nC1,1\n", "t.csv").unwrap();
        let m = from_bytes(
            serde_json::to_vec(&doc).unwrap(),
            None,
            "t".into(),
            &store,
            &Limits::default(),
        )
        .unwrap();
        (m.compiled, store)
    }

    fn ev(
        kind: EventKind,
        offer: Option<&'static str>,
        ts_ms: i64,
        category: Option<&'static str>,
    ) -> Event<'static> {
        Event {
            category,
            ..Event::on(kind, "C1", offer, "app", ts_ms)
        }
    }

    fn run<'m>(m: &'m CompiledModel, s: &FeatureStore, h: &History, now: i64) -> Decision<'m> {
        let req = Request {
            customer_id: Some("C1"),
            channel: "web",
            placement: "home",
            explain: true,
            ..Request::default()
        };
        let view = CustomerView::new(Some(h), &m.policies, now);
        decide(m, s, &req, &view, &Unbounded, now)
    }

    fn excluded<'m>(m: &CompiledModel, d: &Decision<'m>, id: &str) -> Option<&'m str> {
        let i = m.offers.iter().position(|o| &*o.id == id).unwrap();
        match &d.explain[i] {
            Verdict::Excluded(std::borrow::Cow::Borrowed(why)) => Some(why),
            _ => None,
        }
    }

    fn apply(m: &CompiledModel, h: &mut History, e: Event<'_>) {
        assert!(h.apply(&e, m.policies.horizon_ms, NOW));
    }

    #[test]
    fn no_history_holds_nothing() {
        let (m, s) = setup();
        let d = run(&m, &s, &History::default(), NOW);
        assert_eq!(d.ranked.len(), 3);
    }

    #[test]
    fn dismiss_holds_the_offer_for_the_cool_down_on_every_channel() {
        let (m, s) = setup();
        let mut h = History::default();
        apply(
            &m,
            &mut h,
            ev(EventKind::Dismiss, Some("s2"), NOW, Some("sales")),
        );
        let d = run(&m, &s, &h, NOW + 1);
        assert_eq!(
            excluded(&m, &d, "s2"),
            Some("policies.dismiss_cooldown_days: dismissed, held back for 30 days")
        );
        assert_eq!(excluded(&m, &d, "s1"), None);
        assert!(excluded(&m, &run(&m, &s, &h, NOW + 30 * DAY - 1), "s2").is_some());
        assert_eq!(
            excluded(&m, &run(&m, &s, &h, NOW + 30 * DAY), "s2"),
            None,
            "back"
        );
    }

    #[test]
    fn conversion_holds_for_its_own_window() {
        let (m, s) = setup();
        let mut h = History::default();
        apply(
            &m,
            &mut h,
            ev(EventKind::Conversion, Some("svc"), NOW, None),
        );
        let held = run(&m, &s, &h, NOW + 364 * DAY);
        assert!(excluded(&m, &held, "svc")
            .unwrap()
            .starts_with("policies.conversion_cooldown_days"));
        assert_eq!(excluded(&m, &run(&m, &s, &h, NOW + 365 * DAY), "svc"), None);
    }

    #[test]
    fn impression_caps_count_per_offer_in_the_window() {
        let (m, s) = setup();
        let mut h = History::default();
        apply(
            &m,
            &mut h,
            ev(EventKind::Impression, Some("s1"), NOW - 6 * DAY, Some("x")),
        );
        assert_eq!(excluded(&m, &run(&m, &s, &h, NOW), "s1"), None);
        apply(
            &m,
            &mut h,
            ev(EventKind::Impression, Some("s1"), NOW - DAY, Some("x")),
        );
        let d = run(&m, &s, &h, NOW);
        assert_eq!(
            excluded(&m, &d, "s1"),
            Some("offers[0].caps.max_impressions: at most 2 impressions in 7 days")
        );
        // The older impression leaves the 7-day window.
        assert_eq!(excluded(&m, &run(&m, &s, &h, NOW + DAY), "s1"), None);
    }

    #[test]
    fn the_sales_cap_counts_every_offer_and_channel_and_spares_service() {
        let (m, s) = setup();
        let mut h = History::default();
        // Four sales contacts: two offers, one an outbound offer the model does not know.
        apply(
            &m,
            &mut h,
            ev(
                EventKind::Impression,
                Some("s2"),
                NOW - 3 * DAY,
                Some("sales"),
            ),
        );
        apply(
            &m,
            &mut h,
            ev(
                EventKind::Impression,
                Some("s2"),
                NOW - 2 * DAY,
                Some("sales"),
            ),
        );
        apply(
            &m,
            &mut h,
            ev(
                EventKind::Impression,
                Some("sms_promo"),
                NOW - DAY,
                Some("sales"),
            ),
        );
        apply(
            &m,
            &mut h,
            ev(
                EventKind::Impression,
                Some("svc"),
                NOW - DAY,
                Some("service"),
            ),
        );
        let view = CustomerView::new(Some(&h), &m.policies, NOW);
        assert!(!view.sales_cap_reached(), "three sales contacts of four");
        apply(
            &m,
            &mut h,
            ev(EventKind::Impression, Some("s1"), NOW - 1, Some("sales")),
        );
        let d = run(&m, &s, &h, NOW);
        let why = "policies.sales_cap: at most 4 sales contacts in 7 days across channels";
        assert_eq!(excluded(&m, &d, "s1"), Some(why));
        assert_eq!(excluded(&m, &d, "s2"), Some(why));
        assert_eq!(
            excluded(&m, &d, "svc"),
            None,
            "service offers are not capped"
        );
    }

    #[test]
    fn an_open_complaint_holds_sales_offers_only_until_resolved_or_timed_out() {
        let (m, s) = setup();
        let mut h = History::default();
        apply(&m, &mut h, ev(EventKind::Complaint, None, NOW, None));
        let d = run(&m, &s, &h, NOW + DAY);
        let why = "policies.complaint_hold: the customer has an open complaint";
        assert_eq!(excluded(&m, &d, "s1"), Some(why));
        assert_eq!(excluded(&m, &d, "s2"), Some(why));
        assert_eq!(excluded(&m, &d, "svc"), None);
        assert_eq!(d.ranked.len(), 1);
        assert_eq!(
            excluded(&m, &run(&m, &s, &h, NOW + 30 * DAY), "s1"),
            None,
            "timed out"
        );
        apply(
            &m,
            &mut h,
            ev(EventKind::ComplaintResolved, None, NOW + 2 * DAY, None),
        );
        assert_eq!(
            excluded(&m, &run(&m, &s, &h, NOW + 3 * DAY), "s1"),
            None,
            "resolved"
        );
    }
}
