use super::categories::trained_as_text;
use super::*;

#[test]
fn an_xgboost_file_says_it_is_json() {
    let json = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/device_upgrade_5g.xgb.json"),
    )
    .unwrap();
    let e = parse_lightgbm(&json, &|_| Some(0)).unwrap_err().to_string();
    assert!(
        e.contains("an XGBoost model takes \"kind\": \"xgboost\""),
        "{e}"
    );
}

/// The wrong export of a model says which export to make: LightGBM's `dump_model()` JSON to
/// either reader, XGBoost's binary UBJSON, and names a library made up for unnamed columns.
#[test]
fn a_wrong_export_says_which_export_to_make() {
    let dump = r#"{"name":"tree","version":"v4","tree_info":[]}"#;
    let e = parse_lightgbm(dump, &|_| Some(0)).unwrap_err().to_string();
    assert!(
        e.contains("dump_model() JSON") && e.contains("save_model(\"m.txt\")"),
        "{e}"
    );
    let e = crate::model::xgboost::parse_xgboost(dump.as_bytes(), None, &|_| Some(0))
        .unwrap_err()
        .to_string();
    assert!(e.contains("dump_model() JSON"), "{e}");
    let ubj = b"{L\x00\x00\x00\x00\x00\x00\x00\x07learner{\xff\xfe";
    let e = crate::model::xgboost::parse_xgboost(ubj, None, &|_| Some(0))
        .unwrap_err()
        .to_string();
    assert!(e.contains("UBJSON"), "{e}");
    let unnamed = TreeLoadError::UnknownFeatures(vec!["Column_0".into(), "Column_1".into()]);
    assert!(
        unnamed.to_string().contains("trained without column names"),
        "{unnamed}"
    );
    let named = TreeLoadError::UnknownFeatures(vec!["arpu".into()]);
    assert!(!named.to_string().contains("column names"), "{named}");
}

fn resolve(name: &str) -> Option<u32> {
    ["tenure_months", "arpu_30d", "complaints_90d"]
        .iter()
        .position(|n| *n == name)
        .map(|i| i as u32)
}

/// Root: arpu_30d <= 20 (decision_type `dt0`); its right child: complaints_90d <= 0.5
/// (Zero-missing, default right); plus a one-leaf tree adding 0.25.
fn model(dt0: &str, objective: &str, num_class: &str) -> String {
    format!(
        "tree\nversion=v4\nnum_class={num_class}\nnum_tree_per_iteration=1\nlabel_index=0\nmax_feature_idx=2\n\
         objective={objective}\nfeature_names=tenure_months arpu_30d complaints_90d\n\
         feature_infos=[0:100] [0:50] [0:3]\ntree_sizes=300 200\n\n\
         Tree=0\nnum_leaves=3\nnum_cat=0\nsplit_feature=1 2\nsplit_gain=1 1\nthreshold=20.000000000000004 0.5\n\
         decision_type={dt0} 4\nleft_child=-1 -2\nright_child=1 -3\nleaf_value=-1 2 3\nleaf_weight=1 1 1\n\
         leaf_count=1 1 1\ninternal_value=0 0\ninternal_weight=1 1\ninternal_count=3 2\nis_linear=0\nshrinkage=0.1\n\n\n\
         Tree=1\nnum_leaves=1\nnum_cat=0\nsplit_feature=\nsplit_gain=\nthreshold=\ndecision_type=\nleft_child=\n\
         right_child=\nleaf_value=0.25\nleaf_weight=\nleaf_count=\ninternal_value=\ninternal_weight=\n\
         internal_count=\nis_linear=0\nshrinkage=1\n\n\nend of trees\n\nfeature_importances:\narpu_30d=1\n\n\
         parameters:\n[boosting: gbdt]\nend of parameters\n\npandas_categorical:null\n"
    )
}

#[test]
fn missing_directions_follow_decision_type() {
    // dt 10 = NaN missing, default left.
    let e = parse_lightgbm(&model("10", "binary sigmoid:1", "1"), &resolve).expect("parses");
    assert_eq!((e.n_trees(), e.n_nodes()), (2, 6));
    assert_eq!(e.columns(), &[1, 2]);
    let m = |arpu: f32, compl: f32| e.margin(&[0.0, arpu, compl]);
    assert_eq!(m(20.0, 9.0), -1.0 + 0.25); // equal goes left
    assert_eq!(m(f32::NAN, 9.0), -1.0 + 0.25); // NaN → default left
    assert_eq!(m(25.0, 0.5), 2.0 + 0.25);
    assert_eq!(m(25.0, 0.0), 3.0 + 0.25); // Zero-missing: 0 → default right
    assert_eq!(m(25.0, f32::NAN), 3.0 + 0.25); // ... and NaN too
                                               // dt 8 = NaN missing, default right.
    let e = parse_lightgbm(&model("8", "binary sigmoid:1", "1"), &resolve).expect("parses");
    assert_eq!(e.margin(&[0.0, f32::NAN, 9.0]), 3.0 + 0.25);
    // dt 2 = missing None (default_left ignored): NaN is scored as 0.0 <= 20 → left.
    let e = parse_lightgbm(&model("2", "binary sigmoid:1", "1"), &resolve).expect("parses");
    assert_eq!(e.margin(&[0.0, f32::NAN, 9.0]), -1.0 + 0.25);
    assert_eq!(e.margin(&[0.0]), -1.0 + 0.25); // short row: arpu missing → 0.0 → left
}

#[test]
fn sigmoid_scale_applies() {
    let e = parse_lightgbm(&model("10", "binary sigmoid:0.5", "1"), &resolve).expect("parses");
    let p = e.predict(&[0.0, 25.0, 0.5]);
    assert!((p - 1.0 / (1.0 + (-0.5_f64 * 2.25).exp())).abs() < 1e-15);
}

#[test]
fn categorical_splits_send_the_set_left() {
    // Root: arpu_30d in {1, 2} goes left (bits 1 and 2 of the word 6).
    let text = model("9", "binary sigmoid:1", "1")
        .replacen("num_cat=0", "num_cat=1", 1)
        .replacen("threshold=20.000000000000004 0.5", "threshold=0 0.5", 1)
        .replacen(
            "is_linear=0\nshrinkage=0.1",
            "cat_boundaries=0 1\ncat_threshold=6\nis_linear=0\nshrinkage=0.1",
            1,
        )
        .replace(
            "feature_infos=[0:100] [0:50] [0:3]",
            "feature_infos=[0:100] 1:2:3 [0:3]",
        );
    let e = parse_lightgbm(&text, &resolve).expect("parses");
    let m = |arpu: f32| e.margin(&[0.0, arpu, 9.0]);
    assert_eq!(m(1.0), -1.0 + 0.25);
    assert_eq!(m(2.9), -1.0 + 0.25, "truncated to 2");
    // The rest goes right, to the complaints split (9 > 0.5: its right leaf).
    for right in [0.0, 3.0, 40.0, -1.0, f32::NAN] {
        assert_eq!(m(right), 3.0 + 0.25, "{right}");
    }
    // A categorical split naming a bitset the tree lacks is refused with its place.
    let err = parse_lightgbm(&model("9", "binary sigmoid:1", "1"), &resolve).unwrap_err();
    assert!(
        err.to_string().starts_with("Tree=0: threshold[0]:"),
        "{err}"
    );
    let text = model("10", "binary sigmoid:1", "1").replacen("num_cat=0", "num_cat=1", 1);
    assert!(parse_lightgbm(&text, &resolve).is_err());
}

#[test]
fn multiclass_objectives_and_refusals() {
    // Two trees, num_class 2: tree 0 for class 0, tree 1 for class 1.
    let two = |objective: &str| {
        model("10", objective, "2").replace("num_tree_per_iteration=1", "num_tree_per_iteration=2")
    };
    let e = parse_lightgbm(&two("multiclass num_class:2"), &resolve).expect("parses");
    assert_eq!(e.n_classes(), 2);
    let mut p = [0.0; 2];
    e.predict_classes(&[0.0, 10.0, 9.0], &mut p);
    let (a, b) = (-1.0_f64, 0.25_f64);
    let w = (a.max(b), (a - a.max(b)).exp() + (b - a.max(b)).exp());
    assert_eq!(p[0], (a - w.0).exp() / w.1);
    assert_eq!(p[1], (b - w.0).exp() / w.1);
    let e = parse_lightgbm(&two("multiclassova num_class:2 sigmoid:2"), &resolve).expect("parses");
    e.predict_classes(&[0.0, 10.0, 9.0], &mut p);
    assert_eq!(p[0], 1.0 / (1.0 + (2.0_f64).exp()));
    assert_eq!(p[1], 1.0 / (1.0 + (-0.5_f64).exp()));
    let err = parse_lightgbm(&model("10", "multiclass num_class:3", "3"), &resolve).unwrap_err();
    assert!(
        err.to_string().contains("num_tree_per_iteration=1"),
        "{err}"
    );
    let err = parse_lightgbm(&model("10", "binary sigmoid:1", "3"), &resolve).unwrap_err();
    assert_eq!(
        err.to_string(),
        "header: num_class: num_class=3, num_tree_per_iteration=1, the objective has 1 classes"
    );
    let err = parse_lightgbm(&model("10", "regression", "1"), &resolve).unwrap_err();
    assert!(err.to_string().contains("regression"), "{err}");
    // cross_entropy takes no parameter: a sigmoid or class count is not LightGBM's file.
    for objective in ["cross_entropy sigmoid:2", "cross_entropy num_class:2"] {
        let err = parse_lightgbm(&model("10", objective, "1"), &resolve).unwrap_err();
        assert!(err.to_string().contains("objective parameter"), "{err}");
    }
    // xentlambda's predictions are rates: refused with what to train instead.
    let err = parse_lightgbm(&model("10", "cross_entropy_lambda", "1"), &resolve).unwrap_err();
    assert_eq!(
        err.to_string(),
        "header: objective: not supported: objective 'cross_entropy_lambda': its predictions are \
         a rate, not a probability (retrain with objective cross_entropy or binary)"
    );
    let text = model("10", "binary sigmoid:1", "1").replacen("is_linear=0", "is_linear=1", 1);
    let err = parse_lightgbm(&text, &resolve).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Tree=0: is_linear: not supported: linear trees"
    );
}

#[test]
fn refuses_unknown_feature_by_name() {
    let text = model("10", "binary sigmoid:1", "1")
        .replace("tenure_months arpu_30d", "tenure_days arpu_30d");
    let err = parse_lightgbm(&text, &resolve).unwrap_err();
    assert_eq!(
        err,
        TreeLoadError::UnknownFeatures(vec!["tenure_days".into()])
    );
}

#[test]
fn refuses_bad_structure_with_location() {
    let text = model("10", "binary sigmoid:1", "1").replace("right_child=1 -3", "right_child=5 -3");
    let err = parse_lightgbm(&text, &resolve).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Tree=0: right_child[0]: 5 is out of range (2 internal nodes, 3 leaves)"
    );
    let text = model("10", "binary sigmoid:1", "1").replace("left_child=-1 -2", "left_child=-1 -7");
    assert!(parse_lightgbm(&text, &resolve).is_err());
    // Both children of node 1 pointing at the same leaf leaves another leaf unreachable.
    let text = model("10", "binary sigmoid:1", "1").replace("right_child=1 -3", "right_child=1 -2");
    let err = parse_lightgbm(&text, &resolve).unwrap_err();
    assert!(err.to_string().contains("reached twice"), "{err}");
    let text = model("10", "binary sigmoid:1", "1")
        .replace("threshold=20.000000000000004 0.5", "threshold=20");
    let err = parse_lightgbm(&text, &resolve).unwrap_err();
    assert_eq!(err.to_string(), "Tree=0: threshold: length 1, expected 2");
    let text = model("10", "binary sigmoid:1", "1").replace("end of trees", "");
    assert!(parse_lightgbm(&text, &resolve).is_err());
}

/// A file cut after `end of trees` lost the names of its categories with the sections after:
/// it is refused as cut short, not asked for a hand-written list of categories.
#[test]
fn a_file_cut_after_its_trees_is_called_cut_short() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/categorical/lgb_binary.txt");
    let whole = std::fs::read_to_string(path).unwrap();
    let end = whole.find("end of trees").unwrap() + "end of trees\n".len();
    let e = parse_lightgbm(&whole[..end], &|_| Some(0))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("end of trees: the file ends there") && e.contains("cut short"),
        "{e}"
    );
    // Cut inside its trees: said so, whatever the last tree then lacks.
    let n = whole
        .lines()
        .find_map(|l| l.strip_prefix("tree_sizes="))
        .unwrap()
        .split(' ')
        .count();
    for cut in [
        whole.find("Tree=3").unwrap() + 40,
        whole.find("end of trees").unwrap() - 5,
    ] {
        let e = parse_lightgbm(&whole[..cut], &|_| Some(0))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            format!(
                "model: the file ends before `end of trees` (tree_sizes lists {n} trees), so it \
                 was cut short; copy or save it again"
            )
        );
    }
    // Cut inside its `pandas_categorical:` line: said so too.
    let cut = whole.find("pandas_categorical:").unwrap() + "pandas_categorical:[[\"br".len();
    let e = parse_lightgbm(&whole[..cut], &|_| Some(0))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("pandas_categorical: EOF while parsing")
            && e.ends_with(
                ": the line ends before its list does (the file was cut short: a save or copy \
                 still under way?); save the model again"
            ),
        "{e}"
    );
    // The whole file gets past that point (here to the resolver's columns, which hold no text).
    let whole = parse_lightgbm(&whole, &|_| Some(0))
        .map(|_| ())
        .unwrap_err();
    assert!(!whole.to_string().contains("cut short"), "{whole}");
}

/// The pandas lists go to categorical features only where their placement is beyond doubt.
#[test]
fn which_features_were_text_is_said_only_when_the_file_says_so() {
    let s = |n: usize| -> Vec<serde_json::Value> {
        (0..n).map(|i| serde_json::json!(format!("c{i}"))).collect()
    };
    // Categorical features whose codes need 4, 8 and 9 categories.
    let infos = ["[0:9]", "0:1:2:3", "0:1:2:3:4:5:6:7", "0:1:2:3:4:5:6:7:8"];
    // Four categories fit the first or later ones, eight the second or later, so in order
    // they can only be the first and the second.
    assert_eq!(
        trained_as_text(&infos, &[s(4), s(8)]),
        Some(vec![false, true, true, false])
    );
    // Nine categories fit any of the three: no telling which.
    assert_eq!(trained_as_text(&infos, &[s(9)]), None);
    // Three fit none, and four lists are more than the categorical features.
    assert_eq!(trained_as_text(&infos, &[s(3)]), None);
    assert_eq!(trained_as_text(&infos, &[s(9), s(9), s(9), s(9)]), None);
    // A list of numbers is a category column, not text.
    let numbers: Vec<serde_json::Value> = (0..8).map(|i| serde_json::json!(i)).collect();
    assert_eq!(
        trained_as_text(&infos, &[s(4), numbers]),
        Some(vec![false, true, false, false])
    );
}
