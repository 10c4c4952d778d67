//! What a publish installs: the [`Snapshot`] every request reads and the [`ModelSet`] in it,
//! and how a set is built (champion, declared challenger, warm-up) against a feature layout.
//!
//! Building is pure work on the caller's thread: parse, validate, compile, warm. It reads the
//! model's files but publishes nothing; the commit path in [`super`] does that.

use std::path::PathBuf;
use std::sync::Arc;

use crate::engine::{self, NoContacts, Request, Unbounded};
use crate::experiment::{self, Challenger, Variant};
use crate::features::FeatureStore;
use crate::model::{self, Fault, Limits, LoadedModel, ModelError};

/// A champion and its optional challenger, compiled against one feature layout.
#[derive(Debug)]
pub struct ModelSet {
    /// The model most customers get.
    pub champion: Arc<LoadedModel>,
    /// The model a stable share of customers gets.
    pub challenger: Option<Challenger>,
    /// Content keys (each variant's [`LoadedModel::key`]): what the funnel and decision ids
    /// identify a model by, so a re-published model with the same name but other content
    /// (its document or its scorer files) is another model.
    keys: [u32; 2],
    columns: Arc<[Box<str>]>,
    /// Each text column's dictionary as compiled against: the models hold its codes.
    dictionaries: Arc<[Option<crate::features::Dictionary>]>,
}

impl ModelSet {
    fn new(champion: LoadedModel, challenger: Option<Challenger>, store: &FeatureStore) -> Self {
        ModelSet {
            keys: [champion.key, challenger.as_ref().map_or(0, |c| c.model.key)],
            champion: Arc::new(champion),
            challenger,
            columns: store.columns().to_vec().into(),
            dictionaries: (0..store.columns().len())
                .map(|c| store.dictionary(c).cloned())
                .collect(),
        }
    }

    /// The model (and its variant) for a customer; anonymous visitors get the champion.
    #[inline]
    pub fn pick(&self, customer_id: Option<&str>) -> (&LoadedModel, Variant) {
        match (
            experiment::pick(self.challenger.as_ref(), customer_id),
            &self.challenger,
        ) {
            (Variant::Challenger, Some(c)) => (&c.model, Variant::Challenger),
            _ => (&self.champion, Variant::Champion),
        }
    }

    /// A variant's model; the champion's when there is no challenger.
    #[inline]
    pub fn model(&self, variant: Variant) -> &LoadedModel {
        match (variant, &self.challenger) {
            (Variant::Challenger, Some(c)) => &c.model,
            _ => &self.champion,
        }
    }

    /// Whether a file of the models folder is one the champion or the challenger reads (a
    /// scorer file, the challenger's document), by its path inside the folder.
    pub fn reads(&self, rel: &std::path::Path) -> bool {
        let named = |m: &LoadedModel| m.files.iter().any(|f| std::path::Path::new(f) == rel);
        named(&self.champion) || self.challenger.as_ref().is_some_and(|c| named(&c.model))
    }

    /// The warnings of the champion and of its challenger (paths prefixed `challenger.`).
    pub fn warnings(&self) -> Vec<crate::model::Fault> {
        let challenger = self.challenger.iter().flat_map(|c| {
            c.model.warnings.iter().map(|w| crate::model::Fault {
                path: format!("challenger.{}", w.path),
                message: w.message.clone(),
            })
        });
        self.champion
            .warnings
            .iter()
            .cloned()
            .chain(challenger)
            .collect()
    }

    /// The content key of a variant's model (see the field's doc).
    #[inline]
    pub fn key(&self, variant: Variant) -> u32 {
        self.keys[variant.index()]
    }

    /// Champion and challenger with their variants and keys.
    pub fn models(&self) -> impl Iterator<Item = (&LoadedModel, Variant, u32)> {
        std::iter::once((&*self.champion, Variant::Champion))
            .chain(
                self.challenger
                    .as_ref()
                    .map(|c| (&*c.model, Variant::Challenger)),
            )
            .map(|(m, v)| (m, v, self.key(v)))
    }

    /// The longest policy window of champion and challenger: how far back history matters.
    pub fn horizon_ms(&self) -> i64 {
        self.models()
            .map(|(m, _, _)| m.compiled.policies.horizon_ms)
            .max()
            .unwrap_or(0)
    }

    /// True when compiled against exactly these columns and dictionaries (no recompile needed).
    pub(super) fn fits(&self, store: &FeatureStore) -> bool {
        // Rules, categories and tree inputs on text columns hold dictionary codes: the same
        // names with another dictionary (a value added or gone) shift the codes.
        *self.columns == *store.columns()
            && self
                .dictionaries
                .iter()
                .enumerate()
                .all(|(c, d)| d.as_ref() == store.dictionary(c))
    }
}

/// What every request reads: the active models and feature snapshot, swapped together.
#[derive(Default)]
pub struct Snapshot {
    /// The active champion (and challenger), compiled against `features`.
    pub models: Option<Arc<ModelSet>>,
    /// The active feature snapshot.
    pub features: Option<Arc<FeatureStore>>,
    /// Which file the feature snapshot is, by content.
    pub feature_version: Option<Arc<super::FeatureVersion>>,
}

impl Snapshot {
    /// Ready to personalise: a model and a feature snapshot are loaded.
    pub fn is_ready(&self) -> bool {
        self.models.is_some() && self.features.is_some()
    }
}

/// A model document and where it came from: what a set is built (and rebuilt) from.
pub(super) struct Source {
    pub document: Vec<u8>,
    pub base_dir: Option<PathBuf>,
    pub source: String,
    /// Scorer files' bytes taken before the folder's (a rebuild of what already served).
    pub scorers: Vec<(String, Arc<[u8]>)>,
}

impl Source {
    /// The source of a set's champion, to rebuild it against other columns: its document and
    /// the scorer files it was compiled from.
    pub fn of(set: &ModelSet) -> Self {
        let m = &set.champion;
        Source {
            document: m.document.clone(),
            base_dir: m.base_dir.clone(),
            source: m.source.clone(),
            scorers: m.scorer_files.clone(),
        }
    }

    /// A set's champion document with its scorer files read again from the folder.
    pub fn with_folder_files(set: &ModelSet) -> Self {
        Source {
            scorers: Vec::new(),
            ..Source::of(set)
        }
    }
}

/// Builds a set from a model document.
pub(super) fn build(
    src: Source,
    store: &FeatureStore,
    limits: &Limits,
) -> Result<ModelSet, ModelError> {
    build_against(src, store, store, limits)
}

/// Builds the serving set again against a new snapshot, its faults said of the snapshot.
pub(super) fn rebuild_for_snapshot(
    src: Source,
    store: &FeatureStore,
    limits: &Limits,
) -> Result<ModelSet, ModelError> {
    build_against(src, store, &NewSnapshot(store), limits)
}

fn build_against(
    src: Source,
    store: &FeatureStore,
    schema: &dyn model::Schema,
    limits: &Limits,
) -> Result<ModelSet, ModelError> {
    let model = model::from_bytes_kept(
        src.document,
        src.base_dir,
        src.source,
        &src.scorers,
        schema,
        limits,
    )?;
    with_challenger(model, store, schema, limits)
}

/// A new snapshot as the serving model's features are looked up in it: what changed is the
/// snapshot, so a feature it lacks is said of it ("the new snapshot has no column"), not of
/// the model, which has served until now. Everything else is the snapshot's own answer.
struct NewSnapshot<'a>(&'a FeatureStore);

impl model::Schema for NewSnapshot<'_> {
    fn column(&self, name: &str) -> Option<u32> {
        model::Schema::column(self.0, name)
    }

    fn info(&self, column: u32) -> model::ColumnInfo<'_> {
        model::Schema::info(self.0, column)
    }

    fn cells(&self, column: u32) -> Option<Box<dyn Iterator<Item = f64> + '_>> {
        model::Schema::cells(self.0, column)
    }

    fn turned(&self, column: u32) -> Option<(u64, &str)> {
        model::Schema::turned(self.0, column)
    }

    fn left_out(&self, name: &str) -> Option<&str> {
        model::Schema::left_out(self.0, name)
    }

    fn near(&self, name: &str) -> Option<&str> {
        model::Schema::near(self.0, name)
    }

    fn unknown(&self, name: &str) -> String {
        let lacks =
            format!("the new snapshot has no column `{name}`, which the serving model reads");
        match (self.left_out(name), self.near(name)) {
            (Some(kind), _) => format!("{lacks}: {}", model::left_out_reason(kind)),
            (None, Some(near)) if near.eq_ignore_ascii_case(name) => {
                format!("{lacks}: it has `{near}` (names match exactly, letter case included)")
            }
            (None, Some(near)) => format!("{lacks} (it has `{near}`: renamed?)"),
            (None, None) => lacks,
        }
    }
}

/// Builds a set from the model file or folder at `path`.
pub(super) fn build_from_path(
    path: &std::path::Path,
    store: &FeatureStore,
    limits: &Limits,
) -> Result<ModelSet, ModelError> {
    let model = model::load(path, store, limits)?;
    with_challenger(model, store, store, limits)
}

/// Builds the models at `path` against a snapshot read from disk with them (start, SIGHUP).
/// Models that fail on it but compile against the snapshot `serving` did not change it: the
/// fault is the new snapshot's, said as a reload of the snapshot alone says it.
pub(super) fn build_from_disk(
    path: &std::path::Path,
    store: &FeatureStore,
    serving: Option<&FeatureStore>,
    limits: &Limits,
) -> Result<ModelSet, super::RegistryError> {
    let e = match build_from_path(path, store, limits) {
        Ok(set) => return Ok(set),
        Err(e) => e,
    };
    match serving {
        Some(serving) if build_from_path(path, serving, limits).is_ok() => {
            let e = build_from_path_for_snapshot(path, store, limits)
                .err()
                .unwrap_or(e);
            Err(super::RegistryError::FeaturesIncompatible(
                e,
                super::record::column_faults(store),
            ))
        }
        _ => Err(e.into()),
    }
}

/// Builds the models at `path` against a new snapshot, its faults said of the snapshot.
fn build_from_path_for_snapshot(
    path: &std::path::Path,
    store: &FeatureStore,
    limits: &Limits,
) -> Result<ModelSet, ModelError> {
    let schema = NewSnapshot(store);
    let model = model::load(path, &schema, limits)?;
    with_challenger(model, store, &schema, limits)
}

/// Adds the challenger a model declares, compiled against the same snapshot.
pub(super) fn with_challenger(
    model: LoadedModel,
    store: &FeatureStore,
    schema: &dyn model::Schema,
    limits: &Limits,
) -> Result<ModelSet, ModelError> {
    // What compiles but is likely a mistake (a rule value the snapshot never holds) is logged
    // with its path at every load, as `model check --features` prints it.
    for w in &model.warnings {
        tracing::warn!(source = %model.source, path = %w.path, fault = %w.message, "model warning: loaded, but check this");
    }
    let challenger = match (load_challenger(&model, schema, limits)?, &model.challenger) {
        (Some(c), Some(spec)) => Some(Challenger {
            model: Arc::new(c),
            share: spec.share,
            salt: spec.salt.clone(),
        }),
        _ => None,
    };
    Ok(ModelSet::new(model, challenger, store))
}

/// The challenger a model declares, loaded and judged against its champion (faults prefixed
/// `challenger`): the one judgement `model check`, uploads and reloads share.
pub fn load_challenger(
    model: &LoadedModel,
    schema: &dyn model::Schema,
    limits: &Limits,
) -> Result<Option<LoadedModel>, ModelError> {
    let Some(spec) = &model.challenger else {
        return Ok(None);
    };
    let c = model::load(&spec.path, schema, limits).map_err(|e| prefix_faults(e, "challenger"))?;
    if c.challenger.is_some() {
        return Err(ModelError::Invalid(vec![Fault {
            path: "challenger.path".into(),
            message: "a challenger cannot declare a challenger of its own".into(),
        }]));
    }
    let missing = missing_channels(model, &c);
    if !missing.is_empty() {
        return Err(ModelError::Invalid(missing));
    }
    Ok(Some(c))
}

/// Each channel the champion serves and the challenger does not, as a fault: the challenger's
/// share of customers could not be decided there (a campaign on it would be refused).
fn missing_channels(champion: &LoadedModel, challenger: &LoadedModel) -> Vec<Fault> {
    let has: Vec<&str> = challenger
        .compiled
        .channels
        .iter()
        .map(|c| &*c.name)
        .collect();
    champion
        .compiled
        .channels
        .iter()
        .filter(|c| !has.contains(&&*c.name))
        .map(|c| Fault {
            path: "challenger.path".into(),
            message: format!(
                "(challenger `{}`) the model `{}` has no channel `{}`, which the champion serves (it has: {})",
                challenger.compiled.name,
                challenger.compiled.name,
                c.name,
                has.join(", ")
            ),
        })
        .collect()
}

fn prefix_faults(e: ModelError, prefix: &str) -> ModelError {
    ModelError::Invalid(
        e.faults()
            .into_iter()
            .map(|f| Fault {
                path: if f.path.is_empty() {
                    prefix.to_owned()
                } else {
                    format!("{prefix}:{}", f.path)
                },
                message: f.message,
            })
            .collect(),
    )
}

/// Runs a few decisions on every placement so a new model's pages and branches are touched
/// before the first real request meets them.
pub(super) fn warm(set: &ModelSet, store: &FeatureStore) {
    let now_ms = crate::contact::Clock::system().now_ms();
    for (m, _, _) in set.models() {
        for ch in m.compiled.channels.iter() {
            for slot in ch.slots.iter() {
                for row in 0..store.len().min(8) {
                    let req = Request {
                        customer_id: store.id_at(row),
                        channel: &ch.name,
                        placement: &slot.placement,
                        ..Default::default()
                    };
                    let d =
                        engine::decide(&m.compiled, store, &req, &NoContacts, &Unbounded, now_ms);
                    std::hint::black_box(d.ranked.len());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::NewSnapshot;
    use crate::features::FeatureStore;
    use crate::model::Schema;

    #[test]
    fn a_feature_the_new_snapshot_lacks_is_said_of_the_snapshot() {
        let store =
            FeatureStore::from_csv_bytes(b"customer_id,churn_scor,plan,when:skip\nC1,1,2,3\n", "n")
                .unwrap();
        let said = |name: &str| NewSnapshot(&store).unknown(name);
        let lacks = |name: &str| {
            format!("the new snapshot has no column `{name}`, which the serving model reads")
        };
        assert_eq!(
            said("churn_score"),
            format!("{} (it has `churn_scor`: renamed?)", lacks("churn_score"))
        );
        assert_eq!(said("segment"), lacks("segment"));
        assert_eq!(
            said("Plan"),
            format!(
                "{}: it has `plan` (names match exactly, letter case included)",
                lacks("Plan")
            )
        );
        assert!(
            said("when").starts_with(&format!(
                "{}: the snapshot leaves it out (`:skip`)",
                lacks("when")
            )),
            "{}",
            said("when")
        );
        // What is not about a missing name is the snapshot's own answer.
        assert_eq!(
            NewSnapshot(&store).column("plan"),
            store.column("plan").map(|c| c as u32)
        );
    }
}
