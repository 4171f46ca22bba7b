//! Token log-probabilities straight from hidden states, in chunks of rows: the output head's
//! matmul, the log-sum-exp and the gather run on `CHUNK_ROWS` rows at a time, forward and
//! backward, so no `[tokens, vocabulary]` logits tensor of the whole batch ever exists (for 4 ×
//! 256 tokens and 49,152 words one such tensor is 200 MB, and a softmax over it is pure memory
//! traffic).
//!
//! `log p(t | h) = (h · w_t) − logsumexp(h · Wᵀ)` for hidden state `h`, head `W: [vocab, width]`
//! and target `t`. The backward pass recomputes each chunk's logits from the saved hidden states
//! and the per-row log-normaliser, forms `G = g ⊙ (onehot(t) − softmax)` in place and returns
//! `∂h = G · W` and `∂W = Gᵀ · h`: the exact gradient, at the price of one more head matmul.
//!
//! The kernel is a backend extension implemented for the Flex CPU backend (and autodiff over it);
//! [`head_token_logps`] falls back to the composed tensor path on every other device.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{Autodiff, Dispatch, Flex, backend_extension};
use burn::tensor::{DType, Int, Shape, Tensor};
use rayon::prelude::*;

use burn::backend::flex::FlexTensor;

use super::{f32_values, from_vec, on_flex};

/// Rows per chunk: 256 × 49,152 f32 logits are 50 MB, a quarter of the whole-batch tensor of
/// the training step, and still large enough that each chunk's matmul runs at full speed.
pub const CHUNK_ROWS: usize = 256;

/// Bytes of logits per chunk of the composed path on other devices (32 MiB: well inside any GPU
/// buffer limit, large enough for full-speed matmuls).
const DEVICE_CHUNK_BYTES: usize = 32 << 20;

/// The chunked head log-probability kernel as a backend operation.
#[backend_extension(Flex, Autodiff)]
pub trait HeadLogpsBackend: burn::backend::Backend {
    /// `hidden: [rows, width]`, `weight: [vocab, width]`, `targets: [rows]` →
    /// `[rows]` log-probabilities of the targets.
    fn head_token_logps(
        hidden: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        targets: IntTensor<Self>,
    ) -> FloatTensor<Self>;
}

impl HeadLogpsBackend for Flex {
    fn head_token_logps(
        hidden: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        targets: IntTensor<Self>,
    ) -> FloatTensor<Self> {
        let targets = target_ids(targets);
        let (values, _) = forward(&hidden, &weight, &targets);
        vector(values)
    }
}

impl<C: CheckpointStrategy> HeadLogpsBackend for Autodiff<Flex, C> {
    fn head_token_logps(
        hidden: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        targets: IntTensor<Self>,
    ) -> FloatTensor<Self> {
        let targets = target_ids(targets);
        match HeadLogpsBackward
            .prepare::<C>([hidden.node(), weight.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (h, w) = (hidden.into_primitive(), weight.into_primitive());
                let (values, log_norms) = forward(&h, &w, &targets);
                let state = SavedHead {
                    hidden: h,
                    weight: w,
                    targets,
                    log_norms,
                };
                prep.finish(state, vector(values))
            }
            OpsKind::UnTracked(prep) => {
                let (h, w) = (hidden.into_primitive(), weight.into_primitive());
                prep.finish(vector(forward(&h, &w, &targets).0))
            }
        }
    }
}

/// What the backward pass needs: the inputs and each row's log-normaliser.
#[derive(Debug, Clone)]
struct SavedHead {
    hidden: FlexTensor,
    weight: FlexTensor,
    targets: Vec<usize>,
    log_norms: Vec<f32>,
}

#[derive(Debug)]
struct HeadLogpsBackward;

impl Backward<Flex, 2> for HeadLogpsBackward {
    type State = SavedHead;

    fn backward(self, ops: Ops<SavedHead, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [hidden_node, weight_node] = ops.parents;
        let upstream = grads.consume::<Flex>(&ops.node);
        let (grad_hidden, grad_weight) = backward(&ops.state, &f32_values(&upstream));
        if let Some(node) = hidden_node {
            grads.register::<Flex>(node.id, grad_hidden);
        }
        if let Some(node) = weight_node {
            grads.register::<Flex>(node.id, grad_weight);
        }
    }
}

/// Values and log-normalisers of every row, one chunk of logits at a time.
fn forward(hidden: &FlexTensor, weight: &FlexTensor, targets: &[usize]) -> (Vec<f32>, Vec<f32>) {
    let rows = targets.len();
    let weight_t = weight.transpose(0, 1);
    let mut values = vec![0.0f32; rows];
    let mut log_norms = vec![0.0f32; rows];
    for start in (0..rows).step_by(CHUNK_ROWS) {
        let len = CHUNK_ROWS.min(rows - start);
        let logits = Flex::float_matmul(hidden.narrow(0, start, len), weight_t.clone());
        let logits = f32_values(&logits);
        let vocab = logits.len() / len;
        values[start..start + len]
            .par_iter_mut()
            .zip(&mut log_norms[start..start + len])
            .zip(logits.par_chunks(vocab))
            .zip(&targets[start..start + len])
            .for_each(|(((value, log_norm), row), &target)| {
                *log_norm = log_sum_exp(row);
                *value = row[target] - *log_norm;
            });
    }
    (values, log_norms)
}

/// `∂hidden = G · W` and `∂weight = Σ_chunks Gᵀ · hidden`, with `G = g ⊙ (onehot − softmax)`
/// rebuilt chunk by chunk from recomputed logits.
fn backward(saved: &SavedHead, upstream: &[f32]) -> (FlexTensor, FlexTensor) {
    let rows = saved.targets.len();
    let weight_t = saved.weight.transpose(0, 1);
    let mut grad_hidden = Vec::with_capacity(rows);
    let mut grad_weight: Option<FlexTensor> = None;
    for start in (0..rows).step_by(CHUNK_ROWS) {
        let len = CHUNK_ROWS.min(rows - start);
        let hidden = saved.hidden.narrow(0, start, len);
        let mut logits = Flex::float_matmul(hidden.clone(), weight_t.clone()).to_contiguous();
        let vocab = logits.layout().shape()[1];
        let scores: &mut [f32] = logits.storage_mut();
        scores
            .par_chunks_mut(vocab)
            .zip(&saved.log_norms[start..start + len])
            .zip(&saved.targets[start..start + len])
            .zip(&upstream[start..start + len])
            .for_each(|(((row, &log_norm), &target), &g)| {
                for x in row.iter_mut() {
                    *x = -g * (*x - log_norm).exp();
                }
                row[target] += g;
            });
        let chunk_grad_hidden = Flex::float_matmul(logits.clone(), saved.weight.clone());
        grad_hidden.extend_from_slice(&f32_values(&chunk_grad_hidden));
        let chunk_grad_weight = Flex::float_matmul(logits.transpose(0, 1), hidden);
        grad_weight = Some(match grad_weight {
            Some(sum) => Flex::float_add(sum, chunk_grad_weight),
            None => chunk_grad_weight,
        });
    }
    let width = saved.hidden.layout().shape()[1];
    let grad_hidden = from_vec(grad_hidden, Shape::new([rows, width]));
    let grad_weight = grad_weight
        .unwrap_or_else(|| FlexTensor::zeros(saved.weight.layout().shape().clone(), DType::F32));
    (grad_hidden, grad_weight)
}

/// `ln Σ exp(x)`, shifted by the maximum so that nothing overflows.
fn log_sum_exp(row: &[f32]) -> f32 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = row.iter().map(|&x| (x - max).exp()).sum();
    max + sum.ln()
}

fn target_ids(targets: FlexTensor) -> Vec<usize> {
    targets
        .into_data()
        .iter::<i64>()
        .map(|t| usize::try_from(t).expect("target token ids are non-negative"))
        .collect()
}

fn vector(values: Vec<f32>) -> FlexTensor {
    let rows = values.len();
    from_vec(values, Shape::new([rows]))
}

/// Log-probability of `targets: [rows]` under the logits `hidden · weightᵀ`, with
/// `hidden: [rows, width]` and `weight: [vocab, width]` (the embedding layout; pass an
/// untied `[width, vocab]` head transposed). Differentiable in `hidden` and `weight` on an
/// autodiff device.
///
/// On the Flex CPU backend this is the chunked kernel of this module; on other devices the
/// composed path: the `[rows, vocab]` logits, then [`crate::model::token_logps`].
pub fn head_token_logps(
    hidden: Tensor<2>,
    weight: Tensor<2>,
    targets: Tensor<1, Int>,
) -> Tensor<1> {
    if !on_flex(&hidden) {
        // The composed path, in chunks of rows too: a whole batch's logits can be larger than a
        // GPU's largest buffer (wgpu's binding limit is often 128 MiB; 4 × 256 tokens of a
        // 49,152-word vocabulary are 200 MB).
        let rows = targets.dims()[0];
        let vocab = weight.dims()[0];
        let chunk = (DEVICE_CHUNK_BYTES / (vocab * 4)).clamp(1, CHUNK_ROWS);
        let parts: Vec<Tensor<1>> = (0..rows)
            .step_by(chunk)
            .map(|start| {
                let n = chunk.min(rows - start);
                let logits = hidden
                    .clone()
                    .narrow(0, start, n)
                    .matmul(weight.clone().transpose())
                    .unsqueeze::<3>();
                let targets = targets.clone().narrow(0, start, n).reshape([1, n]);
                crate::model::token_logps(logits, targets).reshape([n])
            })
            .collect();
        return Tensor::cat(parts, 0);
    }
    Tensor::from_dispatch(<Dispatch as HeadLogpsBackend>::head_token_logps(
        hidden.into_dispatch(),
        weight.into_dispatch(),
        targets.into_dispatch(),
    ))
}
