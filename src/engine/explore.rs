//! Exploration: on a placement's declared share of decisions, the answer is drawn at random
//! from the eligible offers instead of taken from the top of the ranking, so that logged
//! traffic holds randomised choices an off-policy estimate can learn from.
//!
//! Which decisions explore is a hash of the decision's seed (itself a hash of the decision id):
//! the same id explores the same way in a replay, and the choice is independent of the bits the
//! decision log samples on and of the streams adaptive offers draw from. An explored answer is a
//! uniform random subset of `min(limit, k)` of the `k` eligible offers (reservoir sampling, so
//! nothing is allocated), shown in score order. This module owns the coin and the pick; the
//! probability each offer had of being shown is `shown`'s. No clock, lock or allocation here.

use super::posterior::mix;
use super::{keep_top, Ranked, MAX_LIMIT};

/// Salt of the exploration coin (ASCII "explore!").
const COIN: u64 = 0x6578_706c_6f72_6521;
/// Salt of the pick's random stream (ASCII "pickpick").
const PICK: u64 = 0x7069_636b_7069_636b;

/// The exploration coin of a decision: uniform in `[0, 1)`; the decision explores when it is
/// below the placement's share.
#[inline]
pub fn coin(seed: u64) -> f64 {
    (mix(seed ^ COIN) >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// True when a decision with this seed explores on a placement with this share.
#[inline]
pub fn explores(seed: Option<u64>, share: f64) -> bool {
    share > 0.0 && seed.is_some_and(|s| coin(s) < share)
}

/// A uniform random subset of the eligible offers of one decision, chosen as they stream by.
pub struct Pick {
    kept: [Ranked; MAX_LIMIT],
    len: usize,
    limit: usize,
    /// Eligible offers seen.
    pub seen: u32,
    state: u64,
}

impl Pick {
    /// An empty pick of at most `limit` offers, its randomness from the decision's seed.
    #[inline]
    pub fn new(seed: u64, limit: usize) -> Self {
        Pick {
            kept: [Ranked {
                offer: 0,
                propensity: 0.0,
                score: 0.0,
            }; MAX_LIMIT],
            len: 0,
            limit: limit.clamp(1, MAX_LIMIT),
            seen: 0,
            state: seed ^ PICK,
        }
    }

    /// Offers one eligible offer (Algorithm R: the `n`-th is kept with probability
    /// `limit / n`, in the place of a uniformly chosen kept one).
    #[inline]
    pub fn offer(&mut self, r: Ranked) {
        self.seen += 1;
        if self.len < self.limit {
            self.kept[self.len] = r;
            self.len += 1;
            return;
        }
        self.state = self.state.wrapping_add(1);
        let j = ((u128::from(mix(self.state)) * u128::from(self.seen)) >> 64) as usize;
        if j < self.limit {
            self.kept[j] = r;
        }
    }

    /// Replaces `out` with the picked offers in score order (no allocation: `out` has room
    /// for `limit`).
    #[inline]
    pub fn finish(&self, out: &mut Vec<Ranked>) {
        out.clear();
        for r in &self.kept[..self.len] {
            keep_top(out, self.limit, *r);
        }
    }
}

/// The probability that a uniform exploring decision shows a given eligible offer.
#[inline]
pub fn uniform_share(limit: usize, eligible: u32) -> f64 {
    if eligible == 0 {
        0.0
    } else {
        (limit as f64).min(f64::from(eligible)) / f64::from(eligible)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_coin_is_uniform_and_the_pick_is_uniform() {
        let explored = (0..100_000u64).filter(|s| explores(Some(*s), 0.1)).count();
        assert!((9_500..10_500).contains(&explored), "{explored}");
        assert!(!explores(None, 1.0), "no seed, no exploration");
        assert!(!explores(Some(3), 0.0));
        // Two of five offers: each should be picked 40 % of the time.
        let mut counts = [0u32; 5];
        let mut out = Vec::with_capacity(2);
        for seed in 0..50_000u64 {
            let mut p = Pick::new(mix(seed), 2);
            for o in 0..5u32 {
                p.offer(Ranked {
                    offer: o,
                    propensity: 0.1,
                    score: f64::from(o),
                });
            }
            p.finish(&mut out);
            assert_eq!(out.len(), 2);
            assert!(out[0].score > out[1].score, "shown in score order");
            for r in &out {
                counts[r.offer as usize] += 1;
            }
        }
        for c in counts {
            assert!((19_000..21_000).contains(&c), "{counts:?}");
        }
        assert!((uniform_share(2, 5) - 0.4).abs() < 1e-12);
        assert_eq!(uniform_share(3, 2), 1.0);
    }
}
