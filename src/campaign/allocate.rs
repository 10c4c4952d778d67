//! Global allocation under volume limits: which (customer, offer) pairs of the whole base are
//! sent, and what each limit the list reaches costs.
//!
//! Two steps. [`candidates`] sorts the pairs once by [`Pair::order`] (score, then row, then
//! offer: a total order) and keeps, per offer, only the best pairs that an optimal list could
//! use, even with any one limit a unit higher (the bound and its proof are in the README's
//! campaign section): shards send these and nothing else. [`allocate`] then chooses among them:
//! with no limit shared between customers, each customer's best pairs; otherwise the exact best
//! list of the `flow` module (offer minimums met first whenever the base allows, then the greatest
//! total score under capacity, offer maximums, category maximums and offers per customer), with
//! the shadow price of every limit it reaches. Pure: no I/O.
use rayon::slice::ParallelSliceMut;

use super::flow::Solver;
pub use super::flow::{Bound, Shadow};
use super::select::Pair;

/// The limits of one run, by campaign offer index.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    /// Contacts the channel can still take (capacity minus what the period already used).
    pub capacity: Option<u64>,
    /// Per offer: minimum.
    pub min: Vec<u64>,
    /// Per offer: maximum.
    pub max: Vec<Option<u64>>,
    /// Per offer: its category's index in `category_max`, if the category is limited.
    pub category: Vec<Option<usize>>,
    /// Per limited category: maximum.
    pub category_max: Vec<u64>,
    /// Offers one customer may get.
    pub per_customer: u32,
}

impl Limits {
    /// True when an offer or category limit is set: customers then compete for more than the
    /// capacity, and a customer's lower pairs may be the ones worth sending.
    pub fn offer_level(&self) -> bool {
        self.min.iter().any(|&m| m > 0)
            || self.max.iter().any(Option::is_some)
            || !self.category_max.is_empty()
    }

    /// Most pairs any list can hold (`None`: no bound).
    fn total_bound(&self) -> Option<u64> {
        let mut in_category = vec![0u64; self.category_max.len()];
        let mut sum = Some(0u64);
        for (o, max) in self.max.iter().enumerate() {
            match (self.category[o], max) {
                (Some(c), Some(m)) => in_category[c] = in_category[c].saturating_add(*m),
                (Some(c), None) => in_category[c] = u64::MAX,
                (None, Some(m)) => sum = sum.map(|s| s.saturating_add(*m)),
                (None, None) => sum = None,
            }
        }
        let categories = in_category
            .iter()
            .zip(&self.category_max)
            .fold(0u64, |s, (&a, &m)| s.saturating_add(a.min(m)));
        let offers = sum.map(|s| s.saturating_add(categories));
        match (self.capacity, offers) {
            (Some(c), Some(o)) => Some(c.min(o)),
            (c, o) => c.or(o),
        }
    }

    /// Per offer: how many of its best pairs an optimal list can use, with any one limit a
    /// unit higher (so shadow prices are exact too); `None` for all.
    ///
    /// With `T` the most pairs a list can hold and `A` the most this offer can have, a chosen
    /// pair of the offer has at most `A - 1` better pairs of the offer chosen and at most
    /// `(T - A) / k` better ones whose customer is full with `k` other pairs; any other better
    /// pair could replace it without breaking a limit or lowering the score.
    pub fn keep_per_offer(&self) -> Vec<Option<u64>> {
        let t = self.total_bound().map(|t| t.saturating_add(1));
        let k = u64::from(self.per_customer.max(1));
        (0..self.min.len())
            .map(|o| {
                let t = t?;
                let a = [self.max[o], self.category[o].map(|c| self.category_max[c])]
                    .into_iter()
                    .flatten()
                    .fold(t - 1, u64::min)
                    .saturating_add(1)
                    .min(t);
                Some(a + (t - a) / k)
            })
            .collect()
    }
}

/// What allocation chose.
#[derive(Debug, Default)]
pub struct Allocation {
    /// The chosen pairs, in the global order.
    pub selected: Vec<Pair>,
    /// Per offer: pairs chosen.
    pub per_offer: Vec<u64>,
    /// Every limit the list reaches, with what one unit more of it would add.
    pub shadow_prices: Vec<Shadow>,
    /// False when the search stopped before the best list (never seen; logged if it happens).
    pub complete: bool,
}

/// Sorts `pairs` in the global order and keeps those an optimal list can use (see
/// [`Limits::keep_per_offer`]). The same pairs in any order, or split in any way and each part
/// reduced first, give the same result.
pub fn candidates(mut pairs: Vec<Pair>, limits: &Limits) -> Vec<Pair> {
    pairs.par_sort_unstable_by(Pair::order);
    let keep = limits.keep_per_offer();
    if keep.iter().all(Option::is_none) {
        return pairs;
    }
    let mut kept = vec![0u64; keep.len()];
    pairs.retain(|p| {
        let o = p.offer as usize;
        let ok = keep[o].is_none_or(|k| kept[o] < k);
        kept[o] += u64::from(ok);
        ok
    });
    pairs
}

/// Chooses the best list among `pairs` (as [`candidates`] leaves them) under `limits`.
pub fn allocate(pairs: Vec<Pair>, limits: &Limits) -> Allocation {
    let mut by_customer = pairs;
    by_customer.par_sort_unstable_by(|a, b| a.row.cmp(&b.row).then_with(|| Pair::order(a, b)));
    let offers = limits.min.len();
    let mut out = Allocation {
        per_offer: vec![0; offers],
        complete: true,
        ..Allocation::default()
    };
    if limits.capacity.is_none() && !limits.offer_level() {
        // Nothing is shared between customers: each gets their best pairs.
        let k = limits.per_customer as usize;
        for group in by_customer.chunk_by(|a, b| a.row == b.row) {
            for p in group.iter().take(k) {
                out.per_offer[p.offer as usize] += 1;
                out.selected.push(*p);
            }
        }
    } else {
        by_customer.sort_by(|a, b| a.row.cmp(&b.row).then(a.offer.cmp(&b.offer)));
        let mut solver = Solver::new(&by_customer, limits);
        out.complete = solver.solve();
        out.shadow_prices = solver.shadow_prices();
        out.per_offer = solver.per_offer().to_vec();
        out.selected = solver.chosen().map(|p| by_customer[p]).collect();
    }
    out.selected.par_sort_unstable_by(Pair::order);
    out
}

#[cfg(test)]
mod tests;
