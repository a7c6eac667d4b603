//! CPU backend: one file per op family; `run` dispatches a graph op to its kernel.

pub mod attention;
pub mod binary;
pub mod cast;
pub mod common;
pub mod conv;
pub mod index;
pub mod matmul;
pub mod movement;
pub mod norm;
pub mod pool;
pub mod reduce;
pub mod resize;
pub mod rope;
pub mod sample;
pub mod softmax;
pub mod state;
pub mod timestep;
pub mod token;
pub mod topk;
pub mod unary;
pub mod vq;

use crate::error::{KernelError, Result};
use crate::tensor::{TensorMut, TensorRef};
use focus_graph::Op;

/// Run one non-leaf op. `ins` are the node's inputs in order; `out` has the node's inferred
/// dtype and shape. Every element of `out` is written (except for `WriteSlice`, which updates
/// the state that `out` holds in place).
pub fn run(op: &Op, ins: &[TensorRef<'_>], out: &mut TensorMut<'_>) -> Result<()> {
    let opt = |i: usize| ins.get(i).copied();
    match op {
        // `out` already holds the destination state; ins[0] (the state itself) is not read.
        Op::WriteSlice { axis } => state::write_slice(*axis, &ins[1], &ins[2], out),
        Op::Input { .. } | Op::Param { .. } | Op::Constant { .. } | Op::State { .. } => {
            Err(KernelError::Invalid { op: "leaf", detail: "leaf nodes hold data and have no kernel".into() })
        }
        Op::MatMul { trans_a, trans_b } => matmul::matmul(&ins[0], &ins[1], out, *trans_a, *trans_b),
        Op::Linear => matmul::linear(&ins[0], &ins[1], opt(2).as_ref(), out),
        Op::GatedLinear { act } => {
            let biases = if ins.len() == 5 { Some((&ins[3], &ins[4])) } else { None };
            matmul::gated_linear(*act, &ins[0], (&ins[1], &ins[2]), biases, out)
        }
        Op::MultiLinear { parts } => {
            let biases = if ins.len() > 1 + parts { &ins[1 + parts..] } else { &[] };
            matmul::multi_linear(&ins[0], &ins[1..=*parts], biases, out)
        }
        Op::Conv2d(p) => conv::conv2d(&ins[0], &ins[1], opt(2).as_ref(), out, p),
        Op::Unary(u) => unary::unary(*u, &ins[0], out),
        Op::Glu { act } => unary::glu(*act, &ins[0], out),
        Op::Binary(b) => binary::binary(*b, &ins[0], &ins[1], out),
        Op::Compare(c) => binary::compare(*c, &ins[0], &ins[1], out),
        Op::Where => binary::where_(&ins[0], &ins[1], &ins[2], out),
        Op::Cast { .. } => cast::cast(&ins[0], out),
        Op::Reduce { op, axes, .. } => reduce::reduce(*op, axes, &ins[0], out),
        Op::ArgReduce { op, axis, .. } => reduce::arg_reduce(*op, *axis, &ins[0], out),
        Op::Softmax { axis } => softmax::softmax(*axis, &ins[0], out),
        Op::LayerNorm { eps } => norm::layer_norm(*eps, &ins[0], opt(1).as_ref(), opt(2).as_ref(), out),
        Op::RmsNorm { eps } => norm::rms_norm(*eps, &ins[0], opt(1).as_ref(), out),
        Op::GroupNorm { groups, eps } => {
            norm::group_norm(*groups, *eps, &ins[0], opt(1).as_ref(), opt(2).as_ref(), out)
        }
        Op::SpatialNorm { groups, eps } => {
            norm::spatial_norm(*groups, *eps, &ins[0], (&ins[1], &ins[2]), (&ins[3], &ins[4]), out)
        }
        Op::Rope { kind, theta } => rope::rope(*kind, *theta, &ins[0], &ins[1], out),
        Op::Attention { causal, scale } => {
            attention::attention(*causal, *scale, None, &ins[0], &ins[1], &ins[2], opt(3).as_ref(), out)
        }
        Op::VarlenAttention { causal, scale, seqlens } => {
            attention::attention(*causal, *scale, Some(seqlens), &ins[0], &ins[1], &ins[2], None, out)
        }
        Op::IndexSelect { axis } => index::index_select(*axis, &ins[0], &ins[1], out),
        Op::TakeAlongAxis { axis } => index::take_along_axis(*axis, &ins[0], &ins[1], out),
        Op::Concat { axis } => movement::concat(*axis, ins, out),
        Op::Slice { axis, start, step, .. } => movement::slice(*axis, *start, *step, &ins[0], out),
        Op::Reshape { .. } => movement::copy(&ins[0], out),
        Op::Permute { perm } => movement::permute(perm, &ins[0], out),
        Op::Pad { pads, value } => movement::pad(pads, *value, &ins[0], out),
        Op::Resize { mode, align_corners, antialias, .. } => {
            resize::resize(*mode, *align_corners, *antialias, &ins[0], out)
        }
        Op::AvgPool2d { kernel, stride, padding, count_include_pad } => {
            pool::avg_pool2d(*kernel, *stride, *padding, *count_include_pad, &ins[0], out)
        }
        Op::PixelShuffle { r } => movement::pixel_shuffle(*r, &ins[0], out),
        Op::PixelUnshuffle { r } => movement::pixel_unshuffle(*r, &ins[0], out),
        Op::VqNearest => vq::vq_nearest(&ins[0], &ins[1], out),
        Op::GridSample { align_corners } => sample::grid_sample(*align_corners, &ins[0], &ins[1], out),
        Op::MsDeformAttn { levels } => sample::ms_deform_attn(levels, &ins[0], &ins[1], &ins[2], out),
        Op::TopK { axis, .. } => topk::top_k(*axis, &ins[0], out),
        Op::SampleSorted => token::sample_sorted(&ins[0], &ins[1], &ins[2], out),
        Op::TimestepEmbedding { dim: _, flip_sin_to_cos, downscale_freq_shift, max_period } => {
            timestep::timestep_embedding(*flip_sin_to_cos, *downscale_freq_shift, *max_period, &ins[0], out)
        }
    }
}

/// Input dtypes the CPU kernel of `op` accepts (for the op table).
pub fn supported_dtypes(op: &Op) -> &'static str {
    match op {
        Op::Input { .. } | Op::Param { .. } | Op::Constant { .. } | Op::State { .. } => "any (data)",
        Op::WriteSlice { .. } => "any",
        Op::Binary(_) | Op::Compare(_) => "f32 f16 bf16 i32 i64 u8",
        Op::Where
        | Op::Cast { .. }
        | Op::IndexSelect { .. }
        | Op::TakeAlongAxis { .. }
        | Op::Concat { .. }
        | Op::Slice { .. }
        | Op::Reshape { .. }
        | Op::Permute { .. }
        | Op::Pad { .. }
        | Op::PixelShuffle { .. }
        | Op::PixelUnshuffle { .. } => "any",
        _ => "f32 f16 bf16",
    }
}
