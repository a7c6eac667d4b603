use crate::error::{KernelError, Result};
use crate::tensor::{TensorMut, TensorRef};
#[allow(unused_imports)]
use focus_graph::*;

#[allow(unused_variables)]
pub fn timestep_embedding(
    flip_sin_to_cos: bool,
    downscale_freq_shift: f32,
    max_period: f32,
    t: &TensorRef,
    out: &mut TensorMut,
) -> Result<()> {
    Err(KernelError::Invalid { op: "timestep_embedding", detail: "not implemented".into() })
}
