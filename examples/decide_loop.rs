//! A profiling target: the in-process `POST /v1/decide` path (decode, snapshot load, clock,
//! ULID, decide, encode, metrics) in a plain loop over the demo request mix, no sockets.
//!
//! `cargo run --release --example decide_loop -- --iterations 2000000` prints ns per request;
//! under a profiler: `valgrind --tool=callgrind target/release/examples/decide_loop
//! --iterations 20000`, then `callgrind_annotate --inclusive=yes callgrind.out.<pid>`.
//! `--engine-only` loops over `engine::decide` alone; `--generated 50` does so on the bench's
//! generated model of 50 logistic offers instead of the demo. The path is the copy in
//! benches/common (`Handler::decide_post`), so profile and pipeline bench agree.

#[path = "../benches/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::time::Instant;

use clap::Parser;
use nextbest::engine::{self, NoContacts, Request, Unbounded};

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Run the decide path in a loop.
#[derive(Parser)]
struct Args {
    /// Requests to run.
    #[arg(long, default_value_t = 1_000_000)]
    iterations: usize,
    /// Only `engine::decide` (no decode, encode, clock or metrics).
    #[arg(long)]
    engine_only: bool,
    /// With `--engine-only`: decide on a generated model of this many logistic offers (8
    /// weights each, all candidates of `web`/`home`) instead of the demo.
    #[arg(long, requires = "engine_only")]
    generated: Option<usize>,
}

fn main() {
    let args = Args::parse();
    let handler = common::Handler::demo();
    let mix = common::request_mix(10_000, 16_384, 5);
    let bodies: Vec<Vec<u8>> = mix.iter().map(common::request_body).collect();
    let mut buf = Vec::with_capacity(512);
    let snap = handler.state.registry.load();
    let (Some(demo_set), Some(store)) = (&snap.models, &snap.features) else {
        unreachable!("the demo is installed")
    };
    let demo_model = &demo_set.champion;
    let generated = args
        .generated
        .map(|n| common::compile(common::generated_model(n, 8, false), store));
    let model = generated.as_ref().unwrap_or(demo_model);
    let started = Instant::now();
    let mut bytes = 0usize;
    for i in 0..args.iterations {
        let n = i % mix.len();
        if args.engine_only {
            let it = &mix[n];
            let (channel, placement) = match generated {
                Some(_) => ("web", "home"),
                None => (it.channel, it.placement),
            };
            let req = Request {
                customer_id: Some(&it.customer_id),
                channel,
                placement,
                ..Default::default()
            };
            let d = engine::decide(
                &model.compiled,
                store,
                black_box(&req),
                &NoContacts,
                &Unbounded,
                common::NOW_MS,
            );
            bytes += d.ranked.len();
        } else {
            // The server owns the body it read; the copy stands in for that read.
            buf.clear();
            buf.extend_from_slice(&bodies[n]);
            let resp = handler.decide_post(black_box(&buf));
            bytes += hyper::body::Body::size_hint(resp.body()).lower() as usize;
        }
    }
    let took = started.elapsed();
    println!(
        "{} requests in {:.3} s: {:.0} ns each ({})",
        args.iterations,
        took.as_secs_f64(),
        took.as_nanos() as f64 / args.iterations as f64,
        if let Some(n) = args.generated {
            format!("engine::decide only, {n} generated logistic offers")
        } else if args.engine_only {
            "engine::decide only, demo model".to_owned()
        } else {
            "decode + decide + encode".to_owned()
        }
    );
    black_box(bytes);
}
