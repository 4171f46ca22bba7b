//! LoRA training on a tiny model: only the adapters change (the base stays bitwise the same),
//! the loss decreases, a resumed run is bitwise identical to an uninterrupted one, a checkpoint
//! refuses another base, and the reference of the preference loss is the base itself (the same
//! tensor buffers, no second copy).

use std::path::{Path, PathBuf};

use burn::backend::{BackendTensor, DispatchTensor, DispatchTensorKind};
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use softalign_model::lora::{LoraAdapters, LoraConfig};
use softalign_model::{CausalLm, ModelConfig};
use softalign_optim::OptimizerKind;
use softalign_pref::PrefLoss;
use softalign_train::checkpoint::{checkpoint_name, list_checkpoints};
use softalign_train::demo::pairs::{encode_pair, label_pair};
use softalign_train::demo::seeded_model;
use softalign_train::demo::task::{self, PAD_ID, prompt_text};
use softalign_train::metrics::MetricRecord;
use softalign_train::{
    EncodedPair, LoopSettings, PreferenceObjective, ReferenceMode, Run, Schedule, train_loop,
};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("softalign-lora-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn tiny_config() -> ModelConfig {
    ModelConfig {
        hidden_size: 32,
        intermediate_size: 48,
        num_attention_heads: 2,
        num_key_value_heads: 1,
        head_dim: 16,
        ..task::model_config()
    }
}

fn settings(out: &Path, steps: usize) -> LoopSettings {
    LoopSettings {
        optimizer: OptimizerKind::Adopt,
        weight_decay: 0.0,
        schedule: Schedule {
            peak: 1e-2,
            warmup_steps: 1,
            total_steps: steps,
            min_ratio: 0.1,
        },
        batch_size: 4,
        grad_accum: 2,
        max_grad_norm: Some(1.0),
        eval_every: 0,
        eval_batch_size: 8,
        save_every: 3,
        keep_checkpoints: 10,
        seed: 3,
        out_dir: out.to_path_buf(),
        progress: false,
        label: "lora".into(),
        replicas: Default::default(),
    }
}

fn pair_data(n: usize) -> Vec<EncodedPair> {
    let tokenizer = task::tokenizer().unwrap();
    task::all_prompts()
        .into_iter()
        .step_by(1000 / n)
        .filter_map(|p| {
            let copy: String = prompt_text(&p).trim_end_matches('>').to_string();
            label_pair(&p, task::correct_answer(&p), copy)
        })
        .map(|pair| encode_pair(&tokenizer, &pair).unwrap())
        .collect()
}

fn lora() -> LoraConfig {
    LoraConfig {
        alpha: 16.0,
        ..LoraConfig::new(4)
    }
}

/// The base model (as a new process loading `--model` has it), with fresh adapters.
fn policy() -> CausalLm {
    let base = seeded_model(&tiny_config(), 11, &Device::default().autodiff()).unwrap();
    base.with_lora(&lora(), 0)
}

fn bits(model: &CausalLm) -> Vec<u32> {
    model
        .valid()
        .to_weights()
        .into_iter()
        .flat_map(|(_, t)| t.data.into_iter().map(f32::to_bits))
        .collect()
}

fn adapter_bits(adapters: &LoraAdapters) -> Vec<u32> {
    adapters
        .adapters
        .iter()
        .flat_map(|a| [a.a.val(), a.b.val()])
        .flat_map(|t| {
            t.into_data()
                .iter::<f32>()
                .map(f32::to_bits)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Address of the f32 buffer behind a plain (non-autodiff) flex tensor.
fn buffer_address<const D: usize>(tensor: Tensor<D>) -> usize {
    let DispatchTensor { kind, .. } = tensor.inner().into_dispatch();
    match kind {
        DispatchTensorKind::Flex(BackendTensor::Float(flex)) => {
            flex.storage::<f32>().as_ptr() as usize
        }
        _ => panic!("not a flex float tensor"),
    }
}

struct RunResult {
    model: CausalLm,
    reference: CausalLm,
    history: Vec<MetricRecord>,
}

fn run(out: &Path, steps: usize, resume: Option<&Path>, model: CausalLm) -> RunResult {
    let data = pair_data(40);
    let mut objective = PreferenceObjective::new(
        PrefLoss::gdpo(),
        &model.without_adapters(),
        ReferenceMode::OnTheFly,
        PAD_ID,
    );
    let s = settings(out, steps);
    let outcome = train_loop(
        model,
        Run {
            objective: &mut objective,
            train: &data,
            eval: &data[..8],
            settings: &s,
            resume,
            stop: None,
        },
    )
    .unwrap();
    RunResult {
        model: outcome.model,
        reference: objective.reference,
        history: outcome.history,
    }
}

fn train_losses(history: &[MetricRecord]) -> Vec<f64> {
    history
        .iter()
        .filter(|r| r.split == "train")
        .map(|r| r.get("loss").unwrap())
        .collect()
}

#[test]
fn lora_trains_the_adapters_only_and_resumes_bitwise() {
    let start = policy();
    let base_before = bits(&start.without_adapters());
    let adapters_before = adapter_bits(&start.adapters());

    let straight_dir = temp_dir("straight");
    let straight = run(&straight_dir, 8, None, policy());
    let model = &straight.model;
    assert!(model.has_adapters());
    assert_eq!(
        bits(&model.without_adapters()),
        base_before,
        "the base weights changed"
    );
    assert_ne!(adapter_bits(&model.adapters()), adapters_before);
    let losses = train_losses(&straight.history);
    let (first, last) = (
        losses[..2].iter().sum::<f64>(),
        losses[6..].iter().sum::<f64>(),
    );
    assert!(last < first, "loss did not decrease: {losses:?}");

    // The reference is the base itself: its tensors are the policy's, not a copy.
    assert_eq!(
        buffer_address(straight.reference.embed_tokens.val()),
        buffer_address(model.embed_tokens.val())
    );
    let (ours, theirs) = (
        &model.layers[1].mlp.down_proj,
        &straight.reference.layers[1].mlp.down_proj,
    );
    assert!(theirs.lora.is_none());
    assert_eq!(
        buffer_address(theirs.weight.dense().unwrap().val()),
        buffer_address(ours.weight.dense().unwrap().val())
    );

    // Checkpoints hold the adapters, not the base.
    let checkpoints = list_checkpoints(&straight_dir);
    let at_3 = straight_dir.join("checkpoints").join(checkpoint_name(3));
    assert_eq!(
        checkpoints.iter().map(|c| c.0).collect::<Vec<_>>(),
        [3, 6, 8]
    );
    let size = std::fs::metadata(at_3.join("model.bpk")).unwrap().len();
    let base_bytes = (base_before.len() * 4) as u64;
    assert!(
        size < base_bytes / 2,
        "checkpoint model file {size} B, base {base_bytes} B"
    );

    let resumed_dir = temp_dir("resumed");
    let resumed = run(&resumed_dir, 8, Some(&at_3), policy());
    assert!(
        adapter_bits(&resumed.model.adapters()) == adapter_bits(&model.adapters()),
        "adapters differ after resuming"
    );
    assert_eq!(resumed.history, straight.history);
    std::fs::remove_dir_all(&straight_dir).unwrap();
    std::fs::remove_dir_all(&resumed_dir).unwrap();
}

#[test]
fn a_lora_checkpoint_refuses_another_base_or_other_adapters() {
    let dir = temp_dir("refuse");
    run(&dir, 3, None, policy());
    let at_3 = dir.join("checkpoints").join(checkpoint_name(3));
    let data = pair_data(40);
    let attempt = |model: CausalLm| {
        let mut objective = PreferenceObjective::new(
            PrefLoss::gdpo(),
            &model.without_adapters(),
            ReferenceMode::Cached,
            PAD_ID,
        );
        let s = settings(&temp_dir("refuse-out"), 4);
        train_loop(
            model,
            Run {
                objective: &mut objective,
                train: &data,
                eval: &[],
                settings: &s,
                resume: Some(&at_3),
                stop: None,
            },
        )
        .map(|_| ())
        .unwrap_err()
        .to_string()
    };
    let other_base = seeded_model(&tiny_config(), 12, &Device::default().autodiff())
        .unwrap()
        .with_lora(&lora(), 0);
    let error = attempt(other_base);
    assert!(error.contains("another base model"), "{error}");
    let other_rank = seeded_model(&tiny_config(), 11, &Device::default().autodiff())
        .unwrap()
        .with_lora(&LoraConfig::new(2), 0);
    let error = attempt(other_rank);
    assert!(error.contains("r 4") && error.contains("r 2"), "{error}");
    let full = seeded_model(&tiny_config(), 11, &Device::default().autodiff()).unwrap();
    let error = attempt(full);
    assert!(error.contains("LoRA"), "{error}");
    std::fs::remove_dir_all(&dir).unwrap();
    let _ = std::fs::remove_dir_all(temp_dir("refuse-out"));
}

#[test]
fn lora_with_gradient_checkpointing_trains_like_without_and_resumes_bitwise() {
    let plain_dir = temp_dir("checkpointing-plain");
    let plain = run(&plain_dir, 6, None, policy());
    let recomputed_dir = temp_dir("checkpointing-recomputed");
    let checkpointed = || policy().with_gradient_checkpointing(true).unwrap();
    let recomputed = run(&recomputed_dir, 6, None, checkpointed());
    assert!(recomputed.model.gradient_checkpointing());

    let (a, b) = (
        train_losses(&plain.history),
        train_losses(&recomputed.history),
    );
    assert_eq!(a.len(), 6);
    for (step, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!(
            (x - y).abs() <= 1e-6,
            "step {}: loss {x} kept vs {y} recomputed",
            step + 1
        );
    }
    assert_eq!(
        bits(&recomputed.model.without_adapters()),
        bits(&plain.model.without_adapters()),
        "the checkpointed run changed the frozen base"
    );

    let resumed_dir = temp_dir("checkpointing-resumed");
    let at_3 = recomputed_dir.join("checkpoints").join(checkpoint_name(3));
    let resumed = run(&resumed_dir, 6, Some(&at_3), checkpointed());
    assert!(
        adapter_bits(&resumed.model.adapters()) == adapter_bits(&recomputed.model.adapters()),
        "adapters differ after resuming"
    );
    assert_eq!(resumed.history, recomputed.history);
    for dir in [plain_dir, recomputed_dir, resumed_dir] {
        std::fs::remove_dir_all(dir).unwrap();
    }
}
