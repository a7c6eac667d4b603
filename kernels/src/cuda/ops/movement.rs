//! Data movement on raw elements (movement.cu): permute, slice, pixel (un)shuffle as strided
//! gathers; pad; concat and state writes as slab copies; index_select as a checked take.

use super::*;

const MAX_RANK: usize = 8;

/// Gather `out[i] = in[offset + Σ coord_d · stride_d]` over `shape` (dims of extent 1 dropped,
/// contiguous runs merged).
fn gather(
    op: &Op,
    x: &DevTensor,
    out: &DevTensor,
    shape: &[usize],
    st: &[usize],
    offset: usize,
) -> Result<Call, CudaError> {
    let (mut sh, mut ss): (Vec<usize>, Vec<usize>) = (Vec::new(), Vec::new());
    for (&n, &s) in shape.iter().zip(st) {
        if n == 1 {
            continue;
        }
        match (sh.last_mut(), ss.last_mut()) {
            (Some(pn), Some(ps)) if *ps == s * n => {
                *pn *= n;
                *ps = s;
            }
            _ => {
                sh.push(n);
                ss.push(s);
            }
        }
    }
    if sh.is_empty() {
        (sh, ss) = (vec![1], vec![0]);
    }
    if sh.len() > MAX_RANK {
        return Err(unsupported(op, "more than 8 non-mergeable dims"));
    }
    let n = out.numel();
    let args = vec![
        Arg::Ptr(x.ptr),
        Arg::Ptr(out.ptr),
        Arg::U64(n as u64),
        Arg::Bytes(rank_struct(sh.len(), &[&sh, &ss])),
        Arg::U64(offset as u64),
    ];
    Ok(Call::Kernel(KernelCall::elementwise(
        "movement.cu",
        format!("gather_strided_{}", elem_suffix(out.dtype)),
        n,
        args,
    )))
}

/// Copy `src` viewed as [outer, len, inner] into `dst` [outer, cap, inner] at `offset` (host
/// value) or at the position held by the device integer tensor `dev_offset`.
fn slab(
    src: &DevTensor,
    dst: u64,
    axis: usize,
    cap: usize,
    offset: usize,
    dev_offset: Option<&DevTensor>,
    flag: u64,
) -> Call {
    let (outer, len, inner) = split3(src.shape, axis);
    let n = outer * len * inner;
    let args = vec![
        Arg::Ptr(src.ptr),
        Arg::Ptr(dst),
        Arg::U64(outer as u64),
        Arg::U64(len as u64),
        Arg::U64(inner as u64),
        Arg::U64(cap as u64),
        Arg::Ptr(dev_offset.map_or(0, |t| t.ptr)),
        Arg::I32(dev_offset.is_some_and(|t| t.dtype == DType::I64) as i32),
        Arg::U64(offset as u64),
        Arg::Ptr(flag),
    ];
    Call::Kernel(KernelCall::elementwise(
        "movement.cu",
        format!("write_slab_{}", elem_suffix(src.dtype)),
        n,
        args,
    ))
}

/// `value` as one element of `dt`, as the CPU encodes it (ints truncate, bool is != 0).
fn pad_value(value: f32, dt: DType) -> Vec<u8> {
    match dt {
        DType::F32 => value.to_le_bytes().to_vec(),
        DType::F16 => half::f16::from_f32(value).to_le_bytes().to_vec(),
        DType::BF16 => half::bf16::from_f32(value).to_le_bytes().to_vec(),
        DType::I32 => (value as i64 as i32).to_le_bytes().to_vec(),
        DType::I64 => (value as i64).to_le_bytes().to_vec(),
        DType::U8 => vec![value as i64 as u8],
        DType::Bool => vec![(value != 0.0) as u8],
    }
}

pub(super) fn plan(op: &Op, ins: &[DevTensor], out: &DevTensor, s: Scratch) -> Result<Vec<Call>, CudaError> {
    if out.numel() == 0 {
        return Ok(Vec::new());
    }
    let x = &ins[0];
    let call = match op {
        Op::Reshape { .. } => {
            // Normally an alias (no step); a real copy only when the planner could not alias.
            if x.ptr == out.ptr {
                return Ok(Vec::new());
            }
            Call::Copy { src: x.ptr, dst: out.ptr, bytes: out.bytes() }
        }
        Op::Permute { perm } => {
            let xs = strides(x.shape);
            let st: Vec<usize> = perm.iter().map(|&p| xs[p]).collect();
            gather(op, x, out, out.shape, &st, 0)?
        }
        Op::Slice { axis, start, step, .. } => {
            let mut st = strides(x.shape);
            let base = start * st[*axis];
            st[*axis] *= step;
            gather(op, x, out, out.shape, &st, base)?
        }
        Op::PixelShuffle { r } => {
            let r = *r;
            let [n, h, w, cin] = [x.shape[0], x.shape[1], x.shape[2], x.shape[3]];
            let c = cin / (r * r);
            gather(op, x, out, &[n, h, r, w, r, c], &[h * w * cin, w * cin, r, cin, 1, r * r], 0)?
        }
        Op::PixelUnshuffle { r } => {
            let r = *r;
            let [n, h, w, c] = [x.shape[0], x.shape[1], x.shape[2], x.shape[3]];
            gather(op, x, out, &[n, h / r, w / r, c, r, r], &[h * w * c, r * w * c, r * c, 1, w * c, c], 0)?
        }
        Op::Pad { pads, value } => {
            if x.shape.len() > MAX_RANK {
                return Err(unsupported(op, "rank above 8"));
            }
            let before: Vec<usize> = pads.iter().map(|p| p.0).collect();
            let n = out.numel();
            let args = vec![
                Arg::Ptr(x.ptr),
                Arg::Ptr(out.ptr),
                Arg::U64(n as u64),
                Arg::Bytes(rank_struct(x.shape.len(), &[out.shape, x.shape, &before])),
                Arg::Bytes(pad_value(*value, out.dtype)),
            ];
            Call::Kernel(KernelCall::elementwise(
                "movement.cu",
                format!("pad_{}", elem_suffix(out.dtype)),
                n,
                args,
            ))
        }
        Op::Concat { axis } => {
            let cap = out.shape[*axis];
            let mut at = 0;
            let mut calls = Vec::new();
            for t in ins.iter().filter(|t| t.numel() > 0) {
                calls.push(slab(t, out.ptr, *axis, cap, at, None, s.flag));
                at += t.shape[*axis];
            }
            return Ok(calls);
        }
        Op::WriteSlice { axis } => {
            // ins: [state (the destination, same storage as out), src, offset [1]].
            let (src, off) = (&ins[1], &ins[2]);
            if !matches!(off.dtype, DType::I32 | DType::I64) {
                return Err(unsupported(op, &format!("offset dtype {}", off.dtype)));
            }
            if src.numel() == 0 {
                return Ok(Vec::new());
            }
            slab(src, out.ptr, *axis, out.shape[*axis], 0, Some(off), s.flag)
        }
        Op::IndexSelect { axis } => {
            let idx = &ins[1];
            let it = match idx.dtype {
                DType::I32 => "i32",
                DType::I64 => "i64",
                d => return Err(unsupported(op, &format!("index dtype {d}"))),
            };
            let (outer, len, inner) = split3(x.shape, *axis);
            let count = idx.numel();
            let n = out.numel();
            let args = vec![
                Arg::Ptr(x.ptr),
                Arg::Ptr(idx.ptr),
                Arg::Ptr(out.ptr),
                Arg::U64(outer as u64),
                Arg::U64(len as u64),
                Arg::U64(inner as u64),
                Arg::U64(count as u64),
                Arg::Ptr(s.flag),
            ];
            Call::Kernel(KernelCall::elementwise(
                "movement.cu",
                format!("take_{it}_{}", elem_suffix(out.dtype)),
                n,
                args,
            ))
        }
        _ => return Err(unsupported(op, "not a data-movement op")),
    };
    Ok(vec![call])
}

pub fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    for dt in [DType::F32, DType::BF16, DType::I64, DType::U8] {
        let x = || Input::ints(dt, &[3, 5, 7, 11], 0, 100);
        v.push(Case::new(format!("permute 0213 {dt}"), Op::Permute { perm: vec![0, 2, 1, 3] }, vec![x()]));
        v.push(Case::new(format!("permute 3102 {dt}"), Op::Permute { perm: vec![3, 1, 0, 2] }, vec![x()]));
        let sl = Op::Slice { axis: 2, start: 1, end: 7, step: 2 };
        v.push(Case::new(format!("slice step 2 {dt}"), sl, vec![x()]));
        let pad = Op::Pad { pads: vec![(0, 0), (1, 2), (0, 3), (2, 0)], value: 3.0 };
        v.push(Case::new(format!("pad {dt}"), pad, vec![x()]));
        let cat = Op::Concat { axis: 1 };
        let ins = vec![x(), Input::ints(dt, &[3, 2, 7, 11], 0, 9), Input::ints(dt, &[3, 1, 7, 11], 0, 9)];
        v.push(Case::new(format!("concat axis 1 {dt}"), cat, ins));
    }
    for dt in [DType::F32, DType::F16] {
        let x = Input::uniform(dt, &[2, 5, 3, 36], -1.0, 1.0);
        v.push(Case::new(format!("pixel_shuffle r3 {dt}"), Op::PixelShuffle { r: 3 }, vec![x]));
        let x = Input::uniform(dt, &[2, 6, 9, 5], -1.0, 1.0);
        v.push(Case::new(format!("pixel_unshuffle r3 {dt}"), Op::PixelUnshuffle { r: 3 }, vec![x]));
    }
    for (it, dt) in [(DType::I32, DType::BF16), (DType::I64, DType::F32)] {
        // Embedding lookup: a [vocab, hidden] table gathered by token ids.
        let ins = vec![Input::uniform(dt, &[1000, 96], -1.0, 1.0), Input::ints(it, &[3, 17], 0, 999)];
        v.push(Case::new(format!("index_select rows {it} {dt}"), Op::IndexSelect { axis: 0 }, ins));
        let ins = vec![Input::uniform(dt, &[4, 50, 6], -1.0, 1.0), Input::ints(it, &[9], 0, 49)];
        v.push(Case::new(format!("index_select axis 1 {it} {dt}"), Op::IndexSelect { axis: 1 }, ins));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(shape: &[usize]) -> DevTensor<'_> {
        DevTensor { dtype: DType::F32, shape, ptr: 1 << 20 }
    }

    #[test]
    fn gathers_merge_contiguous_runs() {
        // A slice along the last axis of [4, 6] keeps two dims; a full copy collapses to one.
        let (x, out) = (t(&[4, 6]), t(&[4, 6]));
        let Call::Kernel(k) =
            gather(&Op::Permute { perm: vec![0, 1] }, &x, &out, &[4, 6], &[6, 1], 0).unwrap()
        else {
            panic!("a kernel")
        };
        assert_eq!(k.args[3], Arg::Bytes(rank_struct(1, &[&[24], &[1]])));
    }

    #[test]
    fn write_slice_with_float_offset_is_unsupported() {
        let (st, src, off) = (t(&[1, 8, 2]), t(&[1, 1, 2]), t(&[1]));
        let e =
            plan(&Op::WriteSlice { axis: 1 }, &[st, src, off], &st, Scratch { ptr: 0, bytes: 0, flag: 8 });
        assert!(matches!(e, Err(CudaError::Unsupported { .. })));
    }
}
