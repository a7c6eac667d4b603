//! Dtype conversion. Float → int truncates toward zero (PyTorch); values outside the target
//! range wrap through i64 (what PyTorch does on x86 in practice; it is UB there). Float → bool
//! and int → bool are `!= 0` (NaN → true). Halves round to nearest even via `half`.

use super::common::{f32_in, f32_store, i64_fill, i64_store, Scratch};
use crate::error::Result;
use crate::tensor::{TensorMut, TensorRef};
use focus_graph::*;
use half::{bf16, f16};

pub fn cast(x: &TensorRef, out: &mut TensorMut) -> Result<()> {
    if x.dtype == out.dtype {
        out.data.copy_from_slice(x.data);
        return Ok(());
    }
    match (x.dtype.is_float(), out.dtype.is_float()) {
        // Every float source widens to f32 exactly; one rounding into the target.
        (true, true) => f32_store(out, &f32_in(x)),
        (true, false) => {
            let v = f32_in(x);
            if out.dtype == DType::Bool {
                f32_store(out, &v);
            } else {
                // `as i64` truncates toward zero (saturating, NaN → 0), then wraps to width.
                let mut iv = Scratch::<i64>::stale(v.len());
                iv.iter_mut().zip(v.iter()).for_each(|(i, &f)| *i = f as i64);
                i64_store(out, &iv)?;
            }
        }
        (false, true) => {
            let mut v = Scratch::<i64>::stale(x.numel());
            i64_fill(x, &mut v)?;
            let v = &v[..];
            // One rounding from the exact integer (through f64, exact below 2^53).
            match out.dtype {
                DType::F32 => {
                    for (c, i) in out.data.chunks_exact_mut(4).zip(v) {
                        c.copy_from_slice(&(*i as f32).to_le_bytes());
                    }
                }
                DType::F16 => {
                    for (c, i) in out.data.chunks_exact_mut(2).zip(v) {
                        c.copy_from_slice(&f16::from_f64(*i as f64).to_le_bytes());
                    }
                }
                _ => {
                    for (c, i) in out.data.chunks_exact_mut(2).zip(v) {
                        c.copy_from_slice(&bf16::from_f64(*i as f64).to_le_bytes());
                    }
                }
            }
        }
        (false, false) => {
            let mut v = Scratch::<i64>::stale(x.numel());
            i64_fill(x, &mut v)?;
            i64_store(out, &v)?
        }
    }
    Ok(())
}
