//! Model health of adaptive offers: whether what an offer learnt ranks and predicts the
//! customers who respond, read from its recent impressions.
//!
//! Each impression is remembered with the propensity the offer's learner predicted for that
//! customer when the impression was applied (a contextual offer: its posterior mean for the
//! customer's context; a context-free offer predicts the same for everybody and is not ranked),
//! in a ring of the offer's last [`RECENT`] impressions. An outcome credited to an impression
//! still in the ring marks it. From the ring: the AUC (how well the predictions rank
//! responders above the rest, 0.5 being chance) and calibration (mean prediction against the
//! observed rate, overall and by fifths of the predictions). Impressions and outcomes are also
//! counted per minute for the last [`MINUTES`] minutes, with the mean prediction, for the
//! status page's charts.
//!
//! Impressions too recent for their outcome to have arrived count as non-responders, so the
//! observed rate trails the true one by the share of outcomes still to come; the AUC is hurt
//! only as far as those late responders are ranked high. This module lives under the adaptive
//! counts' lock on the thread that applies events; it must not decide or read a clock.

use std::collections::{HashMap, VecDeque};

use foldhash::fast::FixedState;
use serde::Serialize;

/// Impressions remembered per offer for its AUC and calibration.
pub const RECENT: usize = 2_000;
/// Minutes of per-minute counts kept per offer.
pub const MINUTES: usize = 60;
/// Fewest responders and non-responders among the recent impressions for an AUC.
pub const MIN_EACH_FOR_AUC: usize = 10;
/// Calibration groups: fifths of the recent impressions by prediction.
const GROUPS: usize = 5;
const MINUTE_MS: i64 = 60_000;

/// One remembered impression: its prediction and the outcomes credited to it, by bit (1
/// click, 2 conversion, as the adaptive counts number them).
#[derive(Debug, Clone, Copy)]
struct Scored {
    predicted: f32,
    outcomes: u8,
}

/// One minute of an offer's traffic.
#[derive(Debug, Clone, Copy, Default)]
struct Minute {
    start_ms: i64,
    impressions: u32,
    outcomes: [u32; 2],
    predicted_sum: f64,
    predicted_n: u32,
}

#[derive(Debug, Default)]
struct Offer {
    ring: Vec<Scored>,
    /// Impressions ever remembered: the next one's ticket.
    written: u64,
    minutes: VecDeque<Minute>,
}

/// Health of every adaptive offer, by the offer id's hash.
#[derive(Debug, Default)]
pub struct Health {
    offers: HashMap<u64, Offer, FixedState>,
}

/// Where an impression is remembered, kept with it until its outcome.
pub type Ticket = u64;

impl Health {
    /// Remembers an impression at `ts_ms` with its prediction (NaN: the offer predicts the
    /// same for everybody); returns its ticket.
    pub fn impression(&mut self, offer: u64, predicted: f64, ts_ms: i64) -> Ticket {
        let o = self.offers.entry(offer).or_default();
        let ticket = o.written;
        let s = Scored {
            predicted: predicted as f32,
            outcomes: 0,
        };
        if o.ring.len() < RECENT {
            o.ring.push(s);
        } else {
            o.ring[(ticket % RECENT as u64) as usize] = s;
        }
        o.written += 1;
        let m = minute(&mut o.minutes, ts_ms);
        m.impressions += 1;
        if predicted.is_finite() {
            m.predicted_sum += predicted;
            m.predicted_n += 1;
        }
        ticket
    }

    /// Marks an outcome (`bit` 1 click, 2 conversion) at `ts_ms` on the impression with this
    /// ticket, if it is still remembered.
    pub fn outcome(&mut self, offer: u64, ticket: Ticket, bit: u8, ts_ms: i64) {
        let Some(o) = self.offers.get_mut(&offer) else {
            return;
        };
        if ticket < o.written && o.written - ticket <= RECENT as u64 {
            if let Some(s) = o.ring.get_mut((ticket % RECENT as u64) as usize) {
                s.outcomes |= bit;
            }
        }
        let m = minute(&mut o.minutes, ts_ms);
        m.outcomes[usize::from(bit >= 2)] += 1;
    }

    /// What an offer's recent impressions say of its predictions of outcome `bit`.
    pub fn report(&self, offer: u64, bit: u8) -> Report {
        let Some(o) = self.offers.get(&offer) else {
            return Report::default();
        };
        let mut scored: Vec<(f32, bool)> = o
            .ring
            .iter()
            .map(|s| (s.predicted, s.outcomes & bit != 0))
            .collect();
        let responders = scored.iter().filter(|s| s.1).count();
        let ranked = scored.iter().all(|s| s.0.is_finite());
        let mut r = Report {
            impressions: scored.len(),
            responders,
            observed_rate: rate(responders, scored.len()),
            ..Report::default()
        };
        if ranked && !scored.is_empty() {
            scored.sort_by(|a, b| a.0.total_cmp(&b.0));
            let mean = scored.iter().map(|s| f64::from(s.0)).sum::<f64>() / scored.len() as f64;
            r.predicted_mean = Some(mean);
            r.auc = auc(&scored);
            r.calibration = calibration(&scored);
        }
        r.minutes = o
            .minutes
            .iter()
            .map(|m| MinuteReport {
                start_ms: m.start_ms,
                impressions: m.impressions,
                outcomes: m.outcomes[usize::from(bit >= 2)],
                predicted_mean: (m.predicted_n > 0)
                    .then(|| m.predicted_sum / f64::from(m.predicted_n)),
            })
            .collect();
        r
    }
}

/// The bucket of the minute holding `ts_ms`, made if new; the oldest beyond [`MINUTES`]
/// dropped. Events a minute older than the newest bucket count in the oldest one kept.
fn minute(minutes: &mut VecDeque<Minute>, ts_ms: i64) -> &mut Minute {
    let start = ts_ms.div_euclid(MINUTE_MS) * MINUTE_MS;
    let newest = minutes.back().map_or(i64::MIN, |m| m.start_ms);
    if start > newest {
        minutes.push_back(Minute {
            start_ms: start,
            ..Minute::default()
        });
        while minutes.len() > MINUTES {
            minutes.pop_front();
        }
    }
    let at = minutes
        .iter()
        .rposition(|m| m.start_ms <= start)
        .unwrap_or(0);
    &mut minutes[at]
}

fn rate(k: usize, n: usize) -> Option<f64> {
    (n > 0).then(|| k as f64 / n as f64)
}

/// The AUC of predictions sorted ascending: the Mann-Whitney statistic, ties counting half;
/// `None` with fewer than [`MIN_EACH_FOR_AUC`] of either class.
fn auc(sorted: &[(f32, bool)]) -> Option<f64> {
    let pos = sorted.iter().filter(|s| s.1).count();
    let neg = sorted.len() - pos;
    if pos < MIN_EACH_FOR_AUC || neg < MIN_EACH_FOR_AUC {
        return None;
    }
    // Sum of the responders' ranks (1-based, ties given their mean rank).
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j < sorted.len() && sorted[j].0 == sorted[i].0 {
            j += 1;
        }
        let mean_rank = (i + 1 + j) as f64 / 2.0;
        rank_sum += mean_rank * sorted[i..j].iter().filter(|s| s.1).count() as f64;
        i = j;
    }
    let (p, n) = (pos as f64, neg as f64);
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * n))
}

/// Mean prediction against observed rate in fifths of the impressions by prediction.
fn calibration(sorted: &[(f32, bool)]) -> Vec<Group> {
    if sorted.len() < GROUPS {
        return Vec::new();
    }
    (0..GROUPS)
        .map(|g| {
            let part = &sorted[g * sorted.len() / GROUPS..(g + 1) * sorted.len() / GROUPS];
            let k = part.iter().filter(|s| s.1).count();
            Group {
                impressions: part.len(),
                predicted: part.iter().map(|s| f64::from(s.0)).sum::<f64>() / part.len() as f64,
                observed: k as f64 / part.len() as f64,
            }
        })
        .collect()
}

/// One calibration group.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Group {
    /// Impressions in it.
    pub impressions: usize,
    /// Their mean prediction.
    pub predicted: f64,
    /// Their observed rate.
    pub observed: f64,
}

/// One minute of an offer's traffic as the status page charts it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MinuteReport {
    /// Start of the minute, ms since the epoch.
    pub start_ms: i64,
    /// Impressions.
    pub impressions: u32,
    /// Outcomes of the offer's kind.
    pub outcomes: u32,
    /// Mean prediction of the minute's impressions (`None`: not predicted per customer).
    pub predicted_mean: Option<f64>,
}

/// What an offer's recent impressions say of its predictions.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    /// Recent impressions read (at most [`RECENT`]).
    pub impressions: usize,
    /// Of them, those with the outcome.
    pub responders: usize,
    /// Responders per impression.
    pub observed_rate: Option<f64>,
    /// Mean prediction (`None` when the offer predicts the same for everybody).
    pub predicted_mean: Option<f64>,
    /// Area under the ROC curve of the predictions.
    pub auc: Option<f64>,
    /// Fifths by prediction.
    pub calibration: Vec<Group>,
    /// Per minute, oldest first.
    pub minutes: Vec<MinuteReport>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_is_the_share_of_pairs_ranked_right() {
        // 0.1 (no), 0.2 (yes), 0.3 (no), 0.4 (yes): pairs (yes, no) ranked right: 0.2>0.1,
        // 0.4>0.1, 0.4>0.3 = 3 of 4.
        let mut s: Vec<(f32, bool)> = Vec::new();
        for _ in 0..MIN_EACH_FOR_AUC {
            s.extend([(0.1, false), (0.2, true), (0.3, false), (0.4, true)]);
        }
        s.sort_by(|a, b| a.0.total_cmp(&b.0));
        let a = auc(&s).unwrap();
        assert!((a - 0.75).abs() < 1e-12, "{a}");
        // All tied: chance.
        let tied: Vec<(f32, bool)> = (0..40).map(|i| (0.5, i % 2 == 0)).collect();
        assert_eq!(auc(&tied), Some(0.5));
        // Too few responders.
        let few: Vec<(f32, bool)> = (0..100).map(|i| (i as f32, i == 99)).collect();
        assert_eq!(auc(&few), None);
    }

    #[test]
    fn outcomes_mark_their_impression_while_it_is_remembered() {
        let mut h = Health::default();
        let first = h.impression(7, 0.9, 0);
        for i in 1..RECENT as i64 {
            let t = h.impression(7, if i % 2 == 0 { 0.9 } else { 0.1 }, i);
            if i % 2 == 0 && i % 4 == 0 {
                h.outcome(7, t, 2, i);
            }
        }
        h.outcome(7, first, 2, 10);
        let r = h.report(7, 2);
        assert_eq!(r.impressions, RECENT);
        assert_eq!(r.responders, 1 + (RECENT - 1) / 4);
        // Responders all predicted 0.9, and half of the 0.9s respond: AUC = 1 - ties' half.
        assert!(r.auc.unwrap() > 0.7, "{:?}", r.auc);
        // Clicks were never marked.
        assert_eq!(h.report(7, 1).responders, 0);
        // One more impression pushes the first out: an outcome for it marks nothing.
        let _ = h.impression(7, 0.1, 5_000);
        let before = h.report(7, 2).responders;
        h.outcome(7, first, 2, 5_001);
        assert_eq!(h.report(7, 2).responders, before);
        // Calibration: the top fifth predicted 0.9 and saw about half respond.
        let top = *r.calibration.last().unwrap();
        assert!((top.predicted - 0.9).abs() < 1e-6);
        assert!((top.observed - 0.5).abs() < 0.01, "{top:?}");
    }

    #[test]
    fn a_context_free_offer_is_counted_not_ranked_and_minutes_roll() {
        let mut h = Health::default();
        for i in 0..(MINUTES as i64 + 5) {
            let t = h.impression(3, f64::NAN, i * MINUTE_MS + 1);
            if i % 3 == 0 {
                h.outcome(3, t, 2, i * MINUTE_MS + 2);
            }
        }
        let r = h.report(3, 2);
        assert_eq!((r.auc, r.predicted_mean), (None, None));
        assert!(r.calibration.is_empty());
        assert_eq!(r.minutes.len(), MINUTES);
        assert_eq!(r.minutes[0].start_ms, 5 * MINUTE_MS);
        assert!(r.minutes.iter().all(|m| m.impressions == 1));
        assert_eq!(r.minutes.iter().map(|m| m.outcomes).sum::<u32>(), 20);
        // An outcome a few minutes late counts in its own minute.
        h.outcome(3, 0, 2, (MINUTES as i64 + 2) * MINUTE_MS);
        let r = h.report(3, 2);
        let m = r
            .minutes
            .iter()
            .find(|m| m.start_ms == (MINUTES as i64 + 2) * MINUTE_MS);
        assert_eq!(
            m.unwrap().outcomes,
            1 + u32::from((MINUTES + 2).is_multiple_of(3))
        );
        assert_eq!(h.report(99, 2), Report::default());
    }
}
