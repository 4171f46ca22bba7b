//! The DPO family of preference losses and their weighted-geometric-average versions, as one
//! closed enum.
//!
//! Every loss is a pure function of the per-example margin
//! `δ = [log πθ(y₁) − log π_ref(y₁)] − [log πθ(y₂) − log π_ref(y₂)]` (y₁ the preferred response)
//! and the soft label `p̂ = P(y₁ ≻ y₂)`, with `s = 2p̂ − 1`. The tensor form
//! ([`PrefLoss::per_example`]) is what training differentiates; the scalar forms
//! ([`PrefLoss::value`], [`PrefLoss::d_value_d_delta`]) serve analyses and tests.

use std::fmt;
use std::str::FromStr;

use burn::tensor::Tensor;

use crate::PrefError;
use crate::logistic::{log_sigmoid, log_sigmoid_tensor, sigmoid, sigmoid_tensor};

/// ROPO's weight α on the bounded term `1 − σ(βδ)` (Liang et al. 2024), the GDPO paper's value.
pub const DEFAULT_ROPO_ALPHA: f64 = 2.0;
/// ROPO's weight γ on the DPO term `−log σ(βδ)`, the GDPO paper's value.
pub const DEFAULT_ROPO_GAMMA: f64 = 0.1;

/// A preference loss with its parameters.
///
/// Defaults (from the GDPO paper, Furuta et al. 2024) come from [`FromStr`] or the named
/// constructors: β = 0.1 for DPO, cDPO and ROPO; 0.3 for GDPO and GROPO (the geometric losses
/// shrink the effective β by E[s]); 1.0 for IPO and cIPO; 0.5 for GIPO; α = 2 and γ = 0.1.
///
/// ```
/// use softalign_pref::PrefLoss;
/// let loss: PrefLoss = "gdpo".parse().unwrap();
/// assert_eq!(loss, PrefLoss::GDpo { beta: 0.3 });
/// assert_eq!(loss.with_beta(0.5).beta(), 0.5);
/// assert!("kto".parse::<PrefLoss>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PrefLoss {
    /// DPO, Rafailov et al. 2023, "Direct Preference Optimization": `−log σ(βδ)`. Ignores p̂;
    /// train it on binarized labels (the pair oriented so that p̂ ≥ 0.5).
    ///
    /// ```
    /// use softalign_pref::PrefLoss;
    /// let dpo = PrefLoss::dpo();
    /// assert!((dpo.value(0.0, 1.0) - std::f64::consts::LN_2).abs() < 1e-15);
    /// assert!((dpo.d_value_d_delta(0.0, 1.0) + 0.1 * 0.5).abs() < 1e-15);
    /// ```
    Dpo {
        /// Inverse temperature β (default 0.1).
        beta: f64,
    },
    /// Conservative DPO, Mitchell 2023, "A note on DPO with noisy preferences": the cross
    /// entropy with the soft label, `−[p̂ log σ(βδ) + (1−p̂) log σ(−βδ)]`. Its minimum is at
    /// `σ(βδ) = p̂`, so it pulls the policy towards the label rather than past it.
    ///
    /// ```
    /// use softalign_pref::PrefLoss;
    /// let cdpo = PrefLoss::cdpo();
    /// // Stationary where σ(βδ) = p̂: δ = logit(0.7) / β.
    /// let delta = (0.7f64 / 0.3).ln() / 0.1;
    /// assert!(cdpo.d_value_d_delta(delta, 0.7).abs() < 1e-12);
    /// ```
    CDpo {
        /// Inverse temperature β (default 0.1).
        beta: f64,
    },
    /// IPO, Azar et al. 2024, "A General Theoretical Paradigm to Understand Learning from Human
    /// Preferences": `(δ − 1/(2β))²`, on the unscaled margin. Ignores p̂.
    ///
    /// ```
    /// use softalign_pref::PrefLoss;
    /// assert_eq!(PrefLoss::ipo().value(0.5, 1.0), 0.0);
    /// assert_eq!(PrefLoss::ipo().value(1.5, 1.0), 1.0);
    /// ```
    Ipo {
        /// Regularisation β; the target margin is 1/(2β) (default 1.0).
        beta: f64,
    },
    /// Conservative IPO (the GDPO paper's cIPO): `(δ − s/(2β))²` with `s = 2p̂ − 1`, the IPO
    /// target margin scaled by the label's confidence.
    ///
    /// ```
    /// use softalign_pref::PrefLoss;
    /// assert_eq!(PrefLoss::cipo().value(0.0, 0.5), 0.0);
    /// assert_eq!(PrefLoss::cipo().value(0.25, 0.75), 0.0);
    /// ```
    CIpo {
        /// Regularisation β (default 1.0).
        beta: f64,
    },
    /// ROPO, Liang et al. 2024, "Robust Preference Optimization under Noisy Preferences":
    /// `α(1 − σ(βδ)) − γ log σ(βδ)`, a bounded term plus a small DPO term. Ignores p̂.
    ///
    /// ```
    /// use softalign_pref::PrefLoss;
    /// let ropo = PrefLoss::ropo();
    /// let want = 2.0 * 0.5 + 0.1 * std::f64::consts::LN_2;
    /// assert!((ropo.value(0.0, 1.0) - want).abs() < 1e-15);
    /// ```
    Ropo {
        /// Inverse temperature β (default 0.1).
        beta: f64,
        /// Weight α of `1 − σ(βδ)` (default 2).
        alpha: f64,
        /// Weight γ of `−log σ(βδ)` (default 0.1).
        gamma: f64,
    },
    /// GDPO, Furuta et al. 2024, "Geometric-Averaged Preference Optimization for Soft Preference
    /// Labels": DPO on the weighted geometric average of the pair's likelihoods,
    /// `−log σ(β s δ)` with `s = 2p̂ − 1`. Equal to DPO at p̂ = 1; constant `ln 2` with zero
    /// gradient at p̂ = 0.5, so ties teach nothing.
    ///
    /// ```
    /// use softalign_pref::PrefLoss;
    /// let gdpo = PrefLoss::gdpo();
    /// assert_eq!(gdpo.value(3.0, 0.5), std::f64::consts::LN_2);
    /// assert_eq!(gdpo.d_value_d_delta(3.0, 0.5), 0.0);
    /// ```
    GDpo {
        /// Inverse temperature β (default 0.3).
        beta: f64,
    },
    /// GIPO, Furuta et al. 2024 (the paper's printed Eq. 12): `s² (δ − 1/(2β))²`.
    ///
    /// ```
    /// use softalign_pref::PrefLoss;
    /// let gipo = PrefLoss::gipo();
    /// assert_eq!(gipo.value(2.0, 1.0), 1.0);
    /// assert_eq!(gipo.value(2.0, 0.75), 0.25);
    /// ```
    GIpo {
        /// Regularisation β (default 0.5).
        beta: f64,
    },
    /// GROPO, Furuta et al. 2024: ROPO on the geometric average,
    /// `α(1 − σ(β s δ)) − γ log σ(β s δ)`.
    ///
    /// ```
    /// use softalign_pref::PrefLoss;
    /// let gropo = PrefLoss::gropo();
    /// let at_tie = 2.0 * 0.5 + 0.1 * std::f64::consts::LN_2;
    /// assert!((gropo.value(-7.0, 0.5) - at_tie).abs() < 1e-15);
    /// ```
    GRopo {
        /// Inverse temperature β (default 0.3).
        beta: f64,
        /// Weight α of `1 − σ(βsδ)` (default 2).
        alpha: f64,
        /// Weight γ of `−log σ(βsδ)` (default 0.1).
        gamma: f64,
    },
}

impl PrefLoss {
    /// The lowercase names [`FromStr`] accepts, in declaration order.
    pub const NAMES: [&'static str; 8] = [
        "dpo", "cdpo", "ipo", "cipo", "ropo", "gdpo", "gipo", "gropo",
    ];

    /// DPO with β = 0.1.
    pub fn dpo() -> Self {
        Self::Dpo { beta: 0.1 }
    }
    /// cDPO with β = 0.1.
    pub fn cdpo() -> Self {
        Self::CDpo { beta: 0.1 }
    }
    /// IPO with β = 1.0.
    pub fn ipo() -> Self {
        Self::Ipo { beta: 1.0 }
    }
    /// cIPO with β = 1.0.
    pub fn cipo() -> Self {
        Self::CIpo { beta: 1.0 }
    }
    /// ROPO with β = 0.1, α = 2, γ = 0.1.
    pub fn ropo() -> Self {
        Self::Ropo {
            beta: 0.1,
            alpha: DEFAULT_ROPO_ALPHA,
            gamma: DEFAULT_ROPO_GAMMA,
        }
    }
    /// GDPO with β = 0.3.
    pub fn gdpo() -> Self {
        Self::GDpo { beta: 0.3 }
    }
    /// GIPO with β = 0.5.
    pub fn gipo() -> Self {
        Self::GIpo { beta: 0.5 }
    }
    /// GROPO with β = 0.3, α = 2, γ = 0.1.
    pub fn gropo() -> Self {
        Self::GRopo {
            beta: 0.3,
            alpha: DEFAULT_ROPO_ALPHA,
            gamma: DEFAULT_ROPO_GAMMA,
        }
    }

    /// All eight losses with their default parameters, in declaration order.
    pub fn all_defaults() -> [Self; 8] {
        [
            Self::dpo(),
            Self::cdpo(),
            Self::ipo(),
            Self::cipo(),
            Self::ropo(),
            Self::gdpo(),
            Self::gipo(),
            Self::gropo(),
        ]
    }

    /// The loss's lowercase name, as [`FromStr`] reads it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Dpo { .. } => "dpo",
            Self::CDpo { .. } => "cdpo",
            Self::Ipo { .. } => "ipo",
            Self::CIpo { .. } => "cipo",
            Self::Ropo { .. } => "ropo",
            Self::GDpo { .. } => "gdpo",
            Self::GIpo { .. } => "gipo",
            Self::GRopo { .. } => "gropo",
        }
    }

    /// β, the inverse temperature (DPO, ROPO families) or regularisation strength (IPO family).
    pub fn beta(&self) -> f64 {
        match *self {
            Self::Dpo { beta }
            | Self::CDpo { beta }
            | Self::Ipo { beta }
            | Self::CIpo { beta }
            | Self::Ropo { beta, .. }
            | Self::GDpo { beta }
            | Self::GIpo { beta }
            | Self::GRopo { beta, .. } => beta,
        }
    }

    /// The same loss with β replaced.
    pub fn with_beta(self, beta: f64) -> Self {
        match self {
            Self::Dpo { .. } => Self::Dpo { beta },
            Self::CDpo { .. } => Self::CDpo { beta },
            Self::Ipo { .. } => Self::Ipo { beta },
            Self::CIpo { .. } => Self::CIpo { beta },
            Self::Ropo { alpha, gamma, .. } => Self::Ropo { beta, alpha, gamma },
            Self::GDpo { .. } => Self::GDpo { beta },
            Self::GIpo { .. } => Self::GIpo { beta },
            Self::GRopo { alpha, gamma, .. } => Self::GRopo { beta, alpha, gamma },
        }
    }

    /// Whether the loss reads the soft label. DPO, IPO and ROPO do not: they are trained on
    /// pairs oriented by the binarized label (see [`crate::binarize`]).
    pub fn uses_soft_labels(&self) -> bool {
        !matches!(
            self,
            Self::Dpo { .. } | Self::Ipo { .. } | Self::Ropo { .. }
        )
    }

    /// Check the parameters: β finite and positive, α and γ finite and non-negative.
    pub fn validate(&self) -> Result<(), PrefError> {
        let invalid = |parameter: &'static str, value: f64| PrefError::Parameter {
            loss: self.name(),
            parameter,
            value,
        };
        let beta = self.beta();
        if !(beta.is_finite() && beta > 0.0) {
            return Err(invalid("beta", beta));
        }
        if let Self::Ropo { alpha, gamma, .. } | Self::GRopo { alpha, gamma, .. } = *self {
            if !(alpha.is_finite() && alpha >= 0.0) {
                return Err(invalid("alpha", alpha));
            }
            if !(gamma.is_finite() && gamma >= 0.0) {
                return Err(invalid("gamma", gamma));
            }
        }
        Ok(())
    }

    /// Per-example loss from the margins `δ` and soft labels `p̂` (same length), differentiable
    /// through burn's autodiff. Soft labels are expected in [0, 1] (see
    /// [`crate::validate_soft_label`]); the dtype follows the inputs.
    ///
    /// ```
    /// use burn::tensor::{Device, Tensor};
    /// use softalign_pref::PrefLoss;
    /// let device = Device::default();
    /// let margin = Tensor::<1>::from_floats([0.0, 4.0], &device);
    /// let soft_label = Tensor::<1>::from_floats([1.0, 0.5], &device);
    /// let loss = PrefLoss::gdpo().per_example(margin, soft_label);
    /// let values = loss.into_data().try_into_vec_as::<f64>().unwrap();
    /// assert!(values.iter().all(|v| (v - std::f64::consts::LN_2).abs() < 1e-6));
    /// ```
    pub fn per_example(&self, margin: Tensor<1>, soft_label: Tensor<1>) -> Tensor<1> {
        let confidence = || soft_label.clone().mul_scalar(2.0).sub_scalar(1.0);
        match *self {
            Self::Dpo { beta } => log_sigmoid_tensor(margin.mul_scalar(beta)).neg(),
            Self::CDpo { beta } => {
                let scaled = margin.mul_scalar(beta);
                let towards_first = soft_label.clone() * log_sigmoid_tensor(scaled.clone());
                let towards_second =
                    soft_label.neg().add_scalar(1.0) * log_sigmoid_tensor(scaled.neg());
                (towards_first + towards_second).neg()
            }
            Self::Ipo { beta } => margin.sub_scalar(1.0 / (2.0 * beta)).square(),
            Self::CIpo { beta } => (margin - confidence().div_scalar(2.0 * beta)).square(),
            Self::Ropo { beta, alpha, gamma } => ropo_tensor(margin.mul_scalar(beta), alpha, gamma),
            Self::GDpo { beta } => {
                log_sigmoid_tensor(confidence().mul(margin).mul_scalar(beta)).neg()
            }
            Self::GIpo { beta } => {
                confidence().square() * margin.sub_scalar(1.0 / (2.0 * beta)).square()
            }
            Self::GRopo { beta, alpha, gamma } => {
                ropo_tensor(confidence().mul(margin).mul_scalar(beta), alpha, gamma)
            }
        }
    }

    /// The batch loss: the mean of [`PrefLoss::per_example`], as a one-element tensor.
    pub fn mean(&self, margin: Tensor<1>, soft_label: Tensor<1>) -> Tensor<1> {
        self.per_example(margin, soft_label).mean()
    }

    /// Per-example loss for one scalar margin `delta` and soft label `p`.
    pub fn value(&self, delta: f64, p: f64) -> f64 {
        let s = 2.0 * p - 1.0;
        match *self {
            Self::Dpo { beta } => -log_sigmoid(beta * delta),
            Self::CDpo { beta } => {
                let x = beta * delta;
                -(p * log_sigmoid(x) + (1.0 - p) * log_sigmoid(-x))
            }
            Self::Ipo { beta } => (delta - 1.0 / (2.0 * beta)).powi(2),
            Self::CIpo { beta } => (delta - s / (2.0 * beta)).powi(2),
            Self::Ropo { beta, alpha, gamma } => ropo_value(beta * delta, alpha, gamma),
            Self::GDpo { beta } => -log_sigmoid(beta * s * delta),
            Self::GIpo { beta } => s * s * (delta - 1.0 / (2.0 * beta)).powi(2),
            Self::GRopo { beta, alpha, gamma } => ropo_value(beta * s * delta, alpha, gamma),
        }
    }

    /// The analytic derivative of [`PrefLoss::value`] with respect to `delta`.
    ///
    /// For the logistic losses this is `−β w` with the gradient scale `w` of the SPEC:
    /// `1 − σ(βδ)` for DPO, `p̂ − σ(βδ)` for cDPO, `s (1 − σ(βsδ))` for GDPO.
    pub fn d_value_d_delta(&self, delta: f64, p: f64) -> f64 {
        let s = 2.0 * p - 1.0;
        match *self {
            Self::Dpo { beta } => -beta * sigmoid(-beta * delta),
            Self::CDpo { beta } => {
                let x = beta * delta;
                -beta * (p * sigmoid(-x) - (1.0 - p) * sigmoid(x))
            }
            Self::Ipo { beta } => 2.0 * (delta - 1.0 / (2.0 * beta)),
            Self::CIpo { beta } => 2.0 * (delta - s / (2.0 * beta)),
            Self::Ropo { beta, alpha, gamma } => beta * ropo_slope(beta * delta, alpha, gamma),
            Self::GDpo { beta } => -beta * s * sigmoid(-beta * s * delta),
            Self::GIpo { beta } => 2.0 * s * s * (delta - 1.0 / (2.0 * beta)),
            Self::GRopo { beta, alpha, gamma } => {
                beta * s * ropo_slope(beta * s * delta, alpha, gamma)
            }
        }
    }
}

/// `α σ(−x) − γ log σ(x)`, i.e. `α(1 − σ(x)) − γ log σ(x)` without cancellation.
fn ropo_tensor(x: Tensor<1>, alpha: f64, gamma: f64) -> Tensor<1> {
    let bounded = sigmoid_tensor(x.clone().neg()).mul_scalar(alpha);
    bounded - log_sigmoid_tensor(x).mul_scalar(gamma)
}

fn ropo_value(x: f64, alpha: f64, gamma: f64) -> f64 {
    alpha * sigmoid(-x) - gamma * log_sigmoid(x)
}

/// d/dx of `α σ(−x) − γ log σ(x)`.
fn ropo_slope(x: f64, alpha: f64, gamma: f64) -> f64 {
    -alpha * sigmoid(x) * sigmoid(-x) - gamma * sigmoid(-x)
}

impl Default for PrefLoss {
    /// GDPO with β = 0.3, the command line's default.
    fn default() -> Self {
        Self::gdpo()
    }
}

impl fmt::Display for PrefLoss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for PrefLoss {
    type Err = PrefError;

    /// Parse a lowercase loss name into the loss with its default parameters.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Ok(match name {
            "dpo" => Self::dpo(),
            "cdpo" => Self::cdpo(),
            "ipo" => Self::ipo(),
            "cipo" => Self::cipo(),
            "ropo" => Self::ropo(),
            "gdpo" => Self::gdpo(),
            "gipo" => Self::gipo(),
            "gropo" => Self::gropo(),
            _ => {
                return Err(PrefError::UnknownLoss {
                    name: name.to_string(),
                });
            }
        })
    }
}
