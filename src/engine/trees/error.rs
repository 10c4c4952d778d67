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
    /// Several faults of one file, each in its place (every feature that does not fit its
    /// column, so one load names them all).
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Several(Vec<TreeLoadError>),
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
         on a DataFrame with the snapshot's column names, or list them in the scorer's `features`)"
    } else {
        ""
    }
}

impl TreeLoadError {
    /// Each fault on its own (a [`TreeLoadError::Several`] opened), with the place within the
    /// scorer where a spec field is at fault (`categories.segment`).
    pub fn each(&self) -> Vec<(Option<&str>, &TreeLoadError)> {
        match self {
            TreeLoadError::Several(all) => all.iter().flat_map(TreeLoadError::each).collect(),
            TreeLoadError::Format { location, .. } if location.starts_with("categories.") => {
                vec![(Some(location.as_str()), self)]
            }
            other => vec![(None, other)],
        }
    }

    /// Shorthand for a [`TreeLoadError::Format`] fault. Both parts are cut to a few hundred
    /// characters: they may quote the file, whose one line can be megabytes long.
    pub fn format(location: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Format {
            location: cut(location.into()),
            message: cut(message.into()),
        }
    }

    /// Shorthand for a [`TreeLoadError::Unsupported`] refusal.
    pub fn unsupported(location: impl Into<String>, what: impl Into<String>) -> Self {
        Self::Unsupported {
            location: cut(location.into()),
            what: cut(what.into()),
        }
    }
}

/// The most characters of a fault's part kept: enough for every message the parsers write.
const MAX_PART_CHARS: usize = 600;

/// `s` with at most [`MAX_PART_CHARS`] characters, saying how much was left out.
fn cut(mut s: String) -> String {
    if let Some((at, _)) = s.char_indices().nth(MAX_PART_CHARS) {
        let left = s.len() - at;
        s.truncate(at);
        s.push_str(&format!("... ({left} more bytes)"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_quoting_a_huge_line_is_cut() {
        let line = "x".repeat(1 << 20);
        let e = TreeLoadError::format("Tree=0", format!("unexpected line {line:?}"));
        let text = e.to_string();
        assert!(text.len() < 700, "{} bytes", text.len());
        assert!(
            text.ends_with(&format!("... ({} more bytes)", (1 << 20) + 18 - 600)),
            "{text}"
        );
        let short = TreeLoadError::format("Tree=0", "num_leaves: not a count");
        assert_eq!(short.to_string(), "Tree=0: num_leaves: not a count");
    }
}
