//! What a client team meets when it gets something slightly wrong: a typo in a channel,
//! placement or field name, values generated clients write their own way, a bad header, events
//! that contradict the decision they quote. Pages keep getting content; the answer says what
//! was wrong, and `/metrics` counts it.

mod support;

use serde_json::{json, Value};
use support::*;

fn warnings(a: &Value) -> Vec<String> {
    a["warnings"]
        .as_array()
        .map(|w| w.iter().map(|s| s.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in /metrics"))
}

#[tokio::test]
async fn typos_get_content_and_a_name() {
    let srv = start_demo().await;
    // A placement the model does not have: fallback content, a reason of its own, a warning
    // naming what the channel has instead.
    let a = decide(
        srv.public,
        json!({"customer_id": "C0000042", "channel": "web", "placement": "plan_page", "explain": true}),
    )
    .await;
    assert_eq!(a["fallback"]["reason"], "unknown_placement", "{a}");
    assert!(a["offers"].is_array());
    let w = warnings(&a);
    assert_eq!(w.len(), 1, "{a}");
    assert!(
        w[0].starts_with(
            "placement: `plan_page` is not a placement of channel `web` in model demo 1; it has "
        ) && w[0].contains("`plans_page`"),
        "{w:?}"
    );
    let explained = a["explain"].as_array().unwrap();
    assert!(explained.iter().all(|v| v["excluded"]
        .as_str()
        .is_some_and(|e| e.starts_with("placement: the model has no such placement"))));
    // A channel it does not have.
    let a = decide(
        srv.public,
        json!({"customer_id": "C0000042", "channel": "Web", "placement": "plans_page"}),
    )
    .await;
    assert_eq!(a["fallback"]["reason"], "unknown_placement");
    assert!(warnings(&a)[0].starts_with("channel: `Web` is not a channel of model demo 1; it has `app`, `email`, `push`, `sms`, `web`"), "{a}");

    // A misspelt field is a warning, not silence; a clean request has no `warnings` at all.
    let a = decide(
        srv.public,
        json!({"custmer_id": "C0000042", "channel": "web", "placement": "plans_page"}),
    )
    .await;
    assert_eq!(a["fallback"]["reason"], "unknown_customer");
    assert_eq!(
        warnings(&a),
        ["`custmer_id` is not a field of a decide request and was ignored; the fields are customer_id, visitor_id, channel, placement, limit, context, explain, sticky"]
    );
    let a = get(
        srv.public,
        "/v1/decide?custmer_id=C0000042&channel=web&placement=plans_page",
    )
    .await
    .json();
    assert!(
        warnings(&a)[0].starts_with("`custmer_id` is not a field"),
        "{a}"
    );
    // A query's context is one parameter per value.
    let a = get(
        srv.public,
        "/v1/decide?customer_id=C0000042&channel=web&placement=plans_page&context=abc",
    )
    .await
    .json();
    assert_eq!(
        warnings(&a),
        ["`context` was ignored: in a query string, give each context value as `context.KEY=VALUE` (`context.page=plans`)"]
    );
    let clean = decide(
        srv.public,
        json!({"customer_id": "C0000042", "channel": "web", "placement": "plans_page"}),
    )
    .await;
    assert!(clean.get("warnings").is_none(), "{clean}");

    let m = String::from_utf8(get(srv.admin, "/metrics").await.body).unwrap();
    assert_eq!(
        metric(
            &m,
            r#"nextbest_decisions_total{outcome="fallback",reason="unknown_placement"}"#
        ),
        2
    );
    assert_eq!(metric(&m, "nextbest_unknown_placement_decisions_total"), 2);
    assert_eq!(
        metric(&m, r#"nextbest_unknown_fields_total{route="decide"}"#),
        3
    );
    srv.stop().await;
}

#[tokio::test]
async fn what_generated_clients_send_is_taken_or_refused_by_name() {
    let srv = start_demo().await;
    let ok = |body: Value| async move {
        let r = post_json(srv.public, "/v1/decide", &body).await;
        assert_eq!(
            r.status,
            200,
            "{body}: {}",
            String::from_utf8_lossy(&r.body)
        );
        r.json()
    };
    // JSON Schema's integer as 2.0, optional fields as null.
    let a = ok(
        json!({"customer_id": "C0000042", "channel": "web", "placement": "plans_page",
                      "limit": 2.0, "context": null, "explain": null}),
    )
    .await;
    assert!(a["offers"].as_array().unwrap().len() <= 2);
    // 256 characters, whatever their UTF-8 length.
    let cjk = "顧".repeat(256);
    let a = ok(json!({"customer_id": cjk, "channel": "web", "placement": "plans_page"})).await;
    assert_eq!(a["fallback"]["reason"], "unknown_customer");
    let r = post_json(
        srv.public,
        "/v1/decide",
        &json!({"customer_id": format!("{cjk}x"), "channel": "web", "placement": "plans_page"}),
    )
    .await;
    assert_eq!(
        r.assert_error(400, "invalid_request"),
        "customer_id: longer than 256 characters"
    );

    // explain on GET: true or false, in any case; anything else is refused.
    let q = "/v1/decide?customer_id=C0000042&channel=web&placement=plans_page&explain=";
    let a = get(srv.public, &format!("{q}True")).await.json();
    assert!(a["explain"].is_array(), "{a}");
    let a = get(srv.public, &format!("{q}FALSE")).await.json();
    assert!(a.get("explain").is_none(), "{a}");
    let detail = get(srv.public, &format!("{q}yes"))
        .await
        .assert_error(400, "invalid_request");
    assert!(detail.starts_with("explain: `yes`"), "{detail}");

    // A bad X-Deadline-Us is refused naming the header, on POST and GET.
    let body = br#"{"customer_id": "C0000042", "channel": "web", "placement": "plans_page"}"#;
    for bad in ["-1", "abc", "1.5", "60000001"] {
        let headers = [("content-type", "application/json"), ("x-deadline-us", bad)];
        let r = request(srv.public, "POST", "/v1/decide", &headers, body).await;
        let detail = r.assert_error(400, "invalid_request");
        assert!(
            detail.starts_with(&format!("X-Deadline-Us: `{bad}`")),
            "{detail}"
        );
        let r = request(srv.public, "GET", &format!("{q}false"), &headers[1..], b"").await;
        r.assert_error(400, "invalid_request");
    }
    let headers = [
        ("content-type", "application/json"),
        ("x-deadline-us", "2000"),
    ];
    let r = request(srv.public, "POST", "/v1/decide", &headers, body).await;
    assert_eq!(r.status, 200);
    assert_eq!(warnings(&r.json()), Vec::<String>::new());
    // More than the server's budget (1 s in tests): answered within it, and told so.
    let headers = [
        ("content-type", "application/json"),
        ("x-deadline-us", "2000000"),
    ];
    let a = request(srv.public, "POST", "/v1/decide", &headers, body)
        .await
        .json();
    assert_eq!(
        warnings(&a),
        [
            "X-Deadline-Us: 2000000 is more than this server's budget (`--deadline-us` 1000000), \
          which a client can only shorten: the decision had 1000000 us"
        ]
    );
    // What a method does not read is named: a POST's query string, a GET's body.
    let a = request(
        srv.public,
        "POST",
        "/v1/decide?explain=true&customer_id=C0000043",
        &headers[..1],
        body,
    )
    .await
    .json();
    assert_eq!(a["customer_id"], "C0000042", "{a}");
    assert!(a.get("explain").is_none(), "{a}");
    assert_eq!(
        warnings(&a),
        [
            "the query string `explain=true&customer_id=C0000043` was not read: a POST decide \
          reads its body; give these as fields of the body"
        ]
    );
    let a = request(srv.public, "GET", &format!("{q}false"), &headers[..1], body)
        .await
        .json();
    assert_eq!(
        warnings(&a),
        [
            "the request's body was not read: a GET decide reads its query string; POST a JSON \
          body instead"
        ]
    );
    // Sent twice, whichever comes first: refused, as a field given twice is.
    for values in [["10", "99999999"], ["99999999", "10"]] {
        let headers = [
            ("content-type", "application/json"),
            ("x-deadline-us", values[0]),
            ("x-deadline-us", values[1]),
        ];
        let r = request(srv.public, "POST", "/v1/decide", &headers, body).await;
        let detail = r.assert_error(400, "invalid_request");
        assert_eq!(detail, "X-Deadline-Us: given twice; send one value");
    }
    srv.stop().await;
}

#[tokio::test]
async fn events_take_their_place_from_the_decision_and_may_not_contradict_it() {
    let (srv, _clock) = start_demo_contacts(None).await;
    let a = decide(
        srv.public,
        json!({"customer_id": "C0000042", "channel": "web", "placement": "plans_page"}),
    )
    .await;
    let offer = a["offers"][0]["offer_id"]
        .as_str()
        .expect("an offer")
        .to_owned();
    let id = a["decision_id"].as_str().unwrap().to_owned();
    let ev = |kind: &str, extra: Value| {
        let mut e =
            json!({"type": kind, "customer_id": "C0000042", "offer_id": offer, "decision_id": id});
        e.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        e
    };
    let r = post_events(
        srv.public,
        json!([
            ev("impression", json!({})),
            ev("click", json!({"channel": "app"})),
            ev("click", json!({"customer_id": "C0000043"})),
            ev("click", json!({"placement": "home_hero"})),
            ev("click", json!({"channel": "web", "placement": "plans_page", "event_id": "k1"})),
            ev("click", json!({"event_id": "k1"})),
            {"type": "dismiss", "customer_id": "C0000042", "offer_id": "no_such_offer", "channel": "web", "custmer": 1},
        ]),
    )
    .await;
    let rejected: Vec<(u64, String)> = r["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["index"].as_u64().unwrap(),
                e["error"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        rejected,
        [
            (1, "channel: `app` contradicts the decision, which was made on channel `web`".to_owned()),
            (2, "decision_id: the decision was made for another customer (or visitor) than the event's `customer_id` or `visitor_id`: a decision asked with both ids was made for the `customer_id`, and one asked with a `visitor_id` alone for the visitor, whose events name that `visitor_id` (beside the `customer_id` after a login; once an event with both has linked them, the `customer_id` alone will do)".to_owned()),
            (3, "placement: `home_hero` contradicts the decision, which was made for placement `plans_page`".to_owned()),
        ]
    );
    assert_eq!(
        (r["accepted"].as_u64(), r["duplicates"].as_u64()),
        (Some(3), Some(1)),
        "{r}"
    );
    let w = r["warnings"].as_array().unwrap();
    assert_eq!(w.len(), 2, "{r}");
    assert_eq!(w[0]["index"], 6);
    assert!(w[0]["warning"]
        .as_str()
        .unwrap()
        .starts_with("`custmer` is not a field of an event"));
    assert!(w[1]["warning"]
        .as_str()
        .unwrap()
        .starts_with("offer_id: `no_such_offer` is not an offer of the active model (demo 1)"));

    // The impression without a channel counts on the decision's channel; /admin/stats adds
    // up what the 202 said.
    let stats = get(srv.admin, "/admin/stats").await.json();
    let row = stats["funnel"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["offer_id"] == offer.as_str() && r["channel"] == "web")
        .cloned()
        .unwrap_or_else(|| panic!("no web row for {offer}: {stats}"));
    assert_eq!(
        (row["impressions"].as_u64(), row["clicks"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(stats["unattributed"]["impressions"], 0);
    assert_eq!(stats["events"]["accepted"], r["accepted"]);
    assert_eq!(stats["events"]["duplicates"], r["duplicates"]);
    assert_eq!(stats["events"]["rejected"], 3);

    // A cross-sell at checkout quoting the plans page's decision: accepted for the contact
    // policies, but no outcome of that decision, so the funnel leaves it out and says why.
    let r = post_events(
        srv.public,
        json!([{"type": "conversion", "customer_id": "C0000042",
            "offer_id": "device_insurance", "decision_id": id}]),
    )
    .await;
    assert_eq!(r["accepted"], 1, "{r}");
    assert_eq!(
        r["warnings"][0]["warning"],
        "offer_id: `device_insurance` is not an offer placement `plans_page` shows, and the decision was made for it; the event counts for contact policies but not in the funnel (quote the decision_id of the answer that showed the offer)",
        "{r}"
    );
    let stats = get(srv.admin, "/admin/stats").await.json();
    let credited = stats["funnel"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["offer_id"] == "device_insurance" && r["conversions"].as_u64() > Some(0));
    assert!(!credited, "{stats}");
    assert_eq!(stats["unattributed"]["conversions"], 1, "{stats}");
    srv.stop().await;
}

#[tokio::test]
async fn fields_beside_events_are_named_in_batch_warnings_not_taken_silently() {
    let srv = start_demo().await;
    let r = post_json(
        srv.public,
        "/v1/events",
        &json!({
            "events": [{"type": "impression", "customer_id": "C0000042", "offer_id": "data_boost_10gb", "channel": "web"}],
            "dry_run": true,
            "channel": "app",
        }),
    )
    .await;
    assert_eq!(r.status, 202);
    let r = r.json();
    assert_eq!(r["accepted"], 1, "{r}");
    assert!(r.get("warnings").is_none(), "{r}");
    assert_eq!(
        r["batch_warnings"],
        // In the body's order (serde_json writes keys sorted).
        json!([
            "`channel` is a field of each event, not of the batch, and was ignored here: give it in every event that needs it",
            "`dry_run` is not a field of the batch and was ignored; a batch has one field, `events`",
        ]),
        "{r}"
    );
    let clean = post_events(
        srv.public,
        json!([{"type": "impression", "customer_id": "C0000042", "offer_id": "data_boost_10gb", "channel": "web", "event_id": "e2"}]),
    )
    .await;
    assert!(clean.get("batch_warnings").is_none(), "{clean}");
    let m = String::from_utf8(get(srv.admin, "/metrics").await.body).unwrap();
    assert_eq!(
        metric(&m, r#"nextbest_unknown_fields_total{route="events"}"#),
        2
    );
    srv.stop().await;
}

#[tokio::test]
async fn a_feature_reload_with_an_empty_or_misspelt_path_says_so() {
    let srv = start_demo().await;
    let reload =
        |body: Value| async move { post_json(srv.admin, "/admin/features/reload", &body).await };
    let detail = reload(json!({"path": ""}))
        .await
        .assert_error(400, "invalid_request");
    assert!(detail.starts_with("path: must not be empty"), "{detail}");
    let detail = reload(json!({"pth": "/data/x.csv"}))
        .await
        .assert_error(400, "invalid_request");
    assert!(
        detail.starts_with("pth: unknown field `pth`, expected `path` or `wait`"),
        "{detail}"
    );
    let detail = reload(json!([null, null]))
        .await
        .assert_error(400, "invalid_request");
    assert!(detail.starts_with("expected a JSON object"), "{detail}");
    let detail = reload(json!({"path": 7}))
        .await
        .assert_error(400, "invalid_request");
    assert!(
        detail.starts_with("path: invalid type: integer `7`"),
        "{detail}"
    );
    srv.stop().await;
}

#[tokio::test]
async fn a_field_written_twice_is_refused_and_an_unknown_decision_id_gets_a_word() {
    let srv = start_demo().await;
    let json_ct = [("content-type", "application/json")];
    let twice = br#"{"events":[{"type":"dismiss","customer_id":"C0000702","offer_id":"data_boost_10gb","customer_id":"C0000703"}]}"#;
    let d = request(srv.public, "POST", "/v1/events", &json_ct, twice)
        .await
        .assert_error(400, "invalid_request");
    assert_eq!(
        d,
        "duplicate field `events[0].customer_id`: each field once per object"
    );
    // One event, or a bare list, sent as the body: the answer shows the batch's shape.
    let one = br#"{"type":"dismiss","customer_id":"C0000702","offer_id":"data_boost_10gb"}"#;
    let list = [&b"["[..], one, b"]"].concat();
    for body in [&one[..], &list] {
        let d = request(srv.public, "POST", "/v1/events", &json_ct, body)
            .await
            .assert_error(400, "invalid_request");
        assert!(d.contains(r#"a batch is `{"events": [...]}`"#), "{d}");
    }
    // Twice at the top of the body too.
    let d = request(
        srv.public,
        "POST",
        "/v1/events",
        &json_ct,
        br#"{"events":[],"events":[{"type":"dismiss","customer_id":"C0000702","offer_id":"data_boost_10gb"}]}"#,
    )
    .await
    .assert_error(400, "invalid_request");
    assert_eq!(d, "duplicate field `events`: each field once per object");
    // A field no event has is ignored with a warning, twice as once (no value of it is
    // taken), as a decide request's is, at any depth.
    for ignored in [
        r#""x":1,"x":2"#.to_owned(),
        format!(r#""x":{}{{"b":1,"b":2}}{}"#, "[".repeat(60), "]".repeat(60)),
    ] {
        let body = format!(
            r#"{{"events":[{{"type":"impression","customer_id":"C0000702","offer_id":"data_boost_10gb","channel":"web",{ignored}}}]}}"#
        );
        let r = request(srv.public, "POST", "/v1/events", &json_ct, body.as_bytes()).await;
        assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
        let j = r.json();
        assert_eq!(j["accepted"], 1, "{j}");
        assert_eq!(j["warnings"].as_array().map(Vec::len), Some(1), "{j}");
        let w = j["warnings"][0]["warning"].as_str().unwrap_or_default();
        assert!(w.starts_with("`x` is not a field of an event"), "{j}");
    }
    // So is one beside `events`, and an id with white space around it is said to be filed
    // as written.
    let body = br#"{"events":[{"type":"impression","customer_id":"C0000702 ","offer_id":"data_boost_10gb","channel":"web"}],"y":1,"y":2}"#;
    let j = request(srv.public, "POST", "/v1/events", &json_ct, body)
        .await
        .json();
    assert_eq!(j["batch_warnings"].as_array().map(Vec::len), Some(1), "{j}");
    assert_eq!(
        j["warnings"][0]["warning"],
        "customer_id: \"C0000702 \" has white space around it, and ids are kept as written: the \
         event is filed under it as written (trim it)",
        "{j}"
    );
    let context = br#"{"customer_id":"C0000042","channel":"web","placement":"checkout","context":{"cart_value":250,"cart_value":10}}"#;
    let d = request(srv.public, "POST", "/v1/decide", &json_ct, context)
        .await
        .assert_error(400, "invalid_request");
    assert!(d.contains("duplicate key `cart_value`"), "{d}");
    let d = get(
        srv.public,
        "/v1/decide?customer_id=C0000042&channel=web&placement=plans_page&channel=app",
    )
    .await
    .assert_error(400, "invalid_request");
    assert!(d.contains("`channel` given twice"), "{d}");
    // An id no model here made (mistyped, truncated, stale) is taken, with a word.
    let r = post_events(
        srv.public,
        json!([{"type": "impression", "customer_id": "C0000042", "offer_id": "device_upgrade_5g",
                "decision_id": "01M81JQW4QAYW0VQ8B9T0QPHR4"}]),
    )
    .await;
    assert_eq!(r["accepted"], 1, "{r}");
    let w = r["warnings"][0]["warning"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(
        w.contains("was not made by a model this server has served"),
        "{w}"
    );
    // A channel the model does not have is named, as decide names it.
    let r = post_events(
        srv.public,
        json!([{"type": "impression", "customer_id": "C0000100", "offer_id": "data_boost_10gb",
                "channel": "webb"}]),
    )
    .await;
    let w = r["warnings"][0]["warning"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(
        w.contains("`webb` is not a channel") && w.contains("web"),
        "{r}"
    );
    // A number sent as a string fails a number test, and explain shows it as text.
    let a = decide(
        srv.public,
        json!({"customer_id": "C0000042", "channel": "web", "placement": "checkout",
               "explain": true, "context": {"cart_value": "250"}}),
    )
    .await;
    let text = a["explain"].to_string();
    assert!(
        text.contains(r#"context.cart_value is \"250\" (text), the rule needs >= 100"#),
        "{text}"
    );
    srv.stop().await;
}

#[tokio::test]
async fn an_empty_id_in_an_event_is_no_id_as_in_a_decide_request() {
    let (srv, _clock) = start_demo_contacts(None).await;
    let a = decide(
        srv.public,
        json!({"customer_id": "C0000044", "visitor_id": "", "channel": "web", "placement": "plans_page"}),
    )
    .await;
    assert!(a["fallback"].is_null(), "{a}");
    let offer = a["offers"][0]["offer_id"].as_str().unwrap().to_owned();
    let r = post_events(
        srv.public,
        json!([
            {"type": "impression", "customer_id": "C0000044", "offer_id": offer, "event_id": "e-1"},
            {"type": "impression", "customer_id": "C0000044", "visitor_id": "", "offer_id": offer,
             "event_id": "e-2"},
            {"type": "dismiss", "customer_id": "", "visitor_id": "v-44", "offer_id": offer,
             "event_id": "e-3"},
        ]),
    )
    .await;
    assert_eq!(r["accepted"], 3, "{r}");
    assert_eq!(
        r["warnings"],
        json!([
            {"index": 1, "warning": "visitor_id: empty, taken as absent (as a decide request takes it)"},
            {"index": 2, "warning": "customer_id: empty, taken as absent (as a decide request takes it)"},
        ])
    );
    // The dismiss is the visitor's: it holds the offer back for them.
    let a = decide(
        srv.public,
        json!({"visitor_id": "v-44", "customer_id": "C0000044", "channel": "web",
               "placement": "plans_page", "explain": true}),
    )
    .await;
    assert!(
        verdict(&a, &offer).is_some_and(|v| v.contains("dismiss")),
        "{a}"
    );
    // Both empty is no subject at all: refused, naming the field.
    let r = post_json(
        srv.public,
        "/v1/events",
        &json!({"events": [{"type": "click", "customer_id": "", "visitor_id": "", "offer_id": offer}]}),
    )
    .await;
    let detail = r.assert_error(400, "invalid_request");
    assert!(
        detail.starts_with(
            "events[0].customer_id: empty, and no visitor_id: an event is about one of the two"
        ),
        "{detail}"
    );
    srv.stop().await;
}

#[tokio::test]
async fn an_event_stamped_long_before_its_decision_is_taken_with_a_word() {
    let (srv, clock) = start_demo_contacts(None).await;
    let a = decide(
        srv.public,
        json!({"customer_id": "C0000042", "channel": "web", "placement": "plans_page"}),
    )
    .await;
    let (id, offer) = (&a["decision_id"], &a["offers"][0]["offer_id"]);
    let at = |ms: i64| nextbest::rfc3339::format_ms(clock.now_ms() - ms);
    let click = |ts: String| {
        json!({"type": "click", "customer_id": "C0000042", "offer_id": offer,
               "decision_id": id, "ts": ts})
    };
    // A client's clock a few minutes behind: no word. An hour's offset lost: named.
    let r = post_events(
        srv.public,
        json!([click(at(4 * 60_000)), click(at(3 * 3_600_000 + 1))]),
    )
    .await;
    assert_eq!(r["accepted"], 2, "{r}");
    let w = &r["warnings"];
    assert_eq!(w.as_array().map(Vec::len), Some(1), "{r}");
    assert_eq!(w[0]["index"], 1);
    let text = w[0]["warning"].as_str().unwrap();
    assert!(
        text.starts_with(&format!(
            "ts: `{}` is 3 hours before the decision it quotes was made ({})",
            at(3 * 3_600_000 + 1),
            at(0)
        )),
        "{text}"
    );
    srv.stop().await;
}

#[tokio::test]
async fn a_number_sent_as_text_where_the_model_reads_numbers_is_named() {
    let srv = start_demo().await;
    let ask = |context: Value| {
        json!({"customer_id": "C0000043", "channel": "web", "placement": "checkout",
               "context": context})
    };
    let a = decide(
        srv.public,
        ask(json!({"cart_value": "250", "cart_type": "device"})),
    )
    .await;
    assert_eq!(
        warnings(&a),
        [
            "context.cart_value: \"250\" is text, and the model reads this key as a number: send \
          it as a JSON number (as text it fails every comparison)"
        ]
    );
    // `+250` in a query string arrives as ` 250`: the word says why.
    let q = get(
        srv.public,
        "/v1/decide?customer_id=C0000043&channel=web&placement=checkout&context.cart_value=+250",
    )
    .await
    .json();
    let w = warnings(&q);
    assert!(
        w.len() == 1 && w[0].contains("in a query string a `+` reads as a space"),
        "{q}"
    );
    // As a number, or text that is no number, or a key the model reads as text: no word.
    for context in [
        json!({"cart_value": 250, "cart_type": "device"}),
        json!({"cart_value": "lots", "cart_type": "device"}),
        json!({"cart_type": "250"}),
    ] {
        let a = decide(srv.public, ask(context.clone())).await;
        assert_eq!(warnings(&a), Vec::<String>::new(), "{context}");
    }
    srv.stop().await;
}

#[tokio::test]
async fn a_context_key_a_slip_from_one_the_model_reads_is_named() {
    let srv = start_demo().await;
    let ask = |context: Value| {
        json!({"customer_id": "C0000043", "channel": "web", "placement": "home_hero",
               "context": context})
    };
    let slip = |typed: &str, meant: &str| {
        format!(
            "context.{typed}: model demo 1 reads no such key, and its value was ignored: did you \
             mean `{meant}`?"
        )
    };
    for (context, expected) in [
        (json!({"pgae": "deals"}), vec![slip("pgae", "page")]),
        (json!({"Page": "deals"}), vec![slip("Page", "page")]),
        (
            json!({"page": "deals", "utm_campaing": "spring_switch"}),
            vec![slip("utm_campaing", "utm_campaign")],
        ),
        (
            json!({"": "deals"}),
            vec!["context: a key is empty, and its value was ignored".to_owned()],
        ),
        // Keys for others, far from every key the model reads: no word.
        (
            json!({"page": "deals", "lang": "en", "utm_source": "mail", "cart": 1, "age": 30}),
            vec![],
        ),
    ] {
        let a = decide(srv.public, ask(context.clone())).await;
        assert_eq!(warnings(&a), expected, "{context}");
    }
    // The same in a query string.
    let r = get(
        srv.public,
        "/v1/decide?customer_id=C0000043&channel=web&placement=home_hero&context.=5&context.pgae=deals",
    )
    .await;
    assert_eq!(
        warnings(&r.json()),
        [
            "context: a key is empty, and its value was ignored".to_owned(),
            slip("pgae", "page")
        ]
    );
    srv.stop().await;
}

#[tokio::test]
async fn bodies_a_client_library_mangles_are_named_for_what_they_are() {
    let srv = start_demo().await;
    let body = br#"{"customer_id": "C0000042", "channel": "web", "placement": "plans_page"}"#;
    let json = ("content-type", "application/json");
    for route in ["/v1/decide", "/v1/events"] {
        // Compressed: refused before it is read, naming the encoding.
        let r = request(
            srv.public,
            "POST",
            route,
            &[json, ("content-encoding", "gzip")],
            body,
        )
        .await;
        assert_eq!(
            r.assert_error(415, "unsupported_media_type"),
            "content-encoding `gzip` is not supported; send the body uncompressed"
        );
        // A byte-order mark in front: named, not "expected value at column 1".
        let bom = [&b"\xEF\xBB\xBF"[..], body].concat();
        let r = request(srv.public, "POST", route, &[json], &bom).await;
        assert_eq!(
            r.assert_error(400, "malformed_json"),
            "the body starts with a byte-order mark (EF BB BF): send UTF-8 JSON without one"
        );
    }
    // A query string on events is named, as on a POST decide.
    let events = br#"{"events": [{"type": "impression", "customer_id": "C0000042",
        "offer_id": "data_boost_10gb", "channel": "web"}]}"#;
    let r = request(
        srv.public,
        "POST",
        "/v1/events?customer_id=C1",
        &[json],
        events,
    )
    .await;
    assert_eq!(r.status, 202);
    assert_eq!(
        r.json()["batch_warnings"],
        json!(["the query string `customer_id=C1` was not read: a batch is its body's `events`"])
    );
    // `identity` is no encoding at all.
    let r = request(
        srv.public,
        "POST",
        "/v1/decide",
        &[json, ("content-encoding", "identity")],
        body,
    )
    .await;
    assert_eq!(r.status, 200);
    // A GET answer is personal: no cache may keep it.
    let r = get(
        srv.public,
        "/v1/decide?customer_id=C0000042&channel=web&placement=plans_page",
    )
    .await;
    assert_eq!(r.header("cache-control"), Some("no-store"));
    srv.stop().await;
}

/// A body nested deeper than the parser reads is refused where it passes the depth, in line and
/// column, by both routes that read JSON bodies.
#[tokio::test]
async fn a_body_nested_too_deep_is_said_with_its_place() {
    let srv = start_demo().await;
    let json_ct = [("content-type", "application/json")];
    let deep = |head: &str, tail: &str| {
        let body = format!("{head}{}1{}{tail}", "[".repeat(1500), "]".repeat(1500));
        // The bracket that opens level 1,025, counting those the head opened.
        let opened = head.bytes().filter(|b| matches!(b, b'[' | b'{')).count();
        let column = head.len() + 1025 - opened;
        (body, column)
    };
    let cases = [
        (
            "/v1/decide",
            deep(
                r#"{"customer_id": "C0000042", "channel": "web", "placement": "plans_page", "extra": "#,
                "}",
            ),
        ),
        (
            "/v1/events",
            deep(
                r#"{"events": [{"type": "impression", "customer_id": "C0000042", "offer_id": "data_boost_10gb", "x": "#,
                "}]}",
            ),
        ),
    ];
    for (route, (body, column)) in cases {
        let d = request(srv.public, "POST", route, &json_ct, body.as_bytes())
            .await
            .assert_error(400, "malformed_json");
        assert_eq!(
            d,
            format!(
                "invalid JSON at line 1, column {column}: arrays and objects nested more than \
                 1024 deep"
            ),
            "{route}"
        );
    }
    srv.stop().await;
}

/// A required field misspelt is named beside the one missing, on both routes: the 400 points
/// at what the client wrote.
#[tokio::test]
async fn a_misspelt_required_field_is_named_in_its_refusal() {
    let srv = start_demo().await;
    let json_ct = [("content-type", "application/json")];
    for (path, body, said) in [
        (
            "/v1/decide",
            &br#"{"customer_id":"C0000042","channel":"web","placment":"plans_page"}"#[..],
            "missing field `placement`: the request has `placment`; did you mean `placement`?",
        ),
        (
            "/v1/events",
            br#"{"evnets":[]}"#,
            "missing field `events`: the body has `evnets`; did you mean `events`?",
        ),
        (
            "/v1/events",
            br#"{"events":[{"tpye":"click","customer_id":"C0000042","offer_id":"data_boost_10gb"}]}"#,
            "events[0].type: missing field; `tpye` is not a field: did you mean `type`?",
        ),
    ] {
        let d = request(srv.public, "POST", path, &json_ct, body)
            .await
            .assert_error(400, "invalid_request");
        assert!(d.starts_with(said), "{path}: {d}");
    }
    let d = get(
        srv.public,
        "/v1/decide?customer_id=C0000042&Channel=web&placement=checkout",
    )
    .await
    .assert_error(400, "invalid_request");
    assert_eq!(
        d,
        "missing field `channel`: the request has `Channel`; did you mean `channel`?"
    );
    srv.stop().await;
}

/// An impression of the fallback content an answer showed is reported without a warning (the
/// contract's warnings mean a mistake); an id that is neither an offer nor content still warns.
#[tokio::test]
async fn fallback_content_impressions_are_taken_without_a_warning() {
    let srv = start_demo().await;
    let a = decide(
        srv.public,
        json!({"customer_id": "NOBODY", "channel": "web", "placement": "home_hero"}),
    )
    .await;
    let shown = a["offers"][0]["offer_id"]
        .as_str()
        .expect("fallback content")
        .to_owned();
    assert!(a["fallback"]["reason"].is_string(), "{a}");
    let r = post_events(
        srv.public,
        json!([{"type": "impression", "customer_id": "C0000050", "offer_id": shown, "channel": "web"},
               {"type": "impression", "customer_id": "C0000050", "offer_id": "brand_heor", "channel": "web"}]),
    )
    .await;
    assert_eq!(r["accepted"], 2, "{r}");
    let w = r["warnings"]
        .as_array()
        .expect("a warning for the mistyped id");
    assert_eq!(w.len(), 1, "{r}");
    assert_eq!(w[0]["index"], 1, "{r}");
    srv.stop().await;
}

#[tokio::test]
async fn an_event_id_reused_for_another_event_is_named_and_a_retry_is_not() {
    let srv = start_demo().await;
    let imp = |customer: &str, offer: &str, ts: &str| {
        json!({"type": "impression", "customer_id": customer, "offer_id": offer,
               "channel": "web", "event_id": "web-1", "ts": ts})
    };
    let first = imp("C0000051", "data_boost_10gb", "2026-11-22T09:00:00Z");
    let r = post_events(srv.public, json!([first])).await;
    assert_eq!(r["accepted"], 1, "{r}");
    // A retry, stamped again by a client that stamps at send time: a repeat, no word.
    let retry = imp("C0000051", "data_boost_10gb", "2026-11-22T09:00:05Z");
    let r = post_events(srv.public, json!([retry])).await;
    assert_eq!(
        (&r["accepted"], &r["duplicates"]),
        (&json!(0), &json!(1)),
        "{r}"
    );
    assert!(r["warnings"].is_null(), "{r}");
    // Another customer's and another offer's events under the same id, behind a new one: both
    // counted as repeats, as the contract says, and each named.
    let other = json!({"type": "click", "customer_id": "C0000052", "offer_id": "data_boost_10gb",
                       "channel": "web", "event_id": "web-2"});
    let r = post_events(
        srv.public,
        json!([
            other,
            imp("C0000052", "data_boost_10gb", "2026-11-22T09:01:00Z"),
            imp("C0000051", "data_boost_5gb", "2026-11-22T09:01:00Z")
        ]),
    )
    .await;
    assert_eq!(
        (&r["accepted"], &r["duplicates"]),
        (&json!(1), &json!(2)),
        "{r}"
    );
    let w = r["warnings"].as_array().expect("the reused ids named");
    let named: Vec<_> = w.iter().map(|w| w["index"].as_u64().unwrap()).collect();
    assert_eq!(named, [1, 2], "{r}");
    for w in w {
        let text = w["warning"].as_str().unwrap();
        assert!(
            text.starts_with("event_id: `web-1` was first sent for another event")
                && text.ends_with("give each event its own id"),
            "{text}"
        );
    }
    srv.stop().await;
}
