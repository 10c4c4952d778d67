//! The README's first steps, typed as a newcomer types them: inside the model's own folder,
//! with bare file names (`model.json`, not `./model.json`).

mod support;

use std::path::Path;
use std::process::Command;

use serde_json::json;
use support::binary::Binary;
use support::*;

/// A copy of the demo folder (model, scorer files, snapshot).
fn demo_copy(tag: &str) -> TempDir {
    let dir = TempDir::new(tag);
    for entry in std::fs::read_dir(demo_dir()).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), dir.0.join(entry.file_name())).unwrap();
        }
    }
    dir
}

fn nextbest_in(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_nextbest"))
        .current_dir(dir)
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .env_remove("NEXTBEST_MODELS")
        .env_remove("NEXTBEST_FEATURES")
        .output()
        .expect("the binary runs")
}

#[test]
fn model_check_takes_a_bare_file_name() {
    let dir = demo_copy("bare-check");
    let out = nextbest_in(
        &dir.0,
        &["model", "check", "model.json", "--features", "features.csv"],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.starts_with("ok: demo version 1"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn serve_and_replay_take_bare_file_names() {
    let dir = demo_copy("bare-serve");
    let srv = Binary::in_folder(&dir.0)
        .args([
            "--models",
            "model.json",
            "--features",
            "features.csv",
            "--data-dir",
            "data",
            "--decision-log",
            "decisions",
            "--decision-log-sample",
            "1",
        ])
        .spawn();
    let ready = get(srv.public, "/readyz").await;
    assert_eq!(ready.status, 200, "{}", srv.stderr());
    // The scorer files beside model.json were found, so the tree-scored offers serve.
    let a = decide(
        srv.public,
        json!({"customer_id": "C0000042", "channel": "web", "placement": "plans_page", "explain": true}),
    )
    .await;
    assert_eq!(a["model"]["name"], "demo", "{a}");
    for i in 1..=3 {
        decide_demo_customer(srv.public, i).await;
    }
    assert!(
        !srv.stderr().contains("cannot watch"),
        "the folder of a bare file name is watched: {}",
        srv.stderr()
    );
    srv.signal("TERM");
    let mut srv = srv;
    srv.child.0.wait().unwrap();

    let out = nextbest_in(
        &dir.0,
        &["replay", "--log", "decisions", "--candidate", "model.json"],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("logged decisions"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `/readyz`'s status and body, polled until `want` or 20 s.
async fn ready_becomes(srv: &support::binary::Process, want: u16) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let r = get(srv.public, "/readyz").await;
        let body = String::from_utf8_lossy(&r.body).into_owned();
        if r.status == want {
            return body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "/readyz stayed {} ({body}), expected {want}; stderr:\n{}",
            r.status,
            srv.stderr()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Ready, and a known customer gets the demo model's own answer (not fallback content).
async fn serves_the_demo(srv: &support::binary::Process) {
    ready_becomes(srv, 200).await;
    let a = decide(
        srv.public,
        json!({"customer_id": "C0000042", "channel": "web", "placement": "plans_page"}),
    )
    .await;
    assert_eq!(a["model"]["name"], "demo", "{a}");
    assert!(a["fallback"].is_null(), "{a}");
}

/// Writes a file as a publisher should: a temporary name, then a rename over the real one.
fn publish(dir: &Path, name: &str, bytes: &[u8]) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

#[tokio::test]
async fn a_model_published_after_an_empty_start_loads_with_the_snapshot_given_at_start() {
    let demo = demo_copy("late-demo");
    let dir = TempDir::new("late-model");
    let models = dir.0.join("models");
    std::fs::create_dir(&models).unwrap();
    let features = demo.0.join("features.csv");
    let srv = Binary::in_folder(&dir.0)
        .args(["--models", "models", "--data-dir", "data"])
        .arg("--features")
        .arg(&features)
        .spawn();
    let body = ready_becomes(&srv, 503).await;
    assert!(body.contains("no model loaded"), "{body}");
    // The scorer files first, then the document that names them.
    for entry in std::fs::read_dir(&demo.0).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".txt") || name.ends_with(".xgb.json") {
            publish(&models, &name, &std::fs::read(demo.0.join(&name)).unwrap());
        }
    }
    publish(
        &models,
        "model.json",
        &std::fs::read(demo.0.join("model.json")).unwrap(),
    );
    serves_the_demo(&srv).await;
}

#[tokio::test]
async fn a_model_file_named_on_the_command_line_reloads_when_it_changes() {
    let dir = demo_copy("named-file");
    let doc = std::fs::read(dir.0.join("model.json")).unwrap();
    std::fs::write(dir.0.join("offers.json"), &doc).unwrap();
    let srv = Binary::in_folder(&dir.0)
        .args([
            "--models",
            "offers.json",
            "--features",
            "features.csv",
            "--data-dir",
            "data",
        ])
        .spawn();
    ready_becomes(&srv, 200).await;
    let mut v: serde_json::Value = serde_json::from_slice(&doc).unwrap();
    v["version"] = json!("2");
    publish(&dir.0, "offers.json", &serde_json::to_vec(&v).unwrap());
    within("version 2 served after the named file changed", || async {
        let a = decide(
            srv.public,
            json!({"customer_id": "C0000042", "channel": "web", "placement": "plans_page"}),
        )
        .await;
        a["model"]["version"] == "2"
    })
    .await;
}

#[tokio::test]
async fn a_snapshot_published_after_the_start_loads_with_the_model_that_waited_for_it() {
    let dir = demo_copy("late-snapshot");
    let srv = Binary::in_folder(&dir.0)
        .args([
            "--models",
            "model.json",
            "--features",
            "published/current.csv",
            "--data-dir",
            "data",
        ])
        .spawn();
    let body = ready_becomes(&srv, 503).await;
    assert!(body.contains("not_ready"), "{body}");
    // The node's publisher writes it later, as a publisher should: a temporary name, then a
    // rename.
    let published = dir.0.join("published");
    std::fs::create_dir(&published).unwrap();
    publish(
        &published,
        "current.csv",
        &std::fs::read(dir.0.join("features.csv")).unwrap(),
    );
    serves_the_demo(&srv).await;
}

/// An export written in place (not renamed into place) is read once it has stopped growing,
/// never half-written: every customer of the finished file is known.
#[tokio::test]
async fn a_snapshot_written_in_place_is_loaded_once_it_stops_changing() {
    use std::io::Write;
    let dir = demo_copy("in-place-snapshot");
    let srv = Binary::in_folder(&dir.0)
        .args([
            "--models",
            "model.json",
            "--features",
            "late.csv",
            "--data-dir",
            "data",
        ])
        .spawn();
    let body = ready_becomes(&srv, 503).await;
    assert!(body.contains("not_ready"), "{body}");
    let csv = std::fs::read_to_string(dir.0.join("features.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    let last = lines.last().unwrap().split(',').next().unwrap().to_owned();
    // Chunks 100 ms apart, each a whole number of lines: every state of the file parses.
    let mut out = std::fs::File::create(dir.0.join("late.csv")).unwrap();
    for chunk in lines.chunks(500) {
        out.write_all((chunk.join("\n") + "\n").as_bytes()).unwrap();
        out.flush().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    drop(out);
    ready_becomes(&srv, 200).await;
    let a = decide(
        srv.public,
        json!({"customer_id": last, "channel": "web", "placement": "plans_page"}),
    )
    .await;
    assert_ne!(a["fallback"]["reason"], "unknown_customer", "{a}");
}

/// A snapshot refused at the start is refused once (one log line, one entry of the page's
/// loads), not again until it changes; the fixed file then loads.
#[tokio::test]
async fn a_snapshot_refused_at_the_start_is_tried_again_only_once_it_changes() {
    let dir = demo_copy("refused-at-start");
    let good = std::fs::read_to_string(dir.0.join("features.csv")).unwrap();
    let mut lines: Vec<&str> = good.lines().collect();
    let dup = lines[1];
    lines.push(dup);
    std::fs::write(dir.0.join("night.csv"), lines.join("\n") + "\n").unwrap();
    let srv = Binary::in_folder(&dir.0)
        .args([
            "--models",
            "model.json",
            "--features",
            "night.csv",
            "--data-dir",
            "data",
        ])
        .spawn();
    ready_becomes(&srv, 503).await;
    let refused = |s: &serde_json::Value| {
        s["loads"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["part"] == "features" && l["accepted"] == false)
            .count()
    };
    // Time for a second try, were there one (the watch looks every second).
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let status = get(srv.admin, "/admin/status.json").await.json();
    assert_eq!(refused(&status), 1, "{}", status["loads"]);
    // The log line names its source, and the fault's place is the file, line and field (not a
    // model path).
    let log = srv.stderr();
    let line = log
        .lines()
        .find(|l| l.contains("duplicate customer_id"))
        .unwrap_or_else(|| panic!("{log}"));
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["source"], "features night.csv", "{line}");
    let place = v["path"].as_str().unwrap_or_else(|| panic!("{line}"));
    assert!(
        place.starts_with("night.csv:") && place.ends_with(":1"),
        "{line}"
    );
    publish(&dir.0, "night.csv", good.as_bytes());
    serves_the_demo(&srv).await;
    let status = get(srv.admin, "/admin/status.json").await.json();
    assert_eq!(refused(&status), 1, "{}", status["loads"]);
}
