//! `softalign bench …`: speed measurements, reported as ratios to a baseline measured in the
//! same run.

use clap::Subcommand;
use softalign_optim::bench::{BenchOptimizer, measure, measure_bandwidth};

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
    },
}

/// Run one benchmark.
pub fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Optim {
            params,
            repeats,
            json,
        } => optim(params as usize, repeats as usize, json),
    }
}

/// Bytes per parameter the optimizer benchmark holds at its peak: θ, g, m, v (and AMSGrad's
/// maximum) for our kernels, plus the temporaries of burn's composed AdamW, all f32.
const BENCH_BYTES_PER_PARAM: u64 = 10 * 4;

fn optim(params: usize, repeats: usize, json: bool) -> anyhow::Result<()> {
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
    let mut results = vec![measure_bandwidth(params, repeats)];
    for optimizer in BenchOptimizer::ALL {
        if !json {
            eprint!("\rtiming {:<18}", optimizer.name());
        }
        results.push(measure(optimizer, params, repeats));
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
    println!("{params} float32 parameters, {threads} threads, median of {repeats} steps");
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
        "bandwidth_probe: the same 28 B/param of traffic with trivial arithmetic (the bus limit now)"
    );
    Ok(())
}
