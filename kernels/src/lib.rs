//! focus-kernels: every op's implementation.
//!
//! `cpu/` holds the CPU kernels (f32 compute, half types converted at the edges, rayon threads,
//! the `gemm` crate for contractions): they are the reference every other backend is checked
//! against and the fallback where no GPU is present. `../cuda/` holds the CUDA C++ sources.

pub mod cpu;
pub mod cuda;
pub mod error;
pub mod tensor;

pub use error::KernelError;
pub use tensor::{TensorMut, TensorRef};
