//! MatMul and Linear on top of the `gemm` crate (f32; half dtypes converted at the edges).
//! Transposes are expressed as strides, never as copies.

use crate::cpu::common::{f32_in, with_f32_out, Scratch};
use crate::error::Result;
use crate::tensor::{TensorMut, TensorRef};
use focus_graph::shape::broadcast_strides;
use focus_graph::{DType, UnaryOp};
use gemm::Parallelism;
use rayon::prelude::*;

/// A strided matrix inside a slice: element (i, j) lives at `off + i * rs + j * cs`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Mat {
    pub off: usize,
    pub rs: usize,
    pub cs: usize,
}

impl Mat {
    /// Row-major matrix with row stride `rs` starting at `off`.
    pub fn rows(off: usize, rs: usize) -> Mat {
        Mat { off, rs, cs: 1 }
    }
    /// Column-major matrix (i.e. the transpose of a row-major one) with column stride `cs`.
    pub fn cols(off: usize, cs: usize) -> Mat {
        Mat { off, rs: 1, cs }
    }
    /// Whether every element of an `r x c` view lies inside a slice of length `len`.
    fn fits(&self, r: usize, c: usize, len: usize) -> bool {
        r == 0 || c == 0 || self.off + (r - 1) * self.rs + (c - 1) * self.cs < len
    }
}

/// `dst[m x n] = (accumulate ? dst : 0) + scale * a[m x k] @ b[k x n]` on strided views.
/// `par` lets gemm use the rayon pool (pass false when the caller already runs in parallel).
#[allow(clippy::too_many_arguments)]
pub(crate) fn sgemm(
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    dm: Mat,
    accumulate: bool,
    a: &[f32],
    am: Mat,
    b: &[f32],
    bm: Mat,
    scale: f32,
    par: bool,
) {
    // These are internal invariants (shapes come validated from inference); checking them
    // keeps the raw-pointer call below sound.
    assert!(
        dm.fits(m, n, dst.len()) && am.fits(m, k, a.len()) && bm.fits(k, n, b.len()),
        "sgemm view out of bounds"
    );
    if m == 0 || n == 0 {
        return;
    }
    if m * n * k <= TINY_GEMM {
        return tiny_gemm((m, n, k), dst, dm, accumulate, a, am, b, bm, scale);
    }
    let parallelism = if par { Parallelism::Rayon(rayon::current_num_threads()) } else { Parallelism::None };
    // SAFETY: all three views were bounds-checked above; `dst` is a unique borrow, so it cannot
    // alias `a` or `b`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr().add(dm.off),
            dm.cs as isize,
            dm.rs as isize,
            accumulate,
            a.as_ptr().add(am.off),
            am.cs as isize,
            am.rs as isize,
            b.as_ptr().add(bm.off),
            bm.cs as isize,
            bm.rs as isize,
            1.0,
            scale,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// Up to this many multiply-adds, `sgemm` uses a plain loop: cheaper than gemm's dispatch,
/// and gemm's general path allocates bookkeeping and packing buffers on every call.
const TINY_GEMM: usize = 1 << 12;

/// `sgemm` for tiny products: row-by-row axpy on the strided views (already bounds-checked).
#[allow(clippy::too_many_arguments)]
fn tiny_gemm(
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    dm: Mat,
    accumulate: bool,
    a: &[f32],
    am: Mat,
    b: &[f32],
    bm: Mat,
    scale: f32,
) {
    for i in 0..m {
        let d = |j: usize| dm.off + i * dm.rs + j * dm.cs;
        if !accumulate {
            (0..n).for_each(|j| dst[d(j)] = 0.0);
        }
        for p in 0..k {
            let av = scale * a[am.off + i * am.rs + p * am.cs];
            (0..n).for_each(|j| dst[d(j)] += av * b[bm.off + p * bm.rs + j * bm.cs]);
        }
    }
}

/// Below this many multiply-adds per matrix, batches run in parallel instead of inside gemm.
const SMALL_GEMM: usize = 1 << 18;

pub fn matmul(a: &TensorRef, b: &TensorRef, out: &mut TensorMut, trans_a: bool, trans_b: bool) -> Result<()> {
    let (ra, rb, ro) = (a.shape.len(), b.shape.len(), out.shape.len());
    let (m, n) = (out.shape[ro - 2], out.shape[ro - 1]);
    let k = if trans_a { a.shape[ra - 2] } else { a.shape[ra - 1] };
    // Views of one batch matrix (offset added per batch below).
    let av = if trans_a { Mat::cols(0, m) } else { Mat::rows(0, k) };
    let bv = if trans_b { Mat::cols(0, k) } else { Mat::rows(0, n) };

    let batch = &out.shape[..ro - 2];
    let nb: usize = batch.iter().product();
    let sa = broadcast_strides(&a.shape[..ra - 2], batch);
    let sb = broadcast_strides(&b.shape[..rb - 2], batch);
    let nb_a: usize = a.shape[..ra - 2].iter().product();
    let nb_b: usize = b.shape[..rb - 2].iter().product();

    let av_data = f32_in(a);
    let bv_data = f32_in(b);
    let (ad, bd) = (&av_data[..], &bv_data[..]);

    with_f32_out(out, |o| {
        // x[B.., M, K] @ w[K, N] with a shared right operand: one tall gemm.
        if nb_b == 1 && nb_a == nb && !trans_a {
            sgemm((nb * m, n, k), o, Mat::rows(0, n), false, ad, av, bd, bv, 1.0, true);
            return Ok(());
        }
        // Offsets (in matrices) of batch `i` in a and b.
        let offsets = |i: usize| {
            let (mut rem, mut oa, mut ob) = (i, 0, 0);
            for d in (0..batch.len()).rev() {
                let idx = rem % batch[d];
                rem /= batch[d];
                oa += idx * sa[d];
                ob += idx * sb[d];
            }
            (oa * m * k, ob * k * n)
        };
        let one = |i: usize, dst: &mut [f32], par: bool| {
            let (oa, ob) = offsets(i);
            let a_m = Mat { off: oa, ..av };
            let b_m = Mat { off: ob, ..bv };
            sgemm((m, n, k), dst, Mat::rows(0, n), false, ad, a_m, bd, b_m, 1.0, par);
        };
        let mn = m * n;
        if mn == 0 {
            return Ok(());
        }
        if nb > 1 && m * n * k < SMALL_GEMM {
            o.par_chunks_mut(mn).enumerate().for_each(|(i, dst)| one(i, dst, false));
        } else {
            o.chunks_mut(mn).enumerate().for_each(|(i, dst)| one(i, dst, true));
        }
        Ok(())
    })
}

/// `Op::GatedLinear`: both projections in f32, then `act(g) · u`, rounded once.
pub fn gated_linear(
    act: UnaryOp,
    x: &TensorRef,
    (wg, wu): (&TensorRef, &TensorRef),
    biases: Option<(&TensorRef, &TensorRef)>,
    out: &mut TensorMut,
) -> Result<()> {
    let shape = out.shape;
    let n = out.numel();
    // Pooled scratch: re-running a plan allocates nothing.
    let (mut g, mut a, mut u) =
        (Scratch::<f32>::stale(n), Scratch::<f32>::stale(n), Scratch::<f32>::stale(n));
    for (w, b, dst) in [(wg, biases.map(|b| b.0), &mut g), (wu, biases.map(|b| b.1), &mut u)] {
        linear(x, w, b, &mut TensorMut::new(DType::F32, shape, bytemuck::cast_slice_mut(&mut dst[..])))?;
    }
    crate::cpu::unary::unary(
        act,
        &TensorRef::new(DType::F32, shape, bytemuck::cast_slice(&g[..])),
        &mut TensorMut::new(DType::F32, shape, bytemuck::cast_slice_mut(&mut a[..])),
    )?;
    with_f32_out(out, |o| {
        o.par_iter_mut().zip(&a[..]).zip(&u[..]).for_each(|((o, &a), &u)| *o = a * u);
        Ok(())
    })
}

/// `Op::MultiLinear`: each projection into its own block of `out`.
pub fn multi_linear(
    x: &TensorRef,
    weights: &[TensorRef],
    biases: &[TensorRef],
    out: &mut TensorMut,
) -> Result<()> {
    let k = x.shape.last().copied().unwrap_or(1);
    let rows = x.data.len() / x.dtype.size_in_bytes() / k.max(1);
    let es = out.dtype.size_in_bytes();
    let mut at = 0;
    for (i, w) in weights.iter().enumerate() {
        let shape = [rows, w.shape[0]];
        let bytes = rows * w.shape[0] * es;
        let block = &mut out.data[at..at + bytes];
        linear(x, w, biases.get(i), &mut TensorMut::new(out.dtype, &shape, block))?;
        at += bytes;
    }
    Ok(())
}

/// Rows of `x` up to which a half-precision weight is read in place (a decode step's GEMV,
/// widened in registers: half the bytes of f32) instead of converted whole on every call.
const HALF_GEMV_ROWS: usize = 4;
/// Weight elements widened at a time by the half GEMV (a stack block).
const HALF_BLOCK: usize = 256;

/// `w`'s little-endian half-precision bytes widened to f32 into `dst`.
fn widen(dtype: DType, w: &[u8], dst: &mut [f32]) {
    let halves = w.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]]));
    match dtype {
        DType::BF16 => dst.iter_mut().zip(halves).for_each(|(d, h)| *d = f32::from_bits((h as u32) << 16)),
        _ => dst.iter_mut().zip(halves).for_each(|(d, h)| *d = half::f16::from_bits(h).to_f32()),
    }
}

/// Dot product in eight independent f32 lanes (so it vectorises; f32 adds do not reassociate).
fn dot8(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(p, q)| p * q).sum();
    for (pa, pb) in ca.zip(cb) {
        for i in 0..8 {
            lanes[i] += pa[i] * pb[i];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// `out [rows, n] = x · wᵀ (+ bias)` for a few rows and an f16/bf16 `w [n, k]`: every output
/// column reads its weight row once, in blocks widened on the stack, against every row of x.
fn half_gemv(x: &[f32], w: &TensorRef, bias: Option<&[f32]>, rows: usize, o: &mut [f32]) {
    let (n, k) = (w.shape[0], w.shape[1]);
    // Column-major scratch [n, rows] so columns are written in parallel, then transposed.
    let mut t = Scratch::<f32>::stale(n * rows);
    t.par_chunks_mut(rows.max(1)).enumerate().for_each(|(j, acc)| {
        acc.fill(bias.map_or(0.0, |b| b[j]));
        let row = &w.data[j * k * 2..(j + 1) * k * 2];
        let mut block = [0f32; HALF_BLOCK];
        for (c, wb) in row.chunks(HALF_BLOCK * 2).enumerate() {
            let wf = &mut block[..wb.len() / 2];
            widen(w.dtype, wb, wf);
            for (r, a) in acc.iter_mut().enumerate() {
                *a += dot8(&x[r * k + c * HALF_BLOCK..][..wf.len()], wf);
            }
        }
    });
    for j in 0..n {
        for r in 0..rows {
            o[r * n + j] = t[j * rows + r];
        }
    }
}

pub fn linear(x: &TensorRef, w: &TensorRef, bias: Option<&TensorRef>, out: &mut TensorMut) -> Result<()> {
    let (n, k) = (w.shape[0], w.shape[1]);
    let rows = out.numel().checked_div(n).unwrap_or(0);
    if matches!(w.dtype, DType::BF16 | DType::F16) && rows <= HALF_GEMV_ROWS {
        let xd = f32_in(x);
        let bd = bias.map(f32_in);
        return with_f32_out(out, |o| {
            half_gemv(&xd, w, bd.as_deref(), rows, o);
            Ok(())
        });
    }
    let xd = f32_in(x);
    let wd = f32_in(w);
    let bd = bias.map(f32_in);
    with_f32_out(out, |o| {
        // Bias is pre-filled so the gemm accumulates onto it.
        if let Some(bd) = &bd {
            for row in o.chunks_mut(n.max(1)) {
                row.copy_from_slice(&bd[..row.len()]);
            }
        }
        // out = x @ w^T: w [N, K] read as a column-major [K, N].
        sgemm(
            (rows, n, k),
            o,
            Mat::rows(0, n),
            bd.is_some(),
            &xd,
            Mat::rows(0, k),
            &wd,
            Mat::cols(0, k),
            1.0,
            true,
        );
        Ok(())
    })
}
