//! Reading a request body: the one place that enforces the content type, the size limit and
//! the time limit, for every route that takes JSON. A leaf: it knows no route.

use std::future::Future;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::Request;

use super::error::ApiError;

/// Reads a JSON body within the size limit and the time limit, refusing other content types.
pub async fn read_json_body(
    req: Request<Incoming>,
    limit: usize,
    timeout: Duration,
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
    if let Some(len) = req.headers().get(CONTENT_LENGTH) {
        if len
            .to_str()
            .ok()
            .and_then(|l| l.parse::<u64>().ok())
            .is_some_and(|l| l > limit as u64)
        {
            return Err(ApiError::PayloadTooLarge(limit));
        }
    }
    let mut collect = std::pin::pin!(Limited::new(req.into_body(), limit).collect());
    // A small body usually arrives with its head and is whole at the first poll: the timer
    // (a clock read, an entry to drop) is armed only for a body still on its way.
    let first = std::future::poll_fn(|cx| Poll::Ready(collect.as_mut().poll(cx))).await;
    let collected = match first {
        Poll::Ready(c) => c,
        Poll::Pending => tokio::time::timeout(timeout, collect)
            .await
            .map_err(|_| ApiError::RequestTimeout(timeout))?,
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
