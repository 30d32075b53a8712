//! Fuzz target: see `gridsight::fuzzing::grpc_request` for what it feeds and asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gridsight::fuzzing::grpc_request(data));
