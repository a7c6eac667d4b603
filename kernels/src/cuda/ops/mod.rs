//! Op → launches. `plan` turns one graph op on device tensors into the calls that compute it;
//! one file per op family, each with its parity `cases()`. An op, dtype or shape no kernel
//! handles is a `CudaError::Unsupported` here, before anything is launched.

mod attention;
mod conv;
mod conv_dw;
mod elementwise;
mod flash;
mod matmul;
mod movement;
mod norm;
mod reduce;
mod rope;
mod sampling;
mod softmax;
mod token;
mod vq;

pub use super::case::{Case, Input};
pub use super::launch::{
    elem_suffix, float_suffix, Arg, Call, DevTensor, GemmCall, GemmType, KernelCall, Scratch,
};
pub use super::CudaError;
use focus_graph::{BinaryOp, UnaryOp};
pub use focus_graph::{DType, Op};

/// The calls that compute `op` from `ins` into `out` (all contiguous, row-major).
pub fn plan(op: &Op, ins: &[DevTensor], out: &DevTensor, scratch: Scratch) -> Result<Vec<Call>, CudaError> {
    let calls = match op {
        Op::Unary(_) | Op::Glu { .. } | Op::Binary(_) | Op::Compare(_) | Op::Where | Op::Cast { .. } => {
            elementwise::plan(op, ins, out, scratch)
        }
        Op::RmsNorm { .. } | Op::LayerNorm { .. } | Op::GroupNorm { .. } | Op::SpatialNorm { .. } => {
            norm::plan(op, ins, out, scratch)
        }
        Op::Softmax { .. } => softmax::plan(op, ins, out, scratch),
        Op::Rope { .. } => rope::plan(op, ins, out, scratch),
        Op::Attention { .. } | Op::VarlenAttention { .. } => match flash::plan(op, ins, out, scratch) {
            Err(CudaError::Unsupported { .. }) => attention::plan(op, ins, out, scratch),
            r => r,
        },
        Op::Conv2d(p) if conv_dw::applies(p, ins) => conv_dw::plan(op, ins, out, scratch),
        Op::Conv2d(_) => conv::plan(op, ins, out, scratch),
        Op::MatMul { .. } | Op::Linear | Op::GatedLinear { .. } | Op::MultiLinear { .. } => {
            matmul::plan(op, ins, out, scratch)
        }
        Op::Reduce { .. } | Op::ArgReduce { .. } | Op::TopK { .. } | Op::TakeAlongAxis { .. } => {
            reduce::plan(op, ins, out, scratch)
        }
        Op::Resize { .. }
        | Op::AvgPool2d { .. }
        | Op::GridSample { .. }
        | Op::MsDeformAttn { .. }
        | Op::TimestepEmbedding { .. } => sampling::plan(op, ins, out, scratch),
        Op::Permute { .. }
        | Op::Slice { .. }
        | Op::Pad { .. }
        | Op::Concat { .. }
        | Op::IndexSelect { .. }
        | Op::WriteSlice { .. }
        | Op::Reshape { .. }
        | Op::PixelShuffle { .. }
        | Op::PixelUnshuffle { .. } => movement::plan(op, ins, out, scratch),
        Op::VqNearest => vq::plan(op, ins, out, scratch),
        Op::SampleSorted => token::plan(op, ins, out, scratch),
        Op::Input { .. } | Op::Param { .. } | Op::Constant { .. } | Op::State { .. } => {
            Err(unsupported(op, "leaf nodes hold data and are never launched"))
        }
    }?;
    for c in &calls {
        if let Call::Kernel(k) = c {
            k.validate().map_err(|why| unsupported(op, &why))?;
        }
    }
    Ok(calls)
}

pub use matmul::without_epilogue;

/// Two ops the engine runs as one plan: `first` on `ins`, then `second` on its output `mid` and
/// `extra` (the second op's other inputs, in order) into `out`. Returns the calls and whether they
/// also write `mid` (a value other consumers read); Unsupported for pairs without a fused kernel.
pub fn plan_chain(
    first: &Op,
    second: &Op,
    ins: &[DevTensor],
    extra: &[DevTensor],
    mid: &DevTensor,
    out: &DevTensor,
    scratch: Scratch,
) -> Result<(Vec<Call>, bool), CudaError> {
    match (first, second) {
        (Op::GroupNorm { .. } | Op::SpatialNorm { .. }, Op::Unary(UnaryOp::Silu))
            if extra.is_empty() && mid.dtype == out.dtype =>
        {
            Ok((norm::group_norm_silu(first, ins, out, scratch)?, false))
        }
        (Op::Binary(BinaryOp::Add), Op::RmsNorm { .. } | Op::LayerNorm { .. }) if ins.len() == 2 => {
            Ok((norm::add_norm(second, (&ins[0], &ins[1]), extra, mid, out)?, true))
        }
        // RoPE of k appended to the KV cache: extra = [cache state, offset], `out` is the cache.
        (Op::Rope { .. }, Op::WriteSlice { .. }) if extra.len() == 2 => {
            Ok((rope::plan_write(first, second, ins, (out, &extra[1]), scratch.flag)?, false))
        }
        (Op::Rope { .. }, Op::Attention { .. }) if ins.len() == 2 => {
            Ok((flash::plan_rope_q(first, second, ins, extra, out, scratch)?, false))
        }
        (Op::Resize { .. }, Op::Conv2d(_)) if ins.len() == 1 => {
            let conv_ins: Vec<DevTensor> = ins.iter().chain(extra).copied().collect();
            Ok((conv::plan_upsampled(first, second, &conv_ins, out)?, false))
        }
        _ => {
            Err(unsupported(second, &format!("no fused kernel for {} then {}", first.kind(), second.kind())))
        }
    }
}

/// Scratch bytes `plan` needs for this op (the executor reserves the maximum over a plan).
pub fn scratch_bytes(op: &Op, ins: &[DevTensor], out: &DevTensor) -> usize {
    match op {
        Op::Attention { .. } => flash::scratch_bytes(op, ins, out).max(attention::scratch_bytes(op, ins)),
        Op::GroupNorm { .. } | Op::SpatialNorm { .. } => norm::scratch_bytes(op, ins),
        Op::TopK { .. } => reduce::scratch_bytes(op, ins),
        Op::GatedLinear { .. } => matmul::scratch_bytes(op, ins, out),
        _ => 0,
    }
}

/// Scratch bytes `plan_chain` needs: the larger of the two ops' own needs, the second op taking
/// `mid` at `mid_at` among `extra`.
pub fn chain_scratch_bytes(
    (first, second, mid_at): (&Op, &Op, usize),
    ins: &[DevTensor],
    extra: &[DevTensor],
    mid: &DevTensor,
    out: &DevTensor,
) -> usize {
    let mut ins2: Vec<DevTensor> = extra.to_vec();
    ins2.insert(mid_at.min(ins2.len()), *mid);
    scratch_bytes(first, ins, mid).max(scratch_bytes(second, &ins2, out))
}

/// Every family's parity cases.
pub fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    for f in [
        elementwise::cases,
        norm::cases,
        softmax::cases,
        rope::cases,
        attention::cases,
        flash::cases,
        conv_dw::cases,
        conv::cases,
        matmul::cases,
        reduce::cases,
        sampling::cases,
        movement::cases,
        vq::cases,
        token::cases,
        elementwise::glu_cases,
    ] {
        v.extend(f());
    }
    v
}

pub(crate) fn unsupported(op: &Op, why: &str) -> CudaError {
    CudaError::Unsupported { op: op.kind().to_string(), why: why.to_string() }
}

/// The float-kernel suffix of `dt`, or an Unsupported error naming the op.
pub(crate) fn float_kernel(op: &Op, dt: DType) -> Result<&'static str, CudaError> {
    float_suffix(dt).ok_or_else(|| unsupported(op, &format!("dtype {dt} (float kernels only)")))
}

pub(crate) fn i32_arg(op: &Op, v: usize, what: &str) -> Result<Arg, CudaError> {
    i32::try_from(v).map(Arg::I32).map_err(|_| unsupported(op, &format!("{what} = {v} exceeds i32")))
}

/// Row-major element strides.
pub(crate) fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        s[d] = s[d + 1] * shape[d + 1];
    }
    s
}

/// `outer, len, inner` around `axis`.
pub(crate) fn split3(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    (shape[..axis].iter().product(), shape[axis], shape[axis + 1..].iter().product())
}

/// Broadcast `inputs` to `out` and merge adjacent dims that are contiguous in every operand,
/// so kernels index with few divisions. Returns the collapsed shape and each input's element
/// strides (0 on broadcast dims); at least one dim.
pub(crate) fn broadcast_layout(out: &[usize], inputs: &[&[usize]]) -> (Vec<usize>, Vec<Vec<usize>>) {
    let r = out.len();
    let full: Vec<Vec<usize>> = inputs
        .iter()
        .map(|s| {
            let off = r - s.len();
            let own = strides(s);
            (0..r).map(|d| if d < off || s[d - off] == 1 { 0 } else { own[d - off] }).collect()
        })
        .collect();
    let (mut shape, mut st): (Vec<usize>, Vec<Vec<usize>>) = (Vec::new(), vec![Vec::new(); inputs.len()]);
    for d in 0..r {
        if out[d] == 1 {
            continue;
        }
        let merge = !shape.is_empty()
            && full.iter().zip(&st).all(|(f, s)| *s.last().expect("same length") == f[d] * out[d]);
        if merge {
            *shape.last_mut().expect("non-empty") *= out[d];
            for (f, s) in full.iter().zip(st.iter_mut()) {
                *s.last_mut().expect("non-empty") = f[d];
            }
        } else {
            shape.push(out[d]);
            for (f, s) in full.iter().zip(st.iter_mut()) {
                s.push(f[d]);
            }
        }
    }
    if shape.is_empty() {
        shape.push(1);
        st.iter_mut().for_each(|s| s.push(0));
    }
    (shape, st)
}

/// Little-endian bytes of a C struct `{ int rank; u64 a[8]; u64 b[8]; ... }` (4 bytes of
/// padding after `rank`), the layout of the kernels' `Bcast`, `Strides` and `PadSpec`.
pub(crate) fn rank_struct(rank: usize, arrays: &[&[usize]]) -> Vec<u8> {
    const MAX_RANK: usize = 8;
    let mut b = Vec::with_capacity(8 + arrays.len() * MAX_RANK * 8);
    b.extend((rank as i32).to_le_bytes());
    b.extend([0u8; 4]);
    for a in arrays {
        for d in 0..MAX_RANK {
            b.extend((a.get(d).copied().unwrap_or(0) as u64).to_le_bytes());
        }
    }
    b
}
