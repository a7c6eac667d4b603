//! CUDA side of the kernels crate: our CUDA C++ sources (`kernels/cuda/*.cu`, one op family per
//! file) and their run-time compilation by NVRTC. Libraries are loaded dynamically, so this
//! builds without a toolkit; without NVRTC every entry point returns [`CudaError::Unavailable`].

pub mod nvrtc;
pub mod sources;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum CudaError {
    #[error("{0} not found: set LD_LIBRARY_PATH to a directory with it (tools/setup-nvrtc.sh installs NVRTC locally)")]
    Unavailable(&'static str),
    #[error("NVRTC failed on {file} for {arch}: {call} returned {code}\n{log}")]
    Compile { file: String, arch: String, call: &'static str, code: i32, log: String },
    #[error("unsupported architecture '{0}' (expected sm_80, sm_86, sm_89, sm_90 or sm_90a)")]
    Arch(String),
    #[error("kernel cache at {path}: {source}")]
    Cache {
        path: String,
        #[source]
        source: std::io::Error,
    },
}
