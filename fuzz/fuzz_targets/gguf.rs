//! Fuzz target: `softalign_fuzz::gguf` (see fuzz/README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    softalign_fuzz::gguf(data);
});
