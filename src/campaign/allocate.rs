//! Global allocation under volume constraints: which (customer, offer) pairs of the whole base
//! are sent.
//!
//! Pairs are sorted once by [`Pair::order`] (score, then row, then offer: a total order, so the
//! same pairs give the same list on every run and every core count). Two greedy passes follow:
//! the first takes, best first, only pairs of offers still below their minimum, so minimums are
//! filled before other offers take the capacity when the base allows; the second takes the best
//! remaining pairs while every limit holds (channel capacity, offer maximum, category maximum,
//! offers per customer). With one offer per customer and no offer-level limit, the second pass
//! is exactly "each customer's best offer, best customers first, until the capacity is spent",
//! the score-maximal list. Pure: no I/O.

use rayon::slice::ParallelSliceMut;

use super::select::Pair;

/// The limits of one run, by campaign offer index.
#[derive(Debug, Clone, Default)]
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

/// What allocation chose.
#[derive(Debug, Default)]
pub struct Allocation {
    /// The chosen pairs, in the global order.
    pub selected: Vec<Pair>,
    /// Per offer: pairs chosen.
    pub per_offer: Vec<u64>,
    /// Customers who had candidate pairs and got none.
    pub lost_to_limits: u64,
}

/// Sorts `pairs` in the global order and chooses under `limits`; `rows` is the snapshot size.
pub fn allocate(mut pairs: Vec<Pair>, limits: &Limits, rows: usize) -> Allocation {
    pairs.par_sort_unstable_by(Pair::order);
    let mut st = Counts {
        per_offer: vec![0; limits.min.len()],
        per_category: vec![0; limits.category_max.len()],
        per_customer: vec![0; rows],
        total: 0,
    };
    let mut taken = vec![false; pairs.len()];
    let cap = limits.capacity.unwrap_or(u64::MAX);
    if limits.min.iter().any(|&m| m > 0) {
        for (i, p) in pairs.iter().enumerate() {
            if st.total >= cap {
                break;
            }
            if st.per_offer[p.offer as usize] < limits.min[p.offer as usize] && st.fits(p, limits) {
                st.take(p, limits);
                taken[i] = true;
            }
        }
    }
    for (i, p) in pairs.iter().enumerate() {
        if st.total >= cap {
            break;
        }
        if !taken[i] && st.fits(p, limits) {
            st.take(p, limits);
            taken[i] = true;
        }
    }

    let mut lost = 0u64;
    let mut seen = vec![false; rows];
    for p in &pairs {
        let r = p.row as usize;
        if !seen[r] {
            seen[r] = true;
            if st.per_customer[r] == 0 {
                lost += 1;
            }
        }
    }
    let selected = pairs
        .iter()
        .zip(&taken)
        .filter(|(_, t)| **t)
        .map(|(p, _)| *p)
        .collect();
    Allocation {
        selected,
        per_offer: st.per_offer,
        lost_to_limits: lost,
    }
}

/// What has been chosen so far.
struct Counts {
    per_offer: Vec<u64>,
    per_category: Vec<u64>,
    per_customer: Vec<u8>,
    total: u64,
}

impl Counts {
    fn fits(&self, p: &Pair, l: &Limits) -> bool {
        let o = p.offer as usize;
        u32::from(self.per_customer[p.row as usize]) < l.per_customer
            && l.max[o].is_none_or(|m| self.per_offer[o] < m)
            && l.category[o].is_none_or(|c| self.per_category[c] < l.category_max[c])
    }

    fn take(&mut self, p: &Pair, l: &Limits) {
        let o = p.offer as usize;
        self.per_offer[o] += 1;
        if let Some(c) = l.category[o] {
            self.per_category[c] += 1;
        }
        self.per_customer[p.row as usize] += 1;
        self.total += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(row: u32, offer: u16, score: f64) -> Pair {
        Pair {
            score,
            propensity: score,
            row,
            offer,
            variant: 0,
        }
    }

    fn limits(n: usize) -> Limits {
        Limits {
            capacity: None,
            min: vec![0; n],
            max: vec![None; n],
            category: vec![None; n],
            category_max: vec![],
            per_customer: 1,
        }
    }

    fn chosen(a: &Allocation) -> Vec<(u32, u16)> {
        a.selected.iter().map(|p| (p.row, p.offer)).collect()
    }

    #[test]
    fn capacity_takes_each_customers_best_best_customers_first() {
        let pairs = vec![
            pair(0, 0, 0.9),
            pair(0, 1, 0.8),
            pair(1, 1, 0.7),
            pair(2, 0, 0.95),
            pair(2, 1, 0.1),
        ];
        let mut l = limits(2);
        l.capacity = Some(2);
        let a = allocate(pairs, &l, 3);
        assert_eq!(chosen(&a), vec![(2, 0), (0, 0)]);
        assert_eq!(a.lost_to_limits, 1);
    }

    #[test]
    fn an_offer_maximum_moves_customers_to_their_next_offer() {
        let pairs = vec![pair(0, 0, 0.9), pair(0, 1, 0.8), pair(1, 0, 0.7)];
        let mut l = limits(2);
        l.max[0] = Some(1);
        let a = allocate(pairs, &l, 2);
        assert_eq!(chosen(&a), vec![(0, 0)]);
        assert_eq!(a.lost_to_limits, 1, "customer 1 only wanted offer 0");
        let pairs = vec![pair(0, 0, 0.7), pair(0, 1, 0.6), pair(1, 0, 0.9)];
        let a = allocate(pairs, &l, 2);
        assert_eq!(chosen(&a), vec![(1, 0), (0, 1)]);
    }

    #[test]
    fn minimums_come_first_within_capacity() {
        let pairs = vec![
            pair(0, 0, 0.9),
            pair(0, 1, 0.2),
            pair(1, 0, 0.8),
            pair(1, 1, 0.3),
            pair(2, 0, 0.7),
        ];
        let mut l = limits(2);
        l.capacity = Some(2);
        l.min[1] = 1;
        let a = allocate(pairs, &l, 3);
        // Offer 1's best pair is customer 1 (0.3); then the best remaining: customer 0.
        assert_eq!(chosen(&a), vec![(0, 0), (1, 1)]);
        assert_eq!(a.per_offer, vec![1, 1]);
    }

    #[test]
    fn category_and_per_customer_limits() {
        let pairs = vec![
            pair(0, 0, 0.9),
            pair(0, 1, 0.8),
            pair(1, 0, 0.7),
            pair(1, 2, 0.6),
        ];
        let mut l = limits(3);
        l.per_customer = 2;
        l.category = vec![Some(0), Some(0), None];
        l.category_max = vec![2];
        let a = allocate(pairs, &l, 2);
        assert_eq!(chosen(&a), vec![(0, 0), (0, 1), (1, 2)]);
    }
}
