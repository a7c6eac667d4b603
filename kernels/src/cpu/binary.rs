use crate::error::{KernelError, Result};
use crate::tensor::{TensorMut, TensorRef};
#[allow(unused_imports)]
use focus_graph::*;

#[allow(unused_variables)]
pub fn binary(op: BinaryOp, a: &TensorRef, b: &TensorRef, out: &mut TensorMut) -> Result<()> {
    Err(KernelError::Invalid { op: "binary", detail: "not implemented".into() })
}

#[allow(unused_variables)]
pub fn compare(op: CmpOp, a: &TensorRef, b: &TensorRef, out: &mut TensorMut) -> Result<()> {
    Err(KernelError::Invalid { op: "compare", detail: "not implemented".into() })
}

#[allow(unused_variables)]
pub fn where_(cond: &TensorRef, a: &TensorRef, b: &TensorRef, out: &mut TensorMut) -> Result<()> {
    Err(KernelError::Invalid { op: "where_", detail: "not implemented".into() })
}
