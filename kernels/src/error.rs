use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum KernelError {
    #[error("{op}: dtype {dtype} is not supported on this backend")]
    Unsupported { op: &'static str, dtype: focus_graph::DType },
    #[error("{op}: index {index} out of range for axis of length {len}")]
    IndexOutOfRange { op: &'static str, index: i64, len: usize },
    #[error("{op}: {detail}")]
    Invalid { op: &'static str, detail: String },
}

pub type Result<T> = std::result::Result<T, KernelError>;
