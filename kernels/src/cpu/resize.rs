use crate::error::{KernelError, Result};
use crate::tensor::{TensorMut, TensorRef};
#[allow(unused_imports)]
use focus_graph::*;

#[allow(unused_variables)]
pub fn resize(
    mode: ResizeMode,
    align_corners: bool,
    antialias: bool,
    x: &TensorRef,
    out: &mut TensorMut,
) -> Result<()> {
    Err(KernelError::Invalid { op: "resize", detail: "not implemented".into() })
}
