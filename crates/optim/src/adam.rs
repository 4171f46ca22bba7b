//! Adam, AdamW and AMSGrad with PyTorch's semantics (`torch.optim.Adam` / `AdamW`,
//! `amsgrad=True`): bias-corrected moments, ε added to the bias-corrected √v̂, AdamW's decay
//! θ ← θ·(1 − lr·wd) before the update, AMSGrad's running maximum of the raw v.
//!
//! burn's own `AdamConfig` differs (ε defaults to 1e-5 and its coefficients are formed in f32),
//! so these are separate types that match the reference trajectories.

use burn::config::Config;
use burn::grad_clipping::GradientClippingConfig;
use burn::optim::{ModuleOptimizer, Optimizer, RecordState, StateSink, StateSource};
use burn::tensor::{DType, Device, Tensor};
use burn_pack::Scalar;

use crate::coefficients::AdamHyper;
use crate::kernel;
use crate::round_to;
use crate::storage::{HostTensor, zeros_like};

/// Configuration of Adam (and AMSGrad with `amsgrad`), PyTorch semantics.
///
/// ```text
/// g ← g + wd·θ;  t ← t + 1
/// m ← m + (1−β₁)(g − m);  v ← β₂v + (1−β₂)g²;  v̂ ← max(v̂, v) (AMSGrad)
/// θ ← θ − lr/(1−β₁ᵗ) · m / (√v̂ / √(1−β₂ᵗ) + ε)
/// ```
///
/// ```
/// let optimizer = softalign_optim::AdamConfig::new().with_amsgrad(true).init();
/// # let _ = optimizer;
/// ```
#[derive(Config, Debug)]
pub struct AdamConfig {
    /// β₁.
    #[config(default = 0.9)]
    pub beta_1: f64,
    /// β₂.
    #[config(default = 0.999)]
    pub beta_2: f64,
    /// ε, added to the bias-corrected √v̂ (PyTorch's default, not burn's 1e-5).
    #[config(default = 1e-8)]
    pub epsilon: f64,
    /// L2 penalty added to the gradient.
    #[config(default = 0.0)]
    pub weight_decay: f64,
    /// Use AMSGrad's running maximum of v.
    #[config(default = false)]
    pub amsgrad: bool,
    /// burn's per-parameter gradient clipping, applied before the update.
    #[config(default = "None")]
    pub grad_clipping: Option<GradientClippingConfig>,
}

impl AdamConfig {
    /// The per-tensor optimizer.
    pub fn build(&self) -> Adam {
        Adam {
            beta_1: self.beta_1,
            beta_2: self.beta_2,
            epsilon: self.epsilon,
            weight_decay: self.weight_decay,
            decoupled: false,
            amsgrad: self.amsgrad,
            composed_only: false,
        }
    }

    /// The module-level optimizer (fused on the CPU backend), with gradient clipping if set.
    pub fn init(&self) -> ModuleOptimizer {
        with_clipping(ModuleOptimizer::from(self.build()), &self.grad_clipping)
    }
}

/// Configuration of AdamW (decoupled weight decay), PyTorch semantics.
///
/// Like [`AdamConfig`], except that θ ← θ·(1 − lr·wd) before the update and the gradient is left
/// alone.
///
/// ```
/// let optimizer = softalign_optim::AdamWConfig::new().with_weight_decay(0.1).init();
/// # let _ = optimizer;
/// ```
#[derive(Config, Debug)]
pub struct AdamWConfig {
    /// β₁.
    #[config(default = 0.9)]
    pub beta_1: f64,
    /// β₂.
    #[config(default = 0.999)]
    pub beta_2: f64,
    /// ε, added to the bias-corrected √v̂.
    #[config(default = 1e-8)]
    pub epsilon: f64,
    /// Decoupled weight decay (PyTorch's default 1e-2).
    #[config(default = 1e-2)]
    pub weight_decay: f64,
    /// Use AMSGrad's running maximum of v.
    #[config(default = false)]
    pub amsgrad: bool,
    /// burn's per-parameter gradient clipping, applied before the update.
    #[config(default = "None")]
    pub grad_clipping: Option<GradientClippingConfig>,
}

impl AdamWConfig {
    /// The per-tensor optimizer.
    pub fn build(&self) -> Adam {
        Adam {
            beta_1: self.beta_1,
            beta_2: self.beta_2,
            epsilon: self.epsilon,
            weight_decay: self.weight_decay,
            decoupled: true,
            amsgrad: self.amsgrad,
            composed_only: false,
        }
    }

    /// The module-level optimizer (fused on the CPU backend), with gradient clipping if set.
    pub fn init(&self) -> ModuleOptimizer {
        with_clipping(ModuleOptimizer::from(self.build()), &self.grad_clipping)
    }
}

fn with_clipping(
    optim: ModuleOptimizer,
    clipping: &Option<GradientClippingConfig>,
) -> ModuleOptimizer {
    match clipping {
        Some(clipping) => optim.with_grad_clipping(clipping.init()),
        None => optim,
    }
}

/// The Adam / AdamW / AMSGrad update rule for one parameter tensor.
#[derive(Debug, Clone, Copy)]
pub struct Adam {
    beta_1: f64,
    beta_2: f64,
    epsilon: f64,
    weight_decay: f64,
    decoupled: bool,
    amsgrad: bool,
    composed_only: bool,
}

impl Adam {
    /// Always take the composed-ops path, even on the CPU backend (for benchmarks and tests).
    pub fn composed_only(mut self) -> Self {
        self.composed_only = true;
        self
    }

    /// The hyper-parameters of a step at learning rate `lr`.
    pub fn hyper(&self, lr: f64) -> AdamHyper {
        AdamHyper {
            lr,
            beta_1: self.beta_1,
            beta_2: self.beta_2,
            epsilon: self.epsilon,
            weight_decay: self.weight_decay,
            decoupled: self.decoupled,
            amsgrad: self.amsgrad,
        }
    }
}

/// Adam's state for one parameter tensor.
#[derive(Debug, Clone)]
pub struct AdamState<const D: usize> {
    /// Steps taken.
    pub step: usize,
    /// First moment.
    pub m: Tensor<D>,
    /// Second moment.
    pub v: Tensor<D>,
    /// Running maximum of the second moment (AMSGrad only).
    pub v_max: Option<Tensor<D>>,
}

impl<const D: usize> RecordState for AdamState<D> {
    fn state_flatten(&self, prefix: &str, out: &mut StateSink) {
        out.push_scalar(prefix, "step", Scalar::from(self.step));
        out.push_tensor(prefix, "m", self.m.to_data());
        out.push_tensor(prefix, "v", self.v.to_data());
        if let Some(v_max) = &self.v_max {
            out.push_tensor(prefix, "v_max", v_max.to_data());
        }
    }

    fn state_unflatten(prefix: &str, src: &mut StateSource, device: &Device) -> Option<Self> {
        let step = usize::try_from(src.take_scalar(prefix, "step")?).ok()?;
        let load = |data: burn::tensor::TensorData| {
            let dtype = data.dtype();
            Tensor::from_data(data, (device, dtype))
        };
        let m = load(src.take_tensor(prefix, "m")?);
        let v = load(src.take_tensor(prefix, "v")?);
        let v_max = src.take_tensor(prefix, "v_max").map(load);
        Some(Self { step, m, v, v_max })
    }
}

impl Optimizer for Adam {
    type State<const D: usize> = AdamState<D>;

    fn step<const D: usize>(
        &self,
        lr: f64,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let hyper = self.hyper(lr);
        let state = state.unwrap_or_else(|| AdamState {
            step: 0,
            m: zeros_like(&tensor),
            v: zeros_like(&tensor),
            v_max: self.amsgrad.then(|| zeros_like(&tensor)),
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
        state.v_max = state.v_max.map(|v_max| v_max.to_device(device));
        state
    }
}

type Parts<const D: usize> = (Tensor<D>, Tensor<D>, AdamState<D>);

/// The fused path: one pass over (θ, g, m, v[, v̂]) in place, on the flex CPU backend.
fn fused_step<const D: usize>(
    hyper: &AdamHyper,
    tensor: Tensor<D>,
    grad: Tensor<D>,
    state: AdamState<D>,
) -> Result<(Tensor<D>, AdamState<D>), Box<Parts<D>>> {
    let AdamState { step, m, v, v_max } = state;
    let back =
        |t: Result<HostTensor, Box<Tensor<D>>>| t.map_or_else(|t| *t, HostTensor::into_tensor);
    let mut theta = match HostTensor::take(tensor) {
        Ok(theta) => theta,
        Err(tensor) => return Err(Box::new((*tensor, grad, AdamState { step, m, v, v_max }))),
    };
    let dtype = theta.dtype();
    let parts = (
        HostTensor::take(grad),
        HostTensor::take(m),
        HostTensor::take(v),
        v_max.map(HostTensor::take),
    );
    let fits = |t: &Result<HostTensor, Box<Tensor<D>>>| {
        t.as_ref()
            .is_ok_and(|t| t.dtype() == dtype && t.len() == theta.len())
    };
    if !(fits(&parts.0) && fits(&parts.1) && fits(&parts.2) && parts.3.as_ref().is_none_or(fits)) {
        let (g, m, v, v_max) = parts;
        let state = AdamState {
            step,
            m: back(m),
            v: back(v),
            v_max: v_max.map(back),
        };
        return Err(Box::new((theta.into_tensor(), back(g), state)));
    }
    let ok =
        |t: Result<HostTensor, Box<Tensor<D>>>| t.unwrap_or_else(|_| unreachable!("checked above"));
    let (grad, mut m, mut v, mut v_max) = (ok(parts.0), ok(parts.1), ok(parts.2), parts.3.map(ok));
    let step = step + 1;
    match dtype {
        DType::F32 => run_fused::<f32>(
            hyper,
            step,
            &mut theta,
            &grad,
            &mut m,
            &mut v,
            v_max.as_mut(),
        ),
        _ => run_fused::<f64>(
            hyper,
            step,
            &mut theta,
            &grad,
            &mut m,
            &mut v,
            v_max.as_mut(),
        ),
    }
    let state = AdamState {
        step,
        m: m.into_tensor(),
        v: v.into_tensor(),
        v_max: v_max.map(HostTensor::into_tensor),
    };
    Ok((theta.into_tensor(), state))
}

fn run_fused<T: kernel::Element + burn::tensor::Element + bytemuck::Pod>(
    hyper: &AdamHyper,
    step: usize,
    theta: &mut HostTensor,
    grad: &HostTensor,
    m: &mut HostTensor,
    v: &mut HostTensor,
    v_max: Option<&mut HostTensor>,
) {
    kernel::adam_step(
        theta.slice_mut::<T>(),
        grad.slice::<T>(),
        m.slice_mut::<T>(),
        v.slice_mut::<T>(),
        v_max.map(|v_max| v_max.slice_mut::<T>()),
        &hyper.scalars::<T>(step),
        hyper.l2(),
        hyper.decoupled_decay(),
    );
}

/// Off the CPU: the one-pass kernel on wgpu / CUDA tensors ([`crate::cube`]), the composed path
/// on anything else.
fn device_step<const D: usize>(
    hyper: &AdamHyper,
    tensor: Tensor<D>,
    grad: Tensor<D>,
    state: AdamState<D>,
) -> (Tensor<D>, AdamState<D>) {
    #[cfg(feature = "cube")]
    let (tensor, grad, state) = {
        let AdamState { step, m, v, v_max } = state;
        match crate::cube::adam_step(hyper, step + 1, tensor, grad, m, v, v_max) {
            Ok(([tensor, m, v], v_max)) => {
                let step = step + 1;
                return (tensor, AdamState { step, m, v, v_max });
            }
            Err(back) => {
                let ([tensor, grad, m, v], v_max) = *back;
                (tensor, grad, AdamState { step, m, v, v_max })
            }
        }
    };
    composed_step(hyper, tensor, grad, state)
}

/// The composed path: the same rule as burn tensor operations, for any backend.
pub(crate) fn composed_step<const D: usize>(
    hyper: &AdamHyper,
    mut theta: Tensor<D>,
    grad: Tensor<D>,
    state: AdamState<D>,
) -> (Tensor<D>, AdamState<D>) {
    let AdamState { step, m, v, v_max } = state;
    let step = step + 1;
    let dtype = theta.dtype();
    let s = hyper.scalars::<f64>(step);
    let r = |x: f64| round_to(dtype, x);
    let g = if hyper.l2() {
        grad + theta.clone().mul_scalar(r(s.l2_penalty))
    } else {
        grad
    };
    if hyper.decoupled_decay() {
        theta = theta.mul_scalar(r(s.decay_factor));
    }
    let weight = r(s.momentum_weight);
    let m = if weight < 0.5 {
        m.clone() + (g.clone() - m).mul_scalar(weight)
    } else {
        g.clone() - (g.clone() - m).mul_scalar(r(1.0 - weight))
    };
    let v = v.mul_scalar(r(s.beta_2)) + (g.clone() * g).mul_scalar(r(s.one_minus_beta_2));
    let v_max = v_max.map(|v_max| v_max.max_pair(v.clone()));
    let second = v_max.clone().unwrap_or_else(|| v.clone());
    let denom = (second.sqrt().div_scalar(r(s.bias_correction_2_sqrt))).add_scalar(r(s.epsilon));
    theta = theta + (m.clone().mul_scalar(r(s.neg_step_size))) / denom;
    (theta, AdamState { step, m, v, v_max })
}
