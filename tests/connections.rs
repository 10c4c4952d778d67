//! The connection bound under pressure: connections that send nothing, or sit idle between
//! keep-alive requests, make room for a newcomer; a connection with a request in flight never
//! does.
//!
//! The header timeout is 30 s here, so without eviction a newcomer at the bound would wait
//! that long for a silent connection to be cut: the 5 s bounds below cannot be met that way.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use nextbest::server::ServerConfig;
use serde_json::json;
use support::*;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

const MAX: usize = 64;
/// Far below the 30 s header timeout a silent connection would otherwise be held for.
const BOUND: Duration = Duration::from_secs(5);

fn pressure_config() -> ServerConfig {
    ServerConfig {
        max_connections: MAX,
        header_timeout: Duration::from_secs(30),
        // Held requests wait for the test to finish their body.
        body_timeout: Duration::from_secs(30),
        ..test_config()
    }
}

/// Opens `n` connections that never send a byte.
async fn silent(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(TcpStream::connect(addr).await.unwrap());
    }
    out
}

/// Whether the server closed the connection (end of stream) within the bound.
async fn closed_by_server(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(BOUND, s.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

/// `nextbest_connections_evicted_total` as `/metrics` reports it.
async fn evicted_metric(admin: SocketAddr) -> u64 {
    let text = String::from_utf8(get(admin, "/metrics").await.body).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("nextbest_connections_evicted_total "))
        .expect("the eviction counter is exported")
        .parse()
        .unwrap()
}

/// A decide request on a new connection; panics past the bound.
async fn decide_within_bound(addr: SocketAddr) -> Duration {
    let started = Instant::now();
    let r = tokio::time::timeout(
        BOUND,
        post_json(
            addr,
            "/v1/decide",
            &json!({"customer_id": "C0000042", "channel": "web", "placement": "plans_page"}),
        ),
    )
    .await
    .expect("the newcomer was not served while the bound was full");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    started.elapsed()
}

#[tokio::test]
async fn silent_connections_make_room_for_a_new_client_oldest_first() {
    let srv = start_demo_with(pressure_config()).await;
    let state = srv.state.clone();
    let mut held = silent(srv.public, MAX).await;
    eventually("the bound full of silent connections", || {
        state.connections.load(Relaxed) == MAX
    })
    .await;

    let waited = decide_within_bound(srv.public).await;
    eprintln!("newcomer answered in {waited:?} with {MAX} silent connections at the bound");
    assert!(
        closed_by_server(&mut held[0]).await,
        "the oldest silent connection was not the one closed"
    );
    assert_eq!(state.evicted_connections.load(Relaxed), 1);
    assert_eq!(evicted_metric(srv.admin).await, 1);
    srv.stop().await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_makes_room_too() {
    let srv = start_demo_with(pressure_config()).await;
    let state = srv.state.clone();
    // The oldest connection serves a request and stays open between requests.
    let mut keep = TcpStream::connect(srv.public).await.unwrap();
    let req = b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n";
    tokio::io::AsyncWriteExt::write_all(&mut keep, req)
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while parse_response(&got).is_none() {
        let n = keep.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before answering");
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(parse_response(&got).unwrap().0.status, 200);
    let _silent = silent(srv.public, MAX - 1).await;
    eventually("the bound full", || state.connections.load(Relaxed) == MAX).await;

    decide_within_bound(srv.public).await;
    assert!(
        closed_by_server(&mut keep).await,
        "the idle keep-alive connection, idle the longest, was not the one closed"
    );
    assert_eq!(state.evicted_connections.load(Relaxed), 1);
    srv.stop().await;
}

#[tokio::test]
async fn a_connection_with_a_request_in_flight_is_never_evicted() {
    let srv = start_demo_with(pressure_config()).await;
    let state = srv.state.clone();
    let req = json!({"customer_id": "C0000042", "channel": "web", "placement": "plans_page"});
    // The oldest connection has a request in flight, so it is passed over for the next one.
    let held = HeldRequest::open(srv.public, &req).await;
    eventually("the held request in flight", || {
        state.admission.bodies_reading() == 1
    })
    .await;
    let mut quiet = silent(srv.public, MAX - 1).await;
    eventually("the bound full", || state.connections.load(Relaxed) == MAX).await;

    decide_within_bound(srv.public).await;
    assert!(
        closed_by_server(&mut quiet[0]).await,
        "the oldest connection without a request in flight was not the one closed"
    );
    assert_eq!(state.evicted_connections.load(Relaxed), 1);
    let r = held.finish().await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    srv.stop().await;
}

#[tokio::test]
async fn with_every_connection_busy_a_newcomer_waits_and_no_request_is_cut() {
    let srv = start_demo_with(ServerConfig {
        max_connections: 4,
        ..pressure_config()
    })
    .await;
    let state = srv.state.clone();
    let req = json!({"customer_id": "C0000042", "channel": "web", "placement": "plans_page"});
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(HeldRequest::open(srv.public, &req).await);
    }
    eventually("4 requests in flight", || {
        state.admission.bodies_reading() == 4
    })
    .await;
    let newcomer = tokio::spawn(decide_within_bound(srv.public));
    // Every request held is answered in full, however the newcomer gets its slot.
    for h in held {
        let r = h.finish().await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    }
    newcomer.await.unwrap();
    srv.stop().await;
}
