//! What a 202 and an admin change promise, under the faults an operator meets: a second
//! process on the same data folder, a damaged segment, a full disk, a restart or SIGHUP after
//! an admin upload, a model re-published under the same name and version.

mod support;

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use nextbest::contact::{Clock, ContactConfig};
use nextbest::server::{self, AppState};
use serde_json::json;
use support::binary::Binary;
use support::*;

#[test]
fn a_second_server_on_the_same_data_folder_refuses_to_start_and_names_the_holder() {
    let dir = TempDir::new("two-servers");
    let first = Binary::demo(&dir.0).spawn();
    let (status, stderr) = Binary::demo(&dir.0).run_to_exit();
    assert!(!status.success(), "the second server must not start");
    assert!(
        stderr.contains("in use by another nextbest")
            && stderr.contains(&format!("pid {}", first.pid())),
        "{stderr}"
    );
    // The first is untouched, and once it is gone the folder is free again.
    first.kill9();
    let again = Binary::demo(&dir.0).spawn();
    drop(again);
}

fn impression(id: &str, customer: &str) -> serde_json::Value {
    json!({"type": "impression", "customer_id": customer, "offer_id": "data_boost_10gb",
           "channel": "web", "event_id": id})
}

#[tokio::test]
async fn a_damaged_byte_in_the_log_costs_one_event_and_is_reported() {
    let dir = TempDir::new("damaged");
    let data = dir.0.join("data");
    let server = Binary::demo(&data).spawn();
    let ids: Vec<String> = (0..40).map(|i| format!("dmg-{i}")).collect();
    for chunk in ids.chunks(10) {
        let events: Vec<_> = chunk.iter().map(|id| impression(id, "C0000042")).collect();
        assert_eq!(
            post_events(server.public, json!(events)).await["accepted"],
            10
        );
    }
    server.kill9();
    // One byte in the middle of the (newest) segment.
    let seg = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "log"))
        .unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5a;
    std::fs::write(&seg, &bytes).unwrap();

    let server = Binary::demo(&data).spawn();
    // Posting every id again: all but the damaged one come back as repeats.
    let events: Vec<_> = ids.iter().map(|id| impression(id, "C0000042")).collect();
    let r = post_events(server.public, json!(events)).await;
    assert_eq!(r["duplicates"], 39, "{r}");
    let stats = get(server.admin, "/admin/stats").await.json();
    assert_eq!(stats["log"]["replay"]["corrupt_segments"], 1, "{stats}");
    assert_eq!(stats["log"]["replay"]["torn_records_dropped"], 0, "{stats}");
    let metrics = String::from_utf8(get(server.admin, "/metrics").await.body).unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l == "nextbest_event_log_damaged_segments 1"),
        "{metrics}"
    );
    assert!(data.join("damaged").join(seg.file_name().unwrap()).exists());
}

#[tokio::test]
async fn a_full_disk_answers_503_with_retry_after_and_recovers_when_space_returns() {
    let dir = TempDir::new("full-disk");
    let config = ContactConfig {
        data_dir: Some(dir.0.clone()),
        ..ContactConfig::default()
    };
    let inject = config.inject.clone();
    let registry = demo_registry();
    let contacts = Arc::new(server::open_contacts(&registry, &config, Clock::system()).unwrap());
    let state = AppState::builder(registry, test_config())
        .contacts(contacts)
        .build();
    let srv = start_state(state).await;
    let ok = post_json(
        srv.public,
        "/v1/events",
        &json!({"events": [impression("d1", "C1")]}),
    )
    .await;
    assert_eq!(ok.status, 202);

    // Three writes run out of space half-way.
    inject.fail_writes.store(3, Relaxed);
    for i in 0..3 {
        let r = post_json(
            srv.public,
            "/v1/events",
            &json!({"events": [impression(&format!("f{i}"), "C1")]}),
        )
        .await;
        r.assert_error(503, "unavailable");
        assert_eq!(r.header("retry-after"), Some("1"));
    }
    let metrics = String::from_utf8(get(srv.admin, "/metrics").await.body).unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l == "nextbest_event_log_errors_total 3"),
        "{metrics}"
    );
    // Decisions never noticed.
    let a = decide(
        srv.public,
        json!({"customer_id": "C0000042", "channel": "web", "placement": "plans_page"}),
    )
    .await;
    assert!(a["fallback"].is_null(), "{a}");
    // Space is back: the retried batch is taken (not a repeat: its ids were released).
    let r = post_events(srv.public, json!([impression("f0", "C1")])).await;
    assert_eq!(
        (r["accepted"].as_u64(), r["duplicates"].as_u64()),
        (Some(1), Some(0))
    );
    srv.stop_and_close().await;
}

#[tokio::test]
async fn an_admin_upload_survives_sighup_and_a_restart() {
    let models = TempModels::new("persist");
    let data = TempDir::new("persist-data");
    let server = Binary::with_models(&models.dir, &data.0).spawn();
    let r = put_model(server.admin, &TempModels::demo_doc("7")).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    let version = |addr| async move {
        decide(
            addr,
            json!({"customer_id": "C0000042", "channel": "web", "placement": "plans_page"}),
        )
        .await["model"]["version"]
            .clone()
    };
    assert_eq!(version(server.public).await, "7");
    server.signal("HUP");
    // SIGHUP reloads from the folder, which now holds the upload: the snapshot loads again,
    // and the model is the one serving, so no new model version (two model loads: the start
    // and the upload).
    let accepted = "nextbest_feature_loads_total{result=\"accepted\"} 2";
    let mut metrics = String::new();
    for _ in 0..2_000 {
        metrics = String::from_utf8(get(server.admin, "/metrics").await.body).unwrap();
        if metrics.lines().any(|l| l == accepted) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(metrics.lines().any(|l| l == accepted), "{metrics}");
    assert!(
        metrics
            .lines()
            .any(|l| l == "nextbest_model_loads_total{result=\"accepted\"} 2"),
        "{metrics}"
    );
    assert_eq!(version(server.public).await, "7");
    server.kill9();
    let server = Binary::with_models(&models.dir, &data.0).spawn();
    assert_eq!(version(server.public).await, "7");
    // A rollback is an admin change too.
    let r = post_json(server.admin, "/admin/models/rollback", &json!({})).await;
    r.assert_error(409, "no_previous_version");
    // A start that loads no model shows none active, though its history remembers the last.
    drop(server);
    std::fs::write(models.dir.join("model.json"), b"{\"name\": \"broken\"").unwrap();
    let server = Binary::with_models(&models.dir, &data.0).spawn();
    let view = get(server.admin, "/admin/models").await.json();
    assert!(view["active"].is_null(), "{view}");
    assert_eq!(view["history"][0]["version"], "7", "{view}");
}

#[tokio::test]
async fn a_model_republished_with_reordered_offers_gets_its_own_funnel() {
    let models = TempModels::new("reorder");
    let srv = start_registry(models.registry(), test_config()).await;
    let ask =
        json!({"customer_id": "C0000042", "channel": "web", "placement": "plans_page", "limit": 1});
    let first = decide(srv.public, ask.clone()).await;
    let top = first["offers"][0]["offer_id"].as_str().unwrap().to_owned();
    // The same name and version, the offers in reverse order.
    let mut doc = TempModels::demo_doc("1");
    doc["offers"].as_array_mut().unwrap().reverse();
    let r = put_model(srv.admin, &doc).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    let second = decide(srv.public, ask).await;
    assert_eq!(second["offers"][0]["offer_id"], top.as_str());
    let stats = get(srv.admin, "/admin/stats").await.json();
    let rows = stats["funnel"].as_array().unwrap();
    let decided: Vec<(&str, u64)> = rows
        .iter()
        .filter(|r| r["decisions"].as_u64() > Some(0))
        .map(|r| {
            (
                r["offer_id"].as_str().unwrap(),
                r["decisions"].as_u64().unwrap(),
            )
        })
        .collect();
    assert!(
        decided.iter().all(|(offer, _)| *offer == top),
        "decisions credited to other offers: {decided:?}"
    );
    assert_eq!(decided.iter().map(|(_, n)| n).sum::<u64>(), 2);
    srv.stop().await;
}

/// Peak resident memory of a process, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/<pid>/status")
}

/// A log of one impression for each of `customers` customers, written as the server would.
fn write_log(dir: &std::path::Path, customers: usize) {
    use nextbest::contact::log::{push_record, MAGIC};
    use nextbest::contact::{Event, EventKind};
    use std::io::Write;
    std::fs::create_dir_all(dir).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // Segments of 8 MiB, as `--log-segment-mb 8` writes them.
    let open = |seq: usize| {
        let path = dir.join(format!("events-{seq:020}.log"));
        let mut f =
            std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
        f.write_all(MAGIC).unwrap();
        f
    };
    let (mut seq, mut written) = (1, 0);
    let mut f = open(seq);
    let (mut rec, mut id) = (Vec::with_capacity(256), String::new());
    for i in 0..customers {
        if written > 8 << 20 {
            f.flush().unwrap();
            seq += 1;
            f = open(seq);
            written = 0;
        }
        id.clear();
        std::fmt::Write::write_fmt(&mut id, format_args!("M{i:08}")).unwrap();
        let e = Event {
            kind: EventKind::Impression,
            ts_ms: now - 3_600_000,
            customer_id: &id,
            visitor_id: None,
            offer_id: Some("data_boost_10gb"),
            channel: Some("web"),
            placement: None,
            decision_id: None,
            event_id: None,
            category: Some("sales"),
            request: None,
            attributed: None,
        };
        rec.clear();
        assert!(push_record(&mut rec, |b| e.encode(b)));
        f.write_all(&rec).unwrap();
        written += rec.len();
    }
    f.flush().unwrap();
}

#[test]
fn replay_of_a_million_customers_stays_within_the_memory_budget() {
    let dir = TempDir::new("replay-budget");
    let (empty, full) = (dir.0.join("empty"), dir.0.join("full"));
    write_log(&full, 1_000_000);
    let peak = |data: &std::path::Path| {
        let server = Binary::demo(data)
            .args(["--contact-memory-mb", "16", "--log-segment-mb", "8"])
            .spawn();
        let stats = get_blocking(server.admin, "/admin/stats");
        let customers = stats["contact_state"]["customers"].as_u64().unwrap();
        (peak_rss_kib(server.pid()), customers)
    };
    let (base_kib, _) = peak(&empty);
    let (full_kib, customers) = peak(&full);
    // The budget (16 MiB), one segment read whole (8 MiB), the replay buffer (2 MiB) and
    // allocator slack on top of a server with no history (31 MiB measured); the million
    // histories themselves take some 300 MiB.
    let grown_mib = full_kib.saturating_sub(base_kib) / 1024;
    assert!(
        grown_mib <= 40,
        "peak RSS grew by {grown_mib} MiB over an empty log ({base_kib} KiB -> {full_kib} KiB)"
    );
    assert!(
        customers > 10_000 && customers < 1_000_000,
        "kept {customers}"
    );
}

/// A GET from a plain test, on a runtime of its own.
fn get_blocking(addr: std::net::SocketAddr, path: &str) -> serde_json::Value {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(get(addr, path))
        .json()
}
