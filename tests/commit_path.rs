//! Every change to the serving state goes through one commit path: each refusal, from any
//! source, is counted exactly once in the counter it belongs to, and state derived from a
//! published model (history horizon, funnel tables) comes from champion and challenger alike.

mod support;

use std::sync::Arc;

use nextbest::registry::{Change, Committed, Part, Registry, RegistryConfig};
use serde_json::json;
use support::binary::Binary;
use support::*;

/// (model accepted, model rejected, features accepted, features rejected).
fn counts(r: &Registry) -> (u64, u64, u64, u64) {
    (
        r.loads.accepted(Part::Model),
        r.loads.rejected(Part::Model),
        r.loads.accepted(Part::Features),
        r.loads.rejected(Part::Features),
    )
}

fn bad_doc() -> serde_json::Value {
    let mut bad = TempModels::demo_doc("2");
    bad["offers"][2]["scorer"]["weights"]["arpu"] = json!(0.1);
    bad
}

#[tokio::test]
async fn each_source_counts_its_refusal_once_in_its_own_counter() {
    let models = TempModels::new("commit-counts");
    let registry = models.registry();
    assert_eq!(counts(&registry), (1, 0, 1, 0), "the start-up load");
    let _watcher = nextbest::watch::watch_models(registry.clone()).unwrap();
    let srv = start_registry(registry.clone(), test_config()).await;

    // Admin upload.
    put_model(srv.admin, &bad_doc())
        .await
        .assert_error(422, "invalid_model");
    assert_eq!(counts(&registry), (1, 1, 1, 0));

    // A champion whose declared challenger cannot load.
    let mut doc = TempModels::demo_doc("3");
    doc["challenger"] = json!({"path": "missing.json", "share": 0.5, "salt": "s"});
    put_model(srv.admin, &doc)
        .await
        .assert_error(422, "invalid_model");
    assert_eq!(counts(&registry), (1, 2, 1, 0));

    // Rollback with nothing to roll back to.
    let r = post_json(srv.admin, "/admin/models/rollback", &json!({})).await;
    r.assert_error(409, "no_previous_version");
    assert_eq!(counts(&registry), (1, 3, 1, 0));

    // Feature reloads: a missing file, then a snapshot lacking a feature the model needs.
    let r = post_json(
        srv.admin,
        "/admin/features/reload",
        &json!({"path": models.dir.join("nope.csv"), "wait": true}),
    )
    .await;
    r.assert_error(422, "invalid_features");
    assert_eq!(counts(&registry), (1, 3, 1, 1));
    let lacking = models.dir.join("lacking.csv");
    std::fs::write(&lacking, "customer_id,tenure_months\nC1,3\n").unwrap();
    let r = post_json(
        srv.admin,
        "/admin/features/reload",
        &json!({"path": lacking, "wait": true}),
    )
    .await;
    r.assert_error(422, "invalid_features");
    assert_eq!(
        counts(&registry),
        (1, 3, 1, 2),
        "a feature refusal, not a model one"
    );

    // The folder: refused once, and the same document is not refused (or counted) again.
    models.publish("model.json", &serde_json::to_vec(&bad_doc()).unwrap());
    eventually("the folder refusal", || counts(&registry).1 == 4).await;
    let again = registry.commit(Change::Folder { force: false }).unwrap();
    assert!(matches!(again, Committed::Unchanged), "{again:?}");
    assert_eq!(counts(&registry), (1, 4, 1, 2));

    // SIGHUP's reload from disk: the model part is at fault, so only the model counts.
    registry.reload_from_disk().unwrap_err();
    assert_eq!(counts(&registry), (1, 5, 1, 2));

    // And what succeeds counts once too.
    put_model(srv.admin, &TempModels::demo_doc("4")).await;
    assert_eq!(counts(&registry), (2, 5, 1, 2));
    let r = post_json(srv.admin, "/admin/models/rollback", &json!({})).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert_eq!(counts(&registry), (3, 5, 1, 2));
    let metrics = String::from_utf8(get(srv.admin, "/metrics").await.body).unwrap();
    for line in [
        "nextbest_model_loads_total{result=\"rejected\"} 5",
        "nextbest_feature_loads_total{result=\"rejected\"} 2",
        "nextbest_model_loads_total{result=\"accepted\"} 3",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no {line} in\n{metrics}"
        );
    }
    srv.stop().await;
}

/// A one-offer model over the given features, scored by a logistic on them.
fn tiny(version: &str, features: &[&str]) -> Vec<u8> {
    let weights: serde_json::Map<String, serde_json::Value> = features
        .iter()
        .map(|f| (f.to_string(), json!(0.1)))
        .collect();
    let content = json!({"title": "t", "body": "b", "image_url": "https://x.test/i", "cta_url": "https://x.test/c"});
    serde_json::to_vec(&json!({
        "name": "tiny", "version": version,
        "placements": {"p": {"channels": ["web"]}},
        "offers": [{"id": "o", "category": "sales", "channels": ["web"], "placements": ["p"],
            "value": 1, "scorer": {"kind": "logistic", "intercept": 0, "weights": weights},
            "content": {"web": content}}],
    }))
    .unwrap()
}

#[test]
fn a_rollback_that_cannot_recompile_is_refused_and_counted() {
    let dir = TempDir::new("commit-rollback");
    let (ab, a) = (dir.0.join("ab.csv"), dir.0.join("a.csv"));
    std::fs::write(&ab, "customer_id,a,b\nC1,1,2\n").unwrap();
    std::fs::write(&a, "customer_id,a\nC1,1\n").unwrap();
    let registry = Arc::new(Registry::new(RegistryConfig {
        features_path: Some(ab),
        ..Default::default()
    }));
    registry.reload_features(None).unwrap();
    registry
        .install_document(tiny("1", &["a", "b"]), None, "test".into())
        .unwrap();
    registry
        .install_document(tiny("2", &["a"]), None, "test".into())
        .unwrap();
    // Version 2 needs only `a`, so a snapshot without `b` is accepted ...
    registry.reload_features(Some(a)).unwrap();
    let before = counts(&registry);
    // ... and version 1 cannot come back over it.
    let err = registry.rollback().unwrap_err();
    assert!(
        err.faults().iter().any(|f| f.message.contains('b')),
        "{:?}",
        err.faults()
    );
    assert_eq!(
        counts(&registry),
        (before.0, before.1 + 1, before.2, before.3)
    );
    assert_eq!(version_of(&registry), "2", "the serving model is unchanged");
}

#[test]
fn a_model_before_any_features_is_refused_and_counted_by_every_source() {
    let registry = Registry::default();
    registry
        .install_document(tiny("1", &["a"]), None, "test".into())
        .unwrap_err();
    registry.rebuild_active().unwrap_err();
    registry.rollback().unwrap_err();
    assert_eq!(counts(&registry), (0, 3, 0, 0));
}

#[test]
fn overlapping_feature_reloads_queue_and_the_last_request_wins() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc;
    let dir = TempDir::new("commit-reloads");
    let paths: Vec<_> = (0..4)
        .map(|i| {
            let p = dir.0.join(format!("f{i}.csv"));
            let rows: String = (0..=i).map(|r| format!("C{r},{r}\n")).collect();
            std::fs::write(&p, format!("customer_id,a\n{rows}")).unwrap();
            p
        })
        .collect();
    let registry = Arc::new(Registry::new(RegistryConfig {
        features_path: Some(paths[0].clone()),
        ..Default::default()
    }));
    registry.reload_features(None).unwrap();
    registry
        .install_document(tiny("1", &["a"]), None, "test".into())
        .unwrap();
    // A publish hook that, once armed, parks the commit holding the writer lock.
    let armed = Arc::new(AtomicBool::new(false));
    let (entered_tx, entered) = mpsc::channel();
    let (release, release_rx) = mpsc::channel::<()>();
    let release_rx = std::sync::Mutex::new(release_rx);
    let hook_armed = armed.clone();
    registry.on_publish(move |_, _| {
        if hook_armed.swap(false, Ordering::SeqCst) {
            entered_tx.send(()).unwrap();
            release_rx.lock().unwrap().recv().unwrap();
        }
    });
    armed.store(true, Ordering::SeqCst);
    let reload = |i: usize| {
        let (r, p) = (registry.clone(), paths[i].clone());
        std::thread::spawn(move || r.reload_features(Some(p)))
    };
    let base = registry.feature_reloads_requested();
    let first = reload(1);
    entered.recv().unwrap();
    // The first reload is mid-commit; two more are requested, in order, while it holds on.
    let second = reload(2);
    while registry.feature_reloads_requested() < base + 2 {
        std::thread::yield_now();
    }
    let third = reload(3);
    while registry.feature_reloads_requested() < base + 3 {
        std::thread::yield_now();
    }
    release.send(()).unwrap();
    assert!(first.join().unwrap().is_ok());
    let second = second.join().unwrap();
    assert!(
        matches!(second, Err(nextbest::registry::RegistryError::Superseded)),
        "{second:?}"
    );
    assert_eq!(third.join().unwrap().unwrap().customers, 4);
    assert_eq!(registry.load().features.as_ref().unwrap().len(), 4);
    let (_, _, accepted, rejected) = counts(&registry);
    assert_eq!((accepted, rejected), (3, 0), "giving way is not a refusal");
}

fn metric(text: &str, line_prefix: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(line_prefix)?.trim().parse().ok())
}

#[tokio::test]
async fn sighup_counts_a_refused_reload_once_and_keeps_serving() {
    let models = TempModels::new("commit-hup");
    let data = TempDir::new("commit-hup-data");
    let server = Binary::with_models(&models.dir, &data.0).spawn();
    models.publish("model.json", &serde_json::to_vec(&bad_doc()).unwrap());
    server.signal("HUP");
    let rejected = "nextbest_model_loads_total{result=\"rejected\"}";
    let mut text = String::new();
    for _ in 0..2_000 {
        text = String::from_utf8(get(server.admin, "/metrics").await.body).unwrap();
        if metric(&text, rejected) == Some(1) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(metric(&text, rejected), Some(1), "{text}");
    assert_eq!(
        metric(&text, "nextbest_feature_loads_total{result=\"rejected\"}"),
        Some(0)
    );
    assert_eq!(
        metric(&text, "nextbest_model_loads_total{result=\"accepted\"}"),
        Some(1)
    );
    let a = decide(
        server.public,
        json!({"customer_id": "C0000042", "channel": "web", "placement": "plans_page"}),
    )
    .await;
    assert_eq!(a["model"]["version"], "1");
    let log = server.wait_stderr("offers[2].scorer.weights.arpu");
    assert!(
        log.contains("offers[2].scorer.weights.arpu"),
        "the refusal names its fault path:\n{log}"
    );
}

#[tokio::test]
async fn the_admin_token_file_guards_admin_and_stays_out_of_ps_and_logs() {
    let data = TempDir::new("commit-token");
    let token = "s3cr3t-token-from-a-file";
    let file = data.0.join("token");
    std::fs::write(&file, format!("{token}\n")).unwrap();
    let server = Binary::demo(&data.0.join("data"))
        .arg("--admin-token-file")
        .arg(&file)
        .spawn();
    assert_eq!(get(server.admin, "/admin/models").await.status, 401);
    let auth = format!("Bearer {token}");
    let r = request(
        server.admin,
        "GET",
        "/admin/models",
        &[("authorization", &auth)],
        b"",
    )
    .await;
    assert_eq!(r.status, 200);
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", server.pid())).unwrap();
    let environ = std::fs::read(format!("/proc/{}/environ", server.pid())).unwrap();
    for (what, bytes) in [("command line", &cmdline), ("environment", &environ)] {
        assert!(
            !String::from_utf8_lossy(bytes).contains(token),
            "the token shows in the {what}"
        );
    }
    assert!(!server.stderr().contains(token));

    // An empty token file is refused at start rather than opening admin to everyone.
    std::fs::write(&file, "\n").unwrap();
    let (status, stderr) = Binary::demo(&data.0.join("data2"))
        .arg("--admin-token-file")
        .arg(&file)
        .run_to_exit();
    assert!(!status.success());
    assert!(stderr.contains("empty"), "{stderr}");
}

/// A one-offer model whose dismiss cool-down is `days`, optionally declaring a challenger.
fn cooldown_model(name: &str, days: u32, challenger: Option<&str>) -> serde_json::Value {
    let content = json!({"title": "t", "body": "b", "image_url": "https://x.test/i", "cta_url": "https://x.test/c"});
    let mut doc = json!({
        "name": name, "version": "1",
        "policies": {"dismiss_cooldown_days": days},
        "placements": {"p": {"channels": ["web"]}},
        "offers": [{"id": "o", "category": "sales", "channels": ["web"], "placements": ["p"],
            "value": 1, "scorer": {"kind": "logistic", "intercept": 0, "weights": {"a": 0.1}},
            "content": {"web": content}}],
    });
    if let Some(path) = challenger {
        doc["challenger"] = json!({"path": path, "share": 1.0, "salt": "s"});
    }
    doc
}

#[tokio::test]
async fn a_restart_keeps_the_history_a_challenger_with_a_longer_window_needs() {
    let dir = TempDir::new("commit-horizon");
    let models = dir.0.join("models");
    std::fs::create_dir_all(&models).unwrap();
    let write = |name: &str, doc: &serde_json::Value| {
        std::fs::write(models.join(name), serde_json::to_vec(doc).unwrap()).unwrap()
    };
    write(
        "model.json",
        &cooldown_model("champ", 1, Some("challenger.json")),
    );
    write("challenger.json", &cooldown_model("chall", 30, None));
    std::fs::write(models.join("features.csv"), "customer_id,a\nC1,1\n").unwrap();
    let data = dir.0.join("data");
    let ask = json!({"customer_id": "C1", "channel": "web", "placement": "p"});
    let ten_days_ago = humantime::format_rfc3339_seconds(
        std::time::SystemTime::now() - std::time::Duration::from_secs(10 * 86_400),
    )
    .to_string();

    let server = Binary::with_models(&models, &data).spawn();
    let a = decide(server.public, ask.clone()).await;
    assert_eq!(a["variant"], "challenger");
    assert_eq!(a["offers"][0]["offer_id"], "o", "{a}");
    let dismiss =
        json!({"type": "dismiss", "customer_id": "C1", "offer_id": "o", "ts": ten_days_ago});
    assert_eq!(
        post_events(server.public, json!([dismiss])).await["accepted"],
        1
    );
    let a = decide(server.public, ask.clone()).await;
    assert_eq!(a["fallback"]["reason"], "no_eligible_offer", "{a}");
    server.kill9();

    // After a restart the challenger still sees the 10-day-old dismiss its 30 days cover.
    let server = Binary::with_models(&models, &data).spawn();
    let a = decide(server.public, ask).await;
    assert_eq!(a["variant"], "challenger");
    assert_eq!(a["fallback"]["reason"], "no_eligible_offer", "{a}");
}
