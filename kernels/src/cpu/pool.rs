use crate::error::{KernelError, Result};
use crate::tensor::{TensorMut, TensorRef};
#[allow(unused_imports)]
use focus_graph::*;

#[allow(unused_variables)]
pub fn avg_pool2d(
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    count_include_pad: bool,
    x: &TensorRef,
    out: &mut TensorMut,
) -> Result<()> {
    Err(KernelError::Invalid { op: "avg_pool2d", detail: "not implemented".into() })
}
