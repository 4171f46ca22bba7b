//! Scalar coefficients of a step, formed in f64 and rounded to the element type once.
//!
//! PyTorch computes 1−β₁, 1−β₂, lr·wd, the bias corrections and the clip value tᶜ in double
//! precision and casts each to the tensor's type once. Forming them in f32 instead (1−β₂ from an
//! f32 β₂ = 0.9999 is off by 1.7e-4 relative) makes an otherwise correct port miss the reference
//! trajectories by up to 9e-4; see `shared/golden/README.md`.

use num_traits::{Float, NumCast};

use crate::kernel::{AdamScalars, AdoptScalars};

fn cast<T: Float>(value: f64) -> T {
    <T as NumCast>::from(value).expect("every float converts from f64")
}

/// ADOPT's hyper-parameters, in f64.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdoptHyper {
    /// Learning rate of this step.
    pub lr: f64,
    /// β₁.
    pub beta_1: f64,
    /// β₂.
    pub beta_2: f64,
    /// ε, the floor on √v.
    pub epsilon: f64,
    /// Clip exponent c: normalised gradients are clamped to ±t^c; `None` disables clipping.
    pub clip_exponent: Option<f64>,
    /// Weight decay coefficient (0 for none).
    pub weight_decay: f64,
    /// Whether the decay is decoupled (AdamW-style) rather than an L2 term in the gradient.
    pub decoupled: bool,
}

impl AdoptHyper {
    /// The rounded scalars of step `t` (t ≥ 1; t = 0 is the initialisation step).
    pub fn scalars<T: Float>(&self, t: usize) -> AdoptScalars<T> {
        AdoptScalars {
            neg_lr: cast(-self.lr),
            momentum_weight: cast(1.0 - self.beta_1),
            beta_2: cast(self.beta_2),
            one_minus_beta_2: cast(1.0 - self.beta_2),
            epsilon: cast(self.epsilon),
            clip: cast(
                self.clip_exponent
                    .map_or(f64::INFINITY, |c| (t as f64).powf(c)),
            ),
            l2_penalty: cast(self.weight_decay),
            neg_decay: cast(-self.lr * self.weight_decay),
        }
    }

    /// Whether weight decay enters the gradient as an L2 term.
    pub fn l2(&self) -> bool {
        self.weight_decay != 0.0 && !self.decoupled
    }

    /// Whether weight decay is applied to θ directly.
    pub fn decoupled_decay(&self) -> bool {
        self.weight_decay != 0.0 && self.decoupled
    }
}

/// Adam's hyper-parameters, in f64 (Adam, AdamW and AMSGrad share them).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamHyper {
    /// Learning rate of this step.
    pub lr: f64,
    /// β₁.
    pub beta_1: f64,
    /// β₂.
    pub beta_2: f64,
    /// ε, added to the bias-corrected √v̂.
    pub epsilon: f64,
    /// Weight decay coefficient (0 for none).
    pub weight_decay: f64,
    /// Decoupled decay (AdamW) rather than an L2 term in the gradient (Adam).
    pub decoupled: bool,
    /// Keep the running maximum of v (AMSGrad).
    pub amsgrad: bool,
}

impl AdamHyper {
    /// The rounded scalars of step `t` (t ≥ 1, counted after the increment as PyTorch does).
    pub fn scalars<T: Float>(&self, t: usize) -> AdamScalars<T> {
        let t = t as i32;
        let bias_correction_1 = 1.0 - self.beta_1.powi(t);
        let bias_correction_2 = 1.0 - self.beta_2.powi(t);
        AdamScalars {
            neg_step_size: cast(-(self.lr / bias_correction_1)),
            momentum_weight: cast(1.0 - self.beta_1),
            beta_2: cast(self.beta_2),
            one_minus_beta_2: cast(1.0 - self.beta_2),
            bias_correction_2_sqrt: cast(bias_correction_2.sqrt()),
            epsilon: cast(self.epsilon),
            l2_penalty: cast(self.weight_decay),
            decay_factor: cast(1.0 - self.lr * self.weight_decay),
        }
    }

    /// Whether weight decay enters the gradient as an L2 term.
    pub fn l2(&self) -> bool {
        self.weight_decay != 0.0 && !self.decoupled
    }

    /// Whether weight decay is applied to θ directly.
    pub fn decoupled_decay(&self) -> bool {
        self.weight_decay != 0.0 && self.decoupled
    }
}
