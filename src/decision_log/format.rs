//! The decision log's records, one JSON object a line, as the writer writes them and replay
//! reads them back. Numbers that must come back bit for bit (feature values, propensities and
//! scores) travel as their IEEE-754 bit patterns beside the readable values.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::engine::{CompiledModel, Ranked};
use crate::features::FeatureStore;
use crate::model::LoadedModel;

/// One line of the decision log.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record<'a> {
    /// A model the decisions after it (in the same file) may name by content key.
    Model {
        /// Content key (CRC-32 of the document).
        key: u32,
        /// Name, for people.
        name: Cow<'a, str>,
        /// Version, for people.
        version: Cow<'a, str>,
        /// The folder its scorer files resolve against.
        base_dir: Option<PathBuf>,
        /// The model document as it was loaded.
        document: Cow<'a, str>,
        /// Its checksum (document and scorer files): replay refuses scorer files changed since
        /// (absent in logs of older builds).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        checksum: Option<Cow<'a, str>>,
    },
    /// The feature columns of a snapshot, named by [`columns_id`].
    Columns {
        /// The id decisions name it by.
        id: u32,
        /// Column names, in the snapshot's order.
        columns: Vec<String>,
        /// Each string column's dictionary by column name, values in code order: what the
        /// logged codes of that column stand for (absent when every column is numeric).
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        strings: BTreeMap<String, Vec<String>>,
    },
    /// One decision.
    Decision(Box<DecisionRecord>),
    /// What became of the decisions offered to the log so far by one process (cumulative: the
    /// last line of a run holds its totals).
    Drops {
        /// The process's run id.
        run: String,
        /// The sampling share it logged with.
        sample: f64,
        /// The counts by reason.
        #[serde(flatten)]
        skips: super::Skips,
    },
}

impl<'a> Record<'a> {
    /// The model record of a loaded model.
    pub fn model(key: u32, m: &'a LoadedModel) -> Self {
        Record::Model {
            key,
            name: Cow::Borrowed(&m.compiled.name),
            version: Cow::Borrowed(&m.compiled.version),
            base_dir: m.base_dir.clone(),
            document: String::from_utf8_lossy(&m.document),
            checksum: Some(Cow::Borrowed(&m.checksum)),
        }
    }
}

/// The id of a column list: a CRC-32 of the names and of every string column's dictionary
/// (codes mean nothing without it), so files name the same list the same way.
pub fn columns_id(store: &FeatureStore) -> u32 {
    let mut h = crc32fast::Hasher::new();
    for (c, name) in store.columns().iter().enumerate() {
        h.update(name.as_bytes());
        h.update(b"\0");
        if let Some(d) = store.dictionary(c) {
            h.update(b"\x01");
            for v in d.iter() {
                h.update(v.as_bytes());
                h.update(b"\0");
            }
        }
    }
    h.finalize()
}

/// The dictionaries a [`Record::Columns`] carries for a snapshot.
pub fn strings_of(store: &FeatureStore) -> BTreeMap<String, Vec<String>> {
    store
        .columns()
        .iter()
        .enumerate()
        .filter_map(|(c, name)| {
            let d = store.dictionary(c)?;
            Some((name.to_string(), d.iter().map(str::to_owned).collect()))
        })
        .collect()
}

/// A decision and everything needed to make it again.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DecisionRecord {
    /// The decision id it answered with.
    pub decision_id: String,
    /// The decision's `now` (Unix milliseconds).
    pub at_ms: i64,
    /// Content key of the model that decided.
    pub key: u32,
    /// `champion` or `challenger`.
    pub variant: String,
    /// The id of the snapshot's column list.
    pub columns: u32,
    /// The request.
    pub request: LoggedRequest,
    /// The customer's feature values (f32 bit patterns, in column order); `None` for a
    /// customer the snapshot did not know.
    pub features: Option<Vec<u32>>,
    /// Offers the contact policies held back for this customer at that moment.
    pub held: Vec<String>,
    /// What each adaptive offer of the model had learnt at that moment: offer id, trials,
    /// successes (with the decision id's seed, they give the same Thompson draws again).
    #[serde(default)]
    pub adaptive: Vec<(String, u64, u64)>,
    /// For each contextual adaptive offer of the model: offer id, and the mean and variance of
    /// the log-odds it drew from for this customer (f64 bit patterns; with the decision id's
    /// seed, they give the same draw again).
    #[serde(default)]
    pub contextual: Vec<(String, [u64; 2])>,
    /// What it answered.
    pub answer: LoggedAnswer,
    /// True when the placement's exploration chose the answer at random.
    #[serde(default)]
    pub explored: bool,
    /// The probability with which the decision showed each offer of its answer, in answer
    /// order (see `engine::shown`; empty for a fallback, and in logs written before it).
    #[serde(default)]
    pub shown: Vec<f64>,
}

/// A decide request, owned.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LoggedRequest {
    /// The customer (empty for an anonymous visitor).
    pub customer_id: String,
    /// The visitor the request named (or none), so a visitor's decisions join their events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visitor_id: Option<String>,
    /// The channel.
    pub channel: String,
    /// The placement.
    pub placement: String,
    /// The limit the request asked for.
    pub limit: Option<usize>,
    /// Context values: strings and numbers.
    pub context: Vec<(String, serde_json::Value)>,
}

impl LoggedRequest {
    /// The context values as the engine reads them (strings and numbers; nothing else is
    /// logged).
    pub fn context(&self) -> Vec<(Cow<'_, str>, crate::engine::CtxValue<'_>)> {
        use crate::engine::CtxValue;
        self.context
            .iter()
            .filter_map(|(k, v)| {
                let v = match v {
                    serde_json::Value::String(s) => CtxValue::Str(Cow::Borrowed(s)),
                    serde_json::Value::Number(n) => CtxValue::Num(n.as_f64()?),
                    _ => return None,
                };
                Some((Cow::Borrowed(k.as_str()), v))
            })
            .collect()
    }
}

/// A decision's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoggedAnswer {
    /// The fallback reason, or `None` for a personalised answer.
    pub fallback: Option<String>,
    /// The ranked offers.
    pub offers: Vec<LoggedOffer>,
}

/// One ranked offer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoggedOffer {
    /// Offer id.
    pub offer_id: String,
    /// Propensity (readable).
    pub propensity: f64,
    /// Arbitration score (readable).
    pub score: f64,
    /// Propensity and score as bit patterns: what reproduction compares.
    pub bits: [u64; 2],
}

impl LoggedOffer {
    /// A ranked offer of a model.
    pub fn of(model: &CompiledModel, r: &Ranked) -> Self {
        LoggedOffer {
            offer_id: model
                .offers
                .get(r.offer as usize)
                .map_or_else(String::new, |o| o.id.to_string()),
            propensity: r.propensity,
            score: r.score,
            bits: [r.propensity.to_bits(), r.score.to_bits()],
        }
    }

    /// The same offer with the same numbers, bit for bit.
    pub fn same(&self, other: &LoggedOffer) -> bool {
        self.offer_id == other.offer_id && self.bits == other.bits
    }
}

impl LoggedAnswer {
    /// The same answer, bit for bit.
    pub fn same(&self, other: &LoggedAnswer) -> bool {
        self.fallback == other.fallback
            && self.offers.len() == other.offers.len()
            && self
                .offers
                .iter()
                .zip(&other.offers)
                .all(|(a, b)| a.same(b))
    }

    /// The same offers in the same order (what a customer would see).
    pub fn same_offers(&self, other: &LoggedAnswer) -> bool {
        self.fallback == other.fallback
            && self
                .offers
                .iter()
                .map(|o| &o.offer_id)
                .eq(other.offers.iter().map(|o| &o.offer_id))
    }
}
