//! Memory of a large snapshot whose float columns hold more precision than f32: what the exact
//! f64 side of the feature store costs against the raw f32 values.
//!
//! `cargo run --profile bench --example snapshot_memory -- [ROWS] [COLUMNS] [FLOAT_COLUMNS]`
//! (default 10,000,000 x 24 with 6 float columns of 2 to 6 decimals; the other columns are
//! integer-valued, as counts and flags are). Values go through `ExactBuilder`, the code the
//! CSV loader runs for every field. Prints the bytes held and the ratio to `rows x columns x 4`.

use nextbest::features::{ExactBuilder, FeatureStore, IdIndex};

fn main() {
    let arg = |i: usize, default: usize| {
        std::env::args()
            .nth(i)
            .map_or(default, |a| a.parse().expect("a number"))
    };
    let (rows, cols, floats) = (arg(1, 10_000_000), arg(2, 24), arg(3, 6));
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
