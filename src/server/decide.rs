//! `/v1/decide`: from a request to an encoded answer. The request is admitted and its budget
//! set in one place (`Entry`), the contact side is asked once ([`crate::contact::decide`]),
//! the engine decides, and the outcome is counted once.
//!
//! Nothing here awaits once the body is read, takes a lock a writer holds, or does I/O: the
//! snapshot is loaded once, the engine runs, the answer is encoded into one buffer.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Request, Response, StatusCode};

use super::body::read_json_body;
use super::codec::{self, AnswerMeta, DecideBody, Sticky};
use super::error::{declares_body, json_response, ApiError};
use super::guards::{self, Admission, Deadline, Ticket};
use super::shadow;
use super::typos::{self, Route};
use super::AppState;
use crate::contact::attribution::{self, Origin};
use crate::contact::subject::Subject;
use crate::engine::{self, Fallback, FallbackReason, FallbackStage};
use crate::experiment::Variant;

/// The client's own budget, if it sent one; sent twice, it is refused, as a field or a query
/// parameter given twice is (which one the client meant cannot be told).
fn deadline_header(req: &Request<Incoming>) -> Result<Option<&[u8]>, ApiError> {
    let mut values = req.headers().get_all("x-deadline-us").iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(ApiError::InvalidRequest(
            "X-Deadline-Us: given twice; send one value".into(),
        ));
    }
    Ok(first.map(|v| v.as_bytes()))
}

/// `POST /v1/decide`.
pub async fn decide_post(
    state: &AppState,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    // In flight once its body is read: a client that never finishes one holds its connection
    // (until `--body-timeout-ms`), never a slot of the decisions being made.
    let mut entry = deadline_header(&req)
        .and_then(|d| Entry::new(state, d))
        .map_err(ApiError::before_body)?;
    if let Some(q) = req.uri().query().filter(|q| !q.is_empty()) {
        entry.warnings.push(format!(
            "the query string `{}` was not read: a POST decide reads its body; give these as \
             fields of the body",
            q.chars().take(100).collect::<String>()
        ));
    }
    let reading = state.admission.reading();
    let body = read_json_body(
        req,
        state.config.max_body_bytes,
        state.config.body_timeout,
        Some(&state.slow_bodies),
    )
    .await?;
    drop(reading);
    decide_bytes(state, entry, &body)
}

/// `GET /v1/decide`.
pub fn decide_get(
    state: &AppState,
    req: &Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let mut entry = Entry::new(state, deadline_header(req)?)?;
    if declares_body(req) {
        entry.warnings.push(
            "the request's body was not read: a GET decide reads its query string; POST a \
             JSON body instead"
                .into(),
        );
    }
    let body = codec::decode_query(req.uri().query().unwrap_or(""))?;
    // A personalised answer to a URL: no cache on the way may keep it for the next visitor.
    let mut resp = decide(state, &body, entry.start());
    resp.headers_mut().insert(
        hyper::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    Ok(resp)
}

/// The in-process part of `POST /v1/decide` once the body is read, with the request's
/// `X-Deadline-Us` value: exactly what the server runs per request, for benches and profilers.
pub fn decide_body(
    state: &AppState,
    body: &[u8],
    deadline_us: Option<&[u8]>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    decide_bytes(state, Entry::new(state, deadline_us)?, body)
}

fn decide_bytes(
    state: &AppState,
    entry: Entry<'_>,
    body: &[u8],
) -> Result<Response<Full<Bytes>>, ApiError> {
    // The budget starts once the request is read: what the client waited for before is not ours.
    let started = entry.start();
    let mut scratch = Vec::with_capacity(body.len());
    let body = codec::decode_json(body, &mut scratch)?;
    Ok(decide(state, &body, started))
}

/// A decide request from the moment it is ours: its budget, and what its answer says about the
/// request beyond its fields.
struct Entry<'a> {
    admission: &'a Admission,
    budget: Duration,
    warnings: Vec<String>,
}

impl<'a> Entry<'a> {
    /// Checks the request's `X-Deadline-Us`.
    #[inline]
    fn new(state: &'a AppState, deadline_us: Option<&[u8]>) -> Result<Self, ApiError> {
        let asked = guards::budget(state.config.deadline, deadline_us)?;
        let warnings = match asked.above {
            Some(us) => vec![format!(
                "X-Deadline-Us: {us} is more than this server's budget (`--deadline-us` {0}), \
                 which a client can only shorten: the decision had {0} us",
                asked.budget.as_micros()
            )],
            None => Vec::new(),
        };
        Ok(Entry {
            admission: &state.admission,
            budget: asked.budget,
            warnings,
        })
    }

    /// The request is read: it enters the decisions in flight, and its deadline runs from now.
    #[inline]
    fn start(self) -> Started<'a> {
        let at = Instant::now();
        Started {
            ticket: self.admission.enter(),
            at,
            deadline: Deadline::after(at, self.budget),
            warnings: self.warnings,
        }
    }
}

/// A decide request whose budget runs.
struct Started<'a> {
    ticket: Ticket<'a>,
    at: Instant,
    deadline: Deadline,
    warnings: Vec<String>,
}

/// Answers one decide request: loads the snapshot once, looks the contact side up once, admits
/// or sheds, runs the engine within the deadline, encodes, counts once. Every path ends in a
/// 200 with content the page can show.
fn decide(
    state: &AppState,
    body: &DecideBody<'_>,
    mut started: Started<'_>,
) -> Response<Full<Bytes>> {
    let snap = state.registry.load();
    let mut req = body.as_request();
    let visitor = body.visitor();
    let linked = match (body.sticky, visitor, req.customer_id) {
        (Sticky::Visitor, None, Some(c)) => state.contacts.links().newest_visitor_of(c),
        _ => None,
    };
    let assigned = match body.sticky {
        Sticky::Visitor => visitor.or(linked.as_deref()).or(req.customer_id),
        Sticky::Customer => req.customer_id,
    };
    let picked = snap.models.as_ref().map(|set| {
        let (model, variant) = set.pick(assigned);
        (&model.compiled, variant, set.key(variant))
    });
    let variant = picked.map(|p| p.1);
    let (channel_at, slot_at) =
        picked.map_or((None, None), |p| p.0.locate(req.channel, req.placement));
    let origin = Origin {
        channel: channel_at,
        slot: slot_at,
        customer: Subject::of(req.customer_id, visitor).with_key(attribution::customer_check),
    };
    let contacts = state.contacts.for_decision(
        &state.config.decision_ids,
        (req.customer_id, visitor),
        picked.map_or(0, |p| p.2),
        variant.unwrap_or(Variant::Champion),
        origin,
    );
    let mut warnings = typos::field_warnings(body);
    warnings.extend(typos::spaced_id(
        "visitor_id",
        visitor,
        "the history read and kept is that id's, not the trimmed one's",
    ));
    warnings.append(&mut started.warnings);
    state
        .typos
        .unknown_fields(Route::Decide, body.unknown_count);
    let mut id_buf = [0u8; ulid::ULID_LEN];
    let meta = AnswerMeta {
        decision_id: contacts.decision_id.array_to_str(&mut id_buf),
        customer_id: body.customer(),
        variant: contacts.variant.as_str(),
    };
    let mut out = Vec::with_capacity(1024);
    let mut shadowed = None;
    let mut anonymous = false;
    let fallback = match (picked, &snap.features) {
        (Some((model, _, _)), Some(features)) => {
            if !req.context.is_empty() {
                typos::numbers_as_text(model, &req, &mut warnings);
                typos::context_key_slips(model, &req, &mut warnings);
            }
            let (channel, slot) = model.resolve(req.channel, req.placement);
            if !state
                .admission
                .admits(&started.ticket, slot.map_or(100, |s| s.priority))
            {
                let reason = FallbackReason::Overload;
                let content = builtin_if_last(state, model.fallback_for(channel, slot), &req);
                codec::encode_fallback(&mut out, &meta, Some(model), reason, content);
                Some(reason)
            } else {
                req.learnt = Some(contacts.learnt());
                let view = contacts.view(&model.policies);
                let mut d = engine::decide(
                    model,
                    features,
                    &req,
                    &view,
                    &started.deadline,
                    contacts.now_ms,
                );
                if let Some(log) = &state.decision_log {
                    log.offer(&snap, &contacts, &req, visitor, &d);
                }
                contacts.count(&d);
                contacts.remember_request(model, &req, &d);
                if d.fallback == Some(FallbackReason::UnknownPlacement) {
                    warnings.push(state.typos.unknown_placement(model, &req));
                }
                if d.anonymous || d.fallback == Some(FallbackReason::UnknownCustomer) {
                    warnings.extend(typos::spaced_id(
                        "customer_id",
                        req.customer_id,
                        "the snapshot has no such customer",
                    ));
                }
                if d.fallback.is_some() {
                    d.fallback_content = builtin_if_last(state, d.fallback_content, &req);
                }
                codec::encode_decision(&mut out, &meta, model, &d);
                anonymous = d.anonymous;
                if let (Some(candidate), Some(set)) =
                    (state.shadow.sample(contacts.decision_id.0), &snap.models)
                {
                    let served = shadow::Served {
                        set,
                        variant: contacts.variant,
                        key: contacts.key,
                        decision_id: contacts.decision_id.0,
                        now_ms: contacts.now_ms,
                        visitor_id: visitor,
                        decision: &d,
                    };
                    shadowed = Some(shadow::Sampled::new(candidate, &req, served));
                }
                d.fallback
            }
        }
        _ => {
            let reason = FallbackReason::NoModel;
            let content = state.builtin.lookup(req.channel, req.placement);
            codec::encode_fallback(&mut out, &meta, None, reason, content);
            Some(reason)
        }
    };
    codec::warnings(&mut out, &warnings);
    let took = started.at.elapsed();
    codec::finish(&mut out, took.as_micros() as u64);
    state.metrics.decided(variant, fallback, anonymous, took);
    let mut resp = json_response(StatusCode::OK, out.into());
    if let Ok(v) = server_timing(took) {
        resp.headers_mut().insert(SERVER_TIMING, v);
    }
    // The answer is encoded and timed: the shadow decides on a task of its own.
    if let Some(s) = shadowed {
        state.shadow.offer(s, state);
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

/// The header's name, made once: a name given as text is parsed on every insert.
const SERVER_TIMING: hyper::header::HeaderName =
    hyper::header::HeaderName::from_static("server-timing");

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
