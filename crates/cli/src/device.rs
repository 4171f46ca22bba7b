//! `--device`: where a command computes (`cpu`, `wgpu`, `wgpu:N`, `cuda`, `cuda:N`; several CUDA
//! devices for `sft` and `align`). Parsed and opened by `softalign_model::device`, which turns a
//! backend missing from this build, a missing driver or adapter, or a bad index into one line.

use anyhow::Result;
use burn::tensor::Device;
use clap::Args;
use softalign_model::DeviceSpec;

/// The `--device` flag of a command that runs on one device.
#[derive(Debug, Clone, Args)]
pub struct DeviceArg {
    /// Where to compute: cpu, wgpu (the best GPU adapter; SOFTALIGN_WGPU_API=vulkan|metal|dx12|gl
    /// pins the graphics API), wgpu:N (the N-th discrete GPU), cuda or cuda:N. GPU backends need
    /// a binary built with --features wgpu or cuda.
    #[arg(long, default_value = "cpu", value_name = "DEVICE")]
    pub device: String,
}

impl DeviceArg {
    /// The device, parsed.
    pub fn spec(&self) -> Result<DeviceSpec> {
        Ok(self.device.parse()?)
    }

    /// Opens the device for `command`, which runs on one.
    pub fn open(&self, command: &'static str) -> Result<Device> {
        Ok(self.spec()?.open_one(command)?)
    }
}

/// `--quantize`: how a loaded model holds its linear weights.
#[derive(Debug, Clone, clap::Args)]
pub struct QuantizeArg {
    /// How to hold the model's linear weights on the CPU: q8_0, q4_k or q4_0 quantize an
    /// f32/f16/bf16 Hugging Face model's weights as they load (QLoRA's frozen base); none widens
    /// everything to f32. Without the flag a GGUF keeps its own block formats and a Hugging Face
    /// model stays f32. Weights kept quantized are frozen: full fine-tuning trains f32 copies,
    /// LoRA trains adapters over the quantized base, and a merged export is de-quantized.
    #[arg(long, value_name = "FORMAT", value_parser = parse_weight_format)]
    pub quantize: Option<softalign_model::WeightFormat>,
}

impl QuantizeArg {
    /// The weight format (`Native` when the flag is absent).
    pub fn format(&self) -> softalign_model::WeightFormat {
        self.quantize.unwrap_or_default()
    }
}

fn parse_weight_format(name: &str) -> std::result::Result<softalign_model::WeightFormat, String> {
    match name {
        "native" => Err("expected q8_0, q4_k, q4_0 or none".into()),
        _ => softalign_model::WeightFormat::parse(name),
    }
}
