//! Early stopping's `best_iteration` (`learner.attributes`): the rounds that the sklearn API's
//! `predict_proba`, and `predict(iteration_range=(0, best_iteration + 1))` as XGBoost's
//! documentation advises, score, against every tree that `Booster.predict` scores.
//!
//! Owns: how many trees to keep, from `iteration_indptr` (XGBoost's `LayerToTree`) or rounds
//! of classes x parallel trees, and the warning when trees are left out. Must not: build trees.

use super::schema::{GbTreeModel, Learner};
use crate::engine::trees::TreeLoadError;

/// How many trees to score: those of rounds 0 to early stopping's `best_iteration` (what
/// `XGBClassifier.predict_proba` and `predict(iteration_range=(0, best_iteration + 1))`
/// use), or all of them when the spec asks (what `Booster.predict` uses).
pub(super) fn kept_trees(
    learner: &Learner,
    model: &GbTreeModel,
    num_class: usize,
    all: bool,
    notes: &mut Vec<super::Note>,
) -> Result<usize, TreeLoadError> {
    let total = model.trees.len();
    let Some(best) = learner.attributes.best_iteration.as_deref() else {
        return Ok(total);
    };
    const LOC: &str = "learner.attributes.best_iteration";
    let best: usize = best
        .trim()
        .parse()
        .map_err(|_| TreeLoadError::format(LOC, format!("not a round: {best:?}")))?;
    // Trees per round: `iteration_indptr` (2.0 and later), else classes x parallel trees.
    let end_of = |round: usize| -> Option<usize> {
        if !model.iteration_indptr.is_empty() {
            return model
                .iteration_indptr
                .get(round)
                .map(|&t| t.max(0) as usize);
        }
        let parallel = model
            .gbtree_model_param
            .as_ref()
            .and_then(|p| p.num_parallel_tree.as_deref())
            .and_then(|n| n.trim().parse::<usize>().ok())
            .unwrap_or(1);
        Some(round * parallel.max(1) * num_class.max(1))
    };
    let rounds = if model.iteration_indptr.is_empty() {
        total / end_of(1).unwrap_or(1).max(1)
    } else {
        model.iteration_indptr.len() - 1
    };
    if best + 1 >= rounds {
        return Ok(total);
    }
    let kept = end_of(best + 1).filter(|&t| t <= total).ok_or_else(|| {
        TreeLoadError::format(
            "learner.gradient_booster.model.iteration_indptr",
            format!("no end for round {best} among {total} trees"),
        )
    })?;
    if !all {
        notes.push(super::Note::file(format!(
            "early stopping's best_iteration is {best} of {rounds} rounds: scoring the \
             {kept} trees of rounds 0 to {best}, as XGBClassifier.predict_proba does, not all \
             {total} trees (Booster.predict without iteration_range); \"trees\": \"all\" \
             scores every tree"
        )));
        return Ok(kept);
    }
    Ok(total)
}
