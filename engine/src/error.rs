//! Runtime errors.

use focus_graph::{DType, GraphError, Shape};
use focus_kernels::KernelError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum EngineError {
    #[error(transparent)]
    Graph(#[from] GraphError),
    #[error("kernel failed at node #{node} '{name}': {source}")]
    Kernel {
        node: usize,
        name: String,
        #[source]
        source: KernelError,
    },
    #[error("device '{0}' is not available: {1}")]
    DeviceUnavailable(String, String),
    #[error("unknown device '{0}' (expected cpu or cuda[:N])")]
    UnknownDevice(String),
    #[error("missing input '{0}'")]
    MissingInput(String),
    #[error("unknown input '{name}' (graph inputs: {known})")]
    UnknownInput { name: String, known: String },
    #[error("input '{name}': expected {want_dtype}{want_shape}, got {got_dtype}{got_shape}")]
    InputMismatch { name: String, want_dtype: DType, want_shape: Shape, got_dtype: DType, got_shape: Shape },
    #[error("unknown state buffer '{0}'")]
    UnknownState(String),
    #[error("unknown output '{0}'")]
    UnknownOutput(String),
    #[error("output '{0}' is not copied back from the device (see Plan::copy_outputs)")]
    OutputNotCopied(String),
    #[error("weights: {0}")]
    Weights(String),
    #[error("tensor data has {got} bytes, {dtype}{shape} needs {want}")]
    DataSize { dtype: DType, shape: Shape, got: usize, want: usize },
    #[error("CUDA: {0}")]
    Cuda(#[from] focus_kernels::cuda::CudaError),
    #[error("{count} node(s) have no CUDA kernel for their dtype/shape (run them on cpu):\n  {nodes}")]
    NoCudaKernel { count: usize, nodes: String },
    #[error("{0} needs matching devices (cpu with cpu, the same GPU for both plans)")]
    DeviceMismatch(&'static str),
    #[error("i/o error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, EngineError>;
