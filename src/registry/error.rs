//! Why the registry refused a change, and how each refusal is reported (its faults, and the
//! load counter it counts in). The serving snapshot is unchanged whenever one is returned.

use std::path::PathBuf;

use super::Part;
use crate::features::FeatureError;
use crate::model::{Fault, ModelError};

/// Why a load or rollback was refused; the serving snapshot is unchanged in every case.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The model was refused.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The feature snapshot could not be read.
    #[error(transparent)]
    Features(#[from] FeatureError),
    /// A new snapshot lacks features the active model needs, or holds them in another kind;
    /// with the snapshot's own warnings (a column a word turned to text), which often say why.
    #[error("the feature snapshot lacks features the active model needs")]
    FeaturesIncompatible(#[source] ModelError, Vec<Fault>),
    /// Nothing to roll back to.
    #[error("no previous model version to roll back to")]
    NoPrevious,
    /// A model arrived before any feature snapshot.
    #[error("no feature snapshot is loaded: load features before a model")]
    NoFeatures,
    /// No path is configured for this kind of reload.
    #[error("no {0} path is configured")]
    NoPath(&'static str),
    /// An admin change could not be written to the models folder, so it was not made.
    #[error("could not write {path} (the admin change would not survive a restart): {source}")]
    Persist {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A newer feature reload was requested while this one waited; that one wins.
    #[error("a newer feature reload was requested; this one gave way to it")]
    Superseded,
    /// The models folder cannot be written (a mounted ConfigMap, a read-only volume), so an
    /// admin change could not be kept and was not made.
    #[error(
        "the models folder {} is read-only ({source}): models change where this folder comes \
         from, and every replica watching it loads the change (Kubernetes: edit \
         deploy/k8s/models/model.json and `kubectl apply -k deploy/k8s`, which updates the \
         nextbest-models ConfigMap; roll back the same way)",
        path.display()
    )]
    ReadOnly {
        /// The folder.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl RegistryError {
    /// The faults to report, with paths where known.
    pub fn faults(&self) -> Vec<Fault> {
        match self {
            RegistryError::Model(e) => e.faults(),
            RegistryError::FeaturesIncompatible(e, _) => e.faults(),
            RegistryError::Features(e) => e
                .located()
                .into_iter()
                .map(|(path, message)| Fault { path, message })
                .collect(),
            other => vec![Fault {
                path: String::new(),
                message: other.to_string(),
            }],
        }
    }
}

impl RegistryError {
    /// How many faults the refusal found: [`RegistryError::faults`] lists a snapshot's first
    /// hundred and counts the rest in one more entry.
    pub fn fault_count(&self) -> u64 {
        match self {
            RegistryError::Features(e) => e.total(),
            other => other.faults().len() as u64,
        }
    }
}

impl RegistryError {
    /// What the refused input held that was likely a mistake, though no fault by itself (a
    /// column of numbers a word turned to text): said beside the faults it explains.
    pub fn warnings(&self) -> &[Fault] {
        match self {
            RegistryError::FeaturesIncompatible(_, warnings) => warnings,
            _ => &[],
        }
    }

    /// True when the change was refused for where it would be kept (a read-only models folder
    /// or snapshot store), not for what it holds.
    pub fn read_only(&self) -> bool {
        match self {
            RegistryError::ReadOnly { .. } => true,
            RegistryError::Features(e) => e.store_read_only() == Some(true),
            _ => false,
        }
    }

    /// The load counter a refusal counts in: feature faults in the features', the rest in
    /// the models'.
    pub fn part(&self) -> Part {
        match self {
            RegistryError::Features(_)
            | RegistryError::FeaturesIncompatible(..)
            | RegistryError::NoPath("features") => Part::Features,
            _ => Part::Model,
        }
    }
}
