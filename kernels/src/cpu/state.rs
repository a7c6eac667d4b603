//! In-place writes into persistent state buffers (KV cache rows, latents).

use crate::cpu::common::IndexRef;
use crate::error::{KernelError, Result};
use crate::tensor::{TensorMut, TensorRef};

/// Copy `src` into `out` (which already holds the destination state) along `axis`, starting
/// at `offset[0]`. Out-of-range offsets are an error, never a partial write.
pub fn write_slice(axis: usize, src: &TensorRef, offset: &TensorRef, out: &mut TensorMut) -> Result<()> {
    let off = IndexRef::new(offset)?.get(0);
    let (len, cap) = (src.shape[axis], out.shape[axis]);
    if off < 0 || off as usize + len > cap {
        return Err(KernelError::IndexOutOfRange {
            op: "write_slice",
            index: off + len as i64 - 1,
            len: cap,
        });
    }
    let es = src.dtype.size_in_bytes();
    let inner: usize = src.shape[axis + 1..].iter().product::<usize>() * es;
    let outer: usize = src.shape[..axis].iter().product();
    let (chunk, row) = (len * inner, cap * inner);
    for o in 0..outer {
        let dst = o * row + off as usize * inner;
        out.data[dst..dst + chunk].copy_from_slice(&src.data[o * chunk..(o + 1) * chunk]);
    }
    Ok(())
}
