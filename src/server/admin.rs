//! The admin listener's routes: the model registry (view, upload, rollback), feature reloads,
//! metrics. Never on the public listener. Loads run on blocking threads, never on a runtime
//! worker, so decisions keep flowing while a model compiles.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};

use super::error::{json_response, ApiError};
use super::public::read_json_body;
use super::AppState;
use crate::registry::{Registry, RegistryError};

/// Routes one admin request, after the bearer token check when a token is set.
pub async fn handle(state: &AppState, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let resp = route(state, req)
        .await
        .unwrap_or_else(ApiError::into_response);
    state.metrics.status(resp.status().as_u16());
    resp
}

fn authorised(state: &AppState, req: &Request<Incoming>) -> bool {
    let Some(token) = &state.config.admin_token else {
        return true;
    };
    let presented = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        .unwrap_or(b"");
    token.matches(presented)
}

async fn route(
    state: &AppState,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    if !authorised(state, &req) {
        return Err(ApiError::Unauthorized);
    }
    let not_allowed = |m: &Method, allow| ApiError::MethodNotAllowed {
        method: m.to_string(),
        allow,
    };
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/admin/models") => Ok(models(state)),
        // contact (issue 5): the funnel and event figures
        (&Method::GET, "/admin/stats") => Ok(super::events::stats(state)),
        (&Method::PUT, "/admin/models") => put_model(state, req).await,
        (&Method::POST, "/admin/models/rollback") => {
            let registry = state.registry.clone();
            let record = blocking(move || registry.rollback()).await?;
            tracing::info!(name = %record.name, version = %record.version, "rolled back");
            ok_json(&record)
        }
        (&Method::POST, "/admin/features/reload") => reload_features(state, req).await,
        (&Method::GET, "/metrics") => {
            let gauges = format!(
                "# HELP nextbest_inflight_decisions Decide requests in flight.\n\
                 # TYPE nextbest_inflight_decisions gauge\n\
                 nextbest_inflight_decisions {}\n\
                 # HELP nextbest_max_inflight_decisions The admission bound.\n\
                 # TYPE nextbest_max_inflight_decisions gauge\n\
                 nextbest_max_inflight_decisions {}\n\
                 # HELP nextbest_open_connections Open connections, both listeners.\n\
                 # TYPE nextbest_open_connections gauge\n\
                 nextbest_open_connections {}\n",
                state.admission.inflight(),
                state.admission.max(),
                state.connections.load(std::sync::atomic::Ordering::Relaxed),
            );
            let mut text = state.registry.loads.render() + &gauges;
            state.contacts.render(&mut text);
            let text = state.metrics.render(&text);
            let mut resp = Response::new(Full::new(Bytes::from(text)));
            resp.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            Ok(resp)
        }
        (m, "/admin/models") => Err(not_allowed(m, "GET, PUT")),
        (m, "/metrics" | "/admin/stats") => Err(not_allowed(m, "GET")),
        (m, "/admin/models/rollback" | "/admin/features/reload") => Err(not_allowed(m, "POST")),
        (m, "/openapi.json") => super::openapi::answer(m, super::openapi::Listener::Admin),
        (_, path) => Err(ApiError::NotFound(path.to_owned())),
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

/// The folder scorer and challenger files of an uploaded model resolve against.
fn models_folder(registry: &Registry) -> Option<PathBuf> {
    let p = registry.config().models_path.as_ref()?;
    if p.is_dir() {
        Some(p.clone())
    } else {
        p.parent().map(Path::to_owned)
    }
}

async fn put_model(
    state: &AppState,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let limit = state.registry.config().limits.max_bytes;
    let body = Vec::from(read_json_body(req, limit, state.config.body_timeout * 10).await?);
    let registry = state.registry.clone();
    let base = models_folder(&registry);
    let result = blocking(move || registry.install_document(body, base, "admin".into())).await;
    match result {
        Ok(record) => {
            tracing::info!(name = %record.name, version = %record.version, source = "admin", "model activated");
            ok_json(
                &serde_json::json!({"name": record.name, "version": record.version, "checksum": record.checksum}),
            )
        }
        Err(e) => {
            log_refusal(&e, "admin");
            Err(e)
        }
    }
}

/// Logs every fault of a refused load.
pub fn log_refusal(e: &ApiError, source: &str) {
    if let ApiError::Refused(r) = e {
        for f in r.faults() {
            tracing::warn!(source, fault = %f, "load refused; the serving model is unchanged");
        }
    }
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ReloadBody {
    #[serde(default)]
    path: Option<PathBuf>,
    #[serde(default)]
    wait: bool,
}

async fn reload_features(
    state: &AppState,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let mut body = Vec::from(read_json_body(req, 64 * 1024, state.config.body_timeout).await?);
    let args: ReloadBody = if body.iter().all(u8::is_ascii_whitespace) {
        ReloadBody::default()
    } else {
        simd_json::serde::from_slice(&mut body)
            .map_err(|e| ApiError::InvalidRequest(format!("{e}")))?
    };
    let registry: Arc<Registry> = state.registry.clone();
    let task = tokio::task::spawn_blocking(move || registry.reload_features(args.path));
    if args.wait {
        let info = match task.await {
            Ok(r) => r.map_err(ApiError::Refused),
            Err(e) => Err(ApiError::Internal(format!("the load task failed: {e}"))),
        };
        if let Err(e) = &info {
            log_refusal(e, "features");
        }
        return ok_json(&info?);
    }
    tokio::spawn(async move {
        match task.await {
            Ok(Ok(info)) => {
                tracing::info!(source = %info.source, customers = info.customers, bytes = info.bytes, load_ms = info.load_ms, "feature snapshot swapped")
            }
            Ok(Err(e)) => log_refusal(&ApiError::Refused(e), "features"),
            Err(e) => tracing::error!(error = %e, "feature load task failed"),
        }
    });
    Ok(json_response(
        StatusCode::ACCEPTED,
        Bytes::from_static(b"{\"status\":\"loading\"}"),
    ))
}

fn models(state: &AppState) -> Response<Full<Bytes>> {
    let snap = state.registry.load();
    let history = state.registry.history();
    let features = snap.features.as_ref().map(|f| {
        serde_json::json!({
            "source": f.source(),
            "customers": f.len(),
            "features": f.columns().len(),
            "bytes": f.bytes_held(),
        })
    });
    let active = history.first();
    let body = serde_json::json!({
        "active": active,
        "challenger": active.and_then(|a| a.challenger.clone()),
        "history": history,
        "features": features,
    });
    json_response(StatusCode::OK, body.to_string().into())
}
