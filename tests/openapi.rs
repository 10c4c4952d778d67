//! The OpenAPI contract against the real server: every route and status a client can meet is
//! driven, each answer's body is validated against the schema its listener's part of the
//! document gives for that route, method, status and content type (the `jsonschema` crate,
//! JSON Schema 2020-12 as OpenAPI 3.1 uses it), and every status the document promises must
//! have been seen. The document cannot drift from the code without this test failing.

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use nextbest::registry::Registry;
use nextbest::server::openapi::{self, Listener};
use nextbest::server::ServerConfig;
use serde_json::{json, Value};
use support::Resp;

const TOKEN: &str = "contract-token";

/// Documented answers no test here can provoke, and why.
const EXEMPT: [(&str, &str, &str, u16, &str); 9] = [
    (
        "admin",
        "/admin/models/shadow",
        "put",
        500,
        "the data folder failing to keep the shadow model",
    ),
    (
        "admin",
        "/admin/models/shadow",
        "delete",
        500,
        "the data folder failing to remove the kept shadow model",
    ),
    (
        "admin",
        "/admin/models",
        "put",
        500,
        "writing the accepted model over the models folder failing (a read-only folder)",
    ),
    (
        "admin",
        "/admin/models/rollback",
        "post",
        500,
        "writing the previous model over the models folder failing",
    ),
    (
        "admin",
        "/admin/features/reload",
        "post",
        409,
        "a waiting reload superseded by a newer one (provoked in tests/registry.rs)",
    ),
    (
        "admin",
        "/admin/features/reload",
        "post",
        500,
        "the snapshot store failing to take a copy (a full disk, provoked in tests/snapshot_store.rs)",
    ),
    (
        "public",
        "/v1/events",
        "post",
        503,
        "the event log failing to write (provoked in tests/durability.rs)",
    ),
    (
        "public",
        "/v1/decide",
        "post",
        503,
        "slow bodies holding their whole budget (provoked in tests/guards.rs)",
    ),
    (
        "admin",
        "/admin/models/rollback",
        "post",
        422,
        "the previous model no longer compiles against a newer snapshot",
    ),
];

/// One listener's part of the contract and the answers checked against it.
struct Contract {
    listener: &'static str,
    doc: Value,
    seen: BTreeSet<(String, String, u16)>,
    /// The statuses every operation of the part lists (404, 405, 431, and the admin's 401):
    /// any route may answer them, so seeing each once on the listener covers them.
    every: BTreeSet<u16>,
}

impl Contract {
    fn new(listener: Listener) -> Contract {
        let name = match listener {
            Listener::Public => "public",
            Listener::Admin => "admin",
        };
        let source: Value = serde_json::from_str(openapi::SOURCE).expect("the source is JSON");
        let every = source["x-nextbest-parts"][name]["x-every-operation"]["responses"]
            .as_object()
            .map(|r| r.keys().map(|s| s.parse().expect("a status")).collect())
            .unwrap_or_default();
        Contract {
            listener: name,
            doc: openapi::part(listener).expect("the document splits"),
            seen: BTreeSet::new(),
            every,
        }
    }

    /// Follows a `$ref` into the components, if the value is one.
    fn deref<'a>(&'a self, v: &'a Value) -> &'a Value {
        match v.get("$ref").and_then(Value::as_str) {
            Some(r) => self
                .doc
                .pointer(r.trim_start_matches('#'))
                .unwrap_or_else(|| panic!("{}: {r} dangles", self.listener)),
            None => v,
        }
    }

    /// Checks one answer to `method path` against the document; returns its JSON body.
    fn check(&mut self, method: &str, path: &str, resp: &Resp) -> Value {
        let route = path.split('?').next().unwrap_or(path);
        let what = format!(
            "{} {method} {path} -> {}: {}",
            self.listener,
            resp.status,
            String::from_utf8_lossy(&resp.body)
        );
        let item = self.doc["paths"].get(route).cloned();
        let op = item
            .as_ref()
            .and_then(|i| i.get(method.to_ascii_lowercase()).cloned());
        let response = match (&item, &op) {
            (None, _) => {
                assert_eq!(resp.status, 404, "an undocumented route answered: {what}");
                self.seen.insert(("*".into(), "*".into(), 404));
                self.deref(&json!({"$ref": "#/components/responses/NotFound"}))
                    .clone()
            }
            (Some(_), None) => {
                assert_eq!(resp.status, 405, "an undocumented method answered: {what}");
                self.seen.insert(("*".into(), "*".into(), 405));
                self.deref(&json!({"$ref": "#/components/responses/MethodNotAllowed"}))
                    .clone()
            }
            (Some(_), Some(op)) => {
                let r = op["responses"]
                    .get(resp.status.to_string())
                    .unwrap_or_else(|| panic!("status not in the document: {what}"));
                self.seen
                    .insert((route.to_owned(), method.to_ascii_lowercase(), resp.status));
                self.seen.insert(("*".into(), "*".into(), resp.status));
                self.deref(r).clone()
            }
        };
        if let Some(headers) = response.get("headers").and_then(Value::as_object) {
            for name in headers.keys() {
                assert!(resp.header(name).is_some(), "header {name} missing: {what}");
            }
        }
        let ct = resp
            .header("content-type")
            .unwrap_or_else(|| panic!("no content-type: {what}"));
        let essence = ct.split(';').next().unwrap_or("").trim();
        let schema = response["content"]
            .get(essence)
            .unwrap_or_else(|| panic!("content type {essence} not documented: {what}"))["schema"]
            .clone();
        let body: Value = if essence == "application/json" {
            serde_json::from_slice(&resp.body).unwrap_or_else(|e| panic!("not JSON ({e}): {what}"))
        } else {
            Value::String(String::from_utf8(resp.body.clone()).expect("UTF-8 text"))
        };
        let errors = self.violations(&schema, &body);
        assert!(errors.is_empty(), "{what}\n{}", errors.join("\n"));
        body
    }

    /// What in `value` breaks `schema` (a schema of this document, `$ref`s and all).
    fn violations(&self, schema: &Value, value: &Value) -> Vec<String> {
        let root = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "components": self.doc["components"],
            "allOf": [schema],
        });
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(true)
            .build(&root)
            .unwrap_or_else(|e| panic!("the schema does not compile ({e}): {schema}"));
        validator
            .iter_errors(value)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect()
    }

    /// Whether the document's request schema for `method path` accepts `body`: a request the
    /// server takes must be valid, one it refuses as invalid must not be.
    fn request_valid(&self, method: &str, path: &str, body: &Value) -> bool {
        let schema = &self.doc["paths"][path][method.to_ascii_lowercase()]["requestBody"]
            ["content"]["application/json"]["schema"];
        assert!(schema.is_object(), "no request schema for {method} {path}");
        self.violations(schema, body).is_empty()
    }

    /// Every documented (route, method, status) was seen or is exempt with a reason.
    fn assert_covered(&self) {
        let mut missing = Vec::new();
        for (route, item) in self.doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("a path item") {
                let Some(responses) = op.get("responses").and_then(Value::as_object) else {
                    continue;
                };
                for status in responses.keys() {
                    let status: u16 = status.parse().expect("a numeric status");
                    let exempt = EXEMPT.iter().any(|(l, r, m, s, _)| {
                        *l == self.listener && r == route && m == method && *s == status
                    });
                    let key = if self.every.contains(&status) {
                        ("*".to_owned(), "*".to_owned(), status)
                    } else {
                        (route.clone(), method.clone(), status)
                    };
                    if !exempt && !self.seen.contains(&key) {
                        missing.push(format!("{method} {route} {status}"));
                    }
                }
            }
        }
        assert!(
            missing.is_empty(),
            "{}: documented but never answered: {missing:?}",
            self.listener
        );
    }
}

fn auth() -> String {
    format!("Bearer {TOKEN}")
}

async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: bool,
    content_type: Option<&str>,
    body: &[u8],
) -> Resp {
    let auth = auth();
    let mut headers: Vec<(&str, &str)> = Vec::new();
    if token {
        headers.push(("authorization", &auth));
    }
    if let Some(ct) = content_type {
        headers.push(("content-type", ct));
    }
    support::request(addr, method, path, &headers, body).await
}

/// A JSON request sent as raw bytes: `content-length` declared, only `sent` of the body sent.
async fn declared(
    addr: SocketAddr,
    (method, path): (&str, &str),
    token: bool,
    content_length: u64,
    sent: &str,
) -> Resp {
    let auth = if token {
        format!("authorization: {}\r\n", auth())
    } else {
        String::new()
    };
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n{auth}content-length: {content_length}\r\nconnection: close\r\n\r\n{sent}"
    );
    parse(&support::raw(addr, head.as_bytes()).await)
}

fn parse(out: &[u8]) -> Resp {
    support::parse_response(out)
        .unwrap_or_else(|| panic!("no complete response: {:?}", String::from_utf8_lossy(out)))
        .0
}

/// The JSON routes: a malformed body (the error code the route gives), oversized, not JSON,
/// stalled.
async fn body_faults(
    c: &mut Contract,
    addr: SocketAddr,
    (method, path): (&str, &str),
    token: bool,
    malformed: (u16, &str),
) {
    let r = call(addr, method, path, token, Some("application/json"), b"{").await;
    assert_eq!(r.status, malformed.0);
    assert_eq!(c.check(method, path, &r)["error"], malformed.1);
    // Declared far over any limit: refused before a byte of the body is read.
    let r = declared(addr, (method, path), token, 999_999_999, "").await;
    assert_eq!(c.check(method, path, &r)["error"], "payload_too_large");
    let r = call(addr, method, path, token, Some("text/plain"), b"hello").await;
    assert_eq!(c.check(method, path, &r)["error"], "unsupported_media_type");
    // A body that stops short: the server's 408 is what comes back.
    let r = declared(addr, (method, path), token, 100, "{").await;
    assert_eq!(c.check(method, path, &r)["error"], "request_timeout");
}

/// Wrong methods and unknown paths: a 404 or 405 with the documented body.
async fn no_route(c: &mut Contract, addr: SocketAddr, token: bool, calls: &[(&str, &str)]) {
    for (method, path) in calls {
        let r = call(addr, method, path, token, None, b"").await;
        let e = c.check(method, path, &r);
        assert!(matches!(r.status, 404 | 405), "{e}");
    }
}

#[tokio::test]
async fn every_answer_matches_the_document() {
    let config = ServerConfig {
        body_timeout: Duration::from_millis(300),
        ..support::with_token(TOKEN)
    };
    let srv = support::start_demo_with(config).await;
    let empty =
        support::start_registry(Arc::new(Registry::default()), support::test_config()).await;
    let mut public = Contract::new(Listener::Public);
    let mut admin = Contract::new(Listener::Admin);
    let (p, a) = (srv.public, srv.admin);

    // The served parts are the documents checked against, naming where they are served.
    let r = support::get(p, "/openapi.json").await;
    let mut served = public.check("GET", "/openapi.json", &r);
    assert_eq!(served["servers"][0]["url"], format!("http://{p}"));
    served["servers"][0]["url"] = public.doc["servers"][0]["url"].clone();
    assert_eq!(served, public.doc);
    let r = call(a, "GET", "/openapi.json", true, None, b"").await;
    let mut served = admin.check("GET", "/openapi.json", &r);
    assert_eq!(served["servers"][0]["url"], format!("http://{a}"));
    served["servers"][0]["url"] = admin.doc["servers"][0]["url"].clone();
    assert_eq!(served, admin.doc);

    // A head over 16 KiB: hyper's own 431, with the documented body, on both listeners.
    for (c, addr) in [(&mut public, p), (&mut admin, a)] {
        let head = format!(
            "GET /openapi.json HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
            "x".repeat(20_000)
        );
        let r = parse(&support::raw(addr, head.as_bytes()).await);
        assert_eq!(
            c.check("GET", "/openapi.json", &r)["error"],
            "header_too_large"
        );
    }

    // Decisions: personalised, with explain, fallback, no model, by query.
    let json = Some("application/json");
    let body = json!({"customer_id": "C0000042", "channel": "web", "placement": "plans_page", "explain": true});
    let r = support::post_json(p, "/v1/decide", &body).await;
    let d = public.check("POST", "/v1/decide", &r);
    assert!(d["fallback"].is_null() && d["explain"].is_array(), "{d}");
    assert!(public.request_valid("POST", "/v1/decide", &body));
    let body = json!({"customer_id": "C9999999", "channel": "web", "placement": "plans_page"});
    let r = support::post_json(p, "/v1/decide", &body).await;
    assert_eq!(
        public.check("POST", "/v1/decide", &r)["fallback"]["reason"],
        "unknown_customer"
    );
    // An anonymous visitor, decided from the request's context.
    let body = json!({"visitor_id": "web-5c1d9e", "channel": "web", "placement": "home_hero",
                      "context": {"page": "deals", "utm_campaign": "spring_switch"}, "explain": true});
    let r = support::post_json(p, "/v1/decide", &body).await;
    assert_eq!(public.check("POST", "/v1/decide", &r)["anonymous"], true);
    assert!(public.request_valid("POST", "/v1/decide", &body));
    // Typos: an unknown placement and field, with explain; what generated clients send.
    let body = json!({"custmer_id": "C0000042", "channel": "web", "placement": "plan_page",
                      "explain": true, "limit": 2.0, "context": null});
    assert!(public.request_valid("POST", "/v1/decide", &body));
    let r = support::post_json(p, "/v1/decide", &body).await;
    let d = public.check("POST", "/v1/decide", &r);
    assert_eq!(d["fallback"]["reason"], "unknown_placement");
    assert_eq!(d["warnings"].as_array().map(Vec::len), Some(2), "{d}");
    let r = support::post_json(empty.public, "/v1/decide", &body).await;
    let d = public.check("POST", "/v1/decide", &r);
    assert_eq!(d["fallback"]["reason"], "no_model");
    assert!(d["model"].is_null());
    let q = "/v1/decide?customer_id=C0000042&channel=app&placement=app_home&limit=2&explain=True";
    let r = support::get(p, q).await;
    let d = public.check("GET", q, &r);
    assert_eq!(d["variant"], "champion");
    assert!(d["explain"]
        .as_array()
        .is_some_and(|e| e.iter().any(|v| v.get("excluded").is_some())));
    let headers = [("x-deadline-us", "1.5")];
    let r = support::request(p, "GET", q, &headers, b"").await;
    assert_eq!(public.check("GET", q, &r)["error"], "invalid_request");
    let r = support::get(p, "/v1/decide?channel=web").await;
    assert_eq!(
        public.check("GET", "/v1/decide", &r)["error"],
        "invalid_request"
    );
    for invalid in [
        json!({"channel": "web"}),
        json!({"channel": "web", "placement": "home_hero", "limit": 51}),
        json!({"channel": "", "placement": "home_hero"}),
    ] {
        let r = support::post_json(p, "/v1/decide", &invalid).await;
        assert_eq!(
            public.check("POST", "/v1/decide", &r)["error"],
            "invalid_request"
        );
        assert!(
            !public.request_valid("POST", "/v1/decide", &invalid),
            "{invalid}"
        );
    }
    body_faults(
        &mut public,
        p,
        ("POST", "/v1/decide"),
        false,
        (400, "malformed_json"),
    )
    .await;

    // Events.
    // A batch that fits the schema is taken event by event: the impression without its
    // offer is refused alone.
    let batch = json!({"events": [
        {"type": "impression", "customer_id": "C0000042", "offer_id": "device_upgrade_5g",
         "channel": "app", "decision_id": d["decision_id"], "ts": "2026-11-22T10:00:00Z"},
        {"type": "impression", "customer_id": "C0000042"}]});
    assert!(public.request_valid("POST", "/v1/events", &batch));
    let r = support::post_json(p, "/v1/events", &batch).await;
    let e = public.check("POST", "/v1/events", &r);
    assert_eq!(
        (e["accepted"].as_u64(), e["rejected"][0]["index"].as_u64()),
        (Some(1), Some(1))
    );
    // A visitor's event, and a login linking a visitor to a customer, fit the schema; an
    // event naming neither breaks it.
    let visitors = json!({"events": [
        {"type": "dismiss", "visitor_id": "web-5c1d9e", "offer_id": "switch_welcome"},
        {"type": "click", "visitor_id": "web-5c1d9e", "customer_id": "C0000042", "offer_id": "switch_welcome"}]});
    assert!(public.request_valid("POST", "/v1/events", &visitors));
    let r = support::post_json(p, "/v1/events", &visitors).await;
    assert_eq!(public.check("POST", "/v1/events", &r)["accepted"], 2);
    let nobody = json!({"events": [{"type": "dismiss", "offer_id": "switch_welcome"}]});
    assert!(!public.request_valid("POST", "/v1/events", &nobody));
    // Zoned times, unknown fields and offers: taken, with warnings.
    let zoned = json!({"events": [
        {"type": "click", "customer_id": "C0000042", "offer_id": "no_such_offer",
         "ts": "2026-11-22T11:00:00+01:00", "custmer": 1}]});
    assert!(public.request_valid("POST", "/v1/events", &zoned));
    let r = support::post_json(p, "/v1/events", &zoned).await;
    let e = public.check("POST", "/v1/events", &r);
    assert_eq!(e["accepted"], 1);
    assert_eq!(e["warnings"].as_array().map(Vec::len), Some(2), "{e}");
    // One that breaks it is refused whole.
    let naive = json!({"events": [{"type": "click", "customer_id": "C1", "offer_id": "o",
                                   "ts": "2026-11-22T10:00:00"}]});
    assert!(!public.request_valid("POST", "/v1/events", &naive));
    let r = support::post_json(p, "/v1/events", &naive).await;
    assert_eq!(
        public.check("POST", "/v1/events", &r)["error"],
        "invalid_request"
    );
    let bogus = json!({"events": [{"type": "bogus", "customer_id": "C0000042"}]});
    assert!(!public.request_valid("POST", "/v1/events", &bogus));
    let r = support::post_json(p, "/v1/events", &bogus).await;
    assert_eq!(
        public.check("POST", "/v1/events", &r)["error"],
        "invalid_request"
    );
    let r = call(p, "POST", "/v1/events", false, json, br#"{"evts": []}"#).await;
    assert_eq!(
        public.check("POST", "/v1/events", &r)["error"],
        "invalid_request"
    );
    let cross = [("sec-fetch-site", "cross-site")];
    let r = support::request(p, "POST", "/v1/events", &cross, br#"{"events": []}"#).await;
    assert_eq!(public.check("POST", "/v1/events", &r)["error"], "forbidden");
    body_faults(
        &mut public,
        p,
        ("POST", "/v1/events"),
        false,
        (400, "malformed_json"),
    )
    .await;

    // Probes, wrong methods, unknown routes (admin routes are unknown here).
    for (addr, status) in [(p, 200), (empty.public, 503)] {
        let r = support::get(addr, "/readyz").await;
        assert_eq!(r.status, status);
        public.check("GET", "/readyz", &r);
    }
    let r = support::get(p, "/healthz").await;
    assert_eq!(public.check("GET", "/healthz", &r)["status"], "ok");
    let wrong = [
        ("PUT", "/v1/decide"),
        ("GET", "/v1/events"),
        ("POST", "/healthz"),
        ("POST", "/openapi.json"),
        ("GET", "/nope"),
        ("GET", "/admin/models"),
        ("GET", "/metrics"),
    ];
    no_route(&mut public, p, false, &wrong).await;

    // Admin: every documented operation refuses a missing token.
    let ops: Vec<(String, String)> = admin.doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.to_ascii_uppercase(), path.clone()))
        })
        .collect();
    for (method, path) in &ops {
        let r = call(a, method, path, false, json, b"").await;
        assert_eq!(admin.check(method, path, &r)["error"], "unauthorized");
        // A change another site's page made, even with the token: refused before anything
        // runs (a GET changes nothing and is not).
        if method != "GET" {
            let auth = auth();
            let headers = [
                ("authorization", auth.as_str()),
                ("origin", "http://evil.example"),
            ];
            let r = support::request(a, method, path, &headers, b"").await;
            assert_eq!(admin.check(method, path, &r)["error"], "forbidden");
        }
    }

    // Models: view, activate, refuse, roll back, nothing to roll back to, no snapshot.
    let r = call(a, "GET", "/admin/models", true, None, b"").await;
    assert_eq!(
        admin.check("GET", "/admin/models", &r)["active"]["name"],
        "demo"
    );
    // The Kubernetes example's model: no scorer files, so it needs no models folder.
    let starter = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/k8s/models/model.json"),
    )
    .expect("the example model");
    let r = call(a, "PUT", "/admin/models", true, json, &starter).await;
    assert_eq!(admin.check("PUT", "/admin/models", &r)["name"], "starter");
    let bad = br#"{"name": "broken", "version": "1", "offers": [{"id": "a"}]}"#;
    assert!(!admin.request_valid(
        "PUT",
        "/admin/models",
        &serde_json::from_slice(bad).unwrap()
    ));
    assert!(admin.request_valid(
        "PUT",
        "/admin/models",
        &serde_json::from_slice(&starter).unwrap()
    ));
    let r = call(a, "PUT", "/admin/models", true, json, bad).await;
    let refusal = admin.check("PUT", "/admin/models", &r);
    assert_eq!(refusal["error"], "invalid_model");
    assert!(refusal["faults"].as_array().is_some_and(|f| f.len() > 1));
    body_faults(
        &mut admin,
        a,
        ("PUT", "/admin/models"),
        true,
        (422, "invalid_model"),
    )
    .await;
    // Shadow: put, refused (no share, a model that does not compile), bodies, deleted, and
    // no snapshot to compile against.
    let shadow_path = "/admin/models/shadow";
    let mut shadow: Value = serde_json::from_slice(&starter).unwrap();
    shadow["share"] = json!(0.5);
    let shadow = shadow.to_string();
    let r = call(a, "PUT", shadow_path, true, json, shadow.as_bytes()).await;
    assert_eq!(admin.check("PUT", shadow_path, &r)["share"], 0.5);
    let r = call(a, "PUT", shadow_path, true, json, &starter).await;
    assert_eq!(
        admin.check("PUT", shadow_path, &r)["error"],
        "invalid_request"
    );
    let mut broken: Value = serde_json::from_slice(bad).unwrap();
    broken["share"] = json!(0.5);
    let r = call(
        a,
        "PUT",
        shadow_path,
        true,
        json,
        broken.to_string().as_bytes(),
    )
    .await;
    assert_eq!(
        admin.check("PUT", shadow_path, &r)["error"],
        "invalid_model"
    );
    body_faults(
        &mut admin,
        a,
        ("PUT", shadow_path),
        true,
        (400, "invalid_request"),
    )
    .await;
    let r = call(a, "DELETE", shadow_path, true, None, b"").await;
    assert_eq!(admin.check("DELETE", shadow_path, &r)["ended"], true);
    let r = call(
        empty.admin,
        "PUT",
        shadow_path,
        false,
        json,
        shadow.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 409);
    assert_eq!(admin.check("PUT", shadow_path, &r)["error"], "no_features");
    let r = call(a, "POST", "/admin/models/rollback", true, None, b"").await;
    assert_eq!(
        admin.check("POST", "/admin/models/rollback", &r)["name"],
        "demo"
    );
    let r = call(a, "POST", "/admin/models/rollback", true, None, b"").await;
    assert_eq!(
        admin.check("POST", "/admin/models/rollback", &r)["error"],
        "no_previous_version"
    );
    let r = call(empty.admin, "PUT", "/admin/models", false, json, &starter).await;
    assert_eq!(
        admin.check("PUT", "/admin/models", &r)["error"],
        "no_features"
    );

    // Feature snapshots: wait, background, refused, no path configured.
    let csv = support::demo_dir().join("features.csv");
    let reload = "/admin/features/reload";
    let body = json!({"path": csv, "wait": true}).to_string();
    let r = call(a, "POST", reload, true, json, body.as_bytes()).await;
    assert_eq!(admin.check("POST", reload, &r)["customers"], 10_000);
    let body = json!({"path": csv}).to_string();
    let r = call(a, "POST", reload, true, json, body.as_bytes()).await;
    assert_eq!(admin.check("POST", reload, &r)["status"], "loading");
    let body = json!({"path": "/nonexistent/features.csv", "wait": true}).to_string();
    let r = call(a, "POST", reload, true, json, body.as_bytes()).await;
    assert_eq!(admin.check("POST", reload, &r)["error"], "invalid_features");
    // A column of numbers that `NA` turned to text: refused, with the snapshot's warning.
    let text = std::fs::read_to_string(&csv).unwrap();
    let arpu = text
        .lines()
        .next()
        .unwrap()
        .split(',')
        .position(|h| h == "arpu_30d");
    let arpu = arpu.expect("the demo snapshot has arpu_30d");
    let na = std::env::temp_dir().join(format!("nb-openapi-na-{}.csv", std::process::id()));
    std::fs::write(&na, support::with_cell(&text, 3, arpu, "NA")).unwrap();
    let body = json!({"path": na, "wait": true}).to_string();
    let r = call(a, "POST", reload, true, json, body.as_bytes()).await;
    std::fs::remove_file(&na).ok();
    assert_eq!(
        admin.check("POST", reload, &r)["warnings"][0]["path"],
        "columns.arpu_30d"
    );
    let r = call(
        empty.admin,
        "POST",
        reload,
        false,
        json,
        br#"{"wait": true}"#,
    )
    .await;
    assert_eq!(admin.check("POST", reload, &r)["error"], "invalid_request");
    body_faults(
        &mut admin,
        a,
        ("POST", reload),
        true,
        (400, "malformed_json"),
    )
    .await;

    // Stats, metrics, wrong methods, unknown routes.
    let r = call(a, "GET", "/admin/stats", true, None, b"").await;
    assert_eq!(
        admin.check("GET", "/admin/stats", &r)["events"]["accepted"],
        4,
        "the customer's two events and the visitors' two"
    );
    let r = call(a, "GET", "/admin/status", true, None, b"").await;
    assert!(admin
        .check("GET", "/admin/status", &r)
        .as_str()
        .is_some_and(|t| t.contains("<title>nextbest status</title>")));
    let r = call(a, "GET", "/admin/status.json", true, None, b"").await;
    assert!(admin.check("GET", "/admin/status.json", &r)["decisions"]["total"].is_u64());
    let r = call(a, "GET", "/metrics", true, None, b"").await;
    let text = admin.check("GET", "/metrics", &r);
    assert!(text
        .as_str()
        .is_some_and(|t| t.contains("nextbest_decisions_total")));
    let wrong = [
        ("DELETE", "/admin/models"),
        ("GET", "/admin/models/rollback"),
        ("POST", "/metrics"),
        ("PUT", "/openapi.json"),
        ("GET", "/v1/decide"),
        ("GET", "/admin/nope"),
    ];
    no_route(&mut admin, a, true, &wrong).await;

    public.assert_covered();
    admin.assert_covered();
    srv.stop().await;
    empty.stop().await;
}

/// Every property a client of either listener meets is described; the public part's (what
/// channel teams generate clients from) also carry an example. Generated types keep the words.
#[test]
fn every_property_is_described_and_public_ones_have_an_example() {
    fn walk(v: &Value, at: &str, examples: bool, missing: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::Object(props)) = m.get("properties") {
                    for (name, p) in props {
                        let here = format!("{at}.{name}");
                        let described = p.get("description").is_some();
                        // A bare `$ref` takes the words of what it refers to.
                        let is_ref =
                            p.get("$ref").is_some() && p.as_object().is_some_and(|o| o.len() == 1);
                        if !described && !is_ref {
                            missing.push(format!("{here}: no description"));
                        }
                        if examples
                            && !is_ref
                            && p.get("examples").is_none()
                            && p.get("const").is_none()
                        {
                            missing.push(format!("{here}: no example"));
                        }
                    }
                }
                for (k, x) in m {
                    walk(x, &format!("{at}/{k}"), examples, missing);
                }
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, at, examples, missing)),
            _ => {}
        }
    }
    let mut missing = Vec::new();
    let public = openapi::part(Listener::Public).unwrap();
    walk(&public["components"], "public", true, &mut missing);
    let admin = openapi::part(Listener::Admin).unwrap();
    walk(&admin["components"], "admin", false, &mut missing);
    for (listener, doc) in [("public", &public), ("admin", &admin)] {
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                for p in op["parameters"].as_array().into_iter().flatten() {
                    if p.get("$ref").is_none() && p.get("description").is_none() {
                        missing.push(format!(
                            "{listener} {method} {path}: parameter {} undescribed",
                            p["name"]
                        ));
                    }
                }
            }
        }
    }
    assert!(missing.is_empty(), "{missing:#?}");
}

#[test]
fn every_error_code_the_server_answers_is_in_the_documents_enum() {
    let doc: Value = serde_json::from_str(nextbest::server::openapi::SOURCE).unwrap();
    let listed: Vec<&str> = doc["components"]["schemas"]["ApiError"]["properties"]["error"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    // Every code is a string literal in one of the two places that name codes: the route
    // errors' `code()` arms and the head errors' table.
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/server");
    let mut codes = Vec::new();
    for file in ["error.rs", "head_errors.rs"] {
        let text = std::fs::read_to_string(src.join(file)).unwrap();
        for line in text.lines() {
            let t = line.trim();
            let code = t
                .strip_prefix(") => \"")
                .or_else(|| t.split_once("=> \"").map(|(_, r)| r))
                .or_else(|| t.strip_prefix('"').filter(|_| file == "head_errors.rs"))
                .and_then(|r| r.split_once('"').map(|(c, _)| c))
                .filter(|c| {
                    !c.is_empty() && c.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                });
            if let Some(c) = code {
                codes.push(c.to_owned());
            }
        }
    }
    assert!(codes.len() >= 15, "the scan found too few codes: {codes:?}");
    let missing: Vec<&String> = codes
        .iter()
        .filter(|c| !listed.contains(&c.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "answered but not in ApiError.error's enum: {missing:?}"
    );
}

/// The document's example of a decide warning is the server's own words, and every fallback
/// reason the server gives is among those it lists (others are open to later releases).
#[tokio::test]
async fn the_documents_examples_and_reasons_are_the_servers() {
    let doc: Value = serde_json::from_str(nextbest::server::openapi::SOURCE).unwrap();
    let schemas = &doc["components"]["schemas"];
    let example = &schemas["Decision"]["properties"]["warnings"]["examples"][0][0];
    let srv = support::start_demo().await;
    let d = support::decide(
        srv.public,
        serde_json::json!({"custmer_id": "C0000042", "channel": "web", "placement": "plans_page"}),
    )
    .await;
    assert_eq!(&d["warnings"][0], example, "{d}");
    srv.stop().await;
    let listed = &schemas["FallbackInfo"]["properties"]["reason"]["anyOf"][0]["enum"];
    for r in nextbest::engine::FallbackReason::ALL {
        assert!(
            listed
                .as_array()
                .unwrap()
                .contains(&Value::from(r.as_str())),
            "{} is not listed in {listed}",
            r.as_str()
        );
    }
}
