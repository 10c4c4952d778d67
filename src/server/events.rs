//! `POST /v1/events`: decode, validate each event, hand the valid ones to the contact side,
//! answer with what was accepted and what was refused, by index.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use simd_json::prelude::*;

use super::body::read_json_body;
use super::error::{json_response, ApiError};
use super::AppState;
use crate::contact::funnel::FunnelTable;
use crate::contact::Event;
use crate::experiment::Variant;
use crate::registry::Snapshot;

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
    // Categories come from the champion's offers (its funnel table was made when it was
    // published); the table is an owned Arc, as it outlives the await below.
    let snap: Arc<Snapshot> = arc_swap::Guard::into_inner(state.registry.load());
    let table = snap
        .models
        .as_ref()
        .and_then(|set| state.contacts.funnel().table(set.key(Variant::Champion)));
    for e in &mut events {
        if e.category.is_none() {
            e.category = resolve_category(table.as_deref(), e.offer_id);
        }
    }
    state.contacts.count_rejected(rejected.len());
    let done = state.contacts.ingest(&events).await?;
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
