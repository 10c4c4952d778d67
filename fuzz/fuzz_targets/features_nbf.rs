//! Feature snapshots in the binary form (the reader behind `.nbf` files); properties in
//! `checks::check_nbf_store`, plus: reading allocates in proportion to the input, whatever
//! counts and lengths the header claims.
#![no_main]

#[path = "../checks.rs"]
mod checks;
mod common;

use nextbest::features::FeatureStore;

#[global_allocator]
static ALLOC: common::Counting = common::Counting;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (loaded, peak) = common::peak_heap(|| FeatureStore::from_nbf_bytes(data, "fuzz.nbf"));
    common::assert_linear(peak, data.len());
    checks::check_nbf_store(data, loaded);
});
