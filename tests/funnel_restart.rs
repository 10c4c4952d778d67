//! The funnel survives a restart of the real binary: outcomes are rebuilt from the event log,
//! decisions from the counts saved beside it, and outcomes that name no decision count for
//! the variant the customer's assignment gives.

mod support;

use std::path::Path;

use serde_json::json;
use support::binary::{Binary, Process};
use support::*;

fn spawn(models: &Path, data: &Path) -> Process {
    Binary::with_models(models, data)
        .args(["--drain-delay-ms", "0"])
        .spawn()
}

/// The funnel as `/admin/stats` and `/metrics` show it.
async fn funnel_views(
    p: &Process,
) -> (
    serde_json::Value,
    serde_json::Value,
    Vec<String>,
    serde_json::Value,
) {
    let stats = get(p.admin, "/admin/stats").await.json();
    let metrics = get(p.admin, "/metrics").await;
    let lines = String::from_utf8(metrics.body.to_vec())
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("nextbest_funnel"))
        .map(str::to_owned)
        .collect();
    (
        stats["funnel"].clone(),
        stats["unattributed"].clone(),
        lines,
        stats["lift"].clone(),
    )
}

#[tokio::test]
async fn a_restart_shows_the_funnel_it_showed_before() {
    let dir = TempDir::new("funnel-restart");
    let (models, data) = (dir.0.join("models"), dir.0.join("data"));
    models_with_challenger(&models);
    let server = spawn(&models, &data);

    let mut events = Vec::new();
    let mut decided = Vec::new();
    let mut variants = std::collections::HashSet::new();
    let mut personalised = 0;
    for i in 1..=40 {
        let (customer, channel, a) = decide_demo_customer(server.public, i).await;
        if !a["fallback"].is_null() {
            continue;
        }
        personalised += 1;
        variants.insert(a["variant"].as_str().unwrap().to_owned());
        let offer = a["offers"][0]["offer_id"].as_str().unwrap().to_owned();
        let id = a["decision_id"].as_str().unwrap().to_owned();
        decided.push((customer.clone(), channel, offer.clone(), id.clone()));
        let base = json!({"customer_id": customer, "offer_id": offer, "channel": channel});
        let with = |kind: &str, event_id: String, decision: bool| {
            let mut e = base.clone();
            e["type"] = json!(kind);
            e["event_id"] = json!(event_id);
            if decision {
                e["decision_id"] = json!(id);
            }
            e
        };
        events.push(with("impression", format!("imp-{i}"), true));
        if i % 3 == 0 {
            events.push(with("click", format!("clk-{i}"), true));
        }
        if i % 5 == 0 {
            // Without a decision id: attributed by offer, channel and assignment.
            events.push(with("conversion", format!("conv-{i}"), false));
        }
        if i % 7 == 0 {
            events.push(with("dismiss", format!("dis-{i}"), false));
        }
    }
    assert_eq!(variants.len(), 2, "both variants decided: {variants:?}");
    let n = events.len();
    assert_eq!(
        post_events(server.public, json!(events)).await["accepted"],
        n
    );

    let before = funnel_views(&server).await;
    let rows = before.0.as_array().unwrap();
    let sum = |stage: &str| rows.iter().map(|r| r[stage].as_u64().unwrap()).sum::<u64>();
    let unattributed = &before.1;
    assert!(personalised >= 30, "{personalised}");
    assert!(sum("decisions") >= personalised, "{rows:?}");
    assert_eq!(sum("impressions"), personalised, "{unattributed}");
    assert_eq!(unattributed["impressions"], 0);
    assert_eq!(
        unattributed["conversions"], 0,
        "no decision id: attributed by assignment"
    );
    assert_eq!(unattributed["dismisses"], 0);
    assert!(sum("conversions") >= 5 && sum("dismisses") >= 3, "{rows:?}");
    assert!(
        rows.iter()
            .any(|r| r["variant"] == "challenger" && r["conversions"].as_u64() > Some(0))
            && rows
                .iter()
                .any(|r| r["variant"] == "champion" && r["conversions"].as_u64() > Some(0)),
        "assignment spreads unattributed-by-id outcomes over both variants: {rows:?}"
    );
    assert!(before.2.iter().any(|l| l.contains("stage=\"decisions\"")));
    // Lift pairs the champion's and the challenger's rows of the same offer and channel.
    let lift = &before.3;
    assert_eq!(lift["experiment"]["challenger"]["version"], "challenger-1");
    let lift_rows = lift["rows"].as_array().unwrap();
    assert!(!lift_rows.is_empty(), "{lift}");
    for l in lift_rows {
        for variant in ["champion", "challenger"] {
            let funnel_row = rows
                .iter()
                .find(|r| {
                    r["offer_id"] == l["offer_id"]
                        && r["channel"] == l["channel"]
                        && r["variant"] == variant
                })
                .map_or(0, |r| r["impressions"].as_u64().unwrap());
            assert_eq!(l[variant]["impressions"], funnel_row, "{l}");
        }
    }

    server.signal("TERM");
    let mut server = server;
    let status = server.child.0.wait().unwrap();
    assert!(status.success(), "{}", server.stderr());
    assert!(data.join("funnel.counts").exists());

    // A counts file written before placements were kept: binding the models fills them in.
    let counts = data.join("funnel.counts");
    let mut saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&counts).unwrap()).unwrap();
    for t in saved["tables"].as_array_mut().unwrap() {
        assert!(t["placements"].is_array(), "{t}");
        t.as_object_mut().unwrap().remove("placements");
    }
    std::fs::write(&counts, serde_json::to_vec(&saved).unwrap()).unwrap();
    let again = spawn(&models, &data);
    let after = funnel_views(&again).await;
    assert_eq!(before.0, after.0, "/admin/stats funnel");
    assert_eq!(before.1, after.1, "unattributed");
    assert_eq!(before.2, after.2, "/metrics funnel");
    assert_eq!(before.3, after.3, "lift");
    // An event quoting a decision from before the restart with another placement is still
    // refused.
    let misplaced = |n: usize| {
        let (customer, channel, offer, id) = &decided[n];
        let (placement, other) = match *channel {
            "web" => ("plans_page", "checkout"),
            _ => ("app_home", "home_hero"),
        };
        let event = json!({"type": "click", "customer_id": customer, "offer_id": offer,
            "channel": channel, "placement": other, "decision_id": id,
            "event_id": format!("misplaced-{n}")});
        (event, format!("placement: `{other}` contradicts the decision, which was made for placement `{placement}`"))
    };
    let (event, refusal) = misplaced(0);
    let answer = post_events(again.public, json!([event])).await;
    assert_eq!(answer["accepted"], 0, "{answer}");
    assert_eq!(answer["rejected"][0]["error"], refusal.as_str(), "{answer}");

    // The experiment is reshuffled (another salt) and the server restarted: outcomes that
    // named no decision still count for the variant (and model version) they counted for.
    again.signal("TERM");
    let mut again = again;
    assert!(
        again.child.0.wait().unwrap().success(),
        "{}",
        again.stderr()
    );
    let mut doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(models.join("model.json")).unwrap()).unwrap();
    // The save at shutdown kept the placements binding filled in.
    let resaved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.join("funnel.counts")).unwrap()).unwrap();
    assert!(
        resaved["tables"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["placements"].as_array().is_some_and(|p| !p.is_empty())),
        "{resaved}"
    );
    doc["challenger"]["salt"] = json!("reshuffled");
    std::fs::write(models.join("model.json"), serde_json::to_vec(&doc).unwrap()).unwrap();
    let reshuffled = spawn(&models, &data);
    let after = funnel_views(&reshuffled).await;
    assert_eq!(before.0, after.0, "/admin/stats funnel");
    assert_eq!(before.1, after.1, "unattributed");
    // And after a restart under a reshuffled experiment.
    for n in [1, 2] {
        let (event, refusal) = misplaced(n);
        let answer = post_events(reshuffled.public, json!([event])).await;
        assert_eq!(answer["rejected"][0]["error"], refusal.as_str(), "{answer}");
    }
}
