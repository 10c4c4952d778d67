//! The cost of each part of replication on one replica, alone: applying one remote event
//! (decode, dedupe, contact state, subscribers) and taking one event in locally (without the
//! log's disk write, which the event benches measure).
//!
//! `cargo bench --bench fleet`

use std::fmt::Write as _;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use nextbest::contact::state::{ContactState, StateConfig};
use nextbest::contact::{Applier, Clock, ContactConfig, Contacts, Event, EventKind, Subscriber};

/// The server's allocator: applying an event allocates a history, and glibc's malloc would
/// measure another allocator's cost.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Encoded impressions of `n` customers, each with its own event id.
fn payloads(n: usize) -> Vec<(Vec<u8>, String)> {
    (0..n)
        .map(|i| {
            let customer = format!("C{i:07}");
            let e = Event {
                kind: EventKind::Impression,
                ts_ms: 1_795_000_000_000,
                customer_id: &customer,
                visitor_id: None,
                offer_id: Some("data_boost_10gb"),
                channel: Some("web"),
                placement: Some("home_hero"),
                decision_id: None,
                event_id: None,
                category: Some("sales"),
                request: None,
                attributed: None,
            };
            let mut p = Vec::new();
            e.encode(&mut p);
            (p, String::new())
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let now = 1_795_000_000_000 + 1_000;
    // A million customers, so each history holds the few impressions of a real horizon
    // (not the 256 a bench cycling over few customers would pile up).
    let events = payloads(1_000_000);
    let horizon_ms = 30 * 86_400_000;
    let mut g = c.benchmark_group("fleet");
    g.throughput(criterion::Throughput::Elements(1));

    // The live subscribers (funnel and adaptive counts), as a replica runs them.
    let config = ContactConfig {
        horizon_ms,
        ..ContactConfig::default()
    };
    let contacts = Contacts::in_memory(&config, Clock::manual(now).0);
    // Every id new, as on a live stream (a repeat would stop at the dedupe check).
    let mut i = 0u64;
    let mut id = String::new();
    g.bench_function("apply_remote_event", |b| {
        b.iter(|| {
            let (p, _) = &events[i as usize % events.len()];
            i += 1;
            id.clear();
            let _ = write!(id, "r1:{i}");
            black_box(contacts.apply_remote(p, &id).ok())
        })
    });

    // The parts alone.
    g.bench_function("decode_event", |b| {
        let (p, _) = &events[0];
        b.iter(|| black_box(Event::decode(black_box(p)).ok()))
    });
    let state = Arc::new(ContactState::new(&StateConfig::default(), horizon_ms));
    let bare = Applier::new(state, Vec::<Arc<dyn Subscriber>>::new());
    let mut j = 0u64;
    g.bench_function("apply_to_state_only", |b| {
        b.iter(|| {
            let (p, _) = &events[j as usize % events.len()];
            j += 1;
            id.clear();
            let _ = write!(id, "r1:{j}");
            black_box(bare.apply_once(p, &id, now).ok())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
