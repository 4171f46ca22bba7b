//! Fused CPU kernels: operations that the composed tensor path would run as several passes over
//! memory (or through a large intermediate tensor), written as one backend operation with an
//! exact hand-written gradient.
//!
//! Each kernel is a burn backend extension implemented for the Flex CPU backend and for autodiff
//! over it. Its public function chooses at run time, by the device of its input: the kernel on
//! Flex, the composed tensor path (the same values up to rounding) on every other device.

pub mod attention;
pub mod logps;
pub mod norm;
mod softmax;
pub mod swiglu;

use std::borrow::Cow;

use burn::backend::flex::FlexTensor;
use burn::tensor::{Shape, Tensor, TensorData};

pub use attention::causal_attention;
pub use logps::head_token_logps;
pub use norm::rms_norm;
pub use swiglu::swiglu;

/// Whether `tensor` lives on the Flex CPU backend (with or without autodiff).
pub(crate) fn on_flex<const D: usize>(tensor: &Tensor<D>) -> bool {
    crate::device::is_cpu(&tensor.device())
}

/// The f32 elements of `tensor` in row-major order (copied only when it is a strided view).
pub(crate) fn f32_values(tensor: &FlexTensor) -> Cow<'_, [f32]> {
    match tensor.as_slice::<f32>() {
        Some(values) => values.into(),
        None => tensor
            .to_contiguous()
            .as_slice::<f32>()
            .expect("the fused kernels run on f32 tensors")
            .to_vec()
            .into(),
    }
}

/// A contiguous f32 tensor of `shape` holding `values`.
pub(crate) fn from_vec(values: Vec<f32>, shape: Shape) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}
