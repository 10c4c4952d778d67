//! Feature snapshots in the binary form (the reader behind `.nbf` files); properties in
//! `checks::check_nbf_store` on each of `checks::nbf_inputs` (the input, and the input with
//! its checksum made right), plus: reading allocates in proportion to the input, whatever
//! counts and lengths the header claims.
#![no_main]

#[path = "../checks.rs"]
mod checks;
mod common;

use nextbest::features::FeatureStore;

#[global_allocator]
static ALLOC: common::Counting = common::Counting;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    for input in checks::nbf_inputs(data) {
        let (loaded, peak) = common::peak_heap(|| FeatureStore::from_nbf_bytes(&input, "fuzz.nbf"));
        common::assert_linear(peak, input.len());
        checks::check_nbf_store(&input, loaded);
    }
});
