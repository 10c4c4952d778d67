//! Several replicas of one node on one large snapshot, mapped from the snapshot store against
//! loaded into each replica's memory (issue 33's proof).
//!
//! `cargo build --profile production --bin nextbest --example gen_features --example
//! mmap_replicas && target/production/examples/mmap_replicas` (about 5 minutes with the 10M
//! snapshot; `--help` for sizes and durations). It generates the snapshot with
//! `examples/gen_features` (`--customers`, 21 numeric and 3 text columns, the demo's), compiles
//! it with `nextbest features compile`, then for each way of loading (`owned`:
//! `--features-in-memory`; `mapped`: one `--snapshot-store` shared by the replicas) starts
//! `--replicas` servers on the demo model one after the other and reports:
//! - time to ready (spawn to `/readyz` 200), per replica;
//! - each replica's PSS, anonymous and resident memory (`/proc/PID/smaps_rollup`), and the sum
//!   of PSS over the replicas;
//! - the peak anonymous memory of replica 0 during `POST /admin/features/reload` of the same
//!   file (sampled every 2 ms), against its steady figure;
//! - decide throughput on warm pages (`wrk`, replica 0, random customers over the whole base);
//! - the decide p99 at a fixed moderate rate with and without a reload during the run (an
//!   open-loop generator in this program: latency counted from when each request was due);
//! - the first decision per customer after a swap to new content (cold pages of the new
//!   file's rows, p99) against the same customers again.
//!
//! Linux only (/proc). Files go to `--dir` and are removed at the end unless `--keep`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;

/// Replicas on one snapshot: mapped against owned (loopback only).
#[derive(Parser, Debug)]
struct Args {
    /// Customers in the generated snapshot.
    #[arg(long, default_value_t = 10_000_000)]
    customers: usize,
    /// Replicas started on it.
    #[arg(long, default_value_t = 4)]
    replicas: usize,
    /// Working folder (snapshot, store, data folders).
    #[arg(long, default_value = "/tmp/nextbest-mmap-replicas")]
    dir: PathBuf,
    /// Seconds of the throughput run (after a 2 s warm-up).
    #[arg(long, default_value_t = 6)]
    duration: u64,
    /// Fixed rate of the latency runs, requests per second.
    #[arg(long, default_value_t = 2000)]
    rate: u64,
    /// Seconds of each latency run.
    #[arg(long, default_value_t = 8)]
    latency_secs: u64,
    /// Keep the generated files.
    #[arg(long)]
    keep: bool,
}

type Result<T> = std::result::Result<T, String>;

const PLACEMENTS: [(&str, &str); 4] = [
    ("web", "home_hero"),
    ("web", "plans_page"),
    ("web", "checkout"),
    ("app", "app_home"),
];

fn main() -> std::process::ExitCode {
    match run(&Args::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mmap_replicas: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<()> {
    let bin_dir = std::env::current_exe()
        .map_err(|e| e.to_string())?
        .parent()
        .and_then(Path::parent)
        .ok_or("no target folder")?
        .to_owned();
    let nextbest = bin_dir.join("nextbest");
    let gen = bin_dir.join("examples/gen_features");
    for b in [&nextbest, &gen] {
        if !b.exists() {
            return Err(format!(
                "{} is missing: build it first (see the module doc)",
                b.display()
            ));
        }
    }
    std::fs::create_dir_all(&args.dir).map_err(|e| e.to_string())?;
    let csv = args.dir.join("features.csv");
    let nbf = args.dir.join("features.nbf");
    let nbf2 = args.dir.join("features2.nbf");
    let t = Instant::now();
    check(
        Command::new(&gen)
            .args([
                "--customers",
                &args.customers.to_string(),
                "--strings",
                "3",
                "--out",
            ])
            .arg(&csv),
    )?;
    println!(
        "generated {} in {:.1} s",
        csv.display(),
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    check(
        Command::new(&nextbest)
            .args(["features", "compile"])
            .arg(&csv)
            .arg(&nbf),
    )?;
    println!(
        "compiled {} ({} bytes) in {:.1} s",
        nbf.display(),
        file_len(&nbf),
        t.elapsed().as_secs_f64()
    );
    // A second snapshot with other content (one more customer), for the swap to new pages.
    let mut text = std::fs::read_to_string(&csv).map_err(|e| e.to_string())?;
    text.push_str("X0000001,1,10,1,1,1,1,,1,1,0,0,1,1,0,1,1,0,,1,0.5,1,gold,basic,west\n");
    std::fs::write(&csv, text).map_err(|e| e.to_string())?;
    check(
        Command::new(&nextbest)
            .args(["features", "compile"])
            .arg(&csv)
            .arg(&nbf2),
    )?;
    std::fs::remove_file(&csv).map_err(|e| e.to_string())?;
    let models = args.dir.join("models");
    std::fs::create_dir_all(&models).map_err(|e| e.to_string())?;
    for f in
        std::fs::read_dir("models").map_err(|e| format!("run from the repository root: {e}"))?
    {
        let p = f.map_err(|e| e.to_string())?.path();
        if p.is_file() && p.extension().is_none_or(|e| e != "csv") {
            std::fs::copy(&p, models.join(p.file_name().ok_or("name")?))
                .map_err(|e| e.to_string())?;
        }
    }
    let mut reports = Vec::new();
    for mode in [Mode::Owned, Mode::Mapped] {
        reports.push(measure(args, mode, &nextbest, &models, &nbf, &nbf2)?);
    }
    print_report(args, &reports);
    if !args.keep {
        std::fs::remove_dir_all(&args.dir).map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Mode {
    Owned,
    Mapped,
}

#[derive(Default)]
struct Report {
    mode: &'static str,
    ready_ms: Vec<f64>,
    /// Mapped only: a replica given the store's entry itself (a DaemonSet's layout).
    ready_published_ms: Option<f64>,
    pss: Vec<u64>,
    anon: Vec<u64>,
    rss: Vec<u64>,
    steady_anon: u64,
    peak_anon_reload: u64,
    reload_ms: f64,
    rps: f64,
    p99_quiet_us: f64,
    p99_swap_us: f64,
    p50_quiet_us: f64,
    p50_swap_us: f64,
    cold_p99_us: f64,
    warm_p99_us: f64,
}

struct Replica {
    child: Child,
    public: SocketAddr,
    admin: SocketAddr,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn measure(
    args: &Args,
    mode: Mode,
    nextbest: &Path,
    models: &Path,
    nbf: &Path,
    nbf2: &Path,
) -> Result<Report> {
    let mut r = Report {
        mode: match mode {
            Mode::Owned => "owned (--features-in-memory)",
            Mode::Mapped => "mapped (shared --snapshot-store)",
        },
        ..Report::default()
    };
    let store = args.dir.join("store");
    let _ = std::fs::remove_dir_all(&store);
    let mut replicas = Vec::new();
    for i in 0..args.replicas {
        let data = args.dir.join(format!("data-{i}"));
        let _ = std::fs::remove_dir_all(&data);
        let (public, admin) = (free_port()?, free_port()?);
        let mut cmd = Command::new(nextbest);
        cmd.arg("--listen")
            .arg(public.to_string())
            .arg("--admin-listen")
            .arg(admin.to_string())
            .arg("--models")
            .arg(models)
            .arg("--features")
            .arg(nbf)
            .arg("--data-dir")
            .arg(&data)
            .args(["--no-watch", "--log-format", "json"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        match mode {
            Mode::Owned => {
                cmd.arg("--features-in-memory");
            }
            Mode::Mapped => {
                cmd.arg("--snapshot-store").arg(&store);
            }
        }
        let t = Instant::now();
        let child = cmd
            .spawn()
            .map_err(|e| format!("starting {}: {e}", nextbest.display()))?;
        let rep = Replica {
            child,
            public,
            admin,
        };
        wait_ready(&rep, Duration::from_secs(120))?;
        r.ready_ms.push(t.elapsed().as_secs_f64() * 1e3);
        replicas.push(rep);
    }
    if mode == Mode::Mapped {
        // As on a node where a DaemonSet published the snapshot into the store: the replica is
        // given the store's entry itself, so nothing is copied or read twice.
        let entry = std::fs::read_dir(&store)
            .map_err(|e| e.to_string())?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "nbf"))
            .ok_or("no entry in the store")?;
        let data = args.dir.join("data-published");
        let _ = std::fs::remove_dir_all(&data);
        let (public, admin) = (free_port()?, free_port()?);
        let t = Instant::now();
        let child = Command::new(nextbest)
            .arg("--listen")
            .arg(public.to_string())
            .arg("--admin-listen")
            .arg(admin.to_string())
            .arg("--models")
            .arg(models)
            .arg("--features")
            .arg(&entry)
            .arg("--data-dir")
            .arg(&data)
            .arg("--snapshot-store")
            .arg(&store)
            .args(["--no-watch", "--log-format", "json"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?;
        let rep = Replica {
            child,
            public,
            admin,
        };
        wait_ready(&rep, Duration::from_secs(120))?;
        r.ready_published_ms = Some(t.elapsed().as_secs_f64() * 1e3);
    }
    for rep in &replicas {
        let (pss, anon, rss) = rollup(rep.child.id())?;
        r.pss.push(pss);
        r.anon.push(anon);
        r.rss.push(rss);
    }
    let first = &replicas[0];
    // Peak anonymous memory during a reload of the same file.
    r.steady_anon = rollup(first.child.id())?.1;
    let pid = first.child.id();
    let admin = first.admin;
    let t = Instant::now();
    let reload = std::thread::spawn(move || {
        http(admin, "POST", "/admin/features/reload", r#"{"wait":true}"#)
    });
    let mut peak = r.steady_anon;
    while !reload.is_finished() {
        peak = peak.max(rollup(pid)?.1);
        std::thread::sleep(Duration::from_millis(2));
    }
    r.reload_ms = t.elapsed().as_secs_f64() * 1e3;
    let (status, body) = reload.join().map_err(|_| "reload thread")??;
    if status != 200 {
        return Err(format!("reload: {status} {body}"));
    }
    r.peak_anon_reload = peak;
    // Throughput on warm pages.
    r.rps = wrk(args, first.public)?;
    // p99 at a fixed rate, quiet then with a reload one second in.
    let (p50, p99) = fixed_rate(
        first.public,
        args.rate,
        args.latency_secs,
        args.customers,
        None,
    )?;
    (r.p50_quiet_us, r.p99_quiet_us) = (p50, p99);
    let (p50, p99) = fixed_rate(
        first.public,
        args.rate,
        args.latency_secs,
        args.customers,
        Some(first.admin),
    )?;
    (r.p50_swap_us, r.p99_swap_us) = (p50, p99);
    // Cold rows: swap to other content, then decide for customers not asked since.
    let body = format!(r#"{{"path":"{}","wait":true}}"#, nbf2.display());
    let (status, text) = http(first.admin, "POST", "/admin/features/reload", &body)?;
    if status != 200 {
        return Err(format!("reload to new content: {status} {text}"));
    }
    let ids: Vec<usize> = mix(args.customers, 2000, 99)
        .into_iter()
        .map(|(c, _)| c)
        .collect();
    let mut conn = Conn::open(first.public)?;
    let mut once = |ids: &[usize]| -> Result<f64> {
        let mut lat = Vec::with_capacity(ids.len());
        for &c in ids {
            let t = Instant::now();
            conn.decide(c, 1)?;
            lat.push(t.elapsed().as_secs_f64() * 1e6);
        }
        Ok(percentile(&mut lat, 0.99))
    };
    r.cold_p99_us = once(&ids)?;
    r.warm_p99_us = once(&ids)?;
    drop(replicas);
    Ok(r)
}

fn print_report(args: &Args, reports: &[Report]) {
    let mb = |b: u64| b as f64 / 1e6;
    println!(
        "\n## {} replicas, {} customers ({} UTC)\n",
        args.replicas,
        args.customers,
        humantime::format_rfc3339_seconds(std::time::SystemTime::now())
    );
    println!(
        "| figure | {} |",
        reports
            .iter()
            .map(|r| r.mode)
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("|---|{}", "---|".repeat(reports.len()));
    let row = |name: &str, f: &dyn Fn(&Report) -> String| {
        println!(
            "| {name} | {} |",
            reports.iter().map(f).collect::<Vec<_>>().join(" | ")
        );
    };
    row("time to ready, per replica (ms)", &|r| {
        r.ready_ms
            .iter()
            .map(|m| format!("{m:.0}"))
            .collect::<Vec<_>>()
            .join(" / ")
    });
    row(
        "time to ready, given the store's entry (DaemonSet layout) (ms)",
        &|r| {
            r.ready_published_ms
                .map_or("n/a".into(), |m| format!("{m:.0}"))
        },
    );
    row("PSS per replica (MB)", &|r| {
        r.pss
            .iter()
            .map(|b| format!("{:.0}", mb(*b)))
            .collect::<Vec<_>>()
            .join(" / ")
    });
    row("**sum of PSS (MB)**", &|r| {
        format!("**{:.0}**", mb(r.pss.iter().sum()))
    });
    row("anonymous per replica (MB)", &|r| {
        r.anon
            .iter()
            .map(|b| format!("{:.0}", mb(*b)))
            .collect::<Vec<_>>()
            .join(" / ")
    });
    row("RSS per replica (MB)", &|r| {
        r.rss
            .iter()
            .map(|b| format!("{:.0}", mb(*b)))
            .collect::<Vec<_>>()
            .join(" / ")
    });
    row(
        "replica 0 anonymous: steady / peak during a reload (MB)",
        &|r| {
            format!(
                "{:.0} / {:.0} ({:.2}x)",
                mb(r.steady_anon),
                mb(r.peak_anon_reload),
                r.peak_anon_reload as f64 / r.steady_anon.max(1) as f64
            )
        },
    );
    row("reload of the same file (ms)", &|r| {
        format!("{:.0}", r.reload_ms)
    });
    row("decide throughput, warm pages (req/s, wrk)", &|r| {
        format!("{:.0}", r.rps)
    });
    row(
        &format!("decide p50 / p99 at {} req/s, no swap (us)", args.rate),
        &|r| format!("{:.0} / {:.0}", r.p50_quiet_us, r.p99_quiet_us),
    );
    row(
        &format!(
            "decide p50 / p99 at {} req/s, a reload during the run (us)",
            args.rate
        ),
        &|r| {
            format!(
                "{:.0} / {:.0} ({:.2}x)",
                r.p50_swap_us,
                r.p99_swap_us,
                r.p99_swap_us / r.p99_quiet_us
            )
        },
    );
    row(
        "first decision per customer after a swap to new content, p99 (us), then again",
        &|r| format!("{:.0}, then {:.0}", r.cold_p99_us, r.warm_p99_us),
    );
    if let [owned, mapped] = reports {
        let (o, m): (u64, u64) = (owned.pss.iter().sum(), mapped.pss.iter().sum());
        println!(
            "\nsum of PSS mapped / owned: {:.3} (goal <= 0.35)",
            m as f64 / o as f64
        );
    }
}

// ---- helpers -------------------------------------------------------------------------------

fn check(cmd: &mut Command) -> Result<()> {
    let out = cmd
        .stdout(Stdio::null())
        .output()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr)))
    }
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map_or(0, |m| m.len())
}

fn free_port() -> Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    l.local_addr().map_err(|e| e.to_string())
}

fn wait_ready(rep: &Replica, limit: Duration) -> Result<()> {
    let t = Instant::now();
    while t.elapsed() < limit {
        if let Ok((200, _)) = http(rep.public, "GET", "/readyz", "") {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Err(format!(
        "replica on {} not ready within {limit:?}",
        rep.public
    ))
}

/// `Pss`, `Anonymous` and `Rss` of `/proc/PID/smaps_rollup`, in bytes.
fn rollup(pid: u32) -> Result<(u64, u64, u64)> {
    let text =
        std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).map_err(|e| e.to_string())?;
    let kb = |name: &str| -> u64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l[name.len()..].split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
            * 1024
    };
    Ok((kb("Pss:"), kb("Anonymous:"), kb("Rss:")))
}

/// One HTTP/1.1 request on a fresh connection: status and body.
fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> Result<(u16, String)> {
    let mut s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(300)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    let status = out
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .ok_or("no status")?;
    let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    Ok((status, body))
}

/// A keep-alive connection sending decide requests.
struct Conn {
    r: BufReader<TcpStream>,
}

impl Conn {
    fn open(addr: SocketAddr) -> Result<Self> {
        let s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
        s.set_nodelay(true).map_err(|e| e.to_string())?;
        Ok(Conn {
            r: BufReader::new(s),
        })
    }

    fn decide(&mut self, customer: usize, placement: usize) -> Result<()> {
        let (ch, pl) = PLACEMENTS[placement % PLACEMENTS.len()];
        let body =
            format!(r#"{{"customer_id":"C{customer:07}","channel":"{ch}","placement":"{pl}"}}"#);
        write!(
            self.r.get_mut(),
            "POST /v1/decide HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .map_err(|e| e.to_string())?;
        let mut line = String::new();
        let mut len = 0usize;
        let mut status = String::new();
        loop {
            line.clear();
            self.r.read_line(&mut line).map_err(|e| e.to_string())?;
            if status.is_empty() {
                status = line.clone();
            }
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().map_err(|_| "content-length")?;
            }
        }
        let mut buf = vec![0u8; len];
        self.r.read_exact(&mut buf).map_err(|e| e.to_string())?;
        if !status.contains(" 200 ") {
            return Err(format!("decide: {status}"));
        }
        Ok(())
    }
}

/// Open-loop decides at `rate` for `secs` over 4 connections; latency counted from when each
/// request was due. With `swap`, a reload is asked of that admin listener one second in.
fn fixed_rate(
    addr: SocketAddr,
    rate: u64,
    secs: u64,
    customers: usize,
    swap: Option<SocketAddr>,
) -> Result<(f64, f64)> {
    let conns = 4u64;
    let per_conn = rate * secs / conns;
    let interval = Duration::from_secs_f64(conns as f64 / rate as f64);
    let start = Instant::now() + Duration::from_millis(50);
    let swapper = swap.map(|admin| {
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(1));
            http(admin, "POST", "/admin/features/reload", r#"{"wait":true}"#)
        })
    });
    let threads: Vec<_> = (0..conns)
        .map(|k| {
            std::thread::spawn(move || -> Result<Vec<f64>> {
                let mut conn = Conn::open(addr)?;
                let items = mix(customers, per_conn as usize, 7 + k);
                let offset = interval.mul_f64(k as f64 / conns as f64);
                let mut lat = Vec::with_capacity(items.len());
                for (i, (c, p)) in items.into_iter().enumerate() {
                    let due = start + offset + interval * i as u32;
                    let now = Instant::now();
                    if due > now {
                        std::thread::sleep(due - now);
                    }
                    conn.decide(c, p)?;
                    lat.push(due.elapsed().as_secs_f64() * 1e6);
                }
                Ok(lat)
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in threads {
        all.extend(t.join().map_err(|_| "load thread")??);
    }
    if let Some(s) = swapper {
        let (status, body) = s.join().map_err(|_| "swap thread")??;
        if status != 200 {
            return Err(format!("reload during the run: {status} {body}"));
        }
    }
    Ok((percentile(&mut all, 0.5), percentile(&mut all, 0.99)))
}

fn percentile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(((v.len() as f64 * q) as usize).min(v.len().saturating_sub(1)))
        .copied()
        .unwrap_or(f64::NAN)
}

/// `n` (customer, placement) pairs over the whole base, from a fixed seed (SplitMix64).
fn mix(customers: usize, n: usize, seed: u64) -> Vec<(usize, usize)> {
    let mut x = seed;
    let mut next = move || {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    (0..n)
        .map(|_| {
            (
                1 + (next() % customers as u64) as usize,
                (next() % 4) as usize,
            )
        })
        .collect()
}

/// Saturation with wrk (2 s warm-up, then `--duration` s; 32 connections): requests per second.
fn wrk(args: &Args, addr: SocketAddr) -> Result<f64> {
    let script = args.dir.join("decide.lua");
    let mut s = String::from("local items = {\n");
    for (c, p) in mix(args.customers, 16_384, 3) {
        s.push_str(&format!("{{{c},{}}},\n", p + 1));
    }
    s.push_str("}\nlocal placements = {");
    for (ch, pl) in PLACEMENTS {
        s.push_str(&format!("{{\"{ch}\",\"{pl}\"}},"));
    }
    s.push_str(
        r#"}
local reqs = {}
local n = 0
init = function(args)
  local headers = { ["Content-Type"] = "application/json" }
  for i, it in ipairs(items) do
    local p = placements[it[2]]
    local body = string.format('{"customer_id":"C%07d","channel":"%s","placement":"%s"}', it[1], p[1], p[2])
    reqs[i] = wrk.format("POST", "/v1/decide", headers, body)
  end
end
request = function()
  n = n % #reqs + 1
  return reqs[n]
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT requests=%d duration_us=%d errors=%d\n", summary.requests, summary.duration, summary.errors.status))
end
"#,
    );
    std::fs::write(&script, s).map_err(|e| e.to_string())?;
    let run = |secs: u64| -> Result<f64> {
        let out = Command::new("wrk")
            .args(["-t1", "-c32", &format!("-d{secs}s"), "-s"])
            .arg(&script)
            .arg(format!("http://{addr}/"))
            .output()
            .map_err(|e| format!("wrk (apt-get install wrk): {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find(|l| l.starts_with("RESULT"))
            .ok_or_else(|| format!("wrk: {text}"))?;
        let field = |k: &str| -> f64 {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(k)?.parse().ok())
                .unwrap_or(f64::NAN)
        };
        if field("errors=") > 0.0 {
            return Err(format!("wrk: non-2xx answers: {line}"));
        }
        Ok(field("requests=") / (field("duration_us=") / 1e6))
    };
    run(2)?;
    run(args.duration)
}
