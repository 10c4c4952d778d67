//! The process log: one line per event on stderr, as JSON for log shippers or as text for a
//! person at a terminal.
//!
//! It owns the subscriber set-up (format, colours, level filter) and the helpers that keep
//! secrets out of log lines. It must not decide what is logged: callers name their fields with
//! the stable names below, so a shipper's parsing rules and an operator's queries survive
//! releases.
//!
//! Stable field names: `model` (a model's name), `version`, `source` (where a load came from:
//! `folder`, `admin`, a file path), `fault` (one validation fault, with its path), `path` (a file
//! or folder), `duration_ms`. JSON lines carry them at the top level beside `timestamp`,
//! `level`, `message` and `target`.
//!
//! The default format follows where stderr goes: text on a terminal, JSON otherwise. Nobody
//! reads a pipe, a file or a container log by eye first; they reach it through a shipper that
//! parses JSON without a grok pattern, and a multi-line fault can never be split. ANSI colour is
//! only written to a terminal, and never when `NO_COLOR` is set (<https://no-color.org>).

use std::borrow::Cow;
use std::io::IsTerminal as _;

/// Level filter variable (`NEXTBEST_LOG=debug`, or any `EnvFilter` directive).
pub const FILTER_ENV: &str = "NEXTBEST_LOG";

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line, fields at the top level.
    Json,
    /// Human-readable text, coloured only on a terminal.
    Text,
}

/// The format and colour decided for this process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogStyle {
    /// The line format.
    pub format: LogFormat,
    /// Whether ANSI colour escapes may be written.
    pub ansi: bool,
}

/// Picks the style: the requested format, else text on a terminal and JSON elsewhere; colour
/// only for text on a terminal without `NO_COLOR`.
pub fn style(requested: Option<LogFormat>, stderr_is_terminal: bool, no_color: bool) -> LogStyle {
    let format = requested.unwrap_or(if stderr_is_terminal {
        LogFormat::Text
    } else {
        LogFormat::Json
    });
    LogStyle {
        format,
        ansi: format == LogFormat::Text && stderr_is_terminal && !no_color,
    }
}

/// The subscriber could not be installed (one is already set).
#[derive(Debug, thiserror::Error)]
#[error("cannot install the log subscriber: {0}")]
pub struct InitError(String);

/// The filter without `NEXTBEST_LOG`: our information, and only the warnings of the file
/// watcher's crate, whose information (a watch of a removed folder let go) is its own detail.
const DEFAULT_FILTER: &str = "info,notify=warn";

/// Installs the process-wide subscriber writing to stderr, filtered by `NEXTBEST_LOG` (default
/// [`DEFAULT_FILTER`]); returns the style chosen, which [`fatal`] follows too.
pub fn init(requested: Option<LogFormat>) -> Result<LogStyle, InitError> {
    // `NO_COLOR` counts when set to anything but the empty string, as the convention says.
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let style = style(requested, std::io::stderr().is_terminal(), no_color);
    // A filter that does not parse is said once logging runs, not swallowed.
    let requested_filter = std::env::var(FILTER_ENV)
        .ok()
        .filter(|v| !v.trim().is_empty());
    let (filter, refused) = match requested_filter
        .as_deref()
        .map(tracing_subscriber::EnvFilter::try_new)
    {
        Some(Ok(f)) => (f, None),
        Some(Err(e)) => (
            tracing_subscriber::EnvFilter::new(DEFAULT_FILTER),
            Some(e.to_string()),
        ),
        None => (tracing_subscriber::EnvFilter::new(DEFAULT_FILTER), None),
    };
    // A closed stderr loses the log, not the process: the subscriber's own report of a failed
    // write would go to stderr with `eprintln!`, which panics there.
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .log_internal_errors(false)
        .with_env_filter(filter);
    let result = match style.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => builder
            .with_ansi(style.ansi)
            .fmt_fields(logfmt_fields())
            .try_init(),
    };
    result.map_err(|e| InitError(e.to_string()))?;
    if let (Some(error), Some(value)) = (refused, requested_filter) {
        tracing::warn!(filter = %value, %error, "{FILTER_ENV} is not a log filter; logging at info");
    }
    Ok(style)
}

/// Text lines' fields as logfmt writes them, `key=value`, a value holding white space, `"`
/// or `=` (or none at all) quoted: `source="disk models/model.json"` stays one field for a
/// logfmt parser. Strings recorded as such arrive quoted already; the message stays bare.
fn logfmt_fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> + 'static {
    use tracing_subscriber::field::MakeExt as _;
    tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
        let text = format!("{value:?}");
        if field.name() == "message" {
            return write!(w, "{text}");
        }
        write!(w, "{}={}", field.name(), logfmt_value(&text))
    })
    .delimited(" ")
}

/// `text` as a logfmt value: as it is when it needs no quotes or has them, else quoted.
fn logfmt_value(text: &str) -> std::borrow::Cow<'_, str> {
    let quoted = text.len() >= 2 && text.starts_with('"') && text.ends_with('"');
    let bare =
        !text.is_empty() && !text.contains(|c: char| c.is_whitespace() || c == '"' || c == '=');
    if quoted || bare {
        text.into()
    } else {
        format!("{text:?}").into()
    }
}

/// An error and its causes as one line, joined by `: `; a cause whose text the line already
/// holds (a wrapper that prints its source, a transparent layer) is not repeated.
pub fn error_line(err: &(dyn std::error::Error + 'static)) -> String {
    let mut line = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !text.is_empty() && !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = c.source();
    }
    line
}

/// Writes the error that ends the process as one line on stderr, whatever the level filter: a
/// JSON object with the log's own fields when the log is JSON, else `error: ...`. No backtrace,
/// whatever `RUST_BACKTRACE` says: an operator needs what failed and where, not frames.
pub fn fatal(style: LogStyle, err: &(dyn std::error::Error + 'static)) {
    fatal_line(style, error_line(err));
}

/// A fatal error already in words (a refused command line), written as [`fatal`] writes one.
pub fn fatal_line(style: LogStyle, line: String) {
    use std::io::Write as _;
    let out = match style.format {
        // The fields in the order the log's other lines have them.
        LogFormat::Json => format!(
            r#"{{"timestamp":"{}","level":"ERROR","message":{},"target":"nextbest"}}"#,
            humantime::format_rfc3339_micros(std::time::SystemTime::now()),
            serde_json::Value::String(line),
        ),
        LogFormat::Text => format!("error: {line}"),
    };
    // Nothing is left to tell if stderr itself fails.
    let _ = writeln!(std::io::stderr().lock(), "{out}");
}

/// A URL fit for a log line: its user information (`user:password@`) replaced by `***@`, and
/// the value of a query parameter that names a secret (`password=`, `token=`) by `***`.
///
/// Written by hand rather than with a URL parser on purpose: a URL the parser refuses (a typo in
/// a flag, a password with an unescaped `/`, `?` or `#`) must be redacted too. So everything
/// up to the URL's last `@` is taken for user information, wherever the authority would end:
/// an `@` in a path or query (which a Redis URL does not have) hides more than it needs to,
/// never less.
pub fn redact_url(url: &str) -> Cow<'_, str> {
    let Some(scheme_end) = url.find("://") else {
        // Not even a scheme's `://` (`redis:/:pw@host`): all before the last `@` may be secret.
        return match url.rfind('@') {
            Some(at) => Cow::Owned(format!("***{}", &url[at..])),
            None => Cow::Borrowed(url),
        };
    };
    let start = scheme_end + 3;
    let rest = &url[start..];
    let url: Cow<'_, str> = match rest.rfind('@') {
        Some(at) => Cow::Owned(format!("{}***{}", &url[..start], &rest[at..])),
        None => Cow::Borrowed(url),
    };
    redact_query(url)
}

/// Query parameters whose values are secrets.
const SECRET_PARAMS: [&str; 5] = ["password", "pass", "pwd", "token", "secret"];

fn redact_query(url: Cow<'_, str>) -> Cow<'_, str> {
    let Some(q) = url.find('?') else { return url };
    let end = url[q..].find('#').map_or(url.len(), |h| q + h);
    let secret = |param: &str| {
        let name = param.split('=').next().unwrap_or("");
        param.contains('=') && SECRET_PARAMS.iter().any(|s| s.eq_ignore_ascii_case(name))
    };
    if !url[q + 1..end].split('&').any(secret) {
        return url;
    }
    let params: Vec<String> = url[q + 1..end]
        .split('&')
        .map(|p| match secret(p) {
            true => format!("{}=***", p.split('=').next().unwrap_or("")),
            false => p.to_owned(),
        })
        .collect();
    Cow::Owned(format!("{}?{}{}", &url[..q], params.join("&"), &url[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_off_a_terminal_text_on_one() {
        assert_eq!(style(None, false, false).format, LogFormat::Json);
        assert_eq!(style(None, true, false).format, LogFormat::Text);
        assert_eq!(
            style(Some(LogFormat::Json), true, false).format,
            LogFormat::Json
        );
        assert_eq!(
            style(Some(LogFormat::Text), false, false).format,
            LogFormat::Text
        );
    }

    #[test]
    fn colour_only_for_text_on_a_terminal_without_no_color() {
        assert!(style(None, true, false).ansi);
        assert!(!style(None, true, true).ansi);
        assert!(!style(Some(LogFormat::Text), false, false).ansi);
        assert!(!style(Some(LogFormat::Json), true, false).ansi);
    }

    #[derive(Debug, thiserror::Error)]
    enum Inner {
        #[error("data/LOCK: in use by another nextbest (pid 7)")]
        Locked(#[source] std::io::Error),
    }

    #[derive(Debug, thiserror::Error)]
    enum Outer {
        #[error("event log: {0}")]
        Log(#[from] Inner),
        #[error(transparent)]
        Same(Inner),
    }

    #[test]
    fn an_error_chain_is_one_line_without_repeats() {
        let io = || std::io::Error::new(std::io::ErrorKind::WouldBlock, "locked");
        let e = Outer::Log(Inner::Locked(io()));
        assert_eq!(
            error_line(&e),
            "event log: data/LOCK: in use by another nextbest (pid 7): locked"
        );
        let e = Outer::Same(Inner::Locked(io()));
        assert_eq!(
            error_line(&e),
            "data/LOCK: in use by another nextbest (pid 7): locked"
        );
    }

    #[test]
    fn redacts_userinfo_and_keeps_the_rest() {
        let cases = [
            (
                "redis://:s3cret@redis.svc:6379/0",
                "redis://***@redis.svc:6379/0",
            ),
            ("redis://user:p@ss@host/0?x=1", "redis://***@host/0?x=1"),
            ("rediss://user@host", "rediss://***@host"),
            ("redis://host:6379/0", "redis://host:6379/0"),
            // A password with `/`, `#` or `?` unescaped: the parser refuses the URL, and the
            // error that quotes it must not show the password.
            (
                "redis://:Sup3r/Secret@127.0.0.1:6379",
                "redis://***@127.0.0.1:6379",
            ),
            (
                "redis://default:Sup3r#Secret@host:6379",
                "redis://***@host:6379",
            ),
            ("redis://:Sup3r?Secret@host", "redis://***@host"),
            // An `@` past the authority is taken for the end of user information: more hidden
            // than needed, nothing shown that might be a secret.
            ("redis://host/path@elsewhere", "redis://***@elsewhere"),
            ("not a url", "not a url"),
            ("redis:/:s3cret@host:6379", "***@host:6379"),
            (
                "redis://host/0?password=s3cret&timeout=5",
                "redis://host/0?password=***&timeout=5",
            ),
            (
                "redis://u:p@host/0?x=1&Token=t#frag",
                "redis://***@host/0?x=1&Token=***#frag",
            ),
            (
                "redis://host/0?passwordless=1",
                "redis://host/0?passwordless=1",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(redact_url(input), want, "{input}");
        }
    }

    #[test]
    fn a_text_value_with_spaces_is_quoted_once() {
        assert_eq!(logfmt_value("demo"), "demo");
        assert_eq!(
            logfmt_value("disk models/model.json"),
            "\"disk models/model.json\""
        );
        assert_eq!(logfmt_value("\"already\""), "\"already\"");
        assert_eq!(logfmt_value("a=b"), "\"a=b\"");
        assert_eq!(logfmt_value(""), "\"\"");
    }
}
