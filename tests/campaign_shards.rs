//! Sharded campaign runs merged byte for byte, and champion/challenger shares of the limits.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::json;

use nextbest::campaign;
use nextbest::contact::EventKind;
use support::campaign::*;

const LIST_FILES: [&str; 4] = [
    "targets.csv",
    "targets.parquet",
    "control.csv",
    "summary.json",
];

/// Runs every shard of `count` into its own folder; returns the folders.
fn run_shards(base: &Base, campaign: &Path, tag: &str, count: u32, now: i64) -> Vec<PathBuf> {
    (0..count)
        .map(|index| {
            let cfg = base.config(campaign, &format!("{tag}-shard-{index}-of-{count}"), now);
            campaign::run_shard(&cfg, campaign::select::Shard { index, count })
                .unwrap_or_else(|e| panic!("shard {index}/{count}: {:#?}", e.faults()));
            cfg.out
        })
        .collect()
}

/// A merge of 1, 3 and 8 shards writes the list, the control group and the summary exactly as
/// one machine does: with offer and category limits (every pair kept), with a capacity only
/// (each customer's best pairs kept) and a send window (the shards carry each customer's
/// time zone), and over two channels with their own capacities, one reachable by a rule (the
/// shards carry each pair's channel and where its customer cannot be reached, which the list's
/// `not_chosen` column says), with one and two offers a customer; each with a control group and
/// ties broken by row.
#[test]
fn sharded_runs_merge_into_the_one_machine_list_byte_for_byte() {
    let base = base_with_zones("cmp-shards", 600);
    let mut limited = sms("limited");
    limited["max_offers_per_customer"] = json!(2);
    limited["capacity"] = json!({"max_contacts": 150});
    limited["offer_limits"] = json!({"a": {"max": 40}, "c": {"min": 30}});
    limited["category_limits"] = json!({"sales": {"max": 100}});
    limited["control_group"] = json!({"share": 0.1, "salt": "s"});
    let mut capacity = sms("capacity");
    capacity["capacity"] = json!({"max_contacts": 120});
    capacity["control_group"] = json!({"share": 0.2, "salt": "t"});
    // Each customer's send time in their zone: the shards carry the zone names.
    capacity["send_window"] = json!({"from": "09:00", "to": "20:00", "days": ["mon", "sat"],
        "time_zone": {"feature": "tz"}, "default_time_zone": "Asia/Tokyo"});
    let channels = |name: &str, per_customer: u32| {
        json!({"name": name, "offers": ["a", "b", "c"],
            "max_offers_per_customer": per_customer,
            "control_group": {"share": 0.15, "salt": "u"},
            "send_window": {"from": "08:00", "to": "21:00",
                "time_zone": {"feature": "tz"}, "default_time_zone": "Europe/Lisbon"},
            "channels": {
                "sms": {"placement": "sms_campaign", "max_contacts": 70},
                "email": {"placement": "email_campaign", "max_contacts": 90,
                          "reachable": {"feature": "y", "op": "ge", "value": 5}}}})
    };
    for doc in [
        limited,
        capacity,
        channels("channels_1", 1),
        channels("channels_2", 2),
    ] {
        let name = doc["name"].as_str().unwrap().to_owned();
        let file = base.write_campaign(&name, &doc);
        let one = run_config(&base.config(&file, &format!("{name}-one"), NOW));
        assert!(
            !one.summary.shadow_prices.is_empty(),
            "{name}: the limits must bind"
        );
        for count in [1, 3, 8] {
            let dirs = run_shards(&base, &file, &name, count, NOW);
            let out = base.path(&format!("{name}-merged-{count}"));
            let merged = campaign::merge(&dirs, &out)
                .unwrap_or_else(|e| panic!("merge of {count}: {:#?}", e.faults()));
            assert_eq!(merged.scanned, 600, "{name}/{count}");
            if name.starts_with("channels") {
                let list = std::fs::read_to_string(out.join("targets.csv")).unwrap();
                assert!(
                    list.contains("email:unreachable") && list.contains("sms:"),
                    "{name}: the merged list says no customer was unreachable by e-mail"
                );
            }
            for f in LIST_FILES {
                assert!(
                    std::fs::read(one.out.join(f)).unwrap() == std::fs::read(out.join(f)).unwrap(),
                    "{name}: {f} of {count} merged shards differs from the one-machine run"
                );
            }
        }
    }
}

/// Shards given the campaign by other paths (run from other folders, or a copy of the file and
/// its opt-out list elsewhere) are one run: the opt-out lists' content is compared, not where
/// each shard found them, and the merge is the one-machine list.
#[test]
fn shards_given_the_campaign_by_other_paths_merge_into_the_one_machine_list() {
    let base = Base::new("cmp-shard-paths", 200);
    let mut doc = sms("paths");
    doc["capacity"] = json!({"max_contacts": 30});
    doc["suppression"] = json!(["optouts.txt"]);
    std::fs::write(base.path("optouts.txt"), "K00001\nK00002\n").unwrap();
    let file = base.write_campaign("paths", &doc);
    let elsewhere = base.path("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::copy(base.path("optouts.txt"), elsewhere.join("optouts.txt")).unwrap();
    let copy = elsewhere.join("paths.json");
    std::fs::copy(&file, &copy).unwrap();
    let mut shards = run_shards(&base, &file, "here", 3, NOW);
    shards[1] = run_shards(&base, &copy, "there", 3, NOW).remove(1);
    let out = base.path("merged");
    campaign::merge(&shards, &out).unwrap_or_else(|e| panic!("{:#?}", e.faults()));
    let one = run_config(&base.config(&file, "one", NOW));
    for f in ["targets.csv", "control.csv"] {
        assert_eq!(
            std::fs::read(one.out.join(f)).unwrap(),
            std::fs::read(out.join(f)).unwrap(),
            "{f}"
        );
    }
}

/// Customers with room for fewer messages than the list may send them (a frequency cap partly
/// used already) are allocated as one machine allocates them: the shards carry each one's room.
#[test]
fn customers_with_less_room_under_the_cap_merge_byte_for_byte() {
    let base = Base::new("cmp-shards-rooms", 400);
    let contacted: Vec<String> = (0..400).step_by(3).map(|i| format!("K{i:05}")).collect();
    let list: Vec<(&str, &str, Option<&str>, i64)> = contacted
        .iter()
        .map(|c| (c.as_str(), "b", Some("sms"), NOW - 86_400_000))
        .collect();
    support::outcomes::write_events(&base.path("data"), EventKind::Impression, &list).unwrap();
    let mut doc = sms("rooms");
    doc["max_offers_per_customer"] = json!(2);
    doc["frequency"] = json!({"max_contacts": 2, "window_days": 7, "channels": ["sms"]});
    doc["capacity"] = json!({"max_contacts": 300});
    doc["offer_limits"] = json!({"a": {"max": 60}});
    doc["control_group"] = json!({"share": 0.1, "salt": "r"});
    let file = base.write_campaign("rooms", &doc);
    let one = run_config(&base.config(&file, "rooms-one", NOW));
    assert!(
        !one.summary.shadow_prices.is_empty(),
        "the limits must bind"
    );
    let mut per_customer: BTreeMap<&str, usize> = BTreeMap::new();
    for (c, _) in &one.rows {
        *per_customer.entry(c).or_default() += 1;
    }
    for c in &contacted {
        assert!(per_customer.get(c.as_str()).is_none_or(|&n| n <= 1), "{c}");
    }
    assert!(
        per_customer.values().any(|&n| n == 2),
        "room for two is used"
    );
    for count in [1, 3] {
        let dirs = run_shards(&base, &file, "rooms", count, NOW);
        let rooms: String = dirs
            .iter()
            .map(|d| std::fs::read_to_string(d.join("shard-candidates.csv")).unwrap())
            .collect();
        assert!(rooms.lines().any(|l| l.ends_with(",1")), "no room column");
        let err = campaign::report::report(&dirs[0], &base.path("data"), None)
            .expect_err("a shard is no list")
            .to_string();
        assert!(err.contains("a shard's folder, not a list"), "{err}");
        let out = base.path(&format!("rooms-merged-{count}"));
        campaign::merge(&dirs, &out)
            .unwrap_or_else(|e| panic!("merge of {count}: {:#?}", e.faults()));
        for f in LIST_FILES {
            assert!(
                std::fs::read(one.out.join(f)).unwrap() == std::fs::read(out.join(f)).unwrap(),
                "{f} of {count} merged shards differs from the one-machine run"
            );
        }
    }
}

/// Shards of different runs (campaign, snapshot, `--now`), a missing or repeated shard, or a
/// shard folder that never finished are refused by name, and the merge writes nothing.
#[test]
fn shards_from_different_runs_are_refused_and_nothing_is_written() {
    let base = Base::new("cmp-shard-refuse", 200);
    let mut doc = sms("refuse");
    doc["capacity"] = json!({"max_contacts": 30});
    let file = base.write_campaign("refuse", &doc);
    let good = run_shards(&base, &file, "good", 3, NOW);
    let later = run_shards(&base, &file, "later", 3, NOW + HOUR);
    doc["capacity"] = json!({"max_contacts": 31});
    let other_file = base.write_campaign("refuse2", &doc);
    let other = run_shards(&base, &other_file, "other", 3, NOW);
    // Another snapshot: the same customers, one value changed.
    let csv = std::fs::read_to_string(base.path("features.csv")).unwrap();
    std::fs::write(
        base.path("features2.csv"),
        csv.replacen("K00000,", "K00000x,", 1),
    )
    .unwrap();
    let snapshot: Vec<PathBuf> = (0..3)
        .map(|index| {
            let mut cfg = base.config(&file, &format!("snap-{index}"), NOW);
            cfg.features = base.path("features2.csv");
            campaign::run_shard(&cfg, campaign::select::Shard { index, count: 3 }).unwrap();
            cfg.out
        })
        .collect();
    // A refresh: the same customers and columns, one customer's value changed.
    let refreshed: String = csv
        .lines()
        .map(|l| match l.strip_prefix("K00007,") {
            Some(rest) => format!("K00007,9{rest}\n"),
            None => format!("{l}\n"),
        })
        .collect();
    assert_ne!(refreshed, csv);
    std::fs::write(base.path("features3.csv"), refreshed).unwrap();
    let mut cfg = base.config(&file, "refreshed-2", NOW);
    cfg.features = base.path("features3.csv");
    campaign::run_shard(&cfg, campaign::select::Shard { index: 2, count: 3 }).unwrap();
    let refreshed = cfg.out;
    let eight = run_shards(&base, &file, "eight", 8, NOW);
    // The same campaign file, its opt-out list replaced between two shards' runs.
    doc["capacity"] = json!({"max_contacts": 30});
    doc["suppression"] = json!(["optouts.txt"]);
    std::fs::write(base.path("optouts.txt"), "K00001\nK00002\n").unwrap();
    let listed = base.write_campaign("listed", &doc);
    let mut lists = run_shards(&base, &listed, "lists", 3, NOW);
    std::fs::write(base.path("optouts.txt"), "K00001\n").unwrap();
    lists[2] = run_shards(&base, &listed, "lists-changed", 3, NOW).remove(2);

    let out = base.path("never");
    let refused = |dirs: Vec<PathBuf>, expect: &[&str]| {
        let err = campaign::merge(&dirs, &out).expect_err("must be refused");
        let text = err.to_string();
        for e in expect {
            assert!(text.contains(e), "`{text}` should say {e}");
        }
        assert!(!out.exists(), "a refused merge wrote {}", out.display());
    };
    let mix = |a: &[PathBuf], b: &PathBuf| vec![a[0].clone(), a[1].clone(), b.clone()];
    refused(mix(&good, &later[2]), &["--now", "later-shard-2-of-3"]);
    // A refused merge into the folder of an earlier list leaves that list as it was.
    let kept = base.path("kept");
    campaign::merge(&good, &kept).unwrap();
    let before: Vec<Vec<u8>> = LIST_FILES
        .iter()
        .map(|f| std::fs::read(kept.join(f)).unwrap())
        .collect();
    campaign::merge(&mix(&good, &other[2]), &kept).expect_err("must be refused");
    for (f, bytes) in LIST_FILES.iter().zip(&before) {
        assert_eq!(&std::fs::read(kept.join(f)).unwrap(), bytes, "{f} changed");
    }
    refused(mix(&good, &other[2]), &["the campaign", "max_contacts"]);
    refused(mix(&good, &snapshot[2]), &["the snapshot", "snap-2"]);
    refused(mix(&good, &refreshed), &["the snapshot", "refreshed-2"]);
    refused(mix(&good, &eight[2]), &["the number of shards"]);
    refused(lists, &["the suppression lists", "lists-changed-shard-2"]);
    refused(good[..2].to_vec(), &["1 of 3 shards missing: 2/3"]);
    refused(
        vec![good[0].clone(), good[1].clone(), good[1].clone()],
        &["shard 1/3 given twice"],
    );
    // A shard that never finished (no header) and one whose candidates were cut short.
    std::fs::remove_file(later[0].join(campaign::shard::SHARD_JSON)).unwrap();
    refused(
        vec![later[0].clone(), later[1].clone(), later[2].clone()],
        &["shard.json", "not the folder of a finished"],
    );
    let torn = std::fs::read_to_string(good[2].join(campaign::shard::CANDIDATES_CSV)).unwrap();
    let cut = torn.lines().take(3).collect::<Vec<_>>().join("\n") + "\n";
    std::fs::write(good[2].join(campaign::shard::CANDIDATES_CSV), cut).unwrap();
    refused(
        good.clone(),
        &[
            "shard-candidates.csv",
            "the file was changed or damaged since",
        ],
    );
    // Values no shard writes, in a file whose checksum was made to match (a shard writer's
    // bug, not a damaged copy): refused by line and column.
    let path = other[1].join(campaign::shard::CANDIDATES_CSV);
    let text = std::fs::read_to_string(&path).unwrap();
    let bend = |column: usize, value: &str| {
        let bent: Vec<String> = text
            .lines()
            .enumerate()
            .map(|(i, l)| {
                let mut f: Vec<&str> = l.split(',').collect();
                assert_eq!(f.len(), 11, "{l}");
                if i == 2 {
                    f[column] = value;
                }
                f.join(",")
            })
            .collect();
        let bytes = bent.join("\n") + "\n";
        std::fs::write(&path, &bytes).unwrap();
        // The header sealed again, as a shard writer would have written it.
        let header = other[1].join(campaign::shard::SHARD_JSON);
        let mut h: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&header).unwrap()).unwrap();
        h["shard"]["candidates_crc"] = json!(crc32fast::hash(bytes.as_bytes()));
        let body = h["shard"].to_string();
        let sealed = json!({"checksum": crc32fast::hash(body.as_bytes()), "shard": h["shard"]});
        std::fs::write(&header, sealed.to_string()).unwrap();
    };
    // A count in the header changed (a digit, by hand or by damage): refused by its checksum.
    let head = other[2].join(campaign::shard::SHARD_JSON);
    let sealed = std::fs::read_to_string(&head).unwrap();
    let scanned = serde_json::from_str::<serde_json::Value>(&sealed).unwrap()["shard"]["tally"]
        ["scanned"]
        .as_u64()
        .unwrap();
    let field = format!("\"scanned\": {scanned}");
    assert!(sealed.contains(&field), "{sealed}");
    std::fs::write(
        &head,
        sealed.replacen(&field, &format!("\"scanned\": {}", scanned + 9), 1),
    )
    .unwrap();
    refused(
        other.clone(),
        &[
            "shard.json",
            "its content differs from what the shard wrote",
        ],
    );
    // A header as the build before the seal wrote it (format 4, unsealed): said so.
    let old: serde_json::Value = serde_json::from_str(&sealed).unwrap();
    let mut old = old["shard"].clone();
    old["format"] = json!(4);
    std::fs::write(&head, old.to_string()).unwrap();
    refused(
        other.clone(),
        &["shard.json", "shard format 4 (this build reads 5)"],
    );
    std::fs::write(&head, &sealed).unwrap();
    for (column, value, name) in [
        (8, "1", "channel"),
        (9, "0;1", "unreachable"),
        (4, "NaN", "score"),
        (5, "-3", "propensity"),
        (6, "inf", "value"),
        (10, "0", "room"),
    ] {
        bend(column, value);
        let needle = format!("line 3: column `{name}`");
        refused(other.clone(), &["shard-candidates.csv", &needle]);
    }
    // The shard's own file merges; one value changed in it (a score) does not.
    bend(4, text.lines().nth(2).unwrap().split(',').nth(4).unwrap());
    let merged = base.path("bent-back");
    campaign::merge(&other, &merged).unwrap();
    let _ = std::fs::remove_dir_all(&merged);
    let line = text.lines().nth(2).unwrap();
    let mut f: Vec<&str> = line.split(',').collect();
    f[4] = "300";
    std::fs::write(&path, text.replacen(line, &f.join(","), 1)).unwrap();
    refused(
        other.clone(),
        &[
            "shard-candidates.csv",
            "the file was changed or damaged since",
        ],
    );
}

/// A challenger that only triples one offer's priority outscores the champion everywhere; each
/// variant still gets the share of the capacity (and of every limit) its customers are of the
/// base, and the summary says so.
#[test]
fn a_challenger_gets_its_share_of_the_limits_whatever_its_scores() {
    let mut boosted = small_model();
    boosted["name"] = json!("small-boosted");
    boosted["offers"][0]["priority"] = json!(3);
    let base = base_with_challenger("cmp-fair", &boosted);
    let mut doc = sms("fair");
    doc["capacity"] = json!({"max_contacts": 61});
    doc["offer_limits"] = json!({"a": {"max": 21}});
    let run = base.run(&doc, "out", NOW);
    let v = &run.summary.variants;
    assert_eq!(v.len(), 2, "{v:?}");
    assert_eq!(
        (v[0].variant.as_str(), v[1].variant.as_str()),
        ("champion", "challenger")
    );
    assert_eq!(v[1].model, "small-boosted v7");
    let (e0, e1) = (v[0].eligible, v[1].eligible);
    assert!(
        e0 > 61 && e1 > 61,
        "both variants must have more customers than capacity"
    );
    // The capacity split by share, the rounding unit to the larger remainder.
    let exact0 = 61.0 * e0 as f64 / (e0 + e1) as f64;
    let c0 = if exact0.fract() >= 61.0 * e1 as f64 / (e0 + e1) as f64 % 1.0 {
        exact0.ceil()
    } else {
        exact0.floor()
    } as u64;
    assert_eq!(v[0].capacity, Some(c0), "{v:?}");
    assert_eq!(v[1].capacity, Some(61 - c0), "{v:?}");
    // Each variant fills exactly its share, and the list says which variant each row is.
    let mut r = csv::Reader::from_path(run.out.join("targets.csv")).unwrap();
    let mut rows = BTreeMap::new();
    for rec in r.records() {
        let rec = rec.unwrap();
        *rows
            .entry((rec[9].to_owned(), rec[2].to_owned()))
            .or_insert(0u64) += 1;
    }
    let per_variant = |name: &str| -> u64 {
        rows.iter()
            .filter(|((v, _), _)| v == name)
            .map(|(_, n)| n)
            .sum()
    };
    assert_eq!(per_variant("champion"), v[0].selected);
    assert_eq!(per_variant("challenger"), v[1].selected);
    assert_eq!((v[0].selected, v[1].selected), (c0, 61 - c0));
    // The boosted offer's maximum is split too: the challenger cannot take most of it.
    let a = |name: &str| {
        rows.get(&(name.to_owned(), "a".to_owned()))
            .copied()
            .unwrap_or(0)
    };
    assert!(a("challenger") <= 11 && a("champion") <= 11, "{rows:?}");
    assert!(run
        .summary
        .shadow_prices
        .keys()
        .any(|k| k.starts_with("challenger.")));
    // The table lists the champion's prices, then the challenger's, values in one column.
    let table = nextbest::campaign::output::table(&run.summary);
    let prices: Vec<&str> = table
        .lines()
        .skip_while(|l| !l.contains("shadow prices"))
        .skip(1)
        .take_while(|l| l.starts_with("    "))
        .collect();
    assert_eq!(prices.len(), run.summary.shadow_prices.len(), "{table}");
    let first_challenger = prices
        .iter()
        .position(|l| l.trim_start().starts_with("challenger."));
    assert!(
        first_challenger.is_some_and(|i| prices[i..]
            .iter()
            .all(|l| l.trim_start().starts_with("challenger."))),
        "{table}"
    );
    let ends: std::collections::BTreeSet<usize> = prices.iter().map(|l| l.len()).collect();
    assert_eq!(ends.len(), 1, "the prices end in one column: {table}");

    // A control group drawn with the experiment's salt would hold out one arm only: refused by
    // `campaign check` and by a run, naming both salts' owner.
    doc["control_group"] = json!({"share": 0.2, "salt": "fair"});
    let file = base.write_campaign("fair", &doc);
    let said = |faults: Vec<nextbest::model::Fault>| {
        faults
            .iter()
            .any(|f| f.path == "control_group.salt" && f.message.contains("challenger experiment"))
    };
    let err = campaign::run(&base.config(&file, "same-salt", NOW)).expect_err("same salt");
    assert!(said(err.faults()), "{:?}", err.faults());
    let err = campaign::check(&file, Some(&base.path("model.json")), None).expect_err("same salt");
    assert!(said(err.faults()), "{:?}", err.faults());
    doc["control_group"]["salt"] = json!("fair-control");
    let file = base.write_campaign("fair", &doc);
    campaign::check(&file, Some(&base.path("model.json")), None).expect("a salt of its own");
}

/// A run as of `--now` decides with the history as it was then: a dismissal stamped after it
/// is left out (as a later impression always was), one stamped before it holds the offer
/// back; and shards whose logs differ up to `--now` are refused by the merge.
#[test]
fn a_run_sees_the_history_as_of_its_time_and_shards_must_share_it() {
    let dir = support::TempDir::new("cmp-as-of");
    let data = dir.0.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let file = dir.0.join("sales_sms.json");
    let doc = json!({"name": "sales_sms", "channel": "sms", "placement": "sms_campaign",
        "offers": ["data_boost_10gb", "unlimited_upgrade", "roaming_pass_eu"]});
    std::fs::write(&file, serde_json::to_vec(&doc).unwrap()).unwrap();
    let cfg = |out: &str| campaign::RunConfig {
        campaign: file.clone(),
        out: dir.0.join(out),
        models: support::demo_dir(),
        features: support::demo_dir().join("features.csv"),
        null_words: Default::default(),
        data_dir: Some(data.clone()),
        fleet: None,
        now_ms: Some(NOW),
        contact_memory_bytes: 64 << 20,
        progress_bar: false,
    };
    let before = run_config(&cfg("before"));
    let shard = |out: &str, index: u32| {
        let c = cfg(out);
        campaign::run_shard(&c, campaign::select::Shard { index, count: 2 }).unwrap();
        c.out
    };
    let early = [shard("early-0", 0), shard("early-1", 1)];
    let dismissed: Vec<(String, String)> = before.rows[..20].to_vec();
    let dismiss = |ts: i64| {
        let list: Vec<(&str, &str, Option<&str>, i64)> = dismissed
            .iter()
            .map(|(c, o)| (c.as_str(), o.as_str(), Some("web"), ts))
            .collect();
        support::outcomes::write_events(&data, nextbest::contact::EventKind::Dismiss, &list)
            .unwrap();
    };
    // Stamped a minute after the run's time: the run as of then does not see them.
    dismiss(NOW + 60_000);
    let after = run_config(&cfg("after"));
    assert!(
        after.csv() == before.csv(),
        "events after --now changed the list"
    );
    let late = [shard("late-0", 0), shard("late-1", 1)];
    campaign::merge(
        &[early[0].clone(), late[1].clone()],
        &dir.0.join("mixed-ok"),
    )
    .expect("the history up to --now is the same");
    // Stamped a minute before it: each dismissed offer is held back.
    dismiss(NOW - 60_000);
    let held = run_config(&cfg("held"));
    for pair in &dismissed {
        assert!(
            !held.rows.contains(pair),
            "{pair:?} was dismissed before the run"
        );
    }
    let later = shard("later-1", 1);
    let err = campaign::merge(&[early[0].clone(), later], &dir.0.join("mixed"))
        .expect_err("shards read different histories")
        .to_string();
    assert!(err.contains("the contact history up to --now"), "{err}");
    assert!(!dir.0.join("mixed").exists());
    // A text sent between two shards' runs under a daily capacity: the merge names the
    // contacts each shard counted on the channel.
    let mut capped = doc.clone();
    capped["capacity"] = json!({"max_contacts": 50, "per": "day"});
    std::fs::write(&file, serde_json::to_vec(&capped).unwrap()).unwrap();
    let first = shard("capped-0", 0);
    let (customer, offer) = &before.rows[0];
    support::outcomes::write_events(
        &data,
        nextbest::contact::EventKind::Impression,
        &[(customer.as_str(), offer.as_str(), Some("sms"), NOW - 30_000)],
    )
    .unwrap();
    let second = shard("capped-1", 1);
    let err = campaign::merge(&[first, second], &dir.0.join("capped"))
        .expect_err("shards counted different contacts")
        .to_string();
    assert!(
        err.contains("contacts already on each channel")
            && err.contains("0 on the campaign's channel")
            && err.contains("1 on the campaign's channel"),
        "{err}"
    );
}
