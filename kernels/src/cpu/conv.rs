use crate::error::{KernelError, Result};
use crate::tensor::{TensorMut, TensorRef};
#[allow(unused_imports)]
use focus_graph::*;

#[allow(unused_variables)]
pub fn conv2d(
    x: &TensorRef,
    w: &TensorRef,
    bias: Option<&TensorRef>,
    out: &mut TensorMut,
    p: &Conv2dParams,
) -> Result<()> {
    Err(KernelError::Invalid { op: "conv2d", detail: "not implemented".into() })
}
