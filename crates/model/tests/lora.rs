//! LoRA against PEFT's own files: `../shared/golden/peft-tiny-lora` holds a tiny Llama, an
//! adapter PEFT 0.21 wrote (r 4, α 8, q/v/down projections, non-zero B) and the logits PEFT
//! computes with it. Loading, saving, merging and refusing adapters are checked against them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

mod common;

use burn::tensor::Device;
use common::{flat_logits, max_abs_diff, to_vec, token_ids, tokens};
use serde_json::Value;
use softalign_model::lora::{ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, LoraConfig};
use softalign_model::{CausalLm, load_adapter, load_pretrained, save_adapter, save_pretrained};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/golden/peft-tiny-lora")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("softalign-lora-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

struct Expected {
    input_ids: Vec<u32>,
    logits: Vec<f32>,
}

fn expected(file: &Path) -> Expected {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    Expected {
        input_ids: token_ids(&v["input_ids"]),
        logits: flat_logits(&v["logits"]),
    }
}

fn logits(model: &CausalLm, ids: &[u32]) -> Vec<f32> {
    let device = model.embed_tokens.val().device();
    to_vec(model.forward(tokens(ids, &device)))
}

fn base() -> CausalLm {
    load_pretrained(&fixture().join("base"), &Device::default())
        .unwrap()
        .model
}

fn adapted() -> CausalLm {
    load_adapter(base(), &fixture().join("adapter")).unwrap()
}

#[test]
fn a_peft_adapter_reproduces_peft_logits() {
    let want = expected(&fixture().join("expected_logits_with_adapter.json"));
    let got = logits(&adapted(), &want.input_ids);
    let diff = max_abs_diff(&got, &want.logits);
    assert!(diff < 1e-4, "max |Δlogit| {diff} against peft");
    // The adapter matters: the base alone is far from peft's adapted logits.
    let without = logits(&base(), &want.input_ids);
    assert!(max_abs_diff(&without, &want.logits) > 1e-2);
    let config = adapted().lora_config().unwrap();
    assert_eq!(config.r, 4);
    assert_eq!(config.alpha, 8.0);
    assert_eq!(config.targets, ["q_proj", "v_proj", "down_proj"]);
}

/// Name → shape of a safetensors file.
fn shapes(file: &Path) -> BTreeMap<String, Vec<usize>> {
    let bytes = std::fs::read(file).unwrap();
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    tensors
        .tensors()
        .into_iter()
        .map(|(name, view)| (name, view.shape().to_vec()))
        .collect()
}

fn json(file: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap()
}

#[test]
fn a_saved_adapter_has_peft_names_shapes_and_config_and_loads_back_to_the_same_logits() {
    let model = adapted();
    let out = temp_dir("save");
    save_adapter(&model, &out, "golden/base").unwrap();
    let peft = fixture().join("adapter");
    assert_eq!(
        shapes(&out.join(ADAPTER_WEIGHTS_FILE)),
        shapes(&peft.join(ADAPTER_WEIGHTS_FILE))
    );
    let (ours, theirs) = (
        json(&out.join(ADAPTER_CONFIG_FILE)),
        json(&peft.join(ADAPTER_CONFIG_FILE)),
    );
    for (key, value) in ours.as_object().unwrap() {
        assert!(theirs.get(key).is_some(), "{key} is not a key PEFT writes");
        if !["base_model_name_or_path", "peft_version"].contains(&key.as_str()) {
            assert_eq!(value, &theirs[key], "{key}");
        }
    }
    assert_eq!(ours["base_model_name_or_path"], "golden/base");
    let ids = expected(&fixture().join("expected_logits_with_adapter.json")).input_ids;
    let reloaded = load_adapter(base(), &out).unwrap();
    assert_eq!(logits(&reloaded, &ids), logits(&model, &ids));
    assert!(!softalign_durable::temporary_path(&out).exists());
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn the_merged_model_computes_the_adapted_logits() {
    let model = adapted();
    let ids = expected(&fixture().join("expected_logits_with_adapter.json")).input_ids;
    let want = logits(&model, &ids);
    let merged = model.merge_adapters();
    assert!(!merged.has_adapters());
    let diff = max_abs_diff(&logits(&merged, &ids), &want);
    assert!(diff < 1e-5, "merged: max |Δlogit| {diff}");
    // Written in the Hugging Face layout and read back.
    let out = temp_dir("merged");
    let tokenizer = load_pretrained(&fixture().join("base"), &Device::default())
        .unwrap()
        .tokenizer;
    save_pretrained(&merged, &tokenizer, &out).unwrap();
    let reloaded = load_pretrained(&out, &Device::default()).unwrap().model;
    let diff = max_abs_diff(&logits(&reloaded, &ids), &want);
    assert!(diff < 1e-5, "merged and reloaded: max |Δlogit| {diff}");
    std::fs::remove_dir_all(&out).unwrap();
}

/// A copy of the golden adapter with its config edited by `edit`, loaded onto the base: the
/// error it must give.
fn load_edited(name: &str, edit: impl FnOnce(&mut Value)) -> String {
    load_with_config(name, edit).expect_err("the edited adapter is refused")
}

#[test]
fn adapters_that_do_not_fit_the_base_are_refused_naming_the_key() {
    for (key, value) in [
        ("use_dora", Value::Bool(true)),
        ("use_rslora", Value::Bool(true)),
        ("lora_bias", Value::Bool(true)),
        ("bias", Value::from("all")),
        ("peft_type", Value::from("IA3")),
    ] {
        let error = load_edited(key, |c| c[key] = value);
        assert!(error.contains(key), "{key}: {error}");
    }
    // A rank other than the tensors' names the first tensor whose shape does not fit.
    let error = load_edited("rank", |c| c["r"] = Value::from(8));
    assert!(
        error.contains("lora_A.weight") && error.contains("shape"),
        "{error}"
    );
    // Tensors for modules the config does not target.
    let error = load_edited("targets", |c| {
        c["target_modules"] = serde_json::json!(["q_proj", "down_proj"])
    });
    assert!(error.contains("v_proj.lora_A.weight"), "{error}");
    // Modules this model does not have.
    let error = load_edited("lm-head", |c| {
        c["target_modules"] = serde_json::json!(["q_proj", "lm_head"])
    });
    assert!(
        error.contains("target_modules") && error.contains("lm_head"),
        "{error}"
    );
}

fn tiny() -> softalign_model::ModelConfig {
    softalign_model::ModelConfig {
        vocab_size: 40,
        hidden_size: 16,
        intermediate_size: 24,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        head_dim: 4,
        ..softalign_model::ModelConfig::smollm2_135m()
    }
}

#[test]
fn new_adapters_leave_the_outputs_unchanged_and_only_they_get_gradients() {
    let device = Device::default().autodiff();
    device.seed(5);
    let model = CausalLm::init(&tiny(), &device);
    let ids = [3u32, 1, 4, 1, 5, 9, 2, 6];
    let before = logits(&model, &ids);
    let config = LoraConfig {
        targets: vec!["q_proj".into(), "up_proj".into()],
        ..LoraConfig::new(2)
    };
    let model = model.with_lora(&config, 7);
    assert_eq!(logits(&model, &ids), before, "B = 0: the update is zero");
    assert_eq!(model.lora_config().unwrap(), config);

    assert!(
        model.layers[0].self_attn.qkv[1].lora.is_none(),
        "k_proj is not targeted"
    );
    // With and without gradient checkpointing (whose recomputed blocks collect the gradients).
    for model in [
        model.clone(),
        model.with_gradient_checkpointing(true).unwrap(),
    ] {
        let (grads, ()) = model
            .next_token_logps_gradients(tokens(&ids, &device), |logps| {
                Ok::<_, std::convert::Infallible>((logps.sum(), ()))
            })
            .unwrap();
        let layer = &model.layers[0];
        let q = &layer.self_attn.qkv[0];
        let adapter = q.lora.as_ref().unwrap();
        assert!(grads.get::<2>(adapter.b.id).is_some(), "B gets a gradient");
        assert!(grads.get::<2>(adapter.a.id).is_some(), "A gets a gradient");
        assert!(
            grads.get::<2>(q.weight.dense().unwrap().id).is_none(),
            "no gradient for a frozen W"
        );
        assert!(grads.get::<2>(model.embed_tokens.id).is_none());
        assert!(grads.get::<1>(layer.attn_norm.weight.id).is_none());
    }
}

/// The golden adapter with its config edited by `edit`, loaded onto the base (Ok or the error).
fn load_with_config(name: &str, edit: impl FnOnce(&mut Value)) -> Result<CausalLm, String> {
    let dir = temp_dir(name);
    std::fs::create_dir_all(&dir).unwrap();
    let peft = fixture().join("adapter");
    std::fs::copy(
        peft.join(ADAPTER_WEIGHTS_FILE),
        dir.join(ADAPTER_WEIGHTS_FILE),
    )
    .unwrap();
    let mut config = json(&peft.join(ADAPTER_CONFIG_FILE));
    edit(&mut config);
    std::fs::write(
        dir.join(ADAPTER_CONFIG_FILE),
        serde_json::to_string(&config).unwrap(),
    )
    .unwrap();
    let loaded = load_adapter(base(), &dir).map_err(|e| e.to_string());
    std::fs::remove_dir_all(&dir).unwrap();
    loaded
}

#[test]
fn targets_written_as_full_module_paths_or_a_regex_load_as_peft_matches_them() {
    let want = expected(&fixture().join("expected_logits_with_adapter.json"));
    // peft 0.21 writes `all-linear` resolved to full module paths.
    let paths: Vec<String> = (0..2)
        .flat_map(|i| {
            [
                format!("model.layers.{i}.self_attn.q_proj"),
                format!("model.layers.{i}.self_attn.v_proj"),
                format!("model.layers.{i}.mlp.down_proj"),
            ]
        })
        .collect();
    let by_path =
        load_with_config("paths", |c| c["target_modules"] = serde_json::json!(paths)).unwrap();
    assert!(max_abs_diff(&logits(&by_path, &want.input_ids), &want.logits) < 1e-4);
    let by_regex = load_with_config("regex", |c| {
        c["target_modules"] =
            Value::from(r"model\.layers\.\d+\.(self_attn\.(q|v)_proj|mlp\.down_proj)")
    })
    .unwrap();
    assert!(max_abs_diff(&logits(&by_regex, &want.input_ids), &want.logits) < 1e-4);
    // exclude_modules is honoured: excluding a module whose tensors the file holds leaves them
    // unused, which is refused by name.
    let error = load_with_config("exclude", |c| {
        c["exclude_modules"] = serde_json::json!(["model.layers.1.mlp.down_proj"])
    })
    .err()
    .unwrap();
    assert!(error.contains("layers.1.mlp.down_proj.lora_A"), "{error}");
}

#[test]
fn a_phi3_adapter_is_one_lora_on_each_fused_projection_under_peft_names() {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/golden/hf-tiny-phi3");
    let device = Device::default();
    let loaded = load_pretrained(&folder, &device).unwrap();
    let model = loaded.model.clone().with_lora(&LoraConfig::new(2), 5);
    let names: Vec<&str> = model.linears().iter().map(|l| l.module).collect();
    assert_eq!(
        &names[..4],
        ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]
    );
    let out = temp_dir("phi3");
    save_adapter(&model, &out, "hf-tiny-phi3").unwrap();
    let weights =
        softalign_model::WeightMap::read_safetensors(&out.join(ADAPTER_WEIGHTS_FILE)).unwrap();
    let key = "base_model.model.model.layers.0.self_attn.qkv_proj.lora_B.weight";
    // B of the fused projection spans q, k and v: [4·16 + 2·4·16, r].
    assert_eq!(weights.tensors[key].shape, vec![192, 2]);
    let reloaded = load_adapter(loaded.model.clone(), &out).unwrap();
    assert_eq!(
        reloaded.lora_config().unwrap().targets.len(),
        9,
        "all-linear"
    );
    std::fs::remove_dir_all(&out).unwrap();
}
