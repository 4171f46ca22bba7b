//! Intervals over seeds: a mean with its Student-t 95% interval, and the paired difference of two
//! treatments measured on the same seeds (its interval, sign count and the smallest effect the
//! run could detect).

use serde::{Deserialize, Serialize};

/// A mean over seeds with its 95% interval (Student t; the interval is the mean itself for one
/// seed).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// The mean.
    pub mean: f64,
    /// Lower end of the 95% interval.
    pub low: f64,
    /// Upper end of the 95% interval.
    pub high: f64,
}

/// Two-sided 95% Student-t quantiles (t₀.₉₇₅) for 1 … 30 degrees of freedom.
const T_975: [f64; 30] = [
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
    2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
    2.052, 2.048, 2.045, 2.042,
];

/// One-sided 80% Student-t quantiles (t₀.₈₀) for 1 … 30 degrees of freedom: 80% power.
const T_80: [f64; 30] = [
    1.376, 1.061, 0.978, 0.941, 0.920, 0.906, 0.896, 0.889, 0.883, 0.879, 0.876, 0.873, 0.870,
    0.868, 0.866, 0.865, 0.863, 0.862, 0.861, 0.860, 0.859, 0.858, 0.858, 0.857, 0.856, 0.856,
    0.855, 0.855, 0.854, 0.854,
];

fn quantile(table: &[f64; 30], degrees_of_freedom: usize, limit: f64) -> f64 {
    table.get(degrees_of_freedom - 1).copied().unwrap_or(limit)
}

/// Mean and sample standard deviation (n − 1); the deviation is 0 for fewer than two values.
fn mean_sd(values: &[f64]) -> (f64, f64) {
    let n = values.len();
    let mean = values.iter().sum::<f64>() / n.max(1) as f64;
    if n < 2 {
        return (mean, 0.0);
    }
    let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    (mean, variance.sqrt())
}

/// Mean and 95% confidence interval of `values` (mean ± t₀.₉₇₅,ₙ₋₁ · s/√n).
pub fn mean_ci95(values: &[f64]) -> Interval {
    let n = values.len();
    let (mean, sd) = mean_sd(values);
    if n < 2 {
        return Interval {
            mean,
            low: mean,
            high: mean,
        };
    }
    let half = quantile(&T_975, n - 1, 1.96) * sd / (n as f64).sqrt();
    Interval {
        mean,
        low: mean - half,
        high: mean + half,
    }
}

/// The per-seed differences `a − b` of two treatments measured on the same seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairedDifference {
    /// Seeds.
    pub n: usize,
    /// Mean difference with its 95% t-interval over seeds.
    pub difference: Interval,
    /// Standard deviation of the differences.
    pub sd: f64,
    /// Seeds where `a > b`.
    pub positive: usize,
    /// Seeds where `a < b`.
    pub negative: usize,
    /// Seeds where `a = b`.
    pub zero: usize,
    /// The smallest true mean difference a two-sided paired t-test at 5% would detect with 80%
    /// power at this spread and number of seeds, `(t₀.₉₇₅ + t₀.₈₀) · s/√n`; `None` below two
    /// seeds.
    pub minimum_detectable: Option<f64>,
}

/// The paired difference `a[i] − b[i]` over seeds `i` (`a` and `b` of equal length).
pub fn paired_difference(a: &[f64], b: &[f64]) -> PairedDifference {
    let differences: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    let n = differences.len();
    let (_, sd) = mean_sd(&differences);
    let count = |keep: fn(f64) -> bool| differences.iter().filter(|&&d| keep(d)).count();
    PairedDifference {
        n,
        difference: mean_ci95(&differences),
        sd,
        positive: count(|d| d > 0.0),
        negative: count(|d| d < 0.0),
        zero: count(|d| d == 0.0),
        minimum_detectable: (n >= 2).then(|| {
            (quantile(&T_975, n - 1, 1.96) + quantile(&T_80, n - 1, 0.842)) * sd / (n as f64).sqrt()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paired_difference_matches_a_hand_computed_case() {
        // d = 2, 3, 2, 3, 3: mean 2.6, s² = 1.2 / 4 = 0.3, s/√n = √0.06 = 0.244949;
        // t₀.₉₇₅,₄ = 2.776 → half-width 0.679978; t₀.₈₀,₄ = 0.941 → MDE 3.717 · 0.244949.
        let a = [3.0, 5.0, 4.0, 6.0, 7.0];
        let b = [1.0, 2.0, 2.0, 3.0, 4.0];
        let d = paired_difference(&a, &b);
        assert_eq!(d.n, 5);
        assert!((d.difference.mean - 2.6).abs() < 1e-12);
        assert!((d.difference.low - (2.6 - 0.679_978)).abs() < 1e-5);
        assert!((d.difference.high - (2.6 + 0.679_978)).abs() < 1e-5);
        assert!((d.sd - 0.3f64.sqrt()).abs() < 1e-12);
        assert_eq!((d.positive, d.negative, d.zero), (5, 0, 0));
        assert!((d.minimum_detectable.unwrap() - 3.717 * 0.244_949).abs() < 1e-5);
    }

    #[test]
    fn signs_count_ties_apart_and_one_seed_has_no_spread() {
        let d = paired_difference(&[1.0, 1.0, 0.0], &[0.0, 1.0, 2.0]);
        assert_eq!((d.positive, d.negative, d.zero), (1, 1, 1));
        let one = paired_difference(&[2.0], &[1.0]);
        assert_eq!(one.difference.low, 1.0);
        assert_eq!(one.minimum_detectable, None);
    }
}
