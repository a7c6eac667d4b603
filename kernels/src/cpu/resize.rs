//! NHWC spatial resize with PyTorch `F.interpolate` conventions (CPU kernels of
//! aten/src/ATen/native/UpSample.h and cpu/UpSampleKernel.cpp).
//!
//! Every mode is separable, so each axis gets a list of (source index, weight) taps per
//! output index and the image is filtered along W, then along H (the order PyTorch's
//! antialiased path uses). Index arithmetic follows PyTorch's float (f32) math:
//! - scale = in/out, or (in-1)/(out-1) with align_corners (0 when out == 1);
//! - nearest: src = min(floor(dst * scale), in-1);
//! - bilinear: src = align ? scale*dst : max(scale*(dst+0.5)-0.5, 0); i0 = min(floor(src),
//!   in-1), i1 = i0+1 clamped, lambda = clamp(src - i0, 0, 1);
//! - bicubic: same src without the clamp at 0, 4 taps i0-1..i0+2 clamped to the border,
//!   Keys cubic with a = -0.75;
//! - antialias (bilinear or bicubic, any scale): PIL-style filter. support = s*scale when
//!   scale >= 1 else s (s = 1 bilinear, 2 bicubic), center = scale*(dst+0.5),
//!   taps j in [trunc(center-support+0.5) ∨ 0, trunc(center+support+0.5) ∧ in), weight
//!   filter((j - center + 0.5) / max(scale, 1)), normalised to sum 1. Filters: triangle, or
//!   Keys cubic with a = -0.5 (PyTorch uses -0.5 here for PIL compatibility). With
//!   align_corners only the scale changes (PyTorch's behaviour).

use super::common::{f32_in, with_f32_out, Scratch};
use crate::error::Result;
use crate::tensor::{TensorMut, TensorRef};
use focus_graph::*;
use rayon::prelude::*;

/// Taps of one axis, flat: output `i` reads `tap[i * width..][..count[i]]` as (weight, source
/// index). Pooled, so re-running a plan allocates nothing.
struct Taps {
    width: usize,
    count: Scratch<usize>,
    tap: Scratch<(f32, usize)>,
}

impl Taps {
    fn of(&self, i: usize) -> &[(f32, usize)] {
        &self.tap[i * self.width..][..self.count[i]]
    }
}

fn cubic1(x: f64, a: f64) -> f64 {
    ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
}

fn cubic2(x: f64, a: f64) -> f64 {
    ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
}

fn scale_of(inp: usize, out: usize, align_corners: bool) -> f32 {
    if align_corners {
        if out > 1 {
            (inp - 1) as f32 / (out - 1) as f32
        } else {
            0.0
        }
    } else {
        inp as f32 / out as f32
    }
}

/// PyTorch's legacy `nearest` source index of output `i` (f32 scale, floored, clamped); the
/// CUDA kernels compute the same f32 product.
pub fn nearest_index(inp: usize, out: usize, i: usize) -> usize {
    let scale = inp as f32 / out as f32;
    (((i as f32) * scale).floor() as usize).min(inp.saturating_sub(1))
}

fn taps(mode: ResizeMode, align: bool, aa: bool, inp: usize, out: usize) -> Taps {
    let last = inp as i64 - 1;
    let clampi = |i: i64| i.clamp(0, last) as usize;
    let width = match mode {
        ResizeMode::Nearest => 1,
        _ if aa => aa_width(mode, align, inp, out),
        ResizeMode::Bilinear => 2,
        ResizeMode::Bicubic => 4,
    };
    let mut t = Taps { width, count: Scratch::stale(out), tap: Scratch::stale(out * width) };
    for i in 0..out {
        let slot = &mut t.tap[i * width..(i + 1) * width];
        t.count[i] = match mode {
            ResizeMode::Nearest => {
                slot[0] = (1.0, nearest_index(inp, out, i));
                1
            }
            _ if aa => aa_taps(mode, align, inp, out, i, slot),
            ResizeMode::Bilinear => {
                let scale = scale_of(inp, out, align);
                let src = if align { scale * i as f32 } else { (scale * (i as f32 + 0.5) - 0.5).max(0.0) };
                let i0 = (src.floor() as i64).min(last);
                let l = (src - i0 as f32).clamp(0.0, 1.0);
                let i1 = if i0 < last { i0 + 1 } else { i0 };
                slot[0] = (1.0 - l, clampi(i0));
                slot[1] = (l, clampi(i1));
                2
            }
            ResizeMode::Bicubic => {
                let scale = scale_of(inp, out, align);
                let src = if align { scale * i as f32 } else { scale * (i as f32 + 0.5) - 0.5 };
                let i0 = (src.floor() as i64).min(last);
                let t = (src - i0 as f32).clamp(0.0, 1.0) as f64;
                let a = -0.75;
                let w = [cubic2(t + 1.0, a), cubic1(t, a), cubic1(1.0 - t, a), cubic2(2.0 - t, a)];
                for (j, s) in slot.iter_mut().enumerate() {
                    *s = (w[j] as f32, clampi(i0 - 1 + j as i64));
                }
                4
            }
        };
    }
    t
}

/// The antialiased filter of `mode`: half width and kernel.
fn aa_filter(mode: ResizeMode) -> (f64, fn(f64) -> f64) {
    match mode {
        ResizeMode::Bicubic => (2.0, |x| {
            let x = x.abs();
            if x < 1.0 {
                cubic1(x, -0.5)
            } else if x < 2.0 {
                cubic2(x, -0.5)
            } else {
                0.0
            }
        }),
        _ => (1.0, |x| (1.0 - x.abs()).max(0.0)),
    }
}

/// Support and filter-argument scale of the antialiased filter.
fn aa_support(mode: ResizeMode, align: bool, inp: usize, out: usize) -> (f64, f64, f64) {
    let scale = scale_of(inp, out, align) as f64;
    let half_width = aa_filter(mode).0;
    let (support, invscale) =
        if scale >= 1.0 { (half_width * scale, 1.0 / scale) } else { (half_width, 1.0) };
    (scale, support, invscale)
}

/// Most taps any output index can have: the window `[center - support + 0.5, center + support
/// + 0.5)` truncated at both ends holds at most `ceil(2 * support) + 1` integers.
fn aa_width(mode: ResizeMode, align: bool, inp: usize, out: usize) -> usize {
    let (_, support, _) = aa_support(mode, align, inp, out);
    ((2.0 * support).ceil() as usize + 1).min(inp.max(1))
}

/// Writes output `i`'s taps into `slot`, returns how many.
fn aa_taps(
    mode: ResizeMode,
    align: bool,
    inp: usize,
    out: usize,
    i: usize,
    slot: &mut [(f32, usize)],
) -> usize {
    let filter = aa_filter(mode).1;
    let (scale, support, invscale) = aa_support(mode, align, inp, out);
    let center = scale * (i as f64 + 0.5);
    // `as i64` truncates toward zero, as PyTorch's static_cast does.
    let xmin = ((center - support + 0.5) as i64).max(0);
    let xmax = ((center + support + 0.5) as i64).min(inp as i64);
    debug_assert!((xmax - xmin).max(0) as usize <= slot.len());
    let weight = |j: i64| filter((j as f64 - center + 0.5) * invscale);
    let total: f64 = (xmin..xmax).map(weight).sum();
    let norm = if total != 0.0 { total } else { 1.0 };
    let taps = (xmin..xmax).map(|j| ((weight(j) / norm) as f32, j as usize));
    let mut n = 0;
    for (s, t) in slot.iter_mut().zip(taps) {
        *s = t;
        n += 1;
    }
    n
}

pub fn resize(
    mode: ResizeMode,
    align_corners: bool,
    antialias: bool,
    x: &TensorRef,
    out: &mut TensorMut,
) -> Result<()> {
    let [n, h, w, c] = [x.shape[0], x.shape[1], x.shape[2], x.shape[3]];
    let (ho, wo) = (out.shape[1], out.shape[2]);
    let xs = f32_in(x);
    if out.numel() == 0 {
        return Ok(());
    }
    let tw = taps(mode, align_corners, antialias, w, wo);
    let th = taps(mode, align_corners, antialias, h, ho);
    // Pass 1 along W: tmp [N, H, Wo, C].
    let mut tmp = Scratch::<f32>::zeroed(n * h * wo * c);
    tmp.par_chunks_mut(wo * c).enumerate().for_each(|(row, dst)| {
        let src = &xs[row * w * c..(row + 1) * w * c];
        for (ox, d) in dst.chunks_exact_mut(c).enumerate() {
            for &(wt, ix) in tw.of(ox) {
                for (y, v) in d.iter_mut().zip(&src[ix * c..(ix + 1) * c]) {
                    *y += wt * v;
                }
            }
        }
    });
    // Pass 2 along H: out [N, Ho, Wo, C].
    with_f32_out(out, |o| {
        o.par_chunks_mut(wo * c).enumerate().for_each(|(row, dst)| {
            let (b, oy) = (row / ho, row % ho);
            dst.fill(0.0);
            for &(wt, iy) in th.of(oy) {
                let src = &tmp[(b * h + iy) * wo * c..(b * h + iy + 1) * wo * c];
                for (y, v) in dst.iter_mut().zip(src) {
                    *y += wt * v;
                }
            }
        });
        Ok(())
    })
}
