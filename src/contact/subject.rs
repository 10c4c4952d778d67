//! Who an event or a decision is about: a customer, a visitor without a profile (the channel's
//! cookie or device id), or both.
//!
//! The contact state files histories under one key space: a customer's id as it is, a
//! visitor's id behind [`VISITOR_PREFIX`] (a NUL byte, which no channel's customer ids hold), so
//! a visitor and a customer who happen to share an id never share a history. The key of a
//! visitor is built on the stack: a decision looking a visitor up allocates nothing.

/// What precedes a visitor's id in the contact state's keys.
pub const VISITOR_PREFIX: &str = "\0v\0";

/// Longest visitor key built on the stack: the prefix and 256 characters of 4 bytes (longer
/// ids, which validation refuses, are keyed on the heap).
const STACK_KEY: usize = VISITOR_PREFIX.len() + 4 * 256;

/// Who a history belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject<'a> {
    /// A customer, by the id the snapshot and the channels use.
    Customer(&'a str),
    /// A visitor without a (known) profile, by the channel's visitor id.
    Visitor(&'a str),
    /// Neither: no history.
    Nobody,
}

impl<'a> Subject<'a> {
    /// The customer when there is one (non-empty), else the visitor, else nobody.
    #[inline]
    pub fn of(customer: Option<&'a str>, visitor: Option<&'a str>) -> Self {
        match (
            customer.filter(|c| !c.is_empty()),
            visitor.filter(|v| !v.is_empty()),
        ) {
            (Some(c), _) => Subject::Customer(c),
            (None, Some(v)) => Subject::Visitor(v),
            (None, None) => Subject::Nobody,
        }
    }

    /// Calls `f` with this subject's key in the contact state (`None` for nobody).
    #[inline]
    pub fn with_key<R>(&self, f: impl FnOnce(&str) -> R) -> Option<R> {
        match *self {
            Subject::Customer(c) => Some(f(c)),
            Subject::Visitor(v) => Some(with_visitor_key(v, f)),
            Subject::Nobody => None,
        }
    }

    /// This subject's key, owned (replay's buffer, tests).
    pub fn key(&self) -> Option<String> {
        self.with_key(str::to_owned)
    }
}

/// Calls `f` with the contact state's key of visitor `v`, built on the stack.
#[inline]
fn with_visitor_key<R>(v: &str, f: impl FnOnce(&str) -> R) -> R {
    let n = VISITOR_PREFIX.len() + v.len();
    if n > STACK_KEY {
        return f(&format!("{VISITOR_PREFIX}{v}"));
    }
    let mut buf = [0u8; STACK_KEY];
    buf[..VISITOR_PREFIX.len()].copy_from_slice(VISITOR_PREFIX.as_bytes());
    buf[VISITOR_PREFIX.len()..n].copy_from_slice(v.as_bytes());
    // Two valid UTF-8 strings joined are valid UTF-8.
    match std::str::from_utf8(&buf[..n]) {
        Ok(key) => f(key),
        Err(_) => f(&format!("{VISITOR_PREFIX}{v}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn customers_come_first_and_visitors_have_a_key_space_of_their_own() {
        assert_eq!(Subject::of(Some("C1"), Some("v")), Subject::Customer("C1"));
        assert_eq!(Subject::of(Some(""), Some("v")), Subject::Visitor("v"));
        assert_eq!(Subject::of(None, Some("")), Subject::Nobody);
        assert_eq!(Subject::Customer("x").key().unwrap(), "x");
        let v = Subject::Visitor("x").key().unwrap();
        assert_ne!(v, "x");
        assert!(v.ends_with('x') && v.starts_with(VISITOR_PREFIX));
        let long = "顧".repeat(300);
        assert_eq!(
            Subject::Visitor(&long).key().unwrap(),
            format!("{VISITOR_PREFIX}{long}")
        );
        assert_eq!(Subject::Nobody.key(), None);
    }
}
