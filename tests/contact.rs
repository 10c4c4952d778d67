//! Events, contact policies and the funnel, against the real server on the demo model (whose
//! `policies` declare every policy). Time is a manual clock: cool-downs are crossed by moving
//! it, never by sleeping.

mod support;

use serde_json::{json, Value};
use support::*;

async fn explain(srv: &TestServer, customer: &str, channel: &str, placement: &str) -> Value {
    decide(
        srv.public,
        json!({"customer_id": customer, "channel": channel, "placement": placement, "explain": true}),
    )
    .await
}

/// Offers scored (not excluded) for a customer on a channel and placement.
async fn scored(srv: &TestServer, customer: &str, channel: &str, placement: &str) -> Vec<String> {
    let a = explain(srv, customer, channel, placement).await;
    a["explain"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["excluded"].is_null())
        .map(|e| e["offer_id"].as_str().unwrap().to_owned())
        .collect()
}

fn category(id: &str) -> String {
    demo_categories()
        .into_iter()
        .find(|(o, _)| o == id)
        .map(|(_, c)| c)
        .unwrap()
}

/// Offers that declare caps of their own in the demo (their reasons differ from the defaults).
const OWN_CAPS: [&str; 6] = [
    "data_boost_10gb",
    "data_boost_5gb",
    "roaming_pass_eu",
    "device_upgrade_5g",
    "nps_survey",
    "complaint_followup",
];

/// The first demo customer (from C0000001) for whom `pick` finds an offer.
async fn find<F>(srv: &TestServer, pick: F) -> (String, String)
where
    F: FnMut(&[String], &[String]) -> Option<String>,
{
    find_other(srv, "", pick).await
}

/// The same, skipping one customer.
async fn find_other<F>(srv: &TestServer, skip: &str, mut pick: F) -> (String, String)
where
    F: FnMut(&[String], &[String]) -> Option<String>,
{
    for i in 1..=300 {
        let c = format!("C{i:07}");
        if c == skip {
            continue;
        }
        let app = scored(srv, &c, "app", "app_home").await;
        let web = scored(srv, &c, "web", "plans_page").await;
        if let Some(o) = pick(&app, &web) {
            return (c, o);
        }
    }
    panic!("no demo customer fits");
}

fn event(kind: &str, customer: &str, offer: &str, channel: &str) -> Value {
    json!({"type": kind, "customer_id": customer, "offer_id": offer, "channel": channel})
}

#[tokio::test]
async fn a_dismiss_holds_the_offer_on_every_channel_until_the_cool_down_ends() {
    let (srv, clock) = start_demo_contacts(None).await;
    let (c, x) = find(&srv, |app, web| {
        app.iter()
            .find(|o| web.contains(o) && !OWN_CAPS.contains(&o.as_str()))
            .cloned()
    })
    .await;
    let r = post_events(srv.public, json!([event("dismiss", &c, &x, "web")])).await;
    assert_eq!(r["accepted"], 1);
    let why = "policies.dismiss_cooldown_days: dismissed, held back for 30 days";
    for (ch, pl) in [("web", "plans_page"), ("app", "app_home")] {
        let a = explain(&srv, &c, ch, pl).await;
        assert_eq!(verdict(&a, &x).as_deref(), Some(why), "{ch}");
        assert!(a["offers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["offer_id"] != x.as_str()));
    }
    clock.advance(std::time::Duration::from_millis((30 * DAY - 1) as u64));
    assert_eq!(
        verdict(&explain(&srv, &c, "app", "app_home").await, &x).as_deref(),
        Some(why)
    );
    clock.advance(std::time::Duration::from_millis(1));
    for (ch, pl) in [("web", "plans_page"), ("app", "app_home")] {
        let a = explain(&srv, &c, ch, pl).await;
        assert_eq!(verdict(&a, &x), None, "back on {ch} after 30 days");
    }
    srv.stop().await;
}

#[tokio::test]
async fn the_sales_cap_counts_contacts_across_channels_and_spares_other_categories() {
    let (srv, clock) = start_demo_contacts(None).await;
    let plain_sales = |o: &&String| category(o) == "sales" && !OWN_CAPS.contains(&o.as_str());
    let (c, _) = find(&srv, |app, _| {
        let sales = app.iter().filter(plain_sales).count();
        let other = app.iter().any(|o| category(o) != "sales");
        (sales >= 2 && other).then(|| app[0].clone())
    })
    .await;
    let before = scored(&srv, &c, "app", "app_home").await;
    let sales: Vec<&String> = before.iter().filter(plain_sales).collect();
    // Four sales contacts on web, app and an outbound channel nextbest does not serve.
    let outbound = json!({"type": "impression", "customer_id": c, "offer_id": "sms_winter_promo",
        "channel": "sms", "category": "sales"});
    let r = post_events(
        srv.public,
        json!([
            event("impression", &c, sales[0], "web"),
            event("impression", &c, sales[1], "app"),
            event("impression", &c, sales[1], "web"),
            outbound,
        ]),
    )
    .await;
    assert_eq!(r["accepted"], 4);
    assert_eq!(
        scored(&srv, &c, "app", "app_home").await,
        before,
        "4 of 5: nothing held"
    );
    // The fifth names a category the model does not give its offer: the model's counts.
    let mut fifth = event("impression", &c, sales[0], "app");
    fifth["category"] = "service".into();
    let r = post_events(srv.public, json!([fifth])).await;
    assert_eq!(r["accepted"], 1);
    let warning = r["warnings"][0]["warning"].as_str().unwrap_or_default();
    assert!(
        warning.starts_with("category: `service` is not the category the active model gives")
            && warning.contains("(`sales`)"),
        "{r}"
    );
    let a = explain(&srv, &c, "app", "app_home").await;
    let why = "policies.sales_cap: at most 5 sales contacts in 7 days across channels";
    for o in &before {
        if category(o) == "sales" {
            assert_eq!(verdict(&a, o).as_deref(), Some(why), "{o}");
        } else {
            assert_eq!(verdict(&a, o), None, "{o} is not a sales offer");
        }
    }
    // The same cap on the other channel.
    let web = explain(&srv, &c, "web", "plans_page").await;
    assert_eq!(verdict(&web, sales[0]).as_deref(), Some(why));
    clock.advance(std::time::Duration::from_millis((7 * DAY) as u64));
    assert_eq!(
        scored(&srv, &c, "app", "app_home").await,
        before,
        "the window passed"
    );
    srv.stop().await;
}

#[tokio::test]
async fn the_impression_cap_counts_one_offer_across_channels() {
    let (srv, _clock) = start_demo_contacts(None).await;
    let (c, x) = find(&srv, |app, web| {
        app.iter()
            .find(|o| web.contains(o) && !OWN_CAPS.contains(&o.as_str()))
            .cloned()
    })
    .await;
    let shown = [
        event("impression", &c, &x, "web"),
        event("impression", &c, &x, "app"),
    ];
    post_events(srv.public, json!(shown)).await;
    assert_eq!(
        verdict(&explain(&srv, &c, "web", "plans_page").await, &x),
        None
    );
    post_events(srv.public, json!([event("impression", &c, &x, "app")])).await;
    let a = explain(&srv, &c, "web", "plans_page").await;
    assert_eq!(
        verdict(&a, &x).as_deref(),
        Some("policies.impression_cap: at most 3 impressions in 7 days")
    );
    srv.stop().await;
}

#[tokio::test]
async fn a_conversion_holds_the_offer_for_its_own_window() {
    let (srv, clock) = start_demo_contacts(None).await;
    let (c, x) = find(&srv, |app, _| {
        app.iter()
            .find(|o| !OWN_CAPS.contains(&o.as_str()))
            .cloned()
    })
    .await;
    post_events(srv.public, json!([event("conversion", &c, &x, "app")])).await;
    let why = "policies.conversion_cooldown_days: bought, held back for 365 days";
    let day = |n: i64| std::time::Duration::from_millis((n * DAY) as u64);
    clock.advance(day(364));
    assert_eq!(
        verdict(&explain(&srv, &c, "app", "app_home").await, &x).as_deref(),
        Some(why)
    );
    clock.advance(day(1));
    assert_eq!(
        verdict(&explain(&srv, &c, "app", "app_home").await, &x),
        None
    );
    srv.stop().await;
}

#[tokio::test]
async fn an_open_complaint_holds_back_sales_offers_only() {
    let (srv, clock) = start_demo_contacts(None).await;
    let (c, _) = find(&srv, |app, _| {
        let sales = app.iter().any(|o| category(o) == "sales");
        let other = app.iter().any(|o| category(o) != "sales");
        (sales && other).then(|| app[0].clone())
    })
    .await;
    let before = scored(&srv, &c, "app", "app_home").await;
    let complaint = json!({"type": "complaint", "customer_id": c, "channel": "call_center"});
    post_events(srv.public, json!([complaint])).await;
    let a = explain(&srv, &c, "app", "app_home").await;
    for o in &before {
        if category(o) == "sales" {
            assert_eq!(
                verdict(&a, o).as_deref(),
                Some("policies.complaint_hold: the customer has an open complaint")
            );
        } else {
            assert_eq!(
                verdict(&a, o),
                None,
                "service and retention offers still shown"
            );
        }
    }
    clock.advance(std::time::Duration::from_secs(3600));
    let resolved = json!({"type": "complaint_resolved", "customer_id": c});
    post_events(srv.public, json!([resolved])).await;
    assert_eq!(scored(&srv, &c, "app", "app_home").await, before);
    srv.stop().await;
}

#[tokio::test]
async fn repeats_count_once_and_outcomes_may_arrive_before_their_impression() {
    let (srv, _clock) = start_demo_contacts(None).await;
    let (c, x) = find(&srv, |app, _| {
        app.iter()
            .find(|o| !OWN_CAPS.contains(&o.as_str()))
            .cloned()
    })
    .await;
    let d = decide(
        srv.public,
        json!({"customer_id": c, "channel": "app", "placement": "app_home", "limit": 50}),
    )
    .await;
    assert!(d["offers"]
        .as_array()
        .unwrap()
        .iter()
        .any(|o| o["offer_id"] == x.as_str()));
    let id = d["decision_id"].as_str().unwrap();
    let ev = |kind: &str, event_id: &str, ts: &str| {
        json!({"type": kind, "customer_id": c, "offer_id": x, "channel": "app",
               "decision_id": id, "event_id": event_id, "ts": ts})
    };
    // The conversion first, its impression after; then retries, one inside a batch.
    let conv = ev("conversion", "e-conv", "2026-11-22T09:59:00Z");
    let r = post_events(srv.public, json!([conv])).await;
    assert_eq!(
        (r["accepted"].as_u64(), r["duplicates"].as_u64()),
        (Some(1), Some(0))
    );
    let imp = ev("impression", "e-imp", "2026-11-22T09:58:00Z");
    let r = post_events(srv.public, json!([imp, imp, conv])).await;
    assert_eq!(r["accepted"], 1, "the impression is new");
    assert_eq!(
        r["duplicates"], 2,
        "repeats are acknowledged but counted once"
    );
    assert_eq!(r["rejected"], json!([]));

    let stats = get(srv.admin, "/admin/stats").await.json();
    let row = stats["funnel"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["offer_id"] == x.as_str() && r["channel"] == "app")
        .unwrap_or_else(|| panic!("no funnel row for {x} in {stats}"))
        .clone();
    assert_eq!(row["variant"], "champion");
    assert_eq!(row["model"], "demo");
    assert!(row["decisions"].as_u64().unwrap() >= 1);
    assert_eq!(row["impressions"], 1);
    assert_eq!(row["conversions"], 1);
    assert_eq!(row["rates"]["conversion"], 1.0);
    // The stats add up what the 202s said: 1 + 1 accepted, 0 + 2 duplicates.
    assert_eq!(stats["events"]["duplicates"], 2);
    assert_eq!(stats["events"]["accepted"], 2);
    // The conversion governs although its impression came later.
    let a = explain(&srv, &c, "app", "app_home").await;
    assert!(verdict(&a, &x)
        .unwrap()
        .starts_with("policies.conversion_cooldown_days"));

    // Dismisses out of order: the latest one wins, whatever arrives last.
    let (c2, y) = find_other(&srv, &c, |app, _| app.first().cloned()).await;
    let dismiss = |ts: &str| json!({"type": "dismiss", "customer_id": c2, "offer_id": y, "channel": "web", "ts": ts});
    post_events(srv.public, json!([dismiss("2026-11-20T10:00:00Z")])).await;
    post_events(srv.public, json!([dismiss("2026-10-01T10:00:00Z")])).await;
    let a = explain(&srv, &c2, "app", "app_home").await;
    assert!(verdict(&a, &y).unwrap().contains("dismiss"), "{a}");
    srv.stop().await;
}

#[tokio::test]
async fn a_batch_with_bad_events_keeps_the_good_ones() {
    let (srv, _clock) = start_demo_contacts(None).await;
    let (c, x) = find(&srv, |app, _| app.first().cloned()).await;
    let r = post_events(
        srv.public,
        json!([
            event("dismiss", &c, &x, "web"),
            {"type": "click", "customer_id": c, "offer_id": x, "ts": "2099-01-01T00:00:00Z"},
            event("click", &c, &x, "web"),
            {"type": "impression", "customer_id": c},
            {"type": "click", "customer_id": c, "offer_id": x, "ts": "1969-07-20T20:17:00Z"},
        ]),
    )
    .await;
    assert_eq!(r["accepted"], 2);
    let rejected = r["rejected"].as_array().unwrap();
    let idx: Vec<u64> = rejected
        .iter()
        .map(|e| e["index"].as_u64().unwrap())
        .collect();
    assert_eq!(idx, [1, 3, 4]);
    let errors: Vec<&str> = rejected
        .iter()
        .map(|e| e["error"].as_str().unwrap())
        .collect();
    assert_eq!(errors[0], "ts: more than 5 minutes in the future");
    assert_eq!(
        errors[1],
        "offer_id: missing field (required for impression)"
    );
    assert_eq!(errors[2], "ts: before 1970");
    // The good dismiss took effect.
    let a = explain(&srv, &c, "app", "app_home").await;
    assert!(verdict(&a, &x).unwrap().contains("dismiss"));
    let stats = get(srv.admin, "/admin/stats").await.json();
    assert_eq!(stats["events"]["rejected"], 3);
    assert_eq!(stats["events"]["accepted"], 2);

    // An event that breaks the schema refuses its batch whole, naming the event and field.
    for (bad, detail) in [
        (
            json!({"type": "viewed", "customer_id": c, "offer_id": x}),
            "events[1].type: expected one of impression, click",
        ),
        (
            json!({"type": "click", "offer_id": x}),
            "events[1].customer_id: missing field",
        ),
        (
            json!({"type": "click", "customer_id": c, "offer_id": x, "ts": "tomorrow"}),
            "events[1].ts: `tomorrow` is not an RFC 3339 time",
        ),
        (
            json!({"type": "click", "customer_id": c, "offer_id": x, "ts": "2026-11-22T10:00:00"}),
            "events[1].ts: `2026-11-22T10:00:00` has no UTC offset",
        ),
        (
            json!("not an object"),
            "events[1]: expected an event object",
        ),
        (
            json!({"type": "click", "customer_id": c, "offer_id": x, "channel": 7}),
            "events[1].channel: expected a string",
        ),
    ] {
        let body = json!({"events": [event("click", &c, &x, "web"), bad]});
        let r = post_json(srv.public, "/v1/events", &body).await;
        let got = r.assert_error(400, "invalid_request");
        assert!(got.starts_with(detail), "{got}");
    }
    let stats = get(srv.admin, "/admin/stats").await.json();
    assert_eq!(stats["events"]["accepted"], 2, "nothing of those batches");

    // Whole-request errors.
    let json_ct = [("content-type", "application/json")];
    for (body, code) in [
        (&b"{\"events\": ["[..], "malformed_json"),
        (b"{\"events\": {}}", "invalid_request"),
        (b"{}", "invalid_request"),
        (b"[]", "invalid_request"),
    ] {
        request(srv.public, "POST", "/v1/events", &json_ct, body)
            .await
            .assert_error(400, code);
    }
    let many = json!({"events": vec![json!({}); 1001]});
    let big = serde_json::to_vec(&many).unwrap();
    let r = request(
        srv.public,
        "POST",
        "/v1/events",
        &[("content-type", "application/json")],
        &big,
    )
    .await;
    assert!(r
        .assert_error(400, "invalid_request")
        .contains("at most 1000"));
    get(srv.public, "/v1/events")
        .await
        .assert_error(405, "method_not_allowed");
    request(
        srv.public,
        "POST",
        "/v1/events",
        &[("content-type", "text/plain")],
        b"x",
    )
    .await
    .assert_error(415, "unsupported_media_type");
    let huge = vec![b' '; 70 * 1024];
    request(
        srv.public,
        "POST",
        "/v1/events",
        &[("content-type", "application/json")],
        &huge,
    )
    .await
    .assert_error(413, "payload_too_large");
    // An empty batch is fine.
    assert_eq!(post_events(srv.public, json!([])).await["accepted"], 0);
    srv.stop().await;
}

#[tokio::test]
async fn events_accepted_before_a_restart_govern_decisions_after_it() {
    let dir = TempDir::new("restart");
    let (srv, _clock) = start_demo_contacts(Some(&dir.0)).await;
    let (c, x) = find(&srv, |app, web| {
        app.iter()
            .find(|o| web.contains(o) && category(o) == "sales")
            .cloned()
    })
    .await;
    let (c2, _) = find_other(&srv, &c, |app, _| {
        app.iter().find(|o| category(o) == "sales").cloned()
    })
    .await;
    let before2 = scored(&srv, &c2, "app", "app_home").await;
    let r = post_events(
        srv.public,
        json!([
            {"type": "dismiss", "customer_id": c, "offer_id": x, "channel": "web", "event_id": "r1"},
            {"type": "complaint", "customer_id": c2, "event_id": "r2"},
            // Stamped by its channel weeks before it arrived (a backfill, a late batch).
            {"type": "click", "customer_id": c2, "offer_id": x, "channel": "web",
             "event_id": "r3", "ts": "2026-10-01T00:00:00Z"},
        ]),
    )
    .await;
    assert_eq!(r["accepted"], 3);
    srv.stop_and_close().await;

    let (srv, _clock) = start_demo_contacts(Some(&dir.0)).await;
    let stats = get(srv.admin, "/admin/stats").await.json();
    assert_eq!(stats["log"]["replay"]["records"], 3, "{stats}");
    assert_eq!(stats["log"]["replay"]["torn_records_dropped"], 0);
    let a = explain(&srv, &c, "web", "plans_page").await;
    assert!(verdict(&a, &x).unwrap().contains("dismiss"), "{a}");
    let a = explain(&srv, &c2, "app", "app_home").await;
    for o in before2.iter().filter(|o| category(o) == "sales") {
        assert!(verdict(&a, o).unwrap().contains("complaint_hold"));
    }
    // The ids survived too: a retry after the restart is a repeat, however old its `ts` (ids
    // are remembered for a week from their arrival), and a retry stamped again is still one.
    // What each id was first sent for survived with it: another event under `r1` is named.
    let r = post_events(
        srv.public,
        json!([{"type": "complaint", "customer_id": c2, "event_id": "r2"},
               {"type": "click", "customer_id": c2, "offer_id": x, "channel": "web",
                "event_id": "r3", "ts": "2026-10-01T00:05:00Z"},
               {"type": "dismiss", "customer_id": c2, "offer_id": x, "channel": "web",
                "event_id": "r1"}]),
    )
    .await;
    assert_eq!(r["duplicates"], 3, "{r}");
    let w = r["warnings"]
        .as_array()
        .expect("a warning for the reused id");
    assert_eq!(w.len(), 1, "{r}");
    assert_eq!(w[0]["index"], 2, "{r}");
    assert!(
        w[0]["warning"]
            .as_str()
            .unwrap()
            .starts_with("event_id: `r1` was first sent for another event"),
        "{r}"
    );
    srv.stop_and_close().await;
}

#[tokio::test]
async fn the_funnel_counts_per_offer_channel_and_variant_on_stats_and_metrics() {
    let (srv, _clock) = start_demo_contacts(None).await;
    let (c, _) = find(&srv, |app, _| app.first().cloned()).await;
    let ask = json!({"customer_id": c, "channel": "app", "placement": "app_home"});
    let first = decide(srv.public, ask.clone()).await;
    let top = first["offers"][0]["offer_id"].as_str().unwrap().to_owned();
    let id = first["decision_id"].as_str().unwrap().to_owned();
    let row_of = |stats: &Value| {
        stats["funnel"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["offer_id"] == top.as_str() && r["channel"] == "app")
            .cloned()
            .unwrap_or_else(|| panic!("no row for {top} in {stats}"))
    };
    // Finding the customer made decisions too: count from here.
    let before = row_of(&get(srv.admin, "/admin/stats").await.json())["decisions"]
        .as_u64()
        .unwrap();
    for _ in 0..3 {
        let d = decide(srv.public, ask.clone()).await;
        assert_eq!(d["offers"][0]["offer_id"], top.as_str());
    }
    let with_id = |kind: &str| json!({"type": kind, "customer_id": c, "offer_id": top, "channel": "app", "decision_id": id});
    post_events(
        srv.public,
        json!([
            with_id("impression"),
            with_id("impression"),
            with_id("click"),
            with_id("dismiss"),
            event("impression", &c, &top, "app")
        ]),
    )
    .await;
    let stats = get(srv.admin, "/admin/stats").await.json();
    let row = row_of(&stats);
    assert_eq!(
        (&row["channel"], &row["variant"], &row["version"]),
        (&json!("app"), &json!("champion"), &json!("1"))
    );
    let decisions = before + 3;
    assert_eq!(row["decisions"], decisions);
    // The decision's impression posted twice counts once; the impression without a decision
    // id counts by offer, channel and the customer's assignment (the champion: no challenger
    // is active).
    assert_eq!(row["impressions"], 2);
    assert_eq!(row["clicks"], 1);
    assert_eq!(row["dismisses"], 1);
    assert_eq!(row["conversions"], 0);
    assert_eq!(row["rates"]["impression"], 2.0 / decisions as f64);
    assert_eq!(row["rates"]["click"], 0.5);
    assert_eq!(row["rates"]["dismiss"], 0.5);
    assert_eq!(stats["unattributed"]["impressions"], 0);
    let metrics = String::from_utf8(get(srv.admin, "/metrics").await.body).unwrap();
    let labels = format!(
        "model=\"demo\",version=\"1\",offer=\"{top}\",channel=\"app\",variant=\"champion\""
    );
    for line in [
        format!("nextbest_funnel_total{{{labels},stage=\"decisions\"}} {decisions}"),
        format!("nextbest_funnel_total{{{labels},stage=\"impressions\"}} 2"),
        format!("nextbest_funnel_rate{{{labels},rate=\"click\"}} 0.5"),
        "nextbest_funnel_unattributed_total{stage=\"impressions\"} 0".to_owned(),
        "nextbest_events_total{outcome=\"accepted\"} 5".to_owned(),
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no `{line}` in\n{metrics}"
        );
    }
    srv.stop().await;
}

#[tokio::test]
async fn the_default_state_keeps_history_as_long_as_the_active_model_needs() {
    // AppState::new starts with in-memory contacts that know no model; the first batch raises
    // the horizon to the model's longest window, so even an event from 20 days ago still counts.
    let srv = start_demo().await;
    let (c, x) = find(&srv, |app, _| app.first().cloned()).await;
    let ts = humantime::format_rfc3339_seconds(
        std::time::SystemTime::now() - std::time::Duration::from_secs(20 * 86_400),
    )
    .to_string();
    let dismiss = json!({"type": "dismiss", "customer_id": c, "offer_id": x, "ts": ts});
    post_events(srv.public, json!([dismiss])).await;
    let a = explain(&srv, &c, "app", "app_home").await;
    assert!(verdict(&a, &x).unwrap().contains("dismiss"), "{a}");
    srv.stop().await;
}
