//! Baseline attention (attention.cu): one warp per query row on CUDA cores, any head dim up to
//! 256, f32/f16/bf16. The tensor-core kernels (flash.rs) take the shapes they support; this
//! covers the rest (f32, unusual head dims). Single-head attention over wider heads (the VAE's
//! and MoVQ's spatial attention: 512 and 1536 channels) runs as two batched GEMMs around a row
//! softmax, the scores in scratch.

use super::*;

const WARPS: usize = 4;
const KB: usize = 32;
const MAX_D: usize = 256;

/// Mask element strides for [B, Hq, Tq, Tk] (0 on broadcast dims) and the kernel's mask kind.
pub(super) fn mask_layout(op: &Op, mask: Option<&DevTensor>) -> Result<(u64, i32, [u64; 4]), CudaError> {
    let Some(m) = mask else { return Ok((0, 0, [0; 4])) };
    let kind = match m.dtype {
        DType::Bool | DType::U8 => 1,
        DType::F32 => 2,
        d => return Err(unsupported(op, &format!("mask dtype {d} (bool or f32)"))),
    };
    let own = strides(m.shape);
    let off = 4 - m.shape.len();
    let mut st = [0u64; 4];
    for d in 0..m.shape.len() {
        if m.shape[d] != 1 {
            st[off + d] = own[d] as u64;
        }
    }
    Ok((m.ptr, kind, st))
}

pub(super) fn plan(
    op: &Op,
    ins: &[DevTensor],
    out: &DevTensor,
    s_scratch: Scratch,
) -> Result<Vec<Call>, CudaError> {
    let (causal, scale, cu) = super::flash::attention_params(op)?;
    let (q, k, v) = (&ins[0], &ins[1], &ins[2]);
    if out.numel() == 0 {
        return Ok(Vec::new());
    }
    let s = float_kernel(op, q.dtype)?;
    let [b, tq, hq, d] = [q.shape[0], q.shape[1], q.shape[2], q.shape[3]];
    let [tk, hkv, dv] = [k.shape[1], k.shape[2], v.shape[3]];
    if d > MAX_D || dv > MAX_D {
        return gemm_plan(op, ins, out, s_scratch)
            .map_err(|e| unsupported(op, &format!("head dim {d}/{dv} above {MAX_D}: {e}")));
    }
    let (mptr, kind, ms) = mask_layout(op, ins.get(3))?;
    let i = |x: usize, what: &str| i32_arg(op, x, what);
    let call = KernelCall {
        file: "attention.cu",
        entry: format!("attention_{s}"),
        grid: (tq.div_ceil(WARPS) as u32, hq as u32, b as u32),
        block: ((32 * WARPS) as u32, 1, 1),
        smem: (KB * (d + dv) * 4) as u32,
        args: vec![
            Arg::Ptr(q.ptr),
            Arg::Ptr(k.ptr),
            Arg::Ptr(v.ptr),
            Arg::Ptr(mptr),
            Arg::Ptr(out.ptr),
            i(tq, "query length")?,
            i(tk, "key length")?,
            i(hq, "query heads")?,
            i(hkv, "kv heads")?,
            i(d, "head dim")?,
            i(dv, "value head dim")?,
            Arg::F32(scale),
            Arg::I32(causal as i32),
            Arg::I32(kind),
            Arg::U64(ms[0]),
            Arg::U64(ms[1]),
            Arg::U64(ms[2]),
            Arg::U64(ms[3]),
        ]
        .into_iter()
        .chain(super::flash::seq_args(op, cu)?)
        .collect(),
    };
    Ok(vec![Call::Kernel(call)])
}

/// Scratch for the GEMM path's scores `[B, Tq, Tk]` (zero where the kernels apply).
pub(super) fn scratch_bytes(op: &Op, ins: &[DevTensor]) -> usize {
    let (q, k, v) = (&ins[0], &ins[1], &ins[2]);
    if !matches!(op, Op::Attention { .. }) || (q.shape[3] <= MAX_D && v.shape[3] <= MAX_D) {
        return 0;
    }
    q.shape[0] * q.shape[1] * k.shape[1] * q.dtype.size_in_bytes()
}

/// `softmax(scale · q kᵀ) v` for one head without mask or causality: scores
/// `S[b] = scale · q[b] k[b]ᵀ` (a GEMM in the inputs' dtype, f32 accumulation, as PyTorch's
/// unfused attention stores them), a row softmax in place (each element is read and written by
/// the same thread in its last pass), then `out[b] = S[b] v[b]`.
fn gemm_plan(op: &Op, ins: &[DevTensor], out: &DevTensor, s: Scratch) -> Result<Vec<Call>, String> {
    let Op::Attention { causal: false, scale } = *op else {
        return Err("only non-causal attention without packed sequences runs as GEMMs".into());
    };
    let (q, k, v) = (&ins[0], &ins[1], &ins[2]);
    let [b, tq, hq, d] = [q.shape[0], q.shape[1], q.shape[2], q.shape[3]];
    let [tk, hkv, dv] = [k.shape[1], k.shape[2], v.shape[3]];
    if hq != 1 || hkv != 1 || ins.len() > 3 {
        return Err("the GEMM path takes one head and no mask".into());
    }
    let dtype = match q.dtype {
        DType::F32 => GemmType::F32,
        DType::F16 => GemmType::F16,
        DType::BF16 => GemmType::BF16,
        dt => return Err(format!("dtype {dt}")),
    };
    let need = b * tq * tk * q.dtype.size_in_bytes();
    if s.bytes < need {
        return Err(format!("needs {need} bytes of scratch for the scores, has {}", s.bytes));
    }
    let scores = Call::Gemm(GemmCall {
        dtype,
        m: tq,
        n: tk,
        k: d,
        batch: b,
        a: q.ptr,
        b: k.ptr,
        c: s.ptr,
        trans_a: false,
        trans_b: true,
        stride_a: tq * d,
        stride_b: tk * d,
        stride_c: tq * tk,
        alpha: scale,
        beta: 0.0,
        bias: 0,
    });
    let shape = [b, tq, tk];
    let st = DevTensor { ptr: s.ptr, dtype: q.dtype, shape: &shape };
    let softmax = super::softmax::plan(&Op::Softmax { axis: 2 }, &[st], &st, s).map_err(|e| e.to_string())?;
    let values = Call::Gemm(GemmCall {
        dtype,
        m: tq,
        n: dv,
        k: tk,
        batch: b,
        a: s.ptr,
        b: v.ptr,
        c: out.ptr,
        trans_a: false,
        trans_b: false,
        stride_a: tq * tk,
        stride_b: tk * dv,
        stride_c: tq * dv,
        alpha: 1.0,
        beta: 0.0,
        bias: 0,
    });
    Ok([vec![scores], softmax, vec![values]].concat())
}

pub fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    let att = |causal: bool, d: usize| Op::Attention { causal, scale: 1.0 / (d as f32).sqrt() };
    // (batch, tq, tk, hq, hkv, d, causal, mask: 0 none / 1 bool / 2 additive)
    type Shape = (usize, usize, usize, usize, usize, usize, bool, u8);
    let shapes: [Shape; 6] = [
        (1, 37, 37, 4, 4, 64, false, 0),
        (2, 19, 53, 6, 2, 40, true, 0),
        (1, 1, 300, 8, 2, 128, true, 0),
        (1, 33, 33, 2, 2, 72, false, 1),
        (2, 17, 29, 4, 1, 32, false, 2),
        (1, 50, 50, 3, 3, 80, true, 1),
    ];
    for dt in [DType::F32, DType::BF16] {
        for (b, tq, tk, hq, hkv, d, causal, mask) in shapes {
            let mut ins = vec![
                Input::uniform(dt, &[b, tq, hq, d], -1.0, 1.0),
                Input::uniform(dt, &[b, tk, hkv, d], -1.0, 1.0),
                Input::uniform(dt, &[b, tk, hkv, d], -1.0, 1.0),
            ];
            match mask {
                1 => ins.push(Input::bools(&[1, 1, tq, tk], 0.7)),
                2 => ins.push(Input::uniform(DType::F32, &[b, hq, tq, tk], -2.0, 0.0)),
                _ => {}
            }
            let name =
                format!("attention b{b} q{tq} k{tk} h{hq}/{hkv} d{d} causal={causal} mask={mask} {dt}");
            v.push(Case::new(name, att(causal, d), ins));
        }
        // Single-head spatial attention wider than the kernels take (VAE 512, MoVQ 1536): GEMMs.
        for (b, t, d) in [(2, 70, 512), (1, 48, 1536)] {
            let x = || Input::uniform(dt, &[b, t, 1, d], -1.0, 1.0);
            v.push(Case::new(
                format!("attention gemm path b{b} t{t} d{d} {dt}"),
                att(false, d),
                vec![x(), x(), x()],
            ));
        }
        // Packed sequences at head dims the flash kernels do not take (the Qwen2-VL ViT's 80 in f32).
        v.push(super::flash::varlen_case("attention", dt, false, &[64, 17, 1, 90, 3], [1, 4, 4, 80]));
        v.push(super::flash::varlen_case("attention", dt, true, &[5, 40, 2], [2, 4, 2, 40]));
    }
    v
}
