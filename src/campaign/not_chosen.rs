//! Why a row of a list over several channels went out on its channel and not the others: the
//! `not_chosen` column, from every candidate pair's score and which channels the allocation
//! filled. Must not choose pairs (the allocation does) or write the list.

use super::allocate::{Allocation, Limits};
use super::select::Pair;
use super::spec::ChannelSpec;

/// Every candidate pair's score by (customer, offer, channel): what a row's other channels
/// offered, to say why they were not chosen.
pub struct OtherChannels {
    scores: Vec<(u32, u16, u8, f64)>,
    /// Per channel: whether the list used all of its capacity.
    pub(super) full: Vec<bool>,
}

/// Per channel of a run over several: whether the allocation used all of its capacity (each
/// channel's capacity is the limited category of its (offer, channel) slots).
pub(super) fn channels_full(alloc: &Allocation, limits: &Limits) -> Vec<bool> {
    let n = limits.channels.max(1) as usize;
    let mut used = vec![0u64; n];
    for p in &alloc.selected {
        if let Some(u) = used.get_mut(usize::from(p.channel)) {
            *u += 1;
        }
    }
    (0..n)
        .map(|ci| {
            // The slot of the first offer on channel `ci`: every offer's shares its category.
            limits
                .category
                .get(ci)
                .copied()
                .flatten()
                .and_then(|k| limits.category_max.get(k))
                .is_some_and(|&max| used[ci] >= max)
        })
        .collect()
}

impl OtherChannels {
    pub(super) fn new(candidates: &[Pair]) -> Self {
        let mut v: Vec<_> = candidates
            .iter()
            .map(|p| (p.row, p.offer, p.channel, p.score))
            .collect();
        v.sort_by_key(|a| (a.0, a.1, a.2));
        OtherChannels {
            scores: v,
            full: Vec::new(),
        }
    }

    /// Why each other channel was not chosen for `p`, as `email:lower_score;push:unreachable`:
    /// `unreachable` (its `reachable` rule), `not_offered` (its decision did not rank the offer,
    /// or it had enough better pairs that no best list could use this one), `lower_score`,
    /// `capacity` (it scored higher there, or the same with its capacity all used, but the
    /// channel's capacity went to better uses), or `equal_score` (the same score, with room).
    pub(super) fn reasons(
        &self,
        p: &Pair,
        channels: &[ChannelSpec],
        reachable: impl Fn(u32, usize) -> bool,
        out: &mut String,
    ) {
        out.clear();
        for (ci, ch) in channels.iter().enumerate() {
            if ci == usize::from(p.channel) {
                continue;
            }
            let key = (p.row, p.offer, ci as u8);
            let found = self
                .scores
                .binary_search_by(|e| (e.0, e.1, e.2).cmp(&key))
                .ok()
                .map(|i| self.scores[i].3);
            let full = self.full.get(ci).copied().unwrap_or(false);
            let why = match found {
                _ if !reachable(p.row, ci) => "unreachable",
                None => "not_offered",
                Some(s) if s > p.score => "capacity",
                Some(s) if s == p.score && full => "capacity",
                Some(s) if s == p.score => "equal_score",
                Some(_) => "lower_score",
            };
            if !out.is_empty() {
                out.push(';');
            }
            out.push_str(&ch.name);
            out.push(':');
            out.push_str(why);
        }
    }
}
