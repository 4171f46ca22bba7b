//! Adapters whose values would make every output NaN, or silently wrong, are refused at load:
//! a non-finite number in any adapter tensor (named), and a `lora_alpha` whose scale α/r is not
//! a finite, sane factor. The golden PEFT adapter (`../shared/golden/peft-tiny-lora`) is copied
//! and edited here.

use std::path::{Path, PathBuf};

mod common;

use burn::tensor::Device;
use common::golden;
use serde_json::Value;
use softalign_model::lora::{ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE};
use softalign_model::weights::write_safetensors;
use softalign_model::{CausalLm, WeightMap, load_adapter, load_pretrained};

fn fixture() -> PathBuf {
    golden("peft-tiny-lora")
}

fn base() -> CausalLm {
    load_pretrained(&fixture().join("base"), &Device::default())
        .unwrap()
        .model
}

/// A copy of the golden adapter in a fresh folder `name`.
fn copy_adapter(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("softalign-adapter-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for file in [ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE] {
        std::fs::copy(fixture().join("adapter").join(file), dir.join(file)).unwrap();
    }
    dir
}

/// Sets element `index` of tensor `tensor` in the adapter at `dir` to `value`.
fn poison(dir: &Path, tensor: &str, index: usize, value: f32) {
    let path = dir.join(ADAPTER_WEIGHTS_FILE);
    let mut weights = WeightMap::read_safetensors(&path).unwrap();
    weights.tensors.get_mut(tensor).unwrap().data[index] = value;
    let mut tensors: Vec<_> = weights.tensors.into_iter().collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    write_safetensors(&path, &tensors).unwrap();
}

fn edit_config(dir: &Path, edit: impl FnOnce(&mut Value)) {
    let path = dir.join(ADAPTER_CONFIG_FILE);
    let mut config: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut config);
    std::fs::write(&path, serde_json::to_string(&config).unwrap()).unwrap();
}

#[test]
fn a_non_finite_value_in_any_adapter_tensor_is_refused_naming_the_tensor() {
    let a = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight";
    let b = "base_model.model.model.layers.1.mlp.down_proj.lora_B.weight";
    for (case, tensor, index, value) in [
        ("nan-a", a, 5, f32::NAN),
        ("inf-b", b, 0, f32::INFINITY),
        ("neg-inf-b", b, 7, f32::NEG_INFINITY),
    ] {
        let dir = copy_adapter(case);
        // The unedited copy loads: the refusal below is the poisoned value's.
        load_adapter(base(), &dir).unwrap();
        poison(&dir, tensor, index, value);
        let error = load_adapter(base(), &dir).unwrap_err().to_string();
        assert!(
            error.contains(tensor) && error.contains("non-finite"),
            "{case}: {error}"
        );
        assert!(
            error.contains(ADAPTER_WEIGHTS_FILE),
            "{case}: names the file: {error}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn a_lora_alpha_whose_scale_is_not_a_sane_finite_factor_is_refused() {
    // r is 4: α 1e308 gives a scale that overflows f32 (every output NaN); α 1e6 a scale of
    // 250,000, past the bound of 10,000 (`lora::MAX_LORA_SCALE`).
    for (case, alpha) in [
        ("huge", Value::from(1e308)),
        ("past-bound", Value::from(1e6)),
        ("negative", Value::from(-8)),
        ("zero", Value::from(0)),
    ] {
        let dir = copy_adapter(&format!("alpha-{case}"));
        edit_config(&dir, |c| c["lora_alpha"] = alpha.clone());
        let error = load_adapter(base(), &dir).unwrap_err().to_string();
        assert!(
            error.contains("lora_alpha") && error.contains(ADAPTER_CONFIG_FILE),
            "{case}: {error}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
    // The largest allowed scale still loads.
    let dir = copy_adapter("alpha-at-bound");
    edit_config(&dir, |c| c["lora_alpha"] = Value::from(40_000));
    load_adapter(base(), &dir).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
