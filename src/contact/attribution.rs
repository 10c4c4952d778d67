//! Decision ids that carry their own attribution: the ULID's random bits hold a tag of the
//! model version and the variant that decided, so an event quoting the decision id is
//! attributed with no lookup table, across restarts.
//!
//! Layout of the 80 random bits of the ULID: 16 bits model tag, 4 bits variant, 60 random bits
//! (plenty against collisions within one millisecond). A decision id nextbest did not make
//! decodes to some tag that matches no known model, and so stays unattributed.

/// Variant names by index, as answers and stats show them.
pub const VARIANTS: [&str; 2] = ["champion", "challenger"];
/// The champion's variant index.
pub const CHAMPION: u8 = 0;
/// The challenger's variant index.
pub const CHALLENGER: u8 = 1;

const TAG_SHIFT: u32 = 64;
const VARIANT_SHIFT: u32 = 60;
const RANDOM_MASK: u128 = (1 << VARIANT_SHIFT) - 1;

/// The 16-bit tag of a model version (from its pre-encoded `{"name":..,"version":..}`).
pub fn model_tag(model_json: &str) -> u16 {
    crc32fast::hash(model_json.as_bytes()) as u16
}

/// A new decision id at `now_ms` for a model tag and variant.
pub fn decision_id(now_ms: i64, tag: u16, variant: u8) -> ulid::Ulid {
    let random = ulid::Ulid::new().random() & RANDOM_MASK;
    let bits = (u128::from(tag) << TAG_SHIFT) | (u128::from(variant & 0xf) << VARIANT_SHIFT);
    ulid::Ulid::from_parts(now_ms.max(0) as u64, bits | random)
}

/// The model tag and variant index a decision id carries.
pub fn attribution(decision_id: u128) -> (u16, u8) {
    let random = ulid::Ulid(decision_id).random();
    (
        (random >> TAG_SHIFT) as u16,
        ((random >> VARIANT_SHIFT) & 0xf) as u8,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_tag_variant_and_time() {
        let tag = model_tag(r#"{"name":"demo","version":"1"}"#);
        let a = decision_id(1_795_000_000_000, tag, 1);
        let b = decision_id(1_795_000_000_000, tag, 1);
        assert_ne!(a, b, "still unique within a millisecond");
        assert_eq!(a.timestamp_ms(), 1_795_000_000_000);
        assert_eq!(attribution(a.0), (tag, 1));
        let parsed = ulid::Ulid::from_string(&a.to_string()).unwrap();
        assert_eq!(attribution(parsed.0), (tag, 1));
        assert_ne!(model_tag(r#"{"name":"demo","version":"2"}"#), tag);
    }
}
