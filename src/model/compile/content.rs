//! Content as the answer carries it: a content object (`title`, `body`, `image_url`,
//! `cta_url`) checked, and every piece of JSON the engine copies into answers (content, offer
//! ids, fallback lists, the model's name) encoded here, one way: serde structs through
//! [`encode`].

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
    offer_id: &'a str,
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

/// Reads one content object; `None` after a fault.
pub(super) fn read_content<'a>(
    f: &mut Faults,
    v: &'a Value<'_>,
    path: &str,
) -> Option<Content<'a>> {
    let obj = f.object(v, path, CONTENT_KEYS)?;
    f.checked(|f| {
        let title = f
            .req(obj, "title", path)
            .and_then(|v| f.string(v, &join(path, "title"), MAX_TITLE_BYTES));
        let body = match obj.get("body") {
            Some(v) => match v.as_str() {
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
            None => Some(""),
        };
        let mut url = |key: &str| {
            let p = join(path, key);
            let s = f
                .req(obj, key, path)
                .and_then(|v| f.string(v, &p, MAX_URL_BYTES))?;
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
) -> Option<BTreeMap<String, Box<str>>> {
    let obj = f.map(v, path)?;
    f.checked(|f| {
        let mut out = BTreeMap::new();
        for ch in channels {
            match obj.get(*ch) {
                Some(c) => {
                    if let Some(json) = read_content(f, c, &join(path, ch)).and_then(|c| encode(&c))
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
