//! Fuzz target: see `gridsight::fuzzing::mqtt_message` for what it feeds and asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gridsight::fuzzing::mqtt_message(data));
