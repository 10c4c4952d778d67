//! Shadow mode through the real binary: a candidate put with a share decides beside the
//! champion, its figures count in `/admin/stats`, its answer is never served, a restart keeps
//! it and its figures, `DELETE` ends it, and a bad shadow is refused naming what is wrong.

mod support;

use serde_json::{json, Value};
use support::binary::Binary;
use support::{decide, get, post_events, request, TempDir};

/// The demo model with one more offer, `shadow_only`, eligible for everybody everywhere and
/// worth far more than any other: the candidate puts it first in every decision it makes.
fn candidate(share: Value) -> Value {
    let mut doc: Value =
        serde_json::from_slice(&std::fs::read(support::demo_dir().join("model.json")).unwrap())
            .unwrap();
    let mut extra = doc["offers"][0].clone();
    extra["id"] = json!("shadow_only");
    extra["value"] = json!(100_000);
    extra["scorer"] = json!({"kind": "constant", "propensity": 0.9});
    for key in ["caps", "eligibility"] {
        extra.as_object_mut().unwrap().remove(key);
    }
    doc["offers"].as_array_mut().unwrap().push(extra);
    doc["version"] = json!("shadow-1");
    doc["share"] = share;
    doc
}

async fn put_shadow(admin: std::net::SocketAddr, doc: &Value) -> (u16, Value) {
    let body = serde_json::to_vec(doc).unwrap();
    let r = request(
        admin,
        "PUT",
        "/admin/models/shadow",
        &[("content-type", "application/json")],
        &body,
    )
    .await;
    (
        r.status,
        serde_json::from_slice(&r.body).unwrap_or(Value::Null),
    )
}

/// `/admin/models`' `shadow`.
async fn shadow_listed(admin: std::net::SocketAddr) -> Value {
    get(admin, "/admin/models").await.json()["shadow"].clone()
}

async fn shadow_stats(admin: std::net::SocketAddr) -> Value {
    let r = get(admin, "/admin/stats").await;
    serde_json::from_slice::<Value>(&r.body).unwrap()["shadow"].clone()
}

/// Decides for customers 1..=n on the web home page; returns the offers served.
async fn traffic(public: std::net::SocketAddr, n: usize) -> Vec<String> {
    let mut served = Vec::new();
    for i in 1..=n {
        let a = decide(
            public,
            json!({"customer_id": format!("C{i:07}"), "channel": "web", "placement": "home_hero"}),
        )
        .await;
        for o in a["offers"].as_array().unwrap() {
            served.push(o["offer_id"].as_str().unwrap().to_owned());
        }
    }
    served
}

async fn until_decisions(admin: std::net::SocketAddr, n: u64) -> Value {
    for _ in 0..500 {
        let s = shadow_stats(admin).await;
        if s["decisions"].as_u64() == Some(n) {
            return s;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!(
        "the shadow did not make {n} decisions: {}",
        shadow_stats(admin).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_decides_beside_the_champion_is_never_served_and_survives_a_restart() {
    let dir = TempDir::new("shadow");
    let p = Binary::demo(&dir.0).spawn();
    assert_eq!(shadow_stats(p.admin).await, Value::Null);
    let (status, body) = put_shadow(p.admin, &candidate(json!(1.0))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["version"].clone(), body["share"].clone()),
        (json!("shadow-1"), json!(1.0))
    );
    assert!(body.get("warnings").is_none(), "{body}");
    // What serves lists it, as the PUT answered.
    assert_eq!(shadow_listed(p.admin).await, body);

    let served = traffic(p.public, 40).await;
    assert!(!served.is_empty());
    assert!(
        !served.iter().any(|o| o == "shadow_only"),
        "the shadow's offer was served"
    );
    let s = until_decisions(p.admin, 40).await;
    assert_eq!(s["version"], "shadow-1", "{s}");
    // The candidate put its own offer first every time; the champion never did.
    assert_eq!(s["top_offer_agreement"], 0.0, "{s}");
    let only = s["offers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["offer_id"] == "shadow_only");
    let only = only.unwrap_or_else(|| panic!("{s}"));
    assert_eq!(
        (
            only["shadow_top_share"].clone(),
            only["champion_top_share"].clone()
        ),
        (json!(1.0), json!(0.0))
    );
    let champion_firsts: f64 = s["offers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o["champion_top_share"].as_f64())
        .sum();
    assert!(champion_firsts > 0.5, "{s}");

    // A restart keeps it, and its figures go on from where they were.
    p.stop();
    let p = Binary::demo(&dir.0).spawn();
    shadow_is(p.admin, "shadow-1", 40).await;
    assert_eq!(shadow_listed(p.admin).await, body);
    traffic(p.public, 5).await;
    until_decisions(p.admin, 45).await;

    // DELETE ends it, and it stays ended across a restart.
    let r = request(p.admin, "DELETE", "/admin/models/shadow", &[], b"").await;
    assert_eq!((r.status, r.json()["ended"].clone()), (200, json!(true)));
    assert_eq!(shadow_stats(p.admin).await, Value::Null);
    assert_eq!(shadow_listed(p.admin).await, Value::Null);
    drop(p);
    let p = Binary::demo(&dir.0).spawn();
    assert_eq!(shadow_stats(p.admin).await, Value::Null);
    let r = request(p.admin, "DELETE", "/admin/models/shadow", &[], b"").await;
    assert_eq!(r.json()["ended"], json!(false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_samples_decisions_and_a_bad_shadow_is_refused_with_its_place() {
    let dir = TempDir::new("shadow-share");
    let p = Binary::demo(&dir.0).spawn();
    let (status, body) = put_shadow(p.admin, &candidate(json!(0.25))).await;
    assert_eq!(status, 200, "{body}");
    traffic(p.public, 400).await;
    // About a quarter of the decisions, chosen by their ids (binomial: 100 +- 3 sd is 74..126),
    // counted as each answer is made; each of them is then decided or skipped.
    let sampled = shadow_stats(p.admin).await["sampled"].as_u64().unwrap();
    assert!(
        (74..=126).contains(&sampled),
        "{sampled} of 400 decisions sampled at 25 %"
    );
    let s = until_decisions(p.admin, sampled).await;
    assert_eq!(
        s["skipped"],
        json!({"busy": 0, "snapshot_changed": 0, "not_reproduced": 0}),
        "{s}"
    );
    // By default the estimate keeps 1 % of all decisions: 4 % of a 25 % shadow's, by id.
    let op = &s["off_policy"];
    assert_eq!(op["estimate_share"], 0.04, "{s}");
    let kept = op["decisions_kept"].as_u64().unwrap();
    assert!(kept <= sampled / 4, "{kept} of {sampled} kept at 4 %");

    for (share, needle) in [
        (Value::Null, "share"),
        (json!(1.5), "share: 1.5 is not between 0 and 1"),
        (json!(0), "share: 0 decides nothing"),
        (json!("half"), "share: expected a number"),
        (json!("5%"), "found \"5%\" (write 0.05 for 5 %)"),
    ] {
        let mut doc = candidate(share.clone());
        if share.is_null() {
            doc.as_object_mut().unwrap().remove("share");
        }
        let (status, body) = put_shadow(p.admin, &doc).await;
        assert_eq!(status, 400, "{share}: {body}");
        assert!(
            body["detail"].as_str().unwrap().contains(needle),
            "{share}: {body}"
        );
    }
    // A slip in the field's name says which was meant.
    let mut doc = candidate(json!(0.5));
    let obj = doc.as_object_mut().unwrap();
    obj.remove("share");
    obj.insert("shar".into(), json!(0.1));
    let (status, body) = put_shadow(p.admin, &doc).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .starts_with("share: missing (`shar`: did you mean `share`?)"),
        "{body}"
    );
    let mut doc = candidate(json!(0.5));
    doc["estimate_sahre"] = json!(1);
    let (status, body) = put_shadow(p.admin, &doc).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .starts_with("estimate_sahre: unknown field: did you mean `estimate_share`?"),
        "{body}"
    );
    for (share, needle) in [
        (json!(2), "estimate_share: 2 is not between 0 and 1"),
        (json!(true), "estimate_share: expected a number"),
    ] {
        let mut doc = candidate(json!(0.5));
        doc["estimate_share"] = share.clone();
        let (status, body) = put_shadow(p.admin, &doc).await;
        assert_eq!(status, 400, "{share}: {body}");
        assert!(
            body["detail"].as_str().unwrap().contains(needle),
            "{share}: {body}"
        );
    }
    let mut broken = candidate(json!(0.5));
    broken["offers"][0]["scorer"]["weights"] = json!({"no_such_feature": 1.0});
    let (status, body) = put_shadow(p.admin, &broken).await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("offers[0].scorer"), "{body}");
    // The shadow that was serving still is.
    assert_eq!(shadow_stats(p.admin).await["share"], json!(0.25));

    // What compiles but is likely a mistake is said to whoever puts the candidate, and listed.
    let mut typo = candidate(json!(0.5));
    let last = typo["offers"].as_array().unwrap().len() - 1;
    typo["offers"][last]["eligibility"] =
        json!({"feature": "segment", "op": "in", "values": ["platnum"]});
    let (status, body) = put_shadow(p.admin, &typo).await;
    assert_eq!(status, 200, "{body}");
    let warnings = body["warnings"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"));
    assert_eq!(warnings.len(), 1, "{body}");
    assert_eq!(
        warnings[0]["path"],
        json!(format!("offers[{last}].eligibility.values[0]")),
        "{body}"
    );
    assert!(
        warnings[0]["message"].as_str().unwrap().contains("platnum"),
        "{body}"
    );
    assert_eq!(shadow_listed(p.admin).await, body);
}

/// Polls the shadow's figures until `cond` holds.
async fn until(admin: std::net::SocketAddr, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..500 {
        let s = shadow_stats(admin).await;
        if cond(&s) {
            return s;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("{what}: {}", shadow_stats(admin).await);
}

/// Asserts the shadow serving is `version` with `decisions` counted.
async fn shadow_is(admin: std::net::SocketAddr, version: &str, decisions: u64) {
    let s = shadow_stats(admin).await;
    assert_eq!(
        (s["version"].clone(), s["decisions"].clone()),
        (json!(version), json!(decisions)),
        "{s}"
    );
}

/// Decides for customers 1..=n at the web checkout: each decision's id and first offer.
async fn checkout_decisions(public: std::net::SocketAddr, n: u64) -> Vec<(String, Option<String>)> {
    let mut shown = Vec::new();
    for i in 1..=n {
        let a = decide(
            public,
            json!({"customer_id": format!("C{i:07}"), "channel": "web", "placement": "checkout"}),
        )
        .await;
        let first = a["offers"][0]["offer_id"].as_str().map(str::to_owned);
        shown.push((a["decision_id"].as_str().unwrap().to_owned(), first));
    }
    shown
}

/// Puts `doc` as the shadow and decides for customers 1..=n at the web checkout: the
/// decisions, and the shadow's stats once every one of them is kept for its estimate.
async fn shadow_at_checkout(
    p: &support::binary::Process,
    doc: &Value,
    n: u64,
) -> (Vec<(String, Option<String>)>, Value) {
    let (status, body) = put_shadow(p.admin, doc).await;
    assert_eq!(status, 200, "{body}");
    let shown = checkout_decisions(p.public, n).await;
    let s = until(p.admin, "every decision shadowed and kept", |s| {
        s["off_policy"]["decisions_kept"] == n
    })
    .await;
    (shown, s)
}

/// A conversion on the first offer of each decision that showed one.
fn conversions(shown: &[(String, Option<String>)]) -> Vec<Value> {
    shown
        .iter()
        .zip(1..)
        .filter_map(|((id, offer), i)| {
            let offer = offer.as_ref()?;
            Some(
                json!({"type": "conversion", "customer_id": format!("C{i:07}"), "offer_id": offer,
                        "channel": "web", "placement": "checkout", "decision_id": id}),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversions_of_shadowed_decisions_give_the_shadows_estimate_against_the_champion() {
    let dir = TempDir::new("shadow-estimate");
    let p = Binary::demo(&dir.0).spawn();
    // The champion itself as the shadow: where it explores (the demo's checkout), the estimate
    // of the same policy must be what the champion observed.
    let mut same: Value =
        serde_json::from_slice(&std::fs::read(support::demo_dir().join("model.json")).unwrap())
            .unwrap();
    same["version"] = json!("shadow-same");
    same["share"] = json!(1.0);
    same["estimate_share"] = json!(1.0);
    const N: u64 = 60;
    let (shown, s) = shadow_at_checkout(&p, &same, N).await;
    assert_eq!(s["skipped"]["not_reproduced"], 0, "{s}");
    assert_eq!(s["off_policy"]["conversions_joined"], 0, "{s}");

    // A conversion on each decision's first offer; one more naming an offer it did not show,
    // and one naming no shadowed decision, join nothing.
    let mut events = conversions(&shown);
    let converted = events.len() as u64;
    assert!(converted > N / 2, "most checkout decisions show an offer");
    events.push(
        json!({"type": "conversion", "customer_id": "C0000001", "offer_id": "no_such_offer",
                       "channel": "web", "decision_id": shown[0].0}),
    );
    events.push(
        json!({"type": "conversion", "customer_id": "C0000001", "offer_id": "device_insurance",
                       "channel": "web", "decision_id": "01JAAAAAAAAAAAAAAAAAAAAAAA"}),
    );
    post_events(p.public, json!(events)).await;
    let s = until(p.admin, "the conversions joined", |s| {
        s["off_policy"]["conversions_joined"] == converted
    })
    .await;
    let rows = s["off_policy"]["placements"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{s}");
    let row = &rows[0];
    assert_eq!(
        (&row["channel"], &row["placement"], &row["decisions"]),
        (&json!("web"), &json!("checkout"), &json!(N)),
        "{row}"
    );
    assert_eq!(row["estimable"], true, "{row}");
    assert_eq!(row["changed"], 0, "the same policy changes nothing: {row}");
    let observed = row["logging"]["conversions_per_1000"].as_f64().unwrap();
    assert!(
        (observed - 1000.0 * converted as f64 / N as f64).abs() < 1e-6,
        "{row}"
    );
    // The same policy: every importance weight is 1, so IPS is what the champion observed.
    let ips = row["ips"]["conversions_per_1000"].as_f64().unwrap();
    assert!((ips - observed).abs() < 1e-6, "{row}");
    let [lo, hi] = [0, 1].map(|i| row["dr_difference"]["ci95"][i].as_f64().unwrap());
    assert!(lo <= hi && lo.is_finite() && hi.is_finite(), "{row}");
}

/// Tonight's snapshot (the same columns, reloaded) does not stop the shadow: it is compiled
/// again for it and goes on deciding, its figures carried on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_follows_a_feature_reload() {
    let dir = TempDir::new("shadow-follows");
    let p = Binary::demo(&dir.0).spawn();
    let (status, body) = put_shadow(p.admin, &candidate(json!(1.0))).await;
    assert_eq!(status, 200, "{body}");
    traffic(p.public, 5).await;
    until_decisions(p.admin, 5).await;
    let tonight = dir.0.join("tonight.csv");
    std::fs::copy(support::demo_dir().join("features.csv"), &tonight).unwrap();
    let r = request(
        p.admin,
        "POST",
        "/admin/features/reload",
        &[("content-type", "application/json")],
        &serde_json::to_vec(&json!({"path": tonight, "wait": true})).unwrap(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.json());
    traffic(p.public, 5).await;
    let s = until_decisions(p.admin, 10).await;
    assert_eq!(s["skipped"]["snapshot_changed"], 0, "{s}");
    assert_eq!(shadow_listed(p.admin).await, body);
}

/// Copies a folder and everything under it.
fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// A shadow that is the champion's own document agrees with it on every decision, also where
/// the champion explores (half the decisions here) or draws an adaptive offer's propensity:
/// both decide on the served decision's seed, so they differ only where their models do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_of_the_champion_agrees_with_it_on_every_decision() {
    let dir = TempDir::new("shadow-copy");
    let models = dir.0.join("models");
    copy_tree(&support::demo_dir(), &models);
    let mut doc: Value =
        serde_json::from_slice(&std::fs::read(models.join("model.json")).unwrap()).unwrap();
    for placement in ["home_hero", "plans_page"] {
        doc["placements"][placement]["exploration"] = json!({"share": 0.5});
    }
    std::fs::write(models.join("model.json"), serde_json::to_vec(&doc).unwrap()).unwrap();
    let p = Binary::with_models(&models, &dir.0.join("data")).spawn();
    doc["version"] = json!("copy");
    doc["share"] = json!(1.0);
    let (status, body) = put_shadow(p.admin, &doc).await;
    assert_eq!(status, 200, "{body}");
    let (mut explored, mut n) = (0, 0);
    for i in 1..=150 {
        for (channel, placement) in [
            ("web", "home_hero"),
            ("web", "plans_page"),
            ("app", "app_home"),
        ] {
            let a = decide(
                p.public,
                json!({"customer_id": format!("C{i:07}"), "channel": channel,
                       "placement": placement, "explain": true}),
            )
            .await;
            explored += usize::from(a["explored"] == true);
            n += 1;
        }
    }
    assert!(
        explored > 50,
        "{explored} decisions explored: the test shows nothing"
    );
    let s = until_decisions(p.admin, n).await;
    assert_eq!(s["top_offer_agreement"], 1.0, "{explored} explored: {s}");
}

/// Promoting the candidate (its name and version published as the champion) ends the shadow:
/// its figures would compare it with itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_promoted_to_champion_stops_shadowing() {
    let dir = TempDir::new("shadow-promoted");
    let models = dir.0.join("models");
    copy_tree(&support::demo_dir(), &models);
    let p = Binary::with_models(&models, &dir.0.join("data")).spawn();
    let doc = candidate(json!(0.5));
    let (status, body) = put_shadow(p.admin, &doc).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        dir.0.join("data/shadow.json").exists(),
        "the shadow is kept"
    );
    let mut champion = doc.clone();
    champion.as_object_mut().unwrap().remove("share");
    let body = serde_json::to_vec(&champion).unwrap();
    let r = request(
        p.admin,
        "PUT",
        "/admin/models",
        &[("content-type", "application/json")],
        &body,
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(shadow_listed(p.admin).await, Value::Null);
    assert_eq!(shadow_stats(p.admin).await, Value::Null);
    assert!(!dir.0.join("data/shadow.json").exists());
}

/// The figures of a week's shadowing are not lost to a rolling restart, and a `kill -9` before
/// their next save loses no conversion: the log gives them back as it replays. Putting the
/// candidate again starts its figures from zero, after a restart too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shadows_figures_survive_restarts_and_a_kill_loses_no_conversion() {
    let dir = TempDir::new("shadow-figures");
    let p = Binary::demo(&dir.0).spawn();
    let mut doc = candidate(json!(1.0));
    doc["estimate_share"] = json!(1.0);
    const N: u64 = 30;
    let (shown, before) = shadow_at_checkout(&p, &doc, N).await;

    // A rolling restart (SIGTERM): everything as it was.
    p.stop();
    let p = Binary::demo(&dir.0).spawn();
    let after = shadow_stats(p.admin).await;
    for figure in [
        "decisions",
        "sampled",
        "top_offer_agreement",
        "offers",
        "skipped",
    ] {
        assert_eq!(after[figure], before[figure], "{figure}: {after}");
    }
    assert_eq!(after["off_policy"]["decisions_kept"], N, "{after}");

    // Conversions joined, then a kill -9 long before the next save.
    let events = conversions(&shown);
    let converted = events.len() as u64;
    assert!(converted > N / 2, "most checkout decisions show an offer");
    post_events(p.public, json!(events)).await;
    let joined = until(p.admin, "the conversions joined", |s| {
        s["off_policy"]["conversions_joined"] == converted
    })
    .await;
    p.kill9();
    let p = Binary::demo(&dir.0).spawn();
    let s = shadow_stats(p.admin).await;
    assert_eq!(s["decisions"], N, "{s}");
    assert_eq!(s["off_policy"]["conversions_joined"], converted, "{s}");
    assert_eq!(
        s["off_policy"]["placements"], joined["off_policy"]["placements"],
        "the same estimate as before the kill"
    );

    // Put again: a fresh start, which a restart keeps.
    let (status, _) = put_shadow(p.admin, &doc).await;
    assert_eq!(status, 200);
    assert_eq!(shadow_stats(p.admin).await["decisions"], 0);
    p.kill9();
    let p = Binary::demo(&dir.0).spawn();
    let s = shadow_stats(p.admin).await;
    assert_eq!(
        (
            s["decisions"].clone(),
            s["off_policy"]["decisions_kept"].clone()
        ),
        (json!(0), json!(0)),
        "{s}"
    );

    // A damaged figures file is set aside; the shadow goes on, counting from zero.
    traffic(p.public, 3).await;
    until_decisions(p.admin, 3).await;
    p.stop();
    let file = dir.0.join("shadow.figures");
    let mut bytes = std::fs::read(&file).expect("saved at the stop");
    bytes[10] ^= 0x5a;
    std::fs::write(&file, &bytes).unwrap();
    let p = Binary::demo(&dir.0).spawn();
    shadow_is(p.admin, "shadow-1", 0).await;
    assert_eq!(
        std::fs::read(dir.0.join("shadow.figures.bad")).unwrap(),
        bytes
    );
    p.stop();
}

/// A figures file that cannot be written (a full disk, a folder in its place) is said in the
/// log and stops neither the server nor its shutdown; the shadow itself is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_figures_that_cannot_be_saved_are_said_and_shutdown_goes_on() {
    let dir = TempDir::new("shadow-figures-fail");
    let mut p = Binary::demo(&dir.0).spawn();
    let (status, body) = put_shadow(p.admin, &candidate(json!(1.0))).await;
    assert_eq!(status, 200, "{body}");
    traffic(p.public, 5).await;
    until_decisions(p.admin, 5).await;
    let blocker = dir.0.join("shadow.figures");
    std::fs::create_dir_all(blocker.join("in-the-way")).unwrap();
    p.signal("TERM");
    let stderr = p.wait_stderr("shadow figures not saved");
    assert!(stderr.contains("shadow figures not saved"), "{stderr}");
    assert!(p.child.0.wait().unwrap().success(), "{stderr}");

    std::fs::remove_dir_all(&blocker).unwrap();
    let p = Binary::demo(&dir.0).spawn();
    shadow_is(p.admin, "shadow-1", 0).await;
    p.stop();
}
