//! The public listener's routes: `/v1/decide`, `/v1/events` (see `events.rs`), `/healthz`, `/readyz`.

use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};

use super::codec::{self, AnswerMeta, DecideBody};
use super::error::{json_response, ApiError};
use super::events::{self, DecideContacts};
use super::AppState;
use crate::engine::{self, FallbackReason, Unbounded};

/// Routes one public request; every outcome is a response, never a panic or a dropped call.
pub async fn handle(state: &AppState, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let resp = match (req.method(), req.uri().path()) {
        (&Method::POST, "/v1/decide") => decide_post(state, req).await,
        (&Method::GET, "/v1/decide") => {
            let started = Instant::now();
            codec::decode_query(req.uri().query().unwrap_or(""))
                .map(|body| decide(state, &body, started))
        }
        (m, "/v1/decide") => Err(ApiError::MethodNotAllowed {
            method: m.to_string(),
            allow: "GET, POST",
        }),
        // contact (issue 5): feedback events
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
        (_, path) => Err(ApiError::NotFound(path.to_owned())),
    };
    let resp = resp.unwrap_or_else(ApiError::into_response);
    state.metrics.status(resp.status().as_u16());
    resp
}

fn readyz(state: &AppState) -> Response<Full<Bytes>> {
    let snap = state.registry.load();
    if snap.is_ready() {
        json_response(
            StatusCode::OK,
            Bytes::from_static(b"{\"status\":\"ready\"}"),
        )
    } else {
        let missing = match (&snap.model, &snap.features) {
            (None, None) => "no model and no feature snapshot loaded",
            (None, _) => "no model loaded",
            _ => "no feature snapshot loaded",
        };
        let body = serde_json::json!({"status": "not_ready", "detail": missing});
        json_response(StatusCode::SERVICE_UNAVAILABLE, body.to_string().into())
    }
}

/// Reads a JSON body within the limit, refusing other content types.
pub(super) async fn read_json_body(
    req: Request<Incoming>,
    limit: usize,
) -> Result<Vec<u8>, ApiError> {
    if let Some(ct) = req.headers().get(CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("");
        let essence = ct.split(';').next().unwrap_or("").trim();
        if !essence.eq_ignore_ascii_case("application/json") {
            return Err(ApiError::UnsupportedMediaType(
                ct.chars().take(100).collect(),
            ));
        }
    }
    if let Some(len) = req.headers().get(CONTENT_LENGTH) {
        if len
            .to_str()
            .ok()
            .and_then(|l| l.parse::<u64>().ok())
            .is_some_and(|l| l > limit as u64)
        {
            return Err(ApiError::PayloadTooLarge(limit));
        }
    }
    match Limited::new(req.into_body(), limit).collect().await {
        Ok(c) => Ok(Vec::from(c.to_bytes())),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(ApiError::PayloadTooLarge(limit))
        }
        Err(e) => Err(ApiError::InvalidRequest(format!(
            "could not read the body: {e}"
        ))),
    }
}

async fn decide_post(
    state: &AppState,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let mut body = read_json_body(req, state.config.max_body_bytes).await?;
    // The budget starts once the request is read: what the client waited for before is not ours.
    let started = Instant::now();
    let body = codec::decode_json(&mut body)?;
    Ok(decide(state, &body, started))
}

/// Answers one decide request: loads the snapshot once, runs the engine, encodes.
fn decide(state: &AppState, body: &DecideBody<'_>, started: Instant) -> Response<Full<Bytes>> {
    let snap = state.registry.load();
    // contact (issue 5): the shared clock; history, funnel table, attributed decision id.
    let now_ms = state.contacts.now_ms();
    let model = snap.model.as_ref().map(|m| &m.compiled);
    let contacts = DecideContacts::new(state, model, body.customer_id.as_deref());
    let mut id_buf = [0u8; ulid::ULID_LEN];
    let decision_id = contacts.decision_id(now_ms);
    let meta = AnswerMeta {
        decision_id: decision_id.array_to_str(&mut id_buf),
        customer_id: body.customer_id.as_deref(),
        variant: "champion",
    };
    let mut out = Vec::with_capacity(1024);
    match (&snap.model, &snap.features) {
        (Some(model), Some(features)) => {
            let model = &model.compiled;
            let req = body.as_request();
            let view = contacts.view(&model.policies, now_ms);
            let d = engine::decide(model, features, &req, &view, &Unbounded, now_ms);
            contacts.count(state, model, &d);
            match d.fallback {
                Some(reason) => state.metrics.fallback(reason),
                None => {
                    state
                        .metrics
                        .personalised
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
            codec::encode_decision(&mut out, &meta, model, &d);
        }
        _ => {
            state.metrics.fallback(FallbackReason::NoModel);
            codec::encode_fallback(
                &mut out,
                &meta,
                None,
                FallbackReason::NoModel,
                &state.builtin_fallback,
            );
        }
    }
    let took = started.elapsed();
    codec::finish(&mut out, took.as_micros() as u64);
    state
        .metrics
        .decide_latency
        .observe_ns(took.as_nanos() as u64);
    let mut resp = json_response(StatusCode::OK, out.into());
    let timing = format!("decide;dur={:.3}", took.as_secs_f64() * 1e3);
    if let Ok(v) = HeaderValue::from_str(&timing) {
        resp.headers_mut().insert("server-timing", v);
    }
    resp
}
