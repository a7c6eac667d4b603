use crate::error::{KernelError, Result};
use crate::tensor::{TensorMut, TensorRef};
#[allow(unused_imports)]
use focus_graph::*;

#[allow(unused_variables)]
pub fn attention(
    causal: bool,
    scale: f32,
    q: &TensorRef,
    k: &TensorRef,
    v: &TensorRef,
    mask: Option<&TensorRef>,
    out: &mut TensorMut,
) -> Result<()> {
    Err(KernelError::Invalid { op: "attention", detail: "not implemented".into() })
}
