//! Criterion benches of the request/response codecs and of the whole in-process decide path.
//!
//! `cargo bench --bench codec`. Request parsing compares the server's decoder
//! (`codec::decode_json`: simd-json on a copy with reused buffers; field paths only on failure) against
//! serde_json on the same `DecideBody`, with and without serde_path_to_error, to justify (or
//! not) the choice of simd-json. Every parse gets a fresh copy of the body, as the server does
//! (simd-json rewrites its input), and that copy is left out of the timing.

#[path = "common/mod.rs"]
mod common;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use nextbest::engine::{self, NoContacts, Unbounded};
use nextbest::server::codec::{self, AnswerMeta, DecideBody};

/// The DESIGN.md request (context and all) and a minimal one.
fn bodies() -> [(&'static str, Vec<u8>); 2] {
    let mix = common::request_mix(10_000, 1, 4);
    [
        ("typical", common::request_body(&mix[0])),
        (
            "minimal",
            br#"{"customer_id":"C0000042","channel":"web","placement":"home_hero"}"#.to_vec(),
        ),
    ]
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    for (name, body) in bodies() {
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(format!("{name}/simd_json_server"), |b| {
            b.iter_batched_ref(
                || body.clone(),
                |buf| {
                    let mut scratch = Vec::with_capacity(buf.len());
                    black_box(codec::decode_json(buf, &mut scratch).expect("valid"));
                },
                BatchSize::SmallInput,
            )
        });
        g.bench_function(format!("{name}/simd_json_plain"), |b| {
            b.iter_batched_ref(
                || body.clone(),
                |buf| {
                    let parsed: DecideBody<'_> = simd_json::serde::from_slice(buf).expect("valid");
                    black_box(parsed);
                },
                BatchSize::SmallInput,
            )
        });
        g.bench_function(format!("{name}/serde_json_path_to_error"), |b| {
            b.iter_batched_ref(
                || body.clone(),
                |buf| {
                    let mut de = serde_json::Deserializer::from_slice(buf);
                    let parsed: DecideBody<'_> =
                        serde_path_to_error::deserialize(&mut de).expect("valid");
                    black_box(parsed);
                },
                BatchSize::SmallInput,
            )
        });
        g.bench_function(format!("{name}/serde_json_plain"), |b| {
            b.iter_batched_ref(
                || body.clone(),
                |buf| {
                    let parsed: DecideBody<'_> = serde_json::from_slice(buf).expect("valid");
                    black_box(parsed);
                },
                BatchSize::SmallInput,
            )
        });
    }
    // The GET form the latency load bench sends (see examples/loadbench.rs).
    let query = "customer_id=C0000042&channel=web&placement=plans_page";
    g.throughput(Throughput::Bytes(query.len() as u64));
    g.bench_function("query_string", |b| {
        b.iter(|| black_box(codec::decode_query(black_box(query)).expect("valid")))
    });
    g.finish();
}

/// Encoding a personalised answer of 3 offers (plans_page) and of 1 (home_hero).
fn encode(c: &mut Criterion) {
    let (store, model) = common::demo();
    let m = &model.compiled;
    let mut g = c.benchmark_group("encode");
    for (placement, want) in [("plans_page", 3), ("home_hero", 1)] {
        // The first customer who gets a full personalised answer here.
        let d = (1..=store.len())
            .map(|i| format!("C{i:07}"))
            .find_map(|id| {
                let req = engine::Request {
                    customer_id: Some(&id),
                    channel: "web",
                    placement,
                    ..Default::default()
                };
                let d = engine::decide(m, &store, &req, &NoContacts, &Unbounded, common::NOW_MS);
                (d.fallback.is_none() && d.ranked.len() == want).then_some(d)
            })
            .expect("a personalised answer");
        let meta = AnswerMeta {
            decision_id: "01JD0000000000000000000000",
            customer_id: Some("C0000042"),
            variant: "champion",
        };
        let mut size = 0;
        g.bench_function(format!("decision/{want}_offers"), |b| {
            b.iter(|| {
                let mut out = Vec::with_capacity(1024);
                codec::encode_decision(&mut out, &meta, m, black_box(&d));
                codec::finish(&mut out, 12);
                size = out.len();
                black_box(out)
            })
        });
        eprintln!("encode/decision/{want}_offers: {size} bytes");
    }
    g.finish();
}

/// Everything `POST /v1/decide` does in process once the body is read: decode, snapshot load,
/// clock, ULID, decide, encode, metrics, Server-Timing header (no hyper, no sockets).
fn pipeline(c: &mut Criterion) {
    let handler = common::Handler::demo();
    let bodies: Vec<Vec<u8>> = common::request_mix(10_000, 16_384, 5)
        .iter()
        .map(common::request_body)
        .collect();
    let mut next = 0;
    c.bench_function("pipeline/decide_post_demo_mix", |b| {
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

criterion_group!(benches, decode, encode, pipeline);
criterion_main!(benches);
