//! diffusers `get_timestep_embedding`, reproducing its f32 arithmetic: the exponent
//! `-ln(max_period) * i / (half - shift)`, its exp and the product with `t` are all f32
//! (the rounding of `t * freq` matters for t ~ 1000); sin/cos of that f32 argument.

use super::common::{f32_in, with_f32_out};
use crate::error::Result;
use crate::tensor::{TensorMut, TensorRef};

pub fn timestep_embedding(
    flip_sin_to_cos: bool,
    downscale_freq_shift: f32,
    max_period: f32,
    t: &TensorRef,
    out: &mut TensorMut,
) -> Result<()> {
    let ts = f32_in(t);
    let dim = out.shape[1];
    let half = dim / 2;
    let neg_log = -(max_period as f64).ln() as f32;
    let freq = |i: usize| {
        let e = neg_log * i as f32 / (half as f32 - downscale_freq_shift);
        (e as f64).exp() as f32
    };
    with_f32_out(out, |o| {
        if dim == 0 {
            return Ok(());
        }
        for (row, &tv) in o.chunks_exact_mut(dim).zip(ts.iter()) {
            for i in 0..half {
                let arg = (tv * freq(i)) as f64;
                let (s, c) = (arg.sin() as f32, arg.cos() as f32);
                let (first, second) = if flip_sin_to_cos { (c, s) } else { (s, c) };
                row[i] = first;
                row[half + i] = second;
            }
            if dim % 2 == 1 {
                row[dim - 1] = 0.0;
            }
        }
        Ok(())
    })
}
