use std::path::{Path, PathBuf};

use clap::Parser;

use super::*;

/// The serve flags parsed from a command line, as the binary parses them.
#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    serve: ServeArgs,
}

fn parse(args: &[&str]) -> ServeArgs {
    Cli::try_parse_from(std::iter::once("nextbest").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("{args:?} does not parse: {e}"))
        .serve
}

fn check(args: &[&str]) -> Result<Settings, SettingsError> {
    parse(args).check()
}

fn refused(args: &[&str]) -> String {
    match check(args) {
        Ok(_) => panic!("{args:?} was accepted"),
        Err(e) => e.to_string(),
    }
}

/// A file in a folder of its own, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, bytes: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("nextbest-settings-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        TempFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

#[test]
fn the_defaults_are_the_documented_values() {
    let s = check(&[]).unwrap();
    assert_eq!(s.server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(s.server.admin_listen.to_string(), "127.0.0.1:9091");
    assert_eq!(s.server.max_body_bytes, 64 * 1024);
    assert_eq!(s.server.header_timeout, Duration::from_secs(10));
    assert_eq!(s.server.body_timeout, Duration::from_secs(2));
    assert_eq!(s.server.deadline, Duration::from_micros(5_000));
    assert_eq!(s.server.max_inflight, 128);
    assert_eq!(s.server.max_connections, 4096);
    assert!(s.server.admin_token.is_none());
    assert_eq!(s.registry.history_len, 5);
    assert_eq!(s.registry.models_path.as_deref(), Some(Path::new("models")));
    assert!(s.watch_models);
    assert_eq!(s.contact.fsync, FsyncPolicy::Always);
    assert_eq!(s.contact.segment_bytes, 64 << 20);
    assert_eq!(s.contact.state.memory_bytes, (512 << 20) / 4 * 3);
    assert_eq!(s.contact.state.keep, Duration::ZERO);
    assert_eq!(s.contact.data_dir.as_deref(), Some(Path::new("data")));
    assert!(s.decision_log.is_none() && s.fleet.is_none() && s.workers.is_none());
}

#[test]
fn every_value_out_of_range_names_its_flag() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--log-segment-mb", "0"],
            "--log-segment-mb 0: must be at least 1",
        ),
        (
            &["--log-segment-mb", "1025"],
            "--log-segment-mb 1025: must be at most 1024",
        ),
        // A durability or shutdown setting past any plan is a typo, not syncing turned off
        // or a stop that never comes.
        (
            &["--fsync-interval-ms", "60001"],
            "--fsync-interval-ms 60001: must be at most 60000",
        ),
        (
            &["--drain-delay-ms", "99999999999"],
            "--drain-delay-ms 99999999999: must be at most 600000",
        ),
        (
            &["--grace-ms", "600001"],
            "--grace-ms 600001: must be at most 600000",
        ),
        (
            &["--body-timeout-ms", "99999999999999"],
            "--body-timeout-ms 99999999999999: must be at most 600000",
        ),
        (
            &["--header-timeout-ms", "600001"],
            "--header-timeout-ms 600001: must be at most 600000",
        ),
        (
            &["--deadline-us", "60000001"],
            "--deadline-us 60000001: must be at most 60000000",
        ),
        (
            &["--max-inflight", "99999999999"],
            "--max-inflight 99999999999: must be at most 1048576",
        ),
        (
            &["--max-connections", "1048577"],
            "--max-connections 1048577: must be at most 1048576",
        ),
        (
            &["--history", "1001"],
            "--history 1001: must be at most 1000",
        ),
        (
            &["--contact-memory-mb", "0"],
            "--contact-memory-mb 0: must be at least 1",
        ),
        (
            &["--keep-events-days", "401"],
            "--keep-events-days 401: must be at most 400",
        ),
        (
            &["--fsync", "interval", "--fsync-interval-ms", "0"],
            "--fsync-interval-ms 0: must be at least 1",
        ),
        // Unused under `--fsync always`, still a mistake.
        (
            &["--fsync-interval-ms", "0"],
            "--fsync-interval-ms 0: must be at least 1",
        ),
        (
            &["--decision-log-file-mb", "0"],
            "--decision-log-file-mb 0: must be at least 1",
        ),
        (
            &["--decision-log-files", "0"],
            "--decision-log-files 0: must be at least 1",
        ),
        (
            &["--decision-log-sample", "1.5"],
            "--decision-log-sample 1.5: must be between 0 and 1",
        ),
        (
            &["--decision-log-sample", "NaN"],
            "--decision-log-sample NaN: must be between 0 and 1",
        ),
        (
            &["--redis-partitions", "0"],
            "--redis-partitions 0: must be at least 1",
        ),
        (
            &["--redis-partitions", "1025"],
            "--redis-partitions 1025: must be at most 1024",
        ),
        (
            &["--max-body-bytes", "0"],
            "--max-body-bytes 0: must be at least 1",
        ),
        (
            &["--max-body-bytes", "67108865"],
            "--max-body-bytes 67108865: must be at most 67108864",
        ),
        (
            &["--header-timeout-ms", "0"],
            "--header-timeout-ms 0: must be at least 1",
        ),
        (
            &["--body-timeout-ms", "0"],
            "--body-timeout-ms 0: must be at least 1",
        ),
        (
            &["--deadline-us", "0"],
            "--deadline-us 0: must be at least 1",
        ),
        (
            &["--max-inflight", "0"],
            "--max-inflight 0: must be at least 1",
        ),
        (
            &["--max-connections", "0"],
            "--max-connections 0: must be at least 1",
        ),
        (&["--history", "1"], "--history 1: must be at least 2"),
        (
            &["--workers", "100000"],
            "--workers 100000: must be at most 1024",
        ),
        (
            &[
                "--listen",
                "127.0.0.1:7000",
                "--admin-listen",
                "127.0.0.1:7000",
            ],
            "--admin-listen 127.0.0.1:7000: the same address as --listen; give the admin \
             listener its own",
        ),
    ];
    for (args, want) in cases {
        assert_eq!(refused(args), *want, "{args:?}");
    }
}

#[test]
fn a_negative_number_is_a_bad_value_of_its_flag() {
    for (flag, value) in [
        ("--max-body-bytes", "-1"),
        ("--grace-ms", "-5"),
        ("--keep-events-days", "-1"),
    ] {
        let e = Cli::try_parse_from(["nextbest", flag, value])
            .err()
            .unwrap_or_else(|| panic!("{flag} {value} parsed"))
            .to_string();
        assert!(
            e.contains(&format!("invalid value '{value}' for '{flag}")),
            "{flag} {value}: {e}"
        );
    }
    // A negative sample is read as a number, and refused as out of range.
    assert_eq!(
        refused(&["--decision-log-sample", "-0.1"]),
        "--decision-log-sample -0.1: must be between 0 and 1"
    );
}

#[test]
fn values_at_their_bounds_are_taken_as_given() {
    let s = check(&[
        "--log-segment-mb",
        "1",
        "--contact-memory-mb",
        "1",
        "--fsync",
        "interval",
        "--fsync-interval-ms",
        "1",
        "--decision-log",
        "dlog",
        "--decision-log-sample",
        "1",
        "--decision-log-file-mb",
        "1024",
        "--decision-log-files",
        "1",
        "--redis",
        "redis://127.0.0.1:6379",
        "--redis-partitions",
        "1024",
        "--history",
        "2",
        "--workers",
        "1024",
        "--no-watch",
        "--keep-events-days",
        "400",
        "--drain-delay-ms",
        "600000",
        "--grace-ms",
        "0",
        "--deadline-us",
        "60000000",
        "--max-inflight",
        "1048576",
    ])
    .unwrap();
    assert_eq!(s.server.drain_delay, Duration::from_millis(600_000));
    assert_eq!(s.server.deadline, Duration::from_secs(60));
    assert_eq!(s.server.max_inflight, 1 << 20);
    let longest = check(&["--fsync", "interval", "--fsync-interval-ms", "60000"]).unwrap();
    assert_eq!(
        longest.contact.fsync,
        FsyncPolicy::Interval(Duration::from_secs(60))
    );
    assert_eq!(s.contact.state.keep, Duration::from_secs(400 * 86_400));
    assert_eq!(s.contact.segment_bytes, 1 << 20);
    assert_eq!(s.contact.state.memory_bytes, (1 << 20) / 4 * 3);
    assert_eq!(
        s.contact.fsync,
        FsyncPolicy::Interval(Duration::from_millis(1))
    );
    let log = s.decision_log.unwrap();
    assert_eq!(
        (log.dir, log.sample, log.file_bytes, log.max_files),
        (PathBuf::from("dlog"), 1.0, 1024 << 20, 1)
    );
    assert_eq!(s.fleet.unwrap().partitions, 1024);
    assert_eq!(s.registry.history_len, 2);
    assert_eq!(s.workers.map(NonZeroUsize::get), Some(1024));
    assert!(!s.watch_models);
    // Port 0 twice is two ephemeral ports, not one address.
    check(&["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"]).unwrap();
}

#[test]
fn the_admin_token_file_is_read_trimmed_and_never_empty() {
    let good = TempFile::new("token", "  s3cret\n");
    let s = check(&["--admin-token-file", good.path()]).unwrap();
    let token = s.server.admin_token.expect("a token");
    assert!(token.matches(b"s3cret"));

    let empty = TempFile::new("empty", " \n");
    assert_eq!(
        refused(&["--admin-token-file", empty.path()]),
        format!(
            "--admin-token-file {}: the file is empty; put the token in it",
            empty.path()
        )
    );
    let missing = format!("{}.missing", good.path());
    let e = refused(&["--admin-token-file", &missing]);
    assert!(
        e.starts_with(&format!("--admin-token-file {missing}: ")) && e.contains("No such file"),
        "{e}"
    );
}

#[test]
fn a_bad_fallback_file_is_refused_with_its_fault() {
    let bad = TempFile::new(
        "fallback.json",
        r#"{"web": {"default": [{"offer_id": "x", "content": {"title": "", "image_url": "nope", "cta_url": "https://a"}}]}}"#,
    );
    let e = refused(&["--fallback-file", bad.path()]);
    assert!(
        e.starts_with("--fallback-file: ") && e.contains("web.default[0].content"),
        "{e}"
    );
    let good = TempFile::new(
        "fallback-ok.json",
        r#"{"web": {"default": [{"offer_id": "w", "content": {"title": "Hi", "body": "", "image_url": "https://cdn.test/w.jpg", "cta_url": "https://shop.test/"}}]}}"#,
    );
    let s = check(&["--fallback-file", good.path()]).unwrap();
    assert!(s
        .builtin
        .lookup("web", "home")
        .offers_json
        .contains("\"w\""));
}

#[test]
fn an_admin_listener_off_loopback_needs_a_token_or_the_explicit_flag() {
    let e = refused(&["--admin-listen", "0.0.0.0:9091"]);
    assert_eq!(
        e,
        "--admin-listen 0.0.0.0:9091: not a loopback address, and no admin token is set: anyone \
         who reaches it could swap models; set a token with --admin-token-file PATH \
         (NEXTBEST_ADMIN_TOKEN_FILE), or pass --admin-insecure to allow it without one"
    );
    assert!(refused(&["--admin-listen", "[::]:9091"]).contains("--admin-token-file"));
    assert!(refused(&["--admin-listen", "10.1.2.3:9091"]).contains("--admin-insecure"));
    // Loopback in every spelling needs nothing.
    for addr in [
        "127.0.0.1:9091",
        "127.9.9.9:9091",
        "[::1]:9091",
        "[::ffff:127.0.0.1]:9091",
    ] {
        check(&["--admin-listen", addr]).unwrap_or_else(|e| panic!("{addr}: {e}"));
    }
    // A token, or the explicit flag, allows it.
    let token = TempFile::new("admin-token", "t0ken\n");
    let s = check(&[
        "--admin-listen",
        "0.0.0.0:9091",
        "--admin-token-file",
        token.path(),
    ])
    .unwrap();
    assert!(s.server.admin_token.is_some());
    let s = check(&["--admin-listen", "0.0.0.0:9091", "--admin-insecure"]).unwrap();
    assert!(s.server.admin_token.is_none());
}

/// The password the Redis client will send for a URL.
fn password_of(url: &str) -> Option<String> {
    use redis::IntoConnectionInfo as _;
    url.into_connection_info()
        .unwrap()
        .redis_settings()
        .password()
        .map(str::to_owned)
}

#[test]
fn the_redis_password_file_goes_into_the_url_encoded() {
    // Characters that mean something in a URL's user information.
    let secret = "p@ss:w/rd#1%?";
    let file = TempFile::new("redis-password", &format!("{secret}\n"));
    let s = check(&[
        "--redis",
        "redis://127.0.0.1:6379/0",
        "--redis-password-file",
        file.path(),
    ])
    .unwrap();
    let url = s.fleet.unwrap().url;
    assert_eq!(password_of(&url).as_deref(), Some(secret), "{url}");
    assert!(url.ends_with("@127.0.0.1:6379/0"), "{url}");
    // A user name in the URL stays.
    let with_user = redis_url(
        &"rediss://app@redis.svc:6380".parse().unwrap(),
        Some(&file.0),
    )
    .unwrap();
    assert!(with_user.starts_with("rediss://app:"), "{with_user}");
    assert_eq!(password_of(&with_user).as_deref(), Some(secret));
}

#[test]
fn a_redis_password_in_two_places_or_nowhere_is_refused() {
    let file = TempFile::new("redis-password-2", "s3cret");
    let e = refused(&[
        "--redis",
        "redis://:other@127.0.0.1:6379",
        "--redis-password-file",
        file.path(),
    ]);
    assert_eq!(
        e,
        format!(
            "--redis-password-file {}: --redis already holds a password; give it in one place",
            file.path()
        )
    );
    assert!(!e.contains("other"), "{e}");
    let empty = TempFile::new("redis-password-empty", "\n");
    assert_eq!(
        refused(&[
            "--redis",
            "redis://127.0.0.1:6379",
            "--redis-password-file",
            empty.path()
        ]),
        format!(
            "--redis-password-file {}: the file is empty; put the password in it",
            empty.path()
        )
    );
    let missing = format!("{}.missing", file.path());
    assert!(refused(&[
        "--redis",
        "redis://127.0.0.1:6379",
        "--redis-password-file",
        &missing
    ])
    .starts_with(&format!("--redis-password-file {missing}: ")),);
    // Without --redis the file has nothing to go into: a server says so at start (see
    // tests/startup.rs), a one-off command refuses.
    let alone = check(&["--redis-password-file", file.path()]).unwrap();
    assert!(alone.fleet.is_none());
    let args = RedisArgs {
        redis_password_file: Some(file.0.clone()),
        ..RedisArgs::default()
    };
    assert_eq!(
        args.check().unwrap_err().to_string(),
        format!(
            "--redis-password-file {}: is set but --redis is not (NEXTBEST_REDIS): give the \
             fleet's Redis URL too",
            file.path()
        )
    );
}

#[test]
fn a_redis_url_the_client_cannot_take_is_refused_with_its_password_hidden() {
    let e = refused(&["--redis", "http://:s3cret@127.0.0.1:6379"]);
    assert!(
        e.starts_with("--redis http://***@127.0.0.1:6379: not a Redis URL"),
        "{e}"
    );
    assert!(!e.contains("s3cret"), "{e}");
    // A password with a character a URL reserves, unescaped: the URL does not parse, and the
    // error quoting it still hides the password.
    for url in [
        "redis://:s3cr/et@127.0.0.1:6379",
        "redis://default:s3cr#et@127.0.0.1:6379",
        "redis://:s3cr?et@127.0.0.1:6379",
    ] {
        let e = refused(&["--redis", url]);
        assert!(e.starts_with("--redis redis://***@127.0.0.1:6379"), "{e}");
        assert!(!e.contains("s3cr"), "{e}");
        assert!(
            e.ends_with(
                "a password holding any of @ : / ? # % or a space must be percent-encoded in the \
                 URL, or given in --redis-password-file"
            ),
            "{e}"
        );
    }
    // A port out of range is named as such.
    let e = refused(&["--redis", "redis://127.0.0.1:99999"]);
    assert!(e.contains("not a Redis URL (invalid port number)"), "{e}");
    let e = refused(&["--redis", "http://:s3cret@127.0.0.1:6379"]);
    assert!(
        e.contains("not a Redis URL (the scheme is http:, not redis: or rediss:)"),
        "{e}"
    );
    // The client's Unix socket URL stays accepted.
    assert!(check_redis_url("redis+unix:///run/redis.sock").is_ok());
}

#[test]
fn a_snapshot_store_that_is_a_file_is_refused_naming_the_flag() {
    let file = TempFile::new("f3.nbf", "not a folder");
    let e = refused(&["--snapshot-store", file.path()]);
    assert!(
        e.starts_with(&format!("--snapshot-store {}: is a file", file.path())),
        "{e}"
    );
    // A folder that does not exist yet is made at the first load.
    let missing = format!("{}.d", file.path());
    assert!(check(&["--snapshot-store", &missing]).is_ok());
}

/// `--features-null` takes words comma-separated or repeated, and refuses one that would hide
/// values, naming the flag.
#[test]
fn null_words_are_checked_once_and_reach_the_registry() {
    let s = check(&["--features-null", "NA,\\N", "--features-null", "NULL"]).unwrap();
    assert_eq!(
        s.registry.null_words,
        crate::features::NullWords::new(&["NA", "\\N", "NULL"]).unwrap()
    );
    assert_eq!(
        check(&[]).unwrap().registry.null_words,
        crate::features::NullWords::default()
    );
    // An empty value (an empty NEXTBEST_FEATURES_NULL in a template) names no word.
    for empty in ["", ",", "NA,,"] {
        let s = check(&["--features-null", empty]).unwrap();
        let want: &[&str] = if empty == "NA,," { &["NA"] } else { &[] };
        assert_eq!(
            s.registry.null_words,
            crate::features::NullWords::new(want).unwrap()
        );
    }
    let e = refused(&["--features-null", "NA,0"]);
    assert_eq!(
        e,
        "--features-null NA,0: `0` reads as a number, so it would hide every such value"
    );
}

#[test]
fn a_listener_takes_an_address_or_a_host_name() {
    let s = parse(&[
        "--listen",
        "localhost:8080",
        "--admin-listen",
        "0.0.0.0:9091",
    ]);
    assert_eq!(s.listen, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(s.admin_listen, "0.0.0.0:9091".parse().unwrap());
    assert_eq!(
        parse(&["--listen", "[::1]:80"]).listen,
        "[::1]:80".parse().unwrap()
    );
    let e = Cli::try_parse_from(["nextbest", "--listen", "8080"])
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("give IP:PORT or HOST:PORT"), "{e}");
}

#[test]
fn a_decision_log_that_is_a_file_is_refused_naming_the_flag() {
    let file = TempFile::new("dlog", "");
    assert_eq!(
        refused(&["--decision-log", file.path()]),
        format!(
            "--decision-log {}: is a file: give the folder the decision log's files are written in",
            file.path()
        )
    );
}

#[test]
fn an_admin_token_with_white_space_around_it_is_refused_unshown() {
    for token in [" ", " s3cret-token", "s3cret-token\n"] {
        let e = refused(&["--admin-token", token]);
        assert_eq!(
            e,
            "--admin-token (hidden): has white space around it, which no Authorization header \
             can carry: give the token alone"
        );
    }
    check(&["--admin-token", "s3cret token inside"]).unwrap();
}

/// What the server writes for itself (the event log, the decision log) may not be the models
/// folder or inside it, however the paths are written: a model published by replacing the
/// folder (`rm -rf models && cp -r new models`) took the event log with it. Beside it is fine.
#[test]
fn the_data_and_decision_log_folders_are_not_in_the_models_folder() {
    let dir = std::env::temp_dir().join(format!("nb-settings-models-{}", std::process::id()));
    let models = dir.join("models");
    std::fs::create_dir_all(models.join("data")).unwrap();
    let m = models.display().to_string();
    let inside = format!("{}/../models/data", models.display());
    for (flag, value) in [
        ("--data-dir", m.clone()),
        ("--data-dir", inside.clone()),
        ("--data-dir", format!("{m}/not-made-yet")),
        ("--decision-log", format!("{m}/decisions")),
    ] {
        let e = refused(&["--models", &m, flag, &value]);
        assert!(
            e.starts_with(&format!(
                "{flag} {value}: is the models folder {m} or inside it"
            )),
            "{e}"
        );
    }
    let beside = dir.join("data").display().to_string();
    assert!(check(&["--models", &m, "--data-dir", &beside]).is_ok());
    // A model file named directly: its folder is the models folder.
    let file = format!("{m}/model.json");
    let e = refused(&["--models", &file, "--data-dir", &m]);
    assert!(e.contains(&format!("is the models folder {m}: ")), "{e}");
    // ... but not what lies inside it: a model file's folder is a working folder, and the
    // default `data` beside the file (there already, as at a restart) is the server's own.
    assert!(check(&["--models", &file, "--data-dir", &format!("{m}/data")]).is_ok());
    let _ = std::fs::remove_dir_all(&dir);
}
