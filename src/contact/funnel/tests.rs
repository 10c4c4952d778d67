use super::*;
use crate::contact::attribution::{decision_id_with_random, Origin};
use crate::contact::event::{Event, EventKind};

const NOW: i64 = 1_795_000_000_000;

/// A table of two offers (`a`, `b`) on `web`, without a model.
pub(super) fn table(key: u32) -> FunnelTable {
    FunnelTable::from_parts(
        key,
        "m".into(),
        "1".into(),
        vec!["a".into(), "b".into()].into(),
        vec!["x".into(), "y".into()].into(),
        vec![1.0, 2.5].into(),
        vec!["web".into()].into(),
    )
}

/// A channel's index in a model.
fn channel(m: &CompiledModel, name: &str) -> usize {
    m.channels.iter().position(|c| &*c.name == name).unwrap()
}

fn event(
    kind: EventKind,
    offer: &'static str,
    decision: Option<u128>,
    ts_ms: i64,
) -> Event<'static> {
    Event {
        kind,
        ts_ms,
        customer_id: "C1",
        visitor_id: None,
        offer_id: Some(offer),
        channel: Some("web"),
        placement: None,
        decision_id: decision,
        event_id: None,
        category: None,
        request: None,
        attributed: None,
    }
}

#[test]
fn a_decisions_offer_counts_each_stage_once_so_rates_stay_proportions() {
    let f = Funnel::default();
    f.restore(vec![table(5)]);
    let origin = Origin {
        channel: Some(0),
        slot: Some(0),
        customer: None,
    };
    let first = decision_id_with_random(NOW, 5, Variant::Champion, origin, 1).0;
    let second = decision_id_with_random(NOW, 5, Variant::Champion, origin, 2).0;
    let ranked = |offer| crate::engine::Ranked {
        offer,
        propensity: 0.1,
        score: 0.1,
    };
    f.decided(5, 0, &[ranked(0), ranked(1)], Variant::Champion, false);
    f.decided(5, 0, &[ranked(0)], Variant::Champion, false);
    // The first decision: its impression posted twice, three purchases of offer a, one click
    // on offer b; the second: an impression and a conversion.
    for (kind, offer, d, minutes) in [
        (EventKind::Impression, "a", first, 0),
        (EventKind::Impression, "a", first, 1),
        (EventKind::Impression, "b", first, 1),
        (EventKind::Conversion, "a", first, 5),
        (EventKind::Conversion, "a", first, 60),
        (EventKind::Conversion, "a", first, 600),
        (EventKind::Click, "b", first, 7),
        (EventKind::Impression, "a", second, 2),
        (EventKind::Conversion, "a", second, 9),
    ] {
        f.event(&event(kind, offer, Some(d), NOW + minutes * 60_000));
    }
    let t = f.table(5).unwrap();
    assert_eq!(
        t.counts("a", "web", Variant::Champion).unwrap(),
        [2, 2, 0, 2, 0],
        "one impression and one conversion per decision"
    );
    assert_eq!(
        t.counts("b", "web", Variant::Champion).unwrap(),
        [1, 1, 1, 0, 0]
    );
    let rows = f.rows();
    let a = rows.iter().find(|r| r["offer_id"] == "a").unwrap();
    assert_eq!(a["rates"]["conversion"], 1.0, "{a}");

    // Without a decision id a repeat cannot be told from a new outcome: it counts.
    f.event(&event(EventKind::Conversion, "b", None, NOW));
    assert_eq!(f.unattributed()[3], 1, "no active experiment: unattributed");
    f.event(&event(EventKind::Conversion, "b", None, NOW));
    assert_eq!(f.unattributed()[3], 2);

    // A key is remembered for a week or two, as event ids are, by the events' own times: three
    // weeks on, a conversion quoting the same decision counts again.
    let later = NOW + 3 * crate::contact::state::EVENT_ID_MEMORY.as_millis() as i64;
    f.event(&event(EventKind::Conversion, "a", Some(second), later));
    assert_eq!(t.counts("a", "web", Variant::Champion).unwrap()[3], 3);
}

/// A table restored from a counts file written before placements and exploration shares were
/// kept takes them from its model when bound again; a table that has them keeps its own.
#[test]
fn binding_a_restored_table_fills_in_its_layout() {
    let csv = "customer_id,x\nC1,1\n";
    let store = crate::features::FeatureStore::from_csv_bytes(csv.as_bytes(), "t.csv").unwrap();
    let doc = serde_json::json!({"name": "m", "version": "1",
        "placements": {"home": {"channels": ["web"], "exploration": {"share": 0.25}},
                       "plans": {"channels": ["web"]}},
        "offers": [{"id": "a", "category": "x", "channels": ["web"], "placements": ["home", "plans"],
            "value": 1,
            "scorer": {"kind": "logistic", "intercept": 0.0, "weights": {}},
            "content": {"web": {"title": "T", "image_url": "https://cdn.test/i.jpg",
                "cta_url": "https://shop.test/x"}}}]});
    let m = crate::model::from_doc(&doc, &store);
    let f = Funnel::default();
    f.restore(vec![table(3)]);
    let restored = f.table(3).unwrap();
    assert_eq!(restored.placement(0, 0), None);
    let bound = f.bind(&m.compiled, 3);
    assert!(
        Arc::ptr_eq(&bound, &restored),
        "the restored table is kept, counts and all"
    );
    let web = channel(&m.compiled, "web");
    let names: Vec<_> = (0..2).filter_map(|s| bound.placement(web, s)).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(
        names.contains(&"home") && names.contains(&"plans"),
        "{names:?}"
    );
    let home = (0..2)
        .find(|&s| bound.placement(web, s) == Some("home"))
        .unwrap();
    assert_eq!(bound.exploration.get().unwrap()[web][home], 0.25);
}

/// An outcome of an offer the quoted decision's placement never shows (neither a candidate nor
/// its fallback content) is no outcome of that decision: it stays out of the offer's funnel,
/// and so after a restart from the counts file.
#[test]
fn an_offer_the_decisions_placement_never_shows_stays_out_of_its_funnel() {
    let csv = "customer_id,x\nC1,1\n";
    let store = crate::features::FeatureStore::from_csv_bytes(csv.as_bytes(), "t.csv").unwrap();
    let offer = |id: &str, placement: &str| {
        serde_json::json!({"id": id, "category": "x", "channels": ["web"],
            "placements": [placement], "value": 1,
            "scorer": {"kind": "logistic", "intercept": 0.0, "weights": {}},
            "content": {"web": {"title": "T", "image_url": "https://cdn.test/i.jpg",
                "cta_url": "https://shop.test/x"}}})
    };
    let doc = serde_json::json!({"name": "m", "version": "1",
        "placements": {"home": {"channels": ["web"]}, "plans": {"channels": ["web"]}},
        "offers": [offer("a", "home"), offer("b", "plans"), offer("c", "plans")],
        "fallback": {"web": {"home": [{"offer_id": "c", "content": {"title": "T",
            "image_url": "https://cdn.test/i.jpg", "cta_url": "https://shop.test/c"}}]}}});
    let m = crate::model::from_doc(&doc, &store);
    let f = Funnel::default();
    let t = f.bind(&m.compiled, 9);
    let web = channel(&m.compiled, "web");
    let home = (0..2)
        .find(|&s| t.placement(web, s) == Some("home"))
        .unwrap();
    let origin = Origin {
        channel: Some(web),
        slot: Some(home),
        customer: None,
    };
    let d = decision_id_with_random(NOW, 9, Variant::Champion, origin, 1).0;
    let conversions =
        |t: &FunnelTable, offer| t.counts(offer, "web", Variant::Champion).unwrap()[3];
    for offer in ["a", "b", "c"] {
        f.event(&event(EventKind::Conversion, offer, Some(d), NOW));
    }
    assert_eq!(conversions(&t, "a"), 1, "a candidate of home");
    assert_eq!(conversions(&t, "c"), 1, "home's fallback content");
    assert_eq!(conversions(&t, "b"), 0, "home never shows b");
    assert_eq!(f.unattributed()[3], 1);
    let index = |id| t.offer(id).unwrap();
    assert_eq!(t.shows(web, home, index("b")), Some(false));
    assert_eq!(t.shows(web, home, index("a")), Some(true));

    // The counts file keeps what each placement shows, for a table whose model is gone.
    let dir = std::env::temp_dir().join(format!("nb-funnel-shown-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    super::store::save(&dir, &f).unwrap();
    let restored = Funnel::default();
    super::store::load(&dir, &restored).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let r = restored.table(9).unwrap();
    assert_eq!(r.shows(web, home, index("b")), Some(false));
    restored.event(&event(EventKind::Conversion, "b", Some(d), NOW + 1));
    assert_eq!(conversions(&r, "b"), 0);
}
