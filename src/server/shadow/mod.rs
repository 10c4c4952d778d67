//! Shadow mode: a candidate model decides beside the champion on a share of live traffic, and
//! what it would have shown is counted, never served.
//!
//! `PUT /admin/models/shadow` takes a model document with a top-level `"share"` (above 0, at most 1); the
//! candidate is compiled against the serving snapshot and kept, with its share, in
//! `<data>/shadow.json` (written durably, read back at start) so a restart keeps it, as admin
//! changes do. `DELETE /admin/models/shadow` ends it. Which decisions are shadowed is a hash of
//! the decision id, so the sample is random with respect to customers and requests.
//!
//! The decide handler only samples and hands the request over ([`Shadow::offer`]); the shadow
//! decision runs on a task spawned after the champion's answer is encoded, under its own bound
//! of tasks in flight (a full bound skips the shadow decision and counts it). The candidate is
//! compiled for one snapshot: after a snapshot swap its decisions are skipped (and counted)
//! until it is put again. Its figures, under `shadow` in `/admin/stats` and on the status page:
//! decisions, skips by reason, how often its top offer is the champion's, each offer's share of
//! top places for both, and, as conversions arrive, its off-policy estimate against the
//! champion ([`outcomes`]), all kept across restarts beside the document ([`saved`]). For the
//! estimate the task also remakes the champion's decision with its probabilities of showing
//! each offer; a remade decision that differs from the served one is skipped and counted
//! (`not_reproduced`: something it read changed in between).

mod outcomes;
pub mod saved;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwapOption;
use serde_json::{json, Value};

use crate::contact::attribution::{self, Origin};
use crate::contact::subject::Subject;
use crate::contact::{Event, EventKind, Subscriber};
use crate::decision_log::estimate::Sample;
use crate::engine::posterior::{seed_of, Learnt};
use crate::engine::{self, CtxValue, Decision, Unbounded};
use crate::experiment::Variant;
use crate::features::FeatureStore;
use crate::model::{Limits, LoadedModel};
use crate::registry::{ModelSet, RegistryError};

/// Most shadow decisions in flight; past it a sampled decision is skipped and counted.
pub const MAX_INFLIGHT: usize = 64;
/// The file the shadow is kept in, in the data folder.
pub const FILE: &str = "shadow.json";
/// The share of all decisions a shadow keeps for its estimate unless its document says
/// otherwise: each costs two more decisions with every offer's probability of being shown
/// (about 15 us on the demo against 1 us for the shadow decision alone), so a 10 % shadow
/// estimates on a tenth of its decisions and stays within a few percent of the server's CPU.
pub const ESTIMATED_DECISIONS: f64 = 0.01;

/// The candidate and its figures.
pub struct Candidate {
    model: LoadedModel,
    /// The snapshot it was compiled against: it decides only while that one serves.
    features: Arc<FeatureStore>,
    share: f64,
    /// Of its decisions, the share kept for the estimate (by another part of the id's hash).
    estimate_share: f64,
    /// The document as put, `share` included (what the file keeps).
    kept: Value,
    /// Shared with the same candidate compiled again for a newer snapshot.
    figures: Arc<Figures>,
}

impl Candidate {
    /// Name, version, checksum, share, and the warnings of its compile (left out when none),
    /// which the analyst putting it would otherwise never see.
    fn summary(&self) -> Value {
        let m = &self.model;
        let mut out = json!({"name": &*m.compiled.name, "version": &*m.compiled.version,
                             "checksum": m.checksum, "share": self.share});
        if !m.warnings.is_empty() {
            out["warnings"] = serde_json::to_value(&m.warnings).unwrap_or_default();
        }
        out
    }
}

#[derive(Default)]
struct Figures {
    sampled: AtomicU64,
    decisions: AtomicU64,
    agreed: AtomicU64,
    skipped_busy: AtomicU64,
    skipped_snapshot: AtomicU64,
    not_reproduced: AtomicU64,
    /// Top places by offer id: `[champion, shadow]`, over shadowed decisions.
    top: Mutex<HashMap<Box<str>, [u64; 2]>>,
    /// The shadowed decisions awaiting conversions.
    outcomes: Mutex<outcomes::Outcomes>,
}

/// The shadow slot of a server.
#[derive(Default)]
pub struct Shadow {
    slot: ArcSwapOption<Candidate>,
    inflight: AtomicUsize,
    /// Where it is kept (`None`: in memory only, as in tests without a data folder).
    file: Option<PathBuf>,
    /// Held while the figures are saved, and while a put or a delete removes them, so a save
    /// racing a put never leaves the old candidate's figures behind.
    saving: Mutex<()>,
    /// The contact side's, through which the candidate's contextual adaptive offers learn.
    learning: std::sync::OnceLock<crate::contact::Binding>,
}

/// A sampled decision, owned, for the shadow task.
pub struct Sampled {
    candidate: Arc<Candidate>,
    customer_id: Option<Box<str>>,
    visitor_id: Option<Box<str>>,
    channel: Box<str>,
    placement: Box<str>,
    limit: Option<usize>,
    context: Vec<(Box<str>, CtxValue<'static>)>,
    /// The models that served, the variant and its key: to remake the champion's decision.
    set: Arc<ModelSet>,
    variant: Variant,
    key: u32,
    decision_id: u128,
    now_ms: i64,
    /// The offers it served, in order (indices into the variant's offers).
    served: Box<[u32]>,
}

/// What the champion served, as the decide handler has it.
pub struct Served<'a> {
    /// The models that decided.
    pub set: &'a Arc<ModelSet>,
    /// The variant that decided, and its content key.
    pub variant: Variant,
    /// The content key of the variant's model.
    pub key: u32,
    /// The decision's id (its seed).
    pub decision_id: u128,
    /// The time it was decided at.
    pub now_ms: i64,
    /// The request's visitor, if any.
    pub visitor_id: Option<&'a str>,
    /// The decision served.
    pub decision: &'a Decision<'a>,
}

impl Shadow {
    /// A shadow slot kept in `data_dir`, with the candidate found there compiled against
    /// `features` (a candidate that no longer compiles is dropped and logged).
    pub fn open(
        data_dir: Option<PathBuf>,
        features: Option<Arc<FeatureStore>>,
        base_dir: Option<PathBuf>,
        limits: &Limits,
    ) -> Self {
        let shadow = Shadow {
            file: data_dir.map(|d| d.join(FILE)),
            ..Shadow::default()
        };
        let Some(path) = &shadow.file else {
            return shadow;
        };
        let Ok(bytes) = std::fs::read(path) else {
            return shadow;
        };
        let restored = serde_json::from_slice::<Value>(&bytes)
            .map_err(|e| e.to_string())
            .and_then(|doc| {
                let f = features
                    .clone()
                    .ok_or("no feature snapshot to compile it against")?;
                compile(doc, f, base_dir, limits).map_err(|e| e.to_string())
            });
        match restored {
            Ok(mut c) => {
                tracing::info!(path = %path.display(), model = %c.model.compiled.name, share = c.share, "shadow model restored");
                if let Some(figures) = saved::restore(&saved::beside(path), &c) {
                    c.figures = figures;
                }
                shadow.slot.store(Some(Arc::new(c)));
            }
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "the kept shadow model does not load; no shadow")
            }
        }
        shadow
    }

    /// Has the candidate's contextual adaptive offers learn through `binding` (the contact
    /// side's) from their own context lists, now and whenever the candidate changes: without
    /// it, an offer whose list differs from the champion's would decide as if it knew nothing.
    pub fn learn_through(&self, binding: crate::contact::Binding) {
        let _ = self.learning.set(binding);
        self.bind_learning();
    }

    fn bind_learning(&self) {
        if let Some(b) = self.learning.get() {
            let c = self.slot.load_full();
            // Its decisions read under content key 0 (see `run`).
            b.bind_shadow_learning(c.as_ref().map(|c| (&c.model.compiled, 0)));
        }
    }

    /// Compiles `document` (a model with `"share"`, its scorer files in `base_dir`, the models
    /// folder) against `features`, keeps it and starts shadowing with it.
    pub fn put(
        &self,
        document: &[u8],
        features: Arc<FeatureStore>,
        base_dir: Option<PathBuf>,
        limits: &Limits,
    ) -> Result<Value, ShadowError> {
        let doc: Value = serde_json::from_slice(document)
            .map_err(|e| ShadowError::Invalid(format!("not a JSON object: {e}")))?;
        let c = compile(doc, features, base_dir, limits)?;
        let _saving = self.saving.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(path) = &self.file {
            // The new candidate counts from zero, after a restart too.
            remove_if_there(&saved::beside(path))?;
            let bytes = serde_json::to_vec(&c.kept).unwrap_or_default();
            crate::durable::write_atomic(path, &bytes, true)
                .map_err(|e| ShadowError::Keep(format!("{}: {e}", path.display())))?;
        }
        let summary = c.summary();
        tracing::info!(model = %c.model.compiled.name, version = %c.model.compiled.version,
                       checksum = %c.model.checksum, share = c.share, "shadow model set");
        self.slot.store(Some(Arc::new(c)));
        self.bind_learning();
        Ok(summary)
    }

    /// Compiles the candidate again for the snapshot that now serves (tonight's reload of the
    /// same columns), its figures carried on; one that no longer compiles keeps its old form,
    /// which skips every decision (counted), and says why. Called as a snapshot is published.
    pub fn follow(&self, store: &Arc<FeatureStore>, base_dir: Option<PathBuf>, limits: &Limits) {
        let Some(c) = self.slot.load_full() else {
            return;
        };
        if Arc::ptr_eq(&c.features, store) {
            return;
        }
        match compile(c.kept.clone(), store.clone(), base_dir, limits) {
            Ok(mut again) => {
                again.figures = c.figures.clone();
                // A candidate put meanwhile wins.
                let was = self.slot.compare_and_swap(&c, Some(Arc::new(again)));
                if was.as_ref().is_some_and(|w| Arc::ptr_eq(w, &c)) {
                    self.bind_learning();
                    tracing::info!(model = %c.model.compiled.name, version = %c.model.compiled.version,
                        "the shadow model follows the new feature snapshot");
                }
            }
            Err(e) => {
                tracing::warn!(model = %c.model.compiled.name, version = %c.model.compiled.version, error = %e,
                    "the shadow model does not compile against the new feature snapshot: it skips every decision until it is put again");
            }
        }
    }

    /// Ends shadowing once the candidate serves as the champion (the same name and version
    /// published, as a promotion does): its figures would compare it with itself. Called as a
    /// model set is published.
    pub fn promoted(&self, set: &crate::registry::ModelSet) {
        let Some(c) = self.slot.load_full() else {
            return;
        };
        let champion = &set.model(Variant::Champion).compiled;
        let shadow = &c.model.compiled;
        if champion.name == shadow.name && champion.version == shadow.version {
            tracing::info!(model = %shadow.name, version = %shadow.version,
                "the shadow model now serves as the champion: shadowing ends");
            if let Err(e) = self.delete() {
                tracing::warn!(error = %e, "the promoted shadow model could not be removed");
            }
        }
    }

    /// Ends shadowing; true when there was a candidate.
    pub fn delete(&self) -> Result<bool, ShadowError> {
        let _saving = self.saving.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(path) = &self.file {
            remove_if_there(path)?;
            remove_if_there(&saved::beside(path))?;
        }
        let ended = self.slot.swap(None);
        self.bind_learning();
        if let Some(c) = &ended {
            tracing::info!(model = %c.model.compiled.name, version = %c.model.compiled.version, "shadow model removed");
        }
        Ok(ended.is_some())
    }

    /// Where the figures are kept (`None` for a shadow kept in memory only).
    fn figures_file(&self) -> Option<PathBuf> {
        self.file.as_deref().map(saved::beside)
    }

    /// Whether this decision is shadowed: with a candidate, when the decision id's hash falls
    /// in its share. Costs one atomic load and a hash.
    #[inline]
    pub fn sample(&self, decision_id: u128) -> Option<Arc<Candidate>> {
        let slot = self.slot.load();
        let c = slot.as_ref()?;
        let u = (crate::engine::posterior::seed_of(decision_id) >> 11) as f64 / (1u64 << 53) as f64;
        // The candidate is counted (an `Arc` clone) only for a decision it shadows.
        (u < c.share).then(|| c.clone())
    }

    /// Hands a sampled decision to a task of its own, or skips it when too many are in flight.
    pub fn offer(self: &Arc<Self>, s: Sampled, state: &super::AppState) {
        s.candidate.figures.sampled.fetch_add(1, Relaxed);
        if self.inflight.fetch_add(1, Relaxed) >= MAX_INFLIGHT {
            self.inflight.fetch_sub(1, Relaxed);
            s.candidate.figures.skipped_busy.fetch_add(1, Relaxed);
            return;
        }
        let me = self.clone();
        let with = With {
            registry: state.registry.clone(),
            contacts: state.contacts.clone(),
            ids: state.config.decision_ids.clone(),
        };
        tokio::spawn(async move {
            run(&s, &with);
            me.inflight.fetch_sub(1, Relaxed);
        });
    }

    /// `/admin/models`' `shadow`: what `PUT` answered for the candidate, null without one.
    pub fn summary(&self) -> Value {
        self.slot
            .load()
            .as_ref()
            .map_or(Value::Null, |c| c.summary())
    }

    /// `/admin/stats`' `shadow`: null without a candidate.
    pub fn stats_json(&self) -> Value {
        let Some(c) = self.slot.load_full() else {
            return Value::Null;
        };
        let f = &c.figures;
        let decisions = f.decisions.load(Relaxed);
        let top = f.top.lock().unwrap_or_else(|p| p.into_inner());
        let mut offers: Vec<(&str, [u64; 2])> = top.iter().map(|(k, v)| (&**k, *v)).collect();
        offers.sort_by(|a, b| (b.1[0] + b.1[1]).cmp(&(a.1[0] + a.1[1])).then(a.0.cmp(b.0)));
        let share = |n: u64| (decisions > 0).then(|| n as f64 / decisions as f64);
        json!({
            "model": &*c.model.compiled.name,
            "version": &*c.model.compiled.version,
            "checksum": c.model.checksum,
            "share": c.share,
            "sampled": f.sampled.load(Relaxed),
            "decisions": decisions,
            "skipped": {"busy": f.skipped_busy.load(Relaxed), "snapshot_changed": f.skipped_snapshot.load(Relaxed),
                        "not_reproduced": f.not_reproduced.load(Relaxed)},
            "top_offer_agreement": share(f.agreed.load(Relaxed)),
            "offers": offers.iter().map(|(id, [a, b])| json!({
                "offer_id": id, "champion_top_share": share(*a), "shadow_top_share": share(*b),
            })).collect::<Vec<_>>(),
            "off_policy": f.outcomes.lock().unwrap_or_else(|p| p.into_inner()).json(c.estimate_share),
        })
    }
}

impl Sampled {
    /// The parts of a champion decision the shadow needs, owned.
    pub fn new(candidate: Arc<Candidate>, req: &engine::Request<'_>, served: Served<'_>) -> Self {
        Sampled {
            candidate,
            customer_id: req.customer_id.map(Into::into),
            visitor_id: served.visitor_id.map(Into::into),
            channel: req.channel.into(),
            placement: req.placement.into(),
            limit: req.limit,
            context: req
                .context
                .iter()
                .map(|(k, v)| ((**k).into(), v.clone().into_owned()))
                .collect(),
            set: served.set.clone(),
            variant: served.variant,
            key: served.key,
            decision_id: served.decision_id,
            now_ms: served.now_ms,
            served: served.decision.ranked.iter().map(|r| r.offer).collect(),
        }
    }
}

/// What a shadow task reads of the server.
struct With {
    registry: Arc<crate::registry::Registry>,
    contacts: Arc<crate::contact::Contacts>,
    ids: attribution::DecisionIds,
}

/// The shadow decision of one sampled request, counted, and kept for the estimate beside the
/// champion's remade one.
fn run(s: &Sampled, state: &With) {
    let c = &s.candidate;
    let snap = state.registry.load();
    let serving = snap.features.as_ref();
    if !serving.is_some_and(|f| Arc::ptr_eq(f, &c.features)) {
        // Compiled against the snapshot served before (it did not compile against this one,
        // which `follow` said, or this decision raced the swap).
        c.figures.skipped_snapshot.fetch_add(1, Relaxed);
        return;
    }
    let model = &c.model.compiled;
    let subject = Subject::of(s.customer_id.as_deref(), s.visitor_id.as_deref());
    let origin = Origin {
        channel: None,
        slot: None,
        customer: subject.with_key(attribution::customer_check),
    };
    let contacts = state.contacts.for_decision(
        &state.ids,
        (s.customer_id.as_deref(), s.visitor_id.as_deref()),
        0,
        Variant::Champion,
        origin,
    );
    let context: Vec<(std::borrow::Cow<'_, str>, CtxValue)> = s
        .context
        .iter()
        .map(|(k, v)| (std::borrow::Cow::Borrowed(&**k), v.clone()))
        .collect();
    // Kept for the estimate: a share of the shadowed decisions, by bits of the id's hash the
    // sampling did not use.
    let estimated = (seed_of(s.decision_id) & 0x7ff) as f64 / 2048.0 < c.estimate_share;
    // The served decision's seed: exploration and adaptive draws fall as the champion's did,
    // so the two differ only where their models do (a copy of the champion always agrees).
    let mut req = engine::Request {
        customer_id: s.customer_id.as_deref(),
        channel: &s.channel,
        placement: &s.placement,
        limit: s.limit,
        context: &context,
        explain: estimated,
        learnt: Some(Learnt {
            seed: seed_of(s.decision_id),
            ..contacts.learnt()
        }),
    };
    let view = contacts.view(&model.policies);
    let d = engine::decide(model, &c.features, &req, &view, &Unbounded, contacts.now_ms);
    let shadow_top = d
        .ranked
        .first()
        .map(|r| &*model.offers[r.offer as usize].id);
    let champion = &s.set.model(s.variant).compiled;
    let champion_top = s.served.first().map(|&o| &*champion.offers[o as usize].id);
    let f = &c.figures;
    f.decisions.fetch_add(1, Relaxed);
    // Showing nothing where the champion shows nothing agrees too.
    if shadow_top == champion_top {
        f.agreed.fetch_add(1, Relaxed);
    }
    {
        let mut top = f.top.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(id) = champion_top {
            top.entry(id.into()).or_default()[0] += 1;
        }
        if let Some(id) = shadow_top {
            top.entry(id.into()).or_default()[1] += 1;
        }
    }
    if !estimated {
        return;
    }
    // The champion's decision again, on the served seed, with its probabilities.
    req.learnt = Some(Learnt {
        posteriors: contacts.posteriors(),
        seed: seed_of(s.decision_id),
        tag: attribution::model_tag(s.key),
    });
    let view = contacts.view(&champion.policies);
    let logging = engine::decide(champion, &c.features, &req, &view, &Unbounded, s.now_ms);
    if !logging
        .ranked
        .iter()
        .map(|r| r.offer)
        .eq(s.served.iter().copied())
    {
        f.not_reproduced.fetch_add(1, Relaxed);
        return;
    }
    let row = s
        .customer_id
        .as_deref()
        .and_then(|id| c.features.exact_row(id));
    let sample = Sample::of(champion, &logging, &[], model, &d, row, |_| false);
    let offers = sample
        .shown
        .iter()
        .map(|x| champion.offers[x.offer as usize].id.clone())
        .collect();
    f.outcomes.lock().unwrap_or_else(|p| p.into_inner()).keep(
        s.decision_id,
        &s.channel,
        &s.placement,
        sample,
        offers,
    );
}

/// Conversions naming a shadowed decision feed the shadow's estimate.
impl Subscriber for Shadow {
    fn event(&self, e: &Event<'_>, _origin: crate::contact::Origin, _now_ms: i64) {
        let (EventKind::Conversion, Some(decision), Some(offer)) =
            (e.kind, e.decision_id, e.offer_id)
        else {
            return;
        };
        if let Some(c) = &*self.slot.load() {
            c.figures
                .outcomes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .converted(decision, offer);
        }
    }
}

/// Removes a file of the shadow's; one already gone is fine.
fn remove_if_there(path: &std::path::Path) -> Result<(), ShadowError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ShadowError::Keep(format!("{}: {e}", path.display()))),
    }
}

/// Compiles a shadow document: its `share` taken out and checked, the rest a model.
fn compile(
    mut doc: Value,
    features: Arc<FeatureStore>,
    base_dir: Option<PathBuf>,
    limits: &Limits,
) -> Result<Candidate, ShadowError> {
    let kept = doc.clone();
    let obj = doc.as_object_mut().ok_or_else(|| {
        ShadowError::Invalid("expected a JSON object: a model with a \"share\"".into())
    })?;
    let share = fraction(obj, "share")?.ok_or_else(|| {
        // `shar`, `Share`: the field meant, rather than the model's unknown field.
        let typed = obj
            .keys()
            .find(|k| crate::near::nearest(k, ["share"]).is_some());
        let hint = typed.map_or_else(String::new, |k| format!(" (`{k}`: did you mean `share`?)"));
        ShadowError::Invalid(format!(
            "share: missing{hint}; the share of decisions the shadow decides beside the champion (above 0, at most 1)"
        ))
    })?;
    if share == 0.0 {
        // It would replace the running shadow, and its figures, with one that never decides.
        return Err(ShadowError::Invalid(
            "share: 0 decides nothing: give the share of decisions to shadow (above 0, at most \
             1), or end shadowing with DELETE /admin/models/shadow"
                .into(),
        ));
    }
    let estimate_share = match fraction(obj, "estimate_share")? {
        Some(s) => s,
        None => (ESTIMATED_DECISIONS / share).min(1.0),
    };
    // `estimate_sahre`: the shadow's own field meant, not one the model would list.
    if let Some((typed, meant)) = obj
        .keys()
        .find_map(|k| crate::near::nearest(k, ["share", "estimate_share"]).map(|m| (k.clone(), m)))
    {
        return Err(ShadowError::Invalid(format!(
            "{typed}: unknown field: did you mean `{meant}`? (a shadow is a model with `share` \
             and, optionally, `estimate_share`)"
        )));
    }
    let document = serde_json::to_vec(&doc).unwrap_or_default();
    let model = crate::model::from_bytes(
        document,
        base_dir,
        "admin shadow".into(),
        &*features,
        limits,
    )
    .map_err(|e| ShadowError::Model(RegistryError::Model(e)))?;
    Ok(Candidate {
        model,
        features,
        share,
        estimate_share,
        kept,
        figures: Arc::default(),
    })
}

/// The number between 0 and 1 at `key` of a shadow document, taken out of it.
fn fraction(
    obj: &mut serde_json::Map<String, Value>,
    key: &str,
) -> Result<Option<f64>, ShadowError> {
    match obj.remove(key) {
        None => Ok(None),
        Some(Value::Number(n)) => match n.as_f64().filter(|s| (0.0..=1.0).contains(s)) {
            Some(s) => Ok(Some(s)),
            None => Err(ShadowError::Invalid(format!(
                "{key}: {n} is not between 0 and 1"
            ))),
        },
        Some(other) => {
            let percent = other
                .as_str()
                .and_then(crate::model::walk::percent_hint)
                .map_or_else(String::new, |h| format!(" ({h})"));
            Err(ShadowError::Invalid(format!(
                "{key}: expected a number between 0 and 1, found {other}{percent}"
            )))
        }
    }
}

/// Why a shadow was refused.
#[derive(Debug, thiserror::Error)]
pub enum ShadowError {
    /// The body is not a model with a share.
    #[error("{0}")]
    Invalid(String),
    /// The model does not compile.
    #[error(transparent)]
    Model(RegistryError),
    /// The data folder could not keep it.
    #[error("could not keep the shadow model: {0}")]
    Keep(String),
    /// No feature snapshot serves to compile against.
    #[error("no feature snapshot is serving to compile the shadow model against")]
    NoSnapshot,
}
