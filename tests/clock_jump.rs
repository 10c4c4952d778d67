//! A host whose wall clock is stepped a year ahead and put right again: the contact histories
//! held in memory outlive the step (a dismiss taken before it holds the offer back after it),
//! with the real binary and a preloaded clock shim (`support/clock_shim.c`).

mod support;

use std::net::SocketAddr;

use serde_json::{json, Value};
use support::binary::Binary;
use support::clock_shim::ClockShim;
use support::*;

const YEAR_S: i64 = 400 * 86_400;

async fn explain(addr: SocketAddr, customer: &str) -> Value {
    decide(
        addr,
        json!({"customer_id": customer, "channel": "app", "placement": "app_home", "explain": true}),
    )
    .await
}

/// The server's wall clock, in Unix ms: the time a decision id (a ULID) carries in its first
/// ten characters.
async fn server_ms(addr: SocketAddr) -> i64 {
    let a = decide(
        addr,
        json!({"customer_id": "C0000001", "channel": "app", "placement": "app_home"}),
    )
    .await;
    let id = a["decision_id"].as_str().expect("a decision id").to_owned();
    id.chars().take(10).fold(0i64, |t, c| {
        let v = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
            .find(c)
            .unwrap_or_else(|| panic!("{id} is not a ULID"));
        t * 32 + v as i64
    })
}

/// This process's wall clock, in Unix ms.
fn real_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dismiss_outlives_a_clock_stepped_a_year_ahead_and_back() {
    let dir = TempDir::new("clock-jump");
    let shim = ClockShim::build(&dir.0, 0);
    let server = Binary::demo(&dir.0.join("data"))
        .env("LD_PRELOAD", &shim.library)
        .env("NEXTBEST_TEST_CLOCK_OFFSET_FILE", &shim.offset_file)
        .spawn();

    // A customer, an offer scored for them, and their dismiss of it.
    let mut found = None;
    for i in 1..=200 {
        let c = format!("C{i:07}");
        let a = explain(server.public, &c).await;
        if let Some(o) = a["explain"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["excluded"].is_null() && e["offer_id"].is_string())
        {
            found = Some((c, o["offer_id"].as_str().unwrap().to_owned()));
            break;
        }
    }
    let (customer, offer) = found.expect("a customer with a scored app offer");
    post_events(
        server.public,
        json!([{"type": "dismiss", "customer_id": customer, "offer_id": offer, "channel": "app"}]),
    )
    .await;
    let held = |a: &Value| verdict(a, &offer).is_some_and(|v| v.contains("dismiss"));
    assert!(held(&explain(server.public, &customer).await));

    // The clock steps a year ahead; an event of the customer arrives meanwhile (its time the
    // host's, a year on).
    shim.set(YEAR_S);
    within("the server's clock a year on", || async {
        server_ms(server.public).await > real_ms() + 300 * 86_400_000
    })
    .await;
    post_events(
        server.public,
        json!([{"type": "impression", "customer_id": customer, "offer_id": offer, "channel": "web"}]),
    )
    .await;

    // Put right: the dismiss still holds the offer back.
    shim.set(0);
    within("the server's clock put right", || async {
        (server_ms(server.public).await - real_ms()).abs() < 60_000
    })
    .await;
    let after = explain(server.public, &customer).await;
    assert!(
        held(&after),
        "the dismiss was forgotten in the step: {after}"
    );
}
