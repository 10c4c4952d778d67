//! Mapped `.nbf` snapshots through the real server: the source file rewritten, truncated and
//! deleted while decisions run (nothing faults, answers do not change), a damaged file refused
//! with its path while the serving snapshot stays, and a reload that maps the new file and
//! keeps only it and the previous one in the store.

mod support;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;

use nextbest::features::{self, FeatureStore, SnapshotStore};
use nextbest::registry::{Registry, RegistryConfig};
use serde_json::json;
use support::*;

/// The demo models in a private folder, its snapshot compiled to `.nbf`, and a registry that
/// maps it from a store in the same folder.
fn mapped_demo(tmp: &TempModels) -> (Arc<Registry>, PathBuf, PathBuf) {
    let csv = FeatureStore::load(&tmp.dir.join("features.csv")).unwrap();
    let src = tmp.dir.join("features.nbf");
    features::write_nbf(&csv, &src).unwrap();
    let store_dir = tmp.dir.join("snapshots");
    let registry = Arc::new(Registry::new(RegistryConfig {
        models_path: Some(tmp.dir.clone()),
        features_path: Some(src.clone()),
        snapshot_store: Some(SnapshotStore::new(&store_dir)),
        ..Default::default()
    }));
    registry.reload_from_disk().unwrap();
    (registry, src, store_dir)
}

fn entries(store: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(store)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".lock")
        .collect();
    names.sort();
    names
}

/// Changes the source file under the serving snapshot as `what` says.
fn change_source(src: &Path, len: u64, what: &str) {
    use std::io::Write as _;
    match what {
        "rewritten in place" => {
            let mut f = std::fs::OpenOptions::new().write(true).open(src).unwrap();
            f.write_all(&vec![0x5A; len as usize]).unwrap();
            f.sync_all().unwrap();
        }
        "truncated" => {
            let f = std::fs::OpenOptions::new().write(true).open(src).unwrap();
            f.set_len(16).unwrap();
        }
        _ => std::fs::remove_file(src).unwrap(),
    }
}

fn body(id: &str) -> serde_json::Value {
    json!({"customer_id": id, "channel": "web", "placement": "plans_page"})
}

/// The offers of an answer and its fallback, without what changes per decision.
fn offers(answer: &serde_json::Value) -> (Vec<String>, String) {
    let ids = answer["offers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["offer_id"].as_str().unwrap().to_owned())
        .collect();
    (ids, answer["fallback"].to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_source_changing_under_a_mapped_snapshot_faults_nothing() {
    let tmp = TempModels::new("mmap-src");
    let (registry, src, store) = mapped_demo(&tmp);
    let served = registry.load().features.clone().unwrap();
    let entry = served.mapped_file().expect("a .nbf is mapped").to_owned();
    assert!(entry.starts_with(std::fs::canonicalize(&store).unwrap()));
    drop(served);
    let srv = start_registry(registry.clone(), test_config()).await;
    let ids: Vec<String> = (1..=40).map(|i| format!("C{:07}", i * 97)).collect();
    let mut expected = Vec::new();
    for id in &ids {
        expected.push(offers(&decide(srv.public, body(id)).await));
    }
    let personal = expected.iter().filter(|(_, f)| f == "null").count();
    assert!(
        personal >= 10,
        "most of these customers get personal offers: {expected:?}"
    );
    let stop = Arc::new(AtomicBool::new(false));
    let decided = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for c in 0..2 {
        let (stop, decided, ids, expected) =
            (stop.clone(), decided.clone(), ids.clone(), expected.clone());
        let addr = srv.public;
        clients.push(tokio::spawn(async move {
            let mut n = c;
            while !stop.load(SeqCst) {
                let k = n % ids.len();
                let answer = decide(addr, body(&ids[k])).await;
                assert_eq!(offers(&answer), expected[k], "{}", ids[k]);
                decided.fetch_add(1, SeqCst);
                n += 2;
            }
        }));
    }
    let progress = |decided: &AtomicU64| {
        let from = decided.load(SeqCst);
        async move { from }
    };
    // Each change to the source, then decisions keep answering the same.
    let len = std::fs::metadata(&src).unwrap().len();
    for what in ["rewritten in place", "truncated", "deleted"] {
        let before = progress(&decided).await;
        change_source(&src, len, what);
        eventually(&format!("decisions after the source was {what}"), || {
            decided.load(SeqCst) >= before + 200
        })
        .await;
    }
    // A reload of the deleted source is refused; the mapped snapshot keeps serving.
    let r = post_json(srv.admin, "/admin/features/reload", &json!({"wait": true})).await;
    assert!(r.status >= 400, "{}", String::from_utf8_lossy(&r.body));
    assert!(
        String::from_utf8_lossy(&r.body).contains("features.nbf"),
        "the refusal names the file: {}",
        String::from_utf8_lossy(&r.body)
    );
    let before = progress(&decided).await;
    eventually("decisions after a refused reload", || {
        decided.load(SeqCst) >= before + 100
    })
    .await;
    stop.store(true, SeqCst);
    for c in clients {
        c.await.unwrap();
    }
    let stats = get(srv.admin, "/admin/stats").await.json();
    // The snapshot's version, the CRC-32 its `.nbf` carries, on both admin documents.
    let carried = {
        let b = std::fs::read(&entry).unwrap();
        format!("crc32:{:08x}", crc32fast::hash(&b[..b.len() - 4]))
    };
    let models = get(srv.admin, "/admin/models").await.json();
    assert_eq!(stats["features"]["checksum"], carried.as_str(), "{stats}");
    assert_eq!(models["features"]["checksum"], carried.as_str(), "{models}");
    let memory = &stats["features"]["memory"];
    assert_eq!(memory["mapped_bytes"], len, "{memory}");
    assert!(memory["resident_bytes"].as_u64().unwrap() > 0, "{memory}");
    assert!(
        memory["heap_bytes"].as_u64().unwrap() < 64 * 1024,
        "{memory}"
    );
    assert!(memory["anonymous_bytes"].as_u64().unwrap() > 0, "{memory}");
    assert_eq!(entries(&store).len(), 1);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_snapshot_is_refused_and_a_good_one_swaps_keeping_the_previous() {
    let tmp = TempModels::new("mmap-swap");
    let (registry, src, store) = mapped_demo(&tmp);
    let srv = start_registry(registry.clone(), test_config()).await;
    let first = registry.load().features.clone().unwrap();
    let first_entry = first.mapped_file().unwrap().to_owned();
    let customer = "C0000042";
    let answer = offers(&decide(srv.public, body(customer)).await);
    assert_eq!(answer.1, "null", "a personal answer: {answer:?}");

    // One flipped byte in a new file: refused, naming it; the serving snapshot stays.
    let mut bytes = std::fs::read(&src).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x04;
    let damaged = tmp.dir.join("damaged.nbf");
    std::fs::write(&damaged, &bytes).unwrap();
    let r = post_json(
        srv.admin,
        "/admin/features/reload",
        &json!({"path": damaged, "wait": true}),
    )
    .await;
    let text = String::from_utf8_lossy(&r.body).into_owned();
    assert!(r.status >= 400, "{text}");
    assert!(
        text.contains("damaged.nbf") && text.contains("checksum"),
        "{text}"
    );
    let serving = registry.load().features.clone().unwrap();
    assert!(Arc::ptr_eq(&serving, &first));
    assert_eq!(offers(&decide(srv.public, body(customer)).await), answer);
    assert_eq!(entries(&store).len(), 1, "no entry for the damaged file");

    // Two good snapshots in turn: each maps a new entry; the store keeps it and the previous.
    let mut previous = first_entry.clone();
    for n in [1, 2] {
        let mut csv = std::fs::read_to_string(tmp.dir.join("features.csv")).unwrap();
        csv.push_str(&format!(
            "C9{n:06},1,10,1,1,1,1,,1,1,0,0,1,1,0,1,1,0,,1,0.5,1,gold,basic,west\n"
        ));
        let s = FeatureStore::from_csv_bytes(csv.as_bytes(), "next.csv").unwrap();
        let next = tmp.dir.join(format!("next{n}.nbf"));
        features::write_nbf(&s, &next).unwrap();
        let r = post_json(
            srv.admin,
            "/admin/features/reload",
            &json!({"path": next, "wait": true}),
        )
        .await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let now = registry.load().features.clone().unwrap();
        // The answer counts the mapped file beside the few heap bytes.
        let answered = r.json();
        assert_eq!(
            answered["mapped_bytes"],
            std::fs::metadata(&next).unwrap().len(),
            "{answered}"
        );
        assert!(
            answered["bytes"].as_u64().unwrap() < 64 * 1024,
            "{answered}"
        );
        let entry = now.mapped_file().unwrap().to_owned();
        assert_ne!(entry, previous);
        let mut kept = vec![
            entry.file_name().unwrap().to_string_lossy().into_owned(),
            previous.file_name().unwrap().to_string_lossy().into_owned(),
        ];
        kept.sort();
        assert_eq!(entries(&store), kept);
        decide(srv.public, body(&format!("C9{n:06}"))).await;
        previous = entry;
    }
    // The first snapshot's entry is gone from the store, yet the store a request still holds
    // reads on: its pages live until the last holder lets go.
    assert!(!first_entry.exists());
    assert_eq!(first.id_at(41), Some(customer));
    assert!(first.row(customer).is_some());
    srv.stop().await;
}

/// `features publish --every`, started before the data team's first export (a DaemonSet on a
/// new node): it says it waits, then publishes the file once it appears, even though its
/// stderr was closed after the first line (the log is lost, not the process).
#[test]
fn a_publisher_started_before_its_source_says_it_waits_then_publishes() {
    use std::io::{BufRead, BufReader};
    let tmp = TempModels::new("publish-wait");
    let src = tmp.dir.join("later.nbf");
    let store_dir = tmp.dir.join("store");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_nextbest"))
        .args(["features", "publish"])
        .arg(&src)
        .arg("--store")
        .arg(&store_dir)
        .args(["--every", "1"])
        .env("NEXTBEST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("nextbest runs");
    let err = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(err).read_line(&mut line);
        let _ = tx.send(line);
    });
    let Ok(line) = rx.recv_timeout(std::time::Duration::from_secs(30)) else {
        let _ = child.kill();
        panic!("the publisher said nothing in 30 s while it waited for its source");
    };
    assert!(
        line.contains("waiting for the source to appear") && line.contains("later.nbf"),
        "{line}"
    );
    let csv = FeatureStore::load(&tmp.dir.join("features.csv")).unwrap();
    let staged = tmp.dir.join(".later.nbf.tmp");
    features::write_nbf(&csv, &staged).unwrap();
    std::fs::rename(&staged, &src).unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut published = String::new();
    out.read_line(&mut published).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let entry = PathBuf::from(published.trim());
    assert!(
        entry.starts_with(&store_dir) && entry.is_file(),
        "{published}"
    );
}

/// Two `.nbf` snapshots with different data have different versions, mapped or in memory: the
/// CRC of the content (what the trailer carries), since the CRC of a whole file that ends in
/// its own CRC is one constant. A fleet compares these to see replicas serving different data.
#[test]
fn nbf_snapshots_are_versioned_by_their_content() {
    let tmp = TempModels::new("nbf-version");
    let (registry, first, _store) = mapped_demo(&tmp);
    let csv = std::fs::read_to_string(tmp.dir.join("features.csv")).unwrap();
    let changed = csv.replacen(",gold,", ",silver,", 1);
    assert_ne!(csv, changed);
    std::fs::write(tmp.dir.join("changed.csv"), changed).unwrap();
    let second = tmp.dir.join("changed.nbf");
    features::write_nbf(
        &FeatureStore::load(&tmp.dir.join("changed.csv")).unwrap(),
        &second,
    )
    .unwrap();
    let trailer = |p: &Path| {
        let b = std::fs::read(p).unwrap();
        format!("crc32:{:08x}", crc32fast::hash(&b[..b.len() - 4]))
    };
    let version = |r: &Registry| r.load().feature_version.as_ref().unwrap().checksum.clone();
    let mapped_first = version(&registry);
    assert_eq!(mapped_first, trailer(&first));
    registry
        .commit(nextbest::registry::Change::Features {
            path: Some(second.clone()),
        })
        .unwrap();
    assert_eq!(version(&registry), trailer(&second));
    assert_ne!(version(&registry), mapped_first);

    // In memory (no store): the same versions.
    let owned = Registry::new(RegistryConfig {
        models_path: Some(tmp.dir.clone()),
        features_path: Some(first.clone()),
        ..Default::default()
    });
    owned.reload_from_disk().unwrap();
    assert_eq!(version(&owned), mapped_first);
    // A CSV has no trailer: the CRC of the whole file.
    owned
        .commit(nextbest::registry::Change::Features {
            path: Some(tmp.dir.join("features.csv")),
        })
        .unwrap();
    assert_eq!(
        version(&owned),
        format!("crc32:{:08x}", crc32fast::hash(csv.as_bytes()))
    );
}

/// A publisher whose source disappears says so once and keeps what it published; a new file
/// renamed over it with the same size and time (`cp -p`) is published as the new snapshot.
#[test]
fn a_publisher_says_when_its_source_is_gone_and_sees_a_same_sized_replacement() {
    let tmp = TempModels::new("publish-gone");
    let src = tmp.dir.join("f.nbf");
    let store_dir = tmp.dir.join("store");
    let csv = std::fs::read_to_string(tmp.dir.join("features.csv")).unwrap();
    let write = |text: &str, to: &Path| {
        std::fs::write(tmp.dir.join("x.csv"), text).unwrap();
        features::write_nbf(&FeatureStore::load(&tmp.dir.join("x.csv")).unwrap(), to).unwrap();
    };
    write(&csv, &src);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_nextbest"))
        .args(["features", "publish"])
        .arg(&src)
        .arg("--store")
        .arg(&store_dir)
        .args(["--every", "1", "--log-format", "text"])
        .env("NEXTBEST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("nextbest runs");
    // Each published entry is a line on stdout, and each log line one on stderr, read on
    // threads so a missing one fails the test instead of hanging it.
    let entries = lines_of(child.stdout.take().unwrap());
    let rx = lines_of(child.stderr.take().unwrap());
    let next_entry = || entries.recv_timeout(std::time::Duration::from_secs(30));
    let first = next_entry().expect("the source is published");
    let said = |needle: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match rx.recv_timeout(left) {
                Ok(l) if l.contains(needle) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        false
    };
    let mtime = std::fs::metadata(&src).unwrap().modified().unwrap();
    let first_len = std::fs::metadata(&src).unwrap().len();
    std::fs::remove_file(&src).unwrap();
    assert!(said("the source is gone"), "no word of the source going");
    // The same size and time, other data: one customer's tenure (a 32-bit number whatever
    // its value) changed.
    let other = tmp.dir.join("other.nbf");
    let mut lines: Vec<String> = csv.lines().map(str::to_owned).collect();
    let mut cells: Vec<String> = lines[1].split(',').map(str::to_owned).collect();
    cells[1] = if cells[1] == "7" {
        "8".into()
    } else {
        "7".into()
    };
    lines[1] = cells.join(",");
    write(&(lines.join("\n") + "\n"), &other);
    assert_eq!(first_len, std::fs::metadata(&other).unwrap().len());
    std::fs::File::options()
        .write(true)
        .open(&other)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    std::fs::rename(&other, &src).unwrap();
    let second = next_entry();
    let _ = child.kill();
    let _ = child.wait();
    let second = second.expect("the replacement was not published in 30 s");
    assert_ne!(
        first.trim(),
        second.trim(),
        "the replacement was not published"
    );
}

/// A publish with far fewer customers than the snapshot it replaces says so in the
/// publisher's log, before any replica reloads it; it is still published.
#[test]
fn a_publish_of_a_half_written_export_says_so() {
    let tmp = TempModels::new("publish-shrunk");
    let store_dir = tmp.dir.join("store");
    let csv = std::fs::read_to_string(tmp.dir.join("features.csv")).unwrap();
    let (full, half) = (tmp.dir.join("full.nbf"), tmp.dir.join("half.nbf"));
    features::write_nbf(
        &FeatureStore::load(&tmp.dir.join("features.csv")).unwrap(),
        &full,
    )
    .unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    let cut = lines[..lines.len() / 2].join("\n") + "\n";
    std::fs::write(tmp.dir.join("half.csv"), cut).unwrap();
    features::write_nbf(
        &FeatureStore::load(&tmp.dir.join("half.csv")).unwrap(),
        &half,
    )
    .unwrap();
    let publish = |src: &Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_nextbest"))
            .args(["features", "publish"])
            .arg(src)
            .arg("--store")
            .arg(&store_dir)
            .args(["--log-format", "text"])
            .output()
            .expect("nextbest runs")
    };
    let first = publish(&full);
    assert!(first.status.success());
    assert!(!String::from_utf8_lossy(&first.stderr).contains("partial export"));
    let second = publish(&half);
    let said = String::from_utf8_lossy(&second.stderr);
    assert!(second.status.success(), "{said}");
    assert!(
        said.contains("fewer than the") && said.contains("a partial export?"),
        "{said}"
    );
}

/// The lines a child's output gives, as they come, on a thread of their own.
fn lines_of(from: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    use std::io::{BufRead, BufReader};
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The load line says what a mapped snapshot takes: its heap (`bytes`, small) and its map
/// (`mapped_bytes`, the file), so an operator reading the log does not take 96 bytes for all.
#[test]
fn the_load_line_counts_a_mapped_snapshot_by_its_map() {
    let models = TempModels::new("load-line");
    let data = TempDir::new("load-line-data");
    let csv = models.dir.join("features.csv");
    let nbf = data.0.join("features.nbf");
    features::write_nbf(&FeatureStore::load(&csv).unwrap(), &nbf).unwrap();
    std::fs::copy(&nbf, &csv).unwrap();
    let server = support::binary::Binary::with_models(&models.dir, &data.0.join("d"))
        .arg("--snapshot-store")
        .arg(data.0.join("store"))
        .spawn();
    let log = server.wait_stderr("feature snapshot swapped in");
    let line = log
        .lines()
        .find(|l| l.contains("feature snapshot swapped in"))
        .unwrap_or_else(|| panic!("no load line: {log}"));
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(
        v["mapped_bytes"],
        std::fs::metadata(&nbf).unwrap().len(),
        "{line}"
    );
    assert!(v["bytes"].as_u64().unwrap() < 64 * 1024, "{line}");
}

/// The demo's snapshot compiled to `.nbf` beside the test's data, and a server on the demo's
/// CSV (read into memory: the store is not touched at start) with `store` as its snapshot
/// store, mounted for it alone by `server`.
fn store_fault_server(
    name: &str,
    server: impl FnOnce(&Path, &Path, &Path) -> binary::Binary,
) -> (binary::Process, PathBuf, PathBuf, TempDir) {
    let models = TempModels::new(name);
    let data = TempDir::new(&format!("{name}-data"));
    let store = data.0.join("store");
    std::fs::create_dir_all(&store).unwrap();
    let nbf = data.0.join("features.nbf");
    let csv = FeatureStore::load(&models.dir.join("features.csv")).unwrap();
    features::write_nbf(&csv, &nbf).unwrap();
    let process = server(&store, &models.dir, &data.0.join("d"))
        .arg("--snapshot-store")
        .arg(&store)
        .spawn();
    (process, store, nbf, data)
}

/// What serves and how many snapshot loads were refused, from the admin listener.
async fn serving(admin: std::net::SocketAddr) -> (String, String) {
    let stats: serde_json::Value =
        serde_json::from_slice(&get(admin, "/admin/stats").await.body).unwrap();
    let metrics = String::from_utf8(get(admin, "/metrics").await.body).unwrap();
    let rejected = metrics
        .lines()
        .find(|l| l.starts_with("nextbest_feature_loads_total{result=\"rejected\"}"))
        .unwrap_or("no rejected line")
        .to_owned();
    (stats["features"]["checksum"].to_string(), rejected)
}

/// A waiting reload of `nbf`, with what served before it.
async fn reload(server: &binary::Process, nbf: &Path) -> (Resp, (String, String)) {
    let before = serving(server.admin).await;
    let body = json!({"path": nbf, "wait": true});
    (
        post_json(server.admin, "/admin/features/reload", &body).await,
        before,
    )
}

/// A store on a full disk: the file is sound and the server's storage is at fault, so a
/// reload is answered 500 naming the store and its cause (not 422 `invalid_features`, which
/// would send the data team to fix a good export), the serving snapshot stays, and the load
/// counts as failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_snapshot_store_answers_a_reload_with_500_naming_the_store() {
    let (server, store, nbf, _data) = store_fault_server("full-store", |store, models, data| {
        binary::Binary::with_small_disk(store, "64k", models, data)
    });
    let (r, before) = reload(&server, &nbf).await;
    let detail = r.assert_error(500, "internal");
    for needle in [
        format!(
            "the snapshot store {} could not take a copy",
            store.display()
        ),
        "No space left on device".into(),
        "the file is not at fault".into(),
    ] {
        assert!(detail.contains(&needle), "{needle} not in: {detail}");
    }
    let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert!(body.get("faults").is_none(), "a refusal's fields: {body}");
    let after = serving(server.admin).await;
    assert_eq!(after.0, before.0, "the serving snapshot changed");
    assert_eq!(
        after.1, "nextbest_feature_loads_total{result=\"rejected\"} 1",
        "the failed load is counted"
    );
}

/// A store mounted read-only (a node's, which only its publisher writes): a reload of a file
/// not in it is answered 409 `store_read_only` saying how to publish it, and no load counts as
/// refused (the alert on refused snapshots stays quiet for a misdirected reload).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_snapshot_store_answers_a_reload_with_409_saying_how_to_publish() {
    let (server, store, nbf, _data) =
        store_fault_server("ro-store-reload", |store, models, data| {
            binary::Binary::with_read_only(store, models, data)
        });
    let (r, before) = reload(&server, &nbf).await;
    let detail = r.assert_error(409, "store_read_only");
    for needle in [
        format!("the snapshot store {} cannot be written", store.display()),
        "only a snapshot already in it loads here".into(),
        "nextbest features publish".into(),
    ] {
        assert!(detail.contains(&needle), "{needle} not in: {detail}");
    }
    let after = serving(server.admin).await;
    assert_eq!(after.0, before.0, "the serving snapshot changed");
    assert_eq!(
        after.1, "nextbest_feature_loads_total{result=\"rejected\"} 0",
        "a misdirected reload is no refused load"
    );
}
