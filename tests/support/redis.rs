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
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        Redis::on_port(port)
    }

    /// Starts one on the given port (to bring a killed one back where replicas expect it).
    pub fn on_port(port: u16) -> Redis {
        Redis::spawn(port, &[])
    }

    /// Starts one on a free loopback port that refuses clients without `password`.
    pub fn with_password(password: &str) -> Redis {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        Redis::spawn(port, &["--requirepass", password])
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
        while TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not listen on {addr}"
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
