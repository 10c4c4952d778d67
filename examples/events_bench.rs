//! Measurements for events and contact state (BENCHMARKS.md, "Events and contact state").
//!
//! ```sh
//! cargo run --release --example events_bench -- ingest --fsync always --clients 16 --batch 50
//! cargo run --release --example events_bench -- ingest --fsync interval --clients 16 --batch 50
//! cargo run --release --example events_bench -- replay --events 10000000 --customers 1000000
//! cargo run --release --example events_bench -- decide --customers 1000000
//! ```
//! Everything runs in one process on loopback, in a temporary folder removed at the end.

use std::fmt::Write as _;
use std::hint::black_box;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use nextbest::contact::log::{push_record, MAGIC};
use nextbest::contact::view::CustomerView;
use nextbest::contact::{
    Clock, ContactConfig, Contacts, Event, EventKind, FsyncPolicy, StateConfig,
};
use nextbest::engine::{self, Request, Unbounded};
use nextbest::features::FeatureStore;
use nextbest::model::{self, Limits};
use nextbest::registry::Registry;
use nextbest::server::{self, AppState, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand)]
enum What {
    /// Events per second through POST /v1/events.
    Ingest {
        #[arg(long, value_enum, default_value = "always")]
        fsync: Fsync,
        /// Concurrent keep-alive connections.
        #[arg(long, default_value_t = 16)]
        clients: usize,
        /// Events per request.
        #[arg(long, default_value_t = 50)]
        batch: usize,
        /// How long to post.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Time to replay a log of N events into the contact state.
    Replay {
        #[arg(long, default_value_t = 10_000_000)]
        events: u64,
        #[arg(long, default_value_t = 1_000_000)]
        customers: u64,
    },
    /// Decision latency (history lookup + policies + engine) with an empty and a populated state.
    Decide {
        #[arg(long, default_value_t = 1_000_000)]
        customers: u64,
        #[arg(long, default_value_t = 500_000)]
        decisions: usize,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Fsync {
    Always,
    Interval,
}

const OFFERS: [(&str, &str); 6] = [
    ("data_boost_10gb", "sales"),
    ("device_upgrade_5g", "sales"),
    ("fiber_home", "sales"),
    ("loyalty_discount_10", "retention"),
    ("autopay_topup", "service"),
    ("streaming_bundle", "sales"),
];

fn demo() -> (Arc<FeatureStore>, model::LoadedModel) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let features = Arc::new(FeatureStore::load(&dir.join("features.csv")).expect("demo features"));
    let model = model::load(&dir, &*features, &Limits::default()).expect("demo model");
    (features, model)
}

fn temp_dir(tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("nextbest-bench-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    p
}

fn main() {
    match Cli::parse().what {
        What::Ingest {
            fsync,
            clients,
            batch,
            seconds,
        } => ingest(fsync, clients, batch, seconds),
        What::Replay { events, customers } => replay(events, customers),
        What::Decide {
            customers,
            decisions,
        } => decide(customers, decisions),
    }
}

fn ingest(fsync: Fsync, clients: usize, batch: usize, seconds: u64) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = temp_dir("ingest");
    rt.block_on(async {
        let (features, model) = demo();
        let config = ContactConfig {
            data_dir: Some(dir.clone()),
            fsync: match fsync {
                Fsync::Always => FsyncPolicy::Always,
                Fsync::Interval => FsyncPolicy::Interval(Duration::from_millis(200)),
            },
            ..ContactConfig::default()
        };
        let registry = Arc::new(Registry::default());
        registry.install(features, model).expect("install the demo model");
        let contacts =
            Arc::new(server::open_contacts(&registry, &config, Clock::system()).expect("log"));
        let server_config = ServerConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            admin_listen: "127.0.0.1:0".parse().expect("addr"),
            max_body_bytes: 1 << 20,
            ..ServerConfig::default()
        };
        let state = Arc::new(
            AppState::builder(registry, server_config)
                .contacts(contacts.clone())
                .build(),
        );
        let running = server::start(state).await.expect("server");
        let addr = running.public_addr;
        let events = Arc::new(AtomicU64::new(0));
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let started = Instant::now();
        let mut tasks = Vec::new();
        for c in 0..clients {
            let events = events.clone();
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                let Ok(mut s) = TcpStream::connect(addr).await else {
                    return lat;
                };
                let _ = s.set_nodelay(true);
                let (mut body, mut req, mut buf) = (String::new(), Vec::new(), Vec::new());
                let mut i = 0u64;
                while Instant::now() < deadline {
                    body.clear();
                    body.push_str("{\"events\":[");
                    for j in 0..batch {
                        let (offer, _) = OFFERS[j % OFFERS.len()];
                        if j > 0 {
                            body.push(',');
                        }
                        let _ = write!(
                            body,
                            "{{\"type\":\"impression\",\"customer_id\":\"C{:07}\",\"offer_id\":\"{offer}\",\"channel\":\"web\",\"placement\":\"home_hero\",\"event_id\":\"b{c}-{i}-{j}\"}}",
                            (i as usize * batch + j) % 10_000 + 1
                        );
                    }
                    body.push_str("]}");
                    req.clear();
                    let _ = write!(
                        req,
                        "POST /v1/events HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    let t = Instant::now();
                    match exchange(&mut s, &req, &mut buf).await {
                        Some(202) => {
                            lat.push(t.elapsed());
                            events.fetch_add(batch as u64, Relaxed);
                        }
                        other => {
                            eprintln!("client {c}: {other:?}");
                            break;
                        }
                    }
                    i += 1;
                }
                lat
            }));
        }
        let mut lat = Vec::new();
        for t in tasks {
            lat.extend(t.await.unwrap_or_default());
        }
        let took = started.elapsed().as_secs_f64();
        lat.sort_unstable();
        let n = events.load(Relaxed);
        let stats = contacts.stats_json();
        println!(
            "ingest fsync={} clients={clients} batch={batch}: {n} events in {took:.1} s = {:.0} events/s, {:.0} requests/s; 202 latency p50 {:?} p99 {:?}; groups {} fsyncs {} (events per fsync {:.0})",
            stats["log"]["fsync"].as_str().unwrap_or("?"),
            n as f64 / took,
            lat.len() as f64 / took,
            pct(&lat, 0.5),
            pct(&lat, 0.99),
            stats["log"]["groups"],
            stats["log"]["fsyncs"],
            n as f64 / stats["log"]["fsyncs"].as_f64().unwrap_or(1.0).max(1.0),
        );
        running.shutdown().await;
        contacts.close();
    });
    let _ = std::fs::remove_dir_all(&dir);
}

fn pct(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * q) as usize]
}

/// One request on a keep-alive connection; the response status.
async fn exchange(s: &mut TcpStream, req: &[u8], buf: &mut Vec<u8>) -> Option<u16> {
    s.write_all(req).await.ok()?;
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = std::str::from_utf8(&buf[..end]).ok()?;
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        if buf.len() >= end + 4 + len {
            return head.split(' ').nth(1)?.parse().ok();
        }
    }
}

/// Synthetic events: mostly impressions, some outcomes, spread over the last six days.
fn synthetic(
    i: u64,
    n: u64,
    customers: u64,
    now: i64,
    id: &mut String,
    cust: &mut String,
) -> (EventKind, i64, usize) {
    // Mixed, so the kind does not follow the customer.
    let kind = match (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) % 100 {
        0..=79 => EventKind::Impression,
        80..=89 => EventKind::Click,
        90..=94 => EventKind::Dismiss,
        95..=98 => EventKind::Conversion,
        _ => EventKind::Complaint,
    };
    let ts = now - 6 * 86_400_000 + (i as i64 * (6 * 86_400_000 / n.max(1) as i64));
    id.clear();
    let _ = write!(id, "e{i}");
    cust.clear();
    let _ = write!(cust, "C{:07}", i % customers + 1);
    (kind, ts, (i / customers) as usize % OFFERS.len())
}

fn replay(n: u64, customers: u64) {
    let dir = temp_dir("replay");
    std::fs::create_dir_all(&dir).expect("temp dir");
    let now = Clock::system().now_ms();
    let t = Instant::now();
    let (mut seq, mut written, mut bytes) = (1u64, 0u64, 0u64);
    let open = |seq: u64| {
        let mut f = std::io::BufWriter::with_capacity(
            1 << 20,
            std::fs::File::create(dir.join(format!("events-{seq:020}.log"))).expect("segment"),
        );
        f.write_all(MAGIC).expect("write");
        f
    };
    let mut f = open(seq);
    let (mut rec, mut id, mut cust) = (Vec::with_capacity(256), String::new(), String::new());
    for i in 0..n {
        let (kind, ts, o) = synthetic(i, n, customers, now, &mut id, &mut cust);
        let (offer, category) = OFFERS[o];
        let e = Event {
            kind,
            ts_ms: ts,
            customer_id: &cust,
            visitor_id: None,
            offer_id: (kind != EventKind::Complaint).then_some(offer),
            channel: Some(if i % 3 == 0 { "app" } else { "web" }),
            placement: Some("home_hero"),
            decision_id: Some(u128::from(i) << 40 | 0x1234),
            event_id: Some(&id),
            category: Some(category),
            request: None,
            attributed: None,
        };
        rec.clear();
        push_record(&mut rec, |b| e.encode(b));
        f.write_all(&rec).expect("write");
        written += rec.len() as u64;
        bytes += rec.len() as u64;
        if written > 64 << 20 {
            f.flush().expect("flush");
            seq += 1;
            f = open(seq);
            written = 0;
        }
    }
    f.flush().expect("flush");
    drop(f);
    println!(
        "wrote {n} events ({:.0} MB, {seq} segments) in {:.1} s",
        bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    let (_, model) = demo();
    let config = ContactConfig {
        data_dir: Some(dir.clone()),
        horizon_ms: model.compiled.policies.horizon_ms,
        state: StateConfig {
            memory_bytes: 4 << 30,
            ..StateConfig::default()
        },
        ..ContactConfig::default()
    };
    let t = Instant::now();
    let contacts = Contacts::open(&config, Clock::system()).expect("replay");
    let open_s = t.elapsed().as_secs_f64();
    contacts.state().settle();
    let report = contacts.replay_report().cloned().unwrap_or_default();
    println!(
        "replay: {} records from {} segments; scan+decode+apply {:.1} s; open total (with loading the moka caches) {open_s:.1} s = {:.2} M events/s; {} customers, {} MB weighed, {} event ids remembered",
        report.records,
        report.segments,
        report.took_ms as f64 / 1e3,
        report.records as f64 / open_s / 1e6,
        contacts.state().customers(),
        contacts.state().weighted_bytes() / 1_000_000,
        contacts.state().seen_ids(),
    );
    contacts.close();
    drop(contacts);
    let _ = std::fs::remove_dir_all(&dir);
}

fn decide(customers: u64, decisions: usize) {
    let (features, model) = demo();
    let m = &model.compiled;
    let now = Clock::system().now_ms();
    for populated in [false, true] {
        let config = ContactConfig {
            horizon_ms: m.policies.horizon_ms,
            state: StateConfig {
                memory_bytes: 4 << 30,
                ..StateConfig::default()
            },
            ..ContactConfig::default()
        };
        let contacts = Contacts::in_memory(&config, Clock::system());
        if populated {
            // Every customer: four impressions, one click and one dismiss in the last six days.
            let (mut id, mut cust) = (String::new(), String::new());
            let n = customers * 6;
            for i in 0..n {
                let (_, ts, o) = synthetic(i, n, customers, now, &mut id, &mut cust);
                let kind = match i / customers {
                    4 => EventKind::Click,
                    5 => EventKind::Dismiss,
                    _ => EventKind::Impression,
                };
                let (offer, category) = OFFERS[o];
                let e = Event {
                    kind,
                    ts_ms: ts,
                    customer_id: &cust,
                    visitor_id: None,
                    offer_id: Some(offer),
                    channel: Some("web"),
                    placement: None,
                    decision_id: None,
                    event_id: None,
                    category: Some(category),
                    request: None,
                    attributed: None,
                };
                contacts.state().apply(&e, now);
            }
            contacts.state().settle();
        }
        let ids: Vec<String> = (1..=features.len()).map(|i| format!("C{i:07}")).collect();
        let mut lat = Vec::with_capacity(decisions);
        let mut held = 0usize;
        for k in 0..decisions + 20_000 {
            let id = &ids[k % ids.len()];
            let req = Request {
                customer_id: Some(id),
                channel: if k % 2 == 0 { "web" } else { "app" },
                placement: if k % 2 == 0 { "plans_page" } else { "app_home" },
                ..Request::default()
            };
            let t = Instant::now();
            let h = contacts.history(id);
            let view = CustomerView::new(h.as_deref(), &m.policies, now);
            let d = engine::decide(m, &features, &req, &view, &Unbounded, now);
            let took = t.elapsed();
            held += usize::from(h.is_some());
            black_box(&d);
            if k >= 20_000 {
                lat.push(took);
            }
        }
        lat.sort_unstable();
        let mean = lat.iter().sum::<Duration>() / lat.len().max(1) as u32;
        println!(
            "decide with {} contact state ({} customers held, {} MB weighed): {} decisions, p50 {:?} p90 {:?} p99 {:?} mean {mean:?} ({} with history)",
            if populated { "a populated" } else { "an empty" },
            contacts.state().customers(),
            contacts.state().weighted_bytes() / 1_000_000,
            lat.len(),
            pct(&lat, 0.5),
            pct(&lat, 0.9),
            pct(&lat, 0.99),
            held.min(lat.len() + 20_000),
        );
    }
}
