//! The HTTP contract of DESIGN.md, checked against the real server on the demo model.

mod support;

use serde_json::json;
use support::*;

fn offer_ids(answer: &serde_json::Value) -> Vec<String> {
    answer["offers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["offer_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn known_customers_get_offers_ordered_by_score() {
    let srv = start_demo().await;
    let mut personalised = 0;
    for i in 1..=60 {
        let id = format!("C{i:07}");
        let a = decide(srv.public, json!({"customer_id": id, "channel": "web", "placement": "plans_page", "explain": true})).await;
        assert_eq!(a["customer_id"], id.as_str());
        assert_eq!(a["model"], json!({"name": "demo", "version": "1"}));
        assert_eq!(a["variant"], "champion");
        assert_eq!(a["decision_id"].as_str().unwrap().len(), 26);
        assert!(a["took_us"].is_u64());
        if !a["fallback"].is_null() {
            assert_eq!(a["fallback"]["reason"], "no_eligible_offer");
            continue;
        }
        personalised += 1;
        let offers = a["offers"].as_array().unwrap();
        assert!(
            !offers.is_empty() && offers.len() <= 3,
            "plans_page limit is 3"
        );
        for (i, o) in offers.iter().enumerate() {
            assert_eq!(o["rank"], i + 1);
            assert!(o["content"]["title"].is_string());
            assert!(o["content"]["cta_url"]
                .as_str()
                .unwrap()
                .starts_with("https://"));
        }
        let scores: Vec<f64> = offers
            .iter()
            .map(|o| o["score"].as_f64().unwrap())
            .collect();
        assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
        // The answer is exactly the top of what explain scored.
        let mut scored: Vec<(f64, String)> = a["explain"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["score"].is_f64())
            .map(|e| {
                (
                    e["score"].as_f64().unwrap(),
                    e["offer_id"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        scored.sort_by(|x, y| y.0.total_cmp(&x.0));
        let top: Vec<String> = scored.into_iter().take(offers.len()).map(|s| s.1).collect();
        assert_eq!(offer_ids(&a), top);
    }
    assert!(
        personalised >= 30,
        "only {personalised} of 60 customers got offers"
    );
    srv.stop().await;
}

#[tokio::test]
async fn unknown_customer_gets_fallback_where_the_placement_does_not_decide_for_visitors() {
    let srv = start_demo().await;
    let a = decide(
        srv.public,
        json!({"customer_id": "C9999999", "channel": "web", "placement": "checkout"}),
    )
    .await;
    assert_eq!(a["fallback"]["reason"], "unknown_customer");
    assert_eq!(a["fallback"]["stage"], "placement");
    assert_eq!(offer_ids(&a), Vec::<String>::new());
    let a = decide(
        srv.public,
        json!({"customer_id": "C9999999", "channel": "web", "placement": "plans_page"}),
    )
    .await;
    assert_eq!(a["fallback"]["reason"], "unknown_customer");
    assert_eq!(a["fallback"]["stage"], "channel");
    assert_eq!(offer_ids(&a), ["brand_web"]);
    // No customer id at all (an anonymous visitor) is the same.
    let a = decide(
        srv.public,
        json!({"channel": "app", "placement": "app_home"}),
    )
    .await;
    assert_eq!(a["fallback"]["reason"], "unknown_customer");
    assert_eq!(a["fallback"]["stage"], "channel");
    assert_eq!(offer_ids(&a), ["brand_app"]);
    assert!(a["customer_id"].is_null());
    // An empty id is anonymous too, and answered as one.
    let a = decide(
        srv.public,
        json!({"customer_id": "", "channel": "app", "placement": "app_home"}),
    )
    .await;
    assert_eq!(a["fallback"]["reason"], "unknown_customer");
    assert!(a["customer_id"].is_null(), "{a}");
    // The web home banner decides for them from the page and the campaign instead.
    let a = decide(
        srv.public,
        json!({"customer_id": "C9999999", "channel": "web", "placement": "home_hero",
               "context": {"page": "deals", "utm_campaign": "spring_switch"}}),
    )
    .await;
    assert!(a["fallback"].is_null(), "{a}");
    assert_eq!(a["anonymous"], true);
    assert_eq!(offer_ids(&a), ["switch_welcome"]);
    assert!(a.get("warnings").is_none(), "{a}");
    // A known id with white space around it is unknown as written, and the answer says why.
    for placement in ["plans_page", "home_hero"] {
        let a = decide(
            srv.public,
            json!({"customer_id": "C0000042 ", "channel": "web", "placement": placement}),
        )
        .await;
        assert_eq!(
            a["warnings"],
            json!([
                "customer_id: \"C0000042 \" has white space around it, and ids are kept as \
                    written: the snapshot has no such customer (trim it)"
            ]),
            "{a}"
        );
    }
    // A visitor's id is taken whatever it is, but white space around it is said.
    let a = decide(
        srv.public,
        json!({"visitor_id": " web-1", "channel": "web", "placement": "home_hero"}),
    )
    .await;
    let w = a["warnings"][0].as_str().unwrap_or_default();
    assert!(
        w.starts_with("visitor_id: \" web-1\" has white space around it"),
        "{a}"
    );
    srv.stop().await;
}

#[tokio::test]
async fn explain_lists_every_offer_with_score_or_exclusion() {
    let srv = start_demo().await;
    let a = decide(srv.public, json!({"customer_id": "C0000042", "channel": "web", "placement": "plans_page", "explain": true})).await;
    let explain = a["explain"].as_array().unwrap();
    let model: serde_json::Value =
        serde_json::from_slice(&std::fs::read(demo_dir().join("model.json")).unwrap()).unwrap();
    assert_eq!(explain.len(), model["offers"].as_array().unwrap().len());
    let excluded: Vec<&str> = explain
        .iter()
        .filter_map(|e| e["excluded"].as_str())
        .collect();
    assert!(
        excluded.iter().any(|e| e.contains("eligibility")),
        "{excluded:?}"
    );
    assert!(
        excluded
            .iter()
            .any(|e| e.contains("not shown in this placement")),
        "{excluded:?}"
    );
    for e in explain {
        assert!(e["excluded"].is_string() != e["score"].is_f64(), "{e}");
    }
    let app = decide(srv.public, json!({"customer_id": "C0000042", "channel": "app", "placement": "app_home", "explain": true})).await;
    let web_only = app["explain"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["offer_id"] == "app_install_reward")
        .unwrap();
    assert_eq!(
        web_only["excluded"],
        "channel: the offer is not shown on this channel"
    );
    let expired = app["explain"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["offer_id"] == "summer_roaming_2026")
        .unwrap();
    assert_eq!(
        expired["excluded"],
        "validity: outside the offer's validity window"
    );
    let plain = decide(
        srv.public,
        json!({"customer_id": "C0000042", "channel": "web", "placement": "plans_page"}),
    )
    .await;
    assert!(plain.get("explain").is_none());
    srv.stop().await;
}

#[tokio::test]
async fn get_and_post_agree() {
    let srv = start_demo().await;
    for (id, ch, pl) in [
        ("C0000042", "web", "plans_page"),
        ("C0000007", "app", "app_home"),
        ("C0000100", "web", "home_hero"),
    ] {
        let post = decide(
            srv.public,
            json!({"customer_id": id, "channel": ch, "placement": pl, "limit": 2}),
        )
        .await;
        let r = get(
            srv.public,
            &format!("/v1/decide?customer_id={id}&channel={ch}&placement={pl}&limit=2"),
        )
        .await;
        assert_eq!(r.status, 200);
        let got = r.json();
        assert_eq!(got["offers"], post["offers"], "{id} {ch} {pl}");
        assert_eq!(got["fallback"], post["fallback"]);
        assert_ne!(got["decision_id"], post["decision_id"]);
    }
    srv.stop().await;
}

#[tokio::test]
async fn server_timing_header_is_set() {
    let srv = start_demo().await;
    let r = post_json(
        srv.public,
        "/v1/decide",
        &json!({"customer_id": "C0000001", "channel": "web", "placement": "home_hero"}),
    )
    .await;
    let timing = r.header("server-timing").expect("Server-Timing header");
    let dur: f64 = timing.strip_prefix("decide;dur=").unwrap().parse().unwrap();
    // The header and the body report the same measurement: ms with 3 decimals vs us.
    let took_us = r.json()["took_us"].as_u64().unwrap();
    assert_eq!((dur * 1000.0).round() as u64, took_us, "{timing}");
    assert_eq!(r.header("content-type"), Some("application/json"));
    srv.stop().await;
}

#[tokio::test]
async fn every_error_status_has_a_json_body() {
    let srv = start_demo().await;
    let a = srv.public;
    let json_ct = [("content-type", "application/json")];

    let d = request(a, "POST", "/v1/decide", &json_ct, b"{\"channel\": ")
        .await
        .assert_error(400, "malformed_json");
    assert!(d.contains("invalid JSON"), "{d}");
    let d = request(a, "POST", "/v1/decide", &json_ct, br#"{"channel":"web"}"#)
        .await
        .assert_error(400, "invalid_request");
    assert!(d.contains("placement"), "{d}");
    let d = request(
        a,
        "POST",
        "/v1/decide",
        &json_ct,
        br#"{"channel":"web","placement":"x","limit":"two"}"#,
    )
    .await
    .assert_error(400, "invalid_request");
    assert!(d.contains("limit"), "{d}");
    let d = get(a, "/v1/decide?channel=web")
        .await
        .assert_error(400, "invalid_request");
    assert!(d.contains("placement"), "{d}");

    let d = get(a, "/v2/nothing").await.assert_error(404, "not_found");
    assert!(d.contains("/v2/nothing"));
    let r = request(a, "DELETE", "/v1/decide", &[], b"").await;
    r.assert_error(405, "method_not_allowed");
    assert_eq!(r.header("allow"), Some("GET, POST"));
    // Nor HEAD, which would make and count a decision no page shows.
    let head = raw(
        a,
        format!(
            "HEAD /v1/decide?customer_id=C0000042&channel=web&placement=plans_page HTTP/1.1\r\n\
             host: {a}\r\nconnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 405"), "{head}");
    assert!(head.contains("allow: GET, POST"), "{head}");
    request(a, "POST", "/healthz", &[], b"")
        .await
        .assert_error(405, "method_not_allowed");

    // Refused before the body is read (route, method, content type, header): the connection
    // cannot carry another request, and the answer says so to keep-alive pools.
    for (method, path, headers, status) in [
        ("POST", "/v1/decide", "content-type: text/plain\r\n", 415),
        (
            "POST",
            "/v2/nothing",
            "content-type: application/json\r\n",
            404,
        ),
        (
            "PUT",
            "/v1/decide",
            "content-type: application/json\r\n",
            405,
        ),
        (
            "POST",
            "/v1/decide",
            "content-type: application/json\r\nx-deadline-us: soon\r\n",
            400,
        ),
    ] {
        let body = r#"{"customer_id": "C0000001", "channel": "web", "placement": "home_hero"}"#;
        let keep_alive = format!(
            "{method} {path} HTTP/1.1\r\nhost: x\r\n{headers}content-length: {}\r\n\r\n{body}",
            body.len()
        );
        let out = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            raw(a, keep_alive.as_bytes()),
        )
        .await
        .expect("the server kept the connection open after refusing the request");
        let (r, _) = parse_response(&out).unwrap();
        assert_eq!(r.status, status, "{method} {path}");
        assert_eq!(
            r.header("connection"),
            Some("close"),
            "{method} {path}: {:?}",
            r.headers
        );
    }

    let big = vec![b' '; 70 * 1024];
    let r = request(a, "POST", "/v1/decide", &json_ct, &big).await;
    // The body is left unread: the connection ends, and the answer says so to pools.
    assert_eq!(r.header("connection"), Some("close"), "{:?}", r.headers);
    r.assert_error(413, "payload_too_large");
    // Chunked, without a length up front: refused once the limit is crossed.
    let mut chunked = b"POST /v1/decide HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n".to_vec();
    for _ in 0..80 {
        chunked.extend_from_slice(b"400\r\n");
        chunked.extend_from_slice(&[b' '; 1024]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let out = raw(a, &chunked).await;
    parse_response(&out)
        .unwrap()
        .0
        .assert_error(413, "payload_too_large");

    let d = request(
        a,
        "POST",
        "/v1/decide",
        &[("content-type", "text/plain")],
        b"{}",
    )
    .await
    .assert_error(415, "unsupported_media_type");
    assert!(d.contains("text/plain"));
    srv.stop().await;
}

#[tokio::test]
async fn probes_and_admin_separation() {
    let srv = start_demo().await;
    assert_eq!(get(srv.public, "/healthz").await.status, 200);
    // HEAD wherever GET reads a document: the head alone.
    for (addr, path) in [
        (srv.public, "/healthz"),
        (srv.public, "/openapi.json"),
        (srv.admin, "/admin/models"),
        (srv.admin, "/admin/status"),
        (srv.admin, "/metrics"),
    ] {
        let out = raw(
            addr,
            format!("HEAD {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await;
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("HTTP/1.1 200"), "{path}: {text}");
        assert!(
            text.ends_with("\r\n\r\n"),
            "{path}: a body after the head: {text}"
        );
    }
    let r = get(srv.public, "/readyz").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "ready");
    // Admin routes never answer on the public listener.
    for path in ["/admin/models", "/metrics"] {
        get(srv.public, path).await.assert_error(404, "not_found");
    }
    let models = get(srv.admin, "/admin/models").await;
    assert_eq!(models.status, 200);
    let m = models.json();
    assert_eq!(m["active"]["name"], "demo");
    assert!(m["active"]["checksum"]
        .as_str()
        .unwrap()
        .starts_with("crc32:"));
    assert_eq!(m["history"].as_array().unwrap().len(), 1);
    assert_eq!(m["features"]["customers"], 10_000);
    srv.stop().await;
}

#[tokio::test]
async fn readyz_is_503_without_a_model_and_decide_serves_no_model_fallback() {
    let srv = start_registry(
        std::sync::Arc::new(nextbest::registry::Registry::default()),
        test_config(),
    )
    .await;
    let r = get(srv.public, "/readyz").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["status"], "not_ready");
    assert_eq!(
        r.json()["detail"],
        "no feature snapshot loaded, and no model (a model is checked against a snapshot: none \
         loads before one does)"
    );
    let a = decide(
        srv.public,
        json!({"customer_id": "C1", "channel": "web", "placement": "home_hero"}),
    )
    .await;
    assert_eq!(a["fallback"]["reason"], "no_model");
    assert_eq!(a["offers"], json!([]));
    assert!(a["model"].is_null());
    srv.stop().await;
}

#[tokio::test]
async fn admin_token_is_required_when_set() {
    let srv = start_demo_with(with_token("s3cret")).await;
    get(srv.admin, "/admin/models")
        .await
        .assert_error(401, "unauthorized");
    // A model upload without the token is refused before its body is read: the answer ends a
    // keep-alive connection and says so.
    let body = "{}";
    let upload = format!(
        "PUT /admin/models HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        raw(srv.admin, upload.as_bytes()),
    )
    .await
    .expect("the server kept the connection open after refusing the upload");
    let (r, _) = parse_response(&out).unwrap();
    assert_eq!(
        (r.status, r.header("connection")),
        (401, Some("close")),
        "{:?}",
        r.headers
    );
    request(
        srv.admin,
        "GET",
        "/admin/models",
        &[("authorization", "Bearer wrong")],
        b"",
    )
    .await
    .assert_error(401, "unauthorized");
    let ok = request(
        srv.admin,
        "GET",
        "/admin/models",
        &[("authorization", "Bearer s3cret")],
        b"",
    )
    .await;
    assert_eq!(ok.status, 200);
    // The scheme's name is case-insensitive (RFC 9110); the token is not.
    let lower = request(
        srv.admin,
        "GET",
        "/admin/models",
        &[("authorization", "bearer s3cret")],
        b"",
    )
    .await;
    assert_eq!(lower.status, 200);
    request(
        srv.admin,
        "GET",
        "/admin/models",
        &[("authorization", "Bearer S3CRET")],
        b"",
    )
    .await
    .assert_error(401, "unauthorized");
    let m = request(
        srv.admin,
        "GET",
        "/metrics",
        &[("authorization", "Bearer s3cret")],
        b"",
    )
    .await;
    assert_eq!(m.status, 200);
    assert!(format!("{:?}", srv.state.config.admin_token).contains("redacted"));
    assert!(!format!("{:?}", srv.state.config).contains("s3cret"));
    srv.stop().await;
}

#[tokio::test]
async fn metrics_count_decisions_by_outcome() {
    let srv = start_demo().await;
    decide(
        srv.public,
        json!({"customer_id": "C0000042", "channel": "web", "placement": "plans_page"}),
    )
    .await;
    decide(
        srv.public,
        json!({"customer_id": "nobody", "channel": "web", "placement": "plans_page"}),
    )
    .await;
    let text = String::from_utf8(get(srv.admin, "/metrics").await.body).unwrap();
    assert!(
        text.contains("nextbest_decisions_total{outcome=\"personalised\"} 1"),
        "{text}"
    );
    assert!(text
        .contains("nextbest_decisions_total{outcome=\"fallback\",reason=\"unknown_customer\"} 1"));
    assert!(text.contains("nextbest_decide_duration_seconds_count 2"));
    srv.stop().await;
}

#[tokio::test]
async fn keep_alive_serves_several_requests_on_one_connection() {
    let srv = start_demo().await;
    let body = br#"{"customer_id":"C0000042","channel":"web","placement":"plans_page"}"#;
    let one = format!(
        "POST /v1/decide HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{}",
        body.len(),
        std::str::from_utf8(body).unwrap()
    );
    let mut bytes = one.repeat(3).into_bytes();
    bytes.extend_from_slice(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    let out = raw(srv.public, &bytes).await;
    let mut rest = &out[..];
    let mut statuses = Vec::new();
    while let Some((r, used)) = parse_response(rest) {
        statuses.push(r.status);
        rest = &rest[used..];
    }
    assert_eq!(statuses, [200, 200, 200, 200]);
    srv.stop().await;
}

/// One request to `addr` with its `Host` header as given and more headers.
async fn with_host(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    host: &str,
    more: &str,
) -> Resp {
    let req = format!(
        "{method} {path} HTTP/1.1\r\nhost: {host}\r\n{more}content-length: 0\r\nconnection: close\r\n\r\n"
    );
    parse_response(&raw(addr, req.as_bytes()).await).unwrap().0
}

/// Events a page of another site makes a browser send (a `no-cors` fetch, no preflight) are
/// refused: they would hold offers back from any customer. The site's own pages, proxied, and
/// backends (which send no `Sec-Fetch-Site`) are served.
#[tokio::test]
async fn events_from_another_sites_page_are_refused() {
    let srv = start_demo().await;
    let body = br#"{"events":[{"type":"dismiss","customer_id":"C0000042","offer_id":"data_boost_10gb","channel":"web"}]}"#;
    let send = |site: Option<&'static str>| async move {
        let mut headers = vec![("origin", "https://evil.example")];
        headers.extend(site.map(|s| ("sec-fetch-site", s)));
        request(srv.public, "POST", "/v1/events", &headers, body).await
    };
    let r = send(Some("cross-site")).await;
    assert_eq!(
        r.assert_error(403, "forbidden"),
        "Sec-Fetch-Site: cross-site: another site's page made this request; events come from \
         the channel's backend (or a page of its own site)"
    );
    for site in [None, Some("same-origin"), Some("same-site")] {
        let r = send(site).await;
        assert_eq!(
            r.status,
            202,
            "{site:?}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
    srv.stop().await;
}

/// What a web page makes a browser send to the admin listener is refused before anything
/// runs: a page of another site (its `Origin`, or `Sec-Fetch-Site`), and, while the listener
/// answers loopback without a token, a name that only resolves here (DNS rebinding). Tools
/// and the status page itself send neither, and loopback names are taken.
#[tokio::test]
async fn the_admin_api_refuses_what_a_web_page_sends() {
    let srv = start_demo().await;
    let port = srv.admin.port();
    let own = format!("127.0.0.1:{port}");
    // DNS rebinding: evil.example resolves to 127.0.0.1; the request names it.
    let r = with_host(
        srv.admin,
        "GET",
        "/admin/models",
        &format!("evil.example:{port}"),
        "",
    )
    .await;
    let d = r.assert_error(403, "forbidden");
    assert!(d.contains("by an IP address or a localhost name"), "{d}");
    // A page of another site: a no-cors POST carries its Origin, or Sec-Fetch-Site (refused
    // before routing: a rollback here would answer 409, there being nothing to roll back to).
    for more in [
        "origin: http://evil.example\r\n".to_owned(),
        "origin: null\r\n".to_owned(),
        "sec-fetch-site: cross-site\r\n".to_owned(),
        format!(
            "sec-fetch-site: same-site\r\norigin: http://localhost:{}\r\n",
            srv.public.port()
        ),
    ] {
        let r = with_host(srv.admin, "POST", "/admin/models/rollback", &own, &more).await;
        r.assert_error(403, "forbidden");
    }
    // A link to the status page from another site (a runbook, a dashboard) opens it: a GET
    // changes nothing.
    let r = with_host(
        srv.admin,
        "GET",
        "/admin/status",
        &own,
        "sec-fetch-site: cross-site\r\nsec-fetch-mode: navigate\r\n",
    )
    .await;
    assert_eq!(r.status, 200);
    // The status page's own fetches, tools and names no DNS answer can redirect are served.
    for (host, more) in [
        (
            own.clone(),
            format!("origin: http://{own}\r\nsec-fetch-site: same-origin\r\n"),
        ),
        (format!("localhost:{port}"), String::new()),
        (format!("[::1]:{port}"), String::new()),
        ("LOCALHOST".to_owned(), String::new()),
        (format!("10.0.0.7:{port}"), String::new()),
    ] {
        let r = with_host(srv.admin, "GET", "/admin/models", &host, &more).await;
        assert_eq!(
            r.status,
            200,
            "{host} {more}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
    // With a token the listener may be reached by any name (a Kubernetes service), and the
    // token decides; another site's page is still refused.
    let tok = start_demo_with(with_token("s3cret")).await;
    let bearer = "authorization: Bearer s3cret\r\n";
    let r = with_host(
        tok.admin,
        "GET",
        "/admin/models",
        "nextbest-admin.svc:9091",
        bearer,
    )
    .await;
    assert_eq!(r.status, 200);
    let cross = format!("{bearer}origin: http://evil.example\r\n");
    let r = with_host(
        tok.admin,
        "POST",
        "/admin/models/rollback",
        "nextbest-admin.svc:9091",
        &cross,
    )
    .await;
    r.assert_error(403, "forbidden");
}
