//! Global allocation under volume limits: which (customer, offer) pairs of the whole base are
//! sent, and what each limit the list reaches costs.
//!
//! Two steps. [`candidates`] sorts the pairs once by [`Pair::order`] (score, then row, then
//! offer: a total order) and keeps, per offer, only the best pairs that an optimal list could
//! use, even with any one limit a unit higher (the bound and its proof are in the README's
//! campaign section): shards send these and nothing else. [`allocate`] then chooses among them:
//! with no limit shared between customers, each customer's best pairs up to their room;
//! otherwise the exact best list of the `flow` module (offer minimums met first whenever the
//! base allows, then the greatest total score under capacity, offer maximums, category maximums
//! and offers per customer, or a customer's room under the caps), with
//! the shadow price of every limit it reaches. Pure: no I/O.
use rayon::slice::ParallelSliceMut;

use super::flow::Solver;
pub use super::flow::{Bound, Limits, Shadow};
use super::select::{Pair, Rooms};

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
        let o = limits.slot(p);
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
            channels: limits.channels,
            capped: limits.capped,
        })
        .collect()
}

/// Chooses the list when customers are split between variants (`eligible`: each variant's
/// customers who reached the allocation): with one variant, [`allocate`]; with a challenger,
/// each variant's best list under its [`split`] of the limits, joined in the global order.
pub fn allocate_variants(
    pairs: Vec<Pair>,
    limits: &Limits,
    rooms: &Rooms,
    eligible: &[u64],
) -> (Allocation, Vec<VariantUse>) {
    if eligible.len() < 2 {
        let a = allocate(pairs, limits, rooms);
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
        per_offer: vec![0; offer_count(limits)],
        complete: true,
        ..Allocation::default()
    };
    let mut uses = Vec::new();
    for (v, (pairs, l)) in by_variant.into_iter().zip(&parts).enumerate() {
        let a = allocate(pairs, l, rooms);
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

/// The campaign's offers (the limits are per (offer, channel) with several channels).
fn offer_count(limits: &Limits) -> usize {
    limits.min.len() / limits.channels.max(1) as usize
}

/// Chooses the best list among `pairs` (as [`candidates`] leaves them) under `limits`, giving
/// no customer more offers than their room in `rooms`.
pub fn allocate(pairs: Vec<Pair>, limits: &Limits, rooms: &Rooms) -> Allocation {
    if limits.channels > 1 {
        return allocate_channels(pairs, limits, rooms);
    }
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
            let room = rooms.get(&group[0].row).map_or(k, |&r| k.min(r.into()));
            for p in group.iter().take(room) {
                out.per_offer[p.offer as usize] += 1;
                out.selected.push(*p);
            }
        }
    } else {
        by_customer.sort_by(|a, b| a.row.cmp(&b.row).then(a.offer.cmp(&b.offer)));
        let mut solver = Solver::new(&by_customer, limits, rooms);
        out.complete = solver.solve();
        out.shadow_prices = solver.shadow_prices();
        out.per_offer = solver.per_offer().to_vec();
        out.selected = solver.chosen().map(|p| by_customer[p]).collect();
    }
    out.selected.par_sort_unstable_by(Pair::order);
    out
}

/// [`allocate`] over several channels: the flow's offers are the (offer, channel) slots, each
/// channel's capacity the limited category of its slots, and a customer takes an offer on one
/// channel at most; the list is the exact best over all channels jointly.
fn allocate_channels(pairs: Vec<Pair>, limits: &Limits, rooms: &Rooms) -> Allocation {
    let mut slotted: Vec<Pair> = pairs
        .iter()
        .map(|p| Pair {
            offer: limits.slot(p) as u16,
            ..*p
        })
        .collect();
    slotted.sort_by(|a, b| a.row.cmp(&b.row).then(a.offer.cmp(&b.offer)));
    let mut solver = Solver::new(&slotted, limits, rooms);
    let complete = solver.solve();
    let shadow_prices = solver.shadow_prices();
    let c = limits.channels as usize;
    let mut per_offer = vec![0; offer_count(limits)];
    for (slot, n) in solver.per_offer().iter().enumerate() {
        per_offer[slot / c] += n;
    }
    let mut selected: Vec<Pair> = solver
        .chosen()
        .map(|i| Pair {
            offer: slotted[i].offer / c as u16,
            ..slotted[i]
        })
        .collect();
    selected.par_sort_unstable_by(Pair::order);
    Allocation {
        selected,
        per_offer,
        shadow_prices,
        complete,
    }
}

#[cfg(test)]
mod tests;
