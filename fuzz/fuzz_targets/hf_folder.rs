//! Fuzz target: `softalign_fuzz::hf_folder` (see fuzz/README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    softalign_fuzz::hf_folder(data);
});
