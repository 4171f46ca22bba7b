//! The 1-D bandit of the GDPO paper (Furuta et al. 2024, §3.3): why soft labels need the
//! geometric average.
//!
//! 100 actions carry a linear true reward of small range (−0.5 … 0.5), so Bradley–Terry labels
//! `p̂ = σ(r(y₁) − r(y₂))` are only modestly confident. The data come from a bimodal mixture
//! whose larger mode sits at a low-reward action. A tabular reward `r_θ` (one parameter per
//! action; the policy is `π ∝ π_data · exp(r_θ)`, so the margin is `δ = r_θ(y₁) − r_θ(y₂)`) is
//! fitted by full-batch gradient descent with DPO on binarized labels, cDPO and GDPO.
//!
//! What it shows: cDPO's optimum is `σ(βδ) = p̂`, which with β = 1 recovers the small true
//! reward and leaves the policy's mode at the low-reward data mode; DPO (overconfident labels)
//! and GDPO (whose loss keeps pushing every confidently labelled pair, and ignores ties) move
//! the mode to high-reward actions.

use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::Serialize;
use softalign_plot::{Bars, Figure, Panel, Series};
use softalign_pref::{PrefLoss, orient_pair};

use crate::{ReproError, write_json_atomic};

/// The bandit's settings; [`BanditConfig::default`] is the paper-sized run.
#[derive(Debug, Clone, PartialEq)]
pub struct BanditConfig {
    /// Number of actions (100).
    pub actions: usize,
    /// Number of labelled pairs (100,000).
    pub pairs: usize,
    /// True reward of the first and last action (−0.5, 0.5), linear in between.
    pub reward_range: (f64, f64),
    /// Data mixture: `(centre, weight)` of each Gaussian component ((20, 0.7) and (70, 0.3)).
    pub modes: Vec<(f64, f64)>,
    /// Standard deviation of each component, in actions (8).
    pub mode_std: f64,
    /// The losses to fit, with their β (DPO and cDPO β = 1, GDPO β = 3).
    pub losses: Vec<PrefLoss>,
    /// Full-batch gradient-descent steps (2,000).
    pub steps: usize,
    /// Gradient-descent step size on the mean loss (10; an action's own step scales with its
    /// frequency in the data, at most ~0.03 here).
    pub learning_rate: f64,
    /// Seed of the pair sampler.
    pub seed: u64,
}

impl Default for BanditConfig {
    fn default() -> Self {
        Self {
            actions: 100,
            pairs: 100_000,
            reward_range: (-0.5, 0.5),
            modes: vec![(20.0, 0.7), (70.0, 0.3)],
            mode_std: 8.0,
            losses: vec![
                PrefLoss::Dpo { beta: 1.0 },
                PrefLoss::CDpo { beta: 1.0 },
                PrefLoss::GDpo { beta: 3.0 },
            ],
            steps: 2_000,
            learning_rate: 10.0,
            seed: 0,
        }
    }
}

/// One fitted loss.
#[derive(Debug, Clone, Serialize)]
pub struct BanditFit {
    /// The loss's name (`dpo`, `cdpo`, `gdpo`).
    pub loss: String,
    /// Its β.
    pub beta: f64,
    /// The most probable action of the learned policy.
    pub mode: usize,
    /// The learned policy's expected true reward.
    pub expected_reward: f64,
    /// The learned tabular reward, per action.
    #[serde(skip)]
    pub reward: Vec<f64>,
    /// The learned policy `π ∝ π_data · exp(r_θ)`, per action.
    #[serde(skip)]
    pub policy: Vec<f64>,
}

/// The bandit's outcome, as written to `bandit.json`.
#[derive(Debug, Clone, Serialize)]
pub struct BanditReport {
    /// One entry per loss.
    pub results: Vec<BanditFit>,
    /// The data distribution's expected true reward.
    pub data_expected_reward: f64,
    /// The data distribution's most probable action.
    pub data_mode: usize,
    /// Number of actions.
    pub actions: usize,
    /// Number of labelled pairs.
    pub pairs: usize,
    /// Gradient-descent steps.
    pub steps: usize,
    /// Seed of the pair sampler.
    pub seed: u64,
    /// The data distribution `π_data`, per action.
    #[serde(skip)]
    pub data_distribution: Vec<f64>,
    /// Empirical frequency of each action among the sampled responses.
    #[serde(skip)]
    pub data_histogram: Vec<f64>,
    /// The true reward, per action.
    #[serde(skip)]
    pub true_reward: Vec<f64>,
}

/// An oriented, labelled pair of actions and how often it was sampled.
#[derive(Debug, Clone, Copy)]
struct LabelledPair {
    chosen: usize,
    rejected: usize,
    soft_label: f64,
    count: f64,
}

/// Sample the data, fit every loss of `config`, and summarise.
pub fn run(config: &BanditConfig) -> Result<BanditReport, ReproError> {
    validate(config)?;
    let true_reward = true_reward(config);
    let data_distribution = data_distribution(config);
    let (pairs, data_histogram) = sample_pairs(config, &data_distribution, &true_reward)?;
    let results = config
        .losses
        .par_iter()
        .map(|&loss| {
            let reward = fit(loss, &pairs, config);
            let policy = policy(&data_distribution, &reward);
            BanditFit {
                loss: loss.name().to_string(),
                beta: loss.beta(),
                mode: argmax(&policy),
                expected_reward: expectation(&policy, &true_reward),
                reward,
                policy,
            }
        })
        .collect();
    Ok(BanditReport {
        results,
        data_expected_reward: expectation(&data_distribution, &true_reward),
        data_mode: argmax(&data_distribution),
        actions: config.actions,
        pairs: config.pairs,
        steps: config.steps,
        seed: config.seed,
        data_distribution,
        data_histogram,
        true_reward,
    })
}

fn validate(config: &BanditConfig) -> Result<(), ReproError> {
    let setting = |message: String| Err(ReproError::Setting(message));
    if config.actions < 2 {
        return setting(format!("actions = {}: need at least 2", config.actions));
    }
    if config.pairs == 0 {
        return setting("pairs = 0: need at least 1".to_string());
    }
    if !(config.mode_std.is_finite() && config.mode_std > 0.0) {
        return setting(format!("mode_std = {}: must be positive", config.mode_std));
    }
    if config.modes.is_empty()
        || config
            .modes
            .iter()
            .any(|&(_, w)| !(w.is_finite() && w > 0.0))
    {
        return setting(
            "modes: need at least one component, each with a positive weight".to_string(),
        );
    }
    if !(config.learning_rate.is_finite() && config.learning_rate > 0.0) {
        return setting(format!(
            "learning_rate = {}: must be positive",
            config.learning_rate
        ));
    }
    for loss in &config.losses {
        loss.validate()
            .map_err(|e| ReproError::Setting(e.to_string()))?;
    }
    Ok(())
}

/// Linear true reward from `reward_range.0` at the first action to `reward_range.1` at the last.
fn true_reward(config: &BanditConfig) -> Vec<f64> {
    let (low, high) = config.reward_range;
    let last = (config.actions - 1) as f64;
    (0..config.actions)
        .map(|a| low + (high - low) * a as f64 / last)
        .collect()
}

/// The Gaussian mixture evaluated at each action and normalised over the actions.
fn data_distribution(config: &BanditConfig) -> Vec<f64> {
    let density: Vec<f64> = (0..config.actions)
        .map(|a| {
            config
                .modes
                .iter()
                .map(|&(centre, weight)| {
                    weight * (-0.5 * ((a as f64 - centre) / config.mode_std).powi(2)).exp()
                })
                .sum()
        })
        .collect();
    let total: f64 = density.iter().sum();
    density.iter().map(|d| d / total).collect()
}

/// Draw `config.pairs` pairs of actions independently from `distribution`, label each by
/// Bradley–Terry on the true reward, orient it so that the preferred action comes first, and
/// group identical pairs. Also returns the empirical action frequencies.
fn sample_pairs(
    config: &BanditConfig,
    distribution: &[f64],
    true_reward: &[f64],
) -> Result<(Vec<LabelledPair>, Vec<f64>), ReproError> {
    let cumulative: Vec<f64> = distribution
        .iter()
        .scan(0.0, |total, p| {
            *total += p;
            Some(*total)
        })
        .collect();
    let last = config.actions - 1;
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let mut draw = || {
        let u = rng.random::<f64>() * cumulative[last];
        cumulative.partition_point(|&c| c < u).min(last)
    };
    let mut counts = vec![0u32; config.actions * config.actions];
    let mut histogram = vec![0.0; config.actions];
    for _ in 0..config.pairs {
        let (first, second) = (draw(), draw());
        counts[first * config.actions + second] += 1;
        histogram[first] += 1.0;
        histogram[second] += 1.0;
    }
    let mut pairs = Vec::new();
    for (index, &count) in counts.iter().enumerate().filter(|(_, c)| **c > 0) {
        let (first, second) = (index / config.actions, index % config.actions);
        let soft_label = softalign_pref::sigmoid(true_reward[first] - true_reward[second]);
        let oriented = orient_pair(first, second, soft_label)
            .map_err(|e| ReproError::Setting(e.to_string()))?;
        pairs.push(LabelledPair {
            chosen: oriented.chosen,
            rejected: oriented.rejected,
            soft_label: oriented.soft_label,
            count: f64::from(count),
        });
    }
    let responses = 2.0 * config.pairs as f64;
    histogram.iter_mut().for_each(|h| *h /= responses);
    Ok((pairs, histogram))
}

/// Fit the tabular reward with full-batch gradient descent on the mean loss over all pairs,
/// starting from zero. The margin of a pair is `r_θ(chosen) − r_θ(rejected)`.
fn fit(loss: PrefLoss, pairs: &[LabelledPair], config: &BanditConfig) -> Vec<f64> {
    let total: f64 = pairs.iter().map(|p| p.count).sum();
    let mut reward = vec![0.0; config.actions];
    let mut gradient = vec![0.0; config.actions];
    for _ in 0..config.steps {
        gradient.iter_mut().for_each(|g| *g = 0.0);
        for pair in pairs {
            let delta = reward[pair.chosen] - reward[pair.rejected];
            let slope = pair.count / total * loss.d_value_d_delta(delta, pair.soft_label);
            gradient[pair.chosen] += slope;
            gradient[pair.rejected] -= slope;
        }
        for (r, g) in reward.iter_mut().zip(&gradient) {
            *r -= config.learning_rate * g;
        }
    }
    reward
}

/// `π ∝ π_data · exp(r)`, normalised stably.
fn policy(data_distribution: &[f64], reward: &[f64]) -> Vec<f64> {
    let top = reward.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let unnormalised: Vec<f64> = data_distribution
        .iter()
        .zip(reward)
        .map(|(p, r)| p * (r - top).exp())
        .collect();
    let total: f64 = unnormalised.iter().sum();
    unnormalised.iter().map(|u| u / total).collect()
}

fn expectation(distribution: &[f64], values: &[f64]) -> f64 {
    distribution.iter().zip(values).map(|(p, v)| p * v).sum()
}

fn argmax(values: &[f64]) -> usize {
    values
        .iter()
        .enumerate()
        .fold(0, |best, (i, v)| if *v > values[best] { i } else { best })
}

/// Write `bandit.json` and `bandit.png` into `out_dir`.
pub fn write(report: &BanditReport, out_dir: &Path) -> Result<(), ReproError> {
    std::fs::create_dir_all(out_dir).map_err(|source| ReproError::Io {
        path: out_dir.to_path_buf(),
        cause: source,
    })?;
    figure(report).save(&out_dir.join("bandit.png"))?;
    write_json_atomic(&out_dir.join("bandit.json"), report)
}

fn per_action(values: &[f64]) -> Vec<(f64, f64)> {
    values
        .iter()
        .enumerate()
        .map(|(a, v)| (a as f64, *v))
        .collect()
}

/// Three panels: the data and the learned policies; the true reward; the learned rewards.
fn figure(report: &BanditReport) -> Figure {
    let histogram = Bars {
        label: "data (sampled responses)".to_string(),
        bars: report
            .data_histogram
            .iter()
            .enumerate()
            .map(|(a, h)| (a as f64 - 0.5, *h))
            .collect(),
        width: 1.0,
        errors: Vec::new(),
    };
    let fit_label = |fit: &BanditFit| {
        format!(
            "{} (β {}): mode {}, E[r] {:.2}",
            fit.loss, fit.beta, fit.mode, fit.expected_reward
        )
    };
    let policies = Panel {
        title: format!(
            "policies π ∝ π_data·exp(r); data E[r] {:.2}",
            report.data_expected_reward
        ),
        x_label: "action".to_string(),
        y_label: "probability".to_string(),
        series: report
            .results
            .iter()
            .map(|fit| Series::line(fit_label(fit), per_action(&fit.policy)))
            .collect(),
        bars: vec![histogram],
        ..Panel::default()
    };
    let truth = Panel {
        title: "true reward".to_string(),
        x_label: "action".to_string(),
        y_label: "reward".to_string(),
        series: vec![Series::line("r(a)", per_action(&report.true_reward))],
        ..Panel::default()
    };
    // Rewards are defined up to a constant: show each centred on its data-weighted mean.
    let centred = |reward: &[f64]| {
        let mean = expectation(&report.data_distribution, reward);
        per_action(&reward.iter().map(|r| r - mean).collect::<Vec<_>>())
    };
    let learned = Panel {
        title: "learned rewards (centred)".to_string(),
        x_label: "action".to_string(),
        y_label: "r_θ(a) − E_data[r_θ]".to_string(),
        series: report
            .results
            .iter()
            .map(|fit| Series::line(fit.loss.clone(), centred(&fit.reward)))
            .collect(),
        ..Panel::default()
    };
    Figure {
        title: format!(
            "1-D bandit: {} pairs, {} actions (GDPO paper §3.3)",
            report.pairs, report.actions
        ),
        panels: vec![policies, truth, learned],
        columns: 3,
        panel_size: (560, 420),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> BanditConfig {
        BanditConfig {
            pairs: 20_000,
            seed: 7,
            ..BanditConfig::default()
        }
    }

    fn fit_of<'a>(report: &'a BanditReport, name: &str) -> &'a BanditFit {
        report.results.iter().find(|f| f.loss == name).unwrap()
    }

    #[test]
    fn cdpo_stays_at_the_data_mode_while_dpo_and_gdpo_move_to_high_reward() {
        let report = run(&small()).unwrap();
        let (dpo, cdpo, gdpo) = (
            fit_of(&report, "dpo"),
            fit_of(&report, "cdpo"),
            fit_of(&report, "gdpo"),
        );
        assert_eq!(report.data_mode, 20);
        assert!(cdpo.mode.abs_diff(20) <= 5, "cdpo mode {}", cdpo.mode);
        for fit in [dpo, gdpo] {
            assert!(fit.mode >= 70, "{} mode {}", fit.loss, fit.mode);
            assert!(
                fit.expected_reward > 0.15,
                "{} E[r] {}",
                fit.loss,
                fit.expected_reward
            );
        }
        // cDPO improves on the data only a little, as far as its calibrated reward allows.
        assert!(report.data_expected_reward < cdpo.expected_reward);
        assert!(cdpo.expected_reward < 0.0);
    }

    #[test]
    fn cdpo_recovers_the_true_reward_where_data_are_dense() {
        // cDPO's optimum is σ(δ) = p̂ = σ(Δr) at β = 1: the learned reward is the true one, up to
        // a constant, on the actions the data cover well.
        let config = small();
        let report = run(&config).unwrap();
        let cdpo = fit_of(&report, "cdpo");
        let offset = cdpo.reward[20] - report.true_reward[20];
        for a in (10..=30).chain(62..=78) {
            let error = (cdpo.reward[a] - offset - report.true_reward[a]).abs();
            assert!(error < 0.05, "action {a}: off by {error}");
        }
    }

    #[test]
    fn data_and_policies_are_distributions() {
        let report = run(&BanditConfig {
            pairs: 2_000,
            steps: 50,
            ..BanditConfig::default()
        })
        .unwrap();
        let total = |v: &[f64]| v.iter().sum::<f64>();
        assert!((total(&report.data_distribution) - 1.0).abs() < 1e-12);
        assert!((total(&report.data_histogram) - 1.0).abs() < 1e-12);
        for fit in &report.results {
            assert!((total(&fit.policy) - 1.0).abs() < 1e-12);
            assert!(fit.policy.iter().all(|p| *p >= 0.0));
        }
        assert_eq!(report.true_reward[0], -0.5);
        assert_eq!(report.true_reward[99], 0.5);
    }

    #[test]
    fn writes_json_and_png() {
        let out =
            std::env::temp_dir().join(format!("softalign-bandit-test-{}", std::process::id()));
        let report = run(&BanditConfig {
            pairs: 2_000,
            steps: 50,
            ..BanditConfig::default()
        })
        .unwrap();
        write(&report, &out).unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("bandit.json")).unwrap())
                .unwrap();
        assert!(json["data_expected_reward"].is_f64());
        let names: Vec<&str> = json["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["loss"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["dpo", "cdpo", "gdpo"]);
        assert!(
            json["results"][0]["mode"].is_u64() && json["results"][0]["expected_reward"].is_f64()
        );
        assert_eq!(
            &std::fs::read(out.join("bandit.png")).unwrap()[1..4],
            b"PNG"
        );
        std::fs::remove_dir_all(&out).unwrap();
    }

    #[test]
    fn rejects_bad_settings() {
        for config in [
            BanditConfig {
                actions: 1,
                ..BanditConfig::default()
            },
            BanditConfig {
                pairs: 0,
                ..BanditConfig::default()
            },
            BanditConfig {
                mode_std: 0.0,
                ..BanditConfig::default()
            },
            BanditConfig {
                learning_rate: f64::NAN,
                ..BanditConfig::default()
            },
            BanditConfig {
                losses: vec![PrefLoss::Dpo { beta: -1.0 }],
                ..BanditConfig::default()
            },
        ] {
            assert!(
                matches!(run(&config), Err(ReproError::Setting(_))),
                "{config:?}"
            );
        }
    }
}
