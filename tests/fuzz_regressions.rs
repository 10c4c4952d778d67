//! Inputs the fuzzers found, replayed through the same property checks the fuzz targets run
//! (`fuzz/checks.rs`), so each fix stays fixed without a nightly toolchain.

#[path = "../fuzz/checks.rs"]
mod checks;

/// The seed corpora hold only inputs every check passes: a quick sanity run of all seven.
#[test]
fn seed_corpora_pass_their_checks() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    type Check = fn(&[u8]);
    let targets: [(&str, Check); 7] = [
        ("decide_request", checks::check_decide_request),
        ("model", checks::check_model),
        ("features_csv", checks::check_features_csv),
        ("features_nbf", checks::check_features_nbf),
        ("events", checks::check_events),
        ("xgboost", checks::check_xgboost),
        ("lightgbm", checks::check_lightgbm),
    ];
    for (target, check) in targets {
        let mut seen = 0;
        for entry in std::fs::read_dir(root.join(target)).unwrap() {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            let name = path.display().to_string();
            let outcome = std::panic::catch_unwind(|| check(&data));
            assert!(outcome.is_ok(), "{name} fails its check");
            seen += 1;
        }
        assert!(seen >= 5, "{target}: only {seen} seeds");
    }
}

/// The valid seeds really are valid, so the fuzzer starts from models that reach the engine
/// and from snapshots that load.
#[test]
fn valid_seeds_compile_and_load() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    for name in [
        "demo_full.json",
        "demo_three_offers.json",
        "small_valid.json",
        "strings.json",
    ] {
        let doc = std::fs::read(root.join("model").join(name)).unwrap();
        let limits = nextbest::model::Limits::default();
        let model = nextbest::model::from_bytes(doc, None, name.into(), checks::store(), &limits);
        assert!(model.is_ok(), "{name}: {:?}", model.err());
    }
    let builtin = std::fs::read(root.join("model/builtin_fallback.json")).unwrap();
    assert!(nextbest::model::builtin_fallback_from_bytes(builtin).is_ok());
    for name in [
        "demo_slice.csv",
        "missing_values.csv",
        "only_ids.csv",
        "quoted_crlf.csv",
        "strings.csv",
    ] {
        let csv = std::fs::read(root.join("features_csv").join(name)).unwrap();
        assert!(
            nextbest::features::FeatureStore::from_csv_bytes(&csv, name).is_ok(),
            "{name}"
        );
    }
    for name in ["two_rows", "no_columns", "empty", "demo_like", "strings_v3"] {
        let nbf = std::fs::read(root.join("features_nbf").join(name)).unwrap();
        assert!(
            nextbest::features::FeatureStore::from_nbf_bytes(&nbf, name).is_ok(),
            "{name}"
        );
    }
    let resolve = |name: &str| checks::TREE_FEATURES.iter().position(|&f| f == name);
    let resolve = |name: &str| resolve(name).map(|i| i as u32);
    let names: Vec<String> = checks::TREE_FEATURES.map(String::from).to_vec();
    for name in [
        "binary_2_trees.json",
        "nonames_2_trees.json",
        "pruned_2_trees.json",
        "reg_logistic_2_trees.json",
        "v2_binary_2_trees.json",
        "big_leaves.json",
    ] {
        let doc = std::fs::read(root.join("xgboost").join(name)).unwrap();
        let given = name.starts_with("nonames").then_some(&names[..]);
        let e = nextbest::model::xgboost::parse_xgboost(&doc, given, &resolve);
        assert!(e.is_ok(), "{name}: {:?}", e.err());
    }
    for name in [
        "lgb_binary_2_trees.txt",
        "lgb_zero_missing_2_trees.txt",
        "edge.txt",
        "big_leaves.txt",
        "one_leaf.txt",
    ] {
        let text = std::fs::read_to_string(root.join("lightgbm").join(name)).unwrap();
        let e = nextbest::model::lightgbm::parse_lightgbm(&text, &resolve);
        assert!(e.is_ok(), "{name}: {:?}", e.err());
    }
    // The categorical and multiclass seeds, over the text columns `checks` gives them.
    for name in ["categorical_2_trees.json", "softprob_1_iteration.json"] {
        let doc = std::fs::read(root.join("xgboost").join(name)).unwrap();
        let spec = nextbest::model::xgboost::Spec::default();
        let e = nextbest::model::xgboost::parse_xgboost_model(&doc, &spec, &checks::tree_column);
        assert!(e.is_ok(), "{name}: {:?}", e.err());
        checks::check_xgboost(&doc);
    }
    for name in [
        "lgb_categorical_2_trees.txt",
        "lgb_multiclass_1_iteration.txt",
    ] {
        let text = std::fs::read_to_string(root.join("lightgbm").join(name)).unwrap();
        let e = nextbest::model::lightgbm::parse_lightgbm_model(&text, None, &checks::tree_column);
        assert!(e.is_ok(), "{name}: {:?}", e.err());
        checks::check_lightgbm(text.as_bytes());
    }
    for (name, accepted) in [("readme_impression.json", 1), ("mixed_types.json", 3)] {
        let mut body = std::fs::read(root.join("events").join(name)).unwrap();
        let doc = simd_json::to_borrowed_value(&mut body).unwrap();
        let batch = nextbest::server::events::validate_batch(&doc, checks::EVENTS_NOW_MS).unwrap();
        assert_eq!(
            (batch.events.len(), batch.rejected.len()),
            (accepted, 0),
            "{name}"
        );
    }
}

/// features_nbf, 2026-11-22: a snapshot followed by one stray byte after its checksum read as
/// if the byte were not there (a file with data appended, or two files run together).
#[test]
fn nbf_with_bytes_after_the_checksum_is_refused() {
    let data = b"NBF1\x02\0\0\0\0\0\0\0\0\0\0\0\x04\0\0\0\0\0\0\0C1C2\x02\0\0\0\x04\0\0\0\x58\x8e\xd3\xea\xf1";
    checks::check_features_nbf(data);
    let err = nextbest::features::FeatureStore::from_nbf_bytes(data, "t.nbf").unwrap_err();
    assert!(err.to_string().contains("after the checksum"), "{err}");
    // Without the stray byte it is a valid snapshot of two customers and no columns.
    let store =
        nextbest::features::FeatureStore::from_nbf_bytes(&data[..data.len() - 1], "t.nbf").unwrap();
    assert_eq!((store.len(), store.id_at(1)), (2, Some("C2")));
}

/// features_nbf, 2026-11-22: a snapshot of no customers whose id arena still held 4 bytes
/// (here with a valid checksum) read as empty; the arena must end where the last id ends.
#[test]
fn nbf_with_unused_id_bytes_is_refused() {
    let raw = b"NBF1\0\0\0\0\0\0\0\0\x02\0\0\0\x01\0c\x01\0b\x04\0\0\0\0\0\0\0NBF\x1b\0\0\0C";
    checks::check_features_nbf(raw);
    let inputs = checks::nbf_inputs(raw);
    let err = nextbest::features::FeatureStore::from_nbf_bytes(&inputs[1], "t.nbf").unwrap_err();
    assert!(err.to_string().contains("no customer_id uses"), "{err}");
}

/// features_nbf, 2026-11-22: a binary snapshot holding +inf (as f32 bits) loaded, though the
/// CSV loader refuses any infinite value; the engine relies on finite-or-missing features.
#[test]
fn nbf_with_an_infinite_value_is_refused() {
    let raw = b"NBF1\x02\0\0\0\0\0\0\0\x02\0\0\0\x01\0a\x01\0b\x04\0\0\0\0\0\0\0C1C2\x02\0\0\0\x04\0\0\0\0\0\xc0?\0\0\xc0\x7f\0\0\x80\x7f\0\0\xff@\x9cV]\x8f";
    checks::check_features_nbf(raw);
    let inputs = checks::nbf_inputs(raw);
    let err = nextbest::features::FeatureStore::from_nbf_bytes(&inputs[1], "t.nbf").unwrap_err();
    assert!(err.to_string().contains("row 1, column `a`: inf"), "{err}");
}

/// model (and the arbitration property test), 2026-11-22: logistic weights of +-f64::MAX, which
/// a model may hold, overflowed to +inf and -inf for some customers and summed to NaN. The NaN
/// propensity passed every threshold (comparisons with NaN are false) and NaN sorted above
/// every score, so the offer took the first rank, served with score 0. The seed
/// `fuzz/corpus/model/extreme_numbers.json` holds such a model.
#[test]
fn nan_propensity_never_ranks() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read(root.join("fuzz/corpus/model/extreme_numbers.json")).unwrap();
    checks::check_model(&doc);
}

/// xgboost and lightgbm, 2026-11-22 (found writing the targets' finite-margin property,
/// confirmed by their checks on hand-made inputs before the fuzzers reached it): every leaf
/// was finite, but two trees of leaves near the top of the range summed to +inf (f32 for
/// XGBoost, f64 for LightGBM), so `margin` was infinite and the probability saturated at 0 or 1
/// whatever the other trees said. Such models are now refused at load.
#[test]
fn leaves_whose_sum_overflows_the_margin_are_refused() {
    let tree = r#"{"tree_param":{"num_nodes":"1"},"left_children":[-1],"right_children":[-1],
        "split_indices":[0],"split_conditions":[3E38],"default_left":[0]}"#;
    let xgb = format!(
        r#"{{"learner":{{"feature_names":["tenure_months"],"objective":{{"name":"binary:logistic"}},
        "learner_model_param":{{"base_score":"5E-1"}},
        "gradient_booster":{{"name":"gbtree","model":{{"trees":[{tree},{tree}]}}}}}}}}"#
    );
    checks::check_xgboost(xgb.as_bytes());
    let err = nextbest::model::xgboost::parse_xgboost(xgb.as_bytes(), None, &|_| Some(0))
        .unwrap_err()
        .to_string();
    assert!(err.contains("summed in (f32"), "{err}");
    // One tree of leaves within half the range is fine.
    let one = xgb.replace(&format!(",{tree}"), "").replace("3E38", "1E38");
    checks::check_xgboost(one.as_bytes());
    assert!(nextbest::model::xgboost::parse_xgboost(one.as_bytes(), None, &|_| Some(0)).is_ok());

    let lgb = "tree\nobjective=binary sigmoid:1\nfeature_names=tenure_months\n\n\
        Tree=0\nnum_leaves=1\nleaf_value=1e308\n\nTree=1\nnum_leaves=1\nleaf_value=1e308\n\n\
        end of trees\n";
    checks::check_lightgbm(lgb.as_bytes());
    let err = nextbest::model::lightgbm::parse_lightgbm(lgb, &|_| Some(0))
        .unwrap_err()
        .to_string();
    assert!(err.contains("summed in (f64"), "{err}");
}

/// decide_request, 2026-11-22: a JSON array of strings decoded as a decide request, its
/// elements taken positionally as customer_id, channel and placement (serde's derived struct
/// reads sequences too), where the contract and every other JSON reader see no fields at all.
/// Arrays at the top are now refused.
#[test]
fn decide_request_as_an_array_is_refused() {
    let data = br#"["+{t=d(","men21&cd(","men21&++++{=w&bplea+z"]"#;
    checks::check_decide_request(data);
    let mut scratch = Vec::new();
    let err = nextbest::server::codec::decode_json(data, &mut scratch).unwrap_err();
    assert!(err.to_string().contains("found an array"), "{err}");
    let plain = br#" ["C1", "web", "home", 3, {}, true]"#;
    assert!(nextbest::server::codec::decode_json(plain, &mut scratch).is_err());
}

/// features_nbf, 2026-12-04: a version 2 snapshot whose residual for a -0.0 value is negative
/// overflowed the residual's addition to the value's bits (a debug build panicked); it is
/// refused as damaged.
#[test]
fn nbf_residual_beyond_the_bit_range_is_refused() {
    let raw = include_bytes!("../fuzz/corpus/features_nbf/v2_residual_on_negative_zero");
    checks::check_features_nbf(raw);
    for input in checks::nbf_inputs(raw) {
        if let Err(e) = nextbest::features::FeatureStore::from_nbf_bytes(&input, "t.nbf") {
            let e = e.to_string();
            assert!(e.contains("residual") || e.contains("checksum"), "{e}");
        }
    }
}

/// model, 2026-12-04: a built-in fallback document naming the channel `app` twice compiled to
/// two channels of that name, and a lookup found the first's content for the second's
/// placements; a key written twice is now one channel.
#[test]
fn builtin_fallback_with_a_channel_written_twice_is_one_channel() {
    let raw = include_bytes!("../fuzz/corpus/model/builtin_duplicate_channel.json");
    checks::check_model(raw);
    let b = nextbest::model::builtin_fallback_from_bytes(raw.to_vec()).unwrap();
    let apps = b.channels.iter().filter(|c| &*c.name == "app").count();
    assert_eq!(apps, 1);
}
