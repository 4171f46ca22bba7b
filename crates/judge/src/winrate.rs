//! Win rates from soft judgements (GDPO paper §4.2) with 95% confidence intervals.
//!
//! For n judged prompts with p̂ᵢ = P(model ≻ opponent) averaged over both orders:
//! - binary win rate `Σ 1[p̂ᵢ ≥ 0.5] / n`, with the Wilson score interval;
//! - percentage win rate `Σ p̂ᵢ / n`, with a percentile bootstrap interval (10 000 resamples of
//!   the prompts, seeded, so the same inputs give the same interval).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// The 97.5% quantile of the standard normal distribution.
pub const Z_95: f64 = 1.959_963_984_540_054;

/// Bootstrap resamples of the percentage win rate's interval.
pub const BOOTSTRAP_RESAMPLES: usize = 10_000;

/// A rate and its 95% confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Estimate {
    /// The point estimate.
    pub value: f64,
    /// Lower end of the 95% interval.
    pub low: f64,
    /// Upper end of the 95% interval.
    pub high: f64,
}

/// Both win rates of one comparison.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct WinRates {
    /// Judged prompts.
    pub n: usize,
    /// Prompts with p̂ ≥ 0.5.
    pub wins: usize,
    /// Prompts with p̂ exactly 0.5 (counted as wins; e.g. identical responses, which a judge
    /// scores the same in both orders).
    pub ties: usize,
    /// Share of prompts with p̂ ≥ 0.5, Wilson interval.
    pub binary: Estimate,
    /// Mean p̂, bootstrap interval.
    pub percentage: Estimate,
}

/// The Wilson score interval of `successes` out of `n` at normal quantile `z`.
///
/// ```
/// use softalign_judge::winrate::{Z_95, wilson};
/// let e = wilson(7, 10, Z_95);
/// assert!((e.value - 0.7).abs() < 1e-12);
/// assert!((e.low - 0.3968).abs() < 1e-4 && (e.high - 0.8922).abs() < 1e-4);
/// ```
pub fn wilson(successes: usize, n: usize, z: f64) -> Estimate {
    if n == 0 {
        return Estimate {
            value: f64::NAN,
            low: f64::NAN,
            high: f64::NAN,
        };
    }
    let n_f = n as f64;
    let p = successes as f64 / n_f;
    let z2 = z * z;
    let denominator = 1.0 + z2 / n_f;
    let center = (p + z2 / (2.0 * n_f)) / denominator;
    let half = z * (p * (1.0 - p) / n_f + z2 / (4.0 * n_f * n_f)).sqrt() / denominator;
    Estimate {
        value: p,
        low: (center - half).max(0.0),
        high: (center + half).min(1.0),
    }
}

/// The mean of `values` with a percentile bootstrap 95% interval from `resamples` resamples
/// drawn with `seed`.
pub fn bootstrap_mean(values: &[f64], resamples: usize, seed: u64) -> Estimate {
    let n = values.len();
    if n == 0 {
        return Estimate {
            value: f64::NAN,
            low: f64::NAN,
            high: f64::NAN,
        };
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut means: Vec<f64> = (0..resamples.max(1))
        .map(|_| (0..n).map(|_| values[rng.random_range(0..n)]).sum::<f64>() / n as f64)
        .collect();
    means.sort_by(f64::total_cmp);
    let quantile = |q: f64| {
        let position = q * (means.len() - 1) as f64;
        let (below, above) = (position.floor() as usize, position.ceil() as usize);
        let weight = position - below as f64;
        means[below] * (1.0 - weight) + means[above] * weight
    };
    Estimate {
        value: mean,
        low: quantile(0.025),
        high: quantile(0.975),
    }
}

impl WinRates {
    /// Win rates of the soft judgements `p` (each P(model ≻ opponent)).
    ///
    /// ```
    /// use softalign_judge::WinRates;
    /// let w = WinRates::of(&[0.9, 0.5, 0.2, 0.7]);
    /// assert_eq!((w.n, w.wins), (4, 3)); // p̂ = 0.5 counts as a win
    /// assert!((w.binary.value - 0.75).abs() < 1e-12);
    /// assert!((w.percentage.value - 0.575).abs() < 1e-12);
    /// ```
    pub fn of(p: &[f64]) -> Self {
        let wins = p.iter().filter(|&&v| v >= 0.5).count();
        Self {
            n: p.len(),
            wins,
            ties: p.iter().filter(|&&v| v == 0.5).count(),
            binary: wilson(wins, p.len(), Z_95),
            percentage: bootstrap_mean(p, BOOTSTRAP_RESAMPLES, 0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_matches_hand_computed_values() {
        // n = 20, 10 wins: centre 0.5, half-width z·sqrt(1/80 + z²/1600)/(1 + z²/20).
        let e = wilson(10, 20, Z_95);
        let z2 = Z_95 * Z_95;
        let half = Z_95 * (0.25 / 20.0 + z2 / 1600.0).sqrt() / (1.0 + z2 / 20.0);
        assert!((e.low - (0.5 - half)).abs() < 1e-12 && (e.high - (0.5 + half)).abs() < 1e-12);
        // All wins: the interval stays inside [0, 1] and is not degenerate.
        let all = wilson(5, 5, Z_95);
        assert_eq!(all.high, 1.0);
        assert!((all.low - 0.5655).abs() < 1e-4, "{all:?}");
        assert_eq!(wilson(0, 5, Z_95).low, 0.0);
        assert!(wilson(0, 0, Z_95).value.is_nan());
    }

    #[test]
    fn bootstrap_interval_is_close_to_the_normal_one_and_reproducible() {
        let values: Vec<f64> = (0..200).map(|i| ((i * 37) % 100) as f64 / 100.0).collect();
        let e = bootstrap_mean(&values, BOOTSTRAP_RESAMPLES, 0);
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let sd = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
        let half = Z_95 * sd / n.sqrt();
        assert!((e.value - mean).abs() < 1e-12);
        assert!(
            (e.low - (mean - half)).abs() < 0.15 * half,
            "{e:?} vs ±{half}"
        );
        assert!(
            (e.high - (mean + half)).abs() < 0.15 * half,
            "{e:?} vs ±{half}"
        );
        assert_eq!(e, bootstrap_mean(&values, BOOTSTRAP_RESAMPLES, 0));
        // A constant sample has a zero-width interval.
        let c = bootstrap_mean(&[0.7; 9], 100, 3);
        assert!((c.low - 0.7).abs() < 1e-12 && (c.high - 0.7).abs() < 1e-12);
    }

    #[test]
    fn win_rates_on_fixed_judgements() {
        let w = WinRates::of(&[1.0, 0.0, 0.49, 0.51, 0.5]);
        assert_eq!((w.n, w.wins, w.ties), (5, 3, 1));
        assert!((w.binary.value - 0.6).abs() < 1e-12);
        assert!((w.percentage.value - 0.5).abs() < 1e-12);
        assert!(w.binary.low < 0.6 && w.binary.high > 0.6);
        assert!(w.percentage.low <= 0.5 && w.percentage.high >= 0.5);
    }
}
