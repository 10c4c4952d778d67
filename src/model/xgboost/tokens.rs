//! The bare tokens XGBoost writes for non-finite numbers: `NaN`, `Infinity` and `-Infinity`
//! (its `JsonWriter`, through `to_chars`; 1.7 to 2.1 write `NaN` as the threshold of every
//! categorical split). They are not JSON, and XGBoost's own reader takes them as numbers
//! (`JsonReader::ParseNumber`). A file that fails to parse and holds them outside strings is
//! parsed again with each one turned into a marked string, which [`floats`] reads back as the
//! number; the marks (a leading NUL) are not text XGBoost writes.
//!
//! Owns: the rewrite and the number fields that accept it. Must not: touch strings, or read a
//! token where XGBoost would not (`nan`, `-NaN`, `inf` stay errors).

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;

const TOKENS: [(&[u8], &str, f64); 3] = [
    (b"NaN", "\u{0}NaN", f64::NAN),
    (b"Infinity", "\u{0}Infinity", f64::INFINITY),
    (b"-Infinity", "\u{0}-Infinity", f64::NEG_INFINITY),
];

/// The text with every bare token outside strings quoted as its mark; `None` when it has none.
pub(super) fn quote_bare_numbers(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(bytes.len() + 64);
    let (mut in_string, mut escaped, mut found) = (false, false, false);
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else if b == b'"' {
            in_string = true;
        } else if let Some((token, mark, _)) =
            TOKENS.iter().find(|(t, _, _)| bytes[i..].starts_with(t))
        {
            out.push(b'"');
            out.extend_from_slice(mark.replace('\u{0}', "\\u0000").as_bytes());
            out.push(b'"');
            i += token.len();
            found = true;
            continue;
        }
        out.push(b);
        i += 1;
    }
    found.then_some(out)
}

/// One number of a float array: a JSON number, or a marked token.
struct Float(f64);

impl<'de> Deserialize<'de> for Float {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Float;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a number")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Float, E> {
                Ok(Float(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Float, E> {
                Ok(Float(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Float, E> {
                Ok(Float(v as f64))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Float, E> {
                TOKENS
                    .iter()
                    .find(|(_, mark, _)| *mark == v)
                    .map(|&(_, _, x)| Float(x))
                    .ok_or_else(|| E::invalid_type(de::Unexpected::Str(v), &self))
            }
        }
        d.deserialize_any(V)
    }
}

/// A float array whose entries may be marked tokens.
pub(super) fn floats<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Vec<f64>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an array of numbers")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<f64>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
            while let Some(Float(x)) = seq.next_element()? {
                out.push(x);
            }
            Ok(out)
        }
    }
    d.deserialize_seq(V)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_tokens_outside_strings_only() {
        let text = br#"{"a":[NaN,-Infinity,1,Infinity],"s":"NaN \"NaN\" Infinity"}"#;
        let out = String::from_utf8(quote_bare_numbers(text).unwrap()).unwrap();
        assert_eq!(
            out,
            r#"{"a":["\u0000NaN","\u0000-Infinity",1,"\u0000Infinity"],"s":"NaN \"NaN\" Infinity"}"#
        );
        assert!(quote_bare_numbers(br#"{"a":"NaN"}"#).is_none());
        #[derive(Deserialize)]
        struct A {
            #[serde(deserialize_with = "floats")]
            a: Vec<f64>,
        }
        let a: A = serde_json::from_str(&out).unwrap();
        assert!(a.a[0].is_nan());
        assert_eq!(a.a[1..], [f64::NEG_INFINITY, 1.0, f64::INFINITY]);
        // A string that is no mark stays an error, as in XGBoost.
        assert!(serde_json::from_str::<A>(r#"{"a":["NaN"]}"#).is_err());
    }
}
