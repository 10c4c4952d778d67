//! The exact allocation under shared limits, and what one more unit of each limit is worth.
//!
//! The problem is a flow network: source → customer (at most `per_customer` units, fewer for
//! a customer whose frequency or sales cap leaves less room) → offer
//! (one unit per candidate pair, worth its score) → the offer's limited category, if any → the
//! channel's capacity → sink, with each offer's maximum on its arc. An offer's minimum is the
//! first `min` units of that arc carrying a bonus that outranks any score (gains compare as
//! (bonus, score) pairs), so minimums are met whenever the base allows and score is maximised
//! under that. The offers' arcs nest (offer within category within capacity), so the network's
//! matrix is totally unimodular: the best flow is the best integer list, not a relaxation.
//!
//! Several channels keep it a flow: the network's offers are then (offer, channel) slots, each
//! channel's capacity is the limited category of its slots, and a customer holds an offer on
//! one channel at most (a (customer, offer) node of capacity one on the customer's side, kept
//! by the exchanges and newcomers allowed). Offer or category limits across channels would
//! cross the channels' capacities and break the nesting: campaigns refuse them.
//!
//! Successive longest paths: from the empty list, each step adds the path of greatest gain from
//! source to sink in the residual network (a new customer joins an offer, maybe pushing others
//! from offer to offer on the way), until no path gains. That keeps the residual network free of
//! gaining cycles, so every step's list is the best of its size and the last is the best of all.
//! Customers are never nodes: between two offer nodes the best exchange is the top of a heap
//! (customers holding offer `a` who could hold `b` instead, by gain), and the best newcomer of
//! an offer is the next of its pairs in score order. A step is then a Bellman-Ford over
//! offers + limited categories + 3 nodes, whatever the number of customers.
//!
//! Ties: every heap and the relaxation order are total orders over pair indices (customer row,
//! then offer), so the same pairs give the same list. Pure: no I/O, no clock, no threads.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

pub use super::limits::Limits;
use super::select::{Pair, Rooms};

/// A path's worth: minimum units gained first, then score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gain {
    /// Units of offer minimums filled (negative: given up).
    pub bonus: i64,
    /// Score added.
    pub score: f64,
}

impl Gain {
    const ZERO: Gain = Gain {
        bonus: 0,
        score: 0.0,
    };

    fn plus(self, o: Gain) -> Gain {
        Gain {
            bonus: self.bonus + o.bonus,
            score: self.score + o.score,
        }
    }

    /// Strictly better, by more than rounding: scores that are equal in exact arithmetic can
    /// differ in their last bits (a propensity times another value and priority), and a cycle
    /// of such exchanges must not count as a gain.
    fn beats(self, o: Gain) -> bool {
        let tolerance = 1e-9 * (1.0 + o.score.abs().max(self.score.abs()));
        self.bonus > o.bonus || (self.bonus == o.bonus && self.score > o.score + tolerance)
    }
}

/// A limit of the run, as the shadow prices name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Bound {
    /// The channel's capacity.
    Capacity,
    /// A category's maximum (index into `Limits::category_max`).
    CategoryMax(usize),
    /// An offer's maximum.
    OfferMax(u16),
    /// An offer's minimum: its price is what one unit less would add.
    OfferMin(u16),
}

/// A limit the list reaches, and what one unit more of it (one less, for a minimum) would add
/// to the list's total score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shadow {
    /// The limit.
    pub bound: Bound,
    /// Its value in the run.
    pub limit: u64,
    /// Score added by one more unit (one less, for a minimum); never negative.
    pub per_unit: f64,
    /// The variant whose share of the limit it is (0 champion, 1 challenger).
    pub variant: u8,
}

/// A newcomer for an offer: ordered by score, then by pair index (row, then offer), lowest
/// first.
#[derive(Debug, Clone, Copy)]
struct Join {
    score: f64,
    pair: u32,
}

impl Ord for Join {
    fn cmp(&self, o: &Self) -> Ordering {
        self.score.total_cmp(&o.score).then(o.pair.cmp(&self.pair))
    }
}
impl PartialOrd for Join {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl PartialEq for Join {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Join {}

/// A customer holding pair `from` who could hold pair `to` (same customer) instead.
#[derive(Debug, Clone, Copy)]
struct Swap {
    gain: f64,
    from: u32,
    to: u32,
}

impl Ord for Swap {
    fn cmp(&self, o: &Self) -> Ordering {
        self.gain
            .total_cmp(&o.gain)
            .then(o.from.cmp(&self.from))
            .then(o.to.cmp(&self.to))
    }
}
impl PartialOrd for Swap {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl PartialEq for Swap {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Swap {}

/// What an edge of the small graph does to the list when a path takes it.
#[derive(Debug, Clone, Copy)]
enum Via {
    /// One unit more (or less, backwards) through a limit's arc.
    Arc,
    /// A customer takes a new pair.
    Join(u32),
    /// A customer gives up pair `.0` for pair `.1`.
    Swap(u32, u32),
    /// A customer gives up a pair (only when pricing).
    Drop(u32),
}

#[derive(Debug, Clone, Copy)]
struct Edge {
    from: usize,
    to: usize,
    gain: Gain,
    via: Via,
}

/// The solver's state: the list so far and the heaps the small graph's edges come from.
pub struct Solver<'a> {
    /// Candidate pairs, sorted by (row, offer).
    pairs: &'a [Pair],
    limits: &'a Limits,
    offers: usize,
    /// Per pair: its customer's first pair and one past its last.
    span: Vec<(u32, u32)>,
    chosen: Vec<bool>,
    /// Per customer (by first pair): pairs chosen, plus what their caps take from
    /// `per_customer`.
    held: Vec<u32>,
    n_offer: Vec<u64>,
    n_category: Vec<u64>,
    total: u64,
    /// Per offer: its pairs, best first, and how far the newcomers were read.
    ranked: Vec<Vec<u32>>,
    cursor: Vec<usize>,
    /// Per offer: pairs that became free again after the cursor passed them.
    rejoin: Vec<BinaryHeap<Join>>,
    /// Per (from offer, to offer): exchanges.
    swaps: Vec<BinaryHeap<Swap>>,
    /// Slots per offer (the campaign's channels; 1 for one): a customer holds each offer
    /// (slot / group) at most once.
    group: usize,
}

const SOURCE: usize = 0;

impl<'a> Solver<'a> {
    /// Prepares a solver over `pairs`, which must be sorted by (row, offer); a customer in
    /// `rooms` takes no more offers than their room.
    pub fn new(pairs: &'a [Pair], limits: &'a Limits, rooms: &Rooms) -> Self {
        let offers = limits.min.len();
        let mut span = vec![(0u32, 0u32); pairs.len()];
        let mut held = vec![0u32; pairs.len()];
        let mut i = 0;
        while i < pairs.len() {
            let mut j = i + 1;
            while j < pairs.len() && pairs[j].row == pairs[i].row {
                j += 1;
            }
            for s in &mut span[i..j] {
                *s = (i as u32, j as u32);
            }
            // A customer with less room starts with the rest of `per_customer` held.
            if let Some(&room) = rooms.get(&pairs[i].row) {
                held[i] = limits.per_customer.saturating_sub(room.into());
            }
            i = j;
        }
        let mut ranked: Vec<Vec<u32>> = vec![Vec::new(); offers];
        for (p, pair) in pairs.iter().enumerate() {
            ranked[pair.offer as usize].push(p as u32);
        }
        for list in &mut ranked {
            list.sort_unstable_by(|&a, &b| Pair::order(&pairs[a as usize], &pairs[b as usize]));
        }
        Solver {
            pairs,
            limits,
            offers,
            span,
            chosen: vec![false; pairs.len()],
            held,
            n_offer: vec![0; offers],
            n_category: vec![0; limits.category_max.len()],
            total: 0,
            ranked,
            cursor: vec![0; offers],
            rejoin: (0..offers).map(|_| BinaryHeap::new()).collect(),
            swaps: (0..offers * offers).map(|_| BinaryHeap::new()).collect(),
            group: limits.channels.max(1) as usize,
        }
    }

    fn offer_node(o: usize) -> usize {
        1 + o
    }
    fn category_node(&self, c: usize) -> usize {
        1 + self.offers + c
    }
    fn total_node(&self) -> usize {
        1 + self.offers + self.limits.category_max.len()
    }
    fn sink(&self) -> usize {
        self.total_node() + 1
    }
    fn nodes(&self) -> usize {
        self.sink() + 1
    }
    /// Where an offer's arc leads: its limited category, else the capacity.
    fn next(&self, o: usize) -> usize {
        match self.limits.category[o] {
            Some(c) => self.category_node(c),
            None => self.total_node(),
        }
    }

    fn score(&self, p: u32) -> f64 {
        self.pairs[p as usize].score
    }
    fn offer(&self, p: u32) -> usize {
        self.pairs[p as usize].offer as usize
    }
    fn first(&self, p: u32) -> usize {
        self.span[p as usize].0 as usize
    }

    fn joinable(&self, p: u32) -> bool {
        !self.chosen[p as usize]
            && self.held[self.first(p)] < self.limits.per_customer
            && self.offer_free(p, None)
    }

    /// True when `p`'s customer holds `p`'s offer on no channel, `except` aside (always true
    /// with one channel, as a customer's pairs then have distinct offers).
    fn offer_free(&self, p: u32, except: Option<u32>) -> bool {
        if self.group == 1 {
            return true;
        }
        let (lo, hi) = self.span[p as usize];
        let real = self.offer(p) / self.group;
        (lo..hi).all(|r| {
            Some(r) == except || !self.chosen[r as usize] || self.offer(r) / self.group != real
        })
    }

    /// The best pair that could join offer `o` now.
    fn best_join(&mut self, o: usize) -> Option<Join> {
        while let Some(&p) = self.ranked[o].get(self.cursor[o]) {
            if self.joinable(p) {
                break;
            }
            self.cursor[o] += 1;
        }
        while let Some(top) = self.rejoin[o].peek() {
            if self.joinable(top.pair) {
                break;
            }
            self.rejoin[o].pop();
        }
        let listed = self.ranked[o].get(self.cursor[o]).map(|&p| Join {
            score: self.score(p),
            pair: p,
        });
        match (listed, self.rejoin[o].peek().copied()) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// The best exchange from offer `a` to offer `b` now.
    fn best_swap(&mut self, a: usize, b: usize) -> Option<Swap> {
        let h = a * self.offers + b;
        while let Some(&top) = self.swaps[h].peek() {
            if self.chosen[top.from as usize]
                && !self.chosen[top.to as usize]
                && (self.group == 1 || self.offer_free(top.to, Some(top.from)))
            {
                return Some(top);
            }
            self.swaps[h].pop();
        }
        None
    }

    fn choose(&mut self, p: u32) {
        self.chosen[p as usize] = true;
        let (lo, hi) = self.span[p as usize];
        for q in lo..hi {
            if q != p && !self.chosen[q as usize] {
                self.push_swap(p, q);
            }
        }
    }

    /// Offers the swap of chosen pair `from` for pair `to` of the same customer, filed by
    /// the two offers it moves a customer between.
    fn push_swap(&mut self, from: u32, to: u32) {
        let s = Swap {
            gain: self.score(to) - self.score(from),
            from,
            to,
        };
        let h = self.offer(from) * self.offers + self.offer(to);
        self.swaps[h].push(s);
    }

    fn unchoose(&mut self, p: u32) {
        self.chosen[p as usize] = false;
        let (lo, hi) = self.span[p as usize];
        // With several channels, freeing the offer frees its other channels' pairs too.
        let real = self.offer(p) / self.group;
        for q in lo..hi {
            if q != p && (self.group == 1 || self.offer(q) / self.group != real) {
                continue;
            }
            if self.chosen[q as usize] {
                continue;
            }
            for r in lo..hi {
                if r != q && self.chosen[r as usize] {
                    self.push_swap(r, q);
                }
            }
            if self.held[lo as usize] < self.limits.per_customer {
                let j = Join {
                    score: self.score(q),
                    pair: q,
                };
                let o = self.offer(q);
                self.rejoin[o].push(j);
            }
        }
    }

    /// The residual network's edges now; `pricing` adds the edges that take units out of the
    /// list (dropping a pair, the sink's way back to the source), which cycles need.
    fn edges(&mut self, pricing: bool) -> Vec<Edge> {
        let l = self.limits;
        let mut e = Vec::new();
        let arc = |from, to, bonus| Edge {
            from,
            to,
            gain: Gain { bonus, score: 0.0 },
            via: Via::Arc,
        };
        for o in 0..self.offers {
            if let Some(j) = self.best_join(o) {
                e.push(Edge {
                    from: SOURCE,
                    to: Self::offer_node(o),
                    gain: Gain {
                        bonus: 0,
                        score: j.score,
                    },
                    via: Via::Join(j.pair),
                });
            }
            for b in 0..self.offers {
                if b == o {
                    continue;
                }
                if let Some(s) = self.best_swap(o, b) {
                    e.push(Edge {
                        from: Self::offer_node(o),
                        to: Self::offer_node(b),
                        gain: Gain {
                            bonus: 0,
                            score: s.gain,
                        },
                        via: Via::Swap(s.from, s.to),
                    });
                }
            }
            let (n, next) = (self.n_offer[o], self.next(o));
            if l.max[o].is_none_or(|m| n < m) {
                e.push(arc(Self::offer_node(o), next, i64::from(n < l.min[o])));
            }
            if n > 0 {
                e.push(arc(next, Self::offer_node(o), -i64::from(n <= l.min[o])));
            }
        }
        for (c, &max) in l.category_max.iter().enumerate() {
            let n = self.n_category[c];
            if n < max {
                e.push(arc(self.category_node(c), self.total_node(), 0));
            }
            if n > 0 {
                e.push(arc(self.total_node(), self.category_node(c), 0));
            }
        }
        if l.capacity.is_none_or(|c| self.total < c) {
            e.push(arc(self.total_node(), self.sink(), 0));
        }
        if pricing {
            if self.total > 0 {
                e.push(arc(self.sink(), self.total_node(), 0));
                e.push(arc(SOURCE, self.sink(), 0));
            }
            e.push(arc(self.sink(), SOURCE, 0));
            let mut lowest: Vec<Option<u32>> = vec![None; self.offers];
            for p in self.chosen() {
                let p = p as u32;
                let o = self.offer(p);
                if lowest[o].is_none_or(|q| self.score(p) < self.score(q)) {
                    lowest[o] = Some(p);
                }
            }
            for (o, p) in lowest.into_iter().enumerate() {
                if let Some(p) = p {
                    e.push(Edge {
                        from: Self::offer_node(o),
                        to: SOURCE,
                        gain: Gain {
                            bonus: 0,
                            score: -self.score(p),
                        },
                        via: Via::Drop(p),
                    });
                }
            }
        }
        e
    }

    /// Longest paths from `from` (Bellman-Ford; the network has no gaining cycle): per node,
    /// its gain and the edge it is reached by.
    fn longest(&self, edges: &[Edge], from: usize) -> (Vec<Option<Gain>>, Vec<usize>) {
        let n = self.nodes();
        let mut dist: Vec<Option<Gain>> = vec![None; n];
        let mut pred = vec![usize::MAX; n];
        dist[from] = Some(Gain::ZERO);
        for _ in 1..n {
            let mut changed = false;
            for (i, e) in edges.iter().enumerate() {
                let Some(d) = dist[e.from] else { continue };
                let g = d.plus(e.gain);
                if e.to != from && dist[e.to].is_none_or(|old| g.beats(old)) {
                    dist[e.to] = Some(g);
                    pred[e.to] = i;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        (dist, pred)
    }

    /// Adds paths while one gains (a gain of zero still fills the capacity, as the pair is sent);
    /// false if it had to stop on a cycle (which [`Gain::beats`]'s tolerance should prevent).
    pub fn solve(&mut self) -> bool {
        let sink = self.sink();
        loop {
            let edges = self.edges(false);
            let (dist, pred) = self.longest(&edges, SOURCE);
            let Some(g) = dist[sink] else { return true };
            if Gain::ZERO.beats(g) {
                return true;
            }
            let mut path = Vec::new();
            let mut at = sink;
            while at != SOURCE {
                let i = pred[at];
                // A path longer than the graph would be a cycle (rounding): stop with the
                // feasible list as it is.
                if i == usize::MAX || path.len() > self.nodes() {
                    return false;
                }
                path.push(edges[i]);
                at = edges[i].from;
            }
            path.reverse();
            for e in path {
                self.apply(e);
            }
        }
    }

    fn apply(&mut self, e: Edge) {
        match e.via {
            Via::Join(p) => {
                let first = self.first(p);
                self.held[first] += 1;
                self.choose(p);
            }
            Via::Swap(from, to) => {
                self.unchoose(from);
                self.choose(to);
            }
            Via::Drop(p) => {
                let first = self.first(p);
                self.held[first] -= 1;
                self.unchoose(p);
            }
            Via::Arc => {
                let (total, sink) = (self.total_node(), self.sink());
                let offer = |n: usize| (1..=self.offers).contains(&n).then(|| n - 1);
                let category =
                    |n: usize| (n > self.offers && n < total).then(|| n - 1 - self.offers);
                match (e.from, e.to) {
                    (a, _) if offer(a).is_some() => self.n_offer[a - 1] += 1,
                    (_, b) if offer(b).is_some() => self.n_offer[b - 1] -= 1,
                    (a, b) if b == total && category(a).is_some() => {
                        self.n_category[a - 1 - self.offers] += 1
                    }
                    (a, b) if a == total && category(b).is_some() => {
                        self.n_category[b - 1 - self.offers] -= 1
                    }
                    (a, b) if a == total && b == sink => self.total += 1,
                    (a, b) if a == sink && b == total => self.total -= 1,
                    _ => {}
                }
            }
        }
    }

    /// The limits the list reaches and what one unit more of each (one less, for a minimum)
    /// would add: the best cycle through that limit's arc in the residual network.
    pub fn shadow_prices(&mut self) -> Vec<Shadow> {
        let l = self.limits;
        let edges = self.edges(true);
        let mut out = Vec::new();
        let mut price = |solver: &Self, bound: Bound, limit: u64, from: usize, to: usize| {
            // One more unit on the arc from → to (it carries no bonus there), then the best
            // way back from `to` to `from`.
            let (dist, _) = solver.longest(&edges, to);
            let per_unit = match dist[from] {
                Some(g) if g.bonus >= 0 => g.score.max(0.0),
                _ => 0.0,
            };
            out.push(Shadow {
                bound,
                limit,
                per_unit,
                variant: 0,
            });
        };
        if let Some(c) = l.capacity {
            if self.total >= c {
                price(self, Bound::Capacity, c, self.total_node(), self.sink());
            }
        }
        for (c, &max) in l.category_max.iter().enumerate() {
            if self.n_category[c] >= max {
                price(
                    self,
                    Bound::CategoryMax(c),
                    max,
                    self.category_node(c),
                    self.total_node(),
                );
            }
        }
        for o in 0..self.offers {
            let node = Self::offer_node(o);
            if let Some(max) = l.max[o].filter(|&m| self.n_offer[o] >= m) {
                price(self, Bound::OfferMax(o as u16), max, node, self.next(o));
            }
            let min = l.min[o];
            if min > 0 && self.n_offer[o] == min {
                price(self, Bound::OfferMin(o as u16), min, self.next(o), node);
            }
        }
        out
    }

    /// The chosen pairs' indices, in pair order.
    pub fn chosen(&self) -> impl Iterator<Item = usize> + '_ {
        self.chosen
            .iter()
            .enumerate()
            .filter(|(_, c)| **c)
            .map(|(p, _)| p)
    }

    /// Pairs chosen per offer.
    pub fn per_offer(&self) -> &[u64] {
        &self.n_offer
    }
}
