//! Content as the answer carries it: a content object (`title`, `body`, `image_url`,
//! `cta_url`) checked for what its channel needs (see [`ContentKind`]; a field a channel does
//! not need is an empty string in answers), and every piece of JSON the engine copies into
//! answers (content, offer ids, fallback lists, the model's name) encoded here, one way: serde
//! structs through [`encode`].

use std::collections::BTreeMap;

use serde::Serialize;
use simd_json::prelude::*;

use crate::model::walk::{is_http_url, join, Collects, Faults, Value};
use crate::model::{MAX_BODY_BYTES, MAX_TITLE_BYTES, MAX_URL_BYTES};

/// A content object's fields.
pub(crate) const CONTENT_KEYS: &[&str] = &["title", "body", "image_url", "cta_url"];

/// One content object, fields in the order the answer shows them.
#[derive(Serialize)]
pub(super) struct Content<'a> {
    title: &'a str,
    body: &'a str,
    image_url: &'a str,
    cta_url: &'a str,
}

/// One entry of a fallback list as the answer shows it: ranked, with no score.
#[derive(Serialize)]
pub(super) struct FallbackItem<'a> {
    pub(super) offer_id: &'a str,
    rank: usize,
    score: u8,
    propensity: u8,
    content: Content<'a>,
}

impl<'a> FallbackItem<'a> {
    /// The entry at 1-based `rank`.
    pub(super) fn new(offer_id: &'a str, rank: usize, content: Content<'a>) -> Self {
        FallbackItem {
            offer_id,
            rank,
            score: 0,
            propensity: 0,
            content,
        }
    }
}

/// The answer's `model` object.
#[derive(Serialize)]
struct ModelRef<'a> {
    name: &'a str,
    version: &'a str,
}

/// Encodes a value as compact JSON, once at load, for the engine to copy into answers.
pub(super) fn encode<T: Serialize + ?Sized>(v: &T) -> Option<Box<str>> {
    serde_json::to_string(v).ok().map(Into::into)
}

/// `{"name":..,"version":..}` for the answer.
pub(super) fn model_json(name: &str, version: &str) -> Option<Box<str>> {
    encode(&ModelRef { name, version })
}

/// What a channel's content must hold, by the channel's name: an SMS sends a body; an e-mail
/// a subject (`title`) and a body; a push notification a title and a body; any other channel
/// (a page, an app) shows a title, an image and a call to action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ContentKind {
    /// `sms`.
    Sms,
    /// `email`.
    Email,
    /// `push`.
    Push,
    /// Any other channel.
    Page,
}

impl ContentKind {
    /// The kind of the channel named `name`.
    pub(crate) fn of(name: &str) -> Self {
        match name {
            "sms" => ContentKind::Sms,
            "email" => ContentKind::Email,
            "push" => ContentKind::Push,
            _ => ContentKind::Page,
        }
    }

    fn needs(self, field: &str) -> bool {
        matches!(
            (self, field),
            (ContentKind::Sms, "body")
                | (ContentKind::Email | ContentKind::Push, "title" | "body")
                | (ContentKind::Page, "title" | "image_url" | "cta_url")
        )
    }

    fn why(self) -> &'static str {
        match self {
            ContentKind::Sms => "an SMS sends its body",
            ContentKind::Email => "an e-mail needs a subject (`title`) and a body",
            ContentKind::Push => "a push notification needs a title and a body",
            ContentKind::Page => "this channel shows a title, an image and a call to action",
        }
    }
}

/// How an SMS body is sent and in how many segments: GSM-7 (the GSM 03.38 alphabet, its
/// extension characters taking two septets) when every character has a GSM-7 form, else UCS-2
/// (UTF-16 units). One segment holds 160 septets or 70 units; a concatenated message 153 or 67
/// a segment, and a character (an escape pair, a surrogate pair) is never split across two.
pub(crate) fn sms_segments(body: &str) -> (&'static str, u32) {
    const BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
    const EXTENSION: &str = "^{}\\[~]|€\u{c}";
    let gsm7 = body
        .chars()
        .all(|c| BASIC.contains(c) || EXTENSION.contains(c));
    let (encoding, single, part): (_, u32, u32) = if gsm7 {
        ("GSM-7", 160, 153)
    } else {
        ("UCS-2", 70, 67)
    };
    let width = |c: char| -> u32 {
        match (gsm7, EXTENSION.contains(c)) {
            (true, true) => 2,
            (true, false) => 1,
            (false, _) => c.len_utf16() as u32,
        }
    };
    if body.chars().map(width).sum::<u32>() <= single {
        return (encoding, 1);
    }
    let (mut segments, mut used) = (1u32, 0u32);
    for w in body.chars().map(width) {
        if used + w > part {
            segments += 1;
            used = 0;
        }
        used += w;
    }
    (encoding, segments)
}

/// Reads one content object for a channel of `kind` (an SMS body at most `max_segments`
/// long); `None` after a fault.
pub(super) fn read_content<'a>(
    f: &mut Faults,
    v: &'a Value<'_>,
    path: &str,
    kind: ContentKind,
    max_segments: Option<u32>,
) -> Option<Content<'a>> {
    let obj = f.object(v, path, CONTENT_KEYS)?;
    f.checked(|f| {
        let missing = |f: &mut Faults, key: &str| {
            f.push(
                &join(path, key),
                format!("missing field: {}", kind.why()),
            );
        };
        let title = match obj.get("title") {
            Some(v) => f.string(v, &join(path, "title"), MAX_TITLE_BYTES),
            None if kind.needs("title") => {
                missing(f, "title");
                None
            }
            None => Some(""),
        };
        let body = match obj.get("body") {
            Some(v) => match v.as_str() {
                Some("") if kind.needs("body") => {
                    missing(f, "body");
                    None
                }
                Some(s) if s.len() <= MAX_BODY_BYTES => Some(s),
                Some(_) => {
                    f.push(
                        &join(path, "body"),
                        format!("longer than {MAX_BODY_BYTES} bytes"),
                    );
                    None
                }
                None => {
                    f.push(&join(path, "body"), "expected a string");
                    None
                }
            },
            None if kind.needs("body") => {
                missing(f, "body");
                None
            }
            None => Some(""),
        };
        if let (Some(b), Some(max), ContentKind::Sms) = (body, max_segments, kind) {
            let (encoding, n) = sms_segments(b);
            if n > max {
                f.push(
                    &join(path, "body"),
                    format!(
                        "{n} SMS segments in {encoding}, more than the placement's `max_sms_segments` of {max}"
                    ),
                );
            }
        }
        let mut url = |key: &str| {
            let p = join(path, key);
            let s = match obj.get(key) {
                Some(v) => f.string(v, &p, MAX_URL_BYTES)?,
                None if kind.needs(key) => {
                    missing(f, key);
                    return None;
                }
                None => return Some(""),
            };
            if !is_http_url(s) {
                f.push(&p, format!("`{s}` is not an absolute http(s) URL"));
                return None;
            }
            Some(s)
        };
        let image_url = url("image_url");
        let cta_url = url("cta_url");
        Some(Content {
            title: title?,
            body: body?,
            image_url: image_url?,
            cta_url: cta_url?,
        })
    })
}

/// An offer's `content`: one object per channel it claims, no more, encoded by channel name.
pub(super) fn read_offer_content(
    f: &mut Faults,
    v: &Value<'_>,
    path: &str,
    channels: &[&str],
    sms_max_segments: Option<u32>,
) -> Option<BTreeMap<String, Box<str>>> {
    let obj = f.map(v, path)?;
    f.checked(|f| {
        let mut out = BTreeMap::new();
        for ch in channels {
            match obj.get(*ch) {
                Some(c) => {
                    let kind = ContentKind::of(ch);
                    if let Some(json) = read_content(f, c, &join(path, ch), kind, sms_max_segments)
                        .and_then(|c| encode(&c))
                    {
                        out.insert((*ch).to_owned(), json);
                    }
                }
                None => f.push(
                    &join(path, ch),
                    format!("the offer claims channel `{ch}` but has no content for it"),
                ),
            }
        }
        let mut extra: Vec<&str> = obj
            .keys()
            .map(|k| k.as_ref())
            .filter(|k| !channels.contains(k))
            .collect();
        extra.sort_unstable();
        for k in extra {
            f.push(
                &join(path, k),
                format!("content for channel `{k}`, which the offer does not claim in `channels`"),
            );
        }
        Some(out)
    })
}
