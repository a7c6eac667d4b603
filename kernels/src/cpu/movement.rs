use crate::error::{KernelError, Result};
use crate::tensor::{TensorMut, TensorRef};
#[allow(unused_imports)]
use focus_graph::*;

#[allow(unused_variables)]
pub fn concat(axis: usize, ins: &[TensorRef], out: &mut TensorMut) -> Result<()> {
    Err(KernelError::Invalid { op: "concat", detail: "not implemented".into() })
}

#[allow(unused_variables)]
pub fn slice(axis: usize, start: usize, step: usize, x: &TensorRef, out: &mut TensorMut) -> Result<()> {
    Err(KernelError::Invalid { op: "slice", detail: "not implemented".into() })
}

#[allow(unused_variables)]
pub fn copy(x: &TensorRef, out: &mut TensorMut) -> Result<()> {
    Err(KernelError::Invalid { op: "copy", detail: "not implemented".into() })
}

#[allow(unused_variables)]
pub fn permute(perm: &[usize], x: &TensorRef, out: &mut TensorMut) -> Result<()> {
    Err(KernelError::Invalid { op: "permute", detail: "not implemented".into() })
}

#[allow(unused_variables)]
pub fn pad(pads: &[(usize, usize)], value: f32, x: &TensorRef, out: &mut TensorMut) -> Result<()> {
    Err(KernelError::Invalid { op: "pad", detail: "not implemented".into() })
}

#[allow(unused_variables)]
pub fn pixel_shuffle(r: usize, x: &TensorRef, out: &mut TensorMut) -> Result<()> {
    Err(KernelError::Invalid { op: "pixel_shuffle", detail: "not implemented".into() })
}

#[allow(unused_variables)]
pub fn pixel_unshuffle(r: usize, x: &TensorRef, out: &mut TensorMut) -> Result<()> {
    Err(KernelError::Invalid { op: "pixel_unshuffle", detail: "not implemented".into() })
}
