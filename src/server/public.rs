//! The public listener's routes: `/v1/decide` (see [`super::decide`]), `/v1/events` (see
//! [`super::events`]), `/healthz`, `/readyz`. Routing only.

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};

use super::decide;
use super::error::{close_unread, declares_body, json_response, ApiError};
use super::events;
use super::AppState;
use crate::metrics::Listener;

/// Routes one public request; every outcome is a response, never a panic or a dropped call.
pub async fn handle(state: &AppState, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let route = Listener::Public.route(req.uri().path());
    let body_declared = declares_body(&req);
    let resp = match (req.method(), req.uri().path()) {
        (&Method::POST, "/v1/decide") => decide::decide_post(state, req).await,
        // Not HEAD: it would make and count a decision no page shows, whose id no outcome
        // could quote (a monitor's or a link checker's).
        (&Method::GET, "/v1/decide") => decide::decide_get(state, &req),
        (m, "/v1/decide") => Err(ApiError::MethodNotAllowed {
            method: m.to_string(),
            allow: "GET, POST",
        }),
        (&Method::POST, "/v1/events") => events::post(state, req).await,
        (m, "/v1/events") => Err(ApiError::MethodNotAllowed {
            method: m.to_string(),
            allow: "POST",
        }),
        (&Method::GET | &Method::HEAD, "/healthz") => Ok(json_response(
            StatusCode::OK,
            Bytes::from_static(b"{\"status\":\"ok\"}"),
        )),
        (&Method::GET | &Method::HEAD, "/readyz") => Ok(readyz(state)),
        (m, "/healthz" | "/readyz") => Err(ApiError::MethodNotAllowed {
            method: m.to_string(),
            allow: "GET, HEAD",
        }),
        (m, "/openapi.json") => {
            let url = state.server_url(false, req.headers().get(hyper::header::HOST));
            super::openapi::answer(m, super::openapi::Listener::Public, &url)
        }
        (_, path) => Err(ApiError::no_route(path, req.uri())),
    };
    let mut resp = resp.unwrap_or_else(ApiError::into_response);
    close_unread(body_declared, &mut resp);
    if state.draining.load(std::sync::atomic::Ordering::Relaxed) {
        // The backend beside us calls localhost with no balancer to move it: ask its pool to
        // stop reusing a connection that ends with the drain.
        resp.headers_mut().insert(
            hyper::header::CONNECTION,
            hyper::header::HeaderValue::from_static("close"),
        );
    }
    state
        .metrics
        .response(Listener::Public, route, resp.status().as_u16());
    resp
}

fn readyz(state: &AppState) -> Response<Full<Bytes>> {
    if state.draining.load(std::sync::atomic::Ordering::Relaxed) {
        let body = serde_json::json!({"status": "draining", "detail": "shutting down"});
        return json_response(StatusCode::SERVICE_UNAVAILABLE, body.to_string().into());
    }
    let snap = state.registry.load();
    if let Some(fleet) = state.fleet.as_ref().filter(|_| snap.is_ready()) {
        // A new replica catches up on the fleet's events first (for a bounded time only with
        // --ready-when-behind); one that refused to join is never ready.
        if !fleet.ready() {
            let detail = fleet.not_ready_detail();
            let body = serde_json::json!({"status": "not_ready", "detail": detail});
            return json_response(StatusCode::SERVICE_UNAVAILABLE, body.to_string().into());
        }
        if !fleet.caught_up() {
            let body = serde_json::json!({"status": "ready", "detail": "behind the fleet: still catching up on its events"});
            return json_response(StatusCode::OK, body.to_string().into());
        }
    }
    if snap.is_ready() {
        json_response(
            StatusCode::OK,
            Bytes::from_static(b"{\"status\":\"ready\"}"),
        )
    } else {
        let missing = match (&snap.models, &snap.features) {
            (None, None) => {
                "no feature snapshot loaded, and no model (a model is checked against a \
                 snapshot: none loads before one does)"
            }
            (None, _) => "no model loaded",
            _ => "no feature snapshot loaded",
        };
        let body = serde_json::json!({"status": "not_ready", "detail": missing});
        json_response(StatusCode::SERVICE_UNAVAILABLE, body.to_string().into())
    }
}
