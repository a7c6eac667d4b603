use crate::error::{KernelError, Result};
use crate::tensor::{TensorMut, TensorRef};
#[allow(unused_imports)]
use focus_graph::*;

#[allow(unused_variables)]
pub fn reduce(op: ReduceOp, axes: &[usize], x: &TensorRef, out: &mut TensorMut) -> Result<()> {
    Err(KernelError::Invalid { op: "reduce", detail: "not implemented".into() })
}

#[allow(unused_variables)]
pub fn arg_reduce(op: ArgOp, axis: usize, x: &TensorRef, out: &mut TensorMut) -> Result<()> {
    Err(KernelError::Invalid { op: "arg_reduce", detail: "not implemented".into() })
}
