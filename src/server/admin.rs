//! The admin listener's routes: model registry views, metrics. Never on the public listener.

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};

use super::error::{json_response, ApiError};
use super::AppState;

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
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/admin/models") => Ok(models(state)),
        // contact (issue 5): the funnel and event figures
        (&Method::GET, "/admin/stats") => Ok(super::events::stats(state)),
        (&Method::GET, "/metrics") => {
            let mut contact = String::new();
            state.contacts.render(&mut contact);
            let mut resp = Response::new(Full::new(Bytes::from(state.metrics.render(&contact))));
            resp.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            Ok(resp)
        }
        (m, "/admin/models" | "/metrics" | "/admin/stats") => Err(ApiError::MethodNotAllowed {
            method: m.to_string(),
            allow: "GET",
        }),
        (_, path) => Err(ApiError::NotFound(path.to_owned())),
    }
}

fn models(state: &AppState) -> Response<Full<Bytes>> {
    let snap = state.registry.load();
    let history = state.registry.history();
    let active = snap.model.as_ref().and_then(|m| {
        history
            .iter()
            .find(|h| h.checksum == m.checksum && *h.version == *m.compiled.version)
            .cloned()
    });
    let features = snap.features.as_ref().map(|f| {
        serde_json::json!({
            "source": f.source(),
            "customers": f.len(),
            "features": f.columns().len(),
            "bytes": f.bytes_held(),
        })
    });
    let body = serde_json::json!({
        "active": active,
        "challenger": null,
        "history": history,
        "features": features,
    });
    json_response(StatusCode::OK, body.to_string().into())
}
