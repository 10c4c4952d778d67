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
    // Per variant and offer: each variant is allocated on its own (see [`allocate_variants`]),
    // under limits no larger than these.
    let mut kept = vec![0u64; 2 * keep.len()];
    pairs.retain(|p| {
        let o = p.offer as usize;
        let at = usize::from(p.variant) * keep.len() + o;
        let ok = keep[o].is_none_or(|k| kept[at] < k);
        kept[at] += u64::from(ok);
        ok
    });
    pairs
}

/// What one variant was given and took.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VariantUse {
    /// Its customers who reached the allocation.
    pub eligible: u64,
    /// Its share of the capacity.
    pub capacity: Option<u64>,
    /// Pairs chosen for it.
    pub selected: u64,
}

/// Shares `total` between parts in proportion to `weights`: each gets the floor of its exact
/// share, and the units left over go to the largest remainders (ties: the earlier part).
pub fn proportional(total: u64, weights: &[u64]) -> Vec<u64> {
    let sum: u128 = weights.iter().map(|&w| u128::from(w)).sum();
    if sum == 0 {
        let mut out = vec![0; weights.len()];
        if let Some(first) = out.first_mut() {
            *first = total;
        }
        return out;
    }
    let exact: Vec<(u64, u128)> = weights
        .iter()
        .map(|&w| {
            let x = u128::from(total) * u128::from(w);
            ((x / sum) as u64, x % sum)
        })
        .collect();
    let mut out: Vec<u64> = exact.iter().map(|e| e.0).collect();
    let mut left = total - out.iter().sum::<u64>();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|&a, &b| exact[b].1.cmp(&exact[a].1).then(a.cmp(&b)));
    for i in order {
        if left == 0 {
            break;
        }
        out[i] += 1;
        left -= 1;
    }
    out
}

/// Each variant's limits: the capacity and every offer and category limit shared in
/// proportion to the variant's customers who reached the allocation, so a challenger is
/// measured on as many contacts as its share of the base, whatever its scores.
pub fn split(limits: &Limits, eligible: &[u64]) -> Vec<Limits> {
    let share = |total: u64| proportional(total, eligible);
    let capacity = limits.capacity.map(share);
    let min: Vec<Vec<u64>> = limits.min.iter().map(|&m| share(m)).collect();
    let max: Vec<Option<Vec<u64>>> = limits.max.iter().map(|m| m.map(share)).collect();
    let category_max: Vec<Vec<u64>> = limits.category_max.iter().map(|&m| share(m)).collect();
    (0..eligible.len())
        .map(|v| Limits {
            capacity: capacity.as_ref().map(|c| c[v]),
            min: min.iter().map(|m| m[v]).collect(),
            max: max.iter().map(|m| m.as_ref().map(|m| m[v])).collect(),
            category: limits.category.clone(),
            category_max: category_max.iter().map(|m| m[v]).collect(),
            per_customer: limits.per_customer,
        })
        .collect()
}

/// Chooses the list when customers are split between variants (`eligible`: each variant's
/// customers who reached the allocation): with one variant, [`allocate`]; with a challenger,
/// each variant's best list under its [`split`] of the limits, joined in the global order.
pub fn allocate_variants(
    pairs: Vec<Pair>,
    limits: &Limits,
    eligible: &[u64],
) -> (Allocation, Vec<VariantUse>) {
    if eligible.len() < 2 {
        let a = allocate(pairs, limits);
        let used = VariantUse {
            eligible: eligible.first().copied().unwrap_or(0),
            capacity: limits.capacity,
            selected: a.selected.len() as u64,
        };
        return (a, vec![used]);
    }
    let parts = split(limits, eligible);
    let mut by_variant: Vec<Vec<Pair>> = vec![Vec::new(); eligible.len()];
    for p in pairs {
        if let Some(v) = by_variant.get_mut(usize::from(p.variant)) {
            v.push(p);
        }
    }
    let mut out = Allocation {
        per_offer: vec![0; limits.min.len()],
        complete: true,
        ..Allocation::default()
    };
    let mut uses = Vec::new();
    for (v, (pairs, l)) in by_variant.into_iter().zip(&parts).enumerate() {
        let a = allocate(pairs, l);
        uses.push(VariantUse {
            eligible: eligible[v],
            capacity: l.capacity,
            selected: a.selected.len() as u64,
        });
        for (t, n) in out.per_offer.iter_mut().zip(&a.per_offer) {
            *t += n;
        }
        out.shadow_prices
            .extend(a.shadow_prices.into_iter().map(|s| Shadow {
                variant: v as u8,
                ..s
            }));
        out.complete &= a.complete;
        out.selected.extend(a.selected);
    }
    out.selected.par_sort_unstable_by(Pair::order);
    (out, uses)
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
