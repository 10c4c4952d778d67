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
    drop(guarded);

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
async fn the_redis_password_comes_from_a_file_and_stays_out_of_ps_env_and_log() {
    let password = "s3cret-redis-pw@with:odd/chars";
    let redis = Redis::with_password(password);
    let dir = TempDir::new("startup-redis-password");
    let file = dir.0.join("redis-password");
    std::fs::write(&file, format!("{password}\n")).unwrap();
    let server = Binary::demo(&dir.0.join("data"))
        .args(["--redis", &redis.url(), "--redis-catchup-ms", "2000"])
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
}
