//! `softalign score` on every golden model fixture: the per-token log-probabilities sum to
//! transformers' `sum_logp_next_tokens`, the JSON has the documented fields, and bad input is one
//! line with exit status 2.

mod common;

use std::path::{Path, PathBuf};

use common::{dir, softalign, stderr};
use serde_json::Value;

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/golden")
        .join(name)
}

fn expected(folder: &Path) -> Value {
    let file = if folder.join("expected_logits.json").exists() {
        folder.join("expected_logits.json")
    } else {
        folder.join("base/expected_logits.json")
    };
    serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap()
}

/// Scores the golden text of `folder` with `model` and checks it against transformers' figures.
fn check(model: &Path, folder: &Path) {
    let want = expected(folder);
    let text = want["text"].as_str().unwrap();
    let output = softalign(&[
        "score",
        "--model",
        model.to_str().unwrap(),
        "--text",
        text,
        "--json",
    ]);
    assert!(
        output.status.success(),
        "{}: {}",
        model.display(),
        stderr(&output)
    );
    let got: Value = serde_json::from_slice(&output.stdout).unwrap();
    let scored = &got["texts"][0];
    assert_eq!(scored["text"], want["text"]);
    assert_eq!(
        scored["input_ids"],
        want["input_ids"],
        "{}",
        model.display()
    );
    let n = want["input_ids"].as_array().unwrap().len();
    assert_eq!(scored["tokens"], n);
    let logps: Vec<f64> = scored["token_logps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(logps.len(), n - 1);
    assert!(logps.iter().all(|&l| l <= 0.0));
    let sum = scored["sum_logp"].as_f64().unwrap();
    assert!((sum - logps.iter().sum::<f64>()).abs() < 1e-9);
    if let Some(reference) = want["token_logps"].as_array() {
        for (i, (got, want)) in logps.iter().zip(reference).enumerate() {
            let want = want.as_f64().unwrap();
            assert!(
                (got - want).abs() <= 1e-3 * want.abs().max(1.0),
                "{}: token {i}: {got} vs transformers {want}",
                model.display()
            );
        }
    }
    if let Some(reference) = want["sum_logp_next_tokens"].as_f64() {
        assert!(
            (sum - reference).abs() <= 1e-3,
            "{}: {sum} vs transformers {reference}",
            model.display()
        );
    }
    let perplexity = scored["perplexity"].as_f64().unwrap();
    assert!((perplexity - (-sum / (n - 1) as f64).exp()).abs() < 1e-9 * perplexity);
}

#[test]
fn scores_every_fixture_like_transformers() {
    for name in [
        "hf-tiny-llama",
        "hf-tiny-qwen2",
        "hf-tiny-qwen3",
        "hf-tiny-mistral",
        "hf-tiny-llama31",
        "hf-tiny-gemma3",
        "hf-tiny-phi3",
    ] {
        let folder = golden(name);
        check(&folder, &folder);
        let gguf = folder.join("model.f32.gguf");
        if gguf.exists() {
            check(&gguf, &folder);
        }
    }
    let peft_base = golden("peft-tiny-lora/base");
    check(&peft_base, &peft_base);
    // Fixtures made by scripts/golden/device_references.py (Gemma 2 soft-capping, Phi-3.5
    // LongRoPE with partial rotary).
    for name in ["hf-tiny-gemma2", "hf-tiny-phi3-longrope"] {
        let folder = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../model/tests/data")
            .join(name);
        check(&folder, &folder);
    }
}

#[test]
fn a_file_of_texts_is_scored_line_by_line_and_bad_lines_are_named() {
    let scratch = dir("score-file");
    let model = golden("hf-tiny-qwen2");
    let file = scratch.join("texts.jsonl");
    std::fs::write(&file, "{\"text\": \"Soft labels\"}\n\n{\"text\": \"x\"}\n").unwrap();
    let output = softalign(&[
        "score",
        "--model",
        model.to_str().unwrap(),
        "--file",
        file.to_str().unwrap(),
        "--json",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let got: Value = serde_json::from_slice(&output.stdout).unwrap();
    let texts = got["texts"].as_array().unwrap();
    assert_eq!(texts.len(), 2);
    assert_eq!(texts[0]["text"], "Soft labels");
    // One token predicts nothing: no log-probabilities and no perplexity.
    assert_eq!(texts[1]["tokens"], 1);
    assert_eq!(texts[1]["perplexity"], Value::Null);

    std::fs::write(&file, "{\"text\": \"ok\"}\n{\"txt\": \"typo\"}\n").unwrap();
    let output = softalign(&[
        "score",
        "--model",
        model.to_str().unwrap(),
        "--file",
        file.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert_eq!(message.lines().count(), 1, "{message}");
    assert!(
        message.contains("texts.jsonl:2: text: missing"),
        "{message}"
    );
}

/// With `--adapter`, the scores are those of base + adapter: the sum of the log-softmax of peft's
/// own logits (`expected_logits_with_adapter.json`) at the next tokens.
#[test]
fn an_adapter_is_applied_before_scoring() {
    let folder = golden("peft-tiny-lora");
    let want: Value = serde_json::from_str(
        &std::fs::read_to_string(folder.join("expected_logits_with_adapter.json")).unwrap(),
    )
    .unwrap();
    let ids: Vec<usize> = want["input_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let rows = want["logits"].as_array().unwrap();
    let mut expected = 0.0f64;
    for (i, &next) in ids.iter().enumerate().skip(1) {
        let row: Vec<f64> = rows[i - 1]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let max = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let log_norm = max + row.iter().map(|x| (x - max).exp()).sum::<f64>().ln();
        expected += row[next] - log_norm;
    }
    let output = softalign(&[
        "score",
        "--model",
        folder.join("base").to_str().unwrap(),
        "--adapter",
        folder.join("adapter").to_str().unwrap(),
        "--text",
        want["text"].as_str().unwrap(),
        "--json",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let got: Value = serde_json::from_slice(&output.stdout).unwrap();
    let sum = got["texts"][0]["sum_logp"].as_f64().unwrap();
    assert!((sum - expected).abs() <= 1e-3, "{sum} vs peft {expected}");
    // The adapter changes the scores: the base alone gives another sum.
    let base = expected_base_sum(&folder);
    assert!(
        (sum - base).abs() > 1e-3,
        "adapter had no effect: {sum} vs {base}"
    );
}

fn expected_base_sum(folder: &Path) -> f64 {
    let output = softalign(&[
        "score",
        "--model",
        folder.join("base").to_str().unwrap(),
        "--text",
        expected(&folder.join("base"))["text"].as_str().unwrap(),
        "--json",
    ]);
    let got: Value = serde_json::from_slice(&output.stdout).unwrap();
    got["texts"][0]["sum_logp"].as_f64().unwrap()
}

fn sum_logp(model: &Path, quantize: &str) -> f64 {
    let output = softalign(&[
        "score",
        "--model",
        model.to_str().unwrap(),
        "--quantize",
        quantize,
        "--text",
        "The quick brown fox jumps over the lazy dog.",
        "--json",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let json: Value = serde_json::from_slice(&output.stdout).unwrap();
    json["texts"][0]["sum_logp"].as_f64().unwrap()
}

#[test]
fn quantize_keeps_scores_near_the_f32_model_and_rejects_unknown_formats() {
    let model = golden("hf-tiny-llama");
    let f32_score = sum_logp(&model, "none");
    // Q8_0 rounds each weight to 1/254 of its block's range: the score moves, a little.
    let q8 = sum_logp(&model, "q8_0");
    assert!(
        q8 != f32_score,
        "q8_0 changed nothing: the weights were not quantized"
    );
    assert!(
        (q8 - f32_score).abs() < 0.01 * f32_score.abs(),
        "q8_0 {q8} vs f32 {f32_score}"
    );
    let q4 = sum_logp(&model, "q4_0");
    assert!(
        (q4 - f32_score).abs() < 0.1 * f32_score.abs(),
        "q4_0 {q4} vs f32 {f32_score}"
    );
    // The tiny model's widths (64, 96) are not whole Q4_K super-blocks of 256: they stay f32.
    assert_eq!(sum_logp(&model, "q4_k"), f32_score);
    // A GGUF's f32 linear weights are quantized at load too.
    let gguf = golden("hf-tiny-llama31").join("model.f32.gguf");
    assert!(sum_logp(&gguf, "q8_0").is_finite());

    let bad = softalign(&[
        "score",
        "--model",
        model.to_str().unwrap(),
        "--quantize",
        "q3_x",
        "--text",
        "hi",
    ]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("--quantize"), "{}", stderr(&bad));
}

#[test]
fn bench_generate_reports_prefill_and_decode_on_quantized_weights() {
    let gguf = golden("hf-tiny-llama31").join("model.f32.gguf");
    let output = softalign(&[
        "bench",
        "generate",
        "--model",
        gguf.to_str().unwrap(),
        "--quantize",
        "q8_0",
        "--prompt-tokens",
        "16",
        "--tokens",
        "4",
        "--repeats",
        "1",
        "--json",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let json: Value = serde_json::from_slice(&output.stdout).unwrap();
    for key in ["prefill_tokens_per_s", "decode_tokens_per_s"] {
        assert!(json[key].as_f64().unwrap() > 0.0, "{key}: {json}");
    }
    assert!(json["peak_rss_bytes"].as_u64().is_some());
    assert!(json["cpu"].as_str().is_some() && json["device"] == "cpu");
    // Every linear weight of the 2-layer model (7 per block) stays quantized.
    assert_eq!(json["quantized_weights"], 14);
}
