//! Several replicas, one Redis: contact policies hold across the fleet, each event id counts
//! once, and nothing acknowledged is lost when Redis or a replica dies. Real `redis-server` and
//! real `nextbest` processes on ephemeral loopback ports.

#[path = "support/contextual_sim.rs"]
mod contextual_sim;
#[path = "support/sim.rs"]
mod sim;
mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::binary::{Binary, Process};
use support::redis::{stream_entries, Redis};
use support::*;

fn replica(data: &Path, redis: &str) -> Process {
    Binary::demo(data).args(["--redis", redis]).spawn()
}

async fn explain(addr: SocketAddr, customer: &str, channel: &str, placement: &str) -> Value {
    decide(
        addr,
        json!({"customer_id": customer, "channel": channel, "placement": placement, "explain": true}),
    )
    .await
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
    within("A ready", || async {
        get(a.public, "/readyz").await.status == 200
    })
    .await;
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
    let a = replica(&dir.0.join("a"), &redis.url());
    within("the backlog on B", || async {
        applied(b.admin).await >= acked as u64
    })
    .await;
    // The saved position trails what was shipped (it is saved about once a second while
    // batches flow), so the restarted replica may ship part of its log again: B still applies
    // each event once. At most the batch in flight at the kill is logged without its 202.
    within("A shipped its whole log", || async {
        let m = String::from_utf8(get(a.admin, "/metrics").await.body).unwrap();
        // The gauge itself, at zero (not a metric missing from the page).
        m.lines()
            .any(|l| l.trim() == "nextbest_replication_backlog_bytes 0")
    })
    .await;
    let on_b = applied(b.admin).await;
    assert!(
        on_b <= acked as u64 + 20,
        "{on_b} applied on B for {acked} acknowledged: an event applied twice"
    );
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
        .args([
            "--redis",
            &url,
            "--redis-catchup-ms",
            "300",
            "--ready-when-behind",
        ])
        .spawn();
    within("ready without Redis", || async {
        get(a.public, "/readyz").await.status == 200
    })
    .await;
    assert!(
        a.wait_stderr("ready behind the fleet (--ready-when-behind)")
            .contains("ready behind the fleet (--ready-when-behind)"),
        "{}",
        a.stderr()
    );
    // Ready, with the reservation said in words, in the shape the contract documents.
    let ready: serde_json::Value =
        serde_json::from_slice(&get(a.public, "/readyz").await.body).expect("a JSON answer");
    assert_eq!(
        ready,
        json!({"status": "ready", "detail": "behind the fleet: still catching up on its events"})
    );
    let wrong = schema_violations(nextbest::server::openapi::Listener::Public, "Ready", &ready);
    assert!(wrong.is_empty(), "{ready}: {wrong:?}");
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
    // A replica's figures, `replication` included, in the shape the contract documents (the
    // OpenAPI test starts no fleet).
    let stats = get(b.admin, "/admin/stats").await.json();
    assert!(stats["replication"].is_object(), "{stats}");
    let wrong = schema_violations(nextbest::server::openapi::Listener::Admin, "Stats", &stats);
    assert!(wrong.is_empty(), "{wrong:#?}");
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
        null_words: Default::default(),
        // The campaign's own data folder knows nothing: what it learns comes from the fleet.
        data_dir: Some(dir.0.join("campaign-data")),
        fleet: Some(nextbest::fleet::FleetConfig::new(redis.url(), 8)),
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

    // Another partition count would read part of the fleet's streams, another database none:
    // both are refused, naming what to give.
    let mut part = cfg("r2");
    part.fleet = Some(nextbest::fleet::FleetConfig::new(redis.url(), 4));
    let mut db = cfg("r3");
    db.fleet = Some(nextbest::fleet::FleetConfig::new(
        format!("{}/3", redis.url()),
        8,
    ));
    let errors = tokio::task::spawn_blocking(move || {
        [part, db].map(|c| campaign::run(&c).map(|_| ()).unwrap_err().to_string())
    })
    .await
    .unwrap();
    assert!(
        errors[0].contains("--redis-partitions 4 but the fleet at")
            && errors[0].contains("uses 8: give --redis-partitions 8"),
        "{}",
        errors[0]
    );
    assert!(
        errors[1].contains("no nextbest fleet has joined this Redis and database"),
        "{}",
        errors[1]
    );
    assert!(!dir.0.join("r2").exists() && !dir.0.join("r3").exists());
}

/// One sample of a replica's `/metrics` (0 when absent).
async fn sample(addr: SocketAddr, line_prefix: &str) -> f64 {
    let m = String::from_utf8(get(addr, "/metrics").await.body).unwrap();
    m.lines()
        .find_map(|l| l.strip_prefix(line_prefix)?.trim().parse::<f64>().ok())
        .unwrap_or(0.0)
}

/// Bytes of the event log's segments in a data folder.
fn log_bytes(data: &Path) -> u64 {
    std::fs::read_dir(data)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("events-"))
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_replica_reships_to_a_redis_restarted_empty_within_10_s() {
    let mut redis = Redis::start();
    let (port, url) = (redis.addr.port(), redis.url());
    let dir = TempDir::new("fleet-idle-reship");
    let a = replica(&dir.0.join("a"), &url);
    assert_eq!(flood(a.public, "I", 30).await, 30);
    within("A's events in Redis", || async {
        stream_entries(&url) == 30
    })
    .await;
    redis.kill();
    let _redis = Redis::on_port(port);
    let back = Instant::now();
    assert_eq!(stream_entries(&url), 0, "the new Redis starts empty");
    // Nothing more is posted to A: it must notice the restart by itself.
    while stream_entries(&url) < 30 {
        assert!(
            back.elapsed() < Duration::from_secs(10),
            "A did not ship its log again within 10 s of Redis coming back empty; stderr:\n{}",
            a.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(stream_entries(&url), 30);
    assert!(a.stderr().contains("redis restarted (new run id)"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restarted_with_its_data_gets_no_event_twice() {
    let dir = TempDir::new("fleet-kept");
    let (port, store) = (Redis::free_port(), dir.0.join("redis"));
    let mut redis = Redis::persistent(port, &store);
    let url = redis.url();
    let data = dir.0.join("a");
    let a = replica(&data, &url);
    assert_eq!(flood(a.public, "K", 30).await, 30);
    within("A's events in Redis and its position saved", || async {
        stream_entries(&url) == 30 && cursor_at_end(&data)
    })
    .await;
    // Killed, and back with its append-only file: a new run id, the same streams.
    redis.kill();
    let mut redis = Redis::persistent(port, &store);
    assert_eq!(stream_entries(&url), 30, "the append-only file kept them");
    five_more_each_once(&a, &data, &url, "L", 35).await;
    // The same across a stop of A: it learns of the restart from what it saved.
    drop(a); // kill -9
    redis.kill();
    let _redis = Redis::persistent(port, &store);
    let a = replica(&data, &url);
    five_more_each_once(&a, &data, &url, "M", 40).await;
    assert!(a
        .stderr()
        .contains("and kept this replica's shipped events"));
}

/// Once A has noticed Redis's restart, five more events posted to it make `total` entries in
/// the streams: none shipped twice.
async fn five_more_each_once(a: &Process, data: &Path, url: &str, prefix: &str, total: u64) {
    within("A told of the restart", || async {
        a.stderr().contains("redis restarted (new run id)")
    })
    .await;
    assert_eq!(flood(a.public, prefix, 5).await, 5);
    within("A's new events shipped", || async {
        stream_entries(url) >= total && cursor_at_end(data)
    })
    .await;
    assert_eq!(stream_entries(url), total, "nothing shipped twice");
}

/// True once the shipper's saved position is the end of the log (all of it shipped and saved).
fn cursor_at_end(data: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(data.join("replication.cursor")) else {
        return false;
    };
    let Some((seq, offset)) = text.lines().next().and_then(|l| l.split_once(':')) else {
        return false;
    };
    let segment = data.join(format!("events-{:020}.log", seq.parse::<u64>().unwrap()));
    std::fs::metadata(segment).is_ok_and(|m| m.len().to_string() == offset)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_stopped_while_redis_lost_its_data_or_the_layout_changed_ships_its_whole_log() {
    let mut redis = Redis::start();
    let (port, url) = (redis.addr.port(), redis.url());
    let dir = TempDir::new("fleet-stopped-reship");
    let data = dir.0.join("a");
    let a = replica(&data, &url);
    assert_eq!(flood(a.public, "S", 30).await, 30);
    within("A's events in Redis and its position saved", || async {
        stream_entries(&url) == 30 && cursor_at_end(&data)
    })
    .await;
    drop(a); // kill -9
             // Redis comes back empty while A is down; A learns of it only from what it saved.
    redis.kill();
    let redis = Redis::on_port(port);
    assert_eq!(stream_entries(&url), 0, "the new Redis starts empty");
    let a = replica(&data, &url);
    within("A's whole log shipped to the new Redis", || async {
        stream_entries(&url) == 30
    })
    .await;
    assert!(
        a.stderr().contains("redis restarted (new run id)"),
        "{}",
        a.stderr()
    );
    within("A's position saved", || async { cursor_at_end(&data) }).await;
    drop(a);
    // The runbook's change of partition count: streams and key deleted, a new count.
    let mut con = ::redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let _: () = ::redis::cmd("FLUSHALL").query(&mut con).unwrap();
    let a = Binary::demo(&data)
        .args(["--redis", &url, "--redis-partitions", "4"])
        .spawn();
    within("A's whole log shipped over 4 partitions", || async {
        stream_entries(&url) == 30
    })
    .await;
    assert!(
        a.stderr().contains("partition count changed"),
        "{}",
        a.stderr()
    );
}

/// A Redis, one replica joined to it, and a connection to that Redis for the test's own
/// commands.
async fn one_replica(tag: &str) -> (Redis, TempDir, Process, ::redis::Connection) {
    let redis = Redis::start();
    let dir = TempDir::new(tag);
    let a = replica(&dir.0.join("a"), &redis.url());
    within("A joined", || async {
        get(a.public, "/readyz").await.status == 200
    })
    .await;
    let con = ::redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap();
    (redis, dir, a, con)
}

/// A replica restarted while Redis was down, Redis back empty: the replica finds the streams
/// empty at once, but does not say ready before the other replicas have had time to ship
/// their logs to the new Redis; when it does, it holds their events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_catching_up_from_a_redis_back_empty_waits_for_the_others_to_refill_it() {
    let mut redis = Redis::start();
    let (port, url) = (redis.addr.port(), redis.url());
    let dir = TempDir::new("fleet-refill");
    let a = replica(&dir.0.join("a"), &url);
    let b_data = dir.0.join("b");
    let b = replica(&b_data, &url);
    assert_eq!(flood(a.public, "R", 60).await, 60);
    within("B applied A's events, and its position saved", || async {
        applied(b.admin).await == 60 && cursor_at_end(&b_data)
    })
    .await;
    drop(b); // kill -9
    redis.kill();
    let _redis = Redis::on_port(port);
    let b = replica(&b_data, &url);
    let started = Instant::now();
    within("B saying it waits for the refill", || async {
        let r = get(b.public, "/readyz").await;
        assert_ne!(r.status, 200, "B ready without waiting");
        String::from_utf8_lossy(&r.body).contains(
            "waiting for the other replicas to ship their events again to a Redis that may have \
             restarted without them",
        )
    })
    .await;
    within("B ready", || async {
        get(b.public, "/readyz").await.status == 200
    })
    .await;
    assert_eq!(
        applied(b.admin).await,
        60,
        "ready only with A's events, {:?} after its start:\n{}",
        started.elapsed(),
        b.stderr()
    );
    assert!(
        b.stderr()
            .contains("waiting until it has been up 5 s, for every other replica"),
        "{}",
        b.stderr()
    );
    drop(a);
}

/// Redis's `uptime_in_seconds`.
fn redis_uptime_s(con: &mut ::redis::Connection) -> u64 {
    let info: String = ::redis::cmd("INFO").arg("server").query(con).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("uptime_in_seconds:"))
        .map_or(0, |s| s.trim().parse().unwrap())
}

/// Redis's clock (`TIME`), in Unix ms.
fn redis_time_ms(con: &mut ::redis::Connection) -> i64 {
    let (s, us): (i64, i64) = ::redis::cmd("TIME").query(con).unwrap();
    s * 1_000 + us / 1_000
}

/// A replica's report in `nextbest:serving` (see `fleet::reports`), once it has written one.
fn report_of(con: &mut ::redis::Connection, origin: &str) -> Option<Value> {
    let json: Option<String> = ::redis::cmd("HGET")
        .arg("nextbest:serving")
        .arg(origin)
        .query(con)
        .unwrap();
    json.map(|j| serde_json::from_str(&j).unwrap())
}

/// A replica A with `n` events shipped (its report saying so) to a Redis without persistence:
/// the Redis, A, A's id, and A's report as that Redis holds it.
async fn a_replica_shipped(
    dir: &TempDir,
    prefix: &str,
    n: usize,
) -> (Redis, Process, String, Value) {
    let redis = Redis::start();
    let url = redis.url();
    let a_data = dir.0.join("a");
    let a = replica(&a_data, &url);
    assert_eq!(flood(a.public, prefix, n).await, n);
    let a_id = std::fs::read_to_string(a_data.join("replica-id")).unwrap();
    let a_id = a_id.trim().to_owned();
    let mut con = ::redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    within("A's events shipped, and its report saying so", || {
        let report = report_of(&mut con, &a_id);
        let url = url.clone();
        async move {
            stream_entries(&url) == n as u64
                && report.is_some_and(|r| r["shipped_to"].as_str().is_some_and(|s| !s.is_empty()))
        }
    })
    .await;
    let report = report_of(&mut con, &a_id).unwrap();
    (redis, a, a_id, report)
}

/// Writes `report`, as saying its replica ships its log again, written `age_ms` ago, into the
/// Redis at `url` (what a replica writes on noticing a restart).
fn report_shipping_again(url: &str, origin: &str, mut report: Value, age_ms: i64) {
    let mut con = ::redis::Client::open(url)
        .unwrap()
        .get_connection()
        .unwrap();
    report["shipped_to"] = json!("");
    report["at_ms"] = json!(redis_time_ms(&mut con) - age_ms);
    let _: () = ::redis::cmd("HSET")
        .arg("nextbest:serving")
        .arg(origin)
        .arg(report.to_string())
        .query(&mut con)
        .unwrap();
}

/// However long another replica takes to ship its log again to a Redis back empty (here A
/// stalls, SIGSTOP, right after saying it ships again), a replica started beside it on a new
/// data folder says it is caught up only once that replica's whole log is in Redis: not after
/// Redis has been up 5 s, and naming the replica it waits for meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_replica_waits_until_every_other_has_refilled_a_redis_back_empty() {
    let dir = TempDir::new("fleet-refill-reports");
    let (mut redis, a, a_id, report) = a_replica_shipped(&dir, "W", 80).await;
    let (port, url) = (redis.addr.port(), redis.url());
    let a_id = a_id.as_str();
    a.signal("STOP");
    redis.kill();
    let _redis = Redis::on_port(port);
    // What A writes on noticing the restart, just before it stalls.
    report_shipping_again(&url, a_id, report, 0);
    let mut con = ::redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let b = replica(&dir.0.join("b"), &url);
    let b_public = b.public;
    let waits_for_a = "waiting for other replicas to ship their whole log to this Redis";
    // Past the 5 s a replica gives Redis to be noticed (its uptime counts whole seconds).
    within("B naming A, Redis up 7 s, B unready all along", || {
        let up = redis_uptime_s(&mut con);
        async move {
            let r = get(b_public, "/readyz").await;
            assert_ne!(r.status, 200, "B ready while A has not shipped again");
            let detail = String::from_utf8_lossy(&r.body).into_owned();
            up >= 7 && detail.contains(waits_for_a) && detail.contains(a_id)
        }
    })
    .await;
    a.signal("CONT");
    within("B ready", || async {
        get(b.public, "/readyz").await.status == 200
    })
    .await;
    assert_eq!(applied(b.admin).await, 80, "{}", b.stderr());
    assert!(
        b.stderr()
            .contains("waiting for 1 other replica(s) to ship their whole log"),
        "{}",
        b.stderr()
    );
    drop(a);
}

/// A replica frozen through a Redis restart (SIGSTOP: a stalled node) has not reported to the
/// Redis back empty, but the replicas that heard from it before say they expect it: a replica
/// started on a new data folder waits for it, naming it, and is ready with its events once it
/// goes on and ships them again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_frozen_through_a_redis_restart_is_waited_for() {
    let mut redis = Redis::start();
    let (port, url) = (redis.addr.port(), redis.url());
    let dir = TempDir::new("fleet-refill-frozen");
    let a = replica(&dir.0.join("a"), &url);
    let b_data = dir.0.join("b");
    let b = replica(&b_data, &url);
    assert_eq!(flood(b.public, "F", 40).await, 40);
    let b_id = std::fs::read_to_string(b_data.join("replica-id")).unwrap();
    let b_id = b_id.trim();
    within(
        "A applied B's events, and heard B say it shipped",
        || async {
            let stats: Value =
                serde_json::from_slice(&get(a.admin, "/admin/stats").await.body).unwrap();
            applied(a.admin).await == 40
                && stats["replication"]["fleet"]["replicas"]
                    .as_array()
                    .is_some_and(|r| {
                        r.iter()
                            .any(|r| r["origin"] == b_id && r["shipped_any"] == true)
                    })
        },
    )
    .await;
    b.signal("STOP");
    redis.kill();
    let _redis = Redis::on_port(port);
    let c = replica(&dir.0.join("c"), &url);
    let mut con = ::redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let c_public = c.public;
    within("C naming B, Redis up 7 s, C unready all along", || {
        let up = redis_uptime_s(&mut con);
        async move {
            let r = get(c_public, "/readyz").await;
            assert_ne!(r.status, 200, "C ready while B is frozen");
            let detail = String::from_utf8_lossy(&r.body).into_owned();
            up >= 7
                && detail.contains(&format!("{b_id} (host "))
                && detail.contains("not yet reporting to this Redis")
        }
    })
    .await;
    b.signal("CONT");
    within("C ready", || async {
        get(c.public, "/readyz").await.status == 200
    })
    .await;
    assert_eq!(applied(c.admin).await, 40, "{}", c.stderr());
    drop((a, b));
}

/// A replica that shipped no event of its own (one replaced on a new data folder before it took
/// any) has nothing to ship again to a Redis back empty: the replicas that heard from it do not
/// make a catching-up replica wait for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_shipped_nothing_is_not_expected_after_a_redis_restart() {
    let mut redis = Redis::start();
    let (port, url) = (redis.addr.port(), redis.url());
    let dir = TempDir::new("fleet-refill-no-events");
    let a = replica(&dir.0.join("a"), &url);
    let old = replica(&dir.0.join("old"), &url);
    within("A's view holds the other replica", || async {
        let stats: Value =
            serde_json::from_slice(&get(a.admin, "/admin/stats").await.body).unwrap();
        stats["replication"]["fleet"]["replicas"]
            .as_array()
            .is_some_and(|r| r.len() == 2)
    })
    .await;
    old.kill9();
    redis.kill();
    let _redis = Redis::on_port(port);
    let new = replica(&dir.0.join("new"), &url);
    let new_public = new.public;
    within("the replacement ready", || async move {
        let r = get(new_public, "/readyz").await;
        let detail = String::from_utf8_lossy(&r.body).into_owned();
        assert!(!detail.contains("not yet reporting"), "{detail}");
        r.status == 200
    })
    .await;
    assert!(
        !new.stderr().contains("stopped reporting"),
        "{}",
        new.stderr()
    );
    drop(a);
}

/// A replica waited for that stops reporting (killed while it shipped its log again) is given
/// up on once its report is stale, with a warning naming it: its events come when it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_gone_while_refilling_is_given_up_on_with_a_warning() {
    let dir = TempDir::new("fleet-refill-gone");
    let (mut redis, a, a_id, report) = a_replica_shipped(&dir, "G", 20).await;
    let (port, url) = (redis.addr.port(), redis.url());
    let a_id = a_id.as_str();
    a.kill9();
    redis.kill();
    let _redis = Redis::on_port(port);
    // A's last report before it died: shipping again, written 20 s before it goes stale.
    report_shipping_again(&url, a_id, report, 20_000);
    let b = replica(&dir.0.join("b"), &url);
    let said = b.wait_stderr("stopped reporting before its whole log was in this Redis");
    assert!(
        said.contains(&format!("replica {a_id} (host ")) && said.contains("waiting for 1 other"),
        "{said}"
    );
    within("B ready", || async {
        get(b.public, "/readyz").await.status == 200
    })
    .await;
}

/// A replica whose shipments Redis refuses (here its user lost `XADD`) says so in its report,
/// and a replica catching up from a Redis back empty does not wait for events that cannot
/// come: it says caught up, warning whose events it goes without, and gets them once Redis
/// takes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_redis_refuses_holds_no_catch_up_back() {
    let dir = TempDir::new("fleet-refill-refused");
    let acl = |name: &str, xadd: &str| {
        let path = dir.0.join(name);
        std::fs::write(
            &path,
            format!("user default on nopass ~* &* +@all\nuser a on >a-pw ~* &* +@all {xadd}\n"),
        )
        .unwrap();
        path.to_str().unwrap().to_owned()
    };
    let port = Redis::free_port();
    let mut redis = Redis::with_args(port, &["--aclfile", &acl("all.acl", "")]);
    let url = redis.url();
    let a_data = dir.0.join("a");
    let a = replica(&a_data, &format!("redis://a:a-pw@{}", redis.addr));
    assert_eq!(flood(a.public, "Z", 40).await, 40);
    within("A's events shipped", || async {
        stream_entries(&url) == 40 && cursor_at_end(&a_data)
    })
    .await;
    redis.kill();
    let _redis = Redis::with_args(port, &["--aclfile", &acl("no-xadd.acl", "-xadd")]);
    let b = replica(&dir.0.join("b"), &url);
    within("B ready", || async {
        get(b.public, "/readyz").await.status == 200
    })
    .await;
    let a_id = std::fs::read_to_string(a_data.join("replica-id")).unwrap();
    let said = b.wait_stderr("redis refuses the shipments of replica");
    assert!(said.contains(a_id.trim()), "{said}");
    assert_eq!(applied(b.admin).await, 0, "A's events cannot have come");
    let mut con = ::redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let report = report_of(&mut con, a_id.trim()).unwrap();
    assert_eq!(
        (&report["shipping_refused"], &report["shipped_to"]),
        (&json!(true), &json!("")),
        "{report}"
    );
    let _: () = ::redis::cmd("ACL")
        .arg("SETUSER")
        .arg("a")
        .arg("+xadd")
        .query(&mut con)
        .unwrap();
    within("A's events on B once Redis takes them", || async {
        applied(b.admin).await == 40
    })
    .await;
    drop(a);
}

/// The README's ACL is all a fleet needs: replicas whose Redis user may run only the commands
/// it lists join, ship, apply, report and leave, and Redis refuses them nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readmes_acl_is_all_a_replica_needs() {
    let readme = include_str!("../README.md");
    let from = readme
        .find("`ACL SETUSER ")
        .expect("the README gives the ACL")
        + 1;
    let to = from + readme[from..].find('`').unwrap();
    let acl: Vec<&str> = readme[from..to].split_whitespace().collect();
    assert_eq!(&acl[..3], ["ACL", "SETUSER", "nextbest"]);
    let (redis, dir) = (Redis::start(), TempDir::new("fleet-acl"));
    let mut con = ::redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let mut setuser = ::redis::cmd("ACL");
    for arg in &acl[1..] {
        setuser.arg(if *arg == ">PASSWORD" { ">acl-pw" } else { arg });
    }
    let _: () = setuser.query(&mut con).unwrap();
    let _: () = ::redis::cmd("ACL")
        .arg("SETUSER")
        .arg("default")
        .arg("off")
        .query(&mut con)
        .unwrap();
    let url = format!("redis://nextbest:acl-pw@{}", redis.addr);
    let a = replica(&dir.0.join("a"), &url);
    let b = replica(&dir.0.join("b"), &url);
    for r in [&a, &b] {
        within("ready", || async {
            get(r.public, "/readyz").await.status == 200
        })
        .await;
    }
    assert_eq!(flood(a.public, "L", 40).await, 40);
    within("B applied A's events", || async {
        applied(b.admin).await == 40
    })
    .await;
    within("both in the fleet's view", || async {
        let stats: Value =
            serde_json::from_slice(&get(b.admin, "/admin/stats").await.body).unwrap();
        stats["replication"]["fleet"]["replicas"]
            .as_array()
            .is_some_and(|r| r.len() == 2)
    })
    .await;
    let logs = [a.stderr(), b.stderr()];
    a.stop();
    for log in logs {
        assert!(
            !log.contains("refused") && !log.contains("NOPERM") && !log.contains("NoPerm"),
            "{log}"
        );
    }
}

/// `rediss://` pointed at a port without TLS: Redis answers nothing to the handshake, and the
/// replica says it may be that, not only that Redis is unreachable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_to_a_port_without_tls_says_it_may_not_speak_tls() {
    let redis = Redis::start();
    let dir = TempDir::new("fleet-tls-plain");
    let a = replica(&dir.0.join("a"), &format!("rediss://{}", redis.addr));
    within("the TLS hint on /readyz", || async {
        let r = get(a.public, "/readyz").await;
        assert_ne!(r.status, 200);
        String::from_utf8_lossy(&r.body).contains("is it a TLS port?")
    })
    .await;
    assert!(
        a.wait_stderr("is it a TLS port?")
            .contains("redis unreachable (with rediss://, a port that does not speak TLS"),
        "{}",
        a.stderr()
    );
}

/// `CONFIG SET key value` on a test's own Redis.
fn config_set(con: &mut ::redis::Connection, key: &str, value: &str) {
    let _: () = ::redis::cmd("CONFIG")
        .arg("SET")
        .arg(key)
        .arg(value)
        .query(con)
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_out_of_memory_is_a_refusal_said_once_not_an_outage() {
    let (redis, _dir, a, mut con) = one_replica("fleet-oom").await;
    let url = redis.url();
    config_set(&mut con, "maxmemory-policy", "noeviction");
    config_set(&mut con, "maxmemory", "1");
    assert_eq!(flood(a.public, "M", 40).await, 40, "ingest goes on locally");
    let log = a.wait_stderr("redis refused a command");
    assert!(log.contains("redis refused a command"), "{log}");
    assert!(log.contains("OOM"), "{log}");
    assert!(!log.contains("redis unreachable"), "{log}");
    assert_eq!(
        sample(a.admin, "nextbest_replication_connected ").await,
        1.0,
        "Redis answers: the link is up"
    );
    // Reads go on while writes are refused: a read is no end of the refusal.
    const EXCHANGE: &str = "nextbest_replication_last_exchange_timestamp_seconds ";
    let seen = sample(a.admin, EXCHANGE).await;
    within("a read answered after the refusal", || async {
        sample(a.admin, EXCHANGE).await > seen
    })
    .await;
    let log = a.stderr();
    assert!(!log.contains("redis takes commands again"), "{log}");
    // Memory back: the backlog ships, and the log says replication resumed.
    config_set(&mut con, "maxmemory", "0");
    within("the backlog shipped", || async {
        stream_entries(&url) == 40
    })
    .await;
    let log = a.wait_stderr("redis takes commands again");
    assert!(
        log.find("redis refused a command") < log.find("redis takes commands again"),
        "{log}"
    );
}

/// Every event id in the fleet's streams, once per entry.
fn ids_in_streams(con: &mut ::redis::Connection) -> Vec<String> {
    let mut ids = Vec::new();
    for p in 0..8u16 {
        let key = format!("nextbest:events:{{p{p:03}}}");
        let Ok(reply) = ::redis::cmd("XRANGE")
            .arg(&key)
            .arg("-")
            .arg("+")
            .query::<::redis::streams::StreamRangeReply>(con)
        else {
            continue;
        };
        ids.extend(reply.ids.iter().filter_map(|e| e.get::<String>("i")));
    }
    ids
}

/// Redis's count of `XADD`s it refused while running them (`WRONGTYPE`).
fn failed_xadds(con: &mut ::redis::Connection) -> u64 {
    let info: String = ::redis::cmd("INFO").arg("commandstats").query(con).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_xadd:"))
        .and_then(|l| l.split(',').find_map(|kv| kv.strip_prefix("failed_calls=")))
        .map_or(0, |n| n.trim().parse().unwrap())
}

/// Redis refuses part of a batch (here one partition's key holds another type; at
/// `maxmemory` it is the commands after the limit): what it took goes in once, not again with
/// every retry, the refused records go again until taken, and the log says "takes commands
/// again" only once they have gone, not while the rest of each batch goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_refused_part_way_ships_only_the_refused_part_again() {
    let (redis, _dir, a, mut con) = one_replica("fleet-part-refused").await;
    let url = redis.url();
    let blocked = "nextbest:events:{p003}";
    let _: () = ::redis::cmd("SET")
        .arg(blocked)
        .arg("not a stream")
        .query(&mut con)
        .unwrap();
    assert_eq!(flood(a.public, "P", 200).await, 200);
    let log = a.wait_stderr("redis refused a command");
    assert!(log.contains("WRONGTYPE"), "{log}");
    // At least three shipments refused (the log's first refusal may be a read's): a retry of
    // the whole batch would have put the other partitions' events in again by now.
    within("a refused shipment", || {
        let refused = failed_xadds(&mut con);
        async move { refused > 0 }
    })
    .await;
    let first = failed_xadds(&mut con);
    within("three refused shipments", || {
        let refused = failed_xadds(&mut con);
        async move { refused >= 3 * first }
    })
    .await;
    let ids = ids_in_streams(&mut con);
    let distinct: std::collections::HashSet<&String> = ids.iter().collect();
    assert!(!ids.is_empty(), "the other partitions' events went in");
    assert_eq!(ids.len(), distinct.len(), "none of them twice");
    assert!(
        !a.stderr().contains("redis takes commands again"),
        "{}",
        a.stderr()
    );
    let _: () = ::redis::cmd("DEL").arg(blocked).query(&mut con).unwrap();
    within("every event in Redis", || async {
        stream_entries(&url) >= 200
    })
    .await;
    let log = a.wait_stderr("redis takes commands again");
    assert!(
        log.find("redis refused a command") < log.find("redis takes commands again"),
        "{log}"
    );
    let ids = ids_in_streams(&mut con);
    let distinct: std::collections::HashSet<&String> = ids.iter().collect();
    assert_eq!((ids.len(), distinct.len()), (200, 200));
}

/// A data folder copied from a running replica (a cloned volume) carries its `replica-id`:
/// each of the two would skip the other's events as its own. The copy refuses to join,
/// saying why on `/readyz`, and takes no event, neither before it knows nor after (a 202 would
/// promise the fleet knows it); the original keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copied_data_folder_refuses_to_join_under_its_twins_id() {
    let redis = Redis::start();
    let url = redis.url();
    let dir = TempDir::new("fleet-twin");
    let a_dir = dir.0.join("a");
    let a = replica(&a_dir, &url);
    within("A joined", || async {
        get(a.public, "/readyz").await.status == 200
    })
    .await;
    let b_dir = dir.0.join("b");
    let copied = std::process::Command::new("cp")
        .arg("-r")
        .arg(&a_dir)
        .arg(&b_dir)
        .status()
        .unwrap();
    assert!(copied.success());
    let b = replica(&b_dir, &url);
    // From its first moment the copy takes no event: A would skip it as its own. It waits
    // for the second round of reports, which tells whether A's is a live process's.
    let events = json!({"events": [{"type": "impression", "customer_id": "C0000001",
        "offer_id": "data_boost_10gb", "channel": "web"}]});
    let d = post_json(b.public, "/v1/events", &events)
        .await
        .assert_error(503, "unavailable");
    assert!(
        d.contains("making sure no running replica has its id")
            || d.contains("refused to join the fleet"),
        "{d}"
    );
    within("B refuses under A's id", || async {
        let r = get(b.public, "/readyz").await;
        assert_ne!(r.status, 200, "B said ready under A's id");
        r.status == 503
            && String::from_utf8_lossy(&r.body)
                .contains("another running replica has this replica's id")
            && String::from_utf8_lossy(&r.body).contains(", on host ")
    })
    .await;
    assert_eq!(get(a.public, "/readyz").await.status, 200);
    // Events sent to the copy would reach no other replica: refused, not acknowledged.
    let d = post_json(b.public, "/v1/events", &events)
        .await
        .assert_error(503, "unavailable");
    assert!(d.contains("refused to join the fleet"), "{d}");
    assert_eq!(post_json(a.public, "/v1/events", &events).await.status, 202);
    // Nor does the copy count as caught up on a dashboard.
    assert_eq!(sample(b.admin, "nextbest_replication_refused ").await, 1.0);
    assert_eq!(
        sample(b.admin, "nextbest_replication_caught_up ").await,
        0.0
    );
}

/// A wrong password is said as what it is, a setting to fix, not as Redis unreachable; once
/// Redis takes it, the replica joins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_redis_password_is_said_as_a_refusal_of_the_credentials() {
    let redis = Redis::start();
    let mut con = ::redis::Client::open(redis.url().as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    config_set(&mut con, "requirepass", "right");
    let wrong = redis.url().replacen("redis://", "redis://:wrong@", 1);
    let dir = TempDir::new("fleet-auth");
    let a = replica(&dir.0.join("a"), &wrong);
    let log = a.wait_stderr("redis refused the credentials");
    assert!(log.contains("--redis (user or password"), "{log}");
    assert!(!log.contains("redis unreachable"), "{log}");
    assert!(
        !log.contains(":wrong@"),
        "the password stays out of the log: {log}"
    );
    // `/readyz` says what it waits for, naming the Redis (its password hidden).
    let r = get(a.public, "/readyz").await;
    assert_eq!(r.status, 503);
    let detail: Value = serde_json::from_slice(&r.body).unwrap();
    let detail = detail["detail"].as_str().unwrap();
    let host = redis.addr.to_string();
    assert!(
        detail.starts_with("waiting for the fleet's Redis: redis://")
            && detail.contains(&format!("@{host} refused the credentials"))
            && !detail.contains("wrong"),
        "{detail}"
    );
    // The password the replica has becomes the right one: it joins.
    config_set(&mut con, "requirepass", "wrong");
    within("A joined", || async {
        get(a.public, "/readyz").await.status == 200
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_and_backlog_during_a_20_s_outage_match_the_log() {
    const BACKLOG: &str = "nextbest_replication_backlog_bytes ";
    const LAG: &str = "nextbest_replication_apply_lag_seconds";
    let mut redis = Redis::start();
    let port = redis.addr.port();
    let dir = TempDir::new("fleet-outage");
    let (a_dir, b_dir) = (dir.0.join("a"), dir.0.join("b"));
    let a = replica(&a_dir, &redis.url());
    let b = replica(&b_dir, &redis.url());
    assert_eq!(flood(a.public, "W", 5).await, 5);
    within("the warm-up on B", || async { applied(b.admin).await == 5 }).await;
    within("B caught up", || async {
        get(b.public, "/readyz").await.status == 200
    })
    .await;
    within("A's backlog empty", || async {
        sample(a.admin, BACKLOG).await == 0.0
    })
    .await;
    let quick_lag = format!("{LAG}_bucket{{le=\"10\"}}");
    let (quick_before, count_before) = (
        sample(b.admin, &quick_lag).await,
        sample(b.admin, &format!("{LAG}_count")).await,
    );

    let before = log_bytes(&a_dir);
    redis.kill();
    let down = Instant::now();
    assert_eq!(flood(a.public, "O", 60).await, 60);
    let grown = log_bytes(&a_dir) - before;
    assert!(grown > 60 * 40, "the log grew by {grown} bytes");
    // Measured from the log while Redis is away: every byte written since, no more.
    within("the backlog to match the log", || async {
        sample(a.admin, BACKLOG).await == grown as f64
    })
    .await;
    tokio::time::sleep(Duration::from_secs(20).saturating_sub(down.elapsed())).await;
    let age = sample(a.admin, "nextbest_replication_backlog_age_seconds ").await;
    assert!(age >= 18.0, "the oldest unshipped event is {age} s old");
    assert_eq!(
        sample(a.admin, "nextbest_replication_connected ").await,
        0.0
    );

    let _redis = Redis::on_port(port);
    within("the outage's events on B", || async {
        applied(b.admin).await == 65
    })
    .await;
    within("A's backlog shipped", || async {
        sample(a.admin, BACKLOG).await == 0.0
    })
    .await;
    // Every event of the outage was applied 20 s or more after A accepted it: none in the
    // buckets up to 10 s, all within 2 minutes.
    assert_eq!(sample(b.admin, &quick_lag).await, quick_before);
    assert_eq!(
        sample(b.admin, &format!("{LAG}_count")).await,
        count_before + 60.0
    );
    assert_eq!(
        sample(b.admin, &format!("{LAG}_bucket{{le=\"120\"}}")).await,
        count_before + 60.0
    );
    let last = sample(b.admin, "nextbest_replication_lag_seconds ").await;
    assert!(last >= 18.0, "the last event's lag reads {last} s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_with_another_partition_count_refuses_to_join() {
    let redis = Redis::start();
    let dir = TempDir::new("fleet-partitions");
    let a = replica(&dir.0.join("a"), &redis.url());
    within("A joined", || async {
        get(a.public, "/readyz").await.status == 200
    })
    .await;
    let b = Binary::demo(&dir.0.join("b"))
        .args(["--redis", &redis.url(), "--redis-partitions", "4"])
        .spawn();
    let log = b.wait_stderr("refusing to join the fleet");
    assert!(
        log.contains("--redis-partitions 4 but the fleet at") && log.contains("uses 8"),
        "{log}"
    );
    let r = get(b.public, "/readyz").await;
    assert_eq!(r.status, 503);
    let body = String::from_utf8(r.body).unwrap();
    assert!(
        body.contains("refused to join the fleet") && body.contains("uses 8"),
        "{body}"
    );
    assert_eq!(sample(b.admin, "nextbest_replication_refused ").await, 1.0);
    // B takes no event (it would reach no other replica); A's reach the fleet's streams.
    assert_eq!(flood(b.public, "P", 10).await, 0);
    assert_eq!(flood(a.public, "Q", 3).await, 3);
    within("A's events in Redis", || async {
        stream_entries(&redis.url()) == 3
    })
    .await;
    let mut con = ::redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let recorded: String = ::redis::cmd("GET")
        .arg("nextbest:events:partitions")
        .query(&mut con)
        .unwrap();
    assert_eq!(recorded, "8");
}

/// A models folder whose `model.json` was written an hour ago: a replica that was down while
/// the fleet changed its model since.
fn models_an_hour_old(tag: &str) -> TempModels {
    let folder = TempModels::new(tag);
    std::fs::File::options()
        .write(true)
        .open(folder.dir.join("model.json"))
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    folder
}

/// The model version a replica's decisions name.
async fn serving_version(addr: SocketAddr) -> String {
    let a = decide(
        addr,
        json!({"customer_id": "C0000042", "channel": "web", "placement": "plans_page"}),
    )
    .await;
    a["model"]["version"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Who made each change in a replica's model history, newest first, as `version source`.
async fn history(admin: SocketAddr) -> Vec<String> {
    get(admin, "/admin/models").await.json()["history"]
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
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_change_on_one_replica_serves_on_every_replica() {
    let redis = Redis::start();
    let dir = TempDir::new("fleet-models");
    let folders: Vec<TempModels> = (0..3).map(|_| TempModels::new("fleet-models")).collect();
    let [a, b, c] = [0, 1, 2].map(|i| {
        Binary::with_models(&folders[i].dir, &dir.0.join(i.to_string()))
            .args(["--redis", &redis.url()])
            .spawn()
    });
    let first = serving_version(a.public).await;
    let origin_of = |i: usize| nextbest::fleet::origin_of(&dir.0.join(i.to_string())).unwrap();
    within("every replica ready", || async {
        for r in [&a, &b, &c] {
            if get(r.public, "/readyz").await.status != 200 {
                return false;
            }
        }
        true
    })
    .await;

    // A PUT on A serves on B and C, and lands in their folders (a restart keeps it).
    let r = put_model(a.admin, &TempModels::demo_doc("fleet-7")).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    for (name, r) in [("B", &b), ("C", &c)] {
        within(&format!("version fleet-7 on {name}"), || async {
            serving_version(r.public).await == "fleet-7"
        })
        .await;
    }
    for f in &folders[1..] {
        let on_disk = std::fs::read_to_string(f.dir.join("model.json")).unwrap();
        assert!(on_disk.contains("fleet-7"));
    }
    let disk = |i: usize| {
        format!(
            "{first} disk {}",
            folders[i].dir.join("model.json").display()
        )
    };
    // A change from the fleet names the replica that made it, and its host.
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let hostname = hostname.trim();
    assert_eq!(
        history(b.admin).await[..2],
        [
            format!("fleet-7 fleet: admin on {} ({hostname})", origin_of(0)),
            disk(1)
        ]
    );
    let agreeing = |admin, replicas| async move {
        let s = get(admin, "/admin/status.json").await.json();
        let f = &s["replication"]["fleet"];
        f["agree"] == true && f["replicas"].as_array().map_or(0, Vec::len) == replicas
    };
    within("the fleet agreeing", || agreeing(a.admin, 3)).await;
    // Each replica is named by its host (in Kubernetes, its pod) as well as its id.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let s = get(a.admin, "/admin/status.json").await.json();
    for r in s["replication"]["fleet"]["replicas"].as_array().unwrap() {
        assert_eq!(r["host"], host.trim(), "{r}");
    }

    // A replica that was down when the change was made (its model.json older than the change)
    // takes it when it starts, before it says ready: its first ready answer serves the change.
    let d_folder = models_an_hour_old("fleet-models");
    let d = Binary::with_models(&d_folder.dir, &dir.0.join("d"))
        .args(["--redis", &redis.url()])
        .spawn();
    within("D ready", || async {
        get(d.public, "/readyz").await.status == 200
    })
    .await;
    assert_eq!(serving_version(d.public).await, "fleet-7");

    // C changed by hand (its folder, SIGHUP): the fleet disagrees, and every replica says so.
    folders[2].publish(
        "model.json",
        &serde_json::to_vec(&TempModels::demo_doc("local-9")).unwrap(),
    );
    c.signal("HUP");
    within("C on its own version", || async {
        serving_version(c.public).await == "local-9"
    })
    .await;
    within("A seeing two versions", || async {
        sample(a.admin, "nextbest_fleet_model_versions ").await == 2.0
    })
    .await;
    within("B's status page saying the fleet disagrees", || async {
        let s = get(b.admin, "/admin/status.json").await.json();
        s["replication"]["fleet"]["agree"] == false
    })
    .await;

    // A rollback on B goes back on every replica, C included; the history keeps all of it.
    let r = post_json(b.admin, "/admin/models/rollback", &json!({})).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    for (name, r) in [("A", &a), ("B", &b), ("C", &c), ("D", &d)] {
        within(&format!("the rollback on {name}"), || async {
            serving_version(r.public).await == first
        })
        .await;
    }
    assert_eq!(
        history(a.admin).await[..3],
        [
            format!("{first} fleet: rollback on {} ({hostname})", origin_of(1)),
            "fleet-7 admin".to_owned(),
            disk(0),
        ]
    );
    within("the fleet agreeing again", || agreeing(c.admin, 4)).await;
    assert_eq!(
        sample(c.admin, "nextbest_fleet_changes_applied_total ").await,
        2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contextual_offer_learns_one_model_from_the_whole_fleet() {
    use contextual_sim::{three, write_models, Truth, World};
    let redis = Redis::start();
    let dir = TempDir::new("fleet-contextual");
    let world = World::new(7, Truth::Prepaid);
    write_models(&dir.0.join("models"), &world, &three(), true);
    let [a, b] = ["a", "b"].map(|n| {
        Binary::with_models(&dir.0.join("models"), &dir.0.join(n))
            .args(["--redis", &redis.url()])
            .spawn()
    });
    // 400 impressions of o1, every third prepaid customer converting: half posted to each
    // replica, so each learns half of it from the other.
    let mut events = Vec::new();
    for (i, c) in world.customers.iter().take(400).enumerate() {
        let customer = format!("C{i}");
        events.push(
            json!({"type": "impression", "customer_id": customer, "offer_id": "o1",
            "channel": "web", "placement": "home"}),
        );
        if c.is_prepaid && i % 3 == 0 {
            events.push(json!({"type": "conversion", "customer_id": customer,
                "offer_id": "o1", "channel": "web"}));
        }
    }
    let half = events.len() / 2;
    post_events(a.public, json!(events[..half])).await;
    post_events(b.public, json!(events[half..])).await;
    let prepaid = world.customers.iter().position(|c| c.is_prepaid).unwrap();
    let postpaid = world.customers.iter().position(|c| !c.is_prepaid).unwrap();
    let conversions = events.len() - 400;
    for (name, r) in [("A", &a), ("B", &b)] {
        within(&format!("every event learnt on {name}"), || async {
            let l = support::adaptive_explain(r.public, prepaid, "o1").await;
            l["trials"] == 400 && l["successes"] == conversions
        })
        .await;
    }
    // The same counts give the same model on both: the same posterior for each customer, and
    // a higher one for the prepaid customer.
    for customer in [prepaid, postpaid] {
        let (on_a, on_b) = (
            support::adaptive_explain(a.public, customer, "o1").await,
            support::adaptive_explain(b.public, customer, "o1").await,
        );
        assert_eq!(
            on_a["posterior_mean"], on_b["posterior_mean"],
            "C{customer}: {on_a} {on_b}"
        );
        assert_eq!(on_a["successes"], on_b["successes"]);
    }
    let mean = |v: Value| v["posterior_mean"].as_f64().unwrap();
    let (p, q) = (
        mean(support::adaptive_explain(a.public, prepaid, "o1").await),
        mean(support::adaptive_explain(a.public, postpaid, "o1").await),
    );
    assert!(p > 2.0 * q, "prepaid {p}, postpaid {q}");
}

/// An anonymous visitor's explain on the web home banner, from a search campaign.
async fn visitor_explain(addr: SocketAddr, visitor: &str) -> Value {
    decide(
        addr,
        json!({"visitor_id": visitor, "channel": "web", "placement": "home_hero", "explain": true,
               "context": {"page": "deals", "utm_campaign": "spring_switch"}}),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dismiss_posted_under_a_visitor_id_holds_the_offer_back_on_another_replica() {
    let redis = Redis::start();
    let dir = TempDir::new("fleet-visitor");
    let [a, b] = ["a", "b"].map(|n| replica(&dir.0.join(n), &redis.url()));
    for r in [&a, &b] {
        within("the model loaded", || async {
            visitor_explain(r.public, "web-7f3a").await["model"].is_object()
        })
        .await;
    }
    let a_says = visitor_explain(b.public, "web-7f3a").await;
    assert_eq!(a_says["anonymous"], true, "{a_says}");
    assert_eq!(
        a_says["offers"][0]["offer_id"], "switch_welcome",
        "{a_says}"
    );

    let dismiss = json!({"type": "dismiss", "visitor_id": "web-7f3a", "offer_id": "switch_welcome",
                         "decision_id": a_says["decision_id"]});
    let r = post_events(a.public, json!([dismiss])).await;
    assert_eq!(r["accepted"], 1, "{r}");
    within("the visitor's dismiss on B", || async {
        let ex = visitor_explain(b.public, "web-7f3a").await;
        verdict(&ex, "switch_welcome").is_some_and(|v| v.contains("dismiss"))
    })
    .await;
    let held = visitor_explain(b.public, "web-7f3a").await;
    assert_ne!(held["offers"][0]["offer_id"], "switch_welcome", "{held}");
    // Another visitor, and a customer who shares the visitor's id, still get it.
    let other = visitor_explain(b.public, "web-0000").await;
    assert_eq!(verdict(&other, "switch_welcome"), None, "{other}");
    let same_id = decide(
        b.public,
        json!({"customer_id": "web-7f3a", "channel": "web", "placement": "home_hero", "explain": true,
               "context": {"page": "deals", "utm_campaign": "spring_switch"}}),
    )
    .await;
    assert_eq!(verdict(&same_id, "switch_welcome"), None, "{same_id}");
}

/// With an admin token the fleet's admin changes are signed with it: a replica makes a change
/// another replica with the same token made, and refuses one written into Redis by anyone
/// else (no signature, or another token's), counting it; the model it serves stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_changes_from_the_fleet_are_made_only_when_signed_with_the_token() {
    let redis = Redis::start();
    let dir = TempDir::new("fleet-signed");
    let folders: Vec<TempModels> = (0..3).map(|_| TempModels::new("fleet-signed")).collect();
    let tokens = ["t0ken-of-the-fleet", "t0ken-of-the-fleet", "another-t0ken"];
    let replicas: Vec<Process> = (0..3)
        .map(|i| {
            Binary::with_models(&folders[i].dir, &dir.0.join(format!("r{i}")))
                .args(["--redis", &redis.url()])
                .env("NEXTBEST_ADMIN_TOKEN", tokens[i])
                .spawn()
        })
        .collect();
    let (a, b, c) = (&replicas[0], &replicas[1], &replicas[2]);
    let first = serving_version(b.public).await;
    let admin = |addr: SocketAddr, token: &'static str, path: &'static str| async move {
        let auth = format!("Bearer {token}");
        request(addr, "GET", path, &[("authorization", &auth)], b"").await
    };
    let unsigned = |addr, token| async move {
        let m = String::from_utf8(admin(addr, token, "/metrics").await.body).unwrap();
        m.lines()
            .find_map(|l| {
                l.strip_prefix("nextbest_fleet_changes_unsigned_total ")?
                    .parse::<f64>()
                    .ok()
            })
            .unwrap_or(-1.0)
    };
    // Written into the stream by someone with Redis access and no token.
    let doc = serde_json::to_vec(&TempModels::demo_doc("injected-1")).unwrap();
    let mut con = ::redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let _: String = ::redis::cmd("XADD")
        .arg("nextbest:models")
        .arg("*")
        .arg("o")
        .arg("intruder")
        .arg("a")
        .arg(1)
        .arg("k")
        .arg("admin")
        .arg("c")
        .arg("x")
        .arg("v")
        .arg("injected-1")
        .arg("d")
        .arg(&doc[..])
        .query(&mut con)
        .unwrap();
    within("the injected change refused on B", || async {
        unsigned(b.admin, tokens[1]).await == 1.0
    })
    .await;
    assert_eq!(serving_version(b.public).await, first);
    // An upload on A, signed with the fleet's token: B makes it; C (another token) refuses it.
    let upload_on_a = |version: &'static str| async move {
        let auth = format!("Bearer {}", tokens[0]);
        let headers = [
            ("authorization", auth.as_str()),
            ("content-type", "application/json"),
        ];
        let doc = serde_json::to_vec(&TempModels::demo_doc(version)).unwrap();
        let r = request(a.admin, "PUT", "/admin/models", &headers, &doc).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    };
    upload_on_a("signed-2").await;
    within("the signed change on B", || async {
        serving_version(b.public).await == "signed-2"
    })
    .await;
    within("the change C cannot check refused there", || async {
        unsigned(c.admin, tokens[2]).await == 2.0
    })
    .await;
    assert_eq!(serving_version(c.public).await, first);
    assert_eq!(unsigned(b.admin, tokens[1]).await, 1.0);

    // A later upload, then A's signed entry of `signed-2` appended again as it was: a copy, not
    // a change, so B stays on `signed-3`.
    upload_on_a("signed-3").await;
    within("signed-3 on B", || async {
        serving_version(b.public).await == "signed-3"
    })
    .await;
    type Fields = Vec<(String, Vec<u8>)>;
    let all: Vec<(String, Fields)> = ::redis::cmd("XRANGE")
        .arg("nextbest:models")
        .arg("-")
        .arg("+")
        .query(&mut con)
        .unwrap();
    let (_, fields) = all
        .iter()
        .find(|(_, f)| f.iter().any(|(k, v)| k == "v" && v == b"signed-2"))
        .expect("A's entry of signed-2");
    let mut replay = ::redis::cmd("XADD");
    replay.arg("nextbest:models").arg("*");
    for (k, v) in fields {
        replay.arg(k).arg(&v[..]);
    }
    let _: String = replay.query(&mut con).unwrap();
    within("the copy refused on B", || async {
        unsigned(b.admin, tokens[1]).await == 2.0
    })
    .await;
    // Signed with the token, but long before Redis took it: refused too.
    let signer = nextbest::fleet::signing::Signer::new(
        &nextbest::secrets::AdminToken::new(tokens[0].into()).unwrap(),
    );
    let stale_at = (std::time::SystemTime::now() - Duration::from_secs(3600))
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        .to_string();
    let stale_doc = serde_json::to_vec(&TempModels::demo_doc("stale-4")).unwrap();
    let stale: Vec<(&str, &[u8])> = vec![
        ("o", b"r-old"),
        ("a", stale_at.as_bytes()),
        ("k", b"admin"),
        ("c", b"x"),
        ("v", b"stale-4"),
        ("d", &stale_doc),
    ];
    let signature = signer.sign(|n| stale.iter().find(|f| f.0 == n).map(|f| f.1));
    let mut add = ::redis::cmd("XADD");
    add.arg("nextbest:models").arg("*");
    for (k, v) in &stale {
        add.arg(*k).arg(*v);
    }
    let _: String = add.arg("s").arg(signature).query(&mut con).unwrap();
    within("the stale change refused on B", || async {
        unsigned(b.admin, tokens[1]).await == 3.0
    })
    .await;
    assert_eq!(serving_version(b.public).await, "signed-3");

    // A replica that was down meanwhile takes the newest change a holder of the token made,
    // past the stale one, the copy and the injected one on top of the stream.
    let d_folder = models_an_hour_old("fleet-signed");
    let d = Binary::with_models(&d_folder.dir, &dir.0.join("d"))
        .args(["--redis", &redis.url()])
        .env("NEXTBEST_ADMIN_TOKEN", tokens[0])
        .spawn();
    within("signed-3 on D at its start", || async {
        serving_version(d.public).await == "signed-3"
    })
    .await;
    assert_eq!(
        unsigned(d.admin, tokens[0]).await,
        2.0,
        "the stale change and the copy"
    );
}

/// A replica stopped while Redis is away keeps what it did not ship in its log, and its last
/// words say so: a scale-down that keeps the volume must know to start it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_stopped_with_events_unshipped_says_so() {
    let mut redis = Redis::start();
    let dir = TempDir::new("fleet-unshipped");
    let a = replica(&dir.0.join("a"), &redis.url());
    assert_eq!(flood(a.public, "V", 5).await, 5);
    within("A's first events shipped", || async {
        stream_entries(&redis.url()) == 5
    })
    .await;
    redis.kill();
    assert_eq!(flood(a.public, "U", 10).await, 10);
    within("the backlog measured", || async {
        sample(a.admin, "nextbest_replication_backlog_bytes ").await > 0.0
    })
    .await;
    a.signal("TERM");
    let log = a.wait_stderr("\"stopped\"");
    assert!(
        log.contains("events not yet shipped to the fleet stay in this replica's log"),
        "{log}"
    );
}

/// A replica stopped gracefully leaves the fleet's view at once; only a killed one waits to go
/// stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_stopped_gracefully_leaves_the_fleets_view() {
    let redis = Redis::start();
    let dir = TempDir::new("fleet-leave");
    let a = replica(&dir.0.join("a"), &redis.url());
    let b = replica(&dir.0.join("b"), &redis.url());
    within("A seeing both", || async {
        sample(a.admin, "nextbest_fleet_replicas ").await == 2.0
    })
    .await;
    let stopped = Instant::now();
    b.stop();
    within("A seeing B gone", || async {
        sample(a.admin, "nextbest_fleet_replicas ").await == 1.0
    })
    .await;
    // Sooner than a report goes stale (30 s): at A's next read of the reports.
    assert!(stopped.elapsed() < Duration::from_secs(15));
}

/// An admin change made while Redis is away serves here at once, and its answer says it waits
/// to reach the other replicas.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_change_during_an_outage_says_it_is_queued() {
    let mut redis = Redis::start();
    let dir = TempDir::new("fleet-queued");
    let models = TempModels::new("fleet-queued-models");
    let a = Binary::with_models(&models.dir, &dir.0.join("a"))
        .args(["--redis", &redis.url()])
        .spawn();
    within("A ready", || async {
        get(a.public, "/readyz").await.status == 200
    })
    .await;
    let r = put_model(a.admin, &TempModels::demo_doc("fleet-8")).await;
    assert_eq!(r.status, 200);
    assert!(r.json().get("fleet").is_none(), "{}", r.json());
    redis.kill();
    within("A seeing Redis gone", || async {
        sample(a.admin, "nextbest_replication_connected ").await == 0.0
    })
    .await;
    let r = put_model(a.admin, &TempModels::demo_doc("fleet-9")).await;
    assert_eq!(r.status, 200);
    let said = r.json()["fleet"].as_str().unwrap_or_default().to_owned();
    assert!(
        said.starts_with(&format!("queued: {} unreachable", redis.url()))
            && said.ends_with("the change reaches the other replicas once Redis answers"),
        "{said}"
    );
    assert_eq!(serving_version(a.public).await, "fleet-9");
}

/// Forwards every connection to `listener` on to `to` (Redis reachable from then on at the
/// listener's address).
fn forward(listener: std::net::TcpListener, to: SocketAddr) {
    listener.set_nonblocking(true).unwrap();
    tokio::spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        while let Ok((mut client, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut server) = tokio::net::TcpStream::connect(to).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
}

/// A copy of a running replica's folder started while it cannot reach Redis takes events
/// locally, as in any outage; once Redis answers it ships none of them under the original's
/// id (the original would skip them as its own), and refuses to join.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_started_during_an_outage_ships_nothing_under_the_originals_id() {
    let redis = Redis::start();
    let dir = TempDir::new("fleet-twin-outage");
    let a_dir = dir.0.join("a");
    let a = replica(&a_dir, &redis.url());
    assert_eq!(flood(a.public, "A", 5).await, 5);
    within("A's events in Redis", || async {
        stream_entries(&redis.url()) == 5
    })
    .await;
    let b_dir = dir.0.join("b");
    let copied = std::process::Command::new("cp")
        .arg("-r")
        .arg(&a_dir)
        .arg(&b_dir)
        .status()
        .unwrap();
    assert!(copied.success());
    // B's Redis address answers nothing yet.
    let door = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let b_url = format!("redis://{}", door.local_addr().unwrap());
    drop(door);
    let b = replica(&b_dir, &b_url);
    assert_eq!(
        flood(b.public, "B", 3).await,
        3,
        "taken locally in the outage"
    );
    let door = std::net::TcpListener::bind(b_url.trim_start_matches("redis://")).unwrap();
    forward(door, redis.addr);
    within("B refuses under A's id", || async {
        String::from_utf8_lossy(&get(b.public, "/readyz").await.body)
            .contains("another running replica has this replica's id")
    })
    .await;
    assert_eq!(stream_entries(&redis.url()), 5, "B shipped nothing");
}

/// A Redis emptied without a restart (`FLUSHALL`, evicted keys) gets the whole log again, as
/// one restarted empty does: the shipper looks for its last shipped entry while idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_flushed_without_a_restart_gets_the_whole_log_again() {
    let redis = Redis::start();
    let url = redis.url();
    let dir = TempDir::new("fleet-flushed");
    let a = replica(&dir.0.join("a"), &url);
    assert_eq!(flood(a.public, "F", 10).await, 10);
    within("A's events in Redis", || async {
        stream_entries(&url) == 10
    })
    .await;
    let mut con = ::redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let () = ::redis::cmd("FLUSHALL").query(&mut con).unwrap();
    assert_eq!(stream_entries(&url), 0);
    within("A's log shipped again", || async {
        stream_entries(&url) == 10
    })
    .await;
    assert!(
        a.stderr()
            .contains("no longer holds this replica's last shipped event"),
        "{}",
        a.stderr()
    );
}
