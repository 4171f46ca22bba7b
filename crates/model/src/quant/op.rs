//! `y = x·Wᵀ` with a quantized `W` as a backend operation, with its gradient.
//!
//! On the Flex CPU backend it runs the kernels of [`super::kernels`]; under autodiff it saves
//! only the quantized matrix (a handle to the same bytes, no float copy) and computes
//! `∂x = ∂y·W` from it in the backward pass. The weight is frozen: it has no gradient. On any
//! other device the weight is de-quantized onto the input's device for the call and the product
//! is composed (exact, and as slow as that sounds: GPU kernels for the block formats are not
//! written yet, so the loaders de-quantize for those devices instead).

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Dispatch, Flex, backend_extension};
use burn::tensor::{Tensor, TensorData};

use super::{QuantizedMatrix, kernels};
use crate::fused::{f32_values, from_vec, on_flex};

/// The quantized linear layer as a backend operation.
#[backend_extension(Flex, Autodiff)]
pub trait QuantizedLinearBackend: burn::backend::Backend {
    /// `x: [rows, in]` → `x·Wᵀ: [rows, out]` for `weight: [out, in]`.
    fn quantized_linear(x: FloatTensor<Self>, weight: &QuantizedMatrix) -> FloatTensor<Self>;
}

impl QuantizedLinearBackend for Flex {
    fn quantized_linear(x: FloatTensor<Self>, weight: &QuantizedMatrix) -> FloatTensor<Self> {
        forward(&x, weight)
    }
}

impl<C: CheckpointStrategy> QuantizedLinearBackend for Autodiff<Flex, C> {
    fn quantized_linear(x: FloatTensor<Self>, weight: &QuantizedMatrix) -> FloatTensor<Self> {
        match QuantizedLinearBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let output = forward(&x.into_primitive(), weight);
                prep.finish(weight.clone(), output)
            }
            OpsKind::UnTracked(prep) => prep.finish(forward(x.primitive(), weight)),
        }
    }
}

#[derive(Debug)]
struct QuantizedLinearBackward;

impl Backward<Flex, 1> for QuantizedLinearBackward {
    type State = QuantizedMatrix;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [x_node] = ops.parents;
        let upstream = grads.consume::<Flex>(&ops.node);
        if let Some(node) = x_node {
            let weight = &ops.state;
            let rows = upstream.layout().shape()[0];
            let dx = kernels::matmul_transposed(weight, &f32_values(&upstream), rows);
            grads.register::<Flex>(node.id, from_vec(dx, [rows, weight.shape()[1]].into()));
        }
    }
}

fn forward(x: &FlexTensor, weight: &QuantizedMatrix) -> FlexTensor {
    let rows = x.layout().shape()[0];
    let y = kernels::matmul(weight, &f32_values(x), rows);
    from_vec(y, [rows, weight.shape()[0]].into())
}

/// `x: [rows, in]` → `x·Wᵀ: [rows, out]`: the quantized kernels on the CPU; elsewhere the
/// de-quantized weight, moved to `x`'s device for this call.
pub fn quantized_linear(x: Tensor<2>, weight: &QuantizedMatrix) -> Tensor<2> {
    if on_flex(&x) {
        return Tensor::from_dispatch(<Dispatch as QuantizedLinearBackend>::quantized_linear(
            x.into_dispatch(),
            weight,
        ));
    }
    let dense = Tensor::<2>::from_data(
        TensorData::new(weight.dequantize(), weight.shape()),
        &x.device(),
    );
    x.matmul(dense.transpose())
}
