use crate::error::{KernelError, Result};
use crate::tensor::{TensorMut, TensorRef};
#[allow(unused_imports)]
use focus_graph::*;

#[allow(unused_variables)]
pub fn layer_norm(
    eps: f32,
    x: &TensorRef,
    w: Option<&TensorRef>,
    b: Option<&TensorRef>,
    out: &mut TensorMut,
) -> Result<()> {
    Err(KernelError::Invalid { op: "layer_norm", detail: "not implemented".into() })
}

#[allow(unused_variables)]
pub fn rms_norm(eps: f32, x: &TensorRef, w: Option<&TensorRef>, out: &mut TensorMut) -> Result<()> {
    Err(KernelError::Invalid { op: "rms_norm", detail: "not implemented".into() })
}

#[allow(unused_variables)]
pub fn group_norm(
    groups: usize,
    eps: f32,
    x: &TensorRef,
    w: Option<&TensorRef>,
    b: Option<&TensorRef>,
    out: &mut TensorMut,
) -> Result<()> {
    Err(KernelError::Invalid { op: "group_norm", detail: "not implemented".into() })
}
