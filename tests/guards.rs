//! SLA guards: admission control, deadlines, slow clients, graceful drain, no-model fallback.

mod support;

use std::time::Duration;

use nextbest::server::{AppState, ServerConfig};
use serde_json::json;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What a decision answered: its offers in order, and its fallback (null when personalised).
fn offers_and_fallback(a: &serde_json::Value) -> (Vec<String>, serde_json::Value) {
    let offers = a["offers"]
        .as_array()
        .unwrap_or_else(|| panic!("no offers in {a}"))
        .iter()
        .map(|o| o["offer_id"].as_str().unwrap_or_default().to_owned())
        .collect();
    (offers, a["fallback"].clone())
}

fn small_bound(max_inflight: usize) -> ServerConfig {
    ServerConfig {
        max_inflight,
        ..test_config()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_sheds_with_fallback_and_nothing_hangs() {
    // plans_page has priority 70 (4 of 5 slots), home_hero 40 (3 of 5).
    let srv = start_registry(demo_registry(), small_bound(5)).await;
    let state = srv.state.clone();
    // Four decisions in the making (one takes microseconds: held here as their tickets).
    let held: Vec<_> = (0..4).map(|_| state.admission.enter()).collect();
    assert_eq!(state.admission.inflight(), 4);

    let mut excess = Vec::new();
    for i in 0..60 {
        let addr = srv.public;
        excess.push(tokio::spawn(async move {
            let id = format!("C{:07}", 40 + i);
            post_json(
                addr,
                "/v1/decide",
                &json!({"customer_id": id, "channel": "web", "placement": "home_hero"}),
            )
            .await
        }));
    }
    let all = tokio::time::timeout(Duration::from_secs(30), async {
        let mut out = Vec::new();
        for e in excess {
            out.push(e.await.unwrap());
        }
        out
    })
    .await
    .expect("overloaded requests must not hang");
    for r in &all {
        assert_eq!(r.status, 200);
        let a = r.json();
        assert_eq!(a["fallback"]["reason"], "overload", "{a}");
        // The placement's own fallback content, ready for the page.
        assert_eq!(a["offers"][0]["offer_id"], "brand_hero");
    }
    // Once they are done, the same request is decided.
    drop(held);
    let a = decide(
        srv.public,
        json!({"customer_id": "C0000040", "channel": "web", "placement": "home_hero"}),
    )
    .await;
    assert!(a["fallback"].is_null(), "{a}");
    let metrics = String::from_utf8(get(srv.admin, "/metrics").await.body).unwrap();
    assert!(
        metrics.contains("nextbest_decisions_total{outcome=\"fallback\",reason=\"overload\"} 60"),
        "{metrics}"
    );
    assert_eq!(srv.state.admission.inflight(), 0);
    srv.stop().await;
}

/// Clients that never finish a body hold their connections, not the decisions' slots: others
/// are still decided however many of them there are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_still_arriving_take_no_slot_of_the_decisions() {
    let srv = start_registry(demo_registry(), small_bound(2)).await;
    let state = srv.state.clone();
    let req = json!({"customer_id": "C0000042", "channel": "web", "placement": "plans_page"});
    let mut held = Vec::new();
    for _ in 0..6 {
        held.push(HeldRequest::open(srv.public, &req).await);
    }
    eventually("6 bodies arriving", || {
        state.admission.bodies_reading() == 6
    })
    .await;
    assert_eq!(state.admission.inflight(), 0);
    for placement in ["plans_page", "home_hero"] {
        let a = decide(
            srv.public,
            json!({"customer_id": "C0000043", "channel": "web", "placement": placement}),
        )
        .await;
        assert!(a["fallback"].is_null(), "{placement}: {a}");
    }
    let metrics = String::from_utf8(get(srv.admin, "/metrics").await.body).unwrap();
    assert!(
        metrics.contains("\nnextbest_decide_bodies_reading 6\n"),
        "{metrics}"
    );
    for h in held {
        let r = h.finish().await;
        assert_eq!(r.status, 200);
        assert!(r.json()["fallback"].is_null(), "{}", r.json());
    }
    assert_eq!(state.admission.bodies_reading(), 0);
    srv.stop().await;
}

/// Bodies still arriving hold the bytes they have received, together up to a budget (64 MiB,
/// or 16 bodies at the size limit if larger): a client that only declares a large body holds
/// nothing, so a body sent in a second write is still decided; past the budget a slow body is
/// refused with 503, while a body sent with its head is read and decided as ever, and the
/// budget comes back as bodies end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_hold_a_bounded_memory_together() {
    const LIMIT: usize = 4 << 20;
    let srv = start_demo_with(ServerConfig {
        max_body_bytes: LIMIT,
        ..test_config()
    })
    .await;
    let state = srv.state.clone();
    let head = format!(
        "POST /v1/decide HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         content-length: {LIMIT}\r\n\r\n{{"
    );
    let answer = |mut s: tokio::net::TcpStream| async move {
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
            .await
            .expect("an answer, not a wait")
            .unwrap();
        out
    };
    // Thirty clients that declare the largest body and send one byte of it hold 30 bytes.
    let mut declared = Vec::new();
    for _ in 0..30 {
        let mut s = tokio::net::TcpStream::connect(srv.public).await.unwrap();
        s.write_all(head.as_bytes()).await.unwrap();
        declared.push(s);
    }
    eventually("30 declared bodies, one byte each", || {
        state.slow_bodies.held() == 30
    })
    .await;
    // A decide whose body follows its head in a second write is read and decided.
    let body = br#"{"customer_id": "C0000042", "channel": "web", "placement": "plans_page"}"#;
    let mut two_writes = tokio::net::TcpStream::connect(srv.public).await.unwrap();
    two_writes
        .write_all(
            format!(
                "POST /v1/decide HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
                 connection: close\r\ncontent-length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    two_writes.flush().await.unwrap();
    eventually("the second write's head read", || {
        state.admission.bodies_reading() == 31
    })
    .await;
    two_writes.write_all(body).await.unwrap();
    let out = answer(two_writes).await;
    let (r, _) = parse_response(&out).expect("a response");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&out));
    drop(declared);
    eventually("the declared bodies gone", || state.slow_bodies.held() == 0).await;
    // Sixteen bodies one byte short of the limit fill the budget with what they sent...
    let filler = vec![b' '; LIMIT - 2];
    let mut slow = Vec::new();
    for _ in 0..16 {
        let mut s = tokio::net::TcpStream::connect(srv.public).await.unwrap();
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(&filler).await.unwrap();
        slow.push(s);
    }
    eventually("16 slow bodies held", || {
        state.slow_bodies.held() == 16 * (LIMIT - 1)
    })
    .await;
    // ...so one more that has sent 17 bytes passes it and is refused.
    let mut one_more = tokio::net::TcpStream::connect(srv.public).await.unwrap();
    one_more.write_all(head.as_bytes()).await.unwrap();
    one_more.write_all(&[b' '; 16]).await.unwrap();
    let out = answer(one_more).await;
    let (r, _) = parse_response(&out).expect("a response");
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(
        r.assert_error(503, "unavailable"),
        "too many request bodies are still arriving at once (slow clients): retry, or send \
         the body with its head"
    );
    let a = decide(
        srv.public,
        json!({"customer_id": "C0000042", "channel": "web", "placement": "plans_page"}),
    )
    .await;
    assert!(a["fallback"].is_null(), "{a}");
    let metrics = String::from_utf8(get(srv.admin, "/metrics").await.body).unwrap();
    assert!(
        metrics.contains(&format!(
            "\nnextbest_slow_body_bytes {}\n",
            16 * (LIMIT - 1)
        )),
        "{metrics}"
    );
    drop(slow);
    eventually("the budget back", || state.slow_bodies.held() == 0).await;
    srv.stop().await;
}

#[tokio::test]
async fn low_priority_placements_step_aside_first() {
    let mut doc = TempModels::demo_doc("1");
    doc["placements"]["home_hero"]["priority"] = json!(0);
    doc["placements"]["plans_page"]["priority"] = json!(100);
    let srv = start_registry(registry_for(&doc), small_bound(4)).await;
    let state = srv.state.clone();
    let held = [state.admission.enter(), state.admission.enter()];
    // With 2 of 4 in flight, the priority-0 placement (half the bound) is shed...
    let low = decide(
        srv.public,
        json!({"customer_id": "C0000042", "channel": "web", "placement": "home_hero"}),
    )
    .await;
    assert_eq!(low["fallback"]["reason"], "overload");
    // ...while the default priority (100) still decides.
    let high = decide(
        srv.public,
        json!({"customer_id": "C0000042", "channel": "web", "placement": "plans_page"}),
    )
    .await;
    assert!(high["fallback"].is_null(), "{high}");
    drop(held);
    srv.stop().await;
}

/// 3,000 offers each behind a 40-leaf rule: slow enough that a tiny budget runs out.
fn heavy_model() -> serde_json::Value {
    let content = json!({"title": "t", "body": "b", "image_url": "https://x.test/i", "cta_url": "https://x.test/c"});
    let rule = json!({"all": (0..40).map(|i| json!({"feature": "tenure_months", "op": "ge", "value": -i})).collect::<Vec<_>>()});
    let offers: Vec<_> = (0..3000)
        .map(|i| json!({"id": format!("o{i}"), "category": "sales", "channels": ["web"], "placements": ["p"],
            "value": 1 + i % 7, "eligibility": rule,
            "scorer": {"kind": "logistic", "intercept": -1, "weights": {"arpu_30d": 0.01, "data_gb_30d": 0.02}},
            "content": {"web": content}}))
        .collect();
    json!({"name": "heavy", "version": "1", "placements": {"p": {"channels": ["web"]}}, "offers": offers,
        "fallback": {"web": {"p": [{"offer_id": "fb", "content": content}]}}})
}

/// How many offers an explained answer marks as never evaluated (the deadline cut before them).
fn unevaluated(answer: &serde_json::Value) -> usize {
    answer["explain"]
        .as_array()
        .unwrap_or_else(|| panic!("no explain in {answer}"))
        .iter()
        .filter(|e| {
            e["excluded"]
                .as_str()
                .is_some_and(|x| x.starts_with("not evaluated"))
        })
        .count()
}

#[tokio::test]
async fn a_tiny_deadline_gives_deadline_fallback_early() {
    // A budget no machine runs out of for the full decision, so the comparison always holds.
    let config = ServerConfig {
        deadline: Duration::from_secs(60),
        ..test_config()
    };
    let srv = start_registry(registry_for(&heavy_model()), config).await;
    let body = serde_json::to_vec(
        &json!({"customer_id": "C0000042", "channel": "web", "placement": "p", "explain": true}),
    )
    .unwrap();
    let ct = ("content-type", "application/json");
    // The full decision: every offer evaluated.
    let full = request(
        srv.public,
        "POST",
        "/v1/decide",
        &[ct, ("x-deadline-us", "10000000")],
        &body,
    )
    .await
    .json();
    assert!(full["fallback"].is_null(), "{full}");
    assert_eq!(unevaluated(&full), 0);
    // A budget of 0 is spent before the first offer, without reading the clock, so where the
    // decision stops does not depend on the machine's speed.
    let tiny = request(
        srv.public,
        "POST",
        "/v1/decide",
        &[ct, ("x-deadline-us", "0")],
        &body,
    )
    .await
    .json();
    assert_eq!(
        tiny["fallback"],
        json!({"reason": "deadline", "stage": "placement"}),
        "{tiny}"
    );
    assert_eq!(tiny["offers"][0]["offer_id"], "fb");
    assert_eq!(
        unevaluated(&tiny),
        3000,
        "the decision did not stop before its first offer"
    );
    let metrics = String::from_utf8(get(srv.admin, "/metrics").await.body).unwrap();
    let line = "nextbest_decisions_total{outcome=\"fallback\",reason=\"deadline\"} 1";
    assert!(metrics.lines().any(|l| l == line), "{metrics}");
    srv.stop().await;

    // A placement with fewer candidates than a budget check's stride, one offer asked for:
    // a budget of 0 is still fallback content with reason `deadline`, not a full answer.
    let srv = start_registry(demo_registry(), test_config()).await;
    let body = json!({"customer_id": "C0000042", "channel": "web", "placement": "plans_page",
        "limit": 1});
    let bytes = serde_json::to_vec(&body).unwrap();
    let full = decide(srv.public, body).await;
    assert!(full["fallback"].is_null(), "{full}");
    let tiny = request(
        srv.public,
        "POST",
        "/v1/decide",
        &[ct, ("x-deadline-us", "0")],
        &bytes,
    )
    .await
    .json();
    assert_eq!(tiny["fallback"]["reason"], "deadline", "{tiny}");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_is_cut_off_while_others_are_served() {
    let config = ServerConfig {
        header_timeout: Duration::from_millis(300),
        ..test_config()
    };
    let srv = start_registry(demo_registry(), config).await;
    let addr = srv.public;
    let mut expected = Vec::new();
    for i in 0..20 {
        let a = decide(addr, json!({"customer_id": format!("C{:07}", i + 1), "channel": "web", "placement": "home_hero"})).await;
        expected.push(offers_and_fallback(&a));
    }
    assert!(
        expected.iter().any(|(_, fallback)| fallback.is_null()),
        "no personalised answer among them: {expected:?}"
    );
    let slow = tokio::spawn(async move {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = b"GET /v1/decide?customer_id=C0000042&channel=web&placement=plans_page HTTP/1.1\r\nhost: slow.example\r\nx-padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
        let started = std::time::Instant::now();
        for b in head.iter() {
            if s.write_all(&[*b]).await.is_err() {
                return (started.elapsed(), true);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            // The server closing shows as EOF (or a reset) on a non-blocking read.
            let mut buf = [0u8; 512];
            match tokio::time::timeout(Duration::from_millis(1), s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return (started.elapsed(), true),
                Ok(Ok(_)) => return (started.elapsed(), true), // a 408 before closing
                Err(_) => {}
            }
        }
        (started.elapsed(), false)
    });
    // Meanwhile, other clients are answered normally: the very answers they get from an
    // unhindered server (decisions are a function of model, features and request here).
    for (i, want) in expected.iter().enumerate() {
        let a = decide(addr, json!({"customer_id": format!("C{:07}", i + 1), "channel": "web", "placement": "home_hero"})).await;
        assert_eq!(&offers_and_fallback(&a), want, "C{:07}", i + 1);
    }
    let (after, closed) = slow.await.unwrap();
    assert!(closed, "the slow client was never cut off");
    // Sending the whole header would take over 3 s; the server closed long before.
    assert!(
        after < Duration::from_millis(2500),
        "cut off only after {after:?}"
    );
    srv.stop().await;
}

#[tokio::test]
async fn a_body_that_never_arrives_gets_408() {
    let config = ServerConfig {
        body_timeout: Duration::from_millis(200),
        ..test_config()
    };
    let srv = start_registry(demo_registry(), config).await;
    let mut s = tokio::net::TcpStream::connect(srv.public).await.unwrap();
    s.write_all(b"POST /v1/decide HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"chan").await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    let (r, _) = parse_response(&out).expect("a response");
    assert_eq!(r.header("connection"), Some("close"), "{:?}", r.headers);
    r.assert_error(408, "request_timeout");
    assert_eq!(srv.state.admission.inflight(), 0);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_requests_in_flight() {
    let config = ServerConfig {
        drain_delay: Duration::from_millis(300),
        ..test_config()
    };
    let srv = start_registry(demo_registry(), config).await;
    let (public, state) = (srv.public, srv.state.clone());
    let req = json!({"customer_id": "C0000042", "channel": "web", "placement": "plans_page"});
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(HeldRequest::open(public, &req).await);
    }
    eventually("3 requests in flight", || {
        state.admission.bodies_reading() == 3
    })
    .await;
    let stopping = tokio::spawn(srv.shutdown());
    eventually("draining", || {
        state.draining.load(std::sync::atomic::Ordering::Relaxed)
    })
    .await;
    // During the drain delay, readiness says 503 so balancers move away...
    let r = get(public, "/readyz").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["status"], "draining");
    // A keep-alive client is answered and told to close, so its pool stops sending on a
    // connection about to end (the sidecar's backend calls localhost, with no balancer).
    let body = serde_json::to_vec(&req).unwrap();
    let mut s = tokio::net::TcpStream::connect(public).await.unwrap();
    let head = format!(
        "POST /v1/decide HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(&[head.as_bytes(), &body].concat())
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    let (r, _) = parse_response(&out).expect("a response");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("close"), "{:?}", r.headers);
    // ...and every request already in flight completes.
    for h in held {
        let r = h.finish().await;
        assert_eq!(r.status, 200);
        assert!(r.json()["fallback"].is_null());
    }
    let left = tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .expect("shutdown finishes")
        .unwrap();
    assert_eq!(left, 0, "connections cut by the grace period");
    assert!(
        tokio::net::TcpStream::connect(public).await.is_err(),
        "still accepting after shutdown"
    );
}

#[tokio::test]
async fn without_a_model_the_builtin_fallback_serves() {
    let builtin = nextbest::model::builtin_fallback_from_bytes(
        serde_json::to_vec(&json!({"web": {"default": [{"offer_id": "static_web", "content": {"title": "Welcome", "body": "", "image_url": "https://cdn.test/w.jpg", "cta_url": "https://shop.test/"}}]}}))
            .unwrap(),
    )
    .unwrap();
    let state = AppState::builder(
        std::sync::Arc::new(nextbest::registry::Registry::default()),
        test_config(),
    )
    .builtin(builtin)
    .build();
    let srv = start_state(state).await;
    let a = decide(
        srv.public,
        json!({"customer_id": "C1", "channel": "web", "placement": "home_hero"}),
    )
    .await;
    assert_eq!(
        a["fallback"],
        json!({"reason": "no_model", "stage": "builtin"})
    );
    assert_eq!(a["offers"][0]["offer_id"], "static_web");
    assert_eq!(a["offers"][0]["content"]["title"], "Welcome");
    let other = decide(srv.public, json!({"channel": "tv", "placement": "guide"})).await;
    assert_eq!(other["offers"], json!([]));
    assert_eq!(get(srv.public, "/readyz").await.status, 503);
    let bad = nextbest::model::builtin_fallback_from_bytes(br#"{"web": {"default": [{"offer_id": "x", "content": {"title": "", "image_url": "nope", "cta_url": "https://a"}}]}}"#.to_vec());
    let faults = bad.unwrap_err().faults();
    assert!(
        faults
            .iter()
            .any(|f| f.path == "web.default[0].content.title"),
        "{faults:?}"
    );
    assert!(
        faults
            .iter()
            .any(|f| f.path == "web.default[0].content.image_url"),
        "{faults:?}"
    );
    srv.stop().await;
}
