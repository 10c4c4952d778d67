//! The public listener's routes: `/v1/decide`, `/v1/events` (see `events.rs`), `/healthz`, `/readyz`.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};

use super::codec::{self, AnswerMeta, DecideBody};
use super::error::{json_response, ApiError};
use super::events::{self, DecideContacts};
use super::guards::{self, Deadline, Ticket};
use super::AppState;
use crate::engine::{self, Fallback, FallbackReason, FallbackStage};
use crate::registry::Variant;

/// Routes one public request; every outcome is a response, never a panic or a dropped call.
pub async fn handle(state: &AppState, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let resp = match (req.method(), req.uri().path()) {
        (&Method::POST, "/v1/decide") => decide_post(state, req).await,
        (&Method::GET, "/v1/decide") => {
            let ticket = state.admission.enter();
            let started = Instant::now();
            let budget = guards::budget(state.config.deadline, deadline_header(&req));
            codec::decode_query(req.uri().query().unwrap_or(""))
                .map(|body| decide(state, &body, started, budget, &ticket))
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
        (m, "/openapi.json") => super::openapi::answer(m, super::openapi::Listener::Public),
        (_, path) => Err(ApiError::NotFound(path.to_owned())),
    };
    let resp = resp.unwrap_or_else(ApiError::into_response);
    state.metrics.status(resp.status().as_u16());
    resp
}

fn readyz(state: &AppState) -> Response<Full<Bytes>> {
    if state.draining.load(std::sync::atomic::Ordering::Relaxed) {
        let body = serde_json::json!({"status": "draining", "detail": "shutting down"});
        return json_response(StatusCode::SERVICE_UNAVAILABLE, body.to_string().into());
    }
    let snap = state.registry.load();
    if snap.is_ready() {
        json_response(
            StatusCode::OK,
            Bytes::from_static(b"{\"status\":\"ready\"}"),
        )
    } else {
        let missing = match (&snap.models, &snap.features) {
            (None, None) => "no model and no feature snapshot loaded",
            (None, _) => "no model loaded",
            _ => "no feature snapshot loaded",
        };
        let body = serde_json::json!({"status": "not_ready", "detail": missing});
        json_response(StatusCode::SERVICE_UNAVAILABLE, body.to_string().into())
    }
}

/// Reads a JSON body within the size limit and the time limit, refusing other content types.
pub(super) async fn read_json_body(
    req: Request<Incoming>,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, ApiError> {
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
    let collected = tokio::time::timeout(timeout, Limited::new(req.into_body(), limit).collect())
        .await
        .map_err(|_| ApiError::RequestTimeout(timeout))?;
    match collected {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(ApiError::PayloadTooLarge(limit))
        }
        Err(e) => Err(ApiError::InvalidRequest(format!(
            "could not read the body: {e}"
        ))),
    }
}

fn deadline_header(req: &Request<Incoming>) -> Option<&[u8]> {
    req.headers().get("x-deadline-us").map(|v| v.as_bytes())
}

async fn decide_post(
    state: &AppState,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    // In flight from the moment the request is ours, so slow bodies count against the bound.
    let ticket = state.admission.enter();
    let budget = guards::budget(state.config.deadline, deadline_header(&req));
    let body = read_json_body(req, state.config.max_body_bytes, state.config.body_timeout).await?;
    // The budget starts once the request is read: what the client waited for before is not ours.
    let started = Instant::now();
    let mut scratch = Vec::with_capacity(body.len());
    let body = codec::decode_json(&body, &mut scratch)?;
    Ok(decide(state, &body, started, budget, &ticket))
}

/// The in-process part of `POST /v1/decide` once the body is read: admission, decode, decide,
/// encode. Benches and profilers call it to measure exactly what the server runs per request.
pub fn decide_body(state: &AppState, body: &mut [u8]) -> Result<Response<Full<Bytes>>, ApiError> {
    let ticket = state.admission.enter();
    let started = Instant::now();
    let mut scratch = Vec::with_capacity(body.len());
    let body = codec::decode_json(body, &mut scratch)?;
    Ok(decide(
        state,
        &body,
        started,
        state.config.deadline,
        &ticket,
    ))
}

/// Answers one decide request: loads the snapshot once, admits or sheds, runs the engine
/// within the deadline against the customer's contact history, encodes. Every path ends in a
/// 200 with content the page can show.
fn decide(
    state: &AppState,
    body: &DecideBody<'_>,
    started: Instant,
    budget: Duration,
    ticket: &Ticket<'_>,
) -> Response<Full<Bytes>> {
    let snap = state.registry.load();
    // The shared clock: tests move it; in production it is the system's.
    let now_ms = state.contacts.now_ms();
    let req = body.as_request();
    let picked = snap.models.as_ref().map(|m| m.pick(req.customer_id));
    let variant = picked.map_or(Variant::Champion, |p| p.1);
    let model = picked.map(|p| &p.0.compiled);
    let contacts = DecideContacts::new(state, model, req.customer_id, variant);
    let mut id_buf = [0u8; ulid::ULID_LEN];
    let decision_id = contacts.decision_id(now_ms);
    let meta = AnswerMeta {
        decision_id: decision_id.array_to_str(&mut id_buf),
        customer_id: body.customer_id.as_deref(),
        variant: variant.as_str(),
    };
    let builtin = |fb: &'_ Fallback| -> bool { fb.stage == FallbackStage::Builtin };
    let mut out = Vec::with_capacity(1024);
    let metrics = &state.metrics;
    match (model, &snap.features) {
        (Some(model), Some(features)) => {
            metrics.variant(variant);
            let (channel, slot) = model.resolve(req.channel, req.placement);
            if !state
                .admission
                .admits(ticket, slot.map_or(100, |s| s.priority))
            {
                let mut content = model.fallback_for(channel, slot);
                if builtin(content) {
                    content = state.builtin.lookup(req.channel, req.placement);
                }
                metrics.fallback(FallbackReason::Overload);
                codec::encode_fallback(
                    &mut out,
                    &meta,
                    Some(model),
                    FallbackReason::Overload,
                    content,
                );
            } else {
                let deadline = Deadline(started + budget);
                let view = contacts.view(&model.policies, now_ms);
                let mut d = engine::decide(model, features, &req, &view, &deadline, now_ms);
                contacts.count(state, model, &d);
                match d.fallback {
                    Some(reason) => {
                        metrics.fallback(reason);
                        if builtin(d.fallback_content) {
                            d.fallback_content = state.builtin.lookup(req.channel, req.placement);
                        }
                    }
                    None => {
                        metrics.personalised.fetch_add(1, Relaxed);
                    }
                }
                codec::encode_decision(&mut out, &meta, model, &d);
            }
        }
        _ => {
            metrics.fallback(FallbackReason::NoModel);
            let content = state.builtin.lookup(req.channel, req.placement);
            codec::encode_fallback(&mut out, &meta, None, FallbackReason::NoModel, content);
        }
    }
    let took = started.elapsed();
    codec::finish(&mut out, took.as_micros() as u64);
    metrics.decide_latency.observe_ns(took.as_nanos() as u64);
    let mut resp = json_response(StatusCode::OK, out.into());
    if let Ok(v) = server_timing(took) {
        resp.headers_mut().insert("server-timing", v);
    }
    resp
}

/// `decide;dur=<ms with 3 decimals>`, written without the formatting machinery (it showed up
/// in the profile at 7 % of the decide path).
fn server_timing(took: Duration) -> Result<HeaderValue, hyper::header::InvalidHeaderValue> {
    let us = took.as_micros() as u64;
    let mut buf = [0u8; 40];
    let prefix = b"decide;dur=";
    buf[..prefix.len()].copy_from_slice(prefix);
    let mut n = prefix.len();
    let mut ms = itoa::Buffer::new();
    let whole = ms.format(us / 1000).as_bytes();
    buf[n..n + whole.len()].copy_from_slice(whole);
    n += whole.len();
    let frac = us % 1000;
    buf[n..n + 4].copy_from_slice(&[
        b'.',
        b'0' + (frac / 100) as u8,
        b'0' + (frac / 10 % 10) as u8,
        b'0' + (frac % 10) as u8,
    ]);
    n += 4;
    HeaderValue::from_bytes(&buf[..n])
}

#[cfg(test)]
mod tests {
    #[test]
    fn server_timing_is_milliseconds_with_three_decimals() {
        use std::time::Duration;
        let v = |us| super::server_timing(Duration::from_micros(us)).unwrap();
        assert_eq!(v(37), "decide;dur=0.037");
        assert_eq!(v(1_234_567), "decide;dur=1234.567");
        assert_eq!(v(5_000), "decide;dur=5.000");
        assert_eq!(v(0), "decide;dur=0.000");
    }
}
