//! Errors from reading, converting, validating and writing weights.
//!
//! Every variant carries the file (or store source) it came from and, where there is one, the
//! tensor, so a message alone is enough to find the problem.

use std::fmt;
use std::path::PathBuf;

use focus_graph::DType;
use thiserror::Error;

use super::validate::MismatchReport;

/// Largest header accepted. Real headers are a few MB at most; the cap stops a corrupt length
/// field from making us parse (or allocate for) gigabytes of "JSON".
pub const MAX_HEADER_BYTES: u64 = 100_000_000;

#[derive(Debug, Error)]
pub enum WeightError {
    #[error("{}: {action}: {source}", path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: file is {len} bytes, shorter than the 8-byte safetensors header length", path.display())]
    TooShort { path: PathBuf, len: u64 },
    #[error("{}: header length {header_len} does not fit in the {file_len}-byte file after the 8-byte length prefix", path.display())]
    HeaderBeyondFile { path: PathBuf, header_len: u64, file_len: u64 },
    #[error("{}: header length {header_len} exceeds the {MAX_HEADER_BYTES}-byte limit", path.display())]
    HeaderTooLarge { path: PathBuf, header_len: u64 },
    #[error("{}: header is not valid UTF-8: {reason}", path.display())]
    HeaderNotUtf8 { path: PathBuf, reason: String },
    #[error("{}: header is not valid JSON: {reason}", path.display())]
    HeaderJson { path: PathBuf, reason: String },
    #[error("{}: header JSON is {found}, expected an object", path.display())]
    HeaderNotObject { path: PathBuf, found: &'static str },
    #[error("{}: `__metadata__`: {reason}", path.display())]
    BadMetadata { path: PathBuf, reason: String },
    /// A tensor entry is malformed (missing field, wrong JSON type, negative dimension, ...).
    #[error("{}: tensor '{tensor}': {reason}", path.display())]
    BadEntry { path: PathBuf, tensor: String, reason: String },
    #[error("{}: unsupported dtype {dtype} for tensor '{tensor}'", path.display())]
    UnsupportedDtype { path: PathBuf, tensor: String, dtype: String },
    #[error("{}: tensor '{tensor}': data_offsets begin {begin} > end {end}", path.display())]
    BeginAfterEnd { path: PathBuf, tensor: String, begin: u64, end: u64 },
    #[error("{}: tensor '{tensor}': data_offsets end {end} is beyond the {data_len}-byte data section", path.display())]
    OffsetOutOfRange { path: PathBuf, tensor: String, end: u64, data_len: u64 },
    #[error("{}: tensor '{tensor}': byte size of shape {shape:?} x {dtype} overflows", path.display())]
    SizeOverflow { path: PathBuf, tensor: String, dtype: DType, shape: Vec<u64> },
    #[error("{}: tensor '{tensor}': shape {shape:?} x {dtype} needs {expected} bytes but data_offsets span {actual}", path.display())]
    SizeMismatch {
        path: PathBuf,
        tensor: String,
        dtype: DType,
        shape: Vec<usize>,
        expected: u64,
        actual: u64,
    },
    #[error("{}: tensors '{first}' and '{second}' overlap in the data section", path.display())]
    Overlap { path: PathBuf, first: String, second: String },
    #[error("{}: invalid index: {reason}", path.display())]
    BadIndex { path: PathBuf, reason: String },
    #[error("{}: shard file(s) not found: {}", index.display(), list(shards))]
    MissingShards { index: PathBuf, shards: Vec<PathBuf> },
    #[error("{}: tensor(s) mapped to shard {} are not in it: {}", index.display(), shard.display(), list(tensors))]
    NotInShard { index: PathBuf, shard: PathBuf, tensors: Vec<String> },
    #[error("tensor '{tensor}' is present in both {} and {}", first.display(), second.display())]
    DuplicateTensor { tensor: String, first: PathBuf, second: PathBuf },
    #[error("{}: no .safetensors files in directory", path.display())]
    NoWeightFiles { path: PathBuf },
    #[error("{}: no tensor named '{tensor}'", path.display())]
    NotFound { path: PathBuf, tensor: String },
    #[error("{}: tensor '{tensor}': cannot convert {from} to {to}: {reason}", path.display())]
    Conversion { path: PathBuf, tensor: String, from: DType, to: DType, reason: String },
    /// Weights do not match what the graph expects; the report lists every problem.
    #[error("{0}")]
    Mismatch(MismatchReport),
    /// Writer input is inconsistent (byte length vs shape, duplicate or reserved name).
    #[error("{}: cannot write tensor '{tensor}': {reason}", path.display())]
    BadTensorToWrite { path: PathBuf, tensor: String, reason: String },
}

pub type Result<T> = std::result::Result<T, WeightError>;

/// Comma-separated list for messages that name several items.
fn list<T: fmt::Debug>(items: &[T]) -> String {
    items.iter().map(|i| format!("{i:?}")).collect::<Vec<_>>().join(", ")
}
