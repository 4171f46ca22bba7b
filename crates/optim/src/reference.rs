//! Scalar reference implementations: the update rules written element by element, exactly as
//! SPEC §1 and the reference PyTorch code state them, with no fusion and no threads.
//!
//! They are the yardstick the fused kernels and the burn optimizers are tested against, and
//! what the float64 golden trajectories are replayed through.

use num_traits::Float;

use crate::coefficients::{AdamHyper, AdoptHyper};

/// State of one parameter tensor under a reference rule.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceState<T> {
    /// Steps taken so far.
    pub step: usize,
    /// First moment.
    pub m: Vec<T>,
    /// Second moment.
    pub v: Vec<T>,
    /// Running maximum of v (AMSGrad only).
    pub v_max: Option<Vec<T>>,
}

impl<T: Float> ReferenceState<T> {
    /// Zero state for a parameter of `len` elements.
    pub fn new(len: usize, amsgrad: bool) -> Self {
        Self {
            step: 0,
            m: vec![T::zero(); len],
            v: vec![T::zero(); len],
            v_max: amsgrad.then(|| vec![T::zero(); len]),
        }
    }
}

/// One ADOPT step on `theta` with gradient `grad`.
pub fn adopt<T: Float>(
    hyper: &AdoptHyper,
    theta: &mut [T],
    grad: &[T],
    state: &mut ReferenceState<T>,
) {
    let t = state.step;
    let s = hyper.scalars::<T>(t.max(1));
    for i in 0..theta.len() {
        let mut g = grad[i];
        if hyper.l2() {
            g = g + s.l2_penalty * theta[i];
        }
        if t == 0 {
            // First step: only initialise the second moment.
            state.v[i] = g * g;
            continue;
        }
        if hyper.decoupled_decay() {
            theta[i] = theta[i] + s.neg_decay * theta[i];
        }
        let denom = state.v[i].sqrt().max(s.epsilon);
        let mut normed = g / denom;
        if hyper.clip_exponent.is_some() {
            normed = normed.max(-s.clip).min(s.clip);
        }
        state.m[i] = torch_lerp(state.m[i], normed, s.momentum_weight);
        theta[i] = theta[i] + s.neg_lr * state.m[i];
        state.v[i] = state.v[i] * s.beta_2 + s.one_minus_beta_2 * g * g;
    }
    state.step += 1;
}

/// One Adam / AdamW / AMSGrad step on `theta` with gradient `grad`.
pub fn adam<T: Float>(
    hyper: &AdamHyper,
    theta: &mut [T],
    grad: &[T],
    state: &mut ReferenceState<T>,
) {
    state.step += 1;
    let s = hyper.scalars::<T>(state.step);
    for i in 0..theta.len() {
        let mut g = grad[i];
        if hyper.l2() {
            g = g + s.l2_penalty * theta[i];
        }
        if hyper.decoupled_decay() {
            theta[i] = theta[i] * s.decay_factor;
        }
        state.m[i] = torch_lerp(state.m[i], g, s.momentum_weight);
        state.v[i] = state.v[i] * s.beta_2 + s.one_minus_beta_2 * g * g;
        let second = match state.v_max.as_mut() {
            Some(v_max) => {
                v_max[i] = v_max[i].max(state.v[i]);
                v_max[i]
            }
            None => state.v[i],
        };
        let denom = second.sqrt() / s.bias_correction_2_sqrt + s.epsilon;
        theta[i] = theta[i] + s.neg_step_size * state.m[i] / denom;
    }
}

/// `torch.lerp(start, end, weight)` as ATen computes it on the CPU.
fn torch_lerp<T: Float>(start: T, end: T, weight: T) -> T {
    if weight < T::from(0.5).unwrap() {
        start + weight * (end - start)
    } else {
        end - (end - start) * (T::one() - weight)
    }
}
