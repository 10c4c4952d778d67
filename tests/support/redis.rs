//! A real `redis-server` on an ephemeral loopback port, killed when dropped.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running redis-server.
pub struct Redis {
    child: Option<Child>,
    /// Its address.
    pub addr: SocketAddr,
}

impl Redis {
    /// Starts one on a free loopback port; fails the test, naming the package, without it.
    pub fn start() -> Redis {
        Redis::on_port(Redis::free_port())
    }

    /// Starts one on the given port (to bring a killed one back where replicas expect it).
    pub fn on_port(port: u16) -> Redis {
        Redis::spawn(port, &[])
    }

    /// Starts one on a free loopback port that refuses clients without `password`.
    pub fn with_password(password: &str) -> Redis {
        Redis::spawn(Redis::free_port(), &["--requirepass", password])
    }

    /// Starts one on `port` that keeps its data in `dir` across restarts: an append-only file
    /// synced at every write, so even a SIGKILL loses nothing acknowledged.
    pub fn persistent(port: u16, dir: &std::path::Path) -> Redis {
        std::fs::create_dir_all(dir).expect("the Redis data folder");
        let dir = dir.to_str().expect("a UTF-8 path");
        Redis::spawn(
            port,
            &[
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--dir",
                dir,
            ],
        )
    }

    /// Starts one on `port` with `extra` arguments of `redis-server` (an ACL file, a limit).
    pub fn with_args(port: u16, extra: &[&str]) -> Redis {
        Redis::spawn(port, extra)
    }

    /// A free loopback port for [`Redis::persistent`].
    pub fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port()
    }

    fn spawn(port: u16, extra: &[&str]) -> Redis {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}): these tests need a real Redis; \
                     install it with `apt-get install -y redis-server` (.ci/run does)"
                )
            });
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(10);
        // Listening is not enough: a Redis loading its append-only file answers `-LOADING`.
        while !answers_ping(addr) {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING on {addr}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Redis {
            child: Some(child),
            addr,
        }
    }

    /// The URL replicas are given.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Kills it with SIGKILL (everything it held is lost: no persistence).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether the server at `addr` answers `PING` (`+PONG`, or `-NOAUTH` from one that asks for a
/// password: it is up).
fn answers_ping(addr: SocketAddr) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let mut buf = [0u8; 64];
    s.write_all(b"PING\r\n").is_ok()
        && s.read(&mut buf)
            .is_ok_and(|n| buf[..n].starts_with(b"+PONG") || buf[..n].starts_with(b"-NOAUTH"))
}

/// Entries in the fleet's eight partition streams (nextbest's default `--redis-partitions`);
/// 0 while Redis does not answer.
pub fn stream_entries(url: &str) -> u64 {
    let client = ::redis::Client::open(url).unwrap();
    let Ok(mut con) = client.get_connection() else {
        return 0;
    };
    (0..8u16)
        .map(|p| {
            ::redis::cmd("XLEN")
                .arg(format!("nextbest:events:{{p{p:03}}}"))
                .query::<u64>(&mut con)
                .unwrap_or(0)
        })
        .sum()
}
