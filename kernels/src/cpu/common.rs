//! Dtype conversion at the kernel edges. Compute kernels work on f32 (indices on i64);
//! f32 inputs are borrowed without copying, other dtypes are converted.

use crate::error::{KernelError, Result};
use crate::tensor::{TensorMut, TensorRef};
use focus_graph::DType;
use half::{bf16, f16};
use std::borrow::Cow;

/// Shape/stride bookkeeping that stays on the stack for ranks up to 8, so kernels allocate
/// nothing per call.
pub type Dims = smallvec::SmallVec<[usize; 8]>;

/// Row-major strides (elements) for reading `src` broadcast to `dst` (0 on broadcast dims).
pub fn broadcast_strides(src: &[usize], dst: &[usize]) -> Dims {
    let off = dst.len() - src.len();
    let mut own: Dims = smallvec::smallvec![0; src.len()];
    let mut acc = 1;
    for i in (0..src.len()).rev() {
        own[i] = acc;
        acc *= src[i];
    }
    (0..dst.len()).map(|i| if i < off || src[i - off] == 1 { 0 } else { own[i - off] }).collect()
}

/// Contiguous row-major strides.
pub fn strides_of(shape: &[usize]) -> Dims {
    broadcast_strides(shape, shape)
}

/// Values of `t` as f32 (borrowed when `t` is f32 and aligned).
pub fn f32_in<'a>(t: &TensorRef<'a>) -> Cow<'a, [f32]> {
    match t.dtype {
        DType::F32 => match bytemuck::try_cast_slice(t.data) {
            Ok(s) => Cow::Borrowed(s),
            Err(_) => Cow::Owned(
                t.data.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect(),
            ),
        },
        DType::F16 => {
            Cow::Owned(t.data.chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32()).collect())
        }
        DType::BF16 => {
            Cow::Owned(t.data.chunks_exact(2).map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect())
        }
        DType::I32 => Cow::Owned(
            t.data.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap()) as f32).collect(),
        ),
        DType::I64 => Cow::Owned(
            t.data.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f32).collect(),
        ),
        DType::U8 | DType::Bool => Cow::Owned(t.data.iter().map(|&b| b as f32).collect()),
    }
}

/// Values of an integer (or bool) tensor as i64.
pub fn i64_in(t: &TensorRef<'_>) -> Result<Vec<i64>> {
    Ok(match t.dtype {
        DType::I32 => {
            t.data.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap()) as i64).collect()
        }
        DType::I64 => t.data.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect(),
        DType::U8 | DType::Bool => t.data.iter().map(|&b| b as i64).collect(),
        d => return Err(KernelError::Unsupported { op: "integer input", dtype: d }),
    })
}

/// Write f32 values into `out`, rounding to its dtype (round-to-nearest-even for halves,
/// truncation toward zero for integers, `!= 0` for bool).
pub fn f32_store(out: &mut TensorMut<'_>, v: &[f32]) {
    debug_assert_eq!(v.len(), out.numel());
    match out.dtype {
        DType::F32 => {
            for (c, x) in out.data.chunks_exact_mut(4).zip(v) {
                c.copy_from_slice(&x.to_le_bytes());
            }
        }
        DType::F16 => {
            for (c, x) in out.data.chunks_exact_mut(2).zip(v) {
                c.copy_from_slice(&f16::from_f32(*x).to_le_bytes());
            }
        }
        DType::BF16 => {
            for (c, x) in out.data.chunks_exact_mut(2).zip(v) {
                c.copy_from_slice(&bf16::from_f32(*x).to_le_bytes());
            }
        }
        DType::I32 => {
            for (c, x) in out.data.chunks_exact_mut(4).zip(v) {
                c.copy_from_slice(&(*x as i32).to_le_bytes());
            }
        }
        DType::I64 => {
            for (c, x) in out.data.chunks_exact_mut(8).zip(v) {
                c.copy_from_slice(&(*x as i64).to_le_bytes());
            }
        }
        DType::U8 => {
            for (c, x) in out.data.iter_mut().zip(v) {
                *c = *x as u8;
            }
        }
        DType::Bool => {
            for (c, x) in out.data.iter_mut().zip(v) {
                *c = (*x != 0.0) as u8;
            }
        }
    }
}

/// Run `f` on an f32 view of `out`: in place when `out` is f32 and aligned, otherwise through
/// a temporary that is converted afterwards.
pub fn with_f32_out(out: &mut TensorMut<'_>, f: impl FnOnce(&mut [f32]) -> Result<()>) -> Result<()> {
    if out.dtype == DType::F32 {
        if let Ok(s) = bytemuck::try_cast_slice_mut::<u8, f32>(out.data) {
            return f(s);
        }
    }
    let mut tmp = vec![0f32; out.numel()];
    f(&mut tmp)?;
    f32_store(out, &tmp);
    Ok(())
}

/// Write i64 values into an i64 (or i32) output.
pub fn i64_store(out: &mut TensorMut<'_>, v: &[i64]) -> Result<()> {
    match out.dtype {
        DType::I64 => {
            for (c, x) in out.data.chunks_exact_mut(8).zip(v) {
                c.copy_from_slice(&x.to_le_bytes());
            }
        }
        DType::I32 => {
            for (c, x) in out.data.chunks_exact_mut(4).zip(v) {
                c.copy_from_slice(&(*x as i32).to_le_bytes());
            }
        }
        d => return Err(KernelError::Unsupported { op: "integer output", dtype: d }),
    }
    Ok(())
}
