//! Content that fits its channel: an SMS a body (no title or image), an e-mail a subject and
//! a body, a push notification a title and a body; an SMS body's segments (GSM-7 or UCS-2)
//! against its placement's `max_sms_segments`; every refusal with its path.

use super::*;

/// A model with one offer on `sms`, `email` and `push`, shown in one placement each.
fn outbound(
    sms: serde_json::Value,
    email: serde_json::Value,
    push: serde_json::Value,
) -> serde_json::Value {
    serde_json::json!({"name": "m", "version": "1",
        "placements": {"sms_campaign": {"channels": ["sms"], "max_sms_segments": 2},
                       "email_campaign": {"channels": ["email"]},
                       "push_campaign": {"channels": ["push"]}},
        "offers": [{"id": "a", "category": "sales", "channels": ["sms", "email", "push"],
            "placements": ["sms_campaign", "email_campaign", "push_campaign"], "value": 10,
            "scorer": {"kind": "constant", "propensity": 0.5},
            "content": {"sms": sms, "email": email, "push": push}}]})
}

fn email() -> serde_json::Value {
    serde_json::json!({"title": "Your data boost", "body": "10 GB for 5 EUR"})
}

#[test]
fn outbound_channels_need_only_what_they_send() {
    let sms = serde_json::json!({"body": "10 GB for 5 EUR: reply YES"});
    let m = compile(&outbound(sms.clone(), email(), email())).unwrap();
    let compiled = &m.compiled.offers[0];
    let sms_json: serde_json::Value = compiled
        .content_json
        .iter()
        .flatten()
        .map(|j| serde_json::from_str::<serde_json::Value>(j).unwrap())
        .find(|c| c["body"] == sms["body"])
        .unwrap();
    assert_eq!(sms_json["title"], "");
    assert_eq!(sms_json["image_url"], "");

    refused(
        &outbound(serde_json::json!({"title": "T"}), email(), email()),
        "offers[0].content.sms.body",
        "an SMS sends its body",
    );
    refused(
        &outbound(sms.clone(), serde_json::json!({"body": "B"}), email()),
        "offers[0].content.email.title",
        "a subject",
    );
    refused(
        &outbound(
            sms.clone(),
            email(),
            serde_json::json!({"title": "T", "body": ""}),
        ),
        "offers[0].content.push.body",
        "a push notification needs a title and a body",
    );
    // A web page still needs its image and call to action.
    let mut web = offer("w");
    web["content"]["web"] = serde_json::json!({"title": "T"});
    refused(
        &model(vec![web]),
        "offers[0].content.web.image_url",
        "missing field",
    );
}

#[test]
fn sms_segments_are_counted_in_gsm7_or_ucs2() {
    use crate::model::compile::sms_segments;
    assert_eq!(sms_segments(&"a".repeat(160)), ("GSM-7", 1));
    assert_eq!(sms_segments(&"a".repeat(161)), ("GSM-7", 2));
    assert_eq!(sms_segments(&"a".repeat(306)), ("GSM-7", 2));
    assert_eq!(sms_segments(&"a".repeat(307)), ("GSM-7", 3));
    // Extension characters take two septets: 80 euro signs fill one segment.
    assert_eq!(sms_segments(&"€".repeat(80)), ("GSM-7", 1));
    assert_eq!(sms_segments(&"€".repeat(81)), ("GSM-7", 2));
    // One character outside GSM-7 sends the whole body in UCS-2.
    assert_eq!(sms_segments(&format!("{}ł", "a".repeat(69))), ("UCS-2", 1));
    assert_eq!(sms_segments(&format!("{}ł", "a".repeat(70))), ("UCS-2", 2));
    // An emoji is two UTF-16 units.
    assert_eq!(sms_segments(&"😀".repeat(35)), ("UCS-2", 1));
    assert_eq!(sms_segments(&"😀".repeat(36)), ("UCS-2", 2));
    // A character is never split across two segments of a concatenated message.
    let gsm = format!("{}€{}", "a".repeat(152), "a".repeat(152));
    assert_eq!(sms_segments(&gsm), ("GSM-7", 3));
    let ucs = format!("{}😀{}", "ł".repeat(66), "ł".repeat(66));
    assert_eq!(sms_segments(&ucs), ("UCS-2", 3));

    let two = serde_json::json!({"body": "a".repeat(306)});
    compile(&outbound(two, email(), email())).unwrap();
    let three = serde_json::json!({"body": format!("{}ł", "a".repeat(134))});
    refused(
        &outbound(three, email(), email()),
        "offers[0].content.sms.body",
        "3 SMS segments in UCS-2, more than the placement's `max_sms_segments` of 2",
    );
    let mut m = outbound(serde_json::json!({"body": "B"}), email(), email());
    m["placements"]["sms_campaign"]["max_sms_segments"] = serde_json::json!(0);
    refused(
        &m,
        "placements.sms_campaign.max_sms_segments",
        "whole number from 1",
    );
    let mut m = outbound(serde_json::json!({"body": "B"}), email(), email());
    m["placements"]["email_campaign"]["max_sms_segments"] = serde_json::json!(1);
    refused(
        &m,
        "placements.email_campaign.max_sms_segments",
        "only a placement on channel `sms`",
    );
}
