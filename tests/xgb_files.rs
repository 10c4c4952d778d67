//! XGBoost files as particular releases and APIs write them, against the library's own
//! predictions: category names with non-ASCII characters (3.2 counts their offsets in
//! characters), the bare `NaN` token of 1.7 to 2.1, early stopping's `best_iteration`, and a
//! no-names file (3.0) with an integer category column; and LightGBM's dart and rf, which the
//! README's list of refused boosters names.
//! Fixtures: `tests/fixtures/xgb_files/make_*.py` (pinned versions, fixed seeds).

use std::path::PathBuf;

use nextbest::engine::trees::TreeEnsemble;
use nextbest::features::FeatureStore;
use nextbest::model::bind::{Column, Given};
use nextbest::model::xgboost;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/xgb_files")
}

fn inputs() -> FeatureStore {
    FeatureStore::load(&dir().join("inputs.csv")).expect("inputs.csv")
}

fn parse(
    file: &str,
    spec: &xgboost::Spec<'_>,
    store: &FeatureStore,
) -> Result<TreeEnsemble, String> {
    let bytes = std::fs::read(dir().join(file)).unwrap();
    let resolve = |name: &str| Column::in_store(store, name);
    xgboost::parse_xgboost_model(&bytes, spec, &resolve)
        .map(|(e, _)| e)
        .map_err(|e| e.to_string())
}

/// Every row of `predictions.csv`'s columns `prefix` (or `prefix_<k>`, then `suffix`), bit
/// for bit.
fn parity(e: &TreeEnsemble, store: &FeatureStore, csv: &str, prefix: &str, suffix: &str) {
    let mut r = csv::Reader::from_path(dir().join(csv)).unwrap();
    let header = r.headers().unwrap().clone();
    let classes = e.n_classes();
    let cols: Vec<usize> = (0..classes)
        .map(|k| {
            let name = if classes == 1 {
                format!("{prefix}{suffix}")
            } else {
                format!("{prefix}_{k}{suffix}")
            };
            header
                .iter()
                .position(|h| h == name)
                .unwrap_or_else(|| panic!("{name} in {csv}"))
        })
        .collect();
    let mut out = vec![0.0; classes];
    let mut rows = 0;
    for rec in r.records().map(Result::unwrap) {
        let row = store.exact_row(&rec[0]).unwrap();
        e.predict_classes(row, &mut out);
        for (k, &c) in cols.iter().enumerate() {
            let want: f64 = rec[c].parse().unwrap();
            assert_eq!(out[k], want, "{prefix}{suffix} {} class {k}", &rec[0]);
        }
        rows += 1;
    }
    assert_eq!(rows, store.len());
}

/// "Zürich" among ASCII names: 3.2 wrote character offsets and dropped the last byte ("west"
/// keeps "wes"); the file alone scores every row as `Booster.predict` does.
#[test]
fn non_ascii_category_names_written_by_3_2_score_as_the_library() {
    let store = inputs();
    let text = std::fs::read_to_string(dir().join("z_region.json")).unwrap();
    assert!(
        text.contains("\"offsets\":[0,6,13,17,24,29,33]"),
        "character offsets"
    );
    let e = parse("z_region.json", &xgboost::Spec::default(), &store).unwrap();
    assert!(
        e.unseen_codes().is_empty(),
        "every snapshot region is a model category"
    );
    parity(&e, &store, "predictions.csv", "z_region", "");
}

/// CJK, emoji, accents, quotes and commas: "東京" lost all its bytes, "Ñ-islas 🏝" part of its
/// emoji; each is still the one snapshot value that fits.
#[test]
fn names_the_file_keeps_in_part_match_the_one_value_that_fits() {
    let store = inputs();
    let e = parse("u_city.json", &xgboost::Spec::default(), &store).unwrap();
    assert!(e.unseen_codes().is_empty());
    parity(&e, &store, "predictions.csv", "u_city", "");
    // The true names may be given; other names are refused with what the file keeps.
    let given = |list: &[&str]| -> Given {
        [(
            "city".to_string(),
            list.iter().map(|s| s.to_string()).collect(),
        )]
        .into()
    };
    let mut names: Vec<&str> = vec![
        "Île-de-France",
        "Provence, Alpes",
        "Paris \"centre\"",
        "東京",
        "Ñ-islas 🏝",
        "capital",
        "north",
    ];
    names.sort();
    let ok = given(&names);
    let spec = xgboost::Spec {
        categories: Some(&ok),
        ..Default::default()
    };
    let e = parse("u_city.json", &spec, &store).unwrap();
    parity(&e, &store, "predictions.csv", "u_city", "");
    let mut wrong = names.clone();
    wrong.swap(5, 6);
    let bad = given(&wrong);
    let spec = xgboost::Spec {
        categories: Some(&bad),
        ..Default::default()
    };
    let e = parse("u_city.json", &spec, &store).unwrap_err();
    assert!(
        e.contains("categories.city") && e.contains("in part"),
        "{e}"
    );
}

/// 2.1.4 writes `NaN` as every categorical split's threshold: the file loads, with the
/// category names from the scorer (the file stores codes), and scores as `Booster.predict`.
#[test]
fn categorical_files_of_2_1_with_bare_nan_tokens_score_as_the_library() {
    let store = inputs();
    let text = std::fs::read_to_string(dir().join("v21_cat.json")).unwrap();
    assert!(
        text.contains(",NaN,") || text.contains("[NaN"),
        "bare NaN tokens"
    );
    assert!(
        serde_json::from_str::<serde_json::Value>(&text).is_err(),
        "not JSON"
    );
    let strings = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let given: Given = [
        (
            "segment".to_string(),
            strings(&["bronze", "gold", "platinum", "silver"]),
        ),
        (
            "region".to_string(),
            strings(&["Zürich", "capital", "east", "islands", "south", "west"]),
        ),
    ]
    .into();
    let spec = xgboost::Spec {
        categories: Some(&given),
        ..Default::default()
    };
    let e = parse("v21_cat.json", &spec, &store).unwrap();
    parity(&e, &store, "predictions_v21.csv", "v21_cat", "");
    // Without the names it is refused for that reason, not as a JSON error.
    let e = parse("v21_cat.json", &xgboost::Spec::default(), &store).unwrap_err();
    assert!(e.contains("stores only category codes"), "{e}");
}

/// Early stopping: by default the trees of rounds 0 to `best_iteration`, as the reloaded
/// `XGBClassifier.predict_proba` scores (binary; 3 classes x 2 parallel trees a round), with a
/// note naming both counts; `all_trees` scores every tree, as `Booster.predict`.
#[test]
fn early_stopped_files_score_as_predict_proba_unless_every_tree_is_asked_for() {
    let store = inputs();
    let bytes = |f: &str| std::fs::read(dir().join(f)).unwrap();
    let resolve = |name: &str| Column::in_store(&store, name);
    for (file, prefix, best, rounds, kept, total) in [
        ("es_binary.json", "es_binary", 2, 8, 3, 8),
        ("es_multi.json", "es_multi", 3, 9, 24, 54),
    ] {
        let p = xgboost::parse_xgboost_noted(&bytes(file), &xgboost::Spec::default(), &resolve)
            .unwrap();
        assert_eq!(p.ensemble.n_trees(), kept, "{file}");
        assert_eq!(p.notes.len(), 1, "{file}");
        let note = &p.notes[0].text;
        assert!(
            note.contains(&format!("best_iteration is {best} of {rounds} rounds"))
                && note.contains(&format!("scoring the {kept} trees"))
                && note.contains(&format!("all {total} trees")),
            "{note}"
        );
        parity(&p.ensemble, &store, "predictions.csv", prefix, "");
        let spec = xgboost::Spec {
            all_trees: true,
            ..Default::default()
        };
        let p = xgboost::parse_xgboost_noted(&bytes(file), &spec, &resolve).unwrap();
        assert_eq!(p.ensemble.n_trees(), total);
        assert!(p.notes.is_empty());
        parity(&p.ensemble, &store, "predictions.csv", prefix, "__all");
    }
}

/// 3.0.5 stores no category list: an integer pandas category (1..6, codes 0..5) on a numeric
/// column is read as codes, with a note saying so; the scorer's list of the numbers makes
/// every row score as `Booster.predict`.
#[test]
fn a_no_names_file_on_a_numeric_category_column_takes_the_numbers_from_the_scorer() {
    let store = inputs();
    let bytes = std::fs::read(dir().join("v305_int.json")).unwrap();
    let resolve = |name: &str| Column::in_store(&store, name);
    let p = xgboost::parse_xgboost_noted(&bytes, &xgboost::Spec::default(), &resolve).unwrap();
    assert_eq!(p.notes.len(), 1, "{:?}", p.notes);
    assert!(
        p.notes[0]
            .text
            .contains("feature `device_gen`: the file stores no category list")
            && p.notes[0]
                .text
                .contains("read as category codes 0 to n - 1")
            && p.notes[0]
                .text
                .contains(r#"as `df["device_gen"].cat.categories` listed them"#),
        "{}",
        p.notes[0].text
    );
    let given: Given = [(
        "device_gen".to_string(),
        (1..=6).map(|n| n.to_string()).collect(),
    )]
    .into();
    let spec = xgboost::Spec {
        categories: Some(&given),
        ..Default::default()
    };
    let p = xgboost::parse_xgboost_noted(&bytes, &spec, &resolve).unwrap();
    assert!(p.notes.is_empty(), "{:?}", p.notes);
    parity(&p.ensemble, &store, "predictions_v305.csv", "v305_int", "");
    let mut bad = given.clone();
    bad.get_mut("device_gen").unwrap()[5] = "six".into();
    let spec = xgboost::Spec {
        categories: Some(&bad),
        ..Default::default()
    };
    let e = parse("v305_int.json", &spec, &store).unwrap_err();
    assert!(
        e.contains("categories.device_gen: \"six\" is not a number"),
        "{e}"
    );
}

/// LightGBM writes a training column's spaces as underscores in the file (`x 1` becomes
/// `x_1`): the file's name binds to the snapshot's column that differs only there, and a
/// scorer's `features` may list the snapshot's names; every row scores as the library does.
#[test]
fn a_lightgbm_name_whose_spaces_the_file_wrote_as_underscores_binds_to_the_snapshots_column() {
    let csv = std::fs::read_to_string(dir().join("inputs.csv")).unwrap();
    let spaced = csv.replacen("customer_id,x1,x2,", "customer_id,x 1,x2,", 1);
    assert_ne!(spaced, csv);
    let store = FeatureStore::from_csv_bytes(spaced.as_bytes(), "spaced.csv").unwrap();
    let resolve = |name: &str| Column::in_store(&store, name);
    let text = std::fs::read_to_string(dir().join("lgb_dart.txt"))
        .unwrap()
        .replacen("feature_names=x1 x2", "feature_names=x_1 x2", 1);
    assert!(text.contains("feature_names=x_1 x2"));
    let (e, names) =
        nextbest::model::lightgbm::parse_lightgbm_model(&text, None, &resolve).unwrap();
    assert_eq!(names, ["x 1", "x2"]);
    parity(&e, &store, "predictions_lgb.csv", "lgb_dart", "");
    let listed = ["x 1".to_string(), "x2".to_string()];
    let (e, names) =
        nextbest::model::lightgbm::parse_lightgbm_named(&text, None, Some(&listed), &resolve)
            .unwrap();
    assert_eq!(names, listed);
    parity(&e, &store, "predictions_lgb.csv", "lgb_dart", "");
    // A name no column differs from only by its spaces is still refused, by its own name.
    let text = text.replacen("feature_names=x_1 x2", "feature_names=x_9 x2", 1);
    let err = nextbest::model::lightgbm::parse_lightgbm_model(&text, None, &resolve)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("model features not found in the feature snapshot: x_9"),
        "{err}"
    );
}

/// README's list of refused boosters, checked: LightGBM's dart loads and scores as its
/// `predict`, LightGBM's `rf` is refused at `average_output`.
#[test]
fn lightgbm_dart_scores_as_the_library_and_rf_is_refused() {
    let store = inputs();
    let resolve = |name: &str| Column::in_store(&store, name);
    let text = std::fs::read_to_string(dir().join("lgb_dart.txt")).unwrap();
    assert!(text.contains("[boosting: dart]"));
    let (e, _) = nextbest::model::lightgbm::parse_lightgbm_model(&text, None, &resolve).unwrap();
    parity(&e, &store, "predictions_lgb.csv", "lgb_dart", "");
    let text = std::fs::read_to_string(dir().join("lgb_rf.txt")).unwrap();
    let err = nextbest::model::lightgbm::parse_lightgbm_model(&text, None, &resolve)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("header: average_output: not supported"),
        "{err}"
    );
}
