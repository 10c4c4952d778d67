//! `nextbest replay`: every logged decision made again with the model that made it (it must
//! answer exactly as logged) and with a candidate model, and what would change.
//!
//! Each decision is re-run on the engine with its logged request, time and feature values, and
//! with the offers the contact policies held back at that moment held back again. For the
//! original model that is exact. For the candidate it carries those holds over by offer id: the
//! candidate is judged on eligibility, scoring and arbitration against the contact state as
//! the live model's policies saw it (a candidate that changes the policies themselves is not
//! simulated; the log holds their outcome, not the history behind it). Reads the log folder
//! and the candidate; writes nothing.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::format::{DecisionRecord, LoggedAnswer, LoggedOffer, Record};
pub use super::report::{BeforeAfter, Latency, Mismatch, OfferMix, PlacementShift, Report};
use crate::engine::posterior::{
    seed_of, ArmTallies, ContextPosterior, Learnt, Moments, Posteriors, Tally, MAX_WINDOW_DAYS,
};
use crate::engine::scorer::Scorer;
use crate::engine::{self, ContactView, Offer, Request, Unbounded};
use crate::features::{DictBuilder, FeatureStore, IdIndex};
use crate::model::{self, Limits, LoadedModel};

/// Why a replay could not run (a log that does not reproduce is a [`Report`] with mismatches).
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The folder or a file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The folder holds no logged decision.
    #[error("no logged decisions in {0}")]
    Empty(PathBuf),
    /// A decision names a model or column list its file does not hold.
    #[error("decision {decision}: {what} {id} is not in the log")]
    Missing {
        /// The decision id.
        decision: String,
        /// `model` or `column list`.
        what: &'static str,
        /// The key or id.
        id: u32,
    },
    /// A model did not compile (the logged one, or the candidate).
    #[error("{which}: {error}")]
    Model {
        /// Which model.
        which: String,
        /// The faults.
        error: model::ModelError,
    },
    /// The logged feature values do not fit their column list.
    #[error("logged features: {0}")]
    Features(String),
}

/// What the log folder holds.
pub(super) struct Log {
    models: HashMap<u32, (String, Option<PathBuf>, Option<String>)>,
    columns: HashMap<u32, (Vec<String>, Strings)>,
    pub(super) decisions: Vec<DecisionRecord>,
    pub(super) unreadable: usize,
    /// Per process run: its sampling share and the last counts of what it did not log.
    pub(super) drops: HashMap<String, (f64, super::Skips)>,
}

pub(super) fn read_log(dir: &Path) -> Result<Log, ReplayError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| ReplayError::Io { path, source }
    };
    let mut log = Log {
        models: HashMap::new(),
        columns: HashMap::new(),
        decisions: Vec::new(),
        unreadable: 0,
        drops: HashMap::new(),
    };
    if !dir.is_dir() {
        return Err(ReplayError::Io {
            path: dir.to_owned(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no such folder (--log: the server's --decision-log folder)",
            ),
        });
    }
    for (_, path) in super::log_files(dir).map_err(io(dir))? {
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            match serde_json::from_str::<Record<'static>>(line) {
                Ok(Record::Model {
                    key,
                    base_dir,
                    document,
                    checksum,
                    ..
                }) => {
                    let checksum = checksum.map(std::borrow::Cow::into_owned);
                    log.models
                        .insert(key, (document.into_owned(), base_dir, checksum));
                }
                Ok(Record::Columns {
                    id,
                    columns,
                    strings,
                }) => {
                    log.columns.insert(id, (columns, strings));
                }
                Ok(Record::Decision(d)) => log.decisions.push(*d),
                Ok(Record::Drops { run, sample, skips }) => {
                    log.drops.insert(run, (sample, skips));
                }
                Err(_) => log.unreadable += 1,
            }
        }
    }
    if log.decisions.is_empty() {
        return Err(ReplayError::Empty(dir.to_owned()));
    }
    Ok(log)
}

/// The offers held back at the logged moment, held back again.
struct Held<'a>(HashSet<&'a str>);

impl ContactView for Held<'_> {
    fn holds_back<'m>(&self, _: usize, offer: &'m Offer) -> Option<&'m str> {
        self.0
            .contains(&*offer.id)
            .then_some("contact policy (as logged)")
    }
}

/// A logged column list's dictionaries, by string column name.
type Strings = BTreeMap<String, Vec<String>>;

/// One column list's decisions as a feature store: the `i`-th of them, when it logged
/// features, is the row `row_id(i)` (logged rows of one customer may differ, so each decision
/// gets its own row; a decision without features, of an unknown customer or an anonymous
/// visitor, has none and takes no name).
fn store_of(
    columns: &[String],
    strings: &Strings,
    rows: &[&DecisionRecord],
) -> Result<FeatureStore, ReplayError> {
    let mut ids = IdIndex::with_capacity(rows.len(), 8);
    let mut values = Vec::with_capacity(rows.len() * columns.len());
    for (i, d) in rows.iter().enumerate() {
        let Some(f) = &d.features else { continue };
        if f.len() != columns.len() {
            return Err(ReplayError::Features(format!(
                "decision {}: {} values for {} columns",
                d.decision_id,
                f.len(),
                columns.len()
            )));
        }
        ids.push(&row_id(i))
            .map_err(|_| ReplayError::Features("a repeated row".into()))?;
        values.extend(f.iter().map(|b| f32::from_bits(*b)));
    }
    // The logged codes of a string column stand for its logged dictionary's values.
    let dicts = columns
        .iter()
        .map(|c| {
            let Some(values) = strings.get(c) else {
                return Ok(None);
            };
            let mut b = DictBuilder::default();
            for v in values {
                b.push(v)
                    .map_err(|e| ReplayError::Features(format!("column `{c}`: {e}")))?;
            }
            let (d, remap) = b.finish();
            if remap.iter().enumerate().any(|(i, &r)| i as u32 != r) {
                return Err(ReplayError::Features(format!(
                    "column `{c}`: the logged dictionary is not sorted"
                )));
            }
            Ok(Some(d))
        })
        .collect::<Result<Vec<_>, _>>()?;
    FeatureStore::new(columns.to_vec(), ids, values, "decision log")
        .and_then(|s| s.with_dictionaries(dicts))
        .map_err(ReplayError::Features)
}

fn row_id(i: usize) -> String {
    format!("r{i}")
}

pub(super) fn answer_of(model: &LoadedModel, d: &engine::Decision<'_>) -> LoggedAnswer {
    LoggedAnswer {
        fallback: d.fallback.map(|r| r.as_str().to_owned()),
        offers: d
            .ranked
            .iter()
            .map(|r| LoggedOffer::of(&model.compiled, r))
            .collect(),
    }
}

fn value_of(
    model: &LoadedModel,
    a: &LoggedAnswer,
    row: Option<crate::features::FeatureRow<'_>>,
) -> f64 {
    a.offers
        .iter()
        .map(|o| {
            let value = model
                .compiled
                .offers
                .iter()
                .find(|m| *m.id == *o.offer_id)
                .map_or(0.0, |m| match row {
                    Some(row) => m.value_for(row),
                    None => m.value,
                });
            o.propensity * value
        })
        .sum()
}

/// The model that made a logged decision, compiled against its column list.
fn compile_logged(
    log: &Log,
    d: &DecisionRecord,
    store: &FeatureStore,
    limits: &Limits,
) -> Result<LoadedModel, ReplayError> {
    let (doc, base, logged) = log.models.get(&d.key).ok_or_else(|| ReplayError::Missing {
        decision: d.decision_id.clone(),
        what: "model",
        id: d.key,
    })?;
    let which = || format!("logged model {:08x}", d.key);
    let m = model::from_bytes(
        doc.clone().into_bytes(),
        base.clone(),
        "decision log".into(),
        store,
        limits,
    )
    .map_err(|error| ReplayError::Model {
        which: which(),
        error,
    })?;
    match logged {
        // A retrained scorer file would make every decision look like a mismatch.
        Some(c) if *c != m.checksum => Err(ReplayError::Model {
            which: which(),
            error: model::ModelError::Invalid(vec![model::Fault {
                path: "offers[].scorer.path".into(),
                message: format!(
                    "its scorer files ({}) in {} changed since the log was written (checksum {} \
                     then, {} now): replay needs the files that made the decisions",
                    m.files.join(", "),
                    base.as_deref()
                        .map_or_else(|| "its folder".into(), |b| b.display().to_string()),
                    c,
                    m.checksum
                ),
            }]),
        }),
        _ => Ok(m),
    }
}

/// Replays the log in `dir` with the models that made it and with `candidate`.
///
/// The steps: read the log; for each column list, rebuild a feature store of its decisions
/// and compile the candidate against it; make each decision again with its original model
/// (which must reproduce it) and with the candidate, counting what changes; then report.
pub fn run(dir: &Path, candidate: &Path) -> Result<Report, ReplayError> {
    let log = read_log(dir)?;
    let mut totals = Totals::default();
    each_decision(&log, candidate, |d, customer_row, original, cand, store| {
        totals.candidate(cand);
        totals.replay(d, customer_row, original, cand, store);
    })?;
    Ok(totals.report(log.decisions.len(), log.unreadable))
}

/// Calls `f` for every logged decision with the row its features got, the model that made it
/// and the candidate, both compiled against the decision's column list, and that store.
pub(super) fn each_decision(
    log: &Log,
    candidate: &Path,
    mut f: impl FnMut(&DecisionRecord, Option<&str>, &LoadedModel, &LoadedModel, &FeatureStore),
) -> Result<(), ReplayError> {
    let limits = Limits::default();
    let mut by_columns: BTreeMap<u32, Vec<&DecisionRecord>> = BTreeMap::new();
    for d in &log.decisions {
        by_columns.entry(d.columns).or_default().push(d);
    }
    for (columns_id, rows) in &by_columns {
        let columns = log
            .columns
            .get(columns_id)
            .ok_or_else(|| ReplayError::Missing {
                decision: rows[0].decision_id.clone(),
                what: "column list",
                id: *columns_id,
            })?;
        let store = store_of(&columns.0, &columns.1, rows)?;
        let cand = model::load(candidate, &store, &limits).map_err(|error| ReplayError::Model {
            which: format!("candidate {}", candidate.display()),
            error,
        })?;
        let mut originals: HashMap<u32, LoadedModel> = HashMap::new();
        for (i, d) in rows.iter().enumerate() {
            let original = match originals.entry(d.key) {
                Entry::Occupied(e) => &*e.into_mut(),
                Entry::Vacant(e) => &*e.insert(compile_logged(log, d, &store, &limits)?),
            };
            // A decision with logged features has the row named by its place (`store_of`).
            let id = d.features.as_ref().map(|_| row_id(i));
            f(d, id.as_deref(), original, &cand, &store);
        }
    }
    Ok(())
}

/// A logged decision's inputs rebuilt as the engine takes them: the request, what adaptive
/// offers had learnt then with the seed its id gives (the same Thompson draws), and the offers
/// the contact policies held back.
pub(super) struct Inputs<'a> {
    d: &'a DecisionRecord,
    customer_row: Option<&'a str>,
    context: Vec<(std::borrow::Cow<'a, str>, crate::engine::CtxValue<'a>)>,
    posteriors: Posteriors,
    held: Held<'a>,
    seed: u64,
    tag: u16,
}

impl<'a> Inputs<'a> {
    /// The inputs of `d`, whose features are row `customer_row` of the store, made by
    /// `original`.
    pub(super) fn new(
        d: &'a DecisionRecord,
        customer_row: Option<&'a str>,
        original: &LoadedModel,
    ) -> Self {
        let tag = crate::contact::attribution::model_tag(d.key);
        let decision = ulid::Ulid::from_string(&d.decision_id).map_or(0, |u| u.0);
        Inputs {
            d,
            customer_row,
            context: d.request.context(),
            posteriors: learnt_of(&original.compiled, tag, &d.adaptive, &d.contextual),
            held: Held(d.held.iter().map(String::as_str).collect()),
            seed: seed_of(decision),
            tag,
        }
    }

    /// The decision made again by `model` (with every verdict and its probability of being
    /// shown when `explain`).
    pub(super) fn decide<'m>(
        &self,
        model: &'m engine::CompiledModel,
        store: &FeatureStore,
        explain: bool,
    ) -> engine::Decision<'m> {
        let req = Request {
            customer_id: self.customer_row,
            channel: &self.d.request.channel,
            placement: &self.d.request.placement,
            limit: self.d.request.limit,
            context: &self.context,
            explain,
            learnt: Some(Learnt {
                posteriors: &self.posteriors,
                seed: self.seed,
                tag: self.tag,
            }),
        };
        engine::decide(model, store, &req, &self.held, &Unbounded, self.d.at_ms)
    }
}

/// What the replay has counted so far, over every column list.
#[derive(Default)]
struct Totals {
    candidate_name: String,
    candidate_offers: Vec<String>,
    reproduced: usize,
    mismatches: Vec<Mismatch>,
    /// Per (channel, placement): decisions, and answers the candidate changes.
    placements: BTreeMap<(String, String), (usize, usize)>,
    /// Per offer id: decisions serving it as logged, and with the candidate.
    mix: BTreeMap<String, (usize, usize)>,
    value_before: f64,
    value_after: f64,
    latencies: Vec<f64>,
    /// Per candidate adaptive offer the logging model did not learn as the candidate does
    /// ([`learnt_alike`]): the decisions it was replayed on, where it drew from its prior.
    untrained: BTreeMap<String, usize>,
}

impl Totals {
    /// Notes the candidate as compiled for a column list (every list compiles the same model).
    fn candidate(&mut self, cand: &LoadedModel) {
        self.candidate_name = format!("{} {}", cand.compiled.name, cand.compiled.version);
        self.candidate_offers = cand
            .compiled
            .offers
            .iter()
            .map(|o| o.id.to_string())
            .collect();
    }

    /// Makes one logged decision again with its original model and with the candidate.
    fn replay(
        &mut self,
        d: &DecisionRecord,
        customer_row: Option<&str>,
        original: &LoadedModel,
        cand: &LoadedModel,
        store: &FeatureStore,
    ) {
        let inputs = Inputs::new(d, customer_row, original);
        let again = answer_of(original, &inputs.decide(&original.compiled, store, false));
        if again.same(&d.answer) {
            self.reproduced += 1;
        } else if self.mismatches.len() < 10 {
            self.mismatches.push(Mismatch {
                decision_id: d.decision_id.clone(),
                logged: d.answer.clone(),
                replayed: again,
            });
        }
        for o in cand.compiled.offers.iter() {
            if matches!(o.scorer, crate::engine::Scorer::Adaptive(_))
                && !original.compiled.offers.iter().any(|l| learnt_alike(l, o))
            {
                *self.untrained.entry(o.id.to_string()).or_default() += 1;
            }
        }
        let started = Instant::now();
        let next = inputs.decide(&cand.compiled, store, false);
        self.latencies.push(started.elapsed().as_secs_f64() * 1e6);
        let next = answer_of(cand, &next);
        let p = self
            .placements
            .entry((d.request.channel.clone(), d.request.placement.clone()))
            .or_default();
        p.0 += 1;
        p.1 += usize::from(!d.answer.same_offers(&next));
        for o in &d.answer.offers {
            self.mix.entry(o.offer_id.clone()).or_default().0 += 1;
        }
        for o in &next.offers {
            self.mix.entry(o.offer_id.clone()).or_default().1 += 1;
        }
        let features = customer_row.and_then(|id| store.exact_row(id));
        self.value_before += value_of(original, &d.answer, features);
        self.value_after += value_of(cand, &next, features);
    }

    /// The report over `n` decisions (at least one: an empty log is an error before this).
    fn report(mut self, n: usize, unreadable_lines: usize) -> Report {
        self.latencies.sort_by(f64::total_cmp);
        let latencies = &self.latencies;
        let pct = |q: f64| latencies[((q * n as f64).ceil() as usize).clamp(1, n) - 1];
        let mut offer_mix: Vec<OfferMix> = self
            .mix
            .into_iter()
            .map(|(offer_id, (before, after))| OfferMix {
                offer_id,
                before,
                after,
                before_share: before as f64 / n as f64,
                after_share: after as f64 / n as f64,
            })
            .collect();
        offer_mix.sort_by(|a, b| b.after.cmp(&a.after).then(b.before.cmp(&a.before)));
        let shown: HashSet<&str> = offer_mix
            .iter()
            .filter(|m| m.after > 0)
            .map(|m| m.offer_id.as_str())
            .collect();
        let never_shown = self
            .candidate_offers
            .iter()
            .filter(|o| !shown.contains(o.as_str()))
            .cloned()
            .collect();
        let warnings = self
            .untrained
            .iter()
            .map(|(offer, k)| {
                format!(
                    "offer `{offer}`: in {k} of {n} decisions the logging model did not learn it \
                     as the candidate does (not adaptive there, or another context list, \
                     outcome, window or prior), so the log holds nothing it learnt and it drew \
                     from its prior here: what changes for it says little; put the candidate as \
                     a shadow, whose offers learn their own way live"
                )
            })
            .collect();
        Report {
            candidate: self.candidate_name,
            warnings,
            decisions: n,
            reproduced: self.reproduced,
            mismatches: self.mismatches,
            unreadable_lines,
            placements: self
                .placements
                .into_iter()
                .map(
                    |((channel, placement), (decisions, changed))| PlacementShift {
                        channel,
                        placement,
                        decisions,
                        changed,
                        changed_share: changed as f64 / decisions as f64,
                    },
                )
                .collect(),
            offer_mix,
            expected_value_per_decision: BeforeAfter {
                before: self.value_before / n as f64,
                after: self.value_after / n as f64,
            },
            never_shown,
            candidate_latency_us: Latency {
                p50: pct(0.5),
                p99: pct(0.99),
                max: latencies[n - 1],
            },
        }
    }
}

/// True when two offers are the same adaptive offer learning the same way: the same id, and
/// no context on either or the same context list, outcome, window and prior (what a
/// contextual offer's learning is keyed by), and `reset` on both or neither.
pub(super) fn learnt_alike(
    logged: &crate::engine::Offer,
    candidate: &crate::engine::Offer,
) -> bool {
    use crate::engine::scorer::Scorer;
    let (Scorer::Adaptive(a), Scorer::Adaptive(b)) = (&logged.scorer, &candidate.scorer) else {
        return false;
    };
    logged.id == candidate.id
        && a.context.as_ref().map(|c| c.key) == b.context.as_ref().map(|c| c.key)
        && a.reset == b.reset
}

/// A counts snapshot holding what a logged decision's adaptive offers had learnt; a contextual
/// offer's posterior holds the very log-odds the decision drew from, and no bins.
fn learnt_of(
    model: &crate::engine::CompiledModel,
    tag: u16,
    logged: &[(String, u64, u64)],
    contextual: &[(String, [u64; 2])],
) -> Posteriors {
    let mut p = Posteriors::default();
    for (id, [mean, variance]) in contextual {
        let Some(o) = model.offers.iter().find(|o| *o.id == **id) else {
            continue;
        };
        let Scorer::Adaptive(a) = &o.scorer else {
            continue;
        };
        let Some(c) = &a.context else { continue };
        let drawn = ContextPosterior {
            overall: Moments {
                mean: f64::from_bits(*mean),
                variance: f64::from_bits(*variance),
            },
            ..ContextPosterior::default()
        };
        p.context.insert(
            c.posterior_key(o.id_hash, a.reset.then_some(tag)),
            std::sync::Arc::new(drawn),
        );
    }
    for (id, trials, successes) in logged {
        let Some(o) = model.offers.iter().find(|o| *o.id == **id) else {
            continue;
        };
        let Scorer::Adaptive(a) = &o.scorer else {
            continue;
        };
        let mut tally = Tally {
            trials: *trials,
            ..Tally::default()
        };
        // Every window reads the logged count (the scorer reads its own window only).
        tally.successes[a.outcome as usize] = [*successes; MAX_WINDOW_DAYS + 1];
        p.arms.insert(
            o.id_hash,
            ArmTallies {
                all: tally,
                by_tag: Box::new([(tag, tally)]),
            },
        );
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-offer model whose offer `o1` has this scorer.
    fn offer(scorer: serde_json::Value) -> crate::model::LoadedModel {
        let store = crate::features::FeatureStore::from_csv_bytes(
            b"customer_id,segment,plan\nC1,a,x\n",
            "s.csv",
        )
        .unwrap();
        let doc = serde_json::json!({"name": "m", "version": "1",
            "placements": {"home": {"channels": ["web"]}},
            "offers": [{"id": "o1", "category": "sales", "channels": ["web"],
                "placements": ["home"], "value": 1, "scorer": scorer,
                "content": {"web": {"title": "T", "image_url": "https://cdn.test/i.jpg",
                    "cta_url": "https://shop.test/x"}}}]});
        crate::model::from_doc(&doc, &store)
    }

    /// A candidate that only adds a feature to an adaptive offer's context list learns apart
    /// from the logged offer: the log's draws are not its own.
    #[test]
    fn an_offer_learns_alike_only_with_the_same_context_list() {
        let adaptive = |context: serde_json::Value| {
            offer(
                serde_json::json!({"kind": "adaptive", "outcome": "conversion",
                "prior": {"propensity": 0.03, "evidence": 30}, "context": context}),
            )
        };
        let alike = |a: &crate::model::LoadedModel, b: &crate::model::LoadedModel| {
            learnt_alike(&a.compiled.offers[0], &b.compiled.offers[0])
        };
        let logged = adaptive(serde_json::json!(["segment"]));
        assert!(alike(&logged, &adaptive(serde_json::json!(["segment"]))));
        assert!(!alike(
            &logged,
            &adaptive(serde_json::json!(["segment", "plan"]))
        ));
        assert!(!alike(
            &logged,
            &adaptive(serde_json::json!(["context.device"]))
        ));
        let plain = offer(
            serde_json::json!({"kind": "adaptive", "outcome": "conversion",
            "prior": {"propensity": 0.03, "evidence": 30}}),
        );
        assert!(!alike(&logged, &plain) && alike(&plain, &plain));
        let logistic = offer(serde_json::json!({"kind": "logistic", "intercept": 0,
            "weights": {}}));
        assert!(!alike(&logistic, &logistic));
    }
}
