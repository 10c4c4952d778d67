//! Feature snapshots in CSV; properties in `checks::check_csv_store`, plus: loading allocates
//! in proportion to the input.
#![no_main]

#[path = "../checks.rs"]
mod checks;
mod common;

use nextbest::features::FeatureStore;

#[global_allocator]
static ALLOC: common::Counting = common::Counting;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (loaded, peak) = common::peak_heap(|| FeatureStore::from_csv_bytes(data, "fuzz.csv"));
    common::assert_linear(peak, data.len());
    checks::check_csv_store(data, loaded);
});
