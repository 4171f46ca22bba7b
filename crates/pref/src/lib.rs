//! Preference losses with soft labels: the DPO family (DPO, cDPO, IPO, cIPO, ROPO) and its
//! weighted-geometric-average versions (GDPO, GIPO, GROPO) of Furuta et al., "Geometric-Averaged
//! Preference Optimization for Soft Preference Labels" (NeurIPS 2024).
//!
//! Pure functions, no I/O:
//! - [`PrefLoss`]: one closed enum, each loss a pure function of the margin δ and soft label p̂,
//!   on burn tensors (differentiable) and on scalars (value and analytic derivative);
//! - soft labels: [`validate_soft_label`], [`orient_pair`], [`binarize`];
//! - [`sequence_logps`] (or [`response_logps`] from gathered token log-probabilities) and
//!   [`preference_margin`]: from a causal LM's logits to δ;
//! - [`PreferenceMetrics`] (TRL's metric names) and [`preference_accuracy`].
//!
//! ```
//! use burn::tensor::{Device, Tensor};
//! use softalign_pref::PrefLoss;
//! let device = Device::default().autodiff();
//! let margin = Tensor::<1>::from_floats([1.0, -2.0], &device).require_grad();
//! let soft_label = Tensor::<1>::from_floats([0.9, 0.6], &device);
//! let loss = PrefLoss::gdpo().mean(margin.clone(), soft_label);
//! let grads = loss.backward();
//! let d_margin = margin.grad(&grads).unwrap().into_data().try_into_vec_as::<f64>().unwrap();
//! assert!(d_margin.iter().all(|g| *g < 0.0)); // raising δ lowers the loss
//! ```

#![deny(missing_docs)]

mod label;
mod logistic;
mod logps;
mod loss;
mod metrics;

pub use label::{OrientedPair, binarize, orient_pair, validate_soft_label};
pub use logistic::{log_sigmoid, log_sigmoid_tensor, sigmoid, sigmoid_tensor};
pub use logps::{preference_margin, response_logps, sequence_logps};
pub use loss::{DEFAULT_ROPO_ALPHA, DEFAULT_ROPO_GAMMA, PrefLoss};
pub use metrics::{PreferenceMetrics, StepOutputs, preference_accuracy};

/// Errors from preference-loss settings and inputs. Callers that read files add the file, line
/// and field around these.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PrefError {
    /// A soft label is not a probability.
    #[error("soft label {value} is not a probability in [0, 1]")]
    SoftLabel {
        /// The offending value.
        value: f64,
    },
    /// A loss name is not one of [`PrefLoss::NAMES`].
    #[error(
        "unknown loss `{name}` (expected one of dpo, cdpo, ipo, cipo, ropo, gdpo, gipo, gropo)"
    )]
    UnknownLoss {
        /// The name given.
        name: String,
    },
    /// A loss parameter is out of range.
    #[error(
        "{loss}: {parameter} = {value} is out of range (beta must be positive, alpha and gamma non-negative, all finite)"
    )]
    Parameter {
        /// The loss's name.
        loss: &'static str,
        /// The parameter at fault.
        parameter: &'static str,
        /// Its value.
        value: f64,
    },
    /// Per-pair inputs of different lengths.
    #[error("{field} has {found} entries, expected {expected}")]
    LengthMismatch {
        /// The field whose length differs from the first one's.
        field: &'static str,
        /// The length of the first field.
        expected: usize,
        /// This field's length.
        found: usize,
    },
    /// No pairs at all.
    #[error("no preference pairs")]
    Empty,
}
