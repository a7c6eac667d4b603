//! Per-op FLOP and byte accounting: FLOPs = 2×MACs for contractions, an estimate per element
//! for everything else; bytes = every input read once plus the output written once.

use crate::op::*;
use crate::shape::Shape;

/// Cost of one node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cost {
    pub flops: u64,
    pub bytes: u64,
}

/// `ins` are (shape, dtype size) of the inputs; `out` is the output shape.
pub fn cost(op: &Op, ins: &[(&[usize], usize)], out: &[usize], out_elem: usize) -> Cost {
    let n_out = Shape::from(out).numel() as u64;
    let bytes = if let Op::WriteSlice { .. } = op {
        // Reads src and writes as much into the state.
        2 * Shape::from(ins[1].0).numel() as u64 * ins[1].1 as u64
    } else if op.is_leaf() || op.is_alias() {
        0
    } else {
        ins.iter().map(|(s, e)| Shape::from(*s).numel() as u64 * *e as u64).sum::<u64>()
            + n_out * out_elem as u64
    };
    let numel = |i: usize| Shape::from(ins[i].0).numel() as u64;
    let flops = match op {
        Op::Input { .. }
        | Op::Param { .. }
        | Op::Constant { .. }
        | Op::State { .. }
        | Op::WriteSlice { .. }
        | Op::Reshape { .. } => 0,
        Op::MatMul { trans_a, .. } => {
            let a = ins[0].0;
            let k = if *trans_a { a[a.len() - 2] } else { a[a.len() - 1] };
            2 * n_out * k as u64
        }
        Op::Linear => {
            let k = *ins[0].0.last().unwrap() as u64;
            2 * n_out * k + if ins.len() > 2 { n_out } else { 0 }
        }
        Op::GatedLinear { act } => {
            let k = *ins[0].0.last().unwrap() as u64;
            2 * 2 * n_out * k + n_out * (act.flops_per_elem() + 1) + if ins.len() > 3 { 2 * n_out } else { 0 }
        }
        Op::MultiLinear { parts } => {
            let k = *ins[0].0.last().unwrap() as u64;
            2 * n_out * k + if ins.len() > 1 + parts { n_out } else { 0 }
        }
        Op::Conv2d(_) => {
            let w = ins[1].0;
            2 * n_out * (w[1] * w[2] * w[3]) as u64 + if ins.len() > 2 { n_out } else { 0 }
        }
        Op::Unary(u) => n_out * u.flops_per_elem(),
        Op::Glu { act } => n_out * (act.flops_per_elem() + 1),
        Op::Binary(BinaryOp::Pow) => n_out * 8,
        Op::Binary(_) | Op::Compare(_) | Op::Where => n_out,
        Op::Cast { .. } => 0,
        Op::Reduce { .. } | Op::ArgReduce { .. } => numel(0),
        Op::Softmax { .. } => 7 * n_out,
        Op::LayerNorm { .. } | Op::GroupNorm { .. } => 8 * n_out,
        Op::RmsNorm { .. } => 5 * n_out,
        Op::SpatialNorm { .. } => 10 * n_out,
        Op::Rope { .. } => 3 * n_out,
        Op::Attention { causal, .. } => {
            let (q, k, v) = (ins[0].0, ins[1].0, ins[2].0);
            let (b, tq, hq, d) = (q[0] as u64, q[1] as u64, q[2] as u64, q[3] as u64);
            let (tk, dv) = (k[1] as u64, v[3] as u64);
            // Causal (bottom-right aligned) keeps Σ_i min(tk, tk - tq + i + 1) pairs.
            let pairs = if *causal {
                (0..tq).map(|i| (tk + i + 1).saturating_sub(tq).min(tk)).sum::<u64>()
            } else {
                tq * tk
            };
            b * hq * pairs * (2 * d + 2 * dv + 5)
        }
        Op::VarlenAttention { causal, seqlens, .. } => {
            let (q, v) = (ins[0].0, ins[2].0);
            let (b, hq, d, dv) = (q[0] as u64, q[2] as u64, q[3] as u64, v[3] as u64);
            let pairs: u64 = seqlens
                .iter()
                .map(|&l| l as u64)
                .map(|l| if *causal { l * (l + 1) / 2 } else { l * l })
                .sum();
            b * hq * pairs * (2 * d + 2 * dv + 5)
        }
        Op::IndexSelect { .. }
        | Op::TakeAlongAxis { .. }
        | Op::Concat { .. }
        | Op::Slice { .. }
        | Op::Permute { .. }
        | Op::Pad { .. }
        | Op::PixelShuffle { .. }
        | Op::PixelUnshuffle { .. } => 0,
        Op::Resize { mode, .. } => {
            n_out
                * match mode {
                    ResizeMode::Nearest => 0,
                    ResizeMode::Bilinear => 8,
                    ResizeMode::Bicubic => 32,
                }
        }
        Op::AvgPool2d { kernel, .. } => n_out * (kernel[0] * kernel[1]) as u64,
        Op::VqNearest => {
            let cb = ins[1].0;
            3 * n_out * (cb[0] * cb[1]) as u64
        }
        Op::GridSample { .. } => 8 * n_out,
        Op::MsDeformAttn { .. } => {
            let w = ins[2].0;
            let (lp, dh) = ((w[3] * w[4]) as u64, ins[0].0[3] as u64);
            // Per query/head/sample point: bilinear over Dh (8 flops) + weighted accumulate (2).
            (w[0] * w[1] * w[2]) as u64 * lp * dh * 10
        }
        Op::TopK { .. } => numel(0) * 2,
        // A few operations per candidate (exp, sums, the walk).
        Op::SampleSorted => numel(0) * 8,
        Op::TimestepEmbedding { .. } => 6 * n_out,
    };
    Cost { flops, bytes }
}
