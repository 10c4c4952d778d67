//! `/v1/decide` request decoding (JSON body and query string); properties in
//! `checks::check_decide_request`.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::check_decide_request(data));
