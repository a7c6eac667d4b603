//! Data movement on raw bytes (any dtype): concat, slice, copy, permute, pad, pixel
//! (un)shuffle. Slice, permute and the pixel shuffles are all one strided gather.

use crate::cpu::common::{strides_of, Dims};
use crate::error::Result;
use crate::tensor::{TensorMut, TensorRef};
use focus_graph::*;
use half::{bf16, f16};
use rayon::prelude::*;

/// Below this many output bytes, stay on one thread.
const PAR_BYTES: usize = 1 << 16;

/// Fill `dst` (contiguous, logical shape `shape`) with `src[base + Σ i_d * strides[d]]`
/// (element units, element size `es`). Size-1 dims are dropped and dims that are contiguous
/// in the source are merged, so a source-contiguous last dim is copied as one block.
pub(crate) fn gather(src: &[u8], es: usize, shape: &[usize], strides: &[usize], base: usize, dst: &mut [u8]) {
    if dst.is_empty() {
        return;
    }
    let mut sh = Dims::new();
    let mut st = Dims::new();
    for (&n, &s) in shape.iter().zip(strides) {
        if n == 1 {
            continue;
        }
        if let (Some(ln), Some(ls)) = (sh.last_mut(), st.last_mut()) {
            if *ls == s * n {
                *ln *= n;
                *ls = s;
                continue;
            }
        }
        sh.push(n);
        st.push(s);
    }
    if sh.is_empty() {
        sh.push(1);
        st.push(1);
    }
    let r = sh.len();
    let (row_len, row_stride) = (sh[r - 1], st[r - 1]);
    let row_bytes = row_len * es;
    let copy_row = |row: usize, out: &mut [u8]| {
        let mut off = base;
        let mut rem = row;
        for d in (0..r - 1).rev() {
            off += (rem % sh[d]) * st[d];
            rem /= sh[d];
        }
        if row_stride == 1 {
            out.copy_from_slice(&src[off * es..off * es + row_bytes]);
        } else {
            for (j, o) in out.chunks_exact_mut(es).enumerate() {
                let s = (off + j * row_stride) * es;
                o.copy_from_slice(&src[s..s + es]);
            }
        }
    };
    if dst.len() < PAR_BYTES {
        dst.chunks_exact_mut(row_bytes).enumerate().for_each(|(i, o)| copy_row(i, o));
    } else {
        let min_rows = (PAR_BYTES / 4 / row_bytes).max(1);
        dst.par_chunks_exact_mut(row_bytes)
            .with_min_len(min_rows)
            .enumerate()
            .for_each(|(i, o)| copy_row(i, o));
    }
}

pub fn concat(axis: usize, ins: &[TensorRef], out: &mut TensorMut) -> Result<()> {
    let es = out.dtype.size_in_bytes();
    let outer: usize = out.shape[..axis].iter().product();
    let inner: usize = out.shape[axis + 1..].iter().product();
    let out_row = out.shape[axis] * inner * es;
    if out.data.is_empty() {
        return Ok(());
    }
    for (o, dst) in out.data.chunks_exact_mut(out_row).enumerate().take(outer) {
        let mut at = 0;
        for x in ins {
            let blk = x.shape[axis] * inner * es;
            dst[at..at + blk].copy_from_slice(&x.data[o * blk..(o + 1) * blk]);
            at += blk;
        }
    }
    Ok(())
}

pub fn slice(axis: usize, start: usize, step: usize, x: &TensorRef, out: &mut TensorMut) -> Result<()> {
    let mut st = strides_of(x.shape);
    let base = start * st[axis];
    st[axis] *= step;
    gather(x.data, x.dtype.size_in_bytes(), out.shape, &st, base, out.data);
    Ok(())
}

pub fn copy(x: &TensorRef, out: &mut TensorMut) -> Result<()> {
    out.data.copy_from_slice(x.data);
    Ok(())
}

pub fn permute(perm: &[usize], x: &TensorRef, out: &mut TensorMut) -> Result<()> {
    let xs = strides_of(x.shape);
    let st: Dims = perm.iter().map(|&p| xs[p]).collect();
    gather(x.data, x.dtype.size_in_bytes(), out.shape, &st, 0, out.data);
    Ok(())
}

/// `value` encoded as one element of `dtype` (ints truncate toward zero, bool is `!= 0`).
fn encode_value(value: f32, dtype: DType) -> smallvec::SmallVec<[u8; 8]> {
    match dtype {
        DType::F32 => value.to_le_bytes().into_iter().collect(),
        DType::F16 => f16::from_f32(value).to_le_bytes().into_iter().collect(),
        DType::BF16 => bf16::from_f32(value).to_le_bytes().into_iter().collect(),
        DType::I32 => (value as i64 as i32).to_le_bytes().into_iter().collect(),
        DType::I64 => (value as i64).to_le_bytes().into_iter().collect(),
        DType::U8 => smallvec::smallvec![value as i64 as u8],
        DType::Bool => smallvec::smallvec![(value != 0.0) as u8],
    }
}

pub fn pad(pads: &[(usize, usize)], value: f32, x: &TensorRef, out: &mut TensorMut) -> Result<()> {
    let es = x.dtype.size_in_bytes();
    let v = encode_value(value, out.dtype);
    for c in out.data.chunks_exact_mut(es) {
        c.copy_from_slice(&v);
    }
    if x.data.is_empty() {
        return Ok(());
    }
    // Scatter each input row (last dim) to its place in the output.
    let r = x.shape.len();
    if r == 0 {
        out.data.copy_from_slice(x.data);
        return Ok(());
    }
    let ost = strides_of(out.shape);
    let base: usize = pads.iter().zip(&ost).map(|(p, s)| p.0 * s).sum();
    let row = x.shape[r - 1] * es;
    for (i, src) in x.data.chunks_exact(row).enumerate() {
        let mut off = base;
        let mut rem = i;
        for d in (0..r - 1).rev() {
            off += (rem % x.shape[d]) * ost[d];
            rem /= x.shape[d];
        }
        out.data[off * es..off * es + row].copy_from_slice(src);
    }
    Ok(())
}

pub fn pixel_shuffle(r: usize, x: &TensorRef, out: &mut TensorMut) -> Result<()> {
    // Output seen as [N, H, r(i), W, r(j), C] reads input (n, h, w, c*r*r + i*r + j).
    let [n, h, w, cin] = [x.shape[0], x.shape[1], x.shape[2], x.shape[3]];
    let c = cin / (r * r);
    let shape = [n, h, r, w, r, c];
    let st = [h * w * cin, w * cin, r, cin, 1, r * r];
    gather(x.data, x.dtype.size_in_bytes(), &shape, &st, 0, out.data);
    Ok(())
}

pub fn pixel_unshuffle(r: usize, x: &TensorRef, out: &mut TensorMut) -> Result<()> {
    // Output seen as [N, H/r, W/r, C, r(i), r(j)] reads input (n, h*r + i, w*r + j, c).
    let [n, h, w, c] = [x.shape[0], x.shape[1], x.shape[2], x.shape[3]];
    let shape = [n, h / r, w / r, c, r, r];
    let st = [h * w * c, r * w * c, r * c, 1, w * c, c];
    gather(x.data, x.dtype.size_in_bytes(), &shape, &st, 0, out.data);
    Ok(())
}
