//! Offer models and built-in fallback documents, compiled and then decided on; properties in
//! `checks::check_model`.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::check_model(data));
