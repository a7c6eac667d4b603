//! Integer-indexed gathers on raw bytes (any dtype of `x`). Indices must lie in `0..len`;
//! anything else (including negatives) is `KernelError::IndexOutOfRange`.

use super::common::IndexRef;
use crate::error::{KernelError, Result};
use crate::tensor::{TensorMut, TensorRef};

fn check(op: &'static str, idx: IndexRef, len: usize) -> Result<()> {
    match idx.iter().find(|&i| i < 0 || i as u64 >= len as u64) {
        Some(index) => Err(KernelError::IndexOutOfRange { op, index, len }),
        None => Ok(()),
    }
}

pub fn index_select(axis: usize, x: &TensorRef, idx: &TensorRef, out: &mut TensorMut) -> Result<()> {
    let ix = IndexRef::new(idx)?;
    let n = x.shape[axis];
    check("index_select", ix, n)?;
    let es = x.dtype.size_in_bytes();
    let inner = x.shape[axis + 1..].iter().product::<usize>() * es;
    if out.data.is_empty() || inner == 0 {
        return Ok(());
    }
    // out[o, j, :] = x[o, ix[j], :]
    for (o, dst) in out.data.chunks_exact_mut(ix.len() * inner).enumerate() {
        let src = &x.data[o * n * inner..(o + 1) * n * inner];
        for (d, i) in dst.chunks_exact_mut(inner).zip(ix.iter()) {
            let i = i as usize;
            d.copy_from_slice(&src[i * inner..(i + 1) * inner]);
        }
    }
    Ok(())
}

pub fn take_along_axis(axis: usize, x: &TensorRef, idx: &TensorRef, out: &mut TensorMut) -> Result<()> {
    let ix = IndexRef::new(idx)?;
    let n = x.shape[axis];
    check("take_along_axis", ix, n)?;
    let es = x.dtype.size_in_bytes();
    let m = idx.shape[axis];
    let inner: usize = x.shape[axis + 1..].iter().product();
    // out[o, j, i] = x[o, ix[o, j, i], i]
    for (p, t) in ix.iter().enumerate() {
        let (o, i) = (p / (m * inner), p % inner);
        let s = ((o * n + t as usize) * inner + i) * es;
        out.data[p * es..(p + 1) * es].copy_from_slice(&x.data[s..s + es]);
    }
    Ok(())
}
