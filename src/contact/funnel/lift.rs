//! Challenger lift: per offer and channel, the challenger's conversion rate and value per
//! decision against the champion's, each with a 95 % interval, and their differences.
//!
//! The intervals: a proportion gets the Wilson score interval (right near 0 and 1 and with
//! few impressions, where the normal approximation gives negative rates or zero width); a
//! difference of two gets Newcombe's hybrid score interval (method 10 of Newcombe 1998), that
//! is MOVER (Zou & Donner 2008) over the two Wilson intervals, which also serves a difference
//! of values per decision when the two models give an offer different values. Value per
//! decision is the offer's value times conversions per decision (so its interval is the
//! Wilson interval of conversions per decision, scaled). The funnel counts by channel (events
//! name a placement only optionally), so lift is per offer × channel. Pure arithmetic on
//! counters already kept; nothing here runs on the decision path.

use std::sync::atomic::Ordering::Relaxed;

use serde::Serialize;
use serde_json::{json, Value};

use super::{Funnel, FunnelTable, Stage};
use crate::experiment::Variant;

/// The standard normal quantile for a two-sided 95 % interval.
pub const Z95: f64 = 1.959_963_984_540_054;

/// An estimate and its 95 % interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Estimate {
    /// The point estimate.
    pub value: f64,
    /// Lower bound.
    pub low: f64,
    /// Upper bound.
    pub high: f64,
}

impl Estimate {
    /// The estimate times a (non-negative) factor, e.g. an offer's value.
    pub fn scaled(self, by: f64) -> Estimate {
        let (a, b) = (self.low * by, self.high * by);
        Estimate {
            value: self.value * by,
            low: a.min(b),
            high: a.max(b),
        }
    }
}

/// The Wilson score interval of `k` successes in `n` trials; `None` when there are no trials
/// or more successes than trials (not a proportion).
pub fn wilson(k: u64, n: u64) -> Option<Estimate> {
    if n == 0 || k > n {
        return None;
    }
    let (none, all) = (k == 0, k == n);
    let (k, n, z2) = (k as f64, n as f64, Z95 * Z95);
    let p = k / n;
    let denom = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denom;
    let half = Z95 * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denom;
    // At no success the lower bound is 0 and at all the upper is 1, exactly: the subtraction
    // would leave a rounding residue (6.9e-18) that reads as a rate above zero.
    Some(Estimate {
        value: p,
        low: if none { 0.0 } else { (centre - half).max(0.0) },
        high: if all { 1.0 } else { (centre + half).min(1.0) },
    })
}

/// The difference `b - a` of two estimates with independent intervals (MOVER): with Wilson
/// intervals, Newcombe's hybrid score interval.
pub fn difference(a: Estimate, b: Estimate) -> Estimate {
    let d = b.value - a.value;
    Estimate {
        value: d,
        low: d - ((b.value - b.low).powi(2) + (a.high - a.value).powi(2)).sqrt(),
        high: d + ((b.high - b.value).powi(2) + (a.value - a.low).powi(2)).sqrt(),
    }
}

/// One variant's side of a lift row.
#[derive(Debug, Clone, Copy, Default)]
struct Side {
    decisions: u64,
    impressions: u64,
    conversions: u64,
    value: f64,
}

impl Side {
    fn of(t: &FunnelTable, offer: &str, channel: &str, variant: Variant) -> Side {
        let Some(o) = t.offer(offer) else {
            return Side::default();
        };
        let Some(ch) = t.channels.iter().position(|c| &**c == channel) else {
            return Side::default();
        };
        let Some(c) = t.cell(o, ch, variant) else {
            return Side::default();
        };
        let n = |s: Stage| c.0[s as usize].load(Relaxed);
        Side {
            decisions: n(Stage::Decision),
            impressions: n(Stage::Impression),
            conversions: n(Stage::Conversion),
            value: t.values.get(o).copied().unwrap_or(0.0),
        }
    }

    fn conversion_rate(&self) -> Option<Estimate> {
        wilson(self.conversions, self.impressions)
    }

    fn value_per_decision(&self) -> Option<Estimate> {
        wilson(self.conversions, self.decisions).map(|e| e.scaled(self.value.max(0.0)))
    }

    fn json(&self) -> Value {
        json!({
            "decisions": self.decisions,
            "impressions": self.impressions,
            "conversions": self.conversions,
            "conversion_rate": self.conversion_rate(),
            "value_per_decision": self.value_per_decision(),
        })
    }
}

impl Funnel {
    /// The lift of the active challenger over the active champion, for `/admin/stats`: the
    /// experiment, the interval method, and a row per offer × channel either variant served.
    pub fn lift(&self) -> Value {
        let method = "conversion rate per impression and conversions per decision: Wilson score, 95 %; differences (challenger - champion): Newcombe hybrid score (MOVER)";
        let active = self.active.load();
        let pair = active.as_deref().and_then(|a| {
            let (ck, _) = a.challenger.as_ref()?;
            Some((self.table(a.champion)?, self.table(*ck)?))
        });
        let Some((champion, challenger)) = pair else {
            return json!({"experiment": null, "method": method, "rows": []});
        };
        let mut rows = Vec::new();
        let mut sides = Vec::new();
        let offers = champion.offers.iter().chain(
            challenger
                .offers
                .iter()
                .filter(|o| champion.offer(o).is_none()),
        );
        for offer in offers {
            let channels = champion.channels.iter().chain(
                challenger
                    .channels
                    .iter()
                    .filter(|c| !champion.channels.contains(c)),
            );
            for channel in channels {
                let a = Side::of(&champion, offer, channel, Variant::Champion);
                let b = Side::of(&challenger, offer, channel, Variant::Challenger);
                if a.decisions + a.impressions + b.decisions + b.impressions == 0 {
                    continue;
                }
                sides.push((a, b));
                let diff = |x: Option<Estimate>, y: Option<Estimate>| Some(difference(x?, y?));
                rows.push(json!({
                    "offer_id": &**offer,
                    "channel": &**channel,
                    "champion": a.json(),
                    "challenger": b.json(),
                    "difference": {
                        "conversion_rate": diff(a.conversion_rate(), b.conversion_rate()),
                        "value_per_decision": diff(a.value_per_decision(), b.value_per_decision()),
                    },
                }));
            }
        }
        let model = |t: &FunnelTable| json!({"model": &*t.name, "version": &*t.version});
        json!({
            "experiment": {"champion": model(&champion), "challenger": model(&challenger)},
            "method": method,
            "overall": overall(&sides),
            "rows": rows,
        })
    }
}

/// Both variants over every offer and channel where the variant decided: conversions and
/// value per offer decided, each with its interval, and the challenger's differences.
///
/// A row the variant made no decision on (an outbound campaign's channel: its sends are not
/// decisions here, and `campaign report` measures them) is left out, conversions and all:
/// counted against the other rows' decisions they would make a rate of nothing. Value per
/// decision is conversions per decision times the value of a conversion (the mean over the
/// conversions, or over the offers decided while none has converted), its interval the Wilson
/// interval scaled: like each row's, it keeps its width at no conversions, where a normal
/// approximation narrows to [0, 0] and would call an arm with no conversions yet worse.
fn overall(sides: &[(Side, Side)]) -> Value {
    let total = |pick: fn(&(Side, Side)) -> &Side| {
        let (mut n, mut k, mut converted, mut offered) = (0u64, 0u64, 0.0, 0.0);
        for s in sides.iter().map(pick).filter(|s| s.decisions > 0) {
            n += s.decisions;
            k += s.conversions;
            converted += s.value.max(0.0) * s.conversions as f64;
            offered += s.value.max(0.0) * s.decisions as f64;
        }
        let conversions = wilson(k, n);
        let per_conversion = if k > 0 {
            converted / k as f64
        } else {
            offered / n.max(1) as f64
        };
        let value = conversions.map(|c| c.scaled(per_conversion));
        (n, k, conversions, value)
    };
    let (an, ak, ac, av) = total(|s| &s.0);
    let (bn, bk, bc, bv) = total(|s| &s.1);
    let diff = |x: Option<Estimate>, y: Option<Estimate>| Some(difference(x?, y?));
    let side = |n, k, c, v| {
        json!({"decisions": n, "conversions": k, "conversions_per_decision": c,
               "value_per_decision": v})
    };
    json!({
        "champion": side(an, ak, ac, av),
        "challenger": side(bn, bk, bc, bv),
        "difference": {
            "conversions_per_decision": diff(ac, bc),
            "value_per_decision": diff(av, bv),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 5e-5, "{a} vs {b}");
    }

    #[test]
    fn wilson_bounds_are_exact_at_no_success_and_at_all() {
        for n in 1..200 {
            let none = wilson(0, n).unwrap();
            assert_eq!((none.value, none.low), (0.0, 0.0), "0 of {n}");
            assert!(none.high > 0.0);
            let all = wilson(n, n).unwrap();
            assert_eq!((all.value, all.high), (1.0, 1.0), "{n} of {n}");
            assert!(all.low < 1.0);
        }
    }

    #[test]
    fn wilson_matches_hand_computed_intervals() {
        // 10 of 100: p = 0.1; centre = (0.1 + z²/200) / (1 + z²/100) = 0.114797,
        // half = z·sqrt(0.1·0.9/100 + z²/40000) / (1 + z²/100) = 0.059568.
        let e = wilson(10, 100).unwrap();
        close(e.value, 0.1);
        close(e.low, 0.055229);
        close(e.high, 0.174366);
        // None of 20: the interval still has width (the normal approximation gives [0, 0]).
        let e = wilson(0, 20).unwrap();
        close(e.low, 0.0);
        close(e.high, 0.161125);
        // All of 5: the upper bound stays at 1.
        let e = wilson(5, 5).unwrap();
        close(e.high, 1.0);
        close(e.low, 0.565518);
        assert_eq!(wilson(0, 0), None, "no impressions, no rate");
        assert_eq!(wilson(3, 2), None, "not a proportion");
    }

    #[test]
    fn the_difference_is_newcombes_hybrid_score_interval() {
        // Newcombe (1998), example (a): 56/70 - 48/80 = 0.2000, method 10: 0.0524 to 0.3339.
        let d = difference(wilson(48, 80).unwrap(), wilson(56, 70).unwrap());
        close(d.value, 0.2);
        close(d.low, 0.052431);
        close(d.high, 0.333873);
        // Scaled by values (value per decision): 48/80 × 10 vs 56/70 × 10 is ten times the
        // above.
        let d = difference(
            wilson(48, 80).unwrap().scaled(10.0),
            wilson(56, 70).unwrap().scaled(10.0),
        );
        close(d.low, 0.52431);
        close(d.high, 3.33873);
    }

    #[test]
    fn overall_counts_the_rows_decided_on_and_keeps_width_without_conversions() {
        let side = |decisions, conversions| Side {
            decisions,
            impressions: decisions,
            conversions,
            value: 10.0,
        };
        // web: 4 of 100 against none of 100; sms: a campaign's conversions, no decisions here.
        let sides = [(side(100, 4), side(100, 0)), (side(0, 30), side(0, 30))];
        let o = overall(&sides);
        assert_eq!(o["champion"]["decisions"], 100);
        assert_eq!(o["champion"]["conversions"], 4, "{o}");
        assert_eq!(o["challenger"]["conversions"], 0, "{o}");
        let f = |v: &Value| v.as_f64().unwrap();
        let v = &o["challenger"]["value_per_decision"];
        // Wilson's 0 of 100 reaches 0.037: times the value of a conversion, 0.37.
        close(f(&v["high"]), 10.0 * wilson(0, 100).unwrap().high);
        assert_eq!(f(&v["value"]), 0.0);
        let v = &o["champion"]["value_per_decision"];
        close(f(&v["value"]), 0.4);
        close(f(&v["low"]), 10.0 * wilson(4, 100).unwrap().low);
        // No arm is called worse on 4 conversions against none: both differences hold zero.
        for what in ["conversions_per_decision", "value_per_decision"] {
            let d = &o["difference"][what];
            assert!(f(&d["low"]) < 0.0 && f(&d["high"]) > 0.0, "{what}: {d}");
        }
    }
}
