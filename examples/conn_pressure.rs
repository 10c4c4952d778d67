//! Connection pressure: how long a new client waits for a decision while the public listener's
//! `--max-connections` is full of connections that send nothing.
//!
//! ```sh
//! cargo build --release
//! cargo run --release --example conn_pressure -- --silent 4200 --max-connections 4096
//! ```
//! It starts `target/release/nextbest` on the demo model (header timeout 10 s, the default),
//! opens `--silent` connections that never send a byte, and waits until the server holds the
//! bound full of them (`/metrics`). Then, `--rounds` times, a new client sends one
//! `/v1/decide` on a new connection and the time to its full answer is recorded; a new silent
//! connection then fills the slot it freed. Prints min / median / max and the eviction count.
//! With `--silent` below the bound it measures the same newcomer without pressure.
//! Loopback only; client and server each need about `--silent` file descriptors (`ulimit -n`).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Decide latency of a new client while the connection bound is full of silent connections.
#[derive(Parser)]
struct Args {
    /// Silent connections opened before measuring (more than the bound: the rest wait in the
    /// kernel backlog, as in an attack).
    #[arg(long, default_value_t = 4200)]
    silent: usize,
    /// The server's `--max-connections`.
    #[arg(long, default_value_t = 4096)]
    max_connections: usize,
    /// New clients measured, one after the other.
    #[arg(long, default_value_t = 50)]
    rounds: usize,
    /// The nextbest binary.
    #[arg(long, default_value = "target/release/nextbest")]
    binary: PathBuf,
}

/// The server process and its data folder, both gone on drop.
struct Server {
    public: String,
    admin: String,
    data: PathBuf,
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

/// Starts the server on ports the kernel picks, read back from its `nextbest listening` line.
fn start(args: &Args) -> Server {
    let data = std::env::temp_dir().join(format!("nextbest-conn-pressure-{}", std::process::id()));
    let mut child = Command::new(&args.binary)
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .args(["--models", "models", "--features", "models/features.csv"])
        .args(["--max-connections", &args.max_connections.to_string()])
        .arg("--no-watch")
        .arg("--data-dir")
        .arg(&data)
        .env("NEXTBEST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| {
            eprintln!(
                "conn_pressure: cannot start {} ({e}): build it (`cargo build --profile production --bin nextbest`) or give --binary",
                args.binary.display()
            );
            std::process::exit(1)
        });
    let stdout = child.stdout.take().expect("piped stdout");
    let line = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find(|l| l.starts_with("nextbest listening"))
        .expect("nextbest exited before listening");
    let addr = |key: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .expect("an address in the listening line")
            .to_owned()
    };
    Server {
        public: addr("public="),
        admin: addr("admin="),
        data,
        child,
    }
}

/// One request on its own connection: the status and the body.
async fn request(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("send");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_owned());
    (status, body)
}

/// A counter or gauge from `/metrics`.
async fn metric(admin: &str, name: &str) -> u64 {
    let (_, text) = request(admin, "GET", "/metrics", "").await;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} is not in /metrics"))
}

/// Waits until the public listener holds `n` connections (the metric counts the admin
/// connection that asks, too).
async fn wait_open(admin: &str, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while metric(admin, "nextbest_open_connections").await != n + 1 {
        assert!(Instant::now() < deadline, "the bound never filled");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let server = start(&args);
    let deadline = Instant::now() + Duration::from_secs(60);
    while request(&server.public, "GET", "/readyz", "").await.0 != 200 {
        assert!(Instant::now() < deadline, "nextbest did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut silent = Vec::with_capacity(args.silent + args.rounds);
    for _ in 0..args.silent {
        silent.push(TcpStream::connect(&server.public).await.expect("connect"));
    }
    let full = args.silent.min(args.max_connections) as u64;
    // Every silent connection beyond the bound is accepted in turn and evicts an older one.
    let beyond = args.silent.saturating_sub(args.max_connections) as u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    while metric(&server.admin, "nextbest_connections_evicted_total").await < beyond {
        assert!(Instant::now() < deadline, "the backlog was never accepted");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    wait_open(&server.admin, full).await;
    let before = metric(&server.admin, "nextbest_connections_evicted_total").await;
    eprintln!(
        "{} silent connections open, {full} held by the server, {before} evicted so far",
        args.silent
    );

    let decide = r#"{"customer_id": "C0000042", "channel": "web", "placement": "home_hero"}"#;
    let mut waits = Vec::with_capacity(args.rounds);
    for _ in 0..args.rounds {
        let started = Instant::now();
        let (status, body) = request(&server.public, "POST", "/v1/decide", decide).await;
        waits.push(started.elapsed());
        assert_eq!(status, 200, "{body}");
        if args.silent >= args.max_connections {
            // Refill the slot the newcomer freed, once it has closed (sooner, the refill would
            // evict a silent connection instead).
            wait_open(&server.admin, full - 1).await;
            silent.push(TcpStream::connect(&server.public).await.expect("connect"));
            wait_open(&server.admin, full).await;
        }
    }
    let evicted = metric(&server.admin, "nextbest_connections_evicted_total").await - before;
    waits.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "new client's decide, {full} silent connections held at --max-connections {}: \
         min {:.2} ms, median {:.2} ms, max {:.2} ms over {} rounds; {evicted} evictions",
        args.max_connections,
        ms(waits[0]),
        ms(waits[waits.len() / 2]),
        ms(waits[waits.len() - 1]),
        waits.len()
    );
}
