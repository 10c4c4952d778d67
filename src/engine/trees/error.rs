//! Why a tree model could not be loaded, with the place of each fault.

/// Why a tree model could not be loaded; every variant names where, so a bad model is fixable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TreeLoadError {
    /// The file is malformed or structurally inconsistent at `location`.
    #[error("{location}: {message}")]
    Format {
        /// Where, e.g. `trees[3].split_conditions` or `Tree=4: left_child`.
        location: String,
        /// What is wrong there.
        message: String,
    },
    /// The file is well formed but uses something this scorer deliberately does not implement.
    #[error("{location}: not supported: {what}")]
    Unsupported {
        /// Where, e.g. `learner.objective.name` or `Tree=4: decision_type`.
        location: String,
        /// The feature refused, e.g. `categorical splits`.
        what: String,
    },
    /// Model features the snapshot does not have, all of them, by name.
    #[error("model features not found in the feature snapshot: {}{}", .0.join(", "), unnamed_hint(.0))]
    UnknownFeatures(Vec<String>),
}

/// What to do about names a library made up (`Column_0`, `f0`): the model was trained on an
/// array, so it knows no column names.
fn unnamed_hint(names: &[String]) -> &'static str {
    let made_up = |n: &String| {
        let digits = n
            .strip_prefix("Column_")
            .or_else(|| n.strip_prefix('f'))
            .unwrap_or("");
        !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
    };
    if !names.is_empty() && names.iter().all(made_up) {
        " (names the library made up: the model was trained without column names; train it \
         on a DataFrame with the snapshot's column names, or give an xgboost scorer `features`)"
    } else {
        ""
    }
}

impl TreeLoadError {
    /// Shorthand for a [`TreeLoadError::Format`] fault.
    pub fn format(location: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Format {
            location: location.into(),
            message: message.into(),
        }
    }

    /// Shorthand for a [`TreeLoadError::Unsupported`] refusal.
    pub fn unsupported(location: impl Into<String>, what: impl Into<String>) -> Self {
        Self::Unsupported {
            location: location.into(),
            what: what.into(),
        }
    }
}
