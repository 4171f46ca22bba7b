//! ADOPT, Adam, AdamW and AMSGrad for [burn](https://burn.dev), exact to the reference
//! implementations and fused on the CPU.
//!
//! - [`AdoptConfig`]: ADOPT (Taniguchi et al., NeurIPS 2024), matching the official `torch-adopt`.
//! - [`AdamConfig`] (with `amsgrad`) and [`AdamWConfig`]: PyTorch's `Adam` / `AdamW` semantics.
//!
//! Each config's `build()` gives the per-tensor [`burn::optim::Optimizer`] and `init()` a
//! [`burn::optim::ModuleOptimizer`], as burn's own optimizers do. On the `flex` CPU backend a
//! step is one fused, multi-threaded pass over each parameter's (θ, g, m, v) in place
//! ([`kernel`]); on any other backend the same rule runs as composed tensor operations.
//! Move the model into `step` (`model = optim.step(lr, model, grads)`): a caller that keeps a
//! clone of the parameters forces one copy-on-write copy per step.
//!
//! Hyper-parameters are f64 and every scalar coefficient is formed in f64 and rounded to the
//! tensor's type once, as PyTorch does ([`coefficients`]).
//!
//! ```
//! use burn::module::Module;
//! use burn::nn::{Linear, LinearConfig};
//! use burn::optim::GradientsParams;
//! use burn::tensor::{Device, Tensor};
//!
//! let device = Device::default().autodiff();
//! let mut model: Linear = LinearConfig::new(4, 1).init(&device);
//! let mut optim = softalign_optim::AdoptConfig::new().init();
//! for _ in 0..3 {
//!     let loss = model.forward(Tensor::<2>::ones([8, 4], &device)).powi_scalar(2).mean();
//!     let grads = GradientsParams::from_grads(loss.backward(), &model);
//!     model = optim.step(1e-3, model, grads);
//! }
//! ```

#![deny(missing_docs)]

mod adam;
mod adopt;
pub mod bench;
pub mod checkpoint;
pub mod coefficients;
#[cfg(feature = "cube")]
pub mod cube;
pub mod golden;
pub mod kernel;
pub mod reference;
mod storage;

use std::fmt;
use std::str::FromStr;

pub use adam::{Adam, AdamConfig, AdamState, AdamWConfig};
pub use adopt::{Adopt, AdoptConfig, AdoptState};

use burn::grad_clipping::GradientClippingConfig;
use burn::optim::ModuleOptimizer;
use burn::tensor::DType;

/// Weight decay of ADOPT: an L2 term added to the gradient, or decoupled (θ ← θ − lr·wd·θ).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WeightDecay {
    /// The coefficient wd.
    pub penalty: f64,
    /// Decoupled (AdamW-style) rather than L2.
    pub decoupled: bool,
}

impl WeightDecay {
    /// No weight decay.
    pub const NONE: Self = Self {
        penalty: 0.0,
        decoupled: false,
    };

    /// L2 decay: wd·θ is added to the gradient.
    pub fn l2(penalty: f64) -> Self {
        Self {
            penalty,
            decoupled: false,
        }
    }

    /// Decoupled decay: θ ← θ − lr·wd·θ before the update (never on ADOPT's first step).
    pub fn decoupled(penalty: f64) -> Self {
        Self {
            penalty,
            decoupled: true,
        }
    }
}

/// Round an f64 coefficient to the precision of `dtype`, returned as f64 (exact for f32).
pub(crate) fn round_to(dtype: DType, value: f64) -> f64 {
    match dtype {
        DType::F64 => value,
        _ => value as f32 as f64,
    }
}

/// The optimizers by name, for command lines and config files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// ADOPT with its defaults (β₂ 0.9999, ε 1e-6, clip t^0.25); weight decay decoupled.
    Adopt,
    /// Adam (PyTorch); weight decay as L2.
    Adam,
    /// AdamW (PyTorch); weight decay decoupled.
    AdamW,
    /// AMSGrad (PyTorch Adam with `amsgrad=True`); weight decay as L2.
    AmsGrad,
}

impl OptimizerKind {
    /// Every kind, in a fixed order.
    pub const ALL: [Self; 4] = [Self::Adopt, Self::Adam, Self::AdamW, Self::AmsGrad];

    /// The lowercase name (`adopt`, `adam`, `adamw`, `amsgrad`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Adopt => "adopt",
            Self::Adam => "adam",
            Self::AdamW => "adamw",
            Self::AmsGrad => "amsgrad",
        }
    }

    /// A module optimizer of this kind with default hyper-parameters, the given weight decay and
    /// optional per-parameter gradient-norm clipping.
    pub fn module_optimizer(
        self,
        weight_decay: f64,
        grad_clip_norm: Option<f64>,
    ) -> ModuleOptimizer {
        let clipping = grad_clip_norm.map(|norm| GradientClippingConfig::Norm(norm as f32));
        match self {
            Self::Adopt => AdoptConfig::new()
                .with_weight_decay(
                    (weight_decay != 0.0).then(|| WeightDecay::decoupled(weight_decay)),
                )
                .with_grad_clipping(clipping)
                .init(),
            Self::Adam => AdamConfig::new()
                .with_weight_decay(weight_decay)
                .with_grad_clipping(clipping)
                .init(),
            Self::AdamW => AdamWConfig::new()
                .with_weight_decay(weight_decay)
                .with_grad_clipping(clipping)
                .init(),
            Self::AmsGrad => AdamConfig::new()
                .with_amsgrad(true)
                .with_weight_decay(weight_decay)
                .with_grad_clipping(clipping)
                .init(),
        }
    }
}

impl fmt::Display for OptimizerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An optimizer name that is not one of [`OptimizerKind::ALL`].
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown optimizer {0:?} (expected adopt, adam, adamw or amsgrad)")]
pub struct UnknownOptimizer(pub String);

impl FromStr for OptimizerKind {
    type Err = UnknownOptimizer;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.name() == name.to_ascii_lowercase())
            .ok_or_else(|| UnknownOptimizer(name.to_string()))
    }
}
