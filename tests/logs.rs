//! The log as a shipper and a person see it: the real binary started with stderr piped.
//! Off a terminal every line is one JSON object with the stable field names; text is asked for
//! explicitly; neither carries an ANSI escape or the admin token.

mod support;

use std::io::{BufRead as _, BufReader, Read as _};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use support::TempDir;

const TOKEN: &str = "s3cret-admin-token-do-not-log";

/// The binary, killed if a test fails before it stops it.
struct Server {
    child: Child,
    public: SocketAddr,
    admin: SocketAddr,
}

impl Server {
    fn start(data: &TempDir, extra_args: &[&str], extra_env: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_nextbest"));
        cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .args(["--drain-delay-ms", "0", "--no-watch"])
            .arg("--data-dir")
            .arg(&data.0)
            .args(extra_args)
            .env_remove("NEXTBEST_LOG_FORMAT")
            .env_remove("NO_COLOR")
            .env_remove("NEXTBEST_LOG")
            .env("NEXTBEST_ADMIN_TOKEN", TOKEN)
            .envs(extra_env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("the nextbest binary starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout is piped"))
            .read_line(&mut line)
            .expect("stdout is readable");
        let addr = |key: &str| -> SocketAddr {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .unwrap_or_else(|| panic!("no {key} in {line:?}"))
                .parse()
                .expect("an address")
        };
        let (public, admin) = (addr("public="), addr("admin="));
        Server {
            child,
            public,
            admin,
        }
    }

    /// SIGTERM, then everything the process wrote on stderr.
    fn stop(mut self) -> Vec<u8> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill(1) runs");
        assert!(status.success());
        let mut err = Vec::new();
        self.child
            .stderr
            .take()
            .expect("stderr is piped")
            .read_to_end(&mut err)
            .expect("stderr is readable");
        let exit = self.child.wait().expect("the process ends");
        assert!(exit.success(), "exit status {exit}");
        err
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Makes the server log a refusal (with faults) and an authorised call.
async fn provoke(s: &Server) {
    let bad = br#"{"name": "broken", "version": "1", "offers": [{"id": "a"}]}"#;
    let r = support::request(
        s.admin,
        "PUT",
        "/admin/models",
        &[
            ("content-type", "application/json"),
            ("authorization", &format!("Bearer {TOKEN}")),
        ],
        bad,
    )
    .await;
    assert_eq!(r.status, 422, "{}", String::from_utf8_lossy(&r.body));
    let r = support::get(s.public, "/readyz").await;
    assert_eq!(r.status, 200);
}

fn assert_clean(err: &[u8]) {
    assert!(!err.contains(&0x1b), "an ANSI escape on stderr");
    let text = String::from_utf8_lossy(err);
    assert!(!text.contains(TOKEN), "the admin token is in the log");
    assert!(text.lines().count() >= 4, "too few log lines: {text}");
}

#[tokio::test]
async fn off_a_terminal_every_line_is_json_with_stable_fields() {
    let data = TempDir::new("logs-json");
    let s = Server::start(&data, &[], &[]);
    provoke(&s).await;
    let err = s.stop();
    assert_clean(&err);
    let lines: Vec<serde_json::Map<String, serde_json::Value>> = String::from_utf8(err)
        .expect("UTF-8")
        .lines()
        .map(|l| match serde_json::from_str(l) {
            Ok(serde_json::Value::Object(m)) => m,
            _ => panic!("not a JSON object: {l:?}"),
        })
        .collect();
    for l in &lines {
        for key in ["timestamp", "level", "message", "target"] {
            assert!(l.contains_key(key), "{key} missing in {l:?}");
        }
    }
    let find = |message: &str| {
        lines
            .iter()
            .find(|l| l["message"] == message)
            .unwrap_or_else(|| panic!("no {message:?} line in {lines:?}"))
    };
    let loaded = find("model activated");
    assert_eq!(loaded["model"], "demo");
    assert_eq!(loaded["version"], "1");
    assert!(loaded["source"]
        .as_str()
        .is_some_and(|s| s.ends_with("model.json")));
    assert!(loaded["duration_ms"].is_u64(), "{loaded:?}");
    let refused: Vec<_> = lines
        .iter()
        .filter(|l| l["message"] == "load refused; the model and snapshot serving are unchanged")
        .collect();
    assert!(refused.len() > 1, "one line per fault: {lines:?}");
    assert!(refused.iter().all(|l| l["source"] == "admin"));
    assert!(refused
        .iter()
        .any(|l| l["path"] == "offers[0].category" && l["fault"] == "missing field"));
    find("stopped");
}

#[tokio::test]
async fn text_on_request_and_never_coloured_with_no_color() {
    let data = TempDir::new("logs-text");
    let s = Server::start(
        &data,
        &["--log-format", "text"],
        &[("NO_COLOR", "1"), ("NEXTBEST_LOG", "debug")],
    );
    provoke(&s).await;
    let err = s.stop();
    assert_clean(&err);
    let text = String::from_utf8(err).expect("UTF-8");
    assert!(
        text.lines().all(|l| !l.starts_with('{')),
        "text was asked for: {text}"
    );
    assert!(
        text.contains("model activated model=demo version=1"),
        "{text}"
    );
    // Values with spaces are quoted, as logfmt parsers read them.
    assert!(
        text.contains("path=offers[0].category fault=\"missing field\""),
        "{text}"
    );
}

#[tokio::test]
async fn text_off_a_terminal_is_plain_even_without_no_color() {
    let data = TempDir::new("logs-env");
    let s = Server::start(&data, &[], &[("NEXTBEST_LOG_FORMAT", "text")]);
    provoke(&s).await;
    let err = s.stop();
    assert_clean(&err);
    assert!(String::from_utf8_lossy(&err).contains(" INFO "));
}

/// A column of numbers that one value turns into text (`NA`) is read as text, which a model
/// then refuses naming model paths: the load says where it happened, with the line.
#[test]
fn a_numeric_column_turned_text_by_one_value_is_said_with_its_line() {
    let dir = TempDir::new("logs-mixed-column");
    let csv = dir.0.join("mixed.csv");
    std::fs::write(
        &csv,
        "customer_id,arpu,plan\nC1,10,basic\nC2,NA,gold\nC3,12,basic\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_nextbest"))
        .args(["features", "compile"])
        .arg(&csv)
        .arg(dir.0.join("mixed.nbf"))
        .output()
        .expect("nextbest runs");
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let warned: Vec<serde_json::Value> = err
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["level"] == "WARN")
        .collect();
    assert_eq!(warned.len(), 1, "{err}");
    assert_eq!(
        (
            &warned[0]["column"],
            &warned[0]["line"],
            &warned[0]["value"]
        ),
        (
            &serde_json::json!("arpu"),
            &serde_json::json!(3),
            &serde_json::json!("NA")
        ),
        "{err}"
    );
    // The time said is the whole command's, the read included.
    let said = String::from_utf8_lossy(&out.stdout);
    let ms = |after: &str| -> u64 {
        said.split(after)
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no `{after}` in {said}"))
    };
    let (total, read) = (ms(") in "), ms(" ms ("));
    assert!(total >= read && said.contains(" ms reading "), "{said}");
}

#[test]
fn features_compile_prints_every_fault_of_a_snapshot_one_a_line() {
    let dir = TempDir::new("logs-every-fault");
    let csv = dir.0.join("multi.csv");
    std::fs::write(
        &csv,
        "customer_id,a,b\nC1,1,2\nC2,NaN,2\nC1,3,4\nC4,inf,1e40\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_nextbest"))
        .args(["features", "compile"])
        .arg(&csv)
        .arg(dir.0.join("multi.nbf"))
        .args(["--log-format", "text"])
        .output()
        .expect("nextbest runs");
    assert!(!out.status.success());
    // On standard error, beside the count; nothing on standard output.
    assert!(
        out.stdout.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    let said = String::from_utf8_lossy(&out.stderr);
    let places: Vec<&str> = said
        .lines()
        .filter(|l| l.contains("multi.csv:"))
        .map(|l| l.split(": ").next().unwrap().rsplit('/').next().unwrap())
        .collect();
    assert_eq!(
        places,
        [
            "multi.csv:3:2",
            "multi.csv:4:1",
            "multi.csv:5:2",
            "multi.csv:5:3"
        ],
        "{said}"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("4 faults in "), "{err}");
    assert!(!dir.0.join("multi.nbf").exists());
}
