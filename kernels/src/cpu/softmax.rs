//! Numerically stable softmax (max-subtracted) over any axis, f32 compute.
//! A row that is all `-inf` gives NaN, as in PyTorch.

use crate::cpu::common::{f32_in, with_f32_out, Scratch};
use crate::error::Result;
use crate::tensor::{TensorMut, TensorRef};
use rayon::prelude::*;

pub fn softmax(axis: usize, x: &TensorRef, out: &mut TensorMut) -> Result<()> {
    let len = x.shape[axis];
    let inner: usize = x.shape[axis + 1..].iter().product();
    let block = len * inner;
    let xd = f32_in(x);
    with_f32_out(out, |o| {
        if block == 0 {
            return Ok(());
        }
        o.par_chunks_mut(block).zip(xd.par_chunks(block)).with_min_len((1 << 14) / block + 1).for_each(
            |(dst, src)| {
                if inner == 1 {
                    row(src, dst)
                } else {
                    strided(src, dst, len, inner)
                }
            },
        );
        Ok(())
    })
}

/// Contiguous row.
fn row(src: &[f32], dst: &mut [f32]) {
    let m = src.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f32;
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = (s - m).exp();
        sum += *d;
    }
    let inv = 1.0 / sum;
    dst.iter_mut().for_each(|d| *d *= inv);
}

/// `len` rows of `inner` lanes; softmax runs down each lane, processed a whole row at a time
/// so the inner loops are contiguous.
fn strided(src: &[f32], dst: &mut [f32], len: usize, inner: usize) {
    let mut m = Scratch::filled(inner, f32::NEG_INFINITY);
    for r in src.chunks_exact(inner) {
        m.iter_mut().zip(r).for_each(|(m, &v)| *m = m.max(v));
    }
    let mut sum = Scratch::zeroed(inner);
    for (d, s) in dst.chunks_exact_mut(inner).zip(src.chunks_exact(inner)) {
        for (((d, &s), &m), acc) in d.iter_mut().zip(s).zip(m.iter()).zip(sum.iter_mut()) {
            *d = (s - m).exp();
            *acc += *d;
        }
    }
    sum.iter_mut().for_each(|s| *s = 1.0 / *s);
    debug_assert_eq!(dst.len(), len * inner);
    for d in dst.chunks_exact_mut(inner) {
        d.iter_mut().zip(sum.iter()).for_each(|(d, s)| *d *= s);
    }
}
