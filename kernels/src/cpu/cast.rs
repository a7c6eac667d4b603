use crate::error::{KernelError, Result};
use crate::tensor::{TensorMut, TensorRef};
#[allow(unused_imports)]
use focus_graph::*;

#[allow(unused_variables)]
pub fn cast(x: &TensorRef, out: &mut TensorMut) -> Result<()> {
    Err(KernelError::Invalid { op: "cast", detail: "not implemented".into() })
}
