//! A replica on a host whose wall clock is wrong, beside others on one Redis: what it appends
//! never trims the fleet's kept events (stream ids are Redis's time, and the trim is measured
//! on it), the skew is said in the log and in `/metrics`, and the fleet's view and lag are
//! measured on Redis's clock. Real `redis-server` and real
//! `nextbest` processes; the wrong clock is a preloaded shim (`support/clock_shim.c`).

mod support;

use std::net::SocketAddr;
use std::path::Path;

use serde_json::{json, Value};
use support::binary::{Binary, Process};
use support::clock_shim::ClockShim;
use support::redis::{stream_entries, Redis};
use support::*;

/// 400 days, in seconds: a host whose clock was set a year ahead.
const AHEAD_S: i64 = 400 * 86_400;

fn replica(data: &Path, redis: &str) -> Binary {
    Binary::demo(data).args(["--redis", redis])
}

/// `n` impressions, ten a post, of customers `{prefix}00000...`, each with its own id and an
/// explicit time (a `ts` from the test's clock, so the events are recent for every replica
/// that reads them, whatever its own clock says).
async fn post(addr: SocketAddr, prefix: &str, n: usize) {
    let ts = nextbest::rfc3339::format_ms(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64,
    );
    for chunk in (0..n).collect::<Vec<_>>().chunks(10) {
        let events: Vec<Value> = chunk
            .iter()
            .map(|i| {
                json!({"type": "impression", "customer_id": format!("{prefix}{i:05}"),
                       "offer_id": "data_boost_10gb", "channel": "web", "ts": ts,
                       "event_id": format!("{prefix}-{i}")})
            })
            .collect();
        post_events(addr, json!(events)).await;
    }
}

/// One sample of a replica's `/metrics`; fails the test when it is not there.
async fn metric(p: &Process, line_prefix: &str) -> f64 {
    let m = String::from_utf8(get(p.admin, "/metrics").await.body).unwrap();
    m.lines()
        .find_map(|l| l.strip_prefix(line_prefix)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {line_prefix} in:\n{m}"))
}

async fn skew_seconds(p: &Process) -> f64 {
    metric(p, "nextbest_fleet_clock_skew_seconds ").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_clock_runs_a_year_ahead_trims_nothing_and_says_so() {
    let redis = Redis::start();
    let url = redis.url();
    {
        // Small stream nodes: an approximate trim (`MINID ~`) removes whole nodes, so with
        // the default 100 entries a node a short test's trim could hide in a partial one.
        let client = ::redis::Client::open(url.as_str()).unwrap();
        let mut con = client.get_connection().unwrap();
        let _: () = ::redis::cmd("CONFIG")
            .arg("SET")
            .arg("stream-node-max-entries")
            .arg("2")
            .query(&mut con)
            .unwrap();
    }
    let dir = TempDir::new("fleet-clock-ahead");
    let shim = ClockShim::build(&dir.0, AHEAD_S);
    let a = replica(&dir.0.join("a"), &url).spawn();
    post(a.public, "A", 80).await;
    within("A's events in Redis", || async {
        stream_entries(&url) == 80
    })
    .await;

    let b = replica(&dir.0.join("b"), &url)
        .env("LD_PRELOAD", &shim.library)
        .env("NEXTBEST_TEST_CLOCK_OFFSET_FILE", &shim.offset_file)
        .env("NEXTBEST_LOG_FORMAT", "text")
        .spawn();
    // Two rounds of appends from B: with no entry of its own yet, its first does not trim;
    // the second trims from the first's time. Neither may take A's events.
    for (prefix, shipped) in [("B", 20.0), ("C", 40.0)] {
        post(b.public, prefix, 20).await;
        within("B's events shipped", || async {
            metric(
                &b,
                "nextbest_replication_events_total{direction=\"shipped\"}",
            )
            .await
                >= shipped
        })
        .await;
        assert_eq!(
            stream_entries(&url),
            80 + shipped as u64,
            "B's appends trimmed the fleet's kept events; B's stderr:\n{}",
            b.stderr()
        );
    }

    // The skew is measured on B, against Redis's clock, and said once.
    let skew = skew_seconds(&b).await;
    assert!(
        (skew + AHEAD_S as f64).abs() < 60.0,
        "B's skew {skew} s, its clock {AHEAD_S} s ahead"
    );
    let said = b.wait_stderr("this host's clock is");
    assert!(said.contains("ahead of the fleet's Redis"), "{said}");
    assert!(skew_seconds(&a).await.abs() < 5.0);
    assert!(
        !a.stderr().contains("this host's clock is"),
        "{}",
        a.stderr()
    );

    // What the replicas say of each other is judged on Redis's clock too: B's view holds A
    // (whose reports its own clock would call a year old), A's holds B, and the lag B measures
    // for A's new events is their real one, not B's year.
    for (name, p) in [("A", &a), ("B", &b)] {
        within(&format!("both replicas in {name}'s view"), || async {
            metric(p, "nextbest_fleet_replicas ").await == 2.0
        })
        .await;
    }
    let applied = "nextbest_replication_events_total{direction=\"applied\"}";
    let before = metric(&b, applied).await;
    post(a.public, "D", 10).await;
    within("A's new events applied on B", || async {
        metric(&b, applied).await >= before + 10.0
    })
    .await;
    let lag = metric(&b, "nextbest_replication_lag_seconds ").await;
    assert!(lag < 60.0, "B measures a lag of {lag} s for A's events");

    // An event on A quoting B's decision, with no time of its own: the warning names the
    // clocks, not the event's offset.
    let d = decide(
        b.public,
        json!({"customer_id": "C0000042", "channel": "web", "placement": "plans_page"}),
    )
    .await;
    let r = post_events(
        a.public,
        json!([{"type": "impression", "customer_id": "C0000042",
                "offer_id": d["offers"][0]["offer_id"], "decision_id": d["decision_id"]}]),
    )
    .await;
    let w = r["warnings"][0]["warning"].as_str().unwrap_or_default();
    assert!(
        w.starts_with("decision_id: the decision was made at") && w.contains("runs ahead"),
        "{r}"
    );
}
