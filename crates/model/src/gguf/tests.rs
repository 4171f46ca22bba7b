//! Reader tests on GGUF files built in memory by [`super::writer`].

use std::path::{Path, PathBuf};

use super::writer::GgufWriter;
use super::*;

const ONE: u16 = 0x3c00; // 1.0 in f16
const HALF: u16 = 0x3800; // 0.5
const MINUS_ONE_AND_HALF: u16 = 0xbe00; // -1.5
const TWO: u16 = 0x4000; // 2.0

#[test]
fn f16_conversion_covers_normals_subnormals_and_specials() {
    assert_eq!(f16_to_f32(ONE), 1.0);
    assert_eq!(f16_to_f32(MINUS_ONE_AND_HALF), -1.5);
    assert_eq!(f16_to_f32(0x7bff), 65504.0);
    assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
    assert_eq!(f16_to_f32(0x8001), -(2f32.powi(-24)));
    assert_eq!(f16_to_f32(0x0000), 0.0);
    assert!(f16_to_f32(0x8000).is_sign_negative());
    assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
    assert!(f16_to_f32(0x7e00).is_nan());
}

#[test]
fn q8_0_block_is_scale_times_signed_bytes() {
    let mut block = HALF.to_le_bytes().to_vec();
    block.extend((0..32).map(|i| (i as i8 - 16) as u8));
    let values = dequantize(GgmlType::Q8_0, &block);
    let want: Vec<f32> = (0..32).map(|i| (i - 16) as f32 * 0.5).collect();
    assert_eq!(values, want);
}

#[test]
fn q4_0_block_puts_low_nibbles_first_and_centres_on_eight() {
    let mut block = TWO.to_le_bytes().to_vec();
    // byte j: low nibble j, high nibble 15 − j.
    block.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
    let values = dequantize(GgmlType::Q4_0, &block);
    let mut want: Vec<f32> = (0..16).map(|j| (j - 8) as f32 * 2.0).collect();
    want.extend((0..16).map(|j| (15 - j - 8) as f32 * 2.0));
    assert_eq!(values, want);
}

#[test]
fn q4_1_block_is_scale_times_nibble_plus_minimum() {
    let mut block = HALF.to_le_bytes().to_vec();
    block.extend(MINUS_ONE_AND_HALF.to_le_bytes());
    block.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
    let values = dequantize(GgmlType::Q4_1, &block);
    assert_eq!(values[0], -1.5);
    assert_eq!(values[3], 3.0 * 0.5 - 1.5);
    assert_eq!(values[15], 15.0 * 0.5 - 1.5);
    assert_eq!(values[16], 15.0 * 0.5 - 1.5);
    assert_eq!(values[31], -1.5);
    assert_eq!(values.len(), 32);
}

#[test]
fn f16_and_bf16_tensors_widen() {
    let raw: Vec<u8> = [ONE, TWO].iter().flat_map(|b| b.to_le_bytes()).collect();
    assert_eq!(dequantize(GgmlType::F16, &raw), vec![1.0, 2.0]);
    let raw: Vec<u8> = [0x3f80u16, 0xc000]
        .iter()
        .flat_map(|b| b.to_le_bytes())
        .collect();
    assert_eq!(dequantize(GgmlType::Bf16, &raw), vec![1.0, -2.0]);
}

pub(super) fn one_tensor_file(kind: GgmlType, dims: Vec<usize>, raw: Vec<u8>) -> Vec<u8> {
    let mut w = GgufWriter::default();
    w.meta("general.architecture", GgufValue::String("llama".into()));
    w.tensors.push(("t.weight".into(), dims, kind, raw));
    w.to_bytes()
}

#[test]
fn quantised_tensor_reads_back_through_the_file() {
    let mut raw = Vec::new();
    for row in 0..2u8 {
        raw.extend(ONE.to_le_bytes());
        raw.extend((0..32).map(|i| (i as i8 - row as i8) as u8));
    }
    let bytes = one_tensor_file(GgmlType::Q8_0, vec![32, 2], raw);
    let file = GgufFile::parse(Path::new("q.gguf"), bytes).unwrap();
    assert_eq!(file.version, 3);
    let t = file.dequantize("t.weight").unwrap();
    assert_eq!(t.shape, vec![2, 32]);
    assert_eq!(t.data[32], -1.0);
    assert_eq!(t.data[63], 30.0);
}

fn parse_err(bytes: Vec<u8>) -> String {
    GgufFile::parse(Path::new("bad.gguf"), bytes)
        .unwrap_err()
        .to_string()
}

#[test]
fn wrong_magic_is_named() {
    let mut bytes = one_tensor_file(GgmlType::F32, vec![2], vec![0; 8]);
    bytes[0] = b'X';
    let e = parse_err(bytes);
    assert!(e.starts_with("bad.gguf: not a gguf file"), "{e}");
    assert!(!e.contains('\n'));
}

#[test]
fn truncated_header_and_truncated_data_are_named() {
    let bytes = one_tensor_file(GgmlType::F32, vec![4, 2], vec![0; 32]);
    let e = parse_err(bytes[..30].to_vec());
    // The tensor count is checked against what the rest of the file can hold before any read.
    assert!(
        e.starts_with("bad.gguf: truncated at byte") || e.contains("cannot fit in the"),
        "{e}"
    );
    let e = parse_err(bytes[..bytes.len() - 4].to_vec());
    assert!(
        e.starts_with("bad.gguf: tensor t.weight: data at bytes") && e.contains("truncated"),
        "{e}"
    );
}

#[test]
fn unknown_and_unsupported_tensor_types_are_named() {
    let mut bytes = one_tensor_file(GgmlType::F32, vec![2], vec![0; 8]);
    // The type id is the u32 before the tensor's u64 offset, i.e. 12 bytes before the end of the
    // directory entry; find it by rewriting the first F32 type id after the tensor name.
    let name_at = bytes.windows(8).position(|w| w == b"t.weight").unwrap();
    let type_at = name_at + 8 + 4 + 8;
    bytes[type_at..type_at + 4].copy_from_slice(&99u32.to_le_bytes());
    assert_eq!(
        parse_err(bytes.clone()),
        "bad.gguf: tensor t.weight: unknown tensor type 99"
    );
    for (id, name) in [
        (16u32, "iq2_xxs"),
        (15, "q8_k"),
        (24, "i8"),
        (9, "q8_1"),
        (39, "mxfp4"),
    ] {
        bytes[type_at..type_at + 4].copy_from_slice(&id.to_le_bytes());
        assert_eq!(
            parse_err(bytes.clone()),
            format!(
                "bad.gguf: tensor t.weight: type {name} (id {id}) is not supported (supported: \
                 f32, f16, q4_0, q4_1, q5_0, q5_1, q8_0, q2_k, q3_k, q4_k, q5_k, q6_k, iq4_nl, \
                 iq4_xs, bf16)"
            )
        );
    }
}

/// The first golden case of `kind` (`tests/data/quants/`, written by scripts/golden/quants.py
/// with gguf-py): raw blocks and gguf-py's f32 values.
fn golden_blocks(kind: GgmlType) -> (Vec<u8>, Vec<f32>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("tests/data/quants/{}.json", kind.name()));
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let hex = |key: &str| -> Vec<u8> {
        let text = doc["cases"][0][key].as_str().unwrap();
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    };
    let values = hex("values")
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    (hex("bytes"), values)
}

#[test]
fn k_quant_and_iq4_tensors_read_back_through_the_file_as_gguf_py_decodes_them() {
    // The types a Q4_K_M / Q5_K_M / Q6_K file mixes, and the other block formats, one two-row
    // tensor each.
    let kinds = [
        GgmlType::Q4K,
        GgmlType::Q5K,
        GgmlType::Q6K,
        GgmlType::Q5_0,
        GgmlType::Q8_0,
        GgmlType::Q2K,
        GgmlType::Q3K,
        GgmlType::Q5_1,
        GgmlType::Iq4Nl,
        GgmlType::Iq4Xs,
    ];
    let mut w = GgufWriter::default();
    w.meta("general.architecture", GgufValue::String("llama".into()));
    let mut expected = Vec::new();
    for kind in kinds {
        let (raw, values) = golden_blocks(kind);
        let name = format!("blk.0.{}.weight", kind.name());
        w.tensors
            .push((name.clone(), vec![values.len() / 2, 2], kind, raw));
        expected.push((name, kind, values));
    }
    let file = GgufFile::parse(Path::new("k.gguf"), w.to_bytes()).unwrap();
    for (name, kind, values) in expected {
        assert_eq!(file.tensor_info(&name).unwrap().kind, kind);
        let tensor = file.dequantize(&name).unwrap();
        assert_eq!(tensor.shape, vec![2, values.len() / 2], "{name}");
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&tensor.data), bits(&values), "{name}");
    }
}

#[test]
fn missing_tensor_is_named() {
    let bytes = one_tensor_file(GgmlType::F32, vec![2], vec![0; 8]);
    let file = GgufFile::parse(Path::new("m.gguf"), bytes).unwrap();
    assert_eq!(
        file.dequantize("blk.0.attn_q.weight")
            .unwrap_err()
            .to_string(),
        "m.gguf: missing tensor blk.0.attn_q.weight"
    );
}

#[test]
fn unpermute_inverts_llama_cpp_permute() {
    // llama.cpp: w.reshape(heads, 2, d/2, cols).swapaxes(1, 2).reshape(rows, cols).
    let (heads, d, cols) = (3, 4, 2);
    let rows = heads * d;
    let hf: Vec<f32> = (0..rows * cols).map(|x| x as f32).collect();
    let mut permuted = vec![0.0; rows * cols];
    for h in 0..heads {
        for s in 0..2 {
            for i in 0..d / 2 {
                let src = h * d + s * (d / 2) + i;
                let dst = h * d + i * 2 + s;
                permuted[dst * cols..(dst + 1) * cols]
                    .copy_from_slice(&hf[src * cols..(src + 1) * cols]);
            }
        }
    }
    let back = unpermute_rotary_rows(
        &HostTensor {
            shape: vec![rows, cols],
            data: permuted,
        },
        heads,
    );
    assert_eq!(back.data, hf);
}

/// A tiny Llama as a GGUF file, written the way llama.cpp's converter writes one: Q/K rows
/// permuted, ggml dimension order, tokenizer metadata. Returns the file's bytes and the same
/// weights in Hugging Face names.
pub(super) fn tiny_llama_gguf(
    skip: Option<&str>,
    wrong_shape: Option<&str>,
) -> (Vec<u8>, WeightMap, ModelConfig) {
    let config = ModelConfig {
        family: crate::config::Family::Llama,
        vocab_size: 98,
        hidden_size: 16,
        intermediate_size: 24,
        num_hidden_layers: 1,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        head_dim: 4,
        rms_norm_eps: 1e-5,
        rope_theta: 500.0,
        tie_word_embeddings: true,
        max_position_embeddings: 64,
        bos_token_id: Some(1),
        eos_token_ids: vec![0],
        sliding_window: None,
        ..ModelConfig::llama_defaults()
    };
    let mut seed = 12345u64;
    let mut random = |n: usize| -> Vec<f32> {
        (0..n)
            .map(|_| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((seed >> 33) as f32 / (1u64 << 31) as f32 - 0.5) * 0.4
            })
            .collect()
    };
    let (c, f, v) = (16, 24, 98);
    let tensors: Vec<(&str, &str, Vec<usize>, Option<usize>)> = vec![
        (
            "token_embd.weight",
            "model.embed_tokens.weight",
            vec![v, c],
            None,
        ),
        ("output_norm.weight", "model.norm.weight", vec![c], None),
        (
            "blk.0.attn_norm.weight",
            "model.layers.0.input_layernorm.weight",
            vec![c],
            None,
        ),
        (
            "blk.0.ffn_norm.weight",
            "model.layers.0.post_attention_layernorm.weight",
            vec![c],
            None,
        ),
        (
            "blk.0.attn_q.weight",
            "model.layers.0.self_attn.q_proj.weight",
            vec![16, c],
            Some(4),
        ),
        (
            "blk.0.attn_k.weight",
            "model.layers.0.self_attn.k_proj.weight",
            vec![8, c],
            Some(2),
        ),
        (
            "blk.0.attn_v.weight",
            "model.layers.0.self_attn.v_proj.weight",
            vec![8, c],
            None,
        ),
        (
            "blk.0.attn_output.weight",
            "model.layers.0.self_attn.o_proj.weight",
            vec![c, 16],
            None,
        ),
        (
            "blk.0.ffn_gate.weight",
            "model.layers.0.mlp.gate_proj.weight",
            vec![f, c],
            None,
        ),
        (
            "blk.0.ffn_up.weight",
            "model.layers.0.mlp.up_proj.weight",
            vec![f, c],
            None,
        ),
        (
            "blk.0.ffn_down.weight",
            "model.layers.0.mlp.down_proj.weight",
            vec![c, f],
            None,
        ),
    ];
    let mut hf = WeightMap::default();
    let mut w = GgufWriter::default();
    w.meta("general.architecture", GgufValue::String("llama".into()))
        .meta("llama.embedding_length", GgufValue::Uint(16))
        .meta("llama.feed_forward_length", GgufValue::Uint(24))
        .meta("llama.block_count", GgufValue::Uint(1))
        .meta("llama.attention.head_count", GgufValue::Uint(4))
        .meta("llama.attention.head_count_kv", GgufValue::Uint(2))
        .meta("llama.rope.freq_base", GgufValue::Float(500.0))
        .meta(
            "llama.attention.layer_norm_rms_epsilon",
            GgufValue::Float(1e-5),
        )
        .meta("llama.context_length", GgufValue::Uint(64))
        .meta("tokenizer.ggml.model", GgufValue::String("gpt2".into()))
        .meta("tokenizer.ggml.pre", GgufValue::String("smollm".into()))
        .meta("tokenizer.ggml.bos_token_id", GgufValue::Uint(1))
        .meta("tokenizer.ggml.eos_token_id", GgufValue::Uint(0))
        .meta("tokenizer.ggml.add_bos_token", GgufValue::Bool(false));
    let mut tokens = vec![
        GgufValue::String("<|endoftext|>".into()),
        GgufValue::String("<|im_start|>".into()),
    ];
    let mut types = vec![GgufValue::Int(3), GgufValue::Int(3)];
    for b in 33u8..=126 {
        tokens.push(GgufValue::String((b as char).to_string()));
        types.push(GgufValue::Int(1));
    }
    tokens.push(GgufValue::String("Ġ".into()));
    types.push(GgufValue::Int(1));
    tokens.push(GgufValue::String("he".into()));
    types.push(GgufValue::Int(1));
    w.meta("tokenizer.ggml.tokens", GgufValue::Array(tokens))
        .meta("tokenizer.ggml.token_type", GgufValue::Array(types))
        .meta(
            "tokenizer.ggml.merges",
            GgufValue::Array(vec![GgufValue::String("h e".into())]),
        );
    for (gguf, name, shape, heads) in tensors {
        let data = random(shape.iter().product());
        let host = HostTensor {
            shape: shape.clone(),
            data,
        };
        let mut stored = host.clone();
        if let Some(heads) = heads {
            // llama.cpp's permute: HF row h·d + s·d/2 + i goes to row h·d + 2i + s.
            let (rows, cols) = (shape[0], shape[1]);
            let d = rows / heads;
            for h in 0..heads {
                for s in 0..2 {
                    for i in 0..d / 2 {
                        let (src, dst) = (h * d + s * d / 2 + i, h * d + 2 * i + s);
                        stored.data[dst * cols..(dst + 1) * cols]
                            .copy_from_slice(&host.data[src * cols..(src + 1) * cols]);
                    }
                }
            }
        }
        hf.tensors.insert(name.to_string(), host);
        if skip == Some(gguf) {
            continue;
        }
        let mut shape = shape;
        if wrong_shape == Some(gguf) {
            shape[0] += 1;
            stored
                .data
                .extend(std::iter::repeat_n(0.0, shape[1..].iter().product()));
        }
        w.f32_tensor(gguf, &shape, &stored.data);
    }
    (w.to_bytes(), hf, config)
}

pub(super) fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
    let path = std::env::temp_dir().join(format!("softalign-{}-{name}", std::process::id()));
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn gguf_model_matches_the_same_weights_in_hugging_face_layout() {
    use burn::tensor::{Device, Int, Tensor, TensorData};
    let (bytes, hf, config) = tiny_llama_gguf(None, None);
    let path = temp_file("tiny.gguf", &bytes);
    let device = Device::default();
    let loaded = crate::load_pretrained(&path, &device).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(loaded.model.config, config);
    let reference = crate::CausalLm::from_weights(&config, hf, &device).unwrap();
    let ids = loaded.tokenizer.encode("he he!").unwrap();
    assert_eq!(ids.len(), 4, "{ids:?}");
    let input = Tensor::<2, Int>::from_data(
        TensorData::new(
            ids.iter().map(|&t| t as i64).collect::<Vec<_>>(),
            [1, ids.len()],
        ),
        &device,
    );
    let a: Vec<f32> = loaded
        .model
        .forward(input.clone())
        .into_data()
        .iter::<f32>()
        .collect();
    let b: Vec<f32> = reference.forward(input).into_data().iter::<f32>().collect();
    assert_eq!(a, b);
}

#[test]
fn gguf_model_with_a_missing_or_misshapen_tensor_names_it() {
    let device = burn::tensor::Device::default();
    let (bytes, _, _) = tiny_llama_gguf(Some("blk.0.ffn_up.weight"), None);
    let path = temp_file("missing.gguf", &bytes);
    let e = crate::load_pretrained(&path, &device)
        .unwrap_err()
        .to_string();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(
        e,
        format!("{}: missing tensor blk.0.ffn_up.weight", path.display())
    );

    let (bytes, _, _) = tiny_llama_gguf(None, Some("blk.0.attn_k.weight"));
    let path = temp_file("shape.gguf", &bytes);
    let e = crate::load_pretrained(&path, &device)
        .unwrap_err()
        .to_string();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(
        e,
        format!(
            "{}: tensor blk.0.attn_k.weight: shape [16, 9], expected [16, 8]",
            path.display()
        )
    );
}
