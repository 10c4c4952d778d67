//! Categorical splits and multiclass models against the libraries' own predictions, every row
//! of every fixture: XGBoost 3.2.0 (partition and one-hot splits, a category column of
//! integers, `multi:softprob`, `multi:softmax`) and LightGBM 4.7.0 (`pandas_categorical`
//! string columns, an integer column declared categorical, `multiclass`, `multiclassova`).
//! The scoring rows hold categories no model saw, missing values and an unseen integer code.
//! Fixtures: `tests/fixtures/categorical/make_fixtures.py` (pinned versions, fixed seeds).

use std::path::PathBuf;

use nextbest::engine::trees::TreeEnsemble;
use nextbest::features::FeatureStore;
use nextbest::model::bind::Column;
use nextbest::model::{lightgbm, xgboost};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/categorical")
}

fn inputs() -> FeatureStore {
    FeatureStore::load(&dir().join("inputs.csv")).expect("inputs.csv")
}

/// The libraries' probabilities: (customer id, column name -> value).
fn predictions() -> (Vec<String>, csv::StringRecord, Vec<csv::StringRecord>) {
    let mut r = csv::Reader::from_path(dir().join("predictions.csv")).unwrap();
    let header = r.headers().unwrap().clone();
    let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
    let ids = rows.iter().map(|r| r[0].to_owned()).collect();
    (ids, header, rows)
}

fn column_of<'s>(store: &'s FeatureStore) -> impl Fn(&str) -> Option<Column<'s>> + 's {
    move |name| Column::in_store(store, name)
}

fn load(name: &str, store: &FeatureStore) -> TreeEnsemble {
    let path = dir().join(name);
    let resolve = column_of(store);
    if name.ends_with(".json") {
        let bytes = std::fs::read(&path).unwrap();
        xgboost::parse_xgboost_model(&bytes, &xgboost::Spec::default(), &resolve)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .0
    } else {
        let text = std::fs::read_to_string(&path).unwrap();
        lightgbm::parse_lightgbm_model(&text, None, &resolve)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .0
    }
}

/// Every row of one model's fixture, within 1e-6 of the library.
fn parity(file: &str, prefix: &str, classes: usize) {
    let store = inputs();
    let e = load(file, &store);
    assert_eq!(e.n_classes(), classes, "{file}");
    let (ids, header, rows) = predictions();
    let cols: Vec<usize> = if classes == 1 {
        vec![header.iter().position(|h| h == prefix).unwrap()]
    } else {
        (0..classes)
            .map(|k| {
                let name = format!("{prefix}_{k}");
                header.iter().position(|h| h == name).unwrap()
            })
            .collect()
    };
    let mut out = vec![0.0; classes];
    let mut worst = 0.0_f64;
    for (id, rec) in ids.iter().zip(&rows) {
        let row = store
            .exact_row(id)
            .unwrap_or_else(|| panic!("{id} not in inputs"));
        e.predict_classes(row, &mut out);
        if classes == 1 {
            assert_eq!(out[0], e.predict(row));
        }
        for (k, &c) in cols.iter().enumerate() {
            let want: f64 = rec[c].parse().unwrap();
            let d = (out[k] - want).abs();
            worst = worst.max(d);
            assert!(
                d <= 1e-6,
                "{file} {id} class {k}: {} vs the library's {want}",
                out[k]
            );
        }
    }
    assert_eq!(ids.len(), store.len(), "every input row has a prediction");
    eprintln!(
        "{file}: {} rows x {classes}, worst difference {worst:e}",
        ids.len()
    );
}

#[test]
fn xgboost_binary_with_partition_and_one_hot_splits() {
    parity("xgb_binary.json", "xgb_binary", 1);
}

#[test]
fn xgboost_softprob() {
    parity("xgb_softprob.json", "xgb_softprob", 4);
}

#[test]
fn xgboost_softmax() {
    parity("xgb_softmax.json", "xgb_softmax", 3);
}

#[test]
fn lightgbm_binary_with_pandas_categories() {
    parity("lgb_binary.txt", "lgb_binary", 1);
}

#[test]
fn lightgbm_multiclass() {
    parity("lgb_multiclass.txt", "lgb_multiclass", 4);
}

#[test]
fn lightgbm_multiclassova() {
    parity("lgb_ova.txt", "lgb_ova", 3);
}

#[test]
fn fixtures_hold_what_they_claim() {
    let store = inputs();
    for (c, name) in store.columns().iter().enumerate() {
        let strings = store.dictionary(c).is_some();
        assert_eq!(
            strings,
            ["segment", "plan", "region"].contains(&&**name),
            "{name}"
        );
    }
    let seg = store.column("segment").unwrap();
    let d = store.dictionary(seg).unwrap();
    assert!(d.code("diamond").is_some(), "an unseen category is scored");
    let missing = (0..store.len()).filter(|&r| store.row_at(r).unwrap()[seg].is_nan());
    assert!(missing.count() > 10, "missing values are scored");
    let text = std::fs::read_to_string(dir().join("xgb_binary.json")).unwrap();
    assert!(text.contains("\"split_type\":[0,1") || text.contains("\"split_type\""));
    let lgb = std::fs::read_to_string(dir().join("lgb_binary.txt")).unwrap();
    assert!(lgb.contains("num_cat=") && lgb.contains("pandas_categorical:[["));
}

/// The fixtures' `plan` categories, in code order.
const PLANS: [&str; 8] = [
    "basic",
    "family",
    "prepaid_s",
    "prepaid_m",
    "unlimited",
    "unlimited_5g",
    "data_only",
    "senior",
];

/// A model folder holding the fixtures beside a model.json with the given offers.
fn model_folder(tag: &str, scorers: &[serde_json::Value]) -> PathBuf {
    let d = std::env::temp_dir().join(format!("nb-cat-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    for f in ["xgb_softprob.json", "xgb_binary.json", "lgb_multiclass.txt"] {
        std::fs::copy(dir().join(f), d.join(f)).unwrap();
    }
    let content = serde_json::json!({"title": "t", "body": "b",
        "image_url": "https://cdn.test/x.jpg", "cta_url": "https://shop.test/x"});
    let offers: Vec<serde_json::Value> = scorers
        .iter()
        .enumerate()
        .map(|(i, s)| {
            serde_json::json!({"id": format!("o{i}"), "category": "sales", "channels": ["web"],
                "placements": ["home"], "value": 1, "scorer": s, "content": {"web": content}})
        })
        .collect();
    let doc = serde_json::json!({"name": "nbo", "version": "1",
        "placements": {"home": {"channels": ["web"], "limit": 50}}, "offers": offers});
    std::fs::write(d.join("model.json"), serde_json::to_vec(&doc).unwrap()).unwrap();
    d
}

fn faults(folder: &std::path::Path, store: &FeatureStore) -> Vec<String> {
    match nextbest::model::load(folder, store, &nextbest::model::Limits::default()) {
        Ok(_) => Vec::new(),
        Err(e) => e.faults().iter().map(|f| f.to_string()).collect(),
    }
}

#[test]
fn offers_read_their_class_of_one_multiclass_file() {
    use nextbest::engine::{decide, NoContacts, Request, Scorer, Unbounded, Verdict};
    let store = inputs();
    let scorers: Vec<serde_json::Value> = (0..4)
        .map(|k| serde_json::json!({"kind": "xgboost", "path": "xgb_softprob.json", "class": k}))
        .chain((0..4).map(
            |k| serde_json::json!({"kind": "lightgbm", "path": "lgb_multiclass.txt", "class": k}),
        ))
        .collect();
    let folder = model_folder("classes", &scorers);
    let m = nextbest::model::load(&folder, &store, &nextbest::model::Limits::default()).unwrap();
    let c = &m.compiled;
    // One parse per file: two multiclass ensembles, shared by the offers reading them.
    assert_eq!(c.multiclass.len(), 2);
    let Scorer::Class(first) = &c.offers[0].scorer else {
        panic!()
    };
    let Scorer::Class(third) = &c.offers[2].scorer else {
        panic!()
    };
    assert!(std::sync::Arc::ptr_eq(&first.ensemble, &third.ensemble));
    let (ids, header, rows) = predictions();
    for (id, rec) in ids.iter().zip(&rows).step_by(7) {
        let req = Request {
            customer_id: Some(id),
            channel: "web",
            placement: "home",
            explain: true,
            ..Default::default()
        };
        let d = decide(c, &store, &req, &NoContacts, &Unbounded, 0);
        for (i, v) in d.explain.iter().enumerate() {
            let Verdict::Scored { propensity, .. } = v else {
                panic!("{v:?}")
            };
            let col = if i < 4 {
                format!("xgb_softprob_{i}")
            } else {
                format!("lgb_multiclass_{}", i - 4)
            };
            let want: f64 = rec[header.iter().position(|h| h == col).unwrap()]
                .parse()
                .unwrap();
            assert!(
                (propensity - want).abs() <= 1e-6,
                "{id} offer {i}: {propensity} vs {want}"
            );
        }
    }
    std::fs::remove_dir_all(&folder).ok();
}

/// Offers reading one file with categories of their own: the file's codes mean one thing, so
/// the second reading is refused, naming the feature; the file's own lists, given or not, are
/// one reading.
#[test]
fn offers_reading_one_file_with_other_categories_are_refused() {
    let store = inputs();
    let segment = ["bronze", "silver", "gold", "platinum"];
    let lists = |segment: &[&str]| serde_json::json!({"segment": segment, "plan": PLANS, "region": ["capital", "north", "south"]});
    let x = |class: u16, categories: Option<serde_json::Value>| {
        let mut s =
            serde_json::json!({"kind": "xgboost", "path": "xgb_softprob.json", "class": class});
        if let Some(c) = categories {
            s["categories"] = c;
        }
        s
    };
    // The file as XGBoost before 3.1 writes it, with no categories of its own: each offer's
    // lists would stand, and two orders of `segment` would score one customer two ways.
    let swapped = ["silver", "bronze", "gold", "platinum"];
    let folder = model_folder(
        "other-categories",
        &[x(0, Some(lists(&segment))), x(1, Some(lists(&swapped)))],
    );
    let mut file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(folder.join("xgb_softprob.json")).unwrap()).unwrap();
    let model = &mut file["learner"]["gradient_booster"]["model"];
    assert!(model.as_object_mut().unwrap().remove("cats").is_some());
    std::fs::write(
        folder.join("xgb_softprob.json"),
        serde_json::to_vec(&file).unwrap(),
    )
    .unwrap();
    let f = faults(&folder, &store);
    assert_eq!(
        f,
        ["offers[1].scorer.categories: `xgb_softprob.json` is read by offers[0].scorer with other \
          `categories` for `segment`: a file's category codes mean one thing, so every offer \
          reading it gives the same lists (or none)"],
    );
    std::fs::remove_dir_all(&folder).ok();
    // The file's own lists, given by one offer and not by the other: one reading.
    let folder = model_folder("own-categories", &[x(0, None), x(1, Some(lists(&segment)))]);
    assert_eq!(faults(&folder, &store), Vec::<String>::new());
    std::fs::remove_dir_all(&folder).ok();
}

#[test]
fn class_faults_name_their_paths() {
    let store = inputs();
    let x = |path: &str, class: Option<u32>| match class {
        Some(k) => serde_json::json!({"kind": "xgboost", "path": path, "class": k}),
        None => serde_json::json!({"kind": "xgboost", "path": path}),
    };
    let cases = [
        (vec![x("xgb_softprob.json", Some(4))], "offers[0].scorer.class: class 4 is outside `xgb_softprob.json`'s 4 classes (0 to 3)"),
        (vec![x("xgb_softprob.json", None)], "offers[0].scorer.class: missing field: `xgb_softprob.json` is a multiclass model (4 classes)"),
        (vec![x("xgb_binary.json", Some(0))], "offers[0].scorer.class: `xgb_binary.json` is a binary model"),
        (
            vec![x("xgb_softprob.json", Some(1)), x("xgb_softprob.json", Some(1))],
            "offers[1].scorer.class: class 1 of `xgb_softprob.json` is already offers[0]'s propensity",
        ),
    ];
    // A class of the wrong type is one fault, said once; a fraction is not a class.
    let typed = |class: serde_json::Value| {
        vec![serde_json::json!({"kind": "xgboost", "path": "xgb_softprob.json", "class": class})]
    };
    let cases = cases.into_iter().chain([
        (
            typed(serde_json::json!("2")),
            "offers[0].scorer.class: expected a number",
        ),
        (typed(serde_json::json!(-1)), "offers[0].scorer.class: "),
        (
            typed(serde_json::json!(1.5)),
            "offers[0].scorer.class: expected a class index (0, 1, ...)",
        ),
    ]);
    for (i, (scorers, want)) in cases.enumerate() {
        let folder = model_folder(&format!("fault{i}"), &scorers);
        let f = faults(&folder, &store);
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].starts_with(want), "{f:?}\nwant: {want}");
        std::fs::remove_dir_all(&folder).ok();
    }
    // A string column the model treats as numeric, or the other way round, is refused.
    let numeric = FeatureStore::from_csv_bytes(
        b"customer_id,tenure,arpu,segment,plan,region,device_code\nC1,1,2,3,4,5,0\n",
        "n.csv",
    )
    .unwrap();
    let folder = model_folder("kinds", &[x("xgb_binary.json", None)]);
    let f = faults(&folder, &numeric);
    assert!(
        f[0].contains("the model's categories are strings, but the snapshot column holds numbers"),
        "{f:?}"
    );
    // A refused file used by several offers has its faults listed once, at the first of them;
    // the others point there.
    let classes: Vec<serde_json::Value> = (0..4)
        .map(|k| serde_json::json!({"kind": "xgboost", "path": "xgb_softprob.json", "class": k}))
        .collect();
    let shared = model_folder("shared-refusal", &classes);
    let f = faults(&shared, &numeric);
    let first: Vec<&String> = f
        .iter()
        .filter(|m| m.starts_with("offers[0].scorer"))
        .collect();
    assert!(
        !first.is_empty() && first.iter().all(|m| !m.contains("are listed under")),
        "{f:?}"
    );
    let pointers: Vec<&String> = f
        .iter()
        .filter(|m| !m.starts_with("offers[0].scorer"))
        .collect();
    assert_eq!(pointers.len(), 3, "{f:?}");
    for (i, m) in pointers.iter().enumerate() {
        assert_eq!(
            **m,
            format!(
                "offers[{}].scorer.path: `xgb_softprob.json` is refused: its faults are listed \
                 under offers[0].scorer",
                i + 1
            )
        );
    }
    std::fs::remove_dir_all(&shared).ok();
    // Text, but none of the values the model was trained on (codes exported for names): every
    // customer would score as if the column were missing, so it is refused, not warned of.
    let coded = FeatureStore::from_csv_bytes(
        b"customer_id,tenure,arpu,segment:str,plan:str,region:str,device_code\n\
          C1,1,2,gold,0,north,0\nC2,1,2,silver,1,capital,0\n",
        "coded.csv",
    )
    .unwrap();
    let f = faults(&folder, &coded);
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(
        f[0].starts_with(
            "offers[0].scorer.path: feature `plan`: none of the snapshot's 2 values (\"0\", \"1\") \
             is among the model's categories"
        ),
        "{f:?}"
    );
    std::fs::remove_dir_all(&folder).ok();
}

/// The benchmark pair: trained on the same rows, the categorical ensemble keeps its splits as
/// masked nodes (one code input per categorical feature), so it reads about as many inputs as
/// its numeric twin and keeps them in registers.
#[test]
fn the_categorical_bench_ensemble_reads_few_inputs() {
    let store = inputs();
    let e = load("bench_cat_100x6.json", &store);
    assert_eq!(e.n_trees(), 100);
    assert!(e.is_perfect_layout());
    assert!(e.n_inputs() <= 32, "{} inputs", e.n_inputs());
    eprintln!("bench_cat_100x6: {} inputs", e.n_inputs());
}

/// What the model file says of its categories binds: a snapshot whose text columns are not
/// those the LightGBM model was trained on is refused (LightGBM refuses such data too, and
/// reading the lists against the wrong columns scores customers as others), and so is a
/// scorer's `categories` that differs from the names an XGBoost file stores, or repeats one.
#[test]
fn categories_that_disagree_with_the_model_file_are_refused() {
    let csv = std::fs::read_to_string(dir().join("inputs.csv")).unwrap();
    // `plan` coded as numbers: the region list would be read as plan's.
    let coded: String = csv
        .lines()
        .enumerate()
        .map(|(i, l)| {
            let mut f: Vec<String> = l.split(',').map(str::to_owned).collect();
            if i > 0 {
                f[4] = PLANS
                    .iter()
                    .position(|p| *p == f[4])
                    .map_or(String::new(), |k| k.to_string());
            }
            f.join(",") + "\n"
        })
        .collect();
    let store = FeatureStore::from_csv_bytes(coded.as_bytes(), "coded.csv").unwrap();
    let text = std::fs::read_to_string(dir().join("lgb_binary.txt")).unwrap();
    let Err(e) = lightgbm::parse_lightgbm_model(&text, None, &column_of(&store)) else {
        panic!("a snapshot with `plan` as numbers is refused");
    };
    assert!(
        e.to_string().contains(
            "held text at training and holds numbers here; export it as at training \
             (`plan:str` in a CSV header reads it as text; LightGBM refuses such data too): the \
             model was trained on 3 text (pandas category) columns, and 2 of its features hold \
             text in the snapshot (segment, region)"
        ),
        "{e}"
    );

    // A snapshot without `region` is refused for the missing column, not as a change of type.
    let without: String = csv
        .lines()
        .map(|l| {
            let mut f: Vec<&str> = l.split(',').collect();
            f.remove(5);
            f.join(",") + "\n"
        })
        .collect();
    let store = FeatureStore::from_csv_bytes(without.as_bytes(), "without.csv").unwrap();
    let Err(e) = lightgbm::parse_lightgbm_model(&text, None, &column_of(&store)) else {
        panic!("a snapshot without `region` is refused");
    };
    assert!(
        e.to_string()
            .contains("model features not found in the feature snapshot: region"),
        "{e}"
    );

    let store = inputs();
    let xgb = |categories: serde_json::Value| {
        let folder = model_folder(
            "given",
            &[
                serde_json::json!({"kind": "xgboost", "path": "xgb_binary.json",
                "categories": categories}),
            ],
        );
        let f = faults(&folder, &store);
        std::fs::remove_dir_all(&folder).ok();
        f.join("\n")
    };
    let stored = xgboost::parse_xgboost_model(
        &std::fs::read(dir().join("xgb_binary.json")).unwrap(),
        &xgboost::Spec::default(),
        &column_of(&store),
    );
    assert!(stored.is_ok());
    let f = xgb(serde_json::json!({"segment": ["platinum", "gold", "silver", "bronze"]}));
    assert!(
        f.contains(
            "offers[0].scorer.categories.segment: `xgb_binary.json` (xgboost): the model file \
             names this feature's categories"
        ),
        "{f}"
    );
    let f = xgb(serde_json::json!({"segment": ["bronze", "gold", "gold", "platinum"]}));
    assert!(f.contains("\"gold\" is listed twice"), "{f}");
    let f = xgb(serde_json::json!({"segmnt": ["bronze", "silver", "gold", "platinum"]}));
    assert!(
        f.contains(
            "offers[0].scorer.categories.segmnt: `xgb_binary.json` (xgboost): the model has no \
             feature of that name"
        ),
        "{f}"
    );
}

/// A column that was text at training and holds numbers in the snapshot is named, with the
/// CSV header that reads it as text, by both parsers.
#[test]
fn a_text_column_that_now_holds_numbers_is_named_with_the_header_hint() {
    let tmp = std::env::temp_dir().join(format!("nb-catnum-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let csv = tmp.join("f.csv");
    std::fs::write(
        &csv,
        "customer_id,tenure,arpu,segment,plan,region,device_code\n\
         C1,3,20,2,basic,north,1\nC2,5,30,0,family,south,2\n",
    )
    .unwrap();
    let store = FeatureStore::load(&csv).unwrap();
    std::fs::remove_dir_all(&tmp).ok();
    let resolve = column_of(&store);
    let text = std::fs::read_to_string(dir().join("lgb_binary.txt")).unwrap();
    let e = lightgbm::parse_lightgbm_model(&text, None, &resolve)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("pandas_categorical: ")
            && e.contains("and 2 of its features hold text in the snapshot (plan, region)")
            && e.contains("`segment` held text at training and holds numbers here")
            && e.contains("`segment:str` in a CSV header"),
        "{e}"
    );
    // Codes exported for all three: the file's lists (in order, each fitting its feature's
    // codes) say which, so all three are named, and `device_code` (a category of numbers
    // given to LightGBM as such) is not.
    let codes = FeatureStore::from_csv_bytes(
        b"customer_id,tenure,arpu,segment,plan,region,device_code\nC1,3,20,2,1,0,1\n",
        "codes.csv",
    )
    .unwrap();
    let e = lightgbm::parse_lightgbm_model(&text, None, &column_of(&codes))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(
            "`segment`, `plan` and `region` held text at training and hold numbers here; export \
             them as at training (`name:str` in a CSV header"
        ) && e.ends_with("and none of its features holds text in the snapshot"),
        "{e}"
    );
    let bytes = std::fs::read(dir().join("xgb_binary.json")).unwrap();
    let e = xgboost::parse_xgboost_model(&bytes, &xgboost::Spec::default(), &resolve)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("feature 'segment'") && e.contains("`segment:str` in a CSV header"),
        "{e}"
    );
}

/// A column of numbers that a word later in the export turned to text (`NA` for a missing
/// value): both parsers name that column, its line and the word, and say to export the value
/// as a number or an empty field, not to retrain the model on it as a category.
#[test]
fn a_word_that_turned_a_numeric_feature_to_text_is_named_by_both_parsers() {
    let csv = std::fs::read_to_string(dir().join("inputs.csv")).unwrap();
    // `arpu` (column 2) of the fourth customer, on the file's line 5, written as `NA`.
    let turned: String = csv
        .lines()
        .enumerate()
        .map(|(i, l)| {
            let mut f: Vec<&str> = l.split(',').collect();
            if i == 4 {
                f[2] = "NA";
            }
            f.join(",") + "\n"
        })
        .collect();
    let store = FeatureStore::from_csv_bytes(turned.as_bytes(), "na.csv").unwrap();
    let scorers = [
        serde_json::json!({"kind": "xgboost", "path": "xgb_binary.json"}),
        serde_json::json!({"kind": "lightgbm", "path": "lgb_multiclass.txt", "class": 0}),
    ];
    let folder = model_folder("turned", &scorers);
    let f = faults(&folder, &store);
    std::fs::remove_dir_all(&folder).ok();
    assert_eq!(f.len(), 2, "{f:?}");
    let advice = "its line 5 made it text (`NA`); if the export writes a missing value so, \
                  give `--features-null NA`, else export it as a number (`arpu:num` in the \
                  CSV header refuses such a word with its line)";
    assert_eq!(
        f[0],
        format!(
            "offers[0].scorer.path: `xgb_binary.json` (xgboost): feature 'arpu': the model \
             treats it as numeric, but the snapshot column holds strings: {advice}"
        )
    );
    assert!(
        f[1].starts_with("offers[1].scorer.path: `lgb_multiclass.txt` (lightgbm): ")
            && f[1].contains("`arpu` held numbers at training and holds text here")
            && f[1].contains("`arpu:num` in a CSV header reads it as numbers")
            && f[1].ends_with(&format!("; `arpu`: {advice}")),
        "{}",
        f[1]
    );
}

/// Every feature whose categories the file does not name is reported by one load, each at
/// the scorer's `categories` entry it needs.
#[test]
fn every_feature_without_its_categories_is_named_at_once() {
    let store = inputs();
    let mut doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir().join("xgb_binary.json")).unwrap()).unwrap();
    // The file as XGBoost 2.1 writes it: category codes, no names.
    let trees = doc["learner"]["gradient_booster"]["model"]["trees"]
        .as_array_mut()
        .unwrap();
    for t in trees {
        if let Some(o) = t.as_object_mut() {
            o.remove("categories_names");
            o.remove("cats");
        }
    }
    if let Some(o) = doc["learner"]["gradient_booster"]["model"].as_object_mut() {
        o.remove("cats");
    }
    let folder = model_folder(
        "codes",
        &[serde_json::json!({"kind": "xgboost", "path": "x.json"})],
    );
    std::fs::write(folder.join("x.json"), serde_json::to_vec(&doc).unwrap()).unwrap();
    let f = faults(&folder, &store);
    std::fs::remove_dir_all(&folder).ok();
    let at: Vec<&str> = f.iter().map(|f| f.split(": ").next().unwrap()).collect();
    assert_eq!(
        at,
        [
            "offers[0].scorer.categories.segment",
            "offers[0].scorer.categories.plan",
            "offers[0].scorer.categories.region",
        ],
        "{f:?}"
    );
    assert!(
        f[0].contains("stores only category codes for feature 'segment'"),
        "{f:?}"
    );
}

/// A file that says a release wrote it whose format this build does not know loads with a
/// warning at its scorer saying so (it may score otherwise than the library); the releases it
/// knows load without one.
#[test]
fn a_file_from_an_unknown_release_loads_with_a_warning() {
    let store = inputs();
    let scorers = [
        serde_json::json!({"kind": "xgboost", "path": "xgb_binary.json"}),
        serde_json::json!({"kind": "lightgbm", "path": "lgb_multiclass.txt", "class": 0}),
    ];
    let folder = model_folder("release", &scorers);
    let warnings = |folder: &std::path::Path| -> Vec<String> {
        nextbest::model::load(folder, &store, &nextbest::model::Limits::default())
            .unwrap()
            .warnings
            .iter()
            .map(|w| w.to_string())
            .filter(|w| w.contains("outside"))
            .collect()
    };
    assert_eq!(warnings(&folder), Vec::<String>::new());
    let xgb = folder.join("xgb_binary.json");
    let mut doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&xgb).unwrap()).unwrap();
    doc["version"] = serde_json::json!([99, 0, 0]);
    std::fs::write(&xgb, serde_json::to_vec(&doc).unwrap()).unwrap();
    let lgb = folder.join("lgb_multiclass.txt");
    let text = std::fs::read_to_string(&lgb).unwrap();
    std::fs::write(&lgb, text.replacen("version=v4", "version=v5", 1)).unwrap();
    let got = warnings(&folder);
    std::fs::remove_dir_all(&folder).ok();
    assert_eq!(
        got,
        [
            "offers[0].scorer.path: `xgb_binary.json`: written by XGBoost 99.0.0, outside the \
             releases this build reads (1.0 to 3.x): compare a few of its scores with the \
             library's predict_proba before it serves",
            "offers[1].scorer.path: `lgb_multiclass.txt`: written in LightGBM model format \
             \"v5\", outside those this build reads (v2 to v4): compare a few of its scores \
             with the library's predict before it serves",
        ]
    );
}

/// `nextbest model score` prints what the library predicts for every row of the fixture: a
/// binary file, and each class of a multiclass one read by its own offer.
#[test]
fn model_score_prints_the_librarys_numbers_for_every_row() {
    let x = |path: &str, class: Option<u32>| match class {
        Some(k) => serde_json::json!({"kind": "xgboost", "path": path, "class": k}),
        None => serde_json::json!({"kind": "xgboost", "path": path}),
    };
    let folder = model_folder(
        "score",
        &[
            x("xgb_binary.json", None),
            x("xgb_softprob.json", Some(0)),
            x("xgb_softprob.json", Some(3)),
        ],
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nextbest"))
        .args(["model", "score"])
        .arg(&folder)
        .arg("--features")
        .arg(dir().join("inputs.csv"))
        .env("NEXTBEST_LOG_FORMAT", "text")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut printed = csv::Reader::from_reader(&out.stdout[..]);
    assert_eq!(
        printed.headers().unwrap(),
        &csv::StringRecord::from(vec!["customer_id", "o0", "o1", "o2"])
    );
    let (ids, header, rows) = predictions();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let want = [
        col("xgb_binary"),
        col("xgb_softprob_0"),
        col("xgb_softprob_3"),
    ];
    let got: Vec<csv::StringRecord> = printed.records().map(Result::unwrap).collect();
    assert_eq!(got.len(), ids.len());
    for (rec, (id, lib)) in got.iter().zip(ids.iter().zip(&rows)) {
        assert_eq!(&rec[0], id);
        for (k, &c) in want.iter().enumerate() {
            let (ours, theirs): (f64, f64) = (rec[k + 1].parse().unwrap(), lib[c].parse().unwrap());
            assert!(
                (ours - theirs).abs() < 1e-6,
                "{id} o{k}: {ours} vs {theirs}"
            );
        }
    }
    std::fs::remove_dir_all(&folder).ok();
}

/// A scorer's `categories` for a column of numbers the file lists itself: the same numbers in
/// the same order are taken, other ones are refused, naming the file's.
#[test]
fn numbers_given_for_a_file_that_lists_them_must_be_its_own() {
    let store = inputs();
    let with = |list: serde_json::Value| {
        vec![
            serde_json::json!({"kind": "xgboost", "path": "xgb_binary.json",
            "categories": {"device_code": list}}),
        ]
    };
    let folder = model_folder("numbers-same", &with(serde_json::json!([0, 1, 2, 3, 4, 5])));
    assert_eq!(faults(&folder, &store), Vec::<String>::new());
    std::fs::remove_dir_all(&folder).ok();
    let folder = model_folder(
        "numbers-other",
        &with(serde_json::json!([1, 0, 2, 3, 4, 5])),
    );
    let f = faults(&folder, &store);
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(
        f[0].ends_with(
            "the model file lists this feature's categories as numbers (0, 1, 2, 3, 4, 5): \
             leave this list out, or give the same numbers in the same order"
        ),
        "{f:?}"
    );
    std::fs::remove_dir_all(&folder).ok();
}

/// A LightGBM file from Python cut anywhere after its trees lost the names of its categories:
/// inside its parameters it is called cut short; after them the fault asking for the names
/// says where they would have been, so no one lists them by guess for a cut file.
#[test]
fn a_lightgbm_file_cut_after_its_trees_says_so() {
    let store = inputs();
    let whole = std::fs::read_to_string(dir().join("lgb_multiclass.txt")).unwrap();
    let at = |marker: &str| whole.find(marker).expect(marker);
    let scorer =
        [serde_json::json!({"kind": "lightgbm", "path": "lgb_multiclass.txt", "class": 0})];
    let cases = [
        (
            at("[learning_rate"),
            "parameters: the file ends before `end of parameters`, so it was cut short",
        ),
        (
            at("pandas_categorical:"),
            "this file has none: if it came from Python, it was cut short",
        ),
        (
            at("feature_importances:") + "feature_importances:\n".len() + 3,
            "this file has none: if it came from Python, it was cut short",
        ),
    ];
    for (i, (cut, want)) in cases.into_iter().enumerate() {
        let folder = model_folder(&format!("lgb-cut{i}"), &scorer);
        std::fs::write(folder.join("lgb_multiclass.txt"), &whole[..cut]).unwrap();
        let f = faults(&folder, &store);
        assert!(
            !f.is_empty() && f.iter().all(|m| m.contains(want)),
            "case {i}: {f:?}"
        );
        std::fs::remove_dir_all(&folder).ok();
    }
    // The whole file loads.
    let folder = model_folder("lgb-whole", &scorer);
    assert_eq!(faults(&folder, &store), Vec::<String>::new());
    std::fs::remove_dir_all(&folder).ok();
}
