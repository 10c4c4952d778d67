//! `GET /openapi.json`: each listener's part of the OpenAPI 3.1 contract.
//!
//! The contract is one hand-written document, `openapi/nextbest.json`, built into the binary.
//! Each path item there says which listener answers it (`x-nextbest-listener`: `public`,
//! `admin` or `both`) and `x-nextbest-parts` holds what differs per part (title, server, the
//! admin token's security requirement, and under `x-every-operation` the responses every
//! operation of the part may give, such as the admin listener's 401). This module splits the
//! document once, on first use, into two self-contained documents: the listener's paths and
//! only the components they reference, so a client generated from the public part never sees an
//! admin type.
//!
//! It owns the split and the answer; it must not describe routes itself (the document does) or
//! touch request state. `tests/openapi.rs` validates real answers of every route against the
//! document, so the document cannot drift from the code.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use std::net::SocketAddr;

use bytes::Bytes;
use hyper::header::HeaderValue;
use hyper::{Method, Response, StatusCode};
use serde_json::{Map, Value};

use super::error::{json_response, ApiError};
use http_body_util::Full;

/// The whole contract, both listeners.
pub const SOURCE: &str = include_str!("../../openapi/nextbest.json");

/// The listener a part describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    /// Channels: decisions, events, probes.
    Public,
    /// Operators: models, features, stats, metrics.
    Admin,
}

impl Listener {
    fn as_str(self) -> &'static str {
        match self {
            Listener::Public => "public",
            Listener::Admin => "admin",
        }
    }
}

/// The document cannot be split (a fault in `openapi/nextbest.json`, caught by the unit tests).
#[derive(Debug, thiserror::Error)]
pub enum SplitError {
    /// The source is not JSON.
    #[error("openapi/nextbest.json is not JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A part of the document is missing or of the wrong shape.
    #[error("openapi/nextbest.json: {0}")]
    Shape(&'static str),
}

/// One listener's part of the contract as a document of its own.
pub fn part(listener: Listener) -> Result<Value, SplitError> {
    let mut doc: Map<String, Value> = serde_json::from_str(SOURCE)?;
    let parts = doc
        .remove("x-nextbest-parts")
        .ok_or(SplitError::Shape("no x-nextbest-parts"))?;
    let Some(Value::Object(mut overrides)) = parts.get(listener.as_str()).cloned() else {
        return Err(SplitError::Shape("x-nextbest-parts lacks a listener"));
    };
    let every = match overrides.remove("x-every-operation") {
        Some(Value::Object(every)) => every
            .get("responses")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default(),
        _ => Map::new(),
    };
    // The model document's schemas come from the model parser's own field lists.
    if let Some(Value::Object(schemas)) =
        doc.get_mut("components").and_then(|c| c.get_mut("schemas"))
    {
        schemas.extend(crate::model::schema::schemas());
    }
    let Some(Value::Object(paths)) = doc.remove("paths") else {
        return Err(SplitError::Shape("no paths"));
    };
    let mut mine: Map<String, Value> = paths
        .into_iter()
        .filter_map(|(path, mut item)| {
            let side = item.as_object_mut()?.remove("x-nextbest-listener")?;
            (side == listener.as_str() || side == "both").then_some((path, item))
        })
        .collect();
    for item in mine.values_mut().filter_map(Value::as_object_mut) {
        for operation in item.values_mut() {
            if let Some(Value::Object(responses)) = operation.get_mut("responses") {
                responses.extend(every.clone());
            }
        }
    }
    doc.insert("paths".into(), Value::Object(mine));
    for (key, value) in overrides {
        // `info` is merged field by field; anything else (servers, security) is set whole.
        if let (Value::Object(fields), Some(Value::Object(info))) = (&value, doc.get_mut(&key)) {
            info.extend(fields.clone());
        } else {
            doc.insert(key, value);
        }
    }
    if let Some(Value::Object(info)) = doc.get_mut("info") {
        info.insert("version".into(), env!("CARGO_PKG_VERSION").into());
    }
    prune_components(&mut doc);
    Ok(Value::Object(doc))
}

/// Responses no operation names but every listener gives (an unknown path, a wrong method);
/// `info.description` points at them, so every part keeps them.
pub const ROUTE_WIDE: [&str; 2] = [
    "#/components/responses/NotFound",
    "#/components/responses/MethodNotAllowed",
];

/// Drops the components nothing in the document refers to (transitively), and the security
/// schemes when the part requires none.
fn prune_components(doc: &mut Map<String, Value>) {
    let mut components = match doc.remove("components") {
        Some(Value::Object(c)) => c,
        _ => return,
    };
    let mut wanted = BTreeSet::new();
    let mut frontier: BTreeSet<String> = ROUTE_WIDE.iter().map(|r| r.to_string()).collect();
    refs(&Value::Object(doc.clone()), &mut frontier);
    while let Some(r) = frontier.pop_first() {
        if !wanted.insert(r.clone()) {
            continue;
        }
        if let Some(target) = resolve(&components, &r) {
            refs(target, &mut frontier);
        }
    }
    let secured = doc.contains_key("security");
    components.retain(|kind, entries| {
        if kind == "securitySchemes" {
            return secured;
        }
        if let Value::Object(entries) = entries {
            entries.retain(|name, _| wanted.contains(&format!("#/components/{kind}/{name}")));
            !entries.is_empty()
        } else {
            true
        }
    });
    doc.insert("components".into(), Value::Object(components));
}

/// Every local `$ref` below `v`.
fn refs(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match x {
                    Value::String(r) if k == "$ref" && r.starts_with("#/components/") => {
                        out.insert(r.clone());
                    }
                    _ => refs(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
        _ => {}
    }
}

/// The component a `#/components/<kind>/<name>` reference names.
fn resolve<'a>(components: &'a Map<String, Value>, r: &str) -> Option<&'a Value> {
    let (kind, name) = r.strip_prefix("#/components/")?.split_once('/')?;
    components.get(kind)?.get(name)
}

/// Both parts, split once.
static PARTS: LazyLock<Result<[Value; 2], String>> = LazyLock::new(|| {
    let doc = |l| part(l).map_err(|e| e.to_string());
    Ok([doc(Listener::Public)?, doc(Listener::Admin)?])
});

/// The URL a client reaches a listener at: its bound address, or for one bound to every
/// interface (`0.0.0.0`, `[::]`) the `Host` the client used (else `localhost` and the port).
pub fn server_url(bound: SocketAddr, host: Option<&HeaderValue>) -> String {
    if !bound.ip().is_unspecified() {
        return format!("http://{bound}");
    }
    let plausible = |h: &&str| {
        !h.is_empty()
            && h.len() <= 255
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b))
    };
    match host.and_then(|h| h.to_str().ok()).filter(plausible) {
        Some(h) => format!("http://{h}"),
        None => format!("http://localhost:{}", bound.port()),
    }
}

/// Answers any method on `/openapi.json` for a listener: the part on GET, its `servers` naming
/// `url` (see [`server_url`]), else 405.
pub fn answer(
    method: &Method,
    listener: Listener,
    url: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
    if method != Method::GET && method != Method::HEAD {
        return Err(ApiError::MethodNotAllowed {
            method: method.to_string(),
            allow: "GET, HEAD",
        });
    }
    match &*PARTS {
        Ok(parts) => {
            let mut doc = parts[listener as usize].clone();
            if let Some(server) = doc.pointer_mut("/servers/0/url") {
                *server = Value::String(url.to_owned());
            }
            Ok(json_response(StatusCode::OK, doc.to_string().into()))
        }
        Err(e) => Err(ApiError::Internal(e.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(l: Listener) -> Vec<String> {
        let doc = part(l).unwrap();
        doc["paths"].as_object().unwrap().keys().cloned().collect()
    }

    #[test]
    fn each_listener_gets_its_own_routes() {
        let public = paths(Listener::Public);
        let admin = paths(Listener::Admin);
        assert!(public.contains(&"/v1/decide".into()));
        assert!(public.contains(&"/openapi.json".into()));
        assert!(admin.contains(&"/admin/models".into()));
        assert!(admin.contains(&"/metrics".into()));
        assert!(admin.contains(&"/openapi.json".into()));
        assert!(public
            .iter()
            .all(|p| !p.starts_with("/admin") && p != "/metrics"));
        assert!(admin.iter().all(|p| !p.starts_with("/v1/")));
    }

    #[test]
    fn parts_are_self_contained_and_carry_no_extensions() {
        for l in [Listener::Public, Listener::Admin] {
            let doc = part(l).unwrap();
            let text = doc.to_string();
            assert!(!text.contains("x-nextbest-"), "{l:?}");
            assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
            let mut all = BTreeSet::new();
            refs(&doc, &mut all);
            let components = doc["components"].as_object().unwrap();
            for r in all {
                assert!(resolve(components, &r).is_some(), "{l:?}: {r} dangles");
            }
        }
        let public = part(Listener::Public).unwrap();
        assert!(public.get("security").is_none());
        assert!(public["components"].get("securitySchemes").is_none());
        assert!(public["components"]["schemas"].get("ModelRecord").is_none());
        assert!(public["components"]["responses"].get("NotFound").is_some());
        let admin = part(Listener::Admin).unwrap();
        assert_eq!(
            admin["paths"]["/metrics"]["get"]["responses"]["401"]["$ref"],
            "#/components/responses/Unauthorized"
        );
        assert!(public["paths"]["/openapi.json"]["get"]["responses"]
            .get("401")
            .is_none());
        assert!(admin["components"]["securitySchemes"]
            .get("adminToken")
            .is_some());
        assert!(admin["components"]["schemas"].get("Decision").is_none());
    }

    #[test]
    fn answers_get_only() {
        let ok = answer(&Method::GET, Listener::Public, "http://127.0.0.1:1").unwrap();
        assert_eq!(ok.status(), StatusCode::OK);
        let refused = answer(&Method::POST, Listener::Admin, "http://127.0.0.1:1").unwrap_err();
        assert_eq!(refused.status(), StatusCode::METHOD_NOT_ALLOWED);
    }

    #[test]
    fn servers_name_where_the_listener_is_reached() {
        let host = HeaderValue::from_static("sidecar.internal:8080");
        let bound: SocketAddr = "10.1.2.3:8080".parse().unwrap();
        assert_eq!(server_url(bound, Some(&host)), "http://10.1.2.3:8080");
        let any: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert_eq!(server_url(any, Some(&host)), "http://sidecar.internal:8080");
        assert_eq!(server_url(any, None), "http://localhost:8080");
        let odd = HeaderValue::from_static("a b");
        assert_eq!(server_url(any, Some(&odd)), "http://localhost:8080");
        let v6: SocketAddr = "[::1]:9091".parse().unwrap();
        assert_eq!(server_url(v6, None), "http://[::1]:9091");
    }

    #[test]
    fn the_model_document_schema_is_the_parsers() {
        let admin = part(Listener::Admin).unwrap();
        let put = &admin["paths"]["/admin/models"]["put"]["requestBody"]["content"]
            ["application/json"]["schema"]["$ref"];
        assert_eq!(put, "#/components/schemas/ModelDocument");
        let doc = &admin["components"]["schemas"]["ModelDocument"];
        assert_eq!(doc, &crate::model::schema::schemas()["ModelDocument"]);
        assert!(!doc.to_string().contains("x-nextbest-generated"));
        let public = part(Listener::Public).unwrap();
        assert!(public["components"]["schemas"]
            .get("ModelDocument")
            .is_none());
    }
}
