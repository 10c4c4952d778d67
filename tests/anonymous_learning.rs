//! A contextual adaptive offer learning from a request value (`"context": ["context.device",
//! ...]`) for anonymous visitors: impressions and conversions that quote their decisions teach
//! it that visitors on iOS convert more than those on Android, so an iOS visitor's posterior is
//! well above an Android one's, and the same after kill -9 and a restart (the request values
//! travel in the impressions' log records). Asserted on `explain`'s posteriors, not on draws.
//! The decision log replays those anonymous decisions exactly, and other replicas of a fleet
//! learn the same from the records they receive, also one that joins after they were shipped.
//! The real binary on data folders of its own.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::binary::Binary;
use support::redis::Redis;
use support::*;

/// Visitors shown the offer: even ones on iOS, odd ones on Android.
const VISITORS: usize = 400;

fn model() -> Value {
    json!({"name": "anon-learning", "version": "1",
           "placements": {"home": {"channels": ["web"], "limit": 1, "anonymous": "decide"}},
           "offers": [{"id": "app_promo", "category": "sales", "channels": ["web"], "placements": ["home"],
               "value": 1,
               "scorer": {"kind": "adaptive", "outcome": "conversion",
                          "prior": {"propensity": 0.05, "evidence": 20},
                          "context": ["context.device", "tenure"]},
               "content": {"web": {"title": "T", "body": "B", "image_url": "https://i.example/x.jpg",
                                   "cta_url": "https://s.example/x"}}}]})
}

fn device(i: usize) -> &'static str {
    if i.is_multiple_of(2) {
        "ios"
    } else {
        "android"
    }
}

/// iOS visitors convert one in four, Android ones one in twenty.
fn converts(i: usize) -> bool {
    if i.is_multiple_of(2) {
        i.is_multiple_of(8)
    } else {
        i % 40 == 1
    }
}

/// The offer's `adaptive` explain object for a new visitor on `device` (`None`: the request
/// names no device).
async fn learnt_for(addr: SocketAddr, device: Option<&str>) -> Value {
    let mut ask =
        json!({"visitor_id": "probe", "channel": "web", "placement": "home", "explain": true});
    if let Some(d) = device {
        ask["context"] = json!({"device": d});
    }
    let a = decide(addr, ask).await;
    assert_eq!(a["anonymous"], true, "{a}");
    a["explain"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["offer_id"] == "app_promo")
        .unwrap_or_else(|| panic!("no app_promo in {a}"))["adaptive"]
        .clone()
}

/// Waits (at most 20 s) until what was learnt from every impression reaches decisions (the
/// counts publish within their refresh period), then returns the posterior mean per device.
async fn posteriors(addr: SocketAddr) -> [f64; 3] {
    let since = Instant::now();
    loop {
        let trials = learnt_for(addr, None).await["trials"].clone();
        if trials == VISITORS {
            break;
        }
        assert!(
            since.elapsed() < Duration::from_secs(20),
            "{trials} of {VISITORS} impressions learnt after 20 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut out = [0.0; 3];
    for (slot, d) in out.iter_mut().zip([Some("ios"), Some("android"), None]) {
        *slot = learnt_for(addr, d).await["posterior_mean"]
            .as_f64()
            .unwrap();
    }
    out
}

/// A models folder holding the model and a one-customer snapshot.
fn models(dir: &Path) -> PathBuf {
    let m = dir.join("models");
    std::fs::create_dir_all(&m).unwrap();
    std::fs::write(m.join("features.csv"), "customer_id,tenure\nC1,12\n").unwrap();
    std::fs::write(m.join("model.json"), serde_json::to_vec(&model()).unwrap()).unwrap();
    m
}

/// Decides for every visitor on `addr`, then posts there the impressions and conversions
/// quoting those decisions.
async fn teach(addr: SocketAddr) {
    let mut events = Vec::new();
    for i in 0..VISITORS {
        let visitor = format!("v{i}");
        let a = decide(
            addr,
            json!({"visitor_id": visitor, "channel": "web", "placement": "home",
                   "context": {"device": device(i), "page": "home"}}),
        )
        .await;
        assert_eq!(a["offers"][0]["offer_id"], "app_promo", "{a}");
        let id = a["decision_id"].clone();
        events.push(
            json!({"type": "impression", "visitor_id": visitor, "offer_id": "app_promo",
                   "decision_id": id}),
        );
        if converts(i) {
            events.push(json!({"type": "conversion", "visitor_id": visitor,
                               "offer_id": "app_promo", "decision_id": id}));
        }
    }
    for chunk in events.chunks(200) {
        let r = post_events(addr, json!(chunk)).await;
        assert_eq!(r["accepted"].as_u64(), Some(chunk.len() as u64), "{r}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_visitors_teach_an_offer_by_their_device_and_it_survives_a_restart() {
    let dir = TempDir::new("anon-learning");
    let (m, data, log) = (models(&dir.0), dir.0.join("data"), dir.0.join("decisions"));
    let start = || {
        Binary::with_models(&m, &data)
            .arg("--decision-log")
            .arg(&log)
            .args(["--decision-log-sample", "1", "--drain-delay-ms", "0"])
            .spawn()
    };
    let srv = start();

    let before = learnt_for(srv.public, Some("ios")).await;
    assert_eq!(before["trials"], 0, "{before}");
    teach(srv.public).await;
    let [ios, android, unknown] = posteriors(srv.public).await;
    // 25 % against 5 %: the device's bins pull them well apart; a request without a device
    // falls in the missing bin, which no impression filled, between the two.
    assert!(ios > 2.0 * android, "ios {ios}, android {android}");
    assert!(ios > 0.15 && android < 0.1, "ios {ios}, android {android}");
    assert!(
        android < unknown && unknown < ios,
        "{android} < {unknown} < {ios}"
    );

    // The request values are in the impressions' log records: a replay learns the same.
    srv.kill9();
    let srv = start();
    let again = posteriors(srv.public).await;
    for (a, b) in again.iter().zip([ios, android, unknown]) {
        assert!(
            (a - b).abs() < 1e-12,
            "after restart {again:?}, before {:?}",
            [ios, android, unknown]
        );
    }
    srv.stop();

    // The log holds each anonymous decision's request context and the log-odds its device
    // drew from: re-deciding them with the same model reproduces every answer.
    replays_exactly(&log, &m.join("model.json"), VISITORS as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_replica_learns_the_same_from_the_fleet() {
    let redis = Redis::start();
    let dir = TempDir::new("anon-learning-fleet");
    let m = models(&dir.0);
    let replica = |n: &str| {
        Binary::with_models(&m, &dir.0.join(n))
            .args(["--redis", &redis.url()])
            .spawn()
    };
    let [a, b] = ["a", "b"].map(replica);
    // Replica A decides and takes the events; B never saw a decision, only A's log records.
    teach(a.public).await;
    let (on_a, on_b) = (posteriors(a.public).await, posteriors(b.public).await);
    assert_eq!(on_a, on_b, "A {on_a:?}, B {on_b:?}");
    assert!(
        on_b[0] > 2.0 * on_b[1],
        "ios {}, android {}",
        on_b[0],
        on_b[1]
    );
    // A replica joining once everything was shipped (a scale-out) learns it all too: the model
    // has no policy window, and the streams still keep the fleet's events for it.
    let shipped = (VISITORS + (0..VISITORS).filter(|&i| converts(i)).count()) as u64;
    let since = Instant::now();
    while get(a.admin, "/admin/stats").await.json()["replication"]["shipped"] != shipped {
        assert!(
            since.elapsed() < Duration::from_secs(20),
            "A never shipped {shipped} events"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let c = replica("c");
    let on_c = posteriors(c.public).await;
    assert_eq!(on_a, on_c, "A {on_a:?}, C {on_c:?}");
    a.stop();
    b.stop();
    c.stop();
}
