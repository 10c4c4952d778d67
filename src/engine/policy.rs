//! Contact policies in engine form: what the model declares against pestering a customer,
//! resolved per offer when the model is compiled, so the decision path compares numbers only.
//!
//! The history itself is not here: the engine sees it through [`super::ContactView`], which the
//! contact state implements once per request. Nothing here reads a clock, hashes per decision or
//! does I/O; `model::policies` builds these values and `contact::view` reads them.

use std::hash::BuildHasher;

/// One day in milliseconds, the unit policies are declared in.
pub const DAY_MS: i64 = 86_400_000;

/// Most impressions a cap may allow; the contact state remembers at least this many per customer.
pub const MAX_CAP: u32 = 256;

/// Hashes an offer id or a category identically at model load and at event time, so the decision
/// path compares `u64`s instead of strings (fixed seed: the same in every process).
#[inline]
pub fn stable_hash(s: &str) -> u64 {
    foldhash::fast::FixedState::with_seed(0x6e65_7874_6265_7374).hash_one(s)
}

/// A cap on how often something may be shown in a sliding window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowCap {
    /// Most contacts allowed inside the window.
    pub max: u32,
    /// Window length in milliseconds, looking back from now.
    pub window_ms: i64,
}

/// Model-wide policies that look across offers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Policies {
    /// At most N sales contacts per customer across all offers and channels in a window.
    pub sales_cap: Option<WindowCap>,
    /// Category hashes the sales cap counts (and holds back once reached).
    pub sales_categories: Box<[u64]>,
    /// How long an unresolved complaint holds offers back; `None` without a complaint policy.
    pub complaint_timeout_ms: Option<i64>,
    /// Longest window any policy of the model looks back over: how long history must be kept.
    pub horizon_ms: i64,
}

/// One offer's policies, defaults of the model already applied.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OfferCaps {
    /// At most N impressions of this offer per customer in a window.
    pub impressions: Option<WindowCap>,
    /// Hold back this long after the customer dismissed the offer.
    pub dismiss_cooldown_ms: Option<i64>,
    /// Hold back this long after the customer bought the offer.
    pub conversion_cooldown_ms: Option<i64>,
    /// The offer's category counts in the sales cap, so it is held back once the cap is reached.
    pub sales_capped: bool,
    /// The offer's category is held back while the customer has an open complaint.
    pub complaint_held: bool,
    /// What `explain` says for each policy, built once at load.
    pub why: PolicyReasons,
}

/// The text `explain` shows for an offer held back by each policy (the policy's model path first).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicyReasons {
    /// For the impression cap.
    pub impressions: Box<str>,
    /// For the dismiss cool-down.
    pub dismiss: Box<str>,
    /// For the conversion cool-down.
    pub conversion: Box<str>,
    /// For the cross-channel sales cap.
    pub sales_cap: Box<str>,
    /// For the complaint hold.
    pub complaint: Box<str>,
}
