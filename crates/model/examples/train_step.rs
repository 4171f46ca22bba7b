//! Benchmark: one preference-training step of the SmolLM2-135M shape (random init; 30 blocks,
//! width 576, FFN 1536, 9/3 heads, vocabulary 49,152, tied head) on 2 preference pairs of 256
//! tokens, i.e. 4 sequences of 256:
//!
//! - reference model: forward pass without gradients (sequence log-probabilities);
//! - policy: forward and backward of a DPO loss on the same sequences;
//! - then one AdamW update, timed separately.
//!
//! By default the two pairs run as two shards on the two threads, each on its own replica of the
//! policy, as the trainer runs a batch (`softalign-train`'s `step_gradients`); `one-pass` runs
//! the four sequences as one batch instead.
//!
//! ```text
//! cargo run --release -p softalign-model --example train_step [-- STEPS [full-logits] [one-pass]]
//! ```
//! Baseline: `scripts/pytorch-train-step.py`, the same step in PyTorch eager with transformers;
//! run both on the same machine, back to back.

use std::time::Instant;

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::activation::log_sigmoid;
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use softalign_model::{CausalLm, ModelConfig, next_token_logps};

const SEQUENCES: usize = 4;
const LENGTH: usize = 256;
const BETA: f64 = 0.1;

/// Summed next-token log-probability of each sequence, `[sequences]`: through
/// [`CausalLm::next_token_logps`] (head on the predicting positions only), or with
/// `full_logits` through the full `[batch, time, vocab]` logits of [`CausalLm::forward`].
fn sequence_logps(model: &CausalLm, tokens: Tensor<2, Int>, full_logits: bool) -> Tensor<1> {
    let logps = if full_logits {
        next_token_logps(model.forward(tokens.clone()), tokens)
    } else {
        model.next_token_logps(tokens)
    };
    logps.sum_dim(1).squeeze_dim::<1>(1)
}

/// DPO loss of pairs (row 2i chosen, row 2i+1 rejected).
fn dpo_loss(policy: Tensor<1>, reference: Tensor<1>) -> Tensor<1> {
    dpo_loss_n(policy, reference, SEQUENCES / 2)
}

fn dpo_loss_n(policy: Tensor<1>, reference: Tensor<1>, pairs: usize) -> Tensor<1> {
    let ratio = (policy - reference).reshape([pairs, 2]);
    let margin = ratio.clone().narrow(1, 0, 1) - ratio.narrow(1, 1, 1);
    -log_sigmoid(margin * BETA).mean()
}

fn main() {
    softalign_model::keep_freed_memory();
    let steps: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("STEPS is a number"))
        .unwrap_or(3)
        .max(1);
    let full_logits = std::env::args().skip(2).any(|a| a == "full-logits");
    let one_pass = std::env::args().skip(2).any(|a| a == "one-pass");
    let config = ModelConfig::smollm2_135m();
    let device = Device::default().autodiff();
    device.seed(0);
    let mut policy = CausalLm::init(&config, &device);
    let reference = policy.valid();
    eprintln!(
        "model: {} parameters; batch {SEQUENCES} × {LENGTH} tokens; {} threads",
        policy.num_params(),
        rayon_threads()
    );
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let ids: Vec<i64> = (0..SEQUENCES * LENGTH)
        .map(|_| rng.random_range(0..config.vocab_size as i64))
        .collect();
    let tokens_plain = Tensor::<2, Int>::from_data(
        TensorData::new(ids.clone(), [SEQUENCES, LENGTH]),
        &Device::default(),
    );
    let tokens = Tensor::<2, Int>::from_data(TensorData::new(ids, [SEQUENCES, LENGTH]), &device);
    let mut optimizer = AdamWConfig::new().init();

    let mut totals = Vec::new();
    let mut cpu_totals = Vec::new();
    for step in 0..=steps {
        let started = Instant::now();
        let cpu_started = cpu_seconds();
        let split = !one_pass;
        let reference_logps = if split {
            // One pair per thread, as the trainer shards a batch.
            let pair = |i: usize| {
                sequence_logps(
                    &reference,
                    tokens_plain.clone().narrow(0, i * 2, 2),
                    full_logits,
                )
            };
            let (a, b) = rayon::join(|| pair(0), || pair(1));
            Tensor::cat(vec![a, b], 0)
        } else {
            sequence_logps(&reference, tokens_plain.clone(), full_logits)
        };
        let reference_logps = Tensor::<1>::from_data(reference_logps.into_data(), &device);
        let reference_s = started.elapsed().as_secs_f64();

        let t = Instant::now();
        let (grads, loss_value) = if split {
            // Each pair on its own replica (same weights, its own autodiff graph), half the
            // mean loss each; the gradients are added, as `softalign-train` does.
            let half = |i: usize| {
                let policy = policy.valid().train();
                let loss = dpo_loss_n(
                    sequence_logps(&policy, tokens.clone().narrow(0, i * 2, 2), full_logits),
                    reference_logps.clone().narrow(0, i * 2, 2),
                    1,
                ) * 0.5;
                let grads = GradientsParams::from_grads(loss.backward(), &policy);
                (grads, loss.into_scalar::<f32>())
            };
            let ((ga, la), (gb, lb)) = rayon::join(|| half(0), || half(1));
            let mut acc = burn::optim::GradientsAccumulator::new();
            acc.accumulate(&policy, ga);
            acc.accumulate(&policy, gb);
            (acc.grads(), la + lb)
        } else {
            let loss = dpo_loss(
                sequence_logps(&policy, tokens.clone(), full_logits),
                reference_logps,
            );
            let grads = loss.backward();
            (
                GradientsParams::from_grads(grads, &policy),
                loss.into_scalar::<f32>(),
            )
        };
        let policy_s = t.elapsed().as_secs_f64();
        let step_s = started.elapsed().as_secs_f64();
        let step_cpu_s = cpu_seconds() - cpu_started;

        let t = Instant::now();
        policy = optimizer.step(1e-6, policy, grads);
        let update_s = t.elapsed().as_secs_f64();
        let label = if step == 0 { "warm-up" } else { "step" };
        eprintln!(
            "{label} {step}: reference forward {reference_s:.2} s, policy forward+backward {policy_s:.2} s \
             → {step_s:.2} s, {step_cpu_s:.2} CPU-s (loss {loss_value:.4}); AdamW update {update_s:.2} s"
        );
        if step > 0 {
            totals.push(step_s);
            cpu_totals.push(step_cpu_s);
        }
    }
    totals.sort_by(f64::total_cmp);
    cpu_totals.sort_by(f64::total_cmp);
    let median = totals[totals.len() / 2];
    let cpu_median = cpu_totals[cpu_totals.len() / 2];
    println!(
        "train_step: median {median:.2} s per step, {cpu_median:.2} CPU-s (reference forward + \
         policy forward/backward, {SEQUENCES} × {LENGTH} tokens, {})",
        if one_pass {
            "one pass"
        } else {
            "one pair per thread"
        }
    );
}

/// User plus system CPU time of this process so far, from `/proc/self/stat` (0 where that is
/// unavailable). On a shared machine CPU time is a steadier measure of work than wall time.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let ticks: f64 = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse::<f64>().ok())
        .sum();
    ticks / 100.0
}

fn rayon_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
