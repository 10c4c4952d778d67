//! The one writer of the Prometheus text exposition format.
//!
//! Every owner of numbers (the request counters, the registry's load counts, the contact side,
//! the funnel) implements [`Collect`] and writes its families through an [`Exposition`], which
//! alone writes `# HELP` / `# TYPE` lines and escapes label values and help text as the format
//! requires. Owners keep their own plain atomics; nothing here sits on the decision path.

use std::fmt::{Display, Write as _};

/// Something that exports metrics.
pub trait Collect {
    /// Writes this owner's metric families.
    fn collect(&self, out: &mut Exposition);
}

/// The type of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (resets with the process).
    Counter,
    /// Goes up and down.
    Gauge,
    /// Bucketed observations with `_bucket`, `_sum` and `_count` series.
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A text exposition being written.
#[derive(Debug, Default)]
pub struct Exposition {
    buf: String,
}

impl Exposition {
    /// An empty exposition.
    pub fn new() -> Self {
        Exposition {
            buf: String::with_capacity(8192),
        }
    }

    /// Starts a family: writes its HELP and TYPE lines; its samples follow through the handle.
    pub fn family<'a>(&'a mut self, name: &'a str, kind: Kind, help: &str) -> Family<'a> {
        let _ = write!(self.buf, "# HELP {name} ");
        escape_into(&mut self.buf, help, false);
        let _ = writeln!(self.buf, "\n# TYPE {name} {}", kind.as_str());
        Family { out: self, name }
    }

    /// Adds what an owner of numbers exports.
    pub fn collect(&mut self, owner: &dyn Collect) -> &mut Self {
        owner.collect(self);
        self
    }

    /// The finished text.
    pub fn finish(self) -> String {
        self.buf
    }
}

/// The samples of one family.
pub struct Family<'a> {
    out: &'a mut Exposition,
    name: &'a str,
}

impl Family<'_> {
    /// One sample with its labels (values are escaped here).
    pub fn sample(&mut self, labels: &[(&str, &str)], value: impl Display) -> &mut Self {
        self.suffixed("", labels, value)
    }

    /// One sample of a series named `<family><suffix>` (a histogram's `_bucket`, `_sum`, ...).
    pub fn suffixed(
        &mut self,
        suffix: &str,
        labels: &[(&str, &str)],
        value: impl Display,
    ) -> &mut Self {
        let buf = &mut self.out.buf;
        buf.push_str(self.name);
        buf.push_str(suffix);
        if !labels.is_empty() {
            buf.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    buf.push(',');
                }
                buf.push_str(k);
                buf.push_str("=\"");
                escape_into(buf, v, true);
                buf.push('"');
            }
            buf.push('}');
        }
        let _ = writeln!(buf, " {value}");
        self
    }
}

/// Escapes `\` and newlines (and `"` in label values), as the text format requires.
fn escape_into(out: &mut String, s: &str, quote: bool) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_and_help_are_escaped() {
        let mut e = Exposition::new();
        e.family("x_total", Kind::Counter, "a \\ help\nline")
            .sample(&[("offer", "a\"b\\c\nd"), ("k", "v")], 3)
            .sample(&[], 4);
        assert_eq!(
            e.finish(),
            "# HELP x_total a \\\\ help\\nline\n# TYPE x_total counter\n\
             x_total{offer=\"a\\\"b\\\\c\\nd\",k=\"v\"} 3\nx_total 4\n"
        );
    }
}
