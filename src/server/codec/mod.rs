//! Decoding `/v1/decide` requests (JSON body or query string) and encoding answers.
//!
//! Decoding borrows strings from the body buffer (simd-json unescapes in place), so a typical
//! request allocates nothing but its context list. Encoding writes into one buffer, copying
//! content fragments that were JSON-encoded when the model was loaded.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use super::error::ApiError;
use crate::engine::{CtxValue, Request, MAX_LIMIT};

mod encode;
#[cfg(test)]
use encode::string;
pub use encode::{encode_decision, encode_fallback, finish, warnings, AnswerMeta};

/// Longest customer id accepted, in characters (as the contract's `maxLength` counts them);
/// longer ones are client bugs, not customers.
pub const MAX_CUSTOMER_ID: usize = 256;
/// Longest channel or placement name accepted, in characters.
pub const MAX_NAME: usize = 128;
/// Most context entries in one request.
pub const MAX_CONTEXT: usize = 64;
/// Most unknown field names an answer's warnings list one by one.
pub const MAX_UNKNOWN_NAMED: usize = 8;

/// The fields a decide request has; anything else is reported in the answer's `warnings`.
pub const DECIDE_FIELDS: [&str; 8] = [
    "customer_id",
    "visitor_id",
    "channel",
    "placement",
    "limit",
    "context",
    "explain",
    "sticky",
];

/// Whose id assigns a request to a variant of an experiment (`sticky`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sticky {
    /// The customer's (the default); a visitor alone gets the champion.
    #[default]
    Customer,
    /// The visitor's: the request's `visitor_id`, else the visitor most recently linked to
    /// the customer, so that a visitor keeps their variant across the login.
    Visitor,
}

impl Sticky {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "customer" => Some(Sticky::Customer),
            "visitor" => Some(Sticky::Visitor),
            _ => None,
        }
    }
}

/// A decoded decide request, borrowing from the body where it can.
#[derive(Debug)]
pub struct DecideBody<'a> {
    /// The customer, if known to the channel.
    pub customer_id: Option<Cow<'a, str>>,
    /// The channel's id of the visitor (cookie or device id), beside or instead of the customer.
    pub visitor_id: Option<Cow<'a, str>>,
    /// Channel name.
    pub channel: Cow<'a, str>,
    /// Placement name.
    pub placement: Cow<'a, str>,
    /// Offers wanted.
    pub limit: Option<u64>,
    /// Context values for rules.
    pub context: Context<'a>,
    /// List every offer's verdict.
    pub explain: bool,
    /// Whose id assigns the variant.
    pub sticky: Sticky,
    /// Fields (or query parameters) the request has that the contract does not: the first
    /// [`MAX_UNKNOWN_NAMED`] by name, in request order.
    pub unknown: Vec<Cow<'a, str>>,
    /// How many unknown fields there were in all.
    pub unknown_count: usize,
}

impl<'a> DecideBody<'a> {
    fn empty() -> Self {
        DecideBody {
            customer_id: None,
            visitor_id: None,
            channel: Cow::Borrowed(""),
            placement: Cow::Borrowed(""),
            limit: None,
            context: Context::default(),
            explain: false,
            sticky: Sticky::Customer,
            unknown: Vec::new(),
            unknown_count: 0,
        }
    }

    /// Notes a field the contract does not have; one of those named is noted once however
    /// often it is written.
    fn note_unknown(&mut self, name: Cow<'a, str>) {
        if self.unknown.contains(&name) {
            return;
        }
        if self.unknown.len() < MAX_UNKNOWN_NAMED {
            self.unknown.push(name);
        }
        self.unknown_count += 1;
    }

    /// Checks bounds the type system does not.
    fn validate(self) -> Result<Self, ApiError> {
        for (field, id) in [
            ("customer_id", &self.customer_id),
            ("visitor_id", &self.visitor_id),
        ] {
            if let Some(id) = id {
                if id.len() > MAX_CUSTOMER_ID && id.chars().count() > MAX_CUSTOMER_ID {
                    return Err(ApiError::InvalidRequest(format!(
                        "{field}: longer than {MAX_CUSTOMER_ID} characters"
                    )));
                }
            }
        }
        for (field, v) in [("channel", &self.channel), ("placement", &self.placement)] {
            if v.is_empty() || (v.len() > MAX_NAME && v.chars().count() > MAX_NAME) {
                return Err(ApiError::InvalidRequest(format!(
                    "{field}: must be 1 to {MAX_NAME} characters"
                )));
            }
        }
        if let Some(l) = self.limit {
            if l == 0 || l > MAX_LIMIT as u64 {
                let found = match l {
                    u64::MAX => "a far larger number".to_owned(),
                    l => l.to_string(),
                };
                return Err(ApiError::InvalidRequest(format!(
                    "limit: must be from 1 to {MAX_LIMIT}, found {found}"
                )));
            }
        }
        Ok(self)
    }

    /// The customer id, when the request names a non-empty one (empty is anonymous).
    pub fn customer(&self) -> Option<&str> {
        self.customer_id.as_deref().filter(|s| !s.is_empty())
    }

    /// The visitor id, when the request names a non-empty one.
    pub fn visitor(&self) -> Option<&str> {
        self.visitor_id.as_deref().filter(|s| !s.is_empty())
    }

    /// The engine's view of this request.
    pub fn as_request(&self) -> Request<'_> {
        Request {
            customer_id: self.customer(),
            channel: &self.channel,
            placement: &self.placement,
            limit: self.limit.map(|l| l as usize),
            context: &self.context.0,
            explain: self.explain,
            learnt: None,
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for DecideBody<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = DecideBody<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object with `channel` and `placement`")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut body = DecideBody::empty();
                let (mut channel, mut placement) = (false, false);
                let mut seen = [false; DECIDE_FIELDS.len()];
                while let Some(key) = map.next_key::<CowStr<'a>>()? {
                    let Some(i) = DECIDE_FIELDS.iter().position(|f| *f == key.0) else {
                        map.next_value::<de::IgnoredAny>()?;
                        body.note_unknown(key.0);
                        continue;
                    };
                    if std::mem::replace(&mut seen[i], true) {
                        return Err(de::Error::duplicate_field(DECIDE_FIELDS[i]));
                    }
                    match i {
                        0 => {
                            body.customer_id = map.next_value::<Option<CowStr<'a>>>()?.map(|s| s.0)
                        }
                        1 => body.visitor_id = map.next_value::<Option<CowStr<'a>>>()?.map(|s| s.0),
                        2 => {
                            body.channel = map.next_value::<CowStr<'a>>()?.0;
                            channel = true;
                        }
                        3 => {
                            body.placement = map.next_value::<CowStr<'a>>()?.0;
                            placement = true;
                        }
                        4 => body.limit = map.next_value::<Option<Whole>>()?.map(|w| w.0),
                        5 => body.context = map.next_value::<Context<'a>>()?,
                        6 => body.explain = map.next_value::<Option<bool>>()?.unwrap_or(false),
                        _ => {
                            body.sticky = match map.next_value::<Option<CowStr<'a>>>()? {
                                None => Sticky::Customer,
                                Some(s) => Sticky::parse(&s.0).ok_or_else(|| {
                                    de::Error::custom("sticky: expected `customer` or `visitor`")
                                })?,
                            }
                        }
                    }
                }
                if !channel {
                    return Err(de::Error::custom(missing("channel", &body.unknown)));
                }
                if !placement {
                    return Err(de::Error::custom(missing("placement", &body.unknown)));
                }
                Ok(body)
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// A whole number, also written as a float without a fraction (`2.0`): JSON Schema's
/// `integer`, which generated clients may send either way.
struct Whole(u64);

impl<'de> Deserialize<'de> for Whole {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Whole;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a whole number")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Whole, E> {
                Ok(Whole(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Whole, E> {
                u64::try_from(v)
                    .map(Whole)
                    .map_err(|_| E::custom(format!("expected a whole number from 1, found {v}")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Whole, E> {
                if v.is_finite() && v.fract() == 0.0 && v >= u64::MAX as f64 {
                    // Whole, and far out of any bound: the bound's check names it.
                    return Ok(Whole(u64::MAX));
                }
                whole(v)
                    .map(Whole)
                    .ok_or_else(|| E::custom(format!("expected a whole number, found {v}")))
            }
        }
        d.deserialize_any(V)
    }
}

/// `v` as a whole number, if it is one (and not beyond what a `u64` holds).
fn whole(v: f64) -> Option<u64> {
    (v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v < u64::MAX as f64).then_some(v as u64)
}

/// Context pairs in request order.
#[derive(Debug, Default)]
pub struct Context<'a>(pub Vec<(Cow<'a, str>, CtxValue<'a>)>);

impl<'de: 'a, 'a> Deserialize<'de> for Context<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Context<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of string or number values, or null")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Context::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(key) = map.next_key::<CowStr<'a>>()? {
                    if out.len() == MAX_CONTEXT {
                        return Err(de::Error::custom(format!(
                            "more than {MAX_CONTEXT} entries"
                        )));
                    }
                    if out.iter().any(|(k, _)| *k == key.0) {
                        return Err(de::Error::custom(format!(
                            "duplicate key `{}`",
                            shown(&key.0)
                        )));
                    }
                    let value = map.next_value::<CtxVal<'a>>()?;
                    out.push((key.0, value.0));
                }
                Ok(Context(out))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// A string that borrows from the input when it can.
struct CowStr<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for CowStr<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = CowStr<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V(std::marker::PhantomData))
    }
}

struct CtxVal<'a>(CtxValue<'a>);

impl<'de: 'a, 'a> Deserialize<'de> for CtxVal<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = CtxVal<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a number")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(CtxVal(CtxValue::Str(Cow::Borrowed(v))))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(CtxVal(CtxValue::Str(Cow::Owned(v.to_owned()))))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                if v.is_finite() {
                    Ok(CtxVal(CtxValue::Num(v)))
                } else {
                    Err(E::custom("numbers must be finite"))
                }
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(CtxVal(CtxValue::Num(v as f64)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(CtxVal(CtxValue::Num(v as f64)))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

thread_local! {
    /// simd-json's working buffers, reused per thread so a parse allocates nothing of its own.
    static SIMD_BUFFERS: std::cell::RefCell<simd_json::Buffers> =
        std::cell::RefCell::new(simd_json::Buffers::new(1024));
}

/// Decodes a JSON body: `scratch` receives a copy of `body` that simd-json parses in place (the
/// answer borrows its strings from it). Only when that fails is `body` parsed again, tracking
/// field paths, so the error names the field; the fast path pays for no path bookkeeping.
pub fn decode_json<'s>(body: &[u8], scratch: &'s mut Vec<u8>) -> Result<DecideBody<'s>, ApiError> {
    // serde's derived struct also reads an array, positionally (`["C1","web","home"]`); the
    // contract is an object, so anything else at the top is refused before parsing.
    let first = body
        .iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    if first.is_some_and(|&b| b == b'[') {
        return Err(ApiError::InvalidRequest(
            "expected a JSON object with `channel` and `placement`, found an array".into(),
        ));
    }
    scratch.clear();
    scratch.extend_from_slice(body);
    let fast = SIMD_BUFFERS.with(|buffers| match buffers.try_borrow_mut() {
        Ok(mut buffers) => {
            simd_json::serde::from_slice_with_buffers::<DecideBody<'_>>(scratch, &mut buffers)
        }
        Err(_) => simd_json::serde::from_slice::<DecideBody<'_>>(scratch),
    });
    match fast {
        Ok(parsed) => parsed.validate(),
        Err(_) => Err(explain_failure(body)),
    }
}

/// Parses a body that failed again with serde_json and field paths, to say what and where in
/// words a client can act on (simd-json's own errors name its internals).
fn explain_failure(body: &[u8]) -> ApiError {
    let mut de = serde_json::Deserializer::from_slice(body);
    match serde_path_to_error::deserialize::<_, DecideBody<'_>>(&mut de) {
        Ok(parsed) => match de.end() {
            Err(e) => ApiError::from_json("", &e),
            // Both parsers disagree on this body: refuse it in simd-json's words.
            Ok(()) => match parsed.validate() {
                Err(e) => e,
                Ok(_) => ApiError::unreadable(body),
            },
        },
        Err(e) => {
            let path = e.path().to_string();
            ApiError::from_json(&path, e.inner())
        }
    }
}

/// Decodes a query string: `customer_id`, `visitor_id`, `channel`, `placement`, `limit`,
/// `sticky`, `explain` (`true` or `false` in any case), and `context.KEY=VALUE` (a value that parses as a number is a number).
/// Any other parameter is reported in the answer's `warnings`.
pub fn decode_query(query: &str) -> Result<DecideBody<'static>, ApiError> {
    let mut body = DecideBody::empty();
    let (mut channel, mut placement) = (false, false);
    let mut seen = [false; DECIDE_FIELDS.len()];
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        // Bytes that are not UTF-8 come back replaced by U+FFFD: refused, as in a body, unless
        // the query spelt U+FFFD itself.
        if (k.contains('\u{FFFD}') || v.contains('\u{FFFD}'))
            && !query.to_ascii_uppercase().contains("%EF%BF%BD")
        {
            return Err(ApiError::InvalidRequest(format!(
                "{}: not UTF-8 once percent-decoded",
                shown(&k)
            )));
        }
        // One value per parameter, as one field per key in a body.
        let twice = match DECIDE_FIELDS.iter().position(|f| *f == k) {
            Some(i) => std::mem::replace(&mut seen[i], true),
            None => k
                .strip_prefix("context.")
                .is_some_and(|c| body.context.0.iter().any(|(have, _)| have == c)),
        };
        if twice {
            return Err(ApiError::InvalidRequest(format!(
                "`{}` given twice: each parameter once",
                shown(&k)
            )));
        }
        match &*k {
            "customer_id" => body.customer_id = Some(Cow::Owned(v.into_owned())),
            "visitor_id" => body.visitor_id = Some(Cow::Owned(v.into_owned())),
            "sticky" => {
                body.sticky = Sticky::parse(&v).ok_or_else(|| {
                    ApiError::InvalidRequest(format!(
                        "sticky: `{}` is neither customer nor visitor",
                        shown(&v)
                    ))
                })?
            }
            "channel" => {
                body.channel = Cow::Owned(v.into_owned());
                channel = true;
            }
            "placement" => {
                body.placement = Cow::Owned(v.into_owned());
                placement = true;
            }
            "limit" => {
                let n = v
                    .parse::<u64>()
                    .ok()
                    .or_else(|| v.parse::<f64>().ok().and_then(whole));
                body.limit = Some(n.ok_or_else(|| {
                    ApiError::InvalidRequest(format!(
                        "limit: `{}` is not a whole number",
                        shown(&v)
                    ))
                })?)
            }
            "explain" => {
                body.explain = if v.eq_ignore_ascii_case("true") {
                    true
                } else if v.eq_ignore_ascii_case("false") {
                    false
                } else {
                    return Err(ApiError::InvalidRequest(format!(
                        "explain: `{}` is neither true nor false",
                        shown(&v)
                    )));
                }
            }
            other => {
                if let Some(key) = other.strip_prefix("context.") {
                    if body.context.0.len() == MAX_CONTEXT {
                        return Err(ApiError::InvalidRequest(format!(
                            "context: more than {MAX_CONTEXT} entries"
                        )));
                    }
                    let value = match v.parse::<f64>() {
                        Ok(n) if n.is_finite() => CtxValue::Num(n),
                        _ => CtxValue::Str(Cow::Owned(v.into_owned())),
                    };
                    body.context.0.push((Cow::Owned(key.to_owned()), value));
                } else {
                    body.note_unknown(Cow::Owned(other.to_owned()));
                }
            }
        }
    }
    if !channel {
        return Err(ApiError::InvalidRequest(missing("channel", &body.unknown)));
    }
    if !placement {
        return Err(ApiError::InvalidRequest(missing(
            "placement",
            &body.unknown,
        )));
    }
    body.validate()
}

/// A required field the request lacks, named beside the unknown one likely meant for it.
fn missing(field: &str, unknown: &[Cow<'_, str>]) -> String {
    super::typos::missing(field, "request", unknown.iter().map(|u| &**u))
}

/// At most 64 characters of a client's value, for an error message.
fn shown(v: &str) -> String {
    v.chars().take(64).collect()
}

#[cfg(test)]
mod tests;
