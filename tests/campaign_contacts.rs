//! Outbound campaigns and the contact rules: frequency caps across campaigns and channels,
//! suppression and the control group, send windows and time zones, capacity periods, and
//! outbound contacts counted by the live server.

mod support;

use std::collections::{BTreeSet, HashMap};

use serde_json::{json, Value};

use nextbest::campaign::commit::{self, Target};
use nextbest::campaign::{self, RunConfig};
use support::campaign::*;
use support::{demo_dir, post_json, TempDir};

#[test]
fn a_frequency_cap_holds_across_campaigns_committed_one_after_the_other() {
    let base = Base::new("cmp-freq", 200);
    let freq = json!({"max_contacts": 1, "window_days": 7, "channels": ["sms", "email"]});
    let mut first = sms("first");
    first["capacity"] = json!({"max_contacts": 60});
    first["frequency"] = freq.clone();
    let now = support_now();
    let a = base.run(&first, "a", now);
    assert_eq!(a.rows.len(), 60);
    let done = commit::commit(
        &a.out,
        &Target::Direct {
            data_dir: base.path("data"),
        },
        now,
    )
    .unwrap();
    assert_eq!((done.events, done.accepted, done.duplicates), (60, 60, 0));

    let second = json!({"name": "second", "channel": "email", "placement": "email_campaign",
                        "capacity": {"max_contacts": 60}, "frequency": freq});
    let b = base.run(&second, "b", now + HOUR);
    assert!(
        a.customers().is_disjoint(&b.customers()),
        "a customer texted an hour ago must not get the e-mail"
    );
    assert_eq!(b.summary.held_out.frequency, 60);
    assert_eq!(b.rows.len(), 60, "others fill the capacity");

    // A transactional message bypasses the frequency cap.
    let mut urgent = second.clone();
    urgent["name"] = json!("urgent");
    urgent["transactional"] = json!(true);
    let u = base.run(&urgent, "u", now + HOUR);
    assert_eq!(u.summary.held_out.frequency, 0);
    assert!(!a.customers().is_disjoint(&u.customers()));

    // The SMS gateway's daily capacity counts what the first campaign already sent.
    let mut again = sms("again");
    again["capacity"] = json!({"max_contacts": 100, "per": "day"});
    let g = base.run(&again, "g", now + HOUR);
    let cap = g.summary.capacity.as_ref().unwrap();
    assert_eq!((cap.used_before, cap.available), (60, 40));
    assert_eq!(g.rows.len(), 40);
}

/// The control group is drawn from the list the campaign would send: with it, the list and
/// the control group together are exactly the list without it, split by the salt's stable
/// hash; suppression holds whether transactional or not.
#[test]
fn suppression_and_a_stable_control_group_drawn_from_the_list() {
    let base = Base::new("cmp-control", 2000);
    let suppressed: Vec<String> = (0..2000).step_by(97).map(|i| format!("K{i:05}")).collect();
    std::fs::write(
        base.path("optouts.txt"),
        format!("customer_id\n# opted out\n{}\n", suppressed.join("\n")),
    )
    .unwrap();
    let mut doc = sms("ctl");
    doc["suppression"] = json!(["optouts.txt"]);
    doc["transactional"] = json!(true);
    doc["capacity"] = json!({"max_contacts": 600, "per": "day"});
    let without = base.run(&doc, "without", NOW);
    doc["control_group"] = json!({"share": 0.2, "salt": "s1"});
    let run = base.run(&doc, "one", NOW);
    let selected = run.customers();
    for s in &suppressed {
        assert!(
            !selected.contains(s),
            "{s} is suppressed, transactional or not"
        );
    }
    assert_eq!(run.summary.held_out.suppression, suppressed.len() as u64);
    let would_send = without.customers();
    assert_eq!(would_send.len(), 600, "the capacity binds");
    assert!(run.summary.eligible > 900, "{}", run.summary.eligible);

    let control: BTreeSet<String> = csv::Reader::from_path(run.out.join("control.csv"))
        .unwrap()
        .records()
        .map(|r| r.unwrap()[0].to_owned())
        .collect();
    assert!(control.is_disjoint(&selected));
    assert_eq!(
        control.union(&selected).cloned().collect::<BTreeSet<_>>(),
        would_send,
        "the list and the control group are the list without a control group"
    );
    for c in &control {
        assert!(nextbest::experiment::assignment("s1", c) < 0.2, "{c}");
    }
    for c in &selected {
        assert!(nextbest::experiment::assignment("s1", c) >= 0.2, "{c}");
    }
    let share = control.len() as f64 / 600.0;
    let sigma = (0.2 * 0.8 / 600.0_f64).sqrt();
    assert!((share - 0.2).abs() < 4.0 * sigma, "control share {share}");
    let h = &run.summary.held_out;
    assert_eq!(h.control_group, control.len() as u64);
    assert_eq!(run.summary.selected, 600 - h.control_group);
    assert_eq!(
        run.summary.eligible,
        run.summary.customers_selected + h.control_group + h.capacity + h.frequency,
        "every eligible customer is counted once: {h:?}"
    );
    assert_eq!(h.capacity, without.summary.held_out.capacity);

    let again = base.run(&doc, "two", NOW + HOUR);
    assert_eq!(
        std::fs::read(run.out.join("control.csv")).unwrap(),
        std::fs::read(again.out.join("control.csv")).unwrap(),
        "the same salt holds out the same customers"
    );
    doc["control_group"]["salt"] = json!("s2");
    let other = base.run(&doc, "three", NOW);
    assert_ne!(
        std::fs::read(run.out.join("control.csv")).unwrap(),
        std::fs::read(other.out.join("control.csv")).unwrap(),
        "a new salt, a new control group"
    );
}

/// Every row's `send_at` is the earliest time inside its customer's local window, in UTC:
/// across Berlin's October change, in New York's own hours, in the default zone for a
/// customer without one or with an unknown one (counted in the summary).
#[test]
fn send_times_follow_each_customers_time_zone_across_the_change() {
    let base = base_with_zones("cmp-send", 40);
    let doc = json!({"name": "window", "channel": "sms", "placement": "sms_campaign",
        "send_window": {"from": "09:00", "to": "20:00",
                        "days": ["mon", "tue", "wed", "thu", "fri", "sat"],
                        "time_zone": {"feature": "tz"}, "default_time_zone": "Europe/Berlin"}});
    // Saturday 24 October 2026, 21:00 in Berlin (CEST), 15:00 in New York (EDT).
    let run = base.run(&doc, "window", at("2026-10-24T19:00:00Z"));
    let mut r = csv::Reader::from_path(run.out.join("targets.csv")).unwrap();
    assert_eq!(r.headers().unwrap().iter().next_back(), Some("send_at"));
    let (mut unknown, mut missing) = (0, 0);
    for rec in r.records() {
        let rec = rec.unwrap();
        let expected = match zone_of(&rec[0]) {
            // Sunday is closed; Monday 09:00 is CET (UTC+1) after the change.
            "America/New_York" => "2026-10-24T19:00:00Z",
            "Mars/Olympus" => {
                unknown += 1;
                "2026-10-26T08:00:00Z"
            }
            "" => {
                missing += 1;
                "2026-10-26T08:00:00Z"
            }
            _ => "2026-10-26T08:00:00Z",
        };
        assert_eq!(&rec[14], expected, "{}", &rec[0]);
    }
    assert!(unknown > 0 && missing > 0);
    assert_eq!(run.summary.unknown_time_zones["Mars/Olympus"], unknown);
    assert_eq!(
        run.summary.no_time_zone, missing,
        "customers without a zone are counted"
    );
    let table = campaign::output::table(&run.summary);
    assert!(
        table.contains("no time zone in the feature (default used)"),
        "{table}"
    );
    // Quoted, so a name with a space at its end shows it.
    assert!(
        table.contains("unknown time zone \"Mars/Olympus\" (default used)"),
        "{table}"
    );

    // The Parquet list holds the same times as UTC timestamps, row for row.
    let file = std::fs::File::open(run.out.join("targets.parquet")).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let mut csv_rows = csv::Reader::from_path(run.out.join("targets.csv")).unwrap();
    let mut times = csv_rows.records().map(|r| r.unwrap()[14].to_owned());
    let mut rows = 0;
    for batch in reader {
        let batch = batch.unwrap();
        let column = batch.column_by_name("send_at").unwrap();
        assert_eq!(
            column.data_type(),
            &arrow_schema::DataType::Timestamp(
                arrow_schema::TimeUnit::Millisecond,
                Some("UTC".into())
            )
        );
        let stamps = column
            .as_any()
            .downcast_ref::<arrow_array::TimestampMillisecondArray>()
            .unwrap();
        for i in 0..stamps.len() {
            assert_eq!(stamps.value(i), at(&times.next().unwrap()));
            rows += 1;
        }
    }
    assert_eq!(rows, run.rows.len());
    // The same inputs, the same bytes.
    let again = base.run(&doc, "window-again", at("2026-10-24T19:00:00Z"));
    assert_eq!(run.csv(), again.csv());
}

/// A frequency cap over `calendar_week` counts from Monday 00:00 in each customer's zone: at
/// 02:00 UTC on Monday 26 October, Berlin's week has begun (last week's contact no longer
/// counts) and New York's has not (it still does); a rolling 7 days counts it for both.
#[test]
fn a_calendar_week_frequency_cap_starts_on_the_customers_monday() {
    let base = base_with_zones("cmp-week", 40);
    let first = json!({"name": "first", "channel": "sms", "placement": "sms_campaign",
                       "capacity": {"max_contacts": 20}});
    let sent = base.run(&first, "first", at("2026-10-23T12:00:00Z"));
    let data_dir = base.path("data");
    commit::commit(
        &sent.out,
        &Target::Direct { data_dir },
        at("2026-10-23T12:00:00Z"),
    )
    .unwrap();
    let window = json!({"from": "09:00", "to": "20:00", "time_zone": {"feature": "tz"},
                        "default_time_zone": "Europe/Berlin"});
    // Sunday 2026-10-25, 20:00 UTC: 16:00 in New York, inside the window, so its texts go
    // out on Sunday, in the week of Friday's text; 21:00 in Berlin, past the window, so they
    // go out on Monday, in a new week.
    let sunday = at("2026-10-25T20:00:00Z");
    let weekly = json!({"name": "weekly", "channel": "sms", "placement": "sms_campaign",
        "send_window": window,
        "frequency": {"max_contacts": 1, "window": "calendar_week", "channels": ["sms"]}});
    let run = base.run(&weekly, "weekly", sunday);
    let chosen = run.customers();
    for c in sent.customers() {
        let new_york = zone_of(&c) == "America/New_York";
        assert_eq!(chosen.contains(&c), !new_york, "{c} ({})", zone_of(&c));
    }
    let mut rolling = weekly.clone();
    rolling["frequency"] = json!({"max_contacts": 1, "window_days": 7, "channels": ["sms"]});
    let run = base.run(&rolling, "rolling", sunday);
    assert!(run.customers().is_disjoint(&sent.customers()));
    assert!(!run.customers().is_empty());
}

/// A Saturday run for a Monday-to-Friday window counts the frequency cap back from Monday,
/// when the list goes out: last week's contacts do not hold a customer out of this week's
/// calendar cap, nor out of a 7-day window that ends on Monday.
#[test]
fn the_frequency_cap_counts_back_from_when_the_list_goes_out() {
    let base = base_with_zones("cmp-week-ahead", 40);
    let first = json!({"name": "first", "channel": "sms", "placement": "sms_campaign",
                       "capacity": {"max_contacts": 20}});
    // Sent on Sunday 2026-10-18, 12:00 UTC (the week before) and committed then.
    let sunday = at("2026-10-18T12:00:00Z");
    let sent = base.run(&first, "first", sunday);
    commit::commit(
        &sent.out,
        &Target::Direct {
            data_dir: base.path("data"),
        },
        sunday,
    )
    .unwrap();
    let weekdays = json!({"from": "09:00", "to": "20:00", "time_zone": {"feature": "tz"},
        "default_time_zone": "Europe/Berlin", "days": ["mon", "tue", "wed", "thu", "fri"]});
    // Saturday 2026-10-24 evening: every zone's next opening is on Monday the 26th.
    let saturday = at("2026-10-24T21:00:00Z");
    let mut weekly = json!({"name": "weekly", "channel": "sms", "placement": "sms_campaign",
        "send_window": weekdays,
        "frequency": {"max_contacts": 1, "window": "calendar_week", "channels": ["sms"]}});
    let run = base.run(&weekly, "weekly", saturday);
    assert_eq!(
        run.summary.held_out.frequency, 0,
        "Sunday's texts are last week's"
    );
    assert!(sent.customers().is_subset(&run.customers()));
    // Seven days back from Monday ends after that Sunday noon, in every zone.
    weekly["frequency"] = json!({"max_contacts": 1, "window_days": 7, "channels": ["sms"]});
    let run = base.run(&weekly, "rolling", saturday);
    assert_eq!(run.summary.held_out.frequency, 0);
    // The same run on the Sunday evening itself holds them all.
    let run = base.run(&weekly, "same-week", at("2026-10-18T20:00:00Z"));
    assert_eq!(
        run.summary.held_out.frequency,
        sent.customers().len() as u64
    );
}

async fn web_explain(srv: &support::TestServer, customer: &str) -> HashMap<String, Value> {
    let r = post_json(
        srv.public,
        "/v1/decide",
        &json!({"customer_id": customer, "channel": "web", "placement": "plans_page", "explain": true}),
    )
    .await;
    assert_eq!(r.status, 200);
    r.json()["explain"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["offer_id"].as_str().unwrap().to_owned(), e.clone()))
        .collect()
}

fn sales_capped(explain: &HashMap<String, Value>) -> usize {
    explain
        .values()
        .filter(|e| {
            e["excluded"]
                .as_str()
                .is_some_and(|x| x.starts_with("policies.sales_cap"))
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_contacts_count_on_the_web_and_the_web_counts_outbound() {
    let data = TempDir::new("cmp-server");
    let (srv, _clock) = support::start_demo_contacts(Some(&data.0)).await;
    let out = TempDir::new("cmp-server-out");
    let file = out.0.join("sales_sms.json");
    std::fs::write(
        &file,
        serde_json::to_vec(&json!({"name": "sales_sms", "channel": "sms",
            "placement": "sms_campaign", "offers": ["data_boost_10gb", "unlimited_upgrade", "roaming_pass_eu"]}))
        .unwrap(),
    )
    .unwrap();
    let cfg = |dir: &str| RunConfig {
        campaign: file.clone(),
        out: out.0.join(dir),
        models: demo_dir(),
        features: demo_dir().join("features.csv"),
        null_words: Default::default(),
        data_dir: Some(data.0.clone()),
        fleet: None,
        now_ms: Some(NOW),
        contact_memory_bytes: 64 << 20,
        progress_bar: false,
    };
    let first = tokio::task::spawn_blocking({
        let c = cfg("r0");
        move || run_config(&c)
    })
    .await
    .unwrap();
    assert!(first.rows.len() > 100);

    // An offer dismissed on the web is never sent by SMS.
    let (x, o) = first.rows[0].clone();
    let r = post_json(
        srv.public,
        "/v1/events",
        &json!({"events": [{"type": "dismiss", "customer_id": x, "offer_id": o, "channel": "web"}]}),
    )
    .await;
    assert_eq!(r.status, 202);
    let second = tokio::task::spawn_blocking({
        let c = cfg("r1");
        move || run_config(&c)
    })
    .await
    .unwrap();
    assert!(
        !second.rows.contains(&(x.clone(), o.clone())),
        "{x} dismissed {o} on the web"
    );
    assert!(second.summary.selected > 100);

    // Four web sales contacts for y, then the campaign's SMS: the sales cap (5 in 7 days) binds.
    let (y, _) = second.rows.iter().find(|r| r.0 != x).cloned().unwrap();
    let before = web_explain(&srv, &y).await;
    assert_eq!(sales_capped(&before), 0);
    let web: Vec<Value> = [
        "fiber_home",
        "device_trade_in",
        "family_line_add",
        "smartwatch_addon",
    ]
    .iter()
    .map(|o| json!({"type": "impression", "customer_id": y, "offer_id": o, "channel": "web"}))
    .collect();
    let r = post_json(srv.public, "/v1/events", &json!({"events": web})).await;
    assert_eq!(r.status, 202);
    assert_eq!(sales_capped(&web_explain(&srv, &y).await), 0, "4 of 5");

    let url = format!("http://{}", srv.public);
    let dir = second.out.clone();
    let done = tokio::task::spawn_blocking({
        let (url, dir) = (url.clone(), dir.clone());
        move || {
            commit::commit(
                &dir,
                &Target::Server {
                    url,
                    batch_bytes: 16 * 1024,
                },
                NOW,
            )
        }
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(done.events, second.summary.selected);
    assert_eq!(done.accepted, done.events);
    assert!(
        sales_capped(&web_explain(&srv, &y).await) > 0,
        "the SMS was the fifth sales contact"
    );

    // Committing twice records once.
    let stats = || async { support::get(srv.admin, "/admin/stats").await.json() };
    let accepted = stats().await["events"]["accepted"].as_u64().unwrap();
    let again = tokio::task::spawn_blocking(move || {
        commit::commit(
            &dir,
            &Target::Server {
                url,
                batch_bytes: 60 * 1024,
            },
            NOW,
        )
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!((again.accepted, again.duplicates), (0, done.events));
    assert_eq!(
        stats().await["events"]["accepted"].as_u64().unwrap(),
        accepted
    );

    // An outcome quoting the list's decision id is attributed to the list's channel without
    // naming it, as a `/v1/decide` answer's is; one naming another channel contradicts it.
    let listed = {
        let mut r = csv::Reader::from_path(second.out.join("targets.csv")).unwrap();
        let h = r.headers().unwrap().clone();
        let at = |name: &str| h.iter().position(|x| x == name).unwrap();
        let (c, o, d) = (at("customer_id"), at("offer_id"), at("decision_id"));
        let row = r.records().next().unwrap().unwrap();
        (row[c].to_owned(), row[o].to_owned(), row[d].to_owned())
    };
    let (customer, offer, decision) = &listed;
    let sms_conversions = |s: &Value| -> u64 {
        s["funnel"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["offer_id"] == offer.as_str() && r["channel"] == "sms")
            .map(|r| r["conversions"].as_u64().unwrap())
            .sum()
    };
    let before = sms_conversions(&stats().await);
    let outcome = |channel: Option<&str>, id: &str| {
        let mut e = json!({"type": "conversion", "customer_id": customer, "offer_id": offer,
                           "decision_id": decision, "event_id": id});
        if let Some(c) = channel {
            e["channel"] = json!(c);
        }
        json!({ "events": [e] })
    };
    let r = post_json(srv.public, "/v1/events", &outcome(None, "cv-1")).await;
    assert_eq!((r.status, r.json()["accepted"].clone()), (202, json!(1)));
    assert_eq!(sms_conversions(&stats().await), before + 1);
    let r = post_json(srv.public, "/v1/events", &outcome(Some("web"), "cv-2")).await;
    let rejected = r.json()["rejected"].clone();
    assert!(
        rejected[0]["error"].as_str().unwrap().contains("sms"),
        "{rejected}"
    );

    // The next campaign sees the committed SMS through the log the server wrote.
    let third = tokio::task::spawn_blocking({
        let c = cfg("r2");
        move || run_config(&c)
    })
    .await
    .unwrap();
    assert!(!third.customers().contains(&y), "{y} reached the sales cap");
    assert!(third.summary.held_out.contact_policy["policies.sales_cap"] >= 1);
    srv.stop().await;
}

/// A capacity per `calendar_day` counts from midnight in the campaign's time zone (its send
/// window's `default_time_zone`): a run at 09:00 the next morning has the whole quota again,
/// while a rolling `day` (the last 24 hours) still counts last evening's sends, and so do a
/// calendar and a rolling week. The day is Berlin's, not UTC's: at 00:30 in Berlin the quota
/// is back, at 21:30 it is not; and it is the day the list goes out (a run after the window
/// closes counts the next opening's day). Without a send window, a calendar period is refused.
#[test]
fn a_calendar_day_capacity_starts_again_at_local_midnight() {
    let base = Base::new("cmp-calendar", 300);
    let mut first = sms("evening");
    first["capacity"] = json!({"max_contacts": 50, "per": "calendar_day"});
    first["send_window"] = json!({"from": "08:00", "to": "22:00",
                                  "default_time_zone": "Europe/Berlin"});
    // Tuesday 1 December 2026, 19:00 in Berlin (CET, UTC+1).
    let evening = at("2026-12-01T18:00:00Z");
    let sent = base.run(&first, "evening", evening);
    assert_eq!(sent.rows.len(), 50);
    let data_dir = base.path("data");
    commit::commit(&sent.out, &Target::Direct { data_dir }, evening).unwrap();

    let used = |per: &str, now: i64| {
        let mut doc = first.clone();
        let name = format!("{per}-{now}");
        doc["name"] = json!(name.replace('_', "-"));
        doc["capacity"]["per"] = json!(per);
        let run = base.run(&doc, &name, now);
        let cap = run.summary.capacity.clone().unwrap();
        assert_eq!(cap.per, per);
        (cap.used_before, cap.available, run.rows.len())
    };
    // Wednesday 09:00 in Berlin, 14 hours later.
    let morning = at("2026-12-02T08:00:00Z");
    assert_eq!(used("calendar_day", morning), (0, 50, 50));
    assert_eq!(used("day", morning), (50, 0, 0));
    assert_eq!(used("calendar_week", morning), (50, 0, 0));
    assert_eq!(used("week", morning), (50, 0, 0));
    // 00:30 on Wednesday in Berlin is still Tuesday in UTC; 21:30 on Tuesday, the window
    // still open, is the same day.
    assert_eq!(
        used("calendar_day", at("2026-12-01T23:30:00Z")),
        (0, 50, 50)
    );
    assert_eq!(used("calendar_day", at("2026-12-01T20:30:00Z")), (50, 0, 0));
    // At 23:30 on Tuesday the window has closed: the list goes out on Wednesday morning,
    // and Wednesday's quota is what it takes.
    assert_eq!(
        used("calendar_day", at("2026-12-01T22:30:00Z")),
        (0, 50, 50)
    );
    // The calendar week starts again on Monday 7 December, 00:00 in Berlin: a run on Sunday
    // evening inside the window counts this week, one after it closes sends on Monday.
    assert_eq!(
        used("calendar_week", at("2026-12-06T20:30:00Z")),
        (50, 0, 0)
    );
    assert_eq!(
        used("calendar_week", at("2026-12-06T21:30:00Z")),
        (0, 50, 50)
    );
    assert_eq!(
        used("calendar_week", at("2026-12-06T23:30:00Z")),
        (0, 50, 50)
    );

    let mut no_zone = first.clone();
    no_zone.as_object_mut().unwrap().remove("send_window");
    let file = base.write_campaign("no-zone", &no_zone);
    let err = campaign::check(&file, None, None).unwrap_err();
    assert!(
        err.faults()
            .iter()
            .any(|f| f.path == "capacity.per" && f.message.contains("`default_time_zone`")),
        "{:#?}",
        err.faults()
    );
}

#[test]
fn a_list_committed_days_later_counts_when_it_was_sent_not_when_it_was_committed() {
    let base = Base::new("cmp-late-commit", 300);
    let mut doc = sms("planned");
    doc["capacity"] = json!({"max_contacts": 50, "per": "calendar_day"});
    // Before the window opens: every text is planned for 08:00 in Berlin (07:00Z).
    doc["send_window"] = json!({"from": "08:00", "to": "22:00",
                                "default_time_zone": "Europe/Berlin"});
    let run_at = at("2026-12-01T05:00:00Z");
    let sent = base.run(&doc, "planned", run_at);
    assert_eq!(sent.rows.len(), 50);
    // Committed four days later, as the analyst got round to it.
    let data_dir = base.path("data");
    commit::commit(
        &sent.out,
        &Target::Direct {
            data_dir: data_dir.clone(),
        },
        at("2026-12-05T12:00:00Z"),
    )
    .unwrap();
    let mut stamps = std::collections::BTreeSet::new();
    nextbest::campaign::history::each_event(&data_dir, |e| {
        stamps.insert(e.ts_ms);
    })
    .unwrap();
    assert_eq!(
        stamps.into_iter().collect::<Vec<_>>(),
        vec![at("2026-12-01T07:00:00Z")],
        "each contact at its send_at"
    );
    // Later the same Berlin day, the day's texts are spent.
    let mut again = doc.clone();
    again["name"] = json!("again");
    let run = base.run(&again, "again", at("2026-12-01T20:00:00Z"));
    let cap = run.summary.capacity.clone().unwrap();
    assert_eq!((cap.used_before, run.rows.len()), (50, 0));
}

/// Two lists run under one campaign name at one time on two channels (an SMS file copied for
/// e-mail, the name left as it was) are two sets of contacts: the second commit records all of
/// its own, none taken for the first's.
#[test]
fn one_name_at_one_time_on_two_channels_records_both_lists() {
    let base = Base::new("cmp-two-channels", 60);
    let now = support_now();
    let sms_list = base.run(&sms("xmas"), "xmas-sms", now);
    let email = json!({"name": "xmas", "channel": "email", "placement": "email_campaign"});
    let email_list = base.run(&email, "xmas-email", now);
    let target = Target::Direct {
        data_dir: base.path("data"),
    };
    let a = commit::commit(&sms_list.out, &target, now).unwrap();
    let b = commit::commit(&email_list.out, &target, now).unwrap();
    assert!(a.events > 0 && b.events > 0);
    assert_eq!((a.accepted, a.duplicates), (a.events, 0));
    assert_eq!((b.accepted, b.duplicates), (b.events, 0));
    // Each list committed again is still recorded once.
    let again = commit::commit(&email_list.out, &target, now).unwrap();
    assert_eq!((again.accepted, again.duplicates), (0, b.events));
}

/// Two campaign files with one name run at one time (a copy given other limits, the name left
/// as it was) are two sets of contacts: the second commit records all of its own. The same
/// file run twice at that time is one campaign: its second list's contacts are the first's.
#[test]
fn one_name_at_one_time_with_other_limits_records_both_lists() {
    let base = Base::new("cmp-two-files", 60);
    let now = support_now();
    let first = base.run(&sms("weekly"), "weekly-1", now);
    let mut capped = sms("weekly");
    capped["capacity"] = json!({"max_contacts": 20, "per": "day"});
    let second = base.run(&capped, "weekly-2", now);
    let rerun = base.run(&sms("weekly"), "weekly-3", now);
    let target = Target::Direct {
        data_dir: base.path("data"),
    };
    let a = commit::commit(&first.out, &target, now).unwrap();
    let b = commit::commit(&second.out, &target, now).unwrap();
    assert!(a.events > b.events && b.events > 0, "{a:?} {b:?}");
    assert_eq!((a.accepted, a.duplicates), (a.events, 0));
    assert_eq!((b.accepted, b.duplicates), (b.events, 0), "{b:?}");
    let c = commit::commit(&rerun.out, &target, now).unwrap();
    assert_eq!((c.accepted, c.duplicates), (0, c.events), "{c:?}");
}

/// A list older than event ids are remembered is refused, since a second commit of it could
/// not be told from the first; `--late` commits a list never committed.
#[test]
fn a_list_older_than_event_ids_are_remembered_is_committed_only_when_late_is_said() {
    let base = Base::new("cmp-late", 30);
    let day = 86_400_000;
    let now = support_now();
    let old = base.run(&sms("old"), "old", now - 8 * day);
    let target = Target::Direct {
        data_dir: base.path("data"),
    };
    let e = commit::commit(&old.out, &target, now)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("its first contacts were sent 8 days ago")
            && e.ends_with("commit it once with --late"),
        "{e}"
    );
    let done = commit::commit_with(&old.out, &target, now, true).unwrap();
    assert_eq!((done.accepted, done.duplicates), (done.events, 0));
    // The folder remembers it was committed: a second `--late` would record it twice.
    let e = commit::commit_with(&old.out, &target, now, true)
        .unwrap_err()
        .to_string();
    let full = std::fs::canonicalize(base.path("data")).unwrap();
    assert!(
        e.contains(&format!(
            "this list was committed in full into the data folder {} (commit.json: {1} of {1} \
             contacts recorded); committing it again there with --late",
            full.display(),
            done.events
        )),
        "{e}"
    );
    // Committed into one data folder (a test one), the list is not committed into another:
    // `--late` records it there, once.
    let other = base.path("data-prod");
    std::fs::create_dir_all(&other).unwrap();
    let elsewhere = Target::Direct {
        data_dir: other.clone(),
    };
    let there = commit::commit_with(&old.out, &elsewhere, now, true).unwrap();
    assert_eq!((there.accepted, there.duplicates), (there.events, 0));
    let e = commit::commit_with(&old.out, &elsewhere, now, true)
        .unwrap_err()
        .to_string();
    assert!(e.contains("committed in full into the data folder"), "{e}");
    // A record written before places were told apart holds for every place.
    let journal = old.out.join(commit::JOURNAL);
    let record: Value = serde_json::from_slice(&std::fs::read(&journal).unwrap()).unwrap();
    let legacy = json!({
        "list_crc32": record["list_crc32"],
        "events": record["events"],
        "recorded": record["recorded"],
    });
    std::fs::write(&journal, legacy.to_string()).unwrap();
    let third = base.path("data-third");
    std::fs::create_dir_all(&third).unwrap();
    let e = commit::commit_with(&old.out, &Target::Direct { data_dir: third }, now, true)
        .unwrap_err()
        .to_string();
    assert!(e.contains("committed in full into"), "{e}");
    // Within the days ids are remembered, no flag is needed.
    let recent = base.run(&sms("recent"), "recent", now - 5 * day);
    assert!(commit::commit(&recent.out, &target, now).is_ok());
}

/// A sidecar stand-in answering its requests with `answers` in turn (202 with that many of
/// the batch's events said to be duplicates and the rest accepted, or the status given; 202
/// with none after them); each 202's events reach the receiver.
fn stub_server(answers: Vec<(u16, usize)>) -> (String, std::sync::mpsc::Receiver<Vec<String>>) {
    use std::io::{BufRead as _, BufReader, Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut answers = answers.into_iter();
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut out = stream;
            loop {
                let mut length = 0usize;
                let mut line = String::new();
                loop {
                    line.clear();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    if line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap();
                    }
                }
                if line != "\r\n" {
                    break;
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
                let ids: Vec<String> = doc["events"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e["event_id"].as_str().unwrap().to_owned())
                    .collect();
                let (status, dups) = answers.next().unwrap_or((202, 0));
                let answer = if status == 202 {
                    let dups = dups.min(ids.len());
                    let accepted = ids.len() - dups;
                    let _ = tx.send(ids.clone());
                    format!(r#"{{"accepted":{accepted},"duplicates":{dups},"rejected":[]}}"#)
                } else {
                    r#"{"error":"unavailable","detail":"disk full"}"#.to_owned()
                };
                let _ = write!(
                    out,
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
                    answer.len()
                );
            }
        }
    });
    (url, rx)
}

/// A `--late` commit that failed part way resumes after its last recorded batch: the log
/// cannot tell a late list's repeats, so the list's folder keeps how far it got.
#[test]
fn a_late_commit_that_failed_part_way_resumes_where_it_stopped() {
    let base = Base::new("cmp-late-resume", 200);
    let day = 86_400_000;
    let now = support_now();
    let old = base.run(&sms("late-resume"), "old", now - 8 * day);
    // Small batches: the third request fails, as a server whose disk filled would answer.
    let (url, received) = stub_server(vec![(202, 0), (202, 0), (503, 0)]);
    let target = Target::Server {
        url,
        batch_bytes: 1024,
    };
    let e = commit::commit_with(&old.out, &target, now, true)
        .unwrap_err()
        .to_string();
    assert!(e.contains("503"), "{e}");
    let first: Vec<String> = received.try_iter().flatten().collect();
    assert!(!first.is_empty());
    let done = commit::commit_with(&old.out, &target, now, true).unwrap();
    let rest: Vec<String> = received.try_iter().flatten().collect();
    // Every contact was sent once in all, in the list's order, and the skipped part is
    // reported as recorded before.
    assert_eq!(first.len() + rest.len(), done.events as usize);
    let all: std::collections::HashSet<&String> = first.iter().chain(&rest).collect();
    assert_eq!(all.len(), done.events as usize, "a contact was sent twice");
    assert_eq!(
        (done.accepted, done.duplicates),
        (rest.len() as u64, first.len() as u64)
    );
    // A damaged record: how far the earlier commits got is unknown, so a late commit stops.
    let journal = old.out.join("commit.json");
    let kept = std::fs::read(&journal).unwrap();
    let mut damaged = kept.clone();
    damaged[0] = b'#';
    std::fs::write(&journal, &damaged).unwrap();
    let e = commit::commit_with(&old.out, &target, now, true)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("commit.json: cannot be read") && e.contains("would record that part twice"),
        "{e}"
    );
    assert!(received.try_iter().next().is_none(), "a batch was sent");
    std::fs::write(&journal, &kept).unwrap();
    // A list run again into the same folder is another list: its record starts over.
    let again = base.run(&sms("late-resume"), "old", now - 9 * day);
    let done = commit::commit_with(&again.out, &target, now, true).unwrap();
    assert_eq!(done.accepted, done.events);
}

/// Commits `dir` over HTTP to `url` now, in batches of up to 60 KiB.
fn commit_to(dir: &std::path::Path, url: String) -> Result<commit::Committed, commit::CommitError> {
    let target = Target::Server {
        url,
        batch_bytes: 60 * 1024,
    };
    commit::commit(dir, &target, support_now())
}

/// The counts a commit prints add up to the list: a server's `accepted` leaves out the
/// batch's duplicates, which are counted once, as already recorded.
#[test]
fn a_commits_counts_add_up_when_a_batch_holds_repeats() {
    let base = Base::new("cmp-commit-counts", 60);
    let run = base.run(&sms("counts"), "counts", support_now());
    let (url, _received) = stub_server(vec![(202, 3)]);
    let done = commit_to(&run.out, url).unwrap();
    assert!(done.events > 3);
    assert_eq!(
        (done.accepted, done.duplicates),
        (done.events - 3, 3),
        "{done:?}"
    );
}

/// What a failed commit says names its cause and how far it got: a body over the server's
/// limit asks for smaller batches, a server gone says how many contacts it recorded before,
/// and a shard's folder asks for the merge.
#[test]
fn a_failed_commit_says_what_to_do_and_how_far_it_got() {
    let base = Base::new("cmp-commit-advice", 60);
    let run = base.run(&sms("advice"), "advice", support_now());
    let (url, _received) = stub_server(vec![(413, 0)]);
    let e = commit_to(&run.out, url).unwrap_err().to_string();
    assert!(
        e.contains("lower --batch-bytes under the server's --max-body-bytes")
            && e.contains("(0 contacts were recorded before)"),
        "{e}"
    );
    // Nothing listens there any more.
    let gone = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let e = commit_to(&run.out, gone).unwrap_err().to_string();
    assert!(
        e.contains(
            "0 of the list's contacts were recorded before: commit again once the server answers"
        ),
        "{e}"
    );
    // A shard's folder.
    let file = base.write_campaign("advice-shard", &sms("advice-shard"));
    let cfg = base.config(&file, "advice-shard-0", support_now());
    campaign::run_shard(&cfg, campaign::select::Shard { index: 0, count: 2 }).unwrap();
    let e = commit::commit(
        &cfg.out,
        &Target::Direct {
            data_dir: base.path("data"),
        },
        support_now(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("a shard's folder, not a list: merge the shards first"),
        "{e}"
    );
}

/// A `--late` commit whose list folder cannot record its progress does not start: it could
/// not be resumed, and a second try would record what the first did twice. Through the binary,
/// with the folder mounted read-only for it alone (a private mount namespace, as the read-only
/// models test makes; without the right to mount, `unshare` says so and the test fails).
#[test]
fn a_late_commit_that_cannot_record_its_progress_does_not_start() {
    let base = Base::new("cmp-late-ro", 40);
    let day = 86_400_000;
    let old = base.run(&sms("late-ro"), "old", support_now() - 8 * day);
    let (url, received) = stub_server(vec![]);
    // `campaign commit DIR --server URL ARGS` with DIR read-only: (success, stderr).
    let commit_read_only = |dir: &std::path::Path, args: &[&str]| {
        let out = std::process::Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(r#"mount --bind -o ro "$1" "$1" && shift && exec "$@""#)
            .arg("sh")
            .arg(dir)
            .arg(env!("CARGO_BIN_EXE_nextbest"))
            .args(["campaign", "commit"])
            .arg(dir)
            .args(["--server", &url])
            .args(args)
            .env("NEXTBEST_LOG_FORMAT", "text")
            .output()
            .expect("unshare runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, said) = commit_read_only(&old.out, &["--late"]);
    assert!(!ok, "{said}");
    assert!(
        said.contains("commit.json: recording the commit's progress")
            && said
                .contains("copy the list folder to one that can be written and commit from there"),
        "{said}"
    );
    assert!(received.try_iter().next().is_none(), "a batch was sent");
    assert!(!old.out.join("commit.json").exists());
    // A recent list's commit needs no record (ids tell its repeats): it goes ahead, warning.
    let recent = base.run(&sms("recent-ro"), "recent", support_now());
    let (ok, said) = commit_read_only(&recent.out, &[]);
    assert!(ok, "{said}");
    assert!(
        said.contains("cannot record the commit's progress"),
        "{said}"
    );
    let sent: usize = received.try_iter().map(|b| b.len()).sum();
    assert_eq!(sent, recent.rows.len());
}

/// `--direct` into a data folder another process holds (a server, as an operator meets it) is
/// refused naming the holder, with the way that works: commit through that server. Nothing is
/// written into the folder, nor into the list's record.
#[test]
fn a_direct_commit_into_a_held_data_folder_points_at_the_server() {
    let base = Base::new("cmp-direct-held", 30);
    let run = base.run(&sms("held"), "held", NOW);
    let data = base.path("data");
    let held = nextbest::folder_lock::FolderLock::acquire(
        &data,
        nextbest::folder_lock::Folder::Data,
        None,
    )
    .unwrap();
    let e = commit::commit(
        &run.out,
        &Target::Direct {
            data_dir: data.clone(),
        },
        NOW,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with(&format!(
            "the data folder {} is in use by another nextbest (pid ",
            data.display()
        )) && e.ends_with(
            "; where a server holds it, commit through that server instead (`--server URL`, \
                 its public listener), which records the contacts as it records events"
        ),
        "{e}"
    );
    assert!(nextbest::contact::log::list_segments(&data)
        .unwrap()
        .is_empty());
    // Nor is the folder recorded as a place the list went to.
    assert!(!run.out.join("commit.json").exists());
    drop(held);
    commit::commit(
        &run.out,
        &Target::Direct {
            data_dir: data.clone(),
        },
        NOW,
    )
    .unwrap();
    assert!(!nextbest::contact::log::list_segments(&data)
        .unwrap()
        .is_empty());
}

/// A frequency cap counts the list's own messages: with two offers a customer allowed and a
/// cap of one contact a week, no customer gets two; with room for three, some get two.
#[test]
fn a_frequency_cap_counts_the_lists_own_messages() {
    let base = Base::new("cmp-freq-own", 300);
    let rows_per_customer = |doc: &Value, tag: &str| {
        let run = base.run(doc, tag, NOW);
        let mut n: HashMap<String, usize> = HashMap::new();
        for (customer, _) in &run.rows {
            *n.entry(customer.clone()).or_default() += 1;
        }
        n.values().copied().max().unwrap_or(0)
    };
    let mut doc = sms("own");
    doc["max_offers_per_customer"] = json!(2);
    doc["frequency"] = json!({"max_contacts": 3, "window_days": 7, "channels": ["sms"]});
    assert_eq!(
        rows_per_customer(&doc, "room"),
        2,
        "room for two: the cap is not in the way"
    );
    doc["frequency"] = json!({"max_contacts": 1, "window_days": 7, "channels": ["sms"]});
    assert_eq!(
        rows_per_customer(&doc, "capped"),
        1,
        "a cap of one sends one"
    );
    // Over two channels: one message in all, on whichever channel.
    let both = json!({"name": "own2", "offers": ["a", "b", "c"], "max_offers_per_customer": 2,
        "frequency": {"max_contacts": 1, "window_days": 7, "channels": ["sms", "email"]},
        "channels": {"sms": {"placement": "sms_campaign", "max_contacts": 200},
                     "email": {"placement": "email_campaign", "max_contacts": 200}}});
    assert_eq!(
        rows_per_customer(&both, "capped2"),
        1,
        "one message over both channels"
    );
}

/// A customer the cap leaves room for one message gets the best offer the limits let them
/// have, not only their best offer: with a cap of one contact, two offers a customer allowed
/// and the favourite offers' maximums taken by better customers, the list is the one of one
/// offer a customer.
#[test]
fn a_capped_customer_gets_their_next_offer_when_the_best_is_taken() {
    let base = Base::new("cmp-freq-next", 300);
    let freq = json!({"max_contacts": 1, "window_days": 7, "channels": ["sms"]});
    let mut one = sms("one_a_customer");
    one["offer_limits"] = json!({"a": {"max": 20}, "b": {"max": 20}});
    one["frequency"] = freq;
    let mut two = one.clone();
    two["name"] = json!("two_a_customer");
    two["max_offers_per_customer"] = json!(2);
    let one = base.run(&one, "one", NOW);
    let two = base.run(&two, "two", NOW);
    let sorted = |rows: &[(String, String)]| {
        let mut r = rows.to_vec();
        r.sort();
        r
    };
    assert_eq!(sorted(&two.rows), sorted(&one.rows));
    // The maximums bind: some customers got their second offer.
    let offers: BTreeSet<&str> = one.rows.iter().map(|r| r.1.as_str()).collect();
    assert_eq!(one.rows.len(), 300, "every customer gets one offer");
    assert!(offers.contains("c"), "{offers:?}");
}

/// The model's sales cap (at most 5 sales contacts in 7 days) counts a list's own sales offers
/// too: after two days of two sales e-mails to part of the base, a third list gives a customer
/// with four sales contacts one more at most, all sales offers or not (a retention offer is
/// not capped), while customers with room still get two.
#[test]
fn the_models_sales_cap_counts_the_lists_own_sales_offers() {
    let dir = TempDir::new("cmp-sales-cap");
    let data = dir.0.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let now = support_now();
    let day = 24 * HOUR;
    let run = |name: &str, offers: Value, out: &str, at: i64| {
        let file = dir.0.join(format!("{name}.json"));
        // The first two days' lists reach part of the base only.
        let capacity = if out.starts_with("d3") {
            100_000
        } else {
            4_000
        };
        let doc = json!({"name": name, "channel": "email", "placement": "email_campaign",
            "max_offers_per_customer": 2, "offers": offers,
            "capacity": {"max_contacts": capacity, "per": "day"}});
        std::fs::write(&file, serde_json::to_vec(&doc).unwrap()).unwrap();
        run_config(&RunConfig {
            campaign: file,
            out: dir.0.join(out),
            models: demo_dir(),
            features: demo_dir().join("features.csv"),
            null_words: Default::default(),
            data_dir: Some(data.clone()),
            fleet: None,
            now_ms: Some(at),
            contact_memory_bytes: 64 << 20,
            progress_bar: false,
        })
    };
    let sales = json!(["unlimited_upgrade", "device_upgrade_5g", "fiber_home"]);
    let mut sent: HashMap<String, usize> = HashMap::new();
    for (out, at) in [("d1", now - 2 * day), ("d2", now - day)] {
        let list = run("sales", sales.clone(), out, at);
        for (c, _) in &list.rows {
            *sent.entry(c.clone()).or_default() += 1;
        }
        commit::commit(
            &list.out,
            &Target::Direct {
                data_dir: data.clone(),
            },
            now,
        )
        .unwrap();
    }
    assert!(sent.values().any(|&n| n == 4), "two days of two offers");
    let per_customer = |rows: &[(String, String)], only: &[&str]| {
        let mut n: HashMap<String, usize> = HashMap::new();
        for (c, _) in rows.iter().filter(|r| only.contains(&r.1.as_str())) {
            *n.entry(c.clone()).or_default() += 1;
        }
        n
    };
    let sales_ids = ["unlimited_upgrade", "device_upgrade_5g", "fiber_home"];
    // No customer's sales contacts of the three days go over the cap of 5.
    let within_cap = |got: &HashMap<String, usize>| {
        for (c, n) in got {
            let before = sent.get(c).copied().unwrap_or(0);
            assert!(
                before + n <= 5,
                "{c}: {before} sales contacts, then {n} more"
            );
        }
    };
    let third = run("sales", sales.clone(), "d3", now - day + 6 * HOUR);
    let got = per_customer(&third.rows, &sales_ids);
    within_cap(&got);
    assert!(got.values().any(|&n| n == 2), "customers with room get two");
    assert!(
        got.iter().any(|(c, &n)| n == 1 && sent.get(c) == Some(&4)),
        "a customer with four gets one"
    );
    // With a retention offer beside them: the sales offers are capped, the retention one not.
    let mixed = json!([
        "unlimited_upgrade",
        "device_upgrade_5g",
        "loyalty_discount_10"
    ]);
    let m = run("mixed", mixed, "d3m", now - day + 6 * HOUR);
    let got = per_customer(&m.rows, &sales_ids);
    within_cap(&got);
    let all = per_customer(
        &m.rows,
        &[
            "unlimited_upgrade",
            "device_upgrade_5g",
            "loyalty_discount_10",
        ],
    );
    assert!(
        all.iter()
            .any(|(c, &n)| n == 2 && sent.get(c) == Some(&4) && got.get(c) == Some(&1)),
        "a customer with four sales contacts gets one sales offer and the retention offer"
    );
}
