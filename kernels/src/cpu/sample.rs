use crate::error::{KernelError, Result};
use crate::tensor::{TensorMut, TensorRef};
#[allow(unused_imports)]
use focus_graph::*;

#[allow(unused_variables)]
pub fn grid_sample(align_corners: bool, x: &TensorRef, grid: &TensorRef, out: &mut TensorMut) -> Result<()> {
    Err(KernelError::Invalid { op: "grid_sample", detail: "not implemented".into() })
}

#[allow(unused_variables)]
pub fn ms_deform_attn(
    levels: &[[usize; 2]],
    value: &TensorRef,
    loc: &TensorRef,
    weights: &TensorRef,
    out: &mut TensorMut,
) -> Result<()> {
    Err(KernelError::Invalid { op: "ms_deform_attn", detail: "not implemented".into() })
}
