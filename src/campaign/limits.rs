//! The limits of one run (capacity, offer minimums and maximums, category maximums, offers
//! per customer, and with several channels each channel's capacity) and the bound on how many
//! of each offer's best pairs an optimal list can use, which lets shards send only those.
//!
//! Pure: no I/O. The flow network ([`super::flow`]) solves under these limits.

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
    /// Channels the campaign chooses among (0 or 1: one). With several, the limits above are
    /// per (offer, channel), numbered `offer * channels + channel` (see [`Limits::slot`]): each
    /// channel's capacity is the limited "category" of its slots, and a customer gets an offer
    /// on one channel at most.
    #[serde(default, skip_serializing_if = "is_one")]
    pub channels: u32,
    /// A frequency cap or the model's sales cap may leave a customer room for fewer offers than
    /// `per_customer` (one at least; see [`super::select::Rooms`]).
    #[serde(default)]
    pub capped: bool,
}

fn is_one(n: &u32) -> bool {
    *n <= 1
}

impl Limits {
    /// The index the limits use for a pair: its offer, or its (offer, channel) with several
    /// channels.
    #[inline]
    pub fn slot(&self, p: &Pair) -> usize {
        match self.channels {
            0 | 1 => p.offer as usize,
            n => p.offer as usize * n as usize + p.channel as usize,
        }
    }

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
    /// pair could replace it without breaking a limit or lowering the score. Under a frequency
    /// or sales cap a customer may be full with one pair, and `k` counts as one.
    pub fn keep_per_offer(&self) -> Vec<Option<u64>> {
        // With several channels and several offers a customer, a better pair may be blocked
        // by its customer's same offer on another channel without the customer being full:
        // the bound below does not hold, so every pair is kept.
        let blocked = self.channels > 1 && self.per_customer > 1;
        let t = self
            .total_bound()
            .filter(|_| !blocked)
            .map(|t| t.saturating_add(1));
        let k = if self.capped {
            1
        } else {
            u64::from(self.per_customer.max(1))
        };
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
