//! Tree scorers in a model: XGBoost and LightGBM files read from the model's folder, the
//! faults that name the file and the features, and the paths a scorer may give.

use super::*;

fn trees_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/trees")
}

/// A snapshot with the tree fixtures' feature columns (from their inputs.csv header).
fn tree_store(drop: Option<&str>) -> FeatureStore {
    let text = std::fs::read_to_string(trees_dir().join("inputs.csv")).unwrap();
    let header: Vec<&str> = text
        .lines()
        .next()
        .unwrap()
        .split(',')
        .skip(1)
        .filter(|h| Some(*h) != drop)
        .collect();
    let row: Vec<&str> = header.iter().map(|_| "1").collect();
    let csv = format!("customer_id,{}\nC1,{}\n", header.join(","), row.join(","));
    FeatureStore::from_csv_bytes(csv.as_bytes(), "trees.csv").unwrap()
}

fn tree_model(scorer: serde_json::Value) -> Vec<u8> {
    let mut o = offer("t");
    o["scorer"] = scorer;
    serde_json::to_vec(&model(vec![o])).unwrap()
}

/// Compiles a tree model document against `store`, its files in the trees fixtures.
fn compile_trees(doc: Vec<u8>, store: &FeatureStore) -> Result<LoadedModel, ModelError> {
    from_bytes(
        doc,
        Some(trees_dir()),
        "t".into(),
        store,
        &Limits::default(),
    )
}

#[test]
fn tree_scorers_load_from_the_model_folder_and_score_like_the_library() {
    let store = tree_store(None);
    for (kind, file) in [
        ("xgboost", "xgb_binary.json"),
        ("lightgbm", "lgb_binary.txt"),
    ] {
        let doc = tree_model(serde_json::json!({"kind": kind, "path": file}));
        let m = compile_trees(doc, &store).unwrap_or_else(|e| panic!("{file}: {e}"));
        let crate::engine::Scorer::Trees(t) = &m.compiled.offers[0].scorer else {
            panic!("{file}: not a tree scorer");
        };
        assert!(t.n_trees() >= 50, "{file}");
        let row = store.row("C1").unwrap();
        let p = m.compiled.offers[0].scorer.predict(row);
        assert!((0.0..=1.0).contains(&p) && p == t.predict(row));
        assert!(!m.compiled.features_used.is_empty());
    }
}

#[test]
fn tree_scorer_faults_name_the_file_and_the_features() {
    let store = tree_store(Some("arpu_30d"));
    let doc = tree_model(serde_json::json!({"kind": "xgboost", "path": "xgb_binary.json"}));
    let faults = compile_trees(doc, &store).unwrap_err().faults();
    assert_eq!(faults[0].path, "offers[0].scorer.path");
    assert!(
        faults[0].message.contains("arpu_30d") && faults[0].message.contains("xgb_binary.json"),
        "{faults:?}"
    );

    let store = tree_store(None);
    let cases = [
        (
            serde_json::json!({"kind": "lightgbm", "path": "missing.txt"}),
            "missing.txt",
        ),
        (
            serde_json::json!({"kind": "lightgbm", "path": "../trees/lgb_binary.txt"}),
            "relative path",
        ),
        (
            serde_json::json!({"kind": "lightgbm", "path": "xgb_binary.json"}),
            "lightgbm",
        ),
        (
            serde_json::json!({"kind": "xgboost", "path": "lgb_binary.txt"}),
            "xgboost",
        ),
    ];
    for (scorer, needle) in cases {
        let doc = tree_model(scorer.clone());
        let faults = compile_trees(doc, &store).unwrap_err().faults();
        assert!(
            faults
                .iter()
                .any(|f| f.path == "offers[0].scorer.path" && f.message.contains(needle)),
            "{scorer}: {faults:?}"
        );
    }
    // Without a folder (a bare document), files cannot be referenced at all.
    let doc = tree_model(serde_json::json!({"kind": "xgboost", "path": "xgb_binary.json"}));
    let faults = from_bytes(doc, None, "t".into(), &store, &Limits::default())
        .unwrap_err()
        .faults();
    assert!(faults[0].message.contains("no folder"), "{faults:?}");
}

#[test]
fn a_feature_the_snapshot_left_out_for_its_type_says_so() {
    let store = store().with_left_out(vec![(
        "signup_at".into(),
        "Timestamp(Microsecond, None)".into(),
    )]);
    let mut o = offer("a");
    o["eligibility"] = serde_json::json!({"feature": "signup_at", "op": "ge", "value": 1});
    let faults = from_bytes(
        serde_json::to_vec(&model(vec![o])).unwrap(),
        None,
        "t".into(),
        &store,
        &Limits::default(),
    )
    .unwrap_err()
    .faults();
    assert!(
        faults
            .iter()
            .any(|f| f.path == "offers[0].eligibility.feature"
                && f.message
                    .contains("unknown feature `signup_at`: the snapshot's column")
                && f.message.contains("holds Timestamp(Microsecond, None)")),
        "{faults:#?}"
    );
    // A tree model's features are named the same way.
    let store =
        tree_store(Some("arpu_30d")).with_left_out(vec![("arpu_30d".into(), "Date32".into())]);
    let doc = tree_model(serde_json::json!({"kind": "xgboost", "path": "xgb_binary.json"}));
    let faults = compile_trees(doc, &store).unwrap_err().faults();
    assert!(
        faults[0]
            .message
            .contains("`arpu_30d`: the snapshot's column of that name holds Date32"),
        "{faults:?}"
    );
}

#[test]
fn a_path_with_a_nul_byte_is_named_as_that() {
    let e = resolve_inside(&trees_dir(), "x.json\0x").unwrap_err();
    assert_eq!(e, "`x.json\\0x` holds a NUL byte");
    assert_eq!(resolve_inside(&trees_dir(), "").unwrap_err(), "empty path");
}

#[test]
fn a_path_from_the_folder_may_start_with_a_dot() {
    assert_eq!(
        resolve_inside(&trees_dir(), "./xgb_binary.json").unwrap(),
        resolve_inside(&trees_dir(), "xgb_binary.json").unwrap()
    );
    for outside in ["../trees/xgb_binary.json", "./../x.json", "/etc/passwd"] {
        let e = resolve_inside(&trees_dir(), outside).unwrap_err();
        assert!(e.contains("no `..`, no absolute path"), "{outside}: {e}");
    }
}
