//! Allocation against exhaustive search on tiny generated bases: the list's (minimums met,
//! score) is the best of every feasible list (a customer's room under a frequency cap
//! included), and each shadow price is the difference that one unit more of its limit makes
//! to that best.

use super::*;

fn pair(row: u32, offer: u16, score: f64) -> Pair {
    Pair {
        score,
        propensity: score,
        row,
        offer,
        variant: 0,
        channel: 0,
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
        channels: 1,
        capped: false,
    }
}

fn chosen(a: &Allocation) -> Vec<(u32, u16)> {
    a.selected.iter().map(|p| (p.row, p.offer)).collect()
}

fn run(pairs: Vec<Pair>, l: &Limits, rooms: &Rooms) -> Allocation {
    allocate(candidates(pairs, l), l, rooms)
}

/// Offers per customer: `per_customer`, or less for one in `rooms`.
fn room_of(row: u32, l: &Limits, rooms: &Rooms) -> u32 {
    rooms
        .get(&row)
        .map_or(l.per_customer, |&r| l.per_customer.min(r.into()))
}

/// Some customers of `pairs` get room for fewer offers than `per_customer` (one or more, as a
/// frequency cap gives them), when `per_customer` is over one.
fn some_rooms(rng: &mut Rng, pairs: &[Pair], l: &mut Limits) -> Rooms {
    let mut rooms = Rooms::default();
    if l.per_customer > 1 && rng.next(2) == 0 {
        l.capped = true;
        for p in pairs {
            if rng.next(3) == 0 {
                rooms.insert(p.row, (1 + rng.next(u64::from(l.per_customer - 1))) as u8);
            }
        }
    }
    rooms
}

/// (units of minimums met, score) of a list, or `None` when it breaks a limit.
fn worth(list: &[Pair], l: &Limits, rooms: &Rooms) -> Option<(u64, f64)> {
    let mut per_offer = vec![0u64; l.min.len()];
    let mut per_cat = vec![0u64; l.category_max.len()];
    let mut per_row = std::collections::HashMap::new();
    for p in list {
        per_offer[p.offer as usize] += 1;
        if let Some(c) = l.category[p.offer as usize] {
            per_cat[c] += 1;
        }
        *per_row.entry(p.row).or_insert(0u32) += 1;
    }
    let ok = l.capacity.is_none_or(|c| list.len() as u64 <= c)
        && per_offer
            .iter()
            .zip(&l.max)
            .all(|(n, m)| m.is_none_or(|m| *n <= m))
        && per_cat.iter().zip(&l.category_max).all(|(n, m)| n <= m)
        && per_row.iter().all(|(&r, &n)| n <= room_of(r, l, rooms));
    ok.then(|| {
        let met = per_offer
            .iter()
            .zip(&l.min)
            .map(|(n, m)| (*n).min(*m))
            .sum();
        (met, list.iter().map(|p| p.score).sum())
    })
}

/// The best (minimums met, score) over every subset of `pairs`.
fn exhaustive(pairs: &[Pair], l: &Limits, rooms: &Rooms) -> (u64, f64) {
    let mut best = (0, 0.0);
    let mut list = Vec::new();
    for mask in 0u32..(1 << pairs.len()) {
        list.clear();
        list.extend(
            (0..pairs.len())
                .filter(|i| mask >> i & 1 == 1)
                .map(|i| pairs[i]),
        );
        if let Some(w) = worth(&list, l, rooms) {
            if w.0 > best.0 || (w.0 == best.0 && w.1 > best.1) {
                best = w;
            }
        }
    }
    best
}

struct Rng(u64);
impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// A random base of at most 14 pairs over 3 offers (two in one category) with random limits.
fn generated(rng: &mut Rng) -> (Vec<Pair>, Limits, Rooms) {
    let offers = 3;
    let mut pairs = Vec::new();
    for row in 0..6 {
        for o in 0..offers {
            if pairs.len() < 14 && rng.next(3) > 0 {
                // Few distinct scores, so ties happen.
                pairs.push(pair(row, o as u16, (1 + rng.next(12)) as f64 / 4.0));
            }
        }
    }
    let mut l = limits(offers);
    l.per_customer = 1 + rng.next(3) as u32;
    if rng.next(3) > 0 {
        l.capacity = Some(1 + rng.next(6));
    }
    for o in 0..offers {
        if rng.next(2) == 0 {
            l.max[o] = Some(rng.next(4));
        }
        if rng.next(3) == 0 {
            l.min[o] = 1 + rng.next(2);
            l.max[o] = l.max[o].map(|m| m.max(l.min[o]));
        }
    }
    if rng.next(2) == 0 {
        l.category = vec![Some(0), Some(0), None];
        l.category_max = vec![rng.next(4)];
    }
    let rooms = some_rooms(rng, &pairs, &mut l);
    (pairs, l, rooms)
}

#[test]
fn the_list_is_the_best_of_every_feasible_list() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for case in 0..250 {
        let (pairs, l, rooms) = generated(&mut rng);
        let a = run(pairs.clone(), &l, &rooms);
        let got =
            worth(&a.selected, &l, &rooms).unwrap_or_else(|| panic!("case {case}: infeasible"));
        let best = exhaustive(&pairs, &l, &rooms);
        assert_eq!(got.0, best.0, "case {case}: minimums met, {l:?} {pairs:?}");
        assert!(
            (got.1 - best.1).abs() < 1e-9,
            "case {case}: score {} against the best {}: {l:?} {pairs:?}",
            got.1,
            best.1
        );
        // The same pairs in another order give the same list.
        let mut shuffled = pairs.clone();
        shuffled.reverse();
        assert_eq!(
            chosen(&run(shuffled, &l, &rooms)),
            chosen(&a),
            "case {case}"
        );
    }
}

#[test]
fn shadow_prices_are_what_one_unit_more_adds() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut priced = 0;
    for case in 0..250 {
        let (pairs, l, rooms) = generated(&mut rng);
        let best = exhaustive(&pairs, &l, &rooms);
        if best.0 < l.min.iter().sum::<u64>() {
            continue; // a minimum the base cannot meet: its units outrank any score
        }
        let a = run(pairs.clone(), &l, &rooms);
        for s in &a.shadow_prices {
            let mut more = l.clone();
            match s.bound {
                Bound::Capacity => more.capacity = more.capacity.map(|c| c + 1),
                Bound::CategoryMax(c) => more.category_max[c] += 1,
                Bound::OfferMax(o) => more.max[o as usize] = more.max[o as usize].map(|m| m + 1),
                Bound::OfferMin(o) => more.min[o as usize] -= 1,
            }
            let with = exhaustive(&pairs, &more, &rooms);
            let expected = (with.1 - best.1).max(0.0);
            assert!(
                (s.per_unit - expected).abs() < 1e-9,
                "case {case}: {s:?}, expected {expected}: {l:?} {pairs:?}"
            );
            priced += usize::from(s.per_unit > 0.0);
        }
        // Every limit the list reaches is priced.
        let used = worth(&a.selected, &l, &rooms).map(|_| a.selected.len() as u64);
        if let (Some(c), Some(n)) = (l.capacity, used) {
            assert_eq!(
                n >= c,
                a.shadow_prices.iter().any(|s| s.bound == Bound::Capacity),
                "case {case}"
            );
        }
    }
    assert!(priced > 50, "too few binding limits generated: {priced}");
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
    let a = run(pairs, &l, &Rooms::default());
    assert_eq!(chosen(&a), vec![(2, 0), (0, 0)]);
    assert_eq!(a.shadow_prices.len(), 1);
    assert!((a.shadow_prices[0].per_unit - 0.7).abs() < 1e-12);
}

#[test]
fn an_offer_maximum_moves_a_customer_to_their_next_offer_when_that_is_worth_more() {
    // Greedy would give customer 0 offer 0 and leave customer 1 out (0.9); the best list
    // gives customer 0 offer 1 and customer 1 offer 0 (1.5).
    let pairs = vec![pair(0, 0, 0.9), pair(0, 1, 0.8), pair(1, 0, 0.7)];
    let mut l = limits(2);
    l.max[0] = Some(1);
    let a = run(pairs, &l, &Rooms::default());
    assert_eq!(chosen(&a), vec![(0, 1), (1, 0)]);
    let price = a.shadow_prices[0];
    assert_eq!(price.bound, Bound::OfferMax(0));
    // One more of offer 0: customer 0 back to it (0.9 + 0.7 - 1.5).
    assert!((price.per_unit - 0.1).abs() < 1e-12, "{price:?}");
}

#[test]
fn a_minimum_is_met_first_and_priced_by_what_it_costs() {
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
    let a = run(pairs, &l, &Rooms::default());
    assert_eq!(chosen(&a), vec![(0, 0), (1, 1)]);
    assert_eq!(a.per_offer, vec![1, 1]);
    let min = a
        .shadow_prices
        .iter()
        .find(|s| s.bound == Bound::OfferMin(1))
        .unwrap();
    // Without it: customer 1 takes offer 0 instead (0.8 - 0.3).
    assert!((min.per_unit - 0.5).abs() < 1e-12, "{min:?}");
}

#[test]
fn candidates_of_parts_are_the_candidates_of_the_whole() {
    let mut rng = Rng(7);
    let pairs: Vec<Pair> = (0..3000)
        .map(|i| pair(i / 3, (i % 3) as u16, rng.next(500) as f64))
        .collect();
    let mut l = limits(3);
    l.capacity = Some(40);
    l.max[1] = Some(5);
    l.per_customer = 2;
    let whole = candidates(pairs.clone(), &l);
    assert!(whole.len() < 200, "{}", whole.len());
    let mut parts = Vec::new();
    for part in pairs.chunks(700) {
        parts.extend(candidates(part.to_vec(), &l));
    }
    assert_eq!(candidates(parts, &l), whole);
    // And the pruning loses nothing.
    let all = allocate(
        {
            let mut p = pairs.clone();
            p.sort_by(Pair::order);
            p
        },
        &l,
        &Rooms::default(),
    );
    let pruned = allocate(whole, &l, &Rooms::default());
    let sum = |a: &Allocation| a.selected.iter().map(|p| p.score).sum::<f64>();
    assert_eq!(sum(&all), sum(&pruned));
}

#[test]
fn candidates_keep_the_pairs_of_customers_with_less_room() {
    // Five customers rank above the sixth for offer `0` (at most one sent), but each has room
    // for one offer and is worth more on offer `1`: the best list sends the sixth offer `0`.
    // With three offers a customer and no cap, only five pairs of offer `0` would be kept.
    let mut pairs = Vec::new();
    let mut rooms = Rooms::default();
    for row in 0..5 {
        pairs.push(pair(row, 0, 100.0));
        pairs.push(pair(row, 1, 200.0));
        rooms.insert(row, 1);
    }
    pairs.push(pair(5, 0, 50.0));
    let mut l = limits(3);
    l.capacity = Some(10);
    l.max[0] = Some(1);
    l.per_customer = 3;
    l.capped = true;
    let a = run(pairs, &l, &rooms);
    let mut got = chosen(&a);
    got.sort_unstable();
    assert_eq!(got, [(0, 1), (1, 1), (2, 1), (3, 1), (4, 1), (5, 0)]);
}

#[test]
fn many_equal_scores_still_fill_every_limit() {
    // Customers with the same features score the same: rounding must not make a cycle of
    // equal exchanges look like a gain and stop the allocation early.
    // Products of the same three factors in another order: equal, but for the last bits.
    let factors = [[0.37, 3.1, 1.3], [0.61, 7.0, 1.5], [0.23, 11.0, 1.7]];
    let mut rng = Rng(11);
    let mut pairs = Vec::new();
    for row in 0..20_000u32 {
        for o in 0..4u16 {
            let f = factors[rng.next(3) as usize];
            let score = match rng.next(3) {
                0 => f[0] * f[1] * f[2],
                1 => f[0] * f[2] * f[1],
                _ => f[1] * f[2] * f[0],
            };
            pairs.push(pair(row, o, score));
        }
    }
    let mut l = limits(4);
    l.capacity = Some(8000);
    l.max[0] = Some(900);
    l.max[1] = Some(2000);
    l.min[2] = 700;
    l.category = vec![Some(0), None, Some(0), None];
    l.category_max = vec![2500];
    let a = run(pairs, &l, &Rooms::default());
    assert!(a.complete);
    assert_eq!(a.selected.len(), 8000, "{:?}", a.per_offer);
    assert!(
        a.per_offer[0] <= 900 && a.per_offer[1] <= 2000,
        "{:?}",
        a.per_offer
    );
    assert!(a.per_offer[0] + a.per_offer[2] <= 2500 && a.per_offer[2] >= 700);
}

#[test]
fn shares_are_proportional_and_add_up() {
    assert_eq!(proportional(10, &[1, 1, 1]), vec![4, 3, 3]);
    assert_eq!(proportional(61, &[300, 100]), vec![46, 15]);
    assert_eq!(proportional(7, &[0, 0]), vec![7, 0]);
    assert_eq!(proportional(0, &[5, 9]), vec![0, 0]);
    let mut l = limits(2);
    l.capacity = Some(101);
    l.max[1] = Some(9);
    l.min[0] = 3;
    l.category = vec![Some(0), None];
    l.category_max = vec![50];
    let parts = split(&l, &[2, 1]);
    assert_eq!(parts[0].capacity, Some(67));
    assert_eq!(parts[1].capacity, Some(34));
    assert_eq!((parts[0].max[1], parts[1].max[1]), (Some(6), Some(3)));
    assert_eq!((parts[0].min[0], parts[1].min[0]), (2, 1));
    assert_eq!(parts[0].category_max[0] + parts[1].category_max[0], 50);
}

/// A random base over 2 offers and 3 channels (at most 14 pairs), each channel's capacity
/// random or unset, as a campaign with `channels` gives them.
fn generated_channels(rng: &mut Rng) -> (Vec<Pair>, Limits, Rooms) {
    let (offers, channels) = (2usize, 3usize);
    let mut pairs = Vec::new();
    for row in 0..5 {
        for o in 0..offers {
            for ch in 0..channels {
                if pairs.len() < 14 && rng.next(2) > 0 {
                    let mut p = pair(row, o as u16, (1 + rng.next(12)) as f64 / 4.0);
                    p.channel = ch as u8;
                    pairs.push(p);
                }
            }
        }
    }
    let mut l = limits(offers * channels);
    l.channels = channels as u32;
    l.per_customer = 1 + rng.next(3) as u32;
    let caps: Vec<Option<usize>> = (0..channels)
        .map(|_| {
            (rng.next(4) > 0).then(|| {
                l.category_max.push(rng.next(4));
                l.category_max.len() - 1
            })
        })
        .collect();
    l.category = (0..offers * channels).map(|s| caps[s % channels]).collect();
    let rooms = some_rooms(rng, &pairs, &mut l);
    (pairs, l, rooms)
}

/// The score of a list over several channels, or `None` when it breaks a channel's capacity,
/// offers per customer, or sends a customer one offer twice.
fn worth_channels(list: &[Pair], l: &Limits, rooms: &Rooms) -> Option<f64> {
    let mut per_cat = vec![0u64; l.category_max.len()];
    let mut per_row = std::collections::HashMap::new();
    let mut seen = std::collections::HashSet::new();
    for p in list {
        if let Some(c) = l.category[l.slot(p)] {
            per_cat[c] += 1;
        }
        *per_row.entry(p.row).or_insert(0u32) += 1;
        if !seen.insert((p.row, p.offer)) {
            return None;
        }
    }
    let ok = per_cat.iter().zip(&l.category_max).all(|(n, m)| n <= m)
        && per_row.iter().all(|(&r, &n)| n <= room_of(r, l, rooms));
    ok.then(|| list.iter().map(|p| p.score).sum())
}

fn exhaustive_channels(pairs: &[Pair], l: &Limits, rooms: &Rooms) -> f64 {
    let mut best = 0.0f64;
    for mask in 0u32..(1 << pairs.len()) {
        let list: Vec<Pair> = (0..pairs.len())
            .filter(|i| mask >> i & 1 == 1)
            .map(|i| pairs[i])
            .collect();
        if let Some(w) = worth_channels(&list, l, rooms) {
            best = best.max(w);
        }
    }
    best
}

#[test]
fn several_channels_give_the_best_list_over_all_channels_jointly() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut priced = 0;
    for case in 0..300 {
        let (pairs, l, rooms) = generated_channels(&mut rng);
        let a = run(pairs.clone(), &l, &rooms);
        let got = worth_channels(&a.selected, &l, &rooms)
            .unwrap_or_else(|| panic!("case {case}: infeasible {:?}", chosen(&a)));
        let best = exhaustive_channels(&pairs, &l, &rooms);
        assert!(
            (got - best).abs() < 1e-9,
            "case {case}: score {got} against the best {best}: {l:?} {pairs:?}"
        );
        assert_eq!(a.per_offer.len(), 2, "per offer, not per (offer, channel)");
        assert_eq!(a.per_offer.iter().sum::<u64>(), a.selected.len() as u64);
        let mut shuffled = pairs.clone();
        shuffled.reverse();
        assert_eq!(
            chosen(&run(shuffled, &l, &rooms)),
            chosen(&a),
            "case {case}"
        );
        for s in &a.shadow_prices {
            let Bound::CategoryMax(c) = s.bound else {
                panic!("case {case}: only channel capacities bind: {s:?}");
            };
            let mut more = l.clone();
            more.category_max[c] += 1;
            let expected = (exhaustive_channels(&pairs, &more, &rooms) - best).max(0.0);
            assert!(
                (s.per_unit - expected).abs() < 1e-9,
                "case {case}: {s:?}, expected {expected}: {l:?} {pairs:?}"
            );
            priced += usize::from(s.per_unit > 0.0);
        }
    }
    assert!(
        priced > 30,
        "too few binding capacities generated: {priced}"
    );
}
