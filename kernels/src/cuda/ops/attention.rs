//! Baseline attention (attention.cu): one warp per query row on CUDA cores, any head dim up to
//! 256, f32/f16/bf16. The tensor-core kernels (flash.rs) take the shapes they support; this
//! covers the rest (f32, unusual head dims).

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

pub(super) fn plan(op: &Op, ins: &[DevTensor], out: &DevTensor, _s: Scratch) -> Result<Vec<Call>, CudaError> {
    let (causal, scale, cu) = super::flash::attention_params(op)?;
    let (q, k, v) = (&ins[0], &ins[1], &ins[2]);
    if out.numel() == 0 {
        return Ok(Vec::new());
    }
    let s = float_kernel(op, q.dtype)?;
    let [b, tq, hq, d] = [q.shape[0], q.shape[1], q.shape[2], q.shape[3]];
    let [tk, hkv, dv] = [k.shape[1], k.shape[2], v.shape[3]];
    if d > MAX_D || dv > MAX_D {
        return Err(unsupported(op, &format!("head dim {d}/{dv} above {MAX_D}")));
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
        // Packed sequences at head dims the flash kernels do not take (the Qwen2-VL ViT's 80 in f32).
        v.push(super::flash::varlen_case("attention", dt, false, &[64, 17, 1, 90, 3], [1, 4, 4, 80]));
        v.push(super::flash::varlen_case("attention", dt, true, &[5, 40, 2], [2, 4, 2, 40]));
    }
    v
}
