//! `softalign bench generate`: prefill and decode throughput of a model on its own weights (kept
//! quantized when the file is), measured the way llama.cpp's `llama-bench` measures `pp512` and
//! `tg128`: the prompt is one batch of token ids fed to an empty KV cache; decoding starts from an
//! empty cache and feeds back one greedy token at a time.

use std::time::Instant;

use burn::tensor::{Int, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use softalign_model::quant::Isa;
use softalign_model::{CausalLm, KvCache};

use crate::bench_step::{cpu_description, peak_rss_bytes};

/// What `bench generate` measures.
#[derive(Debug, Clone, Copy)]
pub struct GenerateSetup {
    /// Tokens in the prompt batch.
    pub prompt_tokens: usize,
    /// Tokens decoded one at a time.
    pub tokens: usize,
    /// Timed repetitions of each (the median is reported), after one warm-up.
    pub repeats: usize,
}

/// The result, as `bench generate --json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct GenerateBench {
    /// Prompt tokens per second of one batched forward pass.
    pub prefill_tokens_per_s: f64,
    /// Tokens per second decoding one at a time with the KV cache.
    pub decode_tokens_per_s: f64,
    /// Peak resident set size of the process (`VmHWM`), bytes; 0 where unknown.
    pub peak_rss_bytes: u64,
    /// The CPU model and its widest vector extensions.
    pub cpu: String,
    /// What ran: `cpu`, or the GPU adapter's name and backend.
    pub device: String,
    /// Prompt tokens per prefill.
    pub prompt_tokens: usize,
    /// Tokens per decode run.
    pub tokens: usize,
    /// Threads of the CPU kernels.
    pub threads: usize,
    /// Linear weights kept in a block format, and their bytes.
    pub quantized_weights: usize,
    /// Bytes of the weights kept quantized.
    pub quantized_bytes: usize,
    /// The instruction set of the quantized kernels (`avx512`, `avx2`, `baseline`).
    pub isa: String,
}

/// Measures prefill and decode throughput of `model` (untracked: pass a model on a plain device).
/// `progress` hears one line per timed run.
pub fn bench_generate(
    model: &CausalLm,
    setup: &GenerateSetup,
    device_name: String,
    mut progress: impl FnMut(&str),
) -> GenerateBench {
    let vocab = model.config.vocab_size;
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let prompt: Vec<u32> = (0..setup.prompt_tokens)
        .map(|_| rng.random_range(0..vocab as u32))
        .collect();
    let first = prompt.first().copied().unwrap_or(0);
    // Warm-up: page the weights in, size the allocator's pools.
    prefill(model, &prompt[..prompt.len().min(32)]);
    decode(model, first, setup.tokens.min(8));
    let mut prefill_s = Vec::new();
    let mut decode_s = Vec::new();
    for run in 0..setup.repeats.max(1) {
        let seconds = prefill(model, &prompt);
        progress(&format!(
            "run {}: prefill {} tokens in {seconds:.3} s ({:.1} tokens/s)",
            run + 1,
            prompt.len(),
            prompt.len() as f64 / seconds
        ));
        prefill_s.push(seconds);
        let seconds = decode(model, first, setup.tokens);
        progress(&format!(
            "run {}: decode {} tokens in {seconds:.3} s ({:.1} tokens/s)",
            run + 1,
            setup.tokens,
            setup.tokens as f64 / seconds
        ));
        decode_s.push(seconds);
    }
    let (quantized_weights, quantized_bytes) = model.quantized_weights();
    GenerateBench {
        prefill_tokens_per_s: prompt.len() as f64 / median(prefill_s),
        decode_tokens_per_s: setup.tokens as f64 / median(decode_s),
        peak_rss_bytes: peak_rss_bytes(),
        cpu: cpu_description(),
        device: device_name,
        prompt_tokens: prompt.len(),
        tokens: setup.tokens,
        threads: rayon::current_num_threads(),
        quantized_weights,
        quantized_bytes,
        isa: Isa::detected().name().to_string(),
    }
}

/// Seconds to feed `prompt` as one batch to an empty cache and read the last position's logits.
fn prefill(model: &CausalLm, prompt: &[u32]) -> f64 {
    let device = model.embed_tokens.val().device();
    let started = Instant::now();
    let mut cache = KvCache::new(model);
    let ids: Vec<i64> = prompt.iter().map(|&t| t as i64).collect();
    let tokens = Tensor::<2, Int>::from_data(TensorData::new(ids, [1, prompt.len()]), &device);
    let logits = model.forward_cached(tokens, &mut cache);
    let _ = logits.into_data();
    started.elapsed().as_secs_f64()
}

/// Seconds to decode `count` tokens greedily from an empty cache, starting with `first`.
fn decode(model: &CausalLm, first: u32, count: usize) -> f64 {
    let device = model.embed_tokens.val().device();
    let started = Instant::now();
    let mut cache = KvCache::new(model);
    let mut next = first;
    for _ in 0..count {
        let tokens =
            Tensor::<2, Int>::from_data(TensorData::new(vec![next as i64], [1, 1]), &device);
        let logits: Vec<f32> = model
            .forward_cached(tokens, &mut cache)
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .expect("f32 logits");
        next = logits
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map_or(0, |(i, _)| i as u32);
    }
    started.elapsed().as_secs_f64()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
