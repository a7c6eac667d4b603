//! Tensor-core flash attention (flash_attn.cu) for f16/bf16 with head dims 64, 80 and 128
//! (D = Dv): a FlashAttention-2 prefill kernel, and for Tq <= 4 a split-K decode kernel whose
//! per-split partials go through scratch to a combine kernel. Everything else is Unsupported
//! here, and the dispatcher falls back to the baseline attention.cu. Packed variable-length
//! sequences (`Op::VarlenAttention`) always take the prefill kernel, their cumulative offsets
//! uploaded with the call.

use super::*;
use focus_graph::shape::{broadcast_shapes, broadcast_strides};

const FILE: &str = "flash_attn.cu";
/// Query rows per prefill block (4 warps x 16) and keys per K/V tile: FL_BQ, FL_BK.
const BQ: usize = 64;
const BK: usize = 64;
const THREADS: u32 = 128;
const HEAD_DIMS: [usize; 3] = [64, 80, 128];
/// Decode blocks hold every q head of one kv head times Tq rows, at most FL_MAXR.
const DECODE_MAX_TQ: usize = 4;
const DECODE_MAX_ROWS: usize = 32;
/// Keys are split until about this many decode blocks run (two waves on a 132-SM H100), but each
/// split keeps at least this many 64-key chunks so its double buffer has something to overlap.
const DECODE_TARGET_BLOCKS: usize = 264;
const DECODE_MIN_CHUNKS: usize = 2;

/// A checked attention problem.
#[derive(Clone)]
struct Attn {
    b: usize,
    tq: usize,
    tk: usize,
    hq: usize,
    hkv: usize,
    d: usize,
    causal: bool,
    scale: f32,
    suffix: &'static str,
    /// Pointer, kind (1 bool, 2 additive f32, 3 additive in the storage type) and element
    /// strides over `[B, Hq, Tq, Tk]` (0 where broadcast).
    mask: Option<(u64, i32, [usize; 4])>,
    /// Packed sequences' cumulative offsets (`[0, ..., T]`), if any.
    cu: Option<Vec<i32>>,
}

/// The kernels' trailing `(cu, nseg)` arguments: the offsets as a constant, or none.
pub(super) fn seq_args(op: &Op, cu: Option<Vec<i32>>) -> Result<[Arg; 2], CudaError> {
    Ok(match cu {
        None => [Arg::Ptr(0), Arg::I32(0)],
        Some(cu) => {
            let n = i32_arg(op, cu.len() - 1, "sequences")?;
            [Arg::Const(cu.iter().flat_map(|x| x.to_le_bytes()).collect()), n]
        }
    })
}

/// `(causal, scale, cumulative offsets)` of either attention op.
pub(super) fn attention_params(op: &Op) -> Result<(bool, f32, Option<Vec<i32>>), CudaError> {
    match op {
        Op::Attention { causal, scale } => Ok((*causal, *scale, None)),
        Op::VarlenAttention { causal, scale, seqlens } => {
            let mut cu = vec![0i32];
            for &l in seqlens {
                let next = i32::try_from(l).ok().and_then(|l| cu.last().expect("non-empty").checked_add(l));
                cu.push(next.ok_or_else(|| unsupported(op, "sequence offsets exceed i32"))?);
            }
            Ok((*causal, *scale, Some(cu)))
        }
        _ => Err(unsupported(op, "not attention")),
    }
}

fn check(op: &Op, ins: &[DevTensor], out: &DevTensor) -> Result<Attn, CudaError> {
    let (causal, scale, cu) = attention_params(op)?;
    let bad = |why: String| Err(unsupported(op, &why));
    if !(3..=4).contains(&ins.len()) || (cu.is_some() && ins.len() != 3) {
        return bad(format!("{} inputs (q, k, v and an optional mask)", ins.len()));
    }
    let (q, k, v) = (&ins[0], &ins[1], &ins[2]);
    let suffix = match q.dtype {
        DType::F16 => "f16",
        DType::BF16 => "bf16",
        dt => return bad(format!("dtype {dt} (flash kernels are f16/bf16)")),
    };
    if k.dtype != q.dtype || v.dtype != q.dtype || out.dtype != q.dtype {
        return bad("q, k, v and out differ in dtype".into());
    }
    if q.shape.len() != 4 || k.shape.len() != 4 {
        return bad("q and k must be rank 4".into());
    }
    let (b, tq, hq, d) = (q.shape[0], q.shape[1], q.shape[2], q.shape[3]);
    let (tk, hkv) = (k.shape[1], k.shape[2]);
    if k.shape != [b, tk, hkv, d] || v.shape != [b, tk, hkv, d] || out.shape != [b, tq, hq, d] {
        return bad(format!(
            "shapes q {:?} k {:?} v {:?} out {:?} (needs Dv = D)",
            q.shape, k.shape, v.shape, out.shape
        ));
    }
    if hkv == 0 || !hq.is_multiple_of(hkv) {
        return bad(format!("{hq} query heads over {hkv} kv heads"));
    }
    if !HEAD_DIMS.contains(&d) {
        return bad(format!("head dim {d} (flash kernels take {HEAD_DIMS:?})"));
    }
    if [q, k, v, out].iter().any(|t| !t.ptr.is_multiple_of(16)) {
        return bad("q, k, v and out must be 16-byte aligned".into());
    }
    let mask = match ins.get(3).filter(|m| m.ptr != 0) {
        None => None,
        Some(m) => {
            let kind = match m.dtype {
                DType::Bool | DType::U8 => 1,
                DType::F32 => 2,
                dt if dt == q.dtype => 3,
                dt => return bad(format!("mask dtype {dt}")),
            };
            let full = [b, hq, tq, tk];
            if m.shape.len() > 4 || broadcast_shapes(m.shape, &full).as_deref() != Some(&full[..]) {
                return bad(format!("mask {:?} does not broadcast to {full:?}", m.shape));
            }
            if !m.ptr.is_multiple_of(m.dtype.size_in_bytes() as u64) {
                return bad("misaligned mask".into());
            }
            let st = broadcast_strides(m.shape, &full);
            Some((m.ptr, kind, [st[0], st[1], st[2], st[3]]))
        }
    };
    if cu.is_some() && tq != tk {
        return bad(format!("packed sequences with {tq} queries and {tk} keys"));
    }
    Ok(Attn { b, tq, tk, hq, hkv, d, causal, scale, suffix, mask, cu })
}

/// Decode geometry `(splits, 64-key chunks per split)`, or None where the prefill kernel runs.
/// Every split starts below Tk: `(splits - 1) · per_split < chunks`.
fn decode_split(a: &Attn) -> Option<(usize, usize)> {
    if a.cu.is_some() || a.tq > DECODE_MAX_TQ || a.hq / a.hkv * a.tq > DECODE_MAX_ROWS {
        return None;
    }
    let chunks = a.tk.div_ceil(BK).max(1);
    let want = (DECODE_TARGET_BLOCKS / (a.b * a.hkv).max(1)).clamp(1, chunks.div_ceil(DECODE_MIN_CHUNKS));
    let per_split = chunks.div_ceil(want);
    Some((chunks.div_ceil(per_split), per_split))
}

/// Split partials in scratch, all f32: `(m, l)` per (b, h, i, split) row, then from float
/// `acc_off` (16-byte aligned) `acc[D]` per row. Returns `(acc_off, bytes)`.
fn partials(a: &Attn, splits: usize) -> (usize, usize) {
    let rows = a.b * a.hq * a.tq * splits;
    let acc_off = (2 * rows).next_multiple_of(4);
    (acc_off, 4 * (acc_off + rows * a.d))
}

/// Dynamic shared memory of the double-buffered K and V tiles, rows padded by 8 elements so
/// ldmatrix row addresses fall in distinct banks.
fn tile_smem(d: usize) -> usize {
    4 * BK * (d + 8) * 2
}

fn dim(op: &Op, n: usize, what: &str) -> Result<u32, CudaError> {
    u32::try_from(n).map_err(|_| unsupported(op, &format!("{what} = {n} exceeds the grid")))
}

pub(super) fn plan(op: &Op, ins: &[DevTensor], out: &DevTensor, s: Scratch) -> Result<Vec<Call>, CudaError> {
    plan_with_rope(op, ins, out, s, None)
}

/// The q RoPE of a decode step folded into the attention that reads it (the engine's Rope →
/// Attention pair): `rope_ins = [q before RoPE, positions]`, `extra` the attention's other inputs.
/// The decode kernel rotates q as it stages it; anything but the decode path is Unsupported, and
/// the pair then runs as two launches.
pub(super) fn plan_rope_q(
    rope: &Op,
    attn: &Op,
    rope_ins: &[DevTensor],
    extra: &[DevTensor],
    out: &DevTensor,
    s: Scratch,
) -> Result<Vec<Call>, CudaError> {
    let Op::Rope { kind: focus_graph::RopeKind::OneD, theta } = *rope else {
        return Err(unsupported(rope, "only 1-D RoPE folds into attention"));
    };
    let (x, pos) = (&rope_ins[0], &rope_ins[1]);
    let pos_i64 = match pos.dtype {
        DType::I32 => 0,
        DType::I64 => 1,
        d => return Err(unsupported(rope, &format!("position dtype {d}"))),
    };
    let d = *x.shape.last().expect("rank 4");
    let table: Vec<u8> = crate::cpu::rope::inv_freq(theta, d).iter().flat_map(|f| f.to_le_bytes()).collect();
    let ins: Vec<DevTensor> = std::iter::once(*x).chain(extra.iter().copied()).collect();
    plan_with_rope(attn, &ins, out, s, Some((table, pos.ptr, pos_i64)))
}

/// `rope`: q's 1-D RoPE (frequency table, positions, positions are i64) applied while staging.
fn plan_with_rope(
    op: &Op,
    ins: &[DevTensor],
    out: &DevTensor,
    s: Scratch,
    rope: Option<(Vec<u8>, u64, i32)>,
) -> Result<Vec<Call>, CudaError> {
    let a = check(op, ins, out)?;
    if out.numel() == 0 {
        return Ok(Vec::new());
    }
    if a.tk == 0 {
        // No keys: every row is fully masked.
        return Ok(vec![Call::Memset { ptr: out.ptr, bytes: out.bytes(), value: 0 }]);
    }
    let (mask_ptr, kind, ms) = a.mask.unwrap_or((0, 0, [0; 4]));
    let head = [
        Arg::Ptr(ins[0].ptr),
        Arg::Ptr(ins[1].ptr),
        Arg::Ptr(ins[2].ptr),
        Arg::Ptr(mask_ptr),
        Arg::Ptr(out.ptr),
    ];
    let dims = [
        i32_arg(op, a.tq, "Tq")?,
        i32_arg(op, a.tk, "Tk")?,
        i32_arg(op, a.hq, "Hq")?,
        i32_arg(op, a.hkv, "Hkv")?,
    ];
    let mut tail =
        vec![Arg::F32(a.scale * std::f32::consts::LOG2_E), Arg::I32(a.causal as i32), Arg::I32(kind)];
    tail.extend(ms.iter().map(|&x| Arg::U64(x as u64)));
    let block = (THREADS, 1, 1);
    let Some((splits, per_split)) = decode_split(&a) else {
        if rope.is_some() {
            return Err(unsupported(op, "RoPE folds only into the decode kernel"));
        }
        let seq = seq_args(op, a.cu)?;
        let args = [&head[..], &dims[..], &tail[..], &seq[..]].concat();
        let grid = (dim(op, a.tq.div_ceil(BQ), "query blocks")?, dim(op, a.hq, "Hq")?, dim(op, a.b, "B")?);
        let entry = format!("flash_fwd_{}_d{}", a.suffix, a.d);
        return Ok(vec![Call::Kernel(KernelCall {
            file: FILE,
            entry,
            grid,
            block,
            smem: tile_smem(a.d) as u32,
            args,
        })]);
    };
    let (acc_off, need) = partials(&a, splits);
    let part = if splits > 1 {
        if s.bytes < need || !s.ptr.is_multiple_of(16) {
            return Err(unsupported(
                op,
                &format!("decode needs {need} aligned scratch bytes, got {}", s.bytes),
            ));
        }
        s.ptr
    } else {
        0
    };
    let rows = a.hq / a.hkv * a.tq;
    let smem = tile_smem(a.d) + rows * a.d * 4 + rows * (BK + 4) * 4;
    let mut args = [&head[..], &[Arg::Ptr(part)][..], &dims[..], &tail[..]].concat();
    args.extend([i32_arg(op, per_split, "chunks per split")?, Arg::U64(acc_off as u64)]);
    args.extend(match rope {
        Some((table, pos, pos_i64)) => [Arg::Const(table), Arg::Ptr(pos), Arg::I32(pos_i64)],
        None => [Arg::Ptr(0), Arg::Ptr(0), Arg::I32(0)],
    });
    let grid = (dim(op, splits, "splits")?, dim(op, a.hkv, "Hkv")?, dim(op, a.b, "B")?);
    let entry = format!("flash_decode_{}_d{}", a.suffix, a.d);
    let mut calls =
        vec![Call::Kernel(KernelCall { file: FILE, entry, grid, block, smem: smem as u32, args })];
    if splits > 1 {
        let args = vec![
            Arg::Ptr(part),
            Arg::Ptr(out.ptr),
            dims[0].clone(),
            dims[2].clone(),
            i32_arg(op, a.d, "D")?,
            i32_arg(op, splits, "splits")?,
            Arg::U64(acc_off as u64),
        ];
        let grid = (dim(op, a.b * a.hq * a.tq, "output rows")?, 1, 1);
        let entry = format!("flash_combine_{}", a.suffix);
        calls.push(Call::Kernel(KernelCall { file: FILE, entry, grid, block, smem: 0, args }));
    }
    Ok(calls)
}

pub(super) fn scratch_bytes(op: &Op, ins: &[DevTensor], out: &DevTensor) -> usize {
    match check(op, ins, out) {
        Ok(a) if a.tk > 0 && out.numel() > 0 => match decode_split(&a) {
            Some((splits, _)) if splits > 1 => partials(&a, splits).1,
            _ => 0,
        },
        _ => 0,
    }
}

/// A mask input of `shape` whose element at multi-index `ix` is `f(ix)` (bool: nonzero attends).
fn mask_input(dt: DType, shape: &[usize], f: impl Fn(&[usize]) -> f32) -> Input {
    let n: usize = shape.iter().product();
    let mut ix = vec![0; shape.len()];
    let mut data = Vec::with_capacity(n * dt.size_in_bytes());
    for _ in 0..n {
        let x = f(&ix);
        match dt {
            DType::F32 => data.extend(x.to_le_bytes()),
            DType::F16 => data.extend(half::f16::from_f32(x).to_le_bytes()),
            DType::BF16 => data.extend(half::bf16::from_f32(x).to_le_bytes()),
            _ => data.push((x != 0.0) as u8),
        }
        for a in (0..shape.len()).rev() {
            ix[a] += 1;
            if ix[a] < shape[a] {
                break;
            }
            ix[a] = 0;
        }
    }
    Input::bytes(dt, shape, data)
}

/// Attention over `[b, tq, tk, hq, hkv, d]` with scores of order one (q in [-2, 2], k and v in
/// [-1, 1], scale 1/sqrt(D)).
fn case(what: &str, dt: DType, causal: bool, dims: [usize; 6], mask: Option<Input>) -> Case {
    let [b, tq, tk, hq, hkv, d] = dims;
    let mut inputs = vec![
        Input::uniform(dt, &[b, tq, hq, d], -2.0, 2.0),
        Input::uniform(dt, &[b, tk, hkv, d], -1.0, 1.0),
        Input::uniform(dt, &[b, tk, hkv, d], -1.0, 1.0),
    ];
    inputs.extend(mask);
    let c = if causal { " causal" } else { "" };
    let name = format!("flash attn {what} b{b} tq{tq} tk{tk} h{hq}/{hkv} d{d}{c} {dt}");
    Case::new(name, Op::Attention { causal, scale: 1.0 / (d as f32).sqrt() }, inputs)
}

pub fn cases() -> Vec<Case> {
    use DType::{BF16, F16, F32};
    let mut v = Vec::new();
    // Prefill, self attention at odd lengths (tails in both Tq and Tk), with and without causal.
    for (di, dt) in [F16, BF16].into_iter().enumerate() {
        for (hi, d) in HEAD_DIMS.into_iter().enumerate() {
            for causal in [false, true] {
                let t = [77, 200, 513][(di + hi + causal as usize) % 3];
                let b = if t > 300 { 1 } else { 2 };
                v.push(case("self", dt, causal, [b, t, t, 4, if causal { 2 } else { 4 }, d], None));
            }
        }
    }
    // Chunked prefill against a longer cache (bottom-right causal), GQA 16/2 and 14/2.
    v.push(case("prefix", BF16, true, [2, 37, 300, 16, 2, 128], None));
    v.push(case("prefix", F16, true, [1, 37, 300, 14, 2, 64], None));
    v.push(case("prefix", F16, false, [2, 37, 300, 14, 2, 80], None));
    // Tq > Tk causal: the first Tq - Tk rows see no key at all.
    v.push(case("tq>tk", F16, true, [1, 300, 37, 4, 4, 64], None));
    // Tq <= 4 with 64 rows per kv head: too many for a decode block, so the prefill kernel runs.
    v.push(case("short", BF16, true, [1, 4, 300, 32, 2, 64], None));

    // Qwen2-VL ViT style: block-diagonal windows as a [1, 1, T, T] bool mask, plus fully masked rows.
    let (t, seg) = (200, |i: usize| [0, 64, 114, 160].iter().filter(|&&s| i >= s).count());
    let m =
        mask_input(DType::Bool, &[1, 1, t, t], |x| (seg(x[2]) == seg(x[3]) && x[2] % 23 != 5) as u8 as f32);
    v.push(case("vit window mask", BF16, false, [1, t, t, 16, 16, 80], Some(m)));
    // Per-(batch, head) bool mask with fully masked rows, on top of causal.
    let (b, t, hq) = (2, 130, 4);
    let m = mask_input(DType::Bool, &[b, hq, t, t], |x| {
        ((x[0] + x[1] + 7 * x[2] + 3 * x[3]) % 4 != 0 && x[2] % 17 != 3) as u8 as f32
    });
    v.push(case("bool mask", F16, true, [b, t, t, hq, 2, 64], Some(m)));
    // Key padding mask [B, 1, 1, Tk].
    let m = mask_input(DType::Bool, &[2, 1, 1, 150], |x| (x[3] < 150 - 40 * x[0]) as u8 as f32);
    v.push(case("key padding", F16, false, [2, 150, 150, 4, 4, 128], Some(m)));
    // Additive f32 [B, 1, Tq, Tk]: -inf holes, rows of -inf (zeros out) and of f32::MIN (uniform).
    let m = mask_input(F32, &[2, 1, 100, 100], |x| match (x[2] % 13, (x[2] + x[3]) % 5) {
        (7, _) | (_, 0) => f32::NEG_INFINITY,
        (11, _) => f32::MIN,
        _ => -0.3 * (x[3] % 7) as f32,
    });
    v.push(case("additive f32", BF16, false, [2, 100, 100, 4, 2, 128], Some(m)));
    // Additive mask in the storage type, rank 2 [Tq, Tk] broadcast over batch and heads.
    let m = mask_input(F16, &[90, 90], |x| {
        if x[1] % 11 == 0 {
            f32::NEG_INFINITY
        } else {
            -0.5 * (x[0] * x[1] % 5) as f32
        }
    });
    v.push(case("additive f16", F16, true, [2, 90, 90, 4, 4, 64], Some(m)));

    // Decode: one split (Tk 1, 100), many splits (4097), Tq up to 4, GQA.
    v.push(case("decode", BF16, true, [2, 1, 1, 16, 2, 128], None));
    v.push(case("decode", F16, false, [2, 1, 100, 14, 2, 80], None));
    v.push(case("decode", F16, true, [2, 1, 4097, 16, 2, 128], None));
    v.push(case("decode", BF16, false, [1, 1, 4097, 28, 4, 128], None));
    v.push(case("decode", F16, true, [2, 4, 1000, 28, 4, 80], None));
    // Tq 3 over 2 keys, causal: row 0 sees nothing.
    v.push(case("decode", F16, true, [1, 3, 2, 8, 2, 64], None));
    // Key padding: batch 0 fully masked, batch 1 sees the first 100 of 4097 keys, so most splits
    // of batch 1 hold nothing.
    let m = mask_input(DType::Bool, &[2, 1, 1, 4097], |x| (x[0] == 1 && x[3] < 100) as u8 as f32);
    v.push(case("decode key padding", F16, false, [2, 1, 4097, 8, 8, 80], Some(m)));
    let m = mask_input(DType::Bool, &[2, 1, 1, 2049], |x| (x[3] < 2049 - 1000 * x[0]) as u8 as f32);
    v.push(case("decode key padding", BF16, false, [2, 1, 2049, 8, 8, 64], Some(m)));
    // Additive f32 [B, Hq, Tq, Tk] with one fully -inf row, over several splits.
    let m = mask_input(F32, &[2, 8, 2, 700], |x| match (x[1], x[2], x[3] % 9) {
        (1, 0, _) | (_, _, 4) => f32::NEG_INFINITY,
        _ => -0.2 * (x[3] % 5) as f32,
    });
    v.push(case("decode additive", BF16, true, [2, 2, 700, 8, 2, 128], Some(m)));
    // A decode step's q RoPE folded into the kernel (ops::plan_chain Rope → Attention): q before
    // RoPE and its positions, then k and v of the cache, several splits.
    for (dt, dims) in [(BF16, [1, 1, 700, 16, 2, 128]), (F16, [2, 2, 130, 8, 8, 64])] {
        let [b, tq, tk, hq, hkv, d] = dims;
        let q = Input::uniform(dt, &[b, tq, hq, d], -2.0, 2.0);
        let pos = Input::ints(DType::I32, &[tq], 0, 30_000);
        let (k, vv) = (
            Input::uniform(dt, &[b, tk, hkv, d], -1.0, 1.0),
            Input::uniform(dt, &[b, tk, hkv, d], -1.0, 1.0),
        );
        let rope = Op::Rope { kind: focus_graph::RopeKind::OneD, theta: 1e6 };
        let attn = Op::Attention { causal: true, scale: 1.0 / (d as f32).sqrt() };
        let name = format!("rope + flash decode b{b} tq{tq} tk{tk} h{hq}/{hkv} d{d} {dt}");
        v.push(Case::chain(name, rope, vec![q, pos], attn, vec![k, vv]));
    }

    // Packed sequences (Qwen2.5-VL windows: 256-token windows, partial ones, single tokens),
    // sequences straddling the 64-row blocks; one of 3 tokens (Tq <= 4 still takes the prefill).
    let packed: [(&[usize], DType, bool, [usize; 4]); 5] = [
        (&[256, 256, 64, 16, 256, 112], BF16, false, [1, 16, 16, 80]),
        (&[1, 63, 64, 65, 130, 3, 1], F16, false, [2, 4, 2, 128]),
        (&[100, 29, 1, 70], BF16, true, [1, 8, 2, 64]),
        (&[200, 7], F16, true, [2, 4, 4, 80]),
        (&[3], BF16, false, [1, 2, 2, 64]),
    ];
    for (seqlens, dt, causal, [b, hq, hkv, d]) in packed {
        v.push(varlen_case("flash", dt, causal, seqlens, [b, hq, hkv, d]));
    }
    v
}

/// Packed-sequence attention over `seqlens` with `[b, hq, hkv, d]` (shared with attention.rs).
pub(super) fn varlen_case(what: &str, dt: DType, causal: bool, seqlens: &[usize], dims: [usize; 4]) -> Case {
    let [b, hq, hkv, d] = dims;
    let t: usize = seqlens.iter().sum();
    let inputs = vec![
        Input::uniform(dt, &[b, t, hq, d], -2.0, 2.0),
        Input::uniform(dt, &[b, t, hkv, d], -1.0, 1.0),
        Input::uniform(dt, &[b, t, hkv, d], -1.0, 1.0),
    ];
    let c = if causal { " causal" } else { "" };
    let name = format!("{what} varlen {seqlens:?} b{b} h{hq}/{hkv} d{d}{c} {dt}");
    let op = Op::VarlenAttention { causal, scale: 1.0 / (d as f32).sqrt(), seqlens: seqlens.to_vec() };
    Case::new(name, op, inputs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cuda::launch::MAX_SMEM_OPT_IN;
    use crate::cuda::sources::{entry_signatures, ParamKind, SOURCES};

    /// Plans `case` through this family with fake, aligned, disjoint device addresses.
    fn plan_case(
        op: &Op,
        inputs: &[(DType, Vec<usize>)],
        q_ptr: u64,
        scratch: Option<usize>,
    ) -> Result<Vec<Call>, CudaError> {
        let ins: Vec<DevTensor> = inputs
            .iter()
            .enumerate()
            .map(|(k, (dt, sh))| DevTensor {
                dtype: *dt,
                shape: sh,
                ptr: if k == 0 { q_ptr } else { (k as u64 + 1) << 32 },
            })
            .collect();
        let (q, v) = (&inputs[0].1, &inputs[2].1);
        let out_shape = [q[0], q[1], q[2], v[3]];
        let out = DevTensor { dtype: inputs[0].0, shape: &out_shape, ptr: 64 << 32 };
        let bytes = scratch.unwrap_or_else(|| scratch_bytes(op, &ins, &out));
        plan(op, &ins, &out, Scratch { ptr: 65 << 32, bytes, flag: 66 << 32 })
    }

    fn shapes(c: &Case) -> Vec<(DType, Vec<usize>)> {
        c.inputs.iter().map(|i| (i.dtype, i.shape.clone())).collect()
    }

    fn kind(a: &Arg) -> ParamKind {
        match a {
            Arg::Ptr(_) | Arg::Const(_) => ParamKind::Ptr,
            Arg::I32(_) => ParamKind::Int,
            Arg::U64(_) => ParamKind::U64,
            Arg::F32(_) => ParamKind::Float,
            Arg::Bytes(_) => ParamKind::Other,
        }
    }

    #[test]
    fn every_case_plans_onto_flash_kernels() {
        let src = SOURCES.iter().find(|(f, _)| *f == FILE).expect("flash_attn.cu registered").1;
        let sigs = entry_signatures(src);
        let (mut decode, mut split, mut prefill) = (0, 0, 0);
        let mut names = std::collections::HashSet::new();
        // Chained cases (RoPE folded in) plan through ops::plan_chain: check.rs covers them.
        for c in cases().into_iter().filter(|c| c.then.is_none()) {
            assert!(names.insert(c.name.clone()), "duplicate case {}", c.name);
            let calls =
                plan_case(&c.op, &shapes(&c), 1 << 32, None).unwrap_or_else(|e| panic!("{}: {e}", c.name));
            for call in &calls {
                let Call::Kernel(k) = call else { panic!("{}: not a kernel launch", c.name) };
                k.validate().unwrap_or_else(|e| panic!("{}: {e}", c.name));
                let sig =
                    &sigs.iter().find(|(n, _)| *n == k.entry).unwrap_or_else(|| panic!("no {}", k.entry)).1;
                assert_eq!(&k.args.iter().map(kind).collect::<Vec<_>>(), sig, "{}: {}", c.name, k.entry);
            }
            let Call::Kernel(k) = &calls[0] else { unreachable!() };
            match (k.entry.starts_with("flash_decode"), calls.len()) {
                (false, 1) => prefill += 1,
                (true, 1) => decode += 1,
                (true, 2) => split += 1,
                _ => panic!("{}: unexpected calls {calls:?}", c.name),
            }
        }
        assert!(
            prefill >= 20 && decode >= 2 && split >= 4,
            "{prefill} prefill, {decode} decode, {split} split"
        );
    }

    #[test]
    fn unsupported_configurations_are_refused() {
        let op = Op::Attention { causal: true, scale: 0.1 };
        let qkv = |dt: DType, d: usize, dv: usize| {
            vec![(dt, vec![1, 9, 4, d]), (dt, vec![1, 9, 2, d]), (dt, vec![1, 9, 2, dv])]
        };
        let refused = |ins: Vec<(DType, Vec<usize>)>, q_ptr: u64, scratch: Option<usize>| {
            matches!(plan_case(&op, &ins, q_ptr, scratch), Err(CudaError::Unsupported { .. }))
        };
        assert!(!refused(qkv(DType::F16, 128, 128), 1 << 32, None));
        assert!(refused(qkv(DType::F32, 128, 128), 1 << 32, None));
        assert!(refused(qkv(DType::BF16, 96, 96), 1 << 32, None));
        assert!(refused(qkv(DType::BF16, 256, 256), 1 << 32, None));
        assert!(refused(qkv(DType::F16, 128, 64), 1 << 32, None));
        assert!(refused(qkv(DType::F16, 64, 64), (1 << 32) + 4, None));
        let mut with_mask = qkv(DType::F16, 64, 64);
        with_mask.push((DType::I32, vec![9, 9]));
        assert!(refused(with_mask.clone(), 1 << 32, None));
        with_mask[3] = (DType::Bool, vec![2, 9, 9]);
        assert!(refused(with_mask.clone(), 1 << 32, None));
        with_mask[3] = (DType::Bool, vec![1, 4, 9, 9]);
        assert!(!refused(with_mask, 1 << 32, None));
        // A split decode without its scratch.
        let long = vec![
            (DType::F16, vec![1, 1, 8, 64]),
            (DType::F16, vec![1, 5000, 1, 64]),
            (DType::F16, vec![1, 5000, 1, 64]),
        ];
        assert!(!refused(long.clone(), 1 << 32, None));
        assert!(refused(long, 1 << 32, Some(0)));
    }

    #[test]
    fn decode_splits_cover_the_keys_without_empty_splits() {
        for b in [1, 2, 7] {
            for hkv in [1, 2, 8, 40] {
                for tk in [1, 63, 64, 65, 1000, 4097, 100_000] {
                    let a = Attn {
                        b,
                        tq: 1,
                        tk,
                        hq: hkv * 4,
                        hkv,
                        d: 128,
                        causal: false,
                        scale: 1.0,
                        suffix: "f16",
                        mask: None,
                        cu: None,
                    };
                    let (splits, per) = decode_split(&a).unwrap();
                    let chunks = tk.div_ceil(BK);
                    assert!(splits * per >= chunks && (splits - 1) * per < chunks, "{b} {hkv} {tk}");
                    assert!(splits == 1 || per >= DECODE_MIN_CHUNKS);
                    let (off, bytes) = partials(&a, splits);
                    assert!(off.is_multiple_of(4) && off >= 2 * b * a.hq * splits);
                    assert_eq!(bytes, 4 * (off + b * a.hq * splits * 128));
                }
            }
        }
        let a = Attn {
            b: 1,
            tq: 4,
            tk: 10,
            hq: 16,
            hkv: 2,
            d: 64,
            causal: true,
            scale: 1.0,
            suffix: "f16",
            mask: None,
            cu: None,
        };
        assert_eq!(decode_split(&Attn { cu: Some(vec![0, 4]), ..a.clone() }), None);
        assert_eq!(decode_split(&Attn { tq: 5, ..a.clone() }), None);
        assert_eq!(decode_split(&Attn { hq: 32, ..a.clone() }), None);
        assert_eq!(decode_split(&a), Some((1, 1)));
    }

    #[test]
    fn shared_memory_fits() {
        for d in HEAD_DIMS {
            let decode = tile_smem(d) + DECODE_MAX_ROWS * d * 4 + DECODE_MAX_ROWS * (BK + 4) * 4;
            assert!(decode <= MAX_SMEM_OPT_IN as usize, "{d}: {decode}");
        }
    }
}
