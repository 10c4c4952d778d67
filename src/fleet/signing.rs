//! Signs the fleet's admin changes with the admin token, so a replica makes only the changes
//! another replica holding the same token published: whoever can write to Redis but holds no
//! token cannot install a model or point every replica at a file.
//!
//! The signature is HMAC-SHA256, keyed by the token, over a fixed label and each field of the
//! stream entry that says what to change (origin, time, kind, checksum, version, document or
//! path), each with its length, so no two entries sign alike. `ring` computes and compares it
//! (in constant time); it is already built for rustls.

use ring::hmac;

use crate::secrets::AdminToken;

/// What the HMAC covers before the fields: a signature made for anything else never fits.
const LABEL: &[u8] = b"nextbest fleet change v1\0";
/// The fields signed, in this order; those an entry lacks sign as absent.
pub const SIGNED: [&str; 7] = ["o", "a", "k", "c", "v", "d", "p"];
/// The field that holds the signature.
pub const FIELD: &str = "s";

/// The fleet's signing key, from the admin token.
pub struct Signer(hmac::Key);

impl Signer {
    /// The key of a token (every replica of a fleet has the same one).
    pub fn new(token: &AdminToken) -> Self {
        Signer(hmac::Key::new(hmac::HMAC_SHA256, token.secret()))
    }

    /// The signature of an entry's fields, as lowercase hex.
    pub fn sign<'a>(&self, field: impl Fn(&str) -> Option<&'a [u8]>) -> String {
        let tag = hmac::sign(&self.0, &message(field));
        tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Whether `signature` (hex) is this key's over the fields.
    pub fn verify<'a>(&self, field: impl Fn(&str) -> Option<&'a [u8]>, signature: &[u8]) -> bool {
        let Some(tag) = from_hex(signature) else {
            return false;
        };
        hmac::verify(&self.0, &message(field), &tag).is_ok()
    }
}

/// The label, then per signed field a presence byte, its length and its bytes.
fn message<'a>(field: impl Fn(&str) -> Option<&'a [u8]>) -> Vec<u8> {
    let mut m = LABEL.to_vec();
    for name in SIGNED {
        match field(name) {
            Some(v) => {
                m.push(1);
                m.extend_from_slice(&(v.len() as u64).to_le_bytes());
                m.extend_from_slice(v);
            }
            None => m.push(0),
        }
    }
    m
}

fn from_hex(hex: &[u8]) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    hex.chunks_exact(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields<'a>(entry: &'a [(&'a str, &'a [u8])]) -> impl Fn(&str) -> Option<&'a [u8]> {
        move |name| entry.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }

    #[test]
    fn a_signature_fits_its_fields_and_token_only() {
        let token = AdminToken::new("s3cret".into()).unwrap();
        let signer = Signer::new(&token);
        let entry: [(&str, &[u8]); 4] = [
            ("o", b"r1"),
            ("a", b"1700000000000"),
            ("k", b"admin"),
            ("d", b"{}"),
        ];
        let s = signer.sign(fields(&entry));
        assert_eq!(s.len(), 64);
        assert!(signer.verify(fields(&entry), s.as_bytes()));
        // Another document, another kind of change, a field moved, another token: no fit.
        let other_doc: [(&str, &[u8]); 4] = [
            ("o", b"r1"),
            ("a", b"1700000000000"),
            ("k", b"admin"),
            ("d", b"{ }"),
        ];
        assert!(!signer.verify(fields(&other_doc), s.as_bytes()));
        let as_path: [(&str, &[u8]); 4] = [
            ("o", b"r1"),
            ("a", b"1700000000000"),
            ("k", b"admin"),
            ("p", b"{}"),
        ];
        assert!(!signer.verify(fields(&as_path), s.as_bytes()));
        let other = Signer::new(&AdminToken::new("s3cret2".into()).unwrap());
        assert!(!other.verify(fields(&entry), s.as_bytes()));
        assert!(!signer.verify(fields(&entry), b"not hex"));
        assert!(!signer.verify(fields(&entry), b""));
    }
}
