//! Decision ids that carry their own attribution: the ULID's random bits hold a tag of the
//! model version and the variant that decided, so an event quoting the decision id is
//! attributed with no lookup table, across restarts.
//!
//! Layout of the 80 random bits of the ULID: 16 bits model tag, 4 bits variant, 60 random bits
//! (plenty against collisions within one millisecond). A decision id nextbest did not make
//! decodes to some tag that matches no known model, and so stays unattributed.

use crate::experiment::Variant;

const TAG_SHIFT: u32 = 64;
const VARIANT_SHIFT: u32 = 60;
const RANDOM_MASK: u128 = (1 << VARIANT_SHIFT) - 1;

/// The 16-bit tag of a model, from its content key (the CRC-32 of its document).
#[inline]
pub fn model_tag(key: u32) -> u16 {
    key as u16
}

/// A new decision id at `now_ms` for a model's content key and a variant.
pub fn decision_id(now_ms: i64, key: u32, variant: Variant) -> ulid::Ulid {
    // The thread's RNG, as `Ulid::new` uses, without the clock read `Ulid::new` adds.
    let random = u128::from(rand::random::<u64>()) & RANDOM_MASK;
    let bits =
        (u128::from(model_tag(key)) << TAG_SHIFT) | ((variant.index() as u128) << VARIANT_SHIFT);
    ulid::Ulid::from_parts(now_ms.max(0) as u64, bits | random)
}

/// The model tag and variant a decision id carries (no variant for an id nextbest did not
/// make).
pub fn attribution(decision_id: u128) -> (u16, Option<Variant>) {
    let random = ulid::Ulid(decision_id).random();
    (
        (random >> TAG_SHIFT) as u16,
        Variant::from_index(((random >> VARIANT_SHIFT) & 0xf) as u8),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_tag_variant_and_time() {
        let key = crc32fast::hash(br#"{"name":"demo","version":"1"}"#);
        let a = decision_id(1_795_000_000_000, key, Variant::Challenger);
        let b = decision_id(1_795_000_000_000, key, Variant::Challenger);
        assert_ne!(a, b, "still unique within a millisecond");
        assert_eq!(a.timestamp_ms(), 1_795_000_000_000);
        let expected = (model_tag(key), Some(Variant::Challenger));
        assert_eq!(attribution(a.0), expected);
        let parsed = ulid::Ulid::from_string(&a.to_string()).unwrap();
        assert_eq!(attribution(parsed.0), expected);
        let other = crc32fast::hash(br#"{"name":"demo","version":"2"}"#);
        assert_ne!(model_tag(other), model_tag(key));
    }
}
