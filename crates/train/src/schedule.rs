//! Learning-rate schedule: linear warmup, then cosine decay to a floor.

use crate::error::{Result, setting};

/// Linear warmup from `peak / warmup_steps` to `peak` over the first `warmup_steps` optimizer
/// steps, then a half cosine from `peak` down to `peak · min_ratio` at `total_steps`.
///
/// ```
/// use softalign_train::Schedule;
/// let s = Schedule { peak: 1e-3, warmup_steps: 10, total_steps: 110, min_ratio: 0.0 };
/// assert_eq!(s.learning_rate(0), 1e-4);
/// assert_eq!(s.learning_rate(9), 1e-3);
/// assert!((s.learning_rate(60) - 0.5e-3).abs() < 1e-12);
/// assert!(s.learning_rate(109) < 1e-6);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    /// The peak learning rate, reached at the end of warmup.
    pub peak: f64,
    /// Steps of linear warmup (0 starts at the peak).
    pub warmup_steps: usize,
    /// Total optimizer steps of the run.
    pub total_steps: usize,
    /// The final learning rate as a fraction of the peak, in [0, 1].
    pub min_ratio: f64,
}

impl Schedule {
    /// Checks the ranges: a positive finite peak, warmup below the total, ratio in [0, 1].
    pub fn validate(&self) -> Result<()> {
        if !(self.peak.is_finite() && self.peak > 0.0) {
            return Err(setting(
                "learning-rate",
                format!("must be positive and finite, got {}", self.peak),
            ));
        }
        if self.total_steps == 0 {
            return Err(setting("max-steps", "must be at least 1"));
        }
        if self.warmup_steps >= self.total_steps && self.warmup_steps > 0 {
            return Err(setting(
                "warmup-steps",
                format!(
                    "{} must be below the number of steps ({})",
                    self.warmup_steps, self.total_steps
                ),
            ));
        }
        if !(0.0..=1.0).contains(&self.min_ratio) {
            return Err(setting(
                "min-lr-ratio",
                format!("must be in [0, 1], got {}", self.min_ratio),
            ));
        }
        Ok(())
    }

    /// The learning rate of optimizer step `step` (0-based).
    pub fn learning_rate(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.peak * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let decay_steps = self.total_steps.saturating_sub(self.warmup_steps).max(1);
        let progress = ((step - self.warmup_steps) as f64 / decay_steps as f64).min(1.0);
        let floor = self.peak * self.min_ratio;
        floor + (self.peak - floor) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
    }
}
