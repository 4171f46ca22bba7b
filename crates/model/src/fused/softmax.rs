//! Softmax over the last dimension (the attention probabilities) with a one-pass gradient.
//!
//! burn's autodiff has no softmax of its own: it differentiates the composed
//! `exp(x − max) / Σ exp(x − max)`, which keeps the exponentials and their sums for the
//! backward pass besides the probabilities the next matrix product keeps anyway, and runs the
//! division's and the exponential's backward steps as separate passes. This operation runs
//! Flex's fused row kernel forward (the one untracked attention uses), saves only the
//! probabilities `p` — the same storage the product with V saves — and computes
//! `∂x = p ⊙ (g − Σⱼ gⱼ pⱼ)` row by row in one pass.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::ops::ActivationOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Dispatch, Flex, backend_extension};
use burn::tensor::Tensor;
use rayon::prelude::*;

use super::{f32_values, from_vec, on_flex};

/// Elements per parallel task (whole rows of at least this many elements together).
const ELEMENTS_PER_TASK: usize = 1 << 14;

/// Softmax over the last dimension as a backend operation.
#[backend_extension(Flex, Autodiff)]
pub trait SoftmaxBackend: burn::backend::Backend {
    /// Softmax of `tensor` over its last dimension.
    fn fused_softmax_last(tensor: FloatTensor<Self>) -> FloatTensor<Self>;
}

impl SoftmaxBackend for Flex {
    fn fused_softmax_last(tensor: FloatTensor<Self>) -> FloatTensor<Self> {
        forward(tensor)
    }
}

impl<C: CheckpointStrategy> SoftmaxBackend for Autodiff<Flex, C> {
    fn fused_softmax_last(tensor: FloatTensor<Self>) -> FloatTensor<Self> {
        match SoftmaxBackward
            .prepare::<C>([tensor.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let output = forward(tensor.into_primitive());
                prep.finish(output.clone(), output)
            }
            OpsKind::UnTracked(prep) => prep.finish(forward(tensor.into_primitive())),
        }
    }
}

#[derive(Debug)]
struct SoftmaxBackward;

impl Backward<Flex, 1> for SoftmaxBackward {
    /// The probabilities.
    type State = FlexTensor;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node] = ops.parents;
        let upstream = grads.consume::<Flex>(&ops.node);
        let Some(node) = node else {
            return;
        };
        let probs = &ops.state;
        let shape = probs.layout().shape().clone();
        let row = *shape.last().expect("softmax of a tensor with dimensions");
        let (p, g) = (f32_values(probs), f32_values(&upstream));
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
        grads.register::<Flex>(node.id, from_vec(grad, shape));
    }
}

/// Flex's fused row kernel, on f32 tensors.
fn forward(tensor: FlexTensor) -> FlexTensor {
    let last = tensor.layout().shape().num_dims() - 1;
    <Flex as ActivationOps<Flex>>::softmax(tensor, last)
}

/// Softmax of `x` over its last dimension: the fused operation on the Flex CPU backend, `None`
/// elsewhere (the caller then runs burn's `softmax`).
pub fn softmax_last<const D: usize>(x: &Tensor<D>) -> Option<Tensor<D>> {
    on_flex(x).then(|| {
        Tensor::from_dispatch(<Dispatch as SoftmaxBackend>::fused_softmax_last(
            x.clone().into_dispatch(),
        ))
    })
}
