//! Memory of a large snapshot whose float columns hold more precision than f32: what the exact
//! f64 side of the feature store costs against the raw f32 values; and what text columns cost
//! against the same columns as numbers.
//!
//! `cargo run --profile bench --example snapshot_memory -- [ROWS] [COLUMNS] [FLOAT_COLUMNS]
//! [TEXT_COLUMNS]` (default 10,000,000 x 24 with 6 float columns of 2 to 6 decimals and no
//! text column; the other columns are integer-valued, as counts and flags are). The last
//! TEXT_COLUMNS columns hold categories (a segment, a plan, a region, a device brand): once as
//! text coded through `DictBuilder` (the code the CSV and Parquet loaders run for every text
//! field), once as the same numbers. Values go through `ExactBuilder`, as the CSV loader's do.
//! Prints the bytes held and the ratio to `rows x columns x 4`.

use nextbest::features::{DictBuilder, Dictionary, ExactBuilder, FeatureStore, IdIndex};

/// The categories of the text columns, in turn.
const CATEGORIES: [&[&str]; 4] = [
    &["bronze", "silver", "gold", "platinum"],
    &[
        "prepaid_s",
        "prepaid_m",
        "basic",
        "family",
        "unlimited",
        "unlimited_5g",
        "data_only",
    ],
    &["capital", "north", "south", "east", "west"],
    &["apple", "samsung", "xiaomi", "google", "motorola", "other"],
];

/// The snapshot to build and weigh.
#[derive(clap::Parser)]
struct Args {
    /// Customers.
    #[arg(default_value_t = 10_000_000)]
    rows: usize,
    /// Feature columns.
    #[arg(default_value_t = 24)]
    columns: usize,
    /// Columns of floats with 2 to 6 decimals (the first ones; the others integer-valued).
    #[arg(default_value_t = 6)]
    float_columns: usize,
    /// Text columns (the last ones): a segment, a plan, a region, a device brand.
    #[arg(default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=4))]
    text_columns: u8,
}

fn main() {
    let Args {
        rows,
        columns: cols,
        float_columns: floats,
        text_columns,
    } = clap::Parser::parse();
    let texts = usize::from(text_columns);
    if texts > 0 {
        let text = build(rows, cols, floats, texts, true);
        let numbers = build(rows, cols, floats, texts, false);
        let raw = rows * cols * 4;
        let dicts: usize = (0..cols)
            .filter_map(|c| text.dictionary(c))
            .map(Dictionary::bytes_held)
            .sum();
        println!(
            "{rows} rows x {cols} columns, {texts} of them text: {} MB held ({:.4}x raw, \
             dictionaries {dicts} bytes); the same columns as numbers: {} MB ({:.4}x raw); \
             text / numbers = {:.6}",
            text.bytes_held() / 1_000_000,
            text.bytes_held() as f64 / raw as f64,
            numbers.bytes_held() / 1_000_000,
            numbers.bytes_held() as f64 / raw as f64,
            text.bytes_held() as f64 / numbers.bytes_held() as f64,
        );
        return;
    }
    let mut ids = IdIndex::with_capacity(rows, 9);
    let mut values = Vec::with_capacity(rows * cols);
    let mut exact = ExactBuilder::new(cols);
    let mut state = 0x2545_F491_4F6C_DD1D_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for r in 0..rows {
        ids.push(&format!("C{r:08}")).expect("unique ids");
        for c in 0..cols {
            let v = if c < floats {
                // 2 to 6 decimals at magnitudes up to 10,000: beyond f32 for most values.
                let decimals = 2 + (c % 5) as i32;
                (next() % 10_000_000_000) as f64 / 10f64.powi(decimals)
            } else {
                (next() % 1000) as f64
            };
            values.push(exact.push(c, v));
        }
        exact.end_row();
    }
    let columns = (0..cols).map(|c| format!("f{c}")).collect();
    let store = FeatureStore::with_exact(columns, ids, values, exact.finish(), "synthetic")
        .expect("consistent");
    let raw = rows * cols * 4;
    // The values vector was allocated to its exact size above.
    let values_and_exact = raw + store.exact().bytes_held();
    println!(
        "{rows} rows x {cols} columns ({floats} float, {} with residuals): raw f32 values {} MB; \
         values + residuals {} MB = {:.3}x raw; with ids and index {} MB = {:.3}x raw",
        store.exact().columns().len(),
        raw / 1_000_000,
        values_and_exact / 1_000_000,
        values_and_exact as f64 / raw as f64,
        store.bytes_held() / 1_000_000,
        store.bytes_held() as f64 / raw as f64,
    );
}

/// A store of `rows x cols`: `floats` float columns first, `texts` category columns last (as
/// text when `as_text`, else as their numbers), integers between.
fn build(rows: usize, cols: usize, floats: usize, texts: usize, as_text: bool) -> FeatureStore {
    let mut ids = IdIndex::with_capacity(rows, 9);
    let mut values = Vec::with_capacity(rows * cols);
    let mut exact = ExactBuilder::new(cols);
    let first_text = cols - texts.min(cols);
    let mut dicts: Vec<DictBuilder> = (0..texts).map(|_| DictBuilder::default()).collect();
    let mut state = 0x2545_F491_4F6C_DD1D_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for r in 0..rows {
        ids.push(&format!("C{r:08}")).expect("unique ids");
        for c in 0..cols {
            let v = if c >= first_text {
                let k = c - first_text;
                let names = CATEGORIES[k % CATEGORIES.len()];
                let pick = (next() % names.len() as u64) as usize;
                if as_text {
                    f64::from(dicts[k].push(names[pick]).expect("few values"))
                } else {
                    pick as f64
                }
            } else if c < floats {
                let decimals = 2 + (c % 5) as i32;
                (next() % 10_000_000_000) as f64 / 10f64.powi(decimals)
            } else {
                (next() % 1000) as f64
            };
            values.push(exact.push(c, v));
        }
        exact.end_row();
    }
    // Codes in first-seen order become the sorted dictionary's, as the loaders renumber them.
    let mut per_column: Vec<Option<Dictionary>> = vec![None; cols];
    for (k, b) in dicts.into_iter().enumerate().filter(|_| as_text) {
        let (d, remap) = b.finish();
        let c = first_text + k;
        for cell in values.iter_mut().skip(c).step_by(cols) {
            *cell = remap[*cell as usize] as f32;
        }
        per_column[c] = Some(d);
    }
    let columns = (0..cols).map(|c| format!("f{c}")).collect();
    FeatureStore::with_exact(columns, ids, values, exact.finish(), "synthetic")
        .and_then(|s| s.with_dictionaries(per_column))
        .expect("consistent")
}
