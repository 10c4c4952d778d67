//! The one place where errors become HTTP responses: every 4xx/5xx body is
//! `{"error": "<code>", "detail": "<what and where>"}`.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, ALLOW, CONNECTION, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Response, StatusCode};

use crate::model::Fault;
use crate::registry::RegistryError;

/// Everything a handler can refuse a request for.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not JSON.
    #[error("{0}")]
    MalformedJson(String),
    /// JSON, but a field is missing or of the wrong type or value.
    #[error("{0}")]
    InvalidRequest(String),
    /// No such route.
    #[error("no route for {0}")]
    NotFound(String),
    /// The route exists but not for this method.
    #[error("{method} is not allowed here; use {allow}")]
    MethodNotAllowed {
        /// The method used.
        method: String,
        /// The methods the route takes.
        allow: &'static str,
    },
    /// The body exceeds the limit.
    #[error("the body exceeds the limit of {0} bytes")]
    PayloadTooLarge(usize),
    /// The body did not arrive in time.
    #[error("the body did not arrive within {} ms", .0.as_millis())]
    RequestTimeout(std::time::Duration),
    /// The body is declared as something other than plain JSON (another type, compressed).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The admin token is missing or wrong.
    #[error("a valid `Authorization: Bearer <token>` header is required")]
    Unauthorized,
    /// A request a web page made on someone's behalf (another site's, or one reached by a name
    /// that resolves to this host): the admin API serves operators and their tools.
    #[error("{0}")]
    Forbidden(String),
    /// A load or rollback was refused; nothing changed.
    #[error("{0}")]
    Refused(RegistryError),
    /// Something the server should have been able to do failed.
    #[error("{0}")]
    Internal(String),
    /// The request could not be served now but may be retried (after `Retry-After` seconds).
    #[error("{0}")]
    Unavailable(String),
    /// An error found before the request's body was read (a header, the replica's state): the
    /// body is left unread, so the connection ends with the answer when there is one.
    #[error("{0}")]
    BeforeBody(Box<ApiError>),
}

/// Marks an answer given without reading the request's body (see [`close_unread`]).
#[derive(Debug, Clone, Copy)]
pub struct BodyUnread;

impl From<crate::contact::ContactError> for ApiError {
    /// A batch the event log could not take: the client may retry it whole (nothing of it was
    /// accepted), unless the log was removed under the server (a retry cannot help); anything
    /// else is the server's fault.
    fn from(e: crate::contact::ContactError) -> Self {
        use crate::contact::{log::LogError, ContactError};
        match e {
            ContactError::Log(LogError::Removed { .. }) => {
                ApiError::Unavailable(format!("{e}; nothing was accepted"))
            }
            ContactError::Log(_) => ApiError::Unavailable(format!(
                "the events could not be made durable ({e}); nothing was accepted, retry the batch"
            )),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<super::shadow::ShadowError> for ApiError {
    /// A shadow that is not a model with a share, does not compile, or comes before any
    /// snapshot is the client's to fix; one the data folder could not keep is the server's.
    fn from(e: super::shadow::ShadowError) -> Self {
        use super::shadow::ShadowError;
        match e {
            ShadowError::Invalid(d) => ApiError::InvalidRequest(d),
            ShadowError::Model(r) => ApiError::Refused(r),
            // As a model put before any snapshot is answered.
            ShadowError::NoSnapshot => ApiError::Refused(RegistryError::NoFeatures),
            ShadowError::Keep(_) => ApiError::Internal(e.to_string()),
        }
    }
}

impl ApiError {
    /// A request no route takes, named by its path; a request without one (the authority form
    /// of `CONNECT host:443`) by its whole target, so the detail never ends in nothing.
    pub fn no_route(path: &str, uri: &hyper::Uri) -> ApiError {
        let target = match path {
            "" => uri.to_string(),
            p => p.to_owned(),
        };
        ApiError::NotFound(target.chars().take(256).collect())
    }

    /// The same error, found before the body was read.
    pub fn before_body(self) -> ApiError {
        ApiError::BeforeBody(Box::new(self))
    }

    /// The HTTP status for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BeforeBody(e) => e.status(),
            ApiError::MalformedJson(_) | ApiError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Refused(
                RegistryError::NoPrevious
                | RegistryError::NoFeatures
                | RegistryError::Superseded
                | RegistryError::ReadOnly { .. },
            ) => StatusCode::CONFLICT,
            ApiError::Refused(RegistryError::NoPath(_)) => StatusCode::BAD_REQUEST,
            ApiError::Refused(RegistryError::Features(e)) => match e.store_read_only() {
                Some(true) => StatusCode::CONFLICT,
                Some(false) => StatusCode::INTERNAL_SERVER_ERROR,
                None => StatusCode::UNPROCESSABLE_ENTITY,
            },
            ApiError::Refused(RegistryError::Persist { .. }) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Refused(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BeforeBody(e) => e.code(),
            ApiError::MalformedJson(_) => "malformed_json",
            ApiError::InvalidRequest(_) => "invalid_request",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::RequestTimeout(_) => "request_timeout",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::Refused(RegistryError::Model(_)) => "invalid_model",
            // The snapshot store's own faults are the server's, not the file's.
            ApiError::Refused(RegistryError::Features(e)) => match e.store_read_only() {
                Some(true) => "store_read_only",
                Some(false) => "internal",
                None => "invalid_features",
            },
            ApiError::Refused(RegistryError::FeaturesIncompatible(..)) => "invalid_features",
            ApiError::Refused(RegistryError::NoPrevious) => "no_previous_version",
            ApiError::Refused(RegistryError::NoFeatures) => "no_features",
            ApiError::Refused(RegistryError::Superseded) => "superseded",
            ApiError::Refused(RegistryError::ReadOnly { .. }) => "models_read_only",
            ApiError::Refused(RegistryError::NoPath(_)) => "invalid_request",
            ApiError::Refused(RegistryError::Persist { .. }) => "internal",
            ApiError::Internal(_) => "internal",
            ApiError::Unavailable(_) => "unavailable",
        }
    }

    /// A body serde_json could not read: malformed JSON (`malformed_json`, with the line and
    /// column) or a field of the wrong kind or value (`invalid_request`, named by its `path`).
    pub fn from_json(path: &str, e: &serde_json::Error) -> ApiError {
        let text = e.to_string();
        // serde_json appends the position; it is given once, in words, below.
        let what = text.rsplit_once(" at line ").map_or(&*text, |(w, _)| w);
        match e.classify() {
            serde_json::error::Category::Data => match path {
                "" | "." => ApiError::InvalidRequest(what.to_owned()),
                p => ApiError::InvalidRequest(format!("{p}: {what}")),
            },
            _ => ApiError::MalformedJson(format!(
                "invalid JSON at line {}, column {}: {what}",
                e.line(),
                e.column()
            )),
        }
    }

    /// A body serde_json reads but simd-json refuses: for its depth, said where it passes it,
    /// else in general words.
    pub fn unreadable(body: &[u8]) -> ApiError {
        let Some(at) = crate::model::walk::too_deep(body) else {
            return ApiError::MalformedJson("the body is not JSON this server can read".into());
        };
        let (line, column) = crate::model::walk::line_col(body, at);
        ApiError::MalformedJson(format!(
            "invalid JSON at line {line}, column {column}: arrays and objects nested more than \
             {} deep",
            simd_json::DEFAULT_MAX_DEPTH
        ))
    }

    /// The response for this error.
    pub fn into_response(self) -> Response<Full<Bytes>> {
        let unread = matches!(
            self,
            ApiError::BeforeBody(_)
                | ApiError::NotFound(_)
                | ApiError::MethodNotAllowed { .. }
                | ApiError::UnsupportedMediaType(_)
                | ApiError::Unauthorized
                | ApiError::Forbidden(_)
        );
        let mut resp = match self {
            ApiError::BeforeBody(e) => e.into_response(),
            e => e.render(),
        };
        if unread {
            resp.extensions_mut().insert(BodyUnread);
        }
        resp
    }

    fn render(self) -> Response<Full<Bytes>> {
        let status = self.status();
        let body = match &self {
            ApiError::Refused(RegistryError::Features(e)) if e.store_read_only().is_some() => {
                serde_json::json!({"error": self.code(), "detail": self.to_string()})
            }
            ApiError::Refused(
                e @ (RegistryError::Model(_)
                | RegistryError::FeaturesIncompatible(..)
                | RegistryError::Features(_)),
            ) => {
                let faults: Vec<Fault> = e.faults();
                let path = faults.first().map(|f| f.path.clone()).unwrap_or_default();
                let detail = match faults.first() {
                    Some(first) if faults.len() > 1 => {
                        format!("{first} (and {} more)", e.fault_count() - 1)
                    }
                    Some(first) => first.to_string(),
                    None => self.to_string(),
                };
                let mut body = serde_json::json!({
                    "error": self.code(),
                    "detail": detail,
                    "path": path,
                    "faults": faults,
                });
                if !e.warnings().is_empty() {
                    body["warnings"] = serde_json::json!(e.warnings());
                }
                body
            }
            _ => serde_json::json!({"error": self.code(), "detail": self.to_string()}),
        };
        let mut resp = json_response(status, body.to_string().into());
        if let ApiError::MethodNotAllowed { allow, .. } = self {
            resp.headers_mut()
                .insert(ALLOW, HeaderValue::from_static(allow));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert("www-authenticate", HeaderValue::from_static("Bearer"));
        }
        // The rest of the body is never read, so the connection cannot carry another request:
        // said, so a client's keep-alive pool drops it instead of sending the next one into it.
        if matches!(
            self,
            ApiError::PayloadTooLarge(_) | ApiError::RequestTimeout(_)
        ) {
            resp.headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}

/// True when a request says a body follows (a length above zero, or chunks).
pub fn declares_body<B>(req: &hyper::Request<B>) -> bool {
    let h = req.headers();
    h.contains_key(hyper::header::TRANSFER_ENCODING)
        || h.get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0")
}

/// Says `Connection: close` on an answer given without reading a body the request declared (an
/// unknown route, a wrong method or content type, a bad header): hyper ends such a connection,
/// so a client's keep-alive pool must not send its next request into it.
pub fn close_unread(body_declared: bool, resp: &mut Response<Full<Bytes>>) {
    if body_declared && resp.extensions().get::<BodyUnread>().is_some() {
        resp.headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
}

/// A JSON response with a status.
pub fn json_response(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}
