//! What compiling reads from the document before channels are numbered: the drafts that the
//! offers, placements and fallback parts hand to each other. A leaf: it imports none of them.

use std::collections::BTreeMap;

use crate::engine::{Fallback, Offer};

/// A placement as read, before channels are numbered.
pub(super) struct PlacementDraft {
    /// The channels it is shown on, by name.
    pub(super) channels: Vec<String>,
    /// Default number of offers.
    pub(super) limit: usize,
    /// Admission priority.
    pub(super) priority: u8,
    /// Share of decisions that explore.
    pub(super) exploration: f64,
    /// Whether unknown customers are decided from the request's context.
    pub(super) anonymous: bool,
    /// Most segments of an SMS body shown here (on its `sms` channel).
    pub(super) max_sms_segments: Option<u32>,
}

/// Everything read from the document before channels are numbered.
pub(super) struct OfferDraft {
    /// The offer, its channel mask and content still empty.
    pub(super) offer: Offer,
    /// The channels it claims, by name.
    pub(super) channels: Vec<String>,
    /// The placements it claims, by name.
    pub(super) placements: Vec<String>,
    /// Its pre-encoded content by channel name.
    pub(super) content: BTreeMap<String, Box<str>>,
}

/// A model's fallback lists by (channel, placement or `default`).
pub(super) type FallbackMap = BTreeMap<(String, String), Fallback>;
