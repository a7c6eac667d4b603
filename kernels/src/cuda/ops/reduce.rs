//! Reductions over any axes, arg-reductions, top-k and `take_along_axis` (torch.gather).
//!
//! `Reduce` views the input as `[outer, len, inner]` when the reduced axes form one run (after
//! dropping size-1 dims): a block per row when `inner == 1`, else a block per 32 columns;
//! scattered axes use a strided warp-per-output kernel. Accumulation is f32 (the CPU uses f64).

use super::*;
use crate::cuda::case::Rng;
use focus_graph::{ArgOp, ReduceOp};

const FILE: &str = "reduce.cu";
/// Largest k of the top-k kernel (its shared-memory candidate list, TOPK_MAX in reduce.cu).
const TOPK_MAX: usize = 1024;
/// Dims per kind in the strided kernel's `ReduceDims` (MAX_RANK in reduce.cu).
const MAX_RANK: usize = 8;

pub(super) fn plan(op: &Op, ins: &[DevTensor], out: &DevTensor, s: Scratch) -> Result<Vec<Call>, CudaError> {
    let call = match op {
        Op::Reduce { op: r, axes, .. } => reduce(op, *r, axes, ins, out)?,
        Op::ArgReduce { op: a, axis, .. } => arg_reduce(op, *a == ArgOp::ArgMax, *axis, ins, out)?,
        Op::TopK { k, axis } => {
            return Ok(top_k(op, *k, *axis, ins, out, s)?.into_iter().map(Call::Kernel).collect())
        }
        Op::TakeAlongAxis { axis } => take_along(op, *axis, ins, out, s)?,
        _ => return Err(unsupported(op, "not a reduction")),
    };
    Ok(call.into_iter().map(Call::Kernel).collect())
}

/// Rows at least this long take the two-launch top-k (chunks, then a merge).
const TOPK_SPLIT_MIN: usize = 16384;

/// Chunk length and count of the two-launch top-k of a row of `n`, or `None` for one launch.
fn topk_chunks(n: usize, k: usize, inner: usize, outer: usize) -> Option<(usize, usize)> {
    let chunk = (8 * k).max(2048).next_multiple_of(32);
    let chunks = n.div_ceil(chunk);
    (inner == 1 && n >= TOPK_SPLIT_MIN && chunks >= 4 && outer <= 65535).then_some((chunk, chunks))
}

/// Scratch of the two-launch top-k: every row's chunk winners as (u32 key, i32 index).
pub(super) fn scratch_bytes(op: &Op, ins: &[DevTensor]) -> usize {
    match (op, ins) {
        (Op::TopK { k, axis }, [x]) if *axis < x.shape.len() => {
            let (outer, n, inner) = split3(x.shape, *axis);
            topk_chunks(n, *k, inner, outer).map_or(0, |(_, chunks)| outer * chunks * k * 8)
        }
        _ => 0,
    }
}

fn one_input<'a>(op: &Op, ins: &'a [DevTensor<'a>]) -> Result<&'a DevTensor<'a>, CudaError> {
    match ins {
        [x] => Ok(x),
        _ => Err(unsupported(op, &format!("expects 1 input, got {}", ins.len()))),
    }
}

fn grid_x(op: &Op, blocks: usize) -> Result<u32, CudaError> {
    u32::try_from(blocks)
        .ok()
        .filter(|&b| b <= i32::MAX as u32)
        .ok_or_else(|| unsupported(op, &format!("{blocks} blocks exceed the grid")))
}

/// Threads of a block that owns one line of `len` elements.
fn line_threads(len: usize, max: usize) -> u32 {
    len.next_multiple_of(32).clamp(32, max) as u32
}

/// The input as runs of (length, reduced): size-1 dims dropped, neighbours of a kind merged.
fn runs(shape: &[usize], axes: &[usize]) -> Vec<(usize, bool)> {
    let mut v: Vec<(usize, bool)> = Vec::new();
    for (d, &n) in shape.iter().enumerate().filter(|p| *p.1 != 1) {
        let red = axes.contains(&d);
        match v.last_mut() {
            Some(last) if last.1 == red => last.0 *= n,
            _ => v.push((n, red)),
        }
    }
    v
}

/// `struct ReduceDims` of reduce.cu: two i32 counts, then shape/stride arrays of u64 for the
/// kept and the reduced runs.
fn reduce_dims(kept: &[(usize, usize)], red: &[(usize, usize)]) -> Vec<u8> {
    let mut b = Vec::with_capacity(8 + 4 * MAX_RANK * 8);
    b.extend((kept.len() as i32).to_le_bytes());
    b.extend((red.len() as i32).to_le_bytes());
    for list in [kept, red] {
        for i in 0..MAX_RANK {
            b.extend((list.get(i).map_or(1, |p| p.0) as u64).to_le_bytes());
        }
        for i in 0..MAX_RANK {
            b.extend((list.get(i).map_or(0, |p| p.1) as u64).to_le_bytes());
        }
    }
    b
}

fn reduce(
    op: &Op,
    r: ReduceOp,
    axes: &[usize],
    ins: &[DevTensor],
    out: &DevTensor,
) -> Result<Option<KernelCall>, CudaError> {
    let x = one_input(op, ins)?;
    let sfx = float_kernel(op, x.dtype)?;
    let rank = x.shape.len();
    if axes.is_empty() || axes.windows(2).any(|w| w[0] >= w[1]) || axes.iter().any(|&a| a >= rank) {
        return Err(unsupported(op, &format!("axes {axes:?} of a rank-{rank} input")));
    }
    let n_out: usize = (0..rank).filter(|d| !axes.contains(d)).map(|d| x.shape[d]).product();
    if out.dtype != x.dtype || out.numel() != n_out {
        return Err(unsupported(op, "output does not match the input"));
    }
    if n_out == 0 {
        return Ok(None);
    }
    let code = Arg::I32(match r {
        ReduceOp::Sum => 0,
        ReduceOp::Mean => 1,
        ReduceOp::Max => 2,
        ReduceOp::Min => 3,
    });
    let (xp, yp) = (Arg::Ptr(x.ptr), Arg::Ptr(out.ptr));
    let runs = runs(x.shape, axes);
    let reduced: Vec<usize> = (0..runs.len()).filter(|&i| runs[i].1).collect();
    let (outer, len, inner) = match reduced[..] {
        // Only size-1 axes are reduced: a copy (through the column kernel).
        [] => (1, 1, n_out),
        [i] => {
            (runs[..i].iter().map(|p| p.0).product(), runs[i].0, runs[i + 1..].iter().map(|p| p.0).product())
        }
        _ => {
            let lens: Vec<usize> = runs.iter().map(|p| p.0).collect();
            let st = strides(&lens);
            let pick = |red: bool| -> Vec<(usize, usize)> {
                (0..runs.len()).filter(|&i| runs[i].1 == red).map(|i| (lens[i], st[i])).collect()
            };
            let (kept, red) = (pick(false), pick(true));
            if kept.len() > MAX_RANK || red.len() > MAX_RANK {
                return Err(unsupported(op, &format!("more than {MAX_RANK} separate runs of axes")));
            }
            let nred: usize = red.iter().map(|p| p.0).product();
            // One warp per output.
            let args = vec![
                xp,
                yp,
                Arg::U64(n_out as u64),
                Arg::U64(nred as u64),
                Arg::Bytes(reduce_dims(&kept, &red)),
                code,
            ];
            return Ok(Some(KernelCall::elementwise(
                FILE,
                format!("reduce_strided_{sfx}"),
                n_out * 32,
                args,
            )));
        }
    };
    Ok(Some(if inner == 1 {
        let max = if outer >= 1024 { 256 } else { 1024 };
        KernelCall {
            file: FILE,
            entry: format!("reduce_rows_{sfx}"),
            grid: (grid_x(op, outer)?, 1, 1),
            block: (line_threads(len, max), 1, 1),
            smem: 0,
            args: vec![xp, yp, Arg::U64(len as u64), code],
        }
    } else {
        let tiles = inner.div_ceil(32);
        let blocks = outer * tiles;
        // Few blocks: more threads along `len` per block.
        let ys = (if blocks >= 256 { 8 } else { 32 }).min(len.max(1).next_power_of_two()) as u32;
        KernelCall {
            file: FILE,
            entry: format!("reduce_cols_{sfx}"),
            grid: (grid_x(op, blocks)?, 1, 1),
            block: (32, ys, 1),
            smem: 0,
            args: vec![xp, yp, Arg::U64(len as u64), Arg::U64(inner as u64), Arg::U64(tiles as u64), code],
        }
    }))
}

fn arg_reduce(
    op: &Op,
    is_max: bool,
    axis: usize,
    ins: &[DevTensor],
    out: &DevTensor,
) -> Result<Option<KernelCall>, CudaError> {
    let x = one_input(op, ins)?;
    let sfx = float_kernel(op, x.dtype)?;
    if axis >= x.shape.len() {
        return Err(unsupported(op, &format!("axis {axis} of a rank-{} input", x.shape.len())));
    }
    let (outer, len, inner) = split3(x.shape, axis);
    if out.dtype != DType::I64 || out.numel() != outer * inner {
        return Err(unsupported(op, "output must be i64 with the reduced shape"));
    }
    if outer * inner == 0 {
        return Ok(None);
    }
    if len == 0 {
        return Err(unsupported(op, "empty axis"));
    }
    let (xp, yp, n, is_max) =
        (Arg::Ptr(x.ptr), Arg::Ptr(out.ptr), i32_arg(op, len, "axis length")?, Arg::I32(is_max as i32));
    Ok(Some(if inner == 1 {
        KernelCall {
            file: FILE,
            entry: format!("argreduce_rows_{sfx}"),
            grid: (grid_x(op, outer)?, 1, 1),
            block: (line_threads(len, 1024), 1, 1),
            smem: 0,
            args: vec![xp, yp, n, is_max],
        }
    } else {
        let cols = outer * inner;
        let args = vec![xp, yp, n, Arg::U64(inner as u64), Arg::U64(cols as u64), is_max];
        KernelCall::elementwise(FILE, format!("argreduce_cols_{sfx}"), cols, args)
    }))
}

fn top_k(
    op: &Op,
    k: usize,
    axis: usize,
    ins: &[DevTensor],
    out: &DevTensor,
    s: Scratch,
) -> Result<Vec<KernelCall>, CudaError> {
    let x = one_input(op, ins)?;
    let sfx = float_kernel(op, x.dtype)?;
    if axis >= x.shape.len() {
        return Err(unsupported(op, &format!("axis {axis} of a rank-{} input", x.shape.len())));
    }
    let (outer, n, inner) = split3(x.shape, axis);
    if k == 0 || k > n || k > TOPK_MAX {
        return Err(unsupported(op, &format!("k = {k} (axis length {n}, at most {TOPK_MAX})")));
    }
    if out.dtype != DType::I64 || out.numel() != outer * k * inner {
        return Err(unsupported(op, "output must be i64 with k along the axis"));
    }
    let lines = outer * inner;
    if lines == 0 {
        return Ok(Vec::new());
    }
    if let Some((chunk, chunks)) = topk_chunks(n, k, inner, outer) {
        let m = chunks * k;
        let need = outer * m * 8;
        if s.bytes < need {
            return Err(unsupported(op, &format!("needs {need} bytes of scratch, has {}", s.bytes)));
        }
        let (keys, idxs) = (s.ptr, s.ptr + (outer * m * 4) as u64);
        let chunks_call = KernelCall {
            file: FILE,
            entry: format!("topk_chunks_{sfx}"),
            grid: (grid_x(op, chunks)?, outer as u32, 1),
            block: (line_threads(chunk, 1024), 1, 1),
            smem: 0,
            args: vec![
                Arg::Ptr(x.ptr),
                Arg::Ptr(keys),
                Arg::Ptr(idxs),
                i32_arg(op, n, "axis length")?,
                Arg::I32(k as i32),
                Arg::I32(chunk as i32),
            ],
        };
        let merge = KernelCall {
            file: FILE,
            entry: "topk_merge".into(),
            grid: (grid_x(op, outer)?, 1, 1),
            block: (line_threads(m, 1024), 1, 1),
            smem: 0,
            args: vec![
                Arg::Ptr(keys),
                Arg::Ptr(idxs),
                Arg::Ptr(out.ptr),
                i32_arg(op, m, "candidates")?,
                Arg::I32(k as i32),
            ],
        };
        return Ok(vec![chunks_call, merge]);
    }
    Ok(vec![KernelCall {
        file: FILE,
        entry: format!("topk_{sfx}"),
        grid: (grid_x(op, lines)?, 1, 1),
        block: (line_threads(n, 1024), 1, 1),
        smem: 0,
        args: vec![
            Arg::Ptr(x.ptr),
            Arg::Ptr(out.ptr),
            i32_arg(op, n, "axis length")?,
            Arg::I32(k as i32),
            Arg::U64(inner as u64),
        ],
    }])
}

fn take_along(
    op: &Op,
    axis: usize,
    ins: &[DevTensor],
    out: &DevTensor,
    s: Scratch,
) -> Result<Option<KernelCall>, CudaError> {
    let [x, idx] = ins else {
        return Err(unsupported(op, &format!("expects 2 inputs, got {}", ins.len())));
    };
    let it = match idx.dtype {
        DType::I32 => "i32",
        DType::I64 => "i64",
        d => return Err(unsupported(op, &format!("index dtype {d} (i32 or i64)"))),
    };
    let rank = x.shape.len();
    let fits = axis < rank
        && idx.shape.len() == rank
        && (0..rank).all(|d| d == axis || idx.shape[d] == x.shape[d])
        && out.shape == idx.shape
        && out.dtype == x.dtype;
    if !fits {
        return Err(unsupported(op, "index/output shapes must match x except along the axis"));
    }
    if s.flag == 0 {
        return Err(unsupported(op, "needs the scratch error flag"));
    }
    let total = out.numel();
    if total == 0 {
        return Ok(None);
    }
    let (_, n, inner) = split3(x.shape, axis);
    let args = vec![
        Arg::Ptr(x.ptr),
        Arg::Ptr(idx.ptr),
        Arg::Ptr(out.ptr),
        Arg::U64(total as u64),
        Arg::U64(n as u64),
        Arg::U64(idx.shape[axis] as u64),
        Arg::U64(inner as u64),
        Arg::Ptr(s.flag),
    ];
    Ok(Some(KernelCall::elementwise(FILE, format!("take_along_{it}_{}", elem_suffix(x.dtype)), total, args)))
}

/// Little-endian bytes of `v` stored as `dt` (a float dtype).
fn encode(dt: DType, v: &[f32]) -> Vec<u8> {
    match dt {
        DType::F16 => v.iter().flat_map(|&f| half::f16::from_f32(f).to_le_bytes()).collect(),
        DType::BF16 => v.iter().flat_map(|&f| half::bf16::from_f32(f).to_le_bytes()).collect(),
        _ => v.iter().flat_map(|&f| f.to_le_bytes()).collect(),
    }
}

/// `[rows, n]` values in [0, 1) with `extreme` planted at four spread positions per row (row 0
/// at index 0 too): arg-reductions and the head of top-k are exact ties, resolved by index.
fn planted(dt: DType, rows: usize, n: usize, extreme: f32, seed: u64) -> Input {
    let mut rng = Rng(seed);
    let mut v: Vec<f32> = (0..rows * n).map(|_| rng.next_f32()).collect();
    for r in 0..rows {
        for p in [7 * r, n / 3 + r, n / 2 + 33 * r, n - 1] {
            v[r * n + p] = extreme;
        }
    }
    Input::bytes(dt, &[rows, n], encode(dt, &v))
}

pub fn cases() -> Vec<Case> {
    use DType::{BF16, F16, F32, I32, I64};
    let mut v = Vec::new();
    let u = |dt: DType, shape: &[usize]| vec![Input::uniform(dt, shape, -1.0, 2.0)];
    for (r, name) in
        [(ReduceOp::Sum, "sum"), (ReduceOp::Mean, "mean"), (ReduceOp::Max, "max"), (ReduceOp::Min, "min")]
    {
        let red = |axes: &[usize], keepdim: bool| Op::Reduce { op: r, axes: axes.to_vec(), keepdim };
        v.push(Case::new(format!("{name} last [7,1000] f32"), red(&[1], false), u(F32, &[7, 1000])));
        v.push(Case::new(
            format!("{name} last keepdim [5,3,333] bf16"),
            red(&[2], true),
            u(BF16, &[5, 3, 333]),
        ));
        v.push(Case::new(format!("{name} middle [5,37,19] f32"), red(&[1], false), u(F32, &[5, 37, 19])));
        v.push(Case::new(
            format!("{name} middle keepdim [3,29,65] bf16"),
            red(&[1], true),
            u(BF16, &[3, 29, 65]),
        ));
        v.push(Case::new(
            format!("{name} hw keepdim [2,13,11,67] f32"),
            red(&[1, 2], true),
            u(F32, &[2, 13, 11, 67]),
        ));
        v.push(Case::new(
            format!("{name} axes 0,2 [6,9,11,5] f32"),
            red(&[0, 2], false),
            u(F32, &[6, 9, 11, 5]),
        ));
        v.push(Case::new(
            format!("{name} axes 1,3 keepdim [3,7,5,9,4] bf16"),
            red(&[1, 3], true),
            u(BF16, &[3, 7, 5, 9, 4]),
        ));
        v.push(Case::new(format!("{name} all [33,65,7] f32"), red(&[0, 1, 2], false), u(F32, &[33, 65, 7])));
        v.push(Case::new(format!("{name} axis 0 [1000,7] f16"), red(&[0], false), u(F16, &[1000, 7])));
    }
    let red = |r: ReduceOp, axes: &[usize], keepdim: bool| Op::Reduce { op: r, axes: axes.to_vec(), keepdim };
    v.extend([
        Case::new("sum vocab rows [2,151936] f32", red(ReduceOp::Sum, &[1], false), u(F32, &[2, 151936])),
        Case::new("mean [4,3000] f16", red(ReduceOp::Mean, &[1], true), u(F16, &[4, 3000])),
        Case::new(
            "mean hw [2,24,24,256] bf16",
            red(ReduceOp::Mean, &[1, 2], false),
            u(BF16, &[2, 24, 24, 256]),
        ),
        Case::new(
            "max size-1 axes [1,50,1,9] f32",
            red(ReduceOp::Max, &[0, 2], false),
            u(F32, &[1, 50, 1, 9]),
        ),
        Case::new(
            "sum merged axes [4,1,30,8] f32",
            red(ReduceOp::Sum, &[1, 2], true),
            u(F32, &[4, 1, 30, 8]),
        ),
        Case::new(
            "mean axes 0,2 long [3,4,5000] f32",
            red(ReduceOp::Mean, &[0, 2], false),
            u(F32, &[3, 4, 5000]),
        ),
    ]);

    let arg = |op: ArgOp, axis: usize, keepdim: bool| Op::ArgReduce { op, axis, keepdim };
    let vocab = 151936;
    v.extend([
        Case::new(
            "argmax ties [3,151936] f32",
            arg(ArgOp::ArgMax, 1, false),
            vec![planted(F32, 3, vocab, 2.0, 1)],
        ),
        Case::new(
            "argmax ties [3,151936] bf16",
            arg(ArgOp::ArgMax, 1, true),
            vec![planted(BF16, 3, vocab, 2.0, 2)],
        ),
        Case::new(
            "argmin ties [3,151936] f32",
            arg(ArgOp::ArgMin, 1, true),
            vec![planted(F32, 3, vocab, -1.0, 3)],
        ),
        Case::new("argmin last [5,300] f16", arg(ArgOp::ArgMin, 1, false), u(F16, &[5, 300])),
        Case::new("argmax middle keepdim [4,33,17] bf16", arg(ArgOp::ArgMax, 1, true), u(BF16, &[4, 33, 17])),
        Case::new("argmin middle [6,129,5] f32", arg(ArgOp::ArgMin, 1, false), u(F32, &[6, 129, 5])),
        Case::new("argmax axis 0 [37,10] f32", arg(ArgOp::ArgMax, 0, false), u(F32, &[37, 10])),
    ]);

    let topk = |k: usize, axis: usize| Op::TopK { k, axis };
    for k in [1, 5, 40] {
        v.push(Case::new(
            format!("top{k} ties [3,151936] f32"),
            topk(k, 1),
            vec![planted(F32, 3, vocab, 2.0, 4)],
        ));
        // bf16 logits: many exact ties at the top, ordered by index.
        v.push(Case::new(
            format!("top{k} [2,151936] bf16"),
            topk(k, 1),
            vec![Input::uniform(BF16, &[2, vocab], -10.0, 10.0)],
        ));
    }
    // The token head's k (two launches: chunk winners, then the merge), and a row just long
    // enough to split with a short last chunk.
    v.push(Case::new("top256 ties [2,151936] f32", topk(256, 1), vec![planted(F32, 2, vocab, 2.0, 300)]));
    v.push(Case::new(
        "top256 [1,151936] bf16",
        topk(256, 1),
        vec![Input::uniform(BF16, &[1, vocab], -10.0, 10.0)],
    ));
    v.push(Case::new("top40 [3,16411] f16", topk(40, 1), vec![Input::uniform(F16, &[3, 16411], -4.0, 4.0)]));
    v.extend([
        Case::new("top5 middle [6,50,9] f32", topk(5, 1), u(F32, &[6, 50, 9])),
        Case::new("top64 all [4,64] f16", topk(64, 1), u(F16, &[4, 64])),
        Case::new("top3 [3,7] f32", topk(3, 1), u(F32, &[3, 7])),
        Case::new("top1000 [2,3000] bf16", topk(1000, 1), u(BF16, &[2, 3000])),
    ]);

    let take = |axis: usize| Op::TakeAlongAxis { axis };
    v.extend([
        Case::new(
            "take_along middle f32 i64",
            take(1),
            vec![Input::uniform(F32, &[4, 50, 6], -1.0, 1.0), Input::ints(I64, &[4, 7, 6], 0, 49)],
        ),
        Case::new(
            "take_along last bf16 i32",
            take(1),
            vec![Input::uniform(BF16, &[3, 20], -1.0, 1.0), Input::ints(I32, &[3, 45], 0, 19)],
        ),
        Case::new(
            "take_along axis 0 i64 i32",
            take(0),
            vec![Input::ints(I64, &[10, 3], -1000, 1000), Input::ints(I32, &[4, 3], 0, 9)],
        ),
        Case::new(
            "take_along bool i64",
            take(1),
            vec![Input::bools(&[5, 8, 2], 0.5), Input::ints(I64, &[5, 3, 2], 0, 7)],
        ),
        Case::new(
            "take_along last f16 i64",
            take(2),
            vec![Input::uniform(F16, &[2, 3, 4], -1.0, 1.0), Input::ints(I64, &[2, 3, 9], 0, 3)],
        ),
    ]);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cuda::sources::{entry_points, SOURCES};

    const FAKE: Scratch = Scratch { ptr: 0x7000_0000, bytes: 0, flag: 0x7f00_0000 };

    fn plan_shapes(op: &Op, ins: &[(DType, Vec<usize>)]) -> Result<Vec<Call>, String> {
        let ins: Vec<(DType, &[usize])> = ins.iter().map(|(dt, s)| (*dt, s.as_slice())).collect();
        crate::cuda::check::plan_op_offline(op, &ins)
    }

    #[test]
    fn every_case_plans_valid_launches() {
        let src = SOURCES.iter().find(|s| s.0 == FILE).expect("reduce.cu registered").1;
        let entries = entry_points(src);
        for c in cases() {
            let ins: Vec<(DType, Vec<usize>)> = c.inputs.iter().map(|i| (i.dtype, i.shape.clone())).collect();
            let calls = plan_shapes(&c.op, &ins).unwrap_or_else(|e| panic!("{}: {e}", c.name));
            // One launch each, but a long row's top-k: chunk winners, then the merge.
            let long_topk =
                matches!(c.op, Op::TopK { .. }) && ins[0].1.last().is_some_and(|&n| n >= TOPK_SPLIT_MIN);
            assert_eq!(calls.len(), if long_topk { 2 } else { 1 }, "{}", c.name);
            for call in calls {
                let Call::Kernel(k) = call else { panic!("{}: not a kernel", c.name) };
                assert_eq!(k.file, FILE);
                assert!(entries.contains(&k.entry), "{}: no entry {}", c.name, k.entry);
            }
        }
    }

    #[test]
    fn strategies() {
        let entry =
            |op: Op, shape: &[usize]| match &plan_shapes(&op, &[(DType::F32, shape.to_vec())]).unwrap()[0] {
                Call::Kernel(k) => (k.entry.clone(), k.grid, k.block),
                _ => unreachable!(),
            };
        let red = |axes: &[usize]| Op::Reduce { op: ReduceOp::Sum, axes: axes.to_vec(), keepdim: false };
        assert_eq!(entry(red(&[2]), &[3, 4, 100]), ("reduce_rows_f32".into(), (12, 1, 1), (128, 1, 1)));
        assert_eq!(entry(red(&[1, 2]), &[2, 5, 6, 70]), ("reduce_cols_f32".into(), (6, 1, 1), (32, 32, 1)));
        assert_eq!(entry(red(&[0, 1, 2]), &[2, 5, 6]).0, "reduce_rows_f32");
        assert_eq!(entry(red(&[0, 2]), &[2, 5, 6]).0, "reduce_strided_f32");
        // Size-1 dims do not split a run.
        assert_eq!(entry(red(&[0, 2]), &[2, 1, 6, 4]).0, "reduce_cols_f32");
        assert_eq!(entry(red(&[1]), &[7, 1, 4]), ("reduce_cols_f32".into(), (1, 1, 1), (32, 1, 1)));
        let arg = |axis| Op::ArgReduce { op: ArgOp::ArgMax, axis, keepdim: false };
        assert_eq!(entry(arg(1), &[3, 151936]), ("argreduce_rows_f32".into(), (3, 1, 1), (1024, 1, 1)));
        assert_eq!(entry(arg(0), &[3, 5]).0, "argreduce_cols_f32");
    }

    #[test]
    fn runs_and_dims_packing() {
        assert_eq!(runs(&[2, 1, 3, 4, 5], &[1, 2, 3]), vec![(2, false), (12, true), (5, false)]);
        assert_eq!(runs(&[2, 3, 4, 5], &[0, 2]), vec![(2, true), (3, false), (4, true), (5, false)]);
        assert_eq!(runs(&[1, 1], &[0]), vec![]);
        let b = reduce_dims(&[(3, 5), (5, 1)], &[(2, 60)]);
        assert_eq!(b.len(), 264);
        assert_eq!(&b[..8], &[2, 0, 0, 0, 1, 0, 0, 0]);
        let word = |i: usize| u64::from_le_bytes(b[8 + 8 * i..16 + 8 * i].try_into().unwrap());
        assert_eq!([word(0), word(1), word(2), word(8), word(9), word(16), word(24)], [3, 5, 1, 5, 1, 2, 60]);
    }

    #[test]
    fn unsupported_configurations() {
        let err = |op: Op, ins: &[(DType, Vec<usize>)], out: (DType, Vec<usize>), s: Scratch| {
            let devs: Vec<DevTensor> =
                ins.iter().map(|(dt, sh)| DevTensor { dtype: *dt, shape: sh, ptr: 0x1000 }).collect();
            let out = DevTensor { dtype: out.0, shape: &out.1, ptr: 0x2000 };
            matches!(super::super::plan(&op, &devs, &out, s), Err(CudaError::Unsupported { .. }))
        };
        let sum = Op::Reduce { op: ReduceOp::Sum, axes: vec![1], keepdim: false };
        assert!(err(sum.clone(), &[(DType::I32, vec![2, 3])], (DType::I32, vec![2]), FAKE));
        assert!(err(sum.clone(), &[(DType::F32, vec![2, 3])], (DType::F32, vec![3]), FAKE));
        let unsorted = Op::Reduce { op: ReduceOp::Sum, axes: vec![1, 0], keepdim: false };
        assert!(err(unsorted, &[(DType::F32, vec![2, 3])], (DType::F32, vec![]), FAKE));
        let big_k = Op::TopK { k: 1025, axis: 0 };
        assert!(err(big_k, &[(DType::F32, vec![5000])], (DType::I64, vec![1025]), FAKE));
        let arg = Op::ArgReduce { op: ArgOp::ArgMin, axis: 0, keepdim: false };
        assert!(err(arg, &[(DType::F32, vec![5])], (DType::I32, vec![]), FAKE));
        let take = Op::TakeAlongAxis { axis: 0 };
        let ins = [(DType::F32, vec![4, 2]), (DType::F32, vec![3, 2])];
        assert!(err(take.clone(), &ins, (DType::F32, vec![3, 2]), FAKE));
        let ins = [(DType::F32, vec![4, 2]), (DType::I64, vec![3, 2])];
        assert!(err(take.clone(), &ins, (DType::F32, vec![3, 2]), Scratch { flag: 0, ..FAKE }));
        assert!(!err(take, &ins, (DType::F32, vec![3, 2]), FAKE));
    }
}
