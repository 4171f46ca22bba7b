//! ADOPT's toy convex problem (Taniguchi et al., Fig. 1 and the ablations of Fig. 3).
//!
//! **What it shows.** f(θ) = E[g]·θ on θ ∈ [−1, 1] with a stochastic gradient that is k² with
//! probability 1/k and −k otherwise (E[g] = 1, optimum θ = −1). The rare large gradient makes
//! Adam's second moment, which includes the current gradient, shrink the step of exactly the
//! samples that point the right way: for small β₂ Adam drifts to the wrong end, θ = +1. ADOPT
//! normalises by the *previous* second moment and so stays unbiased and converges to −1 for any
//! β₂. The two ablations of ADOPT (normalising with the current v; momentum before
//! normalisation) break that and behave like Adam. ADOPT's default clip t^¼ on the normalised
//! gradient delays convergence at large k and small β₂: there the rare normalised gradient is
//! about k and the clip stays below it until t ≈ k⁴.
//!
//! **Setting** (SPEC §6): lr_t = 0.01/√(1 + 0.01t), β₁ = 0.9, k ∈ {10, 50}, β₂ ∈ {0.1, 0.5,
//! 0.999}, Adam/AMSGrad ε = 1e-8, ADOPT ε = 1e-6, θ₀ = 0, projection onto [−1, 1] after each
//! step, many independent chains (the same gradient draws for every optimizer in a chain).
//! Adam, AMSGrad, ADOPT and ADOPT-with-clip run through the library's reference rules
//! ([`softalign_optim::reference`]), the code the fused kernels are tested against.

use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::Serialize;
use softalign_optim::coefficients::{AdamHyper, AdoptHyper};
use softalign_optim::reference::{self, ReferenceState};
use softalign_plot::{Figure, Panel, Series};

use crate::{ReproError, write_json_atomic};

/// The optimizers compared, by their names in `toy.json`.
pub const OPTIMIZERS: [&str; 6] = [
    "adam",
    "amsgrad",
    "adopt",
    "adopt_clip",
    "adopt_no_decorrelation",
    "adopt_momentum_first",
];

/// Settings of the toy reproduction.
#[derive(Debug, Clone, Serialize)]
pub struct ToyConfig {
    /// Steps per chain.
    pub steps: usize,
    /// Independent chains per (optimizer, k, β₂).
    pub chains: usize,
    /// Seed of the gradient draws.
    pub seed: u64,
    /// Values of k.
    pub ks: Vec<u32>,
    /// Values of β₂.
    pub beta2s: Vec<f64>,
    /// Points of the recorded trajectory (evenly spaced).
    pub trajectory_points: usize,
}

impl Default for ToyConfig {
    fn default() -> Self {
        Self {
            steps: 100_000,
            chains: 64,
            seed: 0,
            ks: vec![10, 50],
            beta2s: vec![0.1, 0.5, 0.999],
            trajectory_points: 200,
        }
    }
}

/// Median and quartiles of θ over chains at recorded steps.
#[derive(Debug, Clone, Serialize)]
pub struct Trajectory {
    /// The recorded steps.
    pub step: Vec<usize>,
    /// Median θ at each recorded step.
    pub median: Vec<f64>,
    /// First quartile.
    pub q25: Vec<f64>,
    /// Third quartile.
    pub q75: Vec<f64>,
}

/// One (optimizer, k, β₂) cell: the final statistics and the trajectory.
#[derive(Debug, Clone, Serialize)]
pub struct ToyResult {
    /// Optimizer name (one of [`OPTIMIZERS`]).
    pub optimizer: String,
    /// k of the gradient distribution.
    pub k: u32,
    /// β₂.
    pub beta2: f64,
    /// Median final θ over chains.
    pub median: f64,
    /// First quartile of the final θ.
    pub q25: f64,
    /// Third quartile of the final θ.
    pub q75: f64,
    /// Median and quartiles over the run.
    pub trajectory: Trajectory,
}

/// The whole reproduction, as written to `toy.json`.
#[derive(Debug, Clone, Serialize)]
pub struct ToyReport {
    /// Steps per chain.
    pub steps: usize,
    /// Chains per cell.
    pub chains: usize,
    /// Seed.
    pub seed: u64,
    /// One entry per (optimizer, k, β₂).
    pub results: Vec<ToyResult>,
}

/// The learning rate of step t.
fn learning_rate(t: usize) -> f64 {
    0.01 / (1.0 + 0.01 * t as f64).sqrt()
}

/// One step of an ablated ADOPT on all chains: `current_v` normalises with the v that already
/// includes g_t; otherwise momentum is taken before normalising.
fn ablated_adopt(
    current_v: bool,
    beta_2: f64,
    lr: f64,
    theta: &mut [f64],
    grad: &[f64],
    state: &mut ReferenceState<f64>,
) {
    let (beta_1, epsilon) = (0.9, 1e-6);
    for i in 0..theta.len() {
        let g = grad[i];
        if state.step == 0 {
            state.v[i] = g * g;
            continue;
        }
        if current_v {
            state.v[i] = beta_2 * state.v[i] + (1.0 - beta_2) * g * g;
            let normed = g / state.v[i].sqrt().max(epsilon);
            state.m[i] = beta_1 * state.m[i] + (1.0 - beta_1) * normed;
            theta[i] -= lr * state.m[i];
        } else {
            state.m[i] = beta_1 * state.m[i] + (1.0 - beta_1) * g;
            theta[i] -= lr * state.m[i] / state.v[i].sqrt().max(epsilon);
            state.v[i] = beta_2 * state.v[i] + (1.0 - beta_2) * g * g;
        }
    }
    state.step += 1;
}

/// Run every chain of one cell; returns θ of every chain at each recorded step.
fn run_cell(optimizer: &str, k: u32, beta_2: f64, config: &ToyConfig) -> Vec<Vec<f64>> {
    let chains = config.chains;
    let record_every = (config.steps / config.trajectory_points.max(1)).max(1);
    let mut rngs: Vec<ChaCha8Rng> = (0..chains)
        .map(|chain| {
            ChaCha8Rng::seed_from_u64(
                config.seed ^ ((k as u64) << 32) ^ (chain as u64).wrapping_mul(0x9E37_79B9),
            )
        })
        .collect();
    let mut theta = vec![0.0_f64; chains];
    let mut grad = vec![0.0_f64; chains];
    let mut state = ReferenceState::new(chains, optimizer == "amsgrad");
    let kf = k as f64;
    let mut recorded = Vec::with_capacity(config.trajectory_points + 1);
    for t in 0..config.steps {
        for (g, rng) in grad.iter_mut().zip(rngs.iter_mut()) {
            *g = if rng.random::<f64>() < 1.0 / kf {
                kf * kf
            } else {
                -kf
            };
        }
        let lr = learning_rate(t);
        match optimizer {
            "adam" | "amsgrad" => {
                let hyper = AdamHyper {
                    lr,
                    beta_1: 0.9,
                    beta_2,
                    epsilon: 1e-8,
                    weight_decay: 0.0,
                    decoupled: false,
                    amsgrad: optimizer == "amsgrad",
                };
                reference::adam(&hyper, &mut theta, &grad, &mut state);
            }
            "adopt" | "adopt_clip" => {
                let hyper = AdoptHyper {
                    lr,
                    beta_1: 0.9,
                    beta_2,
                    epsilon: 1e-6,
                    clip_exponent: (optimizer == "adopt_clip").then_some(0.25),
                    weight_decay: 0.0,
                    decoupled: false,
                };
                reference::adopt(&hyper, &mut theta, &grad, &mut state);
            }
            "adopt_no_decorrelation" => {
                ablated_adopt(true, beta_2, lr, &mut theta, &grad, &mut state)
            }
            "adopt_momentum_first" => {
                ablated_adopt(false, beta_2, lr, &mut theta, &grad, &mut state)
            }
            other => unreachable!("unknown toy optimizer {other}"),
        }
        for value in theta.iter_mut() {
            *value = value.clamp(-1.0, 1.0);
        }
        if (t + 1) % record_every == 0 || t + 1 == config.steps {
            recorded.push(theta.clone());
        }
    }
    recorded
}

/// The q-quantile of `values` (linear interpolation, as numpy's default).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let position = q * (sorted.len() - 1) as f64;
    let (low, high) = (position.floor() as usize, position.ceil() as usize);
    sorted[low] + (sorted[high] - sorted[low]) * (position - low as f64)
}

/// Run the reproduction.
pub fn run(config: &ToyConfig) -> Result<ToyReport, ReproError> {
    if config.steps == 0 || config.chains == 0 {
        return Err(ReproError::Setting(
            "--steps and --chains must be at least 1".into(),
        ));
    }
    let record_every = (config.steps / config.trajectory_points.max(1)).max(1);
    let cells: Vec<(&str, u32, f64)> = OPTIMIZERS
        .iter()
        .flat_map(|&o| {
            config
                .ks
                .iter()
                .flat_map(move |&k| config.beta2s.iter().map(move |&b| (o, k, b)))
        })
        .collect();
    let results = cells
        .par_iter()
        .map(|&(optimizer, k, beta2)| {
            let recorded = run_cell(optimizer, k, beta2, config);
            let mut trajectory = Trajectory {
                step: vec![],
                median: vec![],
                q25: vec![],
                q75: vec![],
            };
            for (i, thetas) in recorded.iter().enumerate() {
                let mut sorted = thetas.clone();
                sorted.sort_by(f64::total_cmp);
                trajectory
                    .step
                    .push(((i + 1) * record_every).min(config.steps));
                trajectory.median.push(quantile(&sorted, 0.5));
                trajectory.q25.push(quantile(&sorted, 0.25));
                trajectory.q75.push(quantile(&sorted, 0.75));
            }
            ToyResult {
                optimizer: optimizer.to_string(),
                k,
                beta2,
                median: *trajectory.median.last().expect("at least one step"),
                q25: *trajectory.q25.last().expect("at least one step"),
                q75: *trajectory.q75.last().expect("at least one step"),
                trajectory,
            }
        })
        .collect();
    Ok(ToyReport {
        steps: config.steps,
        chains: config.chains,
        seed: config.seed,
        results,
    })
}

/// Write `toy.json` and `toy.png` (one panel per (k, β₂): median θ with the quartile band).
pub fn write(report: &ToyReport, out: &Path) -> Result<(), ReproError> {
    write_json_atomic(&out.join("toy.json"), report)?;
    let mut cells: Vec<(u32, f64)> = report.results.iter().map(|r| (r.k, r.beta2)).collect();
    cells.dedup();
    cells.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
    cells.dedup();
    let panels = cells
        .iter()
        .map(|&(k, beta2)| Panel {
            title: format!("k = {k}, β₂ = {beta2}"),
            x_label: "step".into(),
            y_label: "θ (optimum −1)".into(),
            y_range: Some((-1.05, 1.05)),
            series: report
                .results
                .iter()
                .filter(|r| r.k == k && r.beta2 == beta2)
                .map(|r| {
                    let t = &r.trajectory;
                    let x = t.step.iter().map(|&s| s as f64);
                    Series::line(
                        &r.optimizer,
                        x.clone().zip(t.median.iter().copied()).collect(),
                    )
                    .with_band(
                        x.zip(t.q25.iter().zip(&t.q75))
                            .map(|(s, (&lo, &hi))| (s, lo, hi))
                            .collect(),
                    )
                })
                .collect(),
            ..Panel::default()
        })
        .collect();
    let figure = Figure {
        title: format!(
            "ADOPT toy problem: median θ and quartiles over {} chains",
            report.chains
        ),
        panels,
        columns: 3,
        panel_size: (520, 380),
    };
    figure.save(&out.join("toy.png"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn final_median(report: &ToyReport, optimizer: &str, k: u32, beta2: f64) -> f64 {
        report
            .results
            .iter()
            .find(|r| r.optimizer == optimizer && r.k == k && r.beta2 == beta2)
            .unwrap()
            .median
    }

    #[test]
    fn adam_goes_the_wrong_way_and_adopt_does_not() {
        let config = ToyConfig {
            steps: 20_000,
            chains: 16,
            ks: vec![10],
            beta2s: vec![0.1],
            ..ToyConfig::default()
        };
        let report = run(&config).unwrap();
        assert_eq!(report.results.len(), OPTIMIZERS.len());
        assert!(
            final_median(&report, "adam", 10, 0.1) > 0.9,
            "Adam drifts to +1 at small β₂"
        );
        assert!(
            final_median(&report, "adopt", 10, 0.1) < -0.9,
            "ADOPT converges to −1"
        );
        assert!(
            final_median(&report, "adopt_no_decorrelation", 10, 0.1) > 0.5,
            "the ablation behaves like Adam"
        );
    }

    #[test]
    fn the_gradient_is_unbiased() {
        // E[g] = k²/k − k(1 − 1/k) = 1: check the sampler the chains use.
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let k = 10.0_f64;
        let n = 2_000_000;
        let mean: f64 = (0..n)
            .map(|_| {
                if rng.random::<f64>() < 1.0 / k {
                    k * k
                } else {
                    -k
                }
            })
            .sum::<f64>()
            / n as f64;
        assert!((mean - 1.0).abs() < 0.05, "mean gradient {mean}");
    }

    #[test]
    fn quantiles_interpolate_like_numpy() {
        let sorted = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile(&sorted, 0.5), 2.5);
        assert_eq!(quantile(&sorted, 0.25), 1.75);
        assert_eq!(quantile(&sorted, 0.0), 1.0);
    }
}
