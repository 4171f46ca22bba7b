//! Fuzz target: `softalign_fuzz::toml_config` (see fuzz/README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    softalign_fuzz::toml_config(data);
});
