//! `POST /v1/events` bodies, and the event log's record framing and payloads; properties in
//! `checks::check_events`.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::check_events(data));
