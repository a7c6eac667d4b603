//! Pointwise float ops, computed in f32.

use super::binary::par_chunks;
use super::common::{f32_in, with_f32_out, Scratch};
use crate::error::Result;
use crate::tensor::{TensorMut, TensorRef};
use focus_graph::*;

/// e^x in f32 without a libm call, so loops over it vectorise: x = k·ln2 + r (Cody–Waite
/// split of ln2), e^r by its degree-6 Taylor polynomial on |r| ≤ ln2/2 (truncation < 1.3e-7
/// relative), times 2^k built from the exponent bits. Inputs are clamped to the finite range.
#[inline(always)]
fn exp_f32(x: f32) -> f32 {
    let x = x.clamp(-87.3, 88.7);
    // Round to nearest by adding and removing 1.5·2²³ (no `round` call: SSE2 has no roundps).
    const SHIFT: f32 = 12_582_912.0;
    let k = (x * std::f32::consts::LOG2_E + SHIFT) - SHIFT;
    let r = (x - k * 0.693_145_75) - k * 1.428_606_8e-6;
    let p = 1.0
        + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    p * f32::from_bits(((k as i32 + 127) as u32) << 23)
}

/// GELU with the exact erf form, in f32: erf from the Chebyshev-fitted erfc of Numerical
/// Recipes (`erfcc`, fractional error < 1.2e-7) with the exponential above; about 1e-7·|x|
/// absolute error, inside f32 GELU accuracy (checked densely against an independent erf).
#[inline(always)]
fn gelu_f32(v: f32) -> f32 {
    let z = (v * std::f32::consts::FRAC_1_SQRT_2).abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_2
        + t * (1.000_023_7
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_204
                                + t * (1.488_515_9 + t * (-0.822_152_2 + t * 0.170_872_77))))))));
    let erfc = t * exp_f32(poly);
    let erf = if v >= 0.0 { 1.0 - erfc } else { erfc - 1.0 };
    0.5 * v * (1.0 + erf)
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

fn map(x: &[f32], o: &mut [f32], f: impl Fn(f32) -> f32 + Sync) {
    par_chunks(o, 1, |start, chunk| {
        for (y, v) in chunk.iter_mut().zip(&x[start..]) {
            *y = f(*v);
        }
    });
}

pub fn unary(op: UnaryOp, x: &TensorRef, out: &mut TensorMut) -> Result<()> {
    let xs = f32_in(x);
    with_f32_out(out, |o| {
        match op {
            UnaryOp::Gelu => map(&xs, o, gelu_f32),
            UnaryOp::GeluTanh => map(&xs, o, |v| {
                // sqrt(2/pi) * (x + 0.044715 x^3)
                let k = (2.0 / std::f32::consts::PI).sqrt();
                0.5 * v * (1.0 + (k * (v + 0.044715 * v * v * v)).tanh())
            }),
            UnaryOp::QuickGelu => map(&xs, o, |v| v * sigmoid(1.702 * v)),
            UnaryOp::Silu => map(&xs, o, |v| v * sigmoid(v)),
            UnaryOp::Sigmoid => map(&xs, o, sigmoid),
            UnaryOp::Tanh => map(&xs, o, f32::tanh),
            UnaryOp::Relu => map(&xs, o, |v| if v > 0.0 || v.is_nan() { v } else { 0.0 }),
            UnaryOp::Exp => map(&xs, o, f32::exp),
            UnaryOp::Log => map(&xs, o, f32::ln),
            UnaryOp::Sqrt => map(&xs, o, f32::sqrt),
            UnaryOp::Rsqrt => map(&xs, o, |v| 1.0 / v.sqrt()),
            UnaryOp::Neg => map(&xs, o, |v| -v),
            UnaryOp::Abs => map(&xs, o, f32::abs),
            UnaryOp::Sin => map(&xs, o, f32::sin),
            UnaryOp::Cos => map(&xs, o, f32::cos),
            UnaryOp::Recip => map(&xs, o, |v| 1.0 / v),
            UnaryOp::Square => map(&xs, o, |v| v * v),
        }
        Ok(())
    })
}

/// `x[..., :n] · act(x[..., n:])` (`Op::Glu`): the gate half through `unary` in f32, then the
/// product in f32, rounded once into `out`.
pub fn glu(act: UnaryOp, x: &TensorRef, out: &mut TensorMut) -> Result<()> {
    let xs = f32_in(x);
    let n = out.shape.last().copied().unwrap_or(0);
    let rows = out.numel() / n.max(1);
    // Pooled scratch: re-running a plan allocates nothing.
    let mut gate = Scratch::<f32>::stale(rows * n);
    for (r, dst) in gate.chunks_exact_mut(n.max(1)).enumerate() {
        dst.copy_from_slice(&xs[(2 * r + 1) * n..(2 * r + 2) * n]);
    }
    let mut g = Scratch::<f32>::stale(rows * n);
    let shape = [rows * n];
    unary(
        act,
        &TensorRef::new(DType::F32, &shape, bytemuck::cast_slice(&gate[..])),
        &mut TensorMut::new(DType::F32, &shape, bytemuck::cast_slice_mut(&mut g[..])),
    )?;
    with_f32_out(out, |o| {
        for (r, row) in o.chunks_mut(n.max(1)).enumerate() {
            for (j, y) in row.iter_mut().enumerate() {
                *y = xs[2 * r * n + j] * g[r * n + j];
            }
        }
        Ok(())
    })
}
