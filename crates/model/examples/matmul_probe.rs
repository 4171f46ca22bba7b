//! Probe: throughput of burn-flex matmul on the shapes of one SmolLM2-135M training step.
use std::time::Instant;

use burn::tensor::{Device, Distribution, Tensor};

fn main() {
    softalign_model::keep_freed_memory();
    let device = Device::flex();
    let r = |s: [usize; 2]| Tensor::<2>::random(s, Distribution::Normal(0.0, 1.0), &device);
    let shapes: &[(&str, usize, usize, usize)] = &[
        ("x.Wq", 1024, 576, 576),
        ("x.Wgate", 1024, 576, 1536),
        ("x.Wgu", 1024, 576, 3072),
        ("h.Wdown", 1024, 1536, 576),
        ("head", 1024, 576, 49152),
    ];
    for &(name, m, k, n) in shapes {
        let a = r([m, k]);
        let b = r([k, n]);
        let at = r([k, m]);
        let bt = r([n, k]);
        let flops = 2.0 * (m * k * n) as f64;
        let report = |label: &str, f: &dyn Fn() -> Tensor<2>| {
            let _ = f().into_data();
            let reps = (2e10 / flops).clamp(1.0, 50.0) as usize;
            let t = Instant::now();
            for _ in 0..reps {
                let _ = f().into_data();
            }
            let s = t.elapsed().as_secs_f64() / reps as f64;
            println!(
                "{name:8} {label:6} {m}x{k}x{n}: {:.1} ms, {:.1} GFLOP/s",
                s * 1e3,
                flops / s / 1e9
            );
        };
        report("nn", &|| a.clone().matmul(b.clone()));
        report("tn", &|| at.clone().transpose().matmul(b.clone()));
        report("nt", &|| a.clone().matmul(bt.clone().transpose()));
    }
}
