//! Start-up as an operator meets it, through the real binary: what it refuses before loading
//! anything, how a fatal error reads (one line, in the log's format), and secrets given in
//! files staying out of `ps`, the environment and the log.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::binary::Binary;
use support::redis::Redis;
use support::*;

/// The admin listener's address, reached over loopback (it may be bound to every interface).
fn loopback(addr: SocketAddr) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], addr.port()))
}

#[tokio::test]
async fn a_non_loopback_admin_listener_without_a_token_refuses_to_start() {
    let dir = TempDir::new("startup-admin");
    let data = dir.0.join("data");
    let (status, stderr) = Binary::demo_on(&data, "127.0.0.1:0", "0.0.0.0:0").run_to_exit();
    assert!(!status.success(), "it started: {stderr}");
    assert!(
        stderr.contains("--admin-listen 0.0.0.0:0: not a loopback address")
            && stderr.contains("--admin-token-file")
            && stderr.contains("--admin-insecure"),
        "{stderr}"
    );
    // Refused before anything loaded: the event log's folder was never made.
    assert!(!data.exists(), "the data folder was created");

    // With a token it starts, and the token guards the admin API.
    let token = dir.0.join("token");
    std::fs::write(&token, "t0ken-from-a-file\n").unwrap();
    let guarded = Binary::demo_on(&data, "127.0.0.1:0", "0.0.0.0:0")
        .arg("--admin-token-file")
        .arg(&token)
        .spawn();
    assert_eq!(
        get(loopback(guarded.admin), "/admin/models").await.status,
        401
    );
    assert!(
        !guarded.stderr().contains("admin token"),
        "{}",
        guarded.stderr()
    );
    drop(guarded);
    // A short token on a listener beyond loopback starts, and is warned about.
    std::fs::write(&token, "abc\n").unwrap();
    let short = Binary::demo_on(&data, "127.0.0.1:0", "0.0.0.0:0")
        .arg("--admin-token-file")
        .arg(&token)
        .spawn();
    let log = short.wait_stderr("admin token");
    assert!(
        log.contains("the admin token of a listener beyond loopback is short")
            && log.contains("\"characters\":3"),
        "{log}"
    );
    drop(short);

    // The explicit flag allows it open.
    let open = Binary::demo_on(&dir.0.join("data2"), "127.0.0.1:0", "0.0.0.0:0")
        .arg("--admin-insecure")
        .spawn();
    assert!(open.admin.ip().is_unspecified(), "{}", open.admin);
    assert_eq!(get(loopback(open.admin), "/admin/models").await.status, 200);
}

/// Reads a metric's value from `/metrics`, 0 when absent.
async fn metric(admin: SocketAddr, name: &str) -> f64 {
    let text = String::from_utf8(get(admin, "/metrics").await.body).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn the_redis_password_comes_from_a_file_stays_out_of_ps_env_and_log_and_rotates_live() {
    let password = "s3cret-redis-pw@with:odd/chars";
    let redis = Redis::with_password(password);
    let dir = TempDir::new("startup-redis-password");
    let file = dir.0.join("redis-password");
    std::fs::write(&file, format!("{password}\n")).unwrap();
    let server = Binary::demo(&dir.0.join("data"))
        .args(["--redis", &redis.url()])
        .arg("--redis-password-file")
        .arg(&file)
        .spawn();
    // This Redis answers nothing before AUTH: connected means the file's password was sent.
    let deadline = Instant::now() + Duration::from_secs(20);
    while metric(server.admin, "nextbest_replication_connected").await != 1.0 {
        assert!(
            Instant::now() < deadline,
            "never connected to the password-protected Redis:\n{}",
            server.stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", server.pid())).unwrap();
    let environ = std::fs::read(format!("/proc/{}/environ", server.pid())).unwrap();
    let stats = get(server.admin, "/admin/stats").await.body;
    for (what, bytes) in [
        ("command line", &cmdline),
        ("environment", &environ),
        ("stats", &stats),
    ] {
        assert!(
            !String::from_utf8_lossy(bytes).contains("s3cret-redis-pw"),
            "the Redis password shows in the {what}"
        );
    }
    let log = server.stderr();
    assert!(log.contains("replicating events through redis"), "{log}");
    assert!(
        !log.contains("s3cret-redis-pw"),
        "the password is in the log"
    );

    // The Secret rotates: its file changes in place (a rename, as the kubelet swaps it), Redis
    // takes only the new password, and drops its clients. The replica's next connection reads
    // the file again: an event it takes is shipped, with no restart.
    let rotated = "r0tated-redis-pw";
    let next = dir.0.join("redis-password.new");
    std::fs::write(&next, format!("{rotated}\n")).unwrap();
    std::fs::rename(&next, &file).unwrap();
    let mut con = ::redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let _: () = ::redis::cmd("AUTH").arg(password).query(&mut con).unwrap();
    let _: () = ::redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg(rotated)
        .query(&mut con)
        .unwrap();
    // The replica's connections (not this one: Redis skips the caller).
    let killed: i64 = ::redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .query(&mut con)
        .unwrap();
    assert!(killed >= 1, "the replica held no connection to drop");
    let shipped = "nextbest_replication_events_total{direction=\"shipped\"}";
    let before = metric(server.admin, shipped).await;
    post_events(
        server.public,
        serde_json::json!([{"type": "impression", "customer_id": "C0000001",
                            "offer_id": "data_boost_10gb", "channel": "web"}]),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(server.admin, shipped).await <= before {
        assert!(
            Instant::now() < deadline,
            "the event was never shipped with the rotated password:\n{}",
            server.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = server.stderr();
    assert!(
        log.contains("read a new password from --redis-password-file"),
        "{log}"
    );
    assert!(!log.contains(rotated), "the new password is in the log");
}

/// A second server on a data folder the first holds: an operational error with a cause chain.
fn refused_second_server(tag: &str, args: &[&str]) -> (String, String) {
    let dir = TempDir::new(tag);
    let first = Binary::demo(&dir.0).spawn();
    let mut second = Binary::demo(&dir.0)
        .env("RUST_BACKTRACE", "1")
        .env("RUST_LIB_BACKTRACE", "1");
    for a in args {
        second = second.arg(a);
    }
    let (status, stderr) = second.run_to_exit();
    assert!(!status.success(), "the second server started: {stderr}");
    (stderr, first.pid().to_string())
}

#[test]
fn an_operational_error_is_one_line_without_a_backtrace_or_repeats() {
    let (stderr, pid) = refused_second_server("startup-one-line", &["--log-format", "text"]);
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    let line = errors[0];
    assert!(
        line.contains("in use by another nextbest") && line.contains(&format!("pid {pid}")),
        "{line}"
    );
    assert_eq!(
        stderr.matches("in use by another nextbest").count(),
        1,
        "{stderr}"
    );
    // Every other line is a log line (it starts with its timestamp): no "Caused by:", no frames.
    for l in stderr.lines().filter(|l| !l.starts_with("error: ")) {
        assert!(l.starts_with("20"), "not a log line: {l:?} in\n{stderr}");
    }
    assert!(!stderr.to_lowercase().contains("backtrace"), "{stderr}");
    // Refused before it loaded anything: a large snapshot would make the refusal slow.
    assert!(!stderr.contains("feature snapshot swapped in"), "{stderr}");
    // A data folder that is a file is named as what it is.
    let dir = TempDir::new("startup-data-file");
    let file = dir.0.join("afile");
    std::fs::write(&file, b"").unwrap();
    // So is one under a file; both before anything loads.
    let under = file.join("sub");
    for (data, said) in [
        (&file, "not a folder".to_owned()),
        (
            &under,
            format!("{} is a file, not a folder", file.display()),
        ),
    ] {
        let (status, stderr) = Binary::demo(data)
            .args(["--log-format", "text"])
            .run_to_exit();
        assert!(!status.success());
        assert!(
            stderr.contains(&format!("error: --data-dir {}: {said}", data.display()))
                && !stderr.contains("feature snapshot swapped in"),
            "{stderr}"
        );
    }
}

#[test]
fn with_json_logs_a_fatal_error_is_one_json_line() {
    let (stderr, pid) = refused_second_server("startup-json", &["--log-format", "json"]);
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l:?}")))
        .collect();
    let fatal = lines.last().expect("a line");
    assert_eq!(fatal["level"], "ERROR", "{fatal}");
    let message = fatal["message"].as_str().expect("a message");
    assert!(
        message.contains("in use by another nextbest") && message.contains(&format!("pid {pid}")),
        "{message}"
    );
    assert!(fatal["timestamp"].is_string() && fatal["target"] == "nextbest");
}

#[cfg(feature = "offline")]
#[test]
fn a_campaign_error_says_its_fault_once() {
    let dir = TempDir::new("startup-campaign");
    let missing = dir.0.join("missing.json");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nextbest"))
        .args(["campaign", "run", "--log-format", "text", "--out"])
        .arg(dir.0.join("out"))
        .arg(&missing)
        .env("RUST_BACKTRACE", "1")
        .env("RUST_LIB_BACKTRACE", "1")
        .output()
        .expect("the binary runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].starts_with(&format!("error: campaign file: {}: ", missing.display())),
        "{stderr}"
    );
    assert_eq!(stderr.matches("No such file").count(), 1, "{stderr}");
}

#[test]
fn an_address_in_use_names_the_address_and_the_flag() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = TempDir::new("startup-in-use");
    for (public, admin, flag) in [
        (addr.as_str(), "127.0.0.1:0", "--listen"),
        ("127.0.0.1:0", addr.as_str(), "--admin-listen"),
    ] {
        let (status, stderr) = Binary::demo_on(&dir.0.join(flag), public, admin)
            .args(["--log-format", "text"])
            .run_to_exit();
        assert!(!status.success());
        let line = stderr
            .lines()
            .find(|l| l.starts_with("error: "))
            .unwrap_or_else(|| panic!("no error line: {stderr}"));
        assert!(
            line.starts_with(&format!("error: {flag} {addr}: ")) && line.contains("in use"),
            "{line}"
        );
        // Said before anything loads: no snapshot, no event log.
        assert_eq!(stderr.lines().count(), 1, "only the refusal: {stderr}");
        assert!(!dir.0.join(flag).exists(), "the event log was opened first");
    }
}

#[test]
fn an_empty_or_missing_token_file_is_refused_before_anything_loads() {
    let dir = TempDir::new("startup-token");
    let empty = dir.0.join("empty-token");
    std::fs::write(&empty, "\n").unwrap();
    let missing = dir.0.join("missing-token");
    for (file, says) in [(&empty, "the file is empty"), (&missing, "No such file")] {
        let data = dir.0.join("data");
        let (status, stderr) = Binary::demo(&data)
            .args(["--log-format", "text"])
            .arg("--admin-token-file")
            .arg(file)
            .run_to_exit();
        assert!(!status.success());
        assert_eq!(stderr.lines().count(), 1, "only the refusal: {stderr}");
        assert!(
            stderr.starts_with(&format!("error: --admin-token-file {}: ", file.display()))
                && stderr.contains(says),
            "{stderr}"
        );
        assert!(!data.exists(), "the event log was opened first");
    }
}

#[cfg(not(feature = "offline"))]
#[test]
fn the_lean_build_says_campaigns_are_not_built_in() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nextbest"))
        .args(["campaign", "run", "c.json", "--out", "out"])
        .env("NEXTBEST_LOG_FORMAT", "text")
        .output()
        .expect("the binary runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim_end(),
        "error: nextbest campaign is not built in: this is the lean sidecar \
         (--no-default-features); build with the default `offline` feature for campaigns"
    );
}

#[tokio::test]
async fn a_closed_stdout_does_not_stop_the_server() {
    let dir = TempDir::new("startup-closed-stdout");
    let stderr = dir.0.join("stderr.txt");
    // With stdout closed the server cannot say where it listens, so it is given a port picked
    // here; another test's server may take that port before this one binds it, and then the
    // pick is made again (any other exit fails the test).
    let mut attempts = 0;
    let mut child = 'started: loop {
        attempts += 1;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let public = format!("127.0.0.1:{port}");
        let mut child =
            Binary::demo_on(&dir.0, &public, "127.0.0.1:0").spawn_with_stdout_closed(&stderr);
        let addr: SocketAddr = public.parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if child.0.try_wait().unwrap().is_some() {
                let said = std::fs::read_to_string(&stderr).unwrap_or_default();
                let taken =
                    said.contains(&format!("--listen {public}: ")) && said.contains("in use");
                assert!(
                    taken && attempts < 5,
                    "the server ended when its stdout was closed: {said}"
                );
                continue 'started;
            }
            // Ours once it says it serves on that port (until then another test's server may
            // hold it, and answer, then go).
            let serving = std::fs::read_to_string(&stderr)
                .unwrap_or_default()
                .lines()
                .any(|l| l.contains("serving") && l.contains(&public));
            if serving && get(addr, "/readyz").await.status == 200 {
                break 'started child;
            }
            assert!(Instant::now() < deadline, "the server never became ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    // A stop it handles after its line: a clean exit, not a panic on the closed pipe.
    let pid = child.0.id().to_string();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = child.0.wait().unwrap();
    assert!(status.success(), "the server ended with {status}");
}

#[test]
fn a_refused_flag_value_is_one_line_naming_the_flag_and_boolean_variables_take_yes_and_1() {
    let dir = TempDir::new("startup-flag-line");
    for (args, format) in [
        (["--log-format", "json", "--history", "x"], "json"),
        (["--log-format", "text", "--fsync", "sometimes"], "text"),
    ] {
        let mut bin = Binary::demo(&dir.0);
        for a in args {
            bin = bin.arg(a);
        }
        let (status, stderr) = bin.run_to_exit();
        assert_eq!(status.code(), Some(2), "{stderr}");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{stderr}");
        let flag = args[2];
        assert!(lines[0].contains(flag), "{stderr}");
        match format {
            "json" => {
                let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
                assert_eq!(v["level"], "ERROR", "{v}");
            }
            _ => assert!(lines[0].starts_with("error: "), "{stderr}"),
        }
    }
    // The line keeps what clap names after its first line: the missing argument, the values
    // a flag takes, a similar flag.
    for (args, line) in [
        (
            &["features", "compile", "models/features.csv"][..],
            "error: the following required arguments were not provided: <OUTPUT>",
        ),
        (
            &["--fsync", "sometimes"][..],
            "error: invalid value 'sometimes' for '--fsync <FSYNC>' [possible values: always, interval]",
        ),
        (
            &["--max-inflght", "10"][..],
            "error: unexpected argument '--max-inflght' found; tip: a similar argument exists: '--max-inflight'",
        ),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_nextbest"))
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("NEXTBEST_LOG_FORMAT", "text")
            .output()
            .expect("the binary runs");
        assert_eq!(out.status.code(), Some(2));
        assert_eq!(String::from_utf8_lossy(&out.stderr).trim_end(), line);
    }
    // A flag the environment gave, not the command line, is named with its variable.
    for (args, var, line) in [
        (
            &["--admin-token-file", "token.txt"][..],
            ("NEXTBEST_ADMIN_TOKEN", "s3cret"),
            "error: the argument '--admin-token-file <ADMIN_TOKEN_FILE>' cannot be used with \
             '--admin-token <ADMIN_TOKEN>' (--admin-token was set by NEXTBEST_ADMIN_TOKEN in the \
             environment)",
        ),
        (
            &[][..],
            ("NEXTBEST_FSYNC", "sometimes"),
            "error: invalid value 'sometimes' for '--fsync <FSYNC>' [possible values: always, \
             interval] (--fsync was set by NEXTBEST_FSYNC in the environment)",
        ),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_nextbest"))
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("NEXTBEST_LOG_FORMAT", "text")
            .env(var.0, var.1)
            .output()
            .expect("the binary runs");
        assert_eq!(out.status.code(), Some(2));
        assert_eq!(String::from_utf8_lossy(&out.stderr).trim_end(), line);
    }
    // So is one whose value the settings check refuses, with clap's exit code: a wrong call,
    // not a failed run.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nextbest"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("NEXTBEST_LOG_FORMAT", "text")
        .env("NEXTBEST_LOG_SEGMENT_MB", "0")
        .output()
        .expect("the binary runs");
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim_end(),
        "error: --log-segment-mb 0: must be at least 1 (--log-segment-mb was set by \
         NEXTBEST_LOG_SEGMENT_MB in the environment)"
    );
    // The data folder a ConfigMap gives the server and the replay alike is read by `replay
    // --estimate`, and taken quietly by a plain replay; on a plain replay's command line it is
    // refused, since it would be ignored there.
    let replay = |args: &[&str], var: Option<&str>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_nextbest"));
        cmd.args(["replay", "--log", "no-such-log", "--candidate", "models"])
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("NEXTBEST_LOG_FORMAT", "text")
            .env_remove("NEXTBEST_DATA_DIR");
        if let Some(v) = var {
            cmd.env("NEXTBEST_DATA_DIR", v);
        }
        let out = cmd.output().expect("the binary runs");
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).trim_end().to_owned()
    };
    let mut wrong_calls = vec![
        &[
            "replay",
            "--log",
            "x",
            "--candidate",
            "models",
            "--data-dir",
            "data",
        ][..],
    ];
    // The lean build (`--no-default-features`) has no campaigns to refuse flags of.
    if cfg!(feature = "offline") {
        wrong_calls.push(&["campaign", "run", "c.json", "--out", "o", "--shard", "1/2"]);
        wrong_calls.push(&[
            "campaign",
            "run",
            "c.json",
            "--out",
            "o",
            "--now",
            "yesterday",
        ]);
        wrong_calls.push(&[
            "campaign",
            "run",
            "c.json",
            "--out",
            "o",
            "--workers",
            "1025",
        ]);
    }
    for args in wrong_calls {
        let wrong_call = std::process::Command::new(env!("CARGO_BIN_EXE_nextbest"))
            .args(args)
            .env_remove("NEXTBEST_DATA_DIR")
            .output()
            .expect("the binary runs");
        let said = String::from_utf8_lossy(&wrong_call.stderr);
        assert_eq!(wrong_call.status.code(), Some(2), "{args:?}: {said}");
        if args.contains(&"--workers") {
            assert!(
                said.contains("\"--workers 1025: must be at most 1024\""),
                "{said}"
            );
        }
    }
    assert_eq!(
        replay(&["--data-dir", "data"], None),
        "error: --data-dir is read with --estimate only (the outcomes' event log): add \
         --estimate, or leave --data-dir out"
    );
    let shared = replay(&[], Some("data"));
    assert!(
        shared.contains("no-such-log: no such folder (--log") && !shared.contains("--data-dir"),
        "{shared}"
    );
    let estimate = replay(&["--estimate"], Some("no-such-data"));
    assert!(!estimate.contains("required arguments"), "{estimate}");

    // Boolean variables take what people write in a manifest (the server starts and says
    // where it listens; `yes` and `0` were refused when only `true` and `false` were taken).
    let srv = Binary::demo(&dir.0.join("b"))
        .env("NEXTBEST_NO_WATCH", "yes")
        .env("NEXTBEST_READY_WHEN_BEHIND", "0")
        .spawn();
    assert!(srv.public.port() > 0);
}

#[test]
fn a_log_filter_that_does_not_parse_is_said_not_swallowed() {
    let dir = TempDir::new("startup-log-filter");
    let srv = Binary::demo(&dir.0)
        .env("NEXTBEST_LOG", "nextbest=loud")
        .spawn();
    let log = srv.wait_stderr("is not a log filter");
    assert!(
        log.contains("NEXTBEST_LOG is not a log filter") && log.contains("nextbest=loud"),
        "{log}"
    );
}

#[test]
fn a_missing_fallback_file_is_one_line() {
    let dir = TempDir::new("startup-fallback");
    let (status, stderr) = Binary::demo(&dir.0)
        .args(["--log-format", "text", "--fallback-file"])
        .arg(dir.0.join("nope.json"))
        .run_to_exit();
    assert!(!status.success(), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].starts_with("error: --fallback-file: ") && lines[0].contains("nope.json"),
        "{stderr}"
    );
    // A device in place of a file is refused at once, not read until memory runs out.
    for flag in ["--fallback-file", "--admin-token-file"] {
        let (status, stderr) = Binary::demo(&dir.0)
            .args(["--log-format", "text", flag, "/dev/zero"])
            .run_to_exit();
        assert!(!status.success(), "{flag}: {stderr}");
        assert!(
            stderr.starts_with(&format!("error: {flag}"))
                && stderr.contains("/dev/zero")
                && stderr.contains("not a regular file (a device)"),
            "{flag}: {stderr}"
        );
    }
}

/// `nextbest model check` on the demo with one more variable in the environment.
fn model_check_with(name: &str, value: &str) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_nextbest"))
        .args(["model", "check", "models/model.json"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("NEXTBEST_LOG_FORMAT", "text")
        .env(name, value)
        .output()
        .expect("the binary runs")
}

#[test]
fn a_misspelt_variable_is_refused_naming_the_one_meant_and_another_is_reported() {
    let out = model_check_with("NEXTBEST_WORKER", "2");
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim_end(),
        "error: environment variable NEXTBEST_WORKER is not one nextbest reads; \
         did you mean NEXTBEST_WORKERS?"
    );
    assert!(out.stdout.is_empty(), "the command ran");

    // Another command's variable (serve's) is known to every command: one ConfigMap feeds several.
    let out = model_check_with("NEXTBEST_LISTEN", "127.0.0.1:9999");
    assert!(out.status.success(), "{out:?}");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("NEXTBEST_LISTEN"));

    let out = model_check_with("NEXTBEST_BUILD_LABEL", "2");
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "environment variable NEXTBEST_BUILD_LABEL is not one nextbest reads; it is ignored"
        ),
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ok: demo"));
}

/// A start whose snapshot is missing says so, naming the snapshot, not the model that loaded.
#[test]
fn a_missing_snapshot_at_start_is_named_as_the_snapshot() {
    let models = TempModels::new("startup-no-snapshot");
    std::fs::remove_file(models.dir.join("features.csv")).unwrap();
    let dir = TempDir::new("startup-no-snapshot-data");
    let srv = Binary::with_models(&models.dir, &dir.0).spawn();
    let log = srv.wait_stderr("serving without");
    let refused = log
        .lines()
        .find(|l| l.contains("load refused"))
        .unwrap_or_else(|| panic!("{log}"));
    let v: serde_json::Value = serde_json::from_str(refused).unwrap();
    assert_eq!(
        v["source"],
        format!("features {}", models.dir.join("features.csv").display()),
        "{refused}"
    );
    // Nothing served before: the refusal does not claim what serves is unchanged.
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("load refused; no model serves yet")),
        "{refused}"
    );
    assert!(
        log.contains("serving without a feature snapshot: decisions get built-in fallback content"),
        "{log}"
    );
}

/// A shard without `--now` is refused at once: each shard would take its own clock, and the
/// merge would refuse them all once every pod had run.
#[cfg(feature = "offline")]
#[test]
fn a_shard_without_now_is_refused_before_it_runs() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nextbest"))
        .args([
            "campaign",
            "run",
            "models/campaigns/demo_sms.json",
            "--out",
            "/nonexistent/o",
        ])
        .args(["--shard", "0/4"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("NEXTBEST_LOG_FORMAT", "text")
        .output()
        .expect("the binary runs");
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim_end(),
        "error: --shard needs --now: every shard of a run must decide as of the same time \
         (the merge refuses shards of different runs)"
    );
}

/// The open-file limit fits the connection bounds: a low soft limit is raised to what both
/// listeners need (within the hard limit), and a hard limit below it is said at start, since
/// at the file limit accept fails before the bound can make room.
#[test]
fn the_open_file_limit_is_raised_to_fit_the_connection_bounds_or_said() {
    let dir = TempDir::new("startup-nofile");
    // (soft, hard) of `Max open files` in a limits file (`None`: unlimited).
    let limits_of = |path: &str| {
        let limits = std::fs::read_to_string(path).unwrap();
        let line = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .unwrap()
            .to_owned();
        let f: Vec<Option<u64>> = line
            .split_whitespace()
            .skip(3)
            .take(2)
            .map(|v| v.parse().ok())
            .collect();
        (f[0], f[1])
    };
    let need = 2 * 4096 + 256;
    // Soft 128 under this machine's hard limit: raised to 2 x 4,096 + 256 for the default
    // bound, or as far as the hard limit goes (and then said).
    let hard = limits_of("/proc/self/limits").1;
    let shell_hard = hard.map_or("unlimited".to_owned(), |h| h.to_string());
    let raised = Binary::demo_with_file_limit(&dir.0.join("a"), "128", &shell_hard).spawn();
    let soft = limits_of(&format!("/proc/{}/limits", raised.pid())).0;
    assert_eq!(soft, Some(hard.map_or(need, |h| h.min(need))));
    if hard.is_none_or(|h| h >= need) {
        assert!(
            !raised.stderr().contains("open-file limit"),
            "{}",
            raised.stderr()
        );
    }
    drop(raised);
    // A hard limit of 1,000: as far as it goes, and said.
    let low = Binary::demo_with_file_limit(&dir.0.join("b"), "128", "1000").spawn();
    assert_eq!(
        limits_of(&format!("/proc/{}/limits", low.pid())).0,
        Some(1000)
    );
    let log = low.wait_stderr("open-file limit");
    assert!(
        log.contains("the open-file limit is below what --max-connections needs")
            && log.contains("\"needed\":8448")
            && log.contains("\"open_file_limit\":1000"),
        "{log}"
    );
    drop(low);
    // Out of descriptors, accept fails every 20 ms: said once, and its end with the count.
    let full = Binary::demo_with_file_limit(&dir.0.join("c"), "300", "300").spawn();
    let held: Vec<std::net::TcpStream> = (0..400)
        .filter_map(|_| std::net::TcpStream::connect(full.public).ok())
        .collect();
    full.wait_stderr("accept failed");
    drop(held);
    let mut answered = false;
    for _ in 0..100 {
        let Ok(mut c) = std::net::TcpStream::connect(full.public) else {
            continue;
        };
        use std::io::{Read as _, Write as _};
        let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = c.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
        let mut answer = String::new();
        let _ = c.read_to_string(&mut answer);
        if answer.starts_with("HTTP/1.1 200") {
            answered = true;
            break;
        }
    }
    assert!(answered, "no answer once the descriptors were free");
    let log = full.wait_stderr("accepting connections again");
    // One line for the outage (the queued connections closed meanwhile may start another
    // after it, which is said again).
    let outage = log
        .split("accepting connections again")
        .next()
        .unwrap_or("");
    assert_eq!(outage.matches("accept failed").count(), 1, "{log}");
    let failures: u64 = log
        .lines()
        .find(|l| l.contains("accepting connections again"))
        .and_then(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            v["failures"].as_u64()
        })
        .unwrap_or(0);
    assert!(failures >= 1, "{log}");
}

/// `features compile A.csv A.csv` (a completion slip) would overwrite the export with its
/// binary form: refused in one line, the export untouched.
#[test]
fn compiling_a_snapshot_over_itself_is_refused() {
    let dir = TempDir::new("compile-over-itself");
    let csv = dir.0.join("a.csv");
    let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/models/features.csv")).unwrap();
    std::fs::write(&csv, &bytes).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nextbest"))
        .args(["features", "compile", "a.csv", "./a.csv"])
        .current_dir(&dir.0)
        .env("NEXTBEST_LOG_FORMAT", "text")
        .output()
        .expect("the binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("a.csv is the snapshot being compiled"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&csv).unwrap(), bytes);
}

/// `features show` prints what a decision reads of a customer: numbers exactly as given,
/// text as written, null for missing; an id the snapshot lacks fails the command after them.
#[test]
fn features_show_prints_a_customers_values_as_held() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nextbest"))
        .args([
            "features",
            "show",
            "models/features.csv",
            "C0000001",
            "NOPE",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("NEXTBEST_LOG_FORMAT", "text")
        .output()
        .expect("the binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("1 of 2 ids are not in models/features.csv: NOPE"),
        "{stderr}"
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(v["customer_id"], "C0000001");
    let f = &v["features"];
    assert_eq!(f["arpu_30d"], 34.56, "{v}");
    assert_eq!(f["segment"], "gold", "{v}");
    assert!(f["days_since_last_topup"].is_null(), "{v}");
}

/// A second SIGTERM during the drain stops at once: the drain waits for the balancer, and an
/// operator who signals again does not want to.
#[test]
fn a_second_signal_cuts_the_drain_short() {
    let dir = TempDir::new("startup-second-signal");
    let mut p = Binary::demo(&dir.0)
        .args(["--drain-delay-ms", "60000"])
        .spawn();
    p.signal("TERM");
    p.wait_stderr("terminated; stopping");
    p.signal("TERM");
    let status = p.child.0.wait().unwrap();
    let log = p.stderr();
    assert!(status.success(), "{log}");
    assert!(
        log.contains("a second signal; stopping without waiting for the drain"),
        "{log}"
    );
}

/// Whatever umask it inherits, no file the process writes is readable by other users of the
/// host (here a compiled snapshot, under an inherited umask of 022).
#[test]
fn files_written_are_never_readable_by_all() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("startup-umask");
    let out = dir.0.join("f.nbf");
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg("umask 022 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_nextbest"))
        .args(["features", "compile"])
        .arg(demo_dir().join("features.csv"))
        .arg(&out)
        .env("NEXTBEST_LOG_FORMAT", "text")
        .status()
        .expect("sh runs");
    assert!(status.success());
    let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode & 0o007, 0, "{mode:o}");
}

/// A data folder an earlier release wrote readable by all is named at start, with the command
/// that closes it; nothing in it is changed.
#[test]
fn a_data_folder_left_open_by_an_earlier_release_is_said() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("startup-open-data");
    let data = dir.0.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o750)).unwrap();
    let history = data.join("model-history.jsonl");
    std::fs::write(&history, b"").unwrap();
    std::fs::set_permissions(&history, std::fs::Permissions::from_mode(0o644)).unwrap();
    let server = Binary::demo(&data)
        .env("NEXTBEST_LOG_FORMAT", "text")
        .spawn();
    let needle = "are open to other users of the host";
    let stderr = server.wait_stderr(needle);
    assert!(
        stderr.contains(needle)
            && stderr.contains(&format!("chmod -R o-rwx {}", data.display()))
            && stderr.contains(&format!("count=1 first={}", history.display())),
        "{stderr}"
    );
    let mode = std::fs::metadata(&history).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644);
    server.stop();
}

/// Fleet flags that change nothing are said at start: without `--redis` (a fleet's Redis given
/// under a name nextbest does not read) the server runs alone; `--redis-catchup-ms` does
/// nothing without `--ready-when-behind`.
#[test]
fn fleet_settings_that_change_nothing_are_said_at_start() {
    let dir = TempDir::new("startup-fleet-alone");
    let alone = Binary::demo(&dir.0.join("alone"))
        .args(["--ready-when-behind"])
        // The manifests' value, the default: given, it still says a fleet was meant.
        .env("NEXTBEST_REDIS_PARTITIONS", "8")
        .env("NEXTBEST_REDIS_PASSWORD_FILE", dir.0.join("redis-password"))
        .env("NEXTBEST_REDIS_URL", "redis://127.0.0.1:9")
        .env("NEXTBEST_LOG_FORMAT", "text")
        .spawn();
    let said = alone.wait_stderr("--redis-password-file is set but");
    for flag in [
        "--ready-when-behind",
        "--redis-partitions",
        "--redis-password-file",
    ] {
        assert!(
            said.contains(&format!(
                "{flag} is set but --redis is not (NEXTBEST_REDIS): this server runs alone, and \
                 the events it takes reach no other replica"
            )),
            "{said}"
        );
    }
    let redis = Redis::start();
    let waits = Binary::demo(&dir.0.join("waits"))
        .args(["--redis", &redis.url(), "--redis-catchup-ms", "500"])
        .env("NEXTBEST_LOG_FORMAT", "text")
        .spawn();
    let said = waits.wait_stderr("--redis-catchup-ms is set without");
    assert!(
        said.contains(
            "--redis-catchup-ms is set without --ready-when-behind, so it changes nothing: \
             /readyz waits for the fleet's events however long it takes"
        ) && !said.contains("is set but --redis is not"),
        "{said}"
    );
}

/// A decision log flag without `--decision-log` does nothing: said at start, naming both.
#[test]
fn a_decision_log_setting_without_the_log_is_said_to_do_nothing() {
    let dir = TempDir::new("startup-dlog-sample");
    let server = Binary::demo(&dir.0.join("data"))
        .args(["--decision-log-sample", "0.5"])
        .env("NEXTBEST_LOG_FORMAT", "text")
        .spawn();
    let said = server.wait_stderr("is set but no decision log is written");
    assert!(
        said.contains("--decision-log-sample is set but no decision log is written: give --decision-log DIR too"),
        "{said}"
    );
}
