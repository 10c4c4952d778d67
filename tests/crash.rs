//! Crash safety of the event log with the real binary: kill -9 while clients post events,
//! tear the tail of the log as a crash mid-write would, restart, and check that every event
//! that got a 202 is there (each comes back as a repeat) and the torn record alone was dropped.

mod support;

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use serde_json::json;
use support::binary::{Binary, Process};
use support::*;

fn spawn(data_dir: &Path) -> Process {
    Binary::demo(data_dir).args(["--fsync", "always"]).spawn()
}

fn batch(client: usize, i: usize) -> (Vec<String>, Vec<u8>) {
    let ids: Vec<String> = (0..5).map(|j| format!("crash-{client}-{i}-{j}")).collect();
    let events: Vec<serde_json::Value> = ids
        .iter()
        .map(|id| {
            json!({"type": "impression", "customer_id": format!("K{client:02}{i:05}"),
                   "offer_id": "data_boost_10gb", "channel": "web", "event_id": id})
        })
        .collect();
    let body = serde_json::to_vec(&json!({ "events": events })).unwrap();
    (ids, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_event_survives_kill_9_and_a_torn_tail() {
    let dir = TempDir::new("crash");
    let server = spawn(&dir.0);
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let (progress, mut progressed) = tokio::sync::mpsc::unbounded_channel::<usize>();
    let mut clients = Vec::new();
    for client in 0..4 {
        let (acked, progress, addr) = (acked.clone(), progress.clone(), server.public);
        clients.push(tokio::spawn(async move {
            for i in 0..20_000 {
                let (ids, body) = batch(client, i);
                match try_post(addr, &body).await {
                    Some((202, r)) => {
                        assert_eq!(r["accepted"], 5, "{r}");
                        acked.lock().unwrap().extend(ids);
                        let _ = progress.send(5);
                    }
                    Some((status, r)) => panic!("unexpected {status}: {r}"),
                    None => return i, // killed
                }
            }
            panic!("the server was never killed");
        }));
    }
    drop(progress);
    // Let a good number of events through, then kill -9 while the clients keep posting.
    let mut seen = 0;
    while seen < 1_000 {
        seen += progressed.recv().await.expect("clients are running");
    }
    drop(server); // SIGKILL, then reaped
    for c in clients {
        let sent = c.await.expect("a client failed");
        assert!(sent > 0);
    }
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    assert!(acked.len() >= 1_000);

    // A crash mid-write: part of a record reached the newest segment.
    let mut segments: Vec<_> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    segments.sort();
    let newest = segments.last().expect("a segment was written");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(newest)
        .unwrap();
    f.write_all(&200u32.to_le_bytes()).unwrap();
    f.write_all(&[0xab; 4 + 50]).unwrap();
    drop(f);

    let server = spawn(&dir.0);
    let stats = get(server.admin, "/admin/stats").await.json();
    let replay = &stats["log"]["replay"];
    assert_eq!(replay["torn_records_dropped"], 1, "{stats}");
    assert_eq!(replay["corrupt_segments"], 0);
    let replayed = replay["records"].as_u64().unwrap();
    // Batches written but killed before their 202 may add to the count, never take from it.
    assert!(
        replayed >= acked.len() as u64,
        "{replayed} records replayed, {} acknowledged",
        acked.len()
    );
    assert!(
        replayed <= acked.len() as u64 + 4 * 5 * 4096,
        "at most the queued batches more"
    );
    // Every acknowledged event is there: posted again, each one is a repeat.
    let mut duplicates = 0;
    for chunk in acked.chunks(100) {
        let events: Vec<serde_json::Value> = chunk
            .iter()
            .map(|id| json!({"type": "impression", "customer_id": "K", "offer_id": "data_boost_10gb", "event_id": id}))
            .collect();
        let body = serde_json::to_vec(&json!({ "events": events })).unwrap();
        let (status, r) = try_post(server.public, &body)
            .await
            .expect("the server is up");
        assert_eq!(status, 202);
        duplicates += r["duplicates"].as_u64().unwrap();
    }
    assert_eq!(
        duplicates,
        acked.len() as u64,
        "an acknowledged event was lost"
    );
}
