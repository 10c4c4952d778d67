//! The side-by-side load benchmark: nextbest's `/v1/decide` against a bare hyper server.
//!
//! `cargo run --profile production --example loadbench` (about 4 minutes; `--help` for
//! durations; the profile of the deployed binary: fat LTO, one codegen unit). It builds, in the
//! profile it was itself built in, and starts `target/<profile>/nextbest` on the demo model and
//! `examples/bare_server.rs` (answering a fixed JSON body the size of a typical nextbest
//! answer), both on 127.0.0.1 with ports the kernel picks, then drives each with the same load
//! generator and the same request mix (customers C0000001..C0010000, every demo placement):
//! - saturation with `wrk` (closed loop, one Lua-scripted POST per request);
//! - latency at fixed rates (25, 50, 75 % of the bare server's saturation) with
//!   `oha --no-tui -q RATE --latency-correction`, POST bodies taken at random from a file of
//!   the same mix (`-Z`), so latency is counted from when each request was due.
//!
//! Runs are interleaved (nextbest, bare, nextbest, bare, ...), each after a warm-up run, and
//! medians and ratios are reported with server CPU per response (utime+stime from
//! /proc/PID/stat over the measured run divided by responses), the most stable figure on these
//! machines (see ../shared/BENCHMARKING.md). Where the machine allows, the servers run on core
//! 0 and the load generator on core 1 (`taskset`); when it does not, it says so and runs
//! unpinned. Each run also reports the CPU that neither side used (other processes), which
//! makes the figure suspect when it is not near zero. Linux only (/proc). It installs nothing:
//! a missing tool is named with the command that installs it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::Parser;

/// Side-by-side load benchmark of nextbest against a bare hyper server (loopback only).
#[derive(Parser, Debug)]
struct Args {
    /// Seconds of each measured run.
    #[arg(long, default_value_t = 8)]
    duration: u64,
    /// Seconds of the warm-up run before each measured run (discarded).
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Measured runs per server and load point (interleaved A B A B ...).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Open connections held by the load generator.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Fixed rates for the latency runs, in percent of the bare server's saturation.
    #[arg(long, value_delimiter = ',', default_value = "25,50,75")]
    rates: Vec<u32>,
    /// Customers in the snapshot: requests name C0000001..C<customers>.
    #[arg(long, default_value_t = 10_000)]
    customers: usize,
    /// Model folder or file nextbest serves.
    #[arg(long, default_value = "models")]
    models: PathBuf,
    /// Feature snapshot nextbest serves (CSV or .nbf).
    #[arg(long, default_value = "models/features.csv")]
    features: PathBuf,
    /// Do not pin the servers and the load generator to separate cores.
    #[arg(long)]
    no_pin: bool,
    /// Measure saturation only (no oha needed).
    #[arg(long)]
    skip_latency: bool,
    /// Use the binaries already built instead of building them first (`cargo build` in this
    /// example's own profile, e.g. `--profile production`).
    #[arg(long)]
    no_build: bool,
}

/// The demo's channel and placement pairs (as in benches/common).
const PLACEMENTS: [(&str, &str); 4] = [
    ("web", "home_hero"),
    ("web", "plans_page"),
    ("web", "checkout"),
    ("app", "app_home"),
];
/// Distinct requests in the mix (the load generators cycle or pick at random among them).
const MIX_LEN: usize = 10_000;

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadbench: {e}");
            ExitCode::FAILURE
        }
    }
}

type Result<T> = std::result::Result<T, String>;

fn run(args: &Args) -> Result<()> {
    let models = resolve(&args.models);
    let features = resolve(&args.features);
    check_tool("wrk", &["--version"], "apt-get install wrk")?;
    if !args.skip_latency {
        check_tool("oha", &["--version"], "cargo install oha --locked")
            .map_err(|e| format!("{e} (or pass --skip-latency)"))?;
    }
    let bin_dir = binaries(args.no_build)?;
    let work = bin_dir.join("loadbench");
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;

    let pin = Pinning::detect(args.no_pin);
    let mix = request_mix(args.customers, MIX_LEN, 42);
    let per_point = 2 * args.rounds as u64 * (args.warmup + args.duration);
    let points = 1 + if args.skip_latency {
        0
    } else {
        args.rates.len() as u64
    };
    eprintln!("loadbench: {}; load average {}", machine(), load_average());
    eprintln!(
        "loadbench: {} x {} s runs per server and load point after {} s warm-up; about {} s in all",
        args.rounds,
        args.duration,
        args.warmup,
        per_point * points + 10
    );
    eprintln!("loadbench: {}", pin.describe());

    let workers = if pin.enabled { "1" } else { "0" };
    let nextbest = Server::start(
        "nextbest",
        &pin,
        &bin_dir.join("nextbest"),
        &[
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--models",
            &models.display().to_string(),
            "--features",
            &features.display().to_string(),
            "--workers",
            workers,
        ],
        |line| {
            if line.contains("feature snapshot") {
                eprintln!("nextbest: {}", line.trim());
            }
            // The stdout line `nextbest listening public=ADDR admin=ADDR`, whatever the log
            // format on stderr.
            line.starts_with("nextbest listening")
                .then(|| field(line, "public="))
                .flatten()
        },
    )?;
    let (answer_bytes, personalised) = sample_answers(nextbest.addr, &mix[..200])?;
    eprintln!(
        "nextbest: 200 sample answers: mean body {answer_bytes} bytes, {:.0} % personalised",
        personalised * 100.0
    );
    let bare = Server::start(
        "bare",
        &pin,
        &bin_dir.join("examples/bare_server"),
        &[
            "--body-bytes",
            &answer_bytes.to_string(),
            "--workers",
            workers,
        ],
        |line| {
            line.strip_prefix("listening on ")
                .map(|a| a.trim().to_owned())
        },
    )?;
    let servers = [&nextbest, &bare];

    let lua = work.join("mix.lua");
    write_file(&lua, &wrk_script(&mix))?;
    let bodies = work.join("bodies.txt");
    write_file(
        &bodies,
        &mix.iter().map(|m| m.body() + "\n").collect::<String>(),
    )?;
    let cx = RunCx {
        args,
        pin: &pin,
        lua: &lua,
        bodies: &bodies,
        clk_tck: clock_ticks(),
    };

    // Saturation, interleaved: nextbest, bare, nextbest, bare, ...
    let mut sat: [Vec<Sample>; 2] = [Vec::new(), Vec::new()];
    for round in 0..args.rounds {
        for (i, s) in servers.iter().enumerate() {
            cx.wrk(s, args.warmup)?;
            let m = cx.wrk(s, args.duration)?;
            eprintln!("saturation round {}: {:<8} {}", round + 1, s.name, m.line());
            sat[i].push(m);
        }
    }
    let bare_sat = median(sat[1].iter().map(|m| m.rps));

    // Latency at fixed rates, interleaved the same way.
    let mut lat: Vec<(u32, f64, [Vec<Sample>; 2])> = Vec::new();
    if !args.skip_latency {
        for &pct in &args.rates {
            let rate = (bare_sat * pct as f64 / 100.0).round().max(1.0);
            let mut runs: [Vec<Sample>; 2] = [Vec::new(), Vec::new()];
            for round in 0..args.rounds {
                for (i, s) in servers.iter().enumerate() {
                    cx.oha(s, rate, args.warmup)?;
                    let m = cx.oha(s, rate, args.duration)?;
                    eprintln!(
                        "{pct} % ({rate:.0}/s) round {}: {:<8} {}",
                        round + 1,
                        s.name,
                        m.line()
                    );
                    runs[i].push(m);
                }
            }
            lat.push((pct, rate, runs));
        }
    }
    drop(nextbest);
    drop(bare);
    report(args, &pin, answer_bytes, &sat, &lat);
    Ok(())
}

// ---- tools and binaries ------------------------------------------------------------------

/// A path as given when it exists from the current directory, else from the package root
/// (so the defaults work from anywhere).
fn resolve(path: &Path) -> PathBuf {
    if path.is_absolute() || path.exists() {
        path.to_owned()
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
    }
}

fn check_tool(name: &str, probe: &[&str], install: &str) -> Result<()> {
    match Command::new(name)
        .args(probe)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(format!(
            "`{name}` is not installed (or not on PATH); install it with `{install}`"
        )),
        Err(e) => Err(format!("cannot run `{name}`: {e}")),
    }
}

/// Builds nextbest and the bare server with cargo in the profile this example was built in
/// (`release`, `production`, ...), and returns that profile's directory, which holds both.
fn binaries(no_build: bool) -> Result<PathBuf> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    // <target>/<profile>/examples/loadbench
    let release = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("cannot locate the target directory")?
        .to_owned();
    if !no_build {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let profile = match release.file_name().and_then(|n| n.to_str()) {
            Some("debug") => "dev",
            Some(name) => name,
            None => return Err("cannot tell the profile from the target directory".into()),
        };
        eprintln!(
            "loadbench: cargo build --profile {profile} --bin nextbest --example bare_server"
        );
        let target = release
            .parent()
            .ok_or("cannot locate the target directory")?;
        let mut build = Command::new(cargo);
        // `cargo run` hands this example the package's variables (CARGO_MANIFEST_DIR, ...);
        // a dependency's build script that watches one (ring's) would see it changed and
        // rebuild, with everything above it, here and again at the next plain build.
        for (key, _) in std::env::vars_os() {
            let run_only = key.to_str().is_some_and(|k| {
                [
                    "CARGO_MANIFEST_",
                    "CARGO_PKG_",
                    "CARGO_CRATE_",
                    "CARGO_BIN_",
                ]
                .iter()
                .any(|p| k.starts_with(p))
                    || k == "CARGO_PRIMARY_PACKAGE"
            });
            if run_only {
                build.env_remove(key);
            }
        }
        let ok = build
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args([
                "build",
                "--profile",
                profile,
                "--bin",
                "nextbest",
                "--example",
                "bare_server",
                "--target-dir",
            ])
            .arg(target)
            .status()
            .map_err(|e| format!("running cargo: {e}"))?
            .success();
        if !ok {
            return Err("cargo build failed".into());
        }
    }
    for b in ["nextbest", "examples/bare_server"] {
        if !release.join(b).is_file() {
            return Err(format!(
                "{} is missing; build it or drop --no-build",
                release.join(b).display()
            ));
        }
    }
    Ok(release)
}

/// Where the servers and the load generator run.
struct Pinning {
    enabled: bool,
    why_not: Option<String>,
}

impl Pinning {
    fn detect(disabled: bool) -> Self {
        let why_not = if disabled {
            Some("--no-pin given".to_owned())
        } else {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            if cores < 2 {
                Some(format!("only {cores} core(s) available to this process"))
            } else {
                match Command::new("taskset")
                    .args(["-c", "1", "true"])
                    .stderr(Stdio::null())
                    .status()
                {
                    Ok(s) if s.success() => None,
                    Ok(_) => Some("`taskset -c 1` is refused here".to_owned()),
                    Err(_) => {
                        Some("`taskset` is not installed (apt-get install util-linux)".to_owned())
                    }
                }
            }
        };
        Pinning {
            enabled: why_not.is_none(),
            why_not,
        }
    }

    fn describe(&self) -> String {
        match &self.why_not {
            None => "pinned: servers on core 0 (one runtime worker), load generator on core 1 (one thread)".into(),
            Some(why) => format!("NOT pinned ({why}): servers and load generator share every core; figures are noisier"),
        }
    }

    /// A command, wrapped in `taskset -c CORE` when pinning.
    fn command(&self, core: u32, program: &Path) -> Command {
        if self.enabled {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(core.to_string()).arg(program);
            c
        } else {
            Command::new(program)
        }
    }
}

// ---- servers ------------------------------------------------------------------------------

/// A started server process; killed when dropped.
struct Server {
    name: &'static str,
    child: Child,
    pid: u32,
    addr: SocketAddr,
}

impl Server {
    /// Starts a server and waits until `ready` finds its address in a line it prints (stdout
    /// or stderr); later output is drained so the server never blocks on a full pipe.
    fn start(
        name: &'static str,
        pin: &Pinning,
        program: &Path,
        args: &[&str],
        ready: impl Fn(&str) -> Option<String>,
    ) -> Result<Server> {
        let mut child = pin
            .command(0, program)
            .args(args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", program.display()))?;
        let (tx, rx) = mpsc::channel::<String>();
        for pipe in [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(|l| l.ok()) {
                    let _ = tx.send(line);
                }
            });
        }
        drop(tx);
        let pid = child.id();
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut seen = Vec::new();
        let addr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    let line = strip_ansi(&line);
                    if let Some(a) = ready(&line) {
                        break a;
                    }
                    seen.push(line);
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "{name} did not report its address; it printed:\n{}",
                        seen.join("\n")
                    ));
                }
            }
        };
        // Keep draining in the background.
        std::thread::spawn(move || for _ in rx {});
        let addr: SocketAddr = addr
            .parse()
            .map_err(|e| format!("{name}: bad address `{addr}`: {e}"))?;
        if !addr.ip().is_loopback() {
            return Err(format!(
                "{name} bound {addr}, not loopback: refusing to load it"
            ));
        }
        eprintln!("{name}: pid {pid} on {addr}");
        Ok(Server {
            name,
            child,
            pid,
            addr,
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `key=value` out of a log line.
fn field(line: &str, key: &str) -> Option<String> {
    let start = line.find(key)? + key.len();
    Some(
        line[start..]
            .split(|c: char| c.is_whitespace() || c == ',')
            .next()?
            .to_owned(),
    )
}

/// Sends a few requests of the mix (one connection each) and returns the mean answer body
/// size and the share of personalised answers.
fn sample_answers(addr: SocketAddr, mix: &[MixItem]) -> Result<(usize, f64)> {
    let (mut bytes, mut personalised) = (0usize, 0usize);
    for m in mix {
        let body = m.body();
        let mut s = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
        let req = format!(
            "POST /v1/decide HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let mut resp = Vec::new();
        s.write_all(req.as_bytes())
            .and_then(|_| s.read_to_end(&mut resp))
            .map_err(|e| format!("sample request: {e}"))?;
        let resp = String::from_utf8_lossy(&resp);
        let (head, answer) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
        if !head.starts_with("HTTP/1.1 200") {
            return Err(format!(
                "nextbest answered `{}` to {body}",
                head.lines().next().unwrap_or("")
            ));
        }
        bytes += answer.len();
        personalised += answer.contains("\"fallback\":null") as usize;
    }
    Ok((bytes / mix.len(), personalised as f64 / mix.len() as f64))
}

// ---- the request mix ----------------------------------------------------------------------

struct MixItem {
    customer: usize,
    placement: usize,
}

impl MixItem {
    fn body(&self) -> String {
        let (ch, pl) = PLACEMENTS[self.placement];
        format!(
            r#"{{"customer_id":"C{:07}","channel":"{ch}","placement":"{pl}","context":{{"page":"plans","device":"ios"}}}}"#,
            self.customer
        )
    }
}

/// SplitMix64 over customers 1..=customers and the placements.
fn request_mix(customers: usize, n: usize, seed: u64) -> Vec<MixItem> {
    let mut x = seed;
    let mut next = move || {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    (0..n)
        .map(|_| MixItem {
            customer: 1 + (next() % customers as u64) as usize,
            placement: (next() % PLACEMENTS.len() as u64) as usize,
        })
        .collect()
}

/// wrk script: the mix pre-formatted once per thread, then cycled; `done` prints one line
/// this program parses.
fn wrk_script(mix: &[MixItem]) -> String {
    let mut s = String::from(
        "-- Generated by examples/loadbench.rs: the request mix, cycled.\nlocal items = {\n",
    );
    for m in mix {
        s.push_str(&format!("{{{},{}}},\n", m.customer, m.placement + 1));
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
    local body = string.format('{"customer_id":"C%07d","channel":"%s","placement":"%s","context":{"page":"plans","device":"ios"}}', it[1], p[1], p[2])
    reqs[i] = wrk.format("POST", "/v1/decide", headers, body)
  end
end
request = function()
  n = n % #reqs + 1
  return reqs[n]
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("LOADBENCH requests=%d duration_us=%d errors=%d status_errors=%d\n",
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status))
end
"#,
    );
    s
}

// ---- running the load generators ----------------------------------------------------------

struct RunCx<'a> {
    args: &'a Args,
    pin: &'a Pinning,
    lua: &'a Path,
    bodies: &'a Path,
    clk_tck: f64,
}

/// One measured run.
#[derive(Debug, Clone, Default)]
struct Sample {
    /// Responses per second.
    rps: f64,
    /// Successful responses.
    responses: u64,
    /// Failed or non-2xx responses.
    errors: u64,
    /// Server CPU per response, in microseconds.
    cpu_us: f64,
    /// Load generator CPU, in cores.
    gen_cores: f64,
    /// CPU used by everything else during the run, in cores: on the server's core when
    /// pinned (else on the whole machine).
    other_cores: f64,
    /// Pinned: CPU used by everything else on the load generator's core, in cores.
    other_gen_core: Option<f64>,
    /// Fixed-rate runs: the rate asked for, and latency percentiles in microseconds.
    target_rate: Option<f64>,
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
}

impl Sample {
    /// Other processes' CPU: "server core / generator core" when pinned, else the machine's.
    fn other(&self) -> String {
        match self.other_gen_core {
            Some(g) => format!("{:.2} / {g:.2}", self.other_cores),
            None => format!("{:.2}", self.other_cores),
        }
    }

    fn line(&self) -> String {
        let mut s = format!(
            "{:>9.0} req/s  {:>5.1} us CPU/req  generator {:.2} cores  other {}",
            self.rps,
            self.cpu_us,
            self.gen_cores,
            self.other()
        );
        if self.target_rate.is_some() {
            s += &format!(
                "  p50 {:.0} us  p99 {:.0} us  p99.9 {:.0} us",
                self.p50_us, self.p99_us, self.p999_us
            );
        }
        if self.errors > 0 {
            s += &format!("  ERRORS {}", self.errors);
        }
        s
    }
}

/// CPU clock readings around one run.
struct CpuMark {
    server: u64,
    children: u64,
    /// Busy ticks of the whole machine, of core 0 and of core 1.
    busy: [u64; 3],
    at: Instant,
}

impl CpuMark {
    fn take(server_pid: u32) -> Result<CpuMark> {
        Ok(CpuMark {
            server: proc_cpu_ticks(&format!("/proc/{server_pid}/stat"), 13)?,
            children: proc_cpu_ticks("/proc/self/stat", 15)?,
            busy: [
                busy_ticks("cpu ")?,
                busy_ticks("cpu0 ")?,
                busy_ticks("cpu1 ")?,
            ],
            at: Instant::now(),
        })
    }
}

impl RunCx<'_> {
    fn generator(&self, program: &str) -> Command {
        self.pin.command(1, Path::new(program))
    }

    /// Fills in CPU figures from marks taken before and after the run (the load generator is
    /// this process's only child reaped in between, so the change of our children's CPU time
    /// is its CPU time).
    fn account(&self, s: &mut Sample, before: &CpuMark, after: &CpuMark) {
        let secs = after.at.duration_since(before.at).as_secs_f64().max(1e-9);
        let server = (after.server - before.server) as f64 / self.clk_tck;
        let generator = (after.children - before.children) as f64 / self.clk_tck;
        let busy = |i: usize| (after.busy[i] - before.busy[i]) as f64 / self.clk_tck;
        s.cpu_us = server * 1e6 / s.responses.max(1) as f64;
        s.gen_cores = generator / secs;
        if self.pin.enabled {
            s.other_cores = ((busy(1) - server) / secs).max(0.0);
            s.other_gen_core = Some(((busy(2) - generator) / secs).max(0.0));
        } else {
            s.other_cores = ((busy(0) - server - generator) / secs).max(0.0);
        }
    }

    fn wrk(&self, server: &Server, secs: u64) -> Result<Sample> {
        let before = CpuMark::take(server.pid)?;
        let out = self
            .generator("wrk")
            .args(["-t1", "-c"])
            .arg(self.args.connections.to_string())
            .arg("-d")
            .arg(format!("{secs}s"))
            .arg("-s")
            .arg(self.lua)
            .arg(format!("http://{}/v1/decide", server.addr))
            .output()
            .map_err(|e| format!("running wrk: {e}"))?;
        let after = CpuMark::take(server.pid)?;
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find(|l| l.starts_with("LOADBENCH "))
            .ok_or_else(|| {
                format!(
                    "wrk printed no result:\n{text}\n{}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })?;
        let num = |k: &str| -> Result<f64> {
            field(line, &format!("{k}="))
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("wrk: no {k} in `{line}`"))
        };
        let requests = num("requests")?;
        let errors = num("errors")? + num("status_errors")?;
        let mut s = Sample {
            rps: (requests - num("status_errors")?) / (num("duration_us")? / 1e6),
            responses: (requests - num("status_errors")?) as u64,
            errors: errors as u64,
            ..Sample::default()
        };
        self.account(&mut s, &before, &after);
        Ok(s)
    }

    fn oha(&self, server: &Server, rate: f64, secs: u64) -> Result<Sample> {
        let before = CpuMark::take(server.pid)?;
        let mut cmd = self.generator("oha");
        cmd.args([
            "--no-tui",
            "--output-format",
            "json",
            "--latency-correction",
        ])
        .arg("-q")
        .arg(format!("{rate:.0}"))
        .arg("-z")
        .arg(format!("{secs}s"))
        .arg("-c")
        .arg(self.args.connections.to_string())
        .args(["-m", "POST", "-T", "application/json", "-Z"])
        .arg(self.bodies);
        if self.pin.enabled {
            cmd.args(["--worker-threads", "1"]);
        }
        let out = cmd
            .arg(format!("http://{}/v1/decide", server.addr))
            .output()
            .map_err(|e| format!("running oha: {e}"))?;
        let after = CpuMark::take(server.pid)?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| {
            format!(
                "oha printed no JSON ({e}):\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
        let pct = |k: &str| v["latencyPercentiles"][k].as_f64().unwrap_or(f64::NAN) * 1e6;
        let mut ok = 0u64;
        let mut bad = 0u64;
        if let Some(codes) = v["statusCodeDistribution"].as_object() {
            for (code, n) in codes {
                let n = n.as_u64().unwrap_or(0);
                if code.starts_with('2') {
                    ok += n;
                } else {
                    bad += n;
                }
            }
        }
        if let Some(errs) = v["errorDistribution"].as_object() {
            // Requests still in flight when the run ends are cut, not failed.
            bad += errs
                .iter()
                .filter(|(k, _)| !k.contains("aborted due to deadline"))
                .filter_map(|(_, n)| n.as_u64())
                .sum::<u64>();
        }
        let total = v["summary"]["total"].as_f64().unwrap_or(secs as f64);
        let mut s = Sample {
            rps: ok as f64 / total,
            responses: ok,
            errors: bad,
            target_rate: Some(rate),
            p50_us: pct("p50"),
            p99_us: pct("p99"),
            p999_us: pct("p99.9"),
            ..Sample::default()
        };
        self.account(&mut s, &before, &after);
        Ok(s)
    }
}

/// utime+stime (or cutime+cstime when `first` is 15) from a /proc stat file, in ticks;
/// `first` is the 0-based index of the field after the command name's closing parenthesis,
/// counting the pid and name as fields 0 and 1.
fn proc_cpu_ticks(path: &str, first: usize) -> Result<u64> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let rest = text
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| format!("{path}: unexpected format"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| -> Result<u64> {
        fields
            .get(i - 2)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| format!("{path}: no field {i}"))
    };
    Ok(get(first)? + get(first + 1)?)
}

/// Busy ticks (all but idle and iowait) of one line of /proc/stat: `"cpu "` for the whole
/// machine, `"cpu0 "` for core 0.
fn busy_ticks(line: &str) -> Result<u64> {
    let text = std::fs::read_to_string("/proc/stat").map_err(|e| format!("/proc/stat: {e}"))?;
    let cpu: Vec<u64> = text
        .lines()
        .find(|l| l.starts_with(line))
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    if cpu.len() < 5 {
        // A machine without that core: pinning is off there and the figure unused.
        return Ok(0);
    }
    // user nice system idle iowait irq softirq steal ...; guest time is already in user.
    let total: u64 = cpu.iter().take(8).sum();
    Ok(total - cpu[3] - cpu[4])
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// Cores and CPU model, for the record.
fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cores} cores, {model}")
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

// ---- the report ---------------------------------------------------------------------------

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Median of other processes' CPU over runs, as [`Sample::other`] shows it.
fn other_median(runs: &[Sample]) -> String {
    Sample {
        other_cores: median(runs.iter().map(|s| s.other_cores)),
        other_gen_core: runs
            .iter()
            .all(|s| s.other_gen_core.is_some())
            .then(|| median(runs.iter().filter_map(|s| s.other_gen_core))),
        ..Sample::default()
    }
    .other()
}

fn report(
    args: &Args,
    pin: &Pinning,
    answer_bytes: usize,
    sat: &[Vec<Sample>; 2],
    lat: &[(u32, f64, [Vec<Sample>; 2])],
) {
    let names = ["nextbest", "bare"];
    let med = |runs: &[Sample], f: fn(&Sample) -> f64| median(runs.iter().map(f));
    println!();
    println!("Machine: {}; load average {}", machine(), load_average());
    println!();
    println!(
        "## Load benchmark: medians of {} interleaved runs of {} s ({} connections; {}; answers {} bytes)",
        args.rounds,
        args.duration,
        args.connections,
        if pin.enabled { "pinned" } else { "NOT pinned" },
        answer_bytes
    );
    println!();
    println!("Saturation (wrk):");
    println!();
    println!(
        "| server | req/s | server CPU us/req | generator cores | other CPU, cores | errors |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (i, runs) in sat.iter().enumerate() {
        println!(
            "| {} | {:.0} | {:.1} | {:.2} | {} | {} |",
            names[i],
            med(runs, |s| s.rps),
            med(runs, |s| s.cpu_us),
            med(runs, |s| s.gen_cores),
            other_median(runs),
            runs.iter().map(|s| s.errors).sum::<u64>()
        );
    }
    println!(
        "| **nextbest / bare** | **{:.3}** | **{:.2}** | | | |",
        med(&sat[0], |s| s.rps) / med(&sat[1], |s| s.rps),
        med(&sat[0], |s| s.cpu_us) / med(&sat[1], |s| s.cpu_us)
    );
    if lat.is_empty() {
        return;
    }
    println!();
    println!("Fixed rates (oha, latency corrected for coordinated omission), in microseconds:");
    println!();
    println!("| rate | server | achieved req/s | p50 | p99 | p99.9 | server CPU us/req | generator cores | other CPU, cores | errors |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (pct, rate, runs) in lat {
        for (i, r) in runs.iter().enumerate() {
            let achieved = med(r, |s| s.rps);
            println!(
                "| {pct} % ({rate:.0}/s) | {} | {achieved:.0}{} | {:.0} | {:.0} | {:.0} | {:.1} | {:.2} | {} | {} |",
                names[i],
                if achieved < 0.97 * rate { " (rate not held)" } else { "" },
                med(r, |s| s.p50_us),
                med(r, |s| s.p99_us),
                med(r, |s| s.p999_us),
                med(r, |s| s.cpu_us),
                med(r, |s| s.gen_cores),
                other_median(r),
                r.iter().map(|s| s.errors).sum::<u64>()
            );
        }
        println!(
            "| {pct} % | **nextbest / bare** | | **{:.2}** | **{:.2}** | **{:.2}** | **{:.2}** | | | |",
            med(&runs[0], |s| s.p50_us) / med(&runs[1], |s| s.p50_us),
            med(&runs[0], |s| s.p99_us) / med(&runs[1], |s| s.p99_us),
            med(&runs[0], |s| s.p999_us) / med(&runs[1], |s| s.p999_us),
            med(&runs[0], |s| s.cpu_us) / med(&runs[1], |s| s.cpu_us),
        );
    }
    println!();
    println!(
        "\"other CPU\" is CPU that neither the server nor the load generator used during the run \
         (other processes, this program, kernel threads){}; well above 0.05 means the run was disturbed.",
        if pin.enabled {
            ", on the server's core / on the generator's core"
        } else {
            ", on the whole machine"
        }
    );
}
