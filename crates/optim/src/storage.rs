//! In-place access to a CPU tensor's buffer, the route to the fused kernels.
//!
//! burn 0.22 hands an optimizer the inner (non-autodiff) tensor. On the `flex` CPU backend its
//! primitive is a [`FlexTensor`]: an `Arc`'d byte buffer with a layout. When the buffer is
//! contiguous we can borrow it as `&mut [f32]` (copy-on-write if another handle shares it, so
//! this is always correct; it is only fast when the caller moved the model into `step`).
//! Tensors on any other backend are handed back untouched, and the optimizer takes its
//! composed-ops path.

use burn::backend::flex::FlexTensor;
use burn::backend::{
    BackendTensor, DispatchAutodiffContext, DispatchTensor, DispatchTensorKind, Flex,
};
use burn::tensor::{DType, Tensor};

/// A tensor's buffer on the flex backend, contiguous and ready to borrow as a slice.
pub(crate) struct HostTensor(FlexTensor);

impl HostTensor {
    /// Take the tensor's flex primitive if it is a plain f32/f64 flex tensor; otherwise give the
    /// tensor back unchanged (boxed: that is the rare path).
    pub(crate) fn take<const D: usize>(tensor: Tensor<D>) -> Result<Self, Box<Tensor<D>>> {
        let dispatch = tensor.into_dispatch();
        let DispatchTensor { kind, autodiff } = dispatch;
        match kind {
            DispatchTensorKind::Flex(BackendTensor::Float(flex))
                if autodiff == DispatchAutodiffContext::Disabled
                    && matches!(flex.dtype(), DType::F32 | DType::F64) =>
            {
                let flex = if flex.layout().contiguous_offsets().is_some() {
                    flex
                } else {
                    flex.to_contiguous()
                };
                Ok(Self(flex))
            }
            kind => Err(Box::new(Tensor::from_dispatch(DispatchTensor {
                kind,
                autodiff,
            }))),
        }
    }

    /// Element type of the buffer.
    pub(crate) fn dtype(&self) -> DType {
        self.0.dtype()
    }

    /// Number of elements.
    pub(crate) fn len(&self) -> usize {
        self.0.layout().num_elements()
    }

    /// The elements, read-only.
    pub(crate) fn slice<E: burn::tensor::Element + bytemuck::Pod>(&self) -> &[E] {
        let (start, end) = self
            .0
            .layout()
            .contiguous_offsets()
            .expect("made contiguous on take");
        &self.0.storage::<E>()[start..end]
    }

    /// The elements, writable in place (copied first only if the buffer is shared).
    pub(crate) fn slice_mut<E: burn::tensor::Element + bytemuck::Pod>(&mut self) -> &mut [E] {
        let (start, end) = self
            .0
            .layout()
            .contiguous_offsets()
            .expect("made contiguous on take");
        &mut self.0.storage_mut::<E>()[start..end]
    }

    /// Wrap the buffer back into a tensor.
    pub(crate) fn into_tensor<const D: usize>(self) -> Tensor<D> {
        Tensor::from_primitive::<Flex>(self.0)
    }
}

/// A zero tensor shaped, typed and placed like `like`.
pub(crate) fn zeros_like<const D: usize>(like: &Tensor<D>) -> Tensor<D> {
    Tensor::zeros(like.shape(), (&like.device(), like.dtype()))
}
