//! Secrets the process holds and must never print: the admin token and a URL whose user
//! information carries a password. Their `Debug` and `Display` hide the secret, so a derived
//! `Debug` of a configuration holding one never leaks it; the secret itself is given only to
//! the code that uses it (a comparison, a connection, a signing key).

use std::path::Path;

/// The largest secret file read (an admin token, a Redis password).
pub const MAX_SECRET_FILE_BYTES: u64 = 64 << 10;

/// Why a secret file gave no secret.
#[derive(Debug)]
pub enum SecretFileError {
    /// Not a readable regular UTF-8 file of at most [`MAX_SECRET_FILE_BYTES`].
    Unreadable(std::io::Error),
    /// Nothing but white space in it.
    Empty,
}

/// Reads a secret from its file (a mounted Kubernetes Secret, a file an operator wrote),
/// trimmed of the newline editors and `echo` leave.
pub fn read_secret_file(path: &Path) -> Result<String, SecretFileError> {
    let text = crate::files::read_regular_text(path, MAX_SECRET_FILE_BYTES)
        .map_err(SecretFileError::Unreadable)?;
    let secret = text.trim();
    if secret.is_empty() {
        return Err(SecretFileError::Empty);
    }
    Ok(secret.to_owned())
}

/// `url` with `password` in its user information, percent-encoded as the Redis client decodes
/// it (a password read from a file may hold `@`, `:` or `/`); replaces a password already there.
pub fn url_with_password(url: &str, password: &str) -> Result<String, &'static str> {
    let mut parsed = url::Url::parse(url).map_err(|_| "not a URL")?;
    // `set_password` encodes what the URL syntax needs but leaves `%` alone, which the client
    // would read as the start of an escape.
    parsed
        .set_password(Some(&password.replace('%', "%25")))
        .map_err(|()| "this URL cannot hold a password")?;
    Ok(String::from(parsed))
}

/// The admin bearer token; its `Debug` never shows it.
#[derive(Clone)]
pub struct AdminToken(String);

impl AdminToken {
    /// Wraps a token; an empty string means no token.
    pub fn new(token: String) -> Option<Self> {
        (!token.is_empty()).then_some(AdminToken(token))
    }

    /// Characters in the token, for a warning about a short one.
    pub fn char_count(&self) -> usize {
        self.0.chars().count()
    }

    /// The token's bytes, for keying what only holders of the token may sign (the fleet's
    /// admin changes); never for showing.
    pub fn secret(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// Compares in constant time, so response timing does not leak the token, nor its length:
    /// the two SHA-256 digests compared always have the same length (a comparison of the
    /// bytes themselves returns at once when the lengths differ).
    pub fn matches(&self, presented: &[u8]) -> bool {
        use ring::digest::{digest, SHA256};
        use subtle::ConstantTimeEq;
        let (held, given) = (
            digest(&SHA256, self.0.as_bytes()),
            digest(&SHA256, presented),
        );
        held.as_ref().ct_eq(given.as_ref()).into()
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

/// A URL whose user information holds a secret (a Redis password): `Debug` and `Display` show it
/// with [`crate::logging::redact_url`], so a derived `Debug` of a struct holding one never prints
/// the secret; only [`SecretUrl::expose`] gives the URL to the code that connects.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    /// Wraps a URL.
    pub fn new(url: String) -> Self {
        SecretUrl(url)
    }

    /// The URL itself, secret included: for connecting, never for printing.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL itself, secret included, by value.
    pub fn into_exposed(self) -> String {
        self.0
    }
}

impl std::str::FromStr for SecretUrl {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(SecretUrl(s.to_owned()))
    }
}

impl std::fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", crate::logging::redact_url(&self.0))
    }
}

impl std::fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::logging::redact_url(&self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_url_never_prints_its_password() {
        #[derive(Debug)]
        #[allow(dead_code)]
        struct Holder {
            redis: Option<SecretUrl>,
        }
        let url: SecretUrl = "redis://user:s3cret@redis.svc:6379/0".parse().unwrap();
        let printed = format!(
            "{url} {url:?} {:?}",
            Holder {
                redis: Some(url.clone())
            }
        );
        assert!(!printed.contains("s3cret"), "{printed}");
        assert!(
            printed.contains("redis://***@redis.svc:6379/0"),
            "{printed}"
        );
        assert_eq!(url.expose(), "redis://user:s3cret@redis.svc:6379/0");
    }

    #[test]
    fn a_token_matches_itself_only() {
        let t = AdminToken::new("s3cret-token".into()).unwrap();
        assert!(t.matches(b"s3cret-token"));
        for other in [&b""[..], b"s3cret", b"s3cret-token ", b"S3cret-token", b"x"] {
            assert!(!t.matches(other), "{}", String::from_utf8_lossy(other));
        }
    }
}
