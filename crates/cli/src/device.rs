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
