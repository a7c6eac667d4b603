//! Rotary embeddings (rope.cu). The frequency table is computed on the host by the CPU
//! kernel's own function and uploaded with the call, so both backends rotate by the same
//! angles.

use super::*;
use crate::cpu::rope::inv_freq;
use focus_graph::RopeKind;

pub(super) fn plan(op: &Op, ins: &[DevTensor], out: &DevTensor, _s: Scratch) -> Result<Vec<Call>, CudaError> {
    let Op::Rope { kind, theta } = op else { return Err(unsupported(op, "not rope")) };
    let (x, pos) = (&ins[0], &ins[1]);
    if out.numel() == 0 {
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
    let args = vec![
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
    Ok(vec![Call::Kernel(KernelCall::elementwise("rope.cu", format!("rope_{pt}_{s}"), rows * dim / 2, args))])
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
    }
    v
}
