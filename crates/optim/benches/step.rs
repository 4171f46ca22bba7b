//! Criterion benchmark of one optimizer step on 1M float32 parameters: the fused ADOPT path,
//! its composed-ops path, and burn's own AdamW as the baseline measured in the same run.
//!
//! `cargo bench -p softalign-optim --bench step`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use softalign_optim::bench::{BenchOptimizer, StepBench};

fn optimizer_step(c: &mut Criterion) {
    let params = 1 << 20;
    let mut group = c.benchmark_group("optimizer_step_1M");
    group.throughput(Throughput::Elements(params as u64));
    group.sample_size(20);
    for optimizer in [
        BenchOptimizer::Adopt,
        BenchOptimizer::AdamW,
        BenchOptimizer::AdoptComposed,
        BenchOptimizer::BurnAdamW,
    ] {
        let mut bench = StepBench::new(optimizer, params, 3, &burn::tensor::Device::flex());
        group.bench_function(optimizer.name(), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| bench.step()).sum())
        });
    }
    group.finish();
}

criterion_group!(benches, optimizer_step);
criterion_main!(benches);
