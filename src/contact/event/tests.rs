use super::*;

const NOW: i64 = 1_796_000_000_000; // 2026-11-30

fn parse(json: &str) -> Result<(Event<'static>, Vec<u8>), String> {
    let mut bytes = json.as_bytes().to_vec();
    let v = simd_json::to_borrowed_value(&mut bytes).map_err(|e| e.to_string())?;
    let e = Event::from_json(&v, NOW).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    e.encode(&mut out);
    // Leak in tests only, to return an event borrowing nothing local.
    let out: &'static [u8] = Box::leak(out.into_boxed_slice());
    Ok((Event::decode(out).unwrap(), out.to_vec()))
}

#[test]
fn round_trips_through_the_record_format() {
    let (e, _) = parse(
        r#"{"type":"impression","customer_id":"C1","offer_id":"o","channel":"web",
        "placement":"home","decision_id":"01JD0000000000000000000000","event_id":"e1",
        "ts":"2026-11-22T10:00:00Z","category":"sales","extra":1}"#,
    )
    .unwrap();
    assert_eq!(e.kind, EventKind::Impression);
    assert_eq!(e.customer_id, "C1");
    assert_eq!(e.offer_id, Some("o"));
    assert_eq!(e.channel, Some("web"));
    assert_eq!(e.placement, Some("home"));
    assert_eq!(e.event_id, Some("e1"));
    assert_eq!(e.category, Some("sales"));
    assert!(e.decision_id.is_some());
    assert_eq!(e.ts_ms, 1_795_341_600_000);
    for ts in [
        "2026-11-22T11:00:00+01:00",
        "2026-11-22T05:00:00-05:00",
        "2026-11-22t10:00:00z",
    ] {
        let json = format!(r#"{{"type":"click","customer_id":"C","offer_id":"o","ts":"{ts}"}}"#);
        assert_eq!(parse(&json).unwrap().0.ts_ms, 1_795_341_600_000, "{ts}");
    }
    let (c, _) = parse(r#"{"type":"complaint","customer_id":"C1"}"#).unwrap();
    assert_eq!(c.kind, EventKind::Complaint);
    assert_eq!(c.offer_id, None);
    assert_eq!(c.ts_ms, NOW, "ts defaults to now");
}

#[test]
fn refusals_name_the_field() {
    let cases = [
        (r#"[]"#, "expected an event object"),
        (r#"{"customer_id":"C1"}"#, "type: missing field"),
        (
            r#"{"type":"view","customer_id":"C1"}"#,
            "type: expected one of",
        ),
        (
            r#"{"type":"impressions","customer_id":"C1","offer_id":"o"}"#,
            "complaint_resolved: did you mean `impression`?",
        ),
        (
            r#"{"type":"Conversion","customer_id":"C1","offer_id":"o"}"#,
            "did you mean `conversion`?",
        ),
        (r#"{"type":"click","offer_id":"o"}"#, "customer_id: missing"),
        (
            r#"{"type":"click","visitor_id":"","offer_id":"o"}"#,
            "customer_id: missing field (or give a visitor_id)",
        ),
        (
            r#"{"type":"click","customer_id":"C1"}"#,
            "offer_id: missing field (required for click)",
        ),
        (
            r#"{"type":"click","customer_id":"","offer_id":"o"}"#,
            "customer_id: empty, and no visitor_id",
        ),
        (
            r#"{"type":"click","customer_id":7,"offer_id":"o"}"#,
            "customer_id: expected a string",
        ),
        (
            r#"{"type":"click","customer_id":"C","offer_id":""}"#,
            "offer_id: must not be empty",
        ),
        (
            r#"{"type":"click","customer_id":"C","offer_id":"o","ts":"yesterday"}"#,
            "ts: `yesterday`",
        ),
        (
            r#"{"type":"click","customer_id":"C","offer_id":"o","ts":"2030-01-01T00:00:00Z"}"#,
            "ts: more than 5 minutes in the future",
        ),
        (
            r#"{"type":"click","customer_id":"C","offer_id":"o","ts":"2026-11-22T10:00:00"}"#,
            "ts: `2026-11-22T10:00:00` has no UTC offset",
        ),
        (
            r#"{"type":"click","customer_id":"C","offer_id":"o","ts":"2026-11-22 10:00:00Z"}"#,
            "joined by `T`",
        ),
        (
            r#"{"type":"click","customer_id":"C","offer_id":"o","decision_id":"nope"}"#,
            "decision_id: `nope`",
        ),
        (
            r#"{"type":"click","customer_id":"C","offer_id":"o","ts":1795341600000}"#,
            "ts: expected a string, an RFC 3339 time such as `2026-11-22T10:00:00Z` (a number, as epoch milliseconds, is not taken)",
        ),
        // A missing field given under a misspelt name says which key was meant.
        (
            r#"{"type":"click","custmer_id":"C","offer_id":"o"}"#,
            "customer_id: missing field (or give a visitor_id); `custmer_id` is not a field: did you mean `customer_id`?",
        ),
        (
            r#"{"type":"click","Visitor_ID":"v","offer_id":"o"}"#,
            "did you mean `visitor_id`?",
        ),
        (
            r#"{"type":"click","customer_id":"C","offerid":"o"}"#,
            "offer_id: missing field (required for click); `offerid` is not a field: did you mean `offer_id`?",
        ),
    ];
    for (json, needle) in cases {
        let err = parse(json).err().unwrap_or_default();
        assert!(err.contains(needle), "{json}: {err}");
    }
    let long = format!(
        r#"{{"type":"click","customer_id":"C","offer_id":"{}"}}"#,
        "o".repeat(129)
    );
    assert_eq!(
        parse(&long).err().unwrap(),
        "offer_id: longer than 128 characters"
    );
}

#[test]
fn schema_faults_and_refusals_are_told_apart() {
    let fault = |json: &str| {
        let mut bytes = json.as_bytes().to_vec();
        let v = simd_json::to_borrowed_value(&mut bytes).unwrap();
        Event::from_json(&v, NOW).err()
    };
    let malformed = [
        r#"{"type":"view","customer_id":"C1"}"#,
        r#"{"type":"click","customer_id":7,"offer_id":"o"}"#,
        r#"{"type":"click","customer_id":"C","offer_id":"o","ts":"2026-11-22T10:00:00"}"#,
        r#"{"type":"click","customer_id":"C","offer_id":"o","decision_id":"81JD0000000000000000000000"}"#,
        r#"{"type":"click","customer_id":"C","offer_id":""}"#,
    ];
    for json in malformed {
        assert!(
            matches!(fault(json), Some(EventFault::Malformed(_))),
            "{json}"
        );
    }
    let refused = [
        r#"{"type":"click","customer_id":"C"}"#,
        r#"{"type":"click","customer_id":"C","offer_id":"o","ts":"2030-01-01T00:00:00Z"}"#,
        r#"{"type":"click","customer_id":"C","offer_id":"o","ts":"1969-12-31T23:59:59Z"}"#,
    ];
    for json in refused {
        assert!(
            matches!(fault(json), Some(EventFault::Refused(_))),
            "{json}"
        );
    }
    // 256 characters of any width, a lowercase decision id, nulls for optional fields.
    let cjk = "顧".repeat(256);
    let ok = format!(
        r#"{{"type":"click","customer_id":"{cjk}","offer_id":"o","decision_id":"01jd0000000000000000000000","channel":null,"ts":null}}"#
    );
    assert_eq!(fault(&ok), None);
    let long = format!(r#"{{"type":"click","customer_id":"{cjk}x","offer_id":"o"}}"#);
    assert_eq!(
        fault(&long),
        Some(EventFault::Malformed(
            "customer_id: longer than 256 characters".into()
        ))
    );
}

#[test]
fn the_accept_time_travels_and_old_records_still_decode() {
    let (e, plain) = parse(r#"{"type":"dismiss","customer_id":"C1","offer_id":"o"}"#).unwrap();
    assert_eq!(Event::decode_accepted(&plain).unwrap(), (e, None));
    let mut stamped = Vec::new();
    e.encode_accepted(NOW + 7, &mut stamped);
    assert_eq!(
        stamped[..plain.len()],
        plain[..],
        "the fields come first, unchanged"
    );
    assert_eq!(
        Event::decode_accepted(&stamped).unwrap(),
        (e, Some(NOW + 7))
    );
    assert_eq!(Event::decode(&stamped).unwrap(), e);
    // A cut extension is no accept time, not an error: the event's fields are whole.
    let cut = &stamped[..stamped.len() - 1];
    assert_eq!(Event::decode_accepted(cut).unwrap(), (e, None));
}

#[test]
fn a_visitor_travels_as_an_extension_after_the_accept_time() {
    let (v, _) = parse(r#"{"type":"dismiss","visitor_id":"v-9","offer_id":"o"}"#).unwrap();
    assert_eq!((v.customer_id, v.visitor_id), ("", Some("v-9")));
    let (both, plain) =
        parse(r#"{"type":"dismiss","customer_id":"C1","visitor_id":"v-9","offer_id":"o"}"#)
            .unwrap();
    assert_eq!((both.customer_id, both.visitor_id), ("C1", Some("v-9")));
    let mut stamped = Vec::new();
    both.encode_accepted(NOW, &mut stamped);
    assert_eq!(Event::decode_accepted(&stamped).unwrap(), (both, Some(NOW)));
    // What a build that knows only the accept time reads: the tag right after the fields.
    let fields = plain.len() - (1 + 2 + 3);
    assert_eq!(stamped[fields], ACCEPTED_TAG);
    // A cut visitor is no visitor; the event's fields are whole.
    let cut = &stamped[..stamped.len() - 1];
    let (e, at) = Event::decode_accepted(cut).unwrap();
    assert_eq!((e.customer_id, e.visitor_id, at), ("C1", None, Some(NOW)));
}

#[test]
fn request_levels_travel_as_an_extension_and_a_cut_list_is_none() {
    let (mut e, _) = parse(r#"{"type":"impression","visitor_id":"v-9","offer_id":"o"}"#).unwrap();
    let mut pairs = Vec::new();
    RequestLevels::push(&mut pairs, 7, 42);
    RequestLevels::push(&mut pairs, 8, 0x8000_0001);
    e.request = RequestLevels::from_bytes(&pairs);
    let mut stamped = Vec::new();
    e.encode_accepted(NOW, &mut stamped);
    let (back, at) = Event::decode_accepted(&stamped).unwrap();
    assert_eq!((back, at), (e, Some(NOW)));
    let levels: Vec<_> = back.request.unwrap().iter().collect();
    assert_eq!(levels, [(7, 42), (8, 0x8000_0001)]);
    let (cut, _) = Event::decode_accepted(&stamped[..stamped.len() - 1]).unwrap();
    assert_eq!((cut.visitor_id, cut.request), (Some("v-9"), None));
}

#[test]
fn an_outcomes_attribution_travels_as_an_extension_and_a_bad_one_is_none() {
    let (mut e, plain) =
        parse(r#"{"type":"conversion","customer_id":"C1","offer_id":"o","channel":"web"}"#)
            .unwrap();
    assert_eq!(e.attributed, None, "never read from a channel");
    e.attributed = Some(Attributed {
        key: 0xdead_beef,
        variant: crate::experiment::Variant::Challenger,
    });
    let mut stamped = Vec::new();
    e.encode_accepted(NOW, &mut stamped);
    assert_eq!(Event::decode_accepted(&stamped).unwrap(), (e, Some(NOW)));
    // Cut short, or with a variant no build knows: no attribution, the fields whole.
    let (cut, _) = Event::decode_accepted(&stamped[..stamped.len() - 1]).unwrap();
    assert_eq!(cut.attributed, None);
    let mut unknown = stamped.clone();
    *unknown.last_mut().unwrap() = 9;
    let (odd, _) = Event::decode_accepted(&unknown).unwrap();
    assert_eq!((odd.attributed, odd.customer_id), (None, "C1"));
    assert_eq!(Event::decode(&plain).unwrap().attributed, None);
}

#[test]
fn garbage_payloads_are_errors_not_panics() {
    assert_eq!(Event::decode(&[]), Err(RecordError::Truncated));
    assert_eq!(Event::decode(&[9, 1, 0]), Err(RecordError::Format(9)));
    assert_eq!(Event::decode(&[1, 42, 0]), Err(RecordError::Kind(42)));
    let (_, good) = parse(r#"{"type":"dismiss","customer_id":"C1","offer_id":"o"}"#).unwrap();
    for cut in 0..good.len() {
        assert!(Event::decode(&good[..cut]).is_err(), "cut at {cut}");
    }
}
