//! hyper answers a request whose head it cannot parse by itself, before any handler runs: a
//! head over the 16 KiB buffer gets `431`, a malformed request line or header `400`, an
//! over-long URI `414`, each with an empty body. Clients would then meet the one error without
//! the `{"error", "detail"}` body every other refusal has. This module wraps a connection's
//! socket and, on the way out, replaces such an answer with the same status and a JSON body.
//!
//! hyper's own answer is told from a handler's by its shape: one of those statuses with
//! `content-length: 0` (every handler's error has a body). The check costs one byte comparison
//! on each write that starts a response. After such an answer hyper closes the connection, so
//! the replacement says `connection: close`. The module owns no request state and answers
//! nothing itself otherwise.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A socket whose outgoing automatic error answers get a JSON body.
pub struct JsonHeadErrors<S> {
    inner: S,
    /// A replacement answer still to write, and how much of it is written.
    pending: Option<(&'static [u8], usize)>,
}

impl<S> JsonHeadErrors<S> {
    /// Wraps a connection's socket.
    pub fn new(inner: S) -> Self {
        JsonHeadErrors {
            inner,
            pending: None,
        }
    }
}

/// The replacement for hyper's automatic answer starting `head`, if it is one.
fn replacement(head: &[u8]) -> Option<&'static [u8]> {
    // "HTTP/1.1 4xx ": only answers that may be hyper's own get a closer look.
    if head.len() < 13 || head[9] != b'4' || !head.starts_with(b"HTTP/1.") {
        return None;
    }
    let empty = head
        .windows(19)
        .any(|w| w.eq_ignore_ascii_case(b"content-length: 0\r\n"));
    if !empty {
        return None;
    }
    let i = ANSWERS
        .iter()
        .position(|(status, ..)| head[9..].starts_with(status.as_bytes()))?;
    Some(&REPLIES[i])
}

/// The statuses hyper answers by itself, with the code and detail of their JSON body.
const ANSWERS: [(&str, &str, &str); 3] = [
    (
        "431 Request Header Fields Too Large",
        "header_too_large",
        "the request line and headers exceed 16384 bytes (or 100 headers); send less",
    ),
    (
        "400 Bad Request",
        "malformed_request",
        "the request line or a header is not valid HTTP/1.1 and could not be read",
    ),
    (
        "414 URI Too Long",
        "uri_too_long",
        "the request's path and query are too long",
    ),
];

/// The whole replacement answers, in [`ANSWERS`] order, written once.
static REPLIES: std::sync::LazyLock<[Vec<u8>; 3]> = std::sync::LazyLock::new(|| {
    ANSWERS.map(|(status, error, detail)| {
        let body = serde_json::json!({"error": error, "detail": detail}).to_string();
        format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    })
});

impl<S: AsyncWrite + Unpin> JsonHeadErrors<S> {
    /// Writes what is left of a replacement; ready once it is all written (or none is left).
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, done)) = self.pending.as_mut() {
            if *done == bytes.len() {
                self.pending = None;
                break;
            }
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*done..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *done += n;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for JsonHeadErrors<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for JsonHeadErrors<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.drain(cx))?;
        if let Some(r) = replacement(buf) {
            // hyper's own answer is taken whole and the replacement written in its place.
            self.pending = Some((r, 0));
            ready!(self.drain(cx)).map(|()| buf.len())?;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        ready!(self.drain(cx))?;
        if let Some(first) = bufs.iter().find(|b| !b.is_empty()) {
            if let Some(r) = replacement(first) {
                let len = bufs.iter().map(|b| b.len()).sum();
                self.pending = Some((r, 0));
                ready!(self.drain(cx))?;
                return Poll::Ready(Ok(len));
            }
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_of(r: &[u8]) -> serde_json::Value {
        let text = std::str::from_utf8(r).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(len, body.len(), "{head}");
        serde_json::from_str(body).unwrap()
    }

    #[test]
    fn only_hypers_empty_answers_are_replaced_each_with_its_own_status() {
        for (status, code) in [
            ("431 Request Header Fields Too Large", "header_too_large"),
            ("400 Bad Request", "malformed_request"),
            ("414 URI Too Long", "uri_too_long"),
        ] {
            let auto = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\ndate: x\r\n\r\n");
            let r = replacement(auto.as_bytes()).expect(status);
            assert!(r.starts_with(format!("HTTP/1.1 {status}\r\n").as_bytes()));
            assert_eq!(body_of(r)["error"], code);
        }
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 51\r\n\r\n";
        assert!(replacement(ours).is_none(), "a handler's 400 has a body");
        assert!(replacement(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_none());
        assert!(replacement(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n").is_none());
    }
}
