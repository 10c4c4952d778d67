//! What the decision log costs the decide path: the in-process `POST /v1/decide` pipeline
//! (as `benches/codec.rs` measures it) with the log off, on with 1 % sampled, and on with
//! every decision sampled (a copy of the request and answer handed to the queue; when the
//! writer falls behind, the sample is dropped and counted).
//!
//! `cargo bench --bench decision_log`.

#[path = "common/mod.rs"]
mod common;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use nextbest::decision_log::{DecisionLog, DecisionLogConfig};

fn pipeline(c: &mut Criterion) {
    let bodies: Vec<Vec<u8>> = common::request_mix(10_000, 16_384, 5)
        .iter()
        .map(common::request_body)
        .collect();
    let dir = std::env::temp_dir().join(format!("nextbest-bench-dlog-{}", std::process::id()));
    let with_log = |sample: f64| {
        let log = DecisionLog::start(DecisionLogConfig {
            dir: dir.join(sample.to_string()),
            sample,
            file_bytes: 64 << 20,
            max_files: 2,
        })
        .expect("the decision log opens");
        common::Handler {
            state: common::Handler::demo_builder().decision_log(log).build(),
        }
    };
    let handlers = [
        ("off", common::Handler::demo()),
        ("sample_0.01", with_log(0.01)),
        ("sample_1", with_log(1.0)),
    ];
    let mut g = c.benchmark_group("decision_log");
    for (name, handler) in &handlers {
        let mut next = 0;
        g.bench_function(format!("decide_post_demo_mix/{name}"), |b| {
            b.iter_batched_ref(
                || {
                    next = (next + 1) % bodies.len();
                    bodies[next].clone()
                },
                |buf| black_box(handler.decide_post(buf)),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
    for (name, handler) in &handlers {
        if let Some(log) = &handler.state.decision_log {
            log.close();
            eprintln!(
                "decision_log/{name}: {} samples written, {} dropped",
                log.written(),
                log.dropped()
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
