//! Reading a request body: the one place that enforces the content type, the size limit and
//! the time limit, for every route that takes JSON. A leaf: it knows no route.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::Request;

use super::error::ApiError;

/// The memory that public request bodies still arriving may hold together. A body whole at
/// its first read (nearly every one) takes none of it; one still on its way holds the bytes it
/// has received until it is read, so thousands of clients sending bodies slowly cannot hold
/// more than this between them, whatever `--max-connections` allows, and a client that only
/// declares a large `Content-Length` holds nothing it has not sent.
pub struct SlowBodies {
    held: AtomicUsize,
    max: usize,
}

/// What slow bodies may hold at least, and in bodies at the size limit.
const SLOW_BODIES_BYTES: usize = 64 << 20;
const SLOW_BODIES_AT_LIMIT: usize = 16;

impl SlowBodies {
    /// A budget for bodies of at most `limit` bytes: 64 MiB or 16 bodies at the limit,
    /// whichever is larger.
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

    fn take(&self, bytes: usize) -> bool {
        self.held
            .fetch_update(Relaxed, Relaxed, |h| {
                h.checked_add(bytes).filter(|&n| n <= self.max)
            })
            .is_ok()
    }

    fn give_back(&self, bytes: usize) {
        self.held.fetch_sub(bytes, Relaxed);
    }
}

/// One body's account with [`SlowBodies`]: until the body is found still arriving, the bytes
/// it has received; from then on (armed), the bytes it holds of the budget, given back when
/// dropped. The body and the read that arms it run on one task; the atomics only make it
/// shareable between them.
struct Meter<'a> {
    budget: Option<&'a SlowBodies>,
    armed: AtomicBool,
    bytes: AtomicUsize,
}

impl<'a> Meter<'a> {
    fn new(budget: Option<&'a SlowBodies>) -> Self {
        Meter {
            budget,
            armed: AtomicBool::new(false),
            bytes: AtomicUsize::new(0),
        }
    }

    /// Counts `bytes` received; false when an armed body would pass the budget.
    fn received(&self, bytes: usize) -> bool {
        if self.armed.load(Relaxed) {
            self.hold(bytes)
        } else {
            self.bytes.fetch_add(bytes, Relaxed);
            true
        }
    }

    /// The body is still arriving after its first read: it holds what it has received, and
    /// from now on each part as it comes; false when that passes the budget.
    fn arm(&self) -> bool {
        self.armed.store(true, Relaxed);
        self.hold(self.bytes.swap(0, Relaxed))
    }

    fn hold(&self, bytes: usize) -> bool {
        let ok = self.budget.is_none_or(|b| b.take(bytes));
        if ok {
            self.bytes.fetch_add(bytes, Relaxed);
        }
        ok
    }
}

impl Drop for Meter<'_> {
    fn drop(&mut self) {
        if let (Some(budget), true) = (self.budget, *self.armed.get_mut()) {
            budget.give_back(*self.bytes.get_mut());
        }
    }
}

/// The slow-bodies budget was spent while this body was still arriving.
#[derive(Debug)]
struct BudgetSpent;

impl std::fmt::Display for BudgetSpent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the slow-bodies budget is spent")
    }
}

impl std::error::Error for BudgetSpent {}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A body whose data frames are counted by its [`Meter`] as they arrive.
struct Metered<'a, B> {
    inner: B,
    meter: &'a Meter<'a>,
}

impl<B> Body for Metered<'_, B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match polled {
            Poll::Ready(Some(Ok(frame))) => {
                let n = frame.data_ref().map_or(0, Bytes::len);
                if self.meter.received(n) {
                    Poll::Ready(Some(Ok(frame)))
                } else {
                    Poll::Ready(Some(Err(Box::new(BudgetSpent))))
                }
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The rest of the body is never read, so the connection ends with the answer.
fn budget_spent() -> ApiError {
    ApiError::Unavailable(
        "too many request bodies are still arriving at once (slow clients): retry, or send the \
         body with its head"
            .into(),
    )
    .before_body()
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
    let meter = Meter::new(slow);
    let body = Metered {
        inner: req.into_body(),
        meter: &meter,
    };
    let mut collect = std::pin::pin!(Limited::new(body, limit).collect());
    // A small body usually arrives with its head and is whole at the first poll: the timer
    // (a clock read, an entry to drop) and the budget apply only to a body still on its way.
    let first = std::future::poll_fn(|cx| Poll::Ready(collect.as_mut().poll(cx))).await;
    let collected = match first {
        Poll::Ready(c) => c,
        Poll::Pending => {
            if !meter.arm() {
                return Err(budget_spent());
            }
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
        Err(e) if e.is::<BudgetSpent>() => Err(budget_spent()),
        Err(e) => Err(ApiError::InvalidRequest(format!(
            "could not read the body: {e}"
        ))),
    }
}
