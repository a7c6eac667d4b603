//! Broadcasting binary ops, comparisons and `where`.
//!
//! Float dtypes compute in f32 (halves converted at the edges, like PyTorch's opmath);
//! integer dtypes compute exactly in i64 (wrapping) and are stored back to their own width.

use super::common::{broadcast_strides, f32_in, i64_in, i64_store, with_f32_out, Dims};
use crate::error::Result;
use crate::tensor::{TensorMut, TensorRef};
use focus_graph::*;
use rayon::prelude::*;

/// Elements per parallel task.
const CHUNK: usize = 1 << 14;

/// Output of a broadcast op seen as rows of its (merged) last dim, with each input's
/// element strides. Adjacent dims are merged when every input walks them contiguously, so
/// same-shape operands become a single long row.
pub(crate) struct Bcast {
    shape: Dims,
    strides: smallvec::SmallVec<[Dims; 3]>,
}

impl Bcast {
    pub(crate) fn new(out: &[usize], ins: &[&[usize]]) -> Self {
        let mut shape: Dims = out.iter().copied().collect();
        let mut strides: smallvec::SmallVec<[Dims; 3]> =
            ins.iter().map(|s| broadcast_strides(s, out)).collect();
        // Drop size-1 dims (their stride never matters), keep at least one dim.
        let keep: Dims = (0..shape.len()).filter(|&i| shape[i] != 1).collect();
        shape = keep.iter().map(|&i| shape[i]).collect();
        for s in &mut strides {
            *s = keep.iter().map(|&i| s[i]).collect();
        }
        // Merge dim i into i+1 when every input is contiguous across the pair.
        let mut i = shape.len().saturating_sub(1);
        while i > 0 {
            let mergeable = strides.iter().all(|s| s[i - 1] == s[i] * shape[i]);
            if mergeable {
                shape[i - 1] *= shape[i];
                shape.remove(i);
                for s in &mut strides {
                    s.remove(i - 1);
                }
            }
            i -= 1;
        }
        if shape.is_empty() {
            shape.push(1);
            for s in &mut strides {
                s.push(0);
            }
        }
        Bcast { shape, strides }
    }

    fn row_len(&self) -> usize {
        *self.shape.last().unwrap()
    }

    /// Offset of input `k` at the start of output row `row`.
    fn row_offset(&self, k: usize, mut row: usize) -> usize {
        let r = self.shape.len();
        let mut off = 0;
        for d in (0..r - 1).rev() {
            off += (row % self.shape[d]) * self.strides[k][d];
            row /= self.shape[d];
        }
        off
    }

    /// Call `f(dst_start, len, offsets, inner_strides)` for each row segment of the output
    /// range `start..start+len`.
    pub(crate) fn segments<const N: usize>(
        &self,
        start: usize,
        len: usize,
        mut f: impl FnMut(usize, usize, [usize; N], [usize; N]),
    ) {
        let rl = self.row_len();
        let inner: [usize; N] = std::array::from_fn(|k| *self.strides[k].last().unwrap());
        let (mut row, mut col) = (start / rl, start % rl);
        let mut done = 0;
        while done < len {
            let seg = (rl - col).min(len - done);
            let offs: [usize; N] = std::array::from_fn(|k| self.row_offset(k, row) + col * inner[k]);
            f(done, seg, offs, inner);
            done += seg;
            row += 1;
            col = 0;
        }
    }
}

/// Run `body(chunk_start, chunk)` over `out` in parallel chunks of `CHUNK * group` elements
/// (`group` elements of `T` form one logical element).
pub(crate) fn par_chunks<T: Send>(out: &mut [T], group: usize, body: impl Fn(usize, &mut [T]) + Sync) {
    let step = CHUNK * group.max(1);
    if out.len() <= step {
        body(0, out);
    } else {
        out.par_chunks_mut(step).enumerate().for_each(|(i, c)| body(i * CHUNK, c));
    }
}

fn float_map(bc: &Bcast, a: &[f32], b: &[f32], o: &mut [f32], f: impl Fn(f32, f32) -> f32 + Sync) {
    par_chunks(o, 1, |start, chunk| {
        bc.segments::<2>(start, chunk.len(), |d, n, [oa, ob], [sa, sb]| {
            for (j, y) in chunk[d..d + n].iter_mut().enumerate() {
                *y = f(a[oa + j * sa], b[ob + j * sb]);
            }
        })
    });
}

fn int_map(bc: &Bcast, a: &[i64], b: &[i64], o: &mut [i64], f: impl Fn(i64, i64) -> i64 + Sync) {
    par_chunks(o, 1, |start, chunk| {
        bc.segments::<2>(start, chunk.len(), |d, n, [oa, ob], [sa, sb]| {
            for (j, y) in chunk[d..d + n].iter_mut().enumerate() {
                *y = f(a[oa + j * sa], b[ob + j * sb]);
            }
        })
    });
}

pub fn binary(op: BinaryOp, a: &TensorRef, b: &TensorRef, out: &mut TensorMut) -> Result<()> {
    if out.numel() == 0 {
        return Ok(());
    }
    let bc = Bcast::new(out.shape, &[a.shape, b.shape]);
    if a.dtype.is_float() {
        let (av, bv) = (f32_in(a), f32_in(b));
        return with_f32_out(out, |o| {
            match op {
                BinaryOp::Add => float_map(&bc, &av, &bv, o, |x, y| x + y),
                BinaryOp::Sub => float_map(&bc, &av, &bv, o, |x, y| x - y),
                BinaryOp::Mul => float_map(&bc, &av, &bv, o, |x, y| x * y),
                BinaryOp::Div => float_map(&bc, &av, &bv, o, |x, y| x / y),
                // NaN propagates like torch.maximum / torch.minimum.
                BinaryOp::Max => float_map(&bc, &av, &bv, o, |x, y| if x.is_nan() || x > y { x } else { y }),
                BinaryOp::Min => float_map(&bc, &av, &bv, o, |x, y| if x.is_nan() || x < y { x } else { y }),
                BinaryOp::Pow => float_map(&bc, &av, &bv, o, f32::powf),
            }
            Ok(())
        });
    }
    // Integer dtypes (inference rejects bool, and div/pow on ints).
    let (av, bv) = (i64_in(a)?, i64_in(b)?);
    let mut o = vec![0i64; out.numel()];
    match op {
        BinaryOp::Add => int_map(&bc, &av, &bv, &mut o, i64::wrapping_add),
        BinaryOp::Sub => int_map(&bc, &av, &bv, &mut o, i64::wrapping_sub),
        BinaryOp::Mul => int_map(&bc, &av, &bv, &mut o, i64::wrapping_mul),
        BinaryOp::Max => int_map(&bc, &av, &bv, &mut o, i64::max),
        BinaryOp::Min => int_map(&bc, &av, &bv, &mut o, i64::min),
        BinaryOp::Div => int_map(&bc, &av, &bv, &mut o, |x, y| x.checked_div(y).unwrap_or(0)),
        BinaryOp::Pow => {
            int_map(&bc, &av, &bv, &mut o, |x, y| x.wrapping_pow(y.clamp(0, u32::MAX as i64) as u32))
        }
    }
    i64_store(out, &o)
}

pub fn compare(op: CmpOp, a: &TensorRef, b: &TensorRef, out: &mut TensorMut) -> Result<()> {
    if out.numel() == 0 {
        return Ok(());
    }
    let bc = Bcast::new(out.shape, &[a.shape, b.shape]);
    fn run<T: Copy + PartialOrd + Sync>(op: CmpOp, bc: &Bcast, a: &[T], b: &[T], o: &mut [u8]) {
        par_chunks(o, 1, |start, chunk| {
            bc.segments::<2>(start, chunk.len(), |d, n, [oa, ob], [sa, sb]| {
                for (j, y) in chunk[d..d + n].iter_mut().enumerate() {
                    let (x, z) = (a[oa + j * sa], b[ob + j * sb]);
                    // IEEE semantics: every comparison with NaN is false except `ne`.
                    *y = match op {
                        CmpOp::Eq => x == z,
                        CmpOp::Ne => x != z,
                        CmpOp::Lt => x < z,
                        CmpOp::Le => x <= z,
                        CmpOp::Gt => x > z,
                        CmpOp::Ge => x >= z,
                    } as u8;
                }
            })
        });
    }
    if a.dtype.is_float() {
        // Halves widen to f32 exactly, so comparing in f32 is exact.
        run(op, &bc, &f32_in(a), &f32_in(b), out.data);
    } else {
        run(op, &bc, &i64_in(a)?, &i64_in(b)?, out.data);
    }
    Ok(())
}

pub fn where_(cond: &TensorRef, a: &TensorRef, b: &TensorRef, out: &mut TensorMut) -> Result<()> {
    if out.numel() == 0 {
        return Ok(());
    }
    // Same dtype for a, b and out: pick elements by raw bytes, no conversion needed.
    let es = out.dtype.size_in_bytes();
    let bc = Bcast::new(out.shape, &[cond.shape, a.shape, b.shape]);
    let (c, av, bv) = (cond.data, a.data, b.data);
    par_chunks(out.data, es, |start, chunk| {
        bc.segments::<3>(start, chunk.len() / es, |d, n, [oc, oa, ob], [sc, sa, sb]| {
            for j in 0..n {
                let src = if c[oc + j * sc] != 0 {
                    let o = (oa + j * sa) * es;
                    &av[o..o + es]
                } else {
                    let o = (ob + j * sb) * es;
                    &bv[o..o + es]
                };
                chunk[(d + j) * es..(d + j + 1) * es].copy_from_slice(src);
            }
        })
    });
    Ok(())
}
