//! Decision ids that carry their own attribution: the ULID's random bits hold a tag of the
//! model version and the variant that decided, and, for `/v1/decide` answers, where and for
//! whom: the channel and placement (as indices into that model version) and a 12-bit check
//! of the customer id. An event quoting the decision id is attributed with no lookup table,
//! across restarts, and an event that contradicts its decision (another channel, another
//! customer) can be told from one that merely leaves fields out.
//!
//! Layout of the 80 random bits of the ULID, high to low:
//! - 16 bits model tag;
//! - 4 bits: the top one set when the id carries an origin ([`Origin`]), three for the variant;
//! - 12 bits customer check (0: no customer);
//! - 7 bits channel index + 1 and 9 bits placement (slot) index + 1 (0: the model did not know
//!   it);
//! - 32 random bits (a collision needs the same millisecond, model, place, customer check and
//!   these 32 bits).
//!
//! An outbound campaign's ids carry the same, their 32 random bits a hash of campaign and
//! customer. Ids without the origin bit (made before origins existed, by the server or by a
//! campaign) carry model and variant only. A decision id
//! nextbest did not make decodes to some tag that matches no known model, and so stays
//! unattributed.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use crate::experiment::Variant;

const TAG_SHIFT: u32 = 64;
const VARIANT_SHIFT: u32 = 60;
const ORIGIN_FLAG: u128 = 0x8 << VARIANT_SHIFT;
const CUSTOMER_SHIFT: u32 = 48;
const CHANNEL_SHIFT: u32 = 41;
const SLOT_SHIFT: u32 = 32;
/// The bits of a decision id that are random: what sampling and seeds may rely on.
pub const RANDOM_BITS: u32 = 32;

/// Where and for whom a decision was made, as far as its model knew.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Origin {
    /// The channel's index in the model (`None`: a channel the model does not have).
    pub channel: Option<usize>,
    /// The placement's slot index on that channel (`None`: a placement it does not have).
    pub slot: Option<usize>,
    /// [`customer_check`] of the customer id (`None`: an anonymous decision).
    pub customer: Option<u16>,
}

/// The 16-bit tag of a model, from its content key (the CRC-32 of its document).
#[inline]
pub fn model_tag(key: u32) -> u16 {
    key as u16
}

/// 12 bits of a customer id, never 0: enough to tell another customer's decision from this
/// one's in all but 1 case in 4095.
#[inline]
pub fn customer_check(customer_id: &str) -> u16 {
    (crc32fast::hash(customer_id.as_bytes()) % 4095) as u16 + 1
}

/// A new decision id at `now_ms` for a model's content key, a variant and where it was made,
/// its random bits from the thread's RNG.
#[inline]
pub fn decision_id(now_ms: i64, key: u32, variant: Variant, origin: Origin) -> ulid::Ulid {
    // The thread's RNG, as `Ulid::new` uses, without the clock read `Ulid::new` adds.
    decision_id_with_random(now_ms, key, variant, origin, rand::random::<u32>())
}

/// A decision id whose 32 random bits are given: a seeded sequence's, or an outbound
/// campaign's, derived from campaign and customer so the same run gives the same ids.
pub fn decision_id_with_random(
    now_ms: i64,
    key: u32,
    variant: Variant,
    origin: Origin,
    random: u32,
) -> ulid::Ulid {
    let random = u128::from(random);
    let place = |i: Option<usize>, max: usize| i.filter(|&i| i < max).map_or(0, |i| i as u128 + 1);
    let bits = (u128::from(model_tag(key)) << TAG_SHIFT)
        | ORIGIN_FLAG
        | ((variant.index() as u128) << VARIANT_SHIFT)
        | (u128::from(origin.customer.unwrap_or(0) & 0xfff) << CUSTOMER_SHIFT)
        | (place(origin.channel, 0x7f) << CHANNEL_SHIFT)
        | (place(origin.slot, 0x1ff) << SLOT_SHIFT)
        | random;
    ulid::Ulid::from_parts(now_ms.max(0) as u64, bits)
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

    /// A new decision id at `now_ms` for a model's content key, a variant and where it was
    /// made.
    #[inline]
    pub fn decision_id(
        &self,
        now_ms: i64,
        key: u32,
        variant: Variant,
        origin: Origin,
    ) -> ulid::Ulid {
        match &self.0 {
            None => decision_id(now_ms, key, variant, origin),
            Some(s) => {
                let n = s.next.fetch_add(1, Relaxed);
                let bits = splitmix64(s.seed.wrapping_add(n)) as u32;
                decision_id_with_random(now_ms, key, variant, origin, bits)
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
        Variant::from_index(((random >> VARIANT_SHIFT) & 0x7) as u8),
    )
}

/// Where and for whom a decision id says it was made; `None` for an id that carries no origin.
pub fn origin(decision_id: u128) -> Option<Origin> {
    let random = ulid::Ulid(decision_id).random();
    if random & ORIGIN_FLAG == 0 {
        return None;
    }
    let field = |shift: u32, mask: u128| ((random >> shift) & mask) as usize;
    let index = |v: usize| v.checked_sub(1);
    let customer = field(CUSTOMER_SHIFT, 0xfff) as u16;
    Some(Origin {
        channel: index(field(CHANNEL_SHIFT, 0x7f)),
        slot: index(field(SLOT_SHIFT, 0x1ff)),
        customer: (customer != 0).then_some(customer),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_tag_variant_origin_and_time() {
        let key = crc32fast::hash(br#"{"name":"demo","version":"1"}"#);
        let origin = Origin {
            channel: Some(1),
            slot: Some(3),
            customer: Some(customer_check("C0000042")),
        };
        let a = decision_id(1_795_000_000_000, key, Variant::Challenger, origin);
        let b = decision_id(1_795_000_000_000, key, Variant::Challenger, origin);
        assert_ne!(a, b, "still unique within a millisecond");
        assert_eq!(a.timestamp_ms(), 1_795_000_000_000);
        let expected = (model_tag(key), Some(Variant::Challenger));
        assert_eq!(attribution(a.0), expected);
        let parsed = ulid::Ulid::from_string(&a.to_string()).unwrap();
        assert_eq!(attribution(parsed.0), expected);
        assert_eq!(super::origin(parsed.0), Some(origin));
        let other = crc32fast::hash(br#"{"name":"demo","version":"2"}"#);
        assert_ne!(model_tag(other), model_tag(key));

        let unknown = decision_id(1, key, Variant::Champion, Origin::default());
        assert_eq!(super::origin(unknown.0), Some(Origin::default()));
        assert_eq!(attribution(unknown.0).1, Some(Variant::Champion));
    }

    #[test]
    fn ids_without_origin_carry_model_and_variant_only() {
        // As outbound campaigns made them before their ids carried an origin.
        let bits = (u128::from(model_tag(0xbeef)) << TAG_SHIFT)
            | ((Variant::Challenger.index() as u128) << VARIANT_SHIFT)
            | ((1 << VARIANT_SHIFT) - 1);
        let id = ulid::Ulid::from_parts(5, bits);
        assert_eq!(origin(id.0), None);
        assert_eq!(
            attribution(id.0),
            (model_tag(0xbeef), Some(Variant::Challenger))
        );
    }

    #[test]
    fn customer_checks_are_never_zero_and_tell_customers_apart() {
        let checks: std::collections::BTreeSet<u16> = (0..1000)
            .map(|i| customer_check(&format!("C{i:07}")))
            .collect();
        assert!(!checks.contains(&0));
        assert!(checks.iter().all(|&c| c <= 0xfff));
        assert!(checks.len() > 850, "{} distinct of 1000", checks.len());
    }

    #[test]
    fn seeded_ids_repeat_per_seed_and_keep_their_attribution() {
        let key = 0xbeef;
        let run = |ids: &DecisionIds| -> Vec<ulid::Ulid> {
            (0..5)
                .map(|_| {
                    ids.decision_id(1_795_000_000_000, key, Variant::Champion, Origin::default())
                })
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
        let first = ids.decision_id(1_795_000_000_000, key, Variant::Champion, Origin::default());
        let second = twin.decision_id(1_795_000_000_000, key, Variant::Champion, Origin::default());
        assert_eq!([first, second], [a[0], a[1]]);
        // The default draws from the thread's RNG.
        let random = DecisionIds::default();
        assert_ne!(run(&random), run(&random));
    }
}
