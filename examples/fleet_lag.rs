//! How fast an event accepted by one replica changes decisions on the others, with a fleet of
//! real `nextbest` processes sharing one real `redis-server` on loopback.
//!
//! `cargo build --profile production --bin nextbest --example fleet_lag &&
//! target/production/examples/fleet_lag [--replicas 3] [--rate 5000] [--seconds 10]`: starts
//! Redis and the replicas (the `nextbest` built beside the example, the demo model), posts
//! background impressions at `--rate` events/s spread over the replicas, and meanwhile probes:
//! a dismiss posted to replica 0, then replica 1 (and 2) asked every millisecond until the offer
//! is held back. Prints the probes' p50/p99/max, each replica's CPU per event, and the fleet's
//! replication lag histogram from acceptance at the origin to application at each replica
//! (`nextbest_replication_apply_lag_seconds`, summed over the replicas' `/metrics`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A fleet of real replicas and one Redis on loopback, under a steady background load.
#[derive(clap::Parser)]
#[command(about = "How fast an event accepted by one replica changes decisions on the others")]
struct Args {
    /// Replicas started (at least 2: the probes dismiss on one and ask another).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(2..=16))]
    replicas: u64,
    /// Background impressions per second, spread over the replicas.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..))]
    rate: u64,
    /// Seconds of load.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    seconds: u64,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// One keep-alive HTTP/1.1 connection.
struct Conn(BufReader<TcpStream>);

impl Conn {
    fn open(addr: SocketAddr) -> Conn {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_nodelay(true).ok();
        Conn(BufReader::new(s))
    }

    fn call(&mut self, method: &str, path: &str, body: &[u8]) -> (u16, String) {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        let s = self.0.get_mut();
        s.write_all(head.as_bytes()).expect("write");
        s.write_all(body).expect("write");
        let mut line = String::new();
        self.0.read_line(&mut line).expect("status");
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut len = 0;
        loop {
            line.clear();
            self.0.read_line(&mut line).expect("header");
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut buf = vec![0; len];
        self.0.read_exact(&mut buf).expect("body");
        (status, String::from_utf8_lossy(&buf).into_owned())
    }
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

/// Says what went wrong in one line and exits non-zero, instead of a panic's backtrace.
fn fail(message: impl std::fmt::Display) -> ! {
    eprintln!("fleet_lag: {message}");
    std::process::exit(1)
}

fn main() -> ExitCode {
    let Args {
        replicas,
        rate,
        seconds,
    } = clap::Parser::parse();
    let exe = std::env::current_exe().expect("exe");
    let bin = exe
        .parent()
        .and_then(|p| p.parent())
        .map(|p| p.join("nextbest"))
        .filter(|b| b.is_file())
        .unwrap_or_else(|| {
            fail("no nextbest beside this example: build it in the same profile (`cargo build --profile production --bin nextbest --example fleet_lag`)")
        });
    // The bundled demo, wherever the example is run from.
    let models = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let root = std::env::temp_dir().join(format!("nextbest-fleet-lag-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let port = free_port();
    let _redis = Kill(
        Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                fail(format!(
                    "cannot start redis-server ({e}): install it with `apt-get install -y redis-server`"
                ))
            }),
    );
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(10));
    }
    let url = format!("redis://127.0.0.1:{port}");
    let mut procs = Vec::new();
    let mut addrs = Vec::new();
    let mut admins = Vec::new();
    for r in 0..replicas {
        let mut child = Command::new(&bin)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
                "--no-watch",
            ])
            .arg("--models")
            .arg(&models)
            .arg("--features")
            .arg(models.join("features.csv"))
            .arg("--data-dir")
            .arg(root.join(format!("r{r}")))
            .args(["--redis", &url])
            .env("NEXTBEST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| fail(format!("cannot start {}: {e}", bin.display())));
        let out = BufReader::new(child.stdout.take().expect("stdout"));
        let line = out
            .lines()
            .map_while(Result::ok)
            .find(|l| l.starts_with("nextbest listening"))
            .expect("listening line");
        let public: SocketAddr = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("public="))
            .and_then(|a| a.parse().ok())
            .expect("public address");
        let admin: SocketAddr = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("admin="))
            .and_then(|a| a.parse().ok())
            .expect("admin address");
        addrs.push(public);
        admins.push(admin);
        procs.push(Kill(child));
    }
    // Measured as a rollout serves: once every replica says ready (caught up with the fleet,
    // the first start on a new Redis waiting its few seconds).
    let deadline = Instant::now() + Duration::from_secs(60);
    for &addr in &addrs {
        let mut c = Conn::open(addr);
        while c.call("GET", "/readyz", b"").0 != 200 {
            if Instant::now() > deadline {
                fail(format!("replica {addr} not ready after 60 s"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    // Probe customers and an offer each that replica 1 scores on the app home screen.
    let mut c1 = Conn::open(addrs[1]);
    let probes: Vec<(String, String)> = (1..=3000)
        .filter_map(|i| {
            let c = format!("C{i:07}");
            let (_, body) = c1.call(
                "GET",
                &format!("/v1/decide?customer_id={c}&channel=app&placement=app_home&limit=1"),
                b"",
            );
            if !body.contains("\"fallback\":null") {
                return None;
            }
            let o = body
                .split("\"offer_id\":\"")
                .nth(1)?
                .split('"')
                .next()?
                .to_owned();
            Some((c, o))
        })
        .collect();
    if probes.is_empty() {
        eprintln!(
            "fleet_lag: replica 1 scores no offer for C0000001..C0003000 on app_home \
             (is {} the bundled demo?)",
            models.display()
        );
        // Returning (not `exit`) stops the replicas and Redis as their guards drop.
        drop(procs);
        let _ = std::fs::remove_dir_all(&root);
        return ExitCode::FAILURE;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let cpu0: Vec<u64> = procs.iter().map(|p| cpu_ticks(p.0.id())).collect();
    // Background load: batches of 10 impressions, spread over the replicas.
    let loaders: Vec<_> = addrs
        .iter()
        .enumerate()
        .map(|(r, &addr)| {
            let (stop, sent) = (stop.clone(), sent.clone());
            let per_replica = rate / replicas;
            std::thread::spawn(move || {
                let mut c = Conn::open(addr);
                let started = Instant::now();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let due = started.elapsed().as_secs_f64() * per_replica as f64;
                    if (n as f64) >= due {
                        std::thread::sleep(Duration::from_micros(500));
                        continue;
                    }
                    let events: Vec<String> = (0..10)
                        .map(|k| format!(r#"{{"type":"impression","customer_id":"L{r}-{}","offer_id":"data_boost_10gb","channel":"web"}}"#, n + k))
                        .collect();
                    let body = format!(r#"{{"events":[{}]}}"#, events.join(","));
                    let (status, _) = c.call("POST", "/v1/events", body.as_bytes());
                    assert_eq!(status, 202);
                    n += 10;
                    sent.fetch_add(10, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let mut c0 = Conn::open(addrs[0]);
    let mut lags = Vec::new();
    let t = Instant::now();
    for (customer, offer) in &probes {
        if t.elapsed() > Duration::from_secs(seconds) {
            break;
        }
        let dismiss = format!(
            r#"{{"events":[{{"type":"dismiss","customer_id":"{customer}","offer_id":"{offer}","channel":"web"}}]}}"#
        );
        let (status, _) = c0.call("POST", "/v1/events", dismiss.as_bytes());
        assert_eq!(status, 202);
        let acked = Instant::now();
        let path = format!(
            "/v1/decide?customer_id={customer}&channel=app&placement=app_home&explain=true"
        );
        loop {
            let (_, body) = c1.call("GET", &path, b"");
            let held = body
                .split(&format!("\"offer_id\":\"{offer}\""))
                .nth(1)
                .is_some_and(|rest| rest.starts_with(",\"excluded\""));
            if held {
                lags.push(acked.elapsed());
                break;
            }
            if acked.elapsed() > Duration::from_secs(5) {
                eprintln!("probe {customer}/{offer}: not held back on replica 1 after 5 s");
                lags.push(acked.elapsed());
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    for l in loaders {
        let _ = l.join();
    }
    let elapsed = t.elapsed().as_secs_f64();
    let events = sent.load(Ordering::Relaxed);
    lags.sort();
    let q = |p: f64| lags[((lags.len() as f64 * p) as usize).min(lags.len() - 1)];
    println!(
        "{replicas} replicas, {:.0} background events/s for {elapsed:.1} s; {} probes: \
         dismiss on replica 0 -> held back on replica 1: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        events as f64 / elapsed,
        lags.len(),
        q(0.5).as_secs_f64() * 1e3,
        q(0.99).as_secs_f64() * 1e3,
        lags.last().map_or(0.0, |l| l.as_secs_f64() * 1e3),
    );
    let hz = 100.0; // USER_HZ
    for (i, p) in procs.iter().enumerate() {
        let cpu = (cpu_ticks(p.0.id()) - cpu0[i]) as f64 / hz;
        println!(
            "replica {i}: {:.1} % of a core, {:.1} us of CPU per fleet event",
            cpu / elapsed * 100.0,
            cpu / events as f64 * 1e6
        );
    }
    lag_histogram(&admins);
    // What the streams cost Redis, per event held.
    let cli = |args: &[&str]| {
        Command::new("redis-cli")
            .args(["-p", &port.to_string()])
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    let used: f64 = cli(&["INFO", "memory"])
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    let held: u64 = (0..8)
        .map(|p| {
            cli(&["XLEN", &format!("nextbest:events:{{p{p:03}}}")])
                .trim()
                .parse::<u64>()
                .unwrap_or(0)
        })
        .sum();
    if held > 0 {
        println!(
            "redis: {held} events held in the streams, {:.1} MB used, {:.0} bytes per event",
            used / 1e6,
            used / held as f64
        );
    }
    let _ = std::fs::remove_dir_all(&root);
    ExitCode::SUCCESS
}

/// Prints the fleet's lag histogram from acceptance: every replica's buckets summed, with the
/// quantiles interpolated within their bucket as Prometheus' `histogram_quantile` does.
fn lag_histogram(admins: &[SocketAddr]) {
    const NAME: &str = "nextbest_replication_apply_lag_seconds_bucket{le=\"";
    let mut buckets: Vec<(f64, u64)> = Vec::new();
    for &a in admins {
        let (_, text) = Conn::open(a).call("GET", "/metrics", b"");
        for line in text.lines().filter_map(|l| l.strip_prefix(NAME)) {
            let Some((le, n)) = line.split_once("\"} ") else {
                continue;
            };
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap_or(f64::NAN)
            };
            let n: u64 = n.trim().parse().unwrap_or(0);
            match buckets.iter_mut().find(|(b, _)| *b == le) {
                Some((_, total)) => *total += n,
                None => buckets.push((le, n)),
            }
        }
    }
    let Some(&(_, count)) = buckets.last() else {
        println!("no lag histogram (no replica exposes one)");
        return;
    };
    println!("replication lag from acceptance, {count} events applied across the fleet:");
    for (le, n) in &buckets {
        println!(
            "  le {le:>8} s: {n:>9} ({:5.1} %)",
            *n as f64 * 100.0 / count.max(1) as f64
        );
    }
    let quantile = |q: f64| {
        let rank = q * count as f64;
        let (mut lower, mut below) = (0.0, 0u64);
        for &(le, n) in &buckets {
            if n as f64 >= rank && le.is_finite() {
                let within = (rank - below as f64) / (n - below).max(1) as f64;
                return lower + (le - lower) * within;
            }
            (lower, below) = (le, n);
        }
        lower
    };
    println!(
        "  p50 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms",
        quantile(0.5) * 1e3,
        quantile(0.99) * 1e3,
        quantile(0.999) * 1e3
    );
}
