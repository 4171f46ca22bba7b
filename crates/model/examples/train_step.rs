//! Benchmark: one preference-training step of the SmolLM2-135M shape (random init; 30 blocks,
//! width 576, FFN 1536, 9/3 heads, vocabulary 49,152, tied head) on 2 preference pairs of 256
//! tokens, i.e. 4 sequences of 256:
//!
//! - reference model: forward pass without gradients (sequence log-probabilities);
//! - policy: forward and backward of a DPO loss on the same sequences;
//! - then one AdamW update, timed separately.
//!
//! ```text
//! cargo run --release -p softalign-model --example train_step [-- STEPS]
//! ```
//! Baseline for comparison: PyTorch eager (same shape, forward + backward + reference forward)
//! takes 5.85 s per step on the project's 2-core machine.

use std::time::Instant;

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::activation::log_sigmoid;
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use softalign_model::{LlamaConfig, LlamaModel, next_token_logps};

const SEQUENCES: usize = 4;
const LENGTH: usize = 256;
const BETA: f64 = 0.1;

/// Summed next-token log-probability of each sequence, `[sequences]`.
fn sequence_logps(model: &LlamaModel, tokens: Tensor<2, Int>) -> Tensor<1> {
    next_token_logps(model.forward(tokens.clone()), tokens)
        .sum_dim(1)
        .squeeze_dim::<1>(1)
}

/// DPO loss of pairs (row 2i chosen, row 2i+1 rejected).
fn dpo_loss(policy: Tensor<1>, reference: Tensor<1>) -> Tensor<1> {
    let ratio = (policy - reference).reshape([SEQUENCES / 2, 2]);
    let margin = ratio.clone().narrow(1, 0, 1) - ratio.narrow(1, 1, 1);
    -log_sigmoid(margin * BETA).mean()
}

fn main() {
    let steps: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("STEPS is a number"))
        .unwrap_or(3);
    let config = LlamaConfig::smollm2_135m();
    let device = Device::default().autodiff();
    device.seed(0);
    let mut policy = LlamaModel::init(&config, &device);
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
    for step in 0..=steps {
        let started = Instant::now();
        let reference_logps = sequence_logps(&reference, tokens_plain.clone());
        let reference_logps = Tensor::<1>::from_data(reference_logps.into_data(), &device);
        let reference_s = started.elapsed().as_secs_f64();

        let t = Instant::now();
        let loss = dpo_loss(sequence_logps(&policy, tokens.clone()), reference_logps);
        let grads = loss.backward();
        let grads = GradientsParams::from_grads(grads, &policy);
        let loss_value = loss.into_scalar::<f32>();
        let policy_s = t.elapsed().as_secs_f64();
        let step_s = started.elapsed().as_secs_f64();

        let t = Instant::now();
        policy = optimizer.step(1e-6, policy, grads);
        let update_s = t.elapsed().as_secs_f64();
        let label = if step == 0 { "warm-up" } else { "step" };
        eprintln!(
            "{label} {step}: reference forward {reference_s:.2} s, policy forward+backward {policy_s:.2} s \
             → {step_s:.2} s (loss {loss_value:.4}); AdamW update {update_s:.2} s"
        );
        if step > 0 {
            totals.push(step_s);
        }
    }
    totals.sort_by(f64::total_cmp);
    let median = totals[totals.len() / 2];
    println!(
        "train_step: median {median:.2} s per step (reference forward + policy forward/backward, \
         {SEQUENCES} × {LENGTH} tokens); PyTorch eager baseline 5.85 s → {:.2}× ",
        5.85 / median
    );
}

fn rayon_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
