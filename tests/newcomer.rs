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
