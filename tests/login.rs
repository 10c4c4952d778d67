//! One history across a login: an event naming a visitor and a customer links them; from then
//! on each one's contact history counts for the other, on every channel, and the link survives
//! kill -9 and a restart (it is an event in the log). `"sticky": "visitor"` keeps the visitor's
//! variant for the customer. The real binary on a data folder of its own.

mod support;

use std::net::SocketAddr;
use std::path::Path;

use serde_json::{json, Value};
use support::binary::{Binary, Process};
use support::*;

const CSV: &str = "customer_id,tenure\nC1,12\nC2,30\n";

fn content() -> Value {
    json!({"title": "T", "body": "B", "image_url": "https://i.example/x.jpg", "cta_url": "https://s.example/x"})
}

/// Web `home` decides for anonymous visitors; app `app_home` does not. Both offers are shown
/// on both channels to everyone.
fn model(version: &str) -> Value {
    let offer = |id: &str, p: f64| {
        json!({"id": id, "category": "sales", "channels": ["web", "app"], "placements": ["home", "app_home"],
               "value": 1, "scorer": {"kind": "constant", "propensity": p},
               "content": {"web": content(), "app": content()}})
    };
    json!({"name": "login", "version": version,
           "placements": {"home": {"channels": ["web"], "limit": 2, "anonymous": "decide"},
                          "app_home": {"channels": ["app"], "limit": 2}},
           "policies": {"dismiss_cooldown_days": 30},
           "offers": [offer("fiber", 0.9), offer("tv", 0.5)]})
}

fn models(dir: &Path, challenger: bool) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("features.csv"), CSV).unwrap();
    let mut doc = model("1");
    if challenger {
        std::fs::write(
            dir.join("challenger.json"),
            serde_json::to_vec(&model("challenger")).unwrap(),
        )
        .unwrap();
        doc["challenger"] = json!({"path": "challenger.json", "share": 0.5, "salt": "login"});
    }
    std::fs::write(dir.join("model.json"), serde_json::to_vec(&doc).unwrap()).unwrap();
}

async fn ask(addr: SocketAddr, body: Value) -> Value {
    let mut body = body;
    body["explain"] = true.into();
    decide(addr, body).await
}

fn held(answer: &Value, offer: &str) -> bool {
    verdict(answer, offer).is_some_and(|v| v.contains("dismiss"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_login_links_the_ids_the_customer_does_not_get_what_the_visitor_dismissed() {
    let dir = TempDir::new("login");
    let (m, data) = (dir.0.join("models"), dir.0.join("data"));
    models(&m, false);
    let start = || Binary::with_models(&m, &data).spawn();
    let srv: Process = start();
    let visitor = json!({"visitor_id": "web-7f3a", "channel": "web", "placement": "home"});
    let on_app = json!({"customer_id": "C1", "channel": "app", "placement": "app_home"});

    // Before: the visitor and the customer each get both offers.
    let a = ask(srv.public, visitor.clone()).await;
    assert_eq!(a["anonymous"], true, "{a}");
    assert!(!held(&a, "fiber") && !held(&ask(srv.public, on_app.clone()).await, "fiber"));

    // The visitor dismisses fiber; the customer, on the app, still gets it: nothing links them.
    post_events(
        srv.public,
        json!([{"type": "dismiss", "visitor_id": "web-7f3a", "offer_id": "fiber",
                "decision_id": a["decision_id"]}]),
    )
    .await;
    assert!(held(&ask(srv.public, visitor.clone()).await, "fiber"));
    assert!(!held(&ask(srv.public, on_app.clone()).await, "fiber"));

    // The login: a click naming both ids. The customer no longer gets fiber on the app, and
    // what the customer dismisses there is held back for the visitor on the web.
    post_events(
        srv.public,
        json!([{"type": "click", "visitor_id": "web-7f3a", "customer_id": "C1", "offer_id": "tv"}]),
    )
    .await;
    let after = ask(srv.public, on_app.clone()).await;
    assert!(held(&after, "fiber"), "{after}");
    assert_eq!(after["offers"][0]["offer_id"], "tv");
    post_events(
        srv.public,
        json!([{"type": "dismiss", "customer_id": "C1", "offer_id": "tv", "channel": "app"}]),
    )
    .await;
    assert!(held(&ask(srv.public, visitor.clone()).await, "tv"));
    // Another customer is not linked.
    let other = json!({"customer_id": "C2", "channel": "app", "placement": "app_home"});
    assert!(!held(&ask(srv.public, other.clone()).await, "fiber"));

    // kill -9 and restart on the same data folder: the link and both histories are back.
    srv.kill9();
    let srv = start();
    let after = ask(srv.public, on_app).await;
    assert!(held(&after, "fiber") && held(&after, "tv"), "{after}");
    assert!(held(&ask(srv.public, visitor).await, "tv"));
    assert!(!held(&ask(srv.public, other).await, "fiber"));
    srv.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_visitor_keeps_the_visitors_variant_for_the_customer() {
    let dir = TempDir::new("login-sticky");
    let (m, data) = (dir.0.join("models"), dir.0.join("data"));
    models(&m, true);
    let srv = Binary::with_models(&m, &data).spawn();
    let variant = |body: Value| async move { decide(srv.public, body).await["variant"].clone() };
    let own =
        variant(json!({"customer_id": "C1", "channel": "app", "placement": "app_home"})).await;
    // A visitor whose own assignment differs from the customer's.
    let mut visitor = None;
    for i in 0..64 {
        let v = format!("web-{i}");
        let got = variant(
            json!({"visitor_id": v, "channel": "web", "placement": "home", "sticky": "visitor"}),
        )
        .await;
        if got != own {
            visitor = Some((v, got));
            break;
        }
    }
    let (v, theirs) = visitor.expect("a visitor in the other variant");
    // Without `sticky`, a visitor alone is the champion's.
    assert_eq!(
        variant(json!({"visitor_id": v, "channel": "web", "placement": "home"})).await,
        "champion"
    );
    post_events(
        srv.public,
        json!([{"type": "click", "visitor_id": v, "customer_id": "C1", "offer_id": "tv"}]),
    )
    .await;
    // Sticky: the customer gets the visitor's variant, on the app (no visitor id there) too.
    let sticky = json!({"customer_id": "C1", "channel": "app", "placement": "app_home", "sticky": "visitor"});
    assert_eq!(variant(sticky).await, theirs);
    let both = json!({"customer_id": "C1", "visitor_id": v, "channel": "web", "placement": "home", "sticky": "visitor"});
    assert_eq!(variant(both).await, theirs);
    // Not asked: the customer's own.
    assert_eq!(
        variant(json!({"customer_id": "C1", "channel": "app", "placement": "app_home"})).await,
        own
    );
    let r = post_json(
        srv.public,
        "/v1/decide",
        &json!({"customer_id": "C1", "channel": "app", "placement": "app_home", "sticky": "device"}),
    )
    .await;
    let detail = r.assert_error(400, "invalid_request");
    assert!(detail.contains("sticky"), "{detail}");
    srv.stop();
}

/// After a login, the outcome of a decision made for the visitor may name the customer alone
/// (an order system knows only the customer): the link says the decision was theirs, so it
/// counts in the funnel and for the policies. Before the link it is refused, saying what to send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_login_the_customer_alone_may_report_the_outcome_of_the_visitors_decision() {
    let dir = TempDir::new("login-outcome");
    let (m, data) = (dir.0.join("models"), dir.0.join("data"));
    models(&m, false);
    let srv = Binary::with_models(&m, &data).spawn();
    let a = ask(
        srv.public,
        json!({"visitor_id": "web-bbb2", "channel": "web", "placement": "home"}),
    )
    .await;
    let (id, offer) = (a["decision_id"].clone(), a["offers"][0]["offer_id"].clone());
    let conversion = json!([{"type": "conversion", "customer_id": "C1", "offer_id": offer,
                             "decision_id": id}]);
    // Not linked yet: refused, and the refusal says which id the decision's events give.
    let r = post_events(srv.public, conversion.clone()).await;
    assert_eq!(r["accepted"], 0, "{r}");
    let why = r["rejected"][0]["error"].as_str().unwrap_or_default();
    assert!(
        why.contains("one asked with a `visitor_id` alone for the visitor")
            && why.contains("once an event with both has linked them"),
        "{r}"
    );
    // The login, then the order system's conversion naming the customer alone.
    post_events(
        srv.public,
        json!([{"type": "click", "visitor_id": "web-bbb2", "customer_id": "C1",
                "offer_id": offer, "decision_id": id}]),
    )
    .await;
    let r = post_events(srv.public, conversion).await;
    assert_eq!(
        (r["accepted"].as_u64(), &r["rejected"]),
        (Some(1), &json!([])),
        "{r}"
    );
    let stats = get(srv.admin, "/admin/stats").await.json();
    let row = stats["funnel"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["offer_id"] == offer && r["channel"] == "web")
        .cloned()
        .unwrap_or_else(|| panic!("no web row for {offer}: {stats}"));
    assert_eq!(row["conversions"], 1, "{row}");
    // Another customer, never linked to the visitor, is still refused.
    let r = post_events(
        srv.public,
        json!([{"type": "conversion", "customer_id": "C2", "offer_id": offer, "decision_id": id}]),
    )
    .await;
    assert_eq!(r["accepted"], 0, "{r}");

    // The login and the outcome in one batch: the login counts for the events after it.
    let a = ask(
        srv.public,
        json!({"visitor_id": "web-ccc3", "channel": "web", "placement": "home"}),
    )
    .await;
    let (id, offer) = (a["decision_id"].clone(), a["offers"][0]["offer_id"].clone());
    let r = post_events(
        srv.public,
        json!([{"type": "click", "visitor_id": "web-ccc3", "customer_id": "C2",
                "offer_id": offer, "decision_id": id},
               {"type": "conversion", "customer_id": "C2", "offer_id": offer, "decision_id": id}]),
    )
    .await;
    assert_eq!(
        (r["accepted"].as_u64(), &r["rejected"]),
        (Some(2), &json!([])),
        "{r}"
    );

    // A shared device: the visitor logged in as C1, then as C2. Its decisions are C2's now;
    // C1, no longer its customer, may not claim them.
    let a = ask(
        srv.public,
        json!({"visitor_id": "web-bbb2", "channel": "web", "placement": "home"}),
    )
    .await;
    let (id, offer) = (a["decision_id"].clone(), a["offers"][0]["offer_id"].clone());
    post_events(
        srv.public,
        json!([{"type": "click", "visitor_id": "web-bbb2", "customer_id": "C2",
                "offer_id": offer, "decision_id": id}]),
    )
    .await;
    let claim = |customer: &str| {
        json!([{"type": "conversion", "customer_id": customer, "offer_id": offer,
                "decision_id": id}])
    };
    let r = post_events(srv.public, claim("C1")).await;
    assert_eq!(r["accepted"], 0, "{r}");
    let r = post_events(srv.public, claim("C2")).await;
    assert_eq!(r["accepted"], 1, "{r}");
    srv.stop();
}
