//! The model families against transformers: tiny Qwen2, Qwen3 and Mistral checkpoints saved by
//! transformers 5.24, each with its own logits and greedy continuation, and the same weights as
//! llama.cpp's converter writes them (../shared/golden/hf-tiny-*; see the README there). Both
//! formats must reproduce transformers' logits to 1e-4 and its greedy tokens exactly, and a
//! saved folder must carry the family's own config and reload to identical logits.

use std::path::{Path, PathBuf};

mod common;

use burn::tensor::Device;
use common::{flat_logits, golden, max_abs_diff, to_vec, token_ids, tokens};
use serde_json::Value;
use softalign_model::{
    CausalLm, Family, GenerationConfig, ModelConfig, Sampling, generate, load_pretrained,
    next_token_logps, save_pretrained,
};

fn fixture(name: &str) -> PathBuf {
    golden(name)
}

struct Expected {
    text: String,
    input_ids: Vec<u32>,
    logits: Vec<f32>,
    sum_logp: f64,
    greedy: Vec<u32>,
}

fn expected(dir: &Path) -> Expected {
    let text = std::fs::read_to_string(dir.join("expected_logits.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    Expected {
        text: v["text"].as_str().unwrap().to_string(),
        input_ids: token_ids(&v["input_ids"]),
        logits: flat_logits(&v["logits"]),
        sum_logp: v["sum_logp_next_tokens"].as_f64().unwrap(),
        greedy: token_ids(&v["greedy_next_12"]),
    }
}

/// Loads `path`, checks the family, logits, sequence log-probability and greedy continuation
/// against transformers' figures in `golden`.
fn check_against_transformers(path: &Path, golden: &Path, family: Family) {
    let device = Device::flex();
    let want = expected(golden);
    let loaded = load_pretrained(path, &device).unwrap();
    let model = &loaded.model;
    assert_eq!(model.config.family, family, "{}", path.display());

    let encoded = loaded.tokenizer.encode(&want.text).unwrap();
    assert_eq!(encoded, want.input_ids, "{}: tokenizer", path.display());
    let input = tokens(&want.input_ids, &device);
    let logits = model.forward(input.clone());
    let err = max_abs_diff(&to_vec(logits.clone()), &want.logits);
    eprintln!("{}: max |logit − transformers| = {err:.2e}", path.display());
    assert!(err <= 1e-4, "{}: max abs logit error {err}", path.display());

    let sum_logp: f32 = to_vec(next_token_logps(logits, input)).iter().sum();
    assert!(
        (sum_logp as f64 - want.sum_logp).abs() <= 1e-3,
        "{}: sum logp {sum_logp} vs {}",
        path.display(),
        want.sum_logp
    );

    let greedy = GenerationConfig {
        max_new_tokens: want.greedy.len(),
        sampling: Sampling::Greedy,
        seed: 0,
        stop_tokens: Vec::new(),
    };
    let continuation = generate(model, &want.input_ids, &greedy, |_| Ok(true)).unwrap();
    assert_eq!(
        continuation,
        want.greedy,
        "{}: greedy continuation",
        path.display()
    );
}

#[test]
fn qwen2_matches_transformers_from_safetensors_and_gguf() {
    let dir = fixture("hf-tiny-qwen2");
    check_against_transformers(&dir, &dir, Family::Qwen2);
    check_against_transformers(&dir.join("model.f32.gguf"), &dir, Family::Qwen2);
}

#[test]
fn qwen3_matches_transformers_from_safetensors_and_gguf() {
    let dir = fixture("hf-tiny-qwen3");
    check_against_transformers(&dir, &dir, Family::Qwen3);
    check_against_transformers(&dir.join("model.f32.gguf"), &dir, Family::Qwen3);
}

#[test]
fn mistral_matches_transformers_from_safetensors_and_gguf() {
    let dir = fixture("hf-tiny-mistral");
    check_against_transformers(&dir, &dir, Family::Mistral);
    // llama.cpp writes Mistral as architecture `llama`: the same computation.
    check_against_transformers(&dir.join("model.f32.gguf"), &dir, Family::Llama);
}

#[test]
fn each_family_saves_its_own_config_and_reloads_to_identical_logits() {
    let device = Device::flex();
    for (name, model_type, architecture) in [
        ("hf-tiny-qwen2", "qwen2", "Qwen2ForCausalLM"),
        ("hf-tiny-qwen3", "qwen3", "Qwen3ForCausalLM"),
        ("hf-tiny-mistral", "mistral", "MistralForCausalLM"),
    ] {
        let loaded = load_pretrained(&fixture(name), &device).unwrap();
        let out = std::env::temp_dir().join(format!(
            "softalign-family-roundtrip-{name}-{}",
            std::process::id()
        ));
        save_pretrained(&loaded.model, &loaded.tokenizer, &out).unwrap();

        let written: Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap())
                .unwrap();
        assert_eq!(written["model_type"], model_type);
        assert_eq!(written["architectures"][0], architecture);
        // Every tensor transformers wrote is written back under its name, with its values.
        let original =
            softalign_model::WeightMap::read_safetensors(&fixture(name).join("model.safetensors"))
                .unwrap();
        let saved =
            softalign_model::WeightMap::read_safetensors(&out.join("model.safetensors")).unwrap();
        for (tensor, values) in &original.tensors {
            assert_eq!(
                &saved.tensors[tensor].data, &values.data,
                "{name}: {tensor}"
            );
        }

        let reloaded = load_pretrained(&out, &device).unwrap();
        assert_eq!(reloaded.model.config, loaded.model.config, "{name}");
        let input = tokens(&expected(&fixture(name)).input_ids, &device);
        assert_eq!(
            to_vec(loaded.model.forward(input.clone())),
            to_vec(reloaded.model.forward(input)),
            "{name}"
        );
        std::fs::remove_dir_all(&out).unwrap();
    }
}

/// A one-block Mistral with a sliding window of `window` keys.
fn windowed(window: Option<usize>) -> ModelConfig {
    ModelConfig {
        family: Family::Mistral,
        vocab_size: 40,
        hidden_size: 32,
        intermediate_size: 48,
        num_hidden_layers: 1,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        head_dim: 8,
        sliding_window: window,
        ..ModelConfig::smollm2_135m()
    }
}

/// With one block, the output at position `i` under a window of `w` keys depends only on tokens
/// `i − w + 1 ..= i`, and (rotary embeddings being relative) equals the last output of that
/// sub-sequence run on its own. A window as long as the sequence is plain causal attention.
#[test]
fn mistral_sliding_window_sees_only_the_latest_keys() {
    let device = Device::flex();
    device.seed(7);
    let full = CausalLm::init(&windowed(None), &device);
    let with_window = |w| {
        let mut model = full.clone();
        model.config.sliding_window = Some(w);
        model
    };
    let ids: Vec<u32> = vec![3, 14, 15, 9, 26, 5, 35, 8, 9, 7];
    let vocab = 40;
    let logits = |model: &CausalLm, ids: &[u32]| to_vec(model.forward(tokens(ids, &device)));

    let all = logits(&full, &ids);
    assert_eq!(logits(&with_window(ids.len()), &ids), all);

    let window = 3;
    let windowed_logits = logits(&with_window(window), &ids);
    for i in window..ids.len() {
        let alone = logits(&full, &ids[i + 1 - window..=i]);
        let last = &alone[(window - 1) * vocab..];
        let err = max_abs_diff(&windowed_logits[i * vocab..(i + 1) * vocab], last);
        assert!(err <= 1e-5, "position {i}: {err}");
    }
    // The window changes what the later positions see.
    let late = (ids.len() - 1) * vocab;
    assert!(max_abs_diff(&windowed_logits[late..], &all[late..]) > 1e-3);

    // Untracked decoding with a KV cache takes the masked path too and agrees.
    let model = with_window(window);
    let mut cache = softalign_model::KvCache::new(&model);
    model.forward_cached(tokens(&ids[..4], &device), &mut cache);
    for (i, &id) in ids.iter().enumerate().skip(4) {
        let row = to_vec(model.forward_cached(tokens(&[id], &device), &mut cache));
        let err = max_abs_diff(&row, &windowed_logits[i * vocab..(i + 1) * vocab]);
        assert!(err <= 1e-5, "cached position {i}: {err}");
    }
}

#[test]
fn other_architectures_are_refused_by_name() {
    let refused = |model_type: &str| {
        let config = serde_json::json!({
            "model_type": model_type, "vocab_size": 10, "hidden_size": 8, "intermediate_size": 8,
            "num_hidden_layers": 1, "num_attention_heads": 2
        });
        ModelConfig::from_hf_json(&config, Path::new("config.json"))
            .unwrap_err()
            .to_string()
    };
    let err = refused("falcon");
    assert!(
        err.starts_with("config.json: model_type: falcon is not supported"),
        "{err}"
    );
    assert!(err.contains("gemma3_text") && err.contains("phi3"), "{err}");
    for (model_type, why) in [
        ("mixtral", "mixture-of-experts"),
        ("qwen3_moe", "mixture-of-experts"),
        ("deepseek_v3", "latent attention"),
        ("gemma3n", "Gemma 3n"),
        ("gemma3", "multimodal"),
    ] {
        let err = refused(model_type);
        assert!(err.contains(why), "{model_type}: {err}");
    }
}
