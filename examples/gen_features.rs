//! Generates a deterministic, realistic-looking telecom feature snapshot (CSV).
//!
//! `cargo run --example gen_features -- --customers 10000 --strings 3 --out models/features.csv`
//! The same arguments always give the same file (a fixed-seed SplitMix64), so the committed
//! demo snapshot can be regenerated and large ones made for benchmarks. String columns
//! (`segment`, `plan`, `region`, `device_brand`) come after the numeric ones and draw from a
//! second generator, so adding them leaves every numeric value as it was; `--codes` writes
//! them as their category numbers instead (the same snapshot, all numeric).

use std::io::{BufWriter, Write};
use std::path::PathBuf;

use clap::Parser;

/// Generate a customer feature snapshot.
#[derive(Parser)]
struct Args {
    /// Number of customers.
    #[arg(long, default_value_t = 10_000)]
    customers: usize,
    /// Output CSV file.
    #[arg(long, default_value = "models/features.csv")]
    out: PathBuf,
    /// Seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Numeric columns written (the first N of the 21).
    #[arg(long, default_value_t = COLUMNS.len())]
    numeric: usize,
    /// String columns written after them (0 to 4: segment, plan, region, device_brand).
    #[arg(long, default_value_t = 0)]
    strings: usize,
    /// Write the string columns as category numbers (an all-numeric twin for memory figures).
    #[arg(long)]
    codes: bool,
}

const STRING_COLUMNS: [&str; 4] = ["segment", "plan", "region", "device_brand"];
const SEGMENTS: [&str; 4] = ["bronze", "silver", "gold", "platinum"];
const PLANS: [&str; 7] = [
    "prepaid_s",
    "prepaid_m",
    "basic",
    "family",
    "unlimited",
    "unlimited_5g",
    "data_only",
];
const REGIONS: [&str; 5] = ["capital", "north", "south", "east", "west"];
const BRANDS: [&str; 6] = ["apple", "samsung", "xiaomi", "google", "motorola", "other"];

/// SplitMix64: tiny, fast and stable across platforms and versions.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }
    /// Roughly log-normal, for skewed quantities like data use.
    fn skewed(&mut self, median: f64, spread: f64) -> f64 {
        let g = (0..4).map(|_| self.unit()).sum::<f64>() - 2.0;
        median * (g * spread).exp()
    }
}

const COLUMNS: [&str; 21] = [
    "tenure_months",
    "arpu_30d",
    "data_gb_30d",
    "data_allowance_gb",
    "voice_min_30d",
    "sms_30d",
    "days_since_last_topup",
    "app_sessions_7d",
    "web_sessions_7d",
    "complaints_90d",
    "is_prepaid",
    "device_age_months",
    "is_5g_device",
    "roaming_days_90d",
    "contract_months_left",
    "num_lines",
    "late_payments_12m",
    "nps_score",
    "has_fiber",
    "churn_score",
    "loyalty_points",
];

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(&args.out)?);
    let numeric = args.numeric.min(COLUMNS.len());
    let strings = args.strings.min(STRING_COLUMNS.len());
    let header: Vec<&str> = COLUMNS[..numeric]
        .iter()
        .chain(&STRING_COLUMNS[..strings])
        .copied()
        .collect();
    writeln!(out, "customer_id,{}", header.join(","))?;
    let mut rng = Rng(args.seed);
    let mut srng = Rng(args.seed ^ 0x5715_1D5E_C0DE_5EED);
    let mut row: Vec<Option<f64>> = Vec::with_capacity(COLUMNS.len());
    for i in 0..args.customers {
        row.clear();
        let prepaid = rng.chance(0.45);
        let tenure = rng.skewed(24.0, 0.8).min(240.0).floor();
        let allowance = if prepaid {
            [2.0, 5.0, 10.0, 20.0][(rng.next() % 4) as usize]
        } else {
            [10.0, 20.0, 50.0, 100.0][(rng.next() % 4) as usize]
        };
        let data = (allowance * rng.range(0.1, 1.3)).min(150.0);
        let arpu = if prepaid {
            rng.skewed(12.0, 0.4)
        } else {
            rng.skewed(35.0, 0.35)
        };
        let complaints = if rng.chance(0.08) {
            1.0 + (rng.next() % 3) as f64
        } else {
            0.0
        };
        let app_sessions = if rng.chance(0.3) {
            0.0
        } else {
            rng.skewed(6.0, 0.7).floor()
        };
        let device_age = rng.skewed(18.0, 0.6).min(96.0).floor();
        let late = if prepaid {
            0.0
        } else if rng.chance(0.1) {
            1.0 + (rng.next() % 4) as f64
        } else {
            0.0
        };
        let churn = (0.15 + 0.1 * complaints - 0.002 * tenure + 0.05 * late + rng.range(-0.1, 0.1))
            .clamp(0.01, 0.99);
        row.push(Some(tenure));
        row.push(Some(arpu));
        row.push(Some(data));
        row.push(Some(allowance));
        row.push(Some(rng.skewed(150.0, 0.7).floor()));
        row.push(Some(rng.skewed(20.0, 0.9).floor()));
        row.push(prepaid.then(|| rng.skewed(9.0, 0.7).min(120.0).floor()));
        row.push(Some(app_sessions));
        row.push(Some(rng.skewed(2.0, 0.8).floor()));
        row.push(Some(complaints));
        row.push(Some(prepaid as u8 as f64));
        row.push(Some(device_age));
        row.push(Some((device_age < 24.0 && rng.chance(0.7)) as u8 as f64));
        row.push(Some(if rng.chance(0.15) {
            rng.range(1.0, 30.0).floor()
        } else {
            0.0
        }));
        row.push((!prepaid).then(|| rng.range(0.0, 24.0).floor()));
        row.push(Some(if prepaid {
            1.0
        } else {
            1.0 + (rng.next() % 4) as f64
        }));
        row.push(Some(late));
        row.push((!rng.chance(0.4)).then(|| (rng.next() % 11) as f64));
        row.push(Some(rng.chance(0.35) as u8 as f64));
        row.push(Some(churn));
        row.push(Some((tenure * rng.range(10.0, 40.0)).floor()));
        write!(out, "C{:07}", i + 1)?;
        for v in &row[..numeric] {
            match v {
                Some(x) if x.fract() == 0.0 => write!(out, ",{}", *x as i64)?,
                Some(x) => write!(out, ",{x:.2}")?,
                None => write!(out, ",")?,
            }
        }
        // Segment follows spend and tenure, plan the contract and allowance, with some noise.
        let spend = arpu * (1.0 + tenure / 120.0) * srng.range(0.7, 1.3);
        let segment = match spend {
            s if s >= 60.0 => 3,
            s if s >= 38.0 => 2,
            s if s >= 20.0 => 1,
            _ => 0,
        };
        let plan = if prepaid {
            usize::from(allowance >= 10.0)
        } else if allowance >= 100.0 {
            if row[12] == Some(1.0) {
                5
            } else {
                4
            }
        } else if row[15].is_some_and(|n| n >= 3.0) {
            3
        } else if srng.chance(0.1) {
            6
        } else {
            2
        };
        let region = (srng.next() % REGIONS.len() as u64) as usize;
        let brand = (srng.next() % BRANDS.len() as u64) as usize;
        let picks = [
            (segment, &SEGMENTS[..]),
            (plan, &PLANS[..]),
            (region, &REGIONS[..]),
            (brand, &BRANDS[..]),
        ];
        for &(k, names) in &picks[..strings] {
            // A few customers without a value: a missing string is an empty field.
            let missing = srng.chance(0.02);
            match (missing, args.codes) {
                (true, _) => write!(out, ",")?,
                (false, true) => write!(out, ",{k}")?,
                (false, false) => write!(out, ",{}", names[k])?,
            }
        }
        writeln!(out)?;
    }
    out.flush()?;
    eprintln!(
        "wrote {} customers x {} features to {}",
        args.customers,
        header.len(),
        args.out.display()
    );
    Ok(())
}
