//! Token draw from sorted candidates (token.cu): one thread per row, the CPU's walk in f64.

use super::super::case::Rng;
use super::*;

pub(super) fn plan(op: &Op, ins: &[DevTensor], out: &DevTensor, _s: Scratch) -> Result<Vec<Call>, CudaError> {
    let (values, ids, params) = (&ins[0], &ins[1], &ins[2]);
    if out.numel() == 0 {
        return Ok(Vec::new());
    }
    let s = float_kernel(op, values.dtype)?;
    let (rows, k) = (values.shape[0], values.shape[1]);
    let args = vec![
        Arg::Ptr(values.ptr),
        Arg::Ptr(ids.ptr),
        Arg::Ptr(params.ptr),
        Arg::Ptr(out.ptr),
        i32_arg(op, rows, "rows")?,
        i32_arg(op, k, "candidates")?,
    ];
    let grid = (u32::try_from(rows.div_ceil(128)).map_err(|_| unsupported(op, "too many rows"))?, 1, 1);
    let k = KernelCall {
        file: "token.cu",
        entry: format!("sample_sorted_{s}"),
        grid,
        block: (128, 1, 1),
        smem: 0,
        args,
    };
    Ok(vec![Call::Kernel(k)])
}

/// Rows of descending candidates with `-inf` tails, and every mode: greedy, top-k, top-p, both,
/// no cut, no candidate, a top_k beyond the candidates.
pub fn cases() -> Vec<Case> {
    let mut rng = Rng(0x70c3);
    let (rows, k) = (24, 100);
    let mut values = Vec::new();
    let mut ids = Vec::new();
    let mut params = Vec::new();
    for row in 0..rows {
        let live = [k, 1, 37, 0, 99][row % 5];
        let mut v: Vec<f32> = (0..live).map(|_| rng.next_f32() * 8.0 - 4.0).collect();
        v.sort_by(|a, b| b.total_cmp(a));
        v.resize(k, f32::NEG_INFINITY);
        values.extend(v);
        ids.extend((0..k).map(|i| ((i * 7919 + row * 31) % 151_936) as i64));
        let u = rng.next_f32() as f64 * 0.999;
        let u_hi = u as f32;
        let (t, top_k, top_p) = [
            (0.0, 0.0, 1.0),
            (1.0, 0.0, 1.0),
            (0.7, 5.0, 1.0),
            (1.3, 0.0, 0.8),
            (0.9, 40.0, 0.5),
            (1.0, 1.0, 1.0),
            (2.0, 500.0, 0.95),
        ][row % 7];
        params.extend([t, top_k, top_p, u_hi, (u - u_hi as f64) as f32]);
    }
    let mut v = Vec::new();
    for dt in [DType::F32, DType::BF16] {
        let vals: Vec<u8> = match dt {
            DType::F32 => values.iter().flat_map(|x| x.to_le_bytes()).collect(),
            _ => values.iter().flat_map(|x| half::bf16::from_f32(*x).to_le_bytes()).collect(),
        };
        let ins = vec![
            Input::bytes(dt, &[rows, k], vals),
            Input::bytes(DType::I64, &[rows, k], ids.iter().flat_map(|x| x.to_le_bytes()).collect()),
            Input::bytes(DType::F32, &[rows, 5], params.iter().flat_map(|x| x.to_le_bytes()).collect()),
        ];
        v.push(Case::new(format!("sample_sorted {dt}"), Op::SampleSorted, ins));
    }
    // The decode token head's selection at the Qwen2.5 vocabulary: top-256 of one f32 row.
    let logits = Input::uniform(DType::F32, &[1, 151_936], -20.0, 20.0);
    v.push(Case::new("top_k 256 of a 151936 vocab row f32", Op::TopK { k: 256, axis: 1 }, vec![logits]));
    v
}
