//! What a client got wrong without being refused: request fields the contract does not have
//! (answered in `warnings`) and channels or placements the model does not have (fallback reason
//! `unknown_placement`). A page must never break for these, so they are answered with content;
//! this module makes them visible instead: counted for `/metrics`, and each unknown channel and
//! placement logged once, the first time it is seen.
//!
//! The "seen" set is a fixed table of name hashes filled with compare-and-swap: no lock, no
//! allocation, and bounded memory however many distinct names clients invent. Once it is full,
//! new names are still counted but no longer logged (one line says so). It owns no request
//! state and decides nothing.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use super::codec::{DecideBody, DECIDE_FIELDS, MAX_UNKNOWN_NAMED};
use crate::engine::{CompiledModel, Request};
use crate::metrics::prom::{Collect, Exposition, Kind};

/// Distinct unknown channel/placement pairs logged at most.
const SEEN_SLOTS: usize = 1024;
/// Slots tried after the one a name hashes to.
const PROBES: usize = 8;

/// Counters and the once-per-name log of client mistakes the server answers anyway.
pub struct Typos {
    seen: Box<[AtomicU64]>,
    full_logged: AtomicBool,
    unknown_fields: [AtomicU64; 2],
    unknown_placements: AtomicU64,
}

/// Which route met an unknown field.
#[derive(Debug, Clone, Copy)]
pub enum Route {
    /// `/v1/decide` (body fields or query parameters).
    Decide = 0,
    /// `/v1/events` (fields of an event).
    Events = 1,
}

impl Route {
    fn as_str(self) -> &'static str {
        match self {
            Route::Decide => "decide",
            Route::Events => "events",
        }
    }
}

impl Default for Typos {
    fn default() -> Self {
        Typos {
            seen: (0..SEEN_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            full_logged: AtomicBool::new(false),
            unknown_fields: Default::default(),
            unknown_placements: AtomicU64::new(0),
        }
    }
}

impl Typos {
    /// Counts `n` unknown fields met on a route.
    #[inline]
    pub fn unknown_fields(&self, route: Route, n: usize) {
        if n > 0 {
            self.unknown_fields[route as usize].fetch_add(n as u64, Relaxed);
        }
    }

    /// Counts a decision for a channel or placement the model does not have, logs the pair the
    /// first time it is seen, and returns the warning the answer carries (naming what the model
    /// has instead, so a typo shows at once).
    pub fn unknown_placement(&self, model: &CompiledModel, req: &Request<'_>) -> String {
        self.unknown_placements.fetch_add(1, Relaxed);
        let (channel, placement) = (req.channel, req.placement);
        let known = model.channels.iter().find(|c| &*c.name == channel);
        let warning = match known {
            Some(c) => format!(
                "placement: `{}` is not a placement of channel `{}` in model {} {}; it has {}",
                shown(placement),
                shown(channel),
                model.name,
                model.version,
                names(c.slots.iter().map(|s| &*s.placement))
            ),
            None => format!(
                "channel: `{}` is not a channel of model {} {}; it has {}",
                shown(channel),
                model.name,
                model.version,
                names(model.channels.iter().map(|c| &*c.name))
            ),
        };
        if self.first_time(channel, placement) {
            tracing::warn!(
                model = &*model.name,
                version = &*model.version,
                channel,
                placement,
                "unknown channel or placement in a decide request: answered with fallback content (reason unknown_placement)"
            );
        }
        warning
    }

    /// Decisions for unknown channels or placements so far.
    pub fn unknown_placements(&self) -> u64 {
        self.unknown_placements.load(Relaxed)
    }

    /// True the first time a pair is seen (while the table has room).
    fn first_time(&self, channel: &str, placement: &str) -> bool {
        let mut h = crc32fast::Hasher::new();
        h.update(channel.as_bytes());
        h.update(&[0]);
        h.update(placement.as_bytes());
        let low = u64::from(h.finalize());
        let mut h2 = crc32fast::Hasher::new_with_initial(0x9e37_79b9);
        h2.update(placement.as_bytes());
        h2.update(&[0]);
        h2.update(channel.as_bytes());
        // 64 bits from two CRCs, never 0 (0 marks a free slot).
        let hash = (u64::from(h2.finalize()) << 32 | low) | 1;
        let start = hash as usize % SEEN_SLOTS;
        for i in 0..PROBES {
            let slot = &self.seen[(start + i) % SEEN_SLOTS];
            match slot.compare_exchange(0, hash, Relaxed, Relaxed) {
                Ok(_) => return true,
                Err(held) if held == hash => return false,
                Err(_) => {}
            }
        }
        if !self.full_logged.swap(true, Relaxed) {
            tracing::warn!(
                "many distinct unknown channels and placements: further ones are counted (nextbest_unknown_placement_decisions_total) but not logged"
            );
        }
        false
    }
}

/// The warnings for a decide request's unknown fields (empty, without allocating, when it has
/// none).
pub fn field_warnings(body: &DecideBody<'_>) -> Vec<String> {
    let mut out = Vec::new();
    for name in &body.unknown {
        // Only a query string can leave `context` unknown: it takes one parameter per value.
        if name == "context" {
            out.push(
                "`context` was ignored: in a query string, give each context value as \
                 `context.KEY=VALUE` (`context.page=plans`)"
                    .into(),
            );
            continue;
        }
        out.push(format!(
            "`{}` is not a field of a decide request and was ignored; the fields are {}",
            shown(name),
            DECIDE_FIELDS.join(", ")
        ));
    }
    if body.unknown_count > body.unknown.len() {
        out.push(format!(
            "and {} more unknown fields (only the first {MAX_UNKNOWN_NAMED} are named)",
            body.unknown_count - body.unknown.len()
        ));
    }
    out
}

/// Says which context values came as text where the model reads numbers (`"250"` from a form
/// field): as text they fail every comparison, and the answer would not say why.
pub fn numbers_as_text(
    model: &crate::engine::CompiledModel,
    req: &crate::engine::Request<'_>,
    out: &mut Vec<String>,
) {
    for (key, text) in model.numbers_sent_as_text(req.context) {
        // ` 250` from `context.cart_value=+250`: form decoding reads a `+` as a space.
        let spaced = if text.starts_with(' ') {
            " (a space before the number: in a query string a `+` reads as a space, so write `250`, not `+250`)"
        } else {
            ""
        };
        out.push(format!(
            "context.{}: \"{}\" is text, and the model reads this key as a number: send it as a JSON number (as text it fails every comparison){spaced}",
            shown(key),
            shown(text)
        ));
    }
}

/// A required field the `place` (request, body) lacks, with the field it has that was likely
/// meant for it (`placment`, `Channel`, `evnets`).
pub fn missing<'a>(field: &str, place: &str, written: impl IntoIterator<Item = &'a str>) -> String {
    match crate::near::nearest(field, written) {
        Some(near) => format!(
            "missing field `{field}`: the {place} has `{}`; did you mean `{field}`?",
            shown(near)
        ),
        None => format!("missing field `{field}`"),
    }
}

/// Whether an id has white space at either end (`"C0000042 "`), which every lookup keeps.
pub fn spaced(id: &str) -> bool {
    id.starts_with(char::is_whitespace) || id.ends_with(char::is_whitespace)
}

/// Says that an id has white space around it, and `so`, what keeping it as written does
/// (a customer the snapshot lacks, a visitor's history that is another's).
pub fn spaced_id(field: &str, id: Option<&str>, so: &str) -> Option<String> {
    let id = id.filter(|id| spaced(id))?;
    Some(format!(
        "{field}: \"{}\" has white space around it, and ids are kept as written: {so} (trim it)",
        shown(id)
    ))
}

/// Says which context keys a request gives that the model does not read but that are a slip
/// away from one it does (`pgae` for `page`), and any empty key: the value is ignored, so the
/// page would get content decided without it and no word of why. Keys far from every key the
/// model reads stay silent: pages send context for other consumers too, and so do keys of
/// three characters or fewer (`age` is a key of its own more often than a slip for `page`).
pub fn context_key_slips(
    model: &crate::engine::CompiledModel,
    req: &crate::engine::Request<'_>,
    out: &mut Vec<String>,
) {
    let known = &model.context_keys;
    for (key, _) in req.context {
        if key.is_empty() {
            out.push("context: a key is empty, and its value was ignored".into());
            continue;
        }
        if key.chars().nth(3).is_none()
            || known.iter().any(|k| **k == **key)
            || !known.iter().any(|k| may_be_near(key, k))
        {
            continue;
        }
        if let Some(near) = crate::near::nearest(key, known.iter().map(|k| &**k)) {
            out.push(format!(
                "context.{}: model {} {} reads no such key, and its value was ignored: did you mean `{near}`?",
                shown(key),
                model.name,
                model.version
            ));
        }
    }
}

/// Whether `known` can be near enough to `typed` for [`crate::near::nearest`] to pick it: a
/// check of lengths and letters that spares the edit distance (and its allocation) for the
/// keys a page sends for others, on every request.
fn may_be_near(typed: &str, known: &str) -> bool {
    let letters = |s: &str| {
        s.bytes()
            .fold(0u64, |m, b| m | 1 << (b.to_ascii_lowercase() % 64))
    };
    let edits = if typed.len() >= 6 { 2 } else { 1 };
    let (a, b) = (typed.len(), known.len());
    (known.starts_with(typed) && known.as_bytes().get(a) == Some(&b'_'))
        || (a.abs_diff(b) <= edits
            && (letters(typed) ^ letters(known)).count_ones() as usize <= 2 * edits)
}

/// At most 64 characters of a client's name, for a message.
fn shown(name: &str) -> String {
    name.chars().take(64).collect()
}

/// Up to 8 names, comma-separated, then how many more.
fn names<'a>(all: impl ExactSizeIterator<Item = &'a str>) -> String {
    let n = all.len();
    let mut out: Vec<String> = all.take(8).map(|s| format!("`{s}`")).collect();
    if n > 8 {
        out.push(format!("and {} more", n - 8));
    }
    if out.is_empty() {
        "none".into()
    } else {
        out.join(", ")
    }
}

impl Collect for Typos {
    fn collect(&self, out: &mut Exposition) {
        let mut f = out.family(
            "nextbest_unknown_fields_total",
            Kind::Counter,
            "Request fields (or decide query parameters) the contract does not have, reported in the answer's warnings, by route.",
        );
        for route in [Route::Decide, Route::Events] {
            f.sample(
                &[("route", route.as_str())],
                self.unknown_fields[route as usize].load(Relaxed),
            );
        }
        out.family(
            "nextbest_unknown_placement_decisions_total",
            Kind::Counter,
            "Decide requests naming a channel or placement the model does not have (answered with fallback content, reason unknown_placement).",
        )
        .sample(&[], self.unknown_placements());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_pair_is_new_once_and_the_table_stays_bounded() {
        let t = Typos::default();
        assert!(t.first_time("web", "plan_page"));
        assert!(!t.first_time("web", "plan_page"));
        assert!(t.first_time("Web", "plans_page"));
        assert!(t.first_time("plan_page", "web"), "order matters");
        let fresh = (0..5000)
            .filter(|i| t.first_time("web", &format!("p{i}")))
            .count();
        assert!(fresh <= SEEN_SLOTS, "{fresh} logged");
        assert!(fresh > SEEN_SLOTS / 2, "only {fresh} logged");
        assert!(t.full_logged.load(Relaxed));
        assert!(!t.first_time("web", "plan_page"), "still remembered");
    }

    #[test]
    fn the_quick_check_passes_every_key_the_edit_distance_would_pick() {
        let keys = [
            "page",
            "utm_campaign",
            "cart_value",
            "cart_type",
            "ab",
            "device_os",
        ];
        let mut typed: Vec<String> = Vec::new();
        for k in keys {
            let b = k.as_bytes();
            for i in 0..b.len() {
                let mut s = b.to_vec();
                s.remove(i);
                typed.push(String::from_utf8(s.clone()).unwrap());
                for c in [b'x', b'_', b'A'] {
                    let mut t = b.to_vec();
                    t[i] = c;
                    typed.push(String::from_utf8(t.clone()).unwrap());
                    t.insert(i, c);
                    typed.push(String::from_utf8(t).unwrap());
                }
                if i + 1 < b.len() {
                    let mut t = b.to_vec();
                    t.swap(i, i + 1);
                    let mut u = t.clone();
                    typed.push(String::from_utf8(t).unwrap());
                    u[0] = b'z';
                    typed.push(String::from_utf8(u).unwrap());
                }
            }
            typed.push(k.to_ascii_uppercase());
            typed.push(k.split('_').next().unwrap().to_owned());
        }
        let mut picked = 0;
        for t in &typed {
            for k in keys {
                if crate::near::nearest(t, [k]).is_some() {
                    picked += 1;
                    assert!(may_be_near(t, k), "`{t}` near `{k}` but skipped");
                }
            }
        }
        assert!(picked > 100, "only {picked} slips picked");
        assert!(!may_be_near("lang", "page"));
        assert!(!may_be_near("utm_source", "page"));
    }
}
