//! `POST /v1/events` (public) and `GET /admin/stats` (admin): decode, hand to the contact side,
//! encode. Also the two calls the decide handler makes into the contact side, kept here so the
//! decide path in `public.rs` stays one line per step.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use simd_json::prelude::*;

use super::error::{json_response, ApiError};
use super::public::read_json_body;
use super::AppState;
use crate::contact::attribution::{self, CHALLENGER, CHAMPION};
use crate::contact::funnel::{FunnelTable, Stage};
use crate::contact::view::CustomerView;
use crate::contact::{ContactError, Event};
use crate::engine::{CompiledModel, Decision, Policies};
use crate::registry::{Snapshot, Variant};

/// Most events one request may carry.
pub const MAX_BATCH: usize = 1000;

/// Takes a batch of events: each is validated on its own, the valid ones are made durable and
/// applied, and the answer lists the refused ones by index.
pub async fn post(
    state: &AppState,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let mut body = Vec::from(
        read_json_body(req, state.config.max_body_bytes, state.config.body_timeout).await?,
    );
    let doc = simd_json::to_borrowed_value(&mut body).map_err(|e| {
        ApiError::MalformedJson(format!(
            "invalid JSON at byte {}: {:?}",
            e.index(),
            e.error()
        ))
    })?;
    let now = state.contacts.now_ms();
    let EventBatch {
        mut events,
        rejected,
    } = validate_batch(&doc, now)?;
    // The snapshot outlives the await below: an owned Arc, not a guard.
    let snap: Arc<Snapshot> = arc_swap::Guard::into_inner(state.registry.load());
    let table = snap.models.as_ref().map(|set| {
        // A model activated since start may look back further: keep history long enough.
        let challenger = set.challenger.as_ref();
        let horizon = set
            .champion
            .compiled
            .policies
            .horizon_ms
            .max(challenger.map_or(0, |c| c.model.compiled.policies.horizon_ms));
        if horizon > state.contacts.state().horizon_ms() {
            state.contacts.set_horizon_ms(horizon);
        }
        state.contacts.funnel().table(&set.champion.compiled)
    });
    for e in &mut events {
        if e.category.is_none() {
            e.category = resolve_category(table.as_deref(), e.offer_id);
        }
    }
    state.contacts.count_rejected(rejected.len());
    let done = state.contacts.ingest(&events).await.map_err(|e| match e {
        ContactError::Log(_) => ApiError::Internal(format!(
            "the events could not be made durable ({e}); nothing was accepted, retry the batch"
        )),
        other => ApiError::Internal(other.to_string()),
    })?;
    let body = serde_json::json!({
        "accepted": done.accepted + done.duplicates,
        "duplicates": done.duplicates,
        "rejected": rejected
            .iter()
            .map(|(i, error)| serde_json::json!({"index": i, "error": error}))
            .collect::<Vec<_>>(),
    });
    Ok(json_response(StatusCode::ACCEPTED, body.to_string().into()))
}

/// A `POST /v1/events` body, validated event by event.
#[derive(Debug)]
pub struct EventBatch<'v> {
    /// The valid events, in batch order (categories not yet resolved from the model).
    pub events: Vec<Event<'v>>,
    /// The refused events: index in the batch and why, in batch order.
    pub rejected: Vec<(usize, String)>,
}

/// Validates a decoded `POST /v1/events` body (`{"events": [...]}`, at most [`MAX_BATCH`]);
/// each event on its own, so a batch keeps its good events. Public for the `events` fuzz
/// target, which checks what it accepts.
pub fn validate_batch<'v>(
    doc: &'v simd_json::BorrowedValue<'_>,
    now_ms: i64,
) -> Result<EventBatch<'v>, ApiError> {
    let items = match doc.get("events") {
        Some(v) => v
            .as_array()
            .ok_or_else(|| ApiError::InvalidRequest("events: expected an array".into()))?,
        None if doc.is_object() => {
            return Err(ApiError::InvalidRequest("missing field `events`".into()))
        }
        None => {
            return Err(ApiError::InvalidRequest(
                "expected an object with an `events` array".into(),
            ))
        }
    };
    if items.len() > MAX_BATCH {
        return Err(ApiError::InvalidRequest(format!(
            "events: {} events, at most {MAX_BATCH} per request",
            items.len()
        )));
    }
    let mut events = Vec::with_capacity(items.len());
    let mut rejected = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match Event::from_json(item, now_ms) {
            Ok(e) => events.push(e),
            Err(error) => rejected.push((i, error)),
        }
    }
    Ok(EventBatch { events, rejected })
}

fn resolve_category<'t>(table: Option<&'t FunnelTable>, offer: Option<&str>) -> Option<&'t str> {
    table?.category(offer?)
}

/// `GET /admin/stats`: the funnel with rates, event counts, contact state and log figures.
pub fn stats(state: &AppState) -> Response<Full<Bytes>> {
    let funnel = state.contacts.funnel();
    let mut unattributed = serde_json::Map::new();
    for (s, n) in Stage::ALL.iter().zip(funnel.unattributed()).skip(1) {
        unattributed.insert(s.as_str().into(), n.into());
    }
    state.contacts.state().settle();
    let mut body = state.contacts.stats_json();
    body["funnel"] = funnel.rows().into();
    body["unattributed"] = unattributed.into();
    json_response(StatusCode::OK, body.to_string().into())
}

/// What the decide handler needs from the contact side for one decision.
pub struct DecideContacts {
    tag: u16,
    history: Option<Arc<crate::contact::state::History>>,
    variant: u8,
}

impl DecideContacts {
    /// Looks up the customer's history and the model version's tag (no lock on either).
    #[inline]
    pub fn new(
        state: &AppState,
        model: Option<&CompiledModel>,
        customer_id: Option<&str>,
        variant: Variant,
    ) -> Self {
        DecideContacts {
            tag: model.map_or(0, |m| state.contacts.funnel().tag(m)),
            history: customer_id
                .filter(|c| !c.is_empty())
                .and_then(|c| state.contacts.history(c)),
            variant: match variant {
                Variant::Champion => CHAMPION,
                Variant::Challenger => CHALLENGER,
            },
        }
    }

    /// A decision id carrying this model version and variant.
    #[inline]
    pub fn decision_id(&self, now_ms: i64) -> ulid::Ulid {
        attribution::decision_id(now_ms, self.tag, self.variant)
    }

    /// The engine's view of the customer's history.
    #[inline]
    pub fn view(&self, policies: &Policies, now_ms: i64) -> CustomerView<'_> {
        CustomerView::new(self.history.as_deref(), policies, now_ms)
    }

    /// Counts the decision in the funnel.
    #[inline]
    pub fn count(&self, state: &AppState, model: &CompiledModel, d: &Decision<'_>) {
        if let (None, Some(ch)) = (d.fallback, d.channel) {
            state
                .contacts
                .funnel()
                .decided(model, ch, &d.ranked, self.variant);
        }
    }
}
