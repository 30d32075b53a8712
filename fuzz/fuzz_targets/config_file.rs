//! Fuzz target: see `gridsight::fuzzing::config_file` for what it feeds and asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gridsight::fuzzing::config_file(data));
