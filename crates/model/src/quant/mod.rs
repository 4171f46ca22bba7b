//! Frozen weights kept in their ggml block formats (QLoRA bases, inference, the reference model).
//!
//! A linear layer that is not trained holds a [`QuantizedMatrix`]: the GGUF file's bytes as read
//! (memory-mapped, shared) or a Hugging Face weight quantized at load (`--quantize`). Nothing
//! widens it to f32 as a whole: the CPU kernels of [`kernels`] decode a block or a cache-sized
//! tile at a time, for the forward product and for the input gradient, and [`op`] makes that a
//! burn backend operation whose saved state is the quantized matrix itself. Norms, embeddings,
//! the output head, LoRA adapters and every trained weight stay f32.

pub mod kernels;
mod matrix;
pub mod op;
mod quantize;

use crate::gguf::quants::GgmlType;

pub use kernels::Isa;
pub use matrix::{QuantizedMatrix, SharedBytes};
pub use op::quantized_linear;
pub use quantize::{QUANTIZE_TYPES, quantize};

/// How a loaded model holds its linear weights (`--quantize`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WeightFormat {
    /// A GGUF's block formats are kept (on the CPU), everything else is f32: the default.
    #[default]
    Native,
    /// Every weight de-quantized to f32 (`--quantize none`).
    F32,
    /// f32, f16 and bf16 linear weights quantized to this format as they load; a GGUF's block
    /// formats are kept (`--quantize q8_0|q4_k|q4_0`).
    Quantize(GgmlType),
}

impl WeightFormat {
    /// The `--quantize` names: `none`, `q8_0`, `q4_k`, `q4_0`.
    pub fn parse(name: &str) -> Result<Self, String> {
        match name.trim().to_ascii_lowercase().as_str() {
            "none" | "f32" => Ok(WeightFormat::F32),
            "native" => Ok(WeightFormat::Native),
            "q8_0" => Ok(WeightFormat::Quantize(GgmlType::Q8_0)),
            "q4_k" => Ok(WeightFormat::Quantize(GgmlType::Q4K)),
            "q4_0" => Ok(WeightFormat::Quantize(GgmlType::Q4_0)),
            other => Err(format!(
                "unknown weight format {other:?} (expected q8_0, q4_k, q4_0 or none)"
            )),
        }
    }
}
