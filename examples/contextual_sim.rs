//! The contextual adaptive simulation through the real HTTP API, as `tests/contextual.rs` runs
//! it, with its figures, and the comparison that chose the learner.
//!
//! 1. The issue's world (prepaid customers take o1 at 6 % against 1 %, postpaid o2 at 5 %
//!    against 1 %, o3 converts 3 % of everybody; `context` lists `is_prepaid` among three
//!    features that do not matter): for each world seed, 20,000 decisions, regret (the sum over
//!    decisions of the customer's best rate minus the shown offer's) of the context-free and the
//!    contextual adaptive offer through HTTP, of Thompson sampling told which customers are
//!    prepaid (in-process: what the contextual learner could at best lose to exploration), and
//!    the share of the last 5,000 decisions that showed the customer's best offer. A full-
//!    knowledge oracle has regret 0 by definition; its expected conversions are printed beside.
//! 2. A fourth offer, best for postpaid customers (8 %), added after 5,000 decisions: its share
//!    of postpaid customers' decisions per 1,000 decisions after it came.
//! 3. The learner: the server's binned naive Bayes against Bayesian logistic regression with a
//!    diagonal Laplace posterior updated online (Chapelle and Li, 2011), run in-process on the
//!    same customers and coins, learning after every 100 decisions as the server does, in the
//!    issue's world, a world where a tenure band matters (not a line in any feature), and one
//!    where `segment` mostly repeats `is_prepaid` (two features, one fact).
//!
//! `cargo run --example contextual_sim [seeds]` (default 5 seeds; a debug build takes about
//! 30 s a seed on a 2-core machine, `--release` less).

#[path = "../tests/support/contextual_sim.rs"]
mod contextual_sim;
#[path = "../tests/support/sim.rs"]
mod sim;

use contextual_sim::{
    four, group_oracle_regret, normal, start, three, Customer, Driver, Offer, Truth, World,
    SEGMENTS,
};
use sim::{Rng, EVENT_BATCH};

const DECISIONS: usize = 20_000;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let seeds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let offers = three();

    println!("1. The issue's world, {DECISIONS} decisions per run\n");
    println!("| world seed | regret: context-free (HTTP) | contextual (HTTP) | Thompson told prepaid/postpaid | oracle: regret 0, expected conversions | right offer, last 5,000 (contextual) |");
    println!("|---|---|---|---|---|---|");
    let mut sums = [0.0f64; 5];
    let mut issue = Vec::new();
    for seed in 1..=seeds {
        let world = World::new(seed, Truth::Prepaid);
        let free = http_run(&world, &offers, false, seed).await;
        let ctx = http_run(&world, &offers, true, seed).await;
        issue.push((free, ctx));
        let group = group_oracle_regret(&world, &offers, DECISIONS, seed);
        let oracle = oracle_conversions(&world, &offers, DECISIONS, seed);
        println!(
            "| {seed} | {:.1} | {:.1} | {group:.1} | {oracle:.1} | {:.1} % |",
            free.0,
            ctx.0,
            ctx.1 * 100.0
        );
        for (s, x) in sums
            .iter_mut()
            .zip([free.0, ctx.0, group, oracle, ctx.1 * 100.0])
        {
            *s += x / seeds as f64;
        }
    }
    println!(
        "| mean | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} % |",
        sums[0], sums[1], sums[2], sums[3], sums[4]
    );

    println!("\n2. o4 (postpaid 8 %, prepaid 1 %) added after 5,000 decisions: its share of postpaid customers' decisions per 1,000 decisions after it came\n");
    println!("| world seed | 1st 1,000 | 2nd | 3rd | 4th | 5th |");
    println!("|---|---|---|---|---|---|");
    for seed in 1..=seeds {
        let world = World::new(seed, Truth::Prepaid);
        let (running, state) = start(&world, &three(), true, seed).await;
        let mut d = Driver::new(running.public_addr, seed, state).await;
        d.run(&world, &three(), 5_000).await;
        let mut admin = sim::Conn::open(running.admin_addr).await;
        let doc = serde_json::to_vec(&contextual_sim::model_doc(&four(), true, "2")).unwrap();
        let (status, body) = admin.send("PUT", "/admin/models", &doc).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        d.run(&world, &four(), 5_000).await;
        let shares: Vec<String> = d.steps[5_000..]
            .chunks(1_000)
            .map(|c| {
                let post: Vec<_> = c
                    .iter()
                    .filter(|s| !world.customers[s.customer].is_prepaid)
                    .collect();
                let n = post.iter().filter(|s| s.chosen == 3).count();
                format!("{:.0} %", n as f64 / post.len().max(1) as f64 * 100.0)
            })
            .collect();
        println!("| {seed} | {} |", shares.join(" | "));
        running.shutdown().await;
    }

    println!("\n3. The learner: regret over {DECISIONS} decisions, mean over {seeds} world seeds (right offer in the last 5,000 in brackets)\n");
    println!("| world | context-free Thompson (HTTP) | binned naive Bayes, the server's (HTTP) | logistic regression, diagonal Laplace (in-process) | Thompson told the group (in-process) |");
    println!("|---|---|---|---|---|");
    for (name, truth) in [
        ("prepaid decides (the issue's)", Truth::Prepaid),
        ("a tenure band decides", Truth::TenureBand),
        ("segment mostly repeats is_prepaid", Truth::Correlated),
    ] {
        let mut sums = [0.0f64; 7];
        for seed in 1..=seeds {
            let world = World::new(seed, truth);
            let (free, ctx) = match truth {
                Truth::Prepaid => issue[seed as usize - 1],
                _ => (
                    http_run(&world, &offers, false, seed).await,
                    http_run(&world, &offers, true, seed).await,
                ),
            };
            let lr = logistic_run(&world, &offers, DECISIONS, seed);
            let group = group_oracle_regret(&world, &offers, DECISIONS, seed);
            for (s, x) in sums
                .iter_mut()
                .zip([free.0, free.1, ctx.0, ctx.1, lr.0, lr.1, group])
            {
                *s += x / seeds as f64;
            }
        }
        println!(
            "| {name} | {:.1} ({:.0} %) | {:.1} ({:.0} %) | {:.1} ({:.0} %) | {:.1} |",
            sums[0],
            sums[1] * 100.0,
            sums[2],
            sums[3] * 100.0,
            sums[4],
            sums[5] * 100.0,
            sums[6]
        );
    }
}

/// One HTTP run: regret and the share of the last 5,000 decisions showing the best offer.
async fn http_run(world: &World, offers: &[Offer], contextual: bool, seed: u64) -> (f64, f64) {
    let (running, state) = start(world, offers, contextual, seed).await;
    let mut d = Driver::new(running.public_addr, seed, state).await;
    d.run(world, offers, DECISIONS).await;
    running.shutdown().await;
    (d.regret, d.right_of_last(5_000))
}

/// Expected conversions of the policy that knows every true rate (on the same customers).
fn oracle_conversions(world: &World, offers: &[Offer], n: usize, seed: u64) -> f64 {
    let mut stream = Rng::new(seed);
    (0..n)
        .map(|_| {
            let c = &world.customers[stream.below(world.customers.len())];
            stream.unit();
            world.best(c, offers).1
        })
        .sum()
}

/// The logistic regression's inputs: an intercept, `is_prepaid`, one indicator per segment,
/// tenure and data volume standardised over the snapshot, and an indicator for a missing volume
/// (whose standardised value is then 0).
struct Inputs {
    tenure: (f64, f64),
    gb: (f64, f64),
}

const INPUTS: usize = 1 + 1 + SEGMENTS.len() + 3;

impl Inputs {
    fn of(world: &World) -> Inputs {
        let stats = |xs: Vec<f64>| {
            let mean = xs.iter().sum::<f64>() / xs.len() as f64;
            let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
            (mean, var.sqrt().max(1e-9))
        };
        Inputs {
            tenure: stats(
                world
                    .customers
                    .iter()
                    .map(|c| f64::from(c.tenure_months))
                    .collect(),
            ),
            gb: stats(
                world
                    .customers
                    .iter()
                    .filter_map(|c| c.data_gb_30d)
                    .collect(),
            ),
        }
    }

    fn x(&self, c: &Customer) -> [f64; INPUTS] {
        let mut x = [0.0; INPUTS];
        x[0] = 1.0;
        x[1] = f64::from(u8::from(c.is_prepaid));
        x[2 + c.segment] = 1.0;
        let at = 2 + SEGMENTS.len();
        x[at] = (f64::from(c.tenure_months) - self.tenure.0) / self.tenure.1;
        match c.data_gb_30d {
            Some(g) => x[at + 1] = (g - self.gb.0) / self.gb.1,
            None => x[at + 2] = 1.0,
        }
        x
    }
}

/// Bayesian logistic regression with a diagonal Gaussian posterior per offer, updated by
/// Laplace's approximation after every batch (Chapelle and Li 2011, algorithm 3), Thompson
/// sampling at each decision; the prior as the server's (3 %, worth 50 impressions, on the
/// intercept) and unit precision on the other weights. Regret and the share of the last 5,000
/// decisions showing the best offer.
fn logistic_run(world: &World, offers: &[Offer], n: usize, seed: u64) -> (f64, f64) {
    let inputs = Inputs::of(world);
    let mut stream = Rng::new(seed);
    let mut own = Rng::new(seed ^ 0x1a91ace);
    let p0: f64 = 0.03;
    let mut mean = vec![[0.0; INPUTS]; offers.len()];
    let mut precision = vec![[1.0; INPUTS]; offers.len()];
    for (m, q) in mean.iter_mut().zip(&mut precision) {
        m[0] = (p0 / (1.0 - p0)).ln();
        q[0] = 50.0 * p0 * (1.0 - p0);
    }
    let mut batch: Vec<Vec<([f64; INPUTS], f64)>> = vec![Vec::new(); offers.len()];
    let (mut regret, mut right) = (0.0, Vec::with_capacity(n));
    for step in 0..n {
        let c = &world.customers[stream.below(world.customers.len())];
        let coin = stream.unit();
        let x = inputs.x(c);
        let mut chosen = (0, f64::MIN);
        for (i, (m, q)) in mean.iter().zip(&precision).enumerate() {
            let mu: f64 = m.iter().zip(&x).map(|(w, v)| w * v).sum();
            let var: f64 = q.iter().zip(&x).map(|(q, v)| v * v / q).sum();
            let z = mu + var.sqrt() * normal(&mut own);
            if z > chosen.1 {
                chosen = (i, z);
            }
        }
        let rate = world.rate(c, &offers[chosen.0]);
        let (best, best_rate) = world.best(c, offers);
        regret += best_rate - rate;
        right.push(best == chosen.0);
        batch[chosen.0].push((x, if coin < rate { 1.0 } else { 0.0 }));
        if (step + 1) % EVENT_BATCH == 0 {
            for i in 0..offers.len() {
                laplace(
                    &mut mean[i],
                    &mut precision[i],
                    &std::mem::take(&mut batch[i]),
                );
            }
        }
    }
    let tail = &right[n.saturating_sub(5_000)..];
    let share = tail.iter().filter(|r| **r).count() as f64 / tail.len() as f64;
    (regret, share)
}

/// One batch into a diagonal Gaussian posterior: Newton steps to the mode of prior × batch
/// likelihood, then each precision grows by the batch's curvature at the mode.
fn laplace(m: &mut [f64; INPUTS], q: &mut [f64; INPUTS], batch: &[([f64; INPUTS], f64)]) {
    if batch.is_empty() {
        return;
    }
    let sig = |z: f64| 1.0 / (1.0 + (-z).exp());
    let mut w = *m;
    for _ in 0..8 {
        let mut g: [f64; INPUTS] = std::array::from_fn(|j| q[j] * (w[j] - m[j]));
        let mut h = *q;
        for (x, y) in batch {
            let p = sig(w.iter().zip(x).map(|(a, b)| a * b).sum());
            for j in 0..INPUTS {
                g[j] += (p - y) * x[j];
                h[j] += p * (1.0 - p) * x[j] * x[j];
            }
        }
        for j in 0..INPUTS {
            w[j] -= g[j] / h[j];
        }
    }
    for (x, _) in batch {
        let p = sig(w.iter().zip(x).map(|(a, b)| a * b).sum());
        for j in 0..INPUTS {
            q[j] += p * (1.0 - p) * x[j] * x[j];
        }
    }
    *m = w;
}
