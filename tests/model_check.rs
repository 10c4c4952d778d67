//! `nextbest model check --features`: a rule value the snapshot's text column never holds is a
//! warning with its path (the model still checks out), and a number test on a text column is
//! a fault that fails the command.

use std::process::Command;

fn check(model: &serde_json::Value, tag: &str) -> (bool, String) {
    check_files(&[("model.json", model)], tag)
}

/// `nextbest model check DIR/model.json --features DIR/f.csv` with `files` written in a folder
/// of their own: success and output.
fn check_files(files: &[(&str, &serde_json::Value)], tag: &str) -> (bool, String) {
    check_in(tag, true, |dir| {
        for (name, doc) in files {
            std::fs::write(dir.join(name), serde_json::to_vec(doc).unwrap()).unwrap();
        }
    })
}

/// `nextbest model check DIR/model.json` (with `--features DIR/f.csv` when `snapshot`) in a
/// folder of its own that `setup` fills: success and output.
fn check_in(tag: &str, snapshot: bool, setup: impl FnOnce(&std::path::Path)) -> (bool, String) {
    let dir = std::env::temp_dir().join(format!("nb-check-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("f.csv"),
        "customer_id,segment,arpu\nC1,gold,10\nC2,bronze,20\nC3,,30\n",
    )
    .unwrap();
    setup(&dir);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nextbest"));
    cmd.args(["model", "check"]).arg(dir.join("model.json"));
    if snapshot {
        cmd.arg("--features").arg(dir.join("f.csv"));
    }
    let out = cmd
        .env("NEXTBEST_LOG", "error")
        .output()
        .expect("nextbest runs");
    std::fs::remove_dir_all(&dir).ok();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn model(rule: serde_json::Value) -> serde_json::Value {
    serde_json::json!({"name": "m", "version": "1",
        "placements": {"home": {"channels": ["web"]}},
        "offers": [{"id": "o", "category": "sales", "channels": ["web"], "placements": ["home"],
            "value": 1, "eligibility": rule, "scorer": {"kind": "constant", "propensity": 0.5},
            "content": {"web": {"title": "t", "body": "b", "image_url": "https://c.test/x.jpg",
                "cta_url": "https://s.test/x"}}}]})
}

#[test]
fn a_typo_in_a_text_rule_is_warned_about_with_its_path() {
    let rule = serde_json::json!({"feature": "segment", "op": "in", "values": ["gold", "platnum"]});
    let (ok, text) = check(&model(rule), "typo");
    assert!(ok, "{text}");
    assert!(
        text.contains(
            "warning: offers[0].eligibility.values[1]: \"platnum\" is not a value of `segment`"
        ),
        "{text}"
    );
    assert!(text.contains("ok: m version 1"), "{text}");
    assert!(text.contains("it never matches"), "{text}");
    // For `ne` the same typo holds for everyone instead, and the warning says so.
    let (ok, text) = check(
        &model(serde_json::json!({"feature": "segment", "op": "ne", "value": "Gold"})),
        "typo-ne",
    );
    assert!(ok, "{text}");
    assert!(
        text.contains("\"Gold\" is not a value of `segment`")
            && text.contains("holds for every customer with a value"),
        "{text}"
    );
    let (ok, text) = check(
        &model(serde_json::json!({"feature": "segment", "op": "eq", "value": "gold"})),
        "clean",
    );
    assert!(ok && !text.contains("warning"), "{text}");
}

/// A contact policy naming a category no offer carries holds no offer: a typo (here a letter
/// case) would otherwise leave the sales cap off in silence.
#[test]
fn a_policy_category_no_offer_has_is_warned_about_with_its_path() {
    let mut m = model(serde_json::json!({"feature": "arpu", "op": "ge", "value": 5}));
    m["policies"] = serde_json::json!({
        "sales_cap": {"max_contacts": 2, "window_days": 7, "categories": ["Sales"]},
        "complaint_hold": {"categories": ["sales", "retension"], "timeout_days": 30}});
    let (ok, text) = check(&m, "policy-category");
    assert!(ok, "{text}");
    assert!(
        text.contains(
            "warning: policies.sales_cap.categories[0]: no offer has category \"Sales\", so the \
             policy holds none: did you mean \"sales\"? (letter case counts)"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "warning: policies.complaint_hold.categories[1]: no offer has category \"retension\""
        ) && text.contains("(offers have sales)"),
        "{text}"
    );
    assert!(!text.contains("categories[0]: no offer has category \"sales\""));
    // The other way round: an offer's category a letter off the one its policies name.
    let mut m = model(serde_json::json!({"feature": "arpu", "op": "ge", "value": 5}));
    let mut other = m["offers"][0].clone();
    other["id"] = "o2".into();
    m["offers"][0]["category"] = "salse".into();
    m["offers"] = serde_json::json!([m["offers"][0], other]);
    m["policies"] = serde_json::json!({
        "complaint_hold": {"categories": ["sales"], "timeout_days": 30}});
    let (ok, text) = check(&m, "offer-category");
    assert!(ok, "{text}");
    assert!(
        text.contains(
            "warning: offers[0].category: \"salse\" is named by no contact policy, and is close \
             to \"sales\", which policies.complaint_hold.categories names"
        ),
        "{text}"
    );
}

/// An operand the operator does not read is ignored, and said: `is_missing` with a `value`
/// (perhaps meant as "is present"), `eq` with a list.
#[test]
fn an_operand_the_operator_does_not_read_is_warned_about() {
    let rule = serde_json::json!({"all": [
        {"feature": "arpu", "op": "is_missing", "value": false},
        {"feature": "segment", "op": "eq", "value": "gold", "values": ["gold", "bronze"]}]});
    let (ok, text) = check(&model(rule), "operand");
    assert!(ok, "{text}");
    for (path, message) in [
        (
            "offers[0].eligibility.all[0].value",
            "`is_missing` does not read `value`",
        ),
        (
            "offers[0].eligibility.all[1].values",
            "`eq` does not read `values`",
        ),
    ] {
        assert!(
            text.contains(&format!("warning: {path}: {message}: it is ignored")),
            "{text}"
        );
    }
}

#[test]
fn a_list_given_to_eq_or_one_value_to_in_names_the_operator_meant() {
    for (rule, tag, message) in [
        (
            serde_json::json!({"feature": "segment", "op": "eq", "values": ["gold", "bronze"]}),
            "eq-list",
            "offers[0].eligibility.op: `eq` compares one `value`; for a list of `values` use `in`",
        ),
        (
            serde_json::json!({"feature": "segment", "op": "not_in", "value": "gold"}),
            "notin-one",
            "offers[0].eligibility.op: `not_in` reads a list of `values`; for one `value` use `ne`",
        ),
    ] {
        let (ok, text) = check(&model(rule), tag);
        assert!(!ok, "{text}");
        assert!(text.contains(message), "{text}");
        assert!(!text.contains("missing field"), "{text}");
    }
}

/// A refused model's warnings are printed with its faults: the analyst sees both in one round.
#[test]
fn a_refused_models_warnings_come_with_its_faults() {
    let mut m = model(serde_json::json!({"feature": "segment", "op": "in", "values": ["platnum"]}));
    m["offers"][0]["value"] = serde_json::json!(-1);
    let (ok, text) = check(&m, "faults-and-warnings");
    assert!(!ok, "{text}");
    assert!(text.contains("offers[0].value"), "{text}");
    assert!(
        text.contains("warning: offers[0].eligibility.values[0]: \"platnum\" is not a value"),
        "{text}"
    );
}

#[test]
fn a_number_test_on_a_text_column_fails_the_check() {
    let rule = serde_json::json!({"feature": "segment", "op": "ge", "value": 2});
    let (ok, text) = check(&model(rule), "kind");
    assert!(!ok, "{text}");
    assert!(
        text.contains(
            "offers[0].eligibility.op: `ge` compares numbers, and `segment` holds strings"
        ),
        "{text}"
    );
}

/// Checks a champion whose challenger document is `challenger`, in one folder.
fn check_with_challenger(challenger: &serde_json::Value, tag: &str) -> (bool, String) {
    let mut champion = model(serde_json::json!({"feature": "arpu", "op": "ge", "value": 5}));
    champion["placements"]["home"]["channels"] = serde_json::json!(["web", "sms"]);
    champion["offers"][0]["channels"] = serde_json::json!(["web", "sms"]);
    champion["offers"][0]["content"]["sms"] =
        serde_json::json!({"body": "b", "cta_url": "https://s.test/x"});
    champion["challenger"] =
        serde_json::json!({"path": "challenger.json", "share": 0.1, "salt": "t1"});
    check_files(
        &[("model.json", &champion), ("challenger.json", challenger)],
        tag,
    )
}

#[test]
fn the_challenger_is_checked_as_an_upload_checks_it() {
    // Web only, and an unknown feature: refused by an upload, and so by the check.
    let mut web_only = model(serde_json::json!({"feature": "arpu", "op": "ge", "value": 5}));
    web_only["name"] = serde_json::json!("web_only");
    let (ok, text) = check_with_challenger(&web_only, "chal-channels");
    assert!(!ok, "{text}");
    assert!(
        text.contains("challenger.path") && text.contains("no channel `sms`"),
        "{text}"
    );
    let mut unknown = model(serde_json::json!({"feature": "tenure", "op": "ge", "value": 5}));
    unknown["placements"]["home"]["channels"] = serde_json::json!(["web", "sms"]);
    unknown["offers"][0]["channels"] = serde_json::json!(["web", "sms"]);
    unknown["offers"][0]["content"]["sms"] =
        serde_json::json!({"body": "b", "cta_url": "https://s.test/x"});
    let (ok, text) = check_with_challenger(&unknown, "chal-feature");
    assert!(!ok, "{text}");
    // Named in the challenger's own file, where it is to be fixed.
    let line = text
        .lines()
        .find(|l| l.contains("offers[0].eligibility"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.contains("challenger.json: offers[0].eligibility") && line.contains("tenure"),
        "{text}"
    );
    // A challenger as good as its champion checks out, and says so.
    unknown["offers"][0]["eligibility"] =
        serde_json::json!({"feature": "arpu", "op": "ge", "value": 7});
    let (ok, text) = check_with_challenger(&unknown, "chal-ok");
    assert!(ok, "{text}");
    assert!(text.contains("ok: challenger m version 1"), "{text}");
}

/// Without `--features` the snapshot is unknown: a categorical XGBoost model is judged as a
/// file, not refused as if every column held numbers.
#[test]
fn a_categorical_tree_model_checks_without_a_snapshot() {
    let fixtures =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/categorical");
    let mut m = model(serde_json::json!({"feature": "arpu", "op": "ge", "value": 5}));
    let mut second = m["offers"][0].clone();
    m["offers"][0]["scorer"] = serde_json::json!({"kind": "xgboost", "path": "xgb_binary.json"});
    second["id"] = "o2".into();
    second["scorer"] = serde_json::json!({"kind": "lightgbm", "path": "lgb_binary.txt"});
    m["offers"] = serde_json::json!([m["offers"][0], second]);
    let (ok, text) = check_in("nosnap", false, |dir| {
        for f in ["xgb_binary.json", "lgb_binary.txt"] {
            std::fs::copy(fixtures.join(f), dir.join(f)).unwrap();
        }
        std::fs::write(dir.join("model.json"), serde_json::to_vec(&m).unwrap()).unwrap();
    });
    assert!(ok, "{text}");
    assert!(text.contains("(not checked against a snapshot)"), "{text}");
}

/// A snapshot value a categorical tree model never saw (a renamed plan, `Gold` for `gold`) is
/// scored as missing: the check names the values and the share of customers holding them.
#[test]
fn snapshot_values_a_tree_model_never_saw_are_warned_about_with_their_share() {
    let fixtures =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/categorical");
    let inputs = std::fs::read_to_string(fixtures.join("inputs.csv")).unwrap();
    let mut lines = inputs.lines();
    let mut csv = format!("{}\n", lines.next().unwrap());
    for (i, line) in lines.take(20).enumerate() {
        let mut cells: Vec<&str> = line.split(',').collect();
        // customer_id,tenure,arpu,segment,plan,region,device_code
        if i < 3 {
            cells[3] = "Gold";
        }
        if i == 3 {
            cells[4] = "unlimited_plus";
        }
        csv.push_str(&cells.join(","));
        csv.push('\n');
    }
    let mut m = model(serde_json::json!({"feature": "arpu", "op": "ge", "value": 5}));
    let mut second = m["offers"][0].clone();
    m["offers"][0]["scorer"] = serde_json::json!({"kind": "lightgbm", "path": "lgb_binary.txt"});
    second["id"] = "o2".into();
    second["scorer"] = serde_json::json!({"kind": "lightgbm", "path": "lgb_binary.txt"});
    m["offers"] = serde_json::json!([m["offers"][0], second]);
    let (ok, text) = check_in("unseen", true, |dir| {
        std::fs::copy(fixtures.join("lgb_binary.txt"), dir.join("lgb_binary.txt")).unwrap();
        std::fs::write(dir.join("f.csv"), &csv).unwrap();
        std::fs::write(dir.join("model.json"), serde_json::to_vec(&m).unwrap()).unwrap();
    });
    assert!(ok, "{text}");
    let segment = text
        .lines()
        .find(|l| l.contains("feature `segment`"))
        .unwrap_or_else(|| panic!("no warning for segment:\n{text}"));
    assert!(
        segment.contains("offers[0].scorer.path")
            && segment.contains("1 of the snapshot's 5 values is not among the model's categories (\"Gold\", held by 3 of 20 customers, 15.00 %): they are scored as if `segment` were missing"),
        "{segment}"
    );
    let plan = text
        .lines()
        .find(|l| l.contains("feature `plan`"))
        .unwrap_or_else(|| panic!("no warning for plan:\n{text}"));
    assert!(
        plan.contains("1 of the snapshot's")
            && plan.contains("(\"unlimited_plus\", held by 1 of 20 customers, 5.00 %)"),
        "{plan}"
    );
    // Once per file, however many offers score with it; region holds only known values.
    assert_eq!(text.matches("feature `segment`").count(), 1, "{text}");
    assert!(!text.contains("feature `region`"), "{text}");
}

/// The same for a column of numbers the model lists as its categories (a pandas category of
/// numbers, `device_generation` 3, 4, 5): a new one (6) is warned of with its share, once
/// for every file reading it, and a snapshot holding none of them is refused.
#[test]
fn snapshot_numbers_a_tree_model_never_saw_among_its_categories_are_warned_about() {
    let fixtures =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/categorical");
    // The fixture with `device_code` (0 to 9 there) given to LightGBM as a pandas category.
    let lgb = std::fs::read_to_string(fixtures.join("lgb_binary.txt")).unwrap();
    let (head, lists) = lgb.split_once("pandas_categorical:").unwrap();
    let lists = lists.trim_end().strip_suffix(']').unwrap();
    let lgb = format!("{head}pandas_categorical:{lists}, [0, 1, 2, 3, 4, 5, 9]]\n");
    let inputs = std::fs::read_to_string(fixtures.join("inputs.csv")).unwrap();
    let snapshot = |device: &dyn Fn(usize, &str) -> String| {
        let mut lines = inputs.lines();
        let mut csv = format!("{}\n", lines.next().unwrap());
        for (i, line) in lines.take(20).enumerate() {
            let mut cells: Vec<String> = line.split(',').map(str::to_owned).collect();
            // customer_id,tenure,arpu,segment,plan,region,device_code
            if let Ok(code) = cells[6].parse::<f64>() {
                cells[6] = device(i, &format!("{}", code.round()));
            }
            csv.push_str(&cells.join(","));
            csv.push('\n');
        }
        csv
    };
    let mut m = model(serde_json::json!({"feature": "arpu", "op": "ge", "value": 5}));
    let mut second = m["offers"][0].clone();
    m["offers"][0]["scorer"] = serde_json::json!({"kind": "lightgbm", "path": "a.txt"});
    second["id"] = "o2".into();
    second["scorer"] = serde_json::json!({"kind": "lightgbm", "path": "b.txt"});
    m["offers"] = serde_json::json!([m["offers"][0], second]);
    let check = |tag: &str, csv: String| {
        check_in(tag, true, |dir| {
            std::fs::write(dir.join("a.txt"), &lgb).unwrap();
            std::fs::write(dir.join("b.txt"), &lgb).unwrap();
            std::fs::write(dir.join("f.csv"), &csv).unwrap();
            std::fs::write(dir.join("model.json"), serde_json::to_vec(&m).unwrap()).unwrap();
        })
    };
    let (ok, text) = check(
        "unseen-numbers",
        snapshot(&|i, code| if i < 3 { "6".into() } else { code.into() }),
    );
    assert!(ok, "{text}");
    let device: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("feature `device_code`"))
        .collect();
    assert_eq!(device.len(), 1, "said once for both files:\n{text}");
    assert!(
        device[0].contains("offers[0].scorer.path: feature `device_code`: 1 of the snapshot's")
            && device[0].contains(
                "values is not among the model's categories (6, held by 3 of 20 customers, \
                 15.00 %): they are scored as if `device_code` were missing (the same at \
                 offers[1].scorer.path)"
            ),
        "{text}"
    );
    let (ok, text) = check("none-known", snapshot(&|i, _| format!("{}", 40 + i % 3)));
    assert!(!ok, "{text}");
    assert!(
        text.contains(
            "offers[0].scorer.path: feature `device_code`: none of the snapshot's 3 values \
             (40, 41, 42) is among the model's categories, so every customer would be scored \
             as if `device_code` were missing (1 of 20 customers holds no value): the column \
             holds other numbers than the model was trained on (0, 1, 2, 3, 4 and 2 more); \
             export the values it was trained on"
        ),
        "{text}"
    );
    // One value, unknown, and the other customers none: said as such.
    let (ok, text) = check(
        "one-unknown",
        snapshot(&|i, _| if i < 2 { "42".into() } else { String::new() }),
    );
    assert!(!ok, "{text}");
    assert!(
        text.contains(
            "feature `device_code`: the snapshot's one value (42) is not among the model's \
             categories, so every customer would be scored as if `device_code` were missing \
             (18 of 20 customers hold no value)"
        ),
        "{text}"
    );
    // Every value among the categories: no word.
    let (ok, text) = check("all-known", snapshot(&|_, code| code.into()));
    assert!(ok && !text.contains("device_code"), "{text}");
}

/// What an analyst saves by mistake instead of a model file, each named for what it is with
/// the call that saves the model: an empty file and one cut short (a save or copy under way),
/// a Python pickle of the model object.
#[test]
fn a_scorer_file_that_is_no_model_says_what_it_is_and_how_to_save_one() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/trees");
    let xgb = std::fs::read(fixtures.join("xgb_binary.json")).unwrap();
    let files: [(&str, &str, Vec<u8>); 4] = [
        ("xgboost", "empty.json", Vec::new()),
        ("lightgbm", "empty.txt", b"\n".to_vec()),
        ("xgboost", "cut.json", xgb[..xgb.len() / 2].to_vec()),
        (
            "lightgbm",
            "model.pkl",
            b"\x80\x04\x95\xda\x00lightgbm.basic".to_vec(),
        ),
    ];
    let mut m = model(serde_json::json!({"feature": "arpu", "op": "ge", "value": 5}));
    let offers: Vec<serde_json::Value> = files
        .iter()
        .enumerate()
        .map(|(i, (kind, path, _))| {
            let mut o = m["offers"][0].clone();
            o["id"] = format!("o{i}").into();
            o["scorer"] = serde_json::json!({"kind": kind, "path": path});
            o
        })
        .collect();
    m["offers"] = offers.into();
    let (ok, text) = check_in("no-model-files", false, |dir| {
        for (_, path, bytes) in &files {
            std::fs::write(dir.join(path), bytes).unwrap();
        }
        std::fs::write(dir.join("model.json"), serde_json::to_vec(&m).unwrap()).unwrap();
    });
    assert!(!ok, "{text}");
    for want in [
        "offers[0].scorer.path: `empty.json` (xgboost): the file is empty (a save or copy still \
         under way?): save the model with booster.save_model(\"m.json\")",
        "offers[1].scorer.path: `empty.txt` (lightgbm): the file is empty (a save or copy still \
         under way?): save the model with booster.save_model(\"m.txt\")",
        "the file ends before its JSON does (a save or copy still under way?); save the model \
         again",
        "offers[3].scorer.path: `model.pkl` (lightgbm): the file is a Python pickle \
         (pickle.dump, joblib.dump), which holds Python objects, not a model nextbest reads: \
         save the model with booster.save_model(\"m.txt\") (model.booster_ of the \
         scikit-learn API)",
    ] {
        assert!(text.contains(want), "{want}\nnot in:\n{text}");
    }
    assert!(
        text.contains(
            "offers[2].scorer.path: `cut.json` (xgboost): json: not an XGBoost JSON model"
        ),
        "{text}"
    );
}

/// A folder whose model is saved under another name, and a scorer file not in the folder:
/// each refusal says where nextbest looked and what to do.
#[test]
fn a_model_or_scorer_file_not_where_it_is_read_says_where_and_what_to_do() {
    let dir = std::env::temp_dir().join(format!("nb-check-elsewhere-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut m = model(serde_json::json!({"feature": "arpu", "op": "ge", "value": 5}));
    std::fs::write(dir.join("nbo.json"), serde_json::to_vec(&m).unwrap()).unwrap();
    // A tree file beside it is no model document, and is not offered as one.
    let trees = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/trees");
    std::fs::copy(trees.join("xgb_binary.json"), dir.join("a_trees.json")).unwrap();
    let (ok, text) = run(&["model", "check", dir.to_str().unwrap()]);
    assert!(!ok, "{text}");
    assert!(
        text.contains(&format!(
            "model.json: no such file; the folder holds nbo.json: a folder's model is its \
             model.json, so name that file model.json or give the file itself (`{}`)",
            dir.join("nbo.json").display()
        )),
        "{text}"
    );
    m["offers"][0]["scorer"] = serde_json::json!({"kind": "lightgbm", "path": "trees.txt"});
    std::fs::write(dir.join("model.json"), serde_json::to_vec(&m).unwrap()).unwrap();
    let (ok, text) = run(&["model", "check", dir.to_str().unwrap()]);
    std::fs::remove_dir_all(&dir).ok();
    assert!(!ok, "{text}");
    assert!(
        text.contains("offers[0].scorer.path: `trees.txt`: no such file in the model's folder")
            && text.contains(
                "(a model uploaded to /admin/models reads its scorer files from there too: copy \
                 them in first)"
            ),
        "{text}"
    );
}

/// A snapshot with a header alone (an export that failed) is refused as that, as a server
/// refuses it, not judged column by column as if every column held numbers.
#[test]
fn a_header_only_snapshot_is_refused_as_that() {
    let rule = serde_json::json!({"feature": "segment", "op": "eq", "value": "gold"});
    let (ok, text) = check_in("header-only", true, |dir| {
        std::fs::write(dir.join("f.csv"), "customer_id,segment,arpu\n").unwrap();
        std::fs::write(
            dir.join("model.json"),
            serde_json::to_vec(&model(rule)).unwrap(),
        )
        .unwrap();
    });
    assert!(!ok, "{text}");
    assert!(
        text.contains("f.csv: no customers: the file holds a header only")
            && !text.contains("holds numbers"),
        "{text}"
    );
}

/// An early-stopped XGBoost file is scored up to `best_iteration` with a warning naming both
/// tree counts; `"trees": "all"` scores every tree quietly; another value is a fault with its
/// path.
#[test]
fn an_early_stopped_xgboost_file_is_scored_to_best_iteration_with_a_warning() {
    let fixtures =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/xgb_files");
    let run = |tag: &str, trees: Option<&str>| {
        let mut m = model(serde_json::json!({"feature": "x1", "op": "ge", "value": -9}));
        m["offers"][0]["scorer"] = serde_json::json!({"kind": "xgboost", "path": "es.json"});
        if let Some(t) = trees {
            m["offers"][0]["scorer"]["trees"] = t.into();
        }
        check_in(tag, true, |dir| {
            std::fs::copy(fixtures.join("es_binary.json"), dir.join("es.json")).unwrap();
            std::fs::write(dir.join("f.csv"), "customer_id,x1,x2\nC1,0.5,10\n").unwrap();
            std::fs::write(dir.join("model.json"), serde_json::to_vec(&m).unwrap()).unwrap();
        })
    };
    let (ok, text) = run("es-best", None);
    assert!(ok, "{text}");
    let warning = text
        .lines()
        .find(|l| l.contains("best_iteration"))
        .unwrap_or_else(|| panic!("no warning:\n{text}"));
    assert!(
        warning.contains("offers[0].scorer.path")
            && warning.contains("`es.json`: early stopping's best_iteration is 2 of 8 rounds: scoring the 3 trees of rounds 0 to 2")
            && warning.contains("not all 8 trees"),
        "{warning}"
    );
    assert_eq!(text.matches("best_iteration").count(), 1, "{text}");
    let (ok, text) = run("es-all", Some("all"));
    assert!(ok && !text.contains("best_iteration"), "{text}");
    let (ok, text) = run("es-bad", Some("most"));
    assert!(
        !ok && text.contains("offers[0].scorer.trees: expected \"best\""),
        "{text}"
    );
}

/// A no-names XGBoost file (3.0) whose categorical feature reads a numeric column: warned
/// about without a list; the scorer's `categories` may list the numbers, code 0 first.
#[test]
fn a_numeric_category_column_without_a_list_is_warned_about_and_takes_numbers() {
    let fixtures =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/xgb_files");
    let setup = |dir: &std::path::Path, list: Option<serde_json::Value>| {
        let mut m = model(serde_json::json!({"feature": "x1", "op": "ge", "value": -9}));
        m["offers"][0]["scorer"] = serde_json::json!({"kind": "xgboost", "path": "g.json"});
        if let Some(l) = list {
            m["offers"][0]["scorer"]["categories"] = serde_json::json!({ "device_gen": l });
        }
        std::fs::copy(fixtures.join("v305_int.json"), dir.join("g.json")).unwrap();
        std::fs::write(dir.join("f.csv"), "customer_id,x1,device_gen\nC1,0.5,2\n").unwrap();
        std::fs::write(dir.join("model.json"), serde_json::to_vec(&m).unwrap()).unwrap();
    };
    let run =
        |tag: &str, list: Option<serde_json::Value>| check_in(tag, true, |dir| setup(dir, list));
    let warning =
        "offers[0].scorer.path: `g.json`: feature `device_gen`: the file stores no category list";
    let (ok, text) = run("codes-warn", None);
    assert!(ok, "{text}");
    assert!(text.contains(warning), "{text}");
    let (ok, text) = run("codes-list", Some(serde_json::json!([1, 2, 3, 4, 5, 6])));
    assert!(
        ok && !text.contains("no category list") && !text.contains("order"),
        "{text}"
    );
    // A list in another order than pandas' (sorted) is likely a slip: warned of at the list,
    // with both orders.
    let (ok, text) = run(
        "codes-unsorted",
        Some(serde_json::json!([2, 1, 3, 4, 5, 6])),
    );
    assert!(ok, "{text}");
    assert!(
        text.contains(
            "offers[0].scorer.categories.device_gen: `g.json`: feature `device_gen`: the \
             categories are given in another order than sorted (2, 1, 3, 4, 5, 6); pandas codes \
             a `category` column's categories in sorted order (1, 2, 3, 4, 5, 6)"
        ),
        "{text}"
    );
    // `model score` says what `model check` does, on stderr, beside the numbers it explains.
    let dir = std::env::temp_dir().join(format!("nb-score-codes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    setup(&dir, None);
    let out = Command::new(env!("CARGO_BIN_EXE_nextbest"))
        .args(["model", "score"])
        .arg(dir.join("model.json"))
        .arg("--features")
        .arg(dir.join("f.csv"))
        .env("NEXTBEST_LOG", "error")
        .output()
        .expect("nextbest runs");
    std::fs::remove_dir_all(&dir).ok();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains(warning), "{stderr}");
    assert!(
        stdout.starts_with("customer_id,o\nC1,") && !stdout.contains("warning"),
        "{stdout}"
    );
}

/// `model check --features` prints the snapshot's warnings before the model's faults: a
/// column of numbers that a word turned to text, with its line, is why a rule reading it as a
/// number is refused.
#[test]
fn the_snapshots_warnings_come_with_the_faults_they_explain() {
    let rule = serde_json::json!({"feature": "arpu", "op": "ge", "value": 15});
    let (ok, text) = check_in("turned", true, |dir| {
        std::fs::write(
            dir.join("f.csv"),
            "customer_id,segment,arpu\nC1,gold,10\nC2,bronze,NA\nC3,,30\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("model.json"),
            serde_json::to_vec(&model(rule)).unwrap(),
        )
        .unwrap();
    });
    assert!(!ok, "{text}");
    let warning = text
        .lines()
        .position(|l| {
            l.ends_with(
                "f.csv: warning: columns.arpu: column `arpu` holds numbers up to line 3, where \
                 `NA` made it text: a rule, scorer or value that reads it as a number is refused \
                 (`--features-null NA` reads such a word as a missing value; mark the column \
                 `arpu:num` in the header to have it refused instead)",
            )
        })
        .unwrap_or_else(|| panic!("no warning line: {text}"));
    let fault = text
        .lines()
        .position(|l| l.contains("the snapshot's line 3 made it text: `NA`"))
        .unwrap_or_else(|| panic!("no fault line: {text}"));
    assert!(warning < fault, "{text}");
}

/// `--features-null` on the commands that read a snapshot: `model check` takes the file whose
/// `NA` would turn `arpu` to text, `features compile` writes the `NA` as missing into the
/// `.nbf`, and `features show` prints it as `null`; a word that reads as a number is one
/// error line naming the flag.
#[test]
fn the_commands_that_read_a_snapshot_take_its_null_words() {
    let dir = std::env::temp_dir().join(format!("nb-check-nulls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let csv = dir.join("f.csv");
    std::fs::write(
        &csv,
        "customer_id,segment,arpu\nC1,gold,10\nC2,bronze,NA\nC3,,30\n",
    )
    .unwrap();
    let rule = serde_json::json!({"feature": "arpu", "op": "ge", "value": 15});
    std::fs::write(
        dir.join("model.json"),
        serde_json::to_vec(&model(rule)).unwrap(),
    )
    .unwrap();
    let nextbest = |args: &[&std::ffi::OsStr]| {
        let out = Command::new(env!("CARGO_BIN_EXE_nextbest"))
            .args(args)
            .env("NEXTBEST_LOG", "error")
            .output()
            .expect("nextbest runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    };
    let os = |s: &str| std::ffi::OsString::from(s);
    let model_file = dir.join("model.json").into_os_string();
    let check = |extra: &[&str]| {
        let mut args = vec![
            os("model"),
            os("check"),
            model_file.clone(),
            os("--features"),
        ];
        args.push(csv.clone().into_os_string());
        args.extend(extra.iter().map(|a| os(a)));
        let refs: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        nextbest(&refs)
    };
    let (ok, text) = check(&[]);
    assert!(!ok && text.contains("made it text: `NA`"), "{text}");
    let (ok, text) = check(&["--features-null", "NA"]);
    assert!(ok && !text.contains("warning"), "{text}");
    let (ok, text) = check(&["--features-null", "NA,1"]);
    assert!(!ok, "{text}");
    assert!(
        text.contains(
            "--features-null NA,1: `1` reads as a number, so it would hide every such value"
        ),
        "{text}"
    );
    let nbf = dir.join("f.nbf");
    let (ok, text) = nextbest(&[
        os("features").as_os_str(),
        os("compile").as_os_str(),
        csv.as_os_str(),
        nbf.as_os_str(),
        os("--features-null").as_os_str(),
        os("NA").as_os_str(),
    ]);
    assert!(ok && !text.contains("warning"), "{text}");
    let (ok, text) = nextbest(&[
        os("features").as_os_str(),
        os("show").as_os_str(),
        nbf.as_os_str(),
        os("C2").as_os_str(),
    ]);
    std::fs::remove_dir_all(&dir).ok();
    assert!(ok, "{text}");
    let shown: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(shown["features"]["arpu"], serde_json::Value::Null, "{text}");
    assert_eq!(shown["features"]["segment"], "bronze", "{text}");
}

/// A tree file's feature the snapshot names another way (`X1` for `x1`) is named with the
/// column it likely is: the file's names are fixed at training, so the export is what to fix.
#[test]
fn a_tree_feature_the_snapshot_spells_otherwise_names_the_column() {
    let fixtures =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/xgb_files");
    let mut m = model(serde_json::json!({"feature": "X1", "op": "ge", "value": -9}));
    m["offers"][0]["scorer"] = serde_json::json!({"kind": "xgboost", "path": "es.json"});
    let (ok, text) = check_in("tree-near", true, |dir| {
        std::fs::copy(fixtures.join("es_binary.json"), dir.join("es.json")).unwrap();
        std::fs::write(dir.join("f.csv"), "customer_id,X1,x2\nC1,0.5,10\n").unwrap();
        std::fs::write(dir.join("model.json"), serde_json::to_vec(&m).unwrap()).unwrap();
    });
    assert!(!ok, "{text}");
    assert!(
        text.contains(
            "(xgboost): model features not found in the feature snapshot: x1; `x1`: the \
             snapshot has `X1` (export the column under the name the model was trained with)"
        ),
        "{text}"
    );
}

/// A model file that cannot be read is one error line that names it once, from both commands
/// that read one, said before a snapshot loads for it (here one that is missing too).
#[test]
fn a_model_file_that_cannot_be_read_is_named_once() {
    let missing = std::env::temp_dir().join(format!("nb-no-model-{}.json", std::process::id()));
    let shown = missing.display().to_string();
    let features = std::env::temp_dir().join(format!("nb-no-snapshot-{}.csv", std::process::id()));
    let features = features.to_str().unwrap();
    for args in [
        vec!["model", "check", &shown],
        vec!["model", "check", &shown, "--features", features],
        vec!["model", "score", &shown, "--features", features],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_nextbest"))
            .args(&args)
            .env("NEXTBEST_LOG", "error")
            .env("NEXTBEST_LOG_FORMAT", "text")
            .output()
            .expect("nextbest runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}: {text}");
        assert_eq!(text.matches(&shown).count(), 1, "{args:?}: {text}");
        assert!(!text.contains(features), "{args:?}: {text}");
        assert!(
            text.contains("No such file or directory"),
            "{args:?}: {text}"
        );
    }
}

/// Runs `nextbest` with `args` and no environment snapshot: success and output.
fn run(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_nextbest"))
        .args(args)
        .env("NEXTBEST_LOG", "error")
        .env_remove("NEXTBEST_FEATURES")
        .env_remove("NEXTBEST_MODELS")
        .output()
        .expect("nextbest runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn the_model_commands_take_the_models_folder_as_serve_names_it() {
    let root = env!("CARGO_MANIFEST_DIR");
    let models = format!("{root}/models");
    let features = format!("{root}/models/features.csv");
    let (ok, by_flag) = run(&["model", "check", "--models", &models]);
    assert!(ok, "{by_flag}");
    let (ok, by_file) = run(&["model", "check", &models]);
    assert!(ok, "{by_file}");
    assert_eq!(by_flag, by_file);
    assert!(by_flag.contains("ok: "), "{by_flag}");
    let (ok, scored) = run(&[
        "model",
        "score",
        "--models",
        &models,
        "--features",
        &features,
        "--customers",
        "C0000001",
    ]);
    assert!(ok, "{scored}");
    assert!(
        scored.lines().any(|l| l.starts_with("C0000001,")),
        "{scored}"
    );
    // One of the two, never both and never neither: clap names the clash in one error.
    let (ok, both) = run(&["model", "check", &models, "--models", &models]);
    assert!(!ok && both.contains("cannot be used with"), "{both}");
    let (ok, neither) = run(&["model", "check"]);
    assert!(!ok && neither.contains("required"), "{neither}");
}

/// A trained file given where its model.json goes (`model check` or `model score` on the
/// LightGBM text or the XGBoost JSON itself) is told as that, with the scorer that reads it,
/// not as the parse error or unknown fields it makes as a model document.
#[test]
fn a_library_model_file_given_as_the_model_says_how_to_name_it() {
    let root = env!("CARGO_MANIFEST_DIR");
    let features = format!("{root}/models/features.csv");
    for (file, kind, said) in [
        ("premium_upgrade.lgb.txt", "lightgbm", "a LightGBM"),
        ("device_upgrade_5g.xgb.json", "xgboost", "an XGBoost"),
    ] {
        let path = format!("{root}/models/{file}");
        for args in [
            vec!["model", "check", &path],
            vec!["model", "score", &path, "--features", &features],
        ] {
            let (ok, text) = run(&args);
            assert!(!ok, "{args:?}: {text}");
            // The scorer as written (`model check` prints it plain, a log line escapes it).
            let scorer = format!("{{\"kind\": \"{kind}\", \"path\": \"{file}\"}}");
            assert!(
                text.contains(&format!(
                    "this is {said} model file, not a nextbest model: name it in an offer's \
                     scorer in model.json, "
                )) && (text.contains(&scorer) || text.contains(&scorer.replace('"', "\\\""))),
                "{args:?}: {text}"
            );
        }
    }
}
