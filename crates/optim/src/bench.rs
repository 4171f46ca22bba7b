//! Timing one optimizer step on N float32 parameters, for `softalign bench optim` and the
//! criterion benchmark, on any device (every step is waited for, so GPU times are real).
//!
//! A step moves 28 bytes per parameter (reads θ, g, m, v; writes θ, m, v), so the figure of
//! merit is nanoseconds per parameter, or the effective bandwidth 28·N / time.

use std::time::{Duration, Instant};

use burn::module::{Module, Param};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Distribution, Tensor};

use crate::{AdamConfig, AdamWConfig, AdoptConfig};

/// Bytes a step moves per parameter: θ, g, m, v read; θ, m, v written; 4 bytes each.
pub const BYTES_PER_PARAM: f64 = 28.0;

/// The optimizers the benchmark times, by their reported names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchOptimizer {
    /// ADOPT, fused (one pass: the CPU kernel on the CPU, the cube kernel on a GPU).
    Adopt,
    /// Adam, fused.
    Adam,
    /// AdamW, fused.
    AdamW,
    /// AMSGrad, fused (moves 8 more bytes per parameter for v̂).
    AmsGrad,
    /// ADOPT through composed tensor operations.
    AdoptComposed,
    /// Adam through composed tensor operations.
    AdamComposed,
    /// AdamW through composed tensor operations.
    AdamWComposed,
    /// AMSGrad through composed tensor operations.
    AmsGradComposed,
    /// burn's own `AdamW`, the baseline.
    BurnAdamW,
}

impl BenchOptimizer {
    /// Every optimizer, in report order.
    pub const ALL: [Self; 9] = [
        Self::Adopt,
        Self::Adam,
        Self::AdamW,
        Self::AmsGrad,
        Self::AdoptComposed,
        Self::AdamComposed,
        Self::AdamWComposed,
        Self::AmsGradComposed,
        Self::BurnAdamW,
    ];

    /// The reported name: `adopt`, `adam`, `adamw`, `amsgrad`, with `_composed` for the composed
    /// path, and `burn_adamw`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Adopt => "adopt",
            Self::Adam => "adam",
            Self::AdamW => "adamw",
            Self::AmsGrad => "amsgrad",
            Self::AdoptComposed => "adopt_composed",
            Self::AdamComposed => "adam_composed",
            Self::AdamWComposed => "adamw_composed",
            Self::AmsGradComposed => "amsgrad_composed",
            Self::BurnAdamW => "burn_adamw",
        }
    }

    /// A fresh module optimizer of this kind.
    pub fn module_optimizer(self) -> ModuleOptimizer {
        match self {
            Self::Adopt => AdoptConfig::new().init(),
            Self::Adam => AdamConfig::new().init(),
            Self::AdamW => AdamWConfig::new().init(),
            Self::AmsGrad => AdamConfig::new().with_amsgrad(true).init(),
            Self::AdoptComposed => AdoptConfig::new().build().composed_only().into(),
            Self::AdamComposed => AdamConfig::new().build().composed_only().into(),
            Self::AdamWComposed => AdamWConfig::new().build().composed_only().into(),
            Self::AmsGradComposed => AdamConfig::new()
                .with_amsgrad(true)
                .build()
                .composed_only()
                .into(),
            Self::BurnAdamW => burn::optim::AdamWConfig::new().init(),
        }
    }
}

/// The parameters being optimized: one flat tensor.
#[derive(Module, Debug)]
pub struct FlatParams {
    values: Param<Tensor<1>>,
}

/// A benchmark fixture: N parameters on an autodiff device and a fixed gradient.
pub struct StepBench {
    model: Option<FlatParams>,
    grad: Tensor<1>,
    optim: ModuleOptimizer,
    params: usize,
    device: Device,
}

impl StepBench {
    /// N random parameters and gradient on `device`, and a fresh optimizer; runs `warmup` steps
    /// (at least 2, so ADOPT's initialisation step and the state allocation are behind us).
    pub fn new(optimizer: BenchOptimizer, params: usize, warmup: usize, device: &Device) -> Self {
        let plain = device.clone().inner();
        let values = Tensor::<1>::random(
            [params],
            Distribution::Normal(0.0, 1.0),
            &plain.clone().autodiff(),
        )
        .require_grad();
        let grad = Tensor::<1>::random([params], Distribution::Normal(0.0, 1e-3), &plain);
        let mut bench = Self {
            model: Some(FlatParams {
                values: Param::from_tensor(values),
            }),
            grad,
            optim: optimizer.module_optimizer(),
            params,
            device: plain,
        };
        for _ in 0..warmup.max(2) {
            bench.step();
        }
        bench
    }

    /// One optimizer step; returns its wall time (until the device has finished it).
    pub fn step(&mut self) -> Duration {
        let model = self.model.take().expect("the model is always put back");
        let mut grads = GradientsParams::new();
        grads.register(model.values.id, self.grad.clone());
        let _ = self.device.sync();
        let started = Instant::now();
        let model = self.optim.step(1e-3, model, grads);
        self.device
            .sync()
            .expect("the device finishes the optimizer step");
        let elapsed = started.elapsed();
        self.model = Some(model);
        elapsed
    }

    /// Number of parameters.
    pub fn params(&self) -> usize {
        self.params
    }
}

/// One benchmark result.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchResult {
    /// The optimizer's reported name.
    pub optimizer: &'static str,
    /// Parameters per step.
    pub params: usize,
    /// Median wall time of a step divided by the parameter count.
    pub ns_per_param: f64,
    /// Effective bandwidth, 28 bytes per parameter over the median time.
    pub gbps: f64,
}

/// The memory bus's limit right now on `device`: the same traffic as an optimizer step (read θ,
/// g, m, v; write θ, m, v) with trivial arithmetic — multi-threaded on the CPU, one kernel on a
/// GPU. Reported as `bandwidth_probe`, the baseline the one-pass kernels are held to in the
/// same run.
pub fn measure_bandwidth(params: usize, repeats: usize, device: &Device) -> BenchResult {
    let median = if on_cpu(device) {
        host_probe_seconds(params, repeats)
    } else {
        device_probe_seconds(params, repeats, device)
    };
    BenchResult {
        optimizer: "bandwidth_probe",
        params,
        ns_per_param: median * 1e9 / params as f64,
        gbps: BYTES_PER_PARAM * params as f64 / median / 1e9,
    }
}

/// Whether `device` is the Flex CPU backend.
fn on_cpu(device: &Device) -> bool {
    matches!(
        device.clone().inner().as_dispatch(),
        burn::backend::DispatchDevice::Flex(_)
    )
}

#[cfg(feature = "cube")]
fn device_probe_seconds(params: usize, repeats: usize, device: &Device) -> f64 {
    crate::cube::probe_seconds(params, repeats, &device.clone().inner())
}

#[cfg(not(feature = "cube"))]
fn device_probe_seconds(_params: usize, _repeats: usize, device: &Device) -> f64 {
    unreachable!("without a GPU backend every device is the CPU, not {device:?}")
}

/// Median seconds of the CPU probe: rayon chunks over host slices.
fn host_probe_seconds(params: usize, repeats: usize) -> f64 {
    use rayon::prelude::*;
    const CHUNK: usize = 1 << 16;
    let mut theta = vec![0.5_f32; params];
    let grad = vec![1e-3_f32; params];
    let mut m = vec![0.0_f32; params];
    let mut v = vec![0.0_f32; params];
    let pass = || {
        let started = Instant::now();
        theta
            .par_chunks_mut(CHUNK)
            .zip(grad.par_chunks(CHUNK))
            .zip(m.par_chunks_mut(CHUNK).zip(v.par_chunks_mut(CHUNK)))
            .for_each(|((theta, grad), (m, v))| {
                for i in 0..theta.len() {
                    m[i] = m[i] * 0.9 + grad[i];
                    v[i] = v[i] * 0.99 + grad[i];
                    theta[i] -= 1e-9 * m[i];
                }
            });
        started.elapsed().as_secs_f64()
    };
    median_seconds(3, repeats, pass)
}

/// The median of `repeats` (at least one) timings by `pass`, in seconds, after `warmup` untimed
/// passes.
pub(crate) fn median_seconds(warmup: usize, repeats: usize, mut pass: impl FnMut() -> f64) -> f64 {
    for _ in 0..warmup {
        pass();
    }
    let mut times: Vec<f64> = (0..repeats.max(1)).map(|_| pass()).collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// Time `repeats` steps on `device` after warm-up and report the median.
pub fn measure(
    optimizer: BenchOptimizer,
    params: usize,
    repeats: usize,
    device: &Device,
) -> BenchResult {
    let mut bench = StepBench::new(optimizer, params, 3, device);
    let median = median_seconds(0, repeats, || bench.step().as_secs_f64());
    BenchResult {
        optimizer: optimizer.name(),
        params,
        ns_per_param: median * 1e9 / params as f64,
        gbps: BYTES_PER_PARAM * params as f64 / median / 1e9,
    }
}
