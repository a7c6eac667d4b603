//! Graph construction errors.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum GraphError {
    /// An op was rejected when added: names the op, the node and the shapes involved.
    #[error("invalid {op} at node #{node} '{name}': {detail}")]
    InvalidOp { op: String, node: usize, name: String, detail: String },
    #[error("unknown node id {0}")]
    UnknownNode(usize),
    #[error("duplicate {kind} name '{name}'")]
    DuplicateName { kind: &'static str, name: String },
    #[error("graph has no outputs")]
    NoOutputs,
}

pub type Result<T> = std::result::Result<T, GraphError>;
