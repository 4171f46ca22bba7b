//! The training-step benchmark behind `softalign bench step`: one preference-training step of
//! the SmolLM2-135M shape (random init; 30 blocks, width 576, FFN 1536, 9/3 heads, vocabulary
//! 49,152, tied head) — or another shape, with LoRA adapters and gradient checkpointing when
//! asked ([`StepSetup`]) — on 2 preference pairs of 256 tokens, i.e. 4 sequences of 256:
//!
//! - reference model: forward pass without gradients (sequence log-probabilities);
//! - policy: forward and backward of a DPO loss on the same sequences;
//! - then one AdamW update, timed separately: softalign's own (one fused pass per tensor on the
//!   CPU, one kernel on a cube GPU backend), as the trainer runs it.
//!
//! On the CPU the two pairs run as two shards on the thread pool, each on its own replica of the
//! policy, as the trainer runs a batch ([`crate::train_loop`]); on a GPU they run as one batch,
//! and every timed phase waits for the device to finish. The baseline is
//! `scripts/pytorch-train-step.py`, the same step in PyTorch eager with transformers; run both on
//! the same machine, back to back.

use std::convert::Infallible;
use std::time::Instant;

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::activation::log_sigmoid;
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use softalign_model::{CausalLm, LoraConfig, ModelConfig};
use softalign_optim::AdamWConfig;

/// Sequences per step: 2 pairs, chosen then rejected.
pub const SEQUENCES: usize = 4;
/// Tokens per sequence.
pub const LENGTH: usize = 256;
const BETA: f64 = 0.1;

/// Timings of one step.
#[derive(Debug, Clone, Copy)]
pub struct StepTiming {
    /// 0 for the warm-up step.
    pub step: usize,
    /// Reference forward, seconds.
    pub reference_s: f64,
    /// Policy forward and backward, seconds.
    pub policy_s: f64,
    /// Optimizer update, seconds.
    pub update_s: f64,
    /// The DPO loss of the step.
    pub loss: f32,
}

impl StepTiming {
    /// What `step_s` counts: reference forward plus policy forward and backward.
    pub fn step_s(&self) -> f64 {
        self.reference_s + self.policy_s
    }
}

/// The result of `softalign bench step` (its `--json` object).
#[derive(Debug, Clone, Serialize)]
pub struct StepBench {
    /// Median over the steps after the warm-up of reference forward + policy forward/backward.
    pub step_s: f64,
    /// Median optimizer (AdamW) update.
    pub update_s: f64,
    /// Tokens the policy trains on per second of `step_s`.
    pub policy_tokens_per_s: f64,
    /// Peak resident set size of the process so far (`VmHWM`), bytes; 0 where unknown.
    pub peak_rss_bytes: u64,
    /// The CPU model and its widest vector extensions.
    pub cpu: String,
    /// What ran the step: `cpu`, or the GPU adapter's name and backend.
    pub device: String,
    /// Peak bytes reserved on the GPU (its memory pools), when the step ran on one.
    pub peak_device_bytes: Option<u64>,
    /// Parameters of the model (adapters included).
    pub params: usize,
    /// Parameters that are trained.
    pub trainable_params: usize,
    /// LoRA rank, when adapters are trained.
    pub lora_r: Option<usize>,
    /// Whether activations were recomputed in the backward pass.
    pub gradient_checkpointing: bool,
}

/// What is trained in the benchmarked step.
#[derive(Debug, Clone, PartialEq)]
pub struct StepSetup {
    /// The model's shape (random weights).
    pub config: ModelConfig,
    /// Train LoRA adapters on the frozen model instead of every weight; the reference is then
    /// the same network without its adapters.
    pub lora: Option<LoraConfig>,
    /// Recompute activations in the backward pass.
    pub gradient_checkpointing: bool,
}

impl Default for StepSetup {
    /// Full fine-tuning of the SmolLM2-135M shape, activations kept.
    fn default() -> Self {
        Self {
            config: ModelConfig::smollm2_135m(),
            lora: None,
            gradient_checkpointing: false,
        }
    }
}

/// Runs a warm-up step and `steps` timed steps on `device` (an autodiff device is made of it),
/// calling `progress` after each, and returns the medians.
pub fn bench_step(
    steps: usize,
    device: &Device,
    setup: &StepSetup,
    mut progress: impl FnMut(&StepTiming),
) -> StepBench {
    let steps = steps.max(1);
    let config = setup.config.clone();
    let plain = device.clone();
    let device = plain.clone().autodiff();
    device.seed(0);
    let mut policy = CausalLm::init(&config, &device);
    if let Some(lora) = &setup.lora {
        policy = policy.with_lora(lora, 0);
    }
    policy = policy
        .with_gradient_checkpointing(setup.gradient_checkpointing)
        .expect("the benchmark's adapters have no dropout");
    let trainable_params = trainable_params(&policy);
    // With adapters the reference is the base itself (the policy's tensors, no copy).
    let reference = if policy.has_adapters() {
        policy.without_adapters().valid()
    } else {
        policy.valid()
    };
    let tokens = random_tokens(&config, &plain);
    let tracked_tokens = random_tokens(&config, &device);
    let mut optimizer = AdamWConfig::new().init();
    let mut timings = Vec::with_capacity(steps);
    // On the CPU one shard per pair (both cores busy, as the trainer's shards); elsewhere one.
    let shards = if softalign_model::device::is_cpu(&plain) {
        2
    } else {
        1
    };
    let mut peak_device_bytes = None;
    for step in 0..=steps {
        let started = Instant::now();
        let reference_logps = Tensor::<1>::from_data(
            per_shard(shards, |rows| {
                sequence_logps(&reference, rows_of(&tokens, rows))
            })
            .into_data(),
            &device,
        );
        let reference_s = started.elapsed().as_secs_f64();
        let started = Instant::now();
        let (grads, loss) = policy_gradients(&policy, &tracked_tokens, &reference_logps, shards);
        sync(&plain);
        let policy_s = started.elapsed().as_secs_f64();
        let started = Instant::now();
        policy = optimizer.step(1e-6, policy, grads);
        sync(&plain);
        let update_s = started.elapsed().as_secs_f64();
        peak_device_bytes = peak_device_bytes.max(device_bytes_in_use(&plain));
        let timing = StepTiming {
            step,
            reference_s,
            policy_s,
            update_s,
            loss,
        };
        progress(&timing);
        if step > 0 {
            timings.push(timing);
        }
    }
    let step_s = median(timings.iter().map(StepTiming::step_s));
    StepBench {
        step_s,
        update_s: median(timings.iter().map(|t| t.update_s)),
        policy_tokens_per_s: (SEQUENCES * LENGTH) as f64 / step_s,
        peak_rss_bytes: peak_rss_bytes(),
        cpu: cpu_description(),
        device: softalign_model::device::describe(&plain),
        peak_device_bytes,
        params: policy.num_params(),
        trainable_params,
        lora_r: setup.lora.as_ref().map(|l| l.r),
        gradient_checkpointing: setup.gradient_checkpointing,
    }
}

/// Parameters that receive gradients (every one in a full fine-tune, the adapters under LoRA).
fn trainable_params(model: &CausalLm) -> usize {
    if model.has_adapters() {
        model.num_params() - model.without_adapters().num_params()
    } else {
        model.num_params()
    }
}

/// Uniformly random token ids, `[SEQUENCES, LENGTH]` (seeded: every run scores the same batch).
fn random_tokens(config: &ModelConfig, device: &Device) -> Tensor<2, Int> {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let ids: Vec<i64> = (0..SEQUENCES * LENGTH)
        .map(|_| rng.random_range(0..config.vocab_size as i64))
        .collect();
    Tensor::from_data(TensorData::new(ids, [SEQUENCES, LENGTH]), device)
}

/// Rows `rows` of `tokens` (whole pairs: chosen, rejected, chosen, …).
fn rows_of(tokens: &Tensor<2, Int>, rows: std::ops::Range<usize>) -> Tensor<2, Int> {
    tokens.clone().narrow(0, rows.start, rows.len())
}

/// The row ranges of `shards` shards of the step's pairs (each shard whole pairs).
fn shard_rows(shards: usize) -> Vec<std::ops::Range<usize>> {
    crate::trainer::shard_ranges(SEQUENCES / 2, shards)
        .into_iter()
        .map(|pairs| pairs.start * 2..pairs.end * 2)
        .collect()
}

/// `f` on each shard's rows, the shards in parallel on the thread pool (as the trainer shards a
/// batch), concatenated.
fn per_shard(
    shards: usize,
    f: impl Fn(std::ops::Range<usize>) -> Tensor<1> + Sync + Send,
) -> Tensor<1> {
    use rayon::prelude::*;
    let parts: Vec<Tensor<1>> = shard_rows(shards).into_par_iter().map(f).collect();
    Tensor::cat(parts, 0)
}

/// Summed next-token log-probability of each sequence, `[rows]`.
fn sequence_logps(model: &CausalLm, tokens: Tensor<2, Int>) -> Tensor<1> {
    sequence_sums(model.next_token_logps(tokens))
}

/// Per-token log-probabilities `[rows, time − 1]` summed per row, `[rows]`.
fn sequence_sums(token_logps: Tensor<2>) -> Tensor<1> {
    token_logps.sum_dim(1).squeeze_dim::<1>(1)
}

/// Mean DPO loss over the pairs of `policy`/`reference` (rows chosen, rejected, chosen, …).
fn dpo_loss(policy: Tensor<1>, reference: Tensor<1>) -> Tensor<1> {
    let rows = policy.dims()[0];
    let ratio = (policy - reference).reshape([rows / 2, 2]);
    let margin = ratio.clone().narrow(1, 0, 1) - ratio.narrow(1, 1, 1);
    -log_sigmoid(margin * BETA).mean()
}

/// The policy's gradients of the mean DPO loss over both pairs, each shard on its own replica
/// (same weights, its own autodiff graph; gradient checkpointing carries over) with its share of
/// the loss, the gradients added as `softalign-train` adds its shards'; and the loss.
fn policy_gradients(
    policy: &CausalLm,
    tokens: &Tensor<2, Int>,
    reference_logps: &Tensor<1>,
    shards: usize,
) -> (GradientsParams, f32) {
    use rayon::prelude::*;
    let pairs = (SEQUENCES / 2) as f64;
    let shard = |rows: std::ops::Range<usize>| {
        let replica = if shards == 1 {
            policy.clone()
        } else {
            policy.valid().train()
        };
        let share = (rows.len() / 2) as f64 / pairs;
        let reference = reference_logps.clone().narrow(0, rows.start, rows.len());
        let Ok(gradients) =
            replica.next_token_logps_gradients(rows_of(tokens, rows.clone()), |logps| {
                let loss = dpo_loss(sequence_sums(logps), reference) * share;
                let value = loss.clone().detach().into_scalar::<f32>();
                Ok::<_, Infallible>((loss, value))
            });
        gradients
    };
    let results: Vec<(GradientsParams, f32)> =
        shard_rows(shards).into_par_iter().map(shard).collect();
    let loss = results.iter().map(|(_, part)| part).sum();
    let grads = results.into_iter().map(|(grads, _)| grads).collect();
    (crate::trainer::sum_in_order(policy, grads), loss)
}

/// Waits for `device` to finish what was queued (a no-op on the CPU).
fn sync(device: &Device) {
    device.sync().expect("the device finishes the step");
}

/// Bytes reserved by the GPU's memory pools now; `None` on the CPU.
fn device_bytes_in_use(device: &Device) -> Option<u64> {
    if softalign_model::device::is_cpu(device) {
        return None;
    }
    device.memory_pool_usage().map(|usage| usage.bytes_reserved)
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Peak resident set size of this process (`VmHWM` in `/proc/self/status`), bytes; 0 where that
/// is unavailable.
pub fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024)
        })
        .unwrap_or(0)
}

/// The CPU's model name and its widest x86 vector extensions (`AVX-512`, `AVX2`, `AMX`), from
/// `/proc/cpuinfo`, e.g. `AMD EPYC 9B14 (AVX-512, AVX2)`; the architecture name where that file
/// is unavailable.
pub fn cpu_description() -> String {
    let Ok(info) = std::fs::read_to_string("/proc/cpuinfo") else {
        return std::env::consts::ARCH.to_string();
    };
    let field = |key: &str| {
        info.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_once(':'))
            .map_or("", |(_, value)| value.trim())
    };
    let flags: Vec<&str> = field("flags").split_whitespace().collect();
    let extensions: Vec<&str> = [
        ("avx512f", "AVX-512"),
        ("avx2", "AVX2"),
        ("amx_tile", "AMX"),
    ]
    .into_iter()
    .filter(|(flag, _)| flags.contains(flag))
    .map(|(_, name)| name)
    .collect();
    let name = match field("model name") {
        "" => std::env::consts::ARCH,
        name => name,
    };
    if extensions.is_empty() {
        name.to_string()
    } else {
        format!("{name} ({})", extensions.join(", "))
    }
}
