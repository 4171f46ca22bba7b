//! The real K-quant model end to end: Gemma 3 270M in Q4_K_M (Q4_K, Q6_K, Q5_0, Q8_0 blocks,
//! SentencePiece vocabulary, llama.cpp's fixed sliding-layer pattern), fetched by
//! `scripts/fetch-gemma3.sh` into `.cache/models/` (not in CI: the test says so and passes when
//! the file is absent). The reference is transformers' float32 forward of the same file
//! de-quantized by its GGUF loader (`scripts/golden/gemma3_270m_reference.py`,
//! `tests/data/gemma3-270m-reference.json`).

mod common;

use std::path::Path;

use burn::tensor::Device;
use common::{greedy, to_vec, token_ids, tokens};
use serde_json::Value;
use softalign_model::{Family, load_pretrained};

#[test]
fn gemma3_270m_q4_k_m_scores_like_transformers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let file = root.join(".cache/models/gemma-3-270m-q4_k_m.gguf");
    if !file.exists() {
        eprintln!(
            "skipped: {} is absent (scripts/fetch-gemma3.sh fetches it)",
            file.display()
        );
        return;
    }
    let device = Device::default();
    let started = std::time::Instant::now();
    let loaded = load_pretrained(&file, &device).unwrap();
    eprintln!("loaded in {:.1} s", started.elapsed().as_secs_f64());
    let config = &loaded.model.config;
    assert_eq!(config.family, Family::Gemma3);
    assert_eq!(config.num_hidden_layers, 18);
    assert_eq!(config.head_dim, 256);
    let reference: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/gemma3-270m-reference.json"),
        )
        .unwrap(),
    )
    .unwrap();
    for case in reference["cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let want_ids = token_ids(&case["input_ids"]);
        // Gemma expects BOS first; the vocabulary's add_bos_token says so.
        let mut ids = loaded.tokenizer.encode(text).unwrap();
        if ids.first() != config.bos_token_id.as_ref() {
            ids.insert(0, config.bos_token_id.unwrap());
        }
        assert_eq!(ids, want_ids, "{text:?}: token ids");
        let got = to_vec(loaded.model.next_token_logps(tokens(&ids, &device)));
        let want: Vec<f32> = case["token_logps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        let mean = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .sum::<f32>()
            / want.len() as f32;
        let worst = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        eprintln!("{text:?}: mean |Δ log p| {mean:.2e}, max {worst:.2e}");
        assert!(mean <= 0.02, "{text:?}: mean |Δ log p| {mean}");

        let want_greedy = token_ids(&case["greedy_next_8"]);
        let got_greedy = greedy(&loaded.model, &ids, want_greedy.len(), &device);
        assert_eq!(got_greedy, want_greedy, "{text:?}: greedy");
    }
}
