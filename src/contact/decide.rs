//! What one decision needs of the contact side, looked up once: the time it decides at, its
//! id, the customer's history and what adaptive offers have learnt; and, once it is made, the
//! funnel count. The decide handler builds one [`DecideContacts`] and hands its parts to the
//! engine and the decision log, so a request goes into the contact side once.
//!
//! Nothing here waits, writes, or takes a lock a writer holds: a history is an `Arc` clone and
//! the learnt snapshot one atomic load, made only when the engine runs; remembering a
//! decision's request values stores one pointer.

use std::cell::OnceCell;
use std::sync::Arc;

use super::attribution;
use super::event::RequestLevels;
use super::state::History;
use super::view::CustomerView;
use super::Contacts;
use crate::engine::contextual::request_level;
use crate::engine::posterior::{seed_of, Learnt, Posteriors};
use crate::engine::{CompiledModel, Decision, Policies, Request};
use crate::experiment::Variant;

/// The contact side of one decision.
pub struct DecideContacts<'c> {
    contacts: &'c Contacts,
    /// The time the decision is made at (the contact side's clock).
    pub now_ms: i64,
    /// The deciding model's content key (0 without a model).
    pub key: u32,
    /// The variant deciding.
    pub variant: Variant,
    /// The decision's id: carries the model tag and the variant.
    pub decision_id: ulid::Ulid,
    history: Option<Arc<History>>,
    learnt: OnceCell<arc_swap::Guard<Arc<Posteriors>>>,
}

impl<'c> DecideContacts<'c> {
    /// Reads the clock, makes the id and looks the history of the customer and/or visitor
    /// (`who`) up.
    #[inline]
    pub(super) fn new(
        contacts: &'c Contacts,
        ids: &attribution::DecisionIds,
        who: (Option<&str>, Option<&str>),
        key: u32,
        variant: Variant,
        origin: attribution::Origin,
    ) -> Self {
        let now_ms = contacts.now_ms();
        DecideContacts {
            contacts,
            now_ms,
            key,
            variant,
            decision_id: ids.decision_id(now_ms, key, variant, origin),
            history: contacts.history_for(who.0, who.1, now_ms),
            learnt: OnceCell::new(),
        }
    }

    /// The customer's history, if there is any.
    #[inline]
    pub fn history(&self) -> Option<&Arc<History>> {
        self.history.as_ref()
    }

    /// The engine's view of the history under a model's policies.
    #[inline]
    pub fn view(&self, policies: &Policies) -> CustomerView<'_> {
        CustomerView::new(self.history.as_deref(), policies, self.now_ms)
    }

    /// What adaptive offers have learnt, loaded on first use and the same for the engine and
    /// the decision log.
    #[inline]
    pub fn posteriors(&self) -> &Arc<Posteriors> {
        self.learnt
            .get_or_init(|| self.contacts.adaptive().snapshot())
    }

    /// What the engine's adaptive scorers draw from, seeded by the decision's id.
    #[inline]
    pub fn learnt(&self) -> Learnt<'_> {
        Learnt {
            posteriors: self.posteriors(),
            seed: seed_of(self.decision_id.0),
            tag: attribution::model_tag(self.key),
        }
    }

    /// Remembers the request values the model's contextual adaptive offers learn from, when the
    /// decision showed something, until its impressions carry them to the learner (see
    /// [`super::requests`]): one small allocation, and nothing for a model that learns from no
    /// request value.
    #[inline]
    pub fn remember_request(&self, model: &CompiledModel, req: &Request<'_>, d: &Decision<'_>) {
        if model.learnt_context.is_empty() || d.ranked.is_empty() {
            return;
        }
        let slots = crate::engine::context_slots(model, req.context);
        let mut levels = Vec::with_capacity(model.learnt_context.len() * 8);
        for &(feature, slot) in model.learnt_context.iter() {
            let value = slots.get(usize::from(slot)).copied().flatten();
            RequestLevels::push(&mut levels, feature, request_level(value));
        }
        self.contacts
            .requests()
            .remember(self.decision_id.0, levels.into());
    }

    /// Counts a personalised decision in the funnel.
    #[inline]
    pub fn count(&self, d: &Decision<'_>) {
        if let (None, Some(ch)) = (d.fallback, d.channel) {
            self.contacts
                .funnel()
                .decided(self.key, ch, &d.ranked, self.variant, d.explored);
        }
    }
}
