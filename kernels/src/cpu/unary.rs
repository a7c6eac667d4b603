use crate::error::{KernelError, Result};
use crate::tensor::{TensorMut, TensorRef};
#[allow(unused_imports)]
use focus_graph::*;

#[allow(unused_variables)]
pub fn unary(op: UnaryOp, x: &TensorRef, out: &mut TensorMut) -> Result<()> {
    Err(KernelError::Invalid { op: "unary", detail: "not implemented".into() })
}
