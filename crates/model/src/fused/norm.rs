//! RMSNorm as one pass per row: `y = x · r · w` with `r = 1 / √(mean(x²) + ε)`.
//!
//! The composed path is seven tensor operations (square, mean, add, square root, reciprocal and
//! two products), each a pass over the activations and, under autodiff, a saved intermediate and
//! a backward step of its own. This kernel saves `x`, `w` and the `rows` values of `r`, and its
//! backward pass is one more pass per row:
//! `∂x = r · (g ⊙ w) − x · r³ · mean(g ⊙ w ⊙ x)` and `∂w = Σ_rows g ⊙ x · r`.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Dispatch, Flex, backend_extension};
use burn::tensor::Tensor;
use rayon::prelude::*;

use super::{f32_values, from_vec, on_flex};

/// Rows per parallel task: enough work per task to amortise the scheduling.
const ROWS_PER_TASK: usize = 16;

/// The fused RMSNorm as a backend operation.
#[backend_extension(Flex, Autodiff)]
pub trait RmsNormBackend: burn::backend::Backend {
    /// `x: [rows, width]`, `weight: [width]` → `[rows, width]`.
    fn fused_rms_norm(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        eps: f64,
    ) -> FloatTensor<Self>;
}

impl RmsNormBackend for Flex {
    fn fused_rms_norm(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        eps: f64,
    ) -> FloatTensor<Self> {
        forward(&x, &weight, eps).0
    }
}

impl<C: CheckpointStrategy> RmsNormBackend for Autodiff<Flex, C> {
    fn fused_rms_norm(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        eps: f64,
    ) -> FloatTensor<Self> {
        match RmsNormBackward
            .prepare::<C>([x.node(), weight.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (x, weight) = (x.into_primitive(), weight.into_primitive());
                let (output, inverse_rms) = forward(&x, &weight, eps);
                prep.finish(
                    SavedNorm {
                        x,
                        weight,
                        inverse_rms,
                    },
                    output,
                )
            }
            OpsKind::UnTracked(prep) => {
                let (x, weight) = (x.into_primitive(), weight.into_primitive());
                prep.finish(forward(&x, &weight, eps).0)
            }
        }
    }
}

#[derive(Debug, Clone)]
struct SavedNorm {
    x: FlexTensor,
    weight: FlexTensor,
    inverse_rms: Vec<f32>,
}

#[derive(Debug)]
struct RmsNormBackward;

impl Backward<Flex, 2> for RmsNormBackward {
    type State = SavedNorm;

    fn backward(self, ops: Ops<SavedNorm, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [x_node, weight_node] = ops.parents;
        let upstream = grads.consume::<Flex>(&ops.node);
        let (grad_x, grad_weight) = backward(&ops.state, &f32_values(&upstream));
        if let Some(node) = x_node {
            grads.register::<Flex>(node.id, grad_x);
        }
        if let Some(node) = weight_node {
            grads.register::<Flex>(node.id, grad_weight);
        }
    }
}

/// The normalised rows and each row's `r`.
fn forward(x: &FlexTensor, weight: &FlexTensor, eps: f64) -> (FlexTensor, Vec<f32>) {
    let shape = x.layout().shape().clone();
    let width = shape[shape.num_dims() - 1];
    let (x, weight) = (f32_values(x), f32_values(weight));
    let rows = x.len() / width;
    let mut output = vec![0.0f32; x.len()];
    let mut inverse_rms = vec![0.0f32; rows];
    output
        .par_chunks_mut(width * ROWS_PER_TASK)
        .zip(inverse_rms.par_chunks_mut(ROWS_PER_TASK))
        .zip(x.par_chunks(width * ROWS_PER_TASK))
        .for_each(|((out, r), x)| {
            for ((out, r), x) in out.chunks_mut(width).zip(r).zip(x.chunks(width)) {
                let mean_square = x.iter().map(|v| v * v).sum::<f32>() / width as f32;
                *r = 1.0 / (mean_square + eps as f32).sqrt();
                for ((o, &v), &w) in out.iter_mut().zip(x).zip(weight.iter()) {
                    *o = v * *r * w;
                }
            }
        });
    (from_vec(output, shape), inverse_rms)
}

fn backward(saved: &SavedNorm, upstream: &[f32]) -> (FlexTensor, FlexTensor) {
    let shape = saved.x.layout().shape().clone();
    let width = shape[shape.num_dims() - 1];
    let (x, weight) = (f32_values(&saved.x), f32_values(&saved.weight));
    let mut grad_x = vec![0.0f32; x.len()];
    // Each task sums its rows' share of ∂w; the partial sums are added in task order, so the
    // result does not depend on how the tasks were scheduled.
    let partials: Vec<Vec<f32>> = grad_x
        .par_chunks_mut(width * ROWS_PER_TASK)
        .zip(x.par_chunks(width * ROWS_PER_TASK))
        .zip(upstream.par_chunks(width * ROWS_PER_TASK))
        .zip(saved.inverse_rms.par_chunks(ROWS_PER_TASK))
        .map(|(((gx, x), g), r)| {
            let mut partial = vec![0.0f32; width];
            let rows = gx
                .chunks_mut(width)
                .zip(x.chunks(width))
                .zip(g.chunks(width));
            for (((gx, x), g), &r) in rows.zip(r) {
                let dot: f32 = g
                    .iter()
                    .zip(weight.iter())
                    .zip(x)
                    .map(|((g, w), x)| g * w * x)
                    .sum();
                let correction = r * r * r * dot / width as f32;
                let columns = gx
                    .iter_mut()
                    .zip(g)
                    .zip(weight.iter())
                    .zip(x)
                    .zip(partial.iter_mut());
                for ((((gx, &g), &w), &x), p) in columns {
                    *gx = r * g * w - x * correction;
                    *p += g * x * r;
                }
            }
            partial
        })
        .collect();
    let mut grad_weight = vec![0.0f32; width];
    for partial in partials {
        grad_weight
            .iter_mut()
            .zip(partial)
            .for_each(|(a, b)| *a += b);
    }
    let weight_shape = saved.weight.layout().shape().clone();
    (from_vec(grad_x, shape), from_vec(grad_weight, weight_shape))
}

/// RMSNorm of each row of `x: [rows, width]` with gain `weight: [width]`: the fused kernel on
/// the Flex CPU backend, `None` elsewhere (the caller then runs the composed path).
pub fn rms_norm(x: &Tensor<2>, weight: &Tensor<1>, eps: f64) -> Option<Tensor<2>> {
    on_flex(x).then(|| {
        Tensor::from_dispatch(<Dispatch as RmsNormBackend>::fused_rms_norm(
            x.clone().into_dispatch(),
            weight.clone().into_dispatch(),
            eps,
        ))
    })
}
