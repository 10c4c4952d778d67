//! One feedback event: validated from the request's JSON (borrowing its strings), and encoded
//! as the compact binary payload the log stores (and decoded from it on replay, borrowing again).
//!
//! Validation tells two kinds of fault apart ([`EventFault`]): an event that breaks the
//! request's schema (a field of the wrong type or length, an unknown type, a time that is not
//! RFC 3339 with an offset) makes the whole batch a 400, as the OpenAPI document promises; an
//! event that fits the schema but cannot be taken (an impression without its offer, a time
//! ahead of the clock) is refused on its own, and the batch keeps its good events. Each fault
//! names the field.
//!
//! A record may end with extensions after the event's fields: a tag byte, then its bytes.
//! Decoders stop after the fields, so a build that knows no extension reads a record that has one, and a record without one (written before) decodes
//! with none. Three are defined: [`ACCEPTED_TAG`], the time this replica accepted the event (what
//! the fleet measures replication lag from), always first when present, [`VISITOR_TAG`],
//! the visitor the event names (its `visitor_id`), and [`REQUEST_TAG`], the request values the
//! impression's decision recorded for contextual adaptive offers ([`RequestLevels`]), so replay
//! and the other replicas learn from the values the decision saw.
//!
//! An event names a customer, a visitor, or both (a login: the two are then linked, see
//! [`super::links`]). A visitor-only event has an empty `customer_id` in its record.

use simd_json::prelude::*;
use simd_json::BorrowedValue;

pub use super::requests::RequestLevels;

/// Longest customer id accepted, in characters (as for `/v1/decide`).
pub const MAX_CUSTOMER_ID: usize = 256;
/// Longest offer id, channel, placement or event id accepted, in characters.
pub const MAX_NAME: usize = 128;
/// Longest category accepted, in characters.
pub const MAX_CATEGORY: usize = 64;
/// How far in the future a `ts` may lie (clock skew between a channel and nextbest).
pub const MAX_FUTURE_MS: i64 = 5 * 60 * 1000;
/// The payload format version written first in every record.
const FORMAT: u8 = 1;
/// The fields an event has; others are reported in the answer's `warnings`.
pub const EVENT_FIELDS: [&str; 10] = [
    "type",
    "customer_id",
    "visitor_id",
    "offer_id",
    "channel",
    "placement",
    "decision_id",
    "event_id",
    "ts",
    "category",
];

/// Why an event was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventFault {
    /// It breaks the request's schema: the whole batch is refused (400).
    Malformed(String),
    /// It fits the schema but cannot be taken: it alone is refused (listed in `rejected`).
    Refused(String),
}

impl EventFault {
    /// `<field>: <what>`.
    pub fn message(&self) -> &str {
        match self {
            EventFault::Malformed(m) | EventFault::Refused(m) => m,
        }
    }
}

impl std::fmt::Display for EventFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

/// The extension holding the accept time: the tag, then Unix milliseconds (i64 LE).
pub const ACCEPTED_TAG: u8 = 1;
/// The extension holding the visitor id: the tag, then a u16 LE length and the UTF-8 bytes.
pub const VISITOR_TAG: u8 = 2;

/// The extension holding a decision's request levels: the tag, a u8 count, then per value the
/// feature id and the level (u32 LE each).
pub const REQUEST_TAG: u8 = 3;

/// The extension holding where an outcome naming no decision counted in the funnel when it
/// was accepted: the tag, the model's content key (u32 LE) and the variant's index (u8).
pub const ATTRIBUTED_TAG: u8 = 4;

/// The model (by content key) and variant an outcome without a decision id was counted for
/// when it was accepted, so a restart under another experiment counts it the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attributed {
    /// The content key of the model whose funnel counted it.
    pub key: u32,
    /// The variant the customer's assignment gave.
    pub variant: crate::experiment::Variant,
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// The offer was shown.
    Impression,
    /// The customer clicked it.
    Click,
    /// The customer bought it.
    Conversion,
    /// The customer dismissed it ("not interested").
    Dismiss,
    /// The customer complained (offer optional).
    Complaint,
    /// The complaint was resolved.
    ComplaintResolved,
}

impl EventKind {
    /// Every kind, in wire-code order.
    pub const ALL: [EventKind; 6] = [
        EventKind::Impression,
        EventKind::Click,
        EventKind::Conversion,
        EventKind::Dismiss,
        EventKind::Complaint,
        EventKind::ComplaintResolved,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Impression => "impression",
            EventKind::Click => "click",
            EventKind::Conversion => "conversion",
            EventKind::Dismiss => "dismiss",
            EventKind::Complaint => "complaint",
            EventKind::ComplaintResolved => "complaint_resolved",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The code stored in the log (stable: never renumber).
    fn code(self) -> u8 {
        self as u8 + 1
    }

    fn from_code(c: u8) -> Option<Self> {
        EventKind::ALL.get(usize::from(c).checked_sub(1)?).copied()
    }

    /// True for the kinds that are about one offer and must name it.
    pub fn needs_offer(self) -> bool {
        !matches!(self, EventKind::Complaint | EventKind::ComplaintResolved)
    }
}

/// A valid event, borrowing its strings from the request or from a log record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event<'a> {
    /// What happened.
    pub kind: EventKind,
    /// When it happened (Unix milliseconds); the server's now when the channel did not say.
    pub ts_ms: i64,
    /// Who it happened to; empty for an event that names only a visitor.
    pub customer_id: &'a str,
    /// The visitor it happened to (the channel's cookie or device id), beside or instead of
    /// the customer; both together link the two.
    pub visitor_id: Option<&'a str>,
    /// The offer, required except for complaints.
    pub offer_id: Option<&'a str>,
    /// Where (web, app, call_center, ...); any channel counts toward cross-channel caps.
    pub channel: Option<&'a str>,
    /// The placement on the channel.
    pub placement: Option<&'a str>,
    /// The `/v1/decide` answer the event is about: carries the model and variant.
    pub decision_id: Option<u128>,
    /// The channel's id for the event: a repeat is counted once.
    pub event_id: Option<&'a str>,
    /// The offer's category, from the event or resolved from the active model at ingest.
    pub category: Option<&'a str>,
    /// For an impression: the request values its decision recorded for contextual adaptive
    /// offers, attached at ingest by the replica that made the decision (never sent by a
    /// channel).
    pub request: Option<RequestLevels<'a>>,
    /// For an outcome without a decision id: where the funnel counted it at ingest (never
    /// sent by a channel).
    pub attributed: Option<Attributed>,
}

/// Why a log record could not be decoded (the record's checksum was right: a format bug).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The record ends before its fields do.
    #[error("the record ends before its fields")]
    Truncated,
    /// Written by a format this build does not know.
    #[error("unknown record format {0}")]
    Format(u8),
    /// An event kind this build does not know.
    #[error("unknown event kind code {0}")]
    Kind(u8),
    /// A string field is not UTF-8.
    #[error("a string field is not UTF-8")]
    Utf8(#[source] std::str::Utf8Error),
}

/// Whether an event gives `key` (`customer_id`, `visitor_id`) as an empty string: no id, as a
/// decide request takes it, and said so in the batch's warnings.
pub fn empty_id(obj: &simd_json::borrowed::Object<'_>, key: &str) -> bool {
    obj.get(key).and_then(|v| v.as_str()) == Some("")
}

fn opt_str<'v>(
    obj: &'v simd_json::borrowed::Object<'_>,
    key: &str,
    max: usize,
) -> Result<Option<&'v str>, EventFault> {
    let malformed = |what: String| EventFault::Malformed(format!("{key}: {what}"));
    match obj.get(key) {
        None => Ok(None),
        Some(v) if v.is_null() => Ok(None),
        Some(v) => match v.as_str() {
            Some("") => Err(malformed("must not be empty".into())),
            Some(s) if s.len() > max && s.chars().count() > max => {
                Err(malformed(format!("longer than {max} characters")))
            }
            Some(s) => Ok(Some(s)),
            None => Err(malformed("expected a string".into())),
        },
    }
}

/// The keys of an event object that are no field of an event, in the object's order.
pub fn unknown_keys<'o>(
    obj: &'o simd_json::borrowed::Object<'_>,
) -> impl Iterator<Item = &'o str> + 'o {
    obj.keys()
        .map(|k| &**k)
        .filter(|k| !EVENT_FIELDS.contains(k))
}

/// `; `custmer_id` is not a field: did you mean `customer_id`?` when a key of the event that is
/// no field of it is a slip of one of `missing`, else nothing.
fn misspelt(obj: &simd_json::borrowed::Object<'_>, missing: &[&str]) -> String {
    unknown_keys(obj)
        .find_map(|k| {
            let meant = crate::near::nearest(k, missing.iter().copied())?;
            Some(format!(
                "; `{}` is not a field: did you mean `{meant}`?",
                k.chars().take(64).collect::<String>()
            ))
        })
        .unwrap_or_default()
}

/// A decision id as the contract writes it: a ULID (26 characters of Crockford base 32, in
/// either case, the first at most `7`).
fn parse_decision_id(s: &str) -> Option<u128> {
    (s.len() == ulid::ULID_LEN && s.as_bytes()[0] <= b'7')
        .then(|| ulid::Ulid::from_string(s).ok())
        .flatten()
        .map(|u| u.0)
}

/// The seed of [`Event::digest`] (and the next one): apart from the event ids' (1, 2).
const DIGEST_SEED: u64 = 7;

impl<'a> Event<'a> {
    /// What tells this event from another sent under its `event_id`: its kind, customer,
    /// visitor, offer and decision, which neither the server nor a channel's retry changes
    /// (a `ts` stamped again, a channel filled in from the decision, a category from the
    /// model do not count). The same on every replica of one build, and after a restart.
    pub fn digest(&self) -> u32 {
        let fields = (
            self.kind,
            self.customer_id,
            self.visitor_id,
            self.offer_id,
            self.decision_id,
        );
        super::dedupe::key_of(fields, DIGEST_SEED) as u32
    }

    /// Validates one element of `events`; the fault names the field and what is wrong.
    pub fn from_json(v: &'a BorrowedValue<'_>, now_ms: i64) -> Result<Event<'a>, EventFault> {
        let malformed = |m: String| Err(EventFault::Malformed(m));
        let Some(obj) = v.as_object() else {
            return malformed("expected an event object".into());
        };
        let kind = match obj.get("type") {
            None => return malformed(format!("type: missing field{}", misspelt(obj, &["type"]))),
            Some(t) => match t.as_str().and_then(EventKind::parse) {
                Some(k) => k,
                None => {
                    let names = EventKind::ALL.map(EventKind::as_str);
                    // `impressions`, `Click`: the type meant.
                    let hint = t
                        .as_str()
                        .map_or_else(String::new, |typed| crate::near::did_you_mean(typed, names));
                    return malformed(format!("type: expected one of {}{hint}", names.join(", ")));
                }
            },
        };
        // An empty id is no id, as on `/v1/decide` (a visitor without a cookie value).
        let id = |key| {
            if empty_id(obj, key) {
                Ok(None)
            } else {
                opt_str(obj, key, MAX_CUSTOMER_ID)
            }
        };
        let customer_id = id("customer_id")?;
        let visitor_id = id("visitor_id")?;
        if customer_id.is_none() && visitor_id.is_none() {
            if empty_id(obj, "customer_id") {
                return malformed(
                    "customer_id: empty, and no visitor_id: an event is about one of the two"
                        .into(),
                );
            }
            let typo = misspelt(obj, &["customer_id", "visitor_id"]);
            return malformed(format!(
                "customer_id: missing field (or give a visitor_id){typo}"
            ));
        }
        let customer_id = customer_id.unwrap_or("");
        let offer_id = opt_str(obj, "offer_id", MAX_NAME)?;
        let channel = opt_str(obj, "channel", MAX_NAME)?;
        let placement = opt_str(obj, "placement", MAX_NAME)?;
        let event_id = opt_str(obj, "event_id", MAX_NAME)?;
        let category = opt_str(obj, "category", MAX_CATEGORY)?;
        let decision_id = match opt_str(obj, "decision_id", 64)? {
            None => None,
            Some(s) => match parse_decision_id(s) {
                Some(d) => Some(d),
                None => {
                    return malformed(format!(
                        "decision_id: `{}` is not a decision id (a ULID of 26 characters, as /v1/decide answers it)",
                        s.chars().take(64).collect::<String>()
                    ))
                }
            },
        };
        if obj.get("ts").is_some_and(|t| t.is_number()) {
            return malformed(
                "ts: expected a string, an RFC 3339 time such as `2026-11-22T10:00:00Z` \
                 (a number, as epoch milliseconds, is not taken)"
                    .into(),
            );
        }
        let ts_ms = match opt_str(obj, "ts", 64)? {
            None => None,
            Some(s) => Some(parse_ts(s).map_err(EventFault::Malformed)?),
        };
        // What the schema cannot say: the event alone is refused.
        let refused = |m: String| Err(EventFault::Refused(m));
        if offer_id.is_none() && kind.needs_offer() {
            return refused(format!(
                "offer_id: missing field (required for {}){}",
                kind.as_str(),
                misspelt(obj, &["offer_id"])
            ));
        }
        let ts_ms = match ts_ms {
            None => now_ms,
            Some(t) if t < 0 => return refused("ts: before 1970".into()),
            Some(t) if t > now_ms.saturating_add(MAX_FUTURE_MS) => {
                return refused("ts: more than 5 minutes in the future".into())
            }
            Some(t) => t,
        };
        Ok(Event {
            kind,
            ts_ms,
            customer_id,
            visitor_id,
            offer_id,
            channel,
            placement,
            decision_id,
            event_id,
            category,
            request: None,
            attributed: None,
        })
    }

    /// Who the contact state files the event under: the customer, else the visitor.
    pub fn subject(&self) -> super::subject::Subject<'a> {
        super::subject::Subject::of(Some(self.customer_id), self.visitor_id)
    }

    /// Appends the binary payload the log stores for this event.
    pub fn encode(&self, out: &mut Vec<u8>) {
        self.encode_fields(out);
        self.encode_extensions(out);
    }

    /// The visitor and request extensions, when the event has them.
    fn encode_extensions(&self, out: &mut Vec<u8>) {
        if let Some(v) = self.visitor_id {
            let v = v.as_bytes();
            let len = v.len().min(u16::MAX as usize);
            out.push(VISITOR_TAG);
            out.extend_from_slice(&(len as u16).to_le_bytes());
            out.extend_from_slice(&v[..len]);
        }
        if let Some(r) = self.request {
            // `RequestLevels` holds at most MAX_REQUEST_LEVELS pairs.
            out.push(REQUEST_TAG);
            out.push((r.as_bytes().len() / 8) as u8);
            out.extend_from_slice(r.as_bytes());
        }
        if let Some(a) = self.attributed {
            out.push(ATTRIBUTED_TAG);
            out.extend_from_slice(&a.key.to_le_bytes());
            out.push(a.variant.index() as u8);
        }
    }

    fn encode_fields(&self, out: &mut Vec<u8>) {
        out.push(FORMAT);
        out.push(self.kind.code());
        out.push(u8::from(self.decision_id.is_some()));
        out.extend_from_slice(&self.ts_ms.to_le_bytes());
        if let Some(d) = self.decision_id {
            out.extend_from_slice(&d.to_le_bytes());
        }
        for s in [
            Some(self.customer_id),
            self.offer_id,
            self.channel,
            self.placement,
            self.event_id,
            self.category,
        ] {
            let s = s.unwrap_or("").as_bytes();
            // Validation bounds every field far below u16::MAX.
            let len = s.len().min(u16::MAX as usize);
            out.extend_from_slice(&(len as u16).to_le_bytes());
            out.extend_from_slice(&s[..len]);
        }
    }

    /// [`Event::encode`], then the time this replica accepted the event (Unix ms), which
    /// travels with it to the other replicas.
    pub fn encode_accepted(&self, accepted_ms: i64, out: &mut Vec<u8>) {
        self.encode_fields(out);
        // First, where builds that know only this extension look for it.
        out.push(ACCEPTED_TAG);
        out.extend_from_slice(&accepted_ms.to_le_bytes());
        self.encode_extensions(out);
    }

    /// Decodes a payload written by [`Event::encode`], borrowing its strings.
    pub fn decode(payload: &'a [u8]) -> Result<Event<'a>, RecordError> {
        Event::decode_accepted(payload).map(|(e, _)| e)
    }

    /// Decodes a payload, with its accept time when the record carries one (records written by
    /// [`Event::encode_accepted`]; older ones have none).
    pub fn decode_accepted(payload: &'a [u8]) -> Result<(Event<'a>, Option<i64>), RecordError> {
        let mut r = Reader(payload);
        let format = r.byte()?;
        if format != FORMAT {
            return Err(RecordError::Format(format));
        }
        let code = r.byte()?;
        let kind = EventKind::from_code(code).ok_or(RecordError::Kind(code))?;
        let flags = r.byte()?;
        let ts_ms = i64::from_le_bytes(r.array()?);
        let decision_id = if flags & 1 != 0 {
            Some(u128::from_le_bytes(r.array()?))
        } else {
            None
        };
        let customer_id = r.string()?;
        let mut opt = || r.string().map(|s| (!s.is_empty()).then_some(s));
        let (offer_id, channel, placement) = (opt()?, opt()?, opt()?);
        let (event_id, category) = (opt()?, opt()?);
        let (mut accepted_ms, mut visitor_id, mut request) = (None, None, None);
        let mut attributed = None;
        // Extensions in any order; one cut short or of an unknown tag ends the list.
        loop {
            match r.0 {
                [ACCEPTED_TAG, rest @ ..] if rest.len() >= 8 => {
                    accepted_ms = rest.first_chunk::<8>().map(|b| i64::from_le_bytes(*b));
                    r.0 = &rest[8..];
                }
                [VISITOR_TAG, rest @ ..] => {
                    r.0 = rest;
                    match r.string() {
                        Ok(v) if !v.is_empty() => visitor_id = Some(v),
                        _ => break,
                    }
                }
                [REQUEST_TAG, n, rest @ ..] if rest.len() >= usize::from(*n) * 8 => {
                    let (levels, rest) = rest.split_at(usize::from(*n) * 8);
                    match RequestLevels::from_bytes(levels) {
                        Some(l) => request = Some(l),
                        None => break,
                    }
                    r.0 = rest;
                }
                [ATTRIBUTED_TAG, a, b, c, d, v, rest @ ..] => {
                    let Some(variant) = crate::experiment::Variant::from_index(*v) else {
                        break;
                    };
                    let key = u32::from_le_bytes([*a, *b, *c, *d]);
                    attributed = Some(Attributed { key, variant });
                    r.0 = rest;
                }
                _ => break,
            }
        }
        let e = Event {
            kind,
            ts_ms,
            customer_id,
            visitor_id,
            offer_id,
            channel,
            placement,
            decision_id,
            event_id,
            category,
            request,
            attributed,
        };
        Ok((e, accepted_ms))
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        if self.0.len() < n {
            return Err(RecordError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8, RecordError> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], RecordError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn string(&mut self) -> Result<&'a str, RecordError> {
        let len = u16::from_le_bytes(self.array()?) as usize;
        std::str::from_utf8(self.take(len)?).map_err(RecordError::Utf8)
    }
}

/// Parses an event's `ts` into Unix milliseconds (see [`crate::rfc3339`]).
fn parse_ts(s: &str) -> Result<i64, String> {
    crate::rfc3339::parse_ms(s).map_err(|e| format!("ts: {e}"))
}

#[cfg(test)]
impl<'a> Event<'a> {
    /// A test's event: `kind` of `offer` for `customer` on `channel` at `ts_ms`, nothing else
    /// set (a test sets what it needs with struct update).
    pub(crate) fn on(
        kind: EventKind,
        customer: &'a str,
        offer: Option<&'a str>,
        channel: &'a str,
        ts_ms: i64,
    ) -> Self {
        Event {
            kind,
            ts_ms,
            customer_id: customer,
            visitor_id: None,
            offer_id: offer,
            channel: Some(channel),
            placement: None,
            decision_id: None,
            event_id: None,
            category: None,
            request: None,
            attributed: None,
        }
    }
}

#[cfg(test)]
mod tests;
