//! The shape of XGBoost's JSON model file as serde reads it: only the fields the reader
//! uses, each as the library writes it (numbers in strings where XGBoost quotes them).

use serde::Deserialize;

use super::tokens;

#[derive(Deserialize)]
pub(super) struct ModelFile {
    pub(super) learner: Learner,
    /// The XGBoost release that wrote the file.
    #[serde(default)]
    pub(super) version: Vec<i64>,
}

#[derive(Deserialize)]
pub(super) struct Learner {
    #[serde(default)]
    pub(super) attributes: Attributes,
    #[serde(default)]
    pub(super) feature_names: Vec<String>,
    #[serde(default)]
    pub(super) feature_types: Vec<String>,
    pub(super) gradient_booster: GradientBooster,
    pub(super) learner_model_param: LearnerModelParam,
    pub(super) objective: Objective,
}

/// `learner.attributes`: what training recorded (`best_iteration` by early stopping).
#[derive(Deserialize, Default)]
pub(super) struct Attributes {
    pub(super) best_iteration: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct LearnerModelParam {
    pub(super) base_score: String,
    pub(super) num_class: Option<String>,
    pub(super) num_target: Option<String>,
    pub(super) num_feature: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct Objective {
    pub(super) name: String,
}

#[derive(Deserialize)]
pub(super) struct GradientBooster {
    pub(super) name: String,
    /// Present for gbtree (and gblinear, whose shape differs: every field here is defaulted).
    pub(super) model: Option<GbTreeModel>,
}

#[derive(Deserialize)]
pub(super) struct GbTreeModel {
    #[serde(default)]
    pub(super) trees: Vec<Tree>,
    #[serde(default)]
    pub(super) tree_info: Vec<i64>,
    /// The first tree of each round, and the count after the last (2.0 and later).
    #[serde(default)]
    pub(super) iteration_indptr: Vec<i64>,
    pub(super) gbtree_model_param: Option<GbTreeParam>,
    /// The training categories (3.1 and later).
    pub(super) cats: Option<Cats>,
}

#[derive(Deserialize)]
pub(super) struct GbTreeParam {
    pub(super) num_parallel_tree: Option<String>,
    pub(super) num_trees: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct Cats {
    #[serde(default)]
    pub(super) enc: Vec<Enc>,
}

/// One feature's categories: strings as Arrow lays them out (`offsets` and bytes in
/// `values`), or numbers in `values`; empty for a numeric feature.
#[derive(Deserialize)]
pub(super) struct Enc {
    #[serde(default)]
    pub(super) offsets: Vec<i64>,
    #[serde(default, deserialize_with = "tokens::floats")]
    pub(super) values: Vec<f64>,
}

#[derive(Deserialize)]
pub(super) struct Tree {
    pub(super) tree_param: TreeParam,
    pub(super) left_children: Vec<i64>,
    pub(super) right_children: Vec<i64>,
    pub(super) split_indices: Vec<i64>,
    #[serde(deserialize_with = "tokens::floats")]
    pub(super) split_conditions: Vec<f64>,
    pub(super) default_left: Vec<Flag>,
    #[serde(default)]
    pub(super) split_type: Vec<i64>,
    #[serde(default)]
    pub(super) categories: Vec<i64>,
    #[serde(default)]
    pub(super) categories_nodes: Vec<i64>,
    #[serde(default)]
    pub(super) categories_segments: Vec<i64>,
    #[serde(default)]
    pub(super) categories_sizes: Vec<i64>,
}

#[derive(Deserialize)]
pub(super) struct TreeParam {
    pub(super) num_nodes: String,
    pub(super) num_deleted: Option<String>,
    pub(super) size_leaf_vector: Option<String>,
}

/// `default_left` entries: 0/1 in current XGBoost, booleans in some older writers.
#[derive(Deserialize, Clone, Copy)]
#[serde(untagged)]
pub(super) enum Flag {
    Int(i64),
    Bool(bool),
}

impl Flag {
    pub(super) fn is_true(self) -> bool {
        match self {
            Flag::Int(v) => v != 0,
            Flag::Bool(b) => b,
        }
    }
}
