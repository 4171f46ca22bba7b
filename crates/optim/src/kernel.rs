//! Fused update kernels: one pass over a parameter's (θ, g, m, v) slices per step.
//!
//! An optimizer step reads θ, g, m, v and writes θ, m, v: 28 bytes per f32 parameter for a
//! dozen flops, so it is bound by memory bandwidth. These kernels make that single pass, in place,
//! with no temporaries, split into chunks across rayon's threads. The inner loops are branch-free
//! (every option is a const generic, so each combination is its own monomorphised loop) and
//! written so LLVM vectorises them.
//!
//! Every scalar coefficient arrives already rounded to the element type (see
//! [`crate::coefficients`]); the order of operations follows PyTorch's CPU kernels
//! (`lerp`, `addcmul`, `addcdiv`) so that results match the reference implementations.

use num_traits::Float;
use rayon::prelude::*;

/// Elements per parallel task. Large enough that scheduling is noise, small enough to balance.
const CHUNK: usize = 1 << 16;

/// Element types the fused kernels run on.
pub trait Element: Float + Send + Sync + 'static {}
impl Element for f32 {}
impl Element for f64 {}

/// Scalars of one ADOPT step (t ≥ 1), rounded to the element type.
#[derive(Debug, Clone, Copy)]
pub struct AdoptScalars<T> {
    /// −lr.
    pub neg_lr: T,
    /// 1 − β₁, the lerp weight of the momentum update.
    pub momentum_weight: T,
    /// β₂.
    pub beta_2: T,
    /// 1 − β₂.
    pub one_minus_beta_2: T,
    /// ε, the floor on √v.
    pub epsilon: T,
    /// The clip value t^clip_exponent (unused when clipping is off).
    pub clip: T,
    /// The L2 penalty added to the gradient (unused unless L2 decay is on).
    pub l2_penalty: T,
    /// −lr·wd, the decoupled decay factor (unused unless decoupled decay is on).
    pub neg_decay: T,
}

/// Scalars of one Adam / AdamW / AMSGrad step, rounded to the element type.
#[derive(Debug, Clone, Copy)]
pub struct AdamScalars<T> {
    /// −lr / (1 − β₁ᵗ).
    pub neg_step_size: T,
    /// 1 − β₁.
    pub momentum_weight: T,
    /// β₂.
    pub beta_2: T,
    /// 1 − β₂.
    pub one_minus_beta_2: T,
    /// √(1 − β₂ᵗ).
    pub bias_correction_2_sqrt: T,
    /// ε, added to the bias-corrected √v̂.
    pub epsilon: T,
    /// The L2 penalty added to the gradient (Adam's `weight_decay`).
    pub l2_penalty: T,
    /// 1 − lr·wd, AdamW's multiplicative decay.
    pub decay_factor: T,
}

/// One chunk of a step's slices: ((θ, g), (m, v)), as rayon's zipped chunk iterators yield it.
type Chunk<'a, T> = ((&'a mut [T], &'a [T]), (&'a mut [T], &'a mut [T]));

/// PyTorch's `lerp(start, end, weight)`: exact at both ends, as ATen computes it.
#[inline(always)]
fn lerp<T: Float>(start: T, end: T, weight: T, weight_below_half: bool) -> T {
    if weight_below_half {
        start + weight * (end - start)
    } else {
        end - (end - start) * (T::one() - weight)
    }
}

/// ADOPT's first step: v ← g² (g including the L2 term); θ and m are untouched.
pub fn adopt_first_step<T: Element>(theta: &[T], grad: &[T], v: &mut [T], l2_penalty: Option<T>) {
    assert_eq!(
        theta.len(),
        grad.len(),
        "parameter and gradient lengths differ"
    );
    assert_eq!(theta.len(), v.len(), "parameter and state lengths differ");
    let run = |(v, (theta, grad)): (&mut [T], (&[T], &[T]))| match l2_penalty {
        Some(penalty) => {
            for ((v, &theta), &grad) in v.iter_mut().zip(theta).zip(grad) {
                let g = grad + penalty * theta;
                *v = g * g;
            }
        }
        None => {
            for (v, &grad) in v.iter_mut().zip(grad) {
                *v = grad * grad;
            }
        }
    };
    if v.len() <= CHUNK {
        run((v, (theta, grad)));
    } else {
        v.par_chunks_mut(CHUNK)
            .zip(theta.par_chunks(CHUNK).zip(grad.par_chunks(CHUNK)))
            .for_each(run);
    }
}

/// One ADOPT step (t ≥ 1) over whole slices, in place.
///
/// `l2`, `decoupled` and `clip` select which options are on; the matching fields of `scalars`
/// are ignored otherwise.
#[allow(clippy::too_many_arguments)]
pub fn adopt_step<T: Element>(
    theta: &mut [T],
    grad: &[T],
    m: &mut [T],
    v: &mut [T],
    scalars: &AdoptScalars<T>,
    l2: bool,
    decoupled: bool,
    clip: bool,
) {
    let n = theta.len();
    assert!(
        grad.len() == n && m.len() == n && v.len() == n,
        "parameter, gradient and state lengths differ"
    );
    match (l2, decoupled, clip) {
        (false, false, false) => {
            adopt_dispatch::<T, false, false, false>(theta, grad, m, v, scalars)
        }
        (false, false, true) => adopt_dispatch::<T, false, false, true>(theta, grad, m, v, scalars),
        (false, true, false) => adopt_dispatch::<T, false, true, false>(theta, grad, m, v, scalars),
        (false, true, true) => adopt_dispatch::<T, false, true, true>(theta, grad, m, v, scalars),
        (true, false, false) => adopt_dispatch::<T, true, false, false>(theta, grad, m, v, scalars),
        (true, false, true) => adopt_dispatch::<T, true, false, true>(theta, grad, m, v, scalars),
        (true, true, false) => adopt_dispatch::<T, true, true, false>(theta, grad, m, v, scalars),
        (true, true, true) => adopt_dispatch::<T, true, true, true>(theta, grad, m, v, scalars),
    }
}

fn adopt_dispatch<T: Element, const L2: bool, const DECOUPLED: bool, const CLIP: bool>(
    theta: &mut [T],
    grad: &[T],
    m: &mut [T],
    v: &mut [T],
    s: &AdoptScalars<T>,
) {
    let below_half = s.momentum_weight < T::from(0.5).unwrap();
    let run = |((theta, grad), (m, v)): Chunk<'_, T>| {
        if below_half {
            adopt_chunk_widest::<T, L2, DECOUPLED, CLIP, true>(theta, grad, m, v, s)
        } else {
            adopt_chunk_widest::<T, L2, DECOUPLED, CLIP, false>(theta, grad, m, v, s)
        }
    };
    if theta.len() <= CHUNK {
        run(((theta, grad), (m, v)));
    } else {
        theta
            .par_chunks_mut(CHUNK)
            .zip(grad.par_chunks(CHUNK))
            .zip(m.par_chunks_mut(CHUNK).zip(v.par_chunks_mut(CHUNK)))
            .for_each(run);
    }
}

/// [`adopt_chunk`] compiled for AVX2 when the processor has it (twice the vector width of the
/// x86-64 baseline). The arithmetic is the same (no FMA contraction), so results are bitwise
/// identical on either path.
fn adopt_chunk_widest<
    T: Element,
    const L2: bool,
    const DECOUPLED: bool,
    const CLIP: bool,
    const BELOW_HALF: bool,
>(
    theta: &mut [T],
    grad: &[T],
    m: &mut [T],
    v: &mut [T],
    s: &AdoptScalars<T>,
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        #[target_feature(enable = "avx2")]
        fn avx2<
            T: Element,
            const L2: bool,
            const DECOUPLED: bool,
            const CLIP: bool,
            const BELOW_HALF: bool,
        >(
            theta: &mut [T],
            grad: &[T],
            m: &mut [T],
            v: &mut [T],
            s: &AdoptScalars<T>,
        ) {
            adopt_chunk::<T, L2, DECOUPLED, CLIP, BELOW_HALF>(theta, grad, m, v, s)
        }
        // SAFETY: the processor supports AVX2, checked just above.
        return unsafe { avx2::<T, L2, DECOUPLED, CLIP, BELOW_HALF>(theta, grad, m, v, s) };
    }
    adopt_chunk::<T, L2, DECOUPLED, CLIP, BELOW_HALF>(theta, grad, m, v, s)
}

#[inline(always)]
fn adopt_chunk<
    T: Element,
    const L2: bool,
    const DECOUPLED: bool,
    const CLIP: bool,
    const BELOW_HALF: bool,
>(
    theta: &mut [T],
    grad: &[T],
    m: &mut [T],
    v: &mut [T],
    s: &AdoptScalars<T>,
) {
    let n = theta.len();
    let (grad, m, v) = (&grad[..n], &mut m[..n], &mut v[..n]);
    for i in 0..n {
        let mut th = theta[i];
        let mut g = grad[i];
        if L2 {
            g = g + s.l2_penalty * th;
        }
        if DECOUPLED {
            th = th + s.neg_decay * th;
        }
        let root = v[i].sqrt();
        // torch.clamp(√v, min=ε): NaN stays NaN.
        let denom = if root < s.epsilon { s.epsilon } else { root };
        let mut normed = g / denom;
        if CLIP {
            let low = -s.clip;
            normed = if normed < low { low } else { normed };
            normed = if normed > s.clip { s.clip } else { normed };
        }
        let momentum = lerp(m[i], normed, s.momentum_weight, BELOW_HALF);
        m[i] = momentum;
        theta[i] = th + s.neg_lr * momentum;
        v[i] = v[i] * s.beta_2 + s.one_minus_beta_2 * g * g;
    }
}

/// One Adam / AdamW / AMSGrad step over whole slices, in place.
///
/// `v_max` is `Some` for AMSGrad (the running maximum of the raw v). `l2` adds the penalty to
/// the gradient (Adam's `weight_decay`); `decoupled` multiplies θ by `decay_factor` first (AdamW).
#[allow(clippy::too_many_arguments)]
pub fn adam_step<T: Element>(
    theta: &mut [T],
    grad: &[T],
    m: &mut [T],
    v: &mut [T],
    v_max: Option<&mut [T]>,
    scalars: &AdamScalars<T>,
    l2: bool,
    decoupled: bool,
) {
    let n = theta.len();
    assert!(
        grad.len() == n && m.len() == n && v.len() == n,
        "parameter, gradient and state lengths differ"
    );
    match (v_max, l2, decoupled) {
        (None, false, false) => adam_dispatch::<T, false, false>(theta, grad, m, v, None, scalars),
        (None, true, false) => adam_dispatch::<T, true, false>(theta, grad, m, v, None, scalars),
        (None, false, true) => adam_dispatch::<T, false, true>(theta, grad, m, v, None, scalars),
        (None, true, true) => adam_dispatch::<T, true, true>(theta, grad, m, v, None, scalars),
        (Some(v_max), false, false) => {
            adam_dispatch::<T, false, false>(theta, grad, m, v, Some(v_max), scalars)
        }
        (Some(v_max), true, false) => {
            adam_dispatch::<T, true, false>(theta, grad, m, v, Some(v_max), scalars)
        }
        (Some(v_max), false, true) => {
            adam_dispatch::<T, false, true>(theta, grad, m, v, Some(v_max), scalars)
        }
        (Some(v_max), true, true) => {
            adam_dispatch::<T, true, true>(theta, grad, m, v, Some(v_max), scalars)
        }
    }
}

fn adam_dispatch<T: Element, const L2: bool, const DECOUPLED: bool>(
    theta: &mut [T],
    grad: &[T],
    m: &mut [T],
    v: &mut [T],
    v_max: Option<&mut [T]>,
    s: &AdamScalars<T>,
) {
    let below_half = s.momentum_weight < T::from(0.5).unwrap();
    macro_rules! chunk {
        ($amsgrad:literal, $below:literal, $theta:expr, $grad:expr, $m:expr, $v:expr, $vmax:expr) => {
            adam_chunk_widest::<T, L2, DECOUPLED, $amsgrad, $below>($theta, $grad, $m, $v, $vmax, s)
        };
    }
    let small = theta.len() <= CHUNK;
    match v_max {
        None => {
            let run = |((theta, grad), (m, v)): Chunk<'_, T>| {
                if below_half {
                    chunk!(false, true, theta, grad, m, v, &mut [])
                } else {
                    chunk!(false, false, theta, grad, m, v, &mut [])
                }
            };
            if small {
                run(((theta, grad), (m, v)));
            } else {
                theta
                    .par_chunks_mut(CHUNK)
                    .zip(grad.par_chunks(CHUNK))
                    .zip(m.par_chunks_mut(CHUNK).zip(v.par_chunks_mut(CHUNK)))
                    .for_each(run);
            }
        }
        Some(v_max) => {
            assert_eq!(
                v_max.len(),
                theta.len(),
                "parameter and state lengths differ"
            );
            let run = |(((theta, grad), (m, v)), v_max): (Chunk<'_, T>, &mut [T])| {
                if below_half {
                    chunk!(true, true, theta, grad, m, v, v_max)
                } else {
                    chunk!(true, false, theta, grad, m, v, v_max)
                }
            };
            if small {
                run((((theta, grad), (m, v)), v_max));
            } else {
                theta
                    .par_chunks_mut(CHUNK)
                    .zip(grad.par_chunks(CHUNK))
                    .zip(m.par_chunks_mut(CHUNK).zip(v.par_chunks_mut(CHUNK)))
                    .zip(v_max.par_chunks_mut(CHUNK))
                    .for_each(run);
            }
        }
    }
}

/// [`adam_chunk`] compiled for AVX2 when the processor has it; bitwise the same results.
fn adam_chunk_widest<
    T: Element,
    const L2: bool,
    const DECOUPLED: bool,
    const AMSGRAD: bool,
    const BELOW_HALF: bool,
>(
    theta: &mut [T],
    grad: &[T],
    m: &mut [T],
    v: &mut [T],
    v_max: &mut [T],
    s: &AdamScalars<T>,
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        #[target_feature(enable = "avx2")]
        fn avx2<
            T: Element,
            const L2: bool,
            const DECOUPLED: bool,
            const AMSGRAD: bool,
            const BELOW_HALF: bool,
        >(
            theta: &mut [T],
            grad: &[T],
            m: &mut [T],
            v: &mut [T],
            v_max: &mut [T],
            s: &AdamScalars<T>,
        ) {
            adam_chunk::<T, L2, DECOUPLED, AMSGRAD, BELOW_HALF>(theta, grad, m, v, v_max, s)
        }
        // SAFETY: the processor supports AVX2, checked just above.
        return unsafe {
            avx2::<T, L2, DECOUPLED, AMSGRAD, BELOW_HALF>(theta, grad, m, v, v_max, s)
        };
    }
    adam_chunk::<T, L2, DECOUPLED, AMSGRAD, BELOW_HALF>(theta, grad, m, v, v_max, s)
}

#[inline(always)]
fn adam_chunk<
    T: Element,
    const L2: bool,
    const DECOUPLED: bool,
    const AMSGRAD: bool,
    const BELOW_HALF: bool,
>(
    theta: &mut [T],
    grad: &[T],
    m: &mut [T],
    v: &mut [T],
    v_max: &mut [T],
    s: &AdamScalars<T>,
) {
    let n = theta.len();
    let (grad, m, v) = (&grad[..n], &mut m[..n], &mut v[..n]);
    let v_max = if AMSGRAD { &mut v_max[..n] } else { v_max };
    for i in 0..n {
        let mut th = theta[i];
        let mut g = grad[i];
        if L2 {
            g = g + s.l2_penalty * th;
        }
        if DECOUPLED {
            th = th * s.decay_factor;
        }
        let momentum = lerp(m[i], g, s.momentum_weight, BELOW_HALF);
        m[i] = momentum;
        let second = v[i] * s.beta_2 + s.one_minus_beta_2 * g * g;
        v[i] = second;
        let second = if AMSGRAD {
            let kept = v_max[i];
            let larger = if kept > second { kept } else { second };
            v_max[i] = larger;
            larger
        } else {
            second
        };
        let denom = second.sqrt() / s.bias_correction_2_sqrt + s.epsilon;
        theta[i] = th + s.neg_step_size * momentum / denom;
    }
}
