//! Hot swaps: models through the admin API, the folder and SIGHUP's reload; feature
//! snapshots; rollback; champion/challenger.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;

use serde_json::json;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaps_under_load_fail_no_request() {
    let models = TempModels::new("swap");
    let registry = models.registry();
    let _watcher = nextbest::watch::watch_models(registry.clone()).unwrap();
    let srv = start_registry(registry.clone(), test_config()).await;
    // Versions are integers; `confirmed` is the newest known active, `attempted` the newest
    // that may be active. An answer must name a version between the two read around it.
    let confirmed = Arc::new(AtomicU64::new(1));
    let attempted = Arc::new(AtomicU64::new(1));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..3 {
        let (confirmed, attempted, stop, addr) = (
            confirmed.clone(),
            attempted.clone(),
            stop.clone(),
            srv.public,
        );
        clients.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(SeqCst) && n < 100_000 {
                let lo = confirmed.load(SeqCst);
                let id = format!("C{:07}", 40 + (n % 5) + c * 5);
                let r = post_json(
                    addr,
                    "/v1/decide",
                    &json!({"customer_id": id, "channel": "web", "placement": "plans_page"}),
                )
                .await;
                let hi = attempted.load(SeqCst);
                assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
                let a = r.json();
                let v: u64 = a["model"]["version"].as_str().unwrap().parse().unwrap();
                assert!(
                    lo <= v && v <= hi,
                    "answer named version {v}, active was between {lo} and {hi}"
                );
                assert!(
                    a["fallback"].is_null() || a["fallback"]["reason"] == "no_eligible_offer",
                    "{a}"
                );
                n += 1;
            }
            n
        }));
    }
    // 25 swaps through the admin API...
    for v in 2..=26u64 {
        attempted.store(v, SeqCst);
        let doc = TempModels::demo_doc(&v.to_string());
        let r = put_model(srv.admin, &doc).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.json()["version"], v.to_string());
        confirmed.store(v, SeqCst);
    }
    // ...and 25 through the watched folder.
    for v in 27..=51u64 {
        attempted.store(v, SeqCst);
        models.publish(
            "model.json",
            &serde_json::to_vec(&TempModels::demo_doc(&v.to_string())).unwrap(),
        );
        eventually("the folder reload", || {
            version_of(&registry) == v.to_string()
        })
        .await;
        confirmed.store(v, SeqCst);
    }
    stop.store(true, SeqCst);
    let mut total = 0;
    for c in clients {
        total += c.await.unwrap();
    }
    assert!(total > 50, "only {total} requests during the swaps");
    assert_eq!(registry.loads.rejected(nextbest::registry::Part::Model), 0);
    // The history is the audit trail: every change, newest first.
    let history = registry.history();
    assert_eq!(history.len(), 51);
    assert_eq!(history[0].version, "51");
    assert_eq!(history[1].version, "50");
    srv.stop().await;
}

#[tokio::test]
async fn a_bad_model_is_refused_by_every_source_and_the_old_one_keeps_serving() {
    let models = TempModels::new("bad");
    let registry = models.registry();
    let _watcher = nextbest::watch::watch_models(registry.clone()).unwrap();
    let srv = start_registry(registry.clone(), test_config()).await;
    let mut bad = TempModels::demo_doc("2");
    bad["offers"][2]["scorer"]["weights"]["arpu"] = json!(0.1);
    bad["offers"][5]["content"]["web"]["cta_url"] = json!("not a url");

    // Admin API: 422 with the exact path of each fault.
    let r = put_model(srv.admin, &bad).await;
    r.assert_error(422, "invalid_model");
    let j = r.json();
    assert_eq!(j["path"], "offers[2].scorer.weights.arpu");
    let paths: Vec<&str> = j["faults"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert!(
        paths.contains(&"offers[5].content.web.cta_url"),
        "{paths:?}"
    );
    assert_eq!(version_of(&registry), "1");
    let r = request(
        srv.admin,
        "PUT",
        "/admin/models",
        &[("content-type", "application/json")],
        b"{\"name\": ",
    )
    .await;
    r.assert_error(422, "invalid_model");
    assert!(r.json()["detail"].as_str().unwrap().contains("line 1"));

    // The folder: refused, logged and counted; still version 1.
    let before = registry.loads.rejected(nextbest::registry::Part::Model);
    models.publish("model.json", &serde_json::to_vec(&bad).unwrap());
    eventually("the refusal", || {
        registry.loads.rejected(nextbest::registry::Part::Model) > before
    })
    .await;
    assert_eq!(version_of(&registry), "1");

    // SIGHUP's reload from disk: refused the same way.
    let err = registry.reload_from_disk().unwrap_err();
    assert!(err
        .faults()
        .iter()
        .any(|f| f.path == "offers[2].scorer.weights.arpu"));
    assert_eq!(version_of(&registry), "1");

    // Readiness and decisions are untouched.
    assert_eq!(get(srv.public, "/readyz").await.status, 200);
    let a = decide(
        srv.public,
        json!({"customer_id": "C0000042", "channel": "web", "placement": "plans_page"}),
    )
    .await;
    assert_eq!(a["model"]["version"], "1");
    let metrics = String::from_utf8(get(srv.admin, "/metrics").await.body).unwrap();
    assert!(
        metrics.contains("nextbest_model_loads_total{result=\"rejected\"} 4"),
        "{metrics}"
    );
    srv.stop().await;
}

#[tokio::test]
async fn rollback_restores_the_previous_version_and_history_is_newest_first() {
    let models = TempModels::new("rollback");
    let registry = models.registry();
    let srv = start_registry(registry.clone(), test_config()).await;
    let put = |v: &str| {
        let body = serde_json::to_vec(&TempModels::demo_doc(v)).unwrap();
        async move {
            request(
                srv.admin,
                "PUT",
                "/admin/models",
                &[("content-type", "application/json")],
                &body,
            )
            .await
        }
    };
    assert_eq!(put("2").await.status, 200);
    assert_eq!(put("3").await.status, 200);
    let h = get(srv.admin, "/admin/models").await.json();
    let versions: Vec<&str> = h["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["3", "2", "1"]);
    assert_eq!(h["active"]["version"], "3");
    assert_eq!(h["active"]["source"], "admin");
    // SIGHUP's reload finds the same model on disk (the upload wrote it there): no new
    // version, so the rollback below still goes back to version 2.
    let again = tokio::task::spawn_blocking({
        let r = registry.clone();
        move || r.reload_from_disk()
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(again.version, "3");
    assert_eq!(registry.history().len(), 3, "{:?}", registry.history());

    let r = request(srv.admin, "POST", "/admin/models/rollback", &[], b"").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["version"], "2");
    let a = decide(
        srv.public,
        json!({"customer_id": "C0000042", "channel": "web", "placement": "plans_page"}),
    )
    .await;
    assert_eq!(a["model"]["version"], "2");
    assert_eq!(
        request(srv.admin, "POST", "/admin/models/rollback", &[], b"")
            .await
            .json()["version"],
        "1"
    );
    request(srv.admin, "POST", "/admin/models/rollback", &[], b"")
        .await
        .assert_error(409, "no_previous_version");
    assert_eq!(version_of(&registry), "1");
    // Nothing is ever taken out of the history: the rollbacks are entries of their own.
    let h = get(srv.admin, "/admin/models").await.json();
    let entries: Vec<String> = h["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["version"].as_str().unwrap(),
                e["source"].as_str().unwrap()
            )
        })
        .collect();
    let file = models.dir.join("model.json");
    assert_eq!(
        entries,
        [
            "1 rollback".to_owned(),
            "2 rollback".into(),
            "3 admin".into(),
            "2 admin".into(),
            format!("1 disk {}", file.display())
        ]
    );
    assert!(h["history"][1]["checksum"]
        .as_str()
        .unwrap()
        .starts_with("crc32:"));
    assert_eq!(h["active"]["version"], "1");
    srv.stop().await;
}

#[tokio::test]
async fn feature_snapshots_swap_and_one_missing_a_needed_feature_is_refused() {
    let models = TempModels::new("features");
    let registry = models.registry();
    let srv = start_registry(registry.clone(), test_config()).await;
    // A new snapshot with the columns in another order and one new customer.
    let csv = std::fs::read_to_string(models.dir.join("features.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let reorder = |fields: Vec<&str>| -> String {
        let mut out = vec![fields[0]];
        out.extend(fields[1..].iter().rev());
        out.join(",")
    };
    let mut new_csv = reorder(header.clone()) + "\n";
    for line in lines.take(100) {
        new_csv += &(reorder(line.split(',').collect()) + "\n");
    }
    let newcomer = csv
        .lines()
        .nth(42)
        .unwrap()
        .replacen("C0000042", "NEW0001", 1);
    new_csv += &(reorder(newcomer.split(',').collect()) + "\n");
    let path = models.dir.join("next.csv");
    std::fs::write(&path, &new_csv).unwrap();

    let before = decide(
        srv.public,
        json!({"customer_id": "C0000042", "channel": "web", "placement": "plans_page"}),
    )
    .await;
    assert_eq!(
        decide(
            srv.public,
            json!({"customer_id": "NEW0001", "channel": "web", "placement": "plans_page"})
        )
        .await["fallback"]["reason"],
        "unknown_customer"
    );
    let r = reload_waiting(srv.admin, &path).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["customers"], 101);
    // The newcomer has C0000042's features: the same answer, through recompiled column indices.
    let after = decide(
        srv.public,
        json!({"customer_id": "NEW0001", "channel": "web", "placement": "plans_page"}),
    )
    .await;
    assert_eq!(after["offers"], before["offers"]);
    assert_eq!(
        decide(
            srv.public,
            json!({"customer_id": "C0000500", "channel": "web", "placement": "plans_page"})
        )
        .await["fallback"]["reason"],
        "unknown_customer"
    );

    // A snapshot without `churn_score` (the model needs it) is refused; nothing changes.
    let idx = header.iter().position(|h| *h == "churn_score").unwrap();
    let without: String = csv
        .lines()
        .take(50)
        .map(|l| {
            let mut f: Vec<&str> = l.split(',').collect();
            f.remove(idx);
            f.join(",") + "\n"
        })
        .collect();
    let bad = models.dir.join("bad.csv");
    std::fs::write(&bad, without).unwrap();
    let r = reload_waiting(srv.admin, &bad).await;
    r.assert_error(422, "invalid_features");
    // Said of the snapshot, which changed, not as a typo of the model that has served.
    assert!(
        r.json()["faults"].to_string().contains(
            "the new snapshot has no column `churn_score`, which the serving model reads"
        ),
        "{}",
        r.json()
    );
    let broken = models.dir.join("broken.csv");
    // `a:num`: a column forced to numbers, so `x` is a fault (unforced, it would be text).
    std::fs::write(&broken, "customer_id,a:num\nC1,x\n").unwrap();
    let d = reload_waiting(srv.admin, &broken)
        .await
        .assert_error(422, "invalid_features");
    assert!(d.contains(":2:2"), "{d}");
    assert_eq!(registry.load().features.as_ref().unwrap().len(), 101);
    // The load history names the file each refused snapshot came from.
    let status = get(srv.admin, "/admin/status.json").await.json();
    let refused: Vec<&str> = status["loads"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["part"] == "features" && l["accepted"] == false)
        .map(|l| l["source"].as_str().unwrap())
        .collect();
    assert_eq!(
        refused,
        [
            format!("features {}", broken.display()),
            format!("features {}", bad.display())
        ],
        "{status}"
    );
    // Every fault of a snapshot is listed, each at its file, line and field.
    std::fs::write(&broken, "customer_id,a:num\nC1,x\nC1,2\nC3,y\n").unwrap();
    let r = reload_waiting(srv.admin, &broken).await;
    r.assert_error(422, "invalid_features");
    let faults: Vec<String> = r.json()["faults"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            f["path"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        faults,
        ["broken.csv:2:2", "broken.csv:3:1", "broken.csv:4:2"]
    );
    assert!(r.json()["detail"]
        .as_str()
        .unwrap()
        .ends_with("(and 2 more)"));
    let status = get(srv.admin, "/admin/status.json").await.json();
    let last = &status["loads"][0];
    assert_eq!(last["faults"].as_array().map(Vec::len), Some(3), "{last}");
    // Past the hundred listed, the detail counts them all, not the entries.
    let many: String = (0..150).map(|i| format!("C{i},x\n")).collect();
    std::fs::write(&broken, format!("customer_id,a:num\n{many}")).unwrap();
    let r = reload_waiting(srv.admin, &broken).await;
    r.assert_error(422, "invalid_features");
    assert_eq!(r.json()["faults"].as_array().map(Vec::len), Some(101));
    let detail = r.json()["detail"].as_str().unwrap().to_owned();
    assert!(detail.ends_with("(and 149 more)"), "{detail}");

    // `churn_score` exported with `NA` for one missing value (its data line 7): the column
    // turns to text, the model's faults say so at its line, and the answer carries the
    // snapshot's warning for that column beside them.
    let first_50: String = csv.lines().take(50).map(|l| format!("{l}\n")).collect();
    let na_path = models.dir.join("na.csv");
    std::fs::write(&na_path, support::with_cell(&first_50, 7, idx, "NA")).unwrap();
    let r = reload_waiting(srv.admin, &na_path).await;
    r.assert_error(422, "invalid_features");
    let d = r.json();
    assert!(
        d["faults"].to_string().contains("line 8 made it text"),
        "{d}"
    );
    assert_eq!(d["warnings"][0]["path"], "columns.churn_score", "{d}");
    assert!(
        d["warnings"][0]["message"]
            .as_str()
            .unwrap()
            .contains("up to line 8, where `NA` made it text"),
        "{d}"
    );

    // A snapshot where `gold` became `Gold`: it loads, and the answer and the load history
    // say the rule for gold and platinum customers no longer finds gold ones.
    let renamed = models.dir.join("renamed.csv");
    std::fs::write(&renamed, csv.replace(",gold,", ",Gold,")).unwrap();
    let r = reload_waiting(srv.admin, &renamed).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let w = r.json()["warnings"].clone();
    assert_eq!(w[0]["path"], "offers[17].eligibility.values[0]", "{w}");
    assert!(
        w[0]["message"]
            .as_str()
            .unwrap()
            .contains("\"gold\" is not a value of `segment`"),
        "{w}"
    );
    let status = get(srv.admin, "/admin/status.json").await.json();
    assert!(
        status["loads"][0]["warnings"][0]
            .as_str()
            .unwrap()
            .starts_with("offers[17].eligibility.values[0]: \"gold\" is not a value"),
        "{status}"
    );

    // In the background: 202 now, swapped when ready.
    let r = post_json(
        srv.admin,
        "/admin/features/reload",
        &json!({"path": models.dir.join("features.csv")}),
    )
    .await;
    assert_eq!(r.status, 202);
    eventually("the background feature swap", || {
        registry.load().features.as_ref().unwrap().len() == 10_000
    })
    .await;
    srv.stop().await;
}

/// Publishes `challenger` (the demo as `demo-challenger` when `None`) and returns the demo
/// champion (version 2) declaring it with `share`.
fn challenger_setup(
    models: &TempModels,
    share: f64,
    challenger: Option<serde_json::Value>,
) -> serde_json::Value {
    let challenger = challenger.unwrap_or_else(|| {
        let mut c = TempModels::demo_doc("c1");
        c["name"] = json!("demo-challenger");
        c
    });
    models.publish("challenger.json", &serde_json::to_vec(&challenger).unwrap());
    let mut champion = TempModels::demo_doc("2");
    champion["challenger"] = json!({"path": "challenger.json", "share": share, "salt": "exp-nov"});
    champion
}

#[tokio::test]
async fn challenger_assignment_is_sticky_and_a_share_change_moves_only_the_margin() {
    let models = TempModels::new("challenger");
    let registry = models.registry();
    let srv = start_registry(registry.clone(), test_config()).await;
    let doc = challenger_setup(&models, 0.3, None);
    let r = put_model(srv.admin, &doc).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let m = get(srv.admin, "/admin/models").await.json();
    assert_eq!(m["challenger"]["name"], "demo-challenger");
    assert_eq!(m["challenger"]["share"], 0.3);

    let ids: Vec<String> = (1..=300).map(|i| format!("C{i:07}")).collect();
    let mut variant_at_30 = Vec::new();
    for id in &ids {
        let web = decide(
            srv.public,
            json!({"customer_id": id, "channel": "web", "placement": "plans_page"}),
        )
        .await;
        let app = decide(
            srv.public,
            json!({"customer_id": id, "channel": "app", "placement": "app_home"}),
        )
        .await;
        let again = decide(
            srv.public,
            json!({"customer_id": id, "channel": "web", "placement": "home_hero"}),
        )
        .await;
        assert_eq!(web["variant"], app["variant"], "{id}");
        assert_eq!(web["variant"], again["variant"], "{id}");
        let expected_model = if web["variant"] == "challenger" {
            "demo-challenger"
        } else {
            "demo"
        };
        assert_eq!(web["model"]["name"], expected_model);
        variant_at_30.push(web["variant"] == "challenger");
    }
    let share = variant_at_30.iter().filter(|&&c| c).count() as f64 / ids.len() as f64;
    assert!((0.2..0.4).contains(&share), "challenger share {share}");

    let doc = challenger_setup(&models, 0.5, None);
    assert_eq!(put_model(srv.admin, &doc).await.status, 200);
    let mut moved_in = 0;
    for (id, was) in ids.iter().zip(&variant_at_30) {
        let now = decide(
            srv.public,
            json!({"customer_id": id, "channel": "web", "placement": "plans_page"}),
        )
        .await["variant"]
            == "challenger";
        assert!(!was || now, "{id} left the challenger when its share grew");
        moved_in += (now && !was) as usize;
    }
    assert!(
        moved_in > 20,
        "only {moved_in} customers joined at the margin"
    );
    // Anonymous visitors get the champion.
    assert_eq!(
        decide(
            srv.public,
            json!({"channel": "web", "placement": "home_hero"})
        )
        .await["variant"],
        "champion"
    );
    srv.stop().await;
}

/// The demo model without its `sms` channel (its placement, the offers' claims and content).
fn without_sms(mut doc: serde_json::Value) -> serde_json::Value {
    let placements = doc["placements"].as_object_mut().unwrap();
    placements.retain(|_, p| p["channels"] != json!(["sms"]));
    let kept: Vec<String> = placements.keys().cloned().collect();
    for o in doc["offers"].as_array_mut().unwrap() {
        o["channels"].as_array_mut().unwrap().retain(|v| v != "sms");
        o["placements"]
            .as_array_mut()
            .unwrap()
            .retain(|v| kept.iter().any(|k| v == k));
        o["content"].as_object_mut().unwrap().remove("sms");
    }
    if let Some(fb) = doc["fallback"].as_object_mut() {
        fb.remove("sms");
    }
    doc
}

/// A challenger that cannot serve a channel the champion serves is refused by the admin
/// upload, as `campaign check` refuses a campaign on that channel: its customers could not
/// be decided there.
#[tokio::test]
async fn a_challenger_without_a_channel_of_the_champion_is_refused() {
    let models = TempModels::new("challenger-channels");
    let registry = models.registry();
    let srv = start_registry(registry.clone(), test_config()).await;
    let mut challenger = without_sms(TempModels::demo_doc("c1"));
    challenger["name"] = json!("no-sms");
    let champion = challenger_setup(&models, 0.2, Some(challenger));
    let r = put_model(srv.admin, &champion).await;
    r.assert_error(422, "invalid_model");
    assert_eq!(r.json()["path"], "challenger.path");
    let detail = r.json()["detail"].as_str().unwrap().to_owned();
    assert!(
        detail.contains("(challenger `no-sms`)") && detail.contains("no channel `sms`"),
        "{detail}"
    );
    assert_eq!(version_of(&registry), "1");
    // The same challenger beside a champion without `sms` is accepted.
    let mut champion = without_sms(TempModels::demo_doc("3"));
    champion["challenger"] = json!({"path": "challenger.json", "share": 0.2});
    let r = put_model(srv.admin, &champion).await;
    assert_eq!(r.status, 200, "{}", r.json());
    assert_eq!(version_of(&registry), "3");
    srv.stop().await;
}

#[tokio::test]
async fn model_paths_may_not_leave_the_models_folder() {
    let models = TempModels::new("escape");
    let registry = models.registry();
    let srv = start_registry(registry.clone(), test_config()).await;
    for path in ["../model.json", "/etc/passwd", "sub/../../x.json"] {
        let mut doc = TempModels::demo_doc("2");
        doc["challenger"] = json!({"path": path, "share": 0.1});
        let r = put_model(srv.admin, &doc).await;
        r.assert_error(422, "invalid_model");
        assert_eq!(r.json()["path"], "challenger.path", "{path}");
    }
    #[cfg(unix)]
    {
        let outside =
            std::env::temp_dir().join(format!("nextbest-outside-{}.json", std::process::id()));
        std::fs::write(
            &outside,
            serde_json::to_vec(&TempModels::demo_doc("x")).unwrap(),
        )
        .unwrap();
        std::os::unix::fs::symlink(&outside, models.dir.join("link.json")).unwrap();
        let mut doc = TempModels::demo_doc("2");
        doc["challenger"] = json!({"path": "link.json", "share": 0.1});
        let r = put_model(srv.admin, &doc).await;
        r.assert_error(422, "invalid_model");
        assert!(r.json()["detail"].as_str().unwrap().contains("outside"));
        std::fs::remove_file(outside).unwrap();
    }
    assert_eq!(version_of(&registry), "1");
    srv.stop().await;
}

/// An upload that compiles but is likely a mistake is activated, and its answer and the
/// history name each warning with its path: a typo must not serve in silence.
#[tokio::test]
async fn an_upload_answers_with_its_warnings() {
    let models = TempModels::new("warnings");
    let registry = models.registry();
    let srv = start_registry(registry.clone(), test_config()).await;
    let mut doc = TempModels::demo_doc("2");
    doc["policies"]["sales_cap"]["categories"] = json!(["Sales"]);
    let r = put_model(srv.admin, &doc).await;
    assert_eq!(r.status, 200, "{}", r.json());
    let w = r.json()["warnings"].clone();
    assert_eq!(w[0]["path"], "policies.sales_cap.categories[0]", "{w}");
    assert!(
        w[0]["message"]
            .as_str()
            .unwrap()
            .contains("did you mean \"sales\""),
        "{w}"
    );
    let h = get(srv.admin, "/admin/models").await.json();
    assert_eq!(h["history"][0]["warnings"], w);
    // A clean model answers an empty list, and its history entry has none.
    let r = put_model(srv.admin, &TempModels::demo_doc("3")).await;
    assert_eq!(r.json()["warnings"], json!([]));
    let h = get(srv.admin, "/admin/models").await.json();
    assert!(h["history"][0].get("warnings").is_none(), "{h}");
    assert_eq!(h["history"][1]["warnings"], w);
    srv.stop().await;
}

#[tokio::test]
async fn a_changed_scorer_file_rebuilds_the_active_model_not_the_one_on_disk() {
    let models = TempModels::new("scorer");
    let registry = models.registry();
    let _watcher = nextbest::watch::watch_models(registry.clone()).unwrap();
    let srv = start_registry(registry.clone(), test_config()).await;
    // An admin upload (version 7) is active, and written to model.json.
    let doc = serde_json::to_vec(&TempModels::demo_doc("7")).unwrap();
    assert_eq!(
        request(
            srv.admin,
            "PUT",
            "/admin/models",
            &[("content-type", "application/json")],
            &doc
        )
        .await
        .status,
        200
    );
    let loads = |r: &nextbest::registry::Registry| r.history().len();
    let before = loads(&registry);
    let key = |r: &nextbest::registry::Registry| {
        let serving = r.load();
        let set = serving.models.as_ref().unwrap();
        set.key(nextbest::experiment::Variant::Champion)
    };
    let key_before = key(&registry);
    // Only the files the model reads are reasons to rebuild it, not a log or notes beside it.
    {
        let serving = registry.load();
        let set = serving.models.as_ref().unwrap();
        let reads = |name: &str| set.reads(std::path::Path::new(name));
        assert!(reads("streaming_bundle.lgb.txt") && reads("device_upgrade_5g.xgb.json"));
        assert!(!reads("notes.json") && !reads("server.out") && !reads("model.json"));
    }
    // The same bytes written again are no new version (a touch, a copy of the same file)...
    let mut scorer = std::fs::read(models.dir.join("streaming_bundle.lgb.txt")).unwrap();
    assert!(matches!(
        registry.commit(nextbest::registry::Change::RebuildActive),
        Ok(nextbest::registry::Committed::Unchanged)
    ));
    assert_eq!(loads(&registry), before);
    // ...a changed file is (here one more line at its end).
    scorer.extend_from_slice(b"\n");
    models.publish("streaming_bundle.lgb.txt", &scorer);
    eventually("the rebuild", || loads(&registry) > before).await;
    assert_eq!(version_of(&registry), "7");
    // Same document, another scorer file: another checksum in the history.
    let h = registry.history();
    assert_ne!(h[0].checksum, h[1].checksum, "{h:?}");
    // ...and another content key: the funnel and decision ids tell the two trees apart.
    assert_ne!(key(&registry), key_before);
    // The change was the watcher's, whoever wrote the document it rebuilt.
    let source = registry.history()[0].source.clone();
    assert!(
        source.starts_with("folder ") && source.ends_with(" (scorer files)"),
        "{source}"
    );
    // A rollback goes back to the trees before, and writes their file back: a SIGHUP (the
    // folder read again) or a snapshot reload keeps serving them.
    let retrained = key(&registry);
    let original = &scorer[..scorer.len() - 1];
    let r = request(srv.admin, "POST", "/admin/models/rollback", &[], b"").await;
    assert_eq!(r.status, 200, "{}", r.json());
    assert_eq!(key(&registry), key_before);
    assert!(
        std::fs::read(models.dir.join("streaming_bundle.lgb.txt")).unwrap() == original,
        "the folder does not hold the trees rolled back to"
    );
    registry.reload_from_disk().unwrap();
    assert_eq!(key(&registry), key_before);
    registry
        .commit(nextbest::registry::Change::Features { path: None })
        .unwrap();
    assert_eq!(key(&registry), key_before);
    assert_ne!(key_before, retrained);
    srv.stop().await;
}

/// A rollback reuses the previous model's compiled form only when the snapshot still has the
/// same columns with the same dictionaries: a text rule holds codes, and a value added to the
/// snapshot since (here `bronze`, sorted before `gold`) shifts them.
#[test]
fn a_rollback_after_a_dictionary_change_compiles_again() {
    use nextbest::engine::RuleInput;
    use nextbest::registry::{Registry, RegistryConfig};

    let dir = TempDir::new("rollback-dictionary");
    let model = |version: &str| {
        json!({"name": "m", "version": version,
            "placements": {"home": {"channels": ["web"]}},
            "offers": [{"id": "gold_only", "category": "sales", "channels": ["web"],
                "placements": ["home"], "value": 1,
                "eligibility": {"feature": "segment", "op": "eq", "value": "gold"},
                "scorer": {"kind": "constant", "propensity": 0.5},
                "content": {"web": {"title": "t", "body": "b",
                    "image_url": "https://c.test/x.jpg", "cta_url": "https://s.test/x"}}}]})
    };
    let (v1, v2) = (dir.0.join("v1.csv"), dir.0.join("v2.csv"));
    std::fs::write(&v1, "customer_id,segment\nC1,gold\nC2,silver\n").unwrap();
    std::fs::write(&v2, "customer_id,segment\nC1,gold\nC2,silver\nC3,bronze\n").unwrap();
    let model_path = dir.0.join("model.json");
    std::fs::write(&model_path, serde_json::to_vec(&model("1")).unwrap()).unwrap();
    let registry = Registry::new(RegistryConfig {
        models_path: Some(model_path),
        features_path: Some(v1),
        ..RegistryConfig::default()
    });
    registry.reload_from_disk().expect("version 1 loads");
    registry
        .install_document(
            serde_json::to_vec(&model("2")).unwrap(),
            None,
            "test".into(),
        )
        .expect("version 2 loads");
    registry
        .reload_features(Some(v2))
        .expect("the snapshot with bronze loads");
    registry.rollback().expect("back to version 1");

    let snap = registry.load();
    let (set, store) = (
        snap.models.as_ref().unwrap(),
        snap.features.as_ref().unwrap(),
    );
    assert_eq!(&*set.champion.compiled.version, "1");
    let rule = set.champion.compiled.offers[0].rule.as_ref().unwrap();
    let eligible = |id: &str| {
        let row = store.exact_row(id).unwrap();
        rule.check(&RuleInput {
            features: row,
            context: &[],
        })
        .is_none()
    };
    assert!(eligible("C1"), "the gold customer");
    assert!(
        !eligible("C3"),
        "a bronze customer (gold's code before the change)"
    );
    assert!(!eligible("C2"));
}

#[test]
fn a_model_refused_for_want_of_features_loads_with_the_first_snapshot() {
    use nextbest::registry::{Change, Registry, RegistryConfig, RegistryError};
    let models = TempModels::new("waiting");
    let registry = Registry::new(RegistryConfig {
        models_path: Some(models.dir.clone()),
        features_path: Some(models.dir.join("features.csv")),
        ..Default::default()
    });
    // Published before any snapshot: refused, nothing serves.
    assert!(matches!(
        registry.commit(Change::Folder { force: false }),
        Err(RegistryError::NoFeatures)
    ));
    assert!(registry.load().models.is_none());
    // The snapshot arrives: the model waiting in the folder loads with it.
    registry.reload_features(None).unwrap();
    assert_eq!(version_of(&registry), "1");
    assert!(registry.load().is_ready());
}

/// A snapshot whose ids are written another way than the serving one's (a warehouse's padded
/// `CHAR(12)`, numbers for text) serves, and says so: every customer would silently fall back.
/// Reordered rows, a base that grew, or one cut short (said of its size) are not warned of here.
#[test]
fn a_snapshot_holding_few_of_the_serving_customers_ids_is_warned_about() {
    let models = TempModels::new("ids-lost");
    let registry = models.registry();
    let csv = std::fs::read_to_string(models.dir.join("features.csv")).unwrap();
    let mut lines: Vec<String> = csv.lines().map(str::to_owned).collect();
    let rewrite = |lines: &[String], f: &dyn Fn(&str) -> String| -> String {
        let mut out = format!("{}\n", lines[0]);
        for l in &lines[1..] {
            let (id, rest) = l.split_once(',').unwrap();
            out.push_str(&format!("{},{rest}\n", f(id)));
        }
        out
    };
    let next = models.dir.join("next.csv");
    let lost = |registry: &nextbest::registry::Registry, body: String| {
        std::fs::write(&next, body).unwrap();
        let info = registry.reload_features(Some(next.clone())).unwrap();
        registry
            .reload_features(Some(models.dir.join("features.csv")))
            .unwrap();
        info.warnings
            .iter()
            .find(|w| w.path == "customer_id")
            .map(|w| w.message.clone())
    };
    let padded = lost(&registry, rewrite(&lines, &|id| format!("{id:<12}"))).expect("padded ids");
    assert!(
        padded.starts_with("0 of 4096 customers sampled from the snapshot it replaces are in this one (0.0 %; \"C0000001\" is not, it has \"C0000001    \")"),
        "{padded}"
    );
    let numbers = lost(
        &registry,
        rewrite(&lines, &|id| id.trim_start_matches(['C', '0']).to_owned()),
    );
    assert!(numbers.is_some_and(|m| m.contains("written another way")));
    // The same customers in another order, and more of them: nothing to say.
    let mut grown = rewrite(&lines, &|id| id.to_owned());
    grown.push_str(&lines[1].replacen("C0000001", "C9999999", 1));
    grown.push('\n');
    assert_eq!(lost(&registry, grown), None);
    lines[1..].reverse();
    assert_eq!(lost(&registry, rewrite(&lines, &|id| id.to_owned())), None);
    // Half the base: said of its size, not of its ids.
    let half: String = lines[..5_001].iter().map(|l| format!("{l}\n")).collect();
    assert_eq!(lost(&registry, half), None);
}

/// A snapshot with a tenth fewer customers than the one it replaces, or more, serves (a base
/// can shrink) and says so: likely a partial export, and everyone else now gets fallbacks.
#[test]
fn a_snapshot_far_smaller_than_the_one_it_replaces_is_warned_about() {
    let models = TempModels::new("shrunk");
    let registry = models.registry();
    let csv = std::fs::read_to_string(models.dir.join("features.csv")).unwrap();
    let head: String = csv.lines().take(11).map(|l| format!("{l}\n")).collect();
    let part = models.dir.join("part.csv");
    std::fs::write(&part, head).unwrap();
    let info = registry.reload_features(Some(part.clone())).unwrap();
    assert_eq!(info.customers, 10);
    let w = info
        .warnings
        .iter()
        .find(|w| w.path == "customers")
        .unwrap_or_else(|| panic!("{:?}", info.warnings));
    assert!(
        w.message
            .starts_with("10 customers, 99.90 % fewer than the 10000 of the snapshot it replaces"),
        "{}",
        w.message
    );
    // One customer left of 10,000 is not "100 % fewer".
    registry
        .reload_features(Some(models.dir.join("features.csv")))
        .unwrap();
    let one: String = csv.lines().take(2).map(|l| format!("{l}\n")).collect();
    std::fs::write(&part, one).unwrap();
    let info = registry.reload_features(Some(part.clone())).unwrap();
    let w = info
        .warnings
        .iter()
        .find(|w| w.path == "customers")
        .unwrap();
    assert!(
        w.message.starts_with("1 customers, 99.99 % fewer"),
        "{}",
        w.message
    );
    // A file cut at 56 % (at the end of a row, so it still reads) is warned of,
    // and a base that lost 5 % is not.
    for (rows, warned) in [(5_600, true), (9_500, false)] {
        registry
            .reload_features(Some(models.dir.join("features.csv")))
            .unwrap();
        let mut cut: String = csv
            .lines()
            .take(rows + 1)
            .map(|l| format!("{l}\n"))
            .collect();
        cut.truncate(cut.len() - 1);
        std::fs::write(&part, cut).unwrap();
        let info = registry.reload_features(Some(part.clone())).unwrap();
        assert_eq!(info.customers, rows);
        assert_eq!(
            info.warnings.iter().any(|w| w.path == "customers"),
            warned,
            "{rows} rows: {:?}",
            info.warnings
        );
    }
    // A header alone is refused as that, not as a column of the wrong kind.
    let header = models.dir.join("header.csv");
    std::fs::write(&header, format!("{}\n", csv.lines().next().unwrap())).unwrap();
    let e = registry
        .reload_features(Some(header))
        .unwrap_err()
        .to_string();
    assert!(
        e.ends_with("no customers: the file holds a header only"),
        "{e}"
    );
    // Back to the whole base: nothing to say.
    let info = registry
        .reload_features(Some(models.dir.join("features.csv")))
        .unwrap();
    assert!(info.warnings.iter().all(|w| w.path != "customers"));
}

/// A warehouse export with a timestamp beside the features serves without it, and the load
/// says which column it left out and why.
#[cfg(feature = "offline")]
#[test]
fn a_parquet_column_the_snapshot_cannot_read_is_left_out_with_a_warning() {
    use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray, TimestampSecondArray};
    use nextbest::features::{ColumnKind, FeatureStore};
    let models = TempModels::new("left-out");
    let registry = models.registry();
    let csv = FeatureStore::load(&models.dir.join("features.csv")).unwrap();
    let rows = 0..csv.len();
    let ids: Vec<&str> = rows.clone().map(|r| csv.id_at(r).unwrap()).collect();
    let mut cols: Vec<(String, ArrayRef)> = vec![(
        "customer_id".into(),
        Arc::new(StringArray::from(ids.clone())),
    )];
    for (c, name) in csv.columns().iter().enumerate() {
        let cells = ids.iter().map(|id| csv.row(id).unwrap()[c]);
        let array: ArrayRef = match csv.kind(c) {
            ColumnKind::Number => Arc::new(Float64Array::from_iter(
                cells.map(|v| (!v.is_nan()).then_some(f64::from(v))),
            )),
            ColumnKind::Text { .. } => Arc::new(StringArray::from_iter(
                cells.map(|v| csv.dictionary(c).unwrap().value_of(v)),
            )),
        };
        cols.push((name.to_string(), array));
    }
    let stamps = TimestampSecondArray::from_iter_values(rows.map(|r| 1_795_000_000 + r as i64));
    cols.push(("updated_at".into(), Arc::new(stamps)));
    let batch = RecordBatch::try_from_iter(cols).unwrap();
    let path = models.dir.join("export.parquet");
    support::write_parquet(&path, &batch);

    let info = registry.reload_features(Some(path)).unwrap();
    assert_eq!(info.customers, csv.len());
    assert_eq!(info.features, csv.columns().len());
    let w = info
        .warnings
        .iter()
        .find(|w| w.path == "columns.updated_at")
        .unwrap_or_else(|| panic!("{:?}", info.warnings));
    assert!(
        w.message
            .starts_with("column `updated_at` holds Timestamp(s)")
            && w.message.ends_with("a model naming it is refused"),
        "{}",
        w.message
    );
    assert!(registry.load().is_ready());
}

/// A snapshot or model path that is no regular file is refused at once, whatever it points
/// to: a device (`/dev/zero` never ends, and was read until memory ran out) or a FIFO (opening
/// it waited for a writer, and every later change waited behind it); a folder that is not an
/// export's Parquet parts, naming the first file that is not one.
#[test]
fn a_snapshot_or_model_that_is_not_a_regular_file_is_refused_at_once() {
    use nextbest::registry::Change;
    let models = TempModels::new("not-a-file");
    let registry = models.registry();
    let fifo = models.dir.join("features.fifo");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.is_ok_and(|s| s.success()), "mkfifo (coreutils) failed");
    for (path, says) in [
        (
            std::path::PathBuf::from("/dev/zero"),
            "not a regular file (a device)",
        ),
        (fifo.clone(), "not a regular file (a FIFO)"),
        // A folder is read as the Parquet parts of an export: the models folder is not one.
        (
            models.dir.clone(),
            "is not a Parquet file: a folder is read as a snapshot only",
        ),
    ] {
        let e = registry
            .reload_features(Some(path.clone()))
            .unwrap_err()
            .to_string();
        assert!(e.contains(says), "{}: {e}", path.display());
    }
    // A model file linked to a device.
    let model = models.dir.join("model.json");
    std::fs::remove_file(&model).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &model).unwrap();
    let e = registry
        .commit(Change::Folder { force: true })
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a regular file (a device)"), "{e}");
    // What served still serves, and a good snapshot still loads after them.
    assert!(registry.load().is_ready());
    registry
        .reload_features(Some(models.dir.join("features.csv")))
        .unwrap();
}

/// A challenger that names the folder's own model file is refused when it is put: written
/// over that file, the model would declare itself its own challenger, which the next start
/// refuses, serving no model at all.
#[test]
fn a_challenger_naming_the_champions_own_file_is_refused() {
    use nextbest::registry::Change;
    let models = TempModels::new("self-challenger");
    let registry = models.registry();
    let mut doc = TempModels::demo_doc("9");
    doc["challenger"] = serde_json::json!({"path": "model.json", "share": 0.1, "salt": "a"});
    let e = registry
        .commit(Change::Document {
            document: serde_json::to_vec(&doc).unwrap(),
            base_dir: Some(models.dir.clone()),
            source: "admin".into(),
        })
        .unwrap_err();
    let faults = e.faults();
    assert!(
        faults.iter().any(|f| f.path == "challenger.path"
            && f.message
                .contains("is the folder's champion model file (model.json)")),
        "{faults:?}"
    );
    assert_eq!(version_of(&registry), "1");
}

/// `--features-null NA`: the demo snapshot exported with `NA` for a missing `churn_score`
/// loads with that value missing, and the demo model, which reads the column as a number,
/// serves on it; without the word the same file is refused for that column.
#[test]
fn a_snapshot_writing_na_for_missing_values_serves_under_its_null_word() {
    use nextbest::registry::{Registry, RegistryConfig};
    let dir = TempDir::new("null-words");
    let csv = std::fs::read_to_string(demo_dir().join("features.csv")).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let churn = header.iter().position(|h| *h == "churn_score").unwrap();
    let path = dir.0.join("na.csv");
    std::fs::write(&path, with_cell(&csv, 8, churn, "NA")).unwrap();
    let customer = csv.lines().nth(8).unwrap().split(',').next().unwrap();
    let registry = |words: &[&str]| {
        Registry::new(RegistryConfig {
            models_path: Some(demo_dir()),
            features_path: Some(path.clone()),
            null_words: nextbest::features::NullWords::new(words).unwrap(),
            ..RegistryConfig::default()
        })
    };
    let r = registry(&["NA"]);
    r.reload_from_disk()
        .expect("the snapshot loads with NA as missing");
    let snap = r.load();
    let store = snap.features.as_ref().unwrap();
    assert!(
        store.dictionary(churn - 1).is_none(),
        "churn_score holds numbers"
    );
    assert!(store.row(customer).unwrap()[churn - 1].is_nan());
    let e = registry(&[]).reload_from_disk().unwrap_err().to_string();
    assert!(e.contains("churn_score"), "{e}");
}

/// `POST /admin/features/reload` of `path`, answered once the reload is decided.
async fn reload_waiting(admin: std::net::SocketAddr, path: &std::path::Path) -> Resp {
    post_json(
        admin,
        "/admin/features/reload",
        &json!({"path": path, "wait": true}),
    )
    .await
}

/// SIGHUP after the nightly job wrote a snapshot without a column the serving model reads:
/// refused as the snapshot's fault, named by its file and the column, not the model's.
#[test]
fn a_reload_from_disk_on_a_snapshot_lacking_a_column_blames_the_snapshot() {
    use nextbest::registry::{Part, Registry, RegistryConfig};
    let dir = TempDir::new("sighup-lacking");
    let csv = std::fs::read_to_string(demo_dir().join("features.csv")).unwrap();
    let path = dir.0.join("features.csv");
    std::fs::write(&path, &csv).unwrap();
    let registry = Registry::new(RegistryConfig {
        models_path: Some(demo_dir()),
        features_path: Some(path.clone()),
        ..RegistryConfig::default()
    });
    registry.reload_from_disk().unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let dropped = header.iter().position(|h| *h == "churn_score").unwrap();
    let without: String = csv
        .lines()
        .map(|l| {
            let mut cells: Vec<&str> = l.split(',').collect();
            cells.remove(dropped);
            cells.join(",") + "\n"
        })
        .collect();
    std::fs::write(&path, without).unwrap();
    let e = registry.reload_from_disk().unwrap_err();
    assert_eq!(e.part(), Part::Features, "{e}");
    assert!(
        e.faults().iter().any(|f| f.message
            == "the new snapshot has no column `churn_score`, which the serving model reads"),
        "{:?}",
        e.faults()
    );
    let refused = &registry.journal.entries()[0];
    assert_eq!(
        (refused.part, refused.accepted, refused.source.as_str()),
        (
            "features",
            false,
            format!("features {}", path.display()).as_str()
        )
    );
    // The column back: accepted, and said of the snapshot too, the model being the same.
    std::fs::write(&path, &csv).unwrap();
    registry.reload_from_disk().unwrap();
    let accepted = &registry.journal.entries()[0];
    assert_eq!(
        (accepted.part, accepted.accepted, accepted.source.as_str()),
        (
            "features",
            true,
            format!("features {}", path.display()).as_str()
        )
    );
}

/// The demo's files (the model, its scorer files) copied into `dir`, the document last.
fn copy_demo_into(dir: &std::path::Path, version: &str) {
    for entry in std::fs::read_dir(demo_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap();
        if path.is_file() && name != "model.json" {
            std::fs::copy(&path, dir.join(name)).unwrap();
        }
    }
    let doc = serde_json::to_vec(&TempModels::demo_doc(version)).unwrap();
    std::fs::write(dir.join("model.json"), doc).unwrap();
}

/// A models folder that is a link to a release's folder (`models -> releases/v1`): pointing
/// the link at another release loads that one, and changes in it load from then on.
#[tokio::test]
async fn a_linked_models_folder_follows_the_link_when_it_is_pointed_elsewhere() {
    let models = TempModels::new("linked");
    let releases = models.dir.join("releases");
    for (name, version) in [("v1", "1"), ("v2", "2")] {
        std::fs::create_dir_all(releases.join(name)).unwrap();
        copy_demo_into(&releases.join(name), version);
    }
    let link = models.dir.join("models");
    std::os::unix::fs::symlink("releases/v1", &link).unwrap();
    let registry = Arc::new(nextbest::registry::Registry::new(
        nextbest::registry::RegistryConfig {
            models_path: Some(link.clone()),
            features_path: Some(models.dir.join("features.csv")),
            ..Default::default()
        },
    ));
    registry.reload_from_disk().unwrap();
    assert_eq!(version_of(&registry), "1");
    let _watcher = nextbest::watch::watch_models(registry.clone()).unwrap();
    // Something beside the link changing is no reason to load.
    let loads = registry.history().len();
    std::fs::write(models.dir.join("notes.txt"), "x").unwrap();
    // Pointed elsewhere atomically, as `ln -sfn` through a rename does.
    let next = models.dir.join(".models.next");
    std::os::unix::fs::symlink("releases/v2", &next).unwrap();
    std::fs::rename(&next, &link).unwrap();
    eventually("the release the link points at now", || {
        version_of(&registry) == "2"
    })
    .await;
    assert_eq!(
        registry.history().len(),
        loads + 1,
        "one load, for the link"
    );
    let doc = serde_json::to_vec(&TempModels::demo_doc("3")).unwrap();
    let v2 = releases.join("v2");
    std::fs::write(v2.join(".model.json.tmp"), doc).unwrap();
    std::fs::rename(v2.join(".model.json.tmp"), v2.join("model.json")).unwrap();
    eventually("a change in that release", || version_of(&registry) == "3").await;
}

#[tokio::test]
async fn a_models_folder_yet_to_come_is_waited_for_from_the_nearest_folder_alone() {
    let models = TempModels::new("later");
    let on_the_way = models.dir.join("later");
    let folder = on_the_way.join("models");
    let registry = Arc::new(nextbest::registry::Registry::new(
        nextbest::registry::RegistryConfig {
            models_path: Some(folder.clone()),
            features_path: Some(models.dir.join("features.csv")),
            ..Default::default()
        },
    ));
    // As `serve` does: the model is refused, the snapshot loads on its own.
    assert!(registry.reload_from_disk().is_err());
    registry.reload_features(None).unwrap();
    let watcher = nextbest::watch::watch_models(registry.clone()).unwrap();
    // The nearest folder that exists, not a parent's whole tree (`/` for `/nonexistent`).
    assert_eq!(watcher.waiting_in().as_deref(), Some(models.dir.as_path()));
    std::fs::create_dir(&on_the_way).unwrap();
    eventually("the watch moving down to later/", || {
        watcher.waiting_in().as_deref() == Some(on_the_way.as_path())
    })
    .await;
    std::fs::create_dir(&folder).unwrap();
    eventually("the watch reaching the models folder", || {
        watcher.waiting_in().is_none()
    })
    .await;
    copy_demo_into(&folder, "4");
    eventually("the model loading", || registry.load().models.is_some()).await;
    assert_eq!(version_of(&registry), "4");

    // Removed and copied in again, as `rm -r` then `mv` of a new copy does: the watch goes up
    // to wait, the model serving keeps serving, and the new copy is loaded.
    std::fs::remove_dir_all(&folder).unwrap();
    eventually("the watch leaving the removed folder", || {
        watcher.waiting_in().as_deref() == Some(on_the_way.as_path())
    })
    .await;
    assert_eq!(version_of(&registry), "4");
    let staged = models.dir.join("staged");
    std::fs::create_dir(&staged).unwrap();
    copy_demo_into(&staged, "5");
    std::fs::rename(&staged, &folder).unwrap();
    eventually("the new copy loading", || version_of(&registry) == "5").await;
    assert!(watcher.waiting_in().is_none());

    // Removed and replaced at once, within one debounce: the folder under the name is another
    // one, and it is the one watched from then on (a change in it loads).
    let staged = models.dir.join("staged-2");
    std::fs::create_dir(&staged).unwrap();
    copy_demo_into(&staged, "6");
    std::fs::remove_dir_all(&folder).unwrap();
    std::fs::rename(&staged, &folder).unwrap();
    eventually("the replacing copy loading", || {
        version_of(&registry) == "6"
    })
    .await;
    let doc = serde_json::to_vec(&TempModels::demo_doc("7")).unwrap();
    std::fs::write(folder.join(".model.json.tmp"), doc).unwrap();
    std::fs::rename(folder.join(".model.json.tmp"), folder.join("model.json")).unwrap();
    eventually("a change in the replacing folder loading", || {
        version_of(&registry) == "7"
    })
    .await;

    // Removed and made again at once, as `rm -rf models; cp -r new models` does: the new folder
    // may get the removed one's inode number back (ext4 gives it at once), so only the event of
    // the removal tells it is another folder. It is watched, and a change in it loads.
    std::fs::remove_dir_all(&folder).unwrap();
    std::fs::create_dir(&folder).unwrap();
    copy_demo_into(&folder, "8");
    eventually("the copy made again loading", || {
        version_of(&registry) == "8"
    })
    .await;
    let doc = serde_json::to_vec(&TempModels::demo_doc("9")).unwrap();
    std::fs::write(folder.join(".model.json.tmp"), doc).unwrap();
    std::fs::rename(folder.join(".model.json.tmp"), folder.join("model.json")).unwrap();
    eventually("a change in the folder made again loading", || {
        version_of(&registry) == "9"
    })
    .await;
}
