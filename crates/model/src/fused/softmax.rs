//! Softmax over the last dimension of attention scores on the CPU, forward and backward, for
//! the fused attention operation (`attention.rs`).
//!
//! burn's autodiff has no softmax of its own: it differentiates the composed
//! `exp(x − max) / Σ exp(x − max)`, keeping the exponentials and their sums besides the
//! probabilities, and runs the division's and the exponential's backward steps as separate
//! passes. Here the forward pass is Flex's fused row kernel (the one untracked attention uses)
//! and the backward pass one row-wise pass from the probabilities alone.

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::backend::ops::ActivationOps;
use rayon::prelude::*;

use super::{f32_values, from_vec};

/// Elements per parallel task (whole rows of at least this many elements together).
const ELEMENTS_PER_TASK: usize = 1 << 14;

/// The gradient of a softmax over the last dimension with respect to its input, from its
/// output `probs` and the `upstream` gradient of that output (one shape):
/// `∂x = p ⊙ (g − Σⱼ gⱼ pⱼ)` per row.
pub(super) fn backward_rows(probs: &FlexTensor, upstream: &FlexTensor) -> FlexTensor {
    let shape = probs.layout().shape().clone();
    let row = *shape.last().expect("softmax of a tensor with dimensions");
    let (p, g) = (f32_values(probs), f32_values(upstream));
    let mut grad = vec![0.0f32; p.len()];
    if row > 0 {
        let chunk = ELEMENTS_PER_TASK.div_ceil(row) * row;
        grad.par_chunks_mut(chunk)
            .zip(p.par_chunks(chunk).zip(g.par_chunks(chunk)))
            .for_each(|(dx, (p, g))| {
                for ((dx, p), g) in dx
                    .chunks_exact_mut(row)
                    .zip(p.chunks_exact(row))
                    .zip(g.chunks_exact(row))
                {
                    let dot: f32 = p.iter().zip(g).map(|(p, g)| p * g).sum();
                    for ((dx, &p), &g) in dx.iter_mut().zip(p).zip(g) {
                        *dx = p * (g - dot);
                    }
                }
            });
    }
    from_vec(grad, shape)
}

/// Flex's fused row kernel, on f32 tensors.
pub(super) fn forward(tensor: FlexTensor) -> FlexTensor {
    let last = tensor.layout().shape().num_dims() - 1;
    <Flex as ActivationOps<Flex>>::softmax(tensor, last)
}
