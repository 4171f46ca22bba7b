//! The logistic function and its logarithm, stable for any argument, on scalars and tensors.
//!
//! `log σ(x) = min(x, 0) − log1p(e^{−|x|})`. On tensors it is evaluated as two branches that are
//! each exact on their own half-line, `−log1p(e^{−x})` for `x ≥ 0` and `x − log1p(e^{x})` for
//! `x < 0`, each fed a clamped argument so that neither ever overflows. Autodiff then
//! differentiates a smooth function on each side and gives the exact `σ(−x)` everywhere,
//! including `½` at `x = 0`, where differentiating `|x|` would give a wrong subgradient.

use burn::tensor::Tensor;

/// `log σ(x)` for a scalar, without overflow or loss of precision in either tail.
///
/// ```
/// use softalign_pref::log_sigmoid;
/// assert_eq!(log_sigmoid(0.0), -std::f64::consts::LN_2);
/// assert_eq!(log_sigmoid(-1e4), -1e4);
/// assert!((log_sigmoid(40.0) + (-40f64).exp()).abs() < 1e-30);
/// ```
pub fn log_sigmoid(x: f64) -> f64 {
    x.min(0.0) - (-x.abs()).exp().ln_1p()
}

/// `σ(x) = 1 / (1 + e^{−x})` for a scalar, accurate to relative precision in both tails.
///
/// ```
/// use softalign_pref::sigmoid;
/// assert_eq!(sigmoid(0.0), 0.5);
/// assert!(sigmoid(-700.0) > 0.0 && sigmoid(-700.0) < 1e-300);
/// ```
pub fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// Element-wise `log σ(x)` on a tensor, stable in both tails, with exact gradients (see the
/// module documentation).
pub fn log_sigmoid_tensor<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let negative = x.clone().lower_elem(0.0);
    let on_positive_side = x.clone().clamp_min(0.0).neg().exp().log1p().neg();
    let non_positive = x.clamp_max(0.0);
    let on_negative_side = non_positive.clone() - non_positive.exp().log1p();
    on_positive_side.mask_where(negative, on_negative_side)
}

/// Element-wise `σ(x)` on a tensor, as `exp(log σ(x))`, so that `1 − σ(x)` can be formed as
/// `σ(−x)` with full relative precision.
pub fn sigmoid_tensor<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    log_sigmoid_tensor(x).exp()
}
