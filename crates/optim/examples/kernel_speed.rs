//! The fused ADOPT kernel alone on plain slices against a full module-optimizer step, both on
//! the same N parameters in the same run: the difference is the cost of the burn plumbing.
//!
//! `cargo run --release -p softalign-optim --example kernel_speed -- 16000000`

use std::time::Instant;

use softalign_optim::bench::{BenchOptimizer, StepBench};
use softalign_optim::coefficients::AdoptHyper;
use softalign_optim::kernel;

fn median(mut times: Vec<f64>) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(16_000_000);
    let hyper = AdoptHyper {
        lr: 1e-3,
        beta_1: 0.9,
        beta_2: 0.9999,
        epsilon: 1e-6,
        clip_exponent: Some(0.25),
        weight_decay: 0.0,
        decoupled: false,
    };
    let mut theta = vec![0.5_f32; n];
    let grad = vec![1e-3_f32; n];
    let mut m = vec![0.0_f32; n];
    let mut v = vec![1e-6_f32; n];
    let kernel_times: Vec<f64> = (1..=11)
        .map(|t| {
            let scalars = hyper.scalars::<f32>(t);
            let started = Instant::now();
            kernel::adopt_step(
                &mut theta, &grad, &mut m, &mut v, &scalars, false, false, true,
            );
            started.elapsed().as_secs_f64()
        })
        .collect();
    // The same memory traffic with trivial arithmetic: what the memory bus allows right now.
    let probe_times: Vec<f64> = (0..11)
        .map(|_| {
            use rayon::prelude::*;
            let started = Instant::now();
            theta
                .par_chunks_mut(1 << 16)
                .zip(grad.par_chunks(1 << 16))
                .zip(m.par_chunks_mut(1 << 16).zip(v.par_chunks_mut(1 << 16)))
                .for_each(|((t, g), (m, v))| {
                    for i in 0..t.len() {
                        m[i] = m[i] * 0.9 + g[i];
                        v[i] = v[i] * 0.99 + g[i];
                        t[i] -= 1e-9 * m[i];
                    }
                });
            started.elapsed().as_secs_f64()
        })
        .collect();
    let probe = median(probe_times);
    let mut bench = StepBench::new(BenchOptimizer::Adopt, n, 3, &burn::tensor::Device::flex());
    let step_times: Vec<f64> = (0..11).map(|_| bench.step().as_secs_f64()).collect();
    let (k, s) = (median(kernel_times), median(step_times));
    println!(
        "bandwidth probe (same traffic, trivial arithmetic): {:.3} ns/param = {:.1} GB/s",
        probe * 1e9 / n as f64,
        28.0 * n as f64 / probe / 1e9
    );
    println!(
        "kernel alone: {:.3} ns/param; module step: {:.3} ns/param; plumbing {:.3} ns/param",
        k * 1e9 / n as f64,
        s * 1e9 / n as f64,
        (s - k) * 1e9 / n as f64
    );
}
