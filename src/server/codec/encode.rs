//! Encoding `/v1/decide` answers into one buffer, copying content fragments that were
//! JSON-encoded when the model was loaded.

use crate::engine::{CompiledModel, Decision, Fallback, FallbackReason, Verdict};

/// What the encoder needs besides the decision.
pub struct AnswerMeta<'a> {
    /// The decision id (a ULID).
    pub decision_id: &'a str,
    /// The customer as the request named them.
    pub customer_id: Option<&'a str>,
    /// `champion` or `challenger`.
    pub variant: &'a str,
}

/// Encodes a decision made by a model.
pub fn encode_decision(
    out: &mut Vec<u8>,
    meta: &AnswerMeta<'_>,
    model: &CompiledModel,
    d: &Decision<'_>,
) {
    head(out, meta, Some(&model.model_json));
    if d.anonymous {
        out.extend_from_slice(b"\"anonymous\":true,");
    }
    match d.fallback {
        Some(reason) => fallback_part(out, reason, d.fallback_content),
        None => {
            out.extend_from_slice(b"\"fallback\":null,\"offers\":[");
            let ch = d.channel.unwrap_or(0);
            for (i, r) in d.ranked.iter().enumerate() {
                let offer = &model.offers[r.offer as usize];
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(b"{\"offer_id\":");
                out.extend_from_slice(offer.id_json.as_bytes());
                out.extend_from_slice(b",\"rank\":");
                out.extend_from_slice(itoa::Buffer::new().format(i + 1).as_bytes());
                out.extend_from_slice(b",\"score\":");
                number(out, r.score);
                out.extend_from_slice(b",\"propensity\":");
                number(out, r.propensity);
                out.extend_from_slice(b",\"content\":");
                match offer.content_json.get(ch).and_then(|c| c.as_deref()) {
                    Some(c) => out.extend_from_slice(c.as_bytes()),
                    None => out.extend_from_slice(b"null"),
                }
                out.push(b'}');
            }
            out.extend_from_slice(b"],");
        }
    }
    if !d.explain.is_empty() {
        // Why an offer ranks above a better-scored one: the placement explored.
        if d.explored {
            out.extend_from_slice(b"\"explored\":true,");
        }
        out.extend_from_slice(b"\"explain\":[");
        for (i, v) in d.explain.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"offer_id\":");
            out.extend_from_slice(model.offers[i].id_json.as_bytes());
            match v {
                Verdict::Scored {
                    propensity,
                    score,
                    learnt,
                    shown,
                } => {
                    out.extend_from_slice(b",\"propensity\":");
                    number(out, *propensity);
                    out.extend_from_slice(b",\"score\":");
                    number(out, *score);
                    if shown.is_finite() {
                        out.extend_from_slice(b",\"shown_probability\":");
                        number(out, *shown);
                    }
                    if let Some(l) = learnt {
                        adaptive_explain(out, l);
                    }
                }
                Verdict::Excluded(why) => {
                    out.extend_from_slice(b",\"excluded\":");
                    string(out, why);
                }
            }
            out.push(b'}');
        }
        out.extend_from_slice(b"],");
    }
}

/// `"adaptive":{"posterior_mean":..,"draw":..,"trials":..,"successes":..,"floor":..}`.
fn adaptive_explain(out: &mut Vec<u8>, l: &crate::engine::posterior::Draw) {
    out.extend_from_slice(b",\"adaptive\":{\"posterior_mean\":");
    number(out, l.mean);
    out.extend_from_slice(b",\"draw\":");
    number(out, l.draw);
    out.extend_from_slice(b",\"trials\":");
    out.extend_from_slice(itoa::Buffer::new().format(l.trials).as_bytes());
    out.extend_from_slice(b",\"successes\":");
    out.extend_from_slice(itoa::Buffer::new().format(l.successes).as_bytes());
    out.extend_from_slice(if l.floor {
        b",\"floor\":true}"
    } else {
        b",\"floor\":false}"
    });
}

/// Encodes a fallback answer given without a model decision (no model, overload, ...).
pub fn encode_fallback(
    out: &mut Vec<u8>,
    meta: &AnswerMeta<'_>,
    model: Option<&CompiledModel>,
    reason: FallbackReason,
    content: &Fallback,
) {
    head(out, meta, model.map(|m| &*m.model_json));
    fallback_part(out, reason, content);
}

/// Writes `"warnings":[...],` when there is something to say (nothing otherwise).
pub fn warnings(out: &mut Vec<u8>, warnings: &[String]) {
    if warnings.is_empty() {
        return;
    }
    out.extend_from_slice(b"\"warnings\":[");
    for (i, w) in warnings.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, w);
    }
    out.extend_from_slice(b"],");
}

/// Closes an answer with its `took_us`.
pub fn finish(out: &mut Vec<u8>, took_us: u64) {
    out.extend_from_slice(b"\"took_us\":");
    out.extend_from_slice(itoa::Buffer::new().format(took_us).as_bytes());
    out.push(b'}');
}

fn head(out: &mut Vec<u8>, meta: &AnswerMeta<'_>, model_json: Option<&str>) {
    out.extend_from_slice(b"{\"decision_id\":\"");
    out.extend_from_slice(meta.decision_id.as_bytes());
    out.extend_from_slice(b"\",\"customer_id\":");
    match meta.customer_id {
        Some(id) => string(out, id),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"model\":");
    out.extend_from_slice(model_json.unwrap_or("null").as_bytes());
    out.extend_from_slice(b",\"variant\":");
    string(out, meta.variant);
    out.push(b',');
}

fn fallback_part(out: &mut Vec<u8>, reason: FallbackReason, content: &Fallback) {
    out.extend_from_slice(b"\"fallback\":{\"reason\":\"");
    out.extend_from_slice(reason.as_str().as_bytes());
    out.extend_from_slice(b"\",\"stage\":\"");
    out.extend_from_slice(content.stage.as_str().as_bytes());
    out.extend_from_slice(b"\"},\"offers\":");
    out.extend_from_slice(content.offers_json.as_bytes());
    out.push(b',');
}

/// A JSON number; non-finite values (which arbitration never produces) become 0.
fn number(out: &mut Vec<u8>, x: f64) {
    if x.is_finite() {
        out.extend_from_slice(zmij::Buffer::new().format_finite(x).as_bytes());
    } else {
        out.push(b'0');
    }
}

/// A JSON string literal, escaped.
pub(super) fn string(out: &mut Vec<u8>, s: &str) {
    // Writing to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}
