//! The SwiGLU gate as one element-wise pass: `h = silu(a) ⊙ b` for the gate projection `a` and
//! the up projection `b`.
//!
//! Composed, that is a sigmoid, two products and, under autodiff, their saved intermediates and
//! backward steps. This kernel saves `a` and `b` and computes both gradients in one pass:
//! `∂a = g ⊙ b ⊙ σ(a)(1 + a(1 − σ(a)))`, `∂b = g ⊙ silu(a)`.

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

/// Elements per parallel task.
const ELEMENTS_PER_TASK: usize = 1 << 14;

/// The fused SwiGLU gate as a backend operation.
#[backend_extension(Flex, Autodiff)]
pub trait SwigluBackend: burn::backend::Backend {
    /// `silu(gate) ⊙ up` for two tensors of one shape.
    fn fused_swiglu(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self>;
}

impl SwigluBackend for Flex {
    fn fused_swiglu(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self> {
        forward(&gate, &up)
    }
}

impl<C: CheckpointStrategy> SwigluBackend for Autodiff<Flex, C> {
    fn fused_swiglu(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self> {
        match SwigluBackward
            .prepare::<C>([gate.node(), up.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (gate, up) = (gate.into_primitive(), up.into_primitive());
                let output = forward(&gate, &up);
                prep.finish((gate, up), output)
            }
            OpsKind::UnTracked(prep) => prep.finish(forward(gate.primitive(), up.primitive())),
        }
    }
}

#[derive(Debug)]
struct SwigluBackward;

impl Backward<Flex, 2> for SwigluBackward {
    type State = (FlexTensor, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [gate_node, up_node] = ops.parents;
        let upstream = grads.consume::<Flex>(&ops.node);
        let (gate, up) = &ops.state;
        let shape = gate.layout().shape().clone();
        let (a, b, g) = (f32_values(gate), f32_values(up), f32_values(&upstream));
        let mut grad_gate = vec![0.0f32; a.len()];
        let mut grad_up = vec![0.0f32; a.len()];
        grad_gate
            .par_chunks_mut(ELEMENTS_PER_TASK)
            .zip(grad_up.par_chunks_mut(ELEMENTS_PER_TASK))
            .zip(a.par_chunks(ELEMENTS_PER_TASK))
            .zip(
                b.par_chunks(ELEMENTS_PER_TASK)
                    .zip(g.par_chunks(ELEMENTS_PER_TASK)),
            )
            .for_each(|(((ga, gb), a), (b, g))| {
                let lanes = ga.iter_mut().zip(gb.iter_mut()).zip(a).zip(b.iter().zip(g));
                for (((ga, gb), &a), (&b, &g)) in lanes {
                    let sigmoid = 1.0 / (1.0 + (-a).exp());
                    *ga = g * b * sigmoid * (1.0 + a * (1.0 - sigmoid));
                    *gb = g * a * sigmoid;
                }
            });
        if let Some(node) = gate_node {
            grads.register::<Flex>(node.id, from_vec(grad_gate, shape.clone()));
        }
        if let Some(node) = up_node {
            grads.register::<Flex>(node.id, from_vec(grad_up, shape));
        }
    }
}

fn forward(gate: &FlexTensor, up: &FlexTensor) -> FlexTensor {
    let shape = gate.layout().shape().clone();
    let (a, b) = (f32_values(gate), f32_values(up));
    let mut output = vec![0.0f32; a.len()];
    output
        .par_chunks_mut(ELEMENTS_PER_TASK)
        .zip(
            a.par_chunks(ELEMENTS_PER_TASK)
                .zip(b.par_chunks(ELEMENTS_PER_TASK)),
        )
        .for_each(|(out, (a, b))| {
            for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
                *o = a / (1.0 + (-a).exp()) * b;
            }
        });
    from_vec(output, shape)
}

/// `silu(gate) ⊙ up`: the fused kernel on the Flex CPU backend, `None` elsewhere (the caller
/// then runs the composed path).
pub fn swiglu(gate: &Tensor<2>, up: &Tensor<2>) -> Option<Tensor<2>> {
    on_flex(gate).then(|| {
        Tensor::from_dispatch(<Dispatch as SwigluBackend>::fused_swiglu(
            gate.clone().into_dispatch(),
            up.clone().into_dispatch(),
        ))
    })
}
