#![no_main]
// The target's body and invariants: src/fuzzing.rs.
libfuzzer_sys::fuzz_target!(|data: &[u8]| diskcachefs::fuzzing::pickles(data));
