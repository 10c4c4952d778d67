use super::*;

#[test]
fn decodes_borrowed_fields_and_context() {
    let body = br#"{"customer_id":"C1","channel":"web","placement":"home_hero","limit":2,
        "context":{"page":"plans","n":3},"explain":true,"unknown":1}"#
        .to_vec();
    let mut scratch = Vec::new();
    let d = decode_json(&body, &mut scratch).unwrap();
    assert_eq!(d.customer_id.as_deref(), Some("C1"));
    assert_eq!(d.limit, Some(2));
    assert!(d.explain);
    assert_eq!(d.context.0.len(), 2);
    assert_eq!(d.context.0[1].1, CtxValue::Num(3.0));
    assert!(matches!(d.channel, Cow::Borrowed(_)));
}

#[test]
fn names_the_faulty_field() {
    let cases: [(&[u8], &str); 6] = [
        (br#"{"channel":"web"}"#, "placement"),
        (br#"{"channel":1,"placement":"x"}"#, "channel"),
        (br#"{"channel":"web","placement":"x","limit":0}"#, "limit"),
        (
            br#"{"channel":"web","placement":"x","context":{"a":[1]}}"#,
            "context",
        ),
        (
            br#"{"channel":"web","placement":"x","context":[]}"#,
            "context",
        ),
        (br#"{"channel":"web","placement":""}"#, "placement"),
    ];
    for (body, field) in cases {
        let mut scratch = Vec::new();
        match decode_json(body, &mut scratch) {
            Err(ApiError::InvalidRequest(detail)) => {
                assert!(detail.contains(field), "{detail} should name {field}")
            }
            other => panic!(
                "{}: expected InvalidRequest, got {other:?}",
                String::from_utf8_lossy(body)
            ),
        }
    }
    let mut scratch = Vec::new();
    assert!(matches!(
        decode_json(b"{\"channel\":", &mut scratch),
        Err(ApiError::MalformedJson(_))
    ));
}

#[test]
fn what_generated_clients_send_is_taken() {
    let mut scratch = Vec::new();
    // JSON Schema's integer may arrive as 2.0; optional fields as null.
    let body = br#"{"customer_id":null,"channel":"web","placement":"p","limit":2.0,"context":null,"explain":null}"#;
    let d = decode_json(body, &mut scratch).unwrap();
    assert_eq!((d.limit, d.explain, d.context.0.len()), (Some(2), false, 0));
    assert_eq!(d.customer_id, None);
    // 256 characters are allowed, whatever their UTF-8 length.
    let cjk = "顧".repeat(256);
    let body = format!(r#"{{"customer_id":"{cjk}","channel":"web","placement":"p"}}"#);
    assert!(decode_json(body.as_bytes(), &mut scratch).is_ok());
    let body = format!(r#"{{"customer_id":"{cjk}x","channel":"web","placement":"p"}}"#);
    assert!(matches!(
        decode_json(body.as_bytes(), &mut scratch),
        Err(ApiError::InvalidRequest(d)) if d == "customer_id: longer than 256 characters"
    ));
    for bad in [&br#""limit":2.5"#[..], br#""limit":-1"#, br#""limit":"2""#] {
        let body = [&br#"{"channel":"web","placement":"p","#[..], bad, b"}"].concat();
        match decode_json(&body, &mut scratch) {
            Err(ApiError::InvalidRequest(d)) => assert!(d.starts_with("limit: "), "{d}"),
            other => panic!("{}: {other:?}", String::from_utf8_lossy(&body)),
        }
    }
}

#[test]
fn unknown_fields_are_collected_not_ignored() {
    let mut scratch = Vec::new();
    let body = br#"{"custmer_id":"C1","channel":"web","placement":"p","a":[1,{"b":2}],"c":1,"d":1,"e":1,"f":1,"g":1,"h":1,"i":1}"#;
    let d = decode_json(body, &mut scratch).unwrap();
    assert_eq!(d.customer_id, None);
    assert_eq!(d.unknown_count, 9);
    assert_eq!(d.unknown.len(), MAX_UNKNOWN_NAMED);
    assert_eq!(d.unknown[0], "custmer_id");
    let q = decode_query("channel=web&placement=p&custmer_id=C1&context.page=x").unwrap();
    assert_eq!(q.unknown, ["custmer_id"]);
    assert_eq!(q.context.0.len(), 1);
    let clean = decode_json(br#"{"channel":"web","placement":"p"}"#, &mut scratch).unwrap();
    assert_eq!(clean.unknown_count, 0);
    // A required field misspelt is named beside the one missing, in a body and a query.
    let mut scratch2 = Vec::new();
    match decode_json(br#"{"channel":"web","placment":"p"}"#, &mut scratch2) {
        Err(ApiError::InvalidRequest(d)) => assert_eq!(
            d,
            "missing field `placement`: the request has `placment`; did you mean `placement`?"
        ),
        other => panic!("{other:?}"),
    }
    match decode_query("Channel=web&placement=p") {
        Err(ApiError::InvalidRequest(d)) => assert_eq!(
            d,
            "missing field `channel`: the request has `Channel`; did you mean `channel`?"
        ),
        other => panic!("{other:?}"),
    }
    match decode_json(br#"{"channel":"web","x":1}"#, &mut scratch2) {
        Err(ApiError::InvalidRequest(d)) => assert_eq!(d, "missing field `placement`"),
        other => panic!("{other:?}"),
    }
    // Written twice, warned of once.
    let twice = br#"{"channel":"web","placement":"p","x":1,"x":2}"#;
    let d = decode_json(twice, &mut scratch).unwrap();
    assert_eq!(d.unknown_count, 1);
    assert_eq!(d.unknown, ["x"]);
}

#[test]
fn errors_name_the_field_in_words_not_parser_internals() {
    let cases: [(&[u8], &str); 8] = [
        (
            br#"{"channel":1,"placement":"p"}"#,
            "channel: invalid type: integer `1`, expected a string",
        ),
        (
            br#"{"channel":"web","placement":"p","explain":"yes"}"#,
            "explain: invalid type: string \"yes\", expected a boolean",
        ),
        (
            br#"{"channel":"web","placement":"p","limit":NaN}"#,
            "invalid JSON at line 1, column 42: expected value",
        ),
        (
            br#"{"channel":"web","placement":"p","context":{"a":NaN}}"#,
            "invalid JSON at line 1, column 49: expected value",
        ),
        (
            br#"{"channel":"\ud800","placement":"p"}"#,
            "invalid JSON at line 1, column 19: unexpected end of hex escape",
        ),
        (
            br#"{"channel":"web","channel":"app","placement":"p"}"#,
            "duplicate field `channel`",
        ),
        (
            br#"{"channel":"web","placement":"p","context":{"cart":250,"cart":10}}"#,
            "context: duplicate key `cart`",
        ),
        (
            b"{\"channel\":\"web\",\"placement\":\"p\"} x",
            "invalid JSON at line 1, column 35: trailing characters",
        ),
    ];
    for (body, expected) in cases {
        let mut scratch = Vec::new();
        let e = decode_json(body, &mut scratch).unwrap_err();
        let detail = e.to_string();
        assert_eq!(detail, expected, "{}", String::from_utf8_lossy(body));
        assert!(
            !detail.contains("Expected") && !detail.contains("Internal"),
            "{detail}"
        );
    }
}

#[test]
fn explain_in_a_query_is_true_or_false_in_any_case() {
    for (v, want) in [
        ("true", true),
        ("True", true),
        ("TRUE", true),
        ("false", false),
        ("False", false),
    ] {
        let q = decode_query(&format!("channel=web&placement=p&explain={v}")).unwrap();
        assert_eq!(q.explain, want, "{v}");
    }
    for v in ["1", "yes", "", "on"] {
        let e = decode_query(&format!("channel=web&placement=p&explain={v}")).unwrap_err();
        assert!(e.to_string().starts_with("explain: "), "{v}: {e}");
    }
    assert_eq!(
        decode_query("channel=web&placement=p&limit=2.0")
            .unwrap()
            .limit,
        Some(2)
    );
}

#[test]
fn query_matches_json() {
    let q = decode_query("customer_id=C%2042&channel=web&placement=home_hero&limit=2&context.page=plans&context.n=3&explain=true").unwrap();
    assert_eq!(q.customer_id.as_deref(), Some("C 42"));
    assert_eq!(q.limit, Some(2));
    assert!(q.explain);
    assert_eq!(q.context.0[0].1, CtxValue::Str("plans".into()));
    assert_eq!(q.context.0[1].1, CtxValue::Num(3.0));
    assert!(
        matches!(decode_query("channel=web"), Err(ApiError::InvalidRequest(d)) if d.contains("placement"))
    );
    assert!(
        matches!(decode_query("channel=web&placement=x&limit=abc"), Err(ApiError::InvalidRequest(d)) if d.contains("limit"))
    );
}

#[test]
fn strings_are_escaped() {
    let mut out = Vec::new();
    string(&mut out, "a\"b\\c\n\u{1}");
    let back: String = serde_json::from_slice(&out).unwrap();
    assert_eq!(back, "a\"b\\c\n\u{1}");
}

#[test]
fn a_query_parameter_given_twice_is_refused_naming_it() {
    for (q, name) in [
        ("channel=web&placement=p&channel=app", "channel"),
        (
            "channel=web&placement=p&context.page=a&context.page=b",
            "context.page",
        ),
    ] {
        let e = decode_query(q).unwrap_err().to_string();
        assert!(e.contains(&format!("`{name}` given twice")), "{q}: {e}");
    }
}

#[test]
fn a_huge_whole_limit_is_named_by_its_bound() {
    let mut scratch = Vec::new();
    let e = decode_json(
        br#"{"channel":"web","placement":"p","limit":18446744073709551617}"#,
        &mut scratch,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("limit: must be from 1 to 50"), "{e}");
}

#[test]
fn a_query_that_is_not_utf8_once_decoded_is_refused() {
    let e = decode_query("channel=web&placement=p&customer_id=%C3%28")
        .unwrap_err()
        .to_string();
    assert!(e.contains("customer_id: not UTF-8"), "{e}");
    // U+FFFD spelt out is a character like any other.
    let q = decode_query("channel=web&placement=p&customer_id=%EF%BF%BD").unwrap();
    assert_eq!(q.customer_id.as_deref(), Some("\u{FFFD}"));
}
