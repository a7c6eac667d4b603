use crate::error::{KernelError, Result};
use crate::tensor::{TensorMut, TensorRef};
#[allow(unused_imports)]
use focus_graph::*;

#[allow(unused_variables)]
pub fn index_select(axis: usize, x: &TensorRef, idx: &TensorRef, out: &mut TensorMut) -> Result<()> {
    Err(KernelError::Invalid { op: "index_select", detail: "not implemented".into() })
}

#[allow(unused_variables)]
pub fn take_along_axis(axis: usize, x: &TensorRef, idx: &TensorRef, out: &mut TensorMut) -> Result<()> {
    Err(KernelError::Invalid { op: "take_along_axis", detail: "not implemented".into() })
}
