//! `/v1/decide`: from a decoded request to an encoded answer, and the contact glue a decision
//! needs (the customer's history, the decision id, the funnel count).
//!
//! Nothing here awaits once the body is read, takes a lock a writer holds, or does I/O: the
//! snapshot is loaded once, the engine runs, the answer is encoded into one buffer.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Request, Response, StatusCode};

use super::body::read_json_body;
use super::codec::{self, AnswerMeta, DecideBody};
use super::error::{json_response, ApiError};
use super::guards::{self, Deadline, Ticket};
use super::AppState;
use crate::contact::attribution;
use crate::contact::state::History;
use crate::contact::view::CustomerView;
use crate::engine::adaptive::{self, Learnt};
use crate::engine::{self, Decision, Fallback, FallbackReason, FallbackStage, Policies};
use crate::experiment::Variant;

/// The client's own budget, if it sent one.
pub fn deadline_header(req: &Request<Incoming>) -> Option<&[u8]> {
    req.headers().get("x-deadline-us").map(|v| v.as_bytes())
}

/// `POST /v1/decide`.
pub async fn decide_post(
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
pub(super) fn decide(
    state: &AppState,
    body: &DecideBody<'_>,
    started: Instant,
    budget: Duration,
    ticket: &Ticket<'_>,
) -> Response<Full<Bytes>> {
    let snap = state.registry.load();
    // The shared clock: tests move it; in production it is the system's.
    let now_ms = state.contacts.now_ms();
    let mut req = body.as_request();
    let picked = snap.models.as_ref().map(|set| {
        let (model, variant) = set.pick(req.customer_id);
        (&model.compiled, variant, set.key(variant))
    });
    let variant = picked.map_or(Variant::Champion, |p| p.1);
    let contacts = DecideContacts::new(state, picked.map_or(0, |p| p.2), req.customer_id, variant);
    let mut id_buf = [0u8; ulid::ULID_LEN];
    let decision_id = state
        .config
        .decision_ids
        .decision_id(now_ms, contacts.key, variant);
    let meta = AnswerMeta {
        decision_id: decision_id.array_to_str(&mut id_buf),
        customer_id: body.customer_id.as_deref(),
        variant: variant.as_str(),
    };
    let mut out = Vec::with_capacity(1024);
    let metrics = &state.metrics;
    match (picked, &snap.features) {
        (Some((model, variant, _)), Some(features)) => {
            metrics.variant(variant);
            let (channel, slot) = model.resolve(req.channel, req.placement);
            if !state
                .admission
                .admits(ticket, slot.map_or(100, |s| s.priority))
            {
                let content = model.fallback_for(channel, slot);
                let reason = FallbackReason::Overload;
                metrics.fallback(reason);
                let content = builtin_if_last(state, content, &req);
                codec::encode_fallback(&mut out, &meta, Some(model), reason, content);
            } else {
                let deadline = Deadline(started + budget);
                let view = contacts.view(&model.policies, now_ms);
                // Only a decision that runs the engine needs what adaptive offers learnt.
                let learnt = state.contacts.adaptive().snapshot();
                req.learnt = Some(Learnt {
                    posteriors: &learnt,
                    seed: adaptive::seed_of(decision_id.0),
                    tag: attribution::model_tag(contacts.key),
                });
                let mut d = engine::decide(model, features, &req, &view, &deadline, now_ms);
                if let Some(log) = &state.decision_log {
                    let history = contacts.history.as_ref();
                    log.offer(
                        &snap,
                        history,
                        variant,
                        now_ms,
                        decision_id,
                        &req,
                        &d,
                        &learnt,
                    );
                }
                contacts.count(state, &d);
                match d.fallback {
                    Some(reason) => {
                        metrics.fallback(reason);
                        d.fallback_content = builtin_if_last(state, d.fallback_content, &req);
                    }
                    None => {
                        metrics.personalised.fetch_add(1, Relaxed);
                    }
                }
                codec::encode_decision(&mut out, &meta, model, &d);
            }
        }
        _ => {
            let reason = FallbackReason::NoModel;
            metrics.fallback(reason);
            let content = state.builtin.lookup(req.channel, req.placement);
            codec::encode_fallback(&mut out, &meta, None, reason, content);
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

/// The fallback chain's last stage: where the model's chain ends in built-in content, the
/// sidecar's own file (`--fallback-file`) serves.
#[inline]
fn builtin_if_last<'a>(
    state: &'a AppState,
    content: &'a Fallback,
    req: &engine::Request<'_>,
) -> &'a Fallback {
    if content.stage == FallbackStage::Builtin {
        state.builtin.lookup(req.channel, req.placement)
    } else {
        content
    }
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

/// What a decision needs from the contact side.
struct DecideContacts {
    key: u32,
    history: Option<Arc<History>>,
    variant: Variant,
}

impl DecideContacts {
    /// Looks up the customer's history (no lock a writer holds).
    #[inline]
    fn new(state: &AppState, key: u32, customer_id: Option<&str>, variant: Variant) -> Self {
        DecideContacts {
            key,
            history: customer_id
                .filter(|c| !c.is_empty())
                .and_then(|c| state.contacts.history(c)),
            variant,
        }
    }

    /// The engine's view of the customer's history.
    #[inline]
    fn view(&self, policies: &Policies, now_ms: i64) -> CustomerView<'_> {
        CustomerView::new(self.history.as_deref(), policies, now_ms)
    }

    /// Counts a personalised decision in the funnel.
    #[inline]
    fn count(&self, state: &AppState, d: &Decision<'_>) {
        if let (None, Some(ch)) = (d.fallback, d.channel) {
            state
                .contacts
                .funnel()
                .decided(self.key, ch, &d.ranked, self.variant);
        }
    }
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
