//! `softalign bench step --json`: one preference-training step of the SmolLM2-135M shape, its
//! JSON object as scripts read it (the keys of `scripts/pytorch-train-step.py --json` and more),
//! for a full fine-tune and for LoRA with gradient checkpointing. What is checked is the shape and
//! the consistency of the figures, never their size: speed is a benchmark, not a test.

mod common;

use common::{softalign, stderr};
use serde_json::Value;

/// Parameters of the SmolLM2-135M shape (tied head).
const SMOLLM2_PARAMS: u64 = 134_515_008;

fn bench_step(extra: &[&str]) -> Value {
    let mut args = vec!["bench", "step", "--steps", "1", "--json"];
    args.extend_from_slice(extra);
    let output = softalign(&args);
    assert!(output.status.success(), "{}", stderr(&output));
    let stdout = String::from_utf8(output.stdout).unwrap();
    let line = stdout.lines().last().expect("a JSON line");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

fn number(json: &Value, key: &str) -> f64 {
    json[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number in {json}"))
}

#[test]
fn a_full_fine_tune_step_reports_its_time_throughput_and_memory() {
    let json = bench_step(&[]);
    let step_s = number(&json, "step_s");
    assert!(step_s > 0.0 && number(&json, "update_s") > 0.0, "{json}");
    // 2 pairs × 256 tokens through the policy per step.
    let tokens_per_s = number(&json, "policy_tokens_per_s");
    assert!((tokens_per_s * step_s - 1024.0).abs() < 1e-6, "{json}");
    assert_eq!(json["params"].as_u64(), Some(SMOLLM2_PARAMS), "{json}");
    assert_eq!(json["trainable_params"], json["params"], "{json}");
    assert_eq!(json["lora_r"], Value::Null, "{json}");
    assert_eq!(json["gradient_checkpointing"], Value::Bool(false), "{json}");
    assert_eq!(json["device"], "cpu", "{json}");
    assert_eq!(json["peak_device_bytes"], Value::Null, "{json}");
    assert!(!json["cpu"].as_str().unwrap_or("").is_empty(), "{json}");
    // At least the policy, its gradients and two AdamW moments are resident at once.
    let peak_rss = json["peak_rss_bytes"].as_u64().expect("peak_rss_bytes");
    assert!(peak_rss >= 4 * 4 * SMOLLM2_PARAMS, "{json}");
}

#[test]
fn a_lora_step_trains_only_the_adapters() {
    let json = bench_step(&["--lora-r", "16", "--gradient-checkpointing"]);
    assert!(number(&json, "step_s") > 0.0, "{json}");
    assert_eq!(json["lora_r"].as_u64(), Some(16), "{json}");
    assert_eq!(json["gradient_checkpointing"], Value::Bool(true), "{json}");
    let params = json["params"].as_u64().expect("params");
    let trainable = json["trainable_params"].as_u64().expect("trainable_params");
    // Rank 16 on every linear layer of 30 blocks: (576+576)·16 for q and o, (576+192)·16 for k
    // and v, (576+1536)·16 for gate, up and down.
    let per_block = 16 * (2 * (576 + 576) + 2 * (576 + 192) + 3 * (576 + 1536));
    assert_eq!(trainable, 30 * per_block, "{json}");
    assert_eq!(params, SMOLLM2_PARAMS + trainable, "{json}");
}
