//! Devices a plan can run on.

use crate::error::{EngineError, Result};
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Device {
    Cpu,
}

impl Device {
    /// Parse `cpu`, `cuda` or `cuda:N`. CUDA is recognised but not available in this build
    /// yet, which is reported as a clear error rather than a panic.
    pub fn parse(s: &str) -> Result<Device> {
        match s {
            "cpu" => Ok(Device::Cpu),
            _ if s == "cuda" || s.strip_prefix("cuda:").is_some_and(|n| n.parse::<usize>().is_ok()) => {
                Err(EngineError::DeviceUnavailable(
                    s.into(),
                    "this build has no CUDA backend yet; use cpu".into(),
                ))
            }
            _ => Err(EngineError::UnknownDevice(s.into())),
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
        }
    }
}
