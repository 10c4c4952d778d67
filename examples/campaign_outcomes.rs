//! Simulated outcomes for a sent campaign list, so `nextbest campaign report` has something to
//! measure in the demo: each target converts with the chance the model gave them, each
//! control-group customer with 40 % of it (see `tests/support/outcomes.rs`); the conversions go
//! into the data folder's event log, stamped now.
//!
//! `cargo run --release --example campaign_outcomes -- /tmp/demo_multi --data-dir /tmp/demo_data`
//! (no server may run on that data folder meanwhile).

#[path = "../tests/support/outcomes.rs"]
mod outcomes;

use std::path::PathBuf;

use clap::Parser;

/// The run's output folder and the data folder its contacts were committed to.
#[derive(Parser)]
struct Args {
    /// The `campaign run` output folder (targets.csv, control.csv).
    dir: PathBuf,
    /// The data folder whose event log gets the conversions.
    #[arg(long, default_value = "data")]
    data_dir: PathBuf,
}

fn main() {
    let args = Args::parse();
    let now = nextbest::contact::Clock::system().now_ms();
    match outcomes::simulate(&args.dir, &args.data_dir, now) {
        Ok(s) => println!("{s}"),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
