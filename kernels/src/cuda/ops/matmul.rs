//! Matrix products through cuBLASLt (f32 accumulation; f16/bf16 storage use tensor cores):
//! batched MatMul with broadcasting and transposes, and Linear (`x · wᵀ + bias`, the bias as
//! the GEMM's epilogue).

use super::*;

/// A GEMM as plain cuBLAS runs it (no epilogue), for where cuBLASLt has no algorithm: a bias
/// becomes `C[i, j] = bias[j]` (a strided gather, stride 0 over rows) and the GEMM with beta = 1.
pub fn without_epilogue(g: &GemmCall) -> Result<Vec<Call>, CudaError> {
    if g.bias == 0 {
        return Ok(vec![Call::Gemm(g.clone())]);
    }
    if g.beta != 0.0 || g.batch != 1 {
        return Err(CudaError::Driver("a GEMM bias needs beta = 0 and batch 1".into()));
    }
    let dtype = match g.dtype {
        GemmType::F32 => DType::F32,
        GemmType::F16 => DType::F16,
        GemmType::BF16 => DType::BF16,
    };
    let (m, n) = (g.m, g.n);
    let args = vec![
        Arg::Ptr(g.bias),
        Arg::Ptr(g.c),
        Arg::U64((m * n) as u64),
        Arg::Bytes(rank_struct(2, &[&[m, n], &[0, 1]])),
        Arg::U64(0),
    ];
    let entry = format!("gather_strided_{}", elem_suffix(dtype));
    let fill = Call::Kernel(KernelCall::elementwise("movement.cu", entry, m * n, args));
    Ok(vec![fill, Call::Gemm(GemmCall { beta: 1.0, bias: 0, ..g.clone() })])
}

/// Most separate GEMM launches a partially broadcast batch may expand to.
const MAX_SPLIT_BATCHES: usize = 4096;

fn gemm_type(op: &Op, dt: DType) -> Result<GemmType, CudaError> {
    match dt {
        DType::F32 => Ok(GemmType::F32),
        DType::F16 => Ok(GemmType::F16),
        DType::BF16 => Ok(GemmType::BF16),
        d => Err(unsupported(op, &format!("dtype {d}"))),
    }
}

/// Matrix offsets (in matrices) of every output batch in an operand with batch dims `src`.
fn batch_offsets(src: &[usize], batch: &[usize]) -> Vec<usize> {
    let off = batch.len() - src.len();
    let own = strides(src);
    let nb: usize = batch.iter().product();
    (0..nb)
        .map(|i| {
            let (mut rem, mut o) = (i, 0);
            for d in (0..batch.len()).rev() {
                let c = rem % batch[d];
                rem /= batch[d];
                if d >= off && src[d - off] != 1 {
                    o += c * own[d - off];
                }
            }
            o
        })
        .collect()
}

/// `c [m, n] = x [m, k] · wᵀ (+ bias)` with `w [n, k]` (a 0 bias pointer: none).
fn linear_gemm(
    dtype: GemmType,
    (m, n, k): (usize, usize, usize),
    x: u64,
    (w, bias): (u64, u64),
    c: u64,
) -> GemmCall {
    GemmCall {
        dtype,
        m,
        n,
        k,
        batch: 1,
        a: x,
        b: w,
        c,
        trans_a: false,
        trans_b: true,
        stride_a: 0,
        stride_b: 0,
        stride_c: 0,
        alpha: 1.0,
        beta: 0.0,
        bias,
    }
}

/// Rows of x up to which `Op::GatedLinear` is one GEMV launch (GV_MAX_M in gemv.cu).
const GEMV_MAX_M: usize = 8;
/// Shared memory the GEMV may stage x in (f32).
const GEMV_MAX_SMEM: usize = 48 * 1024;

fn gemv_applies(m: usize, k: usize) -> bool {
    m <= GEMV_MAX_M && m * k * 4 <= GEMV_MAX_SMEM
}

/// Scratch of the many-row `Op::GatedLinear`: both projections, each 256-byte aligned.
pub(super) fn scratch_bytes(op: &Op, ins: &[DevTensor], out: &DevTensor) -> usize {
    match (op, ins.first()) {
        (Op::GatedLinear { .. }, Some(x)) => {
            let k = x.shape.last().copied().unwrap_or(1).max(1);
            if gemv_applies(x.numel() / k, k) {
                0
            } else {
                2 * (out.numel() * out.dtype.size_in_bytes()).next_multiple_of(256)
            }
        }
        _ => 0,
    }
}

/// `Op::GatedLinear`: one GEMV launch for a few rows; otherwise both projections as GEMMs
/// (biases as their epilogue) into scratch and `act(g) · u`.
fn gated(
    op: &Op,
    act: UnaryOp,
    ins: &[DevTensor],
    out: &DevTensor,
    s: Scratch,
) -> Result<Vec<Call>, CudaError> {
    let (x, wg, wu) = (&ins[0], &ins[1], &ins[2]);
    if ins.iter().any(|t| t.dtype != out.dtype) {
        return Err(unsupported(op, "inputs and output must share a dtype"));
    }
    let sfx = float_kernel(op, out.dtype)?;
    let (k, n) = (*x.shape.last().expect("rank >= 1"), wg.shape[0]);
    let m = x.numel() / k.max(1);
    let (bg, bu) = if ins.len() == 5 { (ins[3].ptr, ins[4].ptr) } else { (0, 0) };
    let code = UnaryOp::ALL.iter().position(|a| *a == act).expect("listed") as i32;
    let i = |v: usize, what: &str| i32_arg(op, v, what);
    if gemv_applies(m, k) {
        let es = out.dtype.size_in_bytes();
        let vec8 = k % 8 == 0 && [wg.ptr, wu.ptr].iter().all(|p| p % 16 == 0) && (k * es).is_multiple_of(16);
        const WARPS: usize = 8;
        return Ok(vec![Call::Kernel(KernelCall {
            file: "gemv.cu",
            entry: format!("gated_gemv_{sfx}"),
            grid: (u32::try_from(n.div_ceil(WARPS)).map_err(|_| unsupported(op, "too many columns"))?, 1, 1),
            block: ((32 * WARPS) as u32, 1, 1),
            smem: (m * k * 4) as u32,
            args: vec![
                Arg::Ptr(x.ptr),
                Arg::Ptr(wg.ptr),
                Arg::Ptr(wu.ptr),
                Arg::Ptr(bg),
                Arg::Ptr(bu),
                Arg::Ptr(out.ptr),
                i(m, "rows")?,
                i(k, "in-features")?,
                i(n, "out-features")?,
                Arg::I32(code),
                Arg::I32(vec8 as i32),
            ],
        })]);
    }
    let need = scratch_bytes(op, ins, out);
    if s.bytes < need {
        return Err(unsupported(op, &format!("needs {need} bytes of scratch, has {}", s.bytes)));
    }
    let (g, u) = (s.ptr, s.ptr + (need / 2) as u64);
    let dtype = gemm_type(op, out.dtype)?;
    let total = m * n;
    let args = vec![Arg::Ptr(g), Arg::Ptr(u), Arg::Ptr(out.ptr), Arg::U64(total as u64), Arg::I32(code)];
    Ok(vec![
        Call::Gemm(linear_gemm(dtype, (m, n, k), x.ptr, (wg.ptr, bg), g)),
        Call::Gemm(linear_gemm(dtype, (m, n, k), x.ptr, (wu.ptr, bu), u)),
        Call::Kernel(KernelCall::elementwise("gemv.cu", format!("glu_pair_{sfx}"), total, args)),
    ])
}

/// Parts the `Op::MultiLinear` GEMV takes (its weight and bias pointer slots in gemv.cu).
const MULTI_GEMV_PARTS: usize = 4;

/// `Op::MultiLinear`: one GEMV launch over every part for a few rows; otherwise one GEMM per
/// part (bias as its epilogue) into the part's block.
fn multi(op: &Op, parts: usize, ins: &[DevTensor], out: &DevTensor) -> Result<Vec<Call>, CudaError> {
    if ins.iter().any(|t| t.dtype != out.dtype) {
        return Err(unsupported(op, "inputs and output must share a dtype"));
    }
    let x = &ins[0];
    let (ws, bs) = (&ins[1..=parts], ins.get(1 + parts..).unwrap_or_default());
    let k = *x.shape.last().expect("rank >= 1");
    let m = x.numel() / k.max(1);
    let es = out.dtype.size_in_bytes();
    let bias = |i: usize| bs.get(i).map_or(0, |b| b.ptr);
    if parts <= MULTI_GEMV_PARTS && gemv_applies(m, k) {
        let sfx = float_kernel(op, out.dtype)?;
        let i = |v: usize, what: &str| i32_arg(op, v, what);
        let n: usize = ws.iter().map(|w| w.shape[0]).sum();
        let vec8 =
            k.is_multiple_of(8) && ws.iter().all(|w| w.ptr.is_multiple_of(16)) && (k * es).is_multiple_of(16);
        const WARPS: usize = 8;
        let mut args = vec![Arg::Ptr(x.ptr)];
        args.extend((0..MULTI_GEMV_PARTS).map(|p| Arg::Ptr(ws.get(p).map_or(0, |w| w.ptr))));
        args.extend((0..MULTI_GEMV_PARTS).map(|p| Arg::Ptr(bias(p))));
        args.extend([Arg::Ptr(out.ptr), i(m, "rows")?, i(k, "in-features")?]);
        for p in 0..MULTI_GEMV_PARTS {
            args.push(i(ws.get(p).map_or(0, |w| w.shape[0]), "out-features")?);
        }
        args.push(Arg::I32(vec8 as i32));
        return Ok(vec![Call::Kernel(KernelCall {
            file: "gemv.cu",
            entry: format!("multi_gemv_{sfx}"),
            grid: (u32::try_from(n.div_ceil(WARPS)).map_err(|_| unsupported(op, "too many columns"))?, 1, 1),
            block: ((32 * WARPS) as u32, 1, 1),
            smem: (m * k * 4) as u32,
            args,
        })]);
    }
    let dtype = gemm_type(op, out.dtype)?;
    let mut at = out.ptr;
    let mut calls = Vec::with_capacity(parts);
    for (p, w) in ws.iter().enumerate() {
        let n = w.shape[0];
        calls.push(Call::Gemm(linear_gemm(dtype, (m, n, k), x.ptr, (w.ptr, bias(p)), at)));
        at += (m * n * es) as u64;
    }
    Ok(calls)
}

pub(super) fn plan(op: &Op, ins: &[DevTensor], out: &DevTensor, s: Scratch) -> Result<Vec<Call>, CudaError> {
    if out.numel() == 0 {
        return Ok(Vec::new());
    }
    match op {
        Op::GatedLinear { act } => return gated(op, *act, ins, out, s),
        Op::MultiLinear { parts } => return multi(op, *parts, ins, out),
        _ => {}
    }
    let (a, b) = (&ins[0], &ins[1]);
    let dtype = gemm_type(op, out.dtype)?;
    if a.dtype != out.dtype || b.dtype != out.dtype {
        return Err(unsupported(op, "operands and output must share a dtype"));
    }
    let es = out.dtype.size_in_bytes() as u64;
    match op {
        Op::Linear => {
            let k = *a.shape.last().expect("rank >= 1");
            let n = b.shape[0];
            let m = a.numel() / k.max(1);
            let bias = match ins.get(2) {
                Some(bias) if bias.dtype != out.dtype => {
                    return Err(unsupported(op, "bias must have the output's dtype"))
                }
                Some(bias) => bias.ptr,
                None => 0,
            };
            Ok(vec![Call::Gemm(linear_gemm(dtype, (m, n, k), a.ptr, (b.ptr, bias), out.ptr))])
        }
        Op::MatMul { trans_a, trans_b } => {
            let (ra, rb, ro) = (a.shape.len(), b.shape.len(), out.shape.len());
            let (m, n) = (out.shape[ro - 2], out.shape[ro - 1]);
            let k = if *trans_a { a.shape[ra - 2] } else { a.shape[ra - 1] };
            let batch = &out.shape[..ro - 2];
            let nb: usize = batch.iter().product();
            let (ba, bb): (usize, usize) =
                (a.shape[..ra - 2].iter().product(), b.shape[..rb - 2].iter().product());
            let (ma, mb, mc) = (m * k, k * n, m * n);
            let call = |batch: usize, a_ptr: u64, b_ptr: u64, c_ptr: u64, sa: usize, sb: usize| GemmCall {
                dtype,
                m,
                n,
                k,
                batch,
                a: a_ptr,
                b: b_ptr,
                c: c_ptr,
                trans_a: *trans_a,
                trans_b: *trans_b,
                stride_a: sa,
                stride_b: sb,
                stride_c: mc,
                alpha: 1.0,
                beta: 0.0,
                bias: 0,
            };
            // Each operand either has every batch or broadcasts one matrix: one strided call.
            if (ba == nb || ba == 1) && (bb == nb || bb == 1) {
                let (sa, sb) = (if ba == 1 { 0 } else { ma }, if bb == 1 { 0 } else { mb });
                return Ok(vec![Call::Gemm(call(nb, a.ptr, b.ptr, out.ptr, sa, sb))]);
            }
            if nb > MAX_SPLIT_BATCHES {
                return Err(unsupported(op, "partially broadcast batch dims with more than 4096 batches"));
            }
            let (oa, ob) =
                (batch_offsets(&a.shape[..ra - 2], batch), batch_offsets(&b.shape[..rb - 2], batch));
            Ok((0..nb)
                .map(|i| {
                    let ap = a.ptr + (oa[i] * ma) as u64 * es;
                    let bp = b.ptr + (ob[i] * mb) as u64 * es;
                    Call::Gemm(call(1, ap, bp, out.ptr + (i * mc) as u64 * es, 0, 0))
                })
                .collect())
        }
        _ => Err(unsupported(op, "not a matrix product")),
    }
}

pub fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    for dt in [DType::F32, DType::F16, DType::BF16] {
        // Gated MLP half: the decode GEMV (16-byte loads; odd K scalar; several rows, biases as
        // the Qwen2.5-VL ViT has them) and the many-row path (two GEMMs + act·mul).
        let gl = |act| Op::GatedLinear { act };
        let w = |n: usize, k: usize| Input::uniform(dt, &[n, k], -0.1, 0.1);
        let b = |n: usize| Input::uniform(dt, &[n], -0.5, 0.5);
        let x = |shape: &[usize]| Input::uniform(dt, shape, -1.0, 1.0);
        v.push(Case::new(
            format!("gated_linear decode silu {dt}"),
            gl(UnaryOp::Silu),
            vec![x(&[1, 512]), w(1000, 512), w(1000, 512)],
        ));
        v.push(Case::new(
            format!("gated_linear odd k gelu {dt}"),
            gl(UnaryOp::Gelu),
            vec![x(&[3, 77]), w(45, 77), w(45, 77)],
        ));
        v.push(Case::new(
            format!("gated_linear 5 rows bias silu {dt}"),
            gl(UnaryOp::Silu),
            vec![x(&[5, 256]), w(130, 256), w(130, 256), b(130), b(130)],
        ));
        v.push(Case::new(
            format!("gated_linear many rows bias silu {dt}"),
            gl(UnaryOp::Silu),
            vec![x(&[37, 96]), w(130, 96), w(130, 96), b(130), b(130)],
        ));
        // q, k, v as one op: the decode GEMV (Qwen2-like widths, biases), odd K (scalar loads),
        // and many rows (a GEMM per part into its block).
        let ml = |parts| Op::MultiLinear { parts };
        v.push(Case::new(
            format!("multi_linear decode qkv bias {dt}"),
            ml(3),
            vec![x(&[1, 1, 512]), w(512, 512), w(64, 512), w(64, 512), b(512), b(64), b(64)],
        ));
        v.push(Case::new(
            format!("multi_linear 3 rows odd k {dt}"),
            ml(2),
            vec![x(&[3, 77]), w(45, 77), w(19, 77)],
        ));
        v.push(Case::new(
            format!("multi_linear many rows bias {dt}"),
            ml(3),
            vec![x(&[2, 21, 96]), w(96, 96), w(32, 96), w(32, 96), b(96), b(32), b(32)],
        ));
        let ins = vec![
            Input::uniform(dt, &[3, 37, 129], -1.0, 1.0),
            Input::uniform(dt, &[77, 129], -0.1, 0.1),
            Input::uniform(dt, &[77], -1.0, 1.0),
        ];
        v.push(Case::new(format!("linear bias {dt}"), Op::Linear, ins));
        let ins =
            vec![Input::uniform(dt, &[1, 2048], -1.0, 1.0), Input::uniform(dt, &[1000, 2048], -0.05, 0.05)];
        v.push(Case::new(format!("linear decode gemv {dt}"), Op::Linear, ins));
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let sa = if ta { [2, 3, 45, 33] } else { [2, 3, 33, 45] };
            let sb = if tb { [3, 29, 45] } else { [3, 45, 29] };
            let ins = vec![Input::uniform(dt, &sa, -1.0, 1.0), Input::uniform(dt, &sb, -1.0, 1.0)];
            let op = Op::MatMul { trans_a: ta, trans_b: tb };
            v.push(Case::new(format!("matmul ta={ta} tb={tb} bcast {dt}"), op, ins));
        }
        // One strided batched call: full batches on both sides, and one matrix broadcast.
        let ins = vec![
            Input::uniform(dt, &[2, 3, 33, 45], -1.0, 1.0),
            Input::uniform(dt, &[2, 3, 45, 29], -1.0, 1.0),
        ];
        v.push(Case::new(format!("matmul batched {dt}"), Op::MatMul { trans_a: false, trans_b: false }, ins));
        let ins =
            vec![Input::uniform(dt, &[2, 3, 33, 45], -1.0, 1.0), Input::uniform(dt, &[29, 45], -1.0, 1.0)];
        v.push(Case::new(
            format!("matmul batched b broadcast tb {dt}"),
            Op::MatMul { trans_a: false, trans_b: true },
            ins,
        ));
        // Partial broadcast: [2, 1, M, K] @ [1, 3, K, N].
        let ins = vec![
            Input::uniform(dt, &[2, 1, 9, 16], -1.0, 1.0),
            Input::uniform(dt, &[1, 3, 16, 7], -1.0, 1.0),
        ];
        v.push(Case::new(
            format!("matmul partial bcast {dt}"),
            Op::MatMul { trans_a: false, trans_b: false },
            ins,
        ));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_broadcast_offsets() {
        assert_eq!(batch_offsets(&[2, 1], &[2, 3]), vec![0, 0, 0, 1, 1, 1]);
        assert_eq!(batch_offsets(&[3], &[2, 3]), vec![0, 1, 2, 0, 1, 2]);
        assert_eq!(batch_offsets(&[], &[2]), vec![0, 0]);
    }
}
