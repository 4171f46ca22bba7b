//! Fuzz target: `softalign_fuzz::preference_data` (see fuzz/README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    softalign_fuzz::preference_data(data);
});
