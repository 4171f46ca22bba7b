//! Every GGUF block format against gguf-py's reference decoder, bit for bit.
//!
//! The golden files in `tests/data/quants/` (one per format) were written by
//! `scripts/golden/quants.py` with gguf-py 0.19.0's `gguf/quants.py`: blocks of random bytes (f16
//! scale fields forced finite) and, where gguf-py can quantise the format, blocks of quantised
//! smooth data, each with gguf-py's float32 dequantisation.

use std::path::{Path, PathBuf};

use softalign_model::gguf::{GgmlType, dequantize, quants};

/// One golden case: raw blocks and the values gguf-py decodes from them.
struct Case {
    source: String,
    bytes: Vec<u8>,
    values: Vec<f32>,
}

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/quants")
}

fn hex(text: &str) -> Vec<u8> {
    assert!(text.len().is_multiple_of(2), "odd hex length");
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex digits"))
        .collect()
}

/// The cases of `kind`'s golden file, after checking its id and block sizes against the file.
fn golden(kind: GgmlType) -> Vec<Case> {
    let path = data_dir().join(format!("{}.json", kind.name()));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/golden/quants.py)", path.display()));
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["type"], kind.name());
    assert_eq!(doc["id"], kind.id(), "{}: ggml id", kind.name());
    let (per_block, block_bytes) = kind.block();
    assert_eq!(
        doc["block_values"],
        per_block,
        "{}: block values",
        kind.name()
    );
    assert_eq!(
        doc["block_bytes"],
        block_bytes,
        "{}: block bytes",
        kind.name()
    );
    doc["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|case| Case {
            source: case["source"].as_str().unwrap().to_string(),
            bytes: hex(case["bytes"].as_str().unwrap()),
            values: hex(case["values"].as_str().unwrap())
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        })
        .collect()
}

/// The quantised formats: every supported type but the plain floats.
fn block_formats() -> Vec<GgmlType> {
    GgmlType::ALL
        .into_iter()
        .filter(|t| t.block().0 > 1)
        .collect()
}

/// Fails naming the format, the case and the first value whose bits differ.
fn assert_bits_equal(kind: GgmlType, source: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{} ({source}): length", kind.name());
    if let Some(i) = (0..got.len()).find(|&i| got[i].to_bits() != want[i].to_bits()) {
        panic!(
            "{} ({source}): value {i} (block {}, position {}) is {:e}, gguf-py gives {:e}",
            kind.name(),
            i / kind.block().0,
            i % kind.block().0,
            got[i],
            want[i]
        );
    }
}

#[test]
fn every_block_format_decodes_exactly_as_gguf_py() {
    let formats = block_formats();
    assert_eq!(formats.len(), 12, "{formats:?}");
    for kind in formats {
        let cases = golden(kind);
        assert!(!cases.is_empty(), "{}: no cases", kind.name());
        for case in &cases {
            let (per_block, block_bytes) = kind.block();
            assert!(case.bytes.len().is_multiple_of(block_bytes));
            assert_eq!(
                case.values.len(),
                case.bytes.len() / block_bytes * per_block
            );
            assert_bits_equal(
                kind,
                &case.source,
                &dequantize(kind, &case.bytes),
                &case.values,
            );
            // The same blocks one at a time through the row decoder a kernel would call.
            let mut values = vec![f32::NAN; per_block];
            for (b, block) in case.bytes.chunks_exact(block_bytes).enumerate() {
                quants::dequantize_row(kind, block, &mut values);
                let want = &case.values[b * per_block..(b + 1) * per_block];
                assert_bits_equal(kind, &case.source, &values, want);
            }
        }
    }
}

#[test]
fn quantised_smooth_data_is_covered_where_gguf_py_can_quantise() {
    for kind in [
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
    ] {
        assert!(
            golden(kind).iter().any(|c| c.source.contains("quantize")),
            "{}",
            kind.name()
        );
    }
}

#[test]
fn a_tensor_split_over_many_threads_decodes_as_its_blocks_do() {
    // Enough copies of the golden blocks that `dequantize` splits them into several tasks, plus a
    // partial block at the end that it must ignore.
    for kind in block_formats() {
        let case = &golden(kind)[0];
        let copies = 300;
        let mut raw = case.bytes.repeat(copies);
        raw.extend_from_slice(&case.bytes[..kind.block().1 - 1]);
        let want = case.values.repeat(copies);
        assert_bits_equal(kind, "repeated", &dequantize(kind, &raw), &want);
    }
}
