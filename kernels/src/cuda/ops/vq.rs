//! Nearest codebook row (vq.cu): one block per query row, f32 distances, ties to the lowest
//! index.

use super::*;

const VQ_MAX_DIM: usize = 256;

pub(super) fn plan(op: &Op, ins: &[DevTensor], out: &DevTensor, _s: Scratch) -> Result<Vec<Call>, CudaError> {
    let (x, cb) = (&ins[0], &ins[1]);
    if out.numel() == 0 {
        return Ok(Vec::new());
    }
    let s = float_kernel(op, x.dtype)?;
    if cb.dtype != DType::F32 {
        return Err(unsupported(op, &format!("codebook dtype {} (f32 only)", cb.dtype)));
    }
    let (codes, dim) = (cb.shape[0], cb.shape[1]);
    if dim == 0 || dim > VQ_MAX_DIM {
        return Err(unsupported(op, &format!("code dim {dim} (1..=256)")));
    }
    let rows = u32::try_from(out.numel()).map_err(|_| unsupported(op, "too many rows"))?;
    let k = KernelCall {
        file: "vq.cu",
        entry: format!("vq_nearest_{s}"),
        grid: (rows, 1, 1),
        block: (256, 1, 1),
        smem: 0,
        args: vec![
            Arg::Ptr(x.ptr),
            Arg::Ptr(cb.ptr),
            Arg::Ptr(out.ptr),
            i32_arg(op, codes, "codes")?,
            i32_arg(op, dim, "code dim")?,
        ],
    };
    Ok(vec![Call::Kernel(k)])
}

pub fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    for dt in [DType::F32, DType::BF16] {
        let ins = vec![
            Input::uniform(dt, &[2, 9, 11, 32], -1.0, 1.0),
            Input::uniform(DType::F32, &[16384, 32], -1.0, 1.0),
        ];
        v.push(Case::new(format!("vq_nearest 16k x 32 {dt}"), Op::VqNearest, ins));
    }
    // Planted ties: a codebook of rows repeating with period 4, more codes than threads, so each
    // thread's own scan and the block reduction both meet equal distances; the lowest index wins.
    let mut cb = Vec::new();
    for k in 0..1024u32 {
        for d in 0..8 {
            cb.extend((((k % 4) * 8 + d) as f32 * 0.1).to_le_bytes());
        }
    }
    // Queries are continuous so distinct rows never tie exactly (their distances round
    // differently on the two backends); duplicates tie bit for bit.
    let ins =
        vec![Input::uniform(DType::F32, &[100, 8], -0.5, 3.5), Input::bytes(DType::F32, &[1024, 8], cb)];
    v.push(Case::new("vq_nearest ties", Op::VqNearest, ins));
    v
}
