//! What explain says of each offer the decision did not rank: why it was not a candidate
//! (channel, placement), and the value its failing rule leaf tested.

use super::{CompiledModel, CtxValue, Offer, Operand, RuleInput, Slot, Verdict};
use crate::features::{FeatureRow, FeatureStore};

const NOT_ON_CHANNEL: &str = "channel: the offer is not shown on this channel";
const UNKNOWN_CHANNEL: &str =
    "channel: the model has no such channel (fallback reason unknown_placement)";
const UNKNOWN_PLACEMENT: &str =
    "placement: the model has no such placement on this channel (fallback reason unknown_placement)";
const NOT_IN_PLACEMENT: &str = "placement: the offer is not shown in this placement";

pub(super) fn not_candidate_reason(offer: &Offer, channel: usize) -> &'static str {
    if offer.channel_mask & (1 << channel) == 0 {
        NOT_ON_CHANNEL
    } else {
        NOT_IN_PLACEMENT
    }
}

pub(super) fn explain_unreached<'m>(
    model: &'m CompiledModel,
    channel: Option<usize>,
    slot: Option<&Slot>,
    out: &mut Vec<Verdict<'m>>,
    unknown_customer: bool,
) {
    for (oi, offer) in model.offers.iter().enumerate() {
        let why = match (channel, slot) {
            (None, _) => UNKNOWN_CHANNEL,
            (Some(_), None) => UNKNOWN_PLACEMENT,
            (Some(_), Some(s)) if unknown_customer && s.candidates.contains(&(oi as u32)) => {
                "customer: unknown customer, no features to evaluate"
            }
            (Some(ch), Some(_)) => not_candidate_reason(offer, ch),
        };
        out.push(Verdict::text(why));
    }
}

/// For explain: a verdict of the offer's rule, again with the value its failing leaf tested
/// (`segment is bronze, not in gold, platinum`): string values decoded through the snapshot's
/// dictionary, numbers as the source gave them.
pub(super) fn with_tested_value<'m>(
    verdict: Verdict<'m>,
    offer: &'m Offer,
    input: &RuleInput<'_, '_>,
    row: FeatureRow<'_>,
    features: &FeatureStore,
) -> Verdict<'m> {
    let (Verdict::Excluded(why), Some(rule)) = (&verdict, &offer.rule) else {
        return verdict;
    };
    if rule.check(input) != Some(why) {
        return verdict;
    }
    let shown = |operand: Operand| -> String {
        match operand {
            Operand::Feature(c) => {
                let c = c as usize;
                let x = row.f32(c);
                match features.dictionary(c) {
                    Some(d) => d.value_of(x).unwrap_or("missing").to_owned(),
                    None if x.is_nan() => "missing".into(),
                    None => shown_number(row.f64(c)),
                }
            }
            Operand::Context(slot) => match input.context.get(slot as usize) {
                // Quoted: a number sent as a string ("250") fails a number test, and says so.
                Some(Some(CtxValue::Str(s))) => format!("\"{s}\" (text)"),
                Some(Some(CtxValue::Num(x))) => shown_number(*x),
                _ => "missing".into(),
            },
        }
    };
    match rule.explain(input, &shown) {
        Some(text) => Verdict::Excluded(text),
        None => verdict,
    }
}

/// A value as explain shows it: as written for everyday magnitudes, in exponent form for
/// very large and very small ones (`3.4e38`, `1e-45`, not forty digits).
fn shown_number(x: f64) -> String {
    if x != 0.0 && x.abs() < f64::from(f32::MIN_POSITIVE) {
        // Below f32's normal range the snapshot keeps the f32 alone: its shortest form.
        format!("{:e}", x as f32)
    } else if x != 0.0 && (x.abs() >= 1e16 || x.abs() < 1e-6) {
        format!("{x:e}")
    } else {
        x.to_string()
    }
}
