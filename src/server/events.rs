//! `POST /v1/events`: decode, validate each event, check the events that quote a decision
//! against it, hand the valid ones to the contact side, answer with what was accepted, what
//! was refused (by index) and what deserves a word (`warnings`, by index; `batch_warnings`
//! about the batch itself).
//!
//! A batch that breaks the request's schema is refused whole (400, naming the event and the
//! field), as the OpenAPI document promises; one that fits it is taken event by event. An event
//! quoting a `decision_id` takes its channel and placement from the decision where it leaves
//! them out, and is refused when it contradicts them or names another customer (see
//! [`crate::contact::attribution`]).

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use simd_json::prelude::*;

use super::body::read_json_body;
use super::codec::MAX_UNKNOWN_NAMED;
use super::error::{json_response, ApiError};
use super::typos::{self, Route};
use super::AppState;
use crate::contact::attribution::{self, customer_check};
use crate::contact::event::{unknown_keys, EventFault, EVENT_FIELDS};
use crate::contact::funnel::FunnelTable;
use crate::contact::links::Links;
use crate::contact::subject::Subject;
use crate::contact::Event;
use crate::experiment::Variant;
use crate::model::walk::duplicate_read_key;
use crate::registry::Snapshot;

/// Most events one request may carry.
pub const MAX_BATCH: usize = 1000;

/// Longest a request waits for a just-started replica to know its id is its own alone.
const IDENTITY_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Takes a batch of events: each is validated on its own, the valid ones are made durable and
/// applied, and the answer lists the refused ones by index.
pub async fn post(
    state: &AppState,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    // A page of another site (a `no-cors` fetch needs no preflight) could hold offers back
    // from any customer; events come from the channel's backend, which sends no such header.
    if let Some(site) = req
        .headers()
        .get("sec-fetch-site")
        .filter(|s| s.as_bytes().eq_ignore_ascii_case(b"cross-site"))
    {
        return Err(ApiError::Forbidden(format!(
            "Sec-Fetch-Site: {}: another site's page made this request; events come from the \
             channel's backend (or a page of its own site)",
            String::from_utf8_lossy(site.as_bytes())
        ))
        .before_body());
    }
    // A 202 promises an event every replica of the fleet will know; one that refused to join
    // it (a copied data folder, another partition count) would keep events to itself.
    if let Some(why) = state.fleet.as_ref().and_then(|f| f.refused()) {
        return Err(ApiError::Unavailable(format!(
            "this replica refused to join the fleet, so events sent here would reach no other \
             replica: {why}"
        ))
        .before_body());
    }
    // Just started: wait a little for the answer rather than refuse at once.
    let pending = match state.fleet.as_ref().filter(|f| f.identity().pending()) {
        Some(f) => !f.identity().settled(IDENTITY_WAIT).await,
        None => false,
    };
    if pending {
        return Err(ApiError::Unavailable(
            "this replica has just started and is making sure no running replica has its id, as \
             at every start (one started on a copy of its data folder would have it), before \
             it takes events; retry in a second"
                .into(),
        )
        .before_body());
    }
    let query = req
        .uri()
        .query()
        .filter(|q| !q.is_empty())
        .map(|q| q.chars().take(100).collect::<String>());
    let raw = read_json_body(
        req,
        state.config.max_body_bytes,
        state.config.body_timeout,
        Some(&state.slow_bodies),
    )
    .await?;
    let mut body = Vec::from(raw.clone());
    let doc = simd_json::to_borrowed_value(&mut body).map_err(|_| syntax_error(&raw))?;
    if let Some(key) = duplicate_read_key(&raw, &read_field) {
        return Err(ApiError::InvalidRequest(format!(
            "duplicate field `{key}`: each field once per object"
        )));
    }
    let now = state.contacts.now_ms();
    let mut batch = validate_batch(&doc, now)?;
    if let Some(q) = query {
        batch.batch_warnings.push(format!(
            "the query string `{q}` was not read: a batch is its body's `events`"
        ));
    }
    let unknown_fields = batch.warnings.len() + batch.batch_warnings.len();
    state.typos.unknown_fields(Route::Events, unknown_fields);
    // Categories come from the champion's offers (its funnel table was made when it was
    // published); the tables are owned Arcs, as they outlive the await below.
    let snap: Arc<Snapshot> = arc_swap::Guard::into_inner(state.registry.load());
    let funnel = state.contacts.funnel();
    let tables = funnel.tables();
    let active: Vec<Arc<FunnelTable>> = snap
        .models
        .iter()
        .flat_map(|set| {
            [Variant::Champion, Variant::Challenger]
                .into_iter()
                .filter(move |v| *v == Variant::Champion || set.challenger.is_some())
                .filter_map(|v| funnel.table(set.key(v)))
        })
        .collect();
    let fallback = |id: &str| fallback_content(state, &snap, id);
    let known = Known {
        links: state.contacts.links(),
        fallback: &fallback,
        now_ms: now,
    };
    attribute(&mut batch, &tables, &active, &known);
    resolve_categories(&mut batch, &active);
    state.contacts.count_rejected(batch.rejected.len());
    let done = state.contacts.ingest(&batch.events).await?;
    if !done.reused.is_empty() {
        for &i in &done.reused {
            let id = batch.events[i].event_id.unwrap_or_default();
            batch
                .warnings
                .push((batch.indices[i], reused_id_warning(id)));
        }
        batch.warnings.sort_by_key(|w| w.0);
    }
    let by_index = |list: &[(usize, String)], key: &str| {
        list.iter()
            .map(|(i, text)| serde_json::json!({"index": i, key: text}))
            .collect::<Vec<_>>()
    };
    let mut answer = serde_json::json!({
        "accepted": done.accepted,
        "duplicates": done.duplicates,
        "rejected": by_index(&batch.rejected, "error"),
    });
    if !batch.warnings.is_empty() {
        answer["warnings"] = by_index(&batch.warnings, "warning").into();
    }
    if !batch.batch_warnings.is_empty() {
        answer["batch_warnings"] = batch.batch_warnings.into();
    }
    Ok(json_response(
        StatusCode::ACCEPTED,
        answer.to_string().into(),
    ))
}

/// The word for an event sent under an id another event took first: it was counted as that
/// one's repeat, so the client would otherwise lose it without knowing.
fn reused_id_warning(id: &str) -> String {
    format!(
        "event_id: `{id}` was first sent for another event (another type, customer, visitor, \
         offer or decision); this one was taken for a repeat of it and not recorded: give each \
         event its own id"
    )
}

/// Each key once, in order: a key written twice is warned of once.
fn once_each<'k>(keys: impl Iterator<Item = &'k str>) -> impl Iterator<Item = &'k str> {
    let mut seen = std::collections::HashSet::with_hasher(foldhash::fast::RandomState::default());
    keys.filter(move |k| seen.insert(*k))
}

/// Whether a field at `path` of an events body is read: `events`, and an event's own fields.
/// Any other (an unknown field, warned of) may be written twice: no value of it is taken.
fn read_field(path: &str) -> bool {
    path == "events"
        || path
            .strip_prefix("events[")
            .and_then(|rest| rest.split_once("]."))
            .is_some_and(|(i, key)| {
                i.bytes().all(|b| b.is_ascii_digit()) && EVENT_FIELDS.contains(&key)
            })
}

/// Whether `id` names fallback content an answer may show: the serving models' (a placement's
/// or a channel's) or the sidecar's own (`--fallback-file`).
fn fallback_content(state: &AppState, snap: &Snapshot, id: &str) -> bool {
    let models = snap.models.iter().flat_map(|set| {
        std::iter::once(&set.champion.compiled)
            .chain(set.challenger.as_ref().map(|c| &c.model.compiled))
    });
    state.builtin.has(id)
        || models.into_iter().any(|m| {
            m.channels
                .iter()
                .any(|c| c.fallback.has(id) || c.slots.iter().any(|s| s.fallback.has(id)))
        })
}

/// A body simd-json refused, in serde_json's words and positions.
fn syntax_error(raw: &[u8]) -> ApiError {
    match serde_json::from_slice::<serde::de::IgnoredAny>(raw) {
        Err(e) => ApiError::from_json("", &e),
        Ok(_) => ApiError::unreadable(raw),
    }
}

/// A `POST /v1/events` body, validated event by event.
#[derive(Debug)]
pub struct EventBatch<'v> {
    /// The valid events, in batch order (categories not yet resolved from the model).
    pub events: Vec<Event<'v>>,
    /// The batch index of each valid event.
    pub indices: Vec<usize>,
    /// The refused events: index in the batch and why, in batch order.
    pub rejected: Vec<(usize, String)>,
    /// What deserves a word about events that were taken (fields the contract does not have,
    /// offers the models do not know): index and text, in batch order.
    pub warnings: Vec<(usize, String)>,
    /// What deserves a word about the batch itself: fields beside `events`, which nothing reads.
    pub batch_warnings: Vec<String>,
}

/// Validates a decoded `POST /v1/events` body (`{"events": [...]}`, at most [`MAX_BATCH`]);
/// a batch with an event that breaks the schema is refused whole, naming it; otherwise each
/// event on its own, so a batch keeps its good events. Public for the `events` fuzz target,
/// which checks what it accepts.
pub fn validate_batch<'v>(
    doc: &'v simd_json::BorrowedValue<'_>,
    now_ms: i64,
) -> Result<EventBatch<'v>, ApiError> {
    // One event or a bare list of them, sent as the body itself, is the likely slip.
    const SHAPE: &str = "a batch is `{\"events\": [...]}`, one event as a list of one";
    let Some(top) = doc.as_object() else {
        return Err(ApiError::InvalidRequest(format!(
            "expected an object with an `events` array: {SHAPE}"
        )));
    };
    let items = match top.get("events") {
        Some(v) => v
            .as_array()
            .ok_or_else(|| ApiError::InvalidRequest("events: expected an array".into()))?,
        None if top.contains_key("type") => {
            return Err(ApiError::InvalidRequest(format!(
                "missing field `events`: the body is one event, not a batch; {SHAPE}"
            )))
        }
        None => {
            let written = top.keys().map(|k| &**k);
            return Err(ApiError::InvalidRequest(typos::missing(
                "events", "body", written,
            )));
        }
    };
    if items.len() > MAX_BATCH {
        return Err(ApiError::InvalidRequest(format!(
            "events: {} events, at most {MAX_BATCH} per request",
            items.len()
        )));
    }
    let mut batch = EventBatch {
        events: Vec::with_capacity(items.len()),
        indices: Vec::with_capacity(items.len()),
        rejected: Vec::new(),
        warnings: Vec::new(),
        batch_warnings: once_each(top.keys().map(|k| &**k))
            .filter(|k| *k != "events")
            .take(MAX_UNKNOWN_NAMED)
            .map(batch_field_warning)
            .collect(),
    };
    for (i, item) in items.iter().enumerate() {
        match Event::from_json(item, now_ms) {
            Ok(e) => {
                batch.events.push(e);
                batch.indices.push(i);
            }
            Err(EventFault::Refused(error)) => batch.rejected.push((i, error)),
            Err(EventFault::Malformed(error)) => {
                let sep = if error.starts_with("expected") {
                    ": "
                } else {
                    "."
                };
                return Err(ApiError::InvalidRequest(format!(
                    "events[{i}]{sep}{error} (the batch was refused whole: it does not fit the schema)"
                )));
            }
        }
        if let Some(obj) = item.as_object() {
            for key in ["customer_id", "visitor_id"] {
                if crate::contact::event::empty_id(obj, key) {
                    batch.warnings.push((
                        i,
                        format!("{key}: empty, taken as absent (as a decide request takes it)"),
                    ));
                }
                let id = obj.get(key).and_then(|v| v.as_str());
                let so = "the event is filed under it as written";
                if let Some(w) = typos::spaced_id(key, id, so) {
                    batch.warnings.push((i, w));
                }
            }
            let unknown: Vec<&str> = once_each(unknown_keys(obj)).collect();
            for key in unknown.iter().take(MAX_UNKNOWN_NAMED) {
                batch.warnings.push((
                    i,
                    format!(
                        "`{}` is not a field of an event and was ignored; the fields are {}",
                        key.chars().take(64).collect::<String>(),
                        EVENT_FIELDS.join(", ")
                    ),
                ));
            }
            if unknown.len() > MAX_UNKNOWN_NAMED {
                batch.warnings.push((
                    i,
                    format!(
                        "and {} more unknown fields (only the first {MAX_UNKNOWN_NAMED} are named)",
                        unknown.len() - MAX_UNKNOWN_NAMED
                    ),
                ));
            }
        }
    }
    Ok(batch)
}

/// Says that a field beside `events` was ignored; an event's field there (a customer given
/// once for the batch) is said to belong in each event.
fn batch_field_warning(key: &str) -> String {
    let name = key.chars().take(64).collect::<String>();
    if EVENT_FIELDS.contains(&key) {
        format!("`{name}` is a field of each event, not of the batch, and was ignored here: give it in every event that needs it")
    } else {
        format!(
            "`{name}` is not a field of the batch and was ignored; a batch has one field, `events`"
        )
    }
}

/// What an event is checked against besides the funnel tables: the logins linking visitors to
/// customers, the fallback content answers show, and this server's time.
struct Known<'k> {
    links: &'k Links,
    fallback: &'k (dyn Fn(&str) -> bool + Sync),
    now_ms: i64,
}

/// Checks the events that quote a decision against what the decision id carries: fills in the
/// channel and placement they leave out, refuses those that contradict them or were made for
/// another customer, and warns about offers neither the decision's model nor the active models
/// know. `tables` are every kept model version's funnel tables, `active` the serving ones'.
fn attribute<'e>(
    batch: &mut EventBatch<'e>,
    tables: &'e [Arc<FunnelTable>],
    active: &'e [Arc<FunnelTable>],
    known: &Known<'_>,
) {
    let events = std::mem::take(&mut batch.events);
    let indices = std::mem::take(&mut batch.indices);
    // Logins earlier in this batch, not yet applied: (customer, visitor).
    let mut logins: Vec<(&str, &str)> = Vec::new();
    for (mut e, i) in events.into_iter().zip(indices) {
        let decided = e.decision_id.and_then(|d| {
            let tag = attribution::attribution(d).0;
            let table = tables.iter().find(|t| t.tag == tag)?;
            Some((table, attribution::origin(d)))
        });
        if let Some((table, Some(origin))) = decided {
            if let Err(why) = check_origin(&mut e, table, origin, (known.links, &logins)) {
                batch.rejected.push((i, why));
                continue;
            }
            if let Some(why) = never_shown(&e, table, origin) {
                batch.warnings.push((i, why));
            }
            if let Some(why) = e
                .decision_id
                .and_then(|d| before_its_decision(&e, d, known.now_ms))
            {
                batch.warnings.push((i, why));
            }
        }
        if let (Some(d), None, false) = (e.decision_id, decided, tables.is_empty()) {
            // A truncated, stale or mistyped id: say so, or a client's broken plumbing would
            // only ever see clean 202s while the funnel gets nothing.
            batch.warnings.push((
                i,
                format!(
                    "decision_id: `{}` was not made by a model this server has served; the event counts for contact policies but not in the funnel (quote the decision_id of the answer the event is about)",
                    ulid::Ulid(d)
                ),
            ));
        }
        if let Some(channel) = e.channel.filter(|_| !active.is_empty()) {
            let has = |t: &Arc<FunnelTable>| t.channels().iter().any(|c| &**c == channel);
            if !active.iter().any(has) {
                let names: Vec<&str> = active[0].channels().iter().map(|c| &**c).collect();
                batch.warnings.push((
                    i,
                    format!(
                        "channel: `{}` is not a channel of the active model (it has: {}); the event counts for contact policies but not in the funnel",
                        channel.chars().take(64).collect::<String>(),
                        names.join(", ")
                    ),
                ));
            }
        }
        if let (Some(offer), None) = (e.offer_id, e.category) {
            let knows = |t: &Arc<FunnelTable>| t.offer(offer).is_some();
            let known_offer = decided.is_some_and(|(t, _)| knows(t)) || active.iter().any(knows);
            // Fallback content an answer showed is no offer, and its impression no mistake.
            if !known_offer && !active.is_empty() && !(known.fallback)(offer) {
                let models: Vec<String> = active
                    .iter()
                    .map(|t| format!("{} {}", t.name, t.version))
                    .collect();
                batch.warnings.push((
                    i,
                    format!(
                        "offer_id: `{}` is not an offer of the active model ({}); the event counts for contact policies but not in the funnel (an offer outside the model takes a `category`)",
                        offer.chars().take(64).collect::<String>(),
                        models.join(", ")
                    ),
                ));
            }
        }
        if let (Some(v), false) = (e.visitor_id, e.customer_id.is_empty()) {
            logins.push((e.customer_id, v));
        }
        batch.events.push(e);
        batch.indices.push(i);
    }
    batch.rejected.sort_by_key(|r| r.0);
    batch.warnings.sort_by_key(|w| w.0);
}

/// Gives each event its offer's category in the active model, which the contact policies' caps
/// count: an event's own `category` serves an offer the model does not know (an outbound
/// campaign's). One that contradicts the model is overruled, with a word, so a stale category
/// in a channel's events cannot take its contacts out of a cap.
fn resolve_categories<'e>(batch: &mut EventBatch<'e>, active: &'e [Arc<FunnelTable>]) {
    for (k, e) in batch.events.iter_mut().enumerate() {
        let Some(offer) = e.offer_id else { continue };
        let Some(model) = active.iter().find_map(|t| t.category(offer)) else {
            continue;
        };
        let model = Some(model).filter(|c| !c.is_empty());
        if let Some(given) = e.category.filter(|&c| Some(c) != model) {
            batch.warnings.push((
                batch.indices[k],
                format!(
                    "category: `{}` is not the category the active model gives offer `{}` ({}); the model's is what the contact policies count (`category` is for an offer outside the model)",
                    given.chars().take(64).collect::<String>(),
                    offer.chars().take(64).collect::<String>(),
                    model.map_or("none".to_owned(), |c| format!("`{c}`")),
                ),
            ));
        }
        e.category = model;
    }
    batch.warnings.sort_by_key(|w| w.0);
}

/// Says when the event's offer is one its decision's placement never shows (a cross-sell
/// quoting the banner's decision): the funnel leaves such an outcome out.
fn never_shown(e: &Event<'_>, table: &FunnelTable, origin: attribution::Origin) -> Option<String> {
    let (ci, si) = (origin.channel?, origin.slot?);
    let offer = e.offer_id?;
    if table.shows(ci, si, table.offer(offer)?)? {
        return None;
    }
    Some(format!(
        "offer_id: `{}` is not an offer placement `{}` shows, and the decision was made for it; the event counts for contact policies but not in the funnel (quote the decision_id of the answer that showed the offer)",
        offer.chars().take(64).collect::<String>(),
        table.placement(ci, si).unwrap_or("?")
    ))
}

/// Says when an event is stamped before the decision it quotes (beyond the clock skew a
/// client may have, as for times ahead): a time zone lost on the way, most likely. The event
/// counts at the time it gives.
fn before_its_decision(e: &Event<'_>, decision_id: u128, now_ms: i64) -> Option<String> {
    let decided_ms = i64::try_from(ulid::Ulid(decision_id).timestamp_ms()).ok()?;
    let early = decided_ms - e.ts_ms;
    if early <= crate::contact::event::MAX_FUTURE_MS {
        return None;
    }
    // A decision made after this server's now: the clocks of the replica that made it and of
    // this one differ, whatever the event's time says (it may have none).
    let ahead = decided_ms - now_ms;
    if ahead > crate::contact::event::MAX_FUTURE_MS {
        return Some(format!(
            "decision_id: the decision was made at {}, {} after this server's clock reads now: the \
             clock of the replica that made it runs ahead of this one's (or this one's behind; \
             `nextbest_fleet_clock_skew_seconds` on each says which), not the event's time",
            crate::rfc3339::format_ms(decided_ms),
            span(ahead),
        ));
    }
    Some(format!(
        "ts: `{}` is {} before the decision it quotes was made ({}): check the time's offset; the event counts at the time it gives",
        crate::rfc3339::format_ms(e.ts_ms),
        span(early),
        crate::rfc3339::format_ms(decided_ms),
    ))
}

/// A positive span of milliseconds in the largest whole unit a reader wants.
fn span(ms: i64) -> String {
    const MINUTE: i64 = 60_000;
    match ms {
        m if m >= 2 * 24 * 60 * MINUTE => format!("{} days", m / (24 * 60 * MINUTE)),
        m if m >= 2 * 60 * MINUTE => format!("{} hours", m / (60 * MINUTE)),
        m => format!("{} minutes", m / MINUTE),
    }
}

/// Takes channel and placement from the decision where the event leaves them out; refuses an
/// event that contradicts them or names another customer than the decision's.
fn check_origin<'e>(
    e: &mut Event<'e>,
    table: &'e FunnelTable,
    origin: attribution::Origin,
    (links, earlier): (&Links, &[(&str, &str)]),
) -> Result<(), String> {
    // A decision for a visitor may be followed by events after their login: naming both ids,
    // or the customer alone once a login linked the visitor to them (an order system knows
    // only the customer). Either may be the one the decision was made for.
    let named = |who: Subject<'_>| who.with_key(customer_check);
    // The visitor must be linked to this customer now (its newest login): a shared device
    // logged in since as someone else gives its decisions to them.
    let linked_visitor = |c: u16| {
        let made_for = |v: &str| Some(c) == named(Subject::of(None, Some(v)));
        e.visitor_id.is_none()
            && (earlier
                .iter()
                .any(|&(cu, v)| cu == e.customer_id && made_for(v))
                || links.visitors_of(e.customer_id).is_some_and(|vs| {
                    vs.iter().any(|(_, v)| {
                        made_for(v)
                            && links
                                .customer_of(v)
                                .is_some_and(|now| *now == *e.customer_id)
                    })
                }))
    };
    if origin.customer.is_some_and(|c| {
        Some(c) != named(Subject::of(Some(e.customer_id), None))
            && Some(c) != named(Subject::of(None, e.visitor_id))
            && !linked_visitor(c)
    }) {
        return Err(
            "decision_id: the decision was made for another customer (or visitor) than the event's `customer_id` or `visitor_id`: a decision asked with both ids was made for the `customer_id`, and one asked with a `visitor_id` alone for the visitor, whose events name that `visitor_id` (beside the `customer_id` after a login; once an event with both has linked them, the `customer_id` alone will do)".into(),
        );
    }
    let Some(ci) = origin.channel else {
        return Ok(());
    };
    if let Some(name) = table.channels().get(ci) {
        match e.channel {
            None => e.channel = Some(name),
            Some(c) if c != &**name => {
                return Err(format!(
                    "channel: `{c}` contradicts the decision, which was made on channel `{name}`"
                ))
            }
            Some(_) => {}
        }
    }
    if let Some(name) = origin.slot.and_then(|si| table.placement(ci, si)) {
        match e.placement {
            None => e.placement = Some(name),
            Some(p) if p != name => {
                return Err(format!(
                "placement: `{p}` contradicts the decision, which was made for placement `{name}`"
            ))
            }
            Some(_) => {}
        }
    }
    Ok(())
}
