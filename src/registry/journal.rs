//! The load journal: the last loads the registry accepted or refused, with the faults of each
//! refusal, for the operator's status page.
//!
//! The commit path notes each outcome here once it is decided; the journal keeps the newest
//! [`JOURNAL_LEN`] and forgets older ones (the process log has them all). It is read by the
//! admin listener only; nothing here is on the decision path.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::Serialize;

use super::{FeatureInfo, ModelRecord, Part, RegistryError};

/// Loads remembered.
pub const JOURNAL_LEN: usize = 20;

/// One load, accepted or refused.
#[derive(Debug, Clone, Serialize)]
pub struct LoadEntry {
    /// When it was decided (RFC 3339, seconds).
    pub at: String,
    /// Where it came from (a path, `admin`, ...).
    pub source: String,
    /// `model` or `features`.
    pub part: &'static str,
    /// True when it was published.
    pub accepted: bool,
    /// The model activated, as `name version`.
    pub model: Option<String>,
    /// Customers of a feature snapshot swapped in.
    pub customers: Option<usize>,
    /// Feature columns of a feature snapshot swapped in.
    pub features: Option<usize>,
    /// Why it was refused, each fault as `path: message`.
    pub faults: Vec<String>,
    /// What loaded but is likely a mistake, each as `path: message`; left out when none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// The newest loads, newest first.
#[derive(Default)]
pub struct LoadJournal(Mutex<VecDeque<LoadEntry>>);

fn now() -> String {
    humantime::format_rfc3339_seconds(crate::contact::Clock::system().now()).to_string()
}

impl LoadJournal {
    fn push(&self, e: LoadEntry) {
        let mut q = self.0.lock().unwrap_or_else(|p| p.into_inner());
        q.push_front(e);
        q.truncate(JOURNAL_LEN);
    }

    /// Notes a refused load.
    pub(super) fn refused(&self, source: &str, e: &RegistryError) {
        self.push(LoadEntry {
            at: now(),
            source: source.to_owned(),
            part: part_name(e.part()),
            accepted: false,
            model: None,
            customers: None,
            features: None,
            faults: e.faults().iter().map(shown).collect(),
            warnings: Vec::new(),
        });
    }

    /// Notes what a published change loaded: a model, a feature snapshot, or both.
    pub(super) fn accepted(
        &self,
        source: &str,
        model: Option<&ModelRecord>,
        features: Option<&FeatureInfo>,
    ) {
        if model.is_none() && features.is_none() {
            return;
        }
        self.push(LoadEntry {
            at: now(),
            source: source.to_owned(),
            part: part_name(if model.is_some() {
                Part::Model
            } else {
                Part::Features
            }),
            accepted: true,
            model: model.map(|r| format!("{} {}", r.name, r.version)),
            customers: features.map(|f| f.customers),
            features: features.map(|f| f.features),
            faults: Vec::new(),
            warnings: model
                .map(|r| &r.warnings)
                .or(features.map(|f| &f.warnings))
                .into_iter()
                .flatten()
                .map(shown)
                .collect(),
        });
    }

    /// The newest loads, newest first.
    pub fn entries(&self) -> Vec<LoadEntry> {
        let q = self.0.lock().unwrap_or_else(|p| p.into_inner());
        q.iter().cloned().collect()
    }
}

/// A fault or warning as one line: `path: message`.
fn shown(f: &crate::model::Fault) -> String {
    match f.path.as_str() {
        "" => f.message.clone(),
        p => format!("{p}: {}", f.message),
    }
}

fn part_name(p: Part) -> &'static str {
    match p {
        Part::Model => "model",
        Part::Features => "features",
    }
}
