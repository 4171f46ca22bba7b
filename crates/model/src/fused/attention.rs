//! Causal attention for training as one operation that keeps no score-sized tensor for the
//! backward pass.
//!
//! Composed under autodiff, `softmax(q·kᵀ + bias)·v` keeps the attention probabilities
//! `[batch, heads, time, time]` of every block until the backward pass reaches it — for the
//! SmolLM2-135M shape on 2 sequences of 256 tokens, 4.7 MB a block, 30 blocks a replica. This
//! operation keeps only q, k and v (which the score product keeps anyway) and recomputes the
//! scores and probabilities in the backward pass with the same kernels as the forward pass (so
//! they are the forward's, bit for bit):
//!
//! `P = softmax(q·kᵀ + bias)`, `∂v = Σ_group Pᵀ·g`, `∂S = P ⊙ (g·vᵀ − rowsum(P ⊙ g·vᵀ))`,
//! `∂q = ∂S·k`, `∂k = Σ_group ∂Sᵀ·q`.
//!
//! Shapes are those of the grouped-query layout of `model.rs`: queries
//! `[batch, kv_heads, group, time, head_dim]` (already scaled by 1/√head_dim), keys and values
//! `[batch, kv_heads, 1, keys, head_dim]`, broadcast over the group by the products, and the
//! additive mask `[time, keys]` (0 or −∞; every row keeps at least one key).

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Dispatch, Flex, backend_extension};
use burn::tensor::Tensor;

use super::{on_flex, softmax};

/// Causal attention with a recomputing backward pass, as a backend operation.
#[backend_extension(Flex, Autodiff)]
pub trait AttentionBackend: burn::backend::Backend {
    /// `softmax(q·kᵀ + bias)·v` (see the module documentation for the shapes).
    fn fused_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
}

impl AttentionBackend for Flex {
    fn fused_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let probs = probabilities(q, k, bias);
        Flex::float_matmul(probs, v)
    }
}

impl<C: CheckpointStrategy> AttentionBackend for Autodiff<Flex, C> {
    fn fused_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        // The mask is a constant of the model: it gets no gradient.
        let bias = bias.into_primitive();
        match AttentionBackward
            .prepare::<C>([q.node(), k.node(), v.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (q, k, v) = (q.into_primitive(), k.into_primitive(), v.into_primitive());
                let probs = probabilities(q.clone(), k.clone(), bias.clone());
                let output = Flex::float_matmul(probs, v.clone());
                prep.finish((q, k, v, bias), output)
            }
            OpsKind::UnTracked(prep) => {
                let probs = probabilities(q.into_primitive(), k.into_primitive(), bias);
                prep.finish(Flex::float_matmul(probs, v.into_primitive()))
            }
        }
    }
}

#[derive(Debug)]
struct AttentionBackward;

impl Backward<Flex, 3> for AttentionBackward {
    /// q, k, v and the mask.
    type State = (FlexTensor, FlexTensor, FlexTensor, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [q_node, k_node, v_node] = ops.parents;
        let upstream = grads.consume::<Flex>(&ops.node);
        let (q, k, v, bias) = ops.state;
        let probs = probabilities(q.clone(), k.clone(), bias);
        if let Some(node) = v_node {
            let grad = Flex::float_matmul(transposed(probs.clone()), upstream.clone());
            grads.register::<Flex>(node.id, summed_over_group(grad));
        }
        if q_node.is_none() && k_node.is_none() {
            return;
        }
        let grad_probs = Flex::float_matmul(upstream, transposed(v));
        let grad_scores = softmax::backward_rows(&probs, &grad_probs);
        drop((probs, grad_probs));
        if let Some(node) = k_node {
            let grad = Flex::float_matmul(transposed(grad_scores.clone()), q);
            grads.register::<Flex>(node.id, summed_over_group(grad));
        }
        if let Some(node) = q_node {
            grads.register::<Flex>(node.id, Flex::float_matmul(grad_scores, k));
        }
    }
}

/// `softmax(q·kᵀ + bias)` over the keys, `[batch, kv_heads, group, time, keys]`.
fn probabilities(q: FlexTensor, k: FlexTensor, bias: FlexTensor) -> FlexTensor {
    let scores = Flex::float_matmul(q, transposed(k));
    softmax::forward(Flex::float_add(scores, bias))
}

/// The last two dimensions swapped (a view).
fn transposed(tensor: FlexTensor) -> FlexTensor {
    let rank = tensor.layout().shape().num_dims();
    Flex::float_swap_dims(tensor, rank - 2, rank - 1)
}

/// A gradient of `[batch, kv_heads, group, keys, head_dim]` summed over the group (kept as a
/// dimension of 1): the gradient of a key or value tensor broadcast over it.
fn summed_over_group(grad: FlexTensor) -> FlexTensor {
    if grad.layout().shape()[2] == 1 {
        return grad;
    }
    Flex::float_sum_dim(grad, 2)
}

/// Causal attention `softmax(q·kᵀ + bias)·v` of the grouped-query layout (see the module
/// documentation): the fused operation on the Flex CPU backend, `None` elsewhere (the caller
/// then runs the composed path).
pub fn causal_attention(
    q: &Tensor<5>,
    k: &Tensor<5>,
    v: &Tensor<5>,
    bias: &Tensor<2>,
) -> Option<Tensor<5>> {
    on_flex(q).then(|| {
        let [time, keys] = bias.dims();
        let bias = bias.clone().reshape([1, 1, 1, time, keys]);
        Tensor::from_dispatch(<Dispatch as AttentionBackend>::fused_attention(
            q.clone().into_dispatch(),
            k.clone().into_dispatch(),
            v.clone().into_dispatch(),
            bias.into_dispatch(),
        ))
    })
}
