//! Bilinear sampling with zero padding: `grid_sample` and multi-scale deformable attention.

use super::common::{f32_in, with_f32_out};
use crate::error::Result;
use crate::tensor::{TensorMut, TensorRef};
use rayon::prelude::*;

/// Add `w *` the bilinear sample of the `[h, w, c]`-strided image `img` at pixel coords
/// (`px`, `py`) to `acc`; taps outside the image contribute zero. `row` is the element
/// stride between rows and `col` between columns.
#[allow(clippy::too_many_arguments)]
fn bilinear_acc(
    img: &[f32],
    hgt: usize,
    wid: usize,
    row: usize,
    col: usize,
    px: f32,
    py: f32,
    w: f32,
    acc: &mut [f32],
) {
    let (fx, fy) = (px.floor(), py.floor());
    // `as i64` saturates for huge/NaN coordinates; the bounds checks below reject them.
    let (x0, y0) = (fx as i64, fy as i64);
    let (lx, ly) = (px - fx, py - fy);
    let taps = [
        (x0, y0, (1.0 - lx) * (1.0 - ly)),
        (x0 + 1, y0, lx * (1.0 - ly)),
        (x0, y0 + 1, (1.0 - lx) * ly),
        (x0 + 1, y0 + 1, lx * ly),
    ];
    for (xi, yi, tw) in taps {
        if xi >= 0 && yi >= 0 && (xi as usize) < wid && (yi as usize) < hgt {
            let s = yi as usize * row + xi as usize * col;
            let (k, n) = (w * tw, acc.len());
            for (a, v) in acc.iter_mut().zip(&img[s..s + n]) {
                *a += k * v;
            }
        }
    }
}

pub fn grid_sample(align_corners: bool, x: &TensorRef, grid: &TensorRef, out: &mut TensorMut) -> Result<()> {
    let [_, h, w, c] = [x.shape[0], x.shape[1], x.shape[2], x.shape[3]];
    let (ho, wo) = (grid.shape[1], grid.shape[2]);
    let xs = f32_in(x);
    let gs = f32_in(grid);
    if out.numel() == 0 {
        return Ok(());
    }
    // PyTorch's unnormalisation of g in [-1, 1] to pixel coordinates.
    let unnorm = |g: f32, size: usize| {
        if align_corners {
            (g + 1.0) / 2.0 * (size as f32 - 1.0)
        } else {
            ((g + 1.0) * size as f32 - 1.0) / 2.0
        }
    };
    with_f32_out(out, |o| {
        o.par_chunks_mut(wo * c).enumerate().for_each(|(r, dst)| {
            let b = r / ho;
            let img = &xs[b * h * w * c..(b + 1) * h * w * c];
            dst.fill(0.0);
            for (ox, d) in dst.chunks_exact_mut(c).enumerate() {
                let g = (r * wo + ox) * 2;
                let (px, py) = (unnorm(gs[g], w), unnorm(gs[g + 1], h));
                bilinear_acc(img, h, w, w * c, c, px, py, 1.0, d);
            }
        });
        Ok(())
    })
}

pub fn ms_deform_attn(
    levels: &[[usize; 2]],
    value: &TensorRef,
    loc: &TensorRef,
    weights: &TensorRef,
    out: &mut TensorMut,
) -> Result<()> {
    let [_, s, hh, dh] = [value.shape[0], value.shape[1], value.shape[2], value.shape[3]];
    let (q, nl, np) = (loc.shape[1], loc.shape[3], loc.shape[4]);
    let vs = f32_in(value);
    let ls = f32_in(loc);
    let ws = f32_in(weights);
    if out.numel() == 0 {
        return Ok(());
    }
    // First flattened position of each level.
    let starts: Vec<usize> = levels
        .iter()
        .scan(0, |acc, l| {
            let st = *acc;
            *acc += l[0] * l[1];
            Some(st)
        })
        .collect();
    with_f32_out(out, |o| {
        // One output row per (n, q): [Hh * Dh].
        o.par_chunks_mut(hh * dh).enumerate().for_each(|(nq, dst)| {
            let b = nq / q;
            dst.fill(0.0);
            for (head, acc) in dst.chunks_exact_mut(dh).enumerate() {
                for (l, &[lh, lw]) in levels.iter().enumerate() {
                    // Level image for this head: rows of lw positions, each position Hh*Dh apart.
                    let base = ((b * s + starts[l]) * hh + head) * dh;
                    let img = &vs[base..];
                    for p in 0..np {
                        let wi = (((nq * hh + head) * nl + l) * np) + p;
                        let (lx, ly) = (ls[wi * 2], ls[wi * 2 + 1]);
                        // grid_sample(align_corners=False) on 2*loc-1: x*w - 0.5.
                        let (px, py) = (lx * lw as f32 - 0.5, ly * lh as f32 - 0.5);
                        bilinear_acc(img, lh, lw, lw * hh * dh, hh * dh, px, py, ws[wi], acc);
                    }
                }
            }
        });
        Ok(())
    })
}
