//! Campaigns end to end through the real binary: the demo run and commit, and `campaign report`
//! after simulated outcomes.

mod support;

use std::collections::HashMap;
use std::path::Path;

use serde_json::{json, Value};

use nextbest::campaign;
use nextbest::campaign::commit::{self, Target};
use nextbest::campaign::output::Summary;
use support::campaign::*;
use support::outcomes;
use support::TempDir;

/// Asserts the report's table holds `needle`.
fn table_says(r: &campaign::report::Report, needle: &str) {
    let table = campaign::report::table(r);
    assert!(table.contains(needle), "{table}");
}

/// Commits a run's list straight into a data folder's log, as of `at`.
fn commit_direct(out: &Path, data_dir: &Path, at: i64) -> commit::Committed {
    commit::commit(
        out,
        &Target::Direct {
            data_dir: data_dir.to_owned(),
        },
        at,
    )
    .unwrap()
}

/// A list over SMS and e-mail is also compared per channel: each channel's targets against
/// the control customers who would have been sent on it, their counts the simulation's and
/// each added value stratified by offer within the channel; a one-channel list's report has no
/// per-channel rows.
#[test]
fn a_report_over_several_channels_compares_each_channel() {
    let base = Base::new("cmp-report-ch", 600);
    let doc = json!({"name": "report_ch", "offers": ["a", "b", "c"],
        "control_group": {"share": 0.3, "salt": "rc"},
        "channels": {"sms": {"placement": "sms_campaign", "max_contacts": 120},
                     "email": {"placement": "email_campaign", "max_contacts": 150}}});
    let run = base.run(&doc, "report_ch", NOW);
    let data_dir = base.path("data");
    commit_direct(&run.out, &data_dir, NOW + 1);
    // (customer, offer, channel) of a group's rows.
    let read = |file: &str| -> Vec<(String, String, String)> {
        let mut r = csv::Reader::from_path(run.out.join(file)).unwrap();
        let h = r.headers().unwrap().clone();
        let at = |name: &str| h.iter().position(|x| x == name).unwrap();
        let (c, o, ch) = (at("customer_id"), at("offer_id"), at("channel"));
        r.records()
            .map(|x| {
                let x = x.unwrap();
                (x[c].to_owned(), x[o].to_owned(), x[ch].to_owned())
            })
            .collect()
    };
    let (targets, control) = (read("targets.csv"), read("control.csv"));
    let later = NOW + 2 * 24 * HOUR;
    let mut conversions = Vec::new();
    for (i, (c, o, _)) in targets.iter().enumerate() {
        if i % 4 == 0 {
            conversions.push((c.clone(), o.clone(), later));
        }
    }
    for (i, (c, o, _)) in control.iter().enumerate() {
        if i % 7 == 0 {
            conversions.push((c.clone(), o.clone(), later));
        }
    }
    log_conversions(&data_dir, &conversions);
    let r = campaign::report::report(&run.out, &data_dir, None).unwrap();
    let names: Vec<&str> = r.channels.keys().map(|k| k.as_str()).collect();
    assert_eq!(names, ["email", "sms"]);
    let counted = |rows: &[(String, String, String)], every: usize, channel: &str| {
        let on: Vec<usize> = (0..rows.len()).filter(|&i| rows[i].2 == channel).collect();
        let converted = on.iter().filter(|&&i| i % every == 0).count() as u64;
        (on.len() as u64, converted)
    };
    for (name, cmp) in &r.channels {
        assert_eq!(
            (cmp.targets.customers, cmp.targets.converted),
            counted(&targets, 4, name),
            "{name}"
        );
        assert_eq!(
            (cmp.control.customers, cmp.control.converted),
            counted(&control, 7, name),
            "{name}"
        );
        assert!(
            cmp.targets.customers > 0 && cmp.control.customers > 0,
            "{name}"
        );
    }
    // Added value: per offer on the channel, (targets' rate - control's rate) x value x
    // targets, over the offers both groups have on it.
    let values: HashMap<&str, f64> = [("a", 10.0), ("b", 6.0), ("c", 8.0)].into();
    for (name, cmp) in &r.channels {
        let mut added = 0.0;
        for (offer, value) in &values {
            let side = |rows: &[(String, String, String)], every: usize| {
                let on: Vec<usize> = (0..rows.len())
                    .filter(|&i| rows[i].2 == *name && rows[i].1 == *offer)
                    .collect();
                let k = on.iter().filter(|&&i| i % every == 0).count();
                (on.len() as f64, k as f64)
            };
            let ((nt, kt), (nc, kc)) = (side(&targets, 4), side(&control, 7));
            if nt > 0.0 && nc > 0.0 {
                added += (kt / nt - kc / nc) * value * nt;
            }
        }
        let got = cmp.incremental_value.expect("both groups on every channel");
        assert!((got - added).abs() < 1e-6, "{name}: {added} {cmp:?}");
    }
    table_says(&r, "on email");
    table_says(&r, "on sms");
    let json = serde_json::to_value(&r).unwrap();
    assert!(json["channels"]["sms"]["lift"].is_object(), "{json}");

    let mut one = sms("report_one");
    one["control_group"] = json!({"share": 0.3, "salt": "rc"});
    let single = base.run(&one, "report_one", NOW);
    let r = campaign::report::report(&single.out, &data_dir, None).unwrap();
    assert!(r.channels.is_empty());
    assert!(serde_json::to_value(&r).unwrap().get("channels").is_none());

    // Without a control group nothing measures the added value: `-` and null, not 0.
    let none = base.run(&sms("report_none"), "report_none", NOW);
    let r = campaign::report::report(&none.out, &data_dir, None).unwrap();
    assert_eq!(r.overall.incremental_value, None);
    assert!(r.offers.values().all(|c| c.incremental_value.is_none()));
    let json = serde_json::to_value(&r).unwrap();
    assert!(json["overall"]["incremental_value"].is_null(), "{json}");
    // The table's notes are the JSON's too.
    assert!(
        json["notes"][0]
            .as_str()
            .is_some_and(|n| n.contains("had targets but no control customers")),
        "{json}"
    );
    table_says(
        &r,
        "had targets but no control customers: their added value is not measured",
    );
    let table = campaign::report::table(&r);
    let all = table
        .lines()
        .find(|l| l.trim_start().starts_with("all offers"))
        .unwrap();
    assert!(all.ends_with(" -"), "{all}");
}

/// `campaign report` after simulated outcomes: every third target converts on its offer,
/// every tenth control-group customer on the offer they would have been sent; conversions
/// before the run, of another offer, or by customers of neither group do not count. The
/// counts, rates, lift (Newcombe's interval around the difference) and values are the
/// simulation's; `--json` prints the same report.
#[test]
fn the_report_compares_targets_with_the_control_group() {
    let base = Base::new("cmp-report", 600);
    let mut doc = sms("report");
    doc["capacity"] = json!({"max_contacts": 200});
    doc["offer_limits"] = json!({"a": {"max": 120}});
    doc["control_group"] = json!({"share": 0.3, "salt": "r"});
    let run = base.run(&doc, "report", NOW);
    let data_dir = base.path("data");
    commit_direct(&run.out, &data_dir, NOW + 1);
    let read = |file: &str| -> Vec<(String, String)> {
        let mut r = csv::Reader::from_path(run.out.join(file)).unwrap();
        let h = r.headers().unwrap().clone();
        let (c, o) = (
            h.iter().position(|x| x == "customer_id").unwrap(),
            h.iter().position(|x| x == "offer_id").unwrap(),
        );
        r.records()
            .map(|x| {
                let x = x.unwrap();
                (x[c].to_owned(), x[o].to_owned())
            })
            .collect()
    };
    let (targets, control) = (read("targets.csv"), read("control.csv"));
    assert_eq!(
        targets.len() + control.len(),
        200,
        "the control group is drawn from the list"
    );
    assert!(control.len() > 30, "{}", control.len());
    let later = NOW + 3 * 24 * HOUR;
    let mut conversions = Vec::new();
    for (i, (c, o)) in targets.iter().enumerate() {
        if i % 3 == 0 {
            conversions.push((c.clone(), o.clone(), later));
        }
    }
    for (i, (c, o)) in control.iter().enumerate() {
        if i % 10 == 0 {
            conversions.push((c.clone(), o.clone(), later));
        }
    }
    // None of these count.
    conversions.push((targets[1].0.clone(), targets[1].1.clone(), NOW - HOUR));
    let other = if targets[2].1 == "a" { "b" } else { "a" };
    conversions.push((targets[2].0.clone(), other.to_owned(), later));
    conversions.push(("K99999".into(), "a".into(), later));
    log_conversions(&data_dir, &conversions);

    let r = campaign::report::report(&run.out, &data_dir, None).unwrap();
    let t_conv = targets.len().div_ceil(3) as u64;
    let c_conv = control.len().div_ceil(10) as u64;
    assert_eq!(r.overall.targets.customers, targets.len() as u64);
    assert_eq!(r.overall.targets.converted, t_conv);
    assert_eq!(r.overall.control.customers, control.len() as u64);
    assert_eq!(r.overall.control.converted, c_conv);
    assert_eq!(r.conversions, t_conv + c_conv);
    assert_eq!(r.contacts_in_log, targets.len() as u64);
    assert!(!campaign::report::table(&r).contains("note:"));
    // A log that holds events but not this list's contacts says so instead of a table of
    // zeros alone.
    let elsewhere = base.path("elsewhere");
    log_conversions(&elsewhere, &conversions);
    let z = campaign::report::report(&run.out, &elsewhere, None).unwrap();
    assert_eq!(z.contacts_in_log, 0);
    table_says(
        &z,
        &format!(
            "note: none of the list's {} contacts is in this log",
            targets.len()
        ),
    );
    let lift = r.overall.lift.unwrap();
    let expected = t_conv as f64 / targets.len() as f64 - c_conv as f64 / control.len() as f64;
    assert!((lift.value - expected).abs() < 1e-12);
    assert!(
        lift.low < lift.value && lift.value < lift.high && lift.low > 0.0,
        "{lift:?}"
    );
    let values: HashMap<&str, f64> = [("a", 10.0), ("b", 6.0), ("c", 8.0)].into();
    let mut offers_seen = 0;
    for (offer, cmp) in &r.offers {
        let n = targets.iter().filter(|t| &t.1 == offer).count() as u64;
        let k = targets
            .iter()
            .enumerate()
            .filter(|(i, t)| &t.1 == offer && i % 3 == 0)
            .count() as u64;
        assert_eq!(
            (cmp.targets.customers, cmp.targets.converted),
            (n, k),
            "{offer}"
        );
        assert!((cmp.targets.value - k as f64 * values[offer.as_str()]).abs() < 1e-9);
        offers_seen += usize::from(n > 0);
    }
    assert!(offers_seen >= 2, "{:?}", r.offers.keys());
    // The total is the rows' sum, so an analyst can reconcile the table.
    let rows: f64 = r.offers.values().filter_map(|c| c.incremental_value).sum();
    assert!(
        (r.overall.incremental_value.unwrap() - rows).abs() < 1e-6,
        "{rows} {:?}",
        r.overall
    );
    assert!(
        r.overall.targets.value_per_customer.is_none(),
        "{:?}",
        r.overall
    );
    assert_eq!(r.control_contacted, 0);
    // A later campaign texts part of the control group their offer: the report counts them
    // and says so; `--until` before those contacts ends the comparison there.
    let texted: Vec<(&str, &str, Option<&str>, i64)> = control
        .iter()
        .take(5)
        .map(|(c, o)| (c.as_str(), o.as_str(), Some("sms"), later - HOUR))
        .collect();
    let contaminated = base.path("contaminated");
    log_conversions(&contaminated, &conversions);
    outcomes::write_events(
        &contaminated,
        nextbest::contact::EventKind::Impression,
        &texted,
    )
    .unwrap();
    let c = campaign::report::report(&run.out, &contaminated, None).unwrap();
    assert_eq!(c.control_contacted, 5);
    table_says(
        &c,
        &format!(
            "note: 5 of the control group's {} customers were contacted since the run",
            control.len()
        ),
    );
    let cut = campaign::report::report(&run.out, &contaminated, Some(later - 2 * HOUR)).unwrap();
    assert_eq!(cut.control_contacted, 0);
    assert_eq!(cut.conversions, 0, "the conversions came after --until");
    assert_eq!(cut.until.as_deref(), Some("2026-11-25T08:00:00.000Z"));
    let out = nextbest(&[
        "campaign",
        "report",
        run.out.to_str().unwrap(),
        "--data-dir",
        contaminated.to_str().unwrap(),
        "--until",
        "2026-11-25T08:00:00Z",
        "--json",
    ]);
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed, serde_json::to_value(&cut).unwrap());
    // A window that ends before the run counts nothing: refused, saying so.
    let e = campaign::report::report(&run.out, &contaminated, Some(NOW - HOUR))
        .unwrap_err()
        .to_string();
    assert!(e.contains("is before the run's time"), "{e}");
    let out = nextbest(&[
        "campaign",
        "report",
        run.out.to_str().unwrap(),
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed, serde_json::to_value(&r).unwrap());
    let table = nextbest(&[
        "campaign",
        "report",
        run.out.to_str().unwrap(),
        "--data-dir",
        data_dir.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("all offers") && text.contains(&format!("{t_conv}/{}", targets.len())),
        "{text}"
    );
    // A data folder that does not exist, or holds no event, is named: not a table of zeros.
    for (dir, says) in [
        (base.path("no-such-data"), "no such folder"),
        (base.path("empty-data"), "holds no event"),
    ] {
        if says == "holds no event" {
            std::fs::create_dir_all(&dir).unwrap();
        }
        let out = nextbest(&[
            "campaign",
            "report",
            run.out.to_str().unwrap(),
            "--data-dir",
            dir.to_str().unwrap(),
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{says}: {err}");
        assert!(
            err.contains(says) && err.contains(dir.to_str().unwrap()),
            "{err}"
        );
    }
    // A folder that is not a run's output is named.
    let missing = nextbest(&["campaign", "report", base.path("nope").to_str().unwrap()]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("summary.json"));

    // The same campaign run again the next day and committed re-texts the same targets: the
    // first list's report counts only its own contacts and says its targets were contacted
    // again (their conversions count in both reports).
    let again_dir = base.path("again");
    std::fs::create_dir_all(&again_dir).unwrap();
    let next = base.run(&doc, "report-next", NOW + 24 * HOUR);
    for (list, at) in [(&run, NOW + 1), (&next, NOW + 24 * HOUR + 1)] {
        commit_direct(&list.out, &again_dir, at);
    }
    let both: usize = next
        .rows
        .iter()
        .filter(|r| targets.contains(r))
        .map(|r| r.0.clone())
        .collect::<std::collections::HashSet<_>>()
        .len();
    assert!(both > 0, "the next day's list overlaps");
    let a = campaign::report::report(&run.out, &again_dir, None).unwrap();
    assert_eq!(a.contacts_in_log, targets.len() as u64);
    assert_eq!(a.targets_contacted_again, both as u64);
    table_says(
        &a,
        &format!(
            "note: {both} of the list's {} targets were contacted again since the run",
            targets.len()
        ),
    );
    assert_eq!(r.targets_contacted_again, 0);
    // The next day's list, a repeat of the first for those customers, says their offer came
    // from another list the day before its run.
    let n = campaign::report::report(&next.out, &again_dir, None).unwrap();
    assert_eq!(n.targets_contacted_before, both as u64);
    assert_eq!(n.targets_contacted_again, 0);
    table_says(
        &n,
        &format!(
            "note: {both} of the list's {} targets had their offer from another list in the 7 days before the run",
            next.customers().len()
        ),
    );
    assert_eq!(a.targets_contacted_before, 0);

    // A list for the day after tomorrow committed today: its contacts are recorded as of the
    // commit, which says so, and the report still finds them by their decision ids.
    let early_dir = base.path("early");
    std::fs::create_dir_all(&early_dir).unwrap();
    let ahead = base.run(&doc, "report-ahead", NOW + 48 * HOUR);
    let done = commit_direct(&ahead.out, &early_dir, NOW);
    assert_eq!(done.ahead, ahead.rows.len() as u64);
    assert_eq!(done.planned_until_ms, Some(NOW + 48 * HOUR));
    let e = campaign::report::report(&ahead.out, &early_dir, None).unwrap();
    assert_eq!(e.contacts_in_log, ahead.rows.len() as u64);
}

#[test]
fn the_demo_campaign_runs_and_commits_with_one_command_each() {
    let tmp = TempDir::new("cmp-cli");
    let out = tmp.0.join("out");
    let data = tmp.0.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let (out_s, data_s) = (out.to_str().unwrap(), data.to_str().unwrap());
    let run_demo = |more: &[&str]| {
        let run = [
            "campaign",
            "run",
            "models/campaigns/demo_sms.json",
            "--out",
            out_s,
            "--data-dir",
            data_s,
        ];
        nextbest(&[&run[..], more].concat())
    };
    let run = run_demo(&[]);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let summary: Summary =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(
        summary.selected + summary.held_out.control_group,
        2000,
        "the demo's capacity binds, and its control group is drawn from the list"
    );
    assert!(stdout.contains("customers scanned") && stdout.contains("2000"));
    assert!(summary.offers["roaming_pass_eu"].selected >= 150);
    assert!(summary.offers["unlimited_upgrade"].selected <= 800);
    assert!(out.join("targets.parquet").is_file());

    let direct = || {
        nextbest(&[
            "campaign",
            "commit",
            out_s,
            "--direct",
            "--data-dir",
            data_s,
        ])
    };
    let commit = |expect: &str| {
        let c = direct();
        let text = String::from_utf8_lossy(&c.stdout);
        assert!(c.status.success(), "{text}");
        assert!(text.contains(expect), "{text}");
    };
    // A data folder that does not exist (a typo, or the default `data` forgotten) is
    // refused, and not made: its contacts would be in a history no server reads.
    let typo = format!("{data_s}-typo");
    let c = nextbest(&["campaign", "commit", out_s, "--direct", "--data-dir", &typo]);
    assert!(!c.status.success());
    let said = String::from_utf8_lossy(&c.stderr);
    assert!(
        said.contains(&format!("--data-dir {typo}: no such folder")),
        "{said}"
    );
    assert!(!Path::new(&typo).exists());
    let n = summary.selected;
    // The line names the list it recorded: a rerun into the folder would be another.
    let list = format!("{} run at {}", summary.campaign, summary.run_at);
    commit(&format!(
        "committed {n} contacts of {list} to the event log in {data_s}: {n} recorded now, 0 already recorded"
    ));
    commit(&format!(
        "committed {n} contacts of {list} to the event log in {data_s}: 0 recorded now, {n} already recorded"
    ));

    // Without a server, the default path says what to do.
    let c = nextbest(&[
        "campaign",
        "commit",
        out_s,
        "--server",
        "http://127.0.0.1:9",
    ]);
    assert!(!c.status.success());
    assert!(String::from_utf8_lossy(&c.stderr).contains("--direct"));

    // With a server on the data folder, `--direct` is refused naming the server's public
    // listener, and the commit goes through that server.
    let server = support::binary::Binary::demo(&data).spawn();
    let url = format!("http://{}", server.public);
    let c = direct();
    let said = String::from_utf8_lossy(&c.stderr);
    assert!(!c.status.success());
    assert!(
        said.contains(&format!(
            "the data folder {data_s} is in use by another nextbest (pid {}, a server whose \
             public listener is {url}, since ",
            server.pid()
        )) && said.contains("where a server holds it, commit through that server instead"),
        "{said}"
    );
    let c = nextbest(&["campaign", "commit", out_s, "--server", &url]);
    let text = String::from_utf8_lossy(&c.stdout);
    assert!(
        c.status.success() && text.contains(&format!("0 recorded now, {n} already recorded")),
        "{text}{}",
        String::from_utf8_lossy(&c.stderr)
    );
    server.stop();

    // A run into the folder of a committed list replaces it, saying what goes with it.
    let again = |now: &str| {
        let run = run_demo(&["--now", now]);
        assert!(run.status.success());
        String::from_utf8_lossy(&run.stderr).into_owned()
    };
    let said = again("2026-12-02T08:00:00Z");
    assert!(
        said.contains("this run replaces a list that was committed (")
            && said.contains("give each send a folder of its own"),
        "{said}"
    );
    // That list was never committed: replacing it is said of nothing.
    let said = again("2026-12-02T09:00:00Z");
    assert!(
        !said.contains("replaces a list that was committed"),
        "{said}"
    );
    // A refusal that is no fault of the campaign file is its one line, not listed under it.
    let held = nextbest::folder_lock::FolderLock::acquire(
        &out,
        nextbest::folder_lock::Folder::List,
        Some("campaign run"),
    )
    .unwrap();
    let refused = run_demo(&[]);
    assert!(!refused.status.success());
    let (listed, said) = (
        String::from_utf8_lossy(&refused.stdout),
        String::from_utf8_lossy(&refused.stderr),
    );
    assert!(!listed.contains("demo_sms.json"), "{listed}");
    assert!(
        said.contains("is in use by another campaign command"),
        "{said}"
    );
    drop(held);

    // A bad file: non-zero exit, every fault printed as `file: path: message`.
    let bad = tmp.0.join("bad.json");
    std::fs::write(
        &bad,
        r#"{"name": "x", "channel": "sms", "capacity": {"max_contacts": 0}, "oops": 1}"#,
    )
    .unwrap();
    let c = nextbest(&[
        "campaign",
        "check",
        bad.to_str().unwrap(),
        "--models",
        "models",
    ]);
    let text = String::from_utf8_lossy(&c.stdout);
    assert!(!c.status.success());
    let b = bad.display();
    assert!(
        text.contains(&format!(
            "{b}: capacity.max_contacts: expected a whole number"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("{b}: oops: unknown field")),
        "{text}"
    );

    // A list for the day after tomorrow, committed now: recorded as of now, and said so.
    let later = humantime::format_rfc3339_seconds(
        std::time::SystemTime::now() + std::time::Duration::from_secs(48 * 3600),
    )
    .to_string();
    let ahead = tmp.0.join("ahead");
    let run = nextbest(&[
        "campaign",
        "run",
        "models/campaigns/demo_sms.json",
        "--out",
        ahead.to_str().unwrap(),
        "--data-dir",
        data_s,
        "--now",
        &later,
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let c = nextbest(&[
        "campaign",
        "commit",
        ahead.to_str().unwrap(),
        "--direct",
        "--data-dir",
        data_s,
    ]);
    let said = String::from_utf8_lossy(&c.stderr);
    assert!(c.status.success(), "{said}");
    assert!(
        said.contains("contacts are planned after now")
            && said.contains("they are recorded as of now"),
        "{said}"
    );
}

/// The README's multi-channel demo, line by line: every `$ ` line of its `console` block is
/// run (the binary from the repository's folder; the outcomes example through the function it
/// calls), in fresh folders for `/tmp/demo_multi` and `/tmp/demo_data`, and the printed output
/// must be the block's, byte for byte.
#[test]
fn the_readmes_multi_channel_demo_prints_what_the_readme_shows() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let start = readme
        .find("```console\n$ mkdir -p /tmp/demo_data\n$ nextbest campaign run models/campaigns/demo_multichannel.json")
        .expect("the README shows the multi-channel demo");
    let block = &readme[start + "```console\n".len()..];
    let block = &block[..block.find("```").unwrap()];
    let tmp = TempDir::new("cmp-readme");
    let (out, data) = (tmp.0.join("demo_multi"), tmp.0.join("data"));
    let (out_s, data_s) = (out.to_str().unwrap(), data.to_str().unwrap());
    let local = |line: &str| {
        line.replace("/tmp/demo_multi", out_s)
            .replace("/tmp/demo_data", data_s)
    };
    let mut commands = 0;
    let mut printed = String::new();
    let mut expected = String::new();
    for line in block.lines() {
        let Some(command) = line.strip_prefix("$ ") else {
            expected.push_str(line);
            expected.push('\n');
            continue;
        };
        expected.push_str(line);
        expected.push('\n');
        printed.push_str(line);
        printed.push('\n');
        commands += 1;
        let command = local(command);
        let words: Vec<&str> = command.split_whitespace().collect();
        let stdout = match words[..] {
            ["mkdir", "-p", dir] => {
                std::fs::create_dir_all(dir).unwrap();
                String::new()
            }
            ["nextbest", ref args @ ..] => {
                let o = nextbest(args);
                assert!(
                    o.status.success(),
                    "{command}: {}",
                    String::from_utf8_lossy(&o.stderr)
                );
                String::from_utf8(o.stdout).unwrap()
            }
            ["cargo", "run", "-q", "--release", "--example", "campaign_outcomes", "--", dir, "--data-dir", data_dir] =>
            {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_millis() as i64;
                let s = outcomes::simulate(Path::new(dir), Path::new(data_dir), now).unwrap();
                format!("{s}\n")
            }
            _ => panic!("the README runs a command this test does not know: {command}"),
        };
        printed.push_str(
            &stdout
                .replace(out_s, "/tmp/demo_multi")
                .replace(data_s, "/tmp/demo_data"),
        );
    }
    assert_eq!(
        commands, 5,
        "the data folder, run, commit, outcomes, report"
    );
    assert_eq!(printed, expected);
}
