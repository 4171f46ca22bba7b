//! The families people download next, against transformers: Llama 3.1's rotary scaling,
//! Gemma 3 and Gemma 2 (four norms, GeGLU, scaled embeddings, sliding layers, soft-capping),
//! Phi-3 (fused projections) and Phi-3.5's LongRoPE with partial rotary embeddings, each from
//! its Hugging Face folder and, where llama.cpp converts it, its GGUF file.
//!
//! Fixtures: `../shared/golden/hf-tiny-{llama31,gemma3,phi3}` (see the README there) and
//! `tests/data/hf-tiny-{gemma2,phi3-longrope}`, made by `scripts/golden/device_references.py`
//! (transformers 5.17, float32, eager attention). Each holds transformers' logits, per-token
//! log-probabilities and greedy continuation of one text.

mod common;

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor};
use common::{flat_logits, golden, greedy, max_abs_diff, to_vec, token_ids, tokens};
use serde_json::Value;
use softalign_model::{Family, load_pretrained, next_token_logps, save_pretrained};

fn local(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

struct Expected {
    input_ids: Vec<u32>,
    logits: Vec<f32>,
    token_logps: Vec<f32>,
    greedy: Vec<u32>,
}

fn expected(folder: &Path) -> Expected {
    let text = std::fs::read_to_string(folder.join("expected_logits.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    Expected {
        input_ids: token_ids(&v["input_ids"]),
        logits: flat_logits(&v["logits"]),
        token_logps: v["token_logps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect(),
        greedy: token_ids(&v["greedy_next_12"]),
    }
}

/// Loads `source` and checks it against the expectations of `folder`: logits, per-token
/// log-probabilities (1e-3 relative), greedy continuation; returns the loaded model.
fn check(source: &Path, folder: &Path, family: Family) -> softalign_model::Pretrained {
    let device = Device::default();
    let want = expected(folder);
    let loaded =
        load_pretrained(source, &device).unwrap_or_else(|e| panic!("{}: {e}", source.display()));
    assert_eq!(loaded.model.config.family, family, "{}", source.display());
    let input = tokens(&want.input_ids, &device);
    let logits = loaded.model.forward(input.clone());
    let err = max_abs_diff(&to_vec(logits.clone()), &want.logits);
    let logps = to_vec(next_token_logps(logits, input.clone()));
    let fast = to_vec(loaded.model.next_token_logps(input));
    for (i, ((&got, &fused), &expected)) in
        logps.iter().zip(&fast).zip(&want.token_logps).enumerate()
    {
        let tolerance = 1e-3 * expected.abs().max(1.0);
        assert!(
            (got - expected).abs() <= tolerance && (fused - expected).abs() <= tolerance,
            "{}: token {i}: log p {got} (head path {fused}), transformers {expected}",
            source.display()
        );
    }
    eprintln!(
        "{}: max |logit − transformers| = {err:.2e}",
        source.display()
    );
    assert!(
        err <= 1e-3,
        "{}: max abs logit error {err}",
        source.display()
    );
    let continuation = greedy(&loaded.model, &want.input_ids, want.greedy.len(), &device);
    assert_eq!(
        continuation,
        want.greedy,
        "{}: greedy continuation",
        source.display()
    );
    loaded
}

/// Saves `loaded`, reloads it, and requires the same configuration and bit-identical logits.
fn round_trip(loaded: &softalign_model::Pretrained, ids: &[u32], name: &str) {
    let device = Device::default();
    let out = std::env::temp_dir().join(format!("softalign-{name}-{}", std::process::id()));
    save_pretrained(&loaded.model, &loaded.tokenizer, &out).unwrap();
    let reloaded = load_pretrained(&out, &device).unwrap();
    let a: Tensor<3> = loaded.model.forward(tokens(ids, &device));
    let b: Tensor<3> = reloaded.model.forward(tokens(ids, &device));
    assert_eq!(to_vec(a), to_vec(b), "{name}: logits after save and reload");
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn llama31_rope_scaling_matches_transformers_from_hf_and_gguf() {
    let folder = golden("hf-tiny-llama31");
    let hf = check(&folder, &folder, Family::Llama);
    let gguf = check(&folder.join("model.f32.gguf"), &folder, Family::Llama);
    let ids = expected(&folder).input_ids;
    round_trip(&hf, &ids, "llama31");
    // llama.cpp's divisors are written back as the llama3 scaling they came from.
    round_trip(&gguf, &ids, "llama31-gguf");
    let saved = std::env::temp_dir().join(format!("softalign-llama31-cfg-{}", std::process::id()));
    save_pretrained(&gguf.model, &gguf.tokenizer, &saved).unwrap();
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(saved.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["rope_parameters"]["rope_type"], "llama3");
    assert_eq!(
        config["rope_parameters"]["original_max_position_embeddings"],
        64
    );
    std::fs::remove_dir_all(&saved).unwrap();
}

#[test]
fn gemma3_matches_transformers_and_round_trips() {
    let folder = golden("hf-tiny-gemma3");
    let loaded = check(&folder, &folder, Family::Gemma3);
    let config = &loaded.model.config;
    assert_eq!(config.sliding_layers, Some(vec![true, true, false]));
    assert_eq!(config.rope_local_theta, Some(10_000.0));
    round_trip(&loaded, &expected(&folder).input_ids, "gemma3");
}

#[test]
fn gemma2_softcapping_matches_transformers_and_round_trips() {
    let folder = local("hf-tiny-gemma2");
    let loaded = check(&folder, &folder, Family::Gemma2);
    assert_eq!(loaded.model.config.attn_logit_softcapping, Some(5.0));
    assert_eq!(loaded.model.config.final_logit_softcapping, Some(8.0));
    round_trip(&loaded, &expected(&folder).input_ids, "gemma2");
}

#[test]
fn phi3_fused_projections_match_transformers_from_hf_and_gguf() {
    let folder = golden("hf-tiny-phi3");
    let hf = check(&folder, &folder, Family::Phi3);
    check(&folder.join("model.f32.gguf"), &folder, Family::Phi3);
    round_trip(&hf, &expected(&folder).input_ids, "phi3");
    // Saved fused, under transformers' names.
    let out = std::env::temp_dir().join(format!("softalign-phi3-names-{}", std::process::id()));
    save_pretrained(&hf.model, &hf.tokenizer, &out).unwrap();
    let names = |dir: &Path| {
        let w =
            softalign_model::WeightMap::read_safetensors(&dir.join("model.safetensors")).unwrap();
        let mut v: Vec<String> = w.tensors.keys().cloned().collect();
        v.sort();
        v
    };
    assert_eq!(names(&out), names(&folder));
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn phi3_longrope_with_partial_rotary_matches_transformers() {
    // 29 tokens past an original context of 16: the long factors and the attention factor
    // √(1 + ln 16 / ln 16) apply.
    let folder = local("hf-tiny-phi3-longrope");
    let loaded = check(&folder, &folder, Family::Phi3);
    assert_eq!(loaded.model.config.rotary_dim(), 8);
    round_trip(&loaded, &expected(&folder).input_ids, "phi3-longrope");
}

#[test]
fn a_non_finite_weight_is_refused_naming_the_tensor() {
    let folder = golden("hf-tiny-llama31");
    let out = std::env::temp_dir().join(format!("softalign-nan-weight-{}", std::process::id()));
    std::fs::create_dir_all(&out).unwrap();
    for file in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(folder.join(file), out.join(file)).unwrap();
    }
    let mut weights =
        softalign_model::WeightMap::read_safetensors(&folder.join("model.safetensors")).unwrap();
    let name = "model.layers.1.self_attn.k_proj.weight";
    weights.tensors.get_mut(name).unwrap().data[5] = f32::NAN;
    let mut tensors: Vec<_> = weights.tensors.into_iter().collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    softalign_model::weights::write_safetensors(&out.join("model.safetensors"), &tensors).unwrap();
    let error = load_pretrained(&out, &Device::default())
        .unwrap_err()
        .to_string();
    assert!(
        error.contains(name) && error.contains("non-finite"),
        "{error}"
    );
    std::fs::remove_dir_all(&out).unwrap();
}
