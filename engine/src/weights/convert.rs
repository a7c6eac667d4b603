//! Dtype conversion of little-endian tensor bytes.
//!
//! Floats convert between each other with round-to-nearest-even (via `half`). Conversions
//! that would silently corrupt values are refused instead: a float going to an integer type
//! must be finite, integral and in range, and an integer must fit its target. Bool reads any
//! non-zero byte as true and writes 0/1; any non-zero value converts to true.

use std::borrow::Cow;

use focus_graph::DType;
use half::{bf16, f16};

/// Why a conversion was refused; the caller adds file and tensor names.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvertError {
    pub index: usize,
    pub reason: String,
}

impl std::fmt::Display for ConvertError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "element {}: {}", self.index, self.reason)
    }
}

/// One element in a type wide enough to hold every source dtype exactly.
#[derive(Clone, Copy)]
enum Scalar {
    F(f32),
    I(i64),
    B(bool),
}

/// Converts `bytes` (whole elements of `from`) to `to`, borrowing when nothing changes.
pub fn convert(bytes: &[u8], from: DType, to: DType) -> Result<Cow<'_, [u8]>, ConvertError> {
    if from == to {
        return Ok(Cow::Borrowed(bytes));
    }
    let n = bytes.len() / from.size_in_bytes();
    let mut out = Vec::with_capacity(n * to.size_in_bytes());
    // Float-to-float is the bulk of weight loading, so it gets a loop without per-element
    // dtype dispatch on the output side.
    if from.is_float() && to.is_float() {
        let encode: fn(f32, &mut Vec<u8>) = match to {
            DType::F16 => |v, o| o.extend_from_slice(&f16::from_f32(v).to_le_bytes()),
            DType::BF16 => |v, o| o.extend_from_slice(&bf16::from_f32(v).to_le_bytes()),
            _ => |v, o| o.extend_from_slice(&v.to_le_bytes()),
        };
        match from {
            DType::F16 => chunks::<2>(bytes).for_each(|c| encode(f16::from_le_bytes(c).to_f32(), &mut out)),
            DType::BF16 => chunks::<2>(bytes).for_each(|c| encode(bf16::from_le_bytes(c).to_f32(), &mut out)),
            _ => chunks::<4>(bytes).for_each(|c| encode(f32::from_le_bytes(c), &mut out)),
        }
        return Ok(Cow::Owned(out));
    }
    for (index, chunk) in bytes.chunks_exact(from.size_in_bytes()).enumerate() {
        encode(decode(from, chunk), to, &mut out).map_err(|reason| ConvertError { index, reason })?;
    }
    Ok(Cow::Owned(out))
}

fn chunks<const N: usize>(bytes: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
    bytes.chunks_exact(N).map(|c| {
        let mut a = [0u8; N];
        a.copy_from_slice(c);
        a
    })
}

fn decode(dtype: DType, c: &[u8]) -> Scalar {
    let b2 = || [c[0], c[1]];
    let b4 = || [c[0], c[1], c[2], c[3]];
    match dtype {
        DType::F32 => Scalar::F(f32::from_le_bytes(b4())),
        DType::F16 => Scalar::F(f16::from_le_bytes(b2()).to_f32()),
        DType::BF16 => Scalar::F(bf16::from_le_bytes(b2()).to_f32()),
        DType::I32 => Scalar::I(i32::from_le_bytes(b4()) as i64),
        DType::I64 => Scalar::I(i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])),
        DType::U8 => Scalar::I(c[0] as i64),
        DType::Bool => Scalar::B(c[0] != 0),
    }
}

fn encode(v: Scalar, to: DType, out: &mut Vec<u8>) -> Result<(), String> {
    match to {
        DType::F32 => out.extend_from_slice(&as_f32(v).to_le_bytes()),
        DType::F16 => out.extend_from_slice(&f16::from_f64(as_f64(v)).to_le_bytes()),
        DType::BF16 => out.extend_from_slice(&bf16::from_f64(as_f64(v)).to_le_bytes()),
        DType::I32 => {
            let i = as_int(v, i32::MIN as i64, i32::MAX as i64, to)?;
            out.extend_from_slice(&(i as i32).to_le_bytes());
        }
        DType::I64 => out.extend_from_slice(&as_int(v, i64::MIN, i64::MAX, to)?.to_le_bytes()),
        DType::U8 => out.push(as_int(v, 0, u8::MAX as i64, to)? as u8),
        DType::Bool => out.push(match v {
            Scalar::F(f) => f != 0.0,
            Scalar::I(i) => i != 0,
            Scalar::B(b) => b,
        } as u8),
    }
    Ok(())
}

// Direct casts so each value is rounded once (i64 -> f64 -> f32 could round twice).
fn as_f32(v: Scalar) -> f32 {
    match v {
        Scalar::F(f) => f,
        Scalar::I(i) => i as f32,
        Scalar::B(b) => b as u8 as f32,
    }
}

fn as_f64(v: Scalar) -> f64 {
    match v {
        Scalar::F(f) => f as f64,
        Scalar::I(i) => i as f64,
        Scalar::B(b) => b as u8 as f64,
    }
}

/// An integer in `lo..=hi`, refusing values that would be truncated or wrapped.
fn as_int(v: Scalar, lo: i64, hi: i64, to: DType) -> Result<i64, String> {
    let i = match v {
        Scalar::B(b) => b as i64,
        Scalar::I(i) => i,
        Scalar::F(f) => {
            // 2^63 is exactly representable in f32; anything at or above it does not fit i64.
            if !f.is_finite() || f.fract() != 0.0 || f < -(2f32.powi(63)) || f >= 2f32.powi(63) {
                return Err(format!("{f} is not an integer representable as {to}"));
            }
            f as i64
        }
    };
    if i < lo || i > hi {
        return Err(format!("{i} is out of range for {to}"));
    }
    Ok(i)
}
