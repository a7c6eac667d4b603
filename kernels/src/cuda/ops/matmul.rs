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

pub(super) fn plan(op: &Op, ins: &[DevTensor], out: &DevTensor, _s: Scratch) -> Result<Vec<Call>, CudaError> {
    if out.numel() == 0 {
        return Ok(Vec::new());
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
            Ok(vec![Call::Gemm(GemmCall {
                dtype,
                m,
                n,
                k,
                batch: 1,
                a: a.ptr,
                b: b.ptr,
                c: out.ptr,
                trans_a: false,
                trans_b: true,
                stride_a: 0,
                stride_b: 0,
                stride_c: 0,
                alpha: 1.0,
                beta: 0.0,
                bias,
            })])
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
