//! CUDA side of the kernels crate: our CUDA C++ sources (`kernels/cuda/*.cu`, one op family per
//! file) and their run-time compilation by NVRTC. Libraries are loaded dynamically, so this
//! builds without a toolkit; without NVRTC every entry point returns [`CudaError::Unavailable`].

pub mod bench;
pub mod case;
pub mod check;
pub mod device;
pub mod fused;
pub mod launch;
mod lt;
pub mod nvrtc;
pub mod ops;
pub mod sources;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum CudaError {
    #[error("{0} could not be loaded: put its directory on LD_LIBRARY_PATH (tools/setup-nvrtc.sh installs libnvrtc; libcuda comes with the NVIDIA driver, so its absence usually means no GPU here)")]
    Unavailable(&'static str),
    #[error("NVRTC failed on {file} for {arch}: {call} returned {code}\n{log}")]
    Compile { file: String, arch: String, call: &'static str, code: i32, log: String },
    #[error("CUDA driver: {0}")]
    Driver(String),
    #[error(
        "unsupported architecture '{0}' (expected one of sm_80, sm_86, sm_89, sm_90, sm_90a, sm_100, sm_120)"
    )]
    Arch(String),
    #[error("GPU out of memory: {want} bytes requested, {free} free")]
    OutOfMemory { want: usize, free: usize },
    /// The op, dtype or shape has no CUDA kernel (reported before any launch).
    #[error("no CUDA kernel for {op}: {why}")]
    Unsupported { op: String, why: String },
    #[error("kernel cache at {path}: {source}")]
    Cache {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// True when the NVIDIA driver library (libcuda) can be loaded, i.e. a GPU may be usable.
pub fn driver_present() -> bool {
    // SAFETY: only tries to dlopen candidate library names.
    unsafe { cudarc::driver::sys::is_culib_present() }
}
