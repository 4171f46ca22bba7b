//! Forged GGUF files: each is one clean error naming the file, never a panic, an allocation
//! sized by a forged number, or a silent read of the wrong bytes.

use std::path::Path;

use super::tests::{temp_file, tiny_llama_gguf};
use super::writer::GgufWriter;
use super::*;

/// The tiny Llama GGUF, rewritten with `edit` applied to its metadata and tensors.
fn forged(edit: impl FnOnce(&mut GgufWriter)) -> Vec<u8> {
    let (bytes, _, _) = tiny_llama_gguf(None, None);
    let file = GgufFile::parse(Path::new("tiny.gguf"), bytes).unwrap();
    let mut w = GgufWriter {
        metadata: file.metadata.clone().into_iter().collect(),
        tensors: file
            .tensors
            .iter()
            .map(|t| {
                let raw = file.tensor_bytes(t).unwrap().to_vec();
                (t.name.clone(), t.dims.clone(), t.kind, raw)
            })
            .collect(),
    };
    edit(&mut w);
    w.to_bytes()
}

fn set(w: &mut GgufWriter, key: &str, value: GgufValue) {
    w.metadata.retain(|(k, _)| k != key);
    w.metadata.push((key.into(), value));
}

/// The error of loading `bytes` as a model; a panic fails the test.
fn load_error(name: &str, bytes: &[u8]) -> String {
    let path = temp_file(name, bytes);
    let result = crate::load_pretrained(&path, &burn::tensor::Device::default());
    std::fs::remove_file(&path).unwrap();
    let e = result.expect_err("a forged file must not load").to_string();
    assert!(
        e.contains(&*path.to_string_lossy()) && !e.contains('\n'),
        "{e}"
    );
    e
}

#[test]
fn huge_block_counts_are_refused_before_anything_is_sized_by_them() {
    for blocks in [u32::MAX as u64, 1 << 62, u64::MAX] {
        let bytes = forged(|w| set(w, "llama.block_count", GgufValue::Uint(blocks)));
        let e = load_error("blocks.gguf", &bytes);
        assert!(e.contains("num_hidden_layers"), "{e}");
    }
}

#[test]
fn a_token_list_longer_than_the_embedding_is_refused() {
    let bytes = forged(|w| {
        let tokens = w
            .metadata
            .iter_mut()
            .find(|(k, _)| k == "tokenizer.ggml.tokens")
            .unwrap();
        if let GgufValue::Array(items) = &mut tokens.1 {
            items.push(GgufValue::String("extra".into()));
        }
        w.metadata.retain(|(k, _)| k != "tokenizer.ggml.token_type");
    });
    let e = load_error("tokens.gguf", &bytes);
    assert!(
        e.contains("\"extra\" has id 98") && e.contains("98 rows"),
        "{e}"
    );
}

#[test]
fn a_rank_one_embedding_without_vocab_size_is_refused() {
    let bytes = forged(|w| {
        let embedding = w
            .tensors
            .iter_mut()
            .find(|t| t.0 == "token_embd.weight")
            .unwrap();
        embedding.1 = vec![embedding.1.iter().product()];
    });
    let e = load_error("rank1.gguf", &bytes);
    assert!(e.contains("token_embd.weight: dimensions [1568]"), "{e}");
}

#[test]
fn alignments_other_than_a_small_power_of_two_are_refused() {
    for alignment in [0, 3, 48, u64::MAX] {
        let bytes = forged(|w| set(w, "general.alignment", GgufValue::Uint(alignment)));
        let e = load_error("align.gguf", &bytes);
        assert!(e.contains("general.alignment"), "{alignment}: {e}");
    }
}

#[test]
fn a_tensor_offset_that_wraps_around_is_refused_not_read_from_elsewhere() {
    let mut bytes = super::tests::one_tensor_file(GgmlType::F32, vec![2], vec![0; 8]);
    // The directory entry ends with the tensor's u64 offset, right before the aligned data.
    let name_end = bytes.windows(8).position(|w| w == b"t.weight").unwrap() + 8;
    let offset_at = name_end + 4 + 8 + 4;
    bytes[offset_at..offset_at + 8].copy_from_slice(&(u64::MAX - 7).to_le_bytes());
    let e = GgufFile::parse(Path::new("wrap.gguf"), bytes)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("tensor t.weight") && e.contains("past the end"),
        "{e}"
    );
}

#[test]
fn counts_larger_than_the_file_can_hold_are_refused_before_allocating() {
    let mut bytes = super::tests::one_tensor_file(GgmlType::F32, vec![2], vec![0; 8]);
    // Tensor count (bytes 8..16), then metadata count (16..24).
    bytes[8..16].copy_from_slice(&(1u64 << 40).to_le_bytes());
    let e = GgufFile::parse(Path::new("count.gguf"), bytes.clone())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("the tensor count: count 1099511627776 cannot fit"),
        "{e}"
    );
    bytes[8..16].copy_from_slice(&1u64.to_le_bytes());
    bytes[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
    let e = GgufFile::parse(Path::new("count.gguf"), bytes)
        .unwrap_err()
        .to_string();
    assert!(e.contains("the metadata count"), "{e}");
}

/// The K-quant and IQ4_XS types, whose rows are whole super-blocks of 256.
const SUPER_BLOCK_TYPES: [GgmlType; 6] = [
    GgmlType::Q2K,
    GgmlType::Q3K,
    GgmlType::Q4K,
    GgmlType::Q5K,
    GgmlType::Q6K,
    GgmlType::Iq4Xs,
];

#[test]
fn a_truncated_k_quant_tensor_is_refused_naming_it() {
    for kind in SUPER_BLOCK_TYPES {
        let block_bytes = kind.block().1;
        // Eight rows of one super-block (a dimension larger than the whole file is refused
        // earlier, by the directory reader).
        let bytes = super::tests::one_tensor_file(kind, vec![256, 8], vec![0; 8 * block_bytes]);
        // One byte short of the last super-block.
        let e = GgufFile::parse(Path::new("cut.gguf"), bytes[..bytes.len() - 1].to_vec())
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("cut.gguf: tensor t.weight: data at bytes")
                && e.contains("runs past the end of the file")
                && !e.contains('\n'),
            "{e}"
        );
    }
}

#[test]
fn rows_that_are_not_whole_blocks_are_refused_naming_the_tensor_and_the_type() {
    let cases = SUPER_BLOCK_TYPES
        .into_iter()
        .map(|kind| (kind, 288))
        .chain([(GgmlType::Q5_0, 48), (GgmlType::Iq4Nl, 16)]);
    for (kind, row) in cases {
        let bytes = super::tests::one_tensor_file(kind, vec![row, 2], vec![0; 4 * kind.block().1]);
        let e = GgufFile::parse(Path::new("row.gguf"), bytes)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            format!(
                "row.gguf: tensor t.weight: innermost dimension {row} is not a multiple of the {} block size {}",
                kind.name(),
                kind.block().0
            )
        );
    }
}

#[test]
fn a_model_tensor_retyped_to_a_k_quant_is_refused_when_its_rows_are_short() {
    // The tiny Llama's rows are 16 wide: as Q4_K they would need 256.
    let bytes = forged(|w| {
        let q = w
            .tensors
            .iter_mut()
            .find(|t| t.0 == "blk.0.attn_q.weight")
            .unwrap();
        q.2 = GgmlType::Q4K;
    });
    let e = load_error("retyped.gguf", &bytes);
    assert!(
        e.contains("tensor blk.0.attn_q.weight: innermost dimension 16 is not a multiple of the q4_k block size 256"),
        "{e}"
    );
}
