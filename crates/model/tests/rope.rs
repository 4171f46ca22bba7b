//! Rotary scalings against transformers' own tables: `tests/data/rope_references.json`, made by
//! `scripts/golden/device_references.py` (transformers 5.17, `LlamaRotaryEmbedding` /
//! `Phi3RotaryEmbedding`, float32): for each scaling and two sequence lengths, the inverse
//! frequencies, the attention factor, and cos/sin at a few positions.

use std::path::Path;

use serde_json::{Map, Value, json};
use softalign_model::Rope;

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[test]
fn every_scaling_matches_transformers_tables() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/rope_references.json");
    let refs: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let cases = refs["cases"].as_object().unwrap();
    for name in [
        "default",
        "linear",
        "dynamic",
        "llama3",
        "yarn",
        "yarn_mscale",
        "yarn_attention_factor",
        "longrope_partial",
    ] {
        let case = &cases[name];
        let params = case["rope_parameters"].as_object().unwrap();
        // The config the reference was built from: transformers' class defaults, then the
        // extra keys (max_position_embeddings; Phi3Config's original context of 4096).
        let mut config: Map<String, Value> = Map::new();
        config.insert("max_position_embeddings".into(), json!(2048));
        if name.starts_with("longrope") {
            config.insert("max_position_embeddings".into(), json!(4096));
            config.insert("original_max_position_embeddings".into(), json!(4096));
        }
        for (k, v) in case["extra"].as_object().unwrap() {
            config.insert(k.clone(), v.clone());
        }
        let rope = Rope::from_hf_json(Some(params), 10_000.0, &config, "rope_parameters")
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        let partial = params
            .get("partial_rotary_factor")
            .and_then(Value::as_f64)
            .unwrap_or(1.0);
        let dim = (16.0 * partial) as usize;
        let max_positions = config["max_position_embeddings"].as_u64().unwrap() as usize;
        for table in case["tables"].as_array().unwrap() {
            let len = table["len"].as_u64().unwrap() as usize;
            let got = rope.frequencies(dim, len, max_positions);
            let want_inv = floats(&table["inv_freq"]);
            assert_eq!(got.inv_freq.len(), want_inv.len(), "{name}");
            for (i, (&g, &w)) in got.inv_freq.iter().zip(&want_inv).enumerate() {
                let rel = (g as f64 - w).abs() / w.abs();
                assert!(rel <= 1e-6, "{name} len {len}: inv_freq[{i}] {g} vs {w}");
            }
            let factor = table["attention_scaling"].as_f64().unwrap();
            assert!(
                (got.attention_factor as f64 - factor).abs() <= 1e-6,
                "{name} len {len}: attention factor {} vs {factor}",
                got.attention_factor
            );
            let positions = table["positions"].as_array().unwrap();
            for (row, position) in positions.iter().enumerate() {
                let p = position.as_u64().unwrap() as f32;
                for (which, want) in [("cos", &table["cos"][row]), ("sin", &table["sin"][row])] {
                    for (i, w) in floats(want).iter().enumerate() {
                        let angle = p * got.inv_freq[i];
                        let g = if which == "cos" {
                            angle.cos()
                        } else {
                            angle.sin()
                        } * got.attention_factor;
                        assert!(
                            (g as f64 - w).abs() <= 2e-5,
                            "{name} len {len}: {which}[{p}][{i}] {g} vs {w}"
                        );
                    }
                }
            }
        }
    }
}
