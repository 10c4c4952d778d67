//! LightGBM text models (`parse_lightgbm`) built into tree ensembles and scored; properties in
//! `checks::check_lightgbm`, plus: parsing allocates in proportion to the input.
#![no_main]

#[path = "../checks.rs"]
mod checks;
mod common;

#[global_allocator]
static ALLOC: common::Counting = common::Counting;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let ((), peak) = common::peak_heap(|| checks::check_lightgbm(data));
    common::assert_linear(peak, data.len());
});
