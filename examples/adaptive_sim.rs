//! The adaptive-offer simulation through the real HTTP API, as in `tests/adaptive.rs`, with
//! its figures: for each world seed, the best offer's share of the last 5,000 of 20,000
//! decisions, and cumulative regret (sum of best rate − chosen rate) next to uniform random
//! choice and epsilon-greedy (10 %) on the same customers and coins; then the mid-run case.
//!
//! `cargo run --release --example adaptive_sim [seeds]` (default 5 seeds).

#[path = "../tests/support/sim.rs"]
mod sim;

use sim::{arms, baseline_regret, Driver};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let seeds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let world = arms(&[0.01, 0.02, 0.03, 0.05]);
    println!("| seed | best offer's share, last 5,000 | regret: Thompson (HTTP) | uniform random | epsilon-greedy 10 % |");
    println!("|---|---|---|---|---|");
    let mut sums = [0.0f64; 4];
    for seed in 1..=seeds {
        let (running, state) = sim::start(&world, seed).await;
        let mut d = Driver::new(running.public_addr, seed, state).await;
        d.run(&world, 20_000).await;
        let share = d.share_of_last(5_000, 3);
        let uniform = baseline_regret(&world, 20_000, seed, 1.0);
        let greedy = baseline_regret(&world, 20_000, seed, 0.1);
        println!(
            "| {seed} | {:.1} % | {:.1} | {uniform:.1} | {greedy:.1} |",
            share * 100.0,
            d.regret
        );
        for (s, x) in sums
            .iter_mut()
            .zip([share * 100.0, d.regret, uniform, greedy])
        {
            *s += x / seeds as f64;
        }
        running.shutdown().await;
    }
    println!(
        "| mean | {:.1} % | {:.1} | {:.1} | {:.1} |",
        sums[0], sums[1], sums[2], sums[3]
    );

    println!(
        "\nA 7 % offer added after 5,000 decisions: its share per 1,000 decisions after it came"
    );
    let five = arms(&[0.01, 0.02, 0.03, 0.05, 0.07]);
    for seed in 1..=seeds {
        let (running, state) = sim::start(&world, seed).await;
        let mut d = Driver::new(running.public_addr, seed, state).await;
        d.run(&world, 5_000).await;
        let mut admin = sim::Conn::open(running.admin_addr).await;
        let doc = serde_json::to_vec(&sim::model_doc(&five, "2")).unwrap();
        let (status, body) = admin.send("PUT", "/admin/models", &doc).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        d.run(&five, 5_000).await;
        let shares: Vec<String> = d.chosen[5_000..]
            .chunks(1_000)
            .map(|c| {
                let n = c.iter().filter(|i| **i == 4).count();
                format!("{:.0} %", n as f64 / c.len() as f64 * 100.0)
            })
            .collect();
        println!("seed {seed}: {}", shares.join(", "));
        running.shutdown().await;
    }
}
