//! Visitors without a profile (`"anonymous": "decide"` placements, `visitor_id`): decided from
//! the request's context alone where the placement opts in, `unknown_customer` fallback where
//! it does not, against the real server.

mod support;

use serde_json::{json, Value};
use support::*;

const CSV: &str = "customer_id,segment,arpu\nC1,gold,80\nC2,bronze,20\n";

fn content(title: &str) -> Value {
    json!({"web": {"title": title, "body": "b", "image_url": "https://i.example/x.jpg", "cta_url": "https://s.example/x"}})
}

/// `hero` decides for anonymous visitors, `side` does not; `ios_spring` is chosen by a context
/// rule and weighed by context values, `gold_upsell` needs a snapshot feature.
fn model() -> Value {
    json!({
        "name": "anon", "version": "1",
        "placements": {
            "hero": {"channels": ["web"], "limit": 1, "anonymous": "decide"},
            "side": {"channels": ["web"], "limit": 1}
        },
        "offers": [
            {"id": "gold_upsell", "category": "sales", "channels": ["web"], "placements": ["hero", "side"],
             "value": 100,
             "eligibility": {"feature": "segment", "op": "eq", "value": "gold"},
             "scorer": {"kind": "logistic", "intercept": 0.0, "weights": {"arpu": 0.01}},
             "content": content("Gold")},
            {"id": "ios_spring", "category": "sales", "channels": ["web"], "placements": ["hero", "side"],
             "value": 10,
             "eligibility": {"context": "device", "op": "eq", "value": "ios"},
             "scorer": {"kind": "logistic", "intercept": -2.0,
                        "weights": {"context.cart_value": 0.01},
                        "categories": {"context.utm_campaign": {"spring": 1.5}}},
             "content": content("Spring on iOS")},
            {"id": "generic", "category": "service", "channels": ["web"], "placements": ["hero", "side"],
             "value": 1, "scorer": {"kind": "constant", "propensity": 0.5},
             "content": content("Hello")}
        ],
        "fallback": {"web": {"default": [{"offer_id": "brand", "content": content("Fallback")["web"]}]}}
    })
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

fn offers(a: &Value) -> Vec<&str> {
    a["offers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["offer_id"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn an_anonymous_visitor_gets_an_offer_chosen_by_a_context_rule() {
    let srv = start_with(&model(), CSV).await;
    let ask = json!({"visitor_id": "v-123", "channel": "web", "placement": "hero", "explain": true,
                     "context": {"device": "ios", "utm_campaign": "spring", "cart_value": 50}});
    let a = decide(srv.public, ask).await;
    assert_eq!(a["fallback"], Value::Null, "{a}");
    assert_eq!(a["anonymous"], true, "{a}");
    assert_eq!(a["customer_id"], Value::Null);
    assert_eq!(offers(&a), ["ios_spring"]);
    // Weighed by the request's values: -2 + 0.01 * 50 + 1.5 (spring).
    let p = a["offers"][0]["propensity"].as_f64().unwrap();
    assert!((p - sigmoid(0.0)).abs() < 1e-9, "{p}");
    // The feature-based offer saw its feature missing, and explain says so.
    let why = verdict(&a, "gold_upsell").unwrap();
    assert!(why.contains("segment") && why.contains("missing"), "{why}");

    // On another device the context rule excludes it: the constant offer wins.
    let a = decide(
        srv.public,
        json!({"visitor_id": "v-123", "channel": "web", "placement": "hero",
               "context": {"device": "android", "utm_campaign": "spring"}}),
    )
    .await;
    assert_eq!(offers(&a), ["generic"]);
    assert_eq!(a["anonymous"], true);

    // A customer the snapshot does not know is decided the same way; a known one is not
    // anonymous and keeps their personalised answer.
    let a = decide(
        srv.public,
        json!({"customer_id": "C404", "channel": "web", "placement": "hero",
               "context": {"device": "ios", "utm_campaign": "spring", "cart_value": 50}}),
    )
    .await;
    assert_eq!(
        (offers(&a), &a["anonymous"]),
        (vec!["ios_spring"], &json!(true))
    );
    let a = decide(
        srv.public,
        json!({"customer_id": "C1", "channel": "web", "placement": "hero", "context": {"device": "ios"}}),
    )
    .await;
    assert_eq!(offers(&a), ["gold_upsell"]);
    assert!(a.get("anonymous").is_none(), "{a}");
    // Metrics count the three anonymous decisions (all personalised) apart.
    let m = String::from_utf8(get(srv.admin, "/metrics").await.body).unwrap();
    assert!(
        m.contains("nextbest_anonymous_decisions_total{outcome=\"personalised\"} 3"),
        "{m}"
    );
    srv.stop().await;
}

#[tokio::test]
async fn a_placement_that_did_not_opt_in_still_answers_unknown_customer() {
    let srv = start_with(&model(), CSV).await;
    for ask in [
        json!({"visitor_id": "v-1", "channel": "web", "placement": "side", "context": {"device": "ios"}}),
        json!({"customer_id": "C404", "channel": "web", "placement": "side", "context": {"device": "ios"}}),
        json!({"channel": "web", "placement": "side", "context": {"device": "ios"}}),
    ] {
        let a = decide(srv.public, ask).await;
        assert_eq!(a["fallback"]["reason"], "unknown_customer", "{a}");
        assert_eq!(offers(&a), ["brand"]);
        assert!(a.get("anonymous").is_none(), "{a}");
    }
    srv.stop().await;
}

#[tokio::test]
async fn neither_id_on_an_opted_placement_is_decided_from_context_alone() {
    let srv = start_with(&model(), CSV).await;
    let a = decide(
        srv.public,
        json!({"channel": "web", "placement": "hero", "context": {"device": "ios"}, "explain": true}),
    )
    .await;
    assert_eq!(a["fallback"], Value::Null, "{a}");
    assert_eq!(a["anonymous"], true);
    assert_eq!(offers(&a), ["ios_spring"]);
    // No campaign and no cart: only the intercept (a missing number adds nothing by default).
    let p = a["offers"][0]["propensity"].as_f64().unwrap();
    assert!((p - sigmoid(-2.0)).abs() < 1e-9, "{p}");
    // Also by GET, where context comes as `context.KEY`.
    let r = get(srv.public, "/v1/decide?channel=web&placement=hero&visitor_id=v9&context.device=ios&context.cart_value=200").await;
    assert_eq!(r.status, 200);
    let a = r.json();
    assert_eq!(
        (offers(&a), &a["anonymous"]),
        (vec!["ios_spring"], &json!(true))
    );
    let p = a["offers"][0]["propensity"].as_f64().unwrap();
    assert!((p - sigmoid(0.0)).abs() < 1e-9, "{p}");
    srv.stop().await;
}

#[tokio::test]
async fn a_visitor_id_over_the_limit_is_refused_naming_the_field() {
    let srv = start_with(&model(), CSV).await;
    let long = "v".repeat(257);
    let r = post_json(
        srv.public,
        "/v1/decide",
        &json!({"visitor_id": long, "channel": "web", "placement": "hero"}),
    )
    .await;
    let detail = r.assert_error(400, "invalid_request");
    assert!(detail.contains("visitor_id"), "{detail}");
    let r = get(
        srv.public,
        &format!("/v1/decide?channel=web&placement=hero&visitor_id={long}"),
    )
    .await;
    let detail = r.assert_error(400, "invalid_request");
    assert!(detail.contains("visitor_id"), "{detail}");
    // At the limit it is taken, and not reported as an unknown field.
    let a = decide(
        srv.public,
        json!({"visitor_id": "v".repeat(256), "channel": "web", "placement": "hero"}),
    )
    .await;
    assert!(a.get("warnings").is_none(), "{a}");
    srv.stop().await;
}
