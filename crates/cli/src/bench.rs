//! `softalign bench …`: speed measurements, reported as ratios to a baseline measured in the
//! same run.

use burn::tensor::Device;
use clap::Subcommand;
use softalign_model::{LoraConfig, ModelConfig};
use softalign_optim::bench::{BenchOptimizer, measure, measure_bandwidth};
use softalign_train::bench_generate::{GenerateSetup, bench_generate};
use softalign_train::bench_step::{LENGTH, SEQUENCES, StepSetup, bench_step};

/// The benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Time one optimizer step on N float32 parameters: ours fused, ours composed, burn's AdamW.
    ///
    /// Median of --repeats steps after warm-up. A step moves 28 bytes per parameter, so
    /// gbps = 28·N / time. With --json, one object per optimizer per line:
    /// {"optimizer", "params", "ns_per_param", "gbps"}.
    Optim {
        /// Parameters per step.
        #[arg(long, default_value_t = 16_000_000, value_parser = clap::value_parser!(u64).range(1..=2_000_000_000))]
        params: u64,
        /// Timed steps per optimizer (the median is reported).
        #[arg(long, default_value_t = 11, value_parser = clap::value_parser!(u64).range(1..=1000))]
        repeats: u64,
        /// Print one JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        device: crate::device::DeviceArg,
    },
    /// Time one preference-training step of the SmolLM2-135M shape (random init) on 2 pairs ×
    /// 256 tokens: reference forward, policy forward and backward of the DPO loss, AdamW update.
    ///
    /// Medians over --steps steps after a warm-up. With --json, one object:
    /// {"step_s", "update_s", "policy_tokens_per_s", "peak_rss_bytes", "cpu"}, where step_s is
    /// the reference forward plus the policy's forward and backward, and update_s the optimizer
    /// update. The baseline is `scripts/pytorch-train-step.py` (PyTorch eager), run back to back.
    Step {
        /// Timed steps after the warm-up (the median is reported).
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=1000))]
        steps: u64,
        /// Print one JSON object instead of a line per step and a summary.
        #[arg(long)]
        json: bool,
        /// Model shape (random weights): smollm2-135m or qwen2.5-1.5b.
        #[arg(long, default_value = "smollm2-135m")]
        shape: String,
        /// Train LoRA adapters of this rank on every projection (α 16) instead of every weight.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=4096))]
        lora_r: Option<u64>,
        /// Gradient checkpointing: recompute each decoder block in the backward pass.
        #[arg(long)]
        gradient_checkpointing: bool,
        #[command(flatten)]
        device: crate::device::DeviceArg,
    },
    /// Prefill and decode throughput of a model on its own weights (a GGUF's block formats kept),
    /// as llama.cpp's llama-bench measures pp and tg: one prompt batch into an empty KV cache;
    /// greedy decoding from an empty cache, one token at a time.
    ///
    /// Medians over --repeats runs after a warm-up. With --json, one object:
    /// {"prefill_tokens_per_s", "decode_tokens_per_s", "peak_rss_bytes", "cpu", "device", …}.
    /// The baseline is `scripts/llamacpp-bench.sh MODEL.gguf` on the same file, run back to back.
    Generate {
        /// The model: a GGUF file or a Hugging Face folder.
        #[arg(long)]
        model: std::path::PathBuf,
        /// Prompt tokens (random ids) in the prefill batch.
        #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u64).range(1..=131_072))]
        prompt_tokens: u64,
        /// Tokens to decode.
        #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u64).range(1..=131_072))]
        tokens: u64,
        /// Timed runs of each (the median is reported).
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=100))]
        repeats: u64,
        /// Print one JSON object instead of a line per run and a summary.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        quantize: crate::device::QuantizeArg,
        #[command(flatten)]
        device: crate::device::DeviceArg,
    },
}

/// Run one benchmark.
pub fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Optim {
            params,
            repeats,
            json,
            device,
        } => optim(
            params as usize,
            repeats as usize,
            json,
            &device.open("bench optim")?,
        ),
        BenchCommand::Step {
            steps,
            json,
            shape,
            lora_r,
            gradient_checkpointing,
            device,
        } => {
            let device = device.open("bench step")?;
            let config = match shape.as_str() {
                "smollm2-135m" => ModelConfig::smollm2_135m(),
                "qwen2.5-1.5b" => ModelConfig::qwen2_5_1_5b(),
                other => anyhow::bail!(
                    "--shape: unknown shape {other:?} (expected smollm2-135m or qwen2.5-1.5b)"
                ),
            };
            let lora = lora_r.map(|r| LoraConfig {
                alpha: 2.0 * r as f64,
                ..LoraConfig::new(r as usize)
            });
            let setup = StepSetup {
                config,
                lora,
                gradient_checkpointing,
            };
            step(steps as usize, json, &setup, &device)
        }
        BenchCommand::Generate {
            model,
            prompt_tokens,
            tokens,
            repeats,
            json,
            quantize,
            device,
        } => {
            let device = device.open("bench generate")?;
            let loaded = softalign_model::load_pretrained_as(&model, &device, quantize.format())?;
            let (prompt_tokens, tokens) = (prompt_tokens as usize, tokens as usize);
            let context = loaded.model.config.max_position_embeddings;
            anyhow::ensure!(
                prompt_tokens.max(tokens) <= context,
                "--prompt-tokens {prompt_tokens} / --tokens {tokens}: the model's context is {context} positions"
            );
            let setup = GenerateSetup {
                prompt_tokens,
                tokens,
                repeats: repeats as usize,
            };
            let result = bench_generate(
                &loaded.model,
                &setup,
                softalign_model::device::describe(&device),
                |line| {
                    if !json {
                        eprintln!("{line}");
                    }
                },
            );
            if json {
                println!("{}", serde_json::to_string(&result)?);
            } else {
                println!(
                    "bench generate: prefill {:.1} tokens/s ({} tokens), decode {:.1} tokens/s \
                     ({} tokens); {} linear weights quantized ({:.1} MB, {} kernels); peak RSS \
                     {:.2} GB; {} threads; {}",
                    result.prefill_tokens_per_s,
                    result.prompt_tokens,
                    result.decode_tokens_per_s,
                    result.tokens,
                    result.quantized_weights,
                    result.quantized_bytes as f64 / 1e6,
                    result.isa,
                    result.peak_rss_bytes as f64 / 1e9,
                    result.threads,
                    result.cpu
                );
            }
            Ok(())
        }
    }
}

/// Bytes per parameter the optimizer benchmark holds at its peak: θ, g, m, v (and AMSGrad's
/// maximum) for our kernels, plus the temporaries of burn's composed AdamW, all f32.
const BENCH_BYTES_PER_PARAM: u64 = 10 * 4;

fn optim(params: usize, repeats: usize, json: bool, device: &Device) -> anyhow::Result<()> {
    let needed = params as u64 * BENCH_BYTES_PER_PARAM;
    if let Some(total) = softalign_model::memory::total_bytes()
        && needed > total
    {
        anyhow::bail!(
            "--params {params}: the benchmark needs about {:.1} GB ({BENCH_BYTES_PER_PARAM} bytes per parameter), more than this machine's {:.1} GB",
            needed as f64 / 1e9,
            total as f64 / 1e9
        );
    }
    let threads = rayon::current_num_threads();
    let mut results = vec![measure_bandwidth(params, repeats, device)];
    for optimizer in BenchOptimizer::ALL {
        if !json {
            eprint!("\rtiming {:<18}", optimizer.name());
        }
        results.push(measure(optimizer, params, repeats, device));
    }
    if json {
        for result in &results {
            println!("{}", serde_json::to_string(result)?);
        }
        return Ok(());
    }
    eprint!("\r{:<30}\r", "");
    let time_of = |name: &str| {
        results
            .iter()
            .find(|r| r.optimizer == name)
            .map(|r| r.ns_per_param)
    };
    let (burn, limit) = (time_of("burn_adamw"), time_of("bandwidth_probe"));
    let place = if softalign_model::device::is_cpu(device) {
        format!("{threads} threads")
    } else {
        softalign_model::device::describe(device)
    };
    println!("{params} float32 parameters, {place}, median of {repeats} steps");
    println!(
        "{:<18} {:>10} {:>7} {:>14} {:>16}",
        "optimizer", "ns/param", "GB/s", "vs burn_adamw", "of bus limit"
    );
    for r in &results {
        let ratio = |base: Option<f64>, f: fn(f64, f64) -> String| {
            base.map_or(String::from("-"), |b| f(b, r.ns_per_param))
        };
        let speedup = ratio(burn, |b, t| format!("{:.1}x", b / t));
        let share = ratio(limit, |l, t| format!("{:.0}%", 100.0 * l / t));
        println!(
            "{:<18} {:>10.3} {:>7.1} {:>14} {:>16}",
            r.optimizer, r.ns_per_param, r.gbps, speedup, share
        );
    }
    println!(
        "bandwidth_probe: the same 28 B/param of traffic with trivial arithmetic, on the same device (the bus limit now)"
    );
    Ok(())
}

fn step(steps: usize, json: bool, setup: &StepSetup, device: &Device) -> anyhow::Result<()> {
    let result = bench_step(steps, device, setup, |t| {
        if !json {
            let label = if t.step == 0 { "warm-up" } else { "step" };
            eprintln!(
                "{label} {}: reference forward {:.2} s, policy forward+backward {:.2} s → {:.2} s \
                 (loss {:.4}); AdamW update {:.2} s",
                t.step,
                t.reference_s,
                t.policy_s,
                t.step_s(),
                t.loss,
                t.update_s
            );
        }
    });
    if json {
        println!("{}", serde_json::to_string(&result)?);
        return Ok(());
    }
    println!(
        "bench step: median {:.2} s per step (reference forward + policy forward/backward, \
         {SEQUENCES} × {LENGTH} tokens), {:.0} policy tokens/s; AdamW update {:.2} s; \
         peak RSS {:.2} GB; {} parameters, {} trained; {} threads; {}",
        result.step_s,
        result.policy_tokens_per_s,
        result.update_s,
        result.peak_rss_bytes as f64 / 1e9,
        result.params,
        result.trainable_params,
        rayon::current_num_threads(),
        result.cpu
    );
    Ok(())
}
