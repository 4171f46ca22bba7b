//! What the GGUF loader refuses in the metadata and tensor directory (issue 22's lying files):
//! each case starts from a valid tiny Llama file and changes one thing.

use super::tests::tiny_llama_gguf;
use super::{GgufFile, GgufValue};
use std::path::Path;

fn tiny() -> GgufFile {
    let (bytes, ..) = tiny_llama_gguf(None, None);
    GgufFile::parse(Path::new("tiny.gguf"), bytes).unwrap()
}

fn config_error(edit: impl FnOnce(&mut GgufFile)) -> String {
    let mut file = tiny();
    edit(&mut file);
    file.model_config().unwrap_err().to_string()
}

fn weights_error(edit: impl FnOnce(&mut GgufFile)) -> String {
    let mut file = tiny();
    edit(&mut file);
    let config = file.model_config().unwrap();
    file.model_weights(&config).unwrap_err().to_string()
}

#[test]
fn an_architecture_that_is_not_one_string_is_refused() {
    for value in [
        GgufValue::Uint(7),
        GgufValue::Array(vec![
            GgufValue::String("llama".into()),
            GgufValue::String("qwen2".into()),
        ]),
    ] {
        let e = config_error(|f| {
            f.metadata.insert("general.architecture".into(), value);
        });
        assert!(e.contains("general.architecture: expected a string"), "{e}");
    }
    let e = config_error(|f| {
        f.metadata.remove("general.architecture");
    });
    assert!(e.contains("general.architecture: missing"), "{e}");
    let e = config_error(|f| {
        f.metadata.insert(
            "general.architecture".into(),
            GgufValue::String("mixtral".into()),
        );
    });
    assert!(e.contains("mixture-of-experts"), "{e}");
}

#[test]
fn a_rotary_width_that_is_zero_odd_or_wider_than_a_head_is_refused() {
    for n in [0, 3, 7, 6] {
        let e = config_error(|f| {
            f.metadata
                .insert("llama.rope.dimension_count".into(), GgufValue::Uint(n));
        });
        assert!(e.contains("llama.rope.dimension_count"), "{n}: {e}");
    }
}

#[test]
fn out_of_range_token_ids_and_epsilon_are_refused() {
    let e = config_error(|f| {
        f.metadata.insert(
            "tokenizer.ggml.bos_token_id".into(),
            GgufValue::Uint(u32::MAX as u64 + 2),
        );
    });
    assert!(e.contains("tokenizer.ggml.bos_token_id"), "{e}");
    let e = config_error(|f| {
        f.metadata.insert(
            "llama.attention.layer_norm_rms_epsilon".into(),
            GgufValue::Float(f64::INFINITY),
        );
    });
    assert!(e.contains("rms_norm_eps"), "{e}");
}

#[test]
fn tensors_the_configuration_does_not_use_are_refused_by_name() {
    // A second block's tensor under block_count = 1.
    let e = weights_error(|f| {
        let mut extra = f.tensor_info("blk.0.attn_norm.weight").unwrap().clone();
        extra.name = "blk.1.attn_norm.weight".into();
        f.tensors.push(extra);
    });
    assert!(
        e.contains("tensor blk.1.attn_norm.weight is not used"),
        "{e}"
    );
    // A bias the llama family does not have.
    let e = weights_error(|f| {
        let mut extra = f.tensor_info("blk.0.attn_norm.weight").unwrap().clone();
        extra.name = "blk.0.attn_q.bias".into();
        f.tensors.push(extra);
    });
    assert!(e.contains("tensor blk.0.attn_q.bias is not used"), "{e}");
}
