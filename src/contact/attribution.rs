//! Decision ids that carry their own attribution: the ULID's random bits hold a tag of the
//! model version and the variant that decided, so an event quoting the decision id is
//! attributed with no lookup table, across restarts.
//!
//! Layout of the 80 random bits of the ULID: 16 bits model tag, 4 bits variant, 60 random bits
//! (plenty against collisions within one millisecond). A decision id nextbest did not make
//! decodes to some tag that matches no known model, and so stays unattributed.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use crate::experiment::Variant;

const TAG_SHIFT: u32 = 64;
const VARIANT_SHIFT: u32 = 60;
const RANDOM_MASK: u128 = (1 << VARIANT_SHIFT) - 1;

/// The 16-bit tag of a model, from its content key (the CRC-32 of its document).
#[inline]
pub fn model_tag(key: u32) -> u16 {
    key as u16
}

/// A new decision id at `now_ms` for a model's content key and a variant, its random bits from
/// the thread's RNG.
pub fn decision_id(now_ms: i64, key: u32, variant: Variant) -> ulid::Ulid {
    // The thread's RNG, as `Ulid::new` uses, without the clock read `Ulid::new` adds.
    with_random(now_ms, key, variant, rand::random::<u64>())
}

fn with_random(now_ms: i64, key: u32, variant: Variant, random: u64) -> ulid::Ulid {
    let bits =
        (u128::from(model_tag(key)) << TAG_SHIFT) | ((variant.index() as u128) << VARIANT_SHIFT);
    ulid::Ulid::from_parts(
        now_ms.max(0) as u64,
        bits | (u128::from(random) & RANDOM_MASK),
    )
}

/// Where the server's decision ids take their random bits: the thread's RNG (the default, and
/// what production uses), or a sequence fixed by a seed, so a test replays a run exactly (the
/// Thompson draws of adaptive offers are seeded by the decision id). Clones share one sequence.
#[derive(Clone, Default)]
pub struct DecisionIds(Option<Arc<Seeded>>);

struct Seeded {
    seed: u64,
    next: AtomicU64,
}

impl DecisionIds {
    /// Ids from a fixed sequence: the `n`-th id made gets the same bits in every run with this
    /// seed (requests made one after another get ids in a reproducible order).
    pub fn seeded(seed: u64) -> Self {
        DecisionIds(Some(Arc::new(Seeded {
            seed,
            next: AtomicU64::new(0),
        })))
    }

    /// A new decision id at `now_ms` for a model's content key and a variant.
    #[inline]
    pub fn decision_id(&self, now_ms: i64, key: u32, variant: Variant) -> ulid::Ulid {
        match &self.0 {
            None => decision_id(now_ms, key, variant),
            Some(s) => {
                let n = s.next.fetch_add(1, Relaxed);
                with_random(now_ms, key, variant, splitmix64(s.seed.wrapping_add(n)))
            }
        }
    }
}

impl std::fmt::Debug for DecisionIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            None => f.write_str("DecisionIds::Random"),
            Some(s) => write!(f, "DecisionIds::Seeded({})", s.seed),
        }
    }
}

/// SplitMix64's output function: consecutive counters give unrelated bits.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
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

    #[test]
    fn seeded_ids_repeat_per_seed_and_keep_their_attribution() {
        let key = 0xbeef;
        let run = |ids: &DecisionIds| -> Vec<ulid::Ulid> {
            (0..5)
                .map(|_| ids.decision_id(1_795_000_000_000, key, Variant::Champion))
                .collect()
        };
        let (a, b) = (run(&DecisionIds::seeded(7)), run(&DecisionIds::seeded(7)));
        assert_eq!(a, b, "the same seed gives the same ids");
        assert_ne!(a, run(&DecisionIds::seeded(8)), "another seed gives others");
        assert_eq!(
            a.iter().collect::<std::collections::HashSet<_>>().len(),
            5,
            "unique within the sequence"
        );
        for id in &a {
            assert_eq!(attribution(id.0), (model_tag(key), Some(Variant::Champion)));
        }
        // Clones share the sequence: the server's copies of its config do not restart it.
        let ids = DecisionIds::seeded(7);
        let twin = ids.clone();
        let first = ids.decision_id(1_795_000_000_000, key, Variant::Champion);
        let second = twin.decision_id(1_795_000_000_000, key, Variant::Champion);
        assert_eq!([first, second], [a[0], a[1]]);
        // The default draws from the thread's RNG.
        let random = DecisionIds::default();
        assert_ne!(run(&random), run(&random));
    }
}
