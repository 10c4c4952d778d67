//! Measures hot swaps against the release binary: time from publish to serving (folder and
//! admin API, demo model and a generated 1,000-offer model), `/v1/decide` latency with and
//! without a model swap every second (interleaved A B A B), and the time and peak memory of a
//! feature snapshot swap.
//!
//! ```sh
//! cargo build --profile production --bin nextbest --example swapbench
//! target/production/examples/swapbench --seconds 10 --snapshot /tmp/nb/f1m.nbf
//! ```
//! It runs the `nextbest` built beside it (the same profile's folder) unless `--binary` names
//! another, from the repository's root (it copies `models/`).
//! The server is pinned to CPU 0 with `taskset` when it is available; run the bench itself
//! pinned to the other core (`taskset -c 1 cargo run ...`) for quieter figures. Traffic goes to
//! 127.0.0.1 only; every loop is bounded in time.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Hot-swap measurements.
#[derive(Parser)]
struct Args {
    /// Seconds per load phase.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Concurrent keep-alive connections in the load phases.
    #[arg(long, default_value_t = 4)]
    conns: usize,
    /// A large feature snapshot to time a swap of (e.g. a 1,000,000-customer .nbf).
    #[arg(long)]
    snapshot: Option<PathBuf>,
    /// The nextbest binary [default: the one built beside this example].
    #[arg(long)]
    binary: Option<PathBuf>,
}

/// Says what went wrong in one line and exits non-zero (a missing binary, a server that never
/// became ready), instead of a panic's backtrace.
fn fail(message: impl std::fmt::Display) -> ! {
    eprintln!("swapbench: {message}");
    std::process::exit(1)
}

/// `--binary`, or the `nextbest` of this example's profile (`<target>/<profile>/nextbest`).
fn nextbest_binary(given: Option<PathBuf>) -> PathBuf {
    let path = given.or_else(|| {
        let exe = std::env::current_exe().ok()?;
        Some(exe.parent()?.parent()?.join("nextbest"))
    });
    match path {
        Some(p) if p.is_file() => p,
        Some(p) => fail(format!(
            "no nextbest binary at {}: build it (`cargo build --profile production --bin \
             nextbest`) or give --binary",
            p.display()
        )),
        None => fail("cannot locate the target directory: give --binary"),
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(18080)
}

struct Server {
    child: Child,
    public: String,
    admin: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(binary: &Path, models: &Path) -> Server {
    let (public, admin) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let pinned = Command::new("taskset").arg("--version").output().is_ok();
    let mut cmd = if pinned {
        let mut c = Command::new("taskset");
        c.args(["-c", "0"]).arg(binary);
        c
    } else {
        Command::new(binary)
    };
    cmd.args([
        "--listen",
        &public,
        "--admin-listen",
        &admin,
        "--drain-delay-ms",
        "0",
    ])
    .arg("--models")
    .arg(models)
    .arg("--features")
    .arg(models.join("features.csv"))
    .env("NEXTBEST_LOG", "warn")
    .stdout(Stdio::null())
    .stderr(Stdio::inherit());
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| fail(format!("cannot start {}: {e}", binary.display())));
    eprintln!(
        "server pid {} on {public} (admin {admin}){}",
        child.id(),
        if pinned { ", pinned to CPU 0" } else { "" }
    );
    Server {
        child,
        public,
        admin,
    }
}

/// One keep-alive connection, and the address its requests name as their `Host` (the admin
/// listener answers only requests that name it by address).
struct Conn(http1::SendRequest<Full<Bytes>>, String);

impl Conn {
    async fn open(addr: &str) -> Conn {
        let stream = TcpStream::connect(addr).await.expect("connect");
        let _ = stream.set_nodelay(true);
        let (send, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        Conn(send, addr.to_owned())
    }

    async fn call(&mut self, method: &str, path: &str, body: Vec<u8>) -> (u16, Bytes) {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.1)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .expect("request");
        let resp = self.0.send_request(req).await.expect("response");
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        (status, body)
    }
}

async fn wait_ready(srv: &mut Server) {
    let addr = srv.public.clone();
    let addr = addr.as_str();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = srv.child.try_wait() {
            fail(format!(
                "nextbest exited before it was ready ({status}); its log is above"
            ));
        }
        if TcpStream::connect(addr).await.is_ok() {
            let mut c = Conn::open(addr).await;
            if c.call("GET", "/readyz", vec![]).await.0 == 200 {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // `fail` exits without unwinding: stop the server first.
    let _ = srv.child.kill();
    let _ = srv.child.wait();
    fail("the server was not ready after 60 s");
}

fn demo_doc(version: &str) -> serde_json::Value {
    let mut doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read("models/model.json").expect("models/model.json"))
            .expect("json");
    doc["version"] = version.into();
    doc
}

/// The demo model with 1,000 offers: its 25, then copies under new ids.
fn big_doc(version: &str) -> serde_json::Value {
    let mut doc = demo_doc(version);
    let base = doc["offers"].as_array().expect("offers").clone();
    let mut offers = Vec::with_capacity(1000);
    for i in 0..1000 {
        let mut o = base[i % base.len()].clone();
        o["id"] = format!("{}_{i}", o["id"].as_str().unwrap_or("o")).into();
        offers.push(o);
    }
    doc["offers"] = offers.into();
    doc
}

async fn version_served(c: &mut Conn) -> String {
    let (_, body) = c
        .call(
            "POST",
            "/v1/decide",
            br#"{"customer_id":"C0000042","channel":"web","placement":"plans_page"}"#.to_vec(),
        )
        .await;
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    v["model"]["version"].as_str().unwrap_or("").to_owned()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Publishes a model through the folder (write, rename) or the admin API, and times until a
/// decision names it.
async fn publish_to_serving(
    srv: &Server,
    dir: &Path,
    doc: &serde_json::Value,
    via_folder: bool,
) -> f64 {
    let version = doc["version"].as_str().unwrap_or("").to_owned();
    let bytes = serde_json::to_vec(doc).expect("json");
    let mut probe = Conn::open(&srv.public).await;
    let t = Instant::now();
    if via_folder {
        let tmp = dir.join(".model.json.tmp");
        std::fs::write(&tmp, &bytes).expect("write");
        std::fs::rename(&tmp, dir.join("model.json")).expect("rename");
    } else {
        let mut admin = Conn::open(&srv.admin).await;
        let (status, body) = admin.call("PUT", "/admin/models", bytes).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while version_served(&mut probe).await != version {
        assert!(Instant::now() < deadline, "version {version} never served");
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    t.elapsed().as_secs_f64() * 1e3
}

struct Phase {
    requests: usize,
    errors: usize,
    latencies_us: Vec<f64>,
}

/// Closed-loop load on `conns` connections for `seconds`, optionally swapping every second.
async fn load(srv: &Server, seconds: u64, conns: usize, swap: bool) -> Phase {
    let stop = Instant::now() + Duration::from_secs(seconds);
    let swapper = swap.then(|| {
        let admin = srv.admin.clone();
        tokio::spawn(async move {
            let mut c = Conn::open(&admin).await;
            let mut n = 0u64;
            while Instant::now() + Duration::from_secs(1) < stop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                n += 1;
                let doc = serde_json::to_vec(&demo_doc(&format!("swap{n}"))).expect("json");
                let (status, _) = c.call("PUT", "/admin/models", doc).await;
                assert_eq!(status, 200);
            }
            n
        })
    });
    let mut tasks = Vec::new();
    for k in 0..conns {
        let addr = srv.public.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::open(&addr).await;
            let (mut lat, mut errors, mut i) = (Vec::new(), 0, k * 7919);
            while Instant::now() < stop {
                i += 1;
                let body = format!(
                    r#"{{"customer_id":"C{:07}","channel":"web","placement":"plans_page"}}"#,
                    1 + i % 10_000
                );
                let t = Instant::now();
                let (status, _) = c.call("POST", "/v1/decide", body.into_bytes()).await;
                lat.push(t.elapsed().as_secs_f64() * 1e6);
                errors += (status != 200) as usize;
            }
            (lat, errors)
        }));
    }
    let mut phase = Phase {
        requests: 0,
        errors: 0,
        latencies_us: Vec::new(),
    };
    for t in tasks {
        let (lat, errors) = t.await.expect("client");
        phase.requests += lat.len();
        phase.errors += errors;
        phase.latencies_us.extend(lat);
    }
    if let Some(s) = swapper {
        let swaps = s.await.expect("swapper");
        eprintln!("  {swaps} swaps during the phase");
    }
    phase.latencies_us.sort_by(f64::total_cmp);
    phase
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = Args::parse();
    let dir = std::env::temp_dir().join(format!("nextbest-swapbench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    for entry in std::fs::read_dir("models").expect("run from the repository root") {
        let path = entry.expect("entry").path();
        if path.is_file() {
            std::fs::copy(&path, dir.join(path.file_name().expect("name"))).expect("copy");
        }
    }
    let mut srv = start(&nextbest_binary(args.binary), &dir);
    wait_ready(&mut srv).await;

    println!("## Publish to serving (ms, median of 5)\n");
    println!("| model | folder (write + rename) | admin PUT |");
    println!("|---|---|---|");
    for (name, make) in [
        (
            "demo (25 offers)",
            demo_doc as fn(&str) -> serde_json::Value,
        ),
        ("1,000 offers", big_doc),
    ] {
        let (mut folder, mut admin) = (Vec::new(), Vec::new());
        for i in 0..5 {
            folder.push(publish_to_serving(&srv, &dir, &make(&format!("f{name}{i}")), true).await);
            admin.push(publish_to_serving(&srv, &dir, &make(&format!("a{name}{i}")), false).await);
        }
        println!("| {name} | {:.1} | {:.1} |", median(folder), median(admin));
    }

    // Back to the demo model before the load phases.
    publish_to_serving(&srv, &dir, &demo_doc("steady"), false).await;
    println!("\n## /v1/decide under load, without and with a model swap every second\n");
    println!(
        "{} s per phase, {} keep-alive connections, closed loop, customers C0000001..C0010000\n",
        args.seconds, args.conns
    );
    println!("| phase | requests/s | p50 us | p99 us | p99.9 us | max us | non-200 |");
    println!("|---|---|---|---|---|---|---|");
    for round in 0..2 {
        for swap in [false, true] {
            let p = load(&srv, args.seconds, args.conns, swap).await;
            let l = &p.latencies_us;
            println!(
                "| {} {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {} |",
                if swap { "swaps" } else { "steady" },
                round + 1,
                p.requests as f64 / args.seconds as f64,
                pct(l, 0.50),
                pct(l, 0.99),
                pct(l, 0.999),
                l.last().copied().unwrap_or(f64::NAN),
                p.errors
            );
        }
    }

    if let Some(snapshot) = &args.snapshot {
        println!("\n## Feature snapshot swap\n");
        let pid = srv.child.id();
        let mut admin = Conn::open(&srv.admin).await;
        // First from the demo snapshot to the large one, then the large one over itself: the
        // second swap holds two large snapshots at its peak.
        for swap in ["demo -> large", "large -> large"] {
            let before = rss_kib(pid, "VmRSS:");
            let body = serde_json::to_vec(&serde_json::json!({"path": snapshot, "wait": true}))
                .expect("json");
            let t = Instant::now();
            let (status, resp) = admin.call("POST", "/admin/features/reload", body).await;
            let took = t.elapsed();
            assert_eq!(status, 200, "{}", String::from_utf8_lossy(&resp));
            println!(
                "{swap} ({}): {:.0} ms to load, recompile and swap; RSS {} MiB before, {} MiB after, peak so far {} MiB",
                snapshot.display(),
                took.as_secs_f64() * 1e3,
                before / 1024,
                rss_kib(pid, "VmRSS:") / 1024,
                rss_kib(pid, "VmHWM:") / 1024
            );
        }
    }
    drop(srv);
    let _ = std::fs::remove_dir_all(&dir);
}
