//! Reference trajectories in the golden format (`shared/golden/optim/*.json`, see its README):
//! reading them, and replaying them through the burn optimizers or the scalar references.
//!
//! The files were produced by the official ADOPT implementation (`torch-adopt`) and by
//! `torch.optim.Adam` / `AdamW` / `Adam(amsgrad=True)`, in float32 and float64.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::optim::Optimizer;
use burn::tensor::{DType, Device, Tensor, TensorData};
use num_traits::Float;
use serde::Deserialize;

use crate::coefficients::{AdamHyper, AdoptHyper};
use crate::reference::{self, ReferenceState};
use crate::{AdamConfig, AdamWConfig, AdoptConfig, WeightDecay};

/// Errors reading a golden file.
#[derive(Debug, thiserror::Error)]
pub enum GoldenError {
    /// The file could not be read.
    #[error("{path}: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error (part of the message, not a separate cause, so the
        /// one-line report names it once).
        cause: std::io::Error,
    },
    /// The file is not valid JSON of the golden format.
    #[error("{path}:{line}: {cause}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Line of the error.
        line: usize,
        /// The underlying error (part of the message, not a separate cause, so the
        /// one-line report names it once).
        cause: serde_json::Error,
    },
    /// The JSON parsed but a field is inconsistent.
    #[error("{path}: {field}: {problem}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The field at fault.
        field: String,
        /// What is wrong.
        problem: String,
    },
}

/// Hyper-parameters as the golden files write them.
#[derive(Debug, Clone, Deserialize)]
pub struct GoldenConfig {
    /// Learning rate.
    pub lr: f64,
    /// β₁.
    pub beta_1: f64,
    /// β₂.
    pub beta_2: f64,
    /// ε.
    pub epsilon: f64,
    /// ADOPT's clip exponent (`null` = no clipping); absent for the Adam family.
    #[serde(default)]
    pub clip_exponent: Option<f64>,
    /// Weight decay, default 0.
    #[serde(default)]
    pub weight_decay: f64,
    /// ADOPT only: decoupled rather than L2 decay.
    #[serde(default)]
    pub decouple: bool,
}

/// State of one parameter after a step.
#[derive(Debug, Clone, Deserialize)]
pub struct GoldenState {
    /// First moment.
    pub m: Vec<f64>,
    /// Second moment.
    pub v: Vec<f64>,
    /// AMSGrad's running maximum.
    #[serde(default)]
    pub v_max: Option<Vec<f64>>,
}

/// Expected values after one step.
#[derive(Debug, Clone, Deserialize)]
pub struct GoldenStep {
    /// Parameters by name.
    pub params: BTreeMap<String, Vec<f64>>,
    /// State by parameter name.
    pub state: BTreeMap<String, GoldenState>,
}

/// One golden case: a configuration, initial parameters, gradients and expected trajectory.
#[derive(Debug, Clone, Deserialize)]
pub struct GoldenCase {
    /// Case name, e.g. `adopt_default`.
    pub name: String,
    /// `adopt`, `adam`, `adamw` or `amsgrad`.
    pub optimizer: String,
    /// `float32` or `float64`.
    pub dtype: String,
    /// Hyper-parameters.
    pub config: GoldenConfig,
    /// Number of steps.
    pub steps: usize,
    /// Shapes by parameter name.
    pub shapes: BTreeMap<String, Vec<usize>>,
    /// Initial parameters by name.
    pub init: BTreeMap<String, Vec<f64>>,
    /// Gradients, one map per step.
    pub grads: Vec<BTreeMap<String, Vec<f64>>>,
    /// Expected parameters and state after each step.
    pub expected: Vec<GoldenStep>,
}

impl GoldenCase {
    /// Read and check a golden file.
    pub fn load(path: &Path) -> Result<Self, GoldenError> {
        let text = std::fs::read_to_string(path).map_err(|cause| GoldenError::Io {
            path: path.into(),
            cause,
        })?;
        let case: Self = serde_json::from_str(&text).map_err(|cause| GoldenError::Parse {
            path: path.into(),
            line: cause.line(),
            cause,
        })?;
        case.validate(path)?;
        Ok(case)
    }

    fn validate(&self, path: &Path) -> Result<(), GoldenError> {
        let invalid = |field: String, problem: String| GoldenError::Invalid {
            path: path.into(),
            field,
            problem,
        };
        if !matches!(
            self.optimizer.as_str(),
            "adopt" | "adam" | "adamw" | "amsgrad"
        ) {
            return Err(invalid(
                "optimizer".into(),
                format!("unknown optimizer {:?}", self.optimizer),
            ));
        }
        if !matches!(self.dtype.as_str(), "float32" | "float64") {
            return Err(invalid(
                "dtype".into(),
                format!("unknown dtype {:?}", self.dtype),
            ));
        }
        if self.grads.len() != self.steps || self.expected.len() != self.steps {
            return Err(invalid(
                "steps".into(),
                format!(
                    "{} steps but {} gradients and {} expected",
                    self.steps,
                    self.grads.len(),
                    self.expected.len()
                ),
            ));
        }
        for (name, shape) in &self.shapes {
            let len: usize = shape.iter().product();
            let check = |field: String, values: Option<&Vec<f64>>| match values {
                Some(values) if values.len() == len => Ok(()),
                Some(values) => Err(invalid(
                    field,
                    format!("{} values for shape {shape:?}", values.len()),
                )),
                None => Err(invalid(field, "missing".into())),
            };
            check(format!("init.{name}"), self.init.get(name))?;
            for (step, grads) in self.grads.iter().enumerate() {
                check(format!("grads[{step}].{name}"), grads.get(name))?;
            }
            for (step, expected) in self.expected.iter().enumerate() {
                check(
                    format!("expected[{step}].params.{name}"),
                    expected.params.get(name),
                )?;
                let state = expected.state.get(name).ok_or_else(|| {
                    invalid(format!("expected[{step}].state.{name}"), "missing".into())
                })?;
                check(format!("expected[{step}].state.{name}.m"), Some(&state.m))?;
                check(format!("expected[{step}].state.{name}.v"), Some(&state.v))?;
                if self.optimizer == "amsgrad" {
                    check(
                        format!("expected[{step}].state.{name}.v_max"),
                        state.v_max.as_ref(),
                    )?;
                }
            }
        }
        Ok(())
    }

    fn adopt_hyper(&self) -> AdoptHyper {
        let c = &self.config;
        AdoptHyper {
            lr: c.lr,
            beta_1: c.beta_1,
            beta_2: c.beta_2,
            epsilon: c.epsilon,
            clip_exponent: c.clip_exponent,
            weight_decay: c.weight_decay,
            decoupled: c.decouple,
        }
    }

    fn adam_hyper(&self) -> AdamHyper {
        let c = &self.config;
        AdamHyper {
            lr: c.lr,
            beta_1: c.beta_1,
            beta_2: c.beta_2,
            epsilon: c.epsilon,
            weight_decay: c.weight_decay,
            decoupled: self.optimizer == "adamw",
            amsgrad: self.optimizer == "amsgrad",
        }
    }

    /// The ADOPT configuration this case describes.
    pub fn adopt_config(&self) -> AdoptConfig {
        let c = &self.config;
        let decay = (c.weight_decay != 0.0).then_some(WeightDecay {
            penalty: c.weight_decay,
            decoupled: c.decouple,
        });
        AdoptConfig::new()
            .with_beta_1(c.beta_1)
            .with_beta_2(c.beta_2)
            .with_epsilon(c.epsilon)
            .with_clip_exponent(c.clip_exponent)
            .with_weight_decay(decay)
    }
}

/// A trajectory: parameters and state after every step, by parameter name.
#[derive(Debug, Clone, Default)]
pub struct Trajectory {
    /// One map per step.
    pub steps: Vec<BTreeMap<String, StepValues>>,
}

/// Parameters and state of one tensor after one step.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepValues {
    /// Parameter values.
    pub params: Vec<f64>,
    /// First moment.
    pub m: Vec<f64>,
    /// Second moment.
    pub v: Vec<f64>,
    /// AMSGrad's running maximum.
    pub v_max: Option<Vec<f64>>,
}

/// Largest errors of a trajectory against the expected one.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Comparison {
    /// max |got − want| over parameters.
    pub max_abs_err: f64,
    /// max |got − want| / max(|want|, 0.1) over parameters (the golden README's measure).
    pub max_rel_err: f64,
    /// The same relative measure over the state (m, v and v_max).
    pub state_max_rel_err: f64,
}

fn errors(got: &[f64], want: &[f64]) -> (f64, f64) {
    got.iter()
        .zip(want)
        .fold((0.0, 0.0), |(abs, rel), (&g, &w)| {
            let diff = (g - w).abs();
            let diff = if diff.is_nan() { f64::INFINITY } else { diff };
            (f64::max(abs, diff), f64::max(rel, diff / w.abs().max(0.1)))
        })
}

impl Trajectory {
    /// Compare against the case's expected trajectory.
    pub fn compare(&self, case: &GoldenCase) -> Comparison {
        let mut out = Comparison::default();
        for (got, want) in self.steps.iter().zip(&case.expected) {
            for (name, values) in got {
                let (abs, rel) = errors(&values.params, &want.params[name]);
                out.max_abs_err = out.max_abs_err.max(abs);
                out.max_rel_err = out.max_rel_err.max(rel);
                let state = &want.state[name];
                let mut pairs = vec![(&values.m, &state.m), (&values.v, &state.v)];
                if let (Some(got), Some(want)) = (&values.v_max, &state.v_max) {
                    pairs.push((got, want));
                }
                for (got, want) in pairs {
                    out.state_max_rel_err = out.state_max_rel_err.max(errors(got, want).1);
                }
            }
        }
        if self.steps.len() < case.expected.len() {
            out.max_abs_err = f64::INFINITY;
            out.max_rel_err = f64::INFINITY;
        }
        out
    }
}

/// Which path of the burn optimizer to replay through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdatePath {
    /// The default: fused on the CPU backend.
    Fused,
    /// Composed tensor operations.
    Composed,
}

fn tensor_values<const D: usize>(tensor: &Tensor<D>) -> Vec<f64> {
    tensor
        .to_data()
        .convert::<f64>()
        .try_to_vec::<f64>()
        .expect("converted to f64")
}

/// Replay a case through the burn optimizer (per-tensor [`Optimizer::step`], the same code the
/// module optimizer runs), in the case's dtype, on `device`.
pub fn replay_burn(case: &GoldenCase, device: &Device, path: UpdatePath) -> Trajectory {
    let dtype = if case.dtype == "float64" {
        DType::F64
    } else {
        DType::F32
    };
    let composed = path == UpdatePath::Composed;
    match case.optimizer.as_str() {
        "adopt" => {
            let rule = case.adopt_config().build();
            let rule = if composed { rule.composed_only() } else { rule };
            replay_with(case, device, dtype, &rule, |s: &crate::AdoptState<1>| {
                (&s.m, &s.v, None)
            })
        }
        kind => {
            let c = &case.config;
            let rule = if kind == "adamw" {
                AdamWConfig::new()
                    .with_beta_1(c.beta_1)
                    .with_beta_2(c.beta_2)
                    .with_epsilon(c.epsilon)
                    .with_weight_decay(c.weight_decay)
                    .build()
            } else {
                AdamConfig::new()
                    .with_beta_1(c.beta_1)
                    .with_beta_2(c.beta_2)
                    .with_epsilon(c.epsilon)
                    .with_weight_decay(c.weight_decay)
                    .with_amsgrad(kind == "amsgrad")
                    .build()
            };
            let rule = if composed { rule.composed_only() } else { rule };
            replay_with(case, device, dtype, &rule, |s: &crate::AdamState<1>| {
                (&s.m, &s.v, s.v_max.as_ref())
            })
        }
    }
}

fn replay_with<O: Optimizer>(
    case: &GoldenCase,
    device: &Device,
    dtype: DType,
    rule: &O,
    moments: impl Fn(&O::State<1>) -> (&Tensor<1>, &Tensor<1>, Option<&Tensor<1>>),
) -> Trajectory {
    let tensor = |values: &[f64]| {
        let data = TensorData::new(values.to_vec(), [values.len()]).convert_dtype(dtype);
        Tensor::<1>::from_data(data, (device, dtype))
    };
    let mut params: BTreeMap<&String, (Tensor<1>, Option<O::State<1>>)> = case
        .init
        .iter()
        .map(|(name, values)| (name, (tensor(values), None)))
        .collect();
    let mut trajectory = Trajectory::default();
    for grads in &case.grads {
        let mut step = BTreeMap::new();
        for (name, (theta, state)) in params.iter_mut() {
            let (updated, new_state) = rule.step(
                case.config.lr,
                theta.clone(),
                tensor(&grads[*name]),
                state.take(),
            );
            *theta = updated;
            *state = new_state;
            let (m, v, v_max) = moments(state.as_ref().expect("optimizers keep state"));
            step.insert(
                (*name).clone(),
                StepValues {
                    params: tensor_values(theta),
                    m: tensor_values(m),
                    v: tensor_values(v),
                    v_max: v_max.map(tensor_values),
                },
            );
        }
        trajectory.steps.push(step);
    }
    trajectory
}

/// Replay a case through the scalar reference rule in element type `T`.
pub fn replay_reference<T: Float>(case: &GoldenCase) -> Trajectory {
    let to_t = |values: &[f64]| {
        values
            .iter()
            .map(|&x| T::from(x).expect("finite"))
            .collect::<Vec<T>>()
    };
    let to_f64 = |values: &[T]| {
        values
            .iter()
            .map(|x| x.to_f64().expect("float"))
            .collect::<Vec<f64>>()
    };
    let amsgrad = case.optimizer == "amsgrad";
    let mut params: BTreeMap<&String, (Vec<T>, ReferenceState<T>)> = case
        .init
        .iter()
        .map(|(name, values)| {
            (
                name,
                (to_t(values), ReferenceState::new(values.len(), amsgrad)),
            )
        })
        .collect();
    let mut trajectory = Trajectory::default();
    for grads in &case.grads {
        let mut step = BTreeMap::new();
        for (name, (theta, state)) in params.iter_mut() {
            let grad = to_t(&grads[*name]);
            if case.optimizer == "adopt" {
                reference::adopt(&case.adopt_hyper(), theta, &grad, state);
            } else {
                reference::adam(&case.adam_hyper(), theta, &grad, state);
            }
            step.insert(
                (*name).clone(),
                StepValues {
                    params: to_f64(theta),
                    m: to_f64(&state.m),
                    v: to_f64(&state.v),
                    v_max: state.v_max.as_deref().map(to_f64),
                },
            );
        }
        trajectory.steps.push(step);
    }
    trajectory
}
