//! The real-client check: a tiny Llama saved by transformers 5.24 (`save_pretrained`) with
//! transformers' own logits, from ../shared/golden/hf-tiny-llama (see the README there).
//! The loader, tokenizer and forward pass must reproduce them; the KV-cache path and a
//! save/load round trip must agree with the full forward pass.

use std::path::{Path, PathBuf};

mod common;

use burn::tensor::Device;
use common::{max_abs_diff, to_vec, tokens};
use serde_json::Value;
use softalign_model::{KvCache, load_pretrained, next_token_logps, save_pretrained};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/golden/hf-tiny-llama")
}

struct Expected {
    text: String,
    input_ids: Vec<u32>,
    logits: Vec<Vec<f32>>,
    sum_logp: f64,
}

fn expected() -> Expected {
    let text = std::fs::read_to_string(fixture().join("expected_logits.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    Expected {
        text: v["text"].as_str().unwrap().to_string(),
        input_ids: v["input_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect(),
        logits: v["logits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| {
                row.as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap() as f32)
                    .collect()
            })
            .collect(),
        sum_logp: v["sum_logp_next_tokens"].as_f64().unwrap(),
    }
}

#[test]
fn tokenizer_and_logits_match_transformers() {
    let device = Device::default();
    let want = expected();
    let loaded = load_pretrained(&fixture(), &device).unwrap();
    assert_eq!(loaded.model.config.rope_theta, 50000.0);
    assert!(!loaded.model.config.tie_word_embeddings);

    let ids = loaded.tokenizer.encode(&want.text).unwrap();
    assert_eq!(ids, want.input_ids, "tokenizer.json encodes differently");
    assert_eq!(loaded.tokenizer.decode(&ids, true).unwrap(), want.text);

    let input = tokens(&ids, &device);
    let logits = loaded.model.forward(input.clone());
    let got = to_vec(logits.clone());
    let flat: Vec<f32> = want.logits.concat();
    let err = max_abs_diff(&got, &flat);
    eprintln!("max |logit − transformers| = {err:.3e}");
    assert!(err <= 1e-4, "max abs logit error {err}");

    let sum_logp: f32 = to_vec(next_token_logps(logits, input)).iter().sum();
    eprintln!("sum logp {sum_logp} (transformers {})", want.sum_logp);
    assert!(
        (sum_logp as f64 - want.sum_logp).abs() <= 1e-3,
        "{sum_logp}"
    );
}

#[test]
fn kv_cache_decoding_matches_the_full_forward_pass() {
    let device = Device::default();
    let want = expected();
    let loaded = load_pretrained(&fixture(), &device).unwrap();
    let model = &loaded.model;
    let ids = &want.input_ids;
    let mut cache = KvCache::new(model);
    // A prefill of five tokens, then one at a time.
    let first = to_vec(model.forward_cached(tokens(&ids[..5], &device), &mut cache));
    assert!(max_abs_diff(&first, &want.logits[4]) <= 1e-4);
    for (i, &id) in ids.iter().enumerate().skip(5) {
        let row = to_vec(model.forward_cached(tokens(&[id], &device), &mut cache));
        let err = max_abs_diff(&row, &want.logits[i]);
        assert!(err <= 1e-4, "position {i}: {err}");
    }
    assert_eq!(cache.len(), ids.len());
}

#[test]
fn saved_folder_reloads_with_identical_logits_and_transformers_names() {
    let device = Device::default();
    let want = expected();
    let loaded = load_pretrained(&fixture(), &device).unwrap();
    let out =
        std::env::temp_dir().join(format!("softalign-model-roundtrip-{}", std::process::id()));
    save_pretrained(&loaded.model, &loaded.tokenizer, &out).unwrap();

    // Same tensor names, shapes and values as transformers wrote.
    let names = |dir: &Path| {
        let w =
            softalign_model::WeightMap::read_safetensors(&dir.join("model.safetensors")).unwrap();
        let mut v: Vec<(String, Vec<usize>)> = w
            .tensors
            .iter()
            .map(|(k, t)| (k.clone(), t.shape.clone()))
            .collect();
        v.sort();
        (v, w)
    };
    let (original_names, original) = names(&fixture());
    let (saved_names, saved) = names(&out);
    assert_eq!(saved_names, original_names);
    for (name, tensor) in &original.tensors {
        assert_eq!(&saved.tensors[name].data, &tensor.data, "{name}");
    }

    let reloaded = load_pretrained(&out, &device).unwrap();
    assert_eq!(reloaded.model.config, loaded.model.config);
    let ids = reloaded.tokenizer.encode(&want.text).unwrap();
    assert_eq!(ids, want.input_ids);
    let a = to_vec(loaded.model.forward(tokens(&ids, &device)));
    let b = to_vec(reloaded.model.forward(tokens(&ids, &device)));
    assert_eq!(a, b);
    std::fs::remove_dir_all(&out).unwrap();
}
