//! One-pass optimizer steps on burn's cubecl backends (wgpu, CUDA).
//!
//! The GPU counterpart of [`crate::kernel`]: one kernel launch per parameter tensor reads θ, g,
//! m, v (and AMSGrad's v̂) once and writes θ, m, v in place — no temporaries, where composed
//! tensor operations pass over memory about ten times. The arithmetic is the CPU kernels', in
//! the same order, on scalars formed in f64 and rounded once ([`crate::coefficients`]).
//!
//! The route in is the one the CPU path uses: `Tensor::into_dispatch()` hands over the cube
//! backend's own primitive ([`CubeTensor`]) of a plain (non-autodiff) tensor, whose buffer the
//! kernel binds directly. A buffer that another tensor still shares is copied first (once), so
//! writing in place is always correct. Anything that is not a cube f32/f64 tensor is given back
//! untouched and the caller takes the composed path.

use burn::backend::{
    BackendTensor, Cube, DispatchAutodiffContext, DispatchTensor, DispatchTensorKind,
};
use burn::tensor::{DType, Shape, Tensor};
use burn_cubecl::cubecl;
use burn_cubecl::cubecl::prelude::*;
use burn_cubecl::cubecl::{calculate_cube_count_elemwise, tensor_vector_size_parallel};
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;

use crate::coefficients::{AdamHyper, AdoptHyper};

/// Optimizer-step kernels launched by this process (tests check that the one-pass path, not the
/// composed fallback, ran).
static LAUNCHES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many one-pass optimizer kernels this process has launched on GPU tensors.
pub fn kernel_launches() -> u64 {
    LAUNCHES.load(std::sync::atomic::Ordering::Relaxed)
}

fn count_launch() {
    LAUNCHES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// Reads θ, g, m, v once and writes θ, m, v (ADOPT, t ≥ 1), or v alone on the first step.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
fn adopt_kernel<F: Float, N: Size>(
    theta: &mut [Vector<F, N>],
    grad: &[Vector<F, N>],
    m: &mut [Vector<F, N>],
    v: &mut [Vector<F, N>],
    scalars: &[F],
    #[comptime] first: bool,
    #[comptime] l2: bool,
    #[comptime] decoupled: bool,
    #[comptime] clip: bool,
    #[comptime] below_half: bool,
) {
    let i = ABSOLUTE_POS;
    if i >= theta.len() {
        terminate!();
    }
    let mut th = theta[i];
    let mut g = grad[i];
    if comptime!(l2) {
        g += Vector::new(scalars[ADOPT_L2]) * th;
    }
    if comptime!(first) {
        v[i] = g * g;
    } else {
        if comptime!(decoupled) {
            th = th + Vector::new(scalars[ADOPT_NEG_DECAY]) * th;
        }
        let root = Vector::sqrt(v[i]);
        let epsilon = Vector::new(scalars[ADOPT_EPSILON]);
        // torch.clamp(√v, min=ε): a NaN √v stays NaN.
        let denom = select_many(root.less_than(&epsilon), epsilon, root);
        let mut normed = g / denom;
        if comptime!(clip) {
            let low = Vector::new(scalars[ADOPT_NEG_CLIP]);
            let high = Vector::new(scalars[ADOPT_CLIP]);
            normed = select_many(normed.less_than(&low), low, normed);
            normed = select_many(normed.greater_than(&high), high, normed);
        }
        let momentum = lerp(m[i], normed, scalars[ADOPT_MOMENTUM_WEIGHT], below_half);
        m[i] = momentum;
        theta[i] = th + Vector::new(scalars[ADOPT_NEG_LR]) * momentum;
        v[i] = v[i] * Vector::new(scalars[ADOPT_BETA_2])
            + Vector::new(scalars[ADOPT_ONE_MINUS_BETA_2]) * g * g;
    }
}

/// Reads θ, g, m, v (and v̂) once and writes them back (Adam, AdamW, AMSGrad).
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
fn adam_kernel<F: Float, N: Size>(
    theta: &mut [Vector<F, N>],
    grad: &[Vector<F, N>],
    m: &mut [Vector<F, N>],
    v: &mut [Vector<F, N>],
    v_max: &mut [Vector<F, N>],
    scalars: &[F],
    #[comptime] l2: bool,
    #[comptime] decoupled: bool,
    #[comptime] amsgrad: bool,
    #[comptime] below_half: bool,
) {
    let i = ABSOLUTE_POS;
    if i >= theta.len() {
        terminate!();
    }
    let mut th = theta[i];
    let mut g = grad[i];
    if comptime!(l2) {
        g += Vector::new(scalars[ADAM_L2]) * th;
    }
    if comptime!(decoupled) {
        th *= Vector::new(scalars[ADAM_DECAY_FACTOR]);
    }
    let momentum = lerp(m[i], g, scalars[ADAM_MOMENTUM_WEIGHT], below_half);
    m[i] = momentum;
    let mut second = v[i] * Vector::new(scalars[ADAM_BETA_2])
        + Vector::new(scalars[ADAM_ONE_MINUS_BETA_2]) * g * g;
    v[i] = second;
    if comptime!(amsgrad) {
        let kept = v_max[i];
        second = select_many(kept.greater_than(&second), kept, second);
        v_max[i] = second;
    }
    let denom = Vector::sqrt(second) / Vector::new(scalars[ADAM_BIAS_CORRECTION_2_SQRT])
        + Vector::new(scalars[ADAM_EPSILON]);
    theta[i] = th + Vector::new(scalars[ADAM_NEG_STEP_SIZE]) * momentum / denom;
}

/// The bus limit of a step: the traffic of [`adopt_kernel`] (θ, g, m, v read; θ, m, v written)
/// with trivial arithmetic, as the CPU's `bandwidth_probe` has.
#[cube(launch_unchecked)]
fn probe_kernel<F: Float, N: Size>(
    theta: &mut [Vector<F, N>],
    grad: &[Vector<F, N>],
    m: &mut [Vector<F, N>],
    v: &mut [Vector<F, N>],
) {
    let i = ABSOLUTE_POS;
    if i >= theta.len() {
        terminate!();
    }
    let g = grad[i];
    let momentum = m[i] * Vector::new(F::new(0.9)) + g;
    m[i] = momentum;
    v[i] = v[i] * Vector::new(F::new(0.99)) + g;
    theta[i] -= Vector::new(F::new(1e-9)) * momentum;
}

/// PyTorch's `lerp(start, end, weight)`, as [`crate::kernel`] computes it.
#[cube]
fn lerp<F: Float, N: Size>(
    start: Vector<F, N>,
    end: Vector<F, N>,
    weight: F,
    #[comptime] below_half: bool,
) -> Vector<F, N> {
    let weight = Vector::new(weight);
    if comptime!(below_half) {
        start + weight * (end - start)
    } else {
        end - (end - start) * (Vector::new(F::new(1.0)) - weight)
    }
}

// Positions in the scalar buffer of a step (the kernels take their scalars as one small buffer,
// so every step of a run is the same compiled kernel).
const ADOPT_NEG_LR: usize = 0;
const ADOPT_MOMENTUM_WEIGHT: usize = 1;
const ADOPT_BETA_2: usize = 2;
const ADOPT_ONE_MINUS_BETA_2: usize = 3;
const ADOPT_EPSILON: usize = 4;
const ADOPT_CLIP: usize = 5;
const ADOPT_NEG_CLIP: usize = 6;
const ADOPT_L2: usize = 7;
const ADOPT_NEG_DECAY: usize = 8;

const ADAM_NEG_STEP_SIZE: usize = 0;
const ADAM_MOMENTUM_WEIGHT: usize = 1;
const ADAM_BETA_2: usize = 2;
const ADAM_ONE_MINUS_BETA_2: usize = 3;
const ADAM_BIAS_CORRECTION_2_SQRT: usize = 4;
const ADAM_EPSILON: usize = 5;
const ADAM_L2: usize = 6;
const ADAM_DECAY_FACTOR: usize = 7;

/// A float tensor's cube-backend primitive, or the tensor given back (boxed: the rare path).
fn take<const D: usize>(tensor: Tensor<D>) -> Result<CubeTensor, Box<Tensor<D>>> {
    let DispatchTensor { kind, autodiff } = tensor.into_dispatch();
    match kind {
        DispatchTensorKind::Cube(BackendTensor::Float(cube))
            if autodiff == DispatchAutodiffContext::Disabled
                && matches!(cube.dtype, DType::F32 | DType::F64) =>
        {
            Ok(cube)
        }
        kind => Err(Box::new(Tensor::from_dispatch(DispatchTensor {
            kind,
            autodiff,
        }))),
    }
}

/// The tensor a cube primitive belongs to.
fn wrap<const D: usize>(tensor: CubeTensor) -> Tensor<D> {
    Tensor::from_primitive::<Cube>(tensor)
}

fn give_back<const D: usize>(tensor: Result<CubeTensor, Box<Tensor<D>>>) -> Tensor<D> {
    tensor.map_or_else(|tensor| *tensor, wrap)
}

/// Row-major, non-overlapping elements: what a kernel reading `[i]` expects.
fn contiguous(tensor: CubeTensor) -> CubeTensor {
    if tensor.is_contiguous() && tensor.is_nonoverlapping() {
        tensor
    } else {
        into_contiguous(tensor)
    }
}

/// Contiguous and owned by this handle alone, so that writing it in place changes no other
/// tensor (a shared buffer is copied once).
fn exclusive(tensor: CubeTensor) -> CubeTensor {
    let tensor = contiguous(tensor);
    if tensor.can_mut() {
        tensor
    } else {
        tensor.copy()
    }
}

/// The operands of a step, checked to be cube tensors of one dtype, length and device.
struct Operands {
    tensors: Vec<CubeTensor>,
}

impl Operands {
    /// Takes every tensor, or gives all of them back when any is not a matching cube tensor.
    fn take<const D: usize>(tensors: Vec<Tensor<D>>) -> Result<Self, Vec<Tensor<D>>> {
        let taken: Vec<Result<CubeTensor, Box<Tensor<D>>>> =
            tensors.into_iter().map(take).collect();
        let first = taken.first().and_then(|t| t.as_ref().ok());
        let fits = first.is_some_and(|first| {
            let (dtype, len, device) = (first.dtype, first.meta.num_elements(), &first.device);
            taken.iter().all(|t| {
                t.as_ref().is_ok_and(|t| {
                    t.dtype == dtype && t.meta.num_elements() == len && &t.device == device
                })
            })
        });
        if !fits {
            return Err(taken.into_iter().map(give_back).collect());
        }
        Ok(Self {
            tensors: taken
                .into_iter()
                .map(|t| t.unwrap_or_else(|_| unreachable!("checked above")))
                .collect(),
        })
    }
}

/// Launch geometry of an element-wise pass over `len` elements: the vector width (the widest
/// that divides `len` among the device's preferred ones), cube count and dimensions.
struct Geometry {
    vector_size: usize,
    cube_count: CubeCount,
    cube_dim: CubeDim,
}

impl Geometry {
    fn of(tensor: &CubeTensor) -> Self {
        let len = tensor.meta.num_elements();
        let client = &tensor.client;
        let shape = Shape::new([len]);
        let vector_size = tensor_vector_size_parallel(
            client.io_optimized_vector_sizes(tensor.dtype.size()),
            &shape,
            &[1].into(),
            0,
        );
        let units = len / vector_size;
        let cube_dim = CubeDim::new(client, units);
        let cube_count = calculate_cube_count_elemwise(client, units, cube_dim);
        Self {
            vector_size,
            cube_count,
            cube_dim,
        }
    }
}

/// A buffer argument over a contiguous tensor's elements.
fn buffer(tensor: &CubeTensor) -> BufferArg {
    tensor.clone().into_buffer_arg()
}

/// A small buffer holding a step's scalars, in the tensor's element type.
fn scalar_buffer(
    like: &CubeTensor,
    values: &[f64],
) -> (burn_cubecl::cubecl::server::Handle, usize) {
    let handle = match like.dtype {
        DType::F64 => like.client.create_from_slice(f64::as_bytes(values)),
        _ => {
            let values: Vec<f32> = values.iter().map(|&x| x as f32).collect();
            like.client.create_from_slice(f32::as_bytes(&values))
        }
    };
    (handle, values.len())
}

/// ADOPT's step on cube tensors, in place: `Ok` with the new parameter and state, or every
/// tensor given back when they are not all cube f32/f64 tensors of one device.
#[allow(clippy::type_complexity)]
pub(crate) fn adopt_step<const D: usize>(
    hyper: &AdoptHyper,
    step: usize,
    theta: Tensor<D>,
    grad: Tensor<D>,
    m: Tensor<D>,
    v: Tensor<D>,
) -> Result<[Tensor<D>; 3], Box<[Tensor<D>; 4]>> {
    let operands = match Operands::take(vec![theta, grad, m, v]) {
        Ok(operands) => operands,
        Err(back) => return Err(Box::new(four(back))),
    };
    let [theta, grad, m, v]: [CubeTensor; 4] = operands
        .tensors
        .try_into()
        .unwrap_or_else(|_| unreachable!("four operands"));
    let first = step == 0;
    // Only the first step leaves θ and m alone.
    let (theta, grad, m, v) = if first {
        (
            contiguous(theta),
            contiguous(grad),
            contiguous(m),
            exclusive(v),
        )
    } else {
        (
            exclusive(theta),
            contiguous(grad),
            exclusive(m),
            exclusive(v),
        )
    };
    let s = hyper.scalars::<f64>(step.max(1));
    let rounded = |x: f64| match theta.dtype {
        DType::F64 => x,
        _ => x as f32 as f64,
    };
    let mut values = [0.0; 9];
    values[ADOPT_NEG_LR] = s.neg_lr;
    values[ADOPT_MOMENTUM_WEIGHT] = s.momentum_weight;
    values[ADOPT_BETA_2] = s.beta_2;
    values[ADOPT_ONE_MINUS_BETA_2] = s.one_minus_beta_2;
    values[ADOPT_EPSILON] = s.epsilon;
    values[ADOPT_CLIP] = s.clip;
    values[ADOPT_NEG_CLIP] = -rounded(s.clip);
    values[ADOPT_L2] = s.l2_penalty;
    values[ADOPT_NEG_DECAY] = s.neg_decay;
    let below_half = rounded(s.momentum_weight) < 0.5;
    let (scalars, count) = scalar_buffer(&theta, &values);
    let geometry = Geometry::of(&theta);
    let client = theta.client.clone();
    macro_rules! launch {
        ($float:ty) => {
            // SAFETY: the four buffers are contiguous, of one length and element type (checked in
            // `Operands::take`), the written ones owned by this step alone; every unit indexes
            // one vector below that length.
            unsafe {
                adopt_kernel::launch_unchecked::<$float>(
                    &client,
                    geometry.cube_count,
                    geometry.cube_dim,
                    geometry.vector_size,
                    buffer(&theta),
                    buffer(&grad),
                    buffer(&m),
                    buffer(&v),
                    BufferArg::from_raw_parts(scalars, count),
                    first,
                    hyper.l2(),
                    hyper.decoupled_decay(),
                    hyper.clip_exponent.is_some(),
                    below_half,
                )
            }
        };
    }
    match theta.dtype {
        DType::F64 => launch!(f64),
        _ => launch!(f32),
    }
    count_launch();
    Ok([wrap(theta), wrap(m), wrap(v)])
}

/// Adam's (AdamW's, AMSGrad's) step on cube tensors, in place, at step `t` (≥ 1, after the
/// increment): `Ok` with the new parameter and state (`v_max` for AMSGrad), or every tensor
/// given back.
#[allow(clippy::type_complexity)]
pub(crate) fn adam_step<const D: usize>(
    hyper: &AdamHyper,
    t: usize,
    theta: Tensor<D>,
    grad: Tensor<D>,
    m: Tensor<D>,
    v: Tensor<D>,
    v_max: Option<Tensor<D>>,
) -> Result<([Tensor<D>; 3], Option<Tensor<D>>), Box<([Tensor<D>; 4], Option<Tensor<D>>)>> {
    let amsgrad = v_max.is_some();
    let mut tensors = vec![theta, grad, m, v];
    tensors.extend(v_max);
    let operands = match Operands::take(tensors) {
        Ok(operands) => operands,
        Err(mut back) => {
            let v_max = amsgrad.then(|| back.pop().expect("five tensors"));
            return Err(Box::new((four(back), v_max)));
        }
    };
    let mut tensors = operands.tensors.into_iter();
    let mut next = || tensors.next().expect("four or five operands");
    let (theta, grad, m, v) = (
        exclusive(next()),
        contiguous(next()),
        exclusive(next()),
        exclusive(next()),
    );
    let v_max = amsgrad.then(|| exclusive(next()));
    let s = hyper.scalars::<f64>(t);
    let mut values = [0.0; 8];
    values[ADAM_NEG_STEP_SIZE] = s.neg_step_size;
    values[ADAM_MOMENTUM_WEIGHT] = s.momentum_weight;
    values[ADAM_BETA_2] = s.beta_2;
    values[ADAM_ONE_MINUS_BETA_2] = s.one_minus_beta_2;
    values[ADAM_BIAS_CORRECTION_2_SQRT] = s.bias_correction_2_sqrt;
    values[ADAM_EPSILON] = s.epsilon;
    values[ADAM_L2] = s.l2_penalty;
    values[ADAM_DECAY_FACTOR] = s.decay_factor;
    let below_half = match theta.dtype {
        DType::F64 => s.momentum_weight,
        _ => s.momentum_weight as f32 as f64,
    } < 0.5;
    let (scalars, count) = scalar_buffer(&theta, &values);
    let geometry = Geometry::of(&theta);
    let client = theta.client.clone();
    // Without AMSGrad the kernel never touches v̂: a one-vector placeholder fills its binding.
    let placeholder = || {
        let handle = client.empty(geometry.vector_size * theta.dtype.size());
        // SAFETY: the kernel reads or writes `v_max` only when `amsgrad` is on.
        unsafe { BufferArg::from_raw_parts(handle, geometry.vector_size) }
    };
    macro_rules! launch {
        ($float:ty) => {
            // SAFETY: as in `adopt_step`: contiguous buffers of one length and element type, the
            // written ones owned by this step alone.
            unsafe {
                adam_kernel::launch_unchecked::<$float>(
                    &client,
                    geometry.cube_count,
                    geometry.cube_dim,
                    geometry.vector_size,
                    buffer(&theta),
                    buffer(&grad),
                    buffer(&m),
                    buffer(&v),
                    v_max.as_ref().map_or_else(placeholder, buffer),
                    BufferArg::from_raw_parts(scalars, count),
                    hyper.l2(),
                    hyper.decoupled_decay(),
                    amsgrad,
                    below_half,
                )
            }
        };
    }
    match theta.dtype {
        DType::F64 => launch!(f64),
        _ => launch!(f32),
    }
    count_launch();
    Ok(([wrap(theta), wrap(m), wrap(v)], v_max.map(wrap)))
}

fn four<const D: usize>(tensors: Vec<Tensor<D>>) -> [Tensor<D>; 4] {
    tensors
        .try_into()
        .unwrap_or_else(|_| unreachable!("four tensors were taken"))
}

/// Median seconds of `repeats` passes of [`probe_kernel`] over `params` f32 parameters on
/// `device` (after three warm-up passes), each pass waited for.
pub(crate) fn probe_seconds(params: usize, repeats: usize, device: &burn::tensor::Device) -> f64 {
    use burn::tensor::Distribution;
    let make = || {
        let tensor = Tensor::<1>::random([params], Distribution::Normal(0.0, 1.0), device);
        take(tensor).unwrap_or_else(|_| panic!("the probe runs on a cube device"))
    };
    let (theta, grad, m, v) = (make(), make(), make(), make());
    let geometry = Geometry::of(&theta);
    let client = theta.client.clone();
    let pass = || {
        let started = std::time::Instant::now();
        // SAFETY: four contiguous f32 buffers of `params` elements, owned by this function.
        unsafe {
            probe_kernel::launch_unchecked::<f32>(
                &client,
                geometry.cube_count.clone(),
                geometry.cube_dim,
                geometry.vector_size,
                buffer(&theta),
                buffer(&grad),
                buffer(&m),
                buffer(&v),
            )
        }
        device.sync().expect("the device finishes the probe");
        started.elapsed().as_secs_f64()
    };
    crate::bench::median_seconds(3, repeats, pass)
}
