use super::*;

const NAMES: [&str; 2] = ["tenure_months", "arpu_30d"];

fn resolve(name: &str) -> Option<u32> {
    NAMES.iter().position(|n| *n == name).map(|i| i as u32 + 10)
}

/// One split on arpu_30d < 20 (NaN left), leaves -1 / +1, base_score given as text.
fn model(base_score: &str, extra_tree_fields: &str, names: &str, objective: &str) -> String {
    format!(
        r#"{{"learner":{{"attributes":{{}},"feature_names":{names},"feature_types":[],
        "gradient_booster":{{"model":{{"gbtree_model_param":{{"num_parallel_tree":"1","num_trees":"1"}},
          "iteration_indptr":[0,1],"tree_info":[0],
          "trees":[{{"base_weights":[0,0,0],"categories":[],"categories_nodes":[],"categories_segments":[],
            "categories_sizes":[],"default_left":[1,0,0],"id":0,"left_children":[1,-1,-1],
            "loss_changes":[1,0,0],"parents":[2147483647,0,0],"right_children":[2,-1,-1],
            "split_conditions":[2E1,-1E0,1E0],"split_indices":[1,0,0],{extra_tree_fields}
            "sum_hessian":[2,1,1],"tree_param":{{"num_deleted":"0","num_feature":"2","num_nodes":"3","size_leaf_vector":"1"}}}}]}},
          "name":"gbtree"}},
        "learner_model_param":{{"base_score":"{base_score}","boost_from_average":"1","num_class":"0","num_feature":"2","num_target":"1"}},
        "objective":{{"name":"{objective}","reg_loss_param":{{"scale_pos_weight":"1"}}}}}},"version":[3,2,0]}}"#
    )
}

/// A snapshot row with arpu_30d (column 11) set.
fn row(x: f32) -> Vec<f32> {
    let mut r = vec![0.0_f32; 12];
    r[11] = x;
    r
}

fn ok_model() -> String {
    model(
        "[5E-1]",
        r#""split_type":[0,0,0],"#,
        r#"["tenure_months","arpu_30d"]"#,
        "binary:logistic",
    )
}

#[test]
fn scores_and_routes_missing_by_default_left() {
    let e = parse_xgboost(ok_model().as_bytes(), None, &resolve).expect("parses");
    assert_eq!(e.columns(), &[11]);
    assert_eq!(e.margin(&row(19.0)), -1.0);
    assert_eq!(e.margin(&row(20.0)), 1.0);
    assert_eq!(e.margin(&row(f32::NAN)), -1.0); // default_left = 1
    assert_eq!(e.margin(&[]), -1.0); // column beyond the row = missing
    assert!((e.predict(&row(20.0)) - 1.0 / (1.0 + (-1.0_f64).exp())).abs() < 1e-7);
}

#[test]
fn base_score_plain_and_bracketed() {
    for text in ["2.5E-1", "[2.5E-1]"] {
        let m = model(text, "", r#"["tenure_months","arpu_30d"]"#, "reg:logistic");
        let e = parse_xgboost(m.as_bytes(), None, &resolve).expect("parses");
        assert!((e.margin(&row(25.0)) - (1.0 + (0.25_f64 / 0.75).ln())).abs() < 1e-6);
    }
    let m = model(
        "[2E-1,3E-1]",
        "",
        r#"["tenure_months","arpu_30d"]"#,
        "reg:logistic",
    );
    assert!(parse_xgboost(m.as_bytes(), None, &resolve).is_err());
}

#[test]
fn names_from_argument_when_model_has_none() {
    let m = model("5E-1", "", "[]", "binary:logistic");
    let err = parse_xgboost(m.as_bytes(), None, &resolve).unwrap_err();
    assert!(err.to_string().contains("no feature names"), "{err}");
    let names: Vec<String> = NAMES.iter().map(|s| s.to_string()).collect();
    let e = parse_xgboost(m.as_bytes(), Some(&names), &resolve).expect("parses");
    assert_eq!(e.columns(), &[11]);
    // One name short of the columns it was trained on: the list is named, and the count.
    let err = parse_xgboost(m.as_bytes(), Some(&names[..1]), &resolve).unwrap_err();
    assert_eq!(
        err.to_string(),
        "feature names: the scorer's `features` list names 1 feature, but the model was \
         trained on 2 (learner_model_param.num_feature): name each training column, in order"
    );
    let wrong: Vec<String> = vec!["tenure_months".into(), "arpu_7d".into()];
    let err = parse_xgboost(ok_model().as_bytes(), Some(&wrong), &resolve).unwrap_err();
    assert!(err.to_string().contains("feature_names[1]"), "{err}");
}

#[test]
fn refuses_unknown_features_by_name() {
    let m = model(
        "5E-1",
        "",
        r#"["tenure_days","arpu_30d","nps"]"#,
        "binary:logistic",
    )
    .replace(
        r#""num_feature":"2","num_target""#,
        r#""num_feature":"3","num_target""#,
    );
    let err = parse_xgboost(m.as_bytes(), None, &resolve).unwrap_err();
    assert_eq!(
        err,
        TreeLoadError::UnknownFeatures(vec!["tenure_days".into(), "nps".into()])
    );
    assert!(err.to_string().contains("tenure_days, nps"));
}

#[test]
fn categorical_splits_send_the_set_right() {
    let m = |extra: &str| {
        model(
            "5E-1",
            extra,
            r#"["tenure_months","arpu_30d"]"#,
            "binary:logistic",
        )
        .replace(r#""feature_types":[]"#, r#""feature_types":["float","c"]"#)
    };
    let cats = r#""split_type":[1,0,0],"#;
    let with_set = m(cats)
        .replace(r#""categories":[]"#, r#""categories":[1,3]"#)
        .replace(r#""categories_nodes":[]"#, r#""categories_nodes":[0]"#)
        .replace(
            r#""categories_segments":[]"#,
            r#""categories_segments":[0]"#,
        )
        .replace(r#""categories_sizes":[]"#, r#""categories_sizes":[2]"#);
    let e = parse_xgboost(with_set.as_bytes(), None, &resolve).expect("parses");
    for (x, want) in [
        (1.0, 1.0),
        (3.0, 1.0),
        (3.7, 1.0),
        (0.0, -1.0),
        (2.0, -1.0),
        (-1.0, -1.0),
        (f32::NAN, -1.0),
        (1e8, -1.0),
    ] {
        assert_eq!(e.margin(&row(x)), want, "{x}");
    }
    // Names given for the codes must cover every code the splits test (here 3).
    let given: Given = [("arpu_30d".to_string(), vec!["a".into(), "b".into()])].into();
    let spec = Spec {
        categories: Some(&given),
        ..Spec::default()
    };
    let err = parse_xgboost_model(with_set.as_bytes(), &spec, &|n| {
        resolve(n).map(Column::number)
    })
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "categories.arpu_30d: 2 names for codes 0 to 1, but the trees test code 3: name every \
         code the model was trained on, code 0 first"
    );
    // A categorical split without its categories is refused with its place.
    let err = parse_xgboost(m(cats).as_bytes(), None, &resolve).unwrap_err();
    assert_eq!(
        err.to_string(),
        "trees[0].categories_nodes: no categories for node 0"
    );
}

#[test]
fn multiclass_objectives_and_refusals() {
    let m = model(
        "[1E-1,2E-1,3E-1]",
        "",
        r#"["tenure_months","arpu_30d"]"#,
        "multi:softprob",
    )
    .replace(r#""num_class":"0""#, r#""num_class":"3""#);
    let e = parse_xgboost(m.as_bytes(), None, &resolve).expect("parses");
    assert_eq!(e.n_classes(), 3);
    let mut p = [0.0; 3];
    e.predict_classes(&row(5.0), &mut p);
    assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-6, "{p:?}");
    assert!(
        p[0] < p[1] && p[1] < p[2],
        "tree 0 adds -1 to class 0: {p:?}"
    );
    let bad = m.replace(r#""[1E-1,2E-1,3E-1]""#, r#""[1E-1,2E-1]""#);
    assert!(parse_xgboost(bad.as_bytes(), None, &resolve).is_err());
    let m = ok_model().replace(r#""num_class":"0""#, r#""num_class":"3""#);
    let err = parse_xgboost(m.as_bytes(), None, &resolve).unwrap_err();
    assert!(err.to_string().contains("3 classes for objective"), "{err}");
    let m = ok_model().replace(r#""tree_info":[0]"#, r#""tree_info":[1]"#);
    assert!(parse_xgboost(m.as_bytes(), None, &resolve).is_err());
    let m = ok_model().replace(r#""name":"gbtree""#, r#""name":"dart""#);
    let err = parse_xgboost(m.as_bytes(), None, &resolve).unwrap_err();
    assert!(err.to_string().contains("dart"), "{err}");
    let m = ok_model().replace(r#""num_target":"1""#, r#""num_target":"2""#);
    assert!(parse_xgboost(m.as_bytes(), None, &resolve).is_err());
    let m = ok_model().replace("binary:logistic", "rank:pairwise");
    assert!(parse_xgboost(m.as_bytes(), None, &resolve).is_err());
}

#[test]
fn refuses_bad_structure_with_location() {
    let m = ok_model().replace(
        r#""right_children":[2,-1,-1]"#,
        r#""right_children":[7,-1,-1]"#,
    );
    let err = parse_xgboost(m.as_bytes(), None, &resolve).unwrap_err();
    assert_eq!(
        err.to_string(),
        "trees[0] node 0: right child 7 is out of range (3 nodes)"
    );
    let m = ok_model().replace(
        r#""split_conditions":[2E1,-1E0,1E0]"#,
        r#""split_conditions":[2E1,-1E0]"#,
    );
    let err = parse_xgboost(m.as_bytes(), None, &resolve).unwrap_err();
    assert_eq!(
        err.to_string(),
        "trees[0].split_conditions: length 2, expected 3"
    );
    let err = parse_xgboost(b"{\"learner\":", None, &resolve).unwrap_err();
    assert!(matches!(err, TreeLoadError::Format { .. }));
}

#[test]
fn a_lightgbm_file_or_other_text_says_what_it_is() {
    let resolve = |_: &str| Some(0);
    let lgb = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/streaming_bundle.lgb.txt"),
    )
    .unwrap();
    let e = parse_xgboost(&lgb, None, &resolve).unwrap_err().to_string();
    assert!(
        e.contains("it is a LightGBM text model: use \"kind\": \"lightgbm\""),
        "{e}"
    );
    let e = parse_xgboost(b"{\"learner\": 7}", None, &resolve)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("json: not an XGBoost JSON model: invalid type"),
        "{e}"
    );
    assert!(!e.contains("Expected"), "{e}");
}

#[test]
fn a_file_with_a_tree_cut_out_is_refused_where_it_disagrees() {
    assert!(parse_xgboost(ok_model().as_bytes(), None, &resolve).is_ok());
    for (from, to, at, says) in [
        (
            r#""num_trees":"1""#,
            r#""num_trees":"2""#,
            "gbtree_model_param.num_trees",
            "says 2",
        ),
        (
            r#""iteration_indptr":[0,1]"#,
            r#""iteration_indptr":[0,2]"#,
            "iteration_indptr",
            "ends at tree 2",
        ),
        (
            r#""tree_info":[0]"#,
            r#""tree_info":[0,0]"#,
            "tree_info",
            "has 2 entries",
        ),
    ] {
        let m = ok_model().replace(from, to);
        let err = parse_xgboost(m.as_bytes(), None, &resolve)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("learner.gradient_booster.model.{at}"))
                && err.contains(&format!("{says}, but the file has 1 trees: a tree was cut")),
            "{err}"
        );
    }
}
