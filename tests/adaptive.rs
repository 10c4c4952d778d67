//! Offers that learn, through the real HTTP API: a driver decides, posts the impression, and
//! posts a conversion with each offer's true rate; Thompson sampling must find the best offer,
//! and a better offer added mid-run must take the lead. Also: explain shows the draw, the same
//! counts come back after a restart (log replay), and `/admin/stats` shows every arm. Every
//! run is reproducible (world, decision ids and clock fixed by seeds), so the thresholds are
//! checked on the same run on every machine.

#[path = "support/sim.rs"]
mod sim;
mod support;

use sim::{arms, baseline_regret, Driver};
use support::{get, post_json, put_model};

/// The world's seed: which customer each decision is for, and each step's conversion coin.
const SEED: u64 = 18;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thompson_sampling_finds_the_best_offer_and_beats_the_baselines() {
    let world = arms(&[0.01, 0.02, 0.03, 0.05]);
    let (running, state) = sim::start(&world, SEED).await;
    let mut driver = Driver::new(running.public_addr, SEED, state.clone()).await;
    driver.run(&world, 20_000).await;
    let best = driver.share_of_last(5_000, 3);
    assert!(
        best >= 0.70,
        "the 5 % offer took {best:.3} of the last 5,000 decisions"
    );
    // Same world (customers and coins), other policies.
    let uniform = baseline_regret(&world, 20_000, SEED, 1.0);
    let greedy = baseline_regret(&world, 20_000, SEED, 0.1);
    // Epsilon-greedy's regret swings with its early luck (57 to 104 over five seeds, see
    // BENCHMARKS.md): only the comparison with uniform choice is firm enough to assert.
    assert!(
        driver.regret < uniform / 3.0,
        "regret: thompson {:.1}, uniform {uniform:.1}, epsilon-greedy {greedy:.1}",
        driver.regret
    );

    // Stats show each arm, the best one with the most trials and a tight interval.
    state.contacts.adaptive().refresh();
    let stats = get(running.admin_addr, "/admin/stats").await.json();
    let rows = stats["adaptive"].as_array().expect("an adaptive array");
    assert_eq!(rows.len(), 4, "{rows:?}");
    let trials: u64 = rows.iter().map(|r| r["trials"].as_u64().unwrap()).sum();
    assert_eq!(trials, 20_000);
    let o4 = rows.iter().find(|r| r["offer_id"] == "o4").unwrap();
    let (mean, lo, hi) = (
        o4["posterior_mean"].as_f64().unwrap(),
        o4["interval_95"][0].as_f64().unwrap(),
        o4["interval_95"][1].as_f64().unwrap(),
    );
    assert!(lo < 0.05 && 0.05 < hi && lo < mean && mean < hi, "{o4}");
    assert!(o4["successes"].as_u64().unwrap() > 0 && o4["variant"] == "champion");

    // Explain shows the posterior, the draw and the counts behind it.
    let answer = post_json(
        running.public_addr,
        "/v1/decide",
        &serde_json::json!({"customer_id": "C1", "channel": "web", "placement": "home",
            "explain": true}),
    )
    .await
    .json();
    let e = answer["explain"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["offer_id"] == "o4")
        .unwrap();
    assert_eq!(e["adaptive"]["trials"], o4["trials"], "{e}");
    assert_eq!(e["adaptive"]["successes"], o4["successes"]);
    let draw = e["adaptive"]["draw"].as_f64().unwrap();
    assert_eq!(e["propensity"].as_f64().unwrap(), draw);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_better_offer_added_mid_run_takes_the_lead_and_counts_survive_the_new_version() {
    let four = arms(&[0.01, 0.02, 0.03, 0.05]);
    let five = arms(&[0.01, 0.02, 0.03, 0.05, 0.07]);
    let (running, state) = sim::start(&four, SEED + 1).await;
    let mut driver = Driver::new(running.public_addr, SEED + 1, state.clone()).await;
    driver.run(&four, 5_000).await;
    state.contacts.adaptive().refresh();
    let before = get(running.admin_addr, "/admin/stats").await.json();
    let r = put_model(running.admin_addr, &sim::model_doc(&five, "2")).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    // The new version starts from what the old one learnt.
    let after = get(running.admin_addr, "/admin/stats").await.json();
    assert_eq!(
        after["adaptive"][3]["trials"],
        before["adaptive"][3]["trials"]
    );
    assert_eq!(after["adaptive"][4]["trials"], 0);

    driver.run(&five, 5_000).await;
    let tail = &driver.chosen[driver.chosen.len() - 1_000..];
    let mut per_arm = [0usize; 5];
    for &c in tail {
        per_arm[c] += 1;
    }
    let leader = (0..5).max_by_key(|&i| per_arm[i]).unwrap();
    assert_eq!(
        leader, 4,
        "the 7 % offer does not lead the last 1,000 decisions: {per_arm:?}"
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_repeats_exactly_from_its_seeds() {
    let world = arms(&[0.01, 0.02, 0.03, 0.05]);
    let mut runs = Vec::new();
    for id_seed in [SEED, SEED, SEED + 100] {
        let (running, state) = sim::start(&world, id_seed).await;
        let mut driver = Driver::new(running.public_addr, SEED, state).await;
        driver.run(&world, 2_000).await;
        runs.push(driver.chosen);
        running.shutdown().await;
    }
    assert!(runs[0] == runs[1], "the same seeds gave two different runs");
    // The server's draws follow its id seed: another gives another run on the same world.
    assert!(runs[0] != runs[2], "the id seed does not reach the draws");
}

#[tokio::test]
async fn counts_come_back_from_the_log_after_a_restart() {
    use nextbest::contact::{Clock, ContactConfig, Contacts, Event, EventKind};
    use nextbest::engine::policy::stable_hash;
    let dir = support::TempDir::new("adaptive-replay");
    let config = ContactConfig {
        data_dir: Some(dir.0.clone()),
        ..ContactConfig::default()
    };
    let ev = |kind, customer: &'static str, ts_ms| Event {
        kind,
        ts_ms,
        customer_id: customer,
        visitor_id: None,
        offer_id: Some("o1"),
        channel: Some("web"),
        placement: Some("home"),
        decision_id: None,
        event_id: None,
        category: Some("sales"),
        request: None,
        attributed: None,
    };
    let t0 = support::T0;
    let events = [
        ev(EventKind::Impression, "c1", t0),
        ev(EventKind::Impression, "c2", t0),
        ev(EventKind::Impression, "c3", t0),
        ev(EventKind::Conversion, "c2", t0 + 1_000),
        ev(EventKind::Conversion, "c2", t0 + 2_000),
        ev(EventKind::Click, "c3", t0 + 1_000),
    ];
    let tally = |c: &Contacts| {
        c.adaptive().refresh();
        let t = *c
            .adaptive()
            .snapshot()
            .tally(stable_hash("o1"), None)
            .unwrap();
        (t.trials, t.successes[1][7], t.successes[0][7])
    };
    let (clock, _hand) = Clock::manual(t0 + 5_000);
    let live = {
        let c = Contacts::open(&config, clock.clone()).unwrap();
        c.ingest(&events).await.unwrap();
        let t = tally(&c);
        c.close();
        t
    };
    assert_eq!(
        live,
        (3, 1, 1),
        "3 impressions, one conversion credited once, one click"
    );
    let again = Contacts::open(&config, clock).unwrap();
    assert_eq!(tally(&again), live);
}
