//! An offer's tree-ensemble scorer (`xgboost`, `lightgbm`): the file `model::files` read,
//! parsed once per model however many offers use it, bound to the snapshot's columns (string
//! columns through the model's categories), and, for a multiclass file, the offer's `class`.
//!
//! Faults, with paths: a file that does not parse; `class` missing on a multiclass file,
//! given on a binary one, or outside the model's classes; two offers claiming the same class
//! of the same file (each class is one offer's propensity).

use std::collections::BTreeMap;
use std::sync::Arc;

use simd_json::prelude::*;

use super::Ctx;
use crate::engine::scorer::MAX_MULTICLASS;
use crate::engine::trees::{TreeEnsemble, TreeLoadError};
use crate::engine::{ClassScorer, Scorer};
use crate::model::bind::{Column, Given};
use crate::model::walk::{index, join, Fault, Value};
use crate::model::{
    left_out_reason, lightgbm, xgboost, MAX_NAME_BYTES, MAX_PATH_BYTES, MAX_TREE_FEATURES,
};

/// What identifies one parse: kind, path, and what the spec adds to the file (names,
/// categories, every tree).
type Key = (
    String,
    String,
    Vec<String>,
    Vec<(String, Vec<String>)>,
    bool,
);

/// The tree files a model's offers use, each parsed once.
#[derive(Default)]
pub(super) struct TreeFiles {
    parsed: BTreeMap<Key, Result<Parsed, Refused>>,
    /// Multiclass ensembles by slot.
    multiclass: Vec<Arc<TreeEnsemble>>,
    /// Which offer claimed each (slot, class).
    claims: BTreeMap<(u16, u16), String>,
    /// Per file and feature names, the first scorer that read it and how: a file's category
    /// codes mean one thing, whichever offer reads them.
    first_read: BTreeMap<(String, String, Vec<String>), (String, Key)>,
    /// Unseen values already warned about, said once for every file that reads them.
    pub(super) unseen: super::unseen::Said,
}

/// A fault of a file's parse: its place within the scorer when a spec field is at fault
/// (`categories.segment`; else the scorer's `path`), and the message.
type Placed = (Option<String>, String);

/// A file's parse refused: its faults, said in full at the first scorer that uses it (`said`
/// then holds that scorer's path), and pointed to from the others.
struct Refused {
    faults: Vec<Placed>,
    said: Option<String>,
}

/// A parsed file: the ensemble, its feature names, and its slot when multiclass.
struct Parsed {
    ensemble: Arc<TreeEnsemble>,
    features: Vec<String>,
    slot: Option<u16>,
}

impl TreeFiles {
    /// The multiclass ensembles, by slot, for the compiled model.
    pub(super) fn multiclass(&mut self) -> Vec<Arc<TreeEnsemble>> {
        std::mem::take(&mut self.multiclass)
    }
}

/// Compiles one tree-ensemble scorer; `None` after a fault.
pub(super) fn compile_trees(
    cx: &mut Ctx<'_>,
    v: &Value<'_>,
    path: &str,
    kind: &str,
) -> Option<Scorer> {
    let f = &mut cx.faults;
    let obj = f.object(v, path, super::scorer_keys(kind))?;
    let ppath = join(path, "path");
    let rel = f
        .req(obj, "path", path)
        .and_then(|p| f.string(p, &ppath, MAX_PATH_BYTES));
    let names: Option<Vec<String>> = match obj.get("features") {
        Some(list) => Some(
            f.string_list(list, &join(path, "features"), MAX_TREE_FEATURES)?
                .into_iter()
                .map(str::to_owned)
                .collect(),
        ),
        None => None,
    };
    let cpath = join(path, "class");
    let class = match obj.get("class") {
        Some(c) => {
            // A wrong type or range is said once, by `number_in`.
            let x = f.number_in(c, &cpath, 0.0, f64::from(u16::MAX))?;
            if x.fract() != 0.0 {
                f.push(&cpath, "expected a class index (0, 1, ...)");
                return None;
            }
            Some(x as u16)
        }
        None => None,
    };
    let tpath = join(path, "trees");
    let all_trees = match obj
        .get("trees")
        .map(|t| f.string(t, &tpath, MAX_NAME_BYTES))
    {
        None => false,
        Some(None) => return None,
        Some(Some("all")) => true,
        Some(Some("best")) => false,
        Some(Some(_)) => {
            f.push(
                &tpath,
                "expected \"best\" (rounds 0 to early stopping's best_iteration, as \
                 predict_proba scores; the default) or \"all\" (every tree, as Booster.predict)",
            );
            return None;
        }
    };
    let given = match obj.get("categories") {
        Some(c) => Some(read_given(f, c, &join(path, "categories"))?),
        None => None,
    };
    let rel = rel?;
    if !cx.files.has_folder() {
        f.push(
            &ppath,
            "a model with no folder cannot reference scorer files",
        );
        return None;
    }
    let key: Key = (
        kind.to_owned(),
        rel.to_owned(),
        names.clone().unwrap_or_default(),
        given
            .as_ref()
            .map(|g| g.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default(),
        all_trees,
    );
    if !cx.trees.parsed.contains_key(&key) {
        let spec = xgboost::Spec {
            feature_names: names.as_deref(),
            categories: given.as_ref(),
            all_trees,
        };
        let parsed = parse(cx, kind, rel, &spec);
        let parsed = parsed.and_then(|(e, features, notes)| {
            for note in notes {
                cx.warnings.push(Fault {
                    path: note.at.map_or_else(|| ppath.clone(), |at| join(path, &at)),
                    message: format!("`{rel}`: {}", note.text),
                });
            }
            let slot = if e.n_classes() > 1 {
                if cx.trees.multiclass.len() == MAX_MULTICLASS {
                    return Err(vec![(
                        None,
                        format!("more than {MAX_MULTICLASS} multiclass files in one model"),
                    )]);
                }
                cx.trees.multiclass.push(Arc::new(e.clone()));
                Some(cx.trees.multiclass.len() as u16 - 1)
            } else {
                None
            };
            Ok(Parsed {
                ensemble: Arc::new(e),
                features,
                slot,
            })
        });
        if let Ok(p) = &parsed {
            super::unseen::check(cx, &p.ensemble, &p.features, &ppath);
        }
        let parsed = parsed.map_err(|faults| Refused { faults, said: None });
        cx.trees.parsed.insert(key.clone(), parsed);
    }
    let read_as = (key.0.clone(), key.1.clone(), key.2.clone());
    (cx.trees.first_read)
        .entry(read_as)
        .or_insert_with(|| (path.to_owned(), key.clone()));
    let conflict = other_categories(&cx.trees, &key);
    let parsed = match cx.trees.parsed.get_mut(&key) {
        Some(Ok(p)) => &*p,
        Some(Err(Refused {
            said: Some(first), ..
        })) => {
            cx.faults.push(
                &ppath,
                format!("`{rel}` is refused: its faults are listed under {first}"),
            );
            return None;
        }
        Some(Err(refused)) => {
            for (at, message) in &refused.faults {
                let fpath = at
                    .as_deref()
                    .map_or_else(|| ppath.clone(), |a| join(path, a));
                cx.faults.push(&fpath, message.clone());
            }
            refused.said = Some(path.to_owned());
            return None;
        }
        None => return None,
    };
    if let Some(first) = conflict {
        cx.faults.push(
            &join(path, "categories"),
            format!(
                "`{rel}` is read by {first}: a file's category codes mean one thing, so every \
                 offer reading it gives the same lists (or none)"
            ),
        );
        return None;
    }
    cx.features_used.extend(parsed.features.iter().cloned());
    let n = parsed.ensemble.n_classes();
    match (parsed.slot, class) {
        (None, None) => Some(Scorer::Trees(Box::new((*parsed.ensemble).clone()))),
        (None, Some(_)) => {
            cx.faults.push(
                &cpath,
                format!("`{rel}` is a binary model: `class` applies to a multiclass model"),
            );
            None
        }
        (Some(_), None) => {
            cx.faults.push(
                &cpath,
                format!(
                    "missing field: `{rel}` is a multiclass model ({n} classes); name the \
                     offer's class (0 to {})",
                    n - 1
                ),
            );
            None
        }
        (Some(slot), Some(k)) => {
            if usize::from(k) >= n {
                cx.faults.push(
                    &cpath,
                    format!(
                        "class {k} is outside `{rel}`'s {n} classes (0 to {})",
                        n - 1
                    ),
                );
                return None;
            }
            let offer = path.strip_suffix(".scorer").unwrap_or(path).to_owned();
            if let Some(first) = cx.trees.claims.get(&(slot, k)) {
                cx.faults.push(
                    &cpath,
                    format!("class {k} of `{rel}` is already {first}'s propensity"),
                );
                return None;
            }
            cx.trees.claims.insert((slot, k), offer);
            let ensemble = cx.trees.multiclass.get(usize::from(slot))?.clone();
            Some(Scorer::Class(ClassScorer {
                ensemble,
                class: k,
                slot,
            }))
        }
    }
}

/// Where the file of `key` was first read with `categories` that bind its features to other
/// codes than `key`'s do, and which features.
fn other_categories(trees: &TreeFiles, key: &Key) -> Option<String> {
    let read_as = (key.0.clone(), key.1.clone(), key.2.clone());
    let (first, first_key) = trees.first_read.get(&read_as)?;
    if first_key == key {
        return None;
    }
    let (Some(Ok(a)), Some(Ok(b))) = (trees.parsed.get(first_key), trees.parsed.get(key)) else {
        return None;
    };
    // Lists both give that differ, and (bound to a snapshot) features one list binds otherwise
    // than the file's own categories do.
    fn given<'k>(k: &'k Key, name: &str) -> Option<&'k Vec<String>> {
        k.3.iter().find(|(n, _)| n == name).map(|(_, l)| l)
    }
    let mut named: std::collections::BTreeSet<String> = key
        .3
        .iter()
        .filter(|(name, list)| given(first_key, name).is_some_and(|l| l != list))
        .map(|(name, _)| name.clone())
        .collect();
    for i in b.ensemble.categories_differ(&a.ensemble) {
        named.insert(b.features.get(i).cloned().unwrap_or_default());
    }
    if named.is_empty() {
        return None;
    }
    let named: Vec<String> = named.iter().map(|n| format!("`{n}`")).collect();
    Some(format!(
        "{first} with other `categories` for {}",
        named.join(", ")
    ))
}

/// Why `bytes` cannot be a tree file of either library, for what an analyst saves by
/// mistake: nothing yet (a save or copy under way), or a Python pickle of the model object.
fn not_a_model_file(bytes: &[u8], kind: &str) -> Option<String> {
    let save = if kind == "xgboost" {
        "booster.save_model(\"m.json\") (model.get_booster() of the scikit-learn API)"
    } else {
        "booster.save_model(\"m.txt\") (model.booster_ of the scikit-learn API)"
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Some(format!(
            "the file is empty (a save or copy still under way?): save the model with {save}"
        ));
    }
    // Pickle protocols 2 to 5 open with 0x80 and the protocol's number.
    if let [0x80, 2..=5, ..] = bytes {
        return Some(format!(
            "the file is a Python pickle (pickle.dump, joblib.dump), which holds Python objects, \
             not a model nextbest reads: save the model with {save}"
        ));
    }
    None
}

/// Parses a file against the snapshot's columns.
fn parse(
    cx: &Ctx<'_>,
    kind: &str,
    rel: &str,
    spec: &xgboost::Spec<'_>,
) -> Result<(TreeEnsemble, Vec<String>, Vec<xgboost::Note>), Vec<Placed>> {
    let bytes = cx.files.scorer(rel).map_err(|m| vec![(None, m)])?;
    if let Some(why) = not_a_model_file(bytes, kind) {
        return Err(vec![(None, format!("`{rel}` ({kind}): {why}"))]);
    }
    let schema = cx.schema;
    let resolve = |name: &str| {
        let index = schema.column(name)?;
        Some(Column {
            index,
            info: schema.info(index),
            turned: schema.turned(index),
        })
    };
    let parsed = if kind == "xgboost" {
        xgboost::parse_xgboost_noted(bytes, spec, &resolve)
            .map(|p| (p.ensemble, p.features, p.notes))
    } else {
        let text = std::str::from_utf8(bytes)
            .map_err(|e| vec![(None, format!("`{rel}` is not UTF-8 text: {e}"))])?;
        lightgbm::parse_lightgbm_named(text, spec.categories, spec.feature_names, &resolve).map(
            |(e, f)| {
                let notes = lightgbm::version_note(text).map(xgboost::Note::file);
                (e, f, notes.into_iter().collect())
            },
        )
    };
    parsed.map_err(|e| {
        e.each()
            .into_iter()
            .map(|(at, e)| match (at, e) {
                (Some(at), TreeLoadError::Format { message, .. }) => {
                    (Some(at.to_owned()), format!("`{rel}` ({kind}): {message}"))
                }
                (_, TreeLoadError::UnknownFeatures(names)) => {
                    // Why each is missing, or the column it likely is (the file's names
                    // are fixed at training: the snapshot's column is what to rename).
                    let why: String = names
                        .iter()
                        .filter_map(|n| match (schema.left_out(n), schema.near(n)) {
                            (Some(kind), _) => Some(format!("; `{n}`: {}", left_out_reason(kind))),
                            (None, Some(near)) => Some(format!(
                                "; `{n}`: the snapshot has `{near}` (export the column under \
                                 the name the model was trained with)"
                            )),
                            (None, None) => None,
                        })
                        .collect();
                    (None, format!("`{rel}` ({kind}): {e}{why}"))
                }
                (_, e) => (None, format!("`{rel}` ({kind}): {e}")),
            })
            .collect()
    })
}

/// The spec's `categories`: per feature, its categories' names (or numbers, as text) in the
/// model's code order.
fn read_given(f: &mut crate::model::walk::Faults, v: &Value<'_>, path: &str) -> Option<Given> {
    let obj = f.map(v, path)?;
    let mut out = Given::new();
    for (name, list) in obj.iter() {
        let lpath = join(path, name);
        let items = f.array(list, &lpath, crate::features::MAX_DISTINCT)?;
        let mut values = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            // Numbers name the categories of a numeric column (a pandas category of numbers).
            let number = item.as_str().is_none().then(|| item.cast_f64()).flatten();
            values.push(match number {
                Some(_) => f.number(item, &index(&lpath, i))?.to_string(),
                None => f
                    .string(item, &index(&lpath, i), MAX_NAME_BYTES)?
                    .to_owned(),
            });
        }
        out.insert(name.to_string(), values);
    }
    Some(out)
}
