//! NHWC average pooling, PyTorch `avg_pool2d` semantics (ceil_mode = false): the window
//! starts at `o*stride - pad`; the divisor is the window area clipped to the padded input
//! (= kernel area, since pad <= kernel/2) with `count_include_pad`, else the number of
//! in-bounds taps.

use super::common::{f32_in, with_f32_out, Scratch};
use crate::error::Result;
use crate::tensor::{TensorMut, TensorRef};
use rayon::prelude::*;

pub fn avg_pool2d(
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    count_include_pad: bool,
    x: &TensorRef,
    out: &mut TensorMut,
) -> Result<()> {
    let [_, h, w, c] = [x.shape[0], x.shape[1], x.shape[2], x.shape[3]];
    let (ho, wo) = (out.shape[1], out.shape[2]);
    let xs = f32_in(x);
    if out.numel() == 0 {
        return Ok(());
    }
    // Clipped window [start, end) along one axis plus the padded-window length.
    let window = |o: usize, ax: usize, len: usize| {
        let s = (o * stride[ax]) as i64 - padding[ax] as i64;
        let e = (s + kernel[ax] as i64).min((len + padding[ax]) as i64);
        let padded = (e - s) as usize;
        (s.max(0) as usize, (e.min(len as i64)) as usize, padded)
    };
    with_f32_out(out, |o| {
        o.par_chunks_mut(wo * c).enumerate().for_each(|(row, dst)| {
            let (b, oy) = (row / ho, row % ho);
            let (y0, y1, ph) = window(oy, 0, h);
            let mut acc = Scratch::<f32>::stale(c);
            for (ox, d) in dst.chunks_exact_mut(c).enumerate() {
                let (x0, x1, pw) = window(ox, 1, w);
                acc.fill(0.0);
                for iy in y0..y1 {
                    for ix in x0..x1 {
                        let s = ((b * h + iy) * w + ix) * c;
                        for (a, v) in acc.iter_mut().zip(&xs[s..s + c]) {
                            *a += v;
                        }
                    }
                }
                let div = if count_include_pad {
                    ph * pw
                } else {
                    (y1.saturating_sub(y0)) * (x1.saturating_sub(x0))
                };
                for (y, a) in d.iter_mut().zip(&acc[..]) {
                    *y = a / div as f32;
                }
            }
        });
        Ok(())
    })
}
