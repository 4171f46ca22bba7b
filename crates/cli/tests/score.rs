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
