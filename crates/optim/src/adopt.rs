//! ADOPT (Taniguchi et al., "ADOPT: Modified Adam Can Converge with Any β₂ with the Optimal
//! Rate", NeurIPS 2024), exact to the official PyTorch implementation (`torch-adopt`).

use burn::config::Config;
use burn::grad_clipping::GradientClippingConfig;
use burn::optim::{ModuleOptimizer, Optimizer, RecordState, StateSink, StateSource};
use burn::tensor::{DType, Device, Tensor};
use burn_pack::Scalar;

use crate::coefficients::AdoptHyper;
use crate::kernel;
use crate::storage::{HostTensor, zeros_like};
use crate::{WeightDecay, round_to};

/// Configuration of [`Adopt`], mirroring burn's `AdamConfig`.
///
/// ```text
/// state per parameter tensor: m = 0, v = 0, t = 0
/// g ← gradient (+ wd·θ when weight decay is L2)
/// t = 0:  v ← g²; parameters untouched (no decoupled decay either)
/// t ≥ 1:  θ ← θ − lr·wd·θ                        (decoupled weight decay only)
///         n ← g / max(√v, ε)                      (ε is a floor on √v, not added)
///         n ← clamp(n, −t^c, t^c)                 (c = clip_exponent; None = no clipping)
///         m ← m + (1−β₁)(n − m)
///         θ ← θ − lr·m                            (no bias correction)
///         v ← β₂·v + (1−β₂)·g²                    (last)
/// ```
///
/// ```
/// use softalign_optim::{AdoptConfig, WeightDecay};
/// let optimizer = AdoptConfig::new()
///     .with_beta_2(0.999)
///     .with_weight_decay(Some(WeightDecay::decoupled(0.01)))
///     .init();
/// # let _ = optimizer;
/// ```
#[derive(Config, Debug)]
pub struct AdoptConfig {
    /// β₁, the momentum coefficient.
    #[config(default = 0.9)]
    pub beta_1: f64,
    /// β₂, the second-moment coefficient. ADOPT converges for any β₂.
    #[config(default = 0.9999)]
    pub beta_2: f64,
    /// ε, a floor on √v (not added to it).
    #[config(default = 1e-6)]
    pub epsilon: f64,
    /// Normalised gradients are clamped to ±t^clip_exponent at step t; `None` disables it.
    #[config(default = "Some(0.25)")]
    pub clip_exponent: Option<f64>,
    /// Weight decay, as an L2 term in the gradient or decoupled.
    #[config(default = "None")]
    pub weight_decay: Option<WeightDecay>,
    /// burn's per-parameter gradient clipping, applied before the update.
    #[config(default = "None")]
    pub grad_clipping: Option<GradientClippingConfig>,
}

impl AdoptConfig {
    /// The per-tensor optimizer.
    pub fn build(&self) -> Adopt {
        Adopt {
            beta_1: self.beta_1,
            beta_2: self.beta_2,
            epsilon: self.epsilon,
            clip_exponent: self.clip_exponent,
            weight_decay: self.weight_decay.unwrap_or(WeightDecay::NONE),
            composed_only: false,
        }
    }

    /// The module-level optimizer (fused on the CPU backend), with gradient clipping if set.
    pub fn init(&self) -> ModuleOptimizer {
        let mut optim = ModuleOptimizer::from(self.build());
        if let Some(clipping) = &self.grad_clipping {
            optim = optim.with_grad_clipping(clipping.init());
        }
        optim
    }
}

/// The ADOPT update rule for one parameter tensor. Build it with [`AdoptConfig`].
#[derive(Debug, Clone, Copy)]
pub struct Adopt {
    beta_1: f64,
    beta_2: f64,
    epsilon: f64,
    clip_exponent: Option<f64>,
    weight_decay: WeightDecay,
    composed_only: bool,
}

impl Adopt {
    /// Always take the composed-ops path, even on the CPU backend (for benchmarks and tests).
    pub fn composed_only(mut self) -> Self {
        self.composed_only = true;
        self
    }

    /// The hyper-parameters of a step at learning rate `lr`.
    pub fn hyper(&self, lr: f64) -> AdoptHyper {
        AdoptHyper {
            lr,
            beta_1: self.beta_1,
            beta_2: self.beta_2,
            epsilon: self.epsilon,
            clip_exponent: self.clip_exponent,
            weight_decay: self.weight_decay.penalty,
            decoupled: self.weight_decay.decoupled,
        }
    }
}

/// ADOPT's state for one parameter tensor.
#[derive(Debug, Clone)]
pub struct AdoptState<const D: usize> {
    /// Steps taken (the first, t = 0, only initialises `v`).
    pub step: usize,
    /// First moment (momentum of the normalised gradient).
    pub m: Tensor<D>,
    /// Second moment.
    pub v: Tensor<D>,
}

impl<const D: usize> RecordState for AdoptState<D> {
    fn state_flatten(&self, prefix: &str, out: &mut StateSink) {
        out.push_scalar(prefix, "step", Scalar::from(self.step));
        out.push_tensor(prefix, "m", self.m.to_data());
        out.push_tensor(prefix, "v", self.v.to_data());
    }

    fn state_unflatten(prefix: &str, src: &mut StateSource, device: &Device) -> Option<Self> {
        let step = usize::try_from(src.take_scalar(prefix, "step")?).ok()?;
        let m = src.take_tensor(prefix, "m")?;
        let v = src.take_tensor(prefix, "v")?;
        let (m_dtype, v_dtype) = (m.dtype(), v.dtype());
        Some(Self {
            step,
            m: Tensor::from_data(m, (device, m_dtype)),
            v: Tensor::from_data(v, (device, v_dtype)),
        })
    }
}

impl Optimizer for Adopt {
    type State<const D: usize> = AdoptState<D>;

    fn step<const D: usize>(
        &self,
        lr: f64,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let hyper = self.hyper(lr);
        let state = state.unwrap_or_else(|| AdoptState {
            step: 0,
            m: zeros_like(&tensor),
            v: zeros_like(&tensor),
        });
        let (tensor, state) = if self.composed_only {
            composed_step(&hyper, tensor, grad, state)
        } else {
            match fused_step(&hyper, tensor, grad, state) {
                Ok(done) => done,
                Err(parts) => {
                    let (tensor, grad, state) = *parts;
                    device_step(&hyper, tensor, grad, state)
                }
            }
        };
        (tensor, Some(state))
    }

    fn to_device<const D: usize>(mut state: Self::State<D>, device: &Device) -> Self::State<D> {
        state.m = state.m.to_device(device);
        state.v = state.v.to_device(device);
        state
    }
}

type Parts<const D: usize> = (Tensor<D>, Tensor<D>, AdoptState<D>);

/// The fused path: one pass over (θ, g, m, v) in place, on the flex CPU backend.
fn fused_step<const D: usize>(
    hyper: &AdoptHyper,
    tensor: Tensor<D>,
    grad: Tensor<D>,
    state: AdoptState<D>,
) -> Result<(Tensor<D>, AdoptState<D>), Box<Parts<D>>> {
    let AdoptState { step, m, v } = state;
    let give_back = |tensor, grad, m, v| (tensor, grad, AdoptState { step, m, v });
    let mut theta = match HostTensor::take(tensor) {
        Ok(theta) => theta,
        Err(tensor) => return Err(Box::new(give_back(*tensor, grad, m, v))),
    };
    let dtype = theta.dtype();
    let (grad, mut m, mut v) = match (
        HostTensor::take(grad),
        HostTensor::take(m),
        HostTensor::take(v),
    ) {
        (Ok(g), Ok(m), Ok(v))
            if g.dtype() == dtype
                && m.dtype() == dtype
                && v.dtype() == dtype
                && g.len() == theta.len() =>
        {
            (g, m, v)
        }
        (g, m, v) => {
            let back = |t: Result<HostTensor, Box<Tensor<D>>>| {
                t.map_or_else(|t| *t, HostTensor::into_tensor)
            };
            return Err(Box::new(give_back(
                theta.into_tensor(),
                back(g),
                back(m),
                back(v),
            )));
        }
    };
    match dtype {
        DType::F32 => run_fused::<f32>(hyper, step, &mut theta, &grad, &mut m, &mut v),
        _ => run_fused::<f64>(hyper, step, &mut theta, &grad, &mut m, &mut v),
    }
    Ok((
        theta.into_tensor(),
        AdoptState {
            step: step + 1,
            m: m.into_tensor(),
            v: v.into_tensor(),
        },
    ))
}

fn run_fused<T: kernel::Element + burn::tensor::Element + bytemuck::Pod>(
    hyper: &AdoptHyper,
    step: usize,
    theta: &mut HostTensor,
    grad: &HostTensor,
    m: &mut HostTensor,
    v: &mut HostTensor,
) {
    let scalars = hyper.scalars::<T>(step.max(1));
    if step == 0 {
        let penalty = hyper.l2().then_some(scalars.l2_penalty);
        kernel::adopt_first_step(
            theta.slice::<T>(),
            grad.slice::<T>(),
            v.slice_mut::<T>(),
            penalty,
        );
    } else {
        kernel::adopt_step(
            theta.slice_mut::<T>(),
            grad.slice::<T>(),
            m.slice_mut::<T>(),
            v.slice_mut::<T>(),
            &scalars,
            hyper.l2(),
            hyper.decoupled_decay(),
            hyper.clip_exponent.is_some(),
        );
    }
}

/// Off the CPU: the one-pass kernel on wgpu / CUDA tensors ([`crate::cube`]), the composed path
/// on anything else.
fn device_step<const D: usize>(
    hyper: &AdoptHyper,
    tensor: Tensor<D>,
    grad: Tensor<D>,
    state: AdoptState<D>,
) -> (Tensor<D>, AdoptState<D>) {
    #[cfg(feature = "cube")]
    let (tensor, grad, state) = {
        let AdoptState { step, m, v } = state;
        match crate::cube::adopt_step(hyper, step, tensor, grad, m, v) {
            Ok([tensor, m, v]) => {
                let step = step + 1;
                return (tensor, AdoptState { step, m, v });
            }
            Err(back) => {
                let [tensor, grad, m, v] = *back;
                (tensor, grad, AdoptState { step, m, v })
            }
        }
    };
    composed_step(hyper, tensor, grad, state)
}

/// The composed path: the same rule as burn tensor operations, for any backend.
pub(crate) fn composed_step<const D: usize>(
    hyper: &AdoptHyper,
    mut theta: Tensor<D>,
    grad: Tensor<D>,
    state: AdoptState<D>,
) -> (Tensor<D>, AdoptState<D>) {
    let AdoptState { step, mut m, v } = state;
    let dtype = theta.dtype();
    let s = hyper.scalars::<f64>(step.max(1));
    let r = |x: f64| round_to(dtype, x);
    let g = if hyper.l2() {
        grad + theta.clone().mul_scalar(r(s.l2_penalty))
    } else {
        grad
    };
    if step == 0 {
        let v = g.clone() * g;
        return (theta, AdoptState { step: 1, m, v });
    }
    if hyper.decoupled_decay() {
        theta = theta.clone() + theta.mul_scalar(r(s.neg_decay));
    }
    let mut normed = g.clone() / v.clone().sqrt().clamp_min(r(s.epsilon));
    if hyper.clip_exponent.is_some() {
        normed = normed.clamp(-r(s.clip), r(s.clip));
    }
    let weight = r(s.momentum_weight);
    m = if weight < 0.5 {
        m.clone() + (normed - m).mul_scalar(weight)
    } else {
        normed.clone() - (normed - m).mul_scalar(r(1.0 - weight))
    };
    theta = theta + m.clone().mul_scalar(r(s.neg_lr));
    let v = v.mul_scalar(r(s.beta_2)) + (g.clone() * g).mul_scalar(r(s.one_minus_beta_2));
    (
        theta,
        AdoptState {
            step: step + 1,
            m,
            v,
        },
    )
}
