//! Pointwise float ops, computed in f32 (f64 where it buys accuracy cheaply: erf).

use super::binary::par_chunks;
use super::common::{f32_in, with_f32_out};
use crate::error::Result;
use crate::tensor::{TensorMut, TensorRef};
use focus_graph::*;

/// erf(x) in f64 from the Chebyshev-fitted erfc approximation of Numerical Recipes
/// (`erfcc`): fractional error below 1.2e-7 everywhere, which is below f32 resolution
/// once used inside GELU's `1 + erf`.
pub(crate) fn erf(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let erfc = t * poly.exp();
    if x >= 0.0 {
        1.0 - erfc
    } else {
        erfc - 1.0
    }
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
            UnaryOp::Gelu => map(&xs, o, |v| {
                let v = v as f64;
                (0.5 * v * (1.0 + erf(v * std::f64::consts::FRAC_1_SQRT_2))) as f32
            }),
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
