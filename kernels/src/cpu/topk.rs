use crate::error::{KernelError, Result};
use crate::tensor::{TensorMut, TensorRef};
#[allow(unused_imports)]
use focus_graph::*;

#[allow(unused_variables)]
pub fn top_k(axis: usize, x: &TensorRef, out: &mut TensorMut) -> Result<()> {
    Err(KernelError::Invalid { op: "top_k", detail: "not implemented".into() })
}
