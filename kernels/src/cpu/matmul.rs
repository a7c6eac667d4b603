use crate::error::{KernelError, Result};
use crate::tensor::{TensorMut, TensorRef};
#[allow(unused_imports)]
use focus_graph::*;

#[allow(unused_variables)]
pub fn matmul(a: &TensorRef, b: &TensorRef, out: &mut TensorMut, trans_a: bool, trans_b: bool) -> Result<()> {
    Err(KernelError::Invalid { op: "matmul", detail: "not implemented".into() })
}

#[allow(unused_variables)]
pub fn linear(x: &TensorRef, w: &TensorRef, bias: Option<&TensorRef>, out: &mut TensorMut) -> Result<()> {
    Err(KernelError::Invalid { op: "linear", detail: "not implemented".into() })
}
