//! The admin listener's routes: the model registry (view, upload, rollback), feature reloads,
//! the funnel and event figures, metrics. Never on the public listener. Loads run on blocking
//! threads, never on a runtime worker, so decisions keep flowing while a model compiles; the
//! registry logs and counts every outcome itself.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST, ORIGIN};
use hyper::{Method, Request, Response, StatusCode};

use super::body::read_json_body;
use super::error::{close_unread, declares_body, json_response, ApiError};
use super::AppState;
use crate::contact::adaptive;
use crate::contact::funnel::Stage;
use crate::features::memory::SnapshotMemory;
use crate::fleet::models::Shared;
use crate::metrics::prom::Exposition;
use crate::metrics::Listener;
use crate::registry::{Registry, RegistryError};

/// Routes one admin request, after the bearer token check when a token is set.
pub async fn handle(state: &AppState, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let counted = Listener::Admin.route(req.uri().path());
    let body_declared = declares_body(&req);
    let mut resp = route(state, req)
        .await
        .unwrap_or_else(ApiError::into_response);
    close_unread(body_declared, &mut resp);
    state
        .metrics
        .response(Listener::Admin, counted, resp.status().as_u16());
    resp
}

/// The token of an `Authorization: Bearer <token>` header; the scheme's name is
/// case-insensitive (RFC 9110), so `bearer` is taken too.
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, token) = value.split_at_checked(7)?;
    scheme.eq_ignore_ascii_case(b"Bearer ").then_some(token)
}

fn authorised(state: &AppState, req: &Request<Incoming>) -> bool {
    let Some(token) = &state.config.admin_token else {
        return true;
    };
    let presented = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| bearer(v.as_bytes()));
    match presented {
        Some(p) => token.matches(p),
        // A browser cannot send a header when opening the status page: there (only), the
        // token may come as `?token=`; the page passes it on as a header to what it fetches.
        None if req.uri().path() == "/admin/status" => {
            token.matches(super::status::query_token(req.uri().query()).as_bytes())
        }
        None => token.matches(b""),
    }
}

/// Refuses what a browser sends on a web page's behalf. A change (any method but GET and HEAD)
/// that another site's page made: its `Origin` or `Sec-Fetch-Site` says so (a form or a
/// `no-cors` fetch needs no preflight); following a link to the status page changes nothing
/// and stays open. And, while the listener answers on loopback without a token, any request
/// that names it by a domain name: a page whose name was made to resolve to 127.0.0.1 (DNS
/// rebinding) could otherwise read and change everything; an IP address or a `localhost` name
/// cannot be rebound. Tools (curl, Prometheus, the status page's own fetches) send neither.
fn from_a_page_elsewhere(state: &AppState, req: &Request<Incoming>) -> Option<ApiError> {
    let headers = req.headers();
    let shown = |v: &HeaderValue| -> String {
        String::from_utf8_lossy(v.as_bytes())
            .chars()
            .take(100)
            .collect()
    };
    let host = headers.get(HOST);
    // Loopback without a token is the default, and what an operator's own machine runs;
    // `--admin-insecure` beyond loopback chose to trust its network (Prometheus may scrape it
    // by a service name), and a token makes the name irrelevant.
    let open_loopback =
        state.config.admin_token.is_none() && state.config.admin_listen.ip().is_loopback();
    if let Some(h) = host.filter(|h| open_loopback && !rebind_proof(h.as_bytes())) {
        return Some(ApiError::Forbidden(format!(
            "Host: {}: without a token the admin listener on loopback answers requests that \
             name it by an IP address or a localhost name, so a web page whose name resolves \
             here cannot use it (set a token to reach it by another name)",
            shown(h)
        )));
    }
    if matches!(*req.method(), Method::GET | Method::HEAD) {
        return None;
    }
    if let Some(site) = headers.get("sec-fetch-site") {
        if matches!(site.as_bytes(), b"cross-site" | b"same-site") {
            return Some(ApiError::Forbidden(format!(
                "Sec-Fetch-Site: {}: another site's page made this request; the admin API \
                 takes changes from its own status page and operators' tools",
                shown(site)
            )));
        }
    }
    let origin = headers.get(ORIGIN)?;
    let own = host.is_some_and(|h| {
        let o = origin.as_bytes();
        [&b"http://"[..], b"https://"]
            .iter()
            .any(|scheme| o.strip_prefix(*scheme) == Some(h.as_bytes()))
    });
    (!own).then(|| {
        ApiError::Forbidden(format!(
            "Origin: {}: a page of another origin made this request; the admin API takes \
             changes from its own status page and operators' tools",
            shown(origin)
        ))
    })
}

/// Whether a `Host` header names this machine in a way no DNS answer can redirect: an IP
/// address (`127.0.0.1`, `[::1]`, `10.0.0.7`) or `localhost` (or a name under it), each with
/// or without a port.
fn rebind_proof(host: &[u8]) -> bool {
    let Ok(host) = std::str::from_utf8(host) else {
        return false;
    };
    let port_ok = |p: &str| {
        p.is_empty()
            || p.strip_prefix(':')
                .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
    };
    if let Some(v6) = host.strip_prefix('[') {
        let Some((ip, rest)) = v6.split_once(']') else {
            return false;
        };
        return port_ok(rest) && ip.parse::<std::net::Ipv6Addr>().is_ok();
    }
    let (name, rest) = match host.rfind(':') {
        Some(at) => host.split_at(at),
        None => (host, ""),
    };
    if !port_ok(rest) {
        return false;
    }
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name.parse::<std::net::Ipv4Addr>().is_ok()
}

async fn route(
    state: &AppState,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    if let Some(refused) = from_a_page_elsewhere(state, &req) {
        return Err(refused);
    }
    if !authorised(state, &req) {
        return Err(ApiError::Unauthorized);
    }
    let not_allowed = |m: &Method, allow| ApiError::MethodNotAllowed {
        method: m.to_string(),
        allow,
    };
    match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/admin/models") => Ok(models(state)),
        (&Method::GET | &Method::HEAD, "/admin/stats") => Ok(stats(state)),
        (&Method::GET | &Method::HEAD, "/admin/status") => Ok(super::status::page()),
        (&Method::GET | &Method::HEAD, "/admin/status.json") => Ok(super::status::json(state)),
        (&Method::PUT, "/admin/models") => put_model(state, req).await,
        (&Method::PUT, "/admin/models/shadow") => put_shadow(state, req).await,
        (&Method::DELETE, "/admin/models/shadow") => {
            let ended = state.shadow.delete()?;
            ok_json(&serde_json::json!({ "ended": ended }))
        }
        (&Method::POST, "/admin/models/rollback") => {
            let registry = state.registry.clone();
            let record = blocking(move || registry.rollback()).await?;
            if let (Some(fleet), Some(set)) = (&state.fleet, &state.registry.load().models) {
                fleet.share(Shared::Model {
                    change: "rollback",
                    document: set.champion.document.clone(),
                    checksum: record.checksum.clone(),
                });
            }
            let mut answer = serde_json::to_value(&record).unwrap_or_default();
            if let Some(delay) = state.fleet.as_ref().and_then(|f| f.sharing_delay()) {
                answer["fleet"] = delay.into();
            }
            ok_json(&answer)
        }
        (&Method::POST, "/admin/features/reload") => reload_features(state, req).await,
        (&Method::GET | &Method::HEAD, "/metrics") => {
            let mut out = Exposition::new();
            out.collect(&state.metrics)
                .collect(&state.listener_stats())
                .collect(&state.registry.loads)
                .collect(&state.typos)
                .collect(&*state.contacts)
                .collect(&crate::metrics::process::Process);
            state
                .registry
                .serving()
                .collect_at(&mut out, state.contacts.now_ms());
            if let Some(f) = &state.registry.load().features {
                out.collect(&SnapshotMemory::of(f));
            }
            if let Some(f) = &state.fleet {
                out.collect(&**f);
            }
            if let Some(log) = &state.decision_log {
                out.collect(&**log);
            }
            let mut resp = Response::new(Full::new(Bytes::from(out.finish())));
            resp.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            Ok(resp)
        }
        (m, "/admin/models") => Err(not_allowed(m, "GET, HEAD, PUT")),
        (m, "/admin/models/shadow") => Err(not_allowed(m, "PUT, DELETE")),
        (m, "/metrics" | "/admin/stats" | "/admin/status" | "/admin/status.json") => {
            Err(not_allowed(m, "GET, HEAD"))
        }
        (m, "/admin/models/rollback" | "/admin/features/reload") => Err(not_allowed(m, "POST")),
        (m, "/openapi.json") => {
            let url = state.server_url(true, req.headers().get(hyper::header::HOST));
            super::openapi::answer(m, super::openapi::Listener::Admin, &url)
        }
        (_, path) => Err(ApiError::no_route(path, req.uri())),
    }
}

/// Runs a registry change on a blocking thread.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RegistryError> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(ApiError::Refused),
        Err(e) => Err(ApiError::Internal(format!("the load task failed: {e}"))),
    }
}

fn ok_json(v: &impl serde::Serialize) -> Result<Response<Full<Bytes>>, ApiError> {
    let body = serde_json::to_vec(v).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(json_response(StatusCode::OK, body.into()))
}

async fn put_model(
    state: &AppState,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let limit = state.registry.config().limits.max_bytes;
    let body = Vec::from(read_json_body(req, limit, state.config.body_timeout * 10, None).await?);
    let registry = state.registry.clone();
    let base = registry.models_folder();
    let document = state.fleet.as_ref().map(|_| body.clone());
    let record = blocking(move || registry.install_document(body, base, "admin".into())).await?;
    if let (Some(fleet), Some(document)) = (&state.fleet, document) {
        fleet.share(Shared::Model {
            change: "admin",
            document,
            checksum: record.checksum.clone(),
        });
    }
    let mut answer = serde_json::json!({
        "name": record.name, "version": record.version, "checksum": record.checksum,
        "warnings": record.warnings,
    });
    if let Some(delay) = state.fleet.as_ref().and_then(|f| f.sharing_delay()) {
        answer["fleet"] = delay.into();
    }
    ok_json(&answer)
}

/// `PUT /admin/models/shadow`: a model with a `share`, compiled against the serving snapshot
/// on a blocking thread.
async fn put_shadow(
    state: &AppState,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let limits = state.registry.config().limits.clone();
    let body = read_json_body(req, limits.max_bytes, state.config.body_timeout * 10, None).await?;
    let features = state
        .registry
        .load()
        .features
        .clone()
        .ok_or(super::shadow::ShadowError::NoSnapshot)?;
    let shadow = state.shadow.clone();
    let base = state.registry.models_folder();
    let put = tokio::task::spawn_blocking(move || shadow.put(&body, features, base, &limits)).await;
    match put {
        Ok(r) => ok_json(&r?),
        Err(e) => Err(ApiError::Internal(format!(
            "the shadow load task failed: {e}"
        ))),
    }
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ReloadBody {
    #[serde(default)]
    path: Option<PathBuf>,
    #[serde(default)]
    wait: Option<bool>,
}

async fn reload_features(
    state: &AppState,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let body = read_json_body(req, 64 * 1024, state.config.body_timeout, None).await?;
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    let args: ReloadBody = if first.is_none() {
        ReloadBody::default()
    } else if first != Some(&b'{') {
        // serde's derived struct would also read an array, positionally.
        return Err(ApiError::InvalidRequest(
            "expected a JSON object with `path` and `wait`, or no body".into(),
        ));
    } else {
        let mut de = serde_json::Deserializer::from_slice(&body);
        let args = serde_path_to_error::deserialize(&mut de)
            .map_err(|e| ApiError::from_json(&e.path().to_string(), e.inner()))?;
        de.end().map_err(|e| ApiError::from_json("", &e))?;
        args
    };
    if args.path.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
        return Err(ApiError::InvalidRequest(
            "path: must not be empty; name a snapshot file (CSV, .nbf or .parquet), or leave `path` out to reload the configured one".into(),
        ));
    }
    let registry: Arc<Registry> = state.registry.clone();
    let fleet = state.fleet.clone();
    // Once it serves here, every replica loads the same file.
    let task = async move {
        let info = blocking(move || registry.reload_features(args.path)).await?;
        if let Some(fleet) = fleet {
            fleet.share(Shared::Features {
                path: PathBuf::from(&info.source),
            });
        }
        Ok::<_, ApiError>(info)
    };
    if args.wait == Some(true) {
        return ok_json(&task.await?);
    }
    // The registry logs and counts the outcome; nobody waits for it here.
    tokio::spawn(task);
    Ok(json_response(
        StatusCode::ACCEPTED,
        Bytes::from_static(b"{\"status\":\"loading\"}"),
    ))
}

fn models(state: &AppState) -> Response<Full<Bytes>> {
    let history = state.registry.history();
    // The newest record is the active model only while a model serves: history outlives a
    // start that loaded none.
    let serving = state.registry.load().models.is_some();
    let active = history.first().filter(|_| serving);
    let body = serde_json::json!({
        "active": active,
        "challenger": active.and_then(|a| a.challenger.clone()),
        "history": history,
        "features": super::status::features_summary(state),
        "shadow": state.shadow.summary(),
    });
    json_response(StatusCode::OK, body.to_string().into())
}

/// `GET /admin/stats`: the funnel with rates, the challenger's lift, event counts, contact
/// state and log figures.
fn stats(state: &AppState) -> Response<Full<Bytes>> {
    let funnel = state.contacts.funnel();
    let mut unattributed = serde_json::Map::new();
    for (s, n) in Stage::ALL.iter().zip(funnel.unattributed()).skip(1) {
        unattributed.insert(s.as_str().into(), n.into());
    }
    let mut body = state.contacts.stats_json();
    body["funnel"] = funnel.rows().into();
    body["unattributed"] = unattributed.into();
    if let Some(f) = &state.fleet {
        body["replication"] = serde_json::to_value(f.stats()).unwrap_or_default();
    }
    body["lift"] = funnel.lift();
    let snap = state.registry.load();
    if let Some(f) = &snap.features {
        body["features"] = serde_json::json!({
            "source": f.source(),
            "customers": f.len(),
            "columns": super::status::columns_json(f),
            "memory": SnapshotMemory::of(f),
            "checksum": super::status::snapshot_checksum(&snap),
        });
    }
    let models = state.registry.load().models.clone();
    let serving = models.iter().flat_map(|set| set.models());
    let serving = serving.map(|(m, v, key)| (&m.compiled, v.as_str(), key));
    body["adaptive"] = adaptive::stats_json(serving, state.contacts.adaptive());
    body["shadow"] = state.shadow.stats_json();
    if let Some(log) = &state.decision_log {
        body["decision_log"] = serde_json::to_value(log.skips()).unwrap_or_default();
    }
    json_response(StatusCode::OK, body.to_string().into())
}

#[cfg(test)]
mod tests {
    #[test]
    fn hosts_that_no_dns_answer_can_redirect() {
        for host in [
            "localhost",
            "LOCALHOST:9091",
            "app.localhost:80",
            "127.0.0.1",
            "127.0.0.1:9091",
            "10.0.0.7:9091",
            "[::1]",
            "[::1]:9091",
            "[fe80::1]:1",
        ] {
            assert!(super::rebind_proof(host.as_bytes()), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:9091",
            "127.0.0.1.nip.io:9091",
            "localhost.evil.example",
            "[::1]garbage",
            "[::1]:",
            "[::1]:90x",
            "127.0.0.1:",
            "::1",
            "",
        ] {
            assert!(!super::rebind_proof(host.as_bytes()), "{host}");
        }
    }
}
