//! Several replicas, one Redis: contact policies hold across the fleet, each event id counts
//! once, and nothing acknowledged is lost when Redis or a replica dies. Real `redis-server` and
//! real `nextbest` processes on ephemeral loopback ports.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::binary::{Binary, Process};
use support::redis::Redis;
use support::*;

fn replica(data: &Path, redis: &str) -> Process {
    Binary::demo(data)
        .args(["--redis", redis, "--redis-catchup-ms", "2000"])
        .spawn()
}

async fn explain(addr: SocketAddr, customer: &str, channel: &str, placement: &str) -> Value {
    decide(
        addr,
        json!({"customer_id": customer, "channel": channel, "placement": placement, "explain": true}),
    )
    .await
}

/// Polls an async condition for up to 20 s (replication is asynchronous by design).
async fn within<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A customer and an offer scored for them on the app home screen.
async fn scored_offer(addr: SocketAddr) -> (String, String) {
    for i in 1..=200 {
        let c = format!("C{i:07}");
        let a = explain(addr, &c, "app", "app_home").await;
        if let Some(o) = a["explain"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["excluded"].is_null() && e["offer_id"].is_string())
        {
            return (c, o["offer_id"].as_str().unwrap().to_owned());
        }
    }
    panic!("no customer with a scored app offer");
}

fn metric(text: &str, line_prefix: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(line_prefix)?.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

async fn applied(addr: SocketAddr) -> u64 {
    let m = String::from_utf8(get(addr, "/metrics").await.body).unwrap();
    metric(
        &m,
        "nextbest_replication_events_total{direction=\"applied\"}",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_hold_on_every_replica_and_an_event_id_counts_once() {
    let redis = Redis::start();
    let dir = TempDir::new("fleet-policies");
    let [a, b, c] = ["a", "b", "c"].map(|n| replica(&dir.0.join(n), &redis.url()));

    // A dismiss on A holds the offer back on B and C.
    let (customer, offer) = scored_offer(b.public).await;
    let dismiss =
        json!({"type": "dismiss", "customer_id": customer, "offer_id": offer, "channel": "web"});
    post_events(a.public, json!([dismiss])).await;
    for (name, r) in [("B", &b), ("C", &c)] {
        within(&format!("the dismiss on {name}"), || async {
            let ex = explain(r.public, &customer, "app", "app_home").await;
            verdict(&ex, &offer).is_some_and(|v| v.contains("dismiss"))
        })
        .await;
    }

    // The impression cap (3 in 7 days) counts impressions posted to different replicas on
    // different channels.
    let (customer, offer) = scored_offer(c.public).await;
    let imp = |ch: &str| json!({"type": "impression", "customer_id": customer, "offer_id": offer, "channel": ch});
    post_events(a.public, json!([imp("web")])).await;
    post_events(b.public, json!([imp("app")])).await;
    post_events(c.public, json!([imp("web")])).await;
    for (name, r) in [("A", &a), ("B", &b), ("C", &c)] {
        within(&format!("the cap on {name}"), || async {
            let ex = explain(r.public, &customer, "app", "app_home").await;
            verdict(&ex, &offer).is_some_and(|v| v.contains("impression"))
        })
        .await;
    }

    // One event id posted to A and to B counts once: with one more impression on C, two in
    // all, under the cap. Each replica then posts a dismiss of another offer, which C can only
    // see after the repeat the same replica shipped before it.
    let (customer, offer) = scored_offer(a.public).await;
    let other = {
        let ex = explain(a.public, &customer, "app", "app_home").await;
        ex["explain"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["offer_id"].as_str())
            .find(|o| *o != offer)
            .unwrap()
            .to_owned()
    };
    let dup = json!({"type": "impression", "customer_id": customer, "offer_id": offer, "channel": "web", "event_id": "fleet-dup-1"});
    post_events(a.public, json!([dup])).await;
    post_events(b.public, json!([dup])).await;
    post_events(
        c.public,
        json!([{"type": "impression", "customer_id": customer, "offer_id": offer, "channel": "app"}]),
    )
    .await;
    for (r, id) in [(&a, "marker-a"), (&b, "marker-b")] {
        let marker = json!({"type": "dismiss", "customer_id": customer, "offer_id": other, "channel": "web", "event_id": id});
        post_events(r.public, json!([marker])).await;
    }
    // Both markers reached C: C has applied one remote dismiss of `other` and skipped the other.
    within("both replicas' events on C", || async {
        let ex = explain(c.public, &customer, "app", "app_home").await;
        verdict(&ex, &other).is_some_and(|v| v.contains("dismiss"))
    })
    .await;
    within("the markers applied", || async {
        let m = String::from_utf8(get(c.admin, "/metrics").await.body).unwrap();
        // C applied: the earlier dismiss and 2 impressions, the repeat once, both markers.
        metric(
            &m,
            "nextbest_replication_events_total{direction=\"applied\"}",
        ) >= 6
    })
    .await;
    let ex = explain(c.public, &customer, "app", "app_home").await;
    assert!(
        !verdict(&ex, &offer).is_some_and(|v| v.contains("impression")),
        "the repeated event id was counted twice: {ex}"
    );
}

/// Posts `n` dismisses, one per customer (`prefix` + i), to a replica, in batches of 20;
/// returns how many were acknowledged before the first failure.
async fn flood(addr: SocketAddr, prefix: &str, n: usize) -> usize {
    let mut acked = 0;
    for chunk in (0..n).collect::<Vec<_>>().chunks(20) {
        let events: Vec<Value> = chunk
            .iter()
            .map(|i| {
                json!({"type": "dismiss", "customer_id": format!("{prefix}{i:05}"),
                            "offer_id": "data_boost_10gb", "channel": "web",
                            "event_id": format!("{prefix}-{i}")})
            })
            .collect();
        let body = serde_json::to_vec(&json!({ "events": events })).unwrap();
        match try_post(addr, &body).await {
            Some((202, _)) => acked += chunk.len(),
            _ => break,
        }
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_flood_loses_nothing_acknowledged() {
    let mut redis = Redis::start();
    let port = redis.addr.port();
    let dir = TempDir::new("fleet-redis-kill");
    let a = replica(&dir.0.join("a"), &redis.url());
    let b = replica(&dir.0.join("b"), &redis.url());
    let first = flood(a.public, "R", 400).await;
    redis.kill();
    // Ingest goes on locally while Redis is gone.
    let second = flood(a.public, "S", 400).await;
    assert_eq!((first, second), (400, 400));
    assert_eq!(get(a.public, "/readyz").await.status, 200);
    let redis = Redis::on_port(port);
    within("every acknowledged event on B", || async {
        applied(b.admin).await >= 800
    })
    .await;
    // And once each, although A shipped its whole log again to the new Redis.
    assert_eq!(applied(b.admin).await, 800);
    drop(redis);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_flood_ships_its_backlog_after_restart() {
    let redis = Redis::start();
    let dir = TempDir::new("fleet-replica-kill");
    let b = replica(&dir.0.join("b"), &redis.url());
    let a = replica(&dir.0.join("a"), &redis.url());
    let flooding = tokio::spawn(flood(a.public, "K", 3_000));
    within("some events shipped", || async {
        applied(b.admin).await > 100
    })
    .await;
    a.kill9();
    let acked = flooding.await.unwrap();
    assert!(acked < 3_000, "the replica was never killed");
    let _a = replica(&dir.0.join("a"), &redis.url());
    within("the backlog on B", || async {
        applied(b.admin).await >= acked as u64
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_started_while_redis_is_down_serves_then_joins() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://127.0.0.1:{port}");
    let dir = TempDir::new("fleet-late");
    let a = Binary::demo(&dir.0.join("a"))
        .args(["--redis", &url, "--redis-catchup-ms", "300"])
        .spawn();
    within("ready without Redis", || async {
        get(a.public, "/readyz").await.status == 200
    })
    .await;
    let r = decide(
        a.public,
        json!({"customer_id": "C0000042", "channel": "web", "placement": "plans_page"}),
    )
    .await;
    assert!(r["fallback"].is_null(), "{r}");
    assert_eq!(flood(a.public, "L", 40).await, 40);
    let log = a.wait_stderr("redis unreachable");
    assert_eq!(
        log.matches("redis unreachable").count(),
        1,
        "one line per outage:\n{log}"
    );
    let redis = Redis::on_port(port);
    let b = replica(&dir.0.join("b"), &redis.url());
    within("A's events on B", || async { applied(b.admin).await >= 40 }).await;
}

/// The (customer, offer) rows of a campaign's target list.
#[cfg(feature = "offline")]
fn targets(out: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(out.join("targets.csv")).unwrap();
    text.lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].to_owned(), f[2].to_owned())
        })
        .collect()
}

#[cfg(feature = "offline")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_with_redis_respects_a_dismiss_another_replica_took() {
    use nextbest::campaign::{self, RunConfig};
    let redis = Redis::start();
    let dir = TempDir::new("fleet-campaign");
    let a = replica(&dir.0.join("a"), &redis.url());
    let cfg = |out: &str| RunConfig {
        campaign: demo_dir().join("campaigns/demo_sms.json"),
        out: dir.0.join(out),
        models: demo_dir(),
        features: demo_dir().join("features.csv"),
        // The campaign's own data folder knows nothing: what it learns comes from the fleet.
        data_dir: Some(dir.0.join("campaign-data")),
        fleet: Some(nextbest::fleet::FleetConfig {
            url: redis.url(),
            partitions: 8,
            catchup_wait: Duration::ZERO,
            prefix: "nextbest:events".into(),
        }),
        now_ms: None,
        contact_memory_bytes: 64 << 20,
        progress_bar: false,
    };
    let first = cfg("r0");
    tokio::task::spawn_blocking(move || campaign::run(&first).map(|_| ()))
        .await
        .unwrap()
        .unwrap();
    let (x, o) = targets(&dir.0.join("r0"))[0].clone();
    let dismiss = json!({"type": "dismiss", "customer_id": x, "offer_id": o, "channel": "web"});
    post_events(a.public, json!([dismiss])).await;
    within("the dismiss shipped", || async {
        let m = String::from_utf8(get(a.admin, "/metrics").await.body).unwrap();
        metric(
            &m,
            "nextbest_replication_events_total{direction=\"shipped\"}",
        ) >= 1
    })
    .await;
    let second = cfg("r1");
    tokio::task::spawn_blocking(move || campaign::run(&second).map(|_| ()))
        .await
        .unwrap()
        .unwrap();
    let rows = targets(&dir.0.join("r1"));
    assert!(!rows.is_empty());
    assert!(
        !rows.contains(&(x.clone(), o.clone())),
        "{x} dismissed {o} on the web, through another replica"
    );
}
