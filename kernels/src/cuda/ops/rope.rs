//! Rotary embeddings (rope.cu). The frequency table is computed on the host by the CPU
//! kernel's own function and uploaded with the call, so both backends rotate by the same
//! angles.

use super::*;
use crate::cpu::rope::inv_freq;
use focus_graph::RopeKind;

pub(super) fn plan(op: &Op, ins: &[DevTensor], out: &DevTensor, _s: Scratch) -> Result<Vec<Call>, CudaError> {
    plan_into(op, ins, out, None)
}

/// RoPE of `ins = [x, pos]` written straight into the state `cache` by `write` (a WriteSlice of
/// the rotated x along its sequence axis at the device-side `offset`): the KV-cache append of a
/// decoder layer in one launch. An offset that does not fit raises the error flag.
pub(super) fn plan_write(
    rope: &Op,
    write: &Op,
    ins: &[DevTensor],
    (cache, offset): (&DevTensor, &DevTensor),
    flag: u64,
) -> Result<Vec<Call>, CudaError> {
    let x = &ins[0];
    let r = x.shape.len();
    let Op::WriteSlice { axis } = *write else { return Err(unsupported(write, "not a state write")) };
    let off_i64 = match offset.dtype {
        DType::I32 => 0,
        DType::I64 => 1,
        d => return Err(unsupported(write, &format!("offset dtype {d}"))),
    };
    let seq_axis = r.checked_sub(3).ok_or_else(|| unsupported(rope, "x must be [.., T, H, D]"))?;
    let same_rest = cache.shape.len() == r
        && (0..r).all(|a| a == seq_axis || cache.shape[a] == x.shape[a])
        && cache.dtype == x.dtype;
    if axis != seq_axis || !same_rest {
        return Err(unsupported(write, "only an append along the sequence axis fuses with RoPE"));
    }
    let cap = cache.shape[seq_axis];
    plan_into(rope, ins, cache, Some((cap, offset.ptr, off_i64, flag)))
}

/// `into`: (cache capacity, offset pointer, offset is i64, error flag) for the fused append.
fn plan_into(
    op: &Op,
    ins: &[DevTensor],
    out: &DevTensor,
    into: Option<(usize, u64, i32, u64)>,
) -> Result<Vec<Call>, CudaError> {
    let Op::Rope { kind, theta } = op else { return Err(unsupported(op, "not rope")) };
    let (x, pos) = (&ins[0], &ins[1]);
    if out.numel() == 0 || x.numel() == 0 {
        return Ok(Vec::new());
    }
    let s = float_kernel(op, x.dtype)?;
    let pt = match pos.dtype {
        DType::I32 => "i32",
        DType::I64 => "i64",
        d => return Err(unsupported(op, &format!("position dtype {d}"))),
    };
    let r = x.shape.len();
    let (seq, heads, dim) = (x.shape[r - 3], x.shape[r - 2], x.shape[r - 1]);
    let (table_dim, two_d) = match kind {
        RopeKind::OneD => (dim, 0),
        RopeKind::TwoD => (dim / 2, 1),
    };
    let table: Vec<u8> = inv_freq(*theta, table_dim).iter().flat_map(|f| f.to_le_bytes()).collect();
    let rows = x.numel() / dim;
    let mut args = vec![
        Arg::Ptr(x.ptr),
        Arg::Ptr(pos.ptr),
        Arg::Const(table),
        Arg::Ptr(out.ptr),
        Arg::U64(rows as u64),
        i32_arg(op, heads, "heads")?,
        i32_arg(op, seq, "sequence length")?,
        i32_arg(op, dim, "head dim")?,
        Arg::I32(two_d),
    ];
    let entry = match into {
        None => format!("rope_{pt}_{s}"),
        Some((cap, offset, off_i64, flag)) => {
            args.extend([Arg::U64(cap as u64), Arg::Ptr(offset), Arg::I32(off_i64), Arg::Ptr(flag)]);
            format!("rope_write_{pt}_{s}")
        }
    };
    Ok(vec![Call::Kernel(KernelCall::elementwise("rope.cu", entry, rows * dim / 2, args))])
}

pub fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    for dt in [DType::F32, DType::F16, DType::BF16] {
        let x = Input::uniform(dt, &[2, 37, 16, 128], -1.0, 1.0);
        let pos = Input::ints(DType::I32, &[37], 0, 30_000);
        let op = Op::Rope { kind: RopeKind::OneD, theta: 1e6 };
        v.push(Case::new(format!("rope 1d qwen2.5 {dt}"), op, vec![x, pos]));
        let x = Input::uniform(dt, &[1, 41, 16, 80], -1.0, 1.0);
        let pos = Input::ints(DType::I64, &[41, 2], 0, 36);
        let op = Op::Rope { kind: RopeKind::TwoD, theta: 1e4 };
        v.push(Case::new(format!("rope 2d vit {dt}"), op, vec![x, pos]));
        // A decoder layer's k: rotated and appended to the KV cache [1, 40, 2, 128] at position
        // 29 (device-side offset), as one launch; the cache's other rows stay.
        let k = Input::uniform(dt, &[1, 5, 2, 128], -1.0, 1.0);
        let pos = Input::ints(DType::I32, &[5], 0, 40);
        let cache = Input::uniform(dt, &[1, 40, 2, 128], -1.0, 1.0);
        let offset = Input::bytes(DType::I32, &[1], 29i32.to_le_bytes().to_vec());
        let rope = Op::Rope { kind: RopeKind::OneD, theta: 1e6 };
        let write = Op::WriteSlice { axis: 1 };
        let name = format!("rope + kv-cache append {dt}");
        v.push(Case::chain_at(name, rope, vec![k, pos], write, vec![cache, offset], 1));
    }
    v
}
