//! Reading a request body: the one place that enforces the content type, the size limit and
//! the time limit, for every route that takes JSON. A leaf: it knows no route.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::Request;

use super::error::ApiError;

/// The memory that public request bodies still arriving may hold together. A body whole at
/// its first read (nearly every one) takes none of it; one still on its way holds its size
/// (declared, else the limit) until it is read, so thousands of clients sending bodies slowly
/// cannot hold more than this between them, whatever `--max-connections` allows.
pub struct SlowBodies {
    held: AtomicUsize,
    max: usize,
}

/// What slow bodies may hold at least, and in bodies at the size limit.
const SLOW_BODIES_BYTES: usize = 64 << 20;
const SLOW_BODIES_AT_LIMIT: usize = 16;

impl SlowBodies {
    /// A budget for bodies of at most `limit` bytes: 64 MiB, or 16 bodies at the limit.
    pub fn new(limit: usize) -> Self {
        SlowBodies {
            held: AtomicUsize::new(0),
            max: SLOW_BODIES_BYTES.max(limit.saturating_mul(SLOW_BODIES_AT_LIMIT)),
        }
    }

    /// Bytes held now by bodies still arriving.
    pub fn held(&self) -> usize {
        self.held.load(Relaxed)
    }

    fn hold(&self, bytes: usize) -> Option<Held<'_>> {
        self.held
            .fetch_update(Relaxed, Relaxed, |h| {
                h.checked_add(bytes).filter(|&n| n <= self.max)
            })
            .ok()
            .map(|_| Held(self, bytes))
    }
}

/// A slow body's share of [`SlowBodies`], given back when dropped.
struct Held<'a>(&'a SlowBodies, usize);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.held.fetch_sub(self.1, Relaxed);
    }
}

/// Reads a JSON body within the size limit and the time limit, refusing other content types;
/// a body still arriving after the first read holds its share of `slow` (when given: public
/// routes) or is refused with 503 when the budget is spent.
pub async fn read_json_body(
    req: Request<Incoming>,
    limit: usize,
    timeout: Duration,
    slow: Option<&SlowBodies>,
) -> Result<Bytes, ApiError> {
    if let Some(ct) = req.headers().get(CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("");
        let essence = ct.split(';').next().unwrap_or("").trim();
        if !essence.eq_ignore_ascii_case("application/json") {
            return Err(ApiError::UnsupportedMediaType(format!(
                "content-type `{}` is not supported; send application/json",
                ct.chars().take(100).collect::<String>()
            )));
        }
    }
    if let Some(enc) = req.headers().get(CONTENT_ENCODING) {
        let enc = enc.to_str().unwrap_or("").trim();
        if !enc.eq_ignore_ascii_case("identity") {
            return Err(ApiError::UnsupportedMediaType(format!(
                "content-encoding `{}` is not supported; send the body uncompressed",
                enc.chars().take(100).collect::<String>()
            )));
        }
    }
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|len| len.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|l| l > limit as u64) {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    let mut collect = std::pin::pin!(Limited::new(req.into_body(), limit).collect());
    // A small body usually arrives with its head and is whole at the first poll: the timer
    // (a clock read, an entry to drop) is armed only for a body still on its way.
    let first = std::future::poll_fn(|cx| Poll::Ready(collect.as_mut().poll(cx))).await;
    let collected = match first {
        Poll::Ready(c) => c,
        Poll::Pending => {
            let size = declared.map_or(limit, |l| l as usize);
            let _held = match slow {
                Some(budget) => Some(budget.hold(size).ok_or_else(|| {
                    ApiError::Unavailable(
                        "too many request bodies are still arriving at once (slow clients): \
                         retry, or send the body with its head"
                            .into(),
                    )
                })?),
                None => None,
            };
            tokio::time::timeout(timeout, collect)
                .await
                .map_err(|_| ApiError::RequestTimeout(timeout))?
        }
    };
    match collected {
        Ok(c) => {
            let body = c.to_bytes();
            // JSON sent over a network has no byte-order mark (RFC 8259, 8.1); a parser would
            // say "expected value at column 1", which names nothing the client can see.
            if body.starts_with(b"\xEF\xBB\xBF") {
                return Err(ApiError::MalformedJson(
                    "the body starts with a byte-order mark (EF BB BF): send UTF-8 JSON \
                     without one"
                        .into(),
                ));
            }
            Ok(body)
        }
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(ApiError::PayloadTooLarge(limit))
        }
        Err(e) => Err(ApiError::InvalidRequest(format!(
            "could not read the body: {e}"
        ))),
    }
}
