//! Channels-last 2-D convolution. Three paths:
//! - depthwise (groups == Cin == Cout): direct loop, vectorised over channels;
//! - 1x1, stride 1, no padding: the input already is the im2col matrix, so plain gemm;
//! - general: im2col over a chunk of output rows, then one gemm per group.

use crate::cpu::common::{f32_in, with_f32_out, Scratch};
use crate::cpu::matmul::{sgemm, Mat};
use crate::error::Result;
use crate::tensor::{TensorMut, TensorRef};
use focus_graph::*;
use rayon::prelude::*;

/// Upper bound on one im2col chunk, in f32 elements (16 MiB).
const COL_BUDGET: usize = 4 << 20;

/// Geometry shared by the paths.
struct Geo {
    n: usize,
    h: usize,
    w: usize,
    cin: usize,
    cout: usize,
    kh: usize,
    kw: usize,
    ho: usize,
    wo: usize,
    g: usize,
}

impl Geo {
    /// Input coordinate for output coordinate `o` and kernel tap `t` on axis `ax`, if inside.
    #[inline]
    fn src(p: &Conv2dParams, ax: usize, o: usize, t: usize, len: usize) -> Option<usize> {
        let i = (o * p.stride[ax] + t * p.dilation[ax]).checked_sub(p.padding[ax])?;
        (i < len).then_some(i)
    }
}

pub fn conv2d(
    x: &TensorRef,
    w: &TensorRef,
    bias: Option<&TensorRef>,
    out: &mut TensorMut,
    p: &Conv2dParams,
) -> Result<()> {
    let geo = Geo {
        n: x.shape[0],
        h: x.shape[1],
        w: x.shape[2],
        cin: x.shape[3],
        cout: w.shape[0],
        kh: w.shape[1],
        kw: w.shape[2],
        ho: out.shape[1],
        wo: out.shape[2],
        g: p.groups,
    };
    let xd = f32_in(x);
    let wd = f32_in(w);
    let bd = bias.map(f32_in);
    with_f32_out(out, |o| {
        if o.is_empty() {
            return Ok(());
        }
        if geo.g == geo.cin && geo.g == geo.cout {
            depthwise(&geo, p, &xd, &wd, bd.as_deref(), o);
            return Ok(());
        }
        // Bias pre-filled; the gemms accumulate onto it.
        match &bd {
            Some(b) => o.chunks_mut(geo.cout).for_each(|r| r.copy_from_slice(b)),
            None => o.fill(0.0),
        }
        let pointwise = geo.kh == 1 && geo.kw == 1 && p.stride == [1, 1] && p.padding == [0, 0];
        if pointwise {
            gemm_groups(&geo, &xd, Mat::rows(0, geo.cin), geo.n * geo.h * geo.w, &wd, o);
        } else {
            general(&geo, p, &xd, &wd, o);
        }
        Ok(())
    })
}

/// `dst[rows, Cout] += lhs_g[rows, Kg] @ w_g^T` for every group g, with Kg = KH*KW*Cin/g and
/// column `c` of group `gi` at `lm.off + gi * Kg + c` in each `lhs` row (row stride `lm.rs`).
fn gemm_groups(geo: &Geo, lhs: &[f32], lm: Mat, rows: usize, wd: &[f32], dst: &mut [f32]) {
    let cg = geo.cin / geo.g;
    let kg = geo.kh * geo.kw * cg;
    let cog = geo.cout / geo.g;
    for gi in 0..geo.g {
        sgemm(
            (rows, cog, kg),
            dst,
            Mat::rows(gi * cog, geo.cout),
            true,
            lhs,
            Mat::rows(lm.off + gi * kg, lm.rs),
            wd,
            // Weight rows [Cout, Kg]: group gi's block read transposed as [Kg, Cout/g].
            Mat::cols(gi * cog * kg, kg),
            1.0,
            true,
        );
    }
}

/// im2col over chunks of output rows of each image, then gemm per group.
fn general(geo: &Geo, p: &Conv2dParams, xd: &[f32], wd: &[f32], o: &mut [f32]) {
    let cg = geo.cin / geo.g;
    // Columns ordered (group, kh, kw, c): each group's block is contiguous and matches the
    // weight layout [KH, KW, Cin/g].
    let kg = geo.kh * geo.kw * cg;
    let ncol = kg * geo.g;
    if ncol == 0 {
        return; // no input channels: the output is just the bias
    }
    let row_elems = geo.wo * ncol;
    let chunk_rows = (COL_BUDGET / row_elems.max(1)).clamp(1, geo.ho);
    // Every element is written by `fill_patch` before the gemm reads it.
    let mut col = Scratch::stale(chunk_rows * row_elems);
    for img in 0..geo.n {
        let x_img = &xd[img * geo.h * geo.w * geo.cin..][..geo.h * geo.w * geo.cin];
        let o_img = &mut o[img * geo.ho * geo.wo * geo.cout..][..geo.ho * geo.wo * geo.cout];
        for r0 in (0..geo.ho).step_by(chunk_rows) {
            let nr = chunk_rows.min(geo.ho - r0);
            let col = &mut col[..nr * row_elems];
            // At least ~16K elements per task, so small inputs stay on the calling thread.
            let pixels = col.par_chunks_mut(ncol).enumerate().with_min_len((1 << 14) / ncol + 1);
            pixels.for_each(|(pix, dst)| {
                let (oy, ox) = (r0 + pix / geo.wo, pix % geo.wo);
                fill_patch(geo, p, x_img, oy, ox, cg, dst);
            });
            let dst = &mut o_img[r0 * geo.wo * geo.cout..][..nr * geo.wo * geo.cout];
            gemm_groups(geo, col, Mat::rows(0, ncol), nr * geo.wo, wd, dst);
        }
    }
}

/// One im2col row: for each group, the (kh, kw, c) patch feeding output pixel (oy, ox).
fn fill_patch(geo: &Geo, p: &Conv2dParams, x: &[f32], oy: usize, ox: usize, cg: usize, dst: &mut [f32]) {
    let kg = geo.kh * geo.kw * cg;
    for ty in 0..geo.kh {
        let iy = Geo::src(p, 0, oy, ty, geo.h);
        for tx in 0..geo.kw {
            let ix = Geo::src(p, 1, ox, tx, geo.w);
            let tap = (ty * geo.kw + tx) * cg;
            match (iy, ix) {
                (Some(iy), Some(ix)) => {
                    let src = &x[(iy * geo.w + ix) * geo.cin..][..geo.cin];
                    for gi in 0..geo.g {
                        dst[gi * kg + tap..][..cg].copy_from_slice(&src[gi * cg..][..cg]);
                    }
                }
                _ => {
                    for gi in 0..geo.g {
                        dst[gi * kg + tap..][..cg].fill(0.0);
                    }
                }
            }
        }
    }
}

/// Depthwise conv: each output row (n, oy) accumulates KH*KW taps of whole channel vectors.
fn depthwise(geo: &Geo, p: &Conv2dParams, xd: &[f32], wd: &[f32], bd: Option<&[f32]>, o: &mut [f32]) {
    let c = geo.cin;
    // Weight [C, KH, KW, 1] -> [KH, KW, C] so a tap is a contiguous channel vector.
    let taps = geo.kh * geo.kw;
    let mut wt = Scratch::zeroed(taps * c);
    for ch in 0..c {
        for t in 0..taps {
            wt[t * c + ch] = wd[ch * taps + t];
        }
    }
    let row_len = geo.wo * c;
    // At least ~16K multiply-adds per task, so small inputs stay on the calling thread.
    let rows = o.par_chunks_mut(row_len).enumerate().with_min_len((1 << 14) / (row_len * taps).max(1) + 1);
    rows.for_each(|(row, dst)| {
        let (img, oy) = (row / geo.ho, row % geo.ho);
        let x_img = &xd[img * geo.h * geo.w * c..][..geo.h * geo.w * c];
        for (ox, acc) in dst.chunks_exact_mut(c).enumerate() {
            match bd {
                Some(b) => acc.copy_from_slice(b),
                None => acc.fill(0.0),
            }
            for ty in 0..geo.kh {
                let Some(iy) = Geo::src(p, 0, oy, ty, geo.h) else {
                    continue;
                };
                for tx in 0..geo.kw {
                    let Some(ix) = Geo::src(p, 1, ox, tx, geo.w) else {
                        continue;
                    };
                    let src = &x_img[(iy * geo.w + ix) * c..][..c];
                    let wv = &wt[(ty * geo.kw + tx) * c..][..c];
                    for ((a, &xv), &wv) in acc.iter_mut().zip(src).zip(wv) {
                        *a += xv * wv;
                    }
                }
            }
        }
    });
}
