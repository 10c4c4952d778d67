//! The properties the fuzz targets check, shared with `tests/fuzz_regressions.rs` so a
//! finding replays through the very same check. Each `check_*` function panics when a
//! property fails; none of them measures memory (the fuzz targets do that around the call).
//!
//! Used by the fuzz crate (`fuzz_targets/*.rs`) and by the main crate's integration tests
//! through `#[path]`, so it may only use what both have: nextbest, serde_json, csv,
//! crc32fast.
#![allow(dead_code)]

use std::borrow::Cow;
use std::sync::OnceLock;

use nextbest::engine::{
    decide, CompiledModel, CtxValue, Decision, FallbackReason, NoContacts, Request, Unbounded,
    Verdict, MAX_LIMIT,
};
use nextbest::features::{FeatureError, FeatureStore};
use nextbest::model::{builtin_fallback_from_bytes, from_bytes, Limits};
use nextbest::server::codec::{
    decode_json, decode_query, encode_decision, finish, AnswerMeta, DecideBody, MAX_CONTEXT,
    MAX_CUSTOMER_ID, MAX_NAME,
};

// ---------------------------------------------------------------------------------------------
// decide_request

/// `/v1/decide` request decoding, JSON body and query string. Whenever a request decodes:
/// - its fields respect the contract's bounds (customer_id <= 256 characters, channel and
///   placement 1..=128 characters, limit 1..=50, context <= 64 entries, finite numbers);
/// - encoding it again as JSON (serde_json) and decoding that gives the same values, context
///   order, duplicates and number bits included;
/// - where serde_json also reads the body, it sees the same top-level values (simd-json
///   unescapes in place: this catches a mis-unescaped string);
/// - a query string decodes to the same values as the JSON written from it.
pub fn check_decide_request(data: &[u8]) {
    let mut scratch = Vec::new();
    if let Ok(req) = decode_json(data, &mut scratch) {
        check_bounds(&req);
        check_round_trip(&req);
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
            let s = |k: &str| v.get(k).and_then(|x| x.as_str());
            assert_eq!(s("channel"), Some(&*req.channel));
            assert_eq!(s("placement"), Some(&*req.placement));
            if let Some(id) = &req.customer_id {
                assert_eq!(s("customer_id"), Some(&**id));
            }
            // JSON Schema's integer: 2 and 2.0 alike.
            let limit = v
                .get("limit")
                .and_then(|l| l.as_u64().or_else(|| l.as_f64().map(|f| f as u64)));
            assert_eq!(limit, req.limit);
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(req) = decode_query(text) {
            check_bounds(&req);
            check_round_trip(&req);
        }
    }
}

fn check_bounds(req: &DecideBody<'_>) {
    if let Some(id) = &req.customer_id {
        let n = id.chars().count();
        assert!(n <= MAX_CUSTOMER_ID, "customer_id of {n} characters");
    }
    for name in [&req.channel, &req.placement] {
        let n = name.chars().count();
        assert!((1..=MAX_NAME).contains(&n), "name of {n} characters");
    }
    if let Some(l) = req.limit {
        assert!((1..=MAX_LIMIT as u64).contains(&l), "limit {l}");
    }
    assert!(
        req.context.0.len() <= MAX_CONTEXT,
        "{} context entries",
        req.context.0.len()
    );
    for (_, v) in &req.context.0 {
        if let CtxValue::Num(x) = v {
            assert!(x.is_finite(), "context number {x}");
        }
    }
    let engine = req.as_request();
    assert_eq!(engine.channel, &*req.channel);
    assert_eq!(engine.context.len(), req.context.0.len());
    assert_ne!(
        engine.customer_id,
        Some(""),
        "an empty customer_id is anonymous"
    );
}

/// The request as JSON, written by serde_json; context pairs in order, duplicates kept.
fn to_json(req: &DecideBody<'_>) -> String {
    let s = |x: &str| serde_json::to_string(x).unwrap();
    let mut out = format!(
        "{{\"channel\":{},\"placement\":{},\"explain\":{}",
        s(&req.channel),
        s(&req.placement),
        req.explain
    );
    if let Some(id) = &req.customer_id {
        out += &format!(",\"customer_id\":{}", s(id));
    }
    if let Some(l) = req.limit {
        out += &format!(",\"limit\":{l}");
    }
    out += ",\"context\":{";
    for (i, (k, v)) in req.context.0.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let v = match v {
            CtxValue::Str(t) => s(t),
            CtxValue::Num(x) => serde_json::to_string(x).unwrap(),
        };
        out += &format!("{}:{v}", s(k));
    }
    out += "}}";
    out
}

fn check_round_trip(req: &DecideBody<'_>) {
    let json = to_json(req);
    let mut scratch = Vec::new();
    let back = decode_json(json.as_bytes(), &mut scratch)
        .unwrap_or_else(|e| panic!("re-encoded request does not decode: {e:?}\n{json}"));
    assert_eq!(back.customer_id, req.customer_id, "{json}");
    assert_eq!(back.channel, req.channel, "{json}");
    assert_eq!(back.placement, req.placement, "{json}");
    assert_eq!(back.limit, req.limit, "{json}");
    assert_eq!(back.explain, req.explain, "{json}");
    assert_eq!(back.context.0.len(), req.context.0.len(), "{json}");
    for ((k1, v1), (k2, v2)) in back.context.0.iter().zip(&req.context.0) {
        assert_eq!(k1, k2, "{json}");
        match (v1, v2) {
            (CtxValue::Num(a), CtxValue::Num(b)) => {
                assert_eq!(a.to_bits(), b.to_bits(), "{a} vs {b} in {json}")
            }
            (CtxValue::Str(a), CtxValue::Str(b)) => assert_eq!(a, b, "{json}"),
            _ => panic!("context `{k1}` changed type: {v1:?} vs {v2:?} in {json}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// model

/// A slice of the demo snapshot (its text columns included), plus a customer with every value
/// missing and one with extremes.
const CSV: &str = "\
customer_id,tenure_months,arpu_30d,data_gb_30d,data_allowance_gb,voice_min_30d,sms_30d,days_since_last_topup,app_sessions_7d,web_sessions_7d,complaints_90d,is_prepaid,device_age_months,is_5g_device,roaming_days_90d,contract_months_left,num_lines,late_payments_12m,nps_score,has_fiber,churn_score,loyalty_points,segment,plan,region
C0000001,9,34.56,18.10,50,137,62,,4,2,0,0,20,1,0,18,1,2,2,1,0.26,299,gold,basic,west
C0000002,11,22.12,54.18,100,306,30,,4,2,0,0,17,1,22,5,4,0,4,0,0.23,349,bronze,unlimited_5g,north
C0000003,26,30.97,9.33,10,154,20,,8,4,0,0,9,1,0,2,1,0,,1,0.02,656,silver,basic,capital
C0000042,3,12.5,2.1,5,40,3,12,0,9,4,1,40,0,0,0,1,3,-2,0,0.81,0,gold,unlimited,capital
CNAN,,,,,,,,,,,,,,,,,,,,,,,,
CBIG,3.4e38,-3.4e38,1e-40,0,-0,3.4e38,1,1,1,1,1,1,1,1,1,1,1,10,1,1,3.4e38,platinum,prepaid_s,south
";

/// Any fixed instant: validity windows are part of the input.
const NOW_MS: i64 = 1_795_000_000_000;

pub fn store() -> &'static FeatureStore {
    static STORE: OnceLock<FeatureStore> = OnceLock::new();
    STORE.get_or_init(|| FeatureStore::from_csv_bytes(CSV.as_bytes(), "fuzz.csv").unwrap())
}

/// Offer models (`PUT /admin/models`, the models folder) and built-in fallback documents.
///
/// A model that compiles against a small fixed feature store is run through
/// `engine::decide` for every customer of the store (and an unknown and an absent one) on
/// every placement of every channel, with three contexts and three limits, and must give:
/// - ranked offers sorted by score (highest first), at most the limit, each a candidate of
///   the placement, each once, with a propensity in [0, 1] and a finite score that clears
///   the arbitration thresholds;
/// - explain: one verdict per offer; every ranked offer is `Scored` there with the same
///   numbers; the ranked list is exactly the top `limit` of the scored verdicts;
/// - the same answer with explain off, and the same answer again (determinism);
/// - an answer that encodes to valid JSON holding the ranked offers.
///
/// The same bytes go to `builtin_fallback_from_bytes`: whatever compiles encodes its content
/// as valid JSON arrays ranked 1..n, and looks up as compiled.
pub fn check_model(data: &[u8]) {
    check_builtin(data);
    let store = store();
    let Ok(lm) = from_bytes(
        data.to_vec(),
        None,
        "fuzz".into(),
        store,
        &Limits::default(),
    ) else {
        return;
    };
    let m = &lm.compiled;
    for name in m.features_used.iter() {
        assert!(
            store.column(name).is_some(),
            "feature `{name}` is not in the store"
        );
    }
    let numbers: Vec<(Cow<'_, str>, CtxValue<'_>)> = m
        .context_keys
        .iter()
        .enumerate()
        .map(|(i, k)| (Cow::Borrowed(&**k), CtxValue::Num(i as f64)))
        .collect();
    let strings: Vec<(Cow<'_, str>, CtxValue<'_>)> = m
        .context_keys
        .iter()
        .map(|k| (Cow::Borrowed(&**k), CtxValue::Str(Cow::Borrowed(&**k))))
        .collect();
    let customers: Vec<Option<&str>> = (0..store.len())
        .map(|r| store.id_at(r))
        .chain([Some("nobody"), None])
        .collect();
    for ch in m.channels.iter() {
        assert_json_array(&ch.fallback.offers_json);
        for slot in ch.slots.iter() {
            assert_json_array(&slot.fallback.offers_json);
            assert!((1..=MAX_LIMIT).contains(&slot.limit));
            for &c in slot.candidates.iter() {
                assert!((c as usize) < m.offers.len());
            }
            for &customer_id in &customers {
                for context in [&[][..], &numbers, &strings] {
                    for limit in [None, Some(1), Some(MAX_LIMIT)] {
                        let req = Request {
                            customer_id,
                            channel: &ch.name,
                            placement: &slot.placement,
                            limit,
                            context,
                            explain: true,
                            learnt: None,
                        };
                        check_decision(m, &req);
                    }
                }
            }
        }
    }
    // A placement the model does not know, and a channel it does not know.
    for (channel, placement) in [
        ("web", "fuzz-unknown-placement"),
        ("fuzz-unknown-channel", "x"),
    ] {
        let req = Request {
            customer_id: store.id_at(0),
            channel,
            placement,
            explain: true,
            ..Default::default()
        };
        if m.resolve(channel, placement).1.is_none() {
            let d = run(m, &req);
            assert_eq!(d.fallback, Some(FallbackReason::UnknownPlacement));
            assert!(d.ranked.is_empty());
            assert_eq!(d.explain.len(), m.offers.len());
            assert!(d.explain.iter().all(|v| matches!(v, Verdict::Excluded(_))));
        }
    }
}

fn run<'m>(m: &'m CompiledModel, req: &Request<'_>) -> Decision<'m> {
    decide(m, store(), req, &NoContacts, &Unbounded, NOW_MS)
}

fn check_decision(m: &CompiledModel, req: &Request<'_>) {
    let (_, slot) = m.resolve(req.channel, req.placement);
    let slot = slot.expect("every slot resolves by its own names");
    let limit = req.limit.unwrap_or(slot.limit).clamp(1, MAX_LIMIT);
    let d = run(m, req);
    let known = req.customer_id.and_then(|id| store().row(id)).is_some();

    // The fallback reason matches the request.
    match d.fallback {
        None => assert!(known && !d.ranked.is_empty()),
        Some(FallbackReason::UnknownCustomer) => assert!(!known),
        Some(FallbackReason::NoEligibleOffer) => assert!(known),
        Some(other) => panic!("unexpected fallback {other:?} without a deadline"),
    }
    if d.fallback.is_some() {
        assert!(d.ranked.is_empty());
    }

    // Ranked: sorted, bounded, candidates only, each once, sane numbers.
    assert!(
        d.ranked.len() <= limit,
        "{} offers for limit {limit}",
        d.ranked.len()
    );
    for w in d.ranked.windows(2) {
        assert!(
            w[0].score >= w[1].score,
            "not sorted by score: {} before {}",
            w[0].score,
            w[1].score
        );
    }
    for (i, r) in d.ranked.iter().enumerate() {
        assert!(
            slot.candidates.contains(&r.offer),
            "offer {} is not a candidate",
            r.offer
        );
        assert!(
            d.ranked[..i].iter().all(|o| o.offer != r.offer),
            "offer {} twice",
            r.offer
        );
        let offer = &m.offers[r.offer as usize];
        assert!(
            (0.0..=1.0).contains(&r.propensity),
            "propensity {}",
            r.propensity
        );
        assert!(r.score.is_finite(), "score {}", r.score);
        assert!(r.score >= m.arbitration.min_score);
        assert!(r.propensity >= m.arbitration.min_propensity);
        // The value is the customer's where the offer takes it from the snapshot.
        let row = req.customer_id.and_then(|id| store().exact_row(id));
        let value = row.map_or(offer.value, |row| offer.value_for(row));
        assert!(value.is_finite() && value >= 0.0, "value {value}");
        assert_eq!(r.score, r.propensity * value * offer.priority);
    }

    // Explain: one verdict per offer, ranked ones scored with the same numbers, and the
    // ranked list is exactly the top `limit` of the scored ones.
    assert_eq!(d.explain.len(), m.offers.len());
    let mut scored: Vec<(u32, f64, f64)> = Vec::new();
    for (oi, v) in d.explain.iter().enumerate() {
        if let Verdict::Scored {
            propensity, score, ..
        } = *v
        {
            assert!(
                slot.candidates.contains(&(oi as u32)),
                "offer {oi} scored off its placement"
            );
            scored.push((oi as u32, propensity, score));
        }
    }
    for r in &d.ranked {
        assert!(
            matches!(
                d.explain[r.offer as usize],
                Verdict::Scored { propensity, score, learnt: None, shown }
                    if propensity.to_bits() == r.propensity.to_bits()
                        && score.to_bits() == r.score.to_bits()
                        && shown > 0.0
                        && shown <= 1.0
            ),
            "a returned offer must be scored in explain, with its probability of being shown: {:?}",
            d.explain[r.offer as usize]
        );
    }
    if d.fallback.is_none() {
        scored.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(&b.0)));
        scored.truncate(limit);
        let top: Vec<u32> = scored.iter().map(|s| s.0).collect();
        let got: Vec<u32> = d.ranked.iter().map(|r| r.offer).collect();
        assert_eq!(
            got, top,
            "ranked is not the top {limit} of the scored offers"
        );
    } else {
        assert!(scored.is_empty(), "a fallback answer with scored offers");
    }

    // Determinism, and explain does not change the answer.
    let again = run(m, req);
    assert_eq!(again.ranked, d.ranked);
    assert_eq!(again.fallback, d.fallback);
    assert_eq!(again.explain, d.explain);
    let quiet = run(
        m,
        &Request {
            explain: false,
            ..*req
        },
    );
    assert_eq!(quiet.ranked, d.ranked);
    assert_eq!(quiet.fallback, d.fallback);
    assert!(quiet.explain.is_empty());

    // The answer encodes to valid JSON with the ranked offers in it.
    let mut out = Vec::new();
    let meta = AnswerMeta {
        decision_id: "01FUZZ",
        customer_id: req.customer_id,
        variant: "champion",
    };
    encode_decision(&mut out, &meta, m, &d);
    finish(&mut out, 1);
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap_or_else(|e| {
        panic!(
            "answer is not JSON ({e}): {}",
            String::from_utf8_lossy(&out)
        )
    });
    let offers = v["offers"].as_array().expect("offers is an array");
    if d.fallback.is_none() {
        assert_eq!(offers.len(), d.ranked.len());
        for (o, r) in offers.iter().zip(&d.ranked) {
            assert_eq!(
                o["offer_id"].as_str(),
                Some(&*m.offers[r.offer as usize].id)
            );
        }
    }
    assert_eq!(v["explain"].as_array().map(Vec::len), Some(m.offers.len()));
}

/// Pre-encoded fallback content: a JSON array of at most MAX_LIMIT items ranked 1..n.
fn assert_json_array(json: &str) {
    let v: serde_json::Value =
        serde_json::from_str(json).unwrap_or_else(|e| panic!("fallback is not JSON ({e}): {json}"));
    let items = v.as_array().expect("fallback content is an array");
    assert!(items.len() <= MAX_LIMIT);
    for (i, item) in items.iter().enumerate() {
        assert_eq!(item["rank"].as_u64(), Some(i as u64 + 1));
        assert!(item["offer_id"].is_string());
        assert!(item["content"].is_object());
    }
}

fn check_builtin(data: &[u8]) {
    let Ok(b) = builtin_fallback_from_bytes(data.to_vec()) else {
        return;
    };
    for ch in &b.channels {
        assert_json_array(&ch.default.offers_json);
        for (pl, fb) in &ch.placements {
            assert_json_array(&fb.offers_json);
            assert!(
                std::ptr::eq(b.lookup(&ch.name, pl), fb),
                "lookup of {}/{pl}",
                ch.name
            );
        }
        if !ch.placements.iter().any(|p| &*p.0 == "fuzz-unknown") {
            assert!(std::ptr::eq(
                b.lookup(&ch.name, "fuzz-unknown"),
                &ch.default
            ));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// features_csv

/// Feature snapshots in CSV: loads `data` and checks what loads.
pub fn check_features_csv(data: &[u8]) {
    check_csv_store(data, FeatureStore::from_csv_bytes(data, "fuzz.csv"));
}

/// Whenever the text loads:
/// - it holds exactly the records a plain `csv` reader sees (same trimming), in order: each
///   row's id looks up to that row, and its values are the fields parsed as `f32`, bit for
///   bit, with an empty field as NaN; every value is finite or NaN;
/// - its binary form reads back to the same store (ids, columns, value bits), and writing
///   that again gives the same bytes.
pub fn check_csv_store(data: &[u8], loaded: Result<FeatureStore, FeatureError>) {
    let Ok(store) = loaded else {
        return;
    };
    // The oracle: the records as the csv crate reads them, fields as written.
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::Headers)
        .from_reader(data);
    let header = reader.byte_headers().expect("header").clone();
    let columns: Vec<&str> = store.columns().iter().map(|c| &**c).collect();
    // Names without their kind suffix (`zip:str`, `tenure:num`), and the kind it forces.
    // Fields of columns marked `:skip` are not loaded.
    let kept: Vec<bool> = header
        .iter()
        .skip(1)
        .map(|h| {
            let h = std::str::from_utf8(h).expect("column names are UTF-8");
            !h.rsplit_once(':')
                .is_some_and(|(_, k)| k.eq_ignore_ascii_case("skip"))
        })
        .collect();
    let named: Vec<(&str, Option<bool>)> = header
        .iter()
        .skip(1)
        .zip(&kept)
        .filter(|(_, k)| **k)
        .map(|(h, _)| {
            let h = std::str::from_utf8(h).expect("column names are UTF-8");
            match h.rsplit_once(':') {
                Some((n, k)) if k.eq_ignore_ascii_case("str") => (n.trim_end(), Some(true)),
                Some((n, k)) if k.eq_ignore_ascii_case("num") => (n.trim_end(), Some(false)),
                _ => (h, None),
            }
        })
        .collect();
    let expected: Vec<&str> = named.iter().map(|(n, _)| *n).collect();
    assert_eq!(columns, expected);
    let width = columns.len();
    // Text columns: forced, or holding a field that is not a number; numbers never are.
    let mut not_numbers = vec![false; width];
    let mut rows = 0;
    for (r, record) in reader.byte_records().enumerate() {
        let record = record.expect("the store loaded, so every record reads");
        let id = std::str::from_utf8(&record[0]).expect("ids are UTF-8");
        assert_eq!(store.id_at(r), Some(id), "row {r}");
        let row = store.row(id).expect("every id looks up");
        assert_eq!(row.len(), width);
        let at = store.row_at(r).expect("row in range");
        assert!(
            std::ptr::eq(row, at),
            "id `{id}` looks up to another row than {r}"
        );
        let exact = store.exact_row(id).expect("every id looks up");
        let fields = record.iter().skip(1).zip(&kept).filter(|(_, k)| **k);
        for (c, ((field, _), &v)) in fields.zip(row).enumerate() {
            assert!(v.is_finite() || v.is_nan(), "row {r} column {c}: {v}");
            // A number: blanks around it allowed, finite as an f32; or a boolean word.
            let trimmed = std::str::from_utf8(field).map_or("", str::trim);
            let boolean = ["true", "false"]
                .iter()
                .any(|b| trimmed.eq_ignore_ascii_case(b));
            let number = boolean || trimmed.parse::<f64>().is_ok_and(|x| (x as f32).is_finite());
            not_numbers[c] |= !trimmed.is_empty() && !number;
            if let Some(d) = store.dictionary(c) {
                // A text cell is its field, exactly; an empty field is missing.
                let text = std::str::from_utf8(field).expect("text is UTF-8");
                assert_eq!(
                    d.value_of(v),
                    (!field.is_empty()).then_some(text),
                    "row {r} column {c}"
                );
                assert_eq!(v.is_nan(), field.is_empty(), "row {r} column {c}");
                continue;
            }
            // The f64 the text means, as the libraries read it; the row keeps its f32, and
            // the exact row the f64 itself (below f32's normal range, the f32).
            let want = if trimmed.is_empty() {
                f64::NAN
            } else if boolean {
                f64::from(u8::from(trimmed.eq_ignore_ascii_case("true")))
            } else {
                trimmed.parse::<f64>().expect("a loaded value parses")
            };
            assert_eq!(v.to_bits(), (want as f32).to_bits(), "row {r} column {c}");
            let want_exact = if want.abs() < f64::from(f32::MIN_POSITIVE) {
                f64::from(v)
            } else {
                want
            };
            assert_eq!(
                exact.f64(c).to_bits(),
                want_exact.to_bits(),
                "row {r} column {c}"
            );
        }
        rows += 1;
    }
    assert_eq!(store.len(), rows);
    for (c, (name, forced)) in named.iter().enumerate() {
        let text = store.dictionary(c).is_some();
        assert_eq!(text, forced.unwrap_or(not_numbers[c]), "column `{name}`");
        if let Some(d) = store.dictionary(c) {
            // Sorted, distinct, and every value used by some row.
            let values: Vec<&str> = d.iter().collect();
            assert!(values.windows(2).all(|w| w[0] < w[1]), "column `{name}`");
            let used = (0..rows)
                .filter_map(|r| store.row_at(r).map(|row| row[c]))
                .filter(|v| !v.is_nan())
                .map(|v| v as usize)
                .collect::<std::collections::BTreeSet<_>>();
            assert_eq!(used.len(), d.len(), "column `{name}`");
        }
    }
    assert!(store.row_at(rows).is_none() || width == 0);
    assert!(store.id_at(rows).is_none());

    // The binary form reads back bit for bit.
    let nbf = store.to_nbf_bytes();
    let back = FeatureStore::from_nbf_bytes(&nbf, "fuzz.nbf").expect("own binary form reads");
    assert_eq!(back.columns(), store.columns());
    for c in 0..width {
        assert_eq!(back.dictionary(c), store.dictionary(c), "column {c}");
    }
    assert_eq!(back.len(), store.len());
    for r in 0..store.len() {
        let id = store.id_at(r).expect("row has an id");
        assert_eq!(back.id_at(r), Some(id));
        let (a, b) = (store.exact_row(id).unwrap(), back.exact_row(id).unwrap());
        assert_eq!(a.values().len(), b.values().len());
        assert!(
            (0..a.values().len()).all(|c| a.f64(c).to_bits() == b.f64(c).to_bits()
                && a.f32(c).to_bits() == b.f32(c).to_bits()),
            "row {r}"
        );
    }
    assert_eq!(back.to_nbf_bytes(), nbf);
}

// ---------------------------------------------------------------------------------------------
// features_nbf

/// Feature snapshots in the binary form: reads each of [`nbf_inputs`] and checks what reads.
pub fn check_features_nbf(data: &[u8]) {
    for input in nbf_inputs(data) {
        check_nbf_store(&input, FeatureStore::from_nbf_bytes(&input, "fuzz.nbf"));
    }
}

/// The input as it is, and the input with its last four bytes replaced by the right CRC-32 of
/// the rest: a mutated file almost never has a valid checksum, and without this second form
/// the fuzzer would never get past the checksum to the checks behind it.
pub fn nbf_inputs(data: &[u8]) -> Vec<Vec<u8>> {
    let mut out = vec![data.to_vec()];
    if let Some(body) = data.len().checked_sub(4).map(|n| &data[..n]) {
        let mut fixed = body.to_vec();
        fixed.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
        if fixed != data {
            out.push(fixed);
        }
    }
    out
}

/// Whenever the bytes read:
/// - every value is finite or NaN (missing), as the CSV loader guarantees;
/// - every row's id looks up to that row;
/// - what reads is canonical: writing the store again gives the very same bytes (nothing in
///   the file is ignored); a version 1, 2 or 3 file is rewritten as version 4, which reads
///   back to the same store and writes the same bytes again.
pub fn check_nbf_store(data: &[u8], loaded: Result<FeatureStore, FeatureError>) {
    let Ok(store) = loaded else {
        return;
    };
    for r in 0..store.len() {
        let id = store.id_at(r).expect("every row has an id");
        assert!(!id.is_empty());
        let row = store.row(id).expect("every id looks up");
        let at = store.row_at(r).expect("row in range");
        assert!(std::ptr::eq(row, at), "id `{id}` looks up to another row");
        let exact = store.exact_row(id).expect("every id looks up");
        for (c, v) in row.iter().enumerate() {
            assert!(v.is_finite() || v.is_nan(), "row {r} column {c}: {v}");
            if let Some(d) = store.dictionary(c) {
                assert!(
                    v.is_nan() || d.value_of(*v).is_some(),
                    "row {r} column {c}: {v}"
                );
            }
            // The exact value is the f32's own or one that rounds to it.
            let x = exact.f64(c);
            assert!(
                (x as f32).to_bits() == v.to_bits() || (v.is_nan() && x.is_nan()),
                "row {r} column {c}: {x:e}"
            );
        }
    }
    assert!(store.id_at(store.len()).is_none());
    let again = store.to_nbf_bytes();
    if data.starts_with(b"NBF4") {
        assert_eq!(again, data, "the file holds bytes the reader ignored");
    } else {
        // Versions 1 to 3 are rewritten as version 4, which reads back to the same store.
        let back = FeatureStore::from_nbf_bytes(&again, "again.nbf").expect("rewrite reads");
        assert_eq!(back.len(), store.len());
        assert_eq!(back.columns(), store.columns());
        for r in 0..store.len() {
            let (a, b) = (store.row_at(r).unwrap(), back.row_at(r).unwrap());
            assert!(
                a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()),
                "row {r}"
            );
            assert_eq!(store.id_at(r), back.id_at(r));
        }
        assert_eq!(back.to_nbf_bytes(), again);
    }
}

// ---------------------------------------------------------------------------------------------
// events

/// The server's clock for the events target: any fixed instant (2026-11-22T07:06:40Z).
pub const EVENTS_NOW_MS: i64 = 1_795_331_200_000;

/// `POST /v1/events` bodies, and the event log's record framing and payloads:
/// - the body as the handler reads it (`simd_json::to_borrowed_value`, then
///   `server::events::validate_batch`): see [`check_event_batch`];
/// - the bytes as a log segment body (`contact::log::scan`): see [`check_log_scan`];
/// - the bytes as one record payload (`Event::decode`): see [`check_event_payload`].
pub fn check_events(data: &[u8]) {
    check_event_batch(data);
    check_log_scan(data);
    check_event_payload(data);
}

/// Whenever a body validates (no element breaks the schema):
/// - accepted + rejected = the batch's length, the rejected indices ascending and in range,
///   and each index's element is refused by `Event::from_json` alone (no others);
/// - every accepted event has a known type, a customer_id of 1 to 256 characters, an offer_id
///   when its type needs one, every optional string non-empty and within its bound, a time
///   in [1970, now + 5 min];
/// - where serde_json also reads the body, the event's strings are the element's strings
///   (simd-json unescapes in place: this catches a mis-unescaped string);
/// - each accepted event's log record (`push_record` + `Event::encode`) fits, decodes back to
///   the same event, and the whole batch's records scan back as exactly those events; cut
///   anywhere (a torn write), they scan as exactly the records before the cut, stopped at
///   the last whole record; followed by arbitrary bytes (the input), they scan as the events
///   followed by what those bytes scan as on their own.
pub fn check_event_batch(data: &[u8]) {
    use nextbest::contact::event::{
        EventFault, MAX_CATEGORY, MAX_CUSTOMER_ID, MAX_FUTURE_MS, MAX_NAME,
    };
    use nextbest::contact::{Event, EventKind};
    use nextbest::server::events::{validate_batch, MAX_BATCH};

    let mut body = data.to_vec();
    let Ok(doc) = simd_json::to_borrowed_value(&mut body) else {
        return;
    };
    let Ok(batch) = validate_batch(&doc, EVENTS_NOW_MS) else {
        return;
    };
    let items = {
        use simd_json::prelude::*;
        doc.get("events")
            .and_then(|v| v.as_array())
            .expect("a batch validated, so `events` is an array")
    };
    assert!(items.len() <= MAX_BATCH);
    assert_eq!(batch.events.len() + batch.rejected.len(), items.len());
    let mut accepted = batch.events.iter();
    let mut refused = batch.rejected.iter().peekable();
    for (i, item) in items.iter().enumerate() {
        let alone = Event::from_json(item, EVENTS_NOW_MS);
        if refused.peek().map(|r| r.0) == Some(i) {
            let (_, why) = refused.next().unwrap();
            assert!(
                matches!(alone.as_ref().err(), Some(EventFault::Refused(m)) if m == why),
                "element {i}: {alone:?}"
            );
        } else {
            let e = accepted
                .next()
                .expect("fewer accepted events than elements");
            assert_eq!(alone.as_ref(), Ok(e), "element {i}");
        }
    }
    assert!(
        refused.next().is_none(),
        "rejected indices out of order or range"
    );

    let serde_items = serde_json::from_slice::<serde_json::Value>(data)
        .ok()
        .and_then(|v| v.get("events")?.as_array().cloned());
    let oracle: Vec<Option<serde_json::Value>> = match serde_items {
        Some(v) if v.len() == items.len() => v.into_iter().map(Some).collect(),
        _ => vec![None; items.len()],
    };
    let accepted_at: Vec<usize> = (0..items.len())
        .filter(|i| batch.rejected.iter().all(|r| r.0 != *i))
        .collect();

    for (e, &i) in batch.events.iter().zip(&accepted_at) {
        assert!(EventKind::ALL.contains(&e.kind));
        assert!(
            (1..=MAX_CUSTOMER_ID).contains(&e.customer_id.chars().count()),
            "customer_id of {} characters",
            e.customer_id.chars().count()
        );
        assert!(
            !e.kind.needs_offer() || e.offer_id.is_some(),
            "{:?} without an offer_id",
            e.kind
        );
        for (name, s, max) in [
            ("offer_id", e.offer_id, MAX_NAME),
            ("channel", e.channel, MAX_NAME),
            ("placement", e.placement, MAX_NAME),
            ("event_id", e.event_id, MAX_NAME),
            ("category", e.category, MAX_CATEGORY),
        ] {
            if let Some(s) = s {
                let n = s.chars().count();
                assert!((1..=max).contains(&n), "{name} of {n} characters");
            }
        }
        assert!(
            (0..=EVENTS_NOW_MS + MAX_FUTURE_MS).contains(&e.ts_ms),
            "ts {}",
            e.ts_ms
        );
        if let Some(Some(obj)) = oracle
            .get(i)
            .map(|o| o.as_ref().and_then(|v| v.as_object()))
        {
            // simd-json keeps duplicate keys where serde_json keeps the last: compare only
            // objects both read with the same number of keys.
            let simd_len = {
                use simd_json::prelude::*;
                items[i].as_object().map(|o| o.len())
            };
            if simd_len == Some(obj.len()) {
                let s = |k: &str| obj.get(k).and_then(|x| x.as_str());
                assert_eq!(s("type"), Some(e.kind.as_str()), "element {i}");
                assert_eq!(s("customer_id"), Some(e.customer_id), "element {i}");
                for (k, v) in [
                    ("offer_id", e.offer_id),
                    ("channel", e.channel),
                    ("placement", e.placement),
                    ("event_id", e.event_id),
                    ("category", e.category),
                ] {
                    assert_eq!(s(k), v, "element {i}: {k}");
                }
            }
        }
    }

    // The log records of the accepted events.
    let mut records = Vec::new();
    let mut ends = Vec::new();
    for e in &batch.events {
        let mut one = Vec::new();
        assert!(
            nextbest::contact::log::push_record(&mut one, |out| e.encode(out)),
            "an accepted event does not fit one record"
        );
        let payload = &one[nextbest::contact::log::RECORD_HEADER..];
        assert_eq!(
            Event::decode(payload).as_ref(),
            Ok(e),
            "record does not decode back"
        );
        records.extend_from_slice(&one);
        ends.push(records.len());
    }
    let scanned = scan_events(&records);
    assert_eq!(scanned.0, *batch.events, "the batch's records scan back");
    assert_eq!((scanned.1, scanned.2), (records.len(), None));

    // Torn tails: every cut inside the last two records and at a few places before.
    let mut cuts: Vec<usize> = ends
        .iter()
        .flat_map(|&end| {
            [
                end.saturating_sub(1),
                end.saturating_sub(9),
                end + 1,
                end + 8,
            ]
        })
        .filter(|&c| c < records.len())
        .collect();
    let tail_from = ends.len().checked_sub(3).map_or(0, |k| ends[k]);
    cuts.extend(tail_from..records.len());
    for cut in cuts {
        let whole = ends.iter().take_while(|&&end| end <= cut).count();
        let (events, at, bad) = scan_events(&records[..cut]);
        assert_eq!(events, batch.events[..whole], "cut at {cut}");
        assert_eq!(
            at,
            ends.get(whole.wrapping_sub(1))
                .copied()
                .unwrap_or(0)
                .min(cut)
        );
        assert_eq!(bad.is_some(), at < cut, "cut at {cut}");
    }

    // Followed by garbage: the events, then exactly what the garbage scans as on its own.
    let mut joined = records.clone();
    joined.extend_from_slice(data);
    let (both, at, bad) = scan_events(&joined);
    let (alone, alone_at, alone_bad) = scan_events(data);
    assert_eq!(both[..batch.events.len()], *batch.events);
    assert_eq!(both[batch.events.len()..], *alone);
    assert_eq!((at, bad), (records.len() + alone_at, alone_bad));
}

/// Scans `bytes` as a segment body: the events whose payloads decode, the offset after the last
/// good record and why the scan stopped early.
fn scan_events(
    bytes: &[u8],
) -> (
    Vec<nextbest::contact::Event<'_>>,
    usize,
    Option<nextbest::contact::log::Bad>,
) {
    let mut events = Vec::new();
    let (at, bad) = nextbest::contact::log::scan(bytes, |payload| {
        // A payload borrowed from `bytes`: find it there to keep the lifetime.
        let start = payload.as_ptr() as usize - bytes.as_ptr() as usize;
        let payload = &bytes[start..start + payload.len()];
        if let Ok(e) = nextbest::contact::Event::decode(payload) {
            events.push(e);
        }
    });
    (events, at, bad)
}

/// Arbitrary bytes as a segment body: the scan stops within the bytes, at the end exactly when
/// nothing was wrong; the records it reports, framed again, are exactly the bytes up to where it
/// stopped; and what stopped it is really there (a short header or payload, a length of 0 or
/// over the maximum, or a checksum that does not match).
pub fn check_log_scan(data: &[u8]) {
    use nextbest::contact::log::{push_record, scan, Bad, MAX_RECORD, RECORD_HEADER};
    let mut framed = Vec::new();
    let (at, bad) = scan(data, |payload| {
        assert!(push_record(&mut framed, |out| out.extend_from_slice(payload)));
    });
    assert!(at <= data.len());
    assert_eq!(bad.is_none(), at == data.len());
    assert_eq!(framed, data[..at], "scanned records reframe to other bytes");
    let rest = &data[at..];
    match bad {
        None => {}
        Some(Bad::Truncated) => {
            let len = rest
                .get(..4)
                .map(|h| u32::from_le_bytes(h.try_into().unwrap()) as usize);
            assert!(rest.len() < RECORD_HEADER || rest.len() < RECORD_HEADER + len.unwrap());
        }
        Some(Bad::Length) => {
            let len = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
            assert!(len == 0 || len > MAX_RECORD, "length {len}");
        }
        Some(Bad::Checksum) => {
            let len = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
            let crc = u32::from_le_bytes(rest[4..8].try_into().unwrap());
            assert_ne!(crc32fast::hash(&rest[8..8 + len]), crc);
        }
    }
}

/// Arbitrary bytes as one record payload: decoding never panics, and whatever decodes encodes
/// to a payload that decodes to the same event again.
pub fn check_event_payload(data: &[u8]) {
    use nextbest::contact::Event;
    if let Ok(e) = Event::decode(data) {
        let mut out = Vec::new();
        e.encode(&mut out);
        assert_eq!(Event::decode(&out), Ok(e), "decode, encode, decode differs");
    }
}

// ---------------------------------------------------------------------------------------------
// xgboost, lightgbm

/// The features of `tests/fixtures/trees/inputs.csv`, in its column order; the resolver maps
/// them to columns 0..10 and every other name to none.
pub const TREE_FEATURES: [&str; 10] = [
    "tenure_months",
    "arpu_30d",
    "data_gb_30d",
    "days_since_last_topup",
    "app_sessions_7d",
    "complaints_90d",
    "is_prepaid",
    "device_age_months",
    "roaming_days_90d",
    "nps_score",
];

fn tree_resolve(name: &str) -> Option<u32> {
    TREE_FEATURES
        .iter()
        .position(|&f| f == name)
        .map(|i| i as u32)
}

/// The features of `tests/fixtures/categorical`: after the 10 above, columns 10..16; segment,
/// plan and region hold text (their dictionaries below), the rest numbers.
pub const CATEGORICAL_FEATURES: [&str; 6] =
    ["tenure", "arpu", "segment", "plan", "region", "device_code"];

/// Every column a tree model may read: [`TREE_FEATURES`], then [`CATEGORICAL_FEATURES`].
pub const TREE_COLUMNS: usize = TREE_FEATURES.len() + CATEGORICAL_FEATURES.len();

/// A store whose text columns give the categorical features their dictionaries.
fn tree_store() -> &'static FeatureStore {
    static STORE: OnceLock<FeatureStore> = OnceLock::new();
    STORE.get_or_init(|| {
        let csv = "customer_id,segment,plan,region\n\
                   A,bronze,basic,capital\nB,silver,family,north\nC,gold,prepaid_s,south\n\
                   D,platinum,unlimited,islands\nE,diamond,unlimited_5g,\n";
        FeatureStore::from_csv_bytes(csv.as_bytes(), "trees.csv").unwrap()
    })
}

/// Resolves the numeric names to columns 0..10, and the categorical fixtures' names to
/// columns 10..16 (text ones with their dictionaries).
pub fn tree_column(name: &str) -> Option<nextbest::model::bind::Column<'static>> {
    use nextbest::model::bind::Column;
    if let Some(i) = tree_resolve(name) {
        return Some(Column::number(i));
    }
    let i = CATEGORICAL_FEATURES.iter().position(|&f| f == name)?;
    let store = tree_store();
    Some(Column {
        index: (TREE_FEATURES.len() + i) as u32,
        info: store.column(name).and_then(|c| store.dictionary(c)).map_or(
            nextbest::model::ColumnInfo::Number,
            nextbest::model::ColumnInfo::Strings,
        ),
        turned: None,
    })
}

/// Rows scored by every ensemble that builds: three from `inputs.csv` (missing values
/// included), then all-missing, zeros, -0, subnormals, +-inf, +-f32::MAX, a mix, a short row
/// (the rest reads as missing) and an empty one.
pub fn tree_rows() -> Vec<Vec<f32>> {
    let n = f32::NAN;
    let mut rows = vec![
        vec![38.0, 10.6, 3.573, 57.0, 4.0, 0.0, 0.0, 32.5, 0.0, -1.5],
        vec![10.0, 20.14, 2.4255002, 19.0, 0.0, 0.0, 1.0, 7.0, 0.0, n],
        vec![83.99999, 0.0, n, 86.0, 5.0, 0.0, 1.0, n, 0.0, -7.5],
    ];
    for v in [
        f32::NAN,
        0.0,
        -0.0,
        1e-40,
        -1e-40,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::MAX,
        -f32::MAX,
    ] {
        rows.push(vec![v; TREE_FEATURES.len()]);
    }
    rows.push(vec![
        f32::INFINITY,
        -1e30,
        n,
        0.0,
        1e-36,
        -f32::MAX,
        1.0,
        f32::NEG_INFINITY,
        -0.0,
        3e38,
    ]);
    rows.push(vec![1.0, 2.0, 3.0]);
    rows.push(Vec::new());
    // Rows reaching the categorical columns: every code of each text column (and one past
    // them), missing text, and integer, negative, fractional and huge category numbers.
    for k in 0..7 {
        let mut row = vec![n; TREE_FEATURES.len()];
        let code = |len: usize| if k < len + 1 { k as f32 } else { n };
        row.extend([
            k as f32 * 12.0,
            40.0 - k as f32,
            code(5),
            code(5),
            code(4),
            [0.0, 1.0, 9.0, -1.0, 2.7, 1e9, n][k],
        ]);
        rows.push(row);
    }
    rows
}

/// XGBoost JSON models, with their own feature names and with the fixed names passed in (as a
/// scorer spec would), over numeric and text columns: see [`check_ensemble`].
pub fn check_xgboost(data: &[u8]) {
    use nextbest::model::xgboost::{parse_xgboost, parse_xgboost_model, Spec};
    let names: Vec<String> = TREE_FEATURES.iter().map(|s| s.to_string()).collect();
    for given in [None, Some(&names[..])] {
        if let Ok(e) = parse_xgboost(data, given, &tree_resolve) {
            check_ensemble(&e);
        }
    }
    if let Ok((e, _)) = parse_xgboost_model(data, &Spec::default(), &tree_column) {
        check_ensemble(&e);
    }
}

/// LightGBM text models (UTF-8 only, as the model loader requires), over numeric and text
/// columns: see [`check_ensemble`].
pub fn check_lightgbm(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(e) = nextbest::model::lightgbm::parse_lightgbm(text, &tree_resolve) {
        check_ensemble(&e);
    }
    if let Ok((e, _)) = nextbest::model::lightgbm::parse_lightgbm_model(text, None, &tree_column) {
        check_ensemble(&e);
    }
}

/// Whenever a model builds: 1..=MAX_TREES trees, at most MAX_NODES_PER_TREE nodes each, only
/// resolvable columns read; on every row of [`tree_rows`] (infinite and extreme values
/// included) the margin is finite and the probability finite and in [0, 1], the same twice.
pub fn check_ensemble(e: &nextbest::engine::trees::TreeEnsemble) {
    use nextbest::engine::trees::{MAX_NODES_PER_TREE, MAX_TREES};
    assert!(
        (1..=MAX_TREES).contains(&e.n_trees()),
        "{} trees",
        e.n_trees()
    );
    assert!(e.n_nodes() >= e.n_trees());
    assert!(
        e.n_nodes() <= e.n_trees() * MAX_NODES_PER_TREE,
        "{} nodes in {} trees",
        e.n_nodes(),
        e.n_trees()
    );
    assert!(e.columns().iter().all(|&c| (c as usize) < TREE_COLUMNS));
    assert!(e.columns().windows(2).all(|w| w[0] < w[1]));
    let mut classes = vec![0.0; e.n_classes()];
    for row in tree_rows() {
        let margin = e.margin(&row);
        let p = e.predict(&row);
        assert!(margin.is_finite(), "margin {margin} for {row:?}");
        assert!((0.0..=1.0).contains(&p), "probability {p} for {row:?}");
        assert_eq!(p.to_bits(), e.predict(&row).to_bits());
        assert_eq!(margin.to_bits(), e.margin(&row).to_bits());
        // Every class's probability in [0, 1]; the first is what `predict` says.
        e.predict_classes(&row, &mut classes);
        assert!(
            classes.iter().all(|p| (0.0..=1.0).contains(p)),
            "{classes:?} for {row:?}"
        );
        assert_eq!(classes[0].to_bits(), p.to_bits(), "{row:?}");
    }
}
