//! Parity with the libraries themselves: every fixture model, every fixture row, against the
//! probabilities (and raw margins) the library's `predict` wrote (fixtures/gen_fixtures.py).

use std::path::PathBuf;

use nextbest::engine::trees::{Flavor, TreeEnsemble};
use nextbest::model::lightgbm::parse_lightgbm;
use nextbest::model::xgboost::parse_xgboost;

const TOLERANCE: f64 = 1e-6;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
        .join("trees")
        .join(name)
}

fn read(name: &str) -> String {
    std::fs::read_to_string(fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A CSV as (header, rows of fields); the fixtures have no quoting.
fn csv(name: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let text = read(name);
    let mut lines = text.lines();
    let header = lines
        .next()
        .expect("header")
        .split(',')
        .map(str::to_owned)
        .collect();
    let rows = lines
        .map(|l| l.split(',').map(str::to_owned).collect())
        .collect();
    (header, rows)
}

struct Inputs {
    features: Vec<String>,
    rows: Vec<Vec<f32>>,
}

fn inputs() -> Inputs {
    let (header, rows) = csv("inputs.csv");
    assert_eq!(header[0], "row");
    let rows = rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            assert_eq!(r[0], i.to_string());
            r[1..]
                .iter()
                .map(|v| {
                    if v.is_empty() {
                        f32::NAN
                    } else {
                        v.parse().expect("f32")
                    }
                })
                .collect()
        })
        .collect();
    Inputs {
        features: header[1..].to_vec(),
        rows,
    }
}

/// Expected (probability, margin) per row for one model, from the CSV that holds its columns.
fn expected(model: &str) -> Vec<(f64, f64)> {
    let file = if model == "xgb_v2_binary" {
        "predictions_xgb_v2.csv"
    } else {
        "predictions.csv"
    };
    let (header, rows) = csv(file);
    let p = header
        .iter()
        .position(|h| h == model)
        .expect("model column");
    let m = header
        .iter()
        .position(|h| *h == format!("{model}__margin"))
        .expect("margin column");
    rows.iter()
        .map(|r| (r[p].parse().expect("f64"), r[m].parse().expect("f64")))
        .collect()
}

fn check(model: &str, ensemble: &TreeEnsemble, inputs: &Inputs) {
    let mut expected = expected(model);
    if ensemble.flavor() == Flavor::XgBoost {
        // XGBoost predicts in f32; the CSV holds the shortest text of that f32.
        for (p, m) in &mut expected {
            (*p, *m) = (f64::from(*p as f32), f64::from(*m as f32));
        }
    }
    assert_eq!(expected.len(), inputs.rows.len());
    let (mut worst_p, mut worst_p_row, mut worst_m, mut exact, mut exact_m) =
        (0.0_f64, 0, 0.0_f64, 0, 0);
    for (i, (row, &(p, m))) in inputs.rows.iter().zip(&expected).enumerate() {
        let ours = ensemble.predict(row);
        let d = (ours - p).abs();
        if d > worst_p || d.is_nan() {
            (worst_p, worst_p_row) = (d, i);
        }
        let ours_m = ensemble.margin(row);
        worst_m = worst_m.max((ours_m - m).abs());
        exact_m += usize::from(ours_m == m);
        exact += usize::from(ours == p);
    }
    println!(
        "{model:18} trees={:3} nodes={:5} perfect={:5} rows={} worst |dp|={worst_p:.3e} (row {worst_p_row}) \
         worst |dmargin|={worst_m:.3e} bit-exact p={exact}/{n} margin={exact_m}/{n}",
        ensemble.n_trees(),
        ensemble.n_nodes(),
        ensemble.is_perfect_layout(),
        expected.len(),
        n = expected.len()
    );
    assert!(
        worst_p <= TOLERANCE,
        "{model}: row {worst_p_row} differs by {worst_p:e}"
    );
    assert!(worst_m <= 1e-5, "{model}: margin differs by {worst_m:e}");
}

#[test]
fn xgboost_matches_library() {
    let inputs = inputs();
    let resolve = |name: &str| {
        inputs
            .features
            .iter()
            .position(|f| f == name)
            .map(|i| i as u32)
    };
    for model in [
        "xgb_binary",
        "xgb_reg_logistic",
        "xgb_pruned",
        "bench_100x6",
        "xgb_v2_binary", // XGBoost 2.1 format: base_score "4.5E-1", no brackets
    ] {
        let bytes = std::fs::read(fixture(&format!("{model}.json"))).expect("model file");
        let e =
            parse_xgboost(&bytes, None, &resolve).unwrap_or_else(|err| panic!("{model}: {err}"));
        check(model, &e, &inputs);
    }
    // Trained without names: the scorer spec's list (here: the CSV order) supplies them.
    let bytes = std::fs::read(fixture("xgb_nonames.json")).expect("model file");
    let err = parse_xgboost(&bytes, None, &resolve)
        .expect_err("no names anywhere")
        .to_string();
    assert!(
        err.contains("no feature names (trained on an array, not a data frame)")
            && err.contains("training columns (10 columns), in order, in the scorer's `features`"),
        "{err}"
    );
    let e = parse_xgboost(&bytes, Some(&inputs.features), &resolve).expect("xgb_nonames");
    check("xgb_nonames", &e, &inputs);
}

#[test]
fn lightgbm_matches_library() {
    let inputs = inputs();
    let resolve = |name: &str| {
        inputs
            .features
            .iter()
            .position(|f| f == name)
            .map(|i| i as u32)
    };
    for model in ["lgb_binary", "lgb_zero_missing", "lgb_edge", "lgb_xentropy"] {
        let text = read(&format!("{model}.txt"));
        let e = parse_lightgbm(&text, &resolve).unwrap_or_else(|err| panic!("{model}: {err}"));
        check(model, &e, &inputs);
    }
}

#[test]
fn snapshot_column_order_is_independent_of_model_order() {
    // Snapshot with the features reversed and an unrelated column in front.
    let inputs = inputs();
    let n = inputs.features.len();
    let resolve = |name: &str| {
        inputs
            .features
            .iter()
            .position(|f| f == name)
            .map(|i| (n - i) as u32)
    };
    let permuted: Vec<Vec<f32>> = inputs
        .rows
        .iter()
        .map(|r| {
            std::iter::once(-7.0)
                .chain(r.iter().rev().copied())
                .collect()
        })
        .collect();
    let bytes = std::fs::read(fixture("xgb_binary.json")).expect("model file");
    let x = parse_xgboost(&bytes, None, &resolve).expect("xgb");
    let text = read("lgb_binary.txt");
    let l = parse_lightgbm(&text, &resolve).expect("lgb");
    let xs = Inputs {
        features: inputs.features.clone(),
        rows: permuted,
    };
    check("xgb_binary", &x, &xs);
    check("lgb_binary", &l, &xs);
}

#[test]
fn unknown_features_are_all_named() {
    let resolve =
        |name: &str| (!name.starts_with("roaming") && !name.starts_with("nps")).then_some(0);
    let bytes = std::fs::read(fixture("xgb_binary.json")).expect("model file");
    let err = parse_xgboost(&bytes, None, &resolve).expect_err("unknown");
    assert_eq!(
        err.to_string(),
        "model features not found in the feature snapshot: roaming_days_90d, nps_score"
    );
    let err = parse_lightgbm(&read("lgb_binary.txt"), &resolve).expect_err("unknown");
    assert_eq!(
        err.to_string(),
        "model features not found in the feature snapshot: roaming_days_90d, nps_score"
    );
}

/// The demo model's tree-scored offers give the libraries' own probabilities on the demo
/// snapshot (examples/train_demo_trees.py wrote both the models and these predictions).
#[test]
fn demo_tree_offers_match_the_libraries() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let store = nextbest::features::FeatureStore::load(&root.join("models/features.csv")).unwrap();
    let model = nextbest::model::load(&root.join("models"), &store, &Default::default()).unwrap();
    let offer = |id: &str| {
        model
            .compiled
            .offers
            .iter()
            .find(|o| &*o.id == id)
            .unwrap_or_else(|| panic!("demo offer {id}"))
    };
    let (upgrade, streaming) = (offer("device_upgrade_5g"), offer("streaming_bundle"));
    assert!(matches!(upgrade.scorer, nextbest::engine::Scorer::Trees(_)));
    assert!(matches!(
        streaming.scorer,
        nextbest::engine::Scorer::Trees(_)
    ));
    let (header, rows) = csv("demo_predictions.csv");
    assert_eq!(
        header,
        ["customer_id", "device_upgrade_5g", "streaming_bundle"]
    );
    assert_eq!(rows.len(), 300);
    let mut worst = 0f64;
    for r in &rows {
        let features = store.row(&r[0]).unwrap();
        for (scorer, expected) in [(&upgrade.scorer, &r[1]), (&streaming.scorer, &r[2])] {
            let expected: f64 = expected.parse().unwrap();
            let diff = (scorer.predict(features) - expected).abs();
            worst = worst.max(diff);
            assert!(
                diff <= TOLERANCE,
                "{}: ours {} vs library {expected}",
                r[0],
                scorer.predict(features)
            );
        }
    }
    eprintln!("demo trees: worst diff {worst:e}");
    // The demo's categorical model (segment, plan and region as pandas categories).
    let premium = offer("premium_upgrade");
    let (header, rows) = csv("demo_premium_predictions.csv");
    assert_eq!(header, ["customer_id", "premium_upgrade"]);
    assert_eq!(rows.len(), 300);
    for r in &rows {
        let expected: f64 = r[1].parse().unwrap();
        let ours = premium.scorer.predict(store.exact_row(&r[0]).unwrap());
        assert!(
            (ours - expected).abs() <= TOLERANCE,
            "{}: ours {ours} vs library {expected}",
            r[0]
        );
    }
}

/// Float features as a warehouse export writes them (2 to 6 decimals, many beyond what f32
/// holds at their magnitude), loaded through the real CSV loader and its `.nbf` round trip,
/// against the libraries' predictions on the f64 values parsed from the same text. Rows 0-899
/// sit on split thresholds and their f64 and f32 neighbours; NaN, zeros and tiny values too.
#[test]
fn float_inputs_match_the_libraries() {
    let bytes = std::fs::read(fixture("float_inputs.csv")).expect("float_inputs.csv");
    let store = nextbest::features::FeatureStore::from_csv_bytes(&bytes, "float_inputs.csv")
        .expect("float snapshot loads");
    let binary = nextbest::features::FeatureStore::from_nbf_bytes(&store.to_nbf_bytes(), "f.nbf")
        .expect("float snapshot round-trips");
    let resolve = |name: &str| store.column(name).map(|c| c as u32);
    let models: [(&str, TreeEnsemble); 3] = [
        (
            "lgb_float",
            parse_lightgbm(&read("lgb_float.txt"), &resolve).expect("lgb_float"),
        ),
        (
            "lgb_float_zero",
            parse_lightgbm(&read("lgb_float_zero.txt"), &resolve).expect("lgb_float_zero"),
        ),
        (
            "xgb_float",
            parse_xgboost(&read("xgb_float.json").into_bytes(), None, &resolve).expect("xgb"),
        ),
    ];
    let (header, rows) = csv("float_predictions.csv");
    assert_eq!(rows.len(), store.len());
    let mut failures = Vec::new();
    for (model, ensemble) in &models {
        let p = header.iter().position(|h| h == model).expect("column");
        let m = header
            .iter()
            .position(|h| *h == format!("{model}__margin"))
            .expect("margin column");
        let (mut worst, mut wrong) = (0.0_f64, 0);
        for r in &rows {
            let (mut want_p, mut want_m): (f64, f64) =
                (r[p].parse().expect("f64"), r[m].parse().expect("f64"));
            if ensemble.flavor() == Flavor::XgBoost {
                (want_p, want_m) = (f64::from(want_p as f32), f64::from(want_m as f32));
            }
            for s in [&store, &binary] {
                let row = s.exact_row(&r[0]).expect("customer");
                let (got_p, got_m) = (ensemble.predict(row), ensemble.margin(row));
                let d = (got_p - want_p).abs().max((got_m - want_m).abs() / 10.0);
                worst = worst.max(d);
                if d.is_nan() || d > TOLERANCE {
                    wrong += 1;
                }
            }
        }
        println!(
            "{model:15} rows={} perfect={} worst={worst:.3e} wrong={wrong}",
            rows.len(),
            ensemble.is_perfect_layout()
        );
        if wrong > 0 {
            failures.push(format!("{model}: {wrong} rows off, worst {worst:e}"));
        }
    }
    assert!(failures.is_empty(), "{failures:?}");
}

/// A LightGBM model trained without names (`Column_0 ...` in the file) is wired by the scorer
/// spec's `features`, and scores as the named file does; a named file must be listed as named.
#[test]
fn a_nameless_lightgbm_file_takes_the_scorers_feature_list() {
    use nextbest::model::bind::Column;
    use nextbest::model::lightgbm::parse_lightgbm_named;
    let inputs = inputs();
    let resolve = |name: &str| {
        let i = inputs.features.iter().position(|f| f == name)?;
        Some(Column::number(i as u32))
    };
    let text = read("lgb_binary.txt");
    let line = text
        .lines()
        .find(|l| l.starts_with("feature_names="))
        .unwrap();
    let names: Vec<String> = line["feature_names=".len()..]
        .split(' ')
        .map(str::to_owned)
        .collect();
    let anonymous: Vec<String> = (0..names.len()).map(|i| format!("Column_{i}")).collect();
    let nameless = text.replace(line, &format!("feature_names={}", anonymous.join(" ")));
    let (e, _) = parse_lightgbm_named(&nameless, None, Some(&names), &resolve).unwrap();
    check("lgb_binary", &e, &inputs);
    // Without the list, the names are the file's (and the snapshot has none of them).
    let err = parse_lightgbm_named(&nameless, None, None, &resolve).unwrap_err();
    assert!(err.to_string().contains("Column_0"), "{err}");
    // A named file listed otherwise is refused at the first difference.
    let mut other = names.clone();
    other.swap(0, 1);
    let err = parse_lightgbm_named(&text, None, Some(&other), &resolve).unwrap_err();
    assert!(err.to_string().contains("feature_names[0]"), "{err}");
}
