//! Scaled dot-product attention, flash style: each task owns one (batch, query head, query
//! block), walks the key blocks with an online softmax in f32 and never holds more than a
//! `BQ x BK` score tile. Block products go through `gemm` on strided views of the
//! `[B, T, H, D]` tensors, so nothing is transposed or gathered; each task writes its rows
//! straight into the output and its buffers come from the scratch pool. Packed variable-length
//! sequences restrict each row to its own sequence's keys and skip the key blocks outside it.

use crate::cpu::common::{f32_in, with_f32_out, F32In, Scratch};
use crate::cpu::matmul::{sgemm, Mat};
use crate::error::Result;
use crate::tensor::{TensorMut, TensorRef};
use focus_graph::shape::broadcast_strides;
use focus_graph::DType;
use rayon::prelude::*;

/// Query rows per task.
const BQ: usize = 64;
/// Keys per score tile.
const BK: usize = 128;

/// Mask broadcast to `[B, Hq, Tq, Tk]` (strides are 0 on broadcast dims).
enum Mask<'a> {
    None,
    /// Nonzero = attend.
    Bool(&'a [u8], [usize; 4]),
    /// Added to the scaled scores.
    Add(F32In<'a>, [usize; 4]),
}

struct Dims {
    /// Cumulative sequence offsets `[0, l0, l0 + l1, ..., T]` of packed sequences, if any.
    cu: Option<Scratch<usize>>,
    tq: usize,
    tk: usize,
    hq: usize,
    hkv: usize,
    d: usize,
    dv: usize,
}

/// `seqlens`: packed variable-length sequences (`Op::VarlenAttention`), else `Op::Attention`.
#[allow(clippy::too_many_arguments)]
pub fn attention(
    causal: bool,
    scale: f32,
    seqlens: Option<&[usize]>,
    q: &TensorRef,
    k: &TensorRef,
    v: &TensorRef,
    mask: Option<&TensorRef>,
    out: &mut TensorMut,
) -> Result<()> {
    let (b, tq, hq, d) = (q.shape[0], q.shape[1], q.shape[2], q.shape[3]);
    let (tk, hkv, dv) = (k.shape[1], k.shape[2], v.shape[3]);
    let cu = seqlens.map(|l| {
        let mut cu = Scratch::<usize>::stale(l.len() + 1);
        cu[0] = 0;
        for (i, &x) in l.iter().enumerate() {
            cu[i + 1] = cu[i] + x;
        }
        cu
    });
    let dims = Dims { cu, tq, tk, hq, hkv, d, dv };
    let mask = match mask {
        None => Mask::None,
        Some(m) => {
            let st = broadcast_strides(m.shape, &[b, hq, tq, tk]);
            let st = [st[0], st[1], st[2], st[3]];
            match m.dtype {
                DType::Bool | DType::U8 => Mask::Bool(m.data, st),
                _ => Mask::Add(f32_in(m), st),
            }
        }
    };
    let (qd, kd, vd) = (f32_in(q), f32_in(k), f32_in(v));
    with_f32_out(out, |o| {
        if o.is_empty() {
            return Ok(());
        }
        let nqb = tq.div_ceil(BQ);
        let rows_out = OutRows(o.as_mut_ptr(), o.len());
        // A task is about rows * keys * (D + Dv) multiply-adds; tiny problems run as one task
        // on the calling thread.
        let work = BQ.min(tq) * tk * (d + dv);
        let tasks = (0..b * hq * nqb).into_par_iter().with_min_len((1 << 16) / work.max(1) + 1);
        tasks.for_each(|task| {
            let (bh, qb) = (task / nqb, task % nqb);
            let (bi, h) = (bh / hq, bh % hq);
            let i0 = qb * BQ;
            let rows = BQ.min(tq - i0);
            let mut acc = Scratch::zeroed(rows * dv);
            block(&dims, causal, scale, &qd, &kd, &vd, &mask, bi, h, i0, &mut acc);
            for (r, src) in acc.chunks_exact(dv).enumerate() {
                // SAFETY: row (bi, i0 + r, h) of `[B, Tq, Hq, Dv]` is in bounds and belongs to
                // this task alone: tasks are distinct (bi, h, query block) triples.
                unsafe { rows_out.write(((bi * tq + i0 + r) * hq + h) * dv, src) };
            }
        });
        Ok(())
    })
}

/// The output buffer, shared by the tasks; each writes only its own (strided) rows, which
/// are disjoint, so no task sees another's writes.
#[derive(Clone, Copy)]
struct OutRows(*mut f32, usize);

// SAFETY: see `OutRows`: concurrent writes go to disjoint rows.
unsafe impl Send for OutRows {}
unsafe impl Sync for OutRows {}

impl OutRows {
    /// # Safety
    /// No other thread may access `at..at + src.len()` during the call.
    unsafe fn write(self, at: usize, src: &[f32]) {
        assert!(at + src.len() <= self.1, "attention row out of bounds");
        std::ptr::copy_nonoverlapping(src.as_ptr(), self.0.add(at), src.len());
    }
}

/// Attention output `acc [rows, Dv]` (zeroed on entry) for query rows `i0..i0+rows` of head
/// `h` in batch `bi`.
#[allow(clippy::too_many_arguments)]
fn block(
    dm: &Dims,
    causal: bool,
    scale: f32,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mask: &Mask,
    bi: usize,
    h: usize,
    i0: usize,
    acc: &mut [f32],
) {
    let (tq, tk, d, dv) = (dm.tq, dm.tk, dm.d, dm.dv);
    let rows = acc.len() / dv;
    let hk = h / (dm.hq / dm.hkv);
    let mut m = Scratch::filled(rows, f32::NEG_INFINITY);
    let mut l: Scratch = Scratch::zeroed(rows);
    let mut s = Scratch::zeroed(rows * BK);
    // Causal: query i sees keys j <= i + tk - tq (bottom-right aligned).
    let shift = tk as isize - tq as isize;
    let key_end =
        if causal { (i0 as isize + rows as isize + shift).clamp(0, tk as isize) as usize } else { tk };
    // Packed sequences: row i sees keys seq(i).0..seq(i).1, so the block needs only the keys
    // from its first row's sequence start to its last row's sequence end.
    let seq = |i: usize| match &dm.cu {
        Some(cu) => {
            let s = cu.partition_point(|&c| c <= i) - 1;
            (cu[s], cu[s + 1])
        }
        None => (0, tk),
    };
    let key_begin = seq(i0).0;
    let key_end = key_end.min(seq(i0 + rows - 1).1);
    // Query rows of this head: row stride Hq*D in q [B, Tq, Hq, D].
    let q_m = Mat::rows(((bi * tq + i0) * dm.hq + h) * d, dm.hq * d);
    for j0 in (key_begin..key_end).step_by(BK) {
        let cols = BK.min(key_end - j0);
        // S = scale * Q K^T; K rows read transposed (column stride Hkv*D).
        let k_m = Mat::cols(((bi * tk + j0) * dm.hkv + hk) * d, dm.hkv * d);
        sgemm((rows, cols, d), &mut s, Mat::rows(0, cols), false, q, q_m, k, k_m, scale, false);
        for r in 0..rows {
            let i = i0 + r;
            let sr = &mut s[r * cols..][..cols];
            apply_mask(mask, bi, h, i, j0, sr);
            if dm.cu.is_some() {
                let (lo, hi) = seq(i);
                let (lo, hi) = (lo.clamp(j0, j0 + cols) - j0, hi.clamp(j0, j0 + cols) - j0);
                sr[..lo].fill(f32::NEG_INFINITY);
                sr[hi..].fill(f32::NEG_INFINITY);
            }
            if causal {
                let last = i as isize + shift - j0 as isize; // last visible column
                let from = (last + 1).clamp(0, cols as isize) as usize;
                sr[from..].fill(f32::NEG_INFINITY);
            }
            // Online softmax update of row r.
            let bm = sr.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let m_new = m[r].max(bm);
            if m_new == f32::NEG_INFINITY {
                // Nothing visible yet: the row's tile contributes nothing.
                sr.fill(0.0);
                continue;
            }
            let alpha = (m[r] - m_new).exp();
            sr.iter_mut().for_each(|x| *x = exp_nonpos(*x - m_new));
            let sum: f32 = sr.iter().sum();
            l[r] = l[r] * alpha + sum;
            m[r] = m_new;
            if alpha != 1.0 {
                acc[r * dv..][..dv].iter_mut().for_each(|a| *a *= alpha);
            }
        }
        // acc += P V; V rows [Tk, Hkv, Dv] have row stride Hkv*Dv.
        let v_m = Mat::rows(((bi * tk + j0) * dm.hkv + hk) * dv, dm.hkv * dv);
        sgemm((rows, dv, cols), acc, Mat::rows(0, dv), true, &s, Mat::rows(0, cols), v, v_m, 1.0, false);
    }
    for r in 0..rows {
        // Fully masked rows (l == 0) stay zero instead of 0/0.
        let inv = if l[r] > 0.0 { 1.0 / l[r] } else { 0.0 };
        acc[r * dv..][..dv].iter_mut().for_each(|a| *a *= inv);
    }
}

/// Adds the float mask to, or applies the bool mask on, one row of scores (keys j0..).
fn apply_mask(mask: &Mask, bi: usize, h: usize, i: usize, j0: usize, sr: &mut [f32]) {
    match mask {
        Mask::None => {}
        Mask::Bool(mb, st) => {
            let base = bi * st[0] + h * st[1] + i * st[2] + j0 * st[3];
            for (j, x) in sr.iter_mut().enumerate() {
                if mb[base + j * st[3]] == 0 {
                    *x = f32::NEG_INFINITY;
                }
            }
        }
        Mask::Add(mf, st) => {
            let base = bi * st[0] + h * st[1] + i * st[2] + j0 * st[3];
            for (j, x) in sr.iter_mut().enumerate() {
                *x += mf[base + j * st[3]];
            }
        }
    }
}

/// `exp(x)` for `x <= 0` (scores minus their running max), written so the compiler vectorises
/// it: `2^n * p(r)` with `r = x - n ln2` in [-ln2/2, ln2/2] and a degree-7 Taylor polynomial
/// (relative error ~1e-8 before rounding). Below -87 (including -inf) it flushes to 0; NaN stays NaN.
#[inline]
fn exp_nonpos(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let xc = x.max(-87.0);
    let n = (xc * std::f32::consts::LOG2_E + MAGIC) - MAGIC;
    let r = (xc - n * LN2_HI) - n * LN2_LO;
    let mut p = 1.0 / 5040.0;
    for c in [1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
        p = p * r + c;
    }
    let scale = f32::from_bits(((n as i32 + 127) << 23) as u32);
    if x >= -87.0 {
        p * scale
    } else if x.is_nan() {
        x
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::exp_nonpos;

    #[test]
    fn exp_nonpos_accuracy_and_edges() {
        for i in 0..=100_000 {
            let x = -(i as f32) * 1e-3; // 0 .. -100
            let want = (x as f64).exp();
            let got = exp_nonpos(x) as f64;
            if x >= -87.0 {
                assert!((got - want).abs() <= 3e-7 * want, "exp({x}) = {got}, want {want}");
            } else {
                assert!(got == 0.0 || (got - want).abs() <= 1e-37);
            }
        }
        assert_eq!(exp_nonpos(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_nonpos(0.0), 1.0);
        assert!(exp_nonpos(f32::NAN).is_nan());
    }
}
