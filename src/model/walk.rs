//! Typed reads from a parsed JSON document that record every fault with its path instead of
//! stopping at the first, so a CVM team sees all that is wrong with a model in one go.

use simd_json::prelude::*;
use simd_json::BorrowedValue;

use super::MAX_NAME_BYTES;

/// One thing wrong with a model, and where.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Fault {
    /// Where, e.g. `offers[3].scorer.weights.arpu_30d`.
    pub path: String,
    /// What, e.g. `unknown feature`.
    pub message: String,
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// "write 0.05 for 5 %" for a percentage written where a share goes (`5%`, ` 12.5 %`).
pub fn percent_hint(text: &str) -> Option<String> {
    let x: f64 = text.trim().strip_suffix('%')?.trim().parse().ok()?;
    Some(format!("write {} for {x} %", x / 100.0))
}

/// A JSON value as parsed by simd-json.
pub type Value<'v> = BorrowedValue<'v>;
/// A JSON object as parsed by simd-json.
pub type Object<'v> = simd_json::borrowed::Object<'v>;

/// Collects faults while reading.
#[derive(Default)]
pub struct Faults(pub Vec<Fault>);

/// `parent.key`, or `key` at the top level.
pub fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// `parent[i]`.
pub fn index(parent: &str, i: usize) -> String {
    format!("{parent}[{i}]")
}

fn type_name(v: &Value<'_>) -> &'static str {
    match v.value_type() {
        ValueType::Null => "null",
        ValueType::Bool => "a boolean",
        ValueType::I64 | ValueType::U64 | ValueType::F64 | ValueType::I128 | ValueType::U128 => {
            "a number"
        }
        ValueType::String => "a string",
        ValueType::Array => "an array",
        ValueType::Object => "an object",
        _ => "an unsupported value",
    }
}

impl Faults {
    /// Records a fault.
    pub fn push(&mut self, path: &str, message: impl Into<String>) {
        self.0.push(Fault {
            path: path.to_owned(),
            message: message.into(),
        });
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// An object whose keys are all in `known` (unknown keys are faults: they are typos).
    pub fn object<'a, 'v>(
        &mut self,
        v: &'a Value<'v>,
        path: &str,
        known: &[&str],
    ) -> Option<&'a Object<'v>> {
        let Some(obj) = v.as_object() else {
            self.push(path, format!("expected an object, found {}", type_name(v)));
            return None;
        };
        if !known.is_empty() {
            let mut unknown: Vec<&str> = obj
                .keys()
                .map(|k| k.as_ref())
                .filter(|k| !known.contains(k))
                .collect();
            unknown.sort_unstable();
            for k in unknown {
                let message = match crate::near::nearest(k, known.iter().copied()) {
                    Some(near) => format!("unknown field: did you mean `{near}`?"),
                    None => format!("unknown field (expected one of: {})", known.join(", ")),
                };
                self.push(&join(path, k), message);
            }
        }
        Some(obj)
    }

    /// Any object; its keys are the caller's to check.
    pub fn map<'a, 'v>(&mut self, v: &'a Value<'v>, path: &str) -> Option<&'a Object<'v>> {
        self.object(v, path, &[])
    }

    /// A required field.
    pub fn req<'a, 'v>(
        &mut self,
        obj: &'a Object<'v>,
        key: &str,
        path: &str,
    ) -> Option<&'a Value<'v>> {
        let v = obj.get(key);
        if v.is_none() {
            self.push(&join(path, key), "missing field");
        }
        v
    }

    /// A non-empty string of at most `max` bytes.
    pub fn string<'a>(&mut self, v: &'a Value<'_>, path: &str, max: usize) -> Option<&'a str> {
        match v.as_str() {
            Some("") => {
                self.push(path, "must not be empty");
                None
            }
            Some(s) if s.len() > max => {
                self.push(path, format!("longer than {max} bytes"));
                None
            }
            Some(s) => Some(s),
            None => {
                self.push(path, format!("expected a string, found {}", type_name(v)));
                None
            }
        }
    }

    /// A finite number.
    pub fn number(&mut self, v: &Value<'_>, path: &str) -> Option<f64> {
        match v.cast_f64() {
            Some(x) if x.is_finite() => Some(x),
            Some(_) => {
                self.push(path, "must be a finite number");
                None
            }
            None => {
                let percent = v
                    .as_str()
                    .and_then(percent_hint)
                    .map_or_else(String::new, |h| {
                        format!(" (`{}`: {h})", v.as_str().unwrap_or(""))
                    });
                self.push(
                    path,
                    format!("expected a number, found {}{percent}", type_name(v)),
                );
                None
            }
        }
    }

    /// A finite number within `[lo, hi]`.
    pub fn number_in(&mut self, v: &Value<'_>, path: &str, lo: f64, hi: f64) -> Option<f64> {
        let x = self.number(v, path)?;
        if x < lo || x > hi {
            self.push(path, format!("must be between {lo} and {hi}, found {x}"));
            return None;
        }
        Some(x)
    }

    /// A whole number within `[lo, hi]`.
    pub fn integer_in(&mut self, v: &Value<'_>, path: &str, lo: u64, hi: u64) -> Option<u64> {
        match v.as_u64() {
            Some(x) if (lo..=hi).contains(&x) => Some(x),
            _ => {
                // The value found, so `7.5`, `-1` and `"7"` each say what to change.
                let found = match v.value_type() {
                    ValueType::String => format!("the string {}", v.encode()),
                    t if v.cast_f64().is_some() && t != ValueType::Bool => v.encode(),
                    _ => type_name(v).to_owned(),
                };
                self.push(
                    path,
                    format!("expected a whole number from {lo} to {hi}, found {found}"),
                );
                None
            }
        }
    }

    /// An array of at most `max` items.
    pub fn array<'a, 'v>(
        &mut self,
        v: &'a Value<'v>,
        path: &str,
        max: usize,
    ) -> Option<&'a [Value<'v>]> {
        match v.as_array() {
            Some(a) if a.len() > max => {
                self.push(path, format!("more than {max} items"));
                None
            }
            Some(a) => Some(a.as_slice()),
            None => {
                self.push(path, format!("expected an array, found {}", type_name(v)));
                None
            }
        }
    }

    /// A non-empty array of distinct non-empty strings.
    pub fn string_list<'a>(
        &mut self,
        v: &'a Value<'_>,
        path: &str,
        max: usize,
    ) -> Option<Vec<&'a str>> {
        let items = self.array(v, path, max)?;
        if items.is_empty() {
            self.push(path, "must not be empty");
            return None;
        }
        // A name listed twice is a fault, but the list it means is clear: it is kept (once),
        // so what is checked against it next is reported in the same run.
        let mut out = Vec::with_capacity(items.len());
        let mut unreadable = false;
        for (i, item) in items.iter().enumerate() {
            match self.string(item, &index(path, i), MAX_NAME_BYTES) {
                Some(s) if out.contains(&s) => {
                    self.push(&index(path, i), format!("`{s}` is listed twice"))
                }
                Some(s) => out.push(s),
                None => unreadable = true,
            }
        }
        (!unreadable).then_some(out)
    }
}

/// Something that records faults: the collector itself, or a compile step that holds one.
pub trait Collects {
    /// The collector.
    fn faults(&mut self) -> &mut Faults;

    /// Runs `body`, and keeps what it returns only if it recorded no fault: a part that had
    /// any fault is refused whole, while its faults stay recorded.
    fn checked<R>(&mut self, body: impl FnOnce(&mut Self) -> Option<R>) -> Option<R>
    where
        Self: Sized,
    {
        let before = self.faults().0.len();
        let out = body(self);
        if self.faults().0.len() == before {
            out
        } else {
            None
        }
    }
}

impl Collects for Faults {
    fn faults(&mut self) -> &mut Faults {
        self
    }
}

/// True for an absolute `http://` or `https://` URL with a host and no white space.
pub fn is_http_url(s: &str) -> bool {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"));
    match rest {
        Some(rest) => {
            let host = rest.split(['/', '?', '#']).next().unwrap_or("");
            !host.is_empty() && !s.chars().any(|c| c.is_whitespace() || c.is_control())
        }
        None => false,
    }
}

/// The first key written twice in one object of a JSON document (at any depth), by its path
/// (`events[1].type`): such a document is refused (an events body, a campaign file) rather than
/// read as whichever value a parser keeps.
pub fn duplicate_key(json: &[u8]) -> Option<String> {
    duplicate_read_key(json, &|_| true)
}

/// The first key written twice whose path `read` says is read: a key the reader ignores (and
/// warns of) may be written twice without harm, as no value of it is taken.
pub fn duplicate_read_key(json: &[u8], read: &dyn Fn(&str) -> bool) -> Option<String> {
    let mut copy = json.to_vec();
    let tape = simd_json::to_tape(&mut copy).ok()?;
    let mut path = String::new();
    first_twice(&tape.0, 0, &mut path, read).err()
}

/// The byte where a JSON document opens more nested arrays and objects than simd-json reads
/// ([`simd_json::DEFAULT_MAX_DEPTH`]): serde_json skips what it ignores without a limit, so
/// only this says why such a document is refused.
pub fn too_deep(json: &[u8]) -> Option<usize> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (i, &b) in json.iter().enumerate() {
        if in_string {
            (escaped, in_string) = match b {
                _ if escaped => (false, true),
                b'\\' => (true, true),
                b'"' => (false, false),
                _ => (false, true),
            };
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => depth += 1,
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        if depth > simd_json::DEFAULT_MAX_DEPTH {
            return Some(i);
        }
    }
    None
}

/// 1-based line and column of a byte offset.
pub fn line_col(bytes: &[u8], offset: usize) -> (usize, usize) {
    let upto = &bytes[..offset.min(bytes.len())];
    let line = upto.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = upto.len() - upto.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1) + 1;
    (line, column)
}

/// Walks the value at `at`; returns the index after it, or the path of a key written twice.
fn first_twice(
    nodes: &[simd_json::Node<'_>],
    at: usize,
    path: &mut String,
    read: &dyn Fn(&str) -> bool,
) -> Result<usize, String> {
    use simd_json::Node;
    let mark = path.len();
    match nodes.get(at) {
        Some(Node::Object { len, .. }) => {
            let mut keys: Vec<&str> = Vec::with_capacity(*len);
            let mut next = at + 1;
            for _ in 0..*len {
                let Some(Node::String(key)) = nodes.get(next) else {
                    return Ok(nodes.len());
                };
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                if keys.contains(key) && read(path) {
                    return Err(std::mem::take(path));
                }
                keys.push(key);
                next = first_twice(nodes, next + 1, path, read)?;
                path.truncate(mark);
            }
            Ok(next)
        }
        Some(Node::Array { len, .. }) => {
            let mut next = at + 1;
            for i in 0..*len {
                path.push_str(&format!("[{i}]"));
                next = first_twice(nodes, next, path, read)?;
                path.truncate(mark);
            }
            Ok(next)
        }
        _ => Ok(at + 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(is_http_url("https://shop.example/x?y=1"));
        assert!(is_http_url("http://a"));
        assert!(!is_http_url("ftp://a/b"));
        assert!(!is_http_url("/relative/path"));
        assert!(!is_http_url("https:///nohost"));
        assert!(!is_http_url("https://a b"));
        assert!(!is_http_url("javascript:alert(1)"));
    }

    #[test]
    fn a_key_twice_in_one_object_is_found_at_any_depth_and_only_there() {
        let dup = |j: &str| duplicate_key(j.as_bytes());
        assert_eq!(dup(r#"{"a":{"b":1},"a":2}"#).as_deref(), Some("a"));
        assert_eq!(
            dup(r#"{"x":[{"k":1,"k":[1,{"z":2}]}]}"#).as_deref(),
            Some("x[0].k")
        );
        assert_eq!(
            dup(r#"{"x":[{"k":[1,{"z":2,"z":3}]}]}"#).as_deref(),
            Some("x[0].k[1].z")
        );
        assert_eq!(
            dup(r#"{"events":[{"type":"click"},{"type":"dismiss","customer_id":"A","offer_id":"o","customer_id":"B"}]}"#)
                .as_deref(),
            Some("events[1].customer_id")
        );
        assert_eq!(
            dup(r#"{"a":{"b":1,"c":[1,2,{"b":3}]},"b":{"a":[]},"d":2}"#),
            None
        );
        assert_eq!(dup(r#"{"events":[{"a":1},{"a":1}]}"#), None);
        assert_eq!(dup("[1,2,3]"), None);
    }
}
