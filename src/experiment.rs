//! Champion/challenger experiments: which variant a customer gets, and the one type that names
//! a variant everywhere (answers, decision ids, the funnel, metrics).
//!
//! Assignment is a pure function of the experiment's salt and the customer id, so a customer
//! sees the same variant on every channel, request and replica, with no shared state. This
//! module owns that function and nothing else: it does not load models or count outcomes.

use std::sync::Arc;

use crate::model::LoadedModel;

/// Which model answered a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Variant {
    /// The active model.
    Champion = 0,
    /// The model under test on a share of customers.
    Challenger = 1,
}

impl Variant {
    /// Every variant, in index order (tables are sized by it).
    pub const ALL: [Variant; 2] = [Variant::Champion, Variant::Challenger];

    /// The wire name, as answers and stats carry it.
    pub fn as_str(self) -> &'static str {
        match self {
            Variant::Champion => "champion",
            Variant::Challenger => "challenger",
        }
    }

    /// Dense index for per-variant tables.
    #[inline]
    pub fn index(self) -> usize {
        self as usize
    }

    /// The variant a dense index (as decision ids carry it) names, if any.
    #[inline]
    pub fn from_index(i: u8) -> Option<Variant> {
        match i {
            0 => Some(Variant::Champion),
            1 => Some(Variant::Challenger),
            _ => None,
        }
    }
}

/// A challenger model and the customers it serves.
#[derive(Debug)]
pub struct Challenger {
    /// The challenger, compiled against the same snapshot as the champion.
    pub model: Arc<LoadedModel>,
    /// Share of customers, 0..=1.
    pub share: f64,
    /// Experiment salt: a new salt reshuffles who is in; a new share moves only the margin.
    pub salt: String,
}

impl Challenger {
    /// True when the customer falls in the challenger's share.
    #[inline]
    pub fn includes(&self, customer_id: &str) -> bool {
        assignment(&self.salt, customer_id) < self.share
    }
}

/// The variant a customer gets; anonymous visitors always get the champion.
#[inline]
pub fn pick(challenger: Option<&Challenger>, customer_id: Option<&str>) -> Variant {
    match (challenger, customer_id) {
        (Some(c), Some(id)) if c.includes(id) => Variant::Challenger,
        _ => Variant::Champion,
    }
}

/// A customer's stable position in `[0, 1)` for an experiment: the same on every channel,
/// request and replica (a fixed hash, no per-process seed). A customer is in the challenger
/// when this is below the share, so raising the share only adds customers at the margin.
pub fn assignment(salt: &str, customer_id: &str) -> f64 {
    // FNV-1a over salt, a separator and the id, then the SplitMix64 finaliser to spread the
    // low-entropy differences of sequential ids over all bits.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in salt.bytes().chain([0xff]).chain(customer_id.bytes()) {
        h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    (h >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignment_is_stable_uniform_and_monotonic_in_share() {
        let ids: Vec<String> = (0..20_000).map(|i| format!("C{i:07}")).collect();
        let a: Vec<f64> = ids.iter().map(|id| assignment("exp1", id)).collect();
        // Stable: same input, same output.
        assert_eq!(a[123], assignment("exp1", "C0000123"));
        // Uniform enough: a 10% share gets close to 10% of customers.
        let in10 = a.iter().filter(|&&x| x < 0.10).count() as f64 / a.len() as f64;
        assert!((in10 - 0.10).abs() < 0.01, "{in10}");
        // Raising the share only adds customers: everyone in at 10% is in at 20%.
        assert!(a.iter().filter(|&&x| x < 0.10).all(|&x| x < 0.20));
        // A new salt reshuffles.
        let moved = ids
            .iter()
            .zip(&a)
            .filter(|(id, &x)| (x < 0.5) != (assignment("exp2", id) < 0.5))
            .count();
        assert!(moved > 5_000, "{moved}");
    }

    #[test]
    fn variant_indices_round_trip() {
        for v in Variant::ALL {
            assert_eq!(Variant::from_index(v.index() as u8), Some(v));
        }
        assert_eq!(Variant::from_index(2), None);
    }
}
