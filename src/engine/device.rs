//! Which candle device a run computes on (`cpu`, `cuda[:N]`, `metal`) and whether this build
//! of genlab has it. The GPU backends are cargo features (`cuda`, `metal`), off by default.

use std::fmt;
use std::str::FromStr;

use candle_core::Device;
use serde::{Deserialize, Serialize};

use super::error::{EngineError, Result};

/// A device by name. Checkpoints and configurations never hold one: where a run computes is
/// chosen each time it starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceChoice {
    #[default]
    Cpu,
    /// An NVIDIA GPU by its CUDA ordinal.
    Cuda(usize),
    /// An Apple GPU.
    Metal(usize),
}

/// Whether this build has a GPU backend.
pub const GPU_BUILD: bool = cfg!(any(feature = "cuda", feature = "metal"));

impl DeviceChoice {
    /// Opens the device: an error that says how to get it when this build lacks its backend
    /// or the machine lacks the device.
    pub fn open(self) -> Result<Device> {
        let missing = |backend: &str, feature: &str| {
            EngineError::Config(format!(
                "this genlab was built without {backend}: build it with `cargo build --release --features {feature}` (README, GPU)"
            ))
        };
        match self {
            DeviceChoice::Cpu => Ok(Device::Cpu),
            DeviceChoice::Cuda(_) if !cfg!(feature = "cuda") => Err(missing("CUDA", "cuda")),
            DeviceChoice::Metal(_) if !cfg!(feature = "metal") => Err(missing("Metal", "metal")),
            DeviceChoice::Cuda(n) => opened(self, || Device::new_cuda(n)),
            DeviceChoice::Metal(n) => opened(self, || Device::new_metal(n)),
        }
    }

    /// The devices this build can open on this machine, the CPU first (GPUs are probed: the
    /// first eight CUDA ordinals, one Metal device).
    pub fn available() -> Vec<DeviceChoice> {
        let mut out = vec![DeviceChoice::Cpu];
        if cfg!(feature = "cuda") {
            out.extend((0..8).map(DeviceChoice::Cuda).take_while(|d| d.open().is_ok()));
        }
        if cfg!(feature = "metal") && DeviceChoice::Metal(0).open().is_ok() {
            out.push(DeviceChoice::Metal(0));
        }
        out
    }

    pub fn is_cpu(self) -> bool {
        self == DeviceChoice::Cpu
    }
}

/// `open()`'s result as an error naming the device. The CUDA libraries are loaded when the
/// first device opens, and a missing one (no NVIDIA driver) is a panic in candle's CUDA
/// bindings: caught here, it is this device's error like any other.
fn opened(d: DeviceChoice, open: impl FnOnce() -> candle_core::Result<Device>) -> Result<Device> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(open)) {
        Ok(Ok(device)) => Ok(device),
        Ok(Err(e)) => Err(EngineError::Config(format!("{d} cannot be opened: {e}"))),
        Err(panic) => {
            let why = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("its libraries could not be loaded");
            let why = why.split(" - ").next().unwrap_or(why);
            Err(EngineError::Config(format!("{d} cannot be opened: {why} (is the GPU's driver installed?)")))
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceChoice::Cpu => f.write_str("cpu"),
            DeviceChoice::Cuda(n) => write!(f, "cuda:{n}"),
            DeviceChoice::Metal(n) => write!(f, "metal:{n}"),
        }
    }
}

impl FromStr for DeviceChoice {
    type Err = String;

    /// `cpu`, `cuda`, `cuda:N`, `metal`, `metal:N`.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let (kind, ordinal) = match s.trim().split_once(':') {
            Some((k, n)) => {
                let n = n.parse::<usize>().map_err(|_| format!("`{n}` is not a device number in `{s}`"))?;
                (k, n)
            }
            None => (s.trim(), 0),
        };
        match kind.to_ascii_lowercase().as_str() {
            "cpu" if ordinal == 0 => Ok(DeviceChoice::Cpu),
            "cuda" | "gpu" => Ok(DeviceChoice::Cuda(ordinal)),
            "metal" | "mps" => Ok(DeviceChoice::Metal(ordinal)),
            _ => Err(format!("unknown device `{s}`: expected cpu, cuda, cuda:N or metal")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_print_back() {
        for (text, d) in [
            ("cpu", DeviceChoice::Cpu),
            ("cuda", DeviceChoice::Cuda(0)),
            ("cuda:1", DeviceChoice::Cuda(1)),
            ("metal", DeviceChoice::Metal(0)),
        ] {
            assert_eq!(text.parse::<DeviceChoice>(), Ok(d));
            assert_eq!(d.to_string().parse::<DeviceChoice>(), Ok(d));
        }
        for bad in ["tpu", "cuda:x", "cpu:1", ""] {
            assert!(bad.parse::<DeviceChoice>().is_err(), "{bad}");
        }
    }

    /// Without a backend the error says how to build one; the CPU always opens.
    #[test]
    fn a_missing_backend_says_how_to_build_it() {
        assert!(DeviceChoice::Cpu.open().is_ok());
        assert_eq!(DeviceChoice::available()[0], DeviceChoice::Cpu);
        if !cfg!(feature = "cuda") {
            let e = DeviceChoice::Cuda(0).open().err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains("--features cuda"), "{e}");
        }
    }
}
