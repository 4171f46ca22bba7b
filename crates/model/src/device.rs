//! Where computation runs: `--device cpu|wgpu[:N]|cuda[:N][,cuda:M…]`, parsed and opened
//! fallibly.
//!
//! burn 0.22 picks the backend from the device at run time, so every model, loss and trainer
//! runs on whatever device its tensors were created on. This module is the one place where a
//! device is *chosen*: [`DeviceSpec`] parses what the user wrote, [`DeviceSpec::open`] opens it
//! and returns an error — never a panic — when the binary was built without that backend, when
//! no adapter or driver is there, or when an index is out of range.
//!
//! - `cpu` is burn's Flex backend (always built). The fused CPU kernels and the in-place
//!   optimizer step run only there; every other device takes the composed tensor path.
//! - `wgpu` is burn's wgpu runtime (Vulkan, Metal, DX12 or OpenGL, chosen by wgpu, or pinned
//!   with `SOFTALIGN_WGPU_API=vulkan|metal|dx12|gl`); `wgpu:N` is the N-th discrete GPU. A
//!   process opens one wgpu device: wgpu's runtime can be initialised once, so the opened device
//!   is kept and handed out again.
//! - `cuda` / `cuda:N` is burn's CUDA runtime on GPU N; `cuda:0,cuda:1,…` names several, for
//!   data-parallel training. The driver (`libcuda`) is probed before the device is touched,
//!   since burn's CUDA runtime panics when it is missing.

use std::fmt;

use burn::tensor::Device;

/// Where a command computes, as written on its command line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub enum DeviceSpec {
    /// burn's Flex CPU backend.
    #[default]
    Cpu,
    /// burn's wgpu runtime: the best adapter (`None`) or the N-th discrete GPU.
    Wgpu(Option<usize>),
    /// burn's CUDA runtime on these GPUs (one for most commands; several for data parallel).
    Cuda(Vec<usize>),
}

/// Why a device could not be used. Displayed as one line, beginning with the flag value.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The text is not a device.
    #[error("--device {text}: expected cpu, wgpu, wgpu:N, cuda, cuda:N or a list cuda:0,cuda:1,…")]
    Parse {
        /// What was written.
        text: String,
    },
    /// The binary was built without the backend.
    #[error("--device {spec}: built without the \"{feature}\" feature ({how})")]
    NotBuilt {
        /// The device asked for.
        spec: DeviceSpec,
        /// The cargo feature that compiles it in.
        feature: &'static str,
        /// How to build a binary that has it.
        how: &'static str,
    },
    /// The backend is built in but no such device is usable on this machine.
    #[error("--device {spec}: {cause}")]
    Unavailable {
        /// The device asked for.
        spec: DeviceSpec,
        /// What is missing, in one line.
        cause: String,
    },
    /// Several devices given to a command that runs on one.
    #[error("--device {spec}: {command} runs on one device (several are for sft and align)")]
    SeveralDevices {
        /// The devices asked for.
        spec: DeviceSpec,
        /// The command.
        command: &'static str,
    },
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::Wgpu(None) => f.write_str("wgpu"),
            Self::Wgpu(Some(n)) => write!(f, "wgpu:{n}"),
            Self::Cuda(indices) if indices == &[0] => f.write_str("cuda"),
            Self::Cuda(indices) => {
                let names: Vec<String> = indices.iter().map(|i| format!("cuda:{i}")).collect();
                f.write_str(&names.join(","))
            }
        }
    }
}

impl std::str::FromStr for DeviceSpec {
    type Err = DeviceError;

    /// `cpu`, `wgpu`, `wgpu:N`, `cuda`, `cuda:N`, or `cuda:N,cuda:M,…` (distinct GPUs).
    fn from_str(text: &str) -> Result<Self, DeviceError> {
        let bad = || DeviceError::Parse {
            text: text.to_string(),
        };
        let index = |s: &str| s.parse::<usize>().map_err(|_| bad());
        let entries: Vec<&str> = text.split(',').map(str::trim).collect();
        if entries.len() > 1 {
            let mut indices = Vec::with_capacity(entries.len());
            for entry in entries {
                let i = match entry.strip_prefix("cuda:") {
                    Some(i) => index(i)?,
                    None if entry == "cuda" => 0,
                    None => return Err(bad()),
                };
                if indices.contains(&i) {
                    return Err(bad());
                }
                indices.push(i);
            }
            return Ok(Self::Cuda(indices));
        }
        match text.trim().to_ascii_lowercase().as_str() {
            "cpu" | "flex" => Ok(Self::Cpu),
            "wgpu" => Ok(Self::Wgpu(None)),
            "cuda" => Ok(Self::Cuda(vec![0])),
            other => match other.split_once(':') {
                Some(("wgpu", i)) => Ok(Self::Wgpu(Some(index(i)?))),
                Some(("cuda", i)) => Ok(Self::Cuda(vec![index(i)?])),
                _ => Err(bad()),
            },
        }
    }
}

impl serde::Serialize for DeviceSpec {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for DeviceSpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl DeviceSpec {
    /// Whether this names more than one device.
    pub fn is_several(&self) -> bool {
        matches!(self, Self::Cuda(indices) if indices.len() > 1)
    }

    /// Opens the one device this names, for a command (`command`) that runs on one.
    pub fn open_one(&self, command: &'static str) -> Result<Device, DeviceError> {
        if self.is_several() {
            return Err(DeviceError::SeveralDevices {
                spec: self.clone(),
                command,
            });
        }
        Ok(self.open()?.remove(0))
    }

    /// Opens every device this names (the plain ones, without autodiff), checking first that
    /// the backend is built in and present.
    pub fn open(&self) -> Result<Vec<Device>, DeviceError> {
        match self {
            Self::Cpu => Ok(vec![Device::flex()]),
            Self::Wgpu(index) => Ok(vec![open_wgpu(self, *index)?]),
            Self::Cuda(indices) => open_cuda(self, indices),
        }
    }
}

/// How to build the GPU backends, for the error of a binary built without one.
#[cfg(not(feature = "wgpu"))]
const HOW_WGPU: &str = "build with: cargo build --release -p softalign --features wgpu";
#[cfg(not(feature = "cuda"))]
const HOW_CUDA: &str =
    "build with: scripts/setup-cuda-build.sh && cargo build --release -p softalign --features cuda";

#[cfg(not(feature = "wgpu"))]
fn open_wgpu(spec: &DeviceSpec, _index: Option<usize>) -> Result<Device, DeviceError> {
    Err(DeviceError::NotBuilt {
        spec: spec.clone(),
        feature: "wgpu",
        how: HOW_WGPU,
    })
}

/// The graphics API of `SOFTALIGN_WGPU_API` (`auto` when unset).
#[cfg(feature = "wgpu")]
fn wgpu_api(spec: &DeviceSpec) -> Result<burn::backend::wgpu::WgpuBackend, DeviceError> {
    use burn::backend::wgpu::WgpuBackend;
    let Ok(value) = std::env::var("SOFTALIGN_WGPU_API") else {
        return Ok(WgpuBackend::Auto);
    };
    match value.to_ascii_lowercase().as_str() {
        "" | "auto" => Ok(WgpuBackend::Auto),
        "vulkan" => Ok(WgpuBackend::Vulkan),
        "metal" => Ok(WgpuBackend::Metal),
        "dx12" => Ok(WgpuBackend::Dx12),
        "gl" | "opengl" => Ok(WgpuBackend::Gl),
        other => Err(DeviceError::Unavailable {
            spec: spec.clone(),
            cause: format!("SOFTALIGN_WGPU_API={other}: expected auto, vulkan, metal, dx12 or gl"),
        }),
    }
}

#[cfg(feature = "wgpu")]
fn open_wgpu(spec: &DeviceSpec, index: Option<usize>) -> Result<Device, DeviceError> {
    use std::sync::Mutex;

    use burn::tensor::DeviceKind;

    /// The wgpu device this process opened (wgpu's runtime initialises once per process).
    static OPENED: Mutex<Option<(Option<usize>, Device)>> = Mutex::new(None);
    let mut opened = OPENED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((opened_index, device)) = opened.as_ref() {
        return if *opened_index == index {
            Ok(device.clone())
        } else {
            Err(DeviceError::Unavailable {
                spec: spec.clone(),
                cause: format!(
                    "this process already uses {}; one wgpu device per process",
                    DeviceSpec::Wgpu(*opened_index)
                ),
            })
        };
    }
    let kind = match index {
        None => DeviceKind::DefaultDevice,
        Some(n) => DeviceKind::DiscreteGpu(n),
    };
    let device = Device::wgpu_options()
        .device_kind(kind)
        .graphics_api(wgpu_api(spec)?)
        .init()
        .map_err(|error| DeviceError::Unavailable {
            spec: spec.clone(),
            cause: one_line(&error.to_string()),
        })?;
    *opened = Some((index, device.clone()));
    Ok(device)
}

#[cfg(not(feature = "cuda"))]
fn open_cuda(spec: &DeviceSpec, _indices: &[usize]) -> Result<Vec<Device>, DeviceError> {
    Err(DeviceError::NotBuilt {
        spec: spec.clone(),
        feature: "cuda",
        how: HOW_CUDA,
    })
}

#[cfg(feature = "cuda")]
fn open_cuda(spec: &DeviceSpec, indices: &[usize]) -> Result<Vec<Device>, DeviceError> {
    let unavailable = |cause: String| DeviceError::Unavailable {
        spec: spec.clone(),
        cause,
    };
    // burn's CUDA runtime unwraps every driver call when the device is first used: probe the
    // driver library, its initialisation and the device count here instead.
    // SAFETY: `is_culib_present` only tries to load the driver library.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err(unavailable(
            "no CUDA driver (libcuda.so could not be loaded; is an NVIDIA driver installed?)"
                .into(),
        ));
    }
    cudarc::driver::result::init()
        .map_err(|e| unavailable(format!("the CUDA driver failed to initialise: {e}")))?;
    let count = cudarc::driver::result::device::get_count()
        .map_err(|e| unavailable(format!("the CUDA driver cannot count devices: {e}")))?;
    let count = usize::try_from(count).unwrap_or(0);
    if let Some(&missing) = indices.iter().find(|&&i| i >= count) {
        return Err(unavailable(format!(
            "no CUDA device {missing} (this machine has {count})"
        )));
    }
    Ok(indices.iter().map(|&i| Device::cuda(i)).collect())
}

/// The first line of a message (wgpu's errors can span several).
#[cfg(feature = "wgpu")]
fn one_line(message: &str) -> String {
    let mut lines = message.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or("unknown error").to_string();
    match lines.next() {
        Some(second) => format!("{first} {second}"),
        None => first,
    }
}

/// Whether `device` is burn's Flex CPU backend (with or without autodiff): the one device with
/// the fused CPU kernels and the in-place optimizer step.
pub fn is_cpu(device: &Device) -> bool {
    matches!(
        device.clone().inner().as_dispatch(),
        burn::backend::DispatchDevice::Flex(_)
    )
}

/// `cpu`, or what a GPU device says it is (its name, and what its kernels compile for), for
/// reports.
pub fn describe(device: &Device) -> String {
    if is_cpu(device) {
        return "cpu".into();
    }
    #[cfg(any(feature = "wgpu", feature = "cuda"))]
    if let Some(identity) = device.identity() {
        return format!("{} ({})", identity.name, identity.fingerprint);
    }
    format!("{:?}", device.clone().inner())
}

/// Whether `device` computes in f64 (Mesa's GL and most GPU shading languages do not).
pub fn supports_f64(device: &Device) -> bool {
    device.supports_dtype(burn::tensor::DType::F64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse_and_print_as_written() {
        for (text, spec) in [
            ("cpu", DeviceSpec::Cpu),
            ("wgpu", DeviceSpec::Wgpu(None)),
            ("wgpu:1", DeviceSpec::Wgpu(Some(1))),
            ("cuda", DeviceSpec::Cuda(vec![0])),
            ("cuda:3", DeviceSpec::Cuda(vec![3])),
            ("cuda:0,cuda:1", DeviceSpec::Cuda(vec![0, 1])),
        ] {
            let parsed: DeviceSpec = text.parse().unwrap();
            assert_eq!(parsed, spec, "{text}");
            assert_eq!(parsed.to_string(), text);
        }
        assert_eq!("cuda:0".parse::<DeviceSpec>().unwrap().to_string(), "cuda");
        assert!("cuda:0,cuda:1".parse::<DeviceSpec>().unwrap().is_several());
    }

    #[test]
    fn bad_devices_are_refused_with_the_text() {
        for text in [
            "gpu",
            "wgpu:x",
            "cuda:-1",
            "cuda:0,cuda:0",
            "cuda:0,wgpu",
            "cpu,cpu",
            "",
        ] {
            let error = text.parse::<DeviceSpec>().unwrap_err().to_string();
            assert!(error.starts_with(&format!("--device {text}:")), "{error}");
        }
    }

    #[test]
    fn the_cpu_opens_everywhere_and_is_the_cpu() {
        let device = DeviceSpec::Cpu.open_one("generate").unwrap();
        assert!(is_cpu(&device));
        assert!(is_cpu(&device.autodiff()));
    }

    #[test]
    fn several_devices_are_refused_where_one_is_used() {
        let spec: DeviceSpec = "cuda:0,cuda:1".parse().unwrap();
        let error = spec.open_one("generate").unwrap_err().to_string();
        assert_eq!(
            error,
            "--device cuda:0,cuda:1: generate runs on one device (several are for sft and align)"
        );
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn a_backend_not_built_in_says_how_to_build_it() {
        let error = DeviceSpec::Cuda(vec![0]).open().unwrap_err().to_string();
        assert!(
            error.starts_with("--device cuda: built without the \"cuda\" feature (build with: "),
            "{error}"
        );
        assert_eq!(error.lines().count(), 1);
    }
}
