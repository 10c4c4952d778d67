//! Campaign files and snapshots: every fault with its path (the file's own, channels, send
//! windows, the challenger), Parquet snapshots against CSV.

mod support;

use std::path::Path;
use std::sync::Arc;

use serde_json::{json, Value};

use nextbest::campaign;
use nextbest::features::FeatureStore;
use support::campaign::*;
use support::{demo_dir, TempDir};

/// `campaign::check` with a snapshot read as the server reads it by default.
fn check(
    file: &Path,
    models: Option<&Path>,
    features: Option<&Path>,
) -> Result<campaign::CampaignSpec, campaign::CampaignError> {
    let nulls = nextbest::features::NullWords::default();
    campaign::check(file, models, features.map(|f| (f, &nulls)))
}

#[test]
fn every_campaign_file_fault_is_reported_with_its_path() {
    let base = Base::new("cmp-faults", 10);
    let bad = json!({
        "name": "bad name!", "channel": 7, "offers": ["a", "a"],
        "max_offers_per_customer": 0,
        "capacity": {"max_contacts": 10, "per": "month"},
        "offer_limits": {"a": {"min": 5, "max": 2}, "zz": {"min": 1}},
        "category_limits": {"sales": {}},
        "frequency": {"max_contacts": 0, "window_days": 7.5, "channels": []},
        "suppression": ["missing.txt", "export.csv", "utf16.txt"],
        "control_group": {"share": 1.5},
        "transactional": "no",
        "typo": 1
    });
    // A CRM export with a reason column, and a Windows list in UTF-16: either would let
    // opted-out customers through if skipped.
    std::fs::write(base.path("export.csv"), "customer_id,reason\nK00001,STOP\n").unwrap();
    let utf16: Vec<u8> = [0xff, 0xfe]
        .into_iter()
        .chain("K00001\r\n".encode_utf16().flat_map(u16::to_le_bytes))
        .collect();
    std::fs::write(base.path("utf16.txt"), utf16).unwrap();
    let file = base.write_campaign("bad", &bad);
    let err = check(&file, None, None).unwrap_err();
    let faults = err.faults();
    let expect = [
        ("name", "letters, digits"),
        ("channel", "expected a string"),
        ("offers[1]", "listed twice"),
        ("max_offers_per_customer", "whole number from 1"),
        ("capacity.per", "`day` or `week`"),
        ("offer_limits.a.min", "above the maximum"),
        ("category_limits.sales.max", "missing field"),
        ("frequency.max_contacts", "whole number from 1"),
        ("frequency.window_days", "from 1 to 366, found 7.5"),
        ("frequency.channels", "must not be empty"),
        ("suppression[0]", "no such file"),
        (
            "suppression[1]",
            "line 1: `customer_id,reason` holds a separator",
        ),
        ("suppression[2]", "the file is UTF-16"),
        ("control_group.share", "between 0 and 0.99"),
        ("control_group.salt", "missing field"),
        ("transactional", "true or false"),
        ("typo", "unknown field"),
    ];
    for (path, needle) in expect {
        assert!(
            faults
                .iter()
                .any(|f| f.path == path && f.message.contains(needle)),
            "no fault `{path}: ..{needle}..` in {faults:#?}"
        );
    }

    // Against the model: names that do not resolve, each with its path.
    let against = json!({"name": "m", "channel": "sms", "placement": "sms_campaign",
        "offers": ["a", "nope"], "category_limits": {"service": {"max": 1}},
        "max_offers_per_customer": 3,
        "frequency": {"max_contacts": 1, "window_days": 7, "channels": ["sms", "emial"]},
        "capacity": {"max_contacts": 10}, "offer_limits": {"a": {"min": 20}}});
    let file = base.write_campaign("against", &against);
    let faults = check(&file, Some(&base.path("model.json")), None)
        .unwrap_err()
        .faults();
    for (path, needle) in [
        ("offers[1]", "unknown offer `nope`"),
        ("category_limits.service", "no offer of the campaign"),
        ("offer_limits", "minimums add up to 20"),
        (
            "max_offers_per_customer",
            "3 is more than placement `sms_campaign` on channel `sms` shows at once (2)",
        ),
        (
            "frequency.channels[1]",
            "the model `small` has no channel `emial` (it has: ",
        ),
        ("frequency.channels[1]", "did you mean `email`?"),
    ] {
        assert!(
            faults
                .iter()
                .any(|f| f.path == path && f.message.contains(needle)),
            "no fault `{path}: ..{needle}..` in {faults:#?}"
        );
    }
    // A limit of the wrong type does not hide the names of the others from the model.
    let typed = json!({"name": "m", "channel": "sms", "placement": "sms_campaign",
        "offers": ["data_boost_10gb", "roaming_pass_euro", "unlimited_upgrade"],
        "offer_limits": {"roaming_pass_euro": {"min": 1}, "unlimited_upgrade": {"max": "800"}}});
    let file = base.write_campaign("typed", &typed);
    let faults = check(&file, Some(&demo_dir()), None).unwrap_err().faults();
    for (path, needle) in [
        ("offer_limits.unlimited_upgrade.max", "whole number"),
        ("offers[1]", "`roaming_pass_eu`"),
    ] {
        assert!(
            faults
                .iter()
                .any(|f| f.path == path && f.message.contains(needle)),
            "no fault `{path}: ..{needle}..` in {faults:#?}"
        );
    }

    // A run lists them as the check does: a fault of the file's own (a `per` it does not
    // know) does not hide those against the model (an offer it does not have).
    let mixed = json!({"name": "m", "channel": "sms", "placement": "sms_campaign",
        "offers": ["a", "nope"], "capacity": {"max_contacts": 10, "per": "month"}});
    let file = base.write_campaign("mixed", &mixed);
    let run = campaign::run(&base.config(&file, "out-mixed", 0)).expect_err("run refuses");
    let faults = run.faults();
    for (path, needle) in [
        ("capacity.per", "`day` or `week`"),
        ("offers[1]", "unknown offer `nope`"),
    ] {
        assert!(
            faults
                .iter()
                .any(|f| f.path == path && f.message.contains(needle)),
            "no fault `{path}: ..{needle}..` in {faults:#?}"
        );
    }
    assert!(
        !base.path("out-mixed").exists(),
        "a refused run writes nothing"
    );

    // A name listed twice is a fault, and the list is still checked against the demo model in
    // the same run: an offer the placement never shows is named too.
    let twice = json!({"name": "twice", "channel": "sms", "placement": "sms_campaign",
        "offers": ["data_boost_10gb", "data_boost_10gb", "fiber_home"]});
    let file = base.write_campaign("twice", &twice);
    let faults = check(&file, Some(&demo_dir()), None).unwrap_err().faults();
    assert!(
        faults
            .iter()
            .any(|f| f.path == "offers[1]" && f.message.contains("listed twice")),
        "{faults:#?}"
    );
    assert!(
        faults
            .iter()
            .any(|f| f.message.contains("`fiber_home` is not shown in placement")),
        "{faults:#?}"
    );
    let wrong_channel = json!({"name": "m", "channel": "fax"});
    let file = base.write_campaign("fax", &wrong_channel);
    let faults = check(&file, Some(&base.path("model.json")), None)
        .unwrap_err()
        .faults();
    assert!(faults
        .iter()
        .any(|f| f.path == "channel" && f.message.contains("no channel `fax`")));

    // A category the model has, but none of the campaign's offers: which offers have it, not a
    // "did you mean" naming the same category.
    let doc = json!({"name": "m", "channel": "sms", "offers": ["data_boost_10gb"],
        "category_limits": {"retention": {"max": 5}}});
    let file = base.write_campaign("category-elsewhere", &doc);
    let faults = check(&file, Some(&demo_dir()), None).unwrap_err().faults();
    let f = faults
        .iter()
        .find(|f| f.path == "category_limits.retention")
        .unwrap_or_else(|| panic!("{faults:#?}"));
    assert!(!f.message.contains("did you mean"), "{f:?}");
    assert!(
        f.message
            .contains("have it: add one to `offers`, or drop the limit"),
        "{f:?}"
    );

    // A slip in a name the model knows says which name was meant, and one wrong channel or
    // placement is one fault (not also "no offer to send").
    for (doc, path, meant) in [
        (json!({"name": "m", "channel": "smss"}), "channel", "`sms`"),
        (
            json!({"name": "m", "channel": "sms", "placement": "sms_campain"}),
            "placement",
            "`sms_campaign`",
        ),
        (
            json!({"name": "m", "channel": "sms", "offers": ["data_boost_10gb", "loyalty_discunt_10"]}),
            "offers[1]",
            "`loyalty_discount_10`",
        ),
        (
            json!({"name": "m", "channel": "sms", "category_limits": {"retension": {"max": 5}}}),
            "category_limits.retension",
            "`retention`",
        ),
        (
            json!({"name": "m", "channel": "sms", "capcity": {"max_contacts": 3}}),
            "capcity",
            "`capacity`",
        ),
    ] {
        let file = base.write_campaign("slip", &doc);
        let faults = check(&file, Some(&demo_dir()), None).unwrap_err().faults();
        assert_eq!(faults.len(), 1, "{doc}: {faults:#?}");
        assert_eq!(faults[0].path, path, "{faults:#?}");
        assert!(
            faults[0]
                .message
                .ends_with(&format!("did you mean {meant}?")),
            "{faults:#?}"
        );
    }

    // A model that does not load adds its fault to the campaign's own: all are printed.
    let mut bad_on_sms = bad.clone();
    bad_on_sms["channel"] = "sms".into();
    let file = base.write_campaign("bad_with_model", &bad_on_sms);
    let faults = check(&file, Some(&base.path("missing.json")), None)
        .unwrap_err()
        .faults();
    assert!(faults.iter().any(|f| f.path == "name"), "{faults:#?}");
    assert!(faults.iter().any(|f| f.path == "typo"), "{faults:#?}");
    assert!(
        faults
            .iter()
            .any(|f| f.path == "--models" && f.message.contains("missing.json")),
        "{faults:#?}"
    );
    // Every fault of `expect` but the channel's, the limit on an offer the campaign does not
    // list (`zz`: the limits that read are checked beside one that does not), and the model's.
    assert!(
        faults
            .iter()
            .any(|f| f.path == "offer_limits.zz" && f.message.contains("not among")),
        "{faults:#?}"
    );
    assert_eq!(faults.len(), expect.len() + 1, "{faults:#?}");

    // The demo campaign is valid against the demo model.
    check(
        &demo_dir().join("campaigns/demo_sms.json"),
        Some(&demo_dir()),
        Some(&demo_dir().join("features.csv")),
    )
    .unwrap();
}

/// A campaign over several channels: each fault of its `channels` named with its path, on its
/// own and against the model and snapshot.
#[test]
fn channel_faults_are_named_with_their_path() {
    let base = Base::new("cmp-channel-faults", 10);
    let expect_faults = |doc: &Value, with_model: bool, expect: &[(&str, &str)]| {
        let file = base.write_campaign("chf", doc);
        let (models, features) = (base.path("model.json"), base.path("features.csv"));
        let faults = match with_model {
            true => check(&file, Some(&models), Some(&features)),
            false => check(&file, None, None),
        }
        .unwrap_err()
        .faults();
        for (path, needle) in expect {
            assert!(
                faults
                    .iter()
                    .any(|f| f.path == *path && f.message.contains(needle)),
                "no fault `{path}: ..{needle}..` in {faults:#?}"
            );
        }
    };
    expect_faults(
        &json!({"name": "m", "channel": "sms", "placement": "sms_campaign",
                "capacity": {"max_contacts": 5},
                "offer_limits": {"a": {"max": 3}},
                "channels": {"sms": {"per": "day", "reachable": 5, "colour": 1},
                             "email": {"max_contacts": 0}}}),
        false,
        &[
            ("channels", "either `channel` or `channels`"),
            ("placement", "each channel's `placement`"),
            ("capacity", "each channel's `max_contacts`"),
            ("offer_limits", "not supported with several `channels`"),
            ("channels.sms.reachable", "expected a rule object"),
            ("channels.sms.colour", "unknown field"),
            ("channels.email.max_contacts", "whole number from 1"),
        ],
    );
    // One channel in a map is allocated as several are: its limits are refused, not dropped.
    expect_faults(
        &json!({"name": "m", "category_limits": {"sales": {"max": 3}},
                "channels": {"sms": {"placement": "sms_campaign", "max_contacts": 5}}}),
        false,
        &[(
            "category_limits",
            "not supported with a `channels` map yet: give its one channel as `channel`",
        )],
    );
    expect_faults(
        &json!({"name": "m", "channels": {
            "fax": {},
            "email": {"placement": "nope"},
            "sms": {"placement": "sms_campaign",
                    "reachable": {"all": [{"feature": "opt_in", "op": "eq", "value": 1}]}}}}),
        true,
        &[
            ("channels.fax", "no channel `fax`"),
            ("channels.email.placement", "no placement `nope`"),
            (
                "channels.sms.reachable.all[0].feature",
                "unknown feature `opt_in`",
            ),
        ],
    );
    let doc = json!({"name": "m", "channels": {"sms": {"placement": "sms_campaign"},
                                                 "email": {"placement": "email_campaign"}}});
    let file = base.write_campaign("two", &doc);
    check(
        &file,
        Some(&base.path("model.json")),
        Some(&base.path("features.csv")),
    )
    .unwrap_or_else(|e| panic!("{:#?}", e.faults()));
    // A channel whose placement shows none of the campaign's offers has nothing to send.
    let mut model = small_model();
    model["placements"]["email_news"] = json!({"channels": ["email"], "limit": 1});
    std::fs::write(base.path("model.json"), model.to_string()).unwrap();
    expect_faults(
        &json!({"name": "m", "channels": {"sms": {"placement": "sms_campaign"},
                                          "email": {"placement": "email_news"}}}),
        true,
        &[(
            "channels.email",
            "no offer of the campaign has content in placement `email_news` on channel `email`",
        )],
    );
    expect_faults(
        &json!({"name": "m", "channel": "email", "placement": "email_news"}),
        true,
        &[("offers", "the campaign has no offer to send")],
    );
}

/// Send-window and time-zone faults, each with its path.
#[test]
fn send_window_faults_are_named_with_their_path() {
    let base = base_with_zones("cmp-send-faults", 8);
    let doc = json!({"name": "w", "channel": "sms", "placement": "sms_campaign",
        "send_window": {"from": "20:00", "to": "09:00", "days": [],
                        "default_time_zone": "Europe/Berlinn"}});
    let file = base.write_campaign("w", &doc);
    let faults = check(&file, None, None).unwrap_err().faults();
    for (path, needle) in [
        (
            "send_window",
            "the send window is empty: `from` must be before `to`",
        ),
        ("send_window.days", "must not be empty"),
        (
            "send_window.default_time_zone",
            "unknown time zone `Europe/Berlinn`",
        ),
    ] {
        assert!(
            faults
                .iter()
                .any(|f| f.path == path && f.message.contains(needle)),
            "no fault `{path}: ..{needle}..` in {faults:#?}"
        );
    }
    let doc = json!({"name": "w", "channel": "sms",
        "frequency": {"max_contacts": 1, "window": "calendar_week"}});
    let file = base.write_campaign("w", &doc);
    let faults = check(&file, None, None).unwrap_err().faults();
    assert_eq!(faults.len(), 1, "{faults:#?}");
    assert_eq!(faults[0].path, "frequency.window");
    assert!(
        faults[0].message.contains("give `send_window`"),
        "{faults:#?}"
    );
    for (feature, needle) in [("nope", "unknown feature `nope`"), ("x", "a number column")] {
        let doc = json!({"name": "w", "channel": "sms", "placement": "sms_campaign",
            "send_window": {"from": "09:00", "to": "20:00", "time_zone": {"feature": feature},
                            "default_time_zone": "Europe/Berlin"}});
        let file = base.write_campaign("w", &doc);
        let faults = check(
            &file,
            Some(&base.path("model.json")),
            Some(&base.path("features.csv")),
        )
        .unwrap_err()
        .faults();
        assert!(
            faults
                .iter()
                .any(|f| f.path == "send_window.time_zone.feature" && f.message.contains(needle)),
            "{faults:#?}"
        );
    }
}

#[test]
fn parquet_and_csv_snapshots_give_identical_lists() {
    use arrow_array::{ArrayRef, Float32Array, RecordBatch, StringArray};
    let base = Base::new("cmp-parquet", 500);
    let store = base.store();
    let ids: Vec<&str> = (0..store.len()).map(|r| store.id_at(r).unwrap()).collect();
    let mut cols: Vec<(String, ArrayRef)> = vec![(
        "customer_id".into(),
        Arc::new(StringArray::from(ids.clone())) as ArrayRef,
    )];
    for (c, name) in store.columns().iter().enumerate() {
        let vals: Vec<Option<f32>> = (0..store.len())
            .map(|r| Some(store.row_at(r).unwrap()[c]).filter(|v| !v.is_nan()))
            .collect();
        cols.push((name.to_string(), Arc::new(Float32Array::from(vals))));
    }
    let batch = RecordBatch::try_from_iter(cols).unwrap();
    let pq = base.path("features.parquet");
    support::write_parquet(&pq, &batch);

    let loaded = FeatureStore::load(&pq).unwrap();
    assert_eq!(loaded.len(), store.len());
    assert!(loaded.row("K00005").unwrap()[1].is_nan(), "null is missing");

    let mut doc = sms("pq");
    doc["capacity"] = json!({"max_contacts": 100});
    let file = base.write_campaign("pq", &doc);
    let from_csv = run_config(&base.config(&file, "csv", NOW));
    let mut cfg = base.config(&file, "pq", NOW);
    cfg.features = pq;
    let from_pq = run_config(&cfg);
    assert_eq!(from_csv.rows.len(), 100);
    assert_eq!(from_csv.csv(), from_pq.csv());
}

#[test]
fn parquet_faults_name_the_column_and_the_row() {
    use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
    let dir = TempDir::new("cmp-pq-faults");
    let write = |name: &str, cols: Vec<(&str, ArrayRef)>| {
        let batch = RecordBatch::try_from_iter(cols).unwrap();
        let p = dir.0.join(name);
        support::write_parquet(&p, &batch);
        p
    };
    let ids = |v: Vec<Option<&str>>| Arc::new(StringArray::from(v)) as ArrayRef;
    let p = write(
        "text.parquet",
        vec![
            ("customer_id", ids(vec![Some("A"), Some("B")])),
            (
                "plan",
                Arc::new(arrow_array::BinaryArray::from(vec![
                    b"x".as_slice(),
                    b"y".as_slice(),
                ])) as ArrayRef,
            ),
        ],
    );
    // Bytes are neither numbers nor strings: the column is left out, by name.
    let s = FeatureStore::load(&p).unwrap();
    assert!(s.columns().is_empty(), "{:?}", s.columns());
    assert_eq!(s.left_out().collect::<Vec<_>>(), [("plan", "Binary")]);
    let p = write(
        "nullid.parquet",
        vec![
            ("customer_id", ids(vec![Some("A"), None])),
            ("n", Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef),
        ],
    );
    let e = FeatureStore::load(&p).unwrap_err().to_string();
    assert!(e.contains("row 2, column `customer_id`: null"), "{e}");
    let p = write(
        "dup.parquet",
        vec![
            ("customer_id", ids(vec![Some("A"), Some("A")])),
            (
                "n",
                Arc::new(Int64Array::from(vec![Some(1), None])) as ArrayRef,
            ),
        ],
    );
    let e = FeatureStore::load(&p).unwrap_err().to_string();
    assert!(
        e.contains("row 2") && e.contains("duplicate customer_id `A`"),
        "{e}"
    );
    let p = write(
        "first.parquet",
        vec![("n", Arc::new(Int64Array::from(vec![1])) as ArrayRef)],
    );
    let e = FeatureStore::load(&p).unwrap_err().to_string();
    assert!(e.contains("first column must be `customer_id`"), "{e}");
}

/// `campaign check` resolves the campaign against the challenger too: one without the
/// campaign's channel is refused by check, not first by run.
#[test]
fn campaign_check_validates_the_challenger() {
    let mut web_only = small_model();
    web_only["name"] = json!("web-only");
    web_only["placements"] = json!({"home": {"channels": ["web"], "limit": 3}});
    for o in web_only["offers"].as_array_mut().unwrap() {
        o["channels"] = json!(["web"]);
        o["placements"] = json!(["home"]);
        o["content"] = json!({"web": content("web")});
    }
    let base = base_with_challenger("cmp-check-challenger", &web_only);
    let file = base.write_campaign("checked", &sms("checked"));
    let err = check(&file, Some(&base.path("model.json")), None)
        .expect_err("the challenger has no sms channel");
    let faults = err.faults();
    assert!(
        faults.iter().any(|f| f.path == "channel"
            && f.message.contains("(challenger `web-only`)")
            && f.message.contains("no channel `sms`")),
        "{faults:?}"
    );
    // With features too, and the run refuses the same way.
    let err = check(
        &file,
        Some(&base.path("model.json")),
        Some(&base.path("features.csv")),
    )
    .expect_err("the same with a snapshot");
    assert!(err.to_string().contains("challenger"), "{err}");
    let run = campaign::run(&base.config(&file, "out", NOW)).expect_err("run refuses");
    assert!(run.to_string().contains("(challenger `web-only`)"), "{run}");
}

/// A channel the model does not have is one fault: not also every limit whose offers its
/// placement would have given, nor again for a challenger that lacks it as well.
#[test]
fn a_mistyped_channel_is_said_once_without_its_knock_on_faults() {
    let mut twin = small_model();
    twin["name"] = json!("twin");
    let base = base_with_challenger("cmp-knock-on", &twin);
    let typo = json!({"name": "typo", "channel": "smss", "placement": "sms_campaign",
        "capacity": {"max_contacts": 10},
        "offer_limits": {"a": {"max": 5}}, "category_limits": {"service": {"max": 3}}});
    let file = base.write_campaign("typo", &typo);
    let faults = check(&file, Some(&base.path("model.json")), None)
        .unwrap_err()
        .faults();
    assert_eq!(faults.len(), 1, "{faults:#?}");
    assert_eq!(faults[0].path, "channel");
    assert!(
        faults[0].message.contains("no channel `smss`")
            && faults[0].message.contains("did you mean `sms`?"),
        "{faults:#?}"
    );
    // With the channel right, the same limits are checked against the placement's offers.
    let mut right = typo.clone();
    right["channel"] = json!("sms");
    right["offer_limits"] = json!({"zz": {"max": 5}});
    let file = base.write_campaign("right", &right);
    let faults = check(&file, Some(&base.path("model.json")), None)
        .unwrap_err()
        .faults();
    assert!(
        faults.iter().any(|f| f.path == "offer_limits.zz"
            && f.message
                .contains("not an offer of this campaign's placement")),
        "{faults:#?}"
    );
}

/// A data folder that does not exist (a typo, a forgotten flag) is refused: a run without the
/// contact history would contact everyone the caps and policies hold back, and so is a folder
/// that holds other files but no event log. An empty folder runs without history on purpose.
#[test]
fn a_missing_data_folder_is_refused_and_an_empty_one_runs() {
    let base = Base::new("cmp-no-history", 20);
    let file = base.write_campaign("h", &sms("h"));
    let mut cfg = base.config(&file, "out", NOW);
    cfg.data_dir = Some(base.path("dta"));
    let e = campaign::run(&cfg).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!(
            "--data-dir {}: no such folder: give the data folder whose event log holds the contact history",
            base.path("dta").display()
        )),
        "{e}"
    );
    assert!(!cfg.out.exists(), "a refused run wrote its list");
    // A folder with files but no event log (the models', a parent) is not a data folder.
    cfg.data_dir = Some(base.path(""));
    let e = campaign::run(&cfg).unwrap_err().to_string();
    assert!(e.contains(": not a data folder (no event log"), "{e}");
    assert!(!cfg.out.exists(), "a refused run wrote its list");
    cfg.data_dir = Some(base.path("data"));
    campaign::run(&cfg).unwrap();
}

/// An `--out` that is a folder the server owns is refused before anything is read, however it
/// is written, and nothing is written there: its data folder (the list's files beside its event
/// log), or its models folder or one inside it (watched, and replaced whole by a publish). A
/// model given as its file makes only its folder the models folder.
#[test]
fn an_out_that_is_the_servers_data_or_models_folder_is_refused() {
    let base = Base::new("cmp-out-server", 20);
    let file = base.write_campaign("o", &sms("o"));
    let mut cfg = base.config(&file, "out", NOW);
    let models = base.path("models");
    std::fs::create_dir_all(&models).unwrap();
    std::fs::copy(base.path("model.json"), models.join("model.json")).unwrap();
    let cases = [
        (base.path("data/."), None, "data folder (`--data-dir`)", ""),
        (
            base.path("data/../data"),
            None,
            "data folder (`--data-dir`)",
            "",
        ),
        (base.path(""), None, "models folder (`--models`)", ""),
        (
            models.clone(),
            Some(&models),
            "models folder (`--models`)",
            " or inside it",
        ),
        (
            models.join("lists/sms"),
            Some(&models),
            "models folder (`--models`)",
            " or inside it",
        ),
    ];
    for (out, folder_models, what, inside) in cases {
        cfg.out = out.clone();
        if let Some(m) = folder_models {
            cfg.models = m.clone();
        }
        let folder = if what.starts_with("data") {
            cfg.data_dir.clone().unwrap()
        } else {
            cfg.models
                .parent()
                .filter(|_| cfg.models.is_file())
                .map_or(cfg.models.clone(), Path::to_owned)
        };
        let e = campaign::run(&cfg).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "--out {}: is the {what} {}{inside}; give the list a folder of its own",
                out.display(),
                folder.display()
            )
        );
    }
    for dir in [base.path("data"), base.path(""), models.clone()] {
        assert!(!dir.join("summary.json").exists(), "{}", dir.display());
    }
    assert!(!models.join("lists").exists());
    // A folder of its own beside them runs.
    cfg.out = base.path("lists/sms");
    campaign::run(&cfg).unwrap();
}

/// A run writes beside its folder and moves the list in whole: one that fails leaves the
/// earlier list as it was, and the next one's files all replace it.
#[test]
fn a_run_replaces_the_folders_list_whole_or_not_at_all() {
    let base = Base::new("cmp-replace", 60);
    let mut doc = sms("r");
    doc["control_group"] = json!({"share": 0.2, "salt": "s"});
    let first = base.run(&doc, "list", NOW);
    let files = [
        "targets.csv",
        "targets.parquet",
        "control.csv",
        "summary.json",
    ];
    let before: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(first.out.join(f)).unwrap())
        .collect();
    // The writer's folder beside it cannot be made (a file holds its name): the run fails.
    doc.as_object_mut().unwrap().remove("control_group");
    let file = base.write_campaign("r", &doc);
    let cfg = base.config(&file, "list", NOW + HOUR);
    let blocker = base.path(&format!(".list.writing-{}", std::process::id()));
    std::fs::write(&blocker, "in the way").unwrap();
    // Said of the list's folder, and of the list it keeps (not of the writer's folder alone).
    let e = campaign::run(&cfg).map(|_| ()).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!(
            "{}: the list was not written (",
            cfg.out.display()
        )) && e.ends_with("the list the folder held before, if any, is as it was"),
        "{e}"
    );
    for (f, bytes) in files.iter().zip(&before) {
        assert_eq!(
            &std::fs::read(first.out.join(f)).unwrap(),
            bytes,
            "{f} changed"
        );
    }
    std::fs::remove_file(&blocker).unwrap();
    // What a killed run left (its process gone) is removed by the next; a live one's stays.
    let dead = base.path(".list.writing-4194999");
    std::fs::create_dir_all(&dead).unwrap();
    std::fs::write(dead.join("targets.csv"), "half").unwrap();
    // Process 1 is always running: a run still writing there.
    let alive = base.path(".list.writing-1");
    std::fs::create_dir_all(&alive).unwrap();
    let second = campaign::run(&cfg).unwrap();
    assert!(!dead.exists(), "a killed run's folder stayed");
    assert!(alive.exists(), "a running write was removed");
    assert_eq!(second.held_out.control_group, 0);
    let control = std::fs::read_to_string(first.out.join("control.csv")).unwrap();
    assert_eq!(
        control.lines().count(),
        1,
        "the earlier control group stayed: {control}"
    );
    assert_ne!(
        std::fs::read(first.out.join("summary.json")).unwrap(),
        before[3]
    );
}

/// One command at a time writes or commits a list folder: a run, a shard's run, a merge or a
/// commit while another holds the folder is refused at once, naming the holder, and leaves
/// the list as it was (two runs into one folder both exited 0, one's list beside the other's
/// summary). Once the holder ends, the same command goes through.
#[test]
fn a_second_command_on_a_list_folder_is_refused_naming_the_first() {
    use nextbest::campaign::commit::{self, Target};
    use nextbest::folder_lock::{Folder, FolderLock};
    let base = Base::new("cmp-two-runs", 30);
    let doc = sms("two");
    let first = base.run(&doc, "list", NOW);
    let summary = std::fs::read(first.out.join("summary.json")).unwrap();
    let file = base.write_campaign("two", &doc);
    let cfg = base.config(&file, "list", NOW + HOUR);
    // Another process's command holding the folder (a lock is the open file's: this one
    // conflicts with the commands' as a second process's would).
    let holder = FolderLock::acquire(&cfg.out, Folder::List, Some("campaign run")).unwrap();
    let held = format!(
        "the list folder {} is in use by another campaign command (pid {}, campaign run, since ",
        cfg.out.display(),
        std::process::id()
    );
    let direct = Target::Direct {
        data_dir: base.path("data"),
    };
    // The folder named otherwise (through a symbolic link) is the same folder.
    let link = base.path("list-link");
    std::os::unix::fs::symlink(&cfg.out, &link).unwrap();
    let through_link = commit::commit(&link, &direct, NOW + HOUR)
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(
        through_link.contains("is in use by another campaign command"),
        "{through_link}"
    );
    let refusals = [
        campaign::run(&cfg).map(|_| ()).unwrap_err().to_string(),
        campaign::run_shard(&cfg, campaign::select::Shard { index: 0, count: 2 })
            .map(|_| ())
            .unwrap_err()
            .to_string(),
        commit::commit(&cfg.out, &direct, NOW + HOUR)
            .map(|_| ())
            .unwrap_err()
            .to_string(),
    ];
    for e in &refusals {
        assert!(
            e.starts_with(&held)
                && e.ends_with("one run, merge or commit at a time per list folder"),
            "{e}"
        );
    }
    assert_eq!(
        std::fs::read(first.out.join("summary.json")).unwrap(),
        summary,
        "a refused run replaced the list"
    );
    assert!(
        !first.out.join(commit::JOURNAL).exists(),
        "a refused commit began"
    );
    // A merge into a held folder is refused too, before it reads the shards' candidates.
    let shards: Vec<_> = (0..2)
        .map(|i| {
            let c = base.config(&file, &format!("shard{i}"), NOW + HOUR);
            campaign::run_shard(&c, campaign::select::Shard { index: i, count: 2 }).unwrap();
            c.out
        })
        .collect();
    let e = campaign::merge(&shards, &cfg.out).unwrap_err().to_string();
    assert!(e.starts_with(&held), "{e}");
    // The lock is taken before the model and snapshot load (a snapshot that is not there: what
    // is said is the lock, so it came first), and lies beside the folder: a refused run makes
    // none.
    let mut fresh = base.config(&file, "fresh", NOW + HOUR);
    fresh.features = base.path("no-such-features.csv");
    let _other = FolderLock::acquire(&fresh.out, Folder::List, Some("campaign run")).unwrap();
    let e = campaign::run(&fresh).map(|_| ()).unwrap_err().to_string();
    assert!(e.contains("is in use by another campaign command"), "{e}");
    assert!(!fresh.out.exists(), "a refused run made its folder");
    drop(holder);
    campaign::run(&cfg).unwrap();
    assert_ne!(
        std::fs::read(first.out.join("summary.json")).unwrap(),
        summary
    );
    commit::commit(&cfg.out, &direct, NOW + HOUR).unwrap();
}

/// An offer still running at the run but ended by the customer's send time (a Sunday run, a
/// window from Monday) is left out for that customer, not scheduled after it ends.
#[test]
fn an_offer_ending_before_the_send_time_is_left_out() {
    let base = Base::new("cmp-ends", 40);
    let mut model = small_model();
    // NOW is Sunday 2026-11-22 10:00 UTC: `a` still runs, and ends before Monday.
    model["offers"][0]["valid_until"] = json!("2026-11-23T00:00:00Z");
    std::fs::write(base.path("model.json"), serde_json::to_vec(&model).unwrap()).unwrap();
    let offered = |run: &Run| run.rows.iter().filter(|(_, o)| o == "a").count();
    let now = base.run(&sms("now"), "now", NOW);
    assert!(offered(&now) > 0, "without a window `a` goes out now");
    let mut doc = sms("window");
    doc["send_window"] = json!({"from": "10:00", "to": "19:00",
        "days": ["mon", "tue", "wed", "thu", "fri", "sat"], "default_time_zone": "UTC"});
    let later = base.run(&doc, "window", NOW);
    assert_eq!(offered(&later), 0);
    assert!(!later.rows.is_empty(), "the other offers still go out");
}

/// An offer that starts between the run and the customer's send time (a Sunday run for
/// Monday's launch) goes out at the send time, and not in a list sent at once.
#[test]
fn an_offer_starting_before_the_send_time_goes_out_then() {
    let base = Base::new("cmp-starts", 40);
    let mut model = small_model();
    // NOW is Sunday 2026-11-22 10:00 UTC: `a` starts on Monday.
    model["offers"][0]["valid_from"] = json!("2026-11-23T00:00:00Z");
    std::fs::write(base.path("model.json"), serde_json::to_vec(&model).unwrap()).unwrap();
    let offered = |run: &Run| run.rows.iter().filter(|(_, o)| o == "a").count();
    let now = base.run(&sms("now"), "now", NOW);
    assert_eq!(offered(&now), 0, "`a` has not started at the run");
    assert!(!now.rows.is_empty());
    let mut doc = sms("window");
    doc["send_window"] = json!({"from": "10:00", "to": "19:00",
        "days": ["mon", "tue", "wed", "thu", "fri", "sat"], "default_time_zone": "UTC"});
    let later = base.run(&doc, "window", NOW);
    assert!(
        offered(&later) > 0,
        "Monday's list sends `a`: {:?}",
        later.rows
    );
}

/// A campaign file saved with a byte-order mark (a Windows editor) reads as the same file.
#[test]
fn a_campaign_file_with_a_byte_order_mark_reads_as_without() {
    let base = Base::new("cmp-bom", 10);
    let plain = base.write_campaign("bom", &sms("bom"));
    let mut bytes = b"\xef\xbb\xbf".to_vec();
    bytes.extend(std::fs::read(&plain).unwrap());
    let with_bom = base.path("bom-marked.json");
    std::fs::write(&with_bom, bytes).unwrap();
    let spec = check(&with_bom, Some(&base.path("model.json")), None).unwrap();
    assert_eq!(spec.name, "bom");
}

/// A field written twice in a campaign file is refused, not read as whichever value a parser
/// keeps.
#[test]
fn a_field_written_twice_is_refused() {
    let base = Base::new("cmp-twice", 10);
    let file = base.path("twice.json");
    std::fs::write(
        &file,
        r#"{"name": "a", "channel": "sms", "placement": "sms_campaign", "name": "b"}"#,
    )
    .unwrap();
    let e = check(&file, None, None).unwrap_err().to_string();
    assert!(e.contains("`name` is written twice in one object"), "{e}");
}

/// A campaign file that is not JSON is refused with the line and column, as a model file is,
/// not a byte offset and a parser's state.
#[test]
fn a_syntax_error_is_named_by_line_and_column() {
    let base = Base::new("cmp-syntax", 10);
    let file = base.path("syntax.json");
    std::fs::write(&file, "{\"name\": \"a\",\n  \"channel\": \"sms\",\n  }\n").unwrap();
    let e = check(&file, None, None).unwrap_err().to_string();
    assert!(e.contains("line 3, column 3: key must be a string"), "{e}");
}

/// An offer's minimum above its category's maximum is a fault of the file, found by check,
/// not a shortfall a run blames on the base.
#[test]
fn minimums_a_category_maximum_cannot_hold_are_refused_by_check() {
    let base = Base::new("cmp-min-max", 10);
    let doc = serde_json::json!({"name": "x", "channel": "sms",
        "capacity": {"max_contacts": 3000},
        "offer_limits": {"roaming_pass_eu": {"min": 1200}, "data_boost_10gb": {"min": 100}},
        "category_limits": {"sales": {"max": 1000}}});
    let file = base.write_campaign("x", &doc);
    let faults = check(&file, Some(&demo_dir()), None).unwrap_err().faults();
    assert_eq!(faults.len(), 1, "{faults:#?}");
    assert_eq!(faults[0].path, "category_limits.sales");
    assert!(
        faults[0].message.starts_with(
            "max 1000 is less than the minimums of its offers add up to (1300: data_boost_10gb 100, roaming_pass_eu 1200)"
        ),
        "{faults:#?}"
    );
}

/// A snapshot exported with `NA` for a missing value: under `--features-null NA` a campaign
/// selects exactly the list it selects from the same export with empty fields; without the
/// word the run is refused, the column having turned to text.
#[test]
fn a_campaign_reads_its_snapshots_null_words() {
    let base = Base::new("cmp-null-words", 120);
    let file = base.write_campaign("nulls", &sms("nulls"));
    let plain = run_config(&base.config(&file, "plain", NOW));
    let csv = std::fs::read_to_string(base.path("features.csv")).unwrap();
    let with_na: String = csv
        .lines()
        .map(|l| match l.strip_suffix(',') {
            Some(row) => format!("{row},NA\n"),
            None => format!("{l}\n"),
        })
        .collect();
    assert!(with_na.contains(",NA\n"));
    std::fs::write(base.path("features_na.csv"), with_na).unwrap();
    let cfg = |out: &str, words: &[&str]| campaign::RunConfig {
        features: base.path("features_na.csv"),
        null_words: nextbest::features::NullWords::new(words).unwrap(),
        ..base.config(&file, out, NOW)
    };
    let read = run_config(&cfg("na", &["NA"]));
    assert_eq!(read.rows, plain.rows);
    assert_eq!(
        std::fs::read(read.out.join("targets.csv")).unwrap(),
        std::fs::read(plain.out.join("targets.csv")).unwrap()
    );
    let refused = campaign::run(&cfg("refused", &[])).unwrap_err();
    let faults = format!("{:?}", refused.faults());
    assert!(faults.contains("made it text: `NA`"), "{faults}");
}

/// An `--out` that names a file is refused before anything is read or scanned (it failed after
/// the whole scan), and the file is left as it was.
#[test]
fn an_out_that_is_a_file_is_refused_before_the_scan() {
    let base = Base::new("cmp-out-file", 20);
    let file = base.write_campaign("out-file", &sms("out-file"));
    let mut cfg = base.config(&file, "list", NOW);
    std::fs::write(&cfg.out, "keep").unwrap();
    // A campaign that is not there: what is said is the folder, so it came first.
    cfg.campaign = base.path("no-such-campaign.json");
    for e in [
        campaign::run(&cfg).map(|_| ()).unwrap_err(),
        campaign::run_shard(&cfg, campaign::select::Shard { index: 0, count: 2 })
            .map(|_| ())
            .unwrap_err(),
    ] {
        let e = e.to_string();
        assert!(
            e.starts_with("output folder ")
                && e.ends_with("a file is there: --out names the folder the list is written into"),
            "{e}"
        );
    }
    assert_eq!(std::fs::read_to_string(&cfg.out).unwrap(), "keep");
}
