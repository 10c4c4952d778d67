//! The shadow's off-policy estimate against the champion, as outcomes arrive.
//!
//! Each shadowed decision of the estimate's share (see `ESTIMATED_DECISIONS`) is kept as an
//! estimator sample (`decision_log::estimate::Sample`):
//! for every offer the champion showed, the probability with which it showed it and the
//! probability with which the shadow would have. The champion's decision is remade with
//! `explain`, on the served decision's seed, so these are the same probabilities
//! `nextbest replay --estimate` reads from the decision log. A conversion event naming a kept
//! decision and one of its offers marks that offer converted; the estimates (IPS, SNIPS, DR,
//! and DR less what the champion observed, paired) are those of `replay --estimate`, per
//! placement, over the last [`KEPT`] shadowed decisions.
//!
//! The newest decisions have had less time to convert; champion and shadow are estimated on
//! the same decisions, so the difference stays fair while both figures grow. A placement whose
//! champion never randomises cannot be estimated where the shadow would change what it shows:
//! its row says so instead of giving a number.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::decision_log::estimate::{estimate, Sample};

/// Shadowed decisions kept for the estimate: bounds memory (a few hundred bytes each) and the
/// work of one `/admin/stats` read.
pub const KEPT: usize = 20_000;

/// Kept decisions copied under one hold of the lock when saving (about a millisecond's worth).
const COPY_CHUNK: usize = 1_000;

/// One shadowed decision awaiting its outcomes.
#[derive(Clone, Serialize, Deserialize)]
struct Kept {
    decision_id: u128,
    channel: Box<str>,
    placement: Box<str>,
    sample: Sample,
    /// The id of each offer in `sample.shown`, in order.
    offers: Box<[Box<str>]>,
}

/// The kept decisions, oldest first, and their index by decision id.
#[derive(Default, Clone, Serialize, Deserialize)]
pub struct Outcomes {
    kept: VecDeque<Kept>,
    /// The sequence number of `kept[0]`.
    first: u64,
    /// Rebuilt from `kept` when read back ([`Outcomes::reindex`]).
    #[serde(skip)]
    index: HashMap<u128, u64>,
    /// Conversions that named a kept decision and one of its shown offers.
    joined: u64,
}

impl Outcomes {
    /// Keeps a shadowed decision; the oldest goes once [`KEPT`] are kept.
    pub fn keep(
        &mut self,
        decision_id: u128,
        channel: &str,
        placement: &str,
        sample: Sample,
        offers: Box<[Box<str>]>,
    ) {
        if self.kept.len() == KEPT {
            if let Some(old) = self.kept.pop_front() {
                if self.index.get(&old.decision_id) == Some(&self.first) {
                    self.index.remove(&old.decision_id);
                }
            }
            self.first += 1;
        }
        let seq = self.first + self.kept.len() as u64;
        self.index.insert(decision_id, seq);
        self.kept.push_back(Kept {
            decision_id,
            channel: channel.into(),
            placement: placement.into(),
            sample,
            offers,
        });
    }

    /// Decisions kept.
    pub fn kept(&self) -> usize {
        self.kept.len()
    }

    /// Conversions joined to a kept decision so far.
    pub fn joined(&self) -> u64 {
        self.joined
    }

    /// A copy for saving, taken [`COPY_CHUNK`] decisions at a time so the lock that joins
    /// conversions (on the thread that applies events) is never held for long; decisions
    /// kept or dropped meanwhile are simply in or out of the copy.
    pub fn copy(lock: &std::sync::Mutex<Outcomes>) -> Outcomes {
        let mut out = Outcomes::default();
        // The sequence number of the next decision to copy.
        let mut next = None;
        loop {
            let o = lock.lock().unwrap_or_else(|p| p.into_inner());
            let from = *next.get_or_insert(o.first);
            if out.kept.is_empty() {
                out.first = o.first;
            }
            // Decisions dropped since the last chunk are skipped; the copy's numbering is its
            // own (read back, it is indexed afresh).
            let start = from.saturating_sub(o.first) as usize;
            out.kept
                .extend(o.kept.iter().skip(start).take(COPY_CHUNK).cloned());
            out.joined = o.joined;
            let end = start + COPY_CHUNK;
            if end >= o.kept.len() {
                return out;
            }
            next = Some(o.first + end as u64);
        }
    }

    /// Rebuilds the index by decision id (after reading the kept decisions back).
    pub fn reindex(&mut self) {
        self.index = (self.first..)
            .zip(&self.kept)
            .map(|(seq, k)| (k.decision_id, seq))
            .collect();
    }

    /// A conversion on `offer` for `decision_id`: true when it names a kept decision and an
    /// offer it showed (counted once however often it is repeated).
    pub fn converted(&mut self, decision_id: u128, offer: &str) -> bool {
        let Some(seq) = self.index.get(&decision_id) else {
            return false;
        };
        let Some(k) = self.kept.get_mut((seq - self.first) as usize) else {
            return false;
        };
        let Some(i) = k.offers.iter().position(|o| &**o == offer) else {
            return false;
        };
        let shown = &mut k.sample.shown[i];
        if !shown.converted {
            shown.converted = true;
            self.joined += 1;
        }
        true
    }

    /// `off_policy` of the shadow's stats: per placement, the champion's observed figures and
    /// the shadow's estimates.
    pub fn json(&self, estimate_share: f64) -> Value {
        let mut by_place: BTreeMap<(&str, &str), Vec<&Sample>> = BTreeMap::new();
        for k in &self.kept {
            by_place
                .entry((&k.channel, &k.placement))
                .or_default()
                .push(&k.sample);
        }
        let placements: Vec<Value> = by_place
            .into_iter()
            .map(|((channel, placement), samples)| {
                let e = estimate(channel, placement, &samples);
                let mut row = serde_json::to_value(&e).unwrap_or(Value::Null);
                // Before any outcome, DR is the shadow's own propensities with nothing to
                // correct them: its interval would measure the model's spread, not the
                // customers', and call a gain out of no conversion at all.
                if e.estimable && !e.answered {
                    for figure in ["ips", "snips", "dr", "dr_difference"] {
                        row[figure] = Value::Null;
                    }
                    row["estimable"] = false.into();
                    row["why"] = "no conversion naming these decisions has arrived yet: until \
                                  one does, DR would be the shadow's own propensities with no \
                                  answer of the customers to correct them"
                        .into();
                } else if !e.estimable {
                    // No number: a dashboard reading the JSON must not promote on it.
                    for figure in ["ips", "snips", "dr", "dr_difference"] {
                        row[figure] = Value::Null;
                    }
                    row["why"] = if e.randomised == 0 {
                        "the shadow changes what the champion shows here, and the champion \
                         never randomises on this placement: declare \"exploration\" on it"
                            .into()
                    } else {
                        format!(
                            "{:.1} % of what the shadow would show here, the champion could not \
                             have shown: no outcome says what those offers earn; give the \
                             placement a larger \"exploration\" share",
                            100.0 * e.unsupported_share
                        )
                        .into()
                    };
                }
                row
            })
            .collect();
        json!({
            "estimate_share": estimate_share,
            "decisions_kept": self.kept.len(),
            "kept_at_most": KEPT,
            "conversions_joined": self.joined,
            "method": "per placement over the last shadowed decisions: what the champion observed \
                       (logging), and the shadow's conversions and value per 1,000 decisions by \
                       IPS, self-normalised IPS and doubly robust (DR) estimators, as `nextbest \
                       replay --estimate`; dr_difference is DR less the champion, decision by \
                       decision; 95 % normal intervals",
            "placements": placements,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision_log::estimate::Shown;

    fn sample(offer: u32, logging: f64, candidate: f64) -> Sample {
        Sample {
            shown: vec![Shown {
                offer,
                logging,
                candidate,
                converted: false,
                value: 10.0,
                direct: 0.0,
            }],
            candidate_size: 1.0,
            randomised: logging < 1.0,
            changed: (logging - candidate).abs() > 1e-9,
            ..Sample::default()
        }
    }

    #[test]
    fn conversions_join_kept_decisions_by_id_and_offer_once() {
        let mut o = Outcomes::default();
        o.keep(1, "web", "home", sample(0, 0.5, 1.0), ["a".into()].into());
        o.keep(2, "web", "home", sample(1, 0.5, 0.0), ["b".into()].into());
        assert!(o.converted(1, "a"));
        assert!(o.converted(1, "a"), "a repeat still names a kept decision");
        assert!(!o.converted(1, "b"), "b was not shown by decision 1");
        assert!(!o.converted(3, "a"), "decision 3 was never kept");
        assert!(o.converted(2, "b"));
        let v = o.json(1.0);
        assert_eq!(v["conversions_joined"], 2);
        let row = &v["placements"][0];
        assert_eq!(row["decisions"], 2);
        assert_eq!(row["estimable"], true);
        // The champion converted 2 of 2 decisions; the shadow shows `a` (weight 1 / 0.5) where
        // it converted and never `b`: IPS = (2 + 0) / 2 per decision.
        assert_eq!(row["logging"]["conversions_per_1000"], 1000.0);
        assert_eq!(row["ips"]["conversions_per_1000"], 1000.0);
        assert_eq!(row["dr_difference"]["conversions_per_1000"], 0.0);
    }

    #[test]
    fn kept_decisions_read_back_join_conversions_as_before() {
        let mut o = Outcomes::default();
        for id in 0..(KEPT as u128 + 3) {
            o.keep(id, "web", "home", sample(0, 0.5, 1.0), ["a".into()].into());
        }
        assert!(o.converted(7, "a"));
        let copied = Outcomes::copy(&std::sync::Mutex::new(o.clone()));
        let mut back: Outcomes =
            serde_json::from_slice(&serde_json::to_vec(&copied).unwrap()).unwrap();
        back.reindex();
        assert_eq!((back.kept(), back.joined(), back.first), (KEPT, 1, 3));
        assert!(!back.converted(2, "a"), "decision 2 had left the window");
        assert!(back.converted(7, "a"));
        assert!(back.converted(KEPT as u128 + 2, "a"));
        assert_eq!(back.joined(), 2, "the repeat on 7 counted once");
        assert_eq!(back.json(1.0), {
            o.converted(KEPT as u128 + 2, "a");
            o.json(1.0)
        });
    }

    #[test]
    fn the_oldest_decision_goes_once_the_window_is_full() {
        let mut o = Outcomes::default();
        for id in 0..(KEPT as u128 + 5) {
            o.keep(id, "web", "home", sample(0, 1.0, 1.0), ["a".into()].into());
        }
        assert_eq!(o.kept.len(), KEPT);
        assert_eq!(o.index.len(), KEPT);
        assert!(!o.converted(4, "a"), "decision 4 left the window");
        assert!(o.converted(5, "a"));
        assert!(o.converted(KEPT as u128 + 4, "a"));
    }

    #[test]
    fn a_placement_the_champion_never_randomises_is_not_estimated_where_the_shadow_differs() {
        let mut o = Outcomes::default();
        o.keep(1, "web", "home", sample(0, 1.0, 0.0), ["a".into()].into());
        let row = &o.json(1.0)["placements"][0];
        assert_eq!(row["estimable"], false);
        assert!(row["why"].as_str().unwrap().contains("exploration"));
        // No figure a dashboard could promote on; what the champion observed stays.
        for figure in ["ips", "snips", "dr", "dr_difference"] {
            assert_eq!(row[figure], Value::Null, "{figure}");
        }
        assert_eq!(row["logging"]["conversions_per_1000"], 0.0);
    }

    #[test]
    fn no_figure_before_a_conversion_joins_and_figures_once_one_does() {
        let mut o = Outcomes::default();
        // The shadow shows `a` where the champion showed it half the time, and believes in it
        // (its direct model says 0.3): with no outcome, DR would be that belief alone.
        for id in 0..200u128 {
            let mut s = sample(0, 0.5, 1.0);
            s.shown[0].direct = 0.3;
            s.direct_conversions = 0.3;
            o.keep(id, "web", "home", s, ["a".into()].into());
        }
        let row = &o.json(1.0)["placements"][0];
        assert_eq!(row["estimable"], false, "{row}");
        assert!(
            row["why"].as_str().unwrap().contains("no conversion"),
            "{row}"
        );
        for figure in ["ips", "snips", "dr", "dr_difference"] {
            assert_eq!(row[figure], Value::Null, "{figure}");
        }
        assert!(o.converted(3, "a"));
        let row = &o.json(1.0)["placements"][0];
        assert_eq!(row["estimable"], true, "{row}");
        assert!(row["dr"]["conversions_per_1000"].is_number(), "{row}");
        assert!(row.get("why").is_none(), "{row}");
    }
}
