//! Why and what an answer serves when it cannot be personalised: the reasons, the stages of the
//! fallback chain, and the content of each, encoded once at load.

/// Why an answer carries fallback content instead of a personalised one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FallbackReason {
    /// The customer id is absent or not in the snapshot.
    UnknownCustomer,
    /// No offer passed eligibility, policy and arbitration.
    NoEligibleOffer,
    /// The model has no such channel, or no such placement on the channel: most often a typo
    /// in the request or a page the model was not told about.
    UnknownPlacement,
    /// The request's budget ran out before the decision finished.
    Deadline,
    /// Admission control shed the request.
    Overload,
    /// No model (or no feature snapshot) is loaded.
    NoModel,
}

impl FallbackReason {
    /// Every reason, for metrics.
    pub const ALL: [FallbackReason; 6] = [
        FallbackReason::UnknownCustomer,
        FallbackReason::NoEligibleOffer,
        FallbackReason::UnknownPlacement,
        FallbackReason::Deadline,
        FallbackReason::Overload,
        FallbackReason::NoModel,
    ];

    /// Dense index, the position in [`FallbackReason::ALL`], for per-reason counters.
    #[inline]
    pub fn index(self) -> usize {
        self as usize
    }

    /// The wire name, as the HTTP contract fixes it.
    pub fn as_str(self) -> &'static str {
        match self {
            FallbackReason::UnknownCustomer => "unknown_customer",
            FallbackReason::NoEligibleOffer => "no_eligible_offer",
            FallbackReason::UnknownPlacement => "unknown_placement",
            FallbackReason::Deadline => "deadline",
            FallbackReason::Overload => "overload",
            FallbackReason::NoModel => "no_model",
        }
    }
}

/// Which level of the fallback chain served an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FallbackStage {
    /// The model's content for this channel and placement.
    Placement,
    /// The model's default content for the channel.
    Channel,
    /// The built-in static content (no model content applies).
    Builtin,
}

impl FallbackStage {
    /// The wire name used in `fallback.stage`.
    pub fn as_str(self) -> &'static str {
        match self {
            FallbackStage::Placement => "placement",
            FallbackStage::Channel => "channel",
            FallbackStage::Builtin => "builtin",
        }
    }
}

/// Fallback content, pre-encoded at load so serving it costs a copy.
#[derive(Debug, Clone)]
pub struct Fallback {
    /// The JSON array for `offers`, ranks included.
    pub offers_json: Box<str>,
    /// Which stage of the chain this is.
    pub stage: FallbackStage,
    /// The content's ids (`offer_id`), so events that report it are told from mistakes.
    pub ids: Box<[Box<str>]>,
}

impl Fallback {
    /// The last stage: no content at all, so a page renders its own default.
    pub fn builtin_empty() -> Self {
        Fallback {
            offers_json: "[]".into(),
            stage: FallbackStage::Builtin,
            ids: Box::default(),
        }
    }

    /// Whether this content holds the item `id`.
    pub fn has(&self, id: &str) -> bool {
        self.ids.iter().any(|i| &**i == id)
    }

    /// [`Fallback::builtin_empty`], shared: what a request on a channel nobody knows gets.
    pub fn empty() -> &'static Fallback {
        static EMPTY: std::sync::OnceLock<Fallback> = std::sync::OnceLock::new();
        EMPTY.get_or_init(Fallback::builtin_empty)
    }
}

/// The last stage of the fallback chain: static content per channel and placement, loadable
/// from a file so a sidecar started without any model still serves something.
#[derive(Debug, Default)]
pub struct BuiltinFallback {
    /// Content by channel.
    pub channels: Vec<BuiltinChannel>,
}

/// Built-in content for one channel.
#[derive(Debug)]
pub struct BuiltinChannel {
    /// Channel name.
    pub name: Box<str>,
    /// Content by placement.
    pub placements: Vec<(Box<str>, Fallback)>,
    /// Content for the channel's other placements.
    pub default: Fallback,
}

impl BuiltinFallback {
    /// Whether any of this content holds the item `id`.
    pub fn has(&self, id: &str) -> bool {
        self.channels
            .iter()
            .any(|c| c.default.has(id) || c.placements.iter().any(|(_, fb)| fb.has(id)))
    }

    /// The content for a channel and placement: the placement's, else the channel's default,
    /// else an empty list.
    pub fn lookup(&self, channel: &str, placement: &str) -> &Fallback {
        match self.channels.iter().find(|c| &*c.name == channel) {
            Some(c) => c
                .placements
                .iter()
                .find(|s| &*s.0 == placement)
                .map_or(&c.default, |s| &s.1),
            None => Fallback::empty(),
        }
    }
}
